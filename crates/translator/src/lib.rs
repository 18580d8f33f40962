//! What the inverter is told about the stack: the aggregate of SAFETY.md §2, from the packs' last
//! 0x42 replies and limit reads and the coulomb counter. Pure: no I/O, no clock.
//!
//! ```text
//!  packs (0x42, limits D5 D7 D9 DB D3) ─┐
//!                                        ├─ aggregate() ─► SystemView: V, I, SOC, cycles, SOH,
//!  coil (input registers) ───────────────┘                cell/temperature extremes with ids,
//!                                                          charge/discharge voltage and current limits
//! ```
//!
//! ```
//! use translator::{aggregate, Input, PackInput, PackLimits, Settings};
//!
//! let wire = b"~25014600F07A0001100CC70CC80CC70CC70CC70CC50CC60CC70CC70CC60CC70CC60CC60CC70CC60CC7060B9B0B990B990B990BB30BBCFF1FCCCD12D303286A008C2710E1E4\r";
//! let Ok(pace_proto::Response::Analog(a)) = pace_proto::Reply::parse(0x42, wire).unwrap().outcome else { panic!() };
//! let packs = [PackInput { analog: Some(&a.packs[0]), limits: PackLimits::default() }];
//! let view = aggregate(&Input { packs: &packs, coil: None, rebalance_active: false, charge_voltage_override: None, limits: None }, &Settings::default()).unwrap();
//! assert_eq!(view.voltage.raw(), 52429);
//! assert_eq!(view.current_ma, -2250);
//! assert_eq!(view.cell_min, (pace_proto::units::Millivolts::from_raw(3269), 0x0106)); // pack 1, cell 6
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod can;
pub mod limits;
pub mod respond;

use pace_proto::PackAnalog;
use units::{DeciKelvin, Millivolts, Pace, Percent};

/// Where the system SOC comes from when no counter is configured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PackSoc {
    /// The lowest pack SOC (the safe default).
    #[default]
    Min,
    /// The mean pack SOC.
    Mean,
}

/// The aggregate's settings (SAFETY.md §2 defaults).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// Regular charge voltage limit.
    pub charge_voltage: Millivolts,
    /// Charge voltage limit during a rebalance.
    pub rebalance_charge_voltage: Millivolts,
    /// An operator override is accepted only above this.
    pub override_min: Millivolts,
    /// SOC source without a counter.
    pub pack_soc: PackSoc,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            charge_voltage: Millivolts::from_raw(27350),
            rebalance_charge_voltage: Millivolts::from_raw(27950),
            override_min: Millivolts::from_raw(27000),
            pack_soc: PackSoc::Min,
        }
    }
}

/// A pack's limits, read from its configuration (absent until read).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PackLimits {
    /// D5 pack over-voltage alarm.
    pub pack_ov_alarm: Option<Millivolts>,
    /// D7 pack under-voltage alarm.
    pub pack_uv_alarm: Option<Millivolts>,
    /// D7 pack under-voltage protection.
    pub pack_uv_protect: Option<Millivolts>,
    /// D3 cell under-voltage protection.
    pub cell_uv_protect: Option<Millivolts>,
    /// D9 charge over-current alarm, A.
    pub charge_oc_alarm_a: Option<u16>,
    /// DB discharge over-current alarm, A (magnitude; it reads back negative).
    pub discharge_oc_alarm_a: Option<u16>,
}

/// One pack's data.
#[derive(Clone, Copy, Debug)]
pub struct PackInput<'a> {
    /// The last 0x42 block, if any.
    pub analog: Option<&'a PackAnalog>,
    /// Its limits.
    pub limits: PackLimits,
}

/// Everything the aggregate is made from.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    /// One entry per pack, in order (pack 1 first).
    pub packs: &'a [PackInput<'a>],
    /// The counter's last reading, when one is configured and read.
    pub coil: Option<&'a coil_modbus::Reading>,
    /// A rebalance is running (the charge voltage limit is raised).
    pub rebalance_active: bool,
    /// The operator's charge voltage override, if any.
    pub charge_voltage_override: Option<Millivolts>,
    /// The current limits of §2a ([`limits::Limiter::update`]); `None` leaves them unknown.
    pub limits: Option<&'a limits::Limits>,
}

/// Average, maximum and minimum of one kind of temperature, with ids `(pack << 8) | sensor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TempStats {
    /// Average.
    pub average: DeciKelvin<Pace>,
    /// Maximum and its id.
    pub max: (DeciKelvin<Pace>, u16),
    /// Minimum and its id.
    pub min: (DeciKelvin<Pace>, u16),
}

/// The stack as one battery.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SystemView {
    /// Mean of the pack voltages.
    pub voltage: Millivolts,
    /// Sum of the pack currents, mA (charge positive).
    pub current_ma: i32,
    /// Counter SOC, or the packs' (min or mean).
    pub soc: Percent,
    /// Mean cycles.
    pub cycles_avg: u16,
    /// Most cycles.
    pub cycles_max: u16,
    /// Mean SOH (full/design capped at 100 %).
    pub soh_avg: Percent,
    /// Lowest SOH.
    pub soh_min: Percent,
    /// Highest cell and its id `(pack << 8) | cell`, 1-based.
    pub cell_max: (Millivolts, u16),
    /// Lowest cell and its id.
    pub cell_min: (Millivolts, u16),
    /// Cell temperatures (Pace sensors 1-4).
    pub cell_temp: Option<TempStats>,
    /// MOSFET temperatures (Pace sensor 5).
    pub mosfet_temp: Option<TempStats>,
    /// BMS/environment temperatures (Pace sensor 6).
    pub bms_temp: Option<TempStats>,
    /// Charge voltage limit.
    pub charge_voltage_limit: Millivolts,
    /// Discharge voltage limit: the highest pack under-voltage alarm.
    pub discharge_voltage_limit: Option<Millivolts>,
    /// Maximum charge current, mA: the §2a limit.
    pub max_charge_ma: Option<i32>,
    /// Maximum discharge current, mA (positive): the §2a limit.
    pub max_discharge_ma: Option<i32>,
    /// Packs with analog data.
    pub packs_reporting: usize,
}

fn temp_stats(samples: impl Iterator<Item = (DeciKelvin<Pace>, u16)>) -> Option<TempStats> {
    let mut n = 0i64;
    let mut sum = 0i64;
    let mut max: Option<(DeciKelvin<Pace>, u16)> = None;
    let mut min: Option<(DeciKelvin<Pace>, u16)> = None;
    for (t, id) in samples {
        n += 1;
        sum += i64::from(t.raw());
        if max.is_none_or(|(m, _)| t > m) {
            max = Some((t, id));
        }
        if min.is_none_or(|(m, _)| t < m) {
            min = Some((t, id));
        }
    }
    let average = DeciKelvin::from_raw(u16::try_from((sum + n / 2) / n.max(1)).ok()?);
    Some(TempStats { average, max: max?, min: min? })
}

fn id(pack: usize, item: usize) -> u16 {
    (((pack + 1) as u16) << 8) | ((item + 1) as u16 & 0xFF)
}

/// The charge voltage limit: regular, raised during a rebalance, or the operator's override when it
/// lies above `override_min` and below the lowest pack over-voltage alarm. The override is
/// suspended while a rebalance is active (SAFETY.md §2, v2): one below the rebalance threshold
/// would keep the run from ever reaching it.
pub fn charge_voltage_limit(input: &Input<'_>, settings: &Settings) -> Millivolts {
    let lowest_ov = input.packs.iter().filter_map(|p| p.limits.pack_ov_alarm).min();
    if let Some(o) = input.charge_voltage_override.filter(|_| !input.rebalance_active) {
        if o > settings.override_min && lowest_ov.is_some_and(|ov| o < ov) {
            return o;
        }
    }
    if input.rebalance_active { settings.rebalance_charge_voltage } else { settings.charge_voltage }
}

/// The aggregate; `None` until at least one pack has reported analog data.
pub fn aggregate(input: &Input<'_>, settings: &Settings) -> Option<SystemView> {
    let reporting: Vec<(usize, &PackAnalog)> =
        input.packs.iter().enumerate().filter_map(|(k, p)| p.analog.map(|a| (k, a))).collect();
    if reporting.is_empty() {
        return None;
    }
    let n = reporting.len() as u64;
    let voltage = reporting.iter().map(|(_, a)| u64::from(a.voltage.raw())).sum::<u64>() / n;
    let current_ma: i32 = reporting.iter().map(|(_, a)| a.current.to_milliamps()).sum();
    let pack_socs: Vec<u8> = reporting.iter().map(|(_, a)| a.soc().map_or(0, Percent::raw)).collect();
    let soc = match (input.coil, settings.pack_soc) {
        (Some(c), _) => Percent::from_raw(c.soc_pct.min(100) as u8),
        (None, PackSoc::Min) => Percent::from_raw(pack_socs.iter().copied().min().unwrap_or(0)),
        (None, PackSoc::Mean) => {
            Percent::from_raw((pack_socs.iter().map(|s| u32::from(*s)).sum::<u32>() / n as u32) as u8)
        }
    };
    let cycles: Vec<u16> = reporting.iter().map(|(_, a)| a.cycles).collect();
    let sohs: Vec<u8> = reporting.iter().map(|(_, a)| a.soh().map_or(100, Percent::raw)).collect();
    let cells =
        reporting.iter().flat_map(|(k, a)| a.cells.iter().enumerate().map(move |(c, v)| (*v, id(*k, c))));
    let cell_max = cells
        .clone()
        .fold(None, |m: Option<(Millivolts, u16)>, x| Some(m.map_or(x, |m| if x.0 > m.0 { x } else { m })))?;
    let cell_min = cells
        .fold(None, |m: Option<(Millivolts, u16)>, x| Some(m.map_or(x, |m| if x.0 < m.0 { x } else { m })))?;
    // Pace order: cell sensors 1-4, MOSFET, environment.
    let sensors = |range: std::ops::Range<usize>| {
        temp_stats(reporting.iter().flat_map(move |(k, a)| {
            let r = range.start.min(a.temps.len())..range.end.min(a.temps.len());
            a.temps[r.clone()].iter().enumerate().map(move |(s, t)| (*t, id(*k, r.start + s)))
        }))
    };
    Some(SystemView {
        voltage: Millivolts::from_raw(voltage as u16),
        current_ma,
        soc,
        cycles_avg: (cycles.iter().map(|c| u64::from(*c)).sum::<u64>() / n) as u16,
        cycles_max: cycles.iter().copied().max().unwrap_or(0),
        soh_avg: Percent::from_raw((sohs.iter().map(|s| u32::from(*s)).sum::<u32>() / n as u32) as u8),
        soh_min: Percent::from_raw(sohs.iter().copied().min().unwrap_or(100)),
        cell_max,
        cell_min,
        cell_temp: sensors(0..4),
        mosfet_temp: sensors(4..5),
        bms_temp: sensors(5..6),
        charge_voltage_limit: charge_voltage_limit(input, settings),
        discharge_voltage_limit: input.packs.iter().filter_map(|p| p.limits.pack_uv_alarm).max(),
        max_charge_ma: input.limits.and_then(|l| l.charge.limit_ma),
        max_discharge_ma: input.limits.and_then(|l| l.discharge.limit_ma),
        packs_reporting: reporting.len(),
    })
}
