//! Configuration reads and writes (PROTOCOLS.md §1.10; layouts as PbmsTools sends them, per esphome).
//!
//! A read (e.g. D1) has an empty INFO and its reply carries the values; the matching write (D0)
//! carries the same layout and is answered with the empty ACK. A leading byte of unknown meaning
//! (`lead`, usually 01) is read and must be echoed in the write.

use ascii_envelope::{FrameWriter, Info};
use units::{CentiAmpHours, DeciKelvin, Millivolts, Pace, Percent};

use crate::Error;

macro_rules! config_kinds {
    ($( $(#[$doc:meta])* $kind:ident = $name:literal, $read:literal, $write:expr; )*) => {
        /// Which configuration block: one read CID2, at most one write CID2.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ConfigKind {
            $( $(#[$doc])* $kind, )*
        }

        impl ConfigKind {
            /// Every kind, in CLI order.
            pub const ALL: &'static [ConfigKind] = &[$(ConfigKind::$kind),*];

            /// The name used on the command line and in JSON (`cell-ov`, ...).
            pub const fn name(self) -> &'static str {
                match self { $(ConfigKind::$kind => $name,)* }
            }

            /// CID2 of the read request.
            pub const fn read_cid2(self) -> u8 {
                match self { $(ConfigKind::$kind => $read,)* }
            }

            /// CID2 of the write request, if the block is writable.
            pub const fn write_cid2(self) -> Option<u8> {
                match self { $(ConfigKind::$kind => $write,)* }
            }
        }
    };
}

config_kinds! {
    /// D1/D0: cell over-voltage.
    CellOv = "cell-ov", 0xD1, Some(0xD0);
    /// D3/D2: cell under-voltage.
    CellUv = "cell-uv", 0xD3, Some(0xD2);
    /// D5/D4: pack over-voltage.
    PackOv = "pack-ov", 0xD5, Some(0xD4);
    /// D7/D6: pack under-voltage.
    PackUv = "pack-uv", 0xD7, Some(0xD6);
    /// D9/D8: charge over-current.
    ChargeOc = "charge-oc", 0xD9, Some(0xD8);
    /// DB/DA: discharge over-current 1.
    DischargeOc1 = "discharge-oc1", 0xDB, Some(0xDA);
    /// E3/E2: discharge over-current 2.
    DischargeOc2 = "discharge-oc2", 0xE3, Some(0xE2);
    /// E5/E4: short circuit.
    ShortCircuit = "short-circuit", 0xE5, Some(0xE4);
    /// B6/B5: cell balancing.
    Balancing = "balancing", 0xB6, Some(0xB5);
    /// A0/A8: sleep.
    Sleep = "sleep", 0xA0, Some(0xA8);
    /// AF/AE: full charge and low charge.
    FullCharge = "full-charge", 0xAF, Some(0xAE);
    /// DD/DC: charge and discharge over-temperature.
    OverTemp = "over-temp", 0xDD, Some(0xDC);
    /// DF/DE: charge and discharge under-temperature.
    UnderTemp = "under-temp", 0xDF, Some(0xDE);
    /// E1/E0: MOSFET over-temperature.
    MosfetTemp = "mosfet-temp", 0xE1, Some(0xE0);
    /// E7/E6: environment under- and over-temperature.
    EnvironmentTemp = "environment-temp", 0xE7, Some(0xE6);
    /// ED/EE: charge-limiter start current.
    ChargeLimiter = "charge-limiter", 0xED, Some(0xEE);
    /// A6: remaining, full and design capacity (read only).
    Capacity = "capacity", 0xA6, None;
    /// EB/EC: CAN and RS485 protocols.
    Protocols = "protocols", 0xEB, Some(0xEC);
    /// B1/B2: the BMS clock.
    Time = "time", 0xB1, Some(0xB2);
}

impl ConfigKind {
    /// The kind read by `cid2`.
    pub fn from_read_cid2(cid2: u8) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.read_cid2() == cid2)
    }
    /// The kind written by `cid2`.
    pub fn from_write_cid2(cid2: u8) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.write_cid2() == Some(cid2))
    }
    /// The kind named `name` (as [`ConfigKind::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.name() == name)
    }
}

#[cfg(feature = "serde")]
mod ser {
    pub fn delay_100ms<S: serde::Serializer>(v: &u8, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(u32::from(*v) * 100)
    }
    pub fn delay_25ms<S: serde::Serializer>(v: &u8, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(u32::from(*v) * 25)
    }
    pub fn delay_25us<S: serde::Serializer>(v: &u8, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(u32::from(*v) * 25)
    }
}

/// Voltage thresholds (D1/D0, D3/D2, D5/D4, D7/D6): 8 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct VoltageProtection {
    /// Leading byte, meaning unknown (01), echoed in writes.
    pub lead: u8,
    /// Alarm level, u16 mV.
    #[cfg_attr(feature = "serde", serde(rename = "alarm_mv"))]
    pub alarm: Millivolts,
    /// Protection level, u16 mV.
    #[cfg_attr(feature = "serde", serde(rename = "protect_mv"))]
    pub protect: Millivolts,
    /// Release level, u16 mV.
    #[cfg_attr(feature = "serde", serde(rename = "release_mv"))]
    pub release: Millivolts,
    /// Delay, u8, 100 ms steps.
    #[cfg_attr(feature = "serde", serde(rename = "delay_ms", serialize_with = "ser::delay_100ms"))]
    pub delay: u8,
}

/// Over-current thresholds (D9/D8, DB/DA): 6 bytes. DB reads back negative (FF97 = −105 A) but is
/// written positive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct CurrentProtection {
    /// Leading byte, meaning unknown (01), echoed in writes.
    pub lead: u8,
    /// Alarm level, i16, 1 A steps, as on the wire.
    #[cfg_attr(feature = "serde", serde(rename = "alarm_a"))]
    pub alarm_a: i16,
    /// Protection level, i16, 1 A steps, as on the wire.
    #[cfg_attr(feature = "serde", serde(rename = "protect_a"))]
    pub protect_a: i16,
    /// Delay, u8, 100 ms steps.
    #[cfg_attr(feature = "serde", serde(rename = "delay_ms", serialize_with = "ser::delay_100ms"))]
    pub delay: u8,
}

/// Discharge over-current 2 (E3/E2): 3 bytes; the read repeats them once more.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct DischargeOc2 {
    /// Leading byte (00), echoed in writes.
    pub lead: u8,
    /// Protection level, u8, 1 A steps.
    pub protect_a: u8,
    /// Delay, u8, 25 ms steps.
    #[cfg_attr(feature = "serde", serde(rename = "delay_ms", serialize_with = "ser::delay_25ms"))]
    pub delay: u8,
    /// The bytes a read adds after the three (a repeat of them in captures), kept as sent.
    pub extra: Vec<u8>,
}

/// Short-circuit protection (E5/E4): 1 byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ShortCircuit {
    /// Delay, u8, 25 µs steps.
    #[cfg_attr(feature = "serde", serde(rename = "delay_us", serialize_with = "ser::delay_25us"))]
    pub delay: u8,
}

/// Cell balancing (B6/B5): 4 bytes, no leading byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Balancing {
    /// Balancing starts above this cell voltage, u16 mV.
    #[cfg_attr(feature = "serde", serde(rename = "threshold_mv"))]
    pub threshold: Millivolts,
    /// ... when a cell is this far above the lowest, u16 mV.
    #[cfg_attr(feature = "serde", serde(rename = "delta_mv"))]
    pub delta: Millivolts,
}

/// Sleep (A0/A8): 4 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Sleep {
    /// Sleep below this cell voltage, u16 mV.
    #[cfg_attr(feature = "serde", serde(rename = "cell_mv"))]
    pub cell: Millivolts,
    /// A byte that is 00 in every capture, echoed in writes.
    pub lead: u8,
    /// Delay, u8, minutes.
    #[cfg_attr(feature = "serde", serde(rename = "delay_min"))]
    pub minutes: u8,
}

/// Full charge and low charge (AF/AE): 5 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct FullCharge {
    /// Full-charge pack voltage, u16 mV.
    #[cfg_attr(feature = "serde", serde(rename = "full_charge_mv"))]
    pub voltage: Millivolts,
    /// Full-charge tail current, u16 mA.
    #[cfg_attr(feature = "serde", serde(rename = "full_charge_ma"))]
    pub current_ma: u16,
    /// Low-SOC alarm, u8 %.
    #[cfg_attr(feature = "serde", serde(rename = "low_soc_pct"))]
    pub low_soc: Percent,
}

/// Alarm, protection and release temperatures, u16 0.1 K (offset 2730) each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct TempThresholds {
    /// Alarm level.
    #[cfg_attr(feature = "serde", serde(rename = "alarm_dc"))]
    pub alarm: DeciKelvin<Pace>,
    /// Protection level.
    #[cfg_attr(feature = "serde", serde(rename = "protect_dc"))]
    pub protect: DeciKelvin<Pace>,
    /// Release level.
    #[cfg_attr(feature = "serde", serde(rename = "release_dc"))]
    pub release: DeciKelvin<Pace>,
}

/// Charge and discharge temperature thresholds (DD/DC over, DF/DE under): 13 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ChargeDischargeTemps {
    /// Leading byte (01), echoed in writes.
    pub lead: u8,
    /// While charging.
    pub charge: TempThresholds,
    /// While discharging.
    pub discharge: TempThresholds,
}

/// MOSFET over-temperature (E1/E0): 7 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct MosfetTemp {
    /// Leading byte (01), echoed in writes.
    pub lead: u8,
    /// The thresholds.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub over: TempThresholds,
}

/// Environment under- and over-temperature (E7/E6): 13 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct EnvironmentTemps {
    /// Leading byte (01), echoed in writes.
    pub lead: u8,
    /// Under-temperature.
    pub under: TempThresholds,
    /// Over-temperature.
    pub over: TempThresholds,
}

/// Charge-limiter start current (ED/EE): 2 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ChargeLimiter {
    /// Leading byte: the pack address in captures, echoed in writes.
    pub lead: u8,
    /// Start current, u8, 1 A steps.
    pub current_a: u8,
}

/// Capacities (A6, read only): 6 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Capacity {
    /// Remaining capacity, u16 10 mAh.
    #[cfg_attr(feature = "serde", serde(rename = "remaining_mah"))]
    pub remaining: CentiAmpHours,
    /// Full (actual) capacity, u16 10 mAh.
    #[cfg_attr(feature = "serde", serde(rename = "full_mah"))]
    pub full: CentiAmpHours,
    /// Design capacity, u16 10 mAh.
    #[cfg_attr(feature = "serde", serde(rename = "design_mah"))]
    pub design: CentiAmpHours,
}

/// Inverter protocols (EB/EC): 3 bytes, codes as PbmsTools lists them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Protocols {
    /// CAN protocol code (FF blank, 00 Pace, 01 Pylon, ...).
    pub can: u8,
    /// RS485 protocol code (FF blank, 00 Pace Modbus, 01 Pylon, ...).
    pub rs485: u8,
    /// 00 automatic, 01 manual, FF blank.
    pub mode: u8,
}

/// The BMS clock (B1/B2): 6 bytes, binary (not BCD).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct DateTime {
    /// Year − 2000.
    pub year: u8,
    /// Month, 1–12.
    pub month: u8,
    /// Day, 1–31.
    pub day: u8,
    /// Hour, 0–23.
    pub hour: u8,
    /// Minute.
    pub minute: u8,
    /// Second.
    pub second: u8,
}

/// One configuration block with its values.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(tag = "config", rename_all = "kebab-case"))]
#[allow(missing_docs)] // each variant is its ConfigKind
pub enum Config {
    CellOv(VoltageProtection),
    CellUv(VoltageProtection),
    PackOv(VoltageProtection),
    PackUv(VoltageProtection),
    ChargeOc(CurrentProtection),
    #[cfg_attr(feature = "serde", serde(rename = "discharge-oc1"))]
    DischargeOc1(CurrentProtection),
    #[cfg_attr(feature = "serde", serde(rename = "discharge-oc2"))]
    DischargeOc2(DischargeOc2),
    ShortCircuit(ShortCircuit),
    Balancing(Balancing),
    Sleep(Sleep),
    FullCharge(FullCharge),
    OverTemp(ChargeDischargeTemps),
    UnderTemp(ChargeDischargeTemps),
    MosfetTemp(MosfetTemp),
    EnvironmentTemp(EnvironmentTemps),
    ChargeLimiter(ChargeLimiter),
    Capacity(Capacity),
    Protocols(Protocols),
    Time(DateTime),
}

fn mv(info: &mut Info<'_>, field: &'static str) -> Result<Millivolts, Error> {
    Ok(Millivolts::from_raw(info.u16(field)?))
}

fn temps(info: &mut Info<'_>) -> Result<TempThresholds, Error> {
    Ok(TempThresholds {
        alarm: DeciKelvin::from_raw(info.u16("alarm temperature")?),
        protect: DeciKelvin::from_raw(info.u16("protect temperature")?),
        release: DeciKelvin::from_raw(info.u16("release temperature")?),
    })
}

fn emit_temps(w: &mut FrameWriter<'_>, t: &TempThresholds) {
    w.u16(t.alarm.raw()).u16(t.protect.raw()).u16(t.release.raw());
}

impl Config {
    /// Which block this is.
    pub fn kind(&self) -> ConfigKind {
        match self {
            Self::CellOv(_) => ConfigKind::CellOv,
            Self::CellUv(_) => ConfigKind::CellUv,
            Self::PackOv(_) => ConfigKind::PackOv,
            Self::PackUv(_) => ConfigKind::PackUv,
            Self::ChargeOc(_) => ConfigKind::ChargeOc,
            Self::DischargeOc1(_) => ConfigKind::DischargeOc1,
            Self::DischargeOc2(_) => ConfigKind::DischargeOc2,
            Self::ShortCircuit(_) => ConfigKind::ShortCircuit,
            Self::Balancing(_) => ConfigKind::Balancing,
            Self::Sleep(_) => ConfigKind::Sleep,
            Self::FullCharge(_) => ConfigKind::FullCharge,
            Self::OverTemp(_) => ConfigKind::OverTemp,
            Self::UnderTemp(_) => ConfigKind::UnderTemp,
            Self::MosfetTemp(_) => ConfigKind::MosfetTemp,
            Self::EnvironmentTemp(_) => ConfigKind::EnvironmentTemp,
            Self::ChargeLimiter(_) => ConfigKind::ChargeLimiter,
            Self::Capacity(_) => ConfigKind::Capacity,
            Self::Protocols(_) => ConfigKind::Protocols,
            Self::Time(_) => ConfigKind::Time,
        }
    }

    /// Decodes the INFO of a read reply (`is_write == false`) or of a write request. Every byte must
    /// be used, except that an E3 read may carry its repeat.
    ///
    /// # Errors
    /// A truncation naming the field, or [`Error::TrailingBytes`].
    pub fn parse(kind: ConfigKind, info: &mut Info<'_>, is_write: bool) -> Result<Self, Error> {
        let voltage = |info: &mut Info<'_>| -> Result<VoltageProtection, Error> {
            Ok(VoltageProtection {
                lead: info.u8("leading byte")?,
                alarm: mv(info, "alarm voltage")?,
                protect: mv(info, "protect voltage")?,
                release: mv(info, "release voltage")?,
                delay: info.u8("delay")?,
            })
        };
        let current = |info: &mut Info<'_>| -> Result<CurrentProtection, Error> {
            Ok(CurrentProtection {
                lead: info.u8("leading byte")?,
                alarm_a: info.i16("alarm current")?,
                protect_a: info.i16("protect current")?,
                delay: info.u8("delay")?,
            })
        };
        let config = match kind {
            ConfigKind::CellOv => Self::CellOv(voltage(info)?),
            ConfigKind::CellUv => Self::CellUv(voltage(info)?),
            ConfigKind::PackOv => Self::PackOv(voltage(info)?),
            ConfigKind::PackUv => Self::PackUv(voltage(info)?),
            ConfigKind::ChargeOc => Self::ChargeOc(current(info)?),
            ConfigKind::DischargeOc1 => Self::DischargeOc1(current(info)?),
            ConfigKind::DischargeOc2 => {
                let [lead, protect_a, delay] = info.array::<3>("discharge over-current 2")?;
                let extra = if is_write { Vec::new() } else { info.rest() };
                Self::DischargeOc2(DischargeOc2 { lead, protect_a, delay, extra })
            }
            ConfigKind::ShortCircuit => Self::ShortCircuit(ShortCircuit { delay: info.u8("delay")? }),
            ConfigKind::Balancing => Self::Balancing(Balancing {
                threshold: mv(info, "balance threshold")?,
                delta: mv(info, "balance delta")?,
            }),
            ConfigKind::Sleep => Self::Sleep(Sleep {
                cell: mv(info, "sleep voltage")?,
                lead: info.u8("sleep reserved byte")?,
                minutes: info.u8("sleep delay")?,
            }),
            ConfigKind::FullCharge => Self::FullCharge(FullCharge {
                voltage: mv(info, "full-charge voltage")?,
                current_ma: info.u16("full-charge current")?,
                low_soc: Percent::from_raw(info.u8("low-SOC alarm")?),
            }),
            ConfigKind::OverTemp | ConfigKind::UnderTemp => {
                let t = ChargeDischargeTemps {
                    lead: info.u8("leading byte")?,
                    charge: temps(info)?,
                    discharge: temps(info)?,
                };
                if kind == ConfigKind::OverTemp { Self::OverTemp(t) } else { Self::UnderTemp(t) }
            }
            ConfigKind::MosfetTemp => {
                Self::MosfetTemp(MosfetTemp { lead: info.u8("leading byte")?, over: temps(info)? })
            }
            ConfigKind::EnvironmentTemp => Self::EnvironmentTemp(EnvironmentTemps {
                lead: info.u8("leading byte")?,
                under: temps(info)?,
                over: temps(info)?,
            }),
            ConfigKind::ChargeLimiter => Self::ChargeLimiter(ChargeLimiter {
                lead: info.u8("leading byte")?,
                current_a: info.u8("limiter current")?,
            }),
            ConfigKind::Capacity => Self::Capacity(Capacity {
                remaining: CentiAmpHours::from_raw(info.u16("remaining capacity")?),
                full: CentiAmpHours::from_raw(info.u16("full capacity")?),
                design: CentiAmpHours::from_raw(info.u16("design capacity")?),
            }),
            ConfigKind::Protocols => {
                let [can, rs485, mode] = info.array::<3>("protocols")?;
                Self::Protocols(Protocols { can, rs485, mode })
            }
            ConfigKind::Time => {
                let [year, month, day, hour, minute, second] = info.array::<6>("date and time")?;
                Self::Time(DateTime { year, month, day, hour, minute, second })
            }
        };
        crate::expect_end(info, kind.name())?;
        Ok(config)
    }

    /// Encodes the block as INFO. A write of E2 omits the repeat that an E3 read carries.
    pub fn emit(&self, w: &mut FrameWriter<'_>, is_write: bool) {
        let voltage = |w: &mut FrameWriter<'_>, v: &VoltageProtection| {
            w.u8(v.lead).u16(v.alarm.raw()).u16(v.protect.raw()).u16(v.release.raw()).u8(v.delay);
        };
        let current = |w: &mut FrameWriter<'_>, c: &CurrentProtection| {
            w.u8(c.lead).i16(c.alarm_a).i16(c.protect_a).u8(c.delay);
        };
        match self {
            Self::CellOv(v) | Self::CellUv(v) | Self::PackOv(v) | Self::PackUv(v) => voltage(w, v),
            Self::ChargeOc(c) | Self::DischargeOc1(c) => current(w, c),
            Self::DischargeOc2(d) => {
                w.bytes(&[d.lead, d.protect_a, d.delay]);
                if !is_write {
                    w.bytes(&d.extra);
                }
            }
            Self::ShortCircuit(s) => {
                w.u8(s.delay);
            }
            Self::Balancing(b) => {
                w.u16(b.threshold.raw()).u16(b.delta.raw());
            }
            Self::Sleep(s) => {
                w.u16(s.cell.raw()).u8(s.lead).u8(s.minutes);
            }
            Self::FullCharge(f) => {
                w.u16(f.voltage.raw()).u16(f.current_ma).u8(f.low_soc.raw());
            }
            Self::OverTemp(t) | Self::UnderTemp(t) => {
                w.u8(t.lead);
                emit_temps(w, &t.charge);
                emit_temps(w, &t.discharge);
            }
            Self::MosfetTemp(m) => {
                w.u8(m.lead);
                emit_temps(w, &m.over);
            }
            Self::EnvironmentTemp(e) => {
                w.u8(e.lead);
                emit_temps(w, &e.under);
                emit_temps(w, &e.over);
            }
            Self::ChargeLimiter(c) => {
                w.u8(c.lead).u8(c.current_a);
            }
            Self::Capacity(c) => {
                w.u16(c.remaining.raw()).u16(c.full.raw()).u16(c.design.raw());
            }
            Self::Protocols(p) => {
                w.bytes(&[p.can, p.rs485, p.mode]);
            }
            Self::Time(t) => {
                w.bytes(&[t.year, t.month, t.day, t.hour, t.minute, t.second]);
            }
        }
    }
}
