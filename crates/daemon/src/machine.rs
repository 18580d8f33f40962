//! What every device machine shows its driver, and what can go wrong on a line.
//!
//! A machine never touches a line or a clock: its driver writes the bytes of
//! [`Machine::poll_transmit`], hands back what came ([`Machine::handle_frame`]) or what failed
//! ([`Machine::handle_failure`]), and passes the time in. The station owns every machine; the
//! service, the simulated world and the replay each drive the station.

use std::time::Duration;

use crate::poller::Shape;

/// A device's poller as its driver sees it: bytes to write, a deadline, replies and failures
/// in, notes out. The daemon's line threads and the simulated world drive every poller through
/// this.
pub trait Machine {
    /// The next request to write, if one is due at `now` (its reply is then awaited).
    fn poll_transmit(&mut self, now: Duration) -> Option<Vec<u8>>;
    /// When the machine wants [`Machine::handle_timeout`] (or to transmit).
    fn poll_timeout(&self) -> Duration;
    /// The time passed `now`: an overdue reply is a problem; a due cycle starts.
    fn handle_timeout(&mut self, now: Duration);
    /// A deframed reply arrived.
    fn handle_frame(&mut self, now: Duration, frame: &[u8]);
    /// The line failed the exchange in flight.
    fn handle_failure(&mut self, now: Duration, problem: Problem);
    /// The next note for the driver.
    fn poll_note(&mut self) -> Option<Note>;
    /// The line's counters, as the driver keeps them.
    fn set_link_stats(&mut self, stats: link::Stats);
}

/// Why an exchange gave nothing usable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// The line's own error (from the driver): a timeout saying what did arrive, a closed
    /// connection, a port that cannot be opened.
    #[error("{0}")]
    Line(String),
    /// No valid reply before the deadline (the machine's own timeout).
    #[error("{line}: no reply within {:.1} s", after.as_secs_f64())]
    NoReply {
        /// The line.
        line: String,
        /// How long was waited.
        after: Duration,
    },
    /// A frame that passed its checksum but does not decode as the reply asked for.
    #[error("{line}: {error}")]
    Decode {
        /// The line.
        line: String,
        /// The decoder's message.
        error: String,
    },
    /// The BMS answered with a non-zero RTN.
    #[error("{line}: the BMS refused CID2 {cid2:02X}: {rtn}")]
    Refused {
        /// The line.
        line: String,
        /// The request's CID2.
        cid2: u8,
        /// The BMS's return code, as text.
        rtn: String,
    },
    /// A Modbus device answered with an exception.
    #[error("{line}: the device refused function {function:02X}: {code}")]
    Exception {
        /// The line.
        line: String,
        /// The request's function code.
        function: u8,
        /// The exception code, as text.
        code: String,
    },
    /// A valid reply of another kind.
    #[error("{line}: unexpected reply to {asked}: {got}")]
    Unexpected {
        /// The line.
        line: String,
        /// What was asked (`0x42`, `D5 ...`).
        asked: String,
        /// What came.
        got: String,
    },
    /// A reply with another layout than the pack's: not the reply asked for (a late one).
    #[error(
        "{line}: a reply to {asked} with {} cells and {} temperatures, where the pack has {} and {}: \
         not the reply asked for (a late one?); counted as a bad frame",
        got.cells, got.temps, known.cells, known.temps
    )]
    Layout {
        /// The line.
        line: String,
        /// What was asked.
        asked: &'static str,
        /// The layout of the reply.
        got: Shape,
        /// The pack's layout.
        known: Shape,
    },
}

/// Something for the driver to pass on: an event log line, a warning, a bad frame to count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// A line for the event log.
    Event(String),
    /// A warning for the process log (a new problem on the line).
    Warn(String),
    /// A frame passed its check but was not the reply asked for: count it on the line.
    BadFrame,
}
