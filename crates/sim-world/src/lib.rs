//! The daemon's machines and the simulated [`Plant`] in one thread, in plant time, with a seeded
//! fault schedule and the SAFETY.md §6 physical invariants judged on the plant's true state.
//! `pace2pylon simulate` prints its [`Scorecard`].
//!
//! ```text
//!   PackPoller ──request bytes──► Wire (baud, think time, injector) ──► plant pack answers
//!       ▲                                                                      │
//!       └──────── AsciiDeframer ◄── reply bytes (maybe lost, corrupted, split) ◄┘
//!   readings ──► Controller::step(now) at its deadlines ──► snapshot ──► responder ◄── 0x63 bytes
//!                     │ targets, commands (0x9A over the pack's wire)          plant inverter
//! ```
//!
//! Time is kept in milliseconds and moves from one event to the next (a transfer arriving, a
//! poller's deadline, the controller's tick, the inverter's poll, the plant's second): nothing
//! waits and nothing reads a clock. The packs' lines carry the real Pace codecs on every byte,
//! through the daemon's own [`PackPoller`] and deframer; the inverter's line carries 0x63 through
//! the real responder. Still modelled directly (issue 12 leaves them for later): the counter is
//! read from its model each plant second, and the inverter and counter settings the rebalance
//! asks for take effect at once.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod schedule;
mod score;
pub mod wire;

use std::time::Duration;

use daemon::Config;
use daemon::core::{Controller, Inputs, Now};
use daemon::keeper::{CoilPoller, InverterPoller};
use daemon::poller::{Machine, Note, PackPoller, Timing};
use daemon::runtime::{InverterReadings, Order, PackReadings, emulation_settings};
use daemon::state::Overrides;
use link::{AsciiDeframer, Deframer, RtuDeframer};
use maestro_core::{Decision, Millis, Reason, RebalanceState};
use pylon_proto::{Dialect, ManagementFlags, Reply, Response};
use sim::{Plant, PlantConfig};
use translator::limits::Limits;
use translator::respond::{EmulationSettings, respond};

pub use schedule::{DEFAULT_SCHEDULE, Schedule};
pub use score::{Availability, Rebalances, Run, Scorecard, TimeToSafe, Violations, check, simulate};
use wire::{Dir, Noise, Wire};

/// How often the simulated inverter asks 0x63, ms.
pub const INVERTER_EVERY_MS: u64 = 1000;

/// The simulated inverter runs on its no-comm settings after this long without an answer.
pub const INVERTER_NO_COMM_S: u64 = 30;
/// A Pace BMS's think time before it answers, ms.
pub const PACK_REPLY_DELAY_MS: u64 = 30;
/// The inverter's 0x63 request at ADR 2.
const REQUEST_0X63: &[u8] = b"~200246630000FDA9\r";

/// One line: a daemon poller and its deframer at one end, a plant device at the other.
#[derive(Debug)]
struct Line<M, D> {
    machine: M,
    deframer: D,
    /// The device's end: Modbus requests are deframed there too.
    device_deframer: Option<RtuDeframer>,
    wire: Wire,
}

impl<M: Machine, D: Deframer> Line<M, D> {
    fn new(machine: M, deframer: D, modbus: bool, wire: Wire) -> Self {
        let device_deframer = modbus.then(|| RtuDeframer::new(modbus_rtu::Side::Request));
        Self { machine, deframer, device_deframer, wire }
    }

    fn due(&self, now: u64) -> bool {
        self.wire.next_at().is_some_and(|at| at <= now)
            || self.machine.poll_timeout() <= Duration::from_millis(now)
    }

    fn next_at(&self) -> u64 {
        let deadline = self.machine.poll_timeout().as_millis() as u64;
        self.wire.next_at().map_or(deadline, |at| at.min(deadline))
    }

    /// Delivers what has arrived by `now` (a request to `device`, which may answer; a reply to the
    /// machine through its deframer), then lets the machine write its next request.
    fn service(
        &mut self,
        now: u64,
        mut device: impl FnMut(&[u8]) -> Option<Vec<u8>>,
        events: &mut Vec<String>,
        log: &mut LineLog,
        t: u64,
    ) -> bool {
        let at = Duration::from_millis(now);
        // The machine's state changes with a reply or a passed deadline, not with a request
        // reaching the device.
        let mut changed = self.machine.poll_timeout() <= at;
        while let Some(transfer) = self.wire.arrived(now) {
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
                        self.wire.reply(now, reply);
                    }
                }
                Dir::ToDaemon => {
                    let mut bytes = transfer.bytes.as_slice();
                    while !bytes.is_empty() {
                        let n = self.deframer.push(bytes);
                        bytes = &bytes[n..];
                        while let Some(frame) = self.deframer.next_frame() {
                            self.machine.handle_frame(at, &frame);
                            changed = true;
                        }
                    }
                    // The line goes quiet after the last piece: a framing that waits resynchronises.
                    if self.wire.next_at().is_none() {
                        if let Some(frame) = self.deframer.gap() {
                            self.machine.handle_frame(at, &frame);
                            changed = true;
                        }
                    }
                }
            }
        }
        // A cycle that ends at its next one's start begins the next at once: at most twice.
        for _ in 0..2 {
            match self.machine.poll_transmit(at) {
                Some(frame) => {
                    self.wire.send(now, frame);
                    break;
                }
                None if self.machine.poll_timeout() > at => break,
                None => {}
            }
        }
        while let Some(note) = self.machine.poll_note() {
            match note {
                Note::Event(text) => events.push(format!("{t:>7} s {text}")),
                Note::Warn(text) => {
                    if log.warnings.len() < WARNINGS_MAX {
                        log.warnings.push(format!("{t:>7} s {text}"));
                    }
                }
                Note::BadFrame => log.bad_frames += 1,
            }
        }
        changed
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

/// The plant and the daemon's machines, stepped together in plant time.
#[derive(Debug)]
pub struct World {
    /// The plant.
    pub plant: Plant,
    controller: Controller,
    overrides: Overrides,
    /// Plant seconds since the start.
    pub t: u64,
    /// Plant milliseconds since the start.
    pub t_ms: u64,
    epoch: jiff::Timestamp,
    /// Operator orders to carry out (last first).
    pub orders: Vec<Order>,
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
    decision: Option<Decision>,
    limits: Option<Limits>,
    /// The snapshot's enable flags and view when the 0x63 answer was last probed.
    probed: Option<(bool, bool, bool, bool)>,
    packs: Vec<Line<PackPoller, AsciiDeframer>>,
    coil: Option<Line<CoilPoller, RtuDeframer>>,
    inverter: Option<Line<InverterPoller, RtuDeframer>>,
    readings: Vec<PackReadings>,
    stale_ms: u64,
    config: Config,
    emulation: EmulationSettings,
    snapshot: translator::respond::Snapshot,
    next_controller_ms: u64,
    next_bms_poll_ms: u64,
    bms_wire: Wire,
    /// The inverter stopped polling then, plant s (it falls back to its no-comm settings after 30 s).
    inverter_lost_at: Option<u64>,
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
        let mut w = Self {
            packs: Vec::new(),
            coil: None,
            inverter: None,
            readings: vec![PackReadings::default(); config.packs.len()],
            plant,
            controller: Controller::new(config, state),
            overrides: Overrides::default(),
            t: 0,
            t_ms: 0,
            epoch,
            decision: None,
            limits: None,
            probed: None,
            both_off_answers: 0,
            answered_at: None,
            orders: Vec::new(),
            events: Vec::new(),
            told: Vec::new(),
            answer_off_since: Some(0),
            lines: LineLog::default(),
            stale_ms: (config.safety.stale_after_s * 1000.0) as u64,
            emulation: emulation_settings(config),
            config: config.clone(),
            snapshot: translator::respond::Snapshot::default(),
            next_controller_ms: 0,
            next_bms_poll_ms: 500,
            bms_wire: Wire::new(
                config.pylon.as_ref().map_or(link::DEFAULT_BAUD, |p| baud(&p.link)),
                0,
                seed ^ 0x1417,
            ),
            inverter_lost_at: None,
        };
        w.open_lines(seed);
        w
    }

    /// The daemon's pollers on fresh lines (at the start and after a restart).
    fn open_lines(&mut self, seed: u64) {
        let config = &self.config;
        let timing = Timing::of(config);
        let ascii = AsciiDeframer::new;
        let rtu = || RtuDeframer::new(modbus_rtu::Side::Response);
        self.packs = config
            .packs
            .iter()
            .zip(&self.plant.packs)
            .enumerate()
            .map(|(k, (pack, sim))| {
                // The plant's pack answers at its own address; the poller asks that one.
                let poller = PackPoller::new(k + 1, sim.adr, pack.link.clone(), timing);
                let wire = Wire::new(baud(&pack.link), PACK_REPLY_DELAY_MS, seed ^ (0xC0FFEE + k as u64));
                Line::new(poller, ascii(), false, wire)
            })
            .collect();
        self.coil = config.coil.as_ref().map(|c| {
            let timeout = Duration::from_secs_f64(config.poll.timeout_s.max(0.5));
            let poller = CoilPoller::new(
                c.slave,
                c.link.clone(),
                Duration::from_secs_f64(config.poll.period_s),
                timeout,
            );
            Line::new(poller, rtu(), true, Wire::new(baud(&c.link), MODBUS_REPLY_DELAY_MS, seed ^ 0xC011))
        });
        self.inverter = config.inverter.as_ref().map(|i| {
            let poller = InverterPoller::new(i.slave, i.link.clone());
            Line::new(poller, rtu(), true, Wire::new(baud(&i.link), MODBUS_REPLY_DELAY_MS, seed ^ 0x1117))
        });
    }

    /// The daemon restarts: a new controller from the persisted rebalance state, new pollers,
    /// nothing read yet, whatever was on the lines lost.
    pub fn restart(&mut self) {
        self.controller = Controller::new(&self.config, self.controller.rebalance().clone());
        let noise: Vec<Option<Noise>> = self.packs.iter().map(|l| l.wire.noise).collect();
        self.open_lines(self.plant.config.seed ^ self.t);
        for (line, noise) in self.packs.iter_mut().zip(noise) {
            line.wire.noise = noise;
        }
        self.readings = vec![PackReadings::default(); self.readings.len()];
        self.snapshot = translator::respond::Snapshot::default();
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
                let packs = self.packs.len();
                let k = n
                    .parse::<usize>()
                    .ok()
                    .filter(|k| (1..=packs).contains(k))
                    .ok_or_else(|| format!("no pack {n}: packs are numbered 1 to {packs}"))?;
                self.packs[k - 1].wire.noise = (*verb == "noise").then_some(Noise::NOISY);
                Ok(format!("pack {k}: line {}", if *verb == "noise" { "noisy" } else { "quiet" }))
            }
            _ => self.plant.command(line),
        }
    }

    /// The controller.
    pub fn controller(&self) -> &Controller {
        &self.controller
    }

    /// The wall clock at plant time 0: 2025-12-01 in UTC, at the plant's time of day (so the
    /// tariff windows and the sun agree).
    pub fn epoch(&self) -> jiff::Timestamp {
        self.epoch
    }

    /// The controller's last decision.
    pub fn decision(&self) -> Option<&Decision> {
        self.decision.as_ref()
    }

    /// The reason codes of the last decision (as the status API names them).
    pub fn reason_codes(&self) -> Vec<&'static str> {
        self.decision.iter().flat_map(|d| d.reasons.iter().map(Reason::code)).collect()
    }

    /// The current limits of the last controller step.
    pub fn limits(&self) -> Option<&Limits> {
        self.limits.as_ref()
    }

    /// What the daemon has read from each pack.
    pub fn readings(&self) -> &[PackReadings] {
        &self.readings
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
        let lines = self.packs.iter().map(Line::next_at);
        let coil = self.coil.iter().map(Line::next_at);
        let inverter = self.inverter.iter().map(Line::next_at);
        let bms = [Some(self.next_controller_ms), Some(self.next_bms_poll_ms), self.bms_wire.next_at()];
        lines.chain(coil).chain(inverter).chain(bms.into_iter().flatten()).min().unwrap_or(u64::MAX)
    }

    /// Everything due at `t_ms`: each line's transfers (a reply at its deadline still counts) and
    /// its poller, the controller, the inverter's BMS port.
    fn run_events(&mut self) {
        let now = self.t_ms;
        let t = self.t;
        for (k, line) in self.packs.iter_mut().enumerate() {
            if line.due(now) {
                let plant = &mut self.plant;
                let device = |request: &[u8]| sim::answer::pack(plant, k, request);
                if line.service(now, device, &mut self.events, &mut self.lines, t) {
                    self.readings[k].clone_from(line.machine.readings());
                }
            }
        }
        if let Some(line) = self.coil.as_mut().filter(|l| l.due(now)) {
            let coil = &mut self.plant.coil;
            line.service(
                now,
                |request| sim::answer::coil(coil, request),
                &mut self.events,
                &mut self.lines,
                t,
            );
        }
        if let Some(line) = self.inverter.as_mut().filter(|l| l.due(now)) {
            let registers = &mut self.plant.inverter.registers;
            line.service(
                now,
                |request| sim::answer::inverter(registers, request),
                &mut self.events,
                &mut self.lines,
                t,
            );
        }
        if now >= self.next_controller_ms {
            self.step_controller();
            // At the controller's own deadline, as the safety loop sleeps until it.
            self.next_controller_ms = self.controller.poll_timeout().0.max(now + 1);
        }
        while let Some(transfer) = self.bms_wire.arrived(now) {
            match transfer.dir {
                // The responder answers at once, from the snapshot of the moment.
                Dir::ToDevice => {
                    if let Some(reply) = respond(&self.snapshot, &transfer.bytes, &self.emulation, now) {
                        self.bms_wire.reply(now, reply);
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
        if now >= self.next_bms_poll_ms {
            // Polls that go unanswered (a daemon restarting stays silent until its first complete
            // snapshot) are a lost BMS too: after 30 s the inverter runs on its no-comm settings.
            if self.answered_at.is_some_and(|at| self.t.saturating_sub(at) >= INVERTER_NO_COMM_S) {
                self.plant.inverter.bms = None;
            }
            match self.inverter_lost_at {
                None => self.bms_wire.send(now, REQUEST_0X63.to_vec()),
                // It keeps the last answer for 30 s, then runs on its no-comm settings.
                Some(at) if self.t.saturating_sub(at) >= INVERTER_NO_COMM_S => self.plant.inverter.bms = None,
                Some(_) => {}
            }
            self.next_bms_poll_ms = now + INVERTER_EVERY_MS;
        }
    }

    fn step_controller(&mut self) {
        let now = self.now();
        let no_inverter = InverterReadings::default();
        let inputs = Inputs {
            packs: &self.readings,
            coil: self.coil.as_ref().and_then(|l| l.machine.readings().reading),
            coil_settings: self.coil.as_ref().and_then(|l| l.machine.settings()),
            inverter: self.inverter.as_ref().map_or(&no_inverter, |l| l.machine.readings()),
            overrides: &self.overrides,
            order: self.orders.pop(),
            inverter_silent: false,
        };
        let out = self.controller.step(now, &inputs);
        self.snapshot = out.snapshot;
        self.decision = Some(out.decision);
        self.limits = Some(out.limits);
        // What a 0x63 would be answered now, as an inverter asking all the time would see it. The
        // answer's bits follow from the snapshot's enable flags and whether it has a view (the
        // decision is fresh here): asked again only when those changed.
        let e = self.snapshot.enable;
        let key = (e.charge, e.discharge, e.comm_lost, self.snapshot.view.is_some());
        if self.probed == Some(key) {
            self.after_step(out.targets, out.coil_actions, out.pack_commands, out.events);
            return;
        }
        self.probed = Some(key);
        let off = respond(&self.snapshot, REQUEST_0X63, &self.emulation, now.mono.0)
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
        self.after_step(out.targets, out.coil_actions, out.pack_commands, out.events);
    }

    /// The targets and commands go to the pollers, which carry them out over their lines; the
    /// events to the trace.
    fn after_step(
        &mut self,
        t: maestro_core::Targets,
        coil_actions: Vec<maestro_core::Action>,
        pack_commands: Vec<(usize, pace_proto::Command)>,
        events: Vec<daemon::core::EventText>,
    ) {
        if let Some(line) = self.inverter.as_mut() {
            line.machine.set_targets(t.output_priority, t.charging_priority);
        }
        if let Some(line) = self.coil.as_mut() {
            line.machine.set_target(t.coil);
            for action in coil_actions {
                line.machine.act(action);
            }
        }
        for (k, command) in pack_commands {
            if let Some(line) = self.packs.get_mut(k) {
                line.machine.command(command);
            }
        }
        self.events.extend(events.into_iter().map(|(text, why)| {
            if why.is_empty() {
                format!("{:>7} s {text}", self.t)
            } else {
                format!("{:>7} s {text} {why:?}", self.t)
            }
        }));
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
        self.readings
            .iter()
            .all(|r| r.analog.as_ref().is_some_and(|(_, at)| self.t_ms.saturating_sub(at.0) <= self.stale_ms))
    }
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
