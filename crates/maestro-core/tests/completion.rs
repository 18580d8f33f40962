//! SAFETY.md §4 step 3 (v2): a rebalance completes without ever blocking both directions, even
//! with packs still in over-voltage protection when it does: the packs are unlocked first, and
//! rules 6 and 11 stay relaxed until they report the protection gone (v3: until they have joined
//! the bus, SAFETY.md §2b).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use maestro_core::*;
use pace_proto::Protect1;

/// Three packs at the top of a rebalance; `locked` ones are in BMS over-voltage protection (the
/// Pace BMS then turns both MOSFETs off).
fn packs(at: u64, locked: &[bool]) -> Vec<PackObservation> {
    locked
        .iter()
        .map(|&l| PackObservation {
            cells_mv: vec![3450; 8],
            temps_dc: vec![250; 6],
            protect1: if l { Protect1::HIGH_CELL_VOLTAGE } else { Protect1::empty() },
            can_charge: !l,
            can_discharge: !l,
            current_ma: Some(0),
            charge_alarm_a: Some(30),
            discharge_alarm_a: Some(30),
            ..PackObservation::seen_at(Millis(at))
        })
        .collect()
}

fn at_the_tail(now_s: u64, locked: bool) -> RebalanceInput {
    RebalanceInput {
        now_s,
        coil_voltage_mv: Some(27_900),
        coil_current_ma: Some(1000),
        coil_remaining_mah: Some(239_000),
        cell_spread_mv: Some(20),
        packs_locked: locked,
        packs_reported: true,
        ..RebalanceInput::default()
    }
}

#[test]
fn completing_with_packs_in_over_voltage_protection_never_blocks_both_directions() {
    let mut rebalance = Rebalance::new(RebalanceConfig::default(), RebalanceState::default());
    let mut maestro = Maestro::default();
    // Started at 0 s at the tail of a charge; packs 1 and 2 stay locked until 5 s after the
    // unlock was sent.
    let mut unlocked_at = None;
    let mut steps = Vec::new();
    for s in 0..60u64 {
        let locked = unlocked_at.is_none_or(|t| s < t);
        let state = [locked, locked, false];
        let out = rebalance.step(&RebalanceInput { start: s == 0, ..at_the_tail(s, locked) });
        if out.actions.contains(&Action::UnlockPacks) && unlocked_at.is_none() {
            unlocked_at = Some(s + 5);
        }
        let obs = Observation {
            packs: &packs(s * 1000, &state),
            rebalance_active: rebalance.state().active(),
            rebalance_settling: matches!(rebalance.state().step, Step::Completing | Step::Settling),
            ..Observation::at(Millis(s * 1000))
        };
        let d = maestro.decide(&obs);
        assert!(d.charge || d.discharge, "both off at {s} s ({:?}): {:?}", rebalance.state().step, d.reasons);
        steps.push((s, rebalance.state().step, out.events));
    }
    let when = |e: Event| steps.iter().find(|(_, _, ev)| ev.contains(&e)).map(|(s, _, _)| *s);
    let (unlocking, completed) = (when(Event::Unlocking).unwrap(), when(Event::Completed).unwrap());
    assert_eq!(unlocked_at, Some(unlocking + 5));
    assert_eq!(completed, unlocking + 5, "active is cleared when the packs report the protection gone");
    assert_eq!(rebalance.state().step, Step::Settling);

    // The v1 order cleared active at once: with the packs still locked, rule 6 blocks both.
    let obs = Observation { packs: &packs(0, &[true, true, false]), ..Observation::at(Millis(0)) };
    let v1 = Maestro::default().decide(&obs);
    assert!(!v1.charge && !v1.discharge, "{v1:?}");
}

/// v3 (SAFETY.md §4 step 3) changed this rule: a pack still locked after `join_wait_max_s` no
/// longer stops the stack (v2 cleared active after 30 s and rule 6 blocked both). It is left out:
/// rules 6 and 11 stay relaxed for it alone, since its lock is the rebalance's doing, and it joins
/// later by §2b. A pack locked by its BMS for another reason still stops the stack.
#[test]
fn packs_that_stay_locked_past_join_wait_max_are_left_out_and_the_stack_goes_on() {
    let mut rebalance = Rebalance::new(RebalanceConfig::default(), RebalanceState::default());
    rebalance.step(&RebalanceInput { start: true, ..at_the_tail(0, true) });
    assert_eq!(rebalance.state().step, Step::Completing);
    assert_eq!(rebalance.step(&at_the_tail(899, true)).events, []);
    assert_eq!(rebalance.step(&at_the_tail(900, true)).events, [Event::Completed]);
    let mut locked = packs(900_000, &[true, true, false]);
    for p in &mut locked[..2] {
        p.rebalance_locked = true;
        p.cells_mv = vec![3650; 8];
    }
    let active = rebalance.state().active();
    let observe = |packs: &[PackObservation]| {
        Maestro::default().decide(&Observation {
            packs,
            rebalance_active: active,
            rebalance_settling: true,
            ..Observation::at(Millis(900_000))
        })
    };
    let d = observe(&locked);
    assert!(!d.charge, "rule 13 still blocks charging: {d:?}");
    assert!(d.discharge, "the two locked packs are left out, pack 3 carries: {d:?}");
    assert!(!d.reasons.iter().any(|r| matches!(r, Reason::BmsOverVoltage { .. } | Reason::CellOverVoltage)));
    // The same lock on a pack the rebalance did not leave out: rule 6 stops the stack.
    locked[1].rebalance_locked = false;
    let d = observe(&locked);
    assert!(!d.charge && !d.discharge && d.reasons.contains(&Reason::BmsOverVoltage { pack: 2 }), "{d:?}");
}
