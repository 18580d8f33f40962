use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serialport::{ClearBuffer, SerialPort, TTYPort};

use crate::{Deframer, Endpoint, Error};

/// Counters of one link, for the UI and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Valid frames received.
    pub frames: u64,
    /// Requests that got no valid reply in time.
    pub timeouts: u64,
    /// Frames rejected by their check (checksum, CRC, envelope), or by their user for a layout
    /// that is not the reply asked for ([`Link::count_bad_frame`]).
    pub checksum_errors: u64,
    /// Connections made after the first one.
    pub reconnects: u64,
    /// Stale bytes dropped before a request.
    pub stale_bytes: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Whether the link is connected now.
    pub connected: bool,
    /// Bytes from a listening link's waiting peers that were no valid frame: counted, not
    /// obeyed (see [`Link::take_over_on`]).
    pub ignored_peer_bytes: u64,
}

enum Conn {
    Serial(TTYPort),
    Tcp(TcpStream),
}

/// First wait after a failure; doubled on each further failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Longest a TCP connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Silence on the line this long counts as an inter-frame gap (Modbus RTU's 3.5 characters are
/// 4 ms at 9600 baud; console servers forward in chunks, so the gap is generous).
const GAP: Duration = Duration::from_millis(50);
/// The longest a link drains stale bytes before a request (a flooding peer never runs dry).
const DRAIN_MAX: Duration = Duration::from_millis(50);
/// The most stale bytes drained before a request.
const DRAIN_MAX_BYTES: u64 = 64 << 10;
/// How often a listening link with a peer looks for a newer one.
const LISTEN_POLL: Duration = Duration::from_millis(200);
/// How often a listening link without a peer looks for one (an inverter that connects waits at
/// most this long before it is read).
const NO_PEER_POLL: Duration = Duration::from_millis(50);
/// Shortest read timeout handed to the OS (zero means "block forever" to it).
const MIN_READ: Duration = Duration::from_millis(1);

/// serialport's error as an `io::Error` carrying its description once.
fn serial_error(e: serialport::Error) -> io::Error {
    let kind = match e.kind {
        serialport::ErrorKind::Io(kind) => kind,
        serialport::ErrorKind::NoDevice => io::ErrorKind::NotFound,
        serialport::ErrorKind::InvalidInput => io::ErrorKind::InvalidInput,
        serialport::ErrorKind::Unknown => io::ErrorKind::Other,
    };
    io::Error::new(kind, e.description)
}

/// One blocking link. Not shared between threads: one poller owns it.
pub struct Link {
    endpoint: Endpoint,
    name: String,
    conn: Option<Conn>,
    listener: Option<TcpListener>,
    stats: Stats,
    connected_once: bool,
    retry_at: Option<Instant>,
    backoff: Duration,
    last_error: String,
    /// Bytes read but not yet taken by the deframer (at most one read's worth).
    pending: Vec<u8>,
    /// A listening link's other peers: connected, not answered until they speak.
    candidates: Vec<Candidate>,
    /// What a candidate said when it took over, read before anything else.
    taken_over: Vec<u8>,
    /// Whether the current peer has sent anything.
    conn_spoke: bool,
    /// Told every byte written and read (a capture).
    tap: Option<crate::capture::Tap>,
    /// A listening link's peer takes over only once it sent a valid frame of this framing.
    takeover: Option<fn() -> Box<dyn Deframer>>,
}

/// A peer of a listening link other than the one it answers (non-blocking socket).
struct Candidate {
    stream: TcpStream,
    spoke: bool,
    /// With a take-over framing: its frames so far, none valid yet.
    deframer: Option<Box<dyn Deframer>>,
    /// It sent bytes that were no valid frame: never promoted.
    garbage: bool,
}

impl Candidate {
    fn new(stream: TcpStream, spoke: bool, framing: Option<fn() -> Box<dyn Deframer>>) -> Self {
        Self { stream, spoke, deframer: framing.map(|f| f()), garbage: false }
    }
}

/// A listening link keeps at most this many peers besides the current one; beyond that the
/// oldest that never spoke is closed first.
const MAX_CANDIDATES: usize = 8;
/// Connections taken from the backlog per look at it (a burst of dead peers costs no timeouts).
const ACCEPT_BURST: usize = 256;
/// After a timeout the line counts as idle (a late reply over) once it has been quiet this long.
const IDLE: Duration = Duration::from_millis(100);
/// The longest a late reply is waited out after a timeout.
const IDLE_MAX: Duration = Duration::from_secs(1);

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("endpoint", &self.name).field("stats", &self.stats).finish()
    }
}

impl Link {
    /// A link to `endpoint`; nothing is opened until it is used.
    pub fn new(endpoint: Endpoint) -> Self {
        Self {
            name: endpoint.to_string(),
            endpoint,
            conn: None,
            listener: None,
            stats: Stats::default(),
            connected_once: false,
            retry_at: None,
            backoff: MIN_BACKOFF,
            last_error: String::new(),
            pending: Vec::new(),
            candidates: Vec::new(),
            taken_over: Vec::new(),
            conn_spoke: false,
            tap: None,
            takeover: None,
        }
    }

    /// On a listening link, a newer peer takes over only once it has sent a valid frame of
    /// `framing` (a request with a good checksum, a parseable slcan line); until then it waits,
    /// and what else it sends is counted ([`Stats::ignored_peer_bytes`]), never obeyed. Without
    /// this, any bytes make a peer take over.
    pub fn take_over_on(&mut self, framing: fn() -> Box<dyn Deframer>) {
        self.takeover = Some(framing);
    }

    /// Tells `tap` every byte this link writes and reads from now on (stale input it throws
    /// away included).
    pub fn set_tap(&mut self, tap: crate::capture::Tap) {
        self.tap = Some(tap);
    }

    fn tapped(&self, dir: crate::capture::Dir, bytes: &[u8]) {
        if let Some(tap) = &self.tap {
            tap(dir, bytes);
        }
    }

    /// Parses `url` into a link; nothing is opened until it is used.
    ///
    /// # Errors
    /// [`Error::Url`] when the URL is not a link.
    pub fn open(url: &str) -> Result<Self, Error> {
        Ok(Self::new(Endpoint::parse(url)?))
    }

    /// A link over an already open serial port (e.g. one side of a pty pair in a test).
    pub fn from_serial_port(port: TTYPort, path: &str, baud: u32) -> Self {
        let mut link = Self::new(Endpoint::Serial { path: path.to_owned(), baud });
        link.conn = Some(Conn::Serial(port));
        link.connected_once = true;
        link.stats.connected = true;
        link
    }

    /// The link's URL.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it goes.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Its counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// For a listening link, the address actually bound (port 0 picks a free one). Binds now.
    ///
    /// # Errors
    /// [`Error::Open`] when the address cannot be bound; `Ok(None)` for other links.
    pub fn local_addr(&mut self) -> Result<Option<std::net::SocketAddr>, Error> {
        if let Endpoint::TcpListen { .. } = self.endpoint {
            self.bind()?;
            return Ok(self.listener.as_ref().and_then(|l| l.local_addr().ok()));
        }
        Ok(None)
    }

    /// Sends `frame` and waits up to `timeout` for the first valid frame `deframer` yields. Stale
    /// input is dropped first.
    ///
    /// # Errors
    /// [`Error::Timeout`] (saying what did arrive), [`Error::Backoff`] right after a failure,
    /// [`Error::Open`], [`Error::Io`], [`Error::Closed`], [`Error::NoPeer`].
    pub fn request(
        &mut self,
        frame: &[u8],
        deframer: &mut dyn Deframer,
        timeout: Duration,
    ) -> Result<Vec<u8>, Error> {
        let deadline = Instant::now() + timeout;
        self.drop_stale(deframer)?;
        self.send(frame)?;
        let rejected_before = deframer.rejected();
        match self.receive(deframer, deadline)? {
            Some(reply) => Ok(reply),
            None => {
                self.stats.timeouts += 1;
                // A reply that comes late must not be taken for the next request's.
                self.wait_until_idle(deframer);
                if matches!(self.endpoint, Endpoint::TcpListen { .. }) {
                    self.promote_newest_candidate();
                }
                let rejected = deframer.rejected() - rejected_before;
                let detail = match deframer.last_rejection() {
                    Some(why) if rejected > 0 => format!(" ({rejected} bad frame(s); last: {why})"),
                    _ => String::new(),
                };
                Err(Error::Timeout { endpoint: self.name.clone(), after: timeout, detail })
            }
        }
    }

    /// Opens the connection now if it is not open (not during a backoff); for a listening link,
    /// takes a waiting peer.
    ///
    /// # Errors
    /// As [`Link::request`].
    pub fn connect(&mut self) -> Result<(), Error> {
        self.connected().map(|_| ())
    }

    /// Writes `frame` whole.
    ///
    /// # Errors
    /// As [`Link::request`].
    pub fn send(&mut self, frame: &[u8]) -> Result<(), Error> {
        let conn = self.connected()?;
        let result = match conn {
            Conn::Serial(p) => p.write_all(frame).and_then(|()| p.flush()),
            Conn::Tcp(s) => s.write_all(frame),
        };
        match result {
            Ok(()) => {
                self.stats.bytes_out += frame.len() as u64;
                self.tapped(crate::capture::Dir::Tx, frame);
                Ok(())
            }
            Err(e) => Err(self.fail_io(e)),
        }
    }

    /// Reads until `deframer` yields a valid frame (`Some`) or `deadline` passes (`None`).
    ///
    /// # Errors
    /// As [`Link::request`], except that a deadline without a frame is `Ok(None)`.
    pub fn receive(
        &mut self,
        deframer: &mut dyn Deframer,
        deadline: Instant,
    ) -> Result<Option<Vec<u8>>, Error> {
        let rejected_before = deframer.rejected();
        let result = self.receive_inner(deframer, deadline);
        self.stats.checksum_errors += deframer.rejected() - rejected_before;
        if let Ok(Some(_)) = result {
            self.stats.frames += 1;
        }
        result
    }

    fn receive_inner(
        &mut self,
        deframer: &mut dyn Deframer,
        deadline: Instant,
    ) -> Result<Option<Vec<u8>>, Error> {
        loop {
            // Bytes already read go to the deframer as it has room; a frame may complete first.
            loop {
                if let Some(frame) = deframer.next_frame() {
                    return Ok(Some(frame));
                }
                if self.pending.is_empty() {
                    break;
                }
                let k = deframer.push(&self.pending);
                self.pending.drain(..k);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let mut buf = [0u8; 1024];
            // A framing that needs gaps hears of every one; a listener looks for a new peer (an
            // inverter that reconnected) every LISTEN_POLL; anything else sleeps to the deadline.
            let wait = if deframer.needs_gap() {
                (deadline - now).min(GAP)
            } else if matches!(self.endpoint, Endpoint::TcpListen { .. }) {
                (deadline - now).min(LISTEN_POLL)
            } else {
                deadline - now
            };
            let n = self.read_into(&mut buf, wait)?;
            if n == 0 {
                // A quiet line: an inter-frame gap for the framings that need one.
                if let Some(frame) = deframer.gap() {
                    return Ok(Some(frame));
                }
            }
            self.pending.extend_from_slice(&buf[..n]);
        }
    }

    /// Reads whatever arrives within `timeout` (raw bytes, for sniffing); `Ok(0)` means nothing came.
    ///
    /// # Errors
    /// As [`Link::request`].
    pub fn read_raw(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, Error> {
        self.read_into(buf, timeout)
    }

    /// Counts a frame that passed its check but is not what was asked for (e.g. a late reply to
    /// another request, found by its layout) as a bad frame.
    pub fn count_bad_frame(&mut self) {
        self.stats.checksum_errors += 1;
    }

    /// Closes the connection (a listener keeps listening); the next use reconnects at once.
    pub fn disconnect(&mut self) {
        self.conn = None;
        self.stats.connected = false;
    }

    fn read_into(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            self.accept_pending();
            if !self.taken_over.is_empty() {
                let n = buf.len().min(self.taken_over.len());
                buf[..n].copy_from_slice(&self.taken_over[..n]);
                self.taken_over.drain(..n);
                self.stats.bytes_in += n as u64;
                self.tapped(crate::capture::Dir::Rx, &buf[..n]);
                return Ok(n);
            }
            let remaining = deadline.saturating_duration_since(Instant::now()).max(MIN_READ);
            let result = match self.conn.as_mut() {
                Some(Conn::Serial(p)) => {
                    p.set_timeout(remaining).map_err(io::Error::from).and_then(|()| p.read(buf))
                }
                Some(Conn::Tcp(s)) => s.set_read_timeout(Some(remaining)).and_then(|()| s.read(buf)),
                None if matches!(self.endpoint, Endpoint::TcpListen { .. }) => {
                    // No peer yet: wait for one, up to the deadline.
                    self.bind()?;
                    if Instant::now() >= deadline {
                        return Ok(0);
                    }
                    std::thread::sleep(NO_PEER_POLL.min(remaining));
                    continue;
                }
                None => {
                    self.connected()?;
                    continue;
                }
            };
            return match result {
                Ok(0) if matches!(self.conn, Some(Conn::Tcp(_))) => {
                    self.disconnect();
                    self.note_failure("connection closed by the peer".into());
                    Err(Error::Closed { endpoint: self.name.clone() })
                }
                Ok(n) => {
                    self.stats.bytes_in += n as u64;
                    self.conn_spoke = true;
                    self.tapped(crate::capture::Dir::Rx, &buf[..n]);
                    Ok(n)
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => Ok(0),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(self.fail_io(e)),
            };
        }
    }

    /// Reads and throws away whatever arrives until the line has been quiet for [`IDLE`] (at most
    /// [`IDLE_MAX`] and [`DRAIN_MAX_BYTES`]), counting it as stale.
    fn wait_until_idle(&mut self, deframer: &mut dyn Deframer) {
        let until = Instant::now() + IDLE_MAX;
        let mut buf = [0u8; 1024];
        self.stats.stale_bytes += (deframer.clear() + self.pending.len()) as u64;
        self.pending.clear();
        let mut read = 0u64;
        // A flood is never idle: the wait also ends after a bound of bytes.
        while Instant::now() < until && read < DRAIN_MAX_BYTES {
            match self.read_into(&mut buf, IDLE) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    read += n as u64;
                    self.stats.stale_bytes += n as u64;
                }
            }
        }
    }

    /// Drops bytes that arrived before a request (a late reply to an earlier one, noise).
    fn drop_stale(&mut self, deframer: &mut dyn Deframer) -> Result<(), Error> {
        self.stats.stale_bytes += (deframer.clear() + self.pending.len()) as u64;
        self.pending.clear();
        self.accept_pending();
        let Some(conn) = self.conn.as_mut() else { return Ok(()) };
        let mut dropped = 0u64;
        match conn {
            Conn::Serial(p) => {
                dropped += u64::from(p.bytes_to_read().unwrap_or(0));
                let _ = p.clear(ClearBuffer::Input);
            }
            Conn::Tcp(s) => {
                if s.set_nonblocking(true).is_ok() {
                    let mut buf = [0u8; 512];
                    // A peer that floods never runs dry: draining stops after a bound of time
                    // and bytes, and the request goes out all the same.
                    let until = Instant::now() + DRAIN_MAX;
                    while dropped < DRAIN_MAX_BYTES && Instant::now() < until {
                        match s.read(&mut buf) {
                            Ok(0) => {
                                let _ = s.set_nonblocking(false);
                                self.disconnect();
                                self.note_failure("connection closed by the peer".into());
                                return Err(Error::Closed { endpoint: self.name.clone() });
                            }
                            Ok(n) => {
                                dropped += n as u64;
                                if let Some(tap) = &self.tap {
                                    tap(crate::capture::Dir::Rx, &buf[..n]);
                                }
                            }
                            Err(_) => break,
                        }
                    }
                    let _ = s.set_nonblocking(false);
                }
            }
        }
        self.stats.stale_bytes += dropped;
        Ok(())
    }

    /// The open connection, opening it if needed (not during a backoff).
    fn connected(&mut self) -> Result<&mut Conn, Error> {
        self.accept_pending();
        if self.conn.is_none() {
            if let Endpoint::TcpListen { .. } = self.endpoint {
                self.bind()?;
                return Err(Error::NoPeer { endpoint: self.name.clone() });
            }
            if let Some(at) = self.retry_at {
                let now = Instant::now();
                if now < at {
                    return Err(Error::Backoff {
                        endpoint: self.name.clone(),
                        last: self.last_error.clone(),
                        retry_in: at - now,
                    });
                }
            }
            let conn = match self.open_conn() {
                Ok(c) => c,
                Err(e) => {
                    let msg = e.to_string();
                    self.note_failure(msg);
                    return Err(Error::Open { endpoint: self.name.clone(), source: e });
                }
            };
            self.install(conn);
        }
        // Just installed or already there.
        self.conn.as_mut().ok_or_else(|| Error::NoPeer { endpoint: self.name.clone() })
    }

    fn open_conn(&self) -> io::Result<Conn> {
        match &self.endpoint {
            Endpoint::Serial { path, baud } => {
                let port = serialport::new(path, *baud)
                    .data_bits(serialport::DataBits::Eight)
                    .parity(serialport::Parity::None)
                    .stop_bits(serialport::StopBits::One)
                    .flow_control(serialport::FlowControl::None)
                    .timeout(MIN_BACKOFF)
                    .open_native()
                    .map_err(serial_error)?;
                Ok(Conn::Serial(port))
            }
            Endpoint::Tcp { addr } => {
                let mut last =
                    io::Error::new(io::ErrorKind::NotFound, format!("{addr} resolves to no address"));
                for sa in addr.to_socket_addrs()? {
                    match TcpStream::connect_timeout(&sa, CONNECT_TIMEOUT) {
                        Ok(s) => {
                            let _ = s.set_nodelay(true);
                            return Ok(Conn::Tcp(s));
                        }
                        Err(e) => last = e,
                    }
                }
                Err(last)
            }
            Endpoint::TcpListen { .. } => {
                Err(io::Error::new(io::ErrorKind::NotConnected, "no peer connected"))
            }
        }
    }

    fn install(&mut self, conn: Conn) {
        if self.connected_once {
            self.stats.reconnects += 1;
        }
        self.connected_once = true;
        self.conn = Some(conn);
        self.conn_spoke = false;
        self.stats.connected = true;
        self.retry_at = None;
        self.backoff = MIN_BACKOFF;
    }

    fn bind(&mut self) -> Result<(), Error> {
        if self.listener.is_some() {
            return Ok(());
        }
        let Endpoint::TcpListen { addr } = &self.endpoint else { return Ok(()) };
        let listener = TcpListener::bind(addr.as_str())
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|source| Error::Open { endpoint: self.name.clone(), source })?;
        self.listener = Some(listener);
        Ok(())
    }

    /// A listening link takes every waiting peer from the backlog at once. The first one is
    /// answered; the others wait as candidates, and one that speaks takes over (a converter that
    /// reconnects has usually lost the old connection without a FIN), the previous peer becoming a
    /// candidate in turn. A candidate that closes is dropped, so connect/disconnect churn costs one
    /// look per peer and never displaces the master that stays.
    fn accept_pending(&mut self) {
        if !matches!(self.endpoint, Endpoint::TcpListen { .. }) {
            return;
        }
        if self.bind().is_err() {
            return;
        }
        let Some(listener) = self.listener.as_ref() else { return };
        let mut accepted = Vec::new();
        while accepted.len() < ACCEPT_BURST {
            match listener.accept() {
                Ok((stream, _)) => accepted.push(stream),
                Err(_) => break,
            }
        }
        for stream in accepted {
            let _ = stream.set_nodelay(true);
            if self.conn.is_none() {
                let _ = stream.set_nonblocking(false);
                self.install(Conn::Tcp(stream));
            } else if stream.set_nonblocking(true).is_ok() {
                self.candidates.push(Candidate::new(stream, false, self.takeover));
            }
        }
        while self.candidates.len() > MAX_CANDIDATES {
            let k = self.candidates.iter().position(|c| c.garbage || !c.spoke).unwrap_or(0);
            self.candidates.remove(k);
        }
        let mut k = 0;
        let mut buf = [0u8; 1024];
        while k < self.candidates.len() {
            match self.candidates[k].stream.read(&mut buf) {
                Ok(0) => drop(self.candidates.remove(k)),
                Ok(n) => {
                    let candidate = &mut self.candidates[k];
                    let said = match candidate.deframer.as_mut() {
                        None => buf[..n].to_vec(),
                        Some(deframer) => {
                            deframer.push(&buf[..n]);
                            match deframer.next_frame() {
                                Some(frame) => frame,
                                None => {
                                    // Not (yet) a valid frame: it waits, is never promoted, and
                                    // its bytes are counted.
                                    candidate.garbage = true;
                                    self.stats.ignored_peer_bytes += n as u64;
                                    k += 1;
                                    continue;
                                }
                            }
                        }
                    };
                    let speaker = self.candidates.remove(k);
                    if speaker.stream.set_nonblocking(false).is_err() {
                        continue;
                    }
                    if let Some(Conn::Tcp(old)) = self.conn.take() {
                        if old.set_nonblocking(true).is_ok() {
                            self.candidates.push(Candidate::new(old, self.conn_spoke, self.takeover));
                        }
                    }
                    self.pending.clear();
                    self.taken_over = said;
                    self.install(Conn::Tcp(speaker.stream));
                    self.conn_spoke = true;
                    return;
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {
                    k += 1
                }
                Err(_) => drop(self.candidates.remove(k)),
            }
        }
        if self.conn.is_none() {
            self.promote_newest_candidate();
        }
    }

    /// The newest candidate becomes the peer (the current one, if any, waits as a candidate):
    /// when the peer left, or did not answer a request (a master on a listening link is never
    /// spoken to first, so its peers are tried newest first).
    fn promote_newest_candidate(&mut self) {
        // One that sent garbage is never promoted.
        let Some(k) = self.candidates.iter().rposition(|c| !c.garbage) else { return };
        let newest = self.candidates.remove(k);
        if newest.stream.set_nonblocking(false).is_err() {
            return;
        }
        if let Some(Conn::Tcp(old)) = self.conn.take() {
            if old.set_nonblocking(true).is_ok() {
                self.candidates.insert(0, Candidate::new(old, self.conn_spoke, self.takeover));
            }
        }
        self.pending.clear();
        self.install(Conn::Tcp(newest.stream));
    }

    fn fail_io(&mut self, e: io::Error) -> Error {
        self.disconnect();
        self.note_failure(e.to_string());
        Error::Io { endpoint: self.name.clone(), source: e }
    }

    fn note_failure(&mut self, why: String) {
        self.last_error = why;
        if matches!(self.endpoint, Endpoint::TcpListen { .. }) {
            return; // the peer reconnects to us; nothing to back off from
        }
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }
}
