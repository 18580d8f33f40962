//! The rebalance procedure of SAFETY.md §4, driven through a whole cycle with time passed in.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use maestro_core::*;

const DAY: u64 = 24 * 3600;

fn input(now_s: u64, minute: u16) -> RebalanceInput {
    RebalanceInput {
        now_s,
        local_minute: minute,
        coil_voltage_mv: Some(26_800),
        coil_current_ma: Some(20_000),
        coil_remaining_mah: Some(150_000),
        output_priority: Some(OUTPUT_SBU),
        cell_spread_mv: Some(20),
        packs_reported: true,
        ..RebalanceInput::default()
    }
}

use maestro_core::rebalance::{CHARGE_PV_AND_UTILITY, CHARGE_PV_ONLY, OUTPUT_SBU, OUTPUT_UTILITY_FIRST};

#[test]
fn a_whole_cycle_from_cell_under_voltage_to_settled() {
    let mut r = Rebalance::new(RebalanceConfig::default(), RebalanceState::default());
    // Rule 14 fires at 10:00: start.
    let out = r.step(&RebalanceInput { cell_under_voltage: true, ..input(1000, 600) });
    assert_eq!(out.events, [Event::Started(Trigger::CellUnderVoltage)]);
    assert!(out.state_changed);
    assert_eq!(r.state().remembered_output_priority, Some(OUTPUT_SBU));
    let t = out.targets;
    assert_eq!((t.output_priority, t.charging_priority), (Some(OUTPUT_UTILITY_FIRST), Some(CHARGE_PV_ONLY)));
    assert_eq!(t.coil, Some((240_000, 2795)));
    assert!(t.raised_charge_voltage && !t.settling);
    // In a cheap window (13:30) the grid may help.
    assert_eq!(r.step(&input(2000, 810)).targets.charging_priority, Some(CHARGE_PV_AND_UTILITY));
    // Threshold hit at 27.81 V, but the current is still high: keep going.
    let out = r.step(&RebalanceInput { coil_voltage_mv: Some(27_810), ..input(3000, 900) });
    assert_eq!(out.events, [Event::ThresholdHit]);
    assert!(out.targets.raised_charge_voltage);
    // The voltage sags, current tails off, but a pack still balances: keep going.
    let out = r.step(&RebalanceInput { coil_current_ma: Some(3000), balancing: true, ..input(4000, 900) });
    assert!(out.events.is_empty() && out.targets.raised_charge_voltage);
    // Balancing done: the packs are unlocked first; the run stays active while they are locked.
    let out = r.step(&RebalanceInput {
        coil_current_ma: Some(3000),
        output_priority: Some(OUTPUT_UTILITY_FIRST),
        packs_locked: true,
        ..input(4990, 900)
    });
    assert_eq!(
        (out.events.as_slice(), out.actions.as_slice()),
        ([Event::Unlocking].as_slice(), [Action::UnlockPacks].as_slice())
    );
    assert!(out.targets.raised_charge_voltage && r.state().active());
    assert!(out.targets.settling, "charging stops while the packs are unlocked");
    assert_eq!(r.state().step, Step::Completing);
    // They report the protection gone: complete (the inverter still reports utility first).
    let out = r.step(&RebalanceInput {
        coil_current_ma: Some(3000),
        output_priority: Some(OUTPUT_UTILITY_FIRST),
        ..input(5000, 900)
    });
    assert_eq!(out.events, [Event::Completed]);
    assert_eq!(out.actions, [Action::CalibrateCoilFull { capacity_mah: 239_999, full_voltage_cv: 2795 }]);
    assert_eq!(
        (out.targets.output_priority, out.targets.charging_priority),
        (Some(OUTPUT_SBU), Some(CHARGE_PV_ONLY))
    );
    assert!(out.targets.settling && !out.targets.raised_charge_voltage);
    assert_eq!(r.state().step, Step::Settling);
    assert_eq!(r.state().last_completed_s, Some(5000));
    assert!(!r.state().needed);
    // Settling: charging stays blocked until the coil has given back the extra 35 Ah. The output
    // priority is asked for until the inverter reports it restored.
    let out = r.step(&RebalanceInput {
        coil_remaining_mah: Some(230_000),
        output_priority: Some(OUTPUT_UTILITY_FIRST),
        ..input(6000, 900)
    });
    assert!(out.targets.settling);
    assert_eq!(out.targets.output_priority, Some(OUTPUT_SBU));
    let out = r.step(&RebalanceInput {
        coil_remaining_mah: Some(230_000),
        charging_priority: Some(CHARGE_PV_ONLY),
        ..input(6100, 900)
    });
    assert_eq!(
        (out.targets.output_priority, out.targets.charging_priority),
        (None, None),
        "restored: no longer asked for"
    );
    let out = r.step(&RebalanceInput { coil_remaining_mah: Some(205_000), ..input(7000, 900) });
    assert_eq!(out.events, [Event::Settled]);
    assert_eq!(out.targets.coil, Some((205_000, 2735)));
    assert!(!out.targets.settling);
    assert_eq!(r.state().step, Step::Idle);
    // Asked for until the coil reports it.
    assert_eq!(r.step(&input(7100, 900)).targets.coil, Some((205_000, 2735)));
    assert_eq!(
        r.step(&RebalanceInput { coil_settings: Some((205_000, 2735)), ..input(7200, 900) }).targets.coil,
        None
    );
}

#[test]
fn a_forced_charging_priority_wins() {
    let mut r = Rebalance::new(RebalanceConfig::default(), RebalanceState::default());
    r.force_charging_priority(Some(1));
    let out = r.step(&RebalanceInput { start: true, ..input(0, 60) });
    assert_eq!(out.events, [Event::Started(Trigger::Operator)]);
    assert_eq!(out.targets.charging_priority, Some(1));
}

#[test]
fn a_forced_charging_priority_holds_outside_a_run_and_its_release_restores_pv_only() {
    let mut r = Rebalance::new(RebalanceConfig::default(), RebalanceState::default());
    let idle = RebalanceInput { charging_priority: Some(CHARGE_PV_ONLY), ..input(0, 60) };
    assert_eq!(r.step(&idle).targets.charging_priority, None, "nothing forced, nothing to do");
    r.force_charging_priority(Some(CHARGE_PV_AND_UTILITY));
    assert!(r.state().forced_charging_priority.is_some(), "kept for the state file");
    assert_eq!(r.step(&idle).targets.charging_priority, Some(CHARGE_PV_AND_UTILITY));
    r.force_charging_priority(None);
    let forced = RebalanceInput { charging_priority: Some(CHARGE_PV_AND_UTILITY), ..input(1, 60) };
    assert_eq!(r.step(&forced).targets.charging_priority, Some(CHARGE_PV_ONLY), "released: back to PV only");
    assert_eq!(r.step(&idle).targets.charging_priority, None, "reported back: the restore is done");
    assert_eq!(r.state().restore_charging_priority, None);
}

#[test]
fn cancel_restores_everything_but_does_not_calibrate() {
    let mut r = Rebalance::new(RebalanceConfig::default(), RebalanceState::default());
    r.step(&RebalanceInput { start: true, output_priority: Some(1), ..input(0, 600) });
    let out = r.step(&RebalanceInput { cancel: true, ..input(10, 600) });
    assert_eq!(out.events, [Event::Cancelled]);
    assert_eq!(out.actions, [Action::UnlockPacks]);
    let t = out.targets;
    assert_eq!(
        (t.output_priority, t.charging_priority, t.coil),
        (Some(1), Some(CHARGE_PV_ONLY), Some((205_000, 2735)))
    );
    assert!(!t.raised_charge_voltage && !t.settling);
    assert!(r.state().soc_uncalibrated, "the UI must say the SOC is uncalibrated");
    assert_eq!(r.state().step, Step::Idle);
    // The restores are asked for until the devices report them, even across steps.
    let out = r.step(&input(20, 600));
    assert_eq!((out.targets.output_priority, out.targets.coil), (Some(1), Some((205_000, 2735))));
    let restored = RebalanceInput {
        output_priority: Some(1),
        charging_priority: Some(CHARGE_PV_ONLY),
        coil_settings: Some((205_000, 2735)),
        ..input(30, 600)
    };
    assert_eq!(r.step(&restored).targets, Targets::default());
    // Cancelling when idle does nothing.
    assert_eq!(r.step(&RebalanceInput { cancel: true, ..restored }), Outcome::default());
}

#[test]
fn due_after_rebalance_every() {
    let state = RebalanceState { last_completed_s: Some(0), ..RebalanceState::default() };
    let mut r = Rebalance::new(RebalanceConfig::default(), state);
    assert!(r.step(&input(14 * DAY, 600)).events.is_empty());
    assert_eq!(r.step(&input(14 * DAY + 1, 600)).events, [Event::Started(Trigger::Due)]);
}

#[test]
fn a_restart_resumes_the_same_step() {
    let mut r = Rebalance::new(RebalanceConfig::default(), RebalanceState::default());
    r.step(&RebalanceInput { cell_under_voltage: true, ..input(0, 600) });
    r.step(&RebalanceInput { coil_voltage_mv: Some(27_900), ..input(100, 600) });
    // Persist, "restart", load.
    let saved = serde_json::to_string(r.state()).unwrap();
    let loaded: RebalanceState = serde_json::from_str(&saved).unwrap();
    assert_eq!(&loaded, r.state());
    let mut resumed = Rebalance::new(RebalanceConfig::default(), loaded);
    let next = RebalanceInput { coil_current_ma: Some(1000), ..input(200, 600) };
    // The resumed procedure remembers the threshold hit and completes exactly like the original.
    assert_eq!(resumed.step(&next), r.step(&next));
    assert_eq!(resumed.state().step, Step::Completing);
    // Restarted while completing: it goes on unlocking, then completes.
    let saved = serde_json::to_string(r.state()).unwrap();
    let mut resumed = Rebalance::new(RebalanceConfig::default(), serde_json::from_str(&saved).unwrap());
    let next = RebalanceInput { coil_current_ma: Some(1000), ..input(210, 600) };
    assert_eq!(resumed.step(&next), r.step(&next));
    assert_eq!(resumed.state().step, Step::Settling);
}

#[test]
fn a_version_1_state_file_still_loads() {
    let v1 = r#"{"step":"settling","needed":false,"threshold_hit":false,"remembered_output_priority":null,
        "last_completed_s":100,"forced_charging_priority":null,"soc_uncalibrated":false}"#;
    let state: RebalanceState = serde_json::from_str(v1).unwrap();
    assert_eq!((state.step, state.imbalance, state.threshold_hit_s), (Step::Settling, None, None));
}

/// A run started at 0 s whose threshold was hit at 100 s.
fn at_the_top() -> Rebalance {
    let mut r = Rebalance::new(RebalanceConfig::default(), RebalanceState::default());
    r.step(&RebalanceInput { start: true, ..input(0, 600) });
    let out = r.step(&RebalanceInput { coil_voltage_mv: Some(27_900), ..input(100, 600) });
    assert_eq!(out.events, [Event::ThresholdHit]);
    r
}

#[test]
fn the_top_hold_waits_for_the_cells_to_close_up_or_for_hold_max() {
    let mut r = at_the_top();
    let tail = |now, spread| RebalanceInput {
        coil_current_ma: Some(1000),
        cell_spread_mv: spread,
        ..input(now, 600)
    };
    // 41 mV apart: held at the top, the charge voltage stays raised.
    let out = r.step(&tail(200, Some(41)));
    assert!(out.events.is_empty() && out.targets.raised_charge_voltage, "{out:?}");
    // An unknown spread is not balanced either.
    assert!(r.step(&tail(300, None)).events.is_empty());
    // 40 mV: done.
    assert_eq!(r.step(&tail(400, Some(40))).events, [Event::Unlocking]);
    // Or after 4 h at the top, whatever the spread.
    let mut r = at_the_top();
    assert!(r.step(&tail(100 + 4 * 3600 - 1, Some(200))).events.is_empty());
    assert_eq!(r.step(&tail(100 + 4 * 3600, Some(200))).events, [Event::Unlocking]);
}

/// v3 (SAFETY.md §4 step 3) changed this rule: the unlock is no longer resent by the procedure
/// every 5 s nor cut off after a 30 s grace; the join rule (§2b) sends each pack its command, and
/// the completion waits for the packs at most `join_wait_max_s` (15 min).
#[test]
fn completion_unlocks_first_and_clears_active_when_the_packs_have_joined_or_after_join_wait_max() {
    let mut r = at_the_top();
    let done =
        |now, locked| RebalanceInput { coil_current_ma: Some(1000), packs_locked: locked, ..input(now, 600) };
    let out = r.step(&done(200, true));
    assert_eq!((out.events, out.actions), (vec![Event::Unlocking], vec![Action::UnlockPacks]));
    // Still waiting to join: active (rules 6 and 11 stay relaxed), nothing calibrated yet,
    // charging blocked, no further action from the procedure.
    for now in [201, 230, 600, 200 + 899] {
        let out = r.step(&done(now, true));
        assert!(out.events.is_empty() && out.actions.is_empty() && r.state().active(), "at {now}: {out:?}");
        assert!(out.targets.settling);
    }
    // 15 min: the completion goes on without the pack still locked (it stays on the join list).
    let out = r.step(&done(200 + 900, true));
    assert_eq!(out.events, [Event::Completed]);
    assert!(!out.actions.contains(&Action::UnlockPacks));
    assert!(!r.state().active() && out.targets.settling);
    // The packs joined early: completed at once.
    let mut r = at_the_top();
    r.step(&done(200, true));
    assert_eq!(r.step(&done(203, false)).events, [Event::Completed]);
}

#[test]
fn settling_ends_after_settle_max_or_when_a_new_rebalance_starts() {
    let mut r = at_the_top();
    let done = RebalanceInput { coil_current_ma: Some(1000), ..input(200, 600) };
    r.step(&done);
    r.step(&RebalanceInput { now_s: 201, ..done });
    assert_eq!((r.state().step, r.state().last_completed_s), (Step::Settling, Some(201)));
    // The coil never comes down (discharge blocked all along): 36 h at most.
    let full = |now| RebalanceInput { coil_remaining_mah: Some(239_000), ..input(now, 600) };
    assert!(r.step(&full(201 + 36 * 3600 - 1)).targets.settling);
    let out = r.step(&full(201 + 36 * 3600));
    assert_eq!(out.events, [Event::SettleTimedOut]);
    assert_eq!(out.targets.coil, Some((205_000, 2735)));
    assert!(!out.targets.settling && r.state().step == Step::Idle);
    // A new rebalance started by the operator ends the settling too.
    let mut r = at_the_top();
    r.step(&done);
    r.step(&RebalanceInput { now_s: 201, ..done });
    let out = r.step(&RebalanceInput { start: true, ..full(1000) });
    assert_eq!(out.events, [Event::SettleEndedByStart, Event::Started(Trigger::Operator)]);
    assert!(!out.targets.settling && out.targets.raised_charge_voltage);
    assert_eq!(out.targets.coil, Some((240_000, 2795)), "the new run keeps the rebalance capacity");
}

#[test]
fn a_low_cell_soon_after_a_rebalance_raises_pack_imbalance_instead_of_another_run() {
    let mut r = at_the_top();
    let done = RebalanceInput { coil_current_ma: Some(1000), ..input(200, 600) };
    r.step(&done);
    r.step(&RebalanceInput { now_s: 201, ..done });
    r.step(&RebalanceInput { coil_remaining_mah: Some(200_000), ..input(300, 600) });
    assert_eq!(r.state().step, Step::Idle);
    let low = |now| RebalanceInput { cell_under_voltage: true, lowest_cell: Some((2, 5)), ..input(now, 600) };
    // Two days later: no new run; the alarm names the pack and cell, once.
    let out = r.step(&low(201 + 2 * DAY));
    assert_eq!(out.events, [Event::PackImbalance { pack: 2, cell: 5 }]);
    assert_eq!(r.state().step, Step::Idle);
    assert_eq!(r.state().imbalance.map(|i| (i.pack, i.cell)), Some((2, 5)));
    assert!(r.step(&low(201 + 2 * DAY + 1)).events.is_empty());
    // Three days after the completion, a low cell starts a rebalance again and clears the alarm.
    let out = r.step(&low(201 + 3 * DAY));
    assert_eq!(out.events, [Event::Started(Trigger::CellUnderVoltage)]);
    assert_eq!(r.state().imbalance, None);
}

#[test]
fn a_state_file_with_unknown_fields_is_refused() {
    let e =
        serde_json::from_str::<RebalanceState>(r#"{"step":"running","needed":true,"bogus":1}"#).unwrap_err();
    assert!(e.to_string().contains("unknown field `bogus`"), "{e}");
}

/// Found by `pace2pylon simulate --days 30 --seed 7 --packs 2`: a weak cell falls below 2.85 V
/// while the stack settles. Rule 14 blocks discharging, so the extra capacity can never be given
/// back, and settling kept charging blocked as well: both directions off for up to `settle_max_s`
/// (three times in that month, 88.6 h in all). Settling now ends there.
#[test]
fn settling_ends_when_a_cell_under_voltage_blocks_discharge() {
    let mut r = at_the_top();
    let done = RebalanceInput { coil_current_ma: Some(1000), ..input(200, 600) };
    r.step(&done);
    r.step(&RebalanceInput { now_s: 201, ..done });
    assert_eq!(r.state().step, Step::Settling);
    let low = RebalanceInput {
        cell_under_voltage: true,
        lowest_cell: Some((1, 1)),
        coil_remaining_mah: Some(239_000),
        ..input(3600, 600)
    };
    let out = r.step(&low);
    assert!(out.events.contains(&Event::SettleEndedByUnderVoltage), "{:?}", out.events);
    assert!(out.events.contains(&Event::PackImbalance { pack: 1, cell: 1 }), "{:?}", out.events);
    assert!(!out.targets.settling);
    assert_eq!(out.targets.coil, Some((205_000, 2735)), "the coil back to its regular capacity");
    assert_eq!(r.state().step, Step::Idle);
}

/// Found by the month-long soak (`simulate --days 30 --seed 14 --packs 3`): a daemon restarted at
/// the top of a rebalance saw the counter's tail current before any pack had answered, completed
/// at once without knowing which packs the over-voltage lock held, and rule 6 then stopped the
/// stack for 23 h. The completion waits until every pack's state is known.
#[test]
fn regression_no_completion_before_every_pack_has_reported() {
    let mut r = at_the_top();
    let done = |now, reported| RebalanceInput {
        coil_current_ma: Some(1000),
        packs_reported: reported,
        ..input(now, 600)
    };
    for now in [200, 201, 205] {
        assert_eq!(r.step(&done(now, false)).events, [], "at {now}");
        assert_eq!(r.state().step, Step::Running);
    }
    assert_eq!(r.step(&done(206, true)).events, [Event::Unlocking]);
}
