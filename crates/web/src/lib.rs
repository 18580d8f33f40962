//! pace2pylon's web UI, JSON API and Prometheus metrics.
//!
//! | route | what |
//! |---|---|
//! | `GET /` (and its `/app.js`, `/app.css`) | the page, embedded in the binary |
//! | `GET /api/v1/status` | everything the page shows |
//! | `GET /api/v1/events?limit=N` | recent events, newest last |
//! | `GET /api/v1/history?hours=N` | one-minute samples of the last N hours (1–48, default 24), oldest first |
//! | `POST /api/v1/control` | an operator's order; needs `Authorization: Bearer <token>` |
//! | `GET /metrics` | Prometheus text format |
//! | `GET /api/v1/stream` | server-sent events: the status each time it changes, at most twice a second |
//! | `GET /healthz` | 200 while the safety loop decides, 503 when it does not |
//!
//! The server runs on its own thread and only reads the daemon's shared state (briefly locking
//! it), so a slow or hostile client never holds up the safety loop. Every error is a JSON body
//! `{"error": "..."}` with a 4xx/5xx status, and every limit a client could push is bounded
//! (see the `server` module: head size, body size, time, connections).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod head;
mod metrics;
mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use daemon::Handle;
use daemon::control::{Control, Refused};

pub use metrics::render as render_metrics;

/// Request bodies above this are refused (413).
pub const MAX_BODY: usize = 64 * 1024;

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The address cannot be listened on (in use, not ours, malformed).
    #[error("cannot serve HTTP on {addr}: {why}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        why: String,
    },
    /// The server's thread or runtime cannot be started.
    #[error("cannot start the HTTP server: {0}")]
    Start(String),
}

/// What the server needs to know.
#[derive(Clone, Debug)]
pub struct Options {
    /// `address:port` to listen on (port 0 picks a free one; see [`Web::local_addr`]).
    pub listen: String,
    /// The bearer token for control; `None` refuses control with 403.
    pub token: Option<String>,
}

/// A running server: one thread with a current-thread tokio runtime; the daemon's threads never
/// wait on it.
#[derive(Debug)]
pub struct Web {
    addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    thread: JoinHandle<()>,
}

impl Web {
    /// Binds and starts the server's thread.
    ///
    /// # Errors
    /// [`Error::Bind`] when the address cannot be listened on, [`Error::Start`] when the thread
    /// or its runtime cannot be made.
    pub fn start(shared: Handle, options: Options) -> Result<Self, Error> {
        let bind = |why: String| Error::Bind { addr: options.listen.clone(), why };
        let listener = std::net::TcpListener::bind(&options.listen).map_err(|e| bind(e.to_string()))?;
        listener.set_nonblocking(true).map_err(|e| bind(e.to_string()))?;
        let addr = listener.local_addr().map_err(|e| bind(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(8)
            .enable_all()
            .build()
            .map_err(|e| Error::Start(e.to_string()))?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let api = Arc::new(Api { shared, token: options.token });
        let thread = std::thread::Builder::new()
            .name("http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => server::serve(listener, api, stopped).await,
                        Err(e) => log::error!("http: cannot listen: {e}"),
                    }
                });
            })
            .map_err(|e| Error::Start(e.to_string()))?;
        log::info!("web UI and API on http://{addr}/");
        Ok(Self { addr, stop, thread })
    }

    /// The address it listens on (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, ends every connection and closes the socket.
    pub fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.thread.join();
    }
}

/// One response before it goes on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Content type.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
    /// `Allow` header for 405.
    pub allow: Option<&'static str>,
    /// Shared pieces sent after `body`, a frame at a time as the client reads (a large body
    /// that many clients share, such as the history, is never copied whole per client).
    pub tail: Option<Joined>,
}

/// Pieces of a body sent one after the other: `items` joined by `separator`, then `end`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Joined {
    /// The pieces, shared.
    pub items: Vec<std::sync::Arc<str>>,
    /// Between two pieces.
    pub separator: &'static str,
    /// After the last.
    pub end: &'static str,
}

impl Reply {
    fn json(status: u16, value: &impl serde::Serialize) -> Self {
        let body = serde_json::to_vec(value)
            .unwrap_or_else(|e| format!("{{\"error\":\"cannot serialize: {e}\"}}").into_bytes());
        Self { status, content_type: "application/json", body, allow: None, tail: None }
    }

    fn error(status: u16, message: impl Into<String>) -> Self {
        Self::json(status, &serde_json::json!({ "error": message.into() }))
    }

    fn text(content_type: &'static str, body: &str) -> Self {
        Self { status: 200, content_type, body: body.as_bytes().to_vec(), allow: None, tail: None }
    }
}

/// A request as the router sees it.
#[derive(Clone, Debug)]
pub struct Incoming<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// Path and query.
    pub url: &'a str,
    /// The `Authorization` header, if any.
    pub authorization: Option<&'a str>,
    /// The body, or `None` when it was above [`MAX_BODY`].
    pub body: Option<&'a [u8]>,
}

/// The routes.
#[derive(Debug)]
pub struct Api {
    shared: Handle,
    token: Option<String>,
}

/// Compares without stopping at the first difference, so the time taken says nothing about
/// how much of a guessed token was right.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (k, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(k % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0
}

impl Api {
    /// The router over `shared`, with control allowed by `token`.
    pub fn new(shared: Handle, token: Option<String>) -> Self {
        Self { shared, token }
    }

    /// The status as the stream sends it (JSON).
    fn status_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.shared.status()).unwrap_or_default()
    }

    /// Answers one request.
    pub fn route(&self, r: &Incoming<'_>) -> Reply {
        let (path, query) = r.url.split_once('?').unwrap_or((r.url, ""));
        let get_only = |reply: fn(&Self, &str) -> Reply| match r.method {
            "GET" | "HEAD" => reply(self, query),
            _ => Reply { allow: Some("GET, HEAD"), ..Reply::error(405, format!("{path} answers GET only")) },
        };
        match path {
            "/" | "/index.html" => get_only(|_, _| Reply::text("text/html; charset=utf-8", INDEX_HTML)),
            "/app.js" => get_only(|_, _| Reply::text("text/javascript; charset=utf-8", APP_JS)),
            "/app.css" => get_only(|_, _| Reply::text("text/css; charset=utf-8", APP_CSS)),
            "/api/v1/status" => get_only(|api, _| Reply::json(200, &api.shared.status())),
            "/api/v1/events" => get_only(Self::events),
            "/api/v1/history" => get_only(Self::history),
            "/metrics" => get_only(|api, _| {
                Reply::text(
                    "text/plain; version=0.0.4; charset=utf-8",
                    &metrics::render(&api.shared.status()),
                )
            }),
            "/healthz" => get_only(|api, _| api.health()),
            "/api/v1/control" => match r.method {
                "POST" => self.control(r),
                _ => Reply {
                    allow: Some("POST"),
                    ..Reply::error(405, "/api/v1/control answers POST only, with a JSON body")
                },
            },
            _ => Reply::error(404, format!("no such page: {}; the API is under /api/v1/", head::echo(path))),
        }
    }

    fn events(&self, query: &str) -> Reply {
        let mut limit = 100;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("limit", v)) => match v.parse::<usize>() {
                    Ok(n) if (1..=1000).contains(&n) => limit = n,
                    _ => {
                        return Reply::error(
                            400,
                            format!("limit={}: give a number from 1 to 1000", head::echo(v)),
                        );
                    }
                },
                _ => {
                    return Reply::error(
                        400,
                        format!("unknown parameter '{}'; only limit=N is known", head::echo(pair)),
                    );
                }
            }
        }
        Reply::json(200, &serde_json::json!({ "events": self.shared.recent_events(limit) }))
    }

    fn history(&self, query: &str) -> Reply {
        let mut hours = 24;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("hours", v)) => match v.parse::<u32>() {
                    Ok(n) if (1..=48).contains(&n) => hours = n,
                    _ => {
                        return Reply::error(
                            400,
                            format!("hours={}: give a whole number from 1 to 48", head::echo(v)),
                        );
                    }
                },
                _ => {
                    return Reply::error(
                        400,
                        format!("unknown parameter '{}'; only hours=N is known", head::echo(pair)),
                    );
                }
            }
        }
        // The samples' JSON is shared with every other request: only the head is made here.
        let head =
            format!("{{\"interval_s\":{},\"hours\":{hours},\"samples\":[", daemon::history::INTERVAL_S);
        Reply {
            tail: Some(Joined { items: self.shared.history_encoded(hours), separator: ",", end: "]}" }),
            ..Reply::text("application/json", &head)
        }
    }

    fn health(&self) -> Reply {
        let status = self.shared.status();
        let max_age = (self.shared.config().safety.decision_max_age_s * 1000.0) as u64;
        let deciding = status.decision_age_ms.is_some_and(|a| a <= max_age);
        let body = serde_json::json!({
            "status": if deciding { "ok" } else { "not_deciding" },
            "decision_age_ms": status.decision_age_ms,
            "charge_enabled": status.charge_enabled,
            "discharge_enabled": status.discharge_enabled,
            "data_stale": status.data_stale,
        });
        Reply::json(if deciding { 200 } else { 503 }, &body)
    }

    fn control(&self, r: &Incoming<'_>) -> Reply {
        let Some(token) = &self.token else {
            return Reply::error(
                403,
                "control is disabled: set [http] token (or token_file, or PACE2PYLON_HTTP_TOKEN) to enable it",
            );
        };
        // The scheme is case-insensitive (RFC 7235 section 2.1).
        let offered = r
            .authorization
            .and_then(|a| a.trim_start().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        match offered {
            None => return Reply::error(401, "control needs the header 'Authorization: Bearer <token>'"),
            Some(t) if !same_secret(t.as_bytes(), token.as_bytes()) => {
                return Reply::error(401, "the bearer token is wrong");
            }
            Some(_) => {}
        }
        let Some(body) = r.body else {
            return Reply::error(413, format!("the body is above {MAX_BODY} bytes"));
        };
        let order = match Control::parse(body) {
            Ok(o) => o,
            Err(e) => return Reply::error(400, e.to_string()),
        };
        match self.shared.control(&order) {
            Ok(done) => Reply::json(200, &serde_json::json!({ "ok": true, "message": done })),
            Err(e @ Refused::BadRequest(_)) => Reply::error(400, e.to_string()),
            Err(e @ Refused::Conflict(_)) => Reply::error(409, e.to_string()),
            Err(e @ Refused::TooMany(_)) => Reply::error(429, e.to_string()),
            Err(e) => Reply::error(500, e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_compare_by_content_and_length() {
        assert!(same_secret(b"correct horse", b"correct horse"));
        assert!(!same_secret(b"correct hors", b"correct horse"));
        assert!(!same_secret(b"correct horsE", b"correct horse"));
        assert!(!same_secret(b"", b"x"));
        assert!(!same_secret(b"x", b""));
    }
}
