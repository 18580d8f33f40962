//! The scoring of a run: the fault schedule, the SAFETY.md §6 physical invariants judged on the
//! plant's true state each plant second, availability, time-to-safe, and the trace digest.

use maestro_core::Step;
use serde::Serialize;
use sim::PlantConfig;
use sim::plant::Rng;

use crate::World;
use daemon::Config;

/// The BMS's cell over-voltage protect level in the sim's default blocks, mV.
const CELL_OV_PROTECT_MV: f64 = 3700.0;
/// The sim's over-current alarm, A.
const PACK_ALARM_A: f64 = 30.0;

/// Which faults are injected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Faults {
    /// None.
    #[default]
    None,
    /// The default schedule: [`DEFAULT_SCHEDULE`].
    Default,
}

/// The default fault schedule, in words (README, `simulate --help`).
pub const DEFAULT_SCHEDULE: &str = "every 6 plant hours (±2 h, seeded) one of, equally likely: a pack goes \
     silent for 60 s; a pack's line turns noisy for 10 minutes (10 % of replies lost, 20 % corrupted, \
     20 % after garbage bytes, all split in two); the counter goes silent for 60 s; a pack reports a \
     fault (cell-ov, overtemp, overcurrent, short-circuit or mosfet-fault) for 120 s; the inverter \
     stops polling for 120 s; the daemon restarts from its persisted state; and every 3 plant days \
     cell 1 of a random pack drifts 60 mV low";

/// What kind of fault, for time-to-safe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A fault in a pack's reply: time-to-safe counts to the first 0x63 with both bits clear.
    Reported,
    /// A pack gone silent: likewise, bounded by `stale_after`.
    SilentPack,
    /// Anything else (the counter, the inverter, a restart): only its window counts.
    Other,
}

/// An injected fault being active, for the scoring.
#[derive(Clone, Debug)]
struct Active {
    what: String,
    until: u64,
    clear: String,
    kind: Kind,
    started: u64,
    safe_at: Option<u64>,
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
    /// The fault schedule.
    pub faults: Faults,
    /// §6 violations.
    pub safety_violations: Violations,
    /// Blocking and energy.
    pub availability: Availability,
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

/// Runs `days` plant days of `config` on a plant of its pack count, seeded, with `faults`.
pub fn simulate(config: &Config, days: f64, seed: u64, faults: Faults) -> Run {
    let packs = config.packs.len();
    let plant = PlantConfig { packs, seed, start_of_day_s: 8.0 * 3600.0, ..PlantConfig::default() };
    let mut w = World::new(plant, config);
    let mut rng = Rng::new(seed ^ 0x5EED);
    let total_s = (days * 86400.0) as u64;
    let mut v = Violations::default();
    let mut a = Availability::default();
    let mut tts = TimeToSafe::default();
    let mut active: Option<Active> = None;
    let mut next_fault = 6 * 3600;
    let mut next_drift = 3 * 86400;
    let (mut over_since, mut over_counted) = (vec![None::<u64>; packs], vec![false; packs]);
    let mut cell_over = false;
    let (mut enabled_wrong_since, mut enabled_wrong_counted) = (None::<u64>, false);
    // Seconds charging has been blocked in this episode outside fault windows with a cell low.
    let (mut charge_off_s, mut charge_off_counted) = (0u64, false);
    let mut completion_window: Option<u64> = None;
    let mut both_off_counted = false;
    let settle_max = config.rebalance.settle_max_s;
    let overcurrent_for = config.safety.overcurrent_for_s.ceil() as u64;
    // A BMS state reaches what the inverter obeys within one pack poll period and 0.5 s (the
    // time-to-safe bound), then the inverter's next 0x63.
    let detect_s = (config.poll.period_s + 0.5 + crate::INVERTER_EVERY_MS as f64 / 1000.0).ceil() as u64;
    while w.t < total_s {
        // The fault schedule.
        if faults == Faults::Default {
            if active.as_ref().is_some_and(|f| w.t >= f.until) {
                if let Some(f) = active.take() {
                    if !f.clear.is_empty() {
                        let _ = w.command(&f.clear);
                    }
                }
            }
            if active.is_none() && w.t >= next_fault {
                let k = 1 + (rng.next_f64() * packs as f64) as usize % packs;
                let kinds = ["cell-ov", "overtemp", "overcurrent", "short-circuit", "mosfet-fault"];
                let (start, clear, len, kind) = match (rng.next_f64() * 6.0) as u32 {
                    0 => (format!("silence pack {k}"), format!("restore pack {k}"), 60, Kind::SilentPack),
                    5 => (format!("noise pack {k}"), format!("quiet pack {k}"), 600, Kind::Other),
                    1 => ("silence coil".to_owned(), "restore coil".to_owned(), 60, Kind::Other),
                    2 => ("lose inverter".to_owned(), "restore inverter".to_owned(), 120, Kind::Other),
                    // A restart: the new daemon needs a poll round and its limits ramp up again.
                    3 => ("restart daemon".to_owned(), String::new(), 15, Kind::Other),
                    _ => {
                        let fault = kinds[(rng.next_f64() * kinds.len() as f64) as usize % kinds.len()];
                        (format!("fault pack {k} {fault}"), format!("clear pack {k}"), 120, Kind::Reported)
                    }
                };
                let _ = w.command(&start);
                w.events.push(format!("{:>7} s fault: {start}", w.t));
                active = Some(Active {
                    what: start.clone(),
                    until: w.t + len,
                    clear,
                    kind,
                    started: w.t,
                    safe_at: None,
                });
                next_fault = w.t + 4 * 3600 + (rng.next_f64() * 4.0 * 3600.0) as u64;
            }
            if w.t >= next_drift {
                let k = 1 + (rng.next_f64() * packs as f64) as usize % packs;
                let _ = w.plant.command(&format!("drift pack {k} -60"));
                w.events.push(format!("{:>7} s fault: drift pack {k} -60", w.t));
                next_drift += 3 * 86400;
            }
        }
        let state_before = w.controller().rebalance().step;
        w.step();
        let (t, charge, discharge) = w.told.last().copied().unwrap_or((w.t, false, false));
        let rebalancing = w.controller().rebalance().active();
        let in_fault = active.as_ref().is_some_and(|f| t < f.until + 10) || !w.all_fresh();
        // Time-to-safe.
        if let Some(f) = active.as_mut() {
            let slot = match f.kind {
                Kind::Reported => Some(&mut tts.reported_fault_max),
                Kind::SilentPack => Some(&mut tts.silent_pack_max),
                Kind::Other => None,
            };
            // The first 0x63 with both bits clear from the fault on (ms).
            let safe = w.answer_off_since.map(|since| since.max(f.started * 1000));
            if let Some((slot, safe)) = slot.zip(safe).filter(|_| f.safe_at.is_none()) {
                f.safe_at = Some(safe);
                let took = (safe - f.started * 1000) as f64 / 1000.0;
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
        // §6: a pack above its alarm for longer than overcurrent_for.
        for (k, p) in w.plant.packs.iter().enumerate() {
            if p.current_a.abs() > PACK_ALARM_A {
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
        // while the inverter listens: an inverter that lost its BMS runs on its own settings.
        let wrong = w.inverter_polling()
            && w.plant.packs.iter().any(|p| {
                let (p1, p2, f) = (p.protect1.bits(), p.protect2.bits(), p.fault.bits());
                let both =
                    p1 & 0x70 != 0 || p2 & 0x7A != 0 || f & 0x37 != 0 || (p1 & 0x05 != 0 && !rebalancing);
                (charge && (both || p2 & 0x05 != 0)) || (discharge && (both || p1 & 0x0A != 0))
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
        let step = w.controller().rebalance().step;
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
        faults,
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
        events: w.events.len() as u64,
        trace_digest: fnv1a(&w.events),
    };
    Run { scorecard, events: w.events }
}
