//! The whole daemon as one machine without I/O: the pack pollers, the counter's and the
//! inverter's keepers, the controller, the operator's orders, the energy meters, the history's
//! minutes and the event buffer, owned together. Bytes, failures, orders and the time go in;
//! bytes to write, the next deadline, events and the published view come out. No thread, no
//! lock, no clock: the service (`runtime`), the simulated world and the replay drive this one
//! machine, so what a simulated month proves is what runs.
//!
//! ```text
//!   handle_frame(line, now, reply) ─┐                        ┌─► poll_transmit()  bytes for a line
//!   handle_failure(line, now, why) ─┤                        ├─► poll_timeout()   the next deadline
//!   handle_timeout(now) ────────────┼─► Station ─────────────┼─► poll_event()     log, state, history
//!   handle_order(order) ────────────┘   (machines, controller)└─► published()     what the last step saw
//! ```
//!
//! A driver's loop: deliver what arrived (`handle_frame` / `handle_failure`), then
//! `handle_timeout(now)` (overdue replies, due cycles, the controller's step), then write every
//! `poll_transmit`, pass every `poll_event` on, and sleep until `poll_timeout`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use link::{AsciiDeframer, Deframer, RtuDeframer};
use maestro_core::{Millis, RebalanceState, Step};

use crate::config::Config;
use crate::control::{Control, Refused, charging_priority, charging_priority_name};
use crate::core::{Controller, Inputs, Now};
use crate::energy::{Energy, Meter};
use crate::history::{self, Closed, Minutes};
use crate::keeper::{CoilPoller, InverterPoller};
use crate::machine::{Machine, Note, Problem};
use crate::poller::{PackPoller, Timing};
use crate::shared::{Order, Orders, PackReadings, Published};
use crate::state::{Overrides, Persisted};

/// One of the station's lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LineId {
    /// Pack `k` (0-based; pack `k + 1` to the user).
    Pack(usize),
    /// The coulomb counter.
    Coil,
    /// The inverter's Modbus port.
    Inverter,
}

impl LineId {
    /// The name a capture gives the line (`pack1`, `coil`, `inverter`).
    pub fn name(self) -> String {
        match self {
            Self::Pack(k) => format!("pack{}", k + 1),
            Self::Coil => "coil".into(),
            Self::Inverter => "inverter".into(),
        }
    }

    /// The line a capture's name stands for.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "coil" => Some(Self::Coil),
            "inverter" => Some(Self::Inverter),
            _ => name.strip_prefix("pack")?.parse::<usize>().ok()?.checked_sub(1).map(Self::Pack),
        }
    }

    /// A fresh deframer for the replies that come back on the line.
    pub fn deframer(self) -> Box<dyn Deframer + Send> {
        match self {
            Self::Pack(_) => Box::new(AsciiDeframer::new()),
            Self::Coil | Self::Inverter => Box::new(RtuDeframer::new(modbus_rtu::Side::Response)),
        }
    }
}

impl std::fmt::Display for LineId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// Bytes to write on a line; its reply (or failure) is awaited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where.
    pub line: LineId,
    /// What.
    pub bytes: Vec<u8>,
    /// The reply is awaited until then; past it the station counts it missing itself.
    pub reply_by: Millis,
}

/// What the state file must hold now.
#[derive(Clone, Debug, PartialEq)]
pub enum Persist {
    /// The rebalance procedure's state changed.
    Rebalance(RebalanceState),
    /// The energy meters are due for the file.
    Energy(Energy),
    /// The operator changed a standing order.
    Overrides(Overrides),
}

/// Something for the driver to pass on.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A line for the event log (the driver stamps it with the wall clock it passed in).
    Log {
        /// What happened.
        text: String,
        /// Why, in words.
        reasons: Vec<String>,
    },
    /// A line for the process log only.
    Warn(String),
    /// For the state file.
    Persist(Persist),
    /// A closed minute for the history.
    History(Closed),
}

/// Events kept at most for a driver that does not read them; beyond, log lines are dropped
/// (never a [`Persist`] or a history minute).
const EVENTS_MAX: usize = 4096;

/// The daemon without I/O. See the module documentation.
#[derive(Debug)]
pub struct Station {
    config: Config,
    packs: Vec<PackPoller>,
    coil: Option<CoilPoller>,
    inverter: Option<InverterPoller>,
    /// Frames a machine found were not the reply it asked for, per line: added to the line's
    /// counters the driver hands in.
    bad_frames: Vec<u64>,
    controller: Controller,
    meter: Meter,
    minutes: Minutes,
    orders: Orders,
    overrides: Overrides,
    events: VecDeque<Event>,
    published: Arc<Published>,
    now: Now,
    next_step: Millis,
    stale_ms: u64,
    frozen: bool,
    /// When the inverter's last CAN heartbeat arrived (the start, before the first).
    heartbeat_at: Millis,
    /// [`Station::poll_timeout`] as last worked out; cleared by everything that moves a deadline
    /// (drivers ask for it far more often than anything changes).
    timeout: std::cell::Cell<Option<Millis>>,
}

fn at(now: Now) -> Duration {
    Duration::from_millis(now.mono.0)
}

/// A machine's deadline on the station's millisecond clock (never early).
fn millis(d: Duration) -> Millis {
    let whole = d.as_secs().saturating_mul(1000).saturating_add(u64::from(d.subsec_millis()));
    Millis(if d.subsec_nanos() % 1_000_000 == 0 { whole } else { whole.saturating_add(1) })
}

impl Station {
    /// The station of `config`, going on from `persisted` (the state file as loaded), at `now`.
    pub fn new(config: &Config, persisted: &Persisted, now: Now) -> Self {
        let timing = Timing::of(config);
        let secs = |s: f64| Duration::from_secs_f64(s.max(0.0));
        let packs = config
            .packs
            .iter()
            .enumerate()
            .map(|(k, p)| PackPoller::new(k + 1, p.adr, p.link.clone(), timing))
            .collect::<Vec<_>>();
        let coil = config.coil.as_ref().map(|c| {
            let timeout = secs(config.poll.timeout_s.max(0.5));
            CoilPoller::new(c.slave, c.link.clone(), secs(config.poll.period_s), timeout)
        });
        let inverter = config.inverter.as_ref().map(|i| InverterPoller::new(i.slave, i.link.clone()));
        let save_every_ms = (config.state.energy_save_s * 1000.0) as u64;
        Self {
            bad_frames: vec![0; packs.len() + 2],
            published: Arc::new(Published {
                packs: vec![PackReadings::default(); packs.len()],
                rebalance: persisted.rebalance.clone(),
                overrides: persisted.overrides.clone(),
                ..Published::default()
            }),
            meter: Meter::new(persisted.energy.clone(), packs.len(), now.mono, save_every_ms),
            packs,
            coil,
            inverter,
            controller: Controller::new(config, persisted.rebalance.clone()),
            minutes: Minutes::default(),
            orders: Orders::default(),
            overrides: persisted.overrides.clone(),
            events: VecDeque::new(),
            now,
            next_step: now.mono,
            stale_ms: (config.safety.stale_after_s * 1000.0) as u64,
            config: config.clone(),
            frozen: false,
            heartbeat_at: now.mono,
            timeout: std::cell::Cell::new(None),
        }
    }

    /// The daemon starts again at `now` (a restart in the simulated world or in a capture's
    /// journal): a fresh station from what the state file holds, `persisted`, with this one's
    /// rebalance state and standing orders written into it first, as the service keeps them.
    pub fn restart(&mut self, persisted: &mut Persisted, now: Now) {
        persisted.rebalance = self.rebalance().clone();
        persisted.overrides = self.overrides.clone();
        *self = Self::new(&self.config, persisted, now);
    }

    /// Every line the configuration names, packs first.
    pub fn lines(&self) -> impl Iterator<Item = LineId> + '_ {
        (0..self.packs.len())
            .map(LineId::Pack)
            .chain(self.coil.iter().map(|_| LineId::Coil))
            .chain(self.inverter.iter().map(|_| LineId::Inverter))
    }

    /// The configuration the station runs.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn machine(&mut self, line: LineId) -> Option<&mut dyn Machine> {
        self.timeout.set(None);
        match line {
            LineId::Pack(k) => self.packs.get_mut(k).map(|m| m as &mut dyn Machine),
            LineId::Coil => self.coil.as_mut().map(|m| m as &mut dyn Machine),
            LineId::Inverter => self.inverter.as_mut().map(|m| m as &mut dyn Machine),
        }
    }

    /// The line of a slot of `bad_frames`: the packs, the counter, the inverter.
    fn line_at(&self, slot: usize) -> LineId {
        match slot.checked_sub(self.packs.len()) {
            None => LineId::Pack(slot),
            Some(0) => LineId::Coil,
            Some(_) => LineId::Inverter,
        }
    }

    fn slot(&self, line: LineId) -> usize {
        match line {
            LineId::Pack(k) => k,
            LineId::Coil => self.packs.len(),
            LineId::Inverter => self.packs.len() + 1,
        }
    }

    /// A deframed reply arrived on `line` at `now`.
    pub fn handle_frame(&mut self, line: LineId, now: Now, frame: &[u8]) {
        self.now = now;
        if let Some(m) = self.machine(line) {
            m.handle_frame(at(now), frame);
        }
        self.notes(line);
    }

    /// The exchange in flight on `line` failed at `now` (the line's own error).
    pub fn handle_failure(&mut self, line: LineId, now: Now, problem: Problem) {
        self.now = now;
        if let Some(m) = self.machine(line) {
            m.handle_failure(at(now), problem);
        }
        self.notes(line);
    }

    /// The line's counters as its driver keeps them (bytes, reconnects, checksum errors).
    pub fn handle_link_stats(&mut self, line: LineId, mut stats: link::Stats) {
        stats.checksum_errors += self.bad_frames.get(self.slot(line)).copied().unwrap_or(0);
        if let Some(m) = self.machine(line) {
            m.set_link_stats(stats);
        }
    }

    /// The time is `now`: overdue replies fail, due cycles start, and the controller steps when
    /// its deadline passed.
    pub fn handle_timeout(&mut self, now: Now) {
        self.now = now;
        self.timeout.set(None);
        for slot in 0..self.bad_frames.len() {
            let line = self.line_at(slot);
            let Some(m) = self.machine(line) else { continue };
            if millis(m.poll_timeout()) <= now.mono {
                m.handle_timeout(at(now));
                self.notes(line);
            }
        }
        if now.mono >= self.next_step && !self.frozen {
            self.step();
            self.next_step = Millis(self.controller.poll_timeout().0.max(now.mono.0 + 1));
        }
    }

    /// The next bytes to write, if a machine has some due at the last time handed in.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        (0..self.bad_frames.len()).find_map(|slot| {
            let line = self.line_at(slot);
            let bytes = self.poll_transmit_on(line)?;
            let fallback = self.now.mono;
            let reply_by = self.machine(line).map_or(fallback, |m| millis(m.poll_timeout()));
            Some(Transmit { line, bytes, reply_by })
        })
    }

    /// As [`Station::poll_transmit`], for one line: for a driver that lets each line write on a
    /// schedule of its own (the replay writes when the capture shows the live run did).
    #[must_use]
    pub fn poll_transmit_on(&mut self, line: LineId) -> Option<Vec<u8>> {
        let now = at(self.now);
        let m = self.machine(line)?;
        if m.poll_timeout() > now {
            return None;
        }
        // A cycle that ends at its next one's start begins the next at once: at most twice.
        let mut sent = None;
        for _ in 0..2 {
            match m.poll_transmit(now) {
                Some(bytes) => {
                    sent = Some(bytes);
                    break;
                }
                None if m.poll_timeout() > now => break,
                None => {}
            }
        }
        self.notes(line);
        sent
    }

    /// When the station next needs [`Station::handle_timeout`]: a machine's deadline or the
    /// controller's next step.
    #[must_use]
    pub fn poll_timeout(&self) -> Millis {
        if let Some(t) = self.timeout.get() {
            return t;
        }
        let t = self.deadline(|_| true);
        self.timeout.set(Some(t));
        t
    }

    /// As [`Station::poll_timeout`], leaving out the machines that only wait to write, their
    /// deadline passed and handled (the replay, which writes when the capture did, steps through
    /// the rest).
    #[must_use]
    pub fn poll_deadline(&self) -> Millis {
        let handled = at(self.now);
        self.deadline(|d| *d > handled)
    }

    fn deadline(&self, counts: impl Fn(&Duration) -> bool) -> Millis {
        let machines = self
            .packs
            .iter()
            .map(Machine::poll_timeout)
            .chain(self.coil.iter().map(Machine::poll_timeout))
            .chain(self.inverter.iter().map(Machine::poll_timeout))
            .filter(counts)
            .map(millis);
        let step = if self.frozen { Millis(u64::MAX) } else { self.next_step };
        machines.fold(step, |a, b| if b.0 < a.0 { b } else { a })
    }

    /// The next event for the driver, oldest first.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// What the last step saw and decided, whole.
    pub fn published(&self) -> Arc<Published> {
        self.published.clone()
    }

    /// The rebalance procedure's state now.
    pub fn rebalance(&self) -> &RebalanceState {
        self.controller.rebalance()
    }

    /// What has been read from each pack up to now (newer than the last step's view).
    pub fn pack_readings(&self) -> impl Iterator<Item = &PackReadings> + '_ {
        self.packs.iter().map(PackPoller::readings)
    }

    /// Frames the machines found were not the reply they asked for, on every line.
    pub fn bad_frames(&self) -> u64 {
        self.bad_frames.iter().sum()
    }

    /// The operator's standing orders.
    pub fn overrides(&self) -> &Overrides {
        &self.overrides
    }

    /// The inverter's CAN heartbeat (0x305) arrived at `now`.
    pub fn handle_heartbeat(&mut self, now: Now) {
        self.now = now;
        self.heartbeat_at = now.mono;
    }

    /// Whether the inverter's heartbeat has been missing for `can.peer_timeout_s` and that is a
    /// reason (`can.peer_timeout_disables`).
    fn inverter_silent(&self, now: Millis) -> bool {
        self.config.can.as_ref().is_some_and(|c| {
            c.peer_timeout_disables && now.since(self.heartbeat_at) > (c.peer_timeout_s * 1000.0) as u64
        })
    }

    /// Replaces the operator's standing orders whole (a test's or an embedder's; the API changes
    /// one at a time through [`Station::handle_order`]).
    pub fn set_overrides(&mut self, overrides: Overrides) {
        self.log(format!("operator: {overrides:?}"), Vec::new());
        self.overrides = overrides.clone();
        self.events.push_back(Event::Persist(Persist::Overrides(overrides)));
        self.republish();
    }

    /// The published view with the standing orders as they are now.
    fn republish(&mut self) {
        let mut published = (*self.published).clone();
        published.overrides = self.overrides.clone();
        self.published = Arc::new(published);
    }

    /// Fault injection for tests: while frozen the controller does not step, as a hung safety
    /// loop would not (rule 10 then has the responder answer disabled).
    pub fn freeze(&mut self, frozen: bool) {
        self.timeout.set(None);
        self.frozen = frozen;
    }

    fn log(&mut self, text: String, reasons: Vec<String>) {
        if self.events.len() < EVENTS_MAX {
            self.events.push_back(Event::Log { text, reasons });
        }
    }

    fn notes(&mut self, line: LineId) {
        let slot = self.slot(line);
        while let Some(note) = self.machine(line).and_then(Machine::poll_note) {
            match note {
                Note::Event(text) => self.log(text, Vec::new()),
                Note::Warn(text) if self.events.len() < EVENTS_MAX => {
                    self.events.push_back(Event::Warn(text))
                }
                Note::Warn(_) => {}
                Note::BadFrame => {
                    if let Some(n) = self.bad_frames.get_mut(slot) {
                        *n += 1;
                    }
                }
            }
        }
    }

    /// One controller step at the last time handed in: the readings in, the decision, the
    /// targets and commands to the machines, the events, the state and the published view out.
    fn step(&mut self) {
        let now = self.now;
        let readings: Vec<PackReadings> = self.packs.iter().map(|p| p.readings().clone()).collect();
        let coil = self.coil.as_ref().map(|c| c.readings().clone()).unwrap_or_default();
        let coil_settings = self.coil.as_ref().and_then(CoilPoller::settings);
        let inverter = self.inverter.as_ref().map(|i| i.readings().clone()).unwrap_or_default();
        let order = self.orders.pop();
        let inputs = Inputs {
            packs: &readings,
            coil: coil.reading,
            coil_settings,
            inverter: &inverter,
            overrides: &self.overrides,
            order,
            inverter_silent: self.inverter_silent(now.mono),
        };
        let out = self.controller.step(now, &inputs);
        let moment = history::moment(&now, &out, &readings, self.stale_ms);
        if let Some(closed) = self.minutes.observe(&moment) {
            self.events.push_back(Event::History(closed));
        }
        let targets = out.targets;
        if let Some(i) = &mut self.inverter {
            i.set_targets(targets.output_priority, targets.charging_priority);
        }
        if let Some(c) = &mut self.coil {
            c.set_target(targets.coil);
            for action in out.coil_actions {
                c.act(action);
            }
        }
        for (k, command) in out.pack_commands {
            if let Some(p) = self.packs.get_mut(k) {
                p.command(command);
            }
        }
        for (text, reasons) in out.events {
            self.log(text, reasons);
        }
        if out.persist {
            self.events.push_back(Event::Persist(Persist::Rebalance(out.rebalance.clone())));
        }
        if let Some(energy) = self.meter.step(now.mono, &readings, coil.reading) {
            self.events.push_back(Event::Persist(Persist::Energy(energy)));
        }
        self.published = Arc::new(Published {
            packs: readings,
            can_carry: out.can_carry,
            coil,
            coil_settings,
            inverter,
            snapshot: Arc::new(out.snapshot),
            decision: Some(out.decision),
            limits: Some(out.limits),
            rebalance: out.rebalance,
            energy_source: self.meter.source(),
            overrides: self.overrides.clone(),
        });
    }

    /// The energy meters as they stand, marked as handed to the state file (at a clean stop).
    pub fn save_energy(&mut self) -> Energy {
        self.meter.save(self.now.mono)
    }

    /// Takes an operator's order (the API's, MQTT's, a test's): a standing order changes at
    /// once (and a [`Persist::Overrides`] follows); an order for the procedure is queued and
    /// carried out at the next steps, oldest first. Says what was done.
    ///
    /// # Errors
    /// [`Refused`] naming why the order cannot be carried out.
    pub fn handle_order(&mut self, order: &Control) -> Result<String, Refused> {
        let done = |changed: bool, what: &str| {
            if changed { what.to_owned() } else { format!("{what} already; nothing changed") }
        };
        match order {
            Control::ForceDisable => {
                let changed = self.change_overrides("forced_disable: true", |o| o.forced_disable = true);
                Ok(done(changed, "charging and discharging forced off"))
            }
            Control::ReleaseForceDisable => {
                let changed = self.change_overrides("forced_disable: false", |o| o.forced_disable = false);
                Ok(if changed {
                    "forced disable released; the fail-safe rules decide again".into()
                } else {
                    "not forced off; nothing changed".into()
                })
            }
            Control::RebalanceStart => {
                // A settling rebalance does not refuse a new one: the start ends the settling.
                self.queue(Order::Start, |step| {
                    matches!(step, Step::Running | Step::Completing)
                        .then(|| Refused::Conflict("a rebalance is already under way".into()))
                })?;
                self.log("operator: rebalance start requested".into(), Vec::new());
                Ok("rebalance start requested".into())
            }
            Control::RebalanceCancel => {
                self.queue(Order::Cancel, |step| {
                    (step == Step::Idle).then(|| Refused::Conflict("no rebalance is under way".into()))
                })?;
                self.log("operator: rebalance cancel requested".into(), Vec::new());
                Ok("rebalance cancel requested; the SOC is uncalibrated until the next full rebalance".into())
            }
            Control::SetChargeVoltage { charge_voltage_mv: Some(mv) } => {
                let lowest_ov = self
                    .packs
                    .iter()
                    .map(|p| p.readings().limits.pack_ov_alarm.map(units::Millivolts::raw))
                    .collect::<Option<Vec<u16>>>()
                    .and_then(|v| v.into_iter().min());
                let Some(lowest_ov) = lowest_ov else {
                    return Err(Refused::Conflict(
                        "the packs' over-voltage alarms are not read yet; try again in a few seconds".into(),
                    ));
                };
                if *mv <= 27_000 || *mv >= lowest_ov {
                    return Err(Refused::BadRequest(format!(
                        "charge_voltage_mv {mv} must lie above 27000 and below the lowest pack over-voltage alarm ({lowest_ov})"
                    )));
                }
                let mv = *mv;
                let changed = self.change_overrides(&format!("charge_voltage_mv: {mv}"), |o| {
                    o.charge_voltage_mv = Some(mv)
                });
                Ok(done(changed, &format!("charge voltage limit set to {mv} mV")))
            }
            Control::SetChargeVoltage { charge_voltage_mv: None } => {
                let changed =
                    self.change_overrides("charge_voltage_mv: none", |o| o.charge_voltage_mv = None);
                Ok(done(changed, "charge voltage override cleared"))
            }
            Control::ForceChargingPriority { priority } => {
                let value = charging_priority(priority)?;
                if self.config.inverter.is_none() {
                    return Err(Refused::Conflict("no [inverter] is configured".into()));
                }
                self.queue(Order::ChargingPriority(Some(value)), |_| None)?;
                let done =
                    format!("charging priority forced to {}", charging_priority_name(value).unwrap_or("?"));
                self.log(format!("operator: {done}"), Vec::new());
                Ok(done)
            }
            Control::ResetChargingPriority => {
                self.queue(Order::ChargingPriority(None), |_| None)?;
                self.log("operator: forced charging priority released".into(), Vec::new());
                Ok("forced charging priority released".into())
            }
            Control::JoinPack { pack } => {
                let pack = *pack;
                let n = self.packs.len();
                let Some(poller) = pack.checked_sub(1).and_then(|k| self.packs.get(k)) else {
                    return Err(Refused::BadRequest(format!("no pack {pack}: packs are numbered 1 to {n}")));
                };
                let Some((status, _)) = poller.readings().status.as_ref() else {
                    return Err(Refused::Conflict(format!("pack {pack} has not reported its state yet")));
                };
                let over_voltage = status.protect1.intersects(
                    pace_proto::Protect1::HIGH_CELL_VOLTAGE | pace_proto::Protect1::HIGH_TOTAL_VOLTAGE,
                );
                if over_voltage {
                    return Err(Refused::Conflict(format!(
                        "pack {pack} is held by its BMS's over-voltage protection: it releases itself \
                         at its release voltage (a rebalance's completion joins its packs by itself)"
                    )));
                }
                if status.system.contains(pace_proto::SystemState::CHARGE_MOSFET_ON) {
                    return Err(Refused::Conflict(format!(
                        "pack {pack} is on the bus already (its charge MOSFET is on)"
                    )));
                }
                self.queue(Order::Join(pack), |_| None)?;
                self.log(format!("operator: join pack {pack} requested"), Vec::new());
                Ok(format!(
                    "pack {pack} joins the bus when it is within {} mV of it (see its pack_joining or pack_isolated reason)",
                    self.config.safety.join_delta_mv
                ))
            }
        }
    }

    /// Changes one standing order in place; one that changes nothing is a no-op (no event, no
    /// write). Whether it changed.
    fn change_overrides(&mut self, what: &str, change: impl FnOnce(&mut Overrides)) -> bool {
        let mut after = self.overrides.clone();
        change(&mut after);
        if after == self.overrides {
            return false;
        }
        self.overrides = after.clone();
        self.log(format!("operator: {what}"), Vec::new());
        self.events.push_back(Event::Persist(Persist::Overrides(after)));
        self.republish();
        true
    }

    /// Queues `order` behind the orders already waiting, unless `refuse` objects given the
    /// procedure's step once those are carried out.
    fn queue(&mut self, order: Order, refuse: impl FnOnce(Step) -> Option<Refused>) -> Result<(), Refused> {
        if let Some(refused) = refuse(self.orders.step_after(self.controller.rebalance().step)) {
            return Err(refused);
        }
        if !self.orders.push(order) {
            return Err(Refused::Conflict(format!(
                "{} orders are waiting already; try again in a second",
                Orders::MAX
            )));
        }
        Ok(())
    }
}
