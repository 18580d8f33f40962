//! The transport: hyper on a current-thread tokio runtime of its own, behind limits that hold
//! whatever a client sends.
//!
//! | limit | value | beyond it |
//! |---|---|---|
//! | request line + headers | [`HEAD_MAX`] | 431 |
//! | body | [`MAX_BODY`], from `Content-Length` before reading, and while streaming | 413 |
//! | time for the head, and for the body | [`HEAD_TIMEOUT`], [`BODY_TIMEOUT`] | 408 |
//! | connections open at once | [`MAX_CONNECTIONS`] | the one that has waited longest for its head is closed to make room; 503 when none is waiting |
//! | event streams open at once | [`MAX_STREAMS`] | 503 |
//! | a whole connection (not a stream) | [`CONNECTION_MAX`] | closed |
//!
//! One request per connection (`Connection: close`), so every request's head passes
//! [`head::check`] first and each refusal is a JSON body. A handler that panicked would only end
//! its own task; the accept loop sleeps through `EMFILE` instead of failing.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming as HyperBody;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};

use crate::head::{self, HEAD_MAX, Head};
use crate::{Api, Incoming, MAX_BODY, Reply};

/// Time allowed for the request line and headers, from the connection's start.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for the body, once the head is in.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; the next ones get a 503 (descriptors never run out).
pub const MAX_CONNECTIONS: usize = 64;
/// Connections being refused at once; beyond that they are closed without a word.
const MAX_REFUSING: usize = 64;
/// Event streams open at once.
pub const MAX_STREAMS: usize = 16;
/// History responses being sent at once; the next get a 503 until one is done.
pub const MAX_HISTORIES: usize = 4;
/// The longest a connection other than a stream may live.
pub const CONNECTION_MAX: Duration = Duration::from_secs(30);
/// An event stream ends after this; the browser's `EventSource` opens a new one by itself.
pub const STREAM_LIFETIME: Duration = Duration::from_secs(600);
/// The stream sends the status at most this often.
pub const STREAM_PERIOD: Duration = Duration::from_millis(500);
/// A comment line keeps an idle stream from looking dead to proxies.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

type Body = BoxBody<Bytes, Infallible>;

/// The semaphores of the responses that last: event streams and history bodies.
#[derive(Debug)]
struct Gates {
    streams: Arc<Semaphore>,
    histories: Arc<Semaphore>,
}

/// Connections still waiting for their head, oldest first: when every slot is taken, the
/// oldest of them makes room (a client that opens connections and sends nothing cannot keep
/// anyone else out).
#[derive(Debug, Default)]
struct Waiting {
    next: u64,
    queue: std::collections::VecDeque<(u64, oneshot::Sender<()>)>,
}

impl Waiting {
    fn enter(waiting: &Mutex<Self>) -> (u64, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let mut w = waiting.lock().unwrap_or_else(PoisonError::into_inner);
        w.next += 1;
        let id = w.next;
        w.queue.push_back((id, tx));
        drop(w);
        (id, rx)
    }

    fn leave(waiting: &Mutex<Self>, id: u64) {
        waiting.lock().unwrap_or_else(PoisonError::into_inner).queue.retain(|(k, _)| *k != id);
    }

    /// Asks the oldest waiting connection to close; false when none is waiting.
    fn evict_oldest(waiting: &Mutex<Self>) -> bool {
        let oldest = waiting.lock().unwrap_or_else(PoisonError::into_inner).queue.pop_front();
        oldest.is_some_and(|(_, tx)| tx.send(()).is_ok())
    }
}

/// Accepts until `stop` turns true.
pub async fn serve(listener: TcpListener, api: Arc<Api>, mut stop: watch::Receiver<bool>) {
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let gates = Arc::new(Gates {
        streams: Arc::new(Semaphore::new(MAX_STREAMS)),
        histories: Arc::new(Semaphore::new(MAX_HISTORIES)),
    });
    let waiting = Arc::new(Mutex::new(Waiting::default()));
    let mut last_accept_error: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and friends: wait for descriptors to come back, never give up.
                if last_accept_error.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    log::warn!("http: cannot accept a connection: {e}");
                    last_accept_error = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let mut permit = connections.clone().try_acquire_owned().ok();
        if permit.is_none() && Waiting::evict_oldest(&waiting) {
            // The evicted connection's task gives its slot back as soon as it runs.
            let freed = tokio::time::timeout(Duration::from_millis(200), connections.clone().acquire_owned());
            permit = freed.await.ok().and_then(Result::ok);
        }
        if let Some(permit) = permit {
            tokio::spawn(connection(stream, api.clone(), gates.clone(), waiting.clone(), permit));
        } else if let Ok(permit) = refusing.clone().try_acquire_owned() {
            let busy = Reply::error(503, format!("busy: {MAX_CONNECTIONS} connections are open; try again"));
            tokio::spawn(async move {
                refuse(stream, busy).await;
                drop(permit);
            });
        }
    }
}

/// One connection: its head checked here, then one request served by hyper.
async fn connection(
    mut stream: TcpStream,
    api: Arc<Api>,
    gates: Arc<Gates>,
    waiting: Arc<Mutex<Waiting>>,
    _permit: OwnedSemaphorePermit,
) {
    let (id, mut evicted) = Waiting::enter(&waiting);
    let head = read_head(&mut stream, &mut evicted).await;
    Waiting::leave(&waiting, id);
    let (head, is_stream) = match head {
        Ok(Some(head)) => head,
        Ok(None) => return,
        Err(reply) => return refuse(stream, reply).await,
    };
    let service = hyper::service::service_fn(move |request| handle(request, api.clone(), gates.clone()));
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .max_buf_size(4 * HEAD_MAX)
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .serve_connection(TokioIo::new(Prefixed { prefix: head, at: 0, inner: stream }), service);
    let limit = if is_stream { STREAM_LIFETIME + CONNECTION_MAX } else { CONNECTION_MAX };
    match tokio::time::timeout(limit, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log::debug!("http: {e}"),
        Err(_) => log::debug!("http: a connection outlived {} s and was closed", limit.as_secs()),
    }
}

/// Reads until the head is complete: the bytes read (head and maybe the start of the body) and
/// whether it asks for the stream; `None` when the client went away or another connection needed
/// the slot; the refusal when the head is refused or late.
async fn read_head(
    stream: &mut TcpStream,
    evicted: &mut oneshot::Receiver<()>,
) -> Result<Option<(Vec<u8>, bool)>, Reply> {
    let deadline = tokio::time::Instant::now() + HEAD_TIMEOUT;
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        match head::check(&head, MAX_BODY) {
            Head::Complete { stream } => return Ok(Some((head, stream))),
            Head::Refused(reply) => return Err(reply),
            Head::Partial => {}
        }
        // One byte past the cap is enough to know it is too long.
        let room = (HEAD_MAX + 1 - head.len()).min(chunk.len());
        let read = tokio::select! {
            _ = &mut *evicted => {
                log::debug!("http: a connection that sent no complete head made room for a new one");
                return Ok(None);
            }
            read = tokio::time::timeout_at(deadline, stream.read(&mut chunk[..room])) => read,
        };
        match read {
            Err(_) => {
                let late = format!("the request head did not arrive within {} s", HEAD_TIMEOUT.as_secs());
                return Err(Reply::error(408, late));
            }
            Ok(Ok(0) | Err(_)) => return Ok(None),
            Ok(Ok(n)) => head.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Writes `reply` and closes gently: the client gets to read it before the socket goes away,
/// however much it was still sending (read and thrown away, within a bound).
async fn refuse(mut stream: TcpStream, reply: Reply) {
    log::debug!("http: refused with {}", reply.status);
    let bytes = raw_response(&reply);
    let write = async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    };
    if !matches!(tokio::time::timeout(Duration::from_secs(2), write).await, Ok(Ok(()))) {
        return;
    }
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    let linger = tokio::time::Instant::now() + Duration::from_secs(1);
    while drained < 256 * 1024 {
        match tokio::time::timeout_at(linger, stream.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => return,
        }
    }
}

/// A response written by hand, for requests that never reach hyper.
fn raw_response(reply: &Reply) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        hyper::StatusCode::from_u16(reply.status).ok().and_then(|s| s.canonical_reason()).unwrap_or(""),
        reply.content_type,
        reply.body.len()
    );
    for (name, value) in SECURITY_HEADERS {
        out += &format!("{name}: {value}\r\n");
    }
    out += "\r\n";
    let mut out = out.into_bytes();
    out.extend_from_slice(&reply.body);
    out
}

const SECURITY_HEADERS: [(&str, &str); 4] = [
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    (
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
    ),
];

async fn handle(
    request: Request<HyperBody>,
    api: Arc<Api>,
    gates: Arc<Gates>,
) -> Result<Response<Body>, Infallible> {
    let method = request.method().as_str().to_owned();
    let url = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
    if url == "/api/v1/stream" || url.starts_with("/api/v1/stream?") {
        return Ok(stream(&method, api, &gates.streams));
    }
    // A history body lasts as long as its client reads: only so many at once.
    let history_permit = if url == "/api/v1/history" || url.starts_with("/api/v1/history?") {
        match gates.histories.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                let busy = format!("busy: {MAX_HISTORIES} history responses are being sent; try again");
                return Ok(response(Reply::error(503, busy)));
            }
        }
    } else {
        None
    };
    let authorization =
        request.headers().get(hyper::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = Limited::new(request.into_body(), MAX_BODY).collect();
    let body = match tokio::time::timeout(BODY_TIMEOUT, body).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Ok(response(Reply::error(413, format!("the body is above {MAX_BODY} bytes"))));
        }
        Ok(Err(e)) => return Ok(response(Reply::error(400, format!("cannot read the request body: {e}")))),
        Err(_) => {
            let late = format!("the body did not arrive within {} s", BODY_TIMEOUT.as_secs());
            return Ok(response(Reply::error(408, late)));
        }
    };
    // The router may wait (an order waits for its state file write): off the runtime's thread.
    let (m, u) = (method.clone(), url.clone());
    let routed = tokio::task::spawn_blocking(move || {
        api.route(&Incoming {
            method: &m,
            url: &u,
            authorization: authorization.as_deref(),
            body: Some(&body),
        })
    });
    let reply = routed.await.unwrap_or_else(|_| Reply::error(500, "the request handler failed"));
    if reply.status >= 400 {
        log::debug!("http: {method} {} -> {}", head::echo(&url), reply.status);
    }
    Ok(response_holding(reply, history_permit))
}

fn response(reply: Reply) -> Response<Body> {
    response_holding(reply, None)
}

/// The response of `reply`; `permit` lives as long as its body is being sent.
fn response_holding(reply: Reply, permit: Option<OwnedSemaphorePermit>) -> Response<Body> {
    let mut builder = Response::builder().status(reply.status).header("Content-Type", reply.content_type);
    for (name, value) in SECURITY_HEADERS {
        builder = builder.header(name, value);
    }
    if let Some(allow) = reply.allow {
        builder = builder.header("Allow", allow);
    }
    let body = match reply.tail {
        None => Full::new(Bytes::from(reply.body)).boxed(),
        Some(tail) => JoinedBody {
            left: (reply.body.len()
                + tail.items.iter().map(|i| i.len()).sum::<usize>()
                + tail.separator.len() * tail.items.len().saturating_sub(1)
                + tail.end.len()) as u64,
            head: Some(Bytes::from(reply.body)),
            items: tail.items.into_iter(),
            separator: tail.separator,
            end: Some(tail.end),
            first: true,
            _permit: permit,
        }
        .boxed(),
    };
    builder.body(body).unwrap_or_else(|e| {
        let mut r = Response::new(Full::new(Bytes::from(format!("{{\"error\":\"{e}\"}}"))).boxed());
        *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

/// `GET /api/v1/stream`: server-sent events, the status each time it changed, at most every
/// [`STREAM_PERIOD`].
#[allow(clippy::significant_drop_tightening, reason = "the permit moves into the body and lives with it")]
fn stream(method: &str, api: Arc<Api>, streams: &Arc<Semaphore>) -> Response<Body> {
    if method != "GET" {
        let refused = Reply::error(405, "/api/v1/stream answers GET only");
        return response(Reply { allow: Some("GET"), ..refused });
    }
    let Ok(permit) = streams.clone().try_acquire_owned() else {
        let busy = format!("{MAX_STREAMS} event streams are open already; poll /api/v1/status instead");
        return response(Reply::error(503, busy));
    };
    let events = StatusEvents {
        api,
        tick: tokio::time::interval(STREAM_PERIOD),
        last: None,
        sent: Instant::now(),
        ends: Instant::now() + STREAM_LIFETIME,
        hello: true,
        _permit: permit,
    };
    let mut r = Response::new(events.boxed());
    let headers = r.headers_mut();
    headers.insert("Content-Type", hyper::header::HeaderValue::from_static("text/event-stream"));
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, hyper::header::HeaderValue::from_static(value));
    }
    r
}

/// The body of an event stream: made a frame at a time, only when hyper can send it, so a
/// client that stops reading costs a timer, not memory.
struct StatusEvents {
    api: Arc<Api>,
    tick: tokio::time::Interval,
    last: Option<Vec<u8>>,
    sent: Instant,
    ends: Instant,
    hello: bool,
    _permit: OwnedSemaphorePermit,
}

impl http_body::Body for StatusEvents {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if std::mem::take(&mut self.hello) {
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"retry: 2000\n\n")))));
        }
        loop {
            ready!(self.tick.poll_tick(cx));
            if Instant::now() >= self.ends {
                return Poll::Ready(None);
            }
            let status = self.api.status_json();
            if self.last.as_ref() != Some(&status) {
                let mut event = b"event: status\ndata: ".to_vec();
                event.extend_from_slice(&status);
                event.extend_from_slice(b"\n\n");
                self.last = Some(status);
                self.sent = Instant::now();
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from(event)))));
            }
            if self.sent.elapsed() >= KEEP_ALIVE {
                self.sent = Instant::now();
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b": keep-alive\n\n")))));
            }
        }
    }
}

/// A body of shared pieces ([`crate::Joined`]), made a frame of about [`FRAME`] bytes at a time
/// when hyper can send it: a client that stops reading holds a few pointers and one frame, not
/// a copy of the whole body.
struct JoinedBody {
    /// Bytes still to send: the length is known, so the response has a `Content-Length`.
    left: u64,
    head: Option<Bytes>,
    items: std::vec::IntoIter<Arc<str>>,
    separator: &'static str,
    end: Option<&'static str>,
    first: bool,
    _permit: Option<OwnedSemaphorePermit>,
}

/// The size a [`JoinedBody`] frame grows to before it is sent.
const FRAME: usize = 16 << 10;

impl http_body::Body for JoinedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(head) = self.head.take() {
            self.left -= head.len() as u64;
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        let mut frame = Vec::new();
        while frame.len() < FRAME {
            let Some(item) = self.items.next() else { break };
            if !std::mem::take(&mut self.first) {
                frame.extend_from_slice(self.separator.as_bytes());
            }
            frame.extend_from_slice(item.as_bytes());
        }
        if frame.len() < FRAME {
            if let Some(end) = self.end.take() {
                frame.extend_from_slice(end.as_bytes());
            }
        }
        self.left = self.left.saturating_sub(frame.len() as u64);
        Poll::Ready((!frame.is_empty()).then(|| Ok(Frame::data(Bytes::from(frame)))))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left)
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0 && self.head.is_none()
    }
}

/// The bytes [`connection`] read while checking the head, then the socket.
struct Prefixed {
    prefix: Vec<u8>,
    at: usize,
    inner: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.at < this.prefix.len() {
            let n = buf.remaining().min(this.prefix.len() - this.at);
            buf.put_slice(&this.prefix[this.at..this.at + n]);
            this.at += n;
            if this.at == this.prefix.len() {
                this.prefix = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
