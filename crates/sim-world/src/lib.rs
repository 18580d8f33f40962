//! The daemon's [`Station`] and the simulated [`Plant`] in one thread, in plant time, with a
//! seeded fault schedule and the SAFETY.md §6 physical invariants judged on the plant's true
//! state. `pace2pylon simulate` prints its [`Scorecard`].
//!
//! ```text
//!   Station ──poll_transmit──► Wire (baud, think time, injector) ──► plant device answers
//!      ▲                                                                     │
//!      └── handle_frame ◄── deframer ◄── reply bytes (maybe lost, corrupted, split) ◄┘
//!   Station::published() snapshot ──► responder ◄── 0x63 bytes ── plant inverter
//! ```
//!
//! This is a driver of the station, as the service is: the same machines, the same controller,
//! the same order queue. Time is kept in milliseconds and moves from one event to the next (a
//! transfer arriving, the station's deadline, the inverter's poll, the plant's second): nothing
//! waits and nothing reads a clock. Every line carries the real codecs on every byte; the
//! inverter's BMS line carries 0x63 through the real responder.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod schedule;
mod score;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use daemon::Config;
use daemon::control::{Control, Refused};
use daemon::core::Now;
use daemon::replay::{JOURNAL, Replayer, Seen, Summary};
use daemon::runtime::{PackReadings, Published, emulation_settings};
use daemon::state::Persisted;
use daemon::station::{Event, LineId, Persist, Station};
use link::capture::{Dir as CaptureDir, Record};
use link::{Deframer, RtuDeframer};
use maestro_core::{Decision, Millis, Reason, RebalanceState};
use pylon_proto::{Dialect, ManagementFlags, Reply, Response};
use sim::{Plant, PlantConfig};
use translator::limits::Limits;
use translator::respond::{EmulationSettings, respond};

pub use schedule::{DEFAULT_SCHEDULE, Schedule};
pub use score::{
    Availability, Rebalances, Run, Scorecard, TimeToSafe, Violations, check, simulate, simulate_into,
};
use wire::{Dir, Noise, Wire};

/// How often the simulated inverter asks 0x63, ms.
pub const INVERTER_EVERY_MS: u64 = 1000;

/// The simulated inverter runs on its no-comm settings after this long without an answer.
pub const INVERTER_NO_COMM_S: u64 = 30;
/// A Pace BMS's think time before it answers, ms.
pub const PACK_REPLY_DELAY_MS: u64 = 30;
/// The inverter's 0x63 request at ADR 2.
const REQUEST_0X63: &[u8] = b"~200246630000FDA9\r";

/// One of the station's lines: its deframer at the daemon's end, a plant device at the other.
struct Line {
    id: LineId,
    deframer: Box<dyn Deframer + Send>,
    /// The device's end: Modbus requests are deframed there too.
    device_deframer: Option<RtuDeframer>,
    wire: Wire,
}

impl std::fmt::Debug for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Line").field("id", &self.id).field("wire", &self.wire).finish_non_exhaustive()
    }
}

impl Line {
    fn new(id: LineId, wire: Wire) -> Self {
        let modbus = !matches!(id, LineId::Pack(_));
        let device_deframer = modbus.then(|| RtuDeframer::new(modbus_rtu::Side::Request));
        Self { id, deframer: id.deframer(), device_deframer, wire }
    }

    /// Delivers what has arrived by `now`: a request to `device`, which may answer; a reply to
    /// the station through the line's deframer.
    fn deliver(
        &mut self,
        now: Now,
        station: &mut Station,
        mut device: impl FnMut(&[u8]) -> Option<Vec<u8>>,
        log: &mut LineLog,
        capture: &mut Capture,
    ) {
        let ms = now.mono.0;
        while let Some(transfer) = self.wire.arrived(ms) {
            log.bytes += transfer.bytes.len() as u64;
            match transfer.dir {
                Dir::ToDevice => {
                    let request = match self.device_deframer.as_mut() {
                        Some(d) => {
                            d.push(&transfer.bytes);
                            d.next_frame().or_else(|| d.gap())
                        }
                        None => Some(transfer.bytes),
                    };
                    if let Some(reply) = request.and_then(|r| device(&r)) {
                        self.wire.reply(ms, reply);
                    }
                }
                Dir::ToDaemon => {
                    capture.line(ms, self.id, CaptureDir::Rx, &transfer.bytes);
                    let mut bytes = transfer.bytes.as_slice();
                    while !bytes.is_empty() {
                        let n = self.deframer.push(bytes);
                        bytes = &bytes[n..];
                        while let Some(frame) = self.deframer.next_frame() {
                            capture.took(ms, self.id);
                            station.handle_frame(self.id, now, &frame);
                        }
                    }
                    // The line goes quiet after the last piece: a framing that waits resynchronises.
                    if self.wire.next_at().is_none() {
                        if let Some(frame) = self.deframer.gap() {
                            capture.took(ms, self.id);
                            station.handle_frame(self.id, now, &frame);
                        }
                    }
                }
            }
        }
    }
}

/// Where a capture's records go, one by one.
pub type Sink = Box<dyn FnMut(&Record)>;

/// Where the world's capture goes: every byte of every line, the inverter's requests and the
/// answers, and the station's journal, in the format of `pace2pylon run --capture`.
#[derive(Default)]
pub struct Capture {
    sink: Option<Sink>,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture").field("on", &self.sink.is_some()).finish()
    }
}

impl Capture {
    fn bytes(&mut self, ms: u64, link: &str, dir: CaptureDir, bytes: &[u8]) {
        if let Some(sink) = &mut self.sink {
            let t = Duration::from_millis(ms);
            sink(&Record { t, link: link.to_owned(), dir, bytes: bytes.to_vec() });
        }
    }

    /// A line's bytes (its name made only when a capture runs: this is the simulation's hot path).
    fn line(&mut self, ms: u64, id: LineId, dir: CaptureDir, bytes: &[u8]) {
        if self.sink.is_some() {
            self.bytes(ms, &id.name(), dir, bytes);
        }
    }

    /// The journal's mark that the station took a reply of `id`.
    fn took(&mut self, ms: u64, id: LineId) {
        if self.sink.is_some() {
            self.mark(ms, id.name().as_bytes());
        }
    }

    fn mark(&mut self, ms: u64, what: &[u8]) {
        self.bytes(ms, JOURNAL, CaptureDir::Rx, what);
    }
}

/// What the daemon's lines did, beyond the event log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LineLog {
    /// The pollers' warnings (the process log's lines, not the event log's), the first
    /// [`WARNINGS_MAX`].
    pub warnings: Vec<String>,
    /// Frames that passed their check but were not the reply asked for.
    pub bad_frames: u64,
    /// Bytes that crossed the lines, both ways.
    pub bytes: u64,
}

/// The plant and the daemon's station, stepped together in plant time.
#[derive(Debug)]
pub struct World {
    /// The plant.
    pub plant: Plant,
    station: Station,
    /// What the daemon's state file holds.
    persisted: Persisted,
    /// Plant seconds since the start.
    pub t: u64,
    /// Plant milliseconds since the start.
    pub t_ms: u64,
    epoch: jiff::Timestamp,
    /// Every event line, `"<t> s <text> [<reasons>]"`.
    pub events: Vec<String>,
    /// What the inverter obeyed at the end of each plant second: (t, charge, discharge).
    pub told: Vec<(u64, bool, bool)>,
    /// Since when the responder's 0x63 answer has both enable bits clear, ms (`None`: a bit is set).
    pub answer_off_since: Option<u64>,
    /// What the lines did beyond the event log.
    pub lines: LineLog,
    /// Times the responder's 0x63 answer turned to both enable bits clear (exact: the answer
    /// only changes at a controller step).
    pub both_off_answers: u64,
    /// When the inverter last heard an answer to its poll, plant seconds (`None`: never).
    pub answered_at: Option<u64>,
    /// The station's last published step.
    published: Arc<Published>,
    /// The snapshot's enable flags and view when the 0x63 answer was last probed.
    probed: Option<(bool, bool, bool, bool)>,
    wires: Vec<Line>,
    stale_ms: u64,
    config: Config,
    emulation: EmulationSettings,
    next_bms_poll_ms: u64,
    bms_wire: Wire,
    /// The inverter stopped polling then, plant s (it falls back to its no-comm settings after 30 s).
    inverter_lost_at: Option<u64>,
    capture: Capture,
    /// A replay of the world's own capture, run alongside it.
    shadow: Option<Shadow>,
    /// The station's event lines, for the check of the replay alongside.
    station_events: Vec<String>,
}

/// A replay of the world's capture as it is made: the decisions it takes and its counts.
struct Shadow {
    decisions: std::rc::Rc<std::cell::RefCell<Vec<String>>>,
    replayer: std::rc::Rc<std::cell::RefCell<Replayer<'static>>>,
}

impl std::fmt::Debug for Shadow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shadow").field("decisions", &self.decisions.borrow().len()).finish_non_exhaustive()
    }
}

/// Poller warnings kept at most.
pub const WARNINGS_MAX: usize = 10_000;

/// A Modbus device's think time, ms.
pub const MODBUS_REPLY_DELAY_MS: u64 = 20;

impl World {
    /// A world for `config` (its pack count must match the plant's) on `plant`.
    pub fn new(plant: PlantConfig, config: &Config) -> Self {
        Self::with_state(plant, config, RebalanceState::default())
    }

    /// As [`World::new`], the daemon starting from a persisted rebalance `state` (its times are on
    /// the world's wall clock: see [`World::epoch`]).
    pub fn with_state(plant: PlantConfig, config: &Config, state: RebalanceState) -> Self {
        let seed = plant.seed;
        let epoch = jiff::Timestamp::from_second(1_764_547_200 + plant.start_of_day_s as i64)
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let plant = Plant::new(plant);
        let persisted = Persisted { rebalance: state, ..Persisted::default() };
        let now = Now { mono: Millis(0), wall: epoch };
        let station = Station::new(config, &persisted, now);
        let mut w = Self {
            published: station.published(),
            station,
            persisted,
            wires: Vec::new(),
            plant,
            t: 0,
            t_ms: 0,
            epoch,
            probed: None,
            both_off_answers: 0,
            answered_at: None,
            events: Vec::new(),
            told: Vec::new(),
            answer_off_since: Some(0),
            lines: LineLog::default(),
            stale_ms: (config.safety.stale_after_s * 1000.0) as u64,
            emulation: emulation_settings(config),
            config: config.clone(),
            next_bms_poll_ms: 500,
            bms_wire: Wire::new(
                config.pylon.as_ref().map_or(link::DEFAULT_BAUD, |p| baud(&p.link)),
                0,
                seed ^ 0x1417,
            ),
            inverter_lost_at: None,
            capture: Capture::default(),
            shadow: None,
            station_events: Vec::new(),
        };
        w.open_lines(seed);
        w
    }

    /// Fresh wires for the station's lines (at the start and after a restart).
    fn open_lines(&mut self, seed: u64) {
        let config = &self.config;
        self.wires = self
            .station
            .lines()
            .map(|id| {
                let wire = match id {
                    LineId::Pack(k) => Wire::new(
                        baud(&config.packs[k].link),
                        PACK_REPLY_DELAY_MS,
                        seed ^ (0xC0FFEE + k as u64),
                    ),
                    LineId::Coil => Wire::new(
                        config.coil.as_ref().map_or(link::DEFAULT_BAUD, |c| baud(&c.link)),
                        MODBUS_REPLY_DELAY_MS,
                        seed ^ 0xC011,
                    ),
                    LineId::Inverter => Wire::new(
                        config.inverter.as_ref().map_or(link::DEFAULT_BAUD, |i| baud(&i.link)),
                        MODBUS_REPLY_DELAY_MS,
                        seed ^ 0x1117,
                    ),
                };
                Line::new(id, wire)
            })
            .collect();
    }

    /// The daemon restarts: a new station from the persisted state, nothing read yet, whatever
    /// was on the lines lost.
    pub fn restart(&mut self) {
        self.capture.mark(self.t_ms, b"~restart");
        let now = self.now();
        self.station.restart(&mut self.persisted, now);
        self.published = self.station.published();
        let noise: Vec<(LineId, Option<Noise>)> = self.wires.iter().map(|l| (l.id, l.wire.noise)).collect();
        self.open_lines(self.plant.config.seed ^ self.t);
        for (line, (_, noise)) in self.wires.iter_mut().zip(noise) {
            line.wire.noise = noise;
        }
        self.probed = None;
        self.bms_wire.clear();
        self.events.push(format!("{:>7} s daemon restarted from its persisted state", self.t));
    }

    /// A fault command: `restart daemon`, `lose inverter`, `restore inverter`, `noise pack N`,
    /// `quiet pack N` (the line's fault injector on or off), or one of the plant's
    /// ([`Plant::command`]).
    ///
    /// # Errors
    /// The message for a command nobody knows, or a pack that does not exist.
    pub fn command(&mut self, line: &str) -> Result<String, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["restart", "daemon"] => {
                self.restart();
                Ok("daemon restarted".into())
            }
            ["lose", "inverter"] => {
                self.inverter_lost_at = Some(self.t);
                Ok("the inverter stopped polling".into())
            }
            ["restore", "inverter"] => {
                self.inverter_lost_at = None;
                Ok("the inverter polls again".into())
            }
            [verb @ ("noise" | "quiet"), "pack", n] => {
                let packs = self.config.packs.len();
                let k = n
                    .parse::<usize>()
                    .ok()
                    .filter(|k| (1..=packs).contains(k))
                    .ok_or_else(|| format!("no pack {n}: packs are numbered 1 to {packs}"))?;
                if let Some(line) = self.wires.iter_mut().find(|l| l.id == LineId::Pack(k - 1)) {
                    line.wire.noise = (*verb == "noise").then_some(Noise::NOISY);
                }
                Ok(format!("pack {k}: line {}", if *verb == "noise" { "noisy" } else { "quiet" }))
            }
            _ => self.plant.command(line),
        }
    }

    /// An operator's order, as the API gives it to the daemon's station.
    ///
    /// # Errors
    /// [`Refused`] naming why the order cannot be carried out.
    pub fn order(&mut self, order: &Control) -> Result<String, Refused> {
        if let Ok(json) = serde_json::to_string(order) {
            self.capture.mark(self.t_ms, format!("?{json}").as_bytes());
        }
        let done = self.station.handle_order(order);
        self.drain_events();
        done
    }

    /// Sends the world's capture to `sink` from now on, record by record: every byte of every
    /// line, the inverter's requests and the answers, and the station's journal (`simulate
    /// --capture`). A capture begun at the start replays as the world ran, byte for byte.
    pub fn capture_into(&mut self, sink: impl FnMut(&Record) + 'static) {
        self.capture.sink = Some(Box::new(sink));
    }

    /// Replays the world's own capture alongside it, as `pace2pylon replay` would replay it:
    /// [`World::replay_check`] then says whether the replay took every decision, wrote every
    /// byte and answered the inverter as the world's station did.
    pub fn replay_alongside(&mut self) {
        use std::cell::RefCell;
        use std::rc::Rc;
        let decisions = Rc::new(RefCell::new(Vec::new()));
        let seen = decisions.clone();
        let replayer = Replayer::new(&self.config, &self.persisted, self.epoch, true, move |s| {
            if let Seen::Event { text, reasons, .. } = s {
                seen.borrow_mut().push(event_text(&text, &reasons));
            }
        });
        let replayer = Rc::new(RefCell::new(replayer.without_exchanges()));
        let feed = replayer.clone();
        self.capture_into(move |r| feed.borrow_mut().push(r, None));
        self.shadow = Some(Shadow { decisions, replayer });
    }

    /// Whether the replay run alongside ([`World::replay_alongside`]) wrote every byte the
    /// world's station wrote, answered every request of the inverter byte for byte, and logged
    /// every event line the station logged, in the same order.
    ///
    /// # Errors
    /// What differs, or that no replay runs alongside.
    pub fn replay_check(&self) -> Result<Summary, String> {
        let shadow = self.shadow.as_ref().ok_or("no replay runs alongside (World::replay_alongside)")?;
        let summary = shadow.replayer.borrow().summary();
        if summary.diverged > 0 || summary.answers_same != summary.answers {
            return Err(format!("the replay wrote or answered otherwise: {summary:?}"));
        }
        let replayed = shadow.decisions.borrow();
        let logged = &self.station_events;
        if *replayed != *logged {
            let k = replayed.iter().zip(logged).take_while(|(a, b)| a == b).count();
            return Err(format!(
                "the replay's event {k} differs: replayed {:?}, the world logged {:?} ({} and {} events)",
                replayed.get(k),
                logged.get(k),
                replayed.len(),
                logged.len()
            ));
        }
        Ok(summary)
    }

    /// The station.
    pub fn station(&self) -> &Station {
        &self.station
    }

    /// The rebalance procedure's state.
    pub fn rebalance(&self) -> &RebalanceState {
        self.station.rebalance()
    }

    /// The wall clock at plant time 0: 2025-12-01 in UTC, at the plant's time of day (so the
    /// tariff windows and the sun agree).
    pub fn epoch(&self) -> jiff::Timestamp {
        self.epoch
    }

    /// The controller's last decision.
    pub fn decision(&self) -> Option<&Decision> {
        self.published.decision.as_ref()
    }

    /// The reason codes of the last decision (as the status API names them).
    pub fn reason_codes(&self) -> Vec<&'static str> {
        self.decision().iter().flat_map(|d| d.reasons.iter().map(Reason::code)).collect()
    }

    /// The current limits of the last controller step.
    pub fn limits(&self) -> Option<&Limits> {
        self.published.limits.as_ref()
    }

    /// What the daemon has read from each pack up to now.
    pub fn readings(&self) -> Vec<PackReadings> {
        self.station.pack_readings().cloned().collect()
    }

    fn now(&self) -> Now {
        Now {
            mono: Millis(self.t_ms),
            wall: self.epoch + jiff::SignedDuration::from_millis(self.t_ms as i64),
        }
    }

    /// One plant second: every event up to its end, in time order, and the plant's physics.
    pub fn step(&mut self) {
        self.advance_to((self.t + 1) * 1000);
    }

    /// Runs every event up to `until_ms` (plant ms since the start), the plant's seconds included;
    /// a fault command given then lands between two seconds, at any phase of the poll cycles.
    pub fn advance_to(&mut self, until_ms: u64) {
        loop {
            let boundary = (self.t + 1) * 1000;
            let next = self.next_event().max(self.t_ms);
            if next.min(boundary) > until_ms {
                self.t_ms = self.t_ms.max(until_ms);
                return;
            }
            // The plant's second comes before the events due at the same instant.
            if boundary <= next {
                self.t_ms = boundary;
                self.end_second();
            } else {
                self.t_ms = next;
                self.run_events();
            }
        }
    }

    /// The end of a plant second: what the inverter obeys is sampled, the physics advance.
    fn end_second(&mut self) {
        let flags = self.obeyed();
        self.told.push((self.t, flags.0, flags.1));
        self.plant.step(1.0);
        self.t += 1;
    }

    /// The earliest thing due.
    fn next_event(&self) -> u64 {
        let wires = self.wires.iter().filter_map(|l| l.wire.next_at());
        let bms = [Some(self.next_bms_poll_ms), self.bms_wire.next_at()];
        wires
            .chain(bms.into_iter().flatten())
            .chain([self.station.poll_timeout().0])
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Everything due at `t_ms`, in the order a driver of the station keeps: the lines' arrivals
    /// (a reply at its deadline still counts), the station's deadline, its writes; then the
    /// inverter's BMS port.
    fn run_events(&mut self) {
        let now = self.now();
        let ms = now.mono.0;
        for line in &mut self.wires {
            let plant = &mut self.plant;
            let station = &mut self.station;
            let (log, capture) = (&mut self.lines, &mut self.capture);
            match line.id {
                LineId::Pack(k) => {
                    line.deliver(now, station, |r| sim::answer::pack(plant, k, r), log, capture)
                }
                LineId::Coil => {
                    line.deliver(now, station, |r| sim::answer::coil(&mut plant.coil, r), log, capture);
                }
                LineId::Inverter => line.deliver(
                    now,
                    station,
                    |r| sim::answer::inverter(&mut plant.inverter.registers, r),
                    log,
                    capture,
                ),
            }
        }
        if self.station.poll_timeout() <= now.mono {
            self.capture.mark(ms, b"");
            self.station.handle_timeout(now);
        }
        while let Some(transmit) = self.station.poll_transmit() {
            if let Some(line) = self.wires.iter_mut().find(|l| l.id == transmit.line) {
                self.capture.line(ms, transmit.line, CaptureDir::Tx, &transmit.bytes);
                line.wire.send(ms, transmit.bytes);
            }
        }
        self.drain_events();
        let published = self.station.published();
        if !Arc::ptr_eq(&published, &self.published) {
            self.published = published;
            self.probe(ms);
        }
        while let Some(transfer) = self.bms_wire.arrived(ms) {
            match transfer.dir {
                // The responder answers at once, from the snapshot of the moment.
                Dir::ToDevice => {
                    self.capture.bytes(ms, "pylon", CaptureDir::Rx, &transfer.bytes);
                    if let Some(reply) =
                        respond(&self.published.snapshot, &transfer.bytes, &self.emulation, ms)
                    {
                        self.capture.bytes(ms, "pylon", CaptureDir::Tx, &reply);
                        self.bms_wire.reply(ms, reply);
                    }
                }
                Dir::ToDaemon => {
                    self.answered_at = Some(self.t);
                    self.plant.inverter.bms = Reply::parse(0x63, &transfer.bytes, Dialect::default())
                        .ok()
                        .and_then(|r| match r.outcome {
                            Ok(Response::SystemManagement(m)) => Some(m),
                            _ => None,
                        });
                }
            }
        }
        if ms >= self.next_bms_poll_ms {
            // Polls that go unanswered (a daemon restarting stays silent until its first complete
            // snapshot) are a lost BMS too: after 30 s the inverter runs on its no-comm settings.
            if self.answered_at.is_some_and(|at| self.t.saturating_sub(at) >= INVERTER_NO_COMM_S) {
                self.plant.inverter.bms = None;
            }
            match self.inverter_lost_at {
                None => self.bms_wire.send(ms, REQUEST_0X63.to_vec()),
                // It keeps the last answer for 30 s, then runs on its no-comm settings.
                Some(at) if self.t.saturating_sub(at) >= INVERTER_NO_COMM_S => self.plant.inverter.bms = None,
                Some(_) => {}
            }
            self.next_bms_poll_ms = ms + INVERTER_EVERY_MS;
        }
    }

    /// The station's events: the log lines to the trace, its warnings and bad frames to the line
    /// log, what it persists to the world's state file.
    fn drain_events(&mut self) {
        while let Some(event) = self.station.poll_event() {
            match event {
                Event::Log { text, reasons } => {
                    let line = event_text(&text, &reasons);
                    if self.shadow.is_some() {
                        self.station_events.push(line.clone());
                    }
                    self.events.push(format!("{:>7} s {line}", self.t));
                }
                Event::Warn(text) => {
                    if self.lines.warnings.len() < WARNINGS_MAX {
                        self.lines.warnings.push(format!("{:>7} s {text}", self.t));
                    }
                }
                Event::Persist(Persist::Rebalance(r)) => self.persisted.rebalance = r,
                Event::Persist(Persist::Energy(e)) => self.persisted.energy = e,
                Event::Persist(Persist::Overrides(o)) => self.persisted.overrides = o,
                Event::History(_) => {}
            }
        }
        self.lines.bad_frames = self.station.bad_frames();
    }

    /// What a 0x63 would be answered now, as an inverter asking all the time would see it. The
    /// answer's bits follow from the snapshot's enable flags and whether it has a view (the
    /// decision is fresh here): asked again only when those changed.
    fn probe(&mut self, ms: u64) {
        let snapshot = &self.published.snapshot;
        let e = snapshot.enable;
        let key = (e.charge, e.discharge, e.comm_lost, snapshot.view.is_some());
        if self.probed == Some(key) {
            return;
        }
        self.probed = Some(key);
        let off = respond(snapshot, REQUEST_0X63, &self.emulation, ms)
            .and_then(|bytes| Reply::parse(0x63, &bytes, Dialect::default()).ok())
            .and_then(|r| r.outcome.ok())
            .is_none_or(|r| match r {
                Response::SystemManagement(m) => {
                    !m.flags.intersects(ManagementFlags::CHARGE_ENABLE | ManagementFlags::DISCHARGE_ENABLE)
                }
                _ => true,
            });
        match (off, self.answer_off_since) {
            (true, None) => {
                self.answer_off_since = Some(self.t_ms);
                self.both_off_answers += 1;
            }
            (false, Some(_)) => self.answer_off_since = None,
            _ => {}
        }
    }

    /// What the inverter obeys now.
    fn obeyed(&self) -> (bool, bool) {
        match self.plant.inverter.bms {
            Some(m) => (
                m.flags.contains(ManagementFlags::CHARGE_ENABLE),
                m.flags.contains(ManagementFlags::DISCHARGE_ENABLE),
            ),
            None if self.inverter_lost_at.is_some() => (true, true),
            None => (false, false),
        }
    }

    /// Whether the inverter polls (no `lose inverter` in force).
    pub fn inverter_polling(&self) -> bool {
        self.inverter_lost_at.is_none()
    }

    /// Whether the inverter hears the daemon: it polls, and an answer came within `within_s`.
    /// While the daemon is silent by design (before its first complete snapshot after a start)
    /// the inverter runs on what it last heard, then on its own settings: not the daemon's
    /// decisions.
    pub fn inverter_hears_the_daemon(&self, within_s: u64) -> bool {
        self.inverter_polling() && self.answered_at.is_some_and(|at| self.t.saturating_sub(at) <= within_s)
    }

    /// Whether an event line containing `needle` was written.
    pub fn logged(&self, needle: &str) -> bool {
        self.events.iter().any(|e| e.contains(needle))
    }

    /// Whether the readings of every pack are fresh (for the scoring).
    fn all_fresh(&self) -> bool {
        self.station
            .pack_readings()
            .all(|r| r.analog.as_ref().is_some_and(|(_, at)| self.t_ms.saturating_sub(at.0) <= self.stale_ms))
    }
}

/// An event line's text with its reasons, as the trace shows it.
fn event_text(text: &str, reasons: &[String]) -> String {
    if reasons.is_empty() { text.to_owned() } else { format!("{text} {reasons:?}") }
}

/// A link URL's baud rate; 9600 for TCP (a console server's line, most likely at 9600).
fn baud(url: &str) -> u32 {
    match link::Endpoint::parse(url) {
        Ok(link::Endpoint::Serial { baud, .. }) => baud,
        _ => link::DEFAULT_BAUD,
    }
}

/// A daemon configuration for `packs` simulated packs (links that are never opened, UTC for the
/// tariff windows) with `extra` TOML appended.
///
/// # Errors
/// A configuration error naming its key.
pub fn config_with(packs: usize, extra: &str) -> Result<Config, daemon::config::Error> {
    let mut toml = String::from(
        "[pylon]\nlink = \"tcp://127.0.0.1:1\"\n\n[coil]\nlink = \"tcp://127.0.0.1:2\"\n\n\
         [inverter]\nlink = \"tcp://127.0.0.1:3\"\n\n",
    );
    for k in 0..packs {
        toml += &format!("[[pack]]\nlink = \"tcp://127.0.0.1:{}\"\n\n", 10 + k);
    }
    toml += "[tariff]\ntime_zone = \"UTC\"\n\n";
    toml += extra;
    Config::parse(&toml, "simulate")
}

/// The daemon configuration `simulate` uses without `--config`: `packs` packs with the defaults,
/// the counter's capacities scaled to the plant's 20 Ah packs.
///
/// # Errors
/// A configuration error naming its key (a pack count of 0, or above what the ports allow).
pub fn default_config(packs: usize) -> Result<Config, daemon::config::Error> {
    let regular = packs as u32 * 20_000;
    let rebalance = format!(
        "[rebalance]\ncapacity_mah = {}\nregular_capacity_mah = {regular}\n",
        regular + regular * 17 / 100
    );
    config_with(packs, &rebalance)
}
