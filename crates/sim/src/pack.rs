//! One pack: eight cells in series and the Pace BMS that watches them and answers Pace v25.

use std::collections::HashMap;

use pace_proto::*;
use units::{CentiAmpHours, CentiAmps, DeciKelvin, Millivolts, Pace, Percent};

use crate::cell::Cell;

/// Currents below this are not counted by the BMS (the original's observation).
pub const DEAD_BAND_A: f64 = 0.5;
/// Current a balancing cell is bled with, A.
pub const BALANCE_A: f64 = 0.12;
/// Seconds an over-current protection stays before it releases on its own.
const OVER_CURRENT_RELEASE_S: f64 = 30.0;
/// One step of a current protection's `delay` byte, s: PbmsTools shows it in 100 ms steps (the
/// capture's `0A` is 1000 ms), as `pace_proto::CurrentProtection` documents.
pub const CURRENT_DELAY_STEP_S: f64 = 0.1;

/// Rating of each pack's external fuse, A.
///
/// The fuse is modelled by an I²t-style heat integral `E` (A²s):
///
/// - while |I| > 30 A it heats: `E += (I² − 30²)·dt`;
/// - while |I| ≤ 30 A it cools ten times slower: `E −= (30² − I²)·dt·0.1`, never below 0;
/// - it blows when `E ≥ 30² × 20 s` = 18 000 A²s ([`FUSE_BLOW_A2S`]).
///
/// From cold, a steady current therefore blows it after `18 000 / (I² − 900)` s: 35 A after about
/// 55 s, 40 A after 26 s, 60 A after 6.7 s, 72 A (a 3-pack stack's 0.8 × 3 × 30 A on one pack)
/// after 4.2 s; 30 A and less never blow it. A blown fuse disconnects the pack from the busbar
/// until it is replaced ([`Pack::replace_fuse`], the `replace-fuse pack N` command); the BMS sits
/// on the cell side, so it still answers and measures 0 A.
pub const FUSE_RATED_A: f64 = 30.0;
/// The heat integral at which the fuse blows: 30² A² for 20 s, A²s.
pub const FUSE_BLOW_A2S: f64 = FUSE_RATED_A * FUSE_RATED_A * 20.0;
/// How much slower the fuse cools below its rating than it heats above it.
pub const FUSE_COOLING: f64 = 0.1;

/// A fault the simulator can inject into a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// Cell 1 reads 0.45 V high: cell over-voltage protection.
    CellOv,
    /// Cell 1 reads 0.9 V low: cell under-voltage protection.
    CellUv,
    /// Cell sensors read 40 °C hot.
    OverTemp,
    /// Cell sensors read 45 °C cold (below both under-temperature protections).
    UnderTemp,
    /// Discharge over-current protection.
    OverCurrent,
    /// Short-circuit protection.
    ShortCircuit,
    /// Both MOSFETs report a fault.
    MosfetFault,
    /// A cell fault.
    CellFault,
}

impl FaultKind {
    /// Every kind with its command name.
    pub const ALL: &'static [(FaultKind, &'static str)] = &[
        (Self::CellOv, "cell-ov"),
        (Self::CellUv, "cell-uv"),
        (Self::OverTemp, "overtemp"),
        (Self::UnderTemp, "undertemp"),
        (Self::OverCurrent, "overcurrent"),
        (Self::ShortCircuit, "short-circuit"),
        (Self::MosfetFault, "mosfet-fault"),
        (Self::CellFault, "cell-fault"),
    ];

    /// The kind named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(k, _)| *k)
    }
}

/// One pack and its BMS.
#[derive(Clone, Debug)]
pub struct Pack {
    /// Pack number, 1-based.
    pub number: usize,
    /// The DIP-switch address it answers.
    pub adr: u8,
    /// The cells, in series.
    pub cells: Vec<Cell>,
    /// Busbar, fuse and MOSFET resistance outside the cells, Ω.
    pub extra_resistance: f64,
    /// The current through the pack in the last step, A (charge positive).
    pub current_a: f64,
    /// MOSFET temperature, °C.
    pub mosfet_temp_c: f64,
    /// Environment (board) temperature, °C.
    pub env_temp_c: f64,
    /// The BMS's stored configuration blocks.
    pub configs: HashMap<ConfigKind, Config>,
    /// What the BMS believes is left, mAh (counted with its dead band).
    pub counted_mah: f64,
    /// The BMS's full capacity, mAh.
    pub full_mah: f64,
    /// Design capacity, mAh.
    pub design_mah: f64,
    /// Cycles counted.
    pub cycles: u16,
    cycle_ah: f64,
    /// Protect state 1.
    pub protect1: Protect1,
    /// Protect state 2.
    pub protect2: Protect2,
    /// Fault state.
    pub fault: FaultState,
    /// Control state (switches and commanded MOSFETs).
    pub control: ControlState,
    /// Cells being balanced: bit n = cell n + 1.
    pub balancing: u16,
    oc_charge_s: f64,
    oc_discharge_s: f64,
    /// Continuous time above the charge / discharge over-current protect level, s.
    oc_charge_over_s: f64,
    oc_discharge_over_s: f64,
    /// Over-current protection trips (the flag going from clear to set, an injected fault
    /// included) since the start: charge.
    pub charge_oc_trips: u32,
    /// Over-current protection trips since the start: discharge.
    pub discharge_oc_trips: u32,
    /// Heat integral of the external fuse, A²s (see [`FUSE_RATED_A`]).
    fuse_heat_a2s: f64,
    fuse_blown: bool,
    /// Times the external fuse blew since the start.
    pub fuse_blows: u32,
    /// Over-voltage protection trips (protect 1 bit 0 or 2 going from clear to set) since the
    /// start.
    pub ov_trips: u32,
    /// The largest current the pack carried since the start, A (magnitude).
    pub worst_current_a: f64,
    /// Injected faults.
    pub faults: Vec<FaultKind>,
    /// Not answering at all.
    pub silent: bool,
    /// Noise on the line.
    pub garbage: bool,
}

/// One over-current protection for a step of `dt` seconds: `over` (current above the protect
/// level) for `delay` seconds without a break, or `at_once`, sets `bit`; once set, it releases
/// [`OVER_CURRENT_RELEASE_S`] after the current has come down. `timers` are the time above the
/// level and the time since it came down. Returns true when the protection trips in this step.
fn over_current(
    flags: &mut Protect1,
    bit: Protect1,
    over: bool,
    at_once: bool,
    delay: f64,
    dt: f64,
    timers: (&mut f64, &mut f64),
) -> bool {
    let (above_s, released_s) = timers;
    *above_s = if over { *above_s + dt } else { 0.0 };
    let was = flags.contains(bit);
    if at_once || (over && *above_s + 1e-9 >= delay) {
        flags.insert(bit);
        *released_s = 0.0;
    } else if was && !over {
        *released_s += dt;
        if *released_s >= OVER_CURRENT_RELEASE_S {
            flags.remove(bit);
        }
    }
    !was && flags.contains(bit)
}

fn c_to_k(c: f64) -> DeciKelvin<Pace> {
    DeciKelvin::from_deci_celsius((c * 10.0).round() as i32)
}

fn default_configs(cells: usize) -> HashMap<ConfigKind, Config> {
    let n = cells as u16;
    let mv = Millivolts::from_raw;
    let v = |alarm, protect, release| VoltageProtection {
        lead: 1,
        alarm: mv(alarm),
        protect: mv(protect),
        release: mv(release),
        delay: 10,
    };
    let t = |a: i32, p: i32, r: i32| TempThresholds {
        alarm: DeciKelvin::from_deci_celsius(a * 10),
        protect: DeciKelvin::from_deci_celsius(p * 10),
        release: DeciKelvin::from_deci_celsius(r * 10),
    };
    let list = [
        Config::CellOv(v(3600, 3700, 3380)),
        Config::CellUv(v(2800, 2500, 2900)),
        Config::PackOv(v(3600 * n, 3700 * n, 3375 * n)),
        Config::PackUv(v(2800 * n, 2500 * n, 2900 * n)),
        Config::ChargeOc(CurrentProtection { lead: 1, alarm_a: 30, protect_a: 35, delay: 10 }),
        Config::DischargeOc1(CurrentProtection { lead: 1, alarm_a: 30, protect_a: 35, delay: 10 }),
        Config::DischargeOc2(DischargeOc2 { lead: 0, protect_a: 60, delay: 4, extra: vec![0, 60, 4] }),
        Config::ShortCircuit(ShortCircuit { delay: 12 }),
        Config::Balancing(Balancing { threshold: mv(3400), delta: mv(30) }),
        Config::Sleep(Sleep { cell: mv(3100), lead: 0, minutes: 5 }),
        Config::FullCharge(FullCharge {
            voltage: mv(3500 * n),
            current_ma: 2000,
            low_soc: Percent::from_raw(5),
        }),
        Config::OverTemp(ChargeDischargeTemps { lead: 1, charge: t(51, 55, 50), discharge: t(56, 60, 55) }),
        Config::UnderTemp(ChargeDischargeTemps { lead: 1, charge: t(0, -5, 0), discharge: t(-15, -20, -15) }),
        Config::MosfetTemp(MosfetTemp { lead: 1, over: t(90, 110, 85) }),
        Config::EnvironmentTemp(EnvironmentTemps { lead: 1, under: t(-20, -25, -20), over: t(65, 70, 65) }),
        Config::ChargeLimiter(ChargeLimiter { lead: 0, current_a: 10 }),
        Config::Protocols(Protocols { can: 0x13, rs485: 0x14, mode: 0 }),
    ];
    list.into_iter().map(|c| (c.kind(), c)).collect()
}

impl Pack {
    /// A pack of `cells` (nominal `design_ah`) with a BMS at `adr`.
    pub fn new(
        number: usize,
        adr: u8,
        cells: Vec<Cell>,
        design_ah: f64,
        extra_resistance: f64,
        ambient_c: f64,
    ) -> Self {
        let capacity_ah = cells.iter().map(|c| c.capacity_ah).fold(f64::INFINITY, f64::min);
        let soc = cells.iter().map(|c| c.soc).sum::<f64>() / cells.len().max(1) as f64;
        let n = cells.len();
        Self {
            number,
            adr,
            cells,
            extra_resistance,
            current_a: 0.0,
            mosfet_temp_c: ambient_c,
            env_temp_c: ambient_c,
            configs: default_configs(n),
            counted_mah: soc * capacity_ah * 1000.0,
            full_mah: capacity_ah * 1000.0,
            design_mah: design_ah * 1000.0,
            cycles: 12,
            cycle_ah: 0.0,
            protect1: Protect1::empty(),
            protect2: Protect2::empty(),
            fault: FaultState::empty(),
            control: ControlState::BUZZER | ControlState::LED_ALARM,
            balancing: 0,
            oc_charge_s: 0.0,
            oc_discharge_s: 0.0,
            oc_charge_over_s: 0.0,
            oc_discharge_over_s: 0.0,
            charge_oc_trips: 0,
            discharge_oc_trips: 0,
            fuse_heat_a2s: 0.0,
            fuse_blown: false,
            fuse_blows: 0,
            ov_trips: 0,
            worst_current_a: 0.0,
            faults: Vec::new(),
            silent: false,
            garbage: false,
        }
    }

    fn voltage(&self, kind: ConfigKind) -> VoltageProtection {
        match self.configs.get(&kind) {
            Some(Config::CellOv(v) | Config::CellUv(v) | Config::PackOv(v) | Config::PackUv(v)) => *v,
            _ => VoltageProtection::default(),
        }
    }

    fn current(&self, kind: ConfigKind) -> CurrentProtection {
        match self.configs.get(&kind) {
            Some(Config::ChargeOc(c) | Config::DischargeOc1(c)) => *c,
            _ => CurrentProtection::default(),
        }
    }

    fn temps_of(&self, kind: ConfigKind) -> (TempThresholds, TempThresholds) {
        match self.configs.get(&kind) {
            Some(Config::OverTemp(t) | Config::UnderTemp(t)) => (t.charge, t.discharge),
            Some(Config::EnvironmentTemp(e)) => (e.under, e.over),
            Some(Config::MosfetTemp(m)) => (m.over, m.over),
            _ => (TempThresholds::default(), TempThresholds::default()),
        }
    }

    /// Total resistance, Ω.
    pub fn resistance(&self) -> f64 {
        self.cells.iter().map(|c| c.resistance).sum::<f64>() + self.extra_resistance
    }

    /// Open-circuit voltage, V.
    pub fn ocv_v(&self) -> f64 {
        self.cells.iter().map(Cell::ocv_mv).sum::<f64>() / 1000.0
    }

    /// Whether the external fuse has blown: the pack is off the busbar (see [`FUSE_RATED_A`]).
    pub fn fuse_blown(&self) -> bool {
        self.fuse_blown
    }

    /// The fuse's heat integral, A²s; it blows at [`FUSE_BLOW_A2S`].
    pub fn fuse_heat_a2s(&self) -> f64 {
        self.fuse_heat_a2s
    }

    /// Whether the pack is on the busbar and one of its MOSFETs conducts: it can carry current.
    pub fn connected(&self) -> bool {
        !self.fuse_blown && (self.charge_on() || self.discharge_on())
    }

    /// Heats or cools the external fuse with `current_a` flowing for `dt` seconds by the rule of
    /// [`FUSE_RATED_A`]. Returns true when it blows in this step; a blown fuse stays blown.
    pub fn heat_fuse(&mut self, current_a: f64, dt: f64) -> bool {
        if self.fuse_blown {
            return false;
        }
        let rated = FUSE_RATED_A * FUSE_RATED_A;
        let i2 = current_a * current_a;
        if current_a.abs() > FUSE_RATED_A {
            self.fuse_heat_a2s += (i2 - rated) * dt;
        } else {
            self.fuse_heat_a2s = (self.fuse_heat_a2s - (rated - i2) * dt * FUSE_COOLING).max(0.0);
        }
        if self.fuse_heat_a2s >= FUSE_BLOW_A2S {
            self.fuse_blown = true;
            self.fuse_blows = self.fuse_blows.saturating_add(1);
            return true;
        }
        false
    }

    /// Puts in a new, cold fuse. Returns false (and changes nothing) when the fuse is intact.
    pub fn replace_fuse(&mut self) -> bool {
        if !self.fuse_blown {
            return false;
        }
        self.fuse_blown = false;
        self.fuse_heat_a2s = 0.0;
        true
    }

    /// Sets every cell's true state of charge to `soc` (0..=1) and the BMS's counted capacity to
    /// match; the counter on the stack cable is not told.
    pub fn set_soc(&mut self, soc: f64) {
        let soc = if soc.is_finite() { soc.clamp(0.0, 1.0) } else { 0.0 };
        for c in &mut self.cells {
            c.soc = soc;
        }
        self.counted_mah = soc * self.full_mah;
    }

    /// Whether the charge MOSFET conducts.
    pub fn charge_on(&self) -> bool {
        !self.control.contains(ControlState::CHARGE_MOSFET_OFF)
            && !self.protect1.intersects(
                Protect1::HIGH_CELL_VOLTAGE
                    | Protect1::HIGH_TOTAL_VOLTAGE
                    | Protect1::CHARGE_OVER_CURRENT
                    | Protect1::SHORT_CIRCUIT,
            )
            && !self.protect2.intersects(
                Protect2::HIGH_CHARGE_TEMP
                    | Protect2::LOW_CHARGE_TEMP
                    | Protect2::HIGH_MOSFET_TEMP
                    | Protect2::HIGH_ENVIRONMENT_TEMP
                    | Protect2::LOW_ENVIRONMENT_TEMP,
            )
            && !self.fault.intersects(FaultState::CHARGE_MOSFET)
    }

    /// Whether the discharge MOSFET conducts. Over-voltage protection locks it too: the Pace
    /// behaviour the original describes.
    pub fn discharge_on(&self) -> bool {
        !self.control.contains(ControlState::DISCHARGE_MOSFET_OFF)
            && !self.protect1.intersects(
                Protect1::HIGH_CELL_VOLTAGE
                    | Protect1::HIGH_TOTAL_VOLTAGE
                    | Protect1::LOW_CELL_VOLTAGE
                    | Protect1::LOW_TOTAL_VOLTAGE
                    | Protect1::DISCHARGE_OVER_CURRENT
                    | Protect1::SHORT_CIRCUIT,
            )
            && !self.protect2.intersects(
                Protect2::HIGH_DISCHARGE_TEMP
                    | Protect2::LOW_DISCHARGE_TEMP
                    | Protect2::HIGH_MOSFET_TEMP
                    | Protect2::HIGH_ENVIRONMENT_TEMP
                    | Protect2::LOW_ENVIRONMENT_TEMP,
            )
            && !self.fault.intersects(FaultState::DISCHARGE_MOSFET)
    }

    /// The charge current its limiter holds it to, A, while the limiter is switched on (the
    /// control state's current-limiter bit; off by default, as on the seed's packs).
    pub fn charge_limit_a(&self) -> Option<f64> {
        self.control.contains(ControlState::CURRENT_LIMITER).then(|| self.limiter_setting_a())
    }

    /// The charge current limiter's setting (its 0xED block), A.
    pub fn limiter_setting_a(&self) -> f64 {
        match self.configs.get(&ConfigKind::ChargeLimiter) {
            Some(Config::ChargeLimiter(c)) => f64::from(c.current_a),
            _ => 10.0,
        }
    }

    /// The current the BMS measures, A: the pack's, or 0 once its fuse has blown (the BMS sits
    /// on the cell side of the fuse).
    pub fn measured_current_a(&self) -> f64 {
        if self.fuse_blown { 0.0 } else { self.current_a }
    }

    /// Cell voltages as the BMS measures them, mV (with injected offsets).
    pub fn measured_cells_mv(&self) -> Vec<f64> {
        let i = self.measured_current_a();
        self.cells
            .iter()
            .enumerate()
            .map(|(k, c)| {
                let mut v = c.voltage_mv(i);
                if k == 0 && self.faults.contains(&FaultKind::CellOv) {
                    v += 450.0;
                }
                if k == 0 && self.faults.contains(&FaultKind::CellUv) {
                    v -= 900.0;
                }
                v
            })
            .collect()
    }

    /// The six sensors in Pace order: cells 1-4 (groups of cells), MOSFET, environment; °C.
    pub fn measured_temps_c(&self) -> [f64; 6] {
        let offset = if self.faults.contains(&FaultKind::OverTemp) {
            40.0
        } else if self.faults.contains(&FaultKind::UnderTemp) {
            -45.0
        } else {
            0.0
        };
        let group = |g: usize| {
            let n = self.cells.len().max(1);
            let lo = g * n / 4;
            let hi = ((g + 1) * n / 4).max(lo + 1).min(n);
            self.cells[lo..hi].iter().map(|c| c.temp_c).sum::<f64>() / (hi - lo) as f64 + offset
        };
        [group(0), group(1), group(2), group(3), self.mosfet_temp_c, self.env_temp_c]
    }

    /// The BMS's work for `dt` seconds after the current has flowed: counting, protections,
    /// balancing. Returns the energy bled by balancing, Wh.
    pub fn bms_step(&mut self, dt: f64) -> f64 {
        let i = self.current_a;
        if i.abs() >= DEAD_BAND_A {
            self.counted_mah = (self.counted_mah + i * dt / 3.6).clamp(0.0, self.full_mah);
        }
        if i < 0.0 {
            self.cycle_ah += -i * dt / 3600.0;
            if self.cycle_ah >= self.full_mah / 1000.0 {
                self.cycle_ah = 0.0;
                self.cycles = self.cycles.saturating_add(1);
            }
        }
        let cells = self.measured_cells_mv();
        let (max, min) = cells.iter().fold((f64::MIN, f64::MAX), |(hi, lo), &v| (hi.max(v), lo.min(v)));
        let pack_mv: f64 = cells.iter().sum();
        let latch = |flags: &mut Protect1, bit: Protect1, on: bool, off: bool| {
            if on {
                flags.insert(bit);
            } else if off {
                flags.remove(bit);
            }
        };
        let (cov, cuv, pov, puv) = (
            self.voltage(ConfigKind::CellOv),
            self.voltage(ConfigKind::CellUv),
            self.voltage(ConfigKind::PackOv),
            self.voltage(ConfigKind::PackUv),
        );
        let over_voltage = Protect1::HIGH_CELL_VOLTAGE | Protect1::HIGH_TOTAL_VOLTAGE;
        let was_over_voltage = self.protect1.intersects(over_voltage);
        let p = &mut self.protect1;
        latch(
            p,
            Protect1::HIGH_CELL_VOLTAGE,
            max >= f64::from(cov.protect.raw()),
            max <= f64::from(cov.release.raw()),
        );
        latch(
            p,
            Protect1::LOW_CELL_VOLTAGE,
            min <= f64::from(cuv.protect.raw()),
            min >= f64::from(cuv.release.raw()),
        );
        latch(
            p,
            Protect1::HIGH_TOTAL_VOLTAGE,
            pack_mv >= f64::from(pov.protect.raw()),
            pack_mv <= f64::from(pov.release.raw()),
        );
        latch(
            p,
            Protect1::LOW_TOTAL_VOLTAGE,
            pack_mv <= f64::from(puv.protect.raw()),
            pack_mv >= f64::from(puv.release.raw()),
        );

        if !was_over_voltage && self.protect1.intersects(over_voltage) {
            self.ov_trips = self.ov_trips.saturating_add(1);
        }
        self.worst_current_a = self.worst_current_a.max(i.abs());

        // Over-current: protects after the configured delay of continuous current above the
        // protect level (an injected fault at once), releases after a while.
        let (coc, doc) = (self.current(ConfigKind::ChargeOc), self.current(ConfigKind::DischargeOc1));
        let injected_oc = self.faults.contains(&FaultKind::OverCurrent);
        let charge = over_current(
            &mut self.protect1,
            Protect1::CHARGE_OVER_CURRENT,
            i > f64::from(coc.protect_a.unsigned_abs()),
            false,
            f64::from(coc.delay) * CURRENT_DELAY_STEP_S,
            dt,
            (&mut self.oc_charge_over_s, &mut self.oc_charge_s),
        );
        let discharge = over_current(
            &mut self.protect1,
            Protect1::DISCHARGE_OVER_CURRENT,
            -i > f64::from(doc.protect_a.unsigned_abs()),
            injected_oc,
            f64::from(doc.delay) * CURRENT_DELAY_STEP_S,
            dt,
            (&mut self.oc_discharge_over_s, &mut self.oc_discharge_s),
        );
        self.charge_oc_trips = self.charge_oc_trips.saturating_add(u32::from(charge));
        self.discharge_oc_trips = self.discharge_oc_trips.saturating_add(u32::from(discharge));
        self.protect1.set(Protect1::SHORT_CIRCUIT, self.faults.contains(&FaultKind::ShortCircuit));

        // Temperatures.
        let temps = self.measured_temps_c();
        let cell_max = temps[..4].iter().copied().fold(f64::MIN, f64::max);
        let cell_min = temps[..4].iter().copied().fold(f64::MAX, f64::min);
        let dc = |t: DeciKelvin<Pace>| f64::from(t.to_deci_celsius()) / 10.0;
        let (ot_c, ot_d) = self.temps_of(ConfigKind::OverTemp);
        let (ut_c, ut_d) = self.temps_of(ConfigKind::UnderTemp);
        let (mos, _) = self.temps_of(ConfigKind::MosfetTemp);
        let (env_u, env_o) = self.temps_of(ConfigKind::EnvironmentTemp);
        let mut latch2 = |bit: Protect2, on: bool, off: bool| {
            if on {
                self.protect2.insert(bit);
            } else if off {
                self.protect2.remove(bit);
            }
        };
        latch2(Protect2::HIGH_CHARGE_TEMP, cell_max >= dc(ot_c.protect), cell_max <= dc(ot_c.release));
        latch2(Protect2::HIGH_DISCHARGE_TEMP, cell_max >= dc(ot_d.protect), cell_max <= dc(ot_d.release));
        latch2(Protect2::LOW_CHARGE_TEMP, cell_min <= dc(ut_c.protect), cell_min >= dc(ut_c.release) + 5.0);
        latch2(Protect2::LOW_DISCHARGE_TEMP, cell_min <= dc(ut_d.protect), cell_min >= dc(ut_d.release));
        latch2(Protect2::HIGH_MOSFET_TEMP, temps[4] >= dc(mos.protect), temps[4] <= dc(mos.release));
        latch2(Protect2::HIGH_ENVIRONMENT_TEMP, temps[5] >= dc(env_o.protect), temps[5] <= dc(env_o.release));
        latch2(Protect2::LOW_ENVIRONMENT_TEMP, temps[5] <= dc(env_u.protect), temps[5] >= dc(env_u.release));

        // "Fully": at the full-charge voltage with a small tail current; recalibrates the counter.
        let full_mv = match self.configs.get(&ConfigKind::FullCharge) {
            Some(Config::FullCharge(f)) => (f64::from(f.voltage.raw()), f64::from(f.current_ma) / 1000.0),
            _ => (f64::MAX, 0.0),
        };
        if pack_mv >= full_mv.0 && i.abs() <= full_mv.1.max(0.1)
            || self.protect1.contains(Protect1::HIGH_CELL_VOLTAGE)
        {
            self.protect2.insert(Protect2::FULLY);
            self.counted_mah = self.full_mah;
        } else if self.counted_mah < 0.95 * self.full_mah {
            self.protect2.remove(Protect2::FULLY);
        }

        self.fault.set(
            FaultState::CHARGE_MOSFET | FaultState::DISCHARGE_MOSFET,
            self.faults.contains(&FaultKind::MosfetFault),
        );
        self.fault.set(FaultState::CELL, self.faults.contains(&FaultKind::CellFault));

        // Balancing: the Pace BMS balances only while over-voltage protection is active.
        let (threshold, delta) = match self.configs.get(&ConfigKind::Balancing) {
            Some(Config::Balancing(b)) => (f64::from(b.threshold.raw()), f64::from(b.delta.raw())),
            _ => (3400.0, 30.0),
        };
        self.balancing = 0;
        let mut bled_wh = 0.0;
        if self.protect1.intersects(Protect1::HIGH_CELL_VOLTAGE | Protect1::HIGH_TOTAL_VOLTAGE) {
            for (k, cell) in self.cells.iter_mut().enumerate() {
                let v = cells[k];
                if v >= threshold && v >= min + delta {
                    self.balancing |= 1 << k;
                    bled_wh += cell.ocv_mv() / 1000.0 * BALANCE_A * dt / 3600.0;
                    cell.pass(-BALANCE_A, dt);
                }
            }
        }
        bled_wh
    }

    fn warn(value: f64, low: f64, high: f64) -> WarnValue {
        if value >= high {
            WarnValue::ABOVE_UPPER
        } else if value <= low {
            WarnValue::BELOW_LOWER
        } else {
            WarnValue::NORMAL
        }
    }

    /// The 0x42 block.
    pub fn analog(&self) -> PackAnalog {
        let cells: Vec<Millivolts> = self
            .measured_cells_mv()
            .iter()
            .map(|v| Millivolts::from_raw(v.round().clamp(0.0, 65535.0) as u16))
            .collect();
        let voltage =
            Millivolts::from_raw(cells.iter().map(|c| u32::from(c.raw())).sum::<u32>().min(65535) as u16);
        let cah = |mah: f64| CentiAmpHours::from_raw((mah / 10.0).round().clamp(0.0, 65535.0) as u16);
        PackAnalog {
            cells,
            temps: self.measured_temps_c().iter().map(|&t| c_to_k(t)).collect(),
            current: CentiAmps::from_raw(
                (self.measured_current_a() * 100.0).round().clamp(-32768.0, 32767.0) as i16,
            ),
            voltage,
            remaining: cah(self.counted_mah),
            user_defined: 3,
            full: cah(self.full_mah),
            cycles: self.cycles,
            design: cah(self.design_mah),
            extra: Vec::new(),
        }
    }

    /// The 0x44 block.
    pub fn status(&self) -> PackStatus {
        let cov = self.voltage(ConfigKind::CellOv);
        let cuv = self.voltage(ConfigKind::CellUv);
        let pov = self.voltage(ConfigKind::PackOv);
        let puv = self.voltage(ConfigKind::PackUv);
        let cells = self.measured_cells_mv();
        let pack_mv: f64 = cells.iter().sum();
        let (ot_c, _) = self.temps_of(ConfigKind::OverTemp);
        let (ut_c, _) = self.temps_of(ConfigKind::UnderTemp);
        let dc = |t: DeciKelvin<Pace>| f64::from(t.to_deci_celsius()) / 10.0;
        let temps = self.measured_temps_c();
        let (coc, doc) = (self.current(ConfigKind::ChargeOc), self.current(ConfigKind::DischargeOc1));
        let mut warn1 = Warn1::empty();
        warn1.set(Warn1::HIGH_CELL_VOLTAGE, cells.iter().any(|&v| v >= f64::from(cov.alarm.raw())));
        warn1.set(Warn1::LOW_CELL_VOLTAGE, cells.iter().any(|&v| v <= f64::from(cuv.alarm.raw())));
        warn1.set(Warn1::HIGH_TOTAL_VOLTAGE, pack_mv >= f64::from(pov.alarm.raw()));
        warn1.set(Warn1::LOW_TOTAL_VOLTAGE, pack_mv <= f64::from(puv.alarm.raw()));
        let i = self.measured_current_a();
        warn1.set(Warn1::CHARGE_CURRENT, i >= f64::from(coc.alarm_a.unsigned_abs()));
        warn1.set(Warn1::DISCHARGE_CURRENT, -i >= f64::from(doc.alarm_a.unsigned_abs()));
        let mut warn2 = Warn2::empty();
        warn2.set(Warn2::HIGH_CHARGE_TEMP, temps[..4].iter().any(|&t| t >= dc(ot_c.alarm)));
        warn2.set(Warn2::LOW_CHARGE_TEMP, temps[..4].iter().any(|&t| t <= dc(ut_c.alarm)));
        warn2.set(Warn2::LOW_SOC, self.counted_mah < 0.05 * self.full_mah);
        let mut system = SystemState::empty();
        system.set(SystemState::CHARGE_MOSFET_ON, self.charge_on());
        system.set(SystemState::DISCHARGE_MOSFET_ON, self.discharge_on());
        system.set(SystemState::DISCHARGING, i < -0.2);
        system.set(SystemState::CHARGING, i > 0.2);
        PackStatus {
            cell_warns: cells
                .iter()
                .map(|&v| Self::warn(v, f64::from(cuv.alarm.raw()), f64::from(cov.alarm.raw())))
                .collect(),
            temp_warns: temps.iter().map(|&t| Self::warn(t, dc(ut_c.alarm), dc(ot_c.alarm))).collect(),
            charge_current_warn: if warn1.contains(Warn1::CHARGE_CURRENT) {
                WarnValue::ABOVE_UPPER
            } else {
                WarnValue::NORMAL
            },
            voltage_warn: Self::warn(pack_mv, f64::from(puv.alarm.raw()), f64::from(pov.alarm.raw())),
            discharge_current_warn: if warn1.contains(Warn1::DISCHARGE_CURRENT) {
                WarnValue::ABOVE_UPPER
            } else {
                WarnValue::NORMAL
            },
            protect1: self.protect1,
            protect2: self.protect2,
            system,
            control: self.control,
            fault: self.fault,
            // The Pace PDF's reading: state 1 = cells 1-8.
            balance: Balance(self.balancing.to_le_bytes()),
            warn1,
            warn2,
            extra: Vec::new(),
        }
    }

    fn system_state(&self) -> SystemState {
        self.status().system
    }

    /// Answers one request as the BMS would; `None` when it stays silent (another address).
    pub fn answer(&mut self, request: &Request, now: pace_proto::DateTime) -> Option<Reply> {
        if request.adr != self.adr {
            return None;
        }
        let ok = |r: Response| Ok(r);
        let refuse = |rtn: Rtn, info: Vec<u8>| Err(Refusal { rtn, info });
        let outcome = match &request.command {
            Command::Analog { pack } => ok(Response::Analog(AnalogReply {
                info_flag: 0,
                command: if *pack == 0xFF { 1 } else { *pack },
                packs: vec![self.analog()],
            })),
            Command::Status { pack } => ok(Response::Status(StatusReply {
                info_flag: 0,
                command: if *pack == 0xFF { 1 } else { *pack },
                packs: vec![self.status()],
            })),
            Command::PackCount => ok(Response::PackCount { count: 1 }),
            Command::Version => {
                ok(Response::Version { version: Text::padded("P08S020A-SIM-1.00", 20, b' ') })
            }
            Command::Serial => ok(Response::Serial {
                serial: Text::padded(&format!("SIMPACK{:02}-2611", self.number), 20, b' '),
            }),
            Command::ReadConfig(ConfigKind::Capacity) => {
                let cah = |mah: f64| CentiAmpHours::from_raw((mah / 10.0).round().clamp(0.0, 65535.0) as u16);
                ok(Response::Config(Config::Capacity(Capacity {
                    remaining: cah(self.counted_mah),
                    full: cah(self.full_mah),
                    design: cah(self.design_mah),
                })))
            }
            Command::ReadConfig(ConfigKind::Time) => ok(Response::Config(Config::Time(now))),
            Command::ReadConfig(ConfigKind::DischargeOc1) => {
                // Read back negative, as real packs do.
                let mut c = self.current(ConfigKind::DischargeOc1);
                c.alarm_a = -c.alarm_a.abs();
                c.protect_a = -c.protect_a.abs();
                ok(Response::Config(Config::DischargeOc1(c)))
            }
            Command::ReadConfig(kind) => match self.configs.get(kind) {
                Some(c) => ok(Response::Config(c.clone())),
                None => refuse(Rtn::Cid2Invalid, vec![]),
            },
            Command::WriteConfig(Config::Time(_)) => ok(Response::Ack),
            Command::WriteConfig(config) => {
                let mut stored = config.clone();
                if let Config::DischargeOc2(d) = &mut stored {
                    d.extra = vec![d.lead, d.protect_a, d.delay];
                }
                self.configs.insert(config.kind(), stored);
                ok(Response::Ack)
            }
            Command::Switch(sw) => {
                let c = &mut self.control;
                match sw {
                    SwitchCommand::BuzzerOff => c.remove(ControlState::BUZZER),
                    SwitchCommand::BuzzerOn => c.insert(ControlState::BUZZER),
                    SwitchCommand::LedOff => c.remove(ControlState::LED_ALARM),
                    SwitchCommand::LedOn => c.insert(ControlState::LED_ALARM),
                    SwitchCommand::LimiterOff => c.remove(ControlState::CURRENT_LIMITER),
                    SwitchCommand::LimiterOn => c.insert(ControlState::CURRENT_LIMITER),
                    SwitchCommand::GearHigh => c.remove(ControlState::LOW_GEAR),
                    SwitchCommand::GearLow => c.insert(ControlState::LOW_GEAR),
                    SwitchCommand::Unknown(_) => {}
                }
                ok(Response::Switch { command: *sw, control: self.control })
            }
            Command::ChargeMosfet(s) | Command::DischargeMosfet(s) => {
                let charge = matches!(request.command, Command::ChargeMosfet(_));
                let (this, other) = if charge {
                    (ControlState::CHARGE_MOSFET_OFF, ControlState::DISCHARGE_MOSFET_OFF)
                } else {
                    (ControlState::DISCHARGE_MOSFET_OFF, ControlState::CHARGE_MOSFET_OFF)
                };
                match s {
                    MosfetSwitch::Off if self.control.contains(other) => {
                        // The BMS keeps at least one MOSFET on.
                        refuse(Rtn::OperationError, vec![self.system_state().bits()])
                    }
                    MosfetSwitch::Off => {
                        self.control.insert(this);
                        ok(Response::Mosfet { system: self.system_state() })
                    }
                    MosfetSwitch::On => {
                        self.control.remove(this);
                        if charge {
                            // Turning the charge MOSFET on unlocks a pack held by over-voltage
                            // protection once its cells have come down from the protect level.
                            let cov = self.voltage(ConfigKind::CellOv);
                            let max = self.measured_cells_mv().into_iter().fold(f64::MIN, f64::max);
                            if max < f64::from(cov.protect.raw()) {
                                self.protect1
                                    .remove(Protect1::HIGH_CELL_VOLTAGE | Protect1::HIGH_TOTAL_VOLTAGE);
                            }
                        }
                        ok(Response::Mosfet { system: self.system_state() })
                    }
                    MosfetSwitch::Unknown(_) => refuse(Rtn::InvalidData, vec![]),
                }
            }
            Command::Shutdown => {
                // A reboot: commanded MOSFET states are forgotten.
                self.control.remove(ControlState::CHARGE_MOSFET_OFF | ControlState::DISCHARGE_MOSFET_OFF);
                ok(Response::Ack)
            }
            Command::History { .. } => ok(Response::Ack),
        };
        Some(Reply { adr: self.adr, outcome })
    }

    /// Injects a fault.
    pub fn inject(&mut self, kind: FaultKind) {
        if !self.faults.contains(&kind) {
            self.faults.push(kind);
        }
    }

    /// Clears injected faults and every latched protection — except an over-voltage lock that
    /// no injected fault caused (a rebalance's, say): the BMS keeps that until its cells come down
    /// to the release voltage, so clearing a fault never drops such a pack onto the bus.
    pub fn clear(&mut self) {
        let over_voltage = Protect1::HIGH_CELL_VOLTAGE | Protect1::HIGH_TOTAL_VOLTAGE;
        let genuine_lock = if self.faults.contains(&FaultKind::CellOv) {
            Protect1::empty()
        } else {
            self.protect1 & over_voltage
        };
        self.faults.clear();
        self.protect1 = genuine_lock;
        self.protect2 = Protect2::empty();
        self.fault = FaultState::empty();
        self.oc_charge_over_s = 0.0;
        self.oc_discharge_over_s = 0.0;
        self.silent = false;
        self.garbage = false;
    }
}
