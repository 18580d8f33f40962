//! A capture run again, offline, through the daemon's own [`Station`]: the replies are handed
//! to it as they were captured, at the times they were captured, and it decides on what its
//! machines read, exactly as the running service does (the replay is one more driver of the
//! station). So a capture from a user's strange pack or inverter becomes a test: what the replay
//! decides, and what it would have answered the inverter, can be compared with the live run's
//! event log and the answers it sent.
//!
//! The station's deadlines (overdue replies, due cycles, the controller's steps) run at their
//! times, and each line writes when the capture shows the live run wrote on it: so a reply is
//! awaited from the moment the live request went out, and a slow live thread cannot make the
//! replay run ahead. A write the station would not have made then is reported
//! ([`Seen::Diverged`]) and the capture's bytes go on regardless. On `pylon`, each request of the
//! inverter is answered by the translator from the station's published snapshot of the moment
//! and compared with the answer the live run sent.
//!
//! What the capture cannot hold is assumed: no operator orders (they are in the event log, not
//! on a line), and the state file as a fresh start.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use link::capture::{Dir, Record};
use link::{AsciiDeframer, Deframer};
use maestro_core::Millis;
use pace_proto::{Reply, Request, Response};
use translator::respond::{EmulationSettings, Snapshot};

use crate::config::Config;
use crate::control::Control;
use crate::core::Now;
use crate::machine::Problem;
use crate::state::Persisted;
use crate::station::{Event, LineId, Persist, Station};

/// What the replay saw and did, in time order.
#[derive(Clone, Debug, PartialEq)]
pub enum Seen {
    /// One exchange on a line: what was asked and what came back, in words.
    Exchange {
        /// Since the capture began.
        t: Duration,
        /// The line's name.
        link: String,
        /// The request.
        asked: String,
        /// The reply, `no reply`, or what was wrong with it.
        answer: String,
    },
    /// An event of the replayed daemon, as the live one writes it in its event log (the
    /// decisions among them: `charge enabled, discharge disabled` with the reasons).
    Event {
        /// Since the capture began.
        t: Duration,
        /// The text.
        text: String,
        /// The reasons it carries.
        reasons: Vec<String>,
    },
    /// The capture holds a write the replayed machine would not have made at that time.
    Diverged {
        /// Since the capture began.
        t: Duration,
        /// The line.
        link: String,
        /// What the capture holds, hex.
        captured: String,
        /// What the replay would have written, hex (empty: nothing was due).
        replayed: String,
    },
    /// The inverter was answered otherwise than the replay would have answered.
    AnswerDiffers {
        /// Since the capture began.
        t: Duration,
        /// The request, in words.
        asked: String,
        /// The live run's answer, hex.
        captured: String,
        /// The replay's, hex (empty: it would not have answered).
        replayed: String,
    },
}

impl Seen {
    /// When, since the capture began.
    pub fn t(&self) -> Duration {
        match self {
            Self::Exchange { t, .. }
            | Self::Event { t, .. }
            | Self::Diverged { t, .. }
            | Self::AnswerDiffers { t, .. } => *t,
        }
    }
}

/// The longest stretch without a record that the replay steps through: past it (a record dated
/// far ahead, a capture resumed after days), it warns and jumps, shifting the later records back,
/// so one wrong time stamp cannot hold it for weeks.
pub const MAX_GAP: Duration = Duration::from_secs(600);

/// The replay's counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Records taken in.
    pub records: usize,
    /// Exchanges on the device lines.
    pub exchanges: usize,
    /// Writes the replayed machines would not have made.
    pub diverged: usize,
    /// The inverter's requests answered in the capture.
    pub answers: usize,
    /// Of them, answered byte for byte as the replay would have.
    pub answers_same: usize,
    /// Records of lines the configuration does not name.
    pub unknown_link: usize,
    /// Records of the CAN bus: captured, not replayed (the inverter's CAN side is not run again).
    pub can: usize,
    /// Controller steps.
    pub steps: usize,
}

/// The name of the station's journal in a capture: `T station rx` (no bytes) when the station
/// took the time, `T station rx <line>` when it took that line's next reply, `T station rx
/// !<line> <error>` when the line failed, `?<order JSON>` an operator's order, `^heartbeat` the
/// inverter's CAN heartbeat, `^freeze` / `^thaw` the test's fault injection, `~restart` a start
/// afresh from the state file. With it a replay hands the station everything at the
/// instants the service did, and so decides and writes as it did, byte for byte.
pub const JOURNAL: &str = "station";

/// A device line being replayed: its deframer and the exchange in flight.
struct Line {
    id: LineId,
    deframer: Box<dyn Deframer + Send>,
    /// The request in words and its CID2 (Pace), until its reply or the next request.
    awaiting: Option<(String, Option<u8>)>,
    /// What the station wrote that the capture has not shown yet (with a journal).
    written: VecDeque<Vec<u8>>,
    /// Replies deframed that the journal has not handed over yet.
    frames: VecDeque<Vec<u8>>,
}

impl Line {
    fn new(id: LineId) -> Self {
        Self {
            id,
            deframer: id.deframer(),
            awaiting: None,
            written: VecDeque::new(),
            frames: VecDeque::new(),
        }
    }
}

/// The inverter's side: requests in, answers out.
struct Pylon {
    settings: EmulationSettings,
    deframer: AsciiDeframer,
    /// The last request and what the replay would answer it.
    pending: Option<(String, Option<Vec<u8>>)>,
}

/// The station and the capture's lines.
/// A capture being replayed, record by record: see [`Replayer::push`].
pub struct Replayer<'a> {
    station: Station,
    lines: BTreeMap<LineId, Line>,
    pylon: Option<Pylon>,
    wall0: jiff::Timestamp,
    published: Arc<crate::shared::Published>,
    summary: Summary,
    seen: Box<dyn FnMut(Seen) + 'a>,
    /// What the state file holds: a restart in the journal starts the station afresh from it.
    persisted: Persisted,
    /// The capture holds the station's journal.
    journal: bool,
    /// Time jumped over so far: later records are replayed this much earlier.
    shift: Duration,
    /// The latest record's time.
    last: Duration,
    /// Each exchange is described to `seen` ([`Seen::Exchange`]).
    exchanges: bool,
}

fn millis(t: Duration) -> Millis {
    Millis(t.as_millis() as u64)
}

impl std::fmt::Debug for Replayer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replayer")
            .field("journal", &self.journal)
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

impl<'a> Replayer<'a> {
    fn now(&self, t: Duration) -> Now {
        Now { mono: millis(t), wall: self.wall0 + jiff::SignedDuration::from_millis(t.as_millis() as i64) }
    }

    /// Runs the station's deadlines up to `t` (the ones at `t` itself only when `inclusive`), as
    /// the service's station thread wakes for them.
    fn advance(&mut self, t: Duration, inclusive: bool) {
        loop {
            let due = Duration::from_millis(self.station.poll_deadline().0);
            if due > t || (due == t && !inclusive) {
                return;
            }
            let now = self.now(due);
            self.station.handle_timeout(now);
            self.after(due);
        }
    }

    /// A mark of the station's journal: the time, a reply or a failure handed over then.
    fn journal(&mut self, r: &Record) {
        let now = self.now(r.t);
        let text = String::from_utf8_lossy(&r.bytes).into_owned();
        if text.is_empty() {
            self.station.handle_timeout(now);
        } else if let Some(json) = text.strip_prefix('?') {
            // An operator's order, as the station was given it.
            if let Ok(order) = Control::parse(json.as_bytes()) {
                let _ = self.station.handle_order(&order);
            }
        } else if text == "^heartbeat" {
            self.station.handle_heartbeat(now);
        } else if let Some(frozen) = [("^freeze", true), ("^thaw", false)].iter().find(|(m, _)| *m == text) {
            self.station.freeze(frozen.1);
        } else if text == "~restart" {
            self.station.restart(&mut self.persisted, now);
            for line in self.lines.values_mut() {
                *line = Line::new(line.id);
            }
        } else if let Some((name, error)) = text.strip_prefix('!').and_then(|t| t.split_once(' ')) {
            if let Some(id) = LineId::parse(name).filter(|id| self.lines.contains_key(id)) {
                if let Some((asked, _)) = self.lines.get_mut(&id).and_then(|l| l.awaiting.take()) {
                    let answer = format!("failed: {error}");
                    (self.seen)(Seen::Exchange { t: r.t, link: name.to_owned(), asked, answer });
                }
                self.station.handle_failure(id, now, Problem::Line(error.to_owned()));
            }
        } else if let Some(id) = LineId::parse(&text).filter(|id| self.lines.contains_key(id)) {
            let Some(line) = self.lines.get_mut(&id) else { return };
            let frame = line.frames.pop_front().or_else(|| line.deframer.gap());
            if let Some(frame) = frame {
                if let Some((asked, cid2)) = line.awaiting.take().filter(|_| self.exchanges) {
                    let answer = describe_reply(cid2, &frame);
                    (self.seen)(Seen::Exchange { t: r.t, link: text.clone(), asked, answer });
                }
                self.station.handle_frame(id, now, &frame);
            }
        }
        while let Some(transmit) = self.station.poll_transmit() {
            if let Some(line) = self.lines.get_mut(&transmit.line) {
                if line.written.len() < 64 {
                    line.written.push_back(transmit.bytes);
                }
            }
        }
        self.after(r.t);
    }

    /// Takes what the station said.
    fn after(&mut self, t: Duration) {
        while let Some(event) = self.station.poll_event() {
            match event {
                Event::Log { text, reasons } => (self.seen)(Seen::Event { t, text, reasons }),
                Event::Persist(Persist::Rebalance(r)) => self.persisted.rebalance = r,
                Event::Persist(Persist::Energy(e)) => self.persisted.energy = e,
                Event::Persist(Persist::Overrides(o)) => self.persisted.overrides = o,
                Event::Warn(_) | Event::History(_) => {}
            }
        }
        let published = self.station.published();
        if !Arc::ptr_eq(&published, &self.published) {
            self.summary.steps += 1;
            self.published = published;
        }
    }

    fn record(&mut self, r: &Record, next: Option<&Record>) {
        if r.link == JOURNAL {
            return self.journal(r);
        }
        let Some(id) = LineId::parse(&r.link).filter(|id| self.lines.contains_key(id)) else {
            return self.other(r);
        };
        let now = self.now(r.t);
        match r.dir {
            Dir::Tx => {
                // The live run wrote: what would the station have written on this line then?
                let replayed = if self.journal {
                    self.lines.get_mut(&id).and_then(|l| l.written.pop_front())
                } else {
                    self.advance(r.t, true);
                    self.station.handle_timeout(now);
                    self.station.poll_transmit_on(id)
                };
                let replayed = replayed.unwrap_or_default();
                let Some(line) = self.lines.get_mut(&id) else { return };
                if let Some((asked, _)) = line.awaiting.take().filter(|_| self.exchanges) {
                    let answer = "no reply".into();
                    (self.seen)(Seen::Exchange { t: r.t, link: r.link.clone(), asked, answer });
                }
                if replayed != r.bytes {
                    self.summary.diverged += 1;
                    (self.seen)(Seen::Diverged {
                        t: r.t,
                        link: r.link.clone(),
                        captured: hex(&r.bytes),
                        replayed: hex(&replayed),
                    });
                }
                self.summary.exchanges += 1;
                line.deframer.clear();
                line.awaiting = Some(if self.exchanges {
                    let cid2 = Request::parse(&r.bytes).ok().map(|q| q.command.cid2());
                    (describe_request(&r.bytes), cid2)
                } else {
                    (String::new(), None)
                });
            }
            Dir::Rx => {
                if !self.journal {
                    self.advance(r.t, false);
                }
                let Some(line) = self.lines.get_mut(&id) else { return };
                let mut frames = Vec::new();
                let mut rest = r.bytes.as_slice();
                loop {
                    let k = line.deframer.push(rest);
                    rest = &rest[k..];
                    while let Some(frame) = line.deframer.next_frame() {
                        frames.push(frame);
                    }
                    if rest.is_empty() || k == 0 {
                        break;
                    }
                }
                if self.journal {
                    // Handed over when the journal says the station took them.
                    line.frames.extend(frames);
                    return self.after(r.t);
                }
                // The line went quiet after these bytes: a framing that waits for a gap ends.
                let more = next.is_some_and(|n| n.link == r.link && n.dir == Dir::Rx);
                if frames.is_empty() && !more {
                    frames.extend(line.deframer.gap());
                }
                for frame in frames {
                    if let Some((asked, cid2)) = line.awaiting.take() {
                        let answer = describe_reply(cid2, &frame);
                        (self.seen)(Seen::Exchange { t: r.t, link: r.link.clone(), asked, answer });
                    }
                    self.station.handle_frame(id, now, &frame);
                }
            }
        }
        self.after(r.t);
    }

    /// A record of the inverter's side, the CAN bus, or a line the configuration does not name.
    fn other(&mut self, r: &Record) {
        match (r.link.as_str(), self.pylon.is_some()) {
            ("pylon", true) => {
                // The inverter is answered from the step of the moment.
                if !self.journal {
                    self.advance(r.t, true);
                }
                let snapshot = self.published.snapshot.clone();
                if let Some(p) = &mut self.pylon {
                    p.record(r, &snapshot, &mut self.summary, &mut *self.seen);
                }
            }
            ("can", _) if self.station.config().can.is_some() => self.summary.can += 1,
            _ => self.summary.unknown_link += 1,
        }
    }
}

/// Runs `records` (in capture order) through the daemon of `config`; `wall0` is the wall clock
/// of the capture's `t = 0`. Tells `seen` everything as it happens; returns the counts.
pub fn run(config: &Config, wall0: jiff::Timestamp, records: &[Record], seen: impl FnMut(Seen)) -> Summary {
    let journal = records.iter().any(|r| r.link == JOURNAL);
    let mut replayer = Replayer::new(config, &Persisted::default(), wall0, journal, seen);
    for (k, r) in records.iter().enumerate() {
        replayer.push(r, records.get(k + 1));
    }
    replayer.summary()
}

impl<'a> Replayer<'a> {
    /// A replay of a capture of `config` whose `t = 0` is at `wall0`, the daemon starting from
    /// `persisted`; `journal`: the capture holds the station's journal (a capture of this version
    /// of the service, or of a simulation). Tells `seen` everything as it happens.
    pub fn new(
        config: &Config,
        persisted: &Persisted,
        wall0: jiff::Timestamp,
        journal: bool,
        seen: impl FnMut(Seen) + 'a,
    ) -> Self {
        let now = Now { mono: Millis(0), wall: wall0 };
        let station = Station::new(config, persisted, now);
        let lines = station.lines().map(|id| (id, Line::new(id))).collect();
        Self {
            published: station.published(),
            station,
            lines,
            pylon: config.pylon.as_ref().map(|_| Pylon {
                settings: crate::runtime::emulation_settings(config),
                deframer: AsciiDeframer::new(),
                pending: None,
            }),
            wall0,
            summary: Summary::default(),
            seen: Box::new(seen),
            persisted: persisted.clone(),
            journal,
            shift: Duration::ZERO,
            last: Duration::ZERO,
            exchanges: true,
        }
    }

    /// Tells `seen` no exchanges, only events, divergences and answers that differ (a replay
    /// run alongside a simulation, where only the agreement counts).
    #[must_use]
    pub fn without_exchanges(mut self) -> Self {
        self.exchanges = false;
        self
    }

    /// Takes the next record of the capture (`next`: the one after it, if known: without a
    /// journal, a Modbus reply's end is where the line went quiet).
    pub fn push(&mut self, r: &Record, next: Option<&Record>) {
        self.summary.records += 1;
        let t = r.t.saturating_sub(self.shift);
        if t > self.last + MAX_GAP {
            let jump = t - self.last - MAX_GAP;
            self.shift += jump;
            (self.seen)(Seen::Event {
                t: self.last,
                text: format!(
                    "the capture holds nothing for {:.0} s here; the replay jumps over all but {} s of it \
                     (later times are shown {:.0} s earlier)",
                    (t - self.last).as_secs_f64(),
                    MAX_GAP.as_secs(),
                    self.shift.as_secs_f64()
                ),
                reasons: Vec::new(),
            });
        }
        if self.shift.is_zero() {
            self.last = self.last.max(r.t);
            return self.record(r, next);
        }
        let shifted = |r: &Record| Record { t: r.t.saturating_sub(self.shift), ..r.clone() };
        let (r, next) = (shifted(r), next.map(shifted));
        self.last = self.last.max(r.t);
        self.record(&r, next.as_ref());
    }

    /// The counts so far.
    pub fn summary(&self) -> Summary {
        self.summary
    }
}

impl Pylon {
    fn record(&mut self, r: &Record, snapshot: &Snapshot, summary: &mut Summary, seen: &mut dyn FnMut(Seen)) {
        match r.dir {
            // The inverter asks.
            Dir::Rx => {
                let mut rest = r.bytes.as_slice();
                loop {
                    let k = self.deframer.push(rest);
                    rest = &rest[k..];
                    while let Some(frame) = self.deframer.next_frame() {
                        let answer =
                            translator::respond::respond(snapshot, &frame, &self.settings, millis(r.t).0);
                        self.pending = Some((describe_pylon_request(&frame), answer));
                    }
                    if rest.is_empty() || k == 0 {
                        break;
                    }
                }
            }
            // The live run answered.
            Dir::Tx => {
                summary.answers += 1;
                let (asked, replayed) =
                    self.pending.take().unwrap_or_else(|| ("an unseen request".into(), None));
                if replayed.as_deref() == Some(r.bytes.as_slice()) {
                    summary.answers_same += 1;
                } else {
                    seen(Seen::AnswerDiffers {
                        t: r.t,
                        asked,
                        captured: hex(&r.bytes),
                        replayed: replayed.map(|b| hex(&b)).unwrap_or_default(),
                    });
                }
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// A request in words: the Pace command, or the Modbus function and registers.
fn describe_request(frame: &[u8]) -> String {
    if frame.first() == Some(&b'~') {
        return match Request::parse(frame) {
            Ok(r) => format!("ADR {} {:?}", r.adr, r.command),
            Err(e) => format!("a frame that is not a Pace request ({e})"),
        };
    }
    match frame {
        [slave, function, a, b, c, d, ..] => format!(
            "slave {slave} function {function:02X} register {} count/value {}",
            u16::from_be_bytes([*a, *b]),
            u16::from_be_bytes([*c, *d])
        ),
        _ => format!("{} bytes", frame.len()),
    }
}

/// A reply to a request of `cid2` in words (the key figures of a 0x42; the others by kind).
fn describe_reply(cid2: Option<u8>, frame: &[u8]) -> String {
    let Some(cid2) = cid2 else {
        return format!("{} bytes", frame.len());
    };
    match Reply::parse(cid2, frame) {
        Ok(Reply { outcome: Ok(response), .. }) => match response {
            Response::Analog(a) => match a.packs.first() {
                Some(p) => {
                    let (lo, hi) =
                        p.cells.iter().fold((u16::MAX, 0), |(lo, hi), c| (lo.min(c.raw()), hi.max(c.raw())));
                    format!(
                        "0x42: {} cells {:.3}–{:.3} V, {:.2} V, {:+.2} A",
                        p.cells.len(),
                        f64::from(lo) / 1000.0,
                        f64::from(hi) / 1000.0,
                        f64::from(p.voltage.raw()) / 1000.0,
                        f64::from(p.current.raw()) / 100.0
                    )
                }
                None => "0x42: no pack".into(),
            },
            Response::Status(_) => "0x44: alarms and protections".into(),
            Response::Version { version } => format!("C1: {}", version.trimmed()),
            Response::Serial { serial } => format!("C2: {}", serial.trimmed()),
            other => {
                let text = format!("{other:?}");
                text.chars().take(100).collect()
            }
        },
        Ok(Reply { outcome: Err(refusal), .. }) => format!("refused: {}", refusal.rtn),
        Err(e) => format!("does not decode: {e}"),
    }
}

fn describe_pylon_request(frame: &[u8]) -> String {
    match pylon_proto::Request::parse(frame) {
        Ok(r) => format!("{r:?}").chars().take(100).collect(),
        Err(e) => format!("a frame that is not a Pylontech request ({e})"),
    }
}
