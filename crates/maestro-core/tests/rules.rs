//! One test per SAFETY.md §3 rule; each fails if its rule is removed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use maestro_core::*;
use pace_proto::{FaultState, Protect1, Protect2};

fn healthy(at: u64) -> PackObservation {
    PackObservation {
        cells_mv: vec![3300; 8],
        temps_dc: vec![250; 6],
        ..PackObservation::seen_at(Millis(at))
    }
}

fn decide(
    m: &mut Maestro,
    packs: &[PackObservation],
    now: u64,
    f: impl FnOnce(&mut Observation<'_>),
) -> Decision {
    let mut obs = Observation { packs, ..Observation::at(Millis(now)) };
    f(&mut obs);
    m.decide(&obs)
}

fn both_off(d: &Decision, r: &Reason) {
    assert!(!d.charge && !d.discharge && d.reasons.contains(r), "{d:?}");
}

#[test]
fn healthy_packs_enable_both() {
    let d = decide(&mut Maestro::default(), &[healthy(0), healthy(0)], 100, |_| {});
    assert!(d.charge && d.discharge && d.reasons.is_empty(), "{d:?}");
}

#[test]
fn rule_1_forced_disable() {
    let d = decide(&mut Maestro::default(), &[healthy(0)], 100, |o| o.forced_disable = true);
    both_off(&d, &Reason::ForcedDisable);
}

#[test]
fn rule_2_stale_or_missing_pack_data() {
    let mut m = Maestro::default();
    // Exactly stale_after old is not yet "older than" it.
    assert!(decide(&mut m, &[healthy(0)], 5000, |_| {}).charge);
    both_off(&decide(&mut m, &[healthy(0)], 5001, |_| {}), &Reason::PackStale { pack: 1 });
    let status_missing = PackObservation { status_at: None, ..healthy(5000) };
    both_off(&decide(&mut m, &[healthy(5000), status_missing], 5001, |_| {}), &Reason::PackStale { pack: 2 });
}

#[test]
fn rule_3_stale_or_missing_coil_when_configured() {
    let mut m = Maestro::default();
    assert!(decide(&mut m, &[healthy(0)], 100, |o| o.coil = None).charge, "no coil configured");
    both_off(&decide(&mut m, &[healthy(0)], 100, |o| o.coil = Some(None)), &Reason::CoilStale);
    both_off(
        &decide(&mut m, &[healthy(6000)], 6000, |o| o.coil = Some(Some(Millis(900)))),
        &Reason::CoilStale,
    );
    assert!(decide(&mut m, &[healthy(6000)], 6000, |o| o.coil = Some(Some(Millis(5000)))).charge);
}

#[test]
fn rule_4_bms_protections_that_stop_a_pack_both_ways() {
    for bit in [4u8, 5, 6] {
        let p = PackObservation { protect1: Protect1::from_bits_retain(1 << bit), ..healthy(0) };
        let d = decide(&mut Maestro::default(), &[p], 100, |_| {});
        assert!(
            !d.charge && !d.discharge && d.reasons.iter().any(|r| r.rule() == 4),
            "protect 1 bit {bit}: {d:?}"
        );
    }
    for bit in [1u8, 3, 4, 5, 6] {
        let p = PackObservation { protect2: Protect2::from_bits_retain(1 << bit), ..healthy(0) };
        let d = decide(&mut Maestro::default(), &[p], 100, |_| {});
        assert!(!d.charge && !d.discharge, "protect 2 bit {bit}: {d:?}");
    }
    // v2: under-voltage (protect 1 bits 1, 3) and the charge temperatures (protect 2 bits 0, 2)
    // are rules 15 and 16: each blocks one direction only.
    for bit in [1u8, 3] {
        let p = PackObservation { protect1: Protect1::from_bits_retain(1 << bit), ..healthy(0) };
        let d = decide(&mut Maestro::default(), &[p], 100, |_| {});
        assert!(d.charge && !d.reasons.iter().any(|r| r.rule() == 4), "protect 1 bit {bit}: {d:?}");
    }
    for bit in [0u8, 2] {
        let p = PackObservation { protect2: Protect2::from_bits_retain(1 << bit), ..healthy(0) };
        let d = decide(&mut Maestro::default(), &[p], 100, |_| {});
        assert!(d.discharge && !d.reasons.iter().any(|r| r.rule() == 4), "protect 2 bit {bit}: {d:?}");
    }
    // "Fully" is not a protection; undefined protect 1 bit 7 neither.
    let p = PackObservation {
        protect2: Protect2::FULLY,
        protect1: Protect1::from_bits_retain(0x80),
        ..healthy(0)
    };
    assert!(decide(&mut Maestro::default(), &[p], 100, |_| {}).charge);
}

#[test]
fn rule_5_bms_faults() {
    for bit in [0u8, 1, 2, 4, 5] {
        let p = PackObservation { fault: FaultState::from_bits_retain(1 << bit), ..healthy(0) };
        let d = decide(&mut Maestro::default(), &[p], 100, |_| {});
        both_off(&d, &Reason::BmsFault { pack: 1, fault: 1 << bit });
    }
    let p = PackObservation { fault: FaultState::from_bits_retain(0b1100_1000), ..healthy(0) };
    assert!(decide(&mut Maestro::default(), &[p], 100, |_| {}).discharge);
}

#[test]
fn rule_6_bms_over_voltage_outside_a_rebalance() {
    for bits in [Protect1::HIGH_CELL_VOLTAGE, Protect1::HIGH_TOTAL_VOLTAGE] {
        let p = PackObservation { protect1: bits, ..healthy(0) };
        both_off(
            &decide(&mut Maestro::default(), std::slice::from_ref(&p), 100, |_| {}),
            &Reason::BmsOverVoltage { pack: 1 },
        );
        let d = decide(&mut Maestro::default(), &[p], 100, |o| o.rebalance_active = true);
        assert!(d.charge && d.discharge, "expected during a rebalance: {d:?}");
    }
}

#[test]
fn rule_7_over_current_holds_and_releases() {
    let mut m = Maestro::default();
    let packs = [healthy(0)];
    let at = |m: &mut Maestro, now: u64, ma: i32| {
        let packs: Vec<_> = packs
            .iter()
            .map(|p| PackObservation {
                analog_at: Some(Millis(now)),
                status_at: Some(Millis(now)),
                ..p.clone()
            })
            .collect();
        decide(m, &packs, now, |o| {
            o.current_ma = Some(ma);
            o.charge_limit_ma = Some(40_000);
            o.discharge_limit_ma = Some(50_000);
        })
    };
    // 1.3 × the charge limit for 1.5 s: not yet.
    assert!(at(&mut m, 1000, 52_000).charge);
    assert!(at(&mut m, 2500, 52_000).charge);
    // ... for more than 2 s: blocked.
    both_off(&at(&mut m, 3100, 52_000), &Reason::OverCurrent);
    // Between the limit and 1.2 × it: neither trips nor releases.
    assert!(!at(&mut m, 20_000, 45_000).charge);
    // Below the limit for 9 s: still blocked; for 10 s: released.
    assert!(!at(&mut m, 21_000, 30_000).charge);
    assert!(!at(&mut m, 30_000, 30_000).charge);
    assert!(at(&mut m, 31_000, 30_000).charge);
    // Discharging compares with the discharge limit: 55 A is fine, 61 A for 2.1 s is not.
    assert!(at(&mut m, 40_000, -55_000).discharge);
    assert!(at(&mut m, 41_000, -61_000).discharge);
    assert!(!at(&mut m, 43_200, -61_000).discharge);
}

fn with_temps(at: u64, temps: [i32; 6]) -> PackObservation {
    PackObservation { temps_dc: temps.to_vec(), ..healthy(at) }
}

/// Runs a temperature through set, hold and release.
fn hysteresis(index: usize, set: i32, hold: i32, release: i32, reason: Reason) {
    let mut m = Maestro::default();
    let mut temps = [250; 6];
    let mut at = |t: i32, now: u64| {
        temps[index] = t;
        decide(&mut m, &[with_temps(now, temps)], now, |_| {})
    };
    both_off(&at(set, 0), &reason);
    both_off(&at(hold, 1), &reason);
    let d = at(release, 2);
    assert!(!d.reasons.contains(&reason), "{d:?}");
}

#[test]
fn rule_8_temperatures_with_hysteresis() {
    hysteresis(2, 501, 460, 449, Reason::CellOverTemperature);
    hysteresis(5, 551, 520, 499, Reason::BmsOverTemperature);
    hysteresis(4, 601, 560, 549, Reason::MosfetOverTemperature);
    // At the threshold itself nothing trips ("above").
    let d = decide(&mut Maestro::default(), &[with_temps(0, [500, 250, 250, 250, 600, 550])], 0, |_| {});
    assert!(d.charge && d.discharge, "{d:?}");
}

#[test]
fn rule_9_too_cold_to_discharge() {
    hysteresis(0, -151, -120, -99, Reason::CellTooCold);
}

#[test]
fn rule_10_an_old_decision_is_not_served() {
    let d = decide(&mut Maestro::default(), &[healthy(0)], 1000, |_| {});
    assert!(d.is_fresh(Millis(4000), 3000));
    assert!(!d.is_fresh(Millis(4001), 3000));
    assert_eq!(Reason::DecisionStale.blocks(), Blocks::Both);
}

#[test]
fn unknown_current_limits_block_both() {
    let d = decide(&mut Maestro::default(), &[healthy(0)], 100, |o| o.charge_limit_ma = None);
    both_off(&d, &Reason::LimitsUnknown);
}

fn with_cell(at: u64, mv: u16) -> PackObservation {
    let mut p = healthy(at);
    p.cells_mv[3] = mv;
    p
}

#[test]
fn rule_11_cell_over_voltage_blocks_charge_only_outside_a_rebalance() {
    let mut m = Maestro::default();
    let d = decide(&mut m, &[with_cell(0, 3631)], 0, |_| {});
    assert!(!d.charge && d.discharge && d.reasons == [Reason::CellOverVoltage], "{d:?}");
    assert!(!decide(&mut m, &[with_cell(1, 3400)], 1, |_| {}).charge, "held until below 3.400 V");
    // v2: released below 3.400 V (was 3.300 V, which kept charging blocked for a day).
    let d = decide(&mut m, &[with_cell(2, 3399)], 2, |_| {});
    assert!(d.charge, "{d:?}");
    assert!(decide(&mut Maestro::default(), &[with_cell(0, 3700)], 0, |o| o.rebalance_active = true).charge);
    assert!(
        decide(&mut Maestro::default(), &[with_cell(0, 3630)], 0, |_| {}).charge,
        "3.630 V itself is fine"
    );
}

#[test]
fn rule_12_too_cold_to_charge() {
    let mut m = Maestro::default();
    let mut temps = [250; 6];
    temps[1] = 19;
    let d = decide(&mut m, &[with_temps(0, temps)], 0, |_| {});
    assert!(!d.charge && d.discharge && d.reasons == [Reason::TooColdToCharge], "{d:?}");
    temps[1] = 45;
    assert!(!decide(&mut m, &[with_temps(1, temps)], 1, |_| {}).charge);
    temps[1] = 51;
    assert!(decide(&mut m, &[with_temps(2, temps)], 2, |_| {}).charge);
}

#[test]
fn rule_13_rebalance_settling_blocks_charge() {
    let d = decide(&mut Maestro::default(), &[healthy(0)], 0, |o| o.rebalance_settling = true);
    assert!(!d.charge && d.discharge && d.reasons == [Reason::RebalanceSettling], "{d:?}");
}

#[test]
fn rule_14_cell_under_voltage_blocks_discharge_and_asks_for_a_rebalance() {
    let mut m = Maestro::default();
    let d = decide(&mut m, &[with_cell(0, 2849)], 0, |_| {});
    assert!(
        d.charge && !d.discharge && d.rebalance_needed && d.reasons == [Reason::CellUnderVoltage],
        "{d:?}"
    );
    assert!(!decide(&mut m, &[with_cell(1, 3000)], 1, |_| {}).discharge, "held until above 3.100 V");
    assert!(decide(&mut m, &[with_cell(2, 3101)], 2, |_| {}).discharge);
}

#[test]
fn every_reason_names_its_rule_and_reads_as_words() {
    let r = Reason::BmsProtection { pack: 3, protect1: 0x02, protect2: 0 };
    assert_eq!(
        (r.rule(), r.describe().as_str()),
        (4, "pack 3 BMS protection active (protect 1 02, protect 2 00)")
    );
    assert_eq!(Reason::CellUnderVoltage.blocks(), Blocks::Discharge);
}

#[test]
fn rule_15_bms_under_voltage_blocks_discharge_only_and_asks_for_a_rebalance() {
    for bits in [Protect1::LOW_CELL_VOLTAGE, Protect1::LOW_TOTAL_VOLTAGE] {
        let p = PackObservation { protect1: bits, can_discharge: false, ..healthy(0) };
        let d = decide(&mut Maestro::default(), &[healthy(0), p], 100, |_| {});
        assert!(d.charge && !d.discharge && d.rebalance_needed, "{d:?}");
        assert_eq!(d.reasons, [Reason::BmsUnderVoltage { pack: 2 }]);
        assert_eq!(d.reasons[0].rule(), 15);
    }
}

#[test]
fn rule_16_bms_charge_temperature_blocks_charge_only() {
    for bits in [Protect2::HIGH_CHARGE_TEMP, Protect2::LOW_CHARGE_TEMP] {
        let p = PackObservation { protect2: bits, can_charge: false, ..healthy(0) };
        let d = decide(&mut Maestro::default(), &[healthy(0), p], 100, |_| {});
        assert!(!d.charge && d.discharge, "{d:?}");
        assert_eq!(d.reasons, [Reason::BmsChargeTemperature { pack: 2 }]);
        assert_eq!(d.reasons[0].rule(), 16);
    }
}

#[test]
fn no_pack_that_can_carry_blocks_that_direction() {
    let off = PackObservation { can_charge: false, ..healthy(0) };
    let d = decide(&mut Maestro::default(), &[off.clone(), off], 100, |_| {});
    assert!(!d.charge && d.discharge && d.reasons == [Reason::NoPackCanCharge], "{d:?}");
    let off = PackObservation { can_discharge: false, ..healthy(0) };
    let d = decide(&mut Maestro::default(), &[healthy(0), off.clone()], 100, |_| {});
    assert!(d.charge && d.discharge, "one pack can: {d:?}");
    let d = decide(&mut Maestro::default(), &[off.clone(), off], 100, |_| {});
    assert!(d.charge && !d.discharge && d.reasons == [Reason::NoPackCanDischarge], "{d:?}");
    assert_eq!(Reason::NoPackCanDischarge.code(), "no_pack_can_discharge");
}

#[test]
fn a_pack_above_its_alarm_too_long_blocks_that_direction_then_releases() {
    let mut m = Maestro::default();
    let pack = |at: u64, ma: i32| PackObservation {
        current_ma: Some(ma),
        charge_alarm_a: Some(30),
        discharge_alarm_a: Some(30),
        ..healthy(at)
    };
    // 31 A into pack 1: above its 30 A alarm; 2 s is allowed.
    for now in [0, 1000, 2000] {
        assert!(decide(&mut m, &[pack(now, 31_000), pack(now, 10_000)], now, |_| {}).charge, "at {now}");
    }
    let d = decide(&mut m, &[pack(2001, 31_000), pack(2001, 10_000)], 2001, |_| {});
    assert!(!d.charge && d.discharge, "{d:?}");
    assert_eq!(d.reasons, [Reason::PackOverCurrent { pack: 1, charging: true }]);
    assert_eq!(d.reasons[0].code(), "pack_over_current");
    // Back at its alarm: released after 10 s.
    assert!(!decide(&mut m, &[pack(3000, 30_000), pack(3000, 0)], 3000, |_| {}).charge);
    assert!(!decide(&mut m, &[pack(12_999, 0), pack(12_999, 0)], 12_999, |_| {}).charge);
    assert!(decide(&mut m, &[pack(13_000, 0), pack(13_000, 0)], 13_000, |_| {}).charge);
    // Discharging out of pack 2 blocks discharge only.
    let mut m = Maestro::default();
    decide(&mut m, &[pack(0, 0), pack(0, -40_000)], 0, |_| {});
    let d = decide(&mut m, &[pack(2500, 0), pack(2500, -40_000)], 2500, |_| {});
    assert_eq!(d.reasons, [Reason::PackOverCurrent { pack: 2, charging: false }]);
    assert!(d.charge && !d.discharge);
}

#[test]
fn rule_7_gives_a_limit_that_fell_overcurrent_for_to_be_followed() {
    let mut m = Maestro::default();
    let at = |m: &mut Maestro, now: u64, ma: i32, limit: i32| {
        decide(m, &[healthy(now)], now, |o| {
            o.current_ma = Some(ma);
            o.charge_limit_ma = Some(limit);
        })
    };
    assert!(at(&mut m, 0, 70_000, 72_000).charge);
    // The guard cut the limit to 40 A; the inverter takes a few seconds to follow.
    for now in [100, 2000, 4000] {
        assert!(at(&mut m, now, 70_000, 40_000).charge, "at {now}");
    }
    // The old limit's grace ended at 2.1 s; from the first look after it (4 s), 70 A against
    // 40 A is rule 7 after its 2 s.
    assert!(at(&mut m, 6000, 70_000, 40_000).charge);
    let d = at(&mut m, 6001, 70_000, 40_000);
    assert!(!d.charge && d.reasons.contains(&Reason::OverCurrent), "{d:?}");
}

#[test]
fn rule_7_ignores_measurement_noise_at_a_zero_limit() {
    let mut m = Maestro::default();
    for now in [0, 3000, 6000] {
        let d = decide(&mut m, &[healthy(now)], now, |o| {
            o.current_ma = Some(600);
            o.charge_limit_ma = Some(0);
        });
        assert!(!d.reasons.contains(&Reason::OverCurrent), "{d:?}");
    }
}

/// SAFETY.md §2b: a pack waiting to join blocks the direction that widens its gap to the bus;
/// an isolated one is an alarm that blocks nothing.
#[test]
fn a_pack_waiting_to_join_blocks_the_widening_direction_and_an_isolated_one_nothing() {
    use maestro_core::join::Waiting;
    let pack = PackObservation {
        cells_mv: vec![3300; 8],
        temps_dc: vec![250; 6],
        ..PackObservation::seen_at(Millis(0))
    };
    let packs = [pack.clone(), pack];
    let decide = |joining: &[Waiting]| {
        Maestro::default().decide(&Observation { packs: &packs, joining, ..Observation::at(Millis(1000)) })
    };
    let below = decide(&[Waiting::Joining { pack: 2, delta_mv: -600 }]);
    assert!(!below.charge && below.discharge, "{below:?}");
    assert_eq!(below.reasons, [Reason::PackJoining { pack: 2, delta_mv: -600 }]);
    let above = decide(&[Waiting::Joining { pack: 2, delta_mv: 450 }]);
    assert!(above.charge && !above.discharge, "{above:?}");
    let isolated = decide(&[Waiting::Isolated { pack: 2, delta_mv: Some(-600) }]);
    assert!(isolated.charge && isolated.discharge, "{isolated:?}");
    assert_eq!(isolated.reasons[0].blocks(), Blocks::Nothing);
    assert_eq!(isolated.reasons[0].code(), "pack_isolated");
    assert!(isolated.reasons[0].describe().contains("-600 mV"));
}

/// A pack the rebalance left off the bus that cannot give discharge does not hold rule 14 for its
/// low cell (discharging the others does not drain it); once it can discharge, its cell counts.
#[test]
fn a_low_cell_of_a_pack_held_off_the_bus_does_not_block_discharging() {
    let on_bus = PackObservation {
        cells_mv: vec![3300; 8],
        temps_dc: vec![250; 6],
        ..PackObservation::seen_at(Millis(0))
    };
    let off_bus = PackObservation {
        cells_mv: vec![2700, 3300, 3300, 3300, 3300, 3300, 3300, 3300],
        rebalance_locked: true,
        can_charge: false,
        can_discharge: false,
        ..on_bus.clone()
    };
    let decide = |second: &PackObservation| {
        Maestro::default().decide(&Observation {
            packs: &[on_bus.clone(), second.clone()],
            ..Observation::at(Millis(1000))
        })
    };
    let d = decide(&off_bus);
    assert!(d.discharge && !d.reasons.contains(&Reason::CellUnderVoltage), "{d:?}");
    let d = decide(&PackObservation { can_discharge: true, ..off_bus.clone() });
    assert!(!d.discharge && d.reasons.contains(&Reason::CellUnderVoltage), "{d:?}");
    let d = decide(&PackObservation { rebalance_locked: false, ..off_bus });
    assert!(!d.discharge && d.reasons.contains(&Reason::CellUnderVoltage), "{d:?}");
}
