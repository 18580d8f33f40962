//! A pack's poller without I/O: which Pace request goes out next, what its reply means, and what
//! the pack's readings are now. The production driver (one thread per line, `runtime`) and the
//! simulated world (plant time, bytes on simulated wires) both run this one machine, so what the
//! simulation checks is what the daemon does.
//!
//! ```text
//!   poll_timeout() ─► handle_timeout(now)       the next cycle is due, or a reply is overdue
//!   poll_transmit(now) ─► request bytes          at most one exchange in flight
//!   handle_frame(now, reply) / handle_failure    a deframed reply, or the line's own error
//!   readings(), poll_note()                      what the controller and the event log read
//! ```
//!
//! A cycle is 0x42 then 0x44; then the one-shot commands the controller asked for; then, every
//! `limits_every` and only after a clean cycle, the configuration blocks the limits come from (D5,
//! D7, D9, DB, D3) and C1/C2 (whose failure does not matter).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use maestro_core::Millis;
use pace_proto::{
    Command, Config as PaceConfig, ConfigKind, PackAnalog, PackStatus, Reply, Request, Response,
};
use translator::PackLimits;

pub use crate::machine::{Machine, Note, Problem};
use crate::shared::{Cycle, PackReadings};

impl Machine for PackPoller {
    fn poll_transmit(&mut self, now: Duration) -> Option<Vec<u8>> {
        PackPoller::poll_transmit(self, now)
    }
    fn poll_timeout(&self) -> Duration {
        PackPoller::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Duration) {
        PackPoller::handle_timeout(self, now);
    }
    fn handle_frame(&mut self, now: Duration, frame: &[u8]) {
        PackPoller::handle_frame(self, now, frame);
    }
    fn handle_failure(&mut self, now: Duration, problem: Problem) {
        PackPoller::handle_failure(self, now, problem);
    }
    fn poll_note(&mut self) -> Option<Note> {
        PackPoller::poll_note(self)
    }
    fn set_link_stats(&mut self, stats: link::Stats) {
        PackPoller::set_link_stats(self, stats);
    }
}

/// When the poller asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// From one cycle's start to the next's.
    pub period: Duration,
    /// How long a reply may take.
    pub timeout: Duration,
    /// How often the configuration blocks are read again.
    pub limits_every: Duration,
    /// A pack that gave no clean cycle for longer than this went stale (`safety.stale_after_s`):
    /// its return is an event; a shorter gap is only a warning.
    pub stale_after: Duration,
}

impl Timing {
    /// The timing of `[poll]` and `safety.stale_after_s`.
    pub fn of(config: &crate::config::Config) -> Self {
        let poll = &config.poll;
        Self {
            period: Duration::from_secs_f64(poll.period_s),
            timeout: Duration::from_secs_f64(poll.timeout_s),
            limits_every: Duration::from_secs_f64(poll.limits_every_s),
            stale_after: Duration::from_secs_f64(config.safety.stale_after_s),
        }
    }
}

/// The layout of a pack's replies: cells and temperatures, as 0x42 counts their values and 0x44
/// their warnings. The two replies of one pack agree; a reply that does not is another's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Cells.
    pub cells: usize,
    /// Temperatures.
    pub temps: usize,
}

impl Shape {
    /// The layout of a 0x42 pack block.
    pub fn of_analog(a: &PackAnalog) -> Self {
        Self { cells: a.cells.len(), temps: a.temps.len() }
    }

    /// The layout of a 0x44 pack block.
    pub fn of_status(s: &PackStatus) -> Self {
        Self { cells: s.cell_warns.len(), temps: s.temp_warns.len() }
    }
}

/// One exchange of a cycle.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ask {
    Analog,
    Status,
    Command(Command),
    Limit(ConfigKind),
    Version,
    Serial,
}

impl Ask {
    fn command(&self) -> Command {
        match self {
            Self::Analog => Command::Analog { pack: 0xFF },
            Self::Status => Command::Status { pack: 0xFF },
            Self::Command(c) => c.clone(),
            Self::Limit(kind) => Command::ReadConfig(*kind),
            Self::Version => Command::Version,
            Self::Serial => Command::Serial,
        }
    }

    fn name(&self) -> String {
        match self {
            Self::Analog => "0x42".into(),
            Self::Status => "0x44".into(),
            Self::Command(c) => format!("{c:?}"),
            Self::Limit(kind) => kind.name().to_string(),
            Self::Version => "C1".into(),
            Self::Serial => "C2".into(),
        }
    }
}

const LIMIT_KINDS: [ConfigKind; 5] = [
    ConfigKind::PackOv,
    ConfigKind::PackUv,
    ConfigKind::ChargeOc,
    ConfigKind::DischargeOc1,
    ConfigKind::CellUv,
];

/// The exchange in flight.
#[derive(Clone, Debug)]
struct InFlight {
    ask: Ask,
    deadline: Duration,
    sent: usize,
}

/// The cycle under way.
#[derive(Clone, Debug, Default)]
struct CycleState {
    started: Duration,
    plan: VecDeque<Ask>,
    errors: Vec<Problem>,
    moved: usize,
    analog_shape: Option<Shape>,
    /// The configuration blocks read so far in this cycle; `None` once one failed.
    limits: Option<PackLimits>,
    limits_planned: bool,
}

/// One pack's poller (see the module documentation).
#[derive(Clone, Debug)]
pub struct PackPoller {
    number: usize,
    adr: u8,
    line: String,
    timing: Timing,
    readings: PackReadings,
    layout: Option<Shape>,
    last_limits: Option<Duration>,
    last_error: String,
    /// The data went stale: since the older of its last 0x42 and 0x44.
    stale_since: Option<Duration>,
    next_cycle: Duration,
    cycle: Option<CycleState>,
    in_flight: Option<InFlight>,
    commands: Vec<Command>,
    notes: VecDeque<Note>,
}

/// Notes kept at most before the oldest are dropped (a driver that never reads them loses
/// nothing else).
const NOTES_MAX: usize = 64;

impl PackPoller {
    /// The poller of pack `number` (1-based, for the events) at `adr` on the line named `line`; its
    /// first cycle is due at once.
    pub fn new(number: usize, adr: u8, line: impl Into<String>, timing: Timing) -> Self {
        Self {
            number,
            adr,
            line: line.into(),
            timing,
            readings: PackReadings::default(),
            layout: None,
            last_limits: None,
            last_error: String::new(),
            stale_since: None,
            next_cycle: Duration::ZERO,
            cycle: None,
            in_flight: None,
            commands: Vec::new(),
            notes: VecDeque::new(),
        }
    }

    /// What was read from the pack, stamped with the times passed in.
    pub fn readings(&self) -> &PackReadings {
        &self.readings
    }

    /// The line's counters, as the driver keeps them.
    pub fn set_link_stats(&mut self, stats: link::Stats) {
        self.readings.link = stats;
    }

    /// Queues a one-shot command (e.g. 0x9A to unlock the pack): sent after the next 0x44.
    pub fn command(&mut self, command: Command) {
        if self.commands.len() < 16 {
            self.commands.push(command);
        }
    }

    /// When the machine wants [`PackPoller::handle_timeout`]: the in-flight reply's deadline, or
    /// the next cycle's start.
    pub fn poll_timeout(&self) -> Duration {
        match (&self.in_flight, &self.cycle) {
            (Some(f), _) => f.deadline,
            (None, Some(_)) => Duration::ZERO,
            (None, None) => self.next_cycle,
        }
    }

    /// The time passed `now`: an overdue reply is a problem; a due cycle starts.
    pub fn handle_timeout(&mut self, now: Duration) {
        if let Some(f) = &self.in_flight {
            if now >= f.deadline {
                let problem = Problem::NoReply { line: self.line.clone(), after: self.timing.timeout };
                self.handle_failure(now, problem);
            }
        }
        if self.cycle.is_none() && self.in_flight.is_none() && now >= self.next_cycle {
            self.cycle = Some(CycleState {
                started: now,
                plan: VecDeque::from([Ask::Analog, Ask::Status]),
                ..CycleState::default()
            });
        }
    }

    /// The next request to write, if one is due; its reply is then awaited until `now` + the
    /// timeout.
    pub fn poll_transmit(&mut self, now: Duration) -> Option<Vec<u8>> {
        self.handle_timeout(now);
        if self.in_flight.is_some() {
            return None;
        }
        loop {
            let cycle = self.cycle.as_mut()?;
            let Some(ask) = cycle.plan.pop_front() else {
                self.finish_cycle(now);
                return None;
            };
            let mut frame = Vec::with_capacity(64);
            match (Request { adr: self.adr, command: ask.command() }).emit(&mut frame) {
                Ok(_) => {
                    self.in_flight =
                        Some(InFlight { ask, deadline: now + self.timing.timeout, sent: frame.len() });
                    return Some(frame);
                }
                // A command that cannot be encoded (a read-only block to write): reported, skipped.
                Err(e) => {
                    self.notes_push(Note::Event(format!("pack {}: {} failed: {e}", self.number, ask.name())))
                }
            }
        }
    }

    /// The line failed the exchange in flight (the driver's error, or the machine's timeout).
    pub fn handle_failure(&mut self, now: Duration, problem: Problem) {
        if let Some(f) = self.in_flight.take() {
            self.failed(now, &f.ask, problem);
        }
    }

    /// A deframed reply arrived. Outside an exchange it is a stray frame: counted, not used.
    pub fn handle_frame(&mut self, now: Duration, frame: &[u8]) {
        let Some(f) = self.in_flight.take() else {
            self.notes_push(Note::BadFrame);
            return;
        };
        let ask = f.ask;
        let cid2 = ask.command().cid2();
        let line = self.line.clone();
        let reply = match Reply::parse(cid2, frame) {
            Ok(reply) => reply,
            Err(e) => return self.failed(now, &ask, Problem::Decode { line, error: e.to_string() }),
        };
        let response = match reply.outcome {
            Ok(response) => response,
            Err(refusal) => {
                return self.failed(now, &ask, Problem::Refused { line, cid2, rtn: refusal.rtn.to_string() });
            }
        };
        let moved = f.sent + frame.len();
        let at = millis(now);
        match (&ask, response) {
            (Ask::Analog, Response::Analog(mut a)) if !a.packs.is_empty() => {
                let analog = a.packs.swap_remove(0);
                let shape = Shape::of_analog(&analog);
                if let Some(known) = self.layout.filter(|k| *k != shape) {
                    self.notes_push(Note::BadFrame);
                    return self.failed(
                        now,
                        &ask,
                        Problem::Layout { line, asked: "0x42", got: shape, known },
                    );
                }
                if let Some(c) = self.cycle.as_mut() {
                    c.moved += moved;
                    c.analog_shape = Some(shape);
                }
                self.readings.analog = Some((Arc::new(analog), at));
            }
            (Ask::Status, Response::Status(mut s)) if !s.packs.is_empty() => {
                let status = s.packs.swap_remove(0);
                let shape = Shape::of_status(&status);
                let analog_shape = self.cycle.as_ref().and_then(|c| c.analog_shape);
                if let Some(known) = self.layout.or(analog_shape).filter(|k| *k != shape) {
                    self.notes_push(Note::BadFrame);
                    return self.failed(
                        now,
                        &ask,
                        Problem::Layout { line, asked: "0x44", got: shape, known },
                    );
                }
                if analog_shape == Some(shape) {
                    self.layout = Some(shape);
                }
                if let Some(c) = self.cycle.as_mut() {
                    c.moved += moved;
                    // The poll cycle proper: 0x42 and 0x44, both clean.
                    if c.errors.is_empty() {
                        self.readings.cycle =
                            Some(Cycle { took: now.saturating_sub(c.started), bytes: c.moved });
                    }
                }
                self.readings.status = Some((Arc::new(status), at));
                self.plan_rest(now);
            }
            (Ask::Command(_), _) => {
                self.notes_push(Note::Event(format!("pack {}: {} done", self.number, ask.name())));
            }
            (Ask::Limit(kind), Response::Config(config)) => {
                let Some(limits) = self.cycle.as_mut().and_then(|c| c.limits.as_mut()) else { return };
                match config {
                    PaceConfig::PackOv(v) => limits.pack_ov_alarm = Some(v.alarm),
                    PaceConfig::PackUv(v) => {
                        limits.pack_uv_alarm = Some(v.alarm);
                        limits.pack_uv_protect = Some(v.protect);
                    }
                    PaceConfig::CellUv(v) => limits.cell_uv_protect = Some(v.protect),
                    PaceConfig::ChargeOc(c) => limits.charge_oc_alarm_a = Some(c.alarm_a.unsigned_abs()),
                    PaceConfig::DischargeOc1(c) => {
                        limits.discharge_oc_alarm_a = Some(c.alarm_a.unsigned_abs())
                    }
                    other => {
                        let got = format!("{other:?}");
                        return self.failed(
                            now,
                            &ask,
                            Problem::Unexpected { line, asked: kind.name().into(), got },
                        );
                    }
                }
                if *kind == ConfigKind::CellUv {
                    if let Some(limits) = self.cycle.as_mut().and_then(|c| c.limits.take()) {
                        self.last_limits = Some(now);
                        self.readings.limits = limits;
                        self.readings.limits_read = true;
                    }
                }
            }
            (Ask::Version, Response::Version { version }) => self.readings.version = Some(version),
            (Ask::Serial, Response::Serial { serial }) => self.readings.serial = Some(serial),
            (Ask::Version | Ask::Serial, _) => {}
            (_, other) => {
                let got = format!("{other:?}");
                self.failed(now, &ask, Problem::Unexpected { line, asked: ask.name(), got });
            }
        }
    }

    /// The next note for the driver.
    pub fn poll_note(&mut self) -> Option<Note> {
        self.notes.pop_front()
    }

    fn notes_push(&mut self, note: Note) {
        if self.notes.len() >= NOTES_MAX {
            self.notes.pop_front();
        }
        self.notes.push_back(note);
    }

    /// After 0x44: the one-shot commands, then the configuration blocks when they are due.
    fn plan_rest(&mut self, now: Duration) {
        let commands = std::mem::take(&mut self.commands);
        let limits_due = self.last_limits.is_none_or(|t| now.saturating_sub(t) >= self.timing.limits_every);
        let Some(c) = self.cycle.as_mut() else { return };
        c.plan.extend(commands.into_iter().map(Ask::Command));
        // The configuration blocks follow a clean 0x42 + 0x44 only; a failed cycle reads them next time.
        if limits_due && c.errors.is_empty() && !c.limits_planned {
            c.limits_planned = true;
            c.limits = Some(PackLimits::default());
            c.plan.extend(LIMIT_KINDS.into_iter().map(Ask::Limit));
            c.plan.extend([Ask::Version, Ask::Serial]);
        }
    }

    fn failed(&mut self, now: Duration, ask: &Ask, problem: Problem) {
        match ask {
            Ask::Analog => self.push_error(problem),
            Ask::Status => {
                self.push_error(problem);
                // The commands still go out: an unlock must not wait for a clean cycle.
                let commands = std::mem::take(&mut self.commands);
                if let Some(c) = self.cycle.as_mut() {
                    c.plan.extend(commands.into_iter().map(Ask::Command));
                }
            }
            Ask::Command(_) => {
                let text = format!("pack {}: {} failed: {problem}", self.number, ask.name());
                self.notes_push(Note::Event(text));
            }
            Ask::Limit(_) => {
                // The blocks are read together or not at all; C1/C2 wait for the next round.
                if let Some(c) = self.cycle.as_mut() {
                    c.limits = None;
                    c.plan.retain(|a| !matches!(a, Ask::Limit(_) | Ask::Version | Ask::Serial));
                }
                self.push_error(problem);
            }
            Ask::Version | Ask::Serial => {}
        }
        let _ = now;
    }

    fn push_error(&mut self, problem: Problem) {
        if let Some(c) = self.cycle.as_mut() {
            c.errors.push(problem);
        }
    }

    fn finish_cycle(&mut self, now: Duration) {
        let Some(c) = self.cycle.take() else { return };
        let error = c.errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        if error != self.last_error && !error.is_empty() {
            self.notes_push(Note::Warn(format!("pack {}: {error}", self.number)));
        }
        // A line that loses an exchange now and then is a warning in the process log, not an
        // event: the event log gets the return of a pack whose data had gone stale (as the
        // controller judges it: 0x42 or 0x44 older than stale_after).
        let oldest = match (&self.readings.analog, &self.readings.status) {
            (Some((_, a)), Some((_, s))) => Some(Duration::from_millis(a.0.min(s.0))),
            _ => None,
        };
        if error.is_empty() {
            if let Some(since) = self.stale_since.take() {
                let gap = now.saturating_sub(since);
                let text = format!("pack {} answers again after {:.0} s", self.number, gap.as_secs_f64());
                self.notes_push(Note::Event(text));
            }
        } else if self.stale_since.is_none()
            && oldest.is_some_and(|t| now.saturating_sub(t) > self.timing.stale_after)
        {
            // Since its last complete reading.
            self.stale_since = oldest;
        }
        self.last_error.clone_from(&error);
        self.readings.last_error = (!error.is_empty()).then_some(error);
        self.next_cycle = c.started + self.timing.period;
        if self.next_cycle <= now {
            self.next_cycle = now;
        }
    }
}

fn millis(d: Duration) -> Millis {
    Millis(d.as_millis() as u64)
}
