//! Every row of SAFETY.md §2.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use pace_proto::PackAnalog;
use translator::*;
use units::{CentiAmpHours, CentiAmps, DeciKelvin, Millivolts, Pace};

fn pack(
    cells: &[u16],
    temps_c: [i32; 6],
    current_ca: i16,
    rem: u16,
    full: u16,
    design: u16,
    cycles: u16,
) -> PackAnalog {
    PackAnalog {
        cells: cells.iter().map(|v| Millivolts::from_raw(*v)).collect(),
        temps: temps_c.iter().map(|c| DeciKelvin::<Pace>::from_deci_celsius(c * 10)).collect(),
        current: CentiAmps::from_raw(current_ca),
        voltage: Millivolts::from_raw(cells.iter().sum()),
        remaining: CentiAmpHours::from_raw(rem),
        user_defined: 3,
        full: CentiAmpHours::from_raw(full),
        cycles,
        design: CentiAmpHours::from_raw(design),
        extra: vec![],
    }
}

fn limits(ov: u16, uv: u16, coc: u16, doc: u16) -> PackLimits {
    PackLimits {
        pack_ov_alarm: Some(Millivolts::from_raw(ov)),
        pack_uv_alarm: Some(Millivolts::from_raw(uv)),
        pack_uv_protect: Some(Millivolts::from_raw(uv - 2400)),
        cell_uv_protect: Some(Millivolts::from_raw(2500)),
        charge_oc_alarm_a: Some(coc),
        discharge_oc_alarm_a: Some(doc),
    }
}

fn two_packs() -> [PackAnalog; 2] {
    [
        pack(
            &[3300, 3310, 3290, 3305, 3300, 3302, 3301, 3299],
            [20, 21, 22, 23, 30, 25],
            1250,
            1000,
            2000,
            2000,
            10,
        ),
        pack(
            &[3320, 3280, 3300, 3300, 3300, 3300, 3300, 3345],
            [19, 24, 22, 22, 35, 18],
            -250,
            1800,
            1900,
            2000,
            30,
        ),
    ]
}

fn input<'a>(packs: &'a [PackInput<'a>]) -> Input<'a> {
    Input { packs, coil: None, rebalance_active: false, charge_voltage_override: None, limits: None }
}

#[test]
fn voltage_current_cycles_soh_and_extremes() {
    let a = two_packs();
    let packs = [
        PackInput { analog: Some(&a[0]), limits: limits(28800, 22400, 30, 30) },
        PackInput { analog: Some(&a[1]), limits: limits(28600, 22800, 25, 35) },
    ];
    let v = aggregate(&input(&packs), &Settings::default()).unwrap();
    assert_eq!(v.voltage.raw(), (26407 + 26445) / 2);
    assert_eq!(v.current_ma, 12500 - 2500);
    assert_eq!((v.cycles_avg, v.cycles_max), (20, 30));
    assert_eq!((v.soh_avg.raw(), v.soh_min.raw()), (97, 95));
    assert_eq!(v.cell_max, (Millivolts::from_raw(3345), 0x0208));
    assert_eq!(v.cell_min, (Millivolts::from_raw(3280), 0x0202));
    let cell = v.cell_temp.unwrap();
    assert_eq!((cell.max.0.to_deci_celsius(), cell.max.1), (240, 0x0202));
    assert_eq!((cell.min.0.to_deci_celsius(), cell.min.1), (190, 0x0201));
    assert_eq!(cell.average.to_deci_celsius(), 216); // (20+21+22+23+19+24+22+22)/8 = 21.6
    let mosfet = v.mosfet_temp.unwrap();
    assert_eq!((mosfet.max.0.to_deci_celsius(), mosfet.max.1), (350, 0x0205));
    let bms = v.bms_temp.unwrap();
    assert_eq!((bms.min.0.to_deci_celsius(), bms.min.1), (180, 0x0206));
    // Discharge voltage limit: the highest pack under-voltage alarm; no current limits without §2a's.
    assert_eq!(v.discharge_voltage_limit, Some(Millivolts::from_raw(22800)));
    assert_eq!((v.max_charge_ma, v.max_discharge_ma), (None, None));
    assert_eq!(v.packs_reporting, 2);
}

#[test]
fn soc_from_the_coil_else_min_or_mean_pack() {
    let a = two_packs();
    let packs = [
        PackInput { analog: Some(&a[0]), limits: PackLimits::default() },
        PackInput { analog: Some(&a[1]), limits: PackLimits::default() },
    ];
    // Pack SOCs: 1000/2000 = 50 %, 1800/1900 = 94 %.
    let v = aggregate(&input(&packs), &Settings::default()).unwrap();
    assert_eq!(v.soc.raw(), 50);
    let v = aggregate(&input(&packs), &Settings { pack_soc: PackSoc::Mean, ..Settings::default() }).unwrap();
    assert_eq!(v.soc.raw(), 72);
    let reading = coil_modbus::Reading::from_registers(&[63, 20, 2650, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let v = aggregate(&Input { coil: Some(&reading), ..input(&packs) }, &Settings::default()).unwrap();
    assert_eq!(v.soc.raw(), 63);
}

#[test]
fn charge_voltage_limit_regular_rebalance_and_override() {
    let a = two_packs();
    let packs = [
        PackInput { analog: Some(&a[0]), limits: limits(28800, 22400, 30, 30) },
        PackInput { analog: Some(&a[1]), limits: limits(28600, 22800, 25, 35) },
    ];
    let s = Settings::default();
    let limit = |rebalance: bool, o: Option<u16>| {
        let i = Input {
            rebalance_active: rebalance,
            charge_voltage_override: o.map(Millivolts::from_raw),
            ..input(&packs)
        };
        aggregate(&i, &s).unwrap().charge_voltage_limit.raw()
    };
    assert_eq!(limit(false, None), 27350);
    assert_eq!(limit(true, None), 27950);
    assert_eq!(limit(false, Some(27500)), 27500);
    // Rejected: not above 27.00 V, or not below the lowest pack over-voltage alarm (28.60 V).
    assert_eq!(limit(false, Some(27000)), 27350);
    assert_eq!(limit(false, Some(28600)), 27350);
    assert_eq!(limit(true, Some(26000)), 27950);
    // v2: an accepted override is suspended while a rebalance is active.
    assert_eq!(limit(true, Some(27500)), 27950);
}

#[test]
fn the_current_limits_are_the_limiters() {
    let a = two_packs();
    let packs = [
        PackInput { analog: Some(&a[0]), limits: limits(28800, 22400, 30, 30) },
        PackInput { analog: Some(&a[1]), limits: limits(28600, 22800, 25, 35) },
    ];
    let flow = |c, d| translator::limits::PackFlow {
        can_charge: true,
        can_discharge: true,
        current_ma: 0,
        charge_alarm_a: Some(c),
        discharge_alarm_a: Some(d),
    };
    let flows = [flow(30, 30), flow(25, 35)];
    let l = translator::limits::Limiter::new(Default::default()).update(
        0,
        &translator::limits::LimitInput {
            packs: &flows,
            cell_max_mv: Some(3345),
            cell_min_mv: Some(3280),
            cell_temp_min_dc: Some(190),
            recovery: false,
            hold: false,
        },
    );
    let v = aggregate(&Input { limits: Some(&l), ..input(&packs) }, &Settings::default()).unwrap();
    // 0.8 × 2 × the weakest: 25 A charge, 30 A discharge.
    assert_eq!((v.max_charge_ma, v.max_discharge_ma), (Some(40_000), Some(48_000)));
}

#[test]
fn missing_data_and_limits() {
    let a = two_packs();
    assert!(
        aggregate(&input(&[PackInput { analog: None, limits: PackLimits::default() }]), &Settings::default())
            .is_none()
    );
    let packs = [
        PackInput { analog: Some(&a[0]), limits: limits(28800, 22400, 30, 30) },
        PackInput { analog: None, limits: PackLimits::default() },
    ];
    let v = aggregate(&input(&packs), &Settings::default()).unwrap();
    assert_eq!(v.packs_reporting, 1);
    assert_eq!(v.voltage.raw(), 26407);
}
