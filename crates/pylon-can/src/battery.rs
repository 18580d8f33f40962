//! A whole battery's state, and the set of frames each profile makes of it.

use can_wire::CanFrame;

use crate::Profile;
use crate::flags::{Alarm, AlarmKind, AlarmPairs, Protection, RequestFlags};
use crate::message::{
    BatteryInfo, CellExtremes, Events, Extreme, Limits, Measurements, Message, ModuleCounts, Name,
    ProtectionFlags, Requests, SmaAlarms, Soc,
};

/// Everything any profile tells the inverter, in the units of the frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Battery {
    /// Charge voltage limit, 0.1 V.
    pub charge_voltage_dv: u16,
    /// Discharge voltage limit, 0.1 V.
    pub discharge_voltage_dv: u16,
    /// Charge current limit, 0.1 A.
    pub charge_current_da: i16,
    /// Discharge current limit, 0.1 A, positive.
    pub discharge_current_da: i16,
    /// Charge and discharge enable, force-charge and full-charge requests.
    pub requests: RequestFlags,
    /// SOC, 0.01 %.
    pub soc_centi_pct: u16,
    /// SOH, %.
    pub soh_pct: u16,
    /// Voltage, 10 mV.
    pub voltage_cv: i32,
    /// Current, 0.1 A, positive while charging.
    pub current_da: i16,
    /// Average cell temperature, 0.1 °C.
    pub temperature_dc: i16,
    /// Lowest and highest cell voltage, mV.
    pub cell_min_max_mv: (u16, u16),
    /// Lowest and highest cell temperature, 0.1 °C.
    pub cell_temp_min_max_dc: (i16, i16),
    /// Names of the cells holding the extremes: lowest and highest voltage, lowest and highest
    /// temperature (Victron shows them), e.g. `p2c14` for pack 2 cell 14.
    pub extreme_ids: [String; 4],
    /// Protections now.
    pub protection: Protection,
    /// Alarms (warnings) now.
    pub alarm: Alarm,
    /// Modules in parallel.
    pub modules: u8,
    /// Modules that block charging.
    pub modules_blocking_charge: u8,
    /// Modules that block discharging.
    pub modules_blocking_discharge: u8,
    /// Modules offline (configured but not answering).
    pub modules_offline: u8,
    /// Installed capacity, Ah.
    pub capacity_ah: u16,
    /// Capacity available now (full charge capacity), Ah.
    pub available_ah: u16,
    /// Cycle count.
    pub cycles: u16,
    /// 0x35E, up to 8 characters ("PYLON" by default: Deye and others match on it).
    pub manufacturer: String,
    /// 0x382, Victron's product family name.
    pub family: String,
    /// BMS version, major and minor.
    pub version: (u8, u8),
}

impl Default for Battery {
    fn default() -> Self {
        Self {
            charge_voltage_dv: 0,
            discharge_voltage_dv: 0,
            charge_current_da: 0,
            discharge_current_da: 0,
            requests: RequestFlags::empty(),
            soc_centi_pct: 0,
            soh_pct: 100,
            voltage_cv: 0,
            current_da: 0,
            temperature_dc: 0,
            cell_min_max_mv: (0, 0),
            cell_temp_min_max_dc: (0, 0),
            extreme_ids: Default::default(),
            protection: Protection::empty(),
            alarm: Alarm::empty(),
            modules: 0,
            modules_blocking_charge: 0,
            modules_blocking_discharge: 0,
            modules_offline: 0,
            capacity_ah: 0,
            available_ah: 0,
            cycles: 0,
            manufacturer: "PYLON".into(),
            family: "PACE".into(),
            version: (0, 1),
        }
    }
}

/// SMA's unsigned "invalid" (unused field) value.
const INVALID_U16: u16 = 0xFFFF;

fn kelvin(dc: i16) -> u16 {
    // Integer kelvin as Victron reads them (°C + 273).
    (i32::from(dc) / 10 + 273).clamp(0, i32::from(u16::MAX)) as u16
}

impl Battery {
    fn sma_alarms(&self) -> SmaAlarms {
        let (p, a) = (self.protection, self.alarm);
        let mut alarms = AlarmPairs::NONE;
        let mut warnings = AlarmPairs::NONE;
        let reported = [
            (AlarmKind::General, !p.is_empty(), !a.is_empty()),
            (AlarmKind::HighVoltage, p.contains(Protection::OVER_VOLTAGE), a.contains(Alarm::HIGH_VOLTAGE)),
            (AlarmKind::LowVoltage, p.contains(Protection::UNDER_VOLTAGE), a.contains(Alarm::LOW_VOLTAGE)),
            (
                AlarmKind::HighTemperature,
                p.contains(Protection::OVER_TEMPERATURE),
                a.contains(Alarm::HIGH_TEMPERATURE),
            ),
            (
                AlarmKind::LowTemperature,
                p.contains(Protection::UNDER_TEMPERATURE),
                a.contains(Alarm::LOW_TEMPERATURE),
            ),
            (
                AlarmKind::HighDischargeCurrent,
                p.contains(Protection::DISCHARGE_OVER_CURRENT),
                a.contains(Alarm::DISCHARGE_HIGH_CURRENT),
            ),
            (
                AlarmKind::HighChargeCurrent,
                p.contains(Protection::CHARGE_OVER_CURRENT),
                a.contains(Alarm::CHARGE_HIGH_CURRENT),
            ),
            (
                AlarmKind::BmsInternal,
                p.contains(Protection::SYSTEM_ERROR),
                a.contains(Alarm::INTERNAL_COMMUNICATION_FAIL),
            ),
        ];
        // The others (contactor, short circuit, charge-temperature, imbalance) are not known
        // here, so they are not reported ("00": the inverter ignores them).
        for (kind, alarm, warning) in reported {
            alarms.set(kind, Some(alarm));
            warnings.set(kind, Some(warning));
        }
        SmaAlarms { alarms, warnings }
    }

    /// The profile's messages, in sending order.
    pub fn messages(&self, profile: Profile) -> Vec<Message> {
        let soc_pct = ((u32::from(self.soc_centi_pct) + 50) / 100) as u16;
        let (cell_min, cell_max) = self.cell_min_max_mv;
        let (temp_min, temp_max) = self.cell_temp_min_max_dc;
        let lux = profile == Profile::Lux;
        profile
            .ids()
            .iter()
            .map(|id| match id {
                0x351 => Message::Limits(Limits {
                    charge_voltage_dv: self.charge_voltage_dv,
                    charge_current_da: self.charge_current_da,
                    discharge_current_da: self.discharge_current_da,
                    discharge_voltage_dv: Some(self.discharge_voltage_dv),
                }),
                0x355 => Message::Soc(Soc {
                    soc_pct,
                    soh_pct: self.soh_pct,
                    soc_centi_pct: matches!(profile, Profile::Sma).then_some(self.soc_centi_pct),
                    cell_max_min_mv: lux.then_some((cell_max, cell_min)),
                }),
                0x356 => Message::Measurements(Measurements {
                    voltage_cv: self.voltage_cv,
                    current_da: self.current_da,
                    temperature_dc: if lux { temp_max } else { self.temperature_dc },
                    temperature_min_dc: lux.then_some(temp_min),
                }),
                0x359 => Message::Protection(ProtectionFlags {
                    protection: self.protection,
                    alarm: self.alarm,
                    modules: self.modules,
                    capacity_ah: lux.then_some(self.capacity_ah),
                }),
                0x35A => Message::Alarms(self.sma_alarms()),
                0x35B => Message::Events(Events::default()),
                0x35C => {
                    Message::Requests(Requests { flags: self.requests, cycles: lux.then_some(self.cycles) })
                }
                0x35E => Message::Manufacturer { name: Name::padded(&self.manufacturer) },
                0x35F => Message::Info(BatteryInfo {
                    kind: *b"LI",
                    version: self.version,
                    capacity_ah: if profile == Profile::Victron {
                        self.available_ah
                    } else {
                        self.capacity_ah
                    },
                    extra: if profile == Profile::Sma { INVALID_U16 } else { 0 },
                }),
                0x372 => Message::Modules(ModuleCounts {
                    online: u16::from(self.modules),
                    blocking_charge: u16::from(self.modules_blocking_charge),
                    blocking_discharge: u16::from(self.modules_blocking_discharge),
                    offline: u16::from(self.modules_offline),
                }),
                0x373 => Message::CellExtremes(CellExtremes {
                    min_mv: cell_min,
                    max_mv: cell_max,
                    min_temp_k: kelvin(temp_min),
                    max_temp_k: kelvin(temp_max),
                }),
                0x374..=0x377 => {
                    let k = usize::from(id - 0x374);
                    let extreme = [
                        Extreme::MinCellVoltage,
                        Extreme::MaxCellVoltage,
                        Extreme::MinCellTemperature,
                        Extreme::MaxCellTemperature,
                    ][k];
                    Message::ExtremeId { extreme, name: Name::nul_padded(&self.extreme_ids[k]) }
                }
                0x379 => Message::Capacity { capacity_ah: self.capacity_ah },
                _ => Message::Family { name: Name::nul_padded(&self.family) },
            })
            .collect()
    }
}

/// The profile's whole set of frames for `battery`, in sending order.
pub fn frames(profile: Profile, battery: &Battery) -> Vec<CanFrame> {
    battery.messages(profile).iter().map(|m| m.encode(profile)).collect()
}
