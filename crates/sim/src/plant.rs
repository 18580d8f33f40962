//! The whole plant: packs in parallel, the coulomb counter on the stack cable, the inverter with
//! PV, house load and grid. Pure: time is passed in as seconds of plant time.

use coil_modbus::{Effect, Level, Reading, Registers as CoilRegisters, Settings, State};
use pylon_proto::{Management, ManagementFlags};

use crate::cell::{Cell, energy_wh_per_ah, ocv_mv};
use crate::pack::{FaultKind, Pack};
use pace_proto::ControlState;

/// What the plant is made of.
#[derive(Clone, Debug, PartialEq)]
pub struct PlantConfig {
    /// Number of packs.
    pub packs: usize,
    /// Cells per pack.
    pub cells: usize,
    /// Nominal capacity of a pack, Ah.
    pub capacity_ah: f64,
    /// Starting state of charge.
    pub soc: f64,
    /// Seed of the small random spreads (capacity, SOC, resistance).
    pub seed: u64,
    /// Plant time of day at start, seconds after midnight.
    pub start_of_day_s: f64,
    /// PV peak at noon, W.
    pub pv_peak_w: f64,
    /// House load without peaks, W.
    pub base_load_w: f64,
    /// Ambient temperature, °C.
    pub ambient_c: f64,
    /// Address every simulated BMS answers (Pace DIP switches).
    pub pack_adr: u8,
}

impl Default for PlantConfig {
    fn default() -> Self {
        Self {
            packs: 12,
            cells: 8,
            capacity_ah: 20.0,
            soc: 0.6,
            seed: 1,
            start_of_day_s: 10.0 * 3600.0,
            pv_peak_w: 2500.0,
            base_load_w: 250.0,
            ambient_c: 22.0,
            pack_adr: 0,
        }
    }
}

/// A small deterministic generator (xorshift64*), so a seed gives the same plant every time.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded; 0 is replaced by a fixed non-zero state.
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [-spread, spread].
    pub fn spread(&mut self, spread: f64) -> f64 {
        (self.next_f64() * 2.0 - 1.0) * spread
    }
    /// A byte.
    pub fn byte(&mut self) -> u8 {
        (self.next_f64() * 256.0) as u8
    }
}

/// Energy totals since the start, Wh. PV + grid = load + into the battery terminals; into the
/// terminals = stored + resistive losses + balancing.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Ledger {
    /// PV energy used.
    pub pv_wh: f64,
    /// Grid energy imported.
    pub grid_wh: f64,
    /// House load.
    pub load_wh: f64,
    /// Into the battery terminals (negative: out of them).
    pub battery_wh: f64,
    /// I²R losses in cells and connections.
    pub loss_wh: f64,
    /// Burnt by balancing resistors.
    pub balance_wh: f64,
}

/// What the inverter was told by the BMS, or its fallback.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// Stop charging at this bus voltage, V.
    pub charge_v: f64,
    /// Stop discharging at this bus voltage, V.
    pub discharge_v: f64,
    /// Maximum charge current, A.
    pub charge_a: f64,
    /// Maximum discharge current, A (positive).
    pub discharge_a: f64,
    /// Charging allowed.
    pub charge: bool,
    /// Discharging allowed.
    pub discharge: bool,
    /// From the BMS (true) or the no-communication settings (false).
    pub from_bms: bool,
}

/// The Vevor's no-communication settings from the original's README: charge at most 30 A up to
/// 24.5 V, discharge down to 24.4 V. Without a BMS the inverter charges at the lower of these
/// 30 A and its own maximum charging current (register 332), see [`Inverter::limits`].
pub const NO_COMM: Limits = Limits {
    charge_v: 24.5,
    discharge_v: 24.4,
    charge_a: 30.0,
    discharge_a: 100.0,
    charge: true,
    discharge: true,
    from_bms: false,
};

/// The inverter: energy flows, its Modbus registers and what it heard from the BMS.
#[derive(Clone, Debug)]
pub struct Inverter {
    /// Its Modbus register map (settings are written here by clients).
    pub registers: vevor_modbus::Registers,
    /// The last 0x63 answer, while communication is good.
    pub bms: Option<Management>,
    /// SOC from the last 0x61 answer.
    pub bms_soc: Option<u8>,
    /// Flows of the last step, W.
    pub pv_w: f64,
    /// House load of the last step, W.
    pub load_w: f64,
    /// Grid import of the last step, W.
    pub grid_w: f64,
    /// Battery power of the last step, W (charge positive).
    pub battery_w: f64,
}

impl Inverter {
    fn new() -> Self {
        let mut registers = vevor_modbus::Registers::default();
        for (address, value) in [
            (201u16, 3u16),
            (202, 2300),
            (203, 5000),
            (300, 0),
            (301, 2),
            (320, 2300),
            (321, 5000),
            (322, 4),
            (323, 290),
            (324, 284),
            (325, 276),
            (326, 260),
            (327, 230),
            (329, 220),
            (331, 3),
            (332, 300),
            (333, 300),
            (341, 30),
            (342, 60),
            (343, 5),
            (351, 100),
            (406, 0),
            (420, 1),
            (643, 3500),
            (644, 2),
        ] {
            registers.set(address, value);
        }
        Self { registers, bms: None, bms_soc: None, pv_w: 0.0, load_w: 0.0, grid_w: 0.0, battery_w: 0.0 }
    }

    /// Writes holding register `reg` (a number) with the raw `value` (a number, or a choice's name
    /// such as `sbu`), as a Modbus client may: only writable items of the register map, only
    /// values it allows (`332 800` is an 80 A maximum charging current). Returns a confirmation.
    ///
    /// # Errors
    /// A message naming the register and what it accepts.
    pub fn set(&mut self, reg: &str, value: &str) -> Result<String, String> {
        use vevor_modbus::map::{Access, Allowed};
        let address: u16 = reg.parse().map_err(|_| format!("'{reg}' is not a register number"))?;
        let item = vevor_modbus::map::at(address)
            .ok_or_else(|| format!("register {address} is not in the inverter's register map"))?;
        if item.access == Access::ReadOnly {
            return Err(format!("register {address} ({}) is read only", item.name));
        }
        let raw = match (value.parse::<u16>(), item.allowed) {
            (Ok(raw), _) => raw,
            (Err(_), Allowed::Choices(choices)) => choices
                .iter()
                .find(|(_, name)| name.eq_ignore_ascii_case(value))
                .map(|(v, _)| *v)
                .ok_or_else(|| {
                    format!(
                        "register {address} ({}): '{value}' is not allowed; allowed: {}",
                        item.name,
                        vevor_modbus::allowed_list(item)
                    )
                })?,
            (Err(_), _) => {
                return Err(format!(
                    "register {address} ({}): '{value}' is not a raw register value (0 to 65535)",
                    item.name
                ));
            }
        };
        vevor_modbus::validate_write(item, raw).map_err(|e| {
            let raw_range = match item.allowed {
                Allowed::Range { min, max } if item.divisor > 1 => {
                    format!(" (raw {min} to {max}, in {} {})", 1.0 / f64::from(item.divisor), item.unit)
                }
                _ => String::new(),
            };
            format!("register {address} {e}{raw_range}")
        })?;
        self.registers.set(address, raw);
        let shown = vevor_modbus::decode(item, &[raw]).display(item);
        Ok(format!("inverter: register {address} ({}) = {raw} ({shown})", item.name))
    }

    /// The limits the inverter obeys now: the BMS's, or the no-comm settings. Its own maximum
    /// charging current (register 332, 0.1 A, up to 80 A) caps the charge current either way: the
    /// BMS's limit, or the no-comm 30 A (so without a BMS it charges at min(30 A, register 332)).
    /// The grid's share of the charge current is register 333 (see [`Plant::step`]).
    pub fn limits(&self) -> Limits {
        let own_max = f64::from(self.registers.get(332)) / 10.0;
        match self.bms {
            Some(m) => Limits {
                charge_v: f64::from(m.charge_voltage.raw()) / 1000.0,
                discharge_v: f64::from(m.discharge_voltage.raw()) / 1000.0,
                charge_a: (f64::from(m.charge_current.raw()) / 10.0).min(own_max).max(0.0),
                discharge_a: (f64::from(m.discharge_current.raw()) / 10.0).abs(),
                charge: m.flags.contains(ManagementFlags::CHARGE_ENABLE),
                discharge: m.flags.contains(ManagementFlags::DISCHARGE_ENABLE),
                from_bms: true,
            },
            None => Limits { charge_a: NO_COMM.charge_a.min(own_max).max(0.0), ..NO_COMM },
        }
    }
}

/// A state of charge in percent (0..=100, a trailing `%` allowed) as a fraction.
fn percent(text: &str) -> Result<f64, String> {
    let t = text.strip_suffix('%').unwrap_or(text);
    match t.parse::<f64>() {
        Ok(v) if (0.0..=100.0).contains(&v) => Ok(v / 100.0),
        Ok(v) if v.is_finite() => Err(format!("state of charge {v} % is out of range: 0 to 100")),
        _ => Err(format!("'{text}' is not a state of charge in percent (0 to 100)")),
    }
}

/// The coulomb counter on the stack cable.
#[derive(Clone, Debug)]
pub struct Coil {
    /// Its registers.
    pub registers: CoilRegisters,
    remaining_mah: f64,
    energy_cwh: f64,
    /// Not answering.
    pub silent: bool,
}

impl Coil {
    fn new(capacity_mah: u32, soc: f64) -> Self {
        let settings = Settings {
            address: 1,
            capacity_mah,
            full_voltage_cv: 2735,
            empty_voltage_cv: 2200,
            over_voltage_cv: 2900,
            over_current_raw: 20000,
            over_temperature_raw: 70,
            under_voltage_cv: 2000,
            low_soc_pct: 10,
        };
        let remaining_mah = f64::from(capacity_mah) * soc;
        let reading = Reading {
            soc_pct: 0,
            temperature_c: 22,
            voltage_cv: 0,
            current_ca: 0,
            power_dw: 0,
            energy_cwh: 0,
            remaining_mah: 0,
            flags: 0,
            state: State::Idle,
        };
        Self { registers: CoilRegisters { reading, settings }, remaining_mah, energy_cwh: 0.0, silent: false }
    }

    /// Counts `current_a` (0.5 A resolution) at `voltage_v` for `dt` seconds; resets itself to full or
    /// empty at its full or empty voltage.
    fn step(&mut self, current_a: f64, voltage_v: f64, dt: f64) {
        let measured = (current_a / 0.5).round() * 0.5;
        let s = self.registers.settings;
        let capacity = f64::from(s.capacity_mah);
        self.remaining_mah = (self.remaining_mah + measured * dt / 3.6).clamp(0.0, capacity);
        let cv = voltage_v * 100.0;
        if cv >= f64::from(s.full_voltage_cv) && measured >= 0.0 {
            self.remaining_mah = capacity;
        } else if cv <= f64::from(s.empty_voltage_cv) && measured <= 0.0 {
            self.remaining_mah = 0.0;
        }
        self.energy_cwh += (measured * voltage_v).abs() * dt / 36.0;
        self.publish(measured, voltage_v);
    }

    fn publish(&mut self, measured_a: f64, voltage_v: f64) {
        let capacity = f64::from(self.registers.settings.capacity_mah).max(1.0);
        let r = &mut self.registers.reading;
        r.soc_pct = (self.remaining_mah / capacity * 100.0).round().clamp(0.0, 100.0) as u16;
        r.voltage_cv = (voltage_v * 100.0).round().clamp(0.0, 65535.0) as u16;
        r.current_ca = (measured_a.abs() * 100.0).round().min(65535.0) as u16;
        r.power_dw = (measured_a * voltage_v * 10.0).abs().round() as u32;
        r.energy_cwh = self.energy_cwh as u32;
        r.remaining_mah = self.remaining_mah.round() as u32;
        r.state = if measured_a > 0.0 {
            State::Charging
        } else if measured_a < 0.0 {
            State::Discharging
        } else {
            State::Idle
        };
    }

    /// Applies what a served Modbus request did.
    pub fn apply(&mut self, effect: Effect) {
        let capacity = f64::from(self.registers.settings.capacity_mah);
        match effect {
            Effect::SetLevel(Level::Full) => self.remaining_mah = capacity,
            Effect::SetLevel(Level::Empty) => self.remaining_mah = 0.0,
            Effect::SettingsChanged => self.remaining_mah = self.remaining_mah.min(capacity),
            Effect::None => {}
        }
    }

    /// What the counter believes is left, mAh.
    pub fn remaining_mah(&self) -> f64 {
        self.remaining_mah
    }
}

/// The plant.
#[derive(Clone, Debug)]
pub struct Plant {
    /// What it is made of.
    pub config: PlantConfig,
    /// Plant seconds since the start.
    pub time_s: f64,
    /// The packs.
    pub packs: Vec<Pack>,
    /// The coulomb counter.
    pub coil: Coil,
    /// The inverter.
    pub inverter: Inverter,
    /// Bus voltage of the last step, V.
    pub bus_v: f64,
    /// Stack current of the last step, A (charge positive).
    pub current_a: f64,
    /// Energy totals.
    pub ledger: Ledger,
    /// Noise for garbage lines and spreads.
    pub rng: Rng,
    /// Which packs were on the busbar at the end of the last step: a change (a MOSFET switched
    /// on, a fuse replaced) makes the next second run in fine steps.
    connected: Vec<bool>,
}

/// A second with a pack joining the bus or a pack current above this runs in steps of
/// [`FINE_STEP_S`], so a BMS's 1 s over-current delay and an inrush are judged right.
pub const FINE_ABOVE_A: f64 = 20.0;
/// The fine step, s.
pub const FINE_STEP_S: f64 = 0.1;

/// Gaussian bump centred at `c` hours with width `w` hours, for load peaks.
fn bump(hour: f64, c: f64, w: f64) -> f64 {
    (-((hour - c) / w).powi(2)).exp()
}

impl Plant {
    /// A plant from `config`, deterministic for its seed.
    pub fn new(config: PlantConfig) -> Self {
        let mut rng = Rng::new(config.seed);
        let packs = (0..config.packs)
            .map(|k| {
                let cells = (0..config.cells)
                    .map(|_| Cell {
                        capacity_ah: config.capacity_ah * (1.0 + rng.spread(0.03)),
                        soc: (config.soc + rng.spread(0.02)).clamp(0.0, 1.0),
                        resistance: 0.0015 * (1.0 + rng.spread(0.1)),
                        temp_c: config.ambient_c,
                    })
                    .collect();
                Pack::new(
                    k + 1,
                    config.pack_adr,
                    cells,
                    config.capacity_ah,
                    0.008 * (1.0 + rng.spread(0.2)),
                    config.ambient_c,
                )
            })
            .collect::<Vec<_>>();
        let capacity_mah = (config.capacity_ah * config.packs as f64 * 1000.0) as u32;
        let coil = Coil::new(capacity_mah, config.soc);
        let bus_v = packs.iter().map(Pack::ocv_v).sum::<f64>() / packs.len().max(1) as f64;
        let mut plant = Self {
            config,
            time_s: 0.0,
            packs,
            coil,
            inverter: Inverter::new(),
            bus_v,
            current_a: 0.0,
            ledger: Ledger::default(),
            rng,
            connected: Vec::new(),
        };
        plant.connected = plant.packs.iter().map(Pack::connected).collect();
        plant.publish_inverter();
        plant.coil.publish(0.0, bus_v);
        plant
    }

    /// Hour of the day, 0..24.
    pub fn hour(&self) -> f64 {
        ((self.config.start_of_day_s + self.time_s) / 3600.0).rem_euclid(24.0)
    }

    /// The BMS clock's date and time.
    pub fn date_time(&self) -> pace_proto::DateTime {
        let s = (self.config.start_of_day_s + self.time_s) as u64;
        let day = (s / 86400) as u8;
        let t = s % 86400;
        pace_proto::DateTime {
            year: 26,
            month: 11,
            day: (24 + day % 6).min(30),
            hour: (t / 3600) as u8,
            minute: (t / 60 % 60) as u8,
            second: (t % 60) as u8,
        }
    }

    /// PV available now, W.
    pub fn pv_available_w(&self) -> f64 {
        let h = self.hour();
        if (6.0..18.0).contains(&h) {
            self.config.pv_peak_w * (std::f64::consts::PI * (h - 6.0) / 12.0).sin()
        } else {
            0.0
        }
    }

    /// House load now, W.
    pub fn load_w(&self) -> f64 {
        let h = self.hour();
        self.config.base_load_w + 350.0 * bump(h, 7.5, 1.0) + 800.0 * bump(h, 19.5, 1.5)
    }

    /// Total energy stored in the cells, Wh (the integral of their OCV curves).
    pub fn stored_wh(&self) -> f64 {
        self.packs.iter().flat_map(|p| &p.cells).map(|c| c.capacity_ah * energy_wh_per_ah(c.soc)).sum()
    }

    /// Packs whose external fuse has blown (off the busbar until `replace-fuse pack N`).
    pub fn blown_fuses(&self) -> usize {
        self.packs.iter().filter(|p| p.fuse_blown()).count()
    }

    /// Shares `total_a` between the packs by their open-circuit voltage and resistance, honouring
    /// each pack's MOSFETs and fuse and the bus voltage limits. Returns the pack currents and bus
    /// voltage. A pack with a blown fuse gets 0 A.
    ///
    /// A pack whose charge current limiter is on (see [`Pack::charge_limit_a`]) takes no more
    /// charge than its limit: it is then a current sink at the limit, whatever the others push.
    pub fn share(&self, total_a: f64, max_v: f64, min_v: f64) -> (Vec<f64>, f64) {
        let n = self.packs.len();
        let mut active: Vec<bool> = self.packs.iter().map(Pack::connected).collect();
        // Packs held at their limiter's current.
        let mut limited: Vec<Option<f64>> = vec![None; n];
        let mut target = total_a;
        for _ in 0..=2 * n + 2 {
            let (g, og) = self
                .packs
                .iter()
                .zip(active.iter().zip(&limited))
                .filter(|(_, (a, l))| **a && l.is_none())
                .fold((0.0, 0.0), |(g, og), (p, _)| {
                    let gi = 1.0 / p.resistance();
                    (g + gi, og + p.ocv_v() * gi)
                });
            let sunk: f64 = limited.iter().flatten().sum();
            if g == 0.0 {
                let v = self.packs.iter().map(Pack::ocv_v).sum::<f64>() / n.max(1) as f64;
                return (vec![0.0; n], v);
            }
            // The inverter holds the bus at its voltage limits: no more current than they allow.
            let i_at = |v: f64| v * g - og + sunk;
            if target > 0.0 {
                target = target.min(i_at(max_v)).max(0.0);
            } else if target < 0.0 {
                target = target.max(i_at(min_v)).min(0.0);
            }
            let v = (target - sunk + og) / g;
            let currents: Vec<f64> = self
                .packs
                .iter()
                .zip(active.iter().zip(&limited))
                .map(|(p, (a, l))| match (a, l) {
                    (false, _) => 0.0,
                    (true, Some(limit)) => *limit,
                    (true, None) => (v - p.ocv_v()) / p.resistance(),
                })
                .collect();
            let mut changed = false;
            for (k, p) in self.packs.iter().enumerate() {
                if active[k]
                    && ((currents[k] > 1e-9 && !p.charge_on()) || (currents[k] < -1e-9 && !p.discharge_on()))
                {
                    active[k] = false;
                    changed = true;
                } else if active[k] && limited[k].is_none() {
                    if let Some(limit) = p.charge_limit_a().filter(|l| currents[k] > *l) {
                        limited[k] = Some(limit);
                        changed = true;
                    }
                }
            }
            if !changed {
                return (currents, v);
            }
        }
        let v = self.packs.iter().map(Pack::ocv_v).sum::<f64>() / n.max(1) as f64;
        (vec![0.0; n], v)
    }

    /// Advances the plant by `dt` seconds (split into steps of at most one second).
    ///
    /// The inverter's charge current is the PV surplus (by the output priority, register 301)
    /// plus, when the charging priority (331) is utility or PV and utility, the grid's maximum
    /// mains charging current (333, 0.1 A); the sum is capped by [`Inverter::limits`] (the BMS's
    /// limit and the maximum charging current, 332) and the charge voltage.
    ///
    /// A second in which a pack joins the bus, or a pack carries more than [`FINE_ABOVE_A`], runs
    /// in steps of [`FINE_STEP_S`].
    pub fn step(&mut self, dt: f64) {
        let mut left = dt;
        while left > 1e-9 {
            let joined = self.packs.iter().zip(&self.connected).any(|(p, was)| p.connected() != *was);
            let strong = self.packs.iter().any(|p| p.current_a.abs() > FINE_ABOVE_A);
            let h = left.min(if joined || strong { FINE_STEP_S } else { 1.0 });
            self.step_once(h);
            left -= h;
        }
    }

    /// The largest current any pack carried since the start, A.
    pub fn worst_pack_current_a(&self) -> f64 {
        self.packs.iter().map(|p| p.worst_current_a).fold(0.0, f64::max)
    }

    fn step_once(&mut self, dt: f64) {
        let pv = self.pv_available_w();
        let load = self.load_w();
        let limits = self.inverter.limits();
        let reg = |a| self.inverter.registers.get(a);
        let (output, charging) = (reg(301), reg(331));
        // Utility charging follows the charging priority (utility, or PV and utility).
        let grid_charge = matches!(charging, 0 | 2);
        let mains_charge_w = if grid_charge { f64::from(reg(333)) / 10.0 * self.bus_v } else { 0.0 };
        let surplus = pv - load;
        let desired_w = match output {
            // sbu: PV to the load, the battery covers a deficit; the grid only charges on request.
            2 if grid_charge => surplus.max(0.0) + mains_charge_w,
            2 => surplus,
            // sub: PV to the load, the grid covers a deficit; the battery only charges.
            1 => surplus.max(0.0) + mains_charge_w,
            // usb: the grid feeds the load; PV (and the grid, on request) charge the battery.
            _ => pv + mains_charge_w,
        };
        let mut want_a = desired_w / self.bus_v.max(1.0);
        want_a = if want_a > 0.0 {
            if limits.charge { want_a.min(limits.charge_a) } else { 0.0 }
        } else if limits.discharge {
            want_a.max(-limits.discharge_a)
        } else {
            0.0
        };
        let max_v = if limits.charge { limits.charge_v } else { 0.0 };
        let (currents, v) = self.share(want_a, max_v.max(0.0), limits.discharge_v);
        let total: f64 = currents.iter().sum();
        let battery_w = v * total;
        // PV serves load and battery first (sbu, sub), or only the battery (usb); grid the rest.
        let pv_used = match output {
            0 => pv.min(battery_w.max(0.0)),
            _ => pv.min((load + battery_w).max(0.0)),
        };
        let grid = (load + battery_w - pv_used).max(0.0);
        let pv_used = load + battery_w - grid; // exact balance: no export, curtailed PV is not used
        let mut loss = 0.0;
        let mut bled = 0.0;
        for (p, &i) in self.packs.iter_mut().zip(&currents) {
            p.current_a = i;
            loss += i * i * p.resistance() * dt / 3600.0;
            let heat_w = i * i * p.resistance();
            for c in &mut p.cells {
                c.pass(i, dt);
                // First-order heating towards ambient + heat; about 0.5 °C per watt per cell group.
                let target = self.config.ambient_c + heat_w * 0.5;
                c.temp_c += (target - c.temp_c) * (dt / 1800.0).min(1.0);
            }
            let mos_target = self.config.ambient_c + 0.15 * i.abs();
            p.mosfet_temp_c += (mos_target - p.mosfet_temp_c) * (dt / 600.0).min(1.0);
            p.env_temp_c += (self.config.ambient_c - p.env_temp_c) * (dt / 600.0).min(1.0);
            bled += p.bms_step(dt);
            // After the current of this step: a blown fuse takes the pack off the busbar from the
            // next step on (`share` gives it nothing).
            p.heat_fuse(i, dt);
        }
        self.connected.clear();
        self.connected.extend(self.packs.iter().map(Pack::connected));
        self.bus_v = v;
        self.current_a = total;
        self.coil.step(total, v, dt);
        self.inverter.pv_w = pv_used;
        self.inverter.load_w = load;
        self.inverter.grid_w = grid;
        self.inverter.battery_w = battery_w;
        let l = &mut self.ledger;
        l.pv_wh += pv_used * dt / 3600.0;
        l.grid_wh += grid * dt / 3600.0;
        l.load_wh += load * dt / 3600.0;
        l.battery_wh += battery_w * dt / 3600.0;
        l.loss_wh += loss;
        l.balance_wh += bled;
        self.time_s += dt;
        self.publish_inverter();
    }

    /// Writes the live registers of the inverter from the flows.
    fn publish_inverter(&mut self) {
        let r = &mut self.inverter.registers;
        let i16r = |v: f64| (v.round().clamp(-32768.0, 32767.0) as i16) as u16;
        let grid_w = self.inverter.grid_w;
        r.set(201, if grid_w > 1.0 { 2 } else { 3 });
        r.set(204, i16r(grid_w));
        r.set(210, 2300);
        r.set(212, 5000);
        r.set(213, i16r(self.inverter.load_w));
        r.set(214, i16r(self.inverter.load_w * 1.05));
        r.set(215, i16r(self.bus_v * 10.0));
        r.set(216, i16r(self.current_a * 10.0));
        r.set(217, i16r(self.inverter.battery_w));
        let pv = self.inverter.pv_w;
        r.set(219, if pv > 0.0 { 1500 } else { 0 });
        r.set(220, i16r(pv / 150.0 * 10.0));
        r.set(223, i16r(pv));
        r.set(224, i16r(pv.min(self.inverter.battery_w.max(0.0))));
        r.set(225, i16r(self.inverter.load_w / 35.0));
        r.set(226, 35);
        r.set(227, 38);
        r.set(229, u16::from(self.inverter.bms_soc.unwrap_or(0)));
        r.set(232, i16r(self.current_a * 10.0));
        if let Some(m) = self.inverter.bms {
            r.set(761, m.charge_voltage.raw());
            r.set(762, m.discharge_voltage.raw());
            r.set(763, m.charge_current.raw() as u16);
            r.set(764, m.discharge_current.raw().unsigned_abs());
            r.set(760, u16::from(m.flags.bits()));
        }
    }

    /// Runs one fault-injection command (`silence pack 2`, `fault pack 1 cell-ov`, ...); returns a
    /// short confirmation or what is wrong with the command.
    ///
    /// # Errors
    /// A message naming the problem and the accepted commands.
    pub fn command(&mut self, line: &str) -> Result<String, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let usage = "commands: silence|restore|garbage|clear pack N, fault pack N KIND, drift pack N MV, \
                     replace-fuse pack N, soc pack N PERCENT, soc all PERCENT, limiter pack N|all on|off, \
                     inverter set REG VALUE, silence|restore coil";
        let pack = |w: Option<&&str>, packs: usize| -> Result<usize, String> {
            let n: usize = w
                .ok_or("missing pack number")?
                .parse()
                .map_err(|_| "the pack number must be a number".to_owned())?;
            if n == 0 || n > packs {
                return Err(format!("no pack {n}: packs are numbered 1 to {packs}"));
            }
            Ok(n - 1)
        };
        let n = self.packs.len();
        match words.as_slice() {
            [] => Err(usage.to_owned()),
            ["silence", "coil"] => {
                self.coil.silent = true;
                Ok("coil silent".into())
            }
            ["restore", "coil"] => {
                self.coil.silent = false;
                Ok("coil answers".into())
            }
            [verb @ ("silence" | "restore" | "garbage" | "clear"), "pack", rest @ ..] if rest.len() == 1 => {
                let k = pack(rest.first(), n)?;
                let p = &mut self.packs[k];
                match *verb {
                    "silence" => p.silent = true,
                    "restore" => {
                        p.silent = false;
                        p.garbage = false;
                    }
                    "garbage" => p.garbage = true,
                    _ => p.clear(),
                }
                Ok(format!("pack {}: {verb}", k + 1))
            }
            ["fault", "pack", num, kind] => {
                let k = pack(Some(num), n)?;
                let f = FaultKind::from_name(kind).ok_or_else(|| {
                    let kinds: Vec<_> = FaultKind::ALL.iter().map(|(_, n)| *n).collect();
                    format!("unknown fault '{kind}'; kinds: {}", kinds.join(", "))
                })?;
                self.packs[k].inject(f);
                Ok(format!("pack {}: fault {kind}", k + 1))
            }
            ["drift", "pack", num, mv] => {
                let k = pack(Some(num), n)?;
                let mv: f64 = mv.parse().map_err(|_| format!("'{mv}' is not a number of mV"))?;
                let cell = &mut self.packs[k].cells[0];
                let target = cell.ocv_mv() + mv;
                // The SOC whose OCV is the target, by bisection on the monotonic curve.
                let (mut lo, mut hi) = (0.0, 1.0);
                for _ in 0..60 {
                    let mid = (lo + hi) / 2.0;
                    if ocv_mv(mid) < target { lo = mid } else { hi = mid }
                }
                cell.soc = (lo + hi) / 2.0;
                Ok(format!("pack {}: cell 1 drifted to {:.0} mV open-circuit", k + 1, cell.ocv_mv()))
            }
            ["replace-fuse", "pack", rest @ ..] if rest.len() == 1 => {
                let k = pack(rest.first(), n)?;
                if self.packs[k].replace_fuse() {
                    Ok(format!("pack {}: fuse replaced, back on the busbar", k + 1))
                } else {
                    Err(format!("pack {}: the fuse is intact; only a blown fuse can be replaced", k + 1))
                }
            }
            ["soc", "pack", num, pct] => {
                let k = pack(Some(num), n)?;
                let soc = percent(pct)?;
                self.packs[k].set_soc(soc);
                Ok(format!("pack {}: every cell at {:.1} % state of charge", k + 1, soc * 100.0))
            }
            ["soc", "all", pct] => {
                let soc = percent(pct)?;
                for p in &mut self.packs {
                    p.set_soc(soc);
                }
                Ok(format!("all {n} packs: every cell at {:.1} % state of charge", soc * 100.0))
            }
            ["limiter", "pack", which, state @ ("on" | "off")] => {
                let packs: Vec<usize> =
                    if *which == "all" { (0..n).collect() } else { vec![pack(Some(which), n)?] };
                for &k in &packs {
                    self.packs[k].control.set(ControlState::CURRENT_LIMITER, *state == "on");
                }
                let limit = packs.first().map_or(0.0, |&k| self.packs[k].limiter_setting_a());
                let who = if *which == "all" { format!("all {n} packs") } else { format!("pack {which}") };
                Ok(format!("{who}: charge current limiter {state} ({limit} A)"))
            }
            ["limiter", ..] => {
                Err("limiter pack N|all on|off: the Pace charge current limiter (about 10 A)".into())
            }
            ["inverter", "set", reg, value] => self.inverter.set(reg, value),
            _ => Err(format!("unknown command '{}'; {usage}", line.trim())),
        }
    }
}
