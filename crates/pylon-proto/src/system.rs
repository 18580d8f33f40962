//! System-level replies (0x47, 0x60–0x63) and the module information replies (0x51, 0x92, 0x93,
//! 0x96). Layouts: PROTOCOLS.md §1.8–§1.9 and EMULATION.md.

use ascii_envelope::{FrameWriter, Info};
use units::{CentiAmps, DeciAmps, DeciKelvin, Millivolts, Percent, Pylon};

use crate::flags::{ManagementFlags, SystemAlarm1, SystemAlarm2};
use crate::{Error, Text};

/// Charge and discharge limits with the enable flags: the body of 0x63, and of 0x92 after its
/// command byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Management {
    /// Charge voltage limit, u16 mV.
    pub charge_voltage: Millivolts,
    /// Discharge voltage limit, u16 mV.
    pub discharge_voltage: Millivolts,
    /// Maximum charge current, i16 0.1 A.
    pub charge_current: DeciAmps,
    /// Maximum discharge current, i16 0.1 A (negative in real frames).
    pub discharge_current: DeciAmps,
    /// Enable and request flags.
    pub flags: ManagementFlags,
}

impl Management {
    /// Reads the body with its currents in `unit` (a 10 mA value is rounded to 0.1 A).
    pub(crate) fn parse(info: &mut Info<'_>, unit: SystemCurrentUnit) -> Result<Self, Error> {
        let current = |raw: i16| match unit {
            SystemCurrentUnit::DeciAmp => DeciAmps::from_raw(raw),
            SystemCurrentUnit::CentiAmp => DeciAmps::from_centiamps(CentiAmps::from_raw(raw)),
        };
        Ok(Self {
            charge_voltage: Millivolts::from_raw(info.u16("charge voltage limit")?),
            discharge_voltage: Millivolts::from_raw(info.u16("discharge voltage limit")?),
            charge_current: current(info.i16("charge current limit")?),
            discharge_current: current(info.i16("discharge current limit")?),
            flags: ManagementFlags::from_bits_retain(info.u8("status flags")?),
        })
    }

    /// Writes the body with its currents in `unit` (10 mA saturates at ±327.67 A).
    pub(crate) fn emit(&self, w: &mut FrameWriter<'_>, unit: SystemCurrentUnit) {
        let current = |c: DeciAmps| match unit {
            SystemCurrentUnit::DeciAmp => c.raw(),
            SystemCurrentUnit::CentiAmp => CentiAmps::from_milliamps(c.to_milliamps()).raw(),
        };
        w.u16(self.charge_voltage.raw()).u16(self.discharge_voltage.raw());
        w.i16(current(self.charge_current)).i16(current(self.discharge_current)).u8(self.flags.bits());
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Management {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use ascii_envelope::flags::FlagList;
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Management", 6)?;
        st.serialize_field("charge_voltage_mv", &self.charge_voltage)?;
        st.serialize_field("discharge_voltage_mv", &self.discharge_voltage)?;
        st.serialize_field("charge_current_ma", &self.charge_current)?;
        st.serialize_field("discharge_current_ma", &self.discharge_current)?;
        st.serialize_field("flags", &self.flags.bits())?;
        st.serialize_field("flag_names", &FlagList(self.flags))?;
        st.end()
    }
}

/// The unit of the 0x61 system current, which no official text fixes (PROTOCOLS.md §1.9).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum SystemCurrentUnit {
    /// 10 mA, as the original pace2pylon sent and the Vevor accepted (the default).
    #[default]
    CentiAmp,
    /// 0.1 A, as Pylontech's other current fields.
    DeciAmp,
}

/// Protocol details that differ between inverters and units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Dialect {
    /// Unit of the 0x61 system current (10 mA by default).
    pub system_current: SystemCurrentUnit,
    /// Unit of the 0x63 current limits (0.1 A by default, as V3.5 gives; 10 mA is what the
    /// SRNE-tested emulator sent). 0x92 always uses 0.1 A.
    pub management_current: SystemCurrentUnit,
}

impl Default for Dialect {
    fn default() -> Self {
        Self { system_current: SystemCurrentUnit::CentiAmp, management_current: SystemCurrentUnit::DeciAmp }
    }
}

/// The 0x61 system current in the dialect's unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SystemCurrent {
    /// i16, 10 mA.
    Centi(CentiAmps),
    /// i16, 0.1 A.
    Deci(DeciAmps),
}

impl SystemCurrent {
    /// Expresses `ma` milliamps in `unit`, rounded half away from zero.
    pub fn from_milliamps(ma: i32, unit: SystemCurrentUnit) -> Self {
        match unit {
            SystemCurrentUnit::CentiAmp => Self::Centi(CentiAmps::from_milliamps(ma)),
            SystemCurrentUnit::DeciAmp => Self::Deci(DeciAmps::from_milliamps(ma)),
        }
    }
    fn from_raw(raw: i16, unit: SystemCurrentUnit) -> Self {
        match unit {
            SystemCurrentUnit::CentiAmp => Self::Centi(CentiAmps::from_raw(raw)),
            SystemCurrentUnit::DeciAmp => Self::Deci(DeciAmps::from_raw(raw)),
        }
    }
    /// The wire value.
    pub fn raw(self) -> i16 {
        match self {
            Self::Centi(c) => c.raw(),
            Self::Deci(d) => d.raw(),
        }
    }
    /// The current in mA.
    pub fn to_milliamps(self) -> i32 {
        match self {
            Self::Centi(c) => c.to_milliamps(),
            Self::Deci(d) => d.to_milliamps(),
        }
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for SystemCurrent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i32(self.to_milliamps())
    }
}

/// Average, maximum and minimum of one kind of temperature, with the ids of the extremes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct TempStats {
    /// Average, u16 0.1 K (offset 2731).
    #[cfg_attr(feature = "serde", serde(rename = "avg_dc"))]
    pub average: DeciKelvin<Pylon>,
    /// Maximum.
    #[cfg_attr(feature = "serde", serde(rename = "max_dc"))]
    pub max: DeciKelvin<Pylon>,
    /// Id of the maximum: (module << 8) | sensor, 1-based, as pace2pylon sends it.
    pub max_id: u16,
    /// Minimum.
    #[cfg_attr(feature = "serde", serde(rename = "min_dc"))]
    pub min: DeciKelvin<Pylon>,
    /// Id of the minimum.
    pub min_id: u16,
}

impl TempStats {
    fn parse(info: &mut Info<'_>) -> Result<Self, Error> {
        Ok(Self {
            average: DeciKelvin::from_raw(info.u16("average temperature")?),
            max: DeciKelvin::from_raw(info.u16("maximum temperature")?),
            max_id: info.u16("maximum temperature id")?,
            min: DeciKelvin::from_raw(info.u16("minimum temperature")?),
            min_id: info.u16("minimum temperature id")?,
        })
    }
    fn emit(&self, w: &mut FrameWriter<'_>) {
        w.u16(self.average.raw()).u16(self.max.raw()).u16(self.max_id).u16(self.min.raw()).u16(self.min_id);
    }
}

/// The 0x61 reply: the system's analog values (49 bytes, no INFOFLAG, no command byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SystemAnalog {
    /// Average system voltage, u16 mV.
    #[cfg_attr(feature = "serde", serde(rename = "voltage_mv"))]
    pub voltage: Millivolts,
    /// Total current, i16 in the dialect's unit.
    #[cfg_attr(feature = "serde", serde(rename = "current_ma"))]
    pub current: SystemCurrent,
    /// State of charge, u8 %.
    #[cfg_attr(feature = "serde", serde(rename = "soc_pct"))]
    pub soc: Percent,
    /// Average cycle count, u16.
    pub average_cycles: u16,
    /// Maximum cycle count, u16.
    pub max_cycles: u16,
    /// Average state of health, u8 %.
    #[cfg_attr(feature = "serde", serde(rename = "average_soh_pct"))]
    pub average_soh: Percent,
    /// Minimum state of health, u8 %.
    #[cfg_attr(feature = "serde", serde(rename = "min_soh_pct"))]
    pub min_soh: Percent,
    /// Highest cell voltage, u16 mV.
    #[cfg_attr(feature = "serde", serde(rename = "cell_max_mv"))]
    pub cell_max: Millivolts,
    /// Its id: (module << 8) | cell, 1-based.
    pub cell_max_id: u16,
    /// Lowest cell voltage, u16 mV.
    #[cfg_attr(feature = "serde", serde(rename = "cell_min_mv"))]
    pub cell_min: Millivolts,
    /// Its id.
    pub cell_min_id: u16,
    /// Cell temperatures.
    pub cell_temp: TempStats,
    /// MOSFET temperatures.
    pub mosfet_temp: TempStats,
    /// BMS board temperatures.
    pub bms_temp: TempStats,
}

impl SystemAnalog {
    /// Decodes a 0x61 reply INFO.
    ///
    /// # Errors
    /// A truncation naming the field.
    pub fn parse(info: &mut Info<'_>, unit: SystemCurrentUnit) -> Result<Self, Error> {
        Ok(Self {
            voltage: Millivolts::from_raw(info.u16("system voltage")?),
            current: SystemCurrent::from_raw(info.i16("system current")?, unit),
            soc: Percent::from_raw(info.u8("SOC")?),
            average_cycles: info.u16("average cycles")?,
            max_cycles: info.u16("maximum cycles")?,
            average_soh: Percent::from_raw(info.u8("average SOH")?),
            min_soh: Percent::from_raw(info.u8("minimum SOH")?),
            cell_max: Millivolts::from_raw(info.u16("maximum cell voltage")?),
            cell_max_id: info.u16("maximum cell id")?,
            cell_min: Millivolts::from_raw(info.u16("minimum cell voltage")?),
            cell_min_id: info.u16("minimum cell id")?,
            cell_temp: TempStats::parse(info)?,
            mosfet_temp: TempStats::parse(info)?,
            bms_temp: TempStats::parse(info)?,
        })
    }

    /// Encodes the reply INFO.
    pub fn emit(&self, w: &mut FrameWriter<'_>) {
        w.u16(self.voltage.raw()).i16(self.current.raw()).u8(self.soc.raw());
        w.u16(self.average_cycles).u16(self.max_cycles).u8(self.average_soh.raw()).u8(self.min_soh.raw());
        w.u16(self.cell_max.raw()).u16(self.cell_max_id).u16(self.cell_min.raw()).u16(self.cell_min_id);
        self.cell_temp.emit(w);
        self.mosfet_temp.emit(w);
        self.bms_temp.emit(w);
    }
}

/// The 0x62 reply: system alarms and protections (best-known layout, 4 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SystemAlarm {
    /// Alarm byte 1.
    pub alarm1: SystemAlarm1,
    /// Alarm byte 2.
    pub alarm2: SystemAlarm2,
    /// Protection byte 1.
    pub protect1: SystemAlarm1,
    /// Protection byte 2.
    pub protect2: SystemAlarm2,
}

#[cfg(feature = "serde")]
impl serde::Serialize for SystemAlarm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use ascii_envelope::flags::FlagList;
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("SystemAlarm", 8)?;
        st.serialize_field("alarm1", &self.alarm1.bits())?;
        st.serialize_field("alarm2", &self.alarm2.bits())?;
        st.serialize_field("protect1", &self.protect1.bits())?;
        st.serialize_field("protect2", &self.protect2.bits())?;
        st.serialize_field("alarm1_flags", &FlagList(self.alarm1))?;
        st.serialize_field("alarm2_flags", &FlagList(self.alarm2))?;
        st.serialize_field("protect1_flags", &FlagList(self.protect1))?;
        st.serialize_field("protect2_flags", &FlagList(self.protect2))?;
        st.end()
    }
}

/// The 0x47 reply: the system's configured limits (INFOFLAG + 12 words).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SystemParameters {
    /// INFOFLAG.
    pub info_flag: u8,
    /// Cell high voltage, u16 mV.
    #[cfg_attr(feature = "serde", serde(rename = "cell_high_mv"))]
    pub cell_high: Millivolts,
    /// Cell low voltage (alarm), u16 mV.
    #[cfg_attr(feature = "serde", serde(rename = "cell_low_mv"))]
    pub cell_low: Millivolts,
    /// Cell under voltage (protection), u16 mV.
    #[cfg_attr(feature = "serde", serde(rename = "cell_under_mv"))]
    pub cell_under: Millivolts,
    /// Charge high temperature, u16 0.1 K.
    #[cfg_attr(feature = "serde", serde(rename = "charge_high_temp_dc"))]
    pub charge_high_temp: DeciKelvin<Pylon>,
    /// Charge low temperature, u16 0.1 K.
    #[cfg_attr(feature = "serde", serde(rename = "charge_low_temp_dc"))]
    pub charge_low_temp: DeciKelvin<Pylon>,
    /// Charge current limit, i16 0.1 A.
    #[cfg_attr(feature = "serde", serde(rename = "charge_current_ma"))]
    pub charge_current: DeciAmps,
    /// Module high voltage, u16 mV.
    #[cfg_attr(feature = "serde", serde(rename = "module_high_mv"))]
    pub module_high: Millivolts,
    /// Module low voltage, u16 mV.
    #[cfg_attr(feature = "serde", serde(rename = "module_low_mv"))]
    pub module_low: Millivolts,
    /// Module under voltage, u16 mV.
    #[cfg_attr(feature = "serde", serde(rename = "module_under_mv"))]
    pub module_under: Millivolts,
    /// Discharge high temperature, u16 0.1 K.
    #[cfg_attr(feature = "serde", serde(rename = "discharge_high_temp_dc"))]
    pub discharge_high_temp: DeciKelvin<Pylon>,
    /// Discharge low temperature, u16 0.1 K.
    #[cfg_attr(feature = "serde", serde(rename = "discharge_low_temp_dc"))]
    pub discharge_low_temp: DeciKelvin<Pylon>,
    /// Discharge current limit, i16 0.1 A.
    #[cfg_attr(feature = "serde", serde(rename = "discharge_current_ma"))]
    pub discharge_current: DeciAmps,
}

impl SystemParameters {
    /// Decodes a 0x47 reply INFO.
    ///
    /// # Errors
    /// A truncation naming the field.
    pub fn parse(info: &mut Info<'_>) -> Result<Self, Error> {
        let mv = |info: &mut Info<'_>, f| info.u16(f).map(Millivolts::from_raw);
        let dk = |info: &mut Info<'_>, f| info.u16(f).map(DeciKelvin::from_raw);
        let da = |info: &mut Info<'_>, f| info.i16(f).map(DeciAmps::from_raw);
        Ok(Self {
            info_flag: info.u8("INFOFLAG")?,
            cell_high: mv(info, "cell high voltage")?,
            cell_low: mv(info, "cell low voltage")?,
            cell_under: mv(info, "cell under voltage")?,
            charge_high_temp: dk(info, "charge high temperature")?,
            charge_low_temp: dk(info, "charge low temperature")?,
            charge_current: da(info, "charge current limit")?,
            module_high: mv(info, "module high voltage")?,
            module_low: mv(info, "module low voltage")?,
            module_under: mv(info, "module under voltage")?,
            discharge_high_temp: dk(info, "discharge high temperature")?,
            discharge_low_temp: dk(info, "discharge low temperature")?,
            discharge_current: da(info, "discharge current limit")?,
        })
    }

    /// Encodes the reply INFO.
    pub fn emit(&self, w: &mut FrameWriter<'_>) {
        w.u8(self.info_flag);
        w.u16(self.cell_high.raw()).u16(self.cell_low.raw()).u16(self.cell_under.raw());
        w.u16(self.charge_high_temp.raw()).u16(self.charge_low_temp.raw()).i16(self.charge_current.raw());
        w.u16(self.module_high.raw()).u16(self.module_low.raw()).u16(self.module_under.raw());
        w.u16(self.discharge_high_temp.raw())
            .u16(self.discharge_low_temp.raw())
            .i16(self.discharge_current.raw());
    }
}

/// The 0x51 reply: device name, software version, manufacturer (32 bytes, no INFOFLAG).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ManufacturerInfo {
    /// Device name, 10 ASCII bytes, NUL padded.
    pub device_name: Text,
    /// Software version (major, minor).
    pub software_version: [u8; 2],
    /// Manufacturer, 20 ASCII bytes (padded with '-' in real frames).
    pub manufacturer: Text,
}

impl ManufacturerInfo {
    /// Decodes a 0x51 reply INFO.
    ///
    /// # Errors
    /// A truncation naming the field.
    pub fn parse(info: &mut Info<'_>) -> Result<Self, Error> {
        Ok(Self {
            device_name: Text::read(info, "device name", 10)?,
            software_version: info.array::<2>("software version")?,
            manufacturer: Text::read(info, "manufacturer", 20)?,
        })
    }
    /// Encodes the reply INFO; the strings are padded or cut to their widths.
    pub fn emit(&self, w: &mut FrameWriter<'_>) {
        w.bytes(&self.device_name.fixed(10, 0))
            .bytes(&self.software_version)
            .bytes(&self.manufacturer.fixed(20, 0));
    }
}

/// The 0x60 reply: basic system information (best-known layout, no official text found).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SystemInfo {
    /// Device name, 10 ASCII bytes, NUL padded.
    pub device_name: Text,
    /// Manufacturer, 20 ASCII bytes, NUL padded.
    pub manufacturer: Text,
    /// Software version (major, minor).
    pub software_version: [u8; 2],
    /// One 16-character serial per module; the count byte precedes them.
    pub serials: Vec<Text>,
}

impl SystemInfo {
    /// Decodes a 0x60 reply INFO.
    ///
    /// # Errors
    /// A truncation naming the field.
    pub fn parse(info: &mut Info<'_>) -> Result<Self, Error> {
        let device_name = Text::read(info, "device name", 10)?;
        let manufacturer = Text::read(info, "manufacturer", 20)?;
        let software_version = info.array::<2>("software version")?;
        let n = info.u8("module count")?;
        let serials = (0..n).map(|_| Text::read(info, "module serial", 16)).collect::<Result<_, _>>()?;
        Ok(Self { device_name, manufacturer, software_version, serials })
    }
    /// Encodes the reply INFO.
    ///
    /// # Errors
    /// [`Error::TooMany`] for more than 255 serials.
    pub fn emit(&self, w: &mut FrameWriter<'_>) -> Result<(), Error> {
        w.bytes(&self.device_name.fixed(10, 0))
            .bytes(&self.manufacturer.fixed(20, 0))
            .bytes(&self.software_version);
        w.u8(crate::module::count("serials", self.serials.len())?);
        for s in &self.serials {
            w.bytes(&s.fixed(16, b' '));
        }
        Ok(())
    }
}

pub(crate) fn alarm_parse(info: &mut Info<'_>) -> Result<SystemAlarm, Error> {
    let [a1, a2, p1, p2] = info.array::<4>("alarm and protection bytes")?;
    Ok(SystemAlarm {
        alarm1: SystemAlarm1::from_bits_retain(a1),
        alarm2: SystemAlarm2::from_bits_retain(a2),
        protect1: SystemAlarm1::from_bits_retain(p1),
        protect2: SystemAlarm2::from_bits_retain(p2),
    })
}

pub(crate) fn alarm_emit(a: &SystemAlarm, w: &mut FrameWriter<'_>) {
    w.bytes(&[a.alarm1.bits(), a.alarm2.bits(), a.protect1.bits(), a.protect2.bits()]);
}
