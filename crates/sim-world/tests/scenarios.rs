//! The end-to-end scenarios that used to run in real time against a sped-up plant (each fault
//! kind and its rule, an empty stack's recovery, settling's bound, a rebalance across a restart),
//! now in plant time over the simulated wires: the same daemon machines, the exact bounds, no
//! dependence on the hour CI runs them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

mod common;

use common::{Checked, checked, run_until};
use maestro_core::{RebalanceState, Step};
use sim::PlantConfig;
use sim_world::{World, config_with, default_config};

/// Runs in steps of 50 plant ms until `f` holds; returns the plant seconds it took.
fn fine_until(w: &mut World, limit_s: f64, what: &str, f: impl Fn(&World) -> bool) -> f64 {
    let start = w.t_ms;
    while !f(w) {
        assert!(
            ((w.t_ms - start) as f64) < limit_s * 1000.0,
            "not within {limit_s} plant s: {what}\n{}",
            w.events.join("\n")
        );
        w.advance_to(w.t_ms + 50);
    }
    (w.t_ms - start) as f64 / 1000.0
}

/// What the inverter was last answered: (charge, discharge, charge current 0.1 A, charge voltage mV).
fn told(w: &World) -> Option<(bool, bool, i16, u16)> {
    use pylon_proto::ManagementFlags as F;
    w.plant.inverter.bms.map(|m| {
        (
            m.flags.contains(F::CHARGE_ENABLE),
            m.flags.contains(F::DISCHARGE_ENABLE),
            m.charge_current.raw(),
            m.charge_voltage.raw(),
        )
    })
}

fn both_on(w: &World) -> bool {
    told(w).is_some_and(|(c, d, ..)| c && d)
}

fn started(packs: usize) -> Checked {
    let config = default_config(packs).unwrap();
    let plant = PlantConfig { packs, start_of_day_s: 10.0 * 3600.0, ..PlantConfig::default() };
    let mut w = checked(World::new(plant, &config));
    run_until(&mut w, 30, "both enabled", both_on);
    w
}

/// Each fault kind of the simulator's BMS: both directions off with the rule's reason within the
/// time-to-safe bound, then, where the BMS lets go when cleared, both on again.
#[test]
fn each_bms_fault_kind_disables_with_its_rule() {
    for (kind, expected, recovers) in [
        ("cell-ov", &["bms_over_voltage"][..], false),
        ("overtemp", &["cell_over_temperature"][..], true),
        ("undertemp", &["cell_too_cold", "too_cold_to_charge"][..], true),
        ("overcurrent", &["bms_protection"][..], false),
        ("short-circuit", &["bms_protection"][..], false),
        ("mosfet-fault", &["bms_fault"][..], true),
        ("cell-fault", &["bms_fault"][..], true),
    ] {
        let mut w = started(2);
        w.command(&format!("fault pack 1 {kind}")).unwrap();
        // The plant's BMS takes up to a plant second to show it; then one poll period + 0.5 s.
        let t = fine_until(&mut w, 2.5, kind, |w| w.answer_off_since.is_some());
        let codes = w.reason_codes();
        assert!(expected.iter().all(|c| codes.contains(c)), "{kind}: {expected:?} not all in {codes:?}");
        eprintln!("{kind}: both off in the 0x63 answer after {t:.2} plant s, reasons {codes:?}");
        // The inverter hears it at its next 0x63.
        run_until(&mut w, 2, "the inverter told both off", |w| told(w).is_some_and(|t| !t.0 && !t.1));
        w.command("clear pack 1").unwrap();
        if recovers {
            let t = run_until(&mut w, 15, "both on again", both_on);
            eprintln!("{kind}: both on again {t} plant s after clearing");
        }
    }
}

/// SAFETY.md rule 15 (v2): a BMS under-voltage protection blocks discharge only; the inverter may
/// charge at the recovery current (2 A per pack that can take charge).
#[test]
fn a_bms_under_voltage_is_rule_15_and_charging_goes_on_at_the_recovery_current() {
    let mut w = started(2);
    w.command("fault pack 1 cell-uv").unwrap();
    fine_until(&mut w, 2.5, "discharge off, charge on", |w| told(w).is_some_and(|(c, d, ..)| c && !d));
    // Both packs can still take charge (pack 1's charge MOSFET stays on): 2 × 2 A.
    run_until(&mut w, 5, "charging at 4 A", |w| told(w).is_some_and(|t| t.2 == 40));
    let codes = w.reason_codes();
    assert!(codes.contains(&"bms_under_voltage") && !codes.contains(&"bms_protection"), "{codes:?}");
    let limits = w.limits().unwrap();
    assert_eq!((limits.charge.recovery_ma, limits.charge.packs), (Some(4000), 2));
    assert_eq!(limits.discharge.packs, 1, "pack 1 cannot give discharge");
}

/// Rule 15 on an empty stack: v1 blocked both directions for good; now the sun recharges it at
/// the recovery current until the cells leave the BMS's protection, and both come on again.
#[test]
fn an_empty_stack_in_bms_under_voltage_protection_is_recharged_at_the_recovery_current() {
    let config = default_config(3).unwrap();
    let plant = PlantConfig { packs: 3, start_of_day_s: 7.0 * 3600.0, soc: 0.0, ..PlantConfig::default() };
    let mut w = checked(World::new(plant, &config));
    run_until(&mut w, 20, "discharge off, charge on at 3 × 2 A", |w| {
        told(w).is_some_and(|t| (t.0, t.1, t.2) == (true, false, 60))
    });
    let codes = w.reason_codes();
    assert!(codes.contains(&"bms_under_voltage"), "{codes:?}");
    run_until(&mut w, 600, "the sun charging at the recovery current", |w| {
        (w.plant.current_a - 6.0).abs() < 0.6
    });
    let t = run_until(&mut w, 3 * 3600, "both on again", both_on);
    eprintln!("uv-recovery: both on {t} plant s later");
    assert!(!w.reason_codes().contains(&"bms_under_voltage"));
}

/// SAFETY.md §4 step 4 (v2): settling ends after `settle_max_s` even when the coil never comes
/// down to the regular capacity, so charging cannot stay blocked.
#[test]
fn settling_ends_after_settle_max_s() {
    let config = config_with(
        2,
        "[rebalance]\ncapacity_mah = 44000\nregular_capacity_mah = 10000\nsettle_max_s = 3600\n",
    )
    .unwrap();
    let plant = PlantConfig { packs: 2, start_of_day_s: 11.0 * 3600.0, ..PlantConfig::default() };
    // Completed 3597 s before the daemon starts; the coil (about 24 Ah left) stays above 10 Ah.
    let epoch = World::new(plant.clone(), &config).epoch().as_second() as u64;
    let state = RebalanceState {
        step: Step::Settling,
        last_completed_s: Some(epoch - 3597),
        ..RebalanceState::default()
    };
    let mut w = checked(World::with_state(plant, &config, state));
    run_until(&mut w, 15, "settling: charge off, discharge on", |w| {
        told(w).is_some_and(|t| (t.0, t.1) == (false, true))
    });
    let t = run_until(&mut w, 15, "charge on again", both_on);
    eprintln!("settle_max: charge on {t} plant s after settling was told");
    assert!(w.logged("rebalance: SettleTimedOut"), "{}", w.events.join("\n"));
    assert_eq!(w.rebalance().step, Step::Idle);
}

/// The whole rebalance with a daemon restart in the middle of the run: the persisted step
/// resumes, the inverter is never answered both off from the top of the charge through the
/// completion, the devices are set over their lines and put back, the coil is calibrated, settling
/// ends, and the weak cell's return raises `pack_imbalance` instead of a second run.
#[test]
fn a_rebalance_resumes_across_a_daemon_restart_and_settles() {
    let config = config_with(2, "[rebalance]\ncapacity_mah = 44000\nregular_capacity_mah = 39000\n").unwrap();
    let plant = PlantConfig { packs: 2, start_of_day_s: 10.0 * 3600.0, ..PlantConfig::default() };
    let mut w = checked(World::new(plant, &config));
    run_until(&mut w, 30, "both enabled", both_on);
    // Cell 1 of pack 1 drifts to 2.72 V open-circuit: below rule 14's 2.85 V, above the BMS's 2.5 V.
    w.command("drift pack 1 -580").unwrap();
    run_until(&mut w, 60, "rule 14 starts a rebalance", |w| w.logged("rebalance: Started(CellUnderVoltage)"));
    run_until(&mut w, 30, "the raised charge voltage", |w| told(w).is_some_and(|t| t.3 == 27950));
    run_until(&mut w, 30, "output priority utility first", |w| w.plant.inverter.registers.get(301) == 0);
    run_until(&mut w, 30, "the coil at the rebalance capacity and voltage", |w| {
        let s = w.plant.coil.registers.settings;
        (s.capacity_mah, s.full_voltage_cv) == (44_000, 2795)
    });
    w.command("restart daemon").unwrap();
    assert_eq!(w.rebalance().step, Step::Running, "resumed from the persisted state");
    run_until(&mut w, 30, "the raised voltage again after the restart", |w| {
        told(w).is_some_and(|t| t.0 && t.3 == 27950)
    });
    run_until(&mut w, 12 * 3600, "the threshold", |w| w.logged("rebalance: ThresholdHit"));
    let off_before = w.both_off_answers;
    run_until(&mut w, 12 * 3600, "completion", |w| w.logged("rebalance: Completed"));
    for _ in 0..60 {
        w.step();
    }
    assert_eq!(
        w.both_off_answers, off_before,
        "answered both off between the threshold and completion + 60 s"
    );
    assert!(w.logged("rebalance: Unlocking"));
    run_until(&mut w, 30, "output priority back to sbu", |w| w.plant.inverter.registers.get(301) == 2);
    run_until(&mut w, 30, "charging priority pv only", |w| w.plant.inverter.registers.get(331) == 3);
    run_until(&mut w, 30, "settling: charge off, discharge on, regular voltage", |w| {
        told(w).is_some_and(|t| (t.0, t.1, t.3) == (false, true, 27350))
    });
    assert!(w.logged("coil calibrated to full"), "{}", w.events.join("\n"));
    assert!(w.reason_codes().contains(&"rebalance_settling"));
    run_until(&mut w, 40 * 3600, "settled", |w| w.rebalance().step != Step::Settling);
    run_until(&mut w, 60, "the coil back at its regular capacity", |w| {
        w.logged("coil capacity 39000 mAh, full voltage 2735 cV (confirmed)")
    });
    run_until(&mut w, 3 * 86400, "pack_imbalance", |w| w.logged("pack_imbalance: pack 1 cell 1"));
    assert_eq!(w.events.iter().filter(|e| e.contains("rebalance: Started")).count(), 1, "no second run");
    let order: Vec<usize> = [
        "Started(CellUnderVoltage)",
        "daemon restarted from its persisted state",
        "ThresholdHit",
        "Completed",
        "coil calibrated to full",
    ]
    .iter()
    .map(|needle| w.events.iter().position(|e| e.contains(needle)).unwrap_or(usize::MAX))
    .collect();
    assert!(order.windows(2).all(|p| p[0] < p[1]), "{order:?}\n{}", w.events.join("\n"));
}

/// A silent counter (rule 3): both off within `stale_after` (+ a controller tick), back on when it
/// answers again.
#[test]
fn a_silent_coil_disables_within_stale_after_and_recovers() {
    let mut w = started(1);
    w.command("silence coil").unwrap();
    let t = fine_until(&mut w, 8.0, "both off", |w| w.answer_off_since.is_some());
    eprintln!("time to safe for a silent coil: {t:.2} plant s");
    assert!((4.0..=5.5).contains(&t), "{t}");
    assert!(w.reason_codes().contains(&"coil_stale"));
    w.command("restore coil").unwrap();
    run_until(&mut w, 10, "both on again", both_on);
}

/// Regression, found by `pace2pylon simulate --days 30 --seed 7 --packs 2`: a weak cell fell below
/// 2.85 V while the stack settled after a rebalance. Rule 14 blocked discharging and settling
/// blocked charging, both until `settle_max_s`: 88.6 h of both directions off in that month. Now
/// settling ends when a cell under voltage blocks discharging, and the stack charges again.
#[test]
fn regression_settling_and_a_weak_cell_locked_both_directions_out() {
    let config = config_with(2, "[rebalance]\ncapacity_mah = 44000\nregular_capacity_mah = 39000\n").unwrap();
    let plant = PlantConfig { packs: 2, start_of_day_s: 10.0 * 3600.0, ..PlantConfig::default() };
    let mut w = checked(World::new(plant, &config));
    run_until(&mut w, 30, "both enabled", both_on);
    w.command("drift pack 1 -580").unwrap();
    run_until(&mut w, 12 * 3600, "completion", |w| w.logged("rebalance: Completed"));
    run_until(&mut w, 120, "settling", |w| w.rebalance().step == Step::Settling);
    // The top cells relax below rule 11's release (3.40 V) as the evening draws on the stack
    // (judged on decisions made while settling: while completing, rule 11 is relaxed).
    for _ in 0..3 {
        w.step();
    }
    run_until(&mut w, 3600, "rule 11 released", |w| !w.reason_codes().contains(&"cell_over_voltage"));
    assert_eq!(w.rebalance().step, Step::Settling, "{}", w.events.join("\n"));
    // A weak cell sinks below rule 14's 2.85 V while the stack settles. (v3 changed the pack:
    // pack 1, whose weak cell keeps it far below the bus when its BMS locks at the top, is now
    // left out at completion instead of being switched on into an inrush (SAFETY.md §2b), so the
    // cell that sinks is one of pack 2, which is on the bus.)
    w.command("drift pack 2 -900").unwrap();
    let t = run_until(&mut w, 60, "settling ended by the low cell", |w| {
        w.logged("rebalance: SettleEndedByUnderVoltage")
    });
    let t2 = run_until(&mut w, 30, "charging allowed again", |w| told(w).is_some_and(|t| t.0));
    eprintln!("settling ended {t} plant s after the drift; charge on {t2} s later");
    assert!(w.reason_codes().contains(&"cell_under_voltage"), "{:?}", w.reason_codes());
    assert_eq!(w.rebalance().step, Step::Idle);
}

/// SAFETY.md §2b: a pack left off the bus far below it (its MOSFETs off, on the rebalance's join
/// list) is never switched on while the gap is wide. It first blocks charging (`pack_joining`),
/// then after `join_wait_max_s` is left out (`pack_isolated`, blocking nothing) while the day's
/// sun lifts the others further; the night's load brings the bus down to it, and only then, within
/// `join_delta_mv`, does it get its command — with no trip, no blown fuse, and no pack near its
/// alarm.
#[test]
fn an_isolated_pack_joins_hours_later_when_a_night_load_brings_the_bus_down() {
    use pace_proto::ControlState;
    let config = default_config(4).unwrap();
    let plant = PlantConfig { packs: 4, soc: 0.75, start_of_day_s: 14.0 * 3600.0, ..PlantConfig::default() };
    let state = RebalanceState { joining: vec![2], ..RebalanceState::default() };
    let mut w = checked(World::with_state(plant, &config, state));
    w.command("soc pack 2 40").unwrap();
    w.plant.packs[1].control.insert(ControlState::CHARGE_MOSFET_OFF | ControlState::DISCHARGE_MOSFET_OFF);
    // The counter measures the bus as the changes left it before the daemon's first read.
    w.plant.step(0.1);
    let gap = |w: &World| {
        let r = w.readings();
        let v = |k: usize| r[k].analog.as_ref().map(|(a, _)| i64::from(a.voltage.raw()));
        Some(v(1)? - (v(0)? + v(2)? + v(3)?) / 3)
    };
    run_until(&mut w, 60, "pack 2 waits to join", |w| {
        w.reason_codes().contains(&"pack_joining") && gap(w).is_some() && told(w).is_some()
    });
    let (charge, discharge, ..) = told(&w).unwrap();
    assert!(!charge && discharge, "below the bus: charging widens the gap and is blocked");
    assert!(gap(&w).unwrap() < -100, "the gap {:?} mV", gap(&w));
    run_until(&mut w, 16 * 60, "left out after 15 min", |w| w.reason_codes().contains(&"pack_isolated"));
    assert!(!w.reason_codes().contains(&"pack_joining"));
    run_until(&mut w, 30, "charging again while it is left out", |w| told(w).is_some_and(|(c, ..)| c));
    // Until it joins, the widest gap seen (the sun lifts the others further) and the gap at the
    // moment its command went out.
    let (start, mut widest) = (w.t, 0);
    while !w.logged("join: pack 2 switched on") {
        assert!(w.t - start < 24 * 3600, "pack 2 never joined\n{}", w.events.join("\n"));
        widest = widest.max(gap(&w).map_or(0, i64::abs));
        w.step();
    }
    let joined_after = w.t - start;
    assert!(widest > 300, "the sun widened the gap: {widest} mV");
    let at_join = gap(&w).unwrap();
    // The daemon's bus is the counter's voltage; the packs' own readings carry their IR drop.
    assert!(at_join.abs() <= 250, "switched on {at_join} mV from the others");
    let hour = w.plant.hour();
    assert!(!(8.0..17.0).contains(&hour), "joined at {hour:.1} h, in the evening or the night");
    assert!(joined_after > 2 * 3600, "hours later: {joined_after} s");
    run_until(&mut w, 120, "pack 2 off the join list", |w| w.rebalance().joining.is_empty());
    for p in &w.plant.packs {
        assert_eq!((p.charge_oc_trips, p.discharge_oc_trips, p.fuse_blows), (0, 0, 0), "pack {}", p.number);
        assert!(p.worst_current_a < 27.0, "pack {} carried {:.1} A", p.number, p.worst_current_a);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 24, ..proptest::prelude::ProptestConfig::default() })]

    /// SAFETY.md §2b over random join situations: 2 to 4 packs, one held off the bus at another
    /// charge (on the join list), a random house load (up to 500 W) and hour, each pack's charge current
    /// limiter on or off. Whatever the gap, the daemon's join command never drives a pack above
    /// its 30 A alarm for longer than `overcurrent_for`, trips no BMS and blows no fuse (judged
    /// over the two minutes after each command).
    #[test]
    fn joining_never_drives_a_pack_over_its_alarm(
        packs in 2usize..=4,
        held in 0usize..4,
        soc in 0.15f64..0.95,
        others in 0.15f64..0.95,
        // Up to what one pack carries: before the daemon's first answer the inverter runs on
        // its own settings (100 A), which is not the daemon's doing.
        load_w in 0.0f64..500.0,
        hour in 0.0f64..24.0,
        limiters in proptest::collection::vec(proptest::bool::ANY, 4),
    ) {
        use pace_proto::ControlState;
        let held = held % packs;
        let config = default_config(packs).unwrap();
        let plant = PlantConfig { packs, soc: others, base_load_w: load_w, start_of_day_s: hour * 3600.0, ..PlantConfig::default() };
        let state = RebalanceState { joining: vec![held + 1], ..RebalanceState::default() };
        let mut w = checked(World::with_state(plant, &config, state));
        w.command(&format!("soc pack {} {:.1}", held + 1, soc * 100.0)).unwrap();
        for (k, on) in limiters.iter().take(packs).enumerate() {
            w.command(&format!("limiter pack {} {}", k + 1, if *on { "on" } else { "off" })).unwrap();
        }
        w.plant.packs[held].control.insert(ControlState::CHARGE_MOSFET_OFF | ControlState::DISCHARGE_MOSFET_OFF);
        w.plant.step(0.1);
        // Judged from each join command on for two minutes: what the command caused.
        let overcurrent_for = config.safety.overcurrent_for_s;
        let mut above = vec![0u64; packs];
        let mut window_until = None::<u64>;
        let mut seen = 0;
        for _ in 0..2 * 3600 {
            let before: Vec<(u32, u32, u32)> =
                w.plant.packs.iter().map(|p| (p.charge_oc_trips, p.discharge_oc_trips, p.fuse_blows)).collect();
            w.step();
            let joins = w.events.iter().filter(|e| e.contains("join: pack")).count();
            if joins > seen {
                seen = joins;
                window_until = Some(w.t + 120);
            }
            if window_until.is_none_or(|until| w.t > until) {
                above.fill(0);
                continue;
            }
            for (k, p) in w.plant.packs.iter().enumerate() {
                above[k] = if p.current_a.abs() > 30.0 { above[k] + 1 } else { 0 };
                proptest::prop_assert!(above[k] as f64 <= overcurrent_for, "pack {} above 30 A for {} s after a join\n{}", k + 1, above[k], w.events.join("\n"));
                let now = (p.charge_oc_trips, p.discharge_oc_trips, p.fuse_blows);
                proptest::prop_assert_eq!(now, before[k], "pack {} tripped after a join: {:.1} A at worst\n{}", k + 1, p.worst_current_a, w.events.join("\n"));
            }
        }
        // The join was tried under the rule: every command went out within join_delta_mv.
        for e in w.events.iter().filter(|e| e.contains("join: pack")) {
            proptest::prop_assert!(e.contains(&format!("pack {}", held + 1)), "{e}");
        }
    }
}

/// SAFETY.md §2b through the operator's order: a pack whose MOSFETs were switched off (with the
/// maker's tool) sits below the bus the sun lifts; the order to join it puts it under the join
/// rule — charging is held off while the gap is wide, the command goes out only within
/// `join_delta_mv`, and nothing trips.
#[test]
fn the_operators_join_order_waits_for_the_gap_to_close() {
    use daemon::control::Control;
    use pace_proto::ControlState;
    let config = default_config(3).unwrap();
    let plant = PlantConfig { packs: 3, soc: 0.6, start_of_day_s: 11.0 * 3600.0, ..PlantConfig::default() };
    let mut w = checked(World::new(plant, &config));
    run_until(&mut w, 30, "both enabled", both_on);
    w.plant.packs[2].control.insert(ControlState::CHARGE_MOSFET_OFF | ControlState::DISCHARGE_MOSFET_OFF);
    w.command("soc pack 3 45").unwrap();
    run_until(&mut w, 10, "pack 3 reported off", |w| {
        w.readings()[2]
            .status
            .as_ref()
            .is_some_and(|(s, _)| !s.system.contains(pace_proto::SystemState::CHARGE_MOSFET_ON))
    });
    w.order(&Control::JoinPack { pack: 3 }).expect("the join order is taken");
    run_until(&mut w, 5, "the join list takes it", |w| w.rebalance().joining == [3]);
    let waited = run_until(&mut w, 12 * 3600, "pack 3 joins", |w| w.logged("join: pack 3 switched on"));
    assert!(
        w.events.iter().any(|e| e.contains("pack 3 waits to join the bus")),
        "it waited with pack_joining first\n{}",
        w.events.join("\n")
    );
    assert!(waited > 60, "the gap closed only after {waited} s");
    run_until(&mut w, 30, "pack 3 off the join list", |w| w.rebalance().joining.is_empty());
    for p in &w.plant.packs {
        assert_eq!((p.charge_oc_trips, p.discharge_oc_trips, p.fuse_blows), (0, 0, 0), "pack {}", p.number);
    }
}
