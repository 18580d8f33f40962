//! SAFETY.md §2a: the current limits follow the packs that can carry current.

use pace_proto::{PackStatus, Protect1, Protect2, SystemState};
use proptest::prelude::*;
use translator::limits::{Direction, LimitInput, LimitSettings, Limiter, PackFlow, Table, Taper, can_carry};

fn pack(current_a: f64) -> PackFlow {
    PackFlow {
        can_charge: true,
        can_discharge: true,
        current_ma: (current_a * 1000.0) as i32,
        charge_alarm_a: Some(30),
        discharge_alarm_a: Some(30),
    }
}

fn input(packs: &[PackFlow]) -> LimitInput<'_> {
    LimitInput {
        packs,
        cell_max_mv: Some(3300),
        cell_min_mv: Some(3290),
        cell_temp_min_dc: Some(250),
        recovery: false,
        hold: false,
    }
}

fn once(packs: &[PackFlow], change: impl FnOnce(&mut LimitInput<'_>)) -> translator::limits::Limits {
    let mut i = input(packs);
    change(&mut i);
    Limiter::new(LimitSettings::default()).update(0, &i)
}

#[test]
fn the_base_is_the_weakest_counted_pack_times_their_count_times_the_derating() {
    let mut packs = [pack(0.0), pack(0.0), pack(0.0)];
    packs[1].charge_alarm_a = Some(20);
    packs[2].can_charge = false;
    packs[2].charge_alarm_a = Some(10); // not counted, so not the weakest
    let l = once(&packs, |_| {});
    assert_eq!((l.charge.packs, l.charge.a_min, l.charge.base_ma), (2, Some(20), Some(32_000)));
    assert_eq!(l.charge.limit_ma, Some(32_000));
    assert_eq!(l.discharge.base_ma, Some(72_000));
    assert_eq!(l.shares_ma, vec![(16_000, 24_000), (16_000, 24_000), (0, 24_000)]);
}

#[test]
fn no_pack_that_can_carry_gives_zero() {
    let mut packs = [pack(0.0), pack(0.0)];
    for p in &mut packs {
        p.can_discharge = false;
    }
    let l = once(&packs, |_| {});
    assert_eq!((l.discharge.packs, l.discharge.base_ma, l.discharge.limit_ma), (0, Some(0), Some(0)));
    assert_eq!(l.charge.limit_ma, Some(48_000));
}

#[test]
fn an_unread_alarm_of_a_counted_pack_leaves_the_limit_unknown() {
    let mut packs = [pack(0.0), pack(0.0)];
    packs[0].charge_alarm_a = None;
    let l = once(&packs, |_| {});
    assert_eq!(l.charge.limit_ma, None);
    assert_eq!(l.discharge.limit_ma, Some(48_000));
}

#[test]
fn the_default_tables_are_the_specs() {
    let s = LimitSettings::default();
    let check = |t: &Taper, points: &[(f64, f64)]| {
        for &(x, f) in points {
            assert!((t.at(x) - f).abs() < 1e-9, "at {x}: {} not {f}", t.at(x));
        }
    };
    check(
        &s.charge_by_cell_mv,
        &[
            (3300.0, 1.0),
            (3400.0, 1.0),
            (3425.0, 0.75),
            (3450.0, 0.5),
            (3500.0, 0.25),
            (3550.0, 0.1),
            (3700.0, 0.1),
        ],
    );
    check(
        &s.charge_by_temp_c,
        &[
            (0.0, 0.0),
            (2.0, 0.0),
            (5.0, 0.2),
            (10.0, 0.5),
            (15.0, 1.0),
            (40.0, 1.0),
            (45.0, 0.5),
            (50.0, 0.0),
            (60.0, 0.0),
        ],
    );
    check(
        &s.discharge_by_cell_mv,
        &[(2800.0, 0.2), (2900.0, 0.2), (3000.0, 0.5), (3100.0, 1.0), (3300.0, 1.0)],
    );
    check(
        &s.discharge_by_temp_c,
        &[
            (-20.0, 0.0),
            (-15.0, 0.0),
            (-10.0, 0.3),
            (0.0, 0.6),
            (10.0, 1.0),
            (45.0, 1.0),
            (50.0, 0.5),
            (55.0, 0.5),
        ],
    );
}

#[test]
fn the_lowest_factor_of_a_direction_applies_with_its_reason() {
    let packs = [pack(0.0), pack(0.0), pack(0.0)];
    // Highest cell 3500 mV (0.25), coldest cell 10 °C (0.5): charge takes 0.25.
    let l = once(&packs, |i| {
        i.cell_max_mv = Some(3500);
        i.cell_temp_min_dc = Some(100);
    });
    assert_eq!(l.charge.taper, 0.25);
    assert_eq!(l.charge.limit_ma, Some(18_000));
    let reasons: Vec<String> = l.charge.factors.iter().map(|f| f.describe(Direction::Charge)).collect();
    assert_eq!(reasons, ["highest cell 3500 mV", "coldest cell 10.0 °C"]);
    assert_eq!(l.charge.factors[0].table, Table::CellVoltage);
    // Discharge by the lowest cell (3290 mV: 1.0) and 10 °C (1.0).
    assert_eq!(l.discharge.limit_ma, Some(72_000));
    // Lowest cell 3000 mV: discharge 0.5.
    let l = once(&packs, |i| i.cell_min_mv = Some(3000));
    assert_eq!(l.discharge.limit_ma, Some(36_000));
    // Too cold to discharge at all at -15 °C; too cold to charge at 2 °C.
    let l = once(&packs, |i| i.cell_temp_min_dc = Some(-150));
    assert_eq!((l.charge.limit_ma, l.discharge.limit_ma), (Some(0), Some(0)));
}

#[test]
fn a_lower_limit_applies_at_once_and_a_higher_one_rises_at_ten_percent_of_the_base_per_second() {
    let packs = [pack(0.0), pack(0.0), pack(0.0)];
    let mut limiter = Limiter::new(LimitSettings::default());
    assert_eq!(limiter.update(0, &input(&packs)).charge.limit_ma, Some(72_000));
    let near_full = LimitInput { cell_max_mv: Some(3550), ..input(&packs) };
    assert_eq!(limiter.update(500, &near_full).charge.limit_ma, Some(7_200), "falls at once");
    // Back to 1.0: +7.2 A per second.
    let mut at = 500;
    let mut seen = Vec::new();
    for _ in 0..12 {
        at += 1000;
        seen.push(limiter.update(at, &input(&packs)).charge.limit_ma.unwrap_or(-1));
    }
    assert_eq!(&seen[..3], &[14_400, 21_600, 28_800]);
    assert_eq!(seen[8], 72_000);
    assert!(seen.iter().all(|l| *l <= 72_000));
}

#[test]
fn a_pack_above_its_guard_cuts_the_limit_to_bring_it_back() {
    // 72 A shared 36 / 18 / 18: pack 1 is at 1.33 × its guard of 27 A.
    let packs = [pack(36.0), pack(18.0), pack(18.0)];
    let mut limiter = Limiter::new(LimitSettings::default());
    let l = limiter.update(0, &input(&packs));
    let g = l.charge.guard.expect("a guard cut");
    assert_eq!((g.pack, g.current_ma, g.alarm_a), (1, 36_000, 30));
    // 72 A × 27 / 36 = 54 A, so pack 1 would carry 27 A.
    assert_eq!(l.charge.limit_ma, Some(54_000));
    assert_eq!(g.cut_ma, 54_000);
    // The inverter follows: 54 A shared 27 / 13.5 / 13.5. At the guard exactly: held, no rise.
    let packs = [pack(27.0), pack(13.5), pack(13.5)];
    let l = limiter.update(1000, &input(&packs));
    assert_eq!(l.charge.limit_ma, Some(54_000));
    // Below the guard: it rises again, at the allowed rate.
    let packs = [pack(26.0), pack(13.0), pack(13.0)];
    let l = limiter.update(2000, &input(&packs));
    assert_eq!(l.charge.guard, None);
    assert_eq!(l.charge.limit_ma, Some(61_200));
}

#[test]
fn the_guard_follows_the_current_flowing_so_a_lagging_inverter_does_not_compound_the_cut() {
    let packs = [pack(36.0), pack(18.0), pack(18.0)];
    let mut limiter = Limiter::new(LimitSettings::default());
    assert_eq!(limiter.update(0, &input(&packs)).charge.limit_ma, Some(54_000));
    // The inverter has not followed yet: the same currents again give the same cut.
    assert_eq!(limiter.update(500, &input(&packs)).charge.limit_ma, Some(54_000));
    assert_eq!(limiter.update(1000, &input(&packs)).charge.limit_ma, Some(54_000));
}

#[test]
fn the_guard_watches_the_direction_of_flow_only() {
    // Discharging 36 A out of pack 1: the discharge limit is cut, the charge limit is not.
    let packs = [pack(-36.0), pack(-18.0), pack(-18.0)];
    let l = once(&packs, |_| {});
    assert_eq!(l.charge.guard, None);
    assert_eq!(l.charge.limit_ma, Some(72_000));
    assert_eq!(l.discharge.guard.map(|g| g.pack), Some(1));
    assert_eq!(l.discharge.limit_ma, Some(54_000));
}

#[test]
fn under_voltage_protection_caps_charging_at_the_recovery_current() {
    let mut packs = [pack(0.0), pack(0.0), pack(0.0)];
    packs[0].can_charge = false;
    let l = once(&packs, |i| i.recovery = true);
    assert_eq!(l.charge.recovery_ma, Some(4_000));
    assert_eq!(l.charge.limit_ma, Some(4_000));
    assert_eq!(l.discharge.recovery_ma, None);
}

#[test]
fn the_top_hold_caps_charging_at_the_hold_current_per_pack() {
    // SAFETY.md §2b: 2 A × the packs that can take charge (two of three), discharge untouched.
    let mut packs = [pack(0.0), pack(0.0), pack(0.0)];
    packs[2].can_charge = false;
    let l = once(&packs, |i| i.hold = true);
    assert_eq!(l.charge.hold_ma, Some(4_000));
    assert_eq!(l.charge.limit_ma, Some(4_000));
    assert_eq!(l.charge.target_ma, Some(4_000));
    assert_eq!(l.discharge.hold_ma, None);
    assert_eq!(l.discharge.limit_ma, Some(72_000));
    // With a recovery cap as well, the lower one holds.
    let settings = LimitSettings { hold_charge_a: 1.0, ..LimitSettings::default() };
    let mut i = input(&packs);
    i.hold = true;
    i.recovery = true;
    let l = Limiter::new(settings).update(0, &i);
    assert_eq!(l.charge.limit_ma, Some(2_000));
}

fn status(system: SystemState) -> PackStatus {
    PackStatus {
        cell_warns: vec![],
        temp_warns: vec![],
        charge_current_warn: Default::default(),
        voltage_warn: Default::default(),
        discharge_current_warn: Default::default(),
        protect1: Protect1::empty(),
        protect2: Protect2::empty(),
        system,
        control: Default::default(),
        fault: Default::default(),
        balance: Default::default(),
        warn1: Default::default(),
        warn2: Default::default(),
        extra: vec![],
    }
}

#[test]
fn a_pack_carries_only_with_its_mosfet_on_and_no_protection_of_that_direction() {
    let both = SystemState::CHARGE_MOSFET_ON | SystemState::DISCHARGE_MOSFET_ON;
    let ok = status(both);
    assert!(can_carry(&ok, Direction::Charge) && can_carry(&ok, Direction::Discharge));
    let off = status(SystemState::DISCHARGE_MOSFET_ON);
    assert!(!can_carry(&off, Direction::Charge) && can_carry(&off, Direction::Discharge));
    // Under-voltage: discharge stops, charge goes on (rule 15).
    let uv = PackStatus { protect1: Protect1::LOW_CELL_VOLTAGE, ..status(both) };
    assert!(can_carry(&uv, Direction::Charge) && !can_carry(&uv, Direction::Discharge));
    // Charge temperature: charge stops (rule 16).
    let cold = PackStatus { protect2: Protect2::LOW_CHARGE_TEMP, ..status(both) };
    assert!(!can_carry(&cold, Direction::Charge) && can_carry(&cold, Direction::Discharge));
    // Over-voltage locks both on a Pace BMS.
    let ov = PackStatus { protect1: Protect1::HIGH_CELL_VOLTAGE, ..status(both) };
    assert!(!can_carry(&ov, Direction::Charge) && !can_carry(&ov, Direction::Discharge));
    // "Fully" is not a protection.
    let full = PackStatus { protect2: Protect2::FULLY, ..status(both) };
    assert!(can_carry(&full, Direction::Charge));
}

#[test]
fn bad_taper_tables_are_refused_naming_the_problem() {
    assert!(Taper::new(vec![]).unwrap_err().contains("at least one point"));
    assert!(Taper::new(vec![(3400.0, 1.0), (3400.0, 0.5)]).unwrap_err().contains("must rise"));
    assert!(Taper::new(vec![(3400.0, 1.5)]).unwrap_err().contains("from 0 to 1"));
}

fn flow() -> impl Strategy<Value = PackFlow> {
    (any::<bool>(), any::<bool>(), -60_000i32..60_000, 1u16..200, 1u16..200).prop_map(|(c, d, i, ca, da)| {
        PackFlow {
            can_charge: c,
            can_discharge: d,
            current_ma: i,
            charge_alarm_a: Some(ca),
            discharge_alarm_a: Some(da),
        }
    })
}

proptest! {
    /// §6 v2: the limit never exceeds n × a_min × derating; a pack that cannot carry never counts;
    /// the limit never rises faster than allowed.
    #[test]
    fn the_limits_stay_inside_the_envelope(
        steps in prop::collection::vec(
            (prop::collection::vec(flow(), 1..6), 2800u16..3700, 2800u16..3700, -200i32..600, any::<bool>(), 1u64..5000),
            1..40,
        )
    ) {
        let mut limiter = Limiter::new(LimitSettings::default());
        let mut now = 0;
        let mut last: Option<(i32, i32)> = None;
        for (packs, hi, lo, t, recovery, dt) in steps {
            now += dt;
            let i = LimitInput { packs: &packs, cell_max_mv: Some(hi.max(lo)), cell_min_mv: Some(lo.min(hi)), cell_temp_min_dc: Some(t), recovery, hold: false };
            let l = limiter.update(now, &i);
            for d in [Direction::Charge, Direction::Discharge] {
                let counted: Vec<&PackFlow> = packs.iter().filter(|p| match d { Direction::Charge => p.can_charge, Direction::Discharge => p.can_discharge }).collect();
                let a_min = counted.iter().filter_map(|p| match d { Direction::Charge => p.charge_alarm_a, Direction::Discharge => p.discharge_alarm_a }).min().unwrap_or(0);
                let envelope = 0.8 * counted.len() as f64 * f64::from(a_min) * 1000.0;
                let dl = l.get(d);
                let limit = dl.limit_ma.unwrap_or(0);
                prop_assert!(f64::from(limit) <= envelope + 1.0, "{d:?} {limit} over {envelope}");
                prop_assert_eq!(dl.packs, counted.len());
                if let Some((c, dis)) = last {
                    let before = if d == Direction::Charge { c } else { dis };
                    let allowed = 0.10 * f64::from(dl.base_ma.unwrap_or(0)) * dt as f64 / 1000.0;
                    prop_assert!(f64::from(limit - before) <= allowed + 1.0, "{d:?} rose {before} -> {limit}, allowed {allowed}");
                }
            }
            for (k, p) in packs.iter().enumerate() {
                if !p.can_charge { prop_assert_eq!(l.shares_ma[k].0, 0); }
                if !p.can_discharge { prop_assert_eq!(l.shares_ma[k].1, 0); }
            }
            last = Some((l.charge.limit_ma.unwrap_or(0), l.discharge.limit_ma.unwrap_or(0)));
        }
    }
}

proptest! {
    /// A protecting pack never counts: with its MOSFET off, or any protection or fault of that
    /// direction (bits from PROTOCOLS.md, restated here), it cannot carry that way.
    #[test]
    fn a_protecting_pack_never_counts(p1 in any::<u8>(), p2 in any::<u8>(), system in any::<u8>(), fault in any::<u8>()) {
        let s = PackStatus {
            protect1: Protect1::from_bits_retain(p1),
            protect2: Protect2::from_bits_retain(p2),
            system: SystemState::from_bits_retain(system),
            fault: pace_proto::FaultState::from_bits_retain(fault),
            ..status(SystemState::empty())
        };
        // Faults that stop a pack either way: NTC, cell, sampling.
        let common_fault = fault & 0b0011_0100 != 0;
        // Charge: MOSFET b1; over-voltage b0 b2, charge OC b4, short b6; charge temperatures b0 b2,
        // MOSFET and environment b4 b5 b6; charge MOSFET fault b0.
        let charge_blocked = system & 0x02 == 0 || p1 & 0b0101_0101 != 0 || p2 & 0b0111_0101 != 0
            || fault & 0x01 != 0 || common_fault;
        // Discharge: MOSFET b2; over- and under-voltage b0-b3, discharge OC b5, short b6; discharge
        // temperatures b1 b3, MOSFET and environment b4 b5 b6; discharge MOSFET fault b1.
        let discharge_blocked = system & 0x04 == 0 || p1 & 0b0110_1111 != 0 || p2 & 0b0111_1010 != 0
            || fault & 0x02 != 0 || common_fault;
        prop_assert_eq!(can_carry(&s, Direction::Charge), !charge_blocked);
        prop_assert_eq!(can_carry(&s, Direction::Discharge), !discharge_blocked);
    }
}

#[test]
fn the_target_is_where_a_rising_limit_goes() {
    let packs = [pack(0.0), pack(0.0), pack(0.0)];
    let mut limiter = Limiter::new(LimitSettings::default());
    limiter.update(0, &LimitInput { cell_max_mv: Some(3550), ..input(&packs) });
    let l = limiter.update(1000, &input(&packs));
    assert_eq!((l.charge.limit_ma, l.charge.target_ma), (Some(14_400), Some(72_000)));
}

#[test]
fn current_circulating_between_packs_is_cut_by_the_pack_s_excess() {
    // Pack 1 was just unlocked and charges from pack 2 at 6.4 A while the inverter draws 27.9 A:
    // pack 2 gives 34.3 A. Scaling 27.9 A by 27 / 34.3 would leave pack 2 at 28.4 A; taking its
    // 7.3 A excess off the 27.9 A brings it to its 27 A guard.
    let packs = [pack(6.4), pack(-34.3)];
    let l = once(&packs, |_| {});
    let g = l.discharge.guard.expect("a guard cut");
    assert_eq!((g.pack, g.cut_ma), (2, 20_600));
    assert_eq!(l.discharge.limit_ma, Some(20_600));
}
