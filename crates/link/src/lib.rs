//! Blocking links to serial lines, the one crate that touches serial ports and sockets.
//!
//! A [`Link`] is made from one URL:
//!
//! | URL                                   | what                                                  |
//! |---------------------------------------|-------------------------------------------------------|
//! | `/dev/ttyUSB0`                        | a local serial port, 9600 8N1                         |
//! | `serial:///dev/ttyUSB0?baud=19200`    | the same with another baud rate                       |
//! | `tcp://192.168.1.20:4002`             | a raw TCP port of a console server (ser2net style)    |
//! | `tcp-listen://0.0.0.0:4023`           | answer one peer; newer ones wait, one that speaks takes over |
//!
//! ```text
//!  request(frame, deframer, timeout)
//!    connect if needed (backoff after failures) ─► drop stale input ─► write ─► read until the
//!    deframer yields a valid frame or the deadline passes (frames that fail their check are counted)
//! ```
//!
//! Framing is a [`Deframer`]: [`AsciiDeframer`] for the `~…CR` protocols (Pace, Pylontech) and
//! [`RtuDeframer`] for Modbus RTU. A failure never panics and never blocks past the deadline: the
//! caller gets an [`Error`] naming the link, e.g. `tcp://10.0.0.5:4002: no reply within 1.0 s`, and
//! the next call reconnects.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod can;
pub mod capture;
mod deframe;
mod endpoint;
mod link;

pub use can::{CanBus, CanEndpoint};
pub use deframe::{AsciiDeframer, Deframer, RtuDeframer, SlcanDeframer};
pub use endpoint::{DEFAULT_BAUD, Endpoint};
pub use link::{Link, Stats};

use std::time::Duration;

/// What went wrong on a link. Every message starts with the link's URL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL cannot be used.
    #[error("{url}: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Opening the port, connecting or binding failed.
    #[error("{endpoint}: cannot open: {source}")]
    Open {
        /// The link.
        endpoint: String,
        /// Why.
        source: std::io::Error,
    },
    /// No valid frame arrived in time.
    #[error("{endpoint}: no reply within {:.1} s{detail}", after.as_secs_f64())]
    Timeout {
        /// The link.
        endpoint: String,
        /// How long was waited.
        after: Duration,
        /// What did arrive, if anything (e.g. a frame with a bad checksum).
        detail: String,
    },
    /// Reading or writing failed; the link will reconnect.
    #[error("{endpoint}: {source}")]
    Io {
        /// The link.
        endpoint: String,
        /// Why.
        source: std::io::Error,
    },
    /// The peer closed the connection; the link will reconnect.
    #[error("{endpoint}: connection closed by the peer")]
    Closed {
        /// The link.
        endpoint: String,
    },
    /// A recent failure; the next attempt waits for the backoff.
    #[error("{endpoint}: not connected (last error: {last}); next attempt in {:.1} s", retry_in.as_secs_f64())]
    Backoff {
        /// The link.
        endpoint: String,
        /// The failure that started the backoff.
        last: String,
        /// Time until the next attempt.
        retry_in: Duration,
    },
    /// A listening link has no peer to talk to.
    #[error("{endpoint}: no peer connected")]
    NoPeer {
        /// The link.
        endpoint: String,
    },
}
