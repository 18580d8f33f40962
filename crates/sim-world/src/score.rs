//! The scoring of a run: the fault schedule, the SAFETY.md §6 physical invariants judged on the
//! plant's true state each plant second, availability, time-to-safe, and the trace digest.

use crate::World;
use crate::schedule::{Kind, Runner, Schedule};
use daemon::Config;
use maestro_core::Step;
use serde::Serialize;
use sim::PlantConfig;

/// The BMS's cell over-voltage protect level in the sim's default blocks, mV.
const CELL_OV_PROTECT_MV: f64 = 3700.0;
/// The sim's over-current alarm, A.
const PACK_ALARM_A: f64 = 30.0;

/// An injected fault being active, for the scoring.
#[derive(Clone, Debug)]
struct Active {
    what: String,
    until: u64,
    clear: Option<String>,
    kind: Kind,
    /// When the fault appeared where the daemon can see it, ms: at once for a silent pack; for
    /// a reported fault when the pack's BMS first shows a blocking bit (a BMS trips after its own
    /// delay, and that time is the BMS's).
    from_ms: Option<u64>,
    /// The pack a `fault pack N` concerns, and its BMS bytes before the fault.
    pack: Option<(usize, (u8, u8, u8))>,
    safe_at: Option<u64>,
}

/// Whether a pack's true BMS state makes a rule hold that blocks a direction (rules 4, 5 and 6
/// outside a rebalance or the pack's join after one, 15, 16), as (charge blocked, discharge
/// blocked).
fn blocks(p: &sim::pack::Pack, rebalancing: bool) -> (bool, bool) {
    blocks_bits(bits(p), rebalancing)
}

/// A pack's protect 1, protect 2 and fault bytes as its BMS holds them.
fn bits(p: &sim::pack::Pack) -> (u8, u8, u8) {
    (p.protect1.bits(), p.protect2.bits(), p.fault.bits())
}

fn blocks_bits((p1, p2, f): (u8, u8, u8), rebalancing: bool) -> (bool, bool) {
    let both = p1 & 0x70 != 0 || p2 & 0x7A != 0 || f & 0x37 != 0 || (p1 & 0x05 != 0 && !rebalancing);
    (both || p2 & 0x05 != 0, both || p1 & 0x0A != 0)
}

/// §6 physical invariants, counted as episodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Violations {
    /// All of them.
    pub total: u64,
    /// A pack above its over-current alarm for longer than `overcurrent_for`.
    pub pack_over_alarm_too_long: u64,
    /// A cell at or above its BMS's protect voltage outside a rebalance.
    pub cell_over_protect_outside_rebalance: u64,
    /// Charge or discharge obeyed for longer than a detection bound (one poll period + 0.5 s +
    /// the inverter's poll interval: 3 s by default) while a pack's
    /// true BMS state makes a rule hold that blocks it (rules 4, 5, 6 outside a rebalance, 15, 16).
    pub enabled_while_rule_holds: u64,
    /// Charging blocked for longer than `settle_max_s` with no fault injected and a cell below 3.40 V.
    pub charge_blocked_too_long: u64,
    /// Both directions told off between a rebalance's unlock and 60 s after its completion.
    pub both_off_at_completion: u64,
}

/// SAFETY.md §6 (v3): harm to the plant, counted on its true state (the BMSes' own trips and
/// the fuses), whoever caused it. A trip while the pack carries an injected fault is that fault,
/// not harm; a trip within [`EXCUSE_S`] of a fault command concerning that pack (a fuse replaced,
/// a protection cleared: a pack dropped onto the bus at another charge, a step no controller can
/// outrun), or of an excused trip of that pack (the BMS retrying onto the same step), is counted
/// apart as excused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Harm {
    /// BMS over-current protections that tripped (charge or discharge).
    pub bms_over_current_trips: u64,
    /// External fuses that blew.
    pub fuses_blown: u64,
    /// BMS over-voltage protections that tripped outside a rebalance.
    pub bms_over_voltage_trips_outside_rebalance: u64,
    /// Trips of a pack just dropped onto the bus by a fault command.
    pub excused_step_trips: u64,
    /// The largest current any pack carried, A.
    pub worst_pack_current_a: f64,
}

impl Harm {
    /// The harm counted (the excused trips apart).
    pub fn harmed(&self) -> u64 {
        self.bms_over_current_trips + self.fuses_blown + self.bms_over_voltage_trips_outside_rebalance
    }
}

/// A trip within this long after a fault command concerning its pack is excused, s.
pub const EXCUSE_S: u64 = 60;

/// A pack's harm counters: over-current trips, fuse blows, over-voltage trips.
fn harm_counters(p: &sim::pack::Pack) -> [u32; 3] {
    [p.charge_oc_trips.saturating_add(p.discharge_oc_trips), p.fuse_blows, p.ov_trips]
}

/// Energy and blocking, over the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Availability {
    /// Both directions told off outside an injected fault's window (plus 10 s).
    pub lockout_hours: f64,
    /// Charging told off.
    pub charge_blocked_hours: f64,
    /// Discharging told off.
    pub discharge_blocked_hours: f64,
    /// Energy the battery gave the house.
    pub battery_to_load_kwh: f64,
    /// Energy the grid gave the house.
    pub grid_to_load_kwh: f64,
    /// Solar energy available but not used.
    pub pv_unused_kwh: f64,
}

/// Rebalances over the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Rebalances {
    /// Started.
    pub started: u64,
    /// Completed.
    pub completed: u64,
    /// Cancelled.
    pub cancelled: u64,
}

/// Time-to-safe, plant seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct TimeToSafe {
    /// From a reported fault to the first 0x63 with both bits clear (`null`: none injected).
    pub reported_fault_max: Option<f64>,
    /// From a pack going silent to the first 0x63 with both bits clear.
    pub silent_pack_max: Option<f64>,
}

/// What `pace2pylon simulate --json` prints: exactly one object.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Scorecard {
    /// The seed.
    pub seed: u64,
    /// Packs.
    pub packs: usize,
    /// Plant days run.
    pub plant_days: f64,
    /// The fault schedule: `none`, `default` or the file's name.
    pub faults: String,
    /// §6 violations.
    pub safety_violations: Violations,
    /// Blocking and energy.
    pub availability: Availability,
    /// §6 v3: harm to the plant.
    pub harm: Harm,
    /// Rebalances.
    pub rebalances: Rebalances,
    /// Time-to-safe.
    pub time_to_safe_s: TimeToSafe,
    /// Event log lines written.
    pub events: u64,
    /// FNV-1a 64 of the event trace, hex: the same seed and inputs give the same digest.
    pub trace_digest: String,
}

fn fnv1a(lines: &[String]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for line in lines {
        for b in line.bytes().chain([b'\n']) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// A finished run: its scorecard and its event trace.
#[derive(Clone, Debug)]
pub struct Run {
    /// The scorecard.
    pub scorecard: Scorecard,
    /// Every event line, `"<t> s <text>"`, injected faults included.
    pub events: Vec<String>,
}

/// The N of `fault pack N ...`.
fn fault_pack(command: &str) -> Option<usize> {
    command.strip_prefix("fault pack ")?.split_whitespace().next()?.parse().ok()
}

/// The N of any command about `pack N` (`clear pack 2`, `replace-fuse pack 2`, ...).
fn command_pack(command: &str) -> Option<usize> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "pack")?;
    words.get(at + 1)?.parse().ok()
}

/// Checks every command of `schedule` against a world of `config` (a `*` taken as pack 1).
///
/// # Errors
/// The first command nobody knows, with its line.
pub fn check(schedule: &Schedule, config: &Config) -> Result<(), crate::schedule::Error> {
    let packs = config.packs.len();
    let mut w = World::new(PlantConfig { packs, ..PlantConfig::default() }, config);
    for (line, command) in schedule.commands() {
        w.command(&command).map_err(|message| crate::schedule::Error {
            name: schedule.name.clone(),
            line,
            message: format!("'{command}': {message}"),
        })?;
    }
    Ok(())
}

/// Runs `days` plant days of `config` on a plant of its pack count, seeded, with the fault
/// `schedule` (checked with [`check`] first: a command that fails is logged in the trace).
pub fn simulate(config: &Config, days: f64, seed: u64, schedule: &Schedule) -> Run {
    simulate_into(config, days, seed, schedule, |_| None)
}

/// As [`simulate`], capturing into the sink `capture` makes for the world's wall clock at its
/// start, if it makes one (`simulate --capture`).
pub fn simulate_into(
    config: &Config,
    days: f64,
    seed: u64,
    schedule: &Schedule,
    capture: impl FnOnce(jiff::Timestamp) -> Option<crate::Sink>,
) -> Run {
    let packs = config.packs.len();
    let plant = PlantConfig { packs, seed, start_of_day_s: 8.0 * 3600.0, ..PlantConfig::default() };
    let mut w = World::new(plant, config);
    if let Some(sink) = capture(w.epoch()) {
        w.capture_into(sink);
    }
    let mut runner = Runner::new(schedule.clone(), seed);
    let total_s = (days * 86400.0) as u64;
    let mut v = Violations::default();
    let mut a = Availability::default();
    let mut tts = TimeToSafe::default();
    let mut active: Vec<Active> = Vec::new();
    let mut unfresh_until = 0u64;
    let (mut over_since, mut over_counted) = (vec![None::<u64>; packs], vec![false; packs]);
    let mut cell_over = false;
    let (mut enabled_wrong_since, mut enabled_wrong_counted) = (None::<u64>, false);
    // Seconds charging has been blocked in this episode outside fault windows with a cell low.
    let (mut charge_off_s, mut charge_off_counted) = (0u64, false);
    let mut completion_window: Option<u64> = None;
    let mut harm = Harm::default();
    // Until when a trip of each pack is excused (a fault command concerning it ran).
    let mut excused_until = vec![0u64; packs];
    let excuse = |command: &str, t: u64, excused_until: &mut [u64]| {
        if let Some(k) = command_pack(command).and_then(|n| n.checked_sub(1)).filter(|k| *k < packs) {
            excused_until[k] = t + EXCUSE_S;
        }
    };
    let mut both_off_counted = false;
    let settle_max = config.rebalance.settle_max_s;
    let overcurrent_for = config.safety.overcurrent_for_s.ceil() as u64;
    // A BMS state reaches what the inverter obeys within one pack poll period and 0.5 s (the
    // time-to-safe bound), then the inverter's next 0x63.
    let detect_s = (config.poll.period_s + 0.5 + crate::INVERTER_EVERY_MS as f64 / 1000.0).ceil() as u64;
    while w.t < total_s {
        // The fault schedule: faults that have run their time are cleared, due ones start.
        let now_s = w.t;
        for f in active.iter_mut().filter(|f| now_s >= f.until) {
            if let Some(clear) = f.clear.take() {
                if let Err(e) = w.command(&clear) {
                    w.events.push(format!("{:>7} s fault command '{clear}' failed: {e}", w.t));
                }
                excuse(&clear, now_s, &mut excused_until);
            }
        }
        active.retain(|f| w.t < f.until + 10);
        for firing in runner.due(w.t, packs) {
            let pack = if firing.kind == Kind::Reported { fault_pack(&firing.start) } else { None };
            // What the pack's BMS showed before: only a bit the fault adds is its appearance.
            let baseline = pack.and_then(|k| w.plant.packs.get(k.wrapping_sub(1))).map(bits);
            if let Err(e) = w.command(&firing.start) {
                w.events.push(format!("{:>7} s fault command '{}' failed: {e}", w.t, firing.start));
                continue;
            }
            w.events.push(format!("{:>7} s fault: {}", w.t, firing.start));
            excuse(&firing.start, w.t, &mut excused_until);
            active.push(Active {
                what: firing.start,
                until: w.t + firing.window_s,
                clear: firing.clear,
                kind: firing.kind,
                from_ms: (firing.kind == Kind::SilentPack).then_some(w.t * 1000),
                pack: pack.zip(baseline),
                safe_at: None,
            });
        }
        let rebalancing_now = w.rebalance().active();
        for f in active.iter_mut().filter(|f| f.from_ms.is_none()) {
            let new = f.pack.and_then(|(k, (b1, b2, bf))| {
                let (p1, p2, pf) = bits(w.plant.packs.get(k.wrapping_sub(1))?);
                Some((p1 & !b1, p2 & !b2, pf & !bf))
            });
            if new.is_some_and(|new| {
                let (c, d) = blocks_bits(new, rebalancing_now);
                c || d
            }) {
                f.from_ms = Some(w.t * 1000);
            }
        }
        let state_before = w.rebalance().step;
        let counters_before: Vec<[u32; 3]> = w.plant.packs.iter().map(harm_counters).collect();
        w.step();
        let (t, charge, discharge) = w.told.last().copied().unwrap_or((w.t, false, false));
        let rebalancing = w.rebalance().active();
        // §6 v3: harm, on the plant's true state.
        for (k, (p, before)) in w.plant.packs.iter().zip(&counters_before).enumerate() {
            let now = harm_counters(p);
            let [oc, fuse, ov] = [0, 1, 2].map(|i| u64::from(now[i].saturating_sub(before[i])));
            if oc + fuse + ov == 0 || !p.faults.is_empty() {
                continue;
            }
            // Over-voltage protection is the rebalance's means: it counts only outside one.
            let in_rebalance = rebalancing || matches!(state_before, Step::Running | Step::Completing);
            let ov = if in_rebalance { 0 } else { ov };
            if oc + fuse + ov == 0 {
                continue;
            }
            if t <= excused_until[k] {
                // The BMS retries (its over-current protection releases after 30 s) and trips
                // again on the same step: excused for as long as the chain goes on.
                excused_until[k] = t + EXCUSE_S;
                harm.excused_step_trips += oc + fuse + ov;
                w.events.push(format!(
                    "{t:>7} s excused: pack {} tripped just after a fault command dropped it onto the bus",
                    k + 1
                ));
                continue;
            }
            harm.bms_over_current_trips += oc;
            harm.fuses_blown += fuse;
            harm.bms_over_voltage_trips_outside_rebalance += ov;
            let what = [
                (oc, "its BMS over-current protection tripped"),
                (fuse, "its fuse blew"),
                (ov, "its BMS over-voltage protection tripped outside a rebalance"),
            ];
            for (_, text) in what.into_iter().filter(|(n, _)| *n > 0) {
                w.events.push(format!(
                    "{t:>7} s harm: pack {} {text} (at {:.1} A, bus {:.2} V)",
                    k + 1,
                    p.current_a,
                    w.plant.bus_v
                ));
            }
        }
        // A pack whose data went stale (injected or from a noisy line) is a fault until the
        // inverter has heard its return: its next 0x63 after the controller's next step.
        if !w.all_fresh() {
            unfresh_until = t + detect_s;
        }
        let in_fault = active.iter().any(|f| t < f.until + 10) || t <= unfresh_until;
        // Time-to-safe.
        for f in active.iter_mut() {
            let slot = match f.kind {
                Kind::Reported => Some(&mut tts.reported_fault_max),
                Kind::SilentPack => Some(&mut tts.silent_pack_max),
                Kind::Other => None,
            };
            // The first 0x63 with both bits clear from the fault's appearance on (ms).
            let Some(from) = f.from_ms else { continue };
            let safe = w.answer_off_since.map(|since| since.max(from));
            if let Some((slot, safe)) = slot.zip(safe).filter(|_| f.safe_at.is_none()) {
                f.safe_at = Some(safe);
                let took = (safe - from) as f64 / 1000.0;
                w.events.push(format!("{:>7} s time-to-safe {took:.3} s after {}", t, f.what));
                *slot = Some(slot.map_or(took, |m: f64| m.max(took)));
            }
        }
        // Availability.
        let h = 1.0 / 3600.0;
        if !charge {
            a.charge_blocked_hours += h;
        }
        if !discharge {
            a.discharge_blocked_hours += h;
        }
        if !charge && !discharge && !in_fault {
            a.lockout_hours += h;
        }
        let inv = &w.plant.inverter;
        a.battery_to_load_kwh += (-inv.battery_w).max(0.0).min(inv.load_w) / 3.6e6;
        a.grid_to_load_kwh += inv.grid_w.min(inv.load_w).max(0.0) / 3.6e6;
        a.pv_unused_kwh += (w.plant.pv_available_w() - inv.pv_w).max(0.0) / 3.6e6;
        // §6: a pack above its alarm for longer than overcurrent_for — while the inverter listens:
        // one that lost its BMS draws what its own no-comm settings allow.
        let listening = w.inverter_polling();
        for (k, p) in w.plant.packs.iter().enumerate() {
            if p.current_a.abs() > PACK_ALARM_A && listening {
                let since = *over_since[k].get_or_insert(t);
                if t - since > overcurrent_for && !over_counted[k] {
                    over_counted[k] = true;
                    v.pack_over_alarm_too_long += 1;
                    w.events.push(format!("{t:>7} s violation: pack {} above its {PACK_ALARM_A} A alarm for more than {overcurrent_for} s", k + 1));
                }
            } else {
                over_since[k] = None;
                over_counted[k] = false;
            }
        }
        // §6: no cell above its BMS's protect voltage outside a rebalance (its terminal voltage, as
        // the BMS measures it: there it trips).
        let max_cell = w
            .plant
            .packs
            .iter()
            .flat_map(|p| p.cells.iter().map(|c| c.voltage_mv(p.current_a)))
            .fold(0.0, f64::max);
        let over = max_cell >= CELL_OV_PROTECT_MV && !rebalancing;
        if over && !cell_over {
            v.cell_over_protect_outside_rebalance += 1;
            w.events.push(format!("{t:>7} s violation: a cell at {max_cell:.0} mV, at or above the BMS protect level {CELL_OV_PROTECT_MV} mV, outside a rebalance"));
        }
        cell_over = over;
        // Enabled while a rule holds, judged on the packs' true BMS state (rules 4, 5, 6, 15, 16) —
        // while the inverter hears the daemon: one that lost its BMS, or polls a daemon that is
        // silent by design (before its first complete snapshot after a restart, SAFETY.md §3),
        // runs on what it last heard and then on its own settings.
        // A pack a rebalance left to join the bus (SAFETY.md §4 step 3, v3) has rules 6 and 11
        // relaxed for it alone until it has joined.
        let joining = &w.rebalance().joining;
        let wrong = w.inverter_hears_the_daemon(detect_s)
            && w.plant.packs.iter().enumerate().any(|(k, p)| {
                let (c, d) = blocks(p, rebalancing || joining.contains(&(k + 1)));
                (charge && c) || (discharge && d)
            });
        if wrong {
            let since = *enabled_wrong_since.get_or_insert(t);
            if t - since > detect_s && !enabled_wrong_counted {
                enabled_wrong_counted = true;
                v.enabled_while_rule_holds += 1;
                w.events.push(format!("{t:>7} s violation: charge {charge} / discharge {discharge} obeyed for more than {detect_s} s while a pack's BMS state blocks it"));
            }
        } else {
            enabled_wrong_since = None;
            enabled_wrong_counted = false;
        }
        // Lock-out: charging blocked too long with no fault and a cell below 3.40 V.
        let low_cell = w.plant.packs.iter().flat_map(|p| p.cells.iter()).any(|c| c.ocv_mv() < 3400.0);
        // A fault window pauses the count; only charging again ends the episode.
        if charge {
            charge_off_s = 0;
            charge_off_counted = false;
        } else if !in_fault && low_cell {
            charge_off_s += 1;
            if charge_off_s > settle_max && !charge_off_counted {
                charge_off_counted = true;
                v.charge_blocked_too_long += 1;
                w.events.push(format!("{t:>7} s violation: charging blocked for more than {settle_max} s with no fault and a cell below 3.40 V"));
            }
        }
        // Both off between a completion's unlock and 60 s after it.
        let step = w.rebalance().step;
        if step == Step::Completing && completion_window.is_none() {
            completion_window = Some(u64::MAX);
            both_off_counted = false;
        }
        if state_before == Step::Completing && step != Step::Completing {
            completion_window = Some(t + 60);
        }
        if let Some(until) = completion_window {
            if !charge && !discharge && !both_off_counted && !in_fault {
                both_off_counted = true;
                v.both_off_at_completion += 1;
                w.events.push(format!("{t:>7} s violation: both directions off at a rebalance's completion"));
            }
            if t >= until {
                completion_window = None;
            }
        }
    }
    v.total = v.pack_over_alarm_too_long
        + v.cell_over_protect_outside_rebalance
        + v.enabled_while_rule_holds
        + v.charge_blocked_too_long
        + v.both_off_at_completion;
    let count = |needle: &str| w.events.iter().filter(|e| e.contains(needle)).count() as u64;
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    let scorecard = Scorecard {
        seed,
        packs,
        plant_days: days,
        faults: schedule.name.clone(),
        safety_violations: v,
        availability: Availability {
            lockout_hours: round(a.lockout_hours),
            charge_blocked_hours: round(a.charge_blocked_hours),
            discharge_blocked_hours: round(a.discharge_blocked_hours),
            battery_to_load_kwh: round(a.battery_to_load_kwh),
            grid_to_load_kwh: round(a.grid_to_load_kwh),
            pv_unused_kwh: round(a.pv_unused_kwh),
        },
        rebalances: Rebalances {
            started: count("rebalance: Started"),
            completed: count("rebalance: Completed"),
            cancelled: count("rebalance: Cancelled"),
        },
        time_to_safe_s: tts,
        harm: Harm { worst_pack_current_a: round(w.plant.worst_pack_current_a()), ..harm },
        events: w.events.len() as u64,
        trace_digest: fnv1a(&w.events),
    };
    Run { scorecard, events: w.events }
}
