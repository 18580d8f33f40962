//! The daemon's machines and the simulated [`Plant`] in one thread, in plant time, with a seeded
//! fault schedule and the SAFETY.md §6 physical invariants judged on the plant's true state.
//! `pace2pylon simulate` prints its [`Scorecard`].
//!
//! ```text
//!   PackPoller ──request bytes──► Wire (baud, think time, injector) ──► plant pack answers
//!       ▲                                                                      │
//!       └──────── AsciiDeframer ◄── reply bytes (maybe lost, corrupted, split) ◄┘
//!   readings ──► Controller::step(now) every 250 ms ──► snapshot ──► responder ◄── 0x63 bytes
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
use daemon::poller::{Note, PackPoller, Timing};
use daemon::runtime::{InverterReadings, Order, PackReadings, emulation_settings};
use daemon::state::Overrides;
use link::{AsciiDeframer, Deframer};
use maestro_core::{Action, Millis};
use pylon_proto::{Dialect, ManagementFlags, Reply, Response};
use sim::{Plant, PlantConfig};
use translator::respond::{EmulationSettings, respond};

pub use schedule::{DEFAULT_SCHEDULE, Schedule};
pub use score::{Availability, Rebalances, Run, Scorecard, TimeToSafe, Violations, check, simulate};
use wire::{Dir, Noise, Wire};

/// How often the controller steps, ms (the production safety loop's cadence).
pub const CONTROLLER_EVERY_MS: u64 = 250;
/// How often the simulated inverter asks 0x63, ms.
pub const INVERTER_EVERY_MS: u64 = 1000;
/// A Pace BMS's think time before it answers, ms.
pub const PACK_REPLY_DELAY_MS: u64 = 30;
/// The inverter's 0x63 request at ADR 2.
const REQUEST_0X63: &[u8] = b"~200246630000FDA9\r";

/// One pack's line: the daemon's poller and deframer at one end, the plant's pack at the other.
#[derive(Debug)]
struct PackLine {
    poller: PackPoller,
    deframer: AsciiDeframer,
    wire: Wire,
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
    lines: Vec<PackLine>,
    readings: Vec<PackReadings>,
    coil: Option<(coil_modbus::Reading, Millis)>,
    stale_ms: u64,
    config: Config,
    emulation: EmulationSettings,
    snapshot: translator::respond::Snapshot,
    next_controller_ms: u64,
    next_inverter_ms: u64,
    inverter_wire: Wire,
    /// The inverter stopped polling then, plant s (it falls back to its no-comm settings after 30 s).
    inverter_lost_at: Option<u64>,
    /// Bytes that crossed the pack lines, both ways.
    pub pack_bytes: u64,
}

impl World {
    /// A world for `config` (its pack count must match the plant's) on `plant`.
    pub fn new(plant: PlantConfig, config: &Config) -> Self {
        let seed = plant.seed;
        let plant = Plant::new(plant);
        let lines = Self::lines(config, &plant, seed);
        Self {
            readings: vec![PackReadings::default(); lines.len()],
            lines,
            plant,
            controller: Controller::new(config, Default::default()),
            overrides: Overrides::default(),
            t: 0,
            t_ms: 0,
            epoch: jiff::Timestamp::from_second(1_764_583_200).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
            orders: Vec::new(),
            events: Vec::new(),
            told: Vec::new(),
            answer_off_since: Some(0),
            coil: None,
            stale_ms: (config.safety.stale_after_s * 1000.0) as u64,
            emulation: emulation_settings(config),
            config: config.clone(),
            snapshot: translator::respond::Snapshot::default(),
            next_controller_ms: 0,
            next_inverter_ms: 500,
            inverter_wire: Wire::new(baud(&config.pylon.link), 0, seed ^ 0x1417),
            inverter_lost_at: None,
            pack_bytes: 0,
        }
    }

    fn lines(config: &Config, plant: &Plant, seed: u64) -> Vec<PackLine> {
        let timing = Timing::of(&config.poll);
        config
            .packs
            .iter()
            .zip(&plant.packs)
            .enumerate()
            .map(|(k, (pack, sim))| PackLine {
                // The plant's pack answers at its own address; the poller asks that one.
                poller: PackPoller::new(k + 1, sim.adr, pack.link.clone(), timing),
                deframer: AsciiDeframer::new(),
                wire: Wire::new(baud(&pack.link), PACK_REPLY_DELAY_MS, seed ^ (0xC0FFEE + k as u64)),
            })
            .collect()
    }

    /// The daemon restarts: a new controller from the persisted rebalance state, new pollers,
    /// nothing read yet, whatever was on the lines lost.
    pub fn restart(&mut self) {
        self.controller = Controller::new(&self.config, self.controller.rebalance().clone());
        let noise: Vec<Option<Noise>> = self.lines.iter().map(|l| l.wire.noise).collect();
        self.lines = Self::lines(&self.config, &self.plant, self.plant.config.seed ^ self.t);
        for (line, noise) in self.lines.iter_mut().zip(noise) {
            line.wire.noise = noise;
        }
        self.readings = vec![PackReadings::default(); self.readings.len()];
        self.coil = None;
        self.snapshot = translator::respond::Snapshot::default();
        self.inverter_wire.clear();
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
                let packs = self.lines.len();
                let k = n
                    .parse::<usize>()
                    .ok()
                    .filter(|k| (1..=packs).contains(k))
                    .ok_or_else(|| format!("no pack {n}: packs are numbered 1 to {packs}"))?;
                self.lines[k - 1].wire.noise = (*verb == "noise").then_some(Noise::NOISY);
                Ok(format!("pack {k}: line {}", if *verb == "noise" { "noisy" } else { "quiet" }))
            }
            _ => self.plant.command(line),
        }
    }

    /// The controller.
    pub fn controller(&self) -> &Controller {
        &self.controller
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

    /// The end of a plant second: what the inverter obeys is sampled, the physics advance, the
    /// counter is read (as its poller would, once a second).
    fn end_second(&mut self) {
        let flags = self.obeyed();
        self.told.push((self.t, flags.0, flags.1));
        self.plant.step(1.0);
        self.t += 1;
        if !self.plant.coil.silent {
            self.coil = Some((self.plant.coil.registers.reading, Millis(self.t_ms)));
        }
    }

    /// The earliest thing due.
    fn next_event(&self) -> u64 {
        let lines = self.lines.iter().flat_map(|l| {
            let deadline = l.poller.poll_timeout().as_millis() as u64;
            [Some(deadline), l.wire.next_at()]
        });
        lines
            .chain([Some(self.next_controller_ms), Some(self.next_inverter_ms), self.inverter_wire.next_at()])
            .flatten()
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Everything due at `t_ms`: transfers first (a reply at its deadline still counts), then the
    /// pollers, the controller and the inverter.
    fn run_events(&mut self) {
        let now = self.t_ms;
        let date = self.plant.date_time();
        for k in 0..self.lines.len() {
            let line = &self.lines[k];
            let due = line.wire.next_at().is_some_and(|at| at <= now)
                || line.poller.poll_timeout() <= Duration::from_millis(now);
            if !due {
                continue;
            }
            while let Some(transfer) = self.lines[k].wire.arrived(now) {
                self.pack_bytes += transfer.bytes.len() as u64;
                match transfer.dir {
                    Dir::ToDevice => {
                        if let Some(reply) = pack_reply(&mut self.plant, k, &transfer.bytes, date) {
                            self.lines[k].wire.reply(now, reply);
                        }
                    }
                    Dir::ToDaemon => {
                        let line = &mut self.lines[k];
                        let mut bytes = transfer.bytes.as_slice();
                        while !bytes.is_empty() {
                            let n = line.deframer.push(bytes);
                            bytes = &bytes[n..];
                            while let Some(frame) = line.deframer.next_frame() {
                                line.poller.handle_frame(Duration::from_millis(now), &frame);
                            }
                        }
                    }
                }
            }
            self.service_poller(k, now);
        }
        if now >= self.next_controller_ms {
            self.step_controller();
            self.next_controller_ms = now + CONTROLLER_EVERY_MS;
        }
        while let Some(transfer) = self.inverter_wire.arrived(now) {
            match transfer.dir {
                // The responder answers at once, from the snapshot of the moment.
                Dir::ToDevice => {
                    if let Some(reply) = respond(&self.snapshot, &transfer.bytes, &self.emulation, now) {
                        self.inverter_wire.reply(now, reply);
                    }
                }
                Dir::ToDaemon => {
                    self.plant.inverter.bms = Reply::parse(0x63, &transfer.bytes, Dialect::default())
                        .ok()
                        .and_then(|r| match r.outcome {
                            Ok(Response::SystemManagement(m)) => Some(m),
                            _ => None,
                        });
                }
            }
        }
        if now >= self.next_inverter_ms {
            match self.inverter_lost_at {
                None => self.inverter_wire.send(now, REQUEST_0X63.to_vec()),
                // It keeps the last answer for 30 s, then runs on its no-comm settings.
                Some(at) if self.t.saturating_sub(at) >= 30 => self.plant.inverter.bms = None,
                Some(_) => {}
            }
            self.next_inverter_ms = now + INVERTER_EVERY_MS;
        }
    }

    /// The poller's timeouts, its next request, its notes, its readings.
    fn service_poller(&mut self, k: usize, now: u64) {
        let line = &mut self.lines[k];
        let at = Duration::from_millis(now);
        // A cycle that ends at its next one's start begins the next at once: at most twice.
        for _ in 0..2 {
            match line.poller.poll_transmit(at) {
                Some(frame) => {
                    line.wire.send(now, frame);
                    break;
                }
                None if line.poller.poll_timeout() > at => break,
                None => {}
            }
        }
        while let Some(note) = line.poller.poll_note() {
            if let Note::Event(text) = note {
                self.events.push(format!("{:>7} s {text}", self.t));
            } else if let (Note::Warn(text), true) = (note, std::env::var_os("SIM_WARN").is_some()) {
                self.events.push(format!("{:>7} s warn {text}", self.t));
            }
        }
        self.readings[k].clone_from(line.poller.readings());
    }

    fn step_controller(&mut self) {
        let now = self.now();
        let r = &self.plant.inverter.registers;
        let inverter = InverterReadings {
            output_priority: Some(r.get(301)),
            charging_priority: Some(r.get(331)),
            ..InverterReadings::default()
        };
        let inputs = Inputs {
            packs: &self.readings,
            coil: self.coil,
            coil_settings: Some(self.plant.coil.registers.settings),
            inverter: &inverter,
            overrides: &self.overrides,
            order: self.orders.pop(),
        };
        let out = self.controller.step(now, &inputs);
        self.snapshot = out.snapshot;
        // What a 0x63 would be answered now, as an inverter asking all the time would see it.
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
            (true, None) => self.answer_off_since = Some(self.t_ms),
            (false, Some(_)) => self.answer_off_since = None,
            _ => {}
        }
        // A perfect keeper: the targets take effect at once.
        let t = out.targets;
        if let Some(v) = t.output_priority {
            self.plant.inverter.registers.set(301, v);
        }
        if let Some(v) = t.charging_priority {
            self.plant.inverter.registers.set(331, v);
        }
        if let Some(coil) = t.coil {
            self.set_coil(coil);
        }
        for action in out.coil_actions {
            if let Action::CalibrateCoilFull { capacity_mah, full_voltage_cv } = action {
                self.set_coil((capacity_mah, full_voltage_cv));
                self.plant.coil.apply(coil_modbus::Effect::SetLevel(coil_modbus::Level::Full));
            }
        }
        // Pack commands go over the pack's line, after its next 0x44.
        for (k, command) in out.pack_commands {
            if let Some(line) = self.lines.get_mut(k) {
                line.poller.command(command);
            }
        }
        self.events.extend(out.events.into_iter().map(|(text, why)| {
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

    fn set_coil(&mut self, (capacity_mah, full_voltage_cv): (u32, u16)) {
        let s = &mut self.plant.coil.registers.settings;
        if (s.capacity_mah, s.full_voltage_cv) != (capacity_mah, full_voltage_cv) {
            (s.capacity_mah, s.full_voltage_cv) = (capacity_mah, full_voltage_cv);
            self.plant.coil.apply(coil_modbus::Effect::SettingsChanged);
        }
    }

    /// Whether the inverter polls (no `lose inverter` in force).
    pub fn inverter_polling(&self) -> bool {
        self.inverter_lost_at.is_none()
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

/// The plant's pack `k` answers a request's bytes as the simulator's server does: not at all when
/// silent, with noise before the reply (and now and then a broken character) when it is garbling.
fn pack_reply(plant: &mut Plant, k: usize, request: &[u8], date: pace_proto::DateTime) -> Option<Vec<u8>> {
    let request = pace_proto::Request::parse(request).ok()?;
    let pack = plant.packs.get_mut(k)?;
    if pack.silent {
        return None;
    }
    let garbage = pack.garbage;
    let reply = pack.answer(&request, date)?;
    let mut out = Vec::with_capacity(256);
    reply.emit(&mut out).ok()?;
    if garbage {
        let mut noisy: Vec<u8> = (0..8).map(|_| plant.rng.byte()).filter(|b| *b != b'~').collect();
        if plant.rng.next_f64() < 0.5 && out.len() > 20 {
            out[15] = if out[15] == b'0' { b'1' } else { b'0' };
        }
        noisy.append(&mut out);
        return Some(noisy);
    }
    Some(out)
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
    let mut toml =
        String::from("[pylon]\nlink = \"tcp://127.0.0.1:1\"\n\n[coil]\nlink = \"tcp://127.0.0.1:2\"\n\n");
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
