//! The safety loop's decisions without I/O: what the packs, the counter, the inverter and the
//! operator last said goes in with the time; the snapshot the responder answers from, the
//! decision, the limits, the rebalance's targets, the commands for the devices and the events come
//! out. No thread, no lock, no clock — [`Now`] is passed in, the tariff windows' wall clock
//! included — so hours and days of it run in microseconds in a test (issue 12's first piece).
//!
//! ```text
//!   Inputs { packs, coil, inverter, overrides, order } ──► Controller::step(now) ──► Output {
//!          snapshot, decision, limits, targets, pack commands, coil actions, events, persist }
//! ```

use maestro_core::join::{Bus, JoinConfig, JoinPack, Joiner, Waiting};
use maestro_core::{
    Action, Decision, Maestro, Millis, Observation, PackObservation, Reason, Rebalance, RebalanceConfig,
    RebalanceInput, RebalanceState, Step, Targets, Thresholds,
};
use pace_proto::Command;
use translator::limits::{Direction, LimitInput, Limiter, Limits, PackFlow, can_carry};
use translator::respond::{Enable, PackSnapshot, Protections, Snapshot};
use translator::{Input, PackInput, Settings};

use crate::config::{self, Config};
use crate::shared::{InverterReadings, Order, PackReadings};
use crate::state::Overrides;

/// The one time type: the monotonic instant the readings are stamped with, and the wall clock
/// (the rebalance's days and the tariff windows).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Now {
    /// Monotonic, the same clock as the readings' instants.
    pub mono: Millis,
    /// Wall clock.
    pub wall: jiff::Timestamp,
}

/// What the controller looks at, as the pollers and the operator left it.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// One per pack, pack 1 first.
    pub packs: &'a [PackReadings],
    /// The counter's last reading and when.
    pub coil: Option<(coil_modbus::Reading, Millis)>,
    /// The counter's settings as it reports them.
    pub coil_settings: Option<coil_modbus::Settings>,
    /// The inverter's priorities as it reports them.
    pub inverter: &'a InverterReadings,
    /// The operator's standing orders.
    pub overrides: &'a Overrides,
    /// The next operator order, if one is waiting.
    pub order: Option<Order>,
    /// The inverter's CAN heartbeat stopped and that is a reason (`can.peer_timeout_disables`).
    pub inverter_silent: bool,
}

/// An event for the log: its text and the reasons it carries.
pub type EventText = (String, Vec<String>);

/// What one step produced.
#[derive(Clone, Debug)]
pub struct Output {
    /// What the responder answers from.
    pub snapshot: Snapshot,
    /// The decision.
    pub decision: Decision,
    /// The current limits of SAFETY.md §2a.
    pub limits: Limits,
    /// Keep the devices at these.
    pub targets: Targets,
    /// Pace commands to send: (pack index, command).
    pub pack_commands: Vec<(usize, Command)>,
    /// Counter actions to carry out.
    pub coil_actions: Vec<Action>,
    /// For the event log, in order.
    pub events: Vec<EventText>,
    /// The rebalance state now.
    pub rebalance: RebalanceState,
    /// The rebalance state changed: write the state file.
    pub persist: bool,
    /// Whether each pack counted for charging and for discharging (SAFETY.md §2a).
    pub can_carry: Vec<(bool, bool)>,
}

/// How long the controller lets new readings wait at most: while data flows it steps this often.
pub const STEP_EVERY_MS: u64 = 250;

/// Maestro, the limiter and the rebalance procedure, with their settings.
#[derive(Clone, Debug)]
pub struct Controller {
    maestro: Maestro,
    limiter: Limiter,
    rebalance: Rebalance,
    settings: Settings,
    tz: jiff::tz::TimeZone,
    coil_configured: bool,
    stale_ms: u64,
    last: Option<(bool, bool)>,
    observed: Vec<PackObservation>,
    next: Millis,
    /// SAFETY.md §2b: when a pack the rebalance left locked may be switched back on.
    joiner: Joiner,
}

impl Controller {
    /// The controller for `config`, resuming the rebalance from `state` (as loaded at start).
    pub fn new(config: &Config, state: RebalanceState) -> Self {
        let s = &config.safety;
        let maestro = Maestro::new(Thresholds {
            stale_after_ms: (s.stale_after_s * 1000.0) as u64,
            decision_max_age_ms: (s.decision_max_age_s * 1000.0) as u64,
            overcurrent_for_ms: (s.overcurrent_for_s * 1000.0) as u64,
            cell_ov_mv: s.cell_ov_mv,
            cell_ov_release_mv: s.cell_ov_release_mv,
            cell_uv_mv: s.cell_uv_mv,
            cell_uv_release_mv: s.cell_uv_release_mv,
            cell_ot_dc: (s.cell_ot_c * 10.0).round() as i32,
            cell_cold_charge_dc: (s.cell_cold_charge_c * 10.0).round() as i32,
            cell_cold_discharge_dc: (s.cell_cold_discharge_c * 10.0).round() as i32,
            ..Thresholds::default()
        });
        let r = &config.rebalance;
        let settings = Settings {
            charge_voltage: units::Millivolts::from_raw(s.charge_voltage_mv),
            rebalance_charge_voltage: units::Millivolts::from_raw(r.charge_voltage_mv),
            ..Settings::default()
        };
        let rebalance_config = RebalanceConfig {
            capacity_mah: r.capacity_mah,
            regular_capacity_mah: r.regular_capacity_mah,
            full_voltage_cv: r.charge_voltage_mv / 10,
            regular_full_voltage_cv: s.charge_voltage_mv / 10,
            threshold_mv: r.threshold_mv,
            tail_current_ma: (r.tail_current_a * 1000.0) as u32,
            every_s: (r.every_days * 86400.0) as u64,
            balanced_delta_mv: r.balanced_delta_mv,
            hold_max_s: r.hold_max_s,
            join_wait_max_s: s.join_wait_max_s,
            settle_max_s: r.settle_max_s,
            retrigger_min_s: r.retrigger_min_s,
            cheap_windows: config
                .tariff
                .cheap_windows
                .iter()
                .filter_map(|w| config::parse_window(w).ok())
                .collect(),
        };
        let stale_ms = maestro.thresholds().stale_after_ms;
        Self {
            maestro,
            // Checked when the configuration was read.
            limiter: Limiter::new(s.limit_settings(r.hold_charge_a).unwrap_or_default()),
            rebalance: Rebalance::new(rebalance_config, state),
            settings,
            tz: jiff::tz::TimeZone::get(&config.tariff.time_zone).unwrap_or(jiff::tz::TimeZone::UTC),
            coil_configured: config.coil.is_some(),
            stale_ms,
            last: None,
            observed: Vec::new(),
            next: Millis(0),
            joiner: Joiner::new(JoinConfig {
                delta_mv: u32::from(s.join_delta_mv),
                settle_ms: (s.join_settle_s * 1000.0) as u64,
                wait_max_ms: s.join_wait_max_s * 1000,
            }),
        }
    }

    /// When the controller next needs a step: [`STEP_EVERY_MS`] after the last one, or earlier,
    /// the instant a reading it holds goes stale (rules 2 and 3 then hold at once, not up to a
    /// step later).
    pub fn poll_timeout(&self) -> Millis {
        self.next
    }

    /// The rebalance state.
    pub fn rebalance(&self) -> &RebalanceState {
        self.rebalance.state()
    }

    /// One step at `now`.
    pub fn step(&mut self, now: Now, inputs: &Inputs<'_>) -> Output {
        let readings = inputs.packs;
        let coil = inputs.coil;
        let stale_ms = self.stale_ms;
        let mono = now.mono;
        let flows: Vec<PackFlow> = readings.iter().map(|r| pack_flow(r, mono, stale_ms)).collect();
        // §2b: the packs the rebalance (or the operator) left to join, which of them may be
        // switched on now, and which wait (their reasons go into this decision).
        let joining_before = self.rebalance.state().joining.clone();
        if let Some(Order::Join(pack)) = inputs.order {
            if (1..=readings.len()).contains(&pack) {
                self.rebalance.add_joining(pack);
            }
        }
        let (join_command, waiting) = self.join(mono, coil, readings, &flows);
        let joining = &self.rebalance.state().joining;
        // Refilled in place: the observations keep their cell and temperature buffers from one
        // step to the next.
        let mut observed = std::mem::take(&mut self.observed);
        observed.resize_with(readings.len(), PackObservation::default);
        for (k, ((o, r), f)) in observed.iter_mut().zip(readings).zip(&flows).enumerate() {
            observe(o, r, f);
            o.rebalance_locked = joining.contains(&(k + 1));
        }
        let packs: Vec<PackInput<'_>> = readings
            .iter()
            .map(|r| PackInput { analog: r.analog.as_ref().map(|(a, _)| &**a), limits: r.limits })
            .collect();
        let step = self.rebalance.state().step;
        let active = self.rebalance.state().active();
        // §2b: the top hold charges at the hold current.
        let hold = step == Step::Running && self.rebalance.state().threshold_hit;
        let limits = self.limiter.update(mono.0, &limit_input(readings, &flows, mono, stale_ms, hold));
        let input = Input {
            packs: &packs,
            coil: coil.as_ref().map(|(c, _)| c),
            rebalance_active: active,
            charge_voltage_override: inputs.overrides.charge_voltage_mv.map(units::Millivolts::from_raw),
            limits: Some(&limits),
        };
        let mut view = translator::aggregate(&input, &self.settings);
        let config_out_of_range = view.as_mut().and_then(|v| {
            keep_charge_voltage_in_range(v, readings, active, inputs.overrides.charge_voltage_mv)
        });
        let all_limits = readings.iter().all(|r| r.limits_read);
        let obs = Observation {
            now: mono,
            packs: &observed,
            coil: self.coil_configured.then(|| coil.map(|(_, t)| t)),
            current_ma: view.map(|v| v.current_ma),
            charge_limit_ma: view.and_then(|v| v.max_charge_ma).filter(|_| all_limits),
            discharge_limit_ma: view.and_then(|v| v.max_discharge_ma).filter(|_| all_limits),
            forced_disable: inputs.overrides.forced_disable,
            rebalance_active: active,
            // Rule 13: from the completion's unlock on (SAFETY.md §4 steps 3 and 4).
            rebalance_settling: matches!(step, Step::Completing | Step::Settling),
            inverter_silent: inputs.inverter_silent,
            config_out_of_range,
            joining: &waiting,
        };
        let decision = self.maestro.decide(&obs);
        self.observed = observed;
        let mut out_events = Vec::new();
        let (targets, mut pack_commands, coil_actions, mut persist) =
            self.run_rebalance(now, &decision, inputs, &mut out_events);
        if let Some(k) = join_command {
            let voltage = readings[k].analog.as_ref().map_or(0, |(a, _)| a.voltage.raw());
            out_events.push((
                format!("join: pack {} switched on (charge MOSFET), at {voltage} mV", k + 1),
                Vec::new(),
            ));
            pack_commands.push((k, Command::ChargeMosfet(pace_proto::MosfetSwitch::On)));
        }
        self.keep_joining(readings, mono);
        persist |= self.rebalance.state().joining != joining_before;
        let complete = readings.iter().all(|r| r.analog.is_some() && r.status.is_some() && r.limits_read)
            && (!self.coil_configured || coil.is_some());
        let comm_lost =
            decision.reasons.iter().any(|r| matches!(r, Reason::PackStale { .. } | Reason::CoilStale));
        let snapshot = Snapshot {
            view: if complete { view } else { None },
            packs: readings
                .iter()
                .zip(&limits.shares_ma)
                .map(|(r, share)| PackSnapshot {
                    analog: r.analog.as_ref().map(|(a, _)| a.clone()),
                    status: r.status.as_ref().map(|(s, _)| s.clone()),
                    limits: r.limits,
                    serial: r.serial.clone(),
                    share_ma: *share,
                })
                .collect(),
            enable: Enable {
                charge: decision.charge,
                discharge: decision.discharge,
                at_ms: mono.0,
                comm_lost,
            },
            protections: protections(&decision),
        };
        // The next deadline: the cadence, or the first reading to go stale before it.
        let stale_at = |at: Millis| Millis(at.0 + stale_ms + 1);
        let expiries = readings
            .iter()
            .flat_map(|r| [r.analog.as_ref().map(|(_, t)| *t), r.status.as_ref().map(|(_, t)| *t)])
            .chain([coil.map(|(_, t)| t)])
            .flatten()
            .map(stale_at)
            .filter(|e| e.0 > mono.0);
        self.next = expiries.fold(Millis(mono.0 + STEP_EVERY_MS), |a, b| if b.0 < a.0 { b } else { a });
        let state = (decision.charge, decision.discharge);
        if self.last != Some(state) {
            let onoff = |b: bool| if b { "enabled" } else { "disabled" };
            out_events.push((
                format!("charge {}, discharge {}", onoff(decision.charge), onoff(decision.discharge)),
                decision.reasons.iter().map(Reason::describe).collect(),
            ));
            self.last = Some(state);
        }
        Output {
            snapshot,
            decision,
            limits,
            targets,
            pack_commands,
            coil_actions,
            events: out_events,
            rebalance: self.rebalance.state().clone(),
            persist,
            can_carry: flows.iter().map(|f| (f.can_charge, f.can_discharge)).collect(),
        }
    }

    /// One step of the rebalance procedure: its targets, the one-shot actions as commands, its
    /// events; whether the persisted state changed.
    fn run_rebalance(
        &mut self,
        now: Now,
        decision: &Decision,
        inputs: &Inputs<'_>,
        events: &mut Vec<EventText>,
    ) -> (Targets, Vec<(usize, Command)>, Vec<Action>, bool) {
        let readings = inputs.packs;
        let coil = inputs.coil.map(|(c, _)| c);
        let local = now.wall.to_zoned(self.tz.clone());
        let order = inputs.order;
        let input = RebalanceInput {
            now_s: now.wall.as_second().max(0) as u64,
            local_minute: (local.hour() as u16) * 60 + local.minute() as u16,
            cell_under_voltage: decision.rebalance_needed,
            lowest_cell: decision.lowest_cell,
            cell_spread_mv: readings
                .iter()
                .filter_map(|r| r.analog.as_ref()?.0.cell_extremes())
                .map(|(min, max)| max.1.raw().saturating_sub(min.1.raw()))
                .max(),
            packs_locked: !self.rebalance.state().joining.is_empty()
                || (self.rebalance.state().step == Step::Running
                    && readings.iter().any(|r| r.status.as_ref().is_some_and(|(s, _)| over_voltage(s)))),
            packs_reported: readings.iter().all(|r| {
                let fresh = |at: Millis| now.mono.since(at) <= self.stale_ms;
                r.status.as_ref().is_some_and(|(_, at)| fresh(*at))
                    && r.analog.as_ref().is_some_and(|(_, at)| fresh(*at))
            }),
            start: order == Some(Order::Start),
            cancel: order == Some(Order::Cancel),
            coil_voltage_mv: coil.map(|c| c.voltage_mv()),
            coil_current_ma: coil.map(|c| c.current_ma().unsigned_abs()),
            coil_remaining_mah: coil.map(|c| c.remaining_mah),
            balancing: readings.iter().any(|r| r.status.as_ref().is_some_and(|(s, _)| s.balance.any())),
            output_priority: inputs.inverter.output_priority,
            charging_priority: inputs.inverter.charging_priority,
            coil_settings: inputs.coil_settings.map(|s| (s.capacity_mah, s.full_voltage_cv)),
        };
        if let Some(Order::ChargingPriority(priority)) = order {
            self.rebalance.force_charging_priority(priority);
        }
        let outcome = self.rebalance.step(&input);
        let (mut pack_commands, mut coil_actions) = (Vec::new(), Vec::new());
        for action in outcome.actions {
            match action {
                Action::UnlockPacks => {
                    // A pack held off by its over-voltage lock (or with its charge MOSFET off)
                    // joins the bus by §2b, one at a time, only within join_delta_mv; one that
                    // reports "fully" with its MOSFET on is on the bus already and is told at once.
                    for (k, r) in readings.iter().enumerate() {
                        let Some((s, _)) = r.status.as_ref() else { continue };
                        if held_off(s) {
                            self.rebalance.add_joining(k + 1);
                        } else if s.protect2.contains(pace_proto::Protect2::FULLY) {
                            pack_commands.push((k, Command::ChargeMosfet(pace_proto::MosfetSwitch::On)));
                        }
                    }
                }
                calibrate @ Action::CalibrateCoilFull { .. } => coil_actions.push(calibrate),
            }
        }
        for event in outcome.events {
            let text = match event {
                maestro_core::Event::PackImbalance { pack, cell } => format!(
                    "pack_imbalance: pack {pack} cell {cell} drifted low again less than {} h after the last rebalance; \
                     it is probably weak (no new rebalance started)",
                    self.rebalance.config().retrigger_min_s / 3600
                ),
                event => format!("rebalance: {event:?}"),
            };
            events.push((text, Vec::new()));
        }
        (outcome.targets, pack_commands, coil_actions, outcome.state_changed)
    }

    /// SAFETY.md §2b for this step: the pack to switch on now (if any) and the packs that wait.
    /// The bus is the coil's voltage when fresh, else the mean of the fresh packs that can carry
    /// and are not waiting; empty when no coil is configured and every other pack is known (fresh)
    /// to carry nothing; otherwise unknown, and nothing joins.
    fn join(
        &mut self,
        now: Millis,
        coil: Option<(coil_modbus::Reading, Millis)>,
        readings: &[PackReadings],
        flows: &[PackFlow],
    ) -> (Option<usize>, Vec<Waiting>) {
        let joining = &self.rebalance.state().joining;
        if joining.is_empty() {
            return (None, Vec::new());
        }
        let fresh = |at: Millis| now.since(at) <= self.stale_ms;
        let voltage = |r: &PackReadings| {
            r.analog.as_ref().filter(|(_, at)| fresh(*at)).map(|(a, _)| u32::from(a.voltage.raw()))
        };
        let on_bus: Vec<u32> = readings
            .iter()
            .zip(flows)
            .enumerate()
            .filter(|(k, (_, f))| !joining.contains(&(k + 1)) && (f.can_charge || f.can_discharge))
            .filter_map(|(_, (r, _))| voltage(r))
            .collect();
        let others_known = readings
            .iter()
            .enumerate()
            .filter(|(k, _)| !joining.contains(&(k + 1)))
            .all(|(_, r)| r.status.as_ref().is_some_and(|(_, at)| fresh(*at)));
        let bus = match coil.filter(|(_, at)| fresh(*at)) {
            Some((c, _)) => Bus::At(c.voltage_mv()),
            None if !on_bus.is_empty() => Bus::At(on_bus.iter().sum::<u32>() / on_bus.len() as u32),
            None if !self.coil_configured && others_known => Bus::Empty,
            None => Bus::Unknown,
        };
        let packs: Vec<JoinPack> = readings
            .iter()
            .enumerate()
            .map(|(k, r)| JoinPack {
                waiting: joining.contains(&(k + 1)),
                voltage_mv: voltage(r),
                current_ma: r.analog.as_ref().map(|(a, _)| a.current.to_milliamps()),
                alarm_a: [r.limits.charge_oc_alarm_a, r.limits.discharge_oc_alarm_a]
                    .into_iter()
                    .flatten()
                    .min(),
            })
            .collect();
        let out = self.joiner.step(now, bus, &packs);
        (out.command, out.waiting)
    }

    /// Drops from the join list every pack that has joined: fresh status, no over-voltage lock,
    /// charge MOSFET on (a pack whose BMS released by itself joined too).
    fn keep_joining(&mut self, readings: &[PackReadings], now: Millis) {
        let stale_ms = self.stale_ms;
        self.rebalance.retain_joining(|pack| {
            let status = readings
                .get(pack.wrapping_sub(1))
                .and_then(|r| r.status.as_ref())
                .filter(|(_, at)| now.since(*at) <= stale_ms);
            // A pack no longer in the configuration is dropped; an unknown status keeps it.
            readings.len() >= pack && status.is_none_or(|(s, _)| held_off(s))
        });
    }
}

/// Held off the bus: its over-voltage lock, or its charge MOSFET off.
fn held_off(s: &pace_proto::PackStatus) -> bool {
    over_voltage(s) || !s.system.contains(pace_proto::SystemState::CHARGE_MOSFET_ON)
}

/// The charge voltage the inverter would be told, checked against the cells every reporting pack
/// has: it must lie within [`config::bounds::CHARGE_PER_CELL_MV`] a cell (up to
/// [`config::bounds::REBALANCE_PER_CELL_MAX_MV`] in a rebalance). One that does not is never told:
/// the view's limit falls to the low end for the fewest cells reported (charging is blocked
/// anyway), and the key that set it is returned for the `config_out_of_range` reason.
fn keep_charge_voltage_in_range(
    view: &mut translator::SystemView,
    readings: &[PackReadings],
    rebalance_active: bool,
    charge_voltage_override: Option<u16>,
) -> Option<&'static str> {
    let cells = || readings.iter().filter_map(|r| r.analog.as_ref()).map(|(a, _)| a.cells.len() as u16);
    let told = u32::from(view.charge_voltage_limit.raw());
    if cells().all(|n| config::bounds::charge_voltage_fits(told, n, rebalance_active)) {
        return None;
    }
    let fewest = u32::from(cells().min().unwrap_or(0));
    let floor = fewest * config::bounds::CHARGE_PER_CELL_MV.0;
    view.charge_voltage_limit = units::Millivolts::from_raw(u16::try_from(floor).unwrap_or(0));
    Some(if rebalance_active {
        "rebalance.charge_voltage_mv"
    } else if charge_voltage_override.is_some_and(|o| u32::from(o) == told) {
        "overrides.charge_voltage_mv"
    } else {
        "safety.charge_voltage_mv"
    })
}

fn over_voltage(s: &pace_proto::PackStatus) -> bool {
    s.protect1.intersects(pace_proto::Protect1::HIGH_CELL_VOLTAGE | pace_proto::Protect1::HIGH_TOTAL_VOLTAGE)
}

/// Fills `o` with what `r` and `f` say, reusing its buffers.
fn observe(o: &mut PackObservation, r: &PackReadings, f: &PackFlow) {
    let analog = r.analog.as_ref().map(|(a, _)| a);
    let status = r.status.as_ref().map(|(s, _)| s);
    o.analog_at = r.analog.as_ref().map(|(_, t)| *t);
    o.status_at = r.status.as_ref().map(|(_, t)| *t);
    o.cells_mv.clear();
    o.cells_mv.extend(analog.into_iter().flat_map(|a| a.cells.iter().map(|c| c.raw())));
    o.temps_dc.clear();
    o.temps_dc.extend(analog.into_iter().flat_map(|a| a.temps.iter().map(|t| t.to_deci_celsius())));
    o.protect1 = status.map(|s| s.protect1).unwrap_or_default();
    o.protect2 = status.map(|s| s.protect2).unwrap_or_default();
    o.fault = status.map(|s| s.fault).unwrap_or_default();
    o.current_ma = analog.map(|a| a.current.to_milliamps());
    o.charge_alarm_a = f.charge_alarm_a;
    o.discharge_alarm_a = f.discharge_alarm_a;
    o.can_charge = f.can_charge;
    o.can_discharge = f.can_discharge;
}

/// A pack as SAFETY.md §2a sees it: it counts in a direction only with fresh data and
/// [`translator::limits::can_carry`].
fn pack_flow(r: &PackReadings, now: Millis, stale_ms: u64) -> PackFlow {
    let fresh = |at: Option<Millis>| at.is_some_and(|at| now.since(at) <= stale_ms);
    let status = r
        .status
        .as_ref()
        .filter(|(_, at)| fresh(Some(*at)) && fresh(r.analog.as_ref().map(|(_, t)| *t)))
        .map(|(s, _)| s);
    PackFlow {
        can_charge: status.is_some_and(|s| can_carry(s, Direction::Charge)),
        can_discharge: status.is_some_and(|s| can_carry(s, Direction::Discharge)),
        current_ma: r.analog.as_ref().map_or(0, |(a, _)| a.current.to_milliamps()),
        charge_alarm_a: r.limits.charge_oc_alarm_a,
        discharge_alarm_a: r.limits.discharge_oc_alarm_a,
    }
}

/// The limits' view of the stack: fresh packs' cells and temperatures, and whether a BMS
/// under-voltage protection holds (rule 15: charge at the recovery current).
fn limit_input<'a>(
    readings: &[PackReadings],
    flows: &'a [PackFlow],
    now: Millis,
    stale_ms: u64,
    hold: bool,
) -> LimitInput<'a> {
    let fresh: Vec<&PackReadings> = readings
        .iter()
        .filter(|r| r.analog.as_ref().is_some_and(|(_, at)| now.since(*at) <= stale_ms))
        .collect();
    let cells =
        || fresh.iter().filter_map(|r| r.analog.as_ref()).flat_map(|(a, _)| a.cells.iter().map(|c| c.raw()));
    let cell_temps = fresh
        .iter()
        .filter_map(|r| r.analog.as_ref())
        .flat_map(|(a, _)| a.temps.iter().take(4).map(|t| t.to_deci_celsius()));
    LimitInput {
        packs: flows,
        cell_max_mv: cells().max(),
        cell_min_mv: cells().min(),
        cell_temp_min_dc: cell_temps.min(),
        recovery: readings.iter().any(|r| {
            r.status.as_ref().is_some_and(|(s, _)| {
                s.protect1.intersects(
                    pace_proto::Protect1::LOW_CELL_VOLTAGE | pace_proto::Protect1::LOW_TOTAL_VOLTAGE,
                )
            })
        }),
        hold,
    }
}

fn protections(d: &Decision) -> Protections {
    let mut p = Protections::default();
    for r in &d.reasons {
        match r {
            Reason::BmsOverVoltage { .. } | Reason::CellOverVoltage => p.over_voltage = true,
            Reason::CellUnderVoltage => p.under_voltage = true,
            Reason::CellOverTemperature | Reason::BmsOverTemperature | Reason::MosfetOverTemperature => {
                p.over_temperature = true
            }
            Reason::CellTooCold | Reason::TooColdToCharge => p.under_temperature = true,
            Reason::OverCurrent => p.discharge_over_current = true,
            Reason::BmsFault { .. } | Reason::BmsProtection { .. } => p.fault = true,
            _ => {}
        }
    }
    p
}
