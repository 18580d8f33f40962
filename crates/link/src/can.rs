//! CAN buses behind the link conventions: slcan adapters on a serial port or socket, and (with
//! the `socketcan` feature, on Linux) SocketCAN interfaces.
//!
//! | URL                                        | what                                           |
//! |--------------------------------------------|------------------------------------------------|
//! | `slcan:///dev/ttyACM0`                     | a USB-CAN adapter speaking slcan (CANable …)   |
//! | `slcan:///dev/ttyUSB0?baud=115200&bitrate=500000` | the same with its serial and CAN rates  |
//! | `slcan+tcp://192.168.1.20:4004`            | an slcan adapter behind a console server       |
//! | `slcan+tcp-listen://0.0.0.0:4004`          | slcan lines from whoever connects (a simulator) |
//! | `socketcan://can0`                         | a SocketCAN interface (`socketcan` feature)    |
//!
//! On every new connection an slcan bus first sets its adapter up (`C`, `S6`, `O`); the other
//! end's own set-up lines and acknowledgements are passed over, so two slcan hosts can also face
//! each other on one line (a test, a simulator).

use std::fmt;
use std::time::Instant;

use can_wire::CanFrame;
use can_wire::slcan;
pub use can_wire::slcan::Bitrate;

use crate::{Endpoint, Error, Link, SlcanDeframer, Stats};

/// The serial rate of an slcan adapter when the URL does not give one (USB adapters ignore it).
pub const SLCAN_DEFAULT_BAUD: u32 = 115_200;
/// The CAN bit rate when the URL does not give one: the Pylontech low-voltage bus.
pub const DEFAULT_BITRATE: u32 = 500_000;
/// The same as an slcan rate.
pub const DEFAULT_SLCAN_BITRATE: Bitrate = Bitrate::K500;

/// Where a CAN bus goes, parsed from its URL.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CanEndpoint {
    /// An slcan adapter on a line.
    Slcan {
        /// The line to the adapter.
        line: Endpoint,
        /// The CAN bit rate it is set to.
        bitrate: Bitrate,
    },
    /// A SocketCAN interface.
    SocketCan {
        /// Its name, e.g. `can0`.
        interface: String,
    },
}

fn url_error(url: &str, reason: impl Into<String>) -> Error {
    Error::Url { url: url.to_owned(), reason: reason.into() }
}

impl CanEndpoint {
    /// Parses a CAN bus URL.
    ///
    /// # Errors
    /// [`Error::Url`] naming the problem.
    pub fn parse(url: &str) -> Result<Self, Error> {
        let url = url.trim();
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            url_error(
                url,
                "not a CAN bus; use slcan:///dev/ttyACM0, slcan+tcp://host:port or socketcan://can0",
            )
        })?;
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        if scheme == "socketcan" {
            if rest.is_empty() || rest.contains('/') {
                return Err(url_error(
                    url,
                    "a SocketCAN bus is named by its interface, e.g. socketcan://can0",
                ));
            }
            if let Some(q) = query {
                return Err(url_error(url, format!("unknown option '{q}'; socketcan:// takes none")));
            }
            return Ok(Self::SocketCan { interface: rest.to_owned() });
        }
        let transport = match scheme {
            "slcan" => "serial",
            "slcan+tcp" => "tcp",
            "slcan+tcp-listen" => "tcp-listen",
            other => {
                return Err(url_error(
                    url,
                    format!(
                        "unknown scheme '{other}'; use slcan://, slcan+tcp://, slcan+tcp-listen:// or socketcan://"
                    ),
                ));
            }
        };
        let (mut baud, mut bps) = (SLCAN_DEFAULT_BAUD, DEFAULT_BITRATE);
        for pair in query.into_iter().flat_map(|q| q.split('&')).filter(|p| !p.is_empty()) {
            let number = |v: &str, what: &str| {
                v.parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| url_error(url, format!("{what} '{v}' is not a positive number")))
            };
            match pair.split_once('=') {
                Some(("bitrate", v)) => bps = number(v, "bitrate")?,
                Some(("baud", v)) if transport == "serial" => baud = number(v, "baud")?,
                _ => {
                    let allowed = if transport == "serial" { "baud=N and bitrate=N" } else { "bitrate=N" };
                    return Err(url_error(
                        url,
                        format!("unknown option '{pair}'; the options are {allowed}"),
                    ));
                }
            }
        }
        let bitrate = Bitrate::from_bps(bps).ok_or_else(|| {
            url_error(
                url,
                format!(
                    "bitrate {bps} has no slcan code; use 10000, 20000, 50000, 100000, 125000, 250000, 500000, 800000 or 1000000"
                ),
            )
        })?;
        let line_url = match transport {
            "serial" => format!("serial://{rest}?baud={baud}"),
            other => format!("{other}://{rest}"),
        };
        let line = Endpoint::parse(&line_url).map_err(|e| match e {
            Error::Url { reason, .. } => url_error(url, reason),
            other => other,
        })?;
        Ok(Self::Slcan { line, bitrate })
    }
}

impl fmt::Display for CanEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rate = |b: &Bitrate| {
            if b.bps() == DEFAULT_BITRATE { String::new() } else { format!("bitrate={}", b.bps()) }
        };
        match self {
            Self::SocketCan { interface } => write!(f, "socketcan://{interface}"),
            Self::Slcan { line, bitrate } => {
                let rate = rate(bitrate);
                match line {
                    Endpoint::Serial { path, baud } => {
                        let mut options = Vec::new();
                        if *baud != SLCAN_DEFAULT_BAUD {
                            options.push(format!("baud={baud}"));
                        }
                        if !rate.is_empty() {
                            options.push(rate);
                        }
                        write!(f, "slcan://{path}")?;
                        if !options.is_empty() {
                            write!(f, "?{}", options.join("&"))?;
                        }
                        Ok(())
                    }
                    Endpoint::Tcp { addr } => write!(f, "slcan+tcp://{addr}{}", query(&rate)),
                    Endpoint::TcpListen { addr } => write!(f, "slcan+tcp-listen://{addr}{}", query(&rate)),
                }
            }
        }
    }
}

fn query(options: &str) -> String {
    if options.is_empty() { String::new() } else { format!("?{options}") }
}

/// A CAN bus: frames out, frames in. Not shared between threads: one driver owns it.
#[derive(Debug)]
pub struct CanBus {
    name: String,
    transport: Transport,
    /// Told every frame of a SocketCAN bus, as its slcan line (an slcan bus taps its link).
    #[cfg_attr(not(all(feature = "socketcan", target_os = "linux")), allow(dead_code))]
    tap: TapSlot,
}

/// A tap, or none (shown as whether there is one).
#[derive(Default)]
struct TapSlot(Option<crate::capture::Tap>);

impl fmt::Debug for TapSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", if self.0.is_some() { "tapped" } else { "untapped" })
    }
}

enum Transport {
    Slcan(Box<Slcan>),
    #[cfg(all(feature = "socketcan", target_os = "linux"))]
    SocketCan(socket::Bus),
}

struct Slcan {
    link: Link,
    deframer: SlcanDeframer,
    bitrate: Bitrate,
    /// The connection the adapter was last set up on.
    set_up_for: Option<u64>,
}

impl Slcan {
    fn new(mut link: Link, bitrate: Bitrate) -> Box<Self> {
        // On a listening line, a newer peer takes over only with a parseable slcan line.
        link.take_over_on(|| Box::new(SlcanDeframer::new()));
        Box::new(Self { link, deframer: SlcanDeframer::new(), bitrate, set_up_for: None })
    }

    /// Sets the adapter up once per connection.
    fn set_up(&mut self) -> Result<(), Error> {
        self.link.connect()?;
        let now = connection(&self.link.stats());
        if now != self.set_up_for {
            self.link.send(&slcan::open_lines(self.bitrate))?;
            self.set_up_for = now;
        }
        Ok(())
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Slcan(bus) => f.debug_tuple("Slcan").field(&bus.link).finish(),
            #[cfg(all(feature = "socketcan", target_os = "linux"))]
            Self::SocketCan(bus) => f.debug_tuple("SocketCan").field(bus).finish(),
        }
    }
}

/// Which connection of a link this is (0 before the first).
fn connection(stats: &Stats) -> Option<u64> {
    stats.connected.then_some(stats.reconnects + 1)
}

impl CanBus {
    /// Parses `url` into a bus; nothing is opened until it is used.
    ///
    /// # Errors
    /// [`Error::Url`] when the URL is not a CAN bus, or names SocketCAN in a build without it.
    pub fn open(url: &str) -> Result<Self, Error> {
        Self::new(CanEndpoint::parse(url)?)
    }

    /// A bus to `endpoint`; nothing is opened until it is used.
    ///
    /// # Errors
    /// [`Error::Url`] for SocketCAN in a build without the `socketcan` feature.
    pub fn new(endpoint: CanEndpoint) -> Result<Self, Error> {
        let name = endpoint.to_string();
        let transport = match endpoint {
            CanEndpoint::Slcan { line, bitrate } => Transport::Slcan(Slcan::new(Link::new(line), bitrate)),
            #[cfg(all(feature = "socketcan", target_os = "linux"))]
            CanEndpoint::SocketCan { interface } => Transport::SocketCan(socket::Bus::new(interface, &name)),
            #[cfg(not(all(feature = "socketcan", target_os = "linux")))]
            CanEndpoint::SocketCan { .. } => {
                return Err(url_error(
                    &name,
                    "this build has no SocketCAN support; build with `--features socketcan` (Linux), or use an slcan adapter",
                ));
            }
        };
        Ok(Self { name, transport, tap: TapSlot::default() })
    }

    /// An slcan bus over an already open link (e.g. one side of a pty pair in a test).
    pub fn slcan_over(link: Link, bitrate: Bitrate) -> Self {
        let name = match link.endpoint() {
            Endpoint::Serial { path, .. } => format!("slcan://{path}"),
            Endpoint::Tcp { addr } => format!("slcan+tcp://{addr}"),
            Endpoint::TcpListen { addr } => format!("slcan+tcp-listen://{addr}"),
        };
        Self { name, transport: Transport::Slcan(Slcan::new(link, bitrate)), tap: TapSlot::default() }
    }

    /// Tells `tap` everything this bus moves from now on: an slcan adapter's bytes as they go
    /// over its line, a SocketCAN interface's frames as slcan lines.
    pub fn set_tap(&mut self, tap: crate::capture::Tap) {
        match &mut self.transport {
            Transport::Slcan(bus) => bus.link.set_tap(tap),
            #[cfg(all(feature = "socketcan", target_os = "linux"))]
            Transport::SocketCan(_) => self.tap = TapSlot(Some(tap)),
        }
    }

    #[cfg(all(feature = "socketcan", target_os = "linux"))]
    fn tapped(&self, dir: crate::capture::Dir, frame: &CanFrame) {
        if let Some(tap) = &self.tap.0 {
            let mut line = Vec::with_capacity(32);
            slcan::encode(frame, &mut line);
            tap(dir, &line);
        }
    }

    /// The bus's URL.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its counters: `frames` counts frames received, `checksum_errors` lines that were not frames.
    pub fn stats(&self) -> Stats {
        match &self.transport {
            Transport::Slcan(bus) => bus.link.stats(),
            #[cfg(all(feature = "socketcan", target_os = "linux"))]
            Transport::SocketCan(bus) => bus.stats(),
        }
    }

    /// For an slcan bus on a listening link, the address bound (binds now).
    ///
    /// # Errors
    /// [`Error::Open`] when the address cannot be bound.
    pub fn local_addr(&mut self) -> Result<Option<std::net::SocketAddr>, Error> {
        match &mut self.transport {
            Transport::Slcan(bus) => bus.link.local_addr(),
            #[cfg(all(feature = "socketcan", target_os = "linux"))]
            Transport::SocketCan(_) => Ok(None),
        }
    }

    /// Sends one frame.
    ///
    /// # Errors
    /// As [`Link::send`]: the bus cannot be opened or written; it is reopened on the next use.
    pub fn send(&mut self, frame: &CanFrame) -> Result<(), Error> {
        match &mut self.transport {
            Transport::Slcan(bus) => {
                bus.set_up()?;
                let mut line = Vec::with_capacity(32);
                slcan::encode(frame, &mut line);
                bus.link.send(&line)
            }
            #[cfg(all(feature = "socketcan", target_os = "linux"))]
            Transport::SocketCan(bus) => {
                bus.send(frame)?;
                self.tapped(crate::capture::Dir::Tx, frame);
                Ok(())
            }
        }
    }

    /// Waits until `deadline` for the next frame; `Ok(None)` when none came.
    ///
    /// # Errors
    /// As [`Link::receive`].
    pub fn receive(&mut self, deadline: Instant) -> Result<Option<CanFrame>, Error> {
        match &mut self.transport {
            Transport::Slcan(bus) => {
                bus.set_up()?;
                let line = bus.link.receive(&mut bus.deframer, deadline)?;
                // The deframer hands out canonical frame lines only.
                Ok(line.and_then(|l| slcan::parse_frame(l.strip_suffix(b"\r").unwrap_or(&l)).ok()))
            }
            #[cfg(all(feature = "socketcan", target_os = "linux"))]
            Transport::SocketCan(bus) => {
                let frame = bus.receive(deadline)?;
                if let Some(f) = &frame {
                    self.tapped(crate::capture::Dir::Rx, f);
                }
                Ok(frame)
            }
        }
    }

    /// Closes the bus (an slcan adapter is told `C` first); the next use reopens it.
    pub fn close(&mut self) {
        match &mut self.transport {
            Transport::Slcan(bus) => {
                if bus.set_up_for.is_some() {
                    let _ = bus.link.send(slcan::CLOSE);
                }
                bus.link.disconnect();
                bus.set_up_for = None;
            }
            #[cfg(all(feature = "socketcan", target_os = "linux"))]
            Transport::SocketCan(bus) => bus.close(),
        }
    }
}

#[cfg(all(feature = "socketcan", target_os = "linux"))]
mod socket {
    use std::time::{Duration, Instant};

    use can_wire::{CanFrame, CanId};
    use socketcan::{EmbeddedFrame, ExtendedId, Socket, StandardId};

    use crate::{Error, Stats};

    pub(super) struct Bus {
        interface: String,
        name: String,
        socket: Option<socketcan::CanSocket>,
        stats: Stats,
    }

    impl std::fmt::Debug for Bus {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Bus").field("interface", &self.interface).field("stats", &self.stats).finish()
        }
    }

    impl Bus {
        pub(super) fn new(interface: String, name: &str) -> Self {
            Self { interface, name: name.to_owned(), socket: None, stats: Stats::default() }
        }

        pub(super) fn stats(&self) -> Stats {
            self.stats
        }

        fn socket(&mut self) -> Result<&socketcan::CanSocket, Error> {
            match &mut self.socket {
                Some(socket) => Ok(socket),
                slot @ None => {
                    let socket = socketcan::CanSocket::open(&self.interface)
                        .map_err(|source| Error::Open { endpoint: self.name.clone(), source })?;
                    if self.stats.frames > 0 || self.stats.bytes_out > 0 {
                        self.stats.reconnects += 1;
                    }
                    self.stats.connected = true;
                    Ok(slot.insert(socket))
                }
            }
        }

        fn fail(&mut self, source: std::io::Error) -> Error {
            self.socket = None;
            self.stats.connected = false;
            Error::Io { endpoint: self.name.clone(), source }
        }

        pub(super) fn send(&mut self, frame: &CanFrame) -> Result<(), Error> {
            let id: socketcan::Id = match frame.id() {
                CanId::Standard(id) => StandardId::new(id).map(Into::into),
                CanId::Extended(id) => ExtendedId::new(id).map(Into::into),
            }
            .ok_or_else(|| Error::Io {
                endpoint: self.name.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "CAN id out of range"),
            })?;
            let out = if frame.is_remote() {
                socketcan::CanFrame::new_remote(id, frame.len())
            } else {
                socketcan::CanFrame::new(id, frame.data())
            };
            let Some(out) = out else {
                return Err(Error::Io {
                    endpoint: self.name.clone(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a classic CAN frame"),
                });
            };
            let result = self.socket()?.write_frame(&out);
            match result {
                Ok(()) => {
                    self.stats.bytes_out += frame.len() as u64;
                    Ok(())
                }
                Err(e) => Err(self.fail(e)),
            }
        }

        pub(super) fn receive(&mut self, deadline: Instant) -> Result<Option<CanFrame>, Error> {
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(None);
                }
                let result = self.socket()?.read_frame_timeout(left.max(Duration::from_millis(1)));
                let frame = match result {
                    Ok(frame) => frame,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        return Ok(None);
                    }
                    Err(e) => return Err(self.fail(e)),
                };
                let id = match frame.id() {
                    socketcan::Id::Standard(id) => CanId::Standard(id.as_raw()),
                    socketcan::Id::Extended(id) => CanId::Extended(id.as_raw()),
                };
                let ours = match frame {
                    socketcan::CanFrame::Data(_) => CanFrame::new(id, frame.data()).ok(),
                    socketcan::CanFrame::Remote(_) => CanFrame::remote(id, frame.dlc() as u8).ok(),
                    // Bus errors are the controller's, not a frame.
                    socketcan::CanFrame::Error(_) => None,
                };
                if let Some(ours) = ours {
                    self.stats.frames += 1;
                    self.stats.bytes_in += ours.len() as u64;
                    return Ok(Some(ours));
                }
                self.stats.checksum_errors += 1;
            }
        }

        pub(super) fn close(&mut self) {
            self.socket = None;
            self.stats.connected = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses_and_prints_back() {
        for (url, want) in [
            ("slcan:///dev/ttyACM0", "slcan:///dev/ttyACM0"),
            (
                "slcan:///dev/ttyUSB0?baud=9600&bitrate=250000",
                "slcan:///dev/ttyUSB0?baud=9600&bitrate=250000",
            ),
            ("slcan+tcp://10.0.0.5:4004", "slcan+tcp://10.0.0.5:4004"),
            ("slcan+tcp-listen://127.0.0.1:0?bitrate=500000", "slcan+tcp-listen://127.0.0.1:0"),
            ("socketcan://can0", "socketcan://can0"),
        ] {
            assert_eq!(CanEndpoint::parse(url).unwrap().to_string(), want, "{url}");
        }
        assert_eq!(
            CanEndpoint::parse("slcan:///dev/ttyACM0").unwrap(),
            CanEndpoint::Slcan {
                line: Endpoint::Serial { path: "/dev/ttyACM0".into(), baud: 115_200 },
                bitrate: Bitrate::K500
            }
        );
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, says) in [
            ("/dev/ttyACM0", "not a CAN bus"),
            ("can://x", "unknown scheme 'can'"),
            ("slcan:///dev/ttyACM0?bitrate=33", "bitrate 33 has no slcan code"),
            ("slcan:///dev/ttyACM0?speed=1", "unknown option 'speed=1'"),
            ("slcan+tcp://host:4004?baud=9600", "unknown option 'baud=9600'; the options are bitrate=N"),
            ("slcan+tcp://host", "missing ':port'"),
            ("slcan://ttyACM0", "absolute device path"),
            ("socketcan://", "named by its interface"),
        ] {
            let e = CanEndpoint::parse(url).unwrap_err().to_string();
            assert!(e.starts_with(url) && e.contains(says), "{url}: {e}");
        }
    }
}
