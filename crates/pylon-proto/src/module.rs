//! Per-module replies: 0x42 analog values and 0x44 alarm information (V2.8/V3.3 §3, real frames).
//!
//! ```text
//! 0x42: INFOFLAG(1) M(1): module count (request FF) or the module address
//!       per module: n(1) cell mV(2)×n  N(1) temp 0.1K+2731(2)×N  current 0.1A(2, signed)
//!                   voltage mV(2)  remain mAh(2)  UD(1)  total mAh(2)  cycles(2)
//!                   [UD = 4: remain mAh(3) total mAh(3), with both 16-bit fields FFFF]
//! 0x44: INFOFLAG(1) M(1)  per module: n(1) cell warn×n  N(1) temp warn×N  charge-current warn
//!                   module-voltage warn  discharge-current warn  Status1..Status5  [real units: +1 byte]
//! ```

use ascii_envelope::{FrameWriter, Info};
use units::{DeciAmps, DeciKelvin, MilliAmpHours, Millivolts, Percent, Pylon};

use crate::Error;
use crate::flags::{Status1, Status2, Status3};

pub(crate) fn count(what: &'static str, n: usize) -> Result<u8, Error> {
    u8::try_from(n).map_err(|_| Error::TooMany { what, count: n })
}

/// The reply to 0x42: one module, or every module of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct AnalogReply {
    /// INFOFLAG: b4 unread switch change, b0 unread alarm change (V3.3).
    pub info_flag: u8,
    /// The module count after a request for `FF`, else the module address.
    pub command: u8,
    /// One entry per module.
    pub modules: Vec<ModuleAnalog>,
}

/// One module's analog block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModuleAnalog {
    /// Cell voltages, u16 mV each.
    pub cells: Vec<Millivolts>,
    /// Temperatures, u16 0.1 K (offset 2731) each: BMS board first, then cell groups, then MOSFET.
    pub temps: Vec<DeciKelvin<Pylon>>,
    /// Module current, i16 0.1 A, charge positive.
    pub current: DeciAmps,
    /// Module voltage, u16 mV.
    pub voltage: Millivolts,
    /// Remaining capacity, mAh: the 16-bit field, or the 24-bit one when `user_defined` is 4.
    pub remaining: MilliAmpHours,
    /// User-defined count: 2 (16-bit capacities) or 4 (24-bit capacities follow).
    pub user_defined: u8,
    /// Total capacity, mAh: 16 or 24 bits as `remaining`.
    pub total: MilliAmpHours,
    /// Cycle count, u16.
    pub cycles: u16,
    /// Bytes after the last field of a single-module reply, kept as sent.
    pub extra: Vec<u8>,
}

/// UD value whose capacities are 24-bit fields after the cycle count.
pub const UD_LARGE_CAPACITY: u8 = 4;

impl ModuleAnalog {
    /// State of charge, remaining / total, rounded down and capped at 100 %; `None` if total is 0.
    pub fn soc(&self) -> Option<Percent> {
        Percent::ratio_capped(self.remaining.raw(), self.total.raw())
    }

    fn parse(info: &mut Info<'_>) -> Result<Self, Error> {
        let n = info.u8("cell count")?;
        let cells = info.u16s("cell voltages", usize::from(n), Millivolts::from_raw)?;
        let t = info.u8("temperature count")?;
        let temps = info.u16s("temperatures", usize::from(t), DeciKelvin::from_raw)?;
        let current = DeciAmps::from_raw(info.i16("current")?);
        let voltage = Millivolts::from_raw(info.u16("module voltage")?);
        let remaining16 = info.u16("remaining capacity")?;
        let user_defined = info.u8("user-defined count")?;
        let total16 = info.u16("total capacity")?;
        let cycles = info.u16("cycle count")?;
        let (remaining, total) = if user_defined == UD_LARGE_CAPACITY {
            (info.u24("remaining capacity (24-bit)")?, info.u24("total capacity (24-bit)")?)
        } else {
            (u32::from(remaining16), u32::from(total16))
        };
        Ok(Self {
            cells,
            temps,
            current,
            voltage,
            remaining: MilliAmpHours::from_raw(remaining),
            user_defined,
            total: MilliAmpHours::from_raw(total),
            cycles,
            extra: Vec::new(),
        })
    }

    fn emit(&self, w: &mut FrameWriter<'_>) -> Result<(), Error> {
        w.u8(count("cells", self.cells.len())?);
        self.cells.iter().for_each(|c| {
            w.u16(c.raw());
        });
        w.u8(count("temperatures", self.temps.len())?);
        self.temps.iter().for_each(|t| {
            w.u16(t.raw());
        });
        w.i16(self.current.raw()).u16(self.voltage.raw());
        if self.user_defined == UD_LARGE_CAPACITY {
            w.u16(0xFFFF).u8(self.user_defined).u16(0xFFFF).u16(self.cycles);
            w.u24(self.remaining.raw()).u24(self.total.raw());
        } else {
            let field = |what: &'static str, v: MilliAmpHours| {
                v.to_u16().ok_or(Error::CapacityTooLarge { what, mah: v.raw() })
            };
            w.u16(field("remaining capacity", self.remaining)?).u8(self.user_defined);
            w.u16(field("total capacity", self.total)?).u16(self.cycles);
        }
        w.bytes(&self.extra);
        Ok(())
    }
}

/// Reads exactly `m` blocks filling INFO, or `None`.
fn exactly<T>(
    info: &mut Info<'_>,
    m: u8,
    parse: impl Fn(&mut Info<'_>) -> Result<T, Error>,
) -> Option<Vec<T>> {
    let mut trial = info.clone();
    let mut blocks = Vec::with_capacity(usize::from(m));
    for _ in 0..m {
        blocks.push(parse(&mut trial).ok()?);
    }
    if !trial.is_empty() {
        return None;
    }
    *info = trial;
    Some(blocks)
}

impl AnalogReply {
    /// Decodes a 0x42 reply INFO. When the second byte is a count M > 1 and M modules fill INFO
    /// exactly, it is a group reply; otherwise one module, whose trailing bytes are kept.
    ///
    /// # Errors
    /// A truncation naming the field when INFO is too short for one module.
    pub fn parse(info: &mut Info<'_>) -> Result<Self, Error> {
        let info_flag = info.u8("INFOFLAG")?;
        let command = info.u8("command")?;
        if command > 1 && command != 0xFF {
            if let Some(modules) = exactly(info, command, ModuleAnalog::parse) {
                return Ok(Self { info_flag, command, modules });
            }
        }
        let mut module = ModuleAnalog::parse(info)?;
        module.extra = info.rest();
        Ok(Self { info_flag, command, modules: vec![module] })
    }

    /// Encodes the reply INFO.
    ///
    /// # Errors
    /// [`Error::TooMany`] for more than 255 cells or temperatures, [`Error::CapacityTooLarge`] for
    /// a capacity above 65 535 mAh without user-defined 4.
    pub fn emit(&self, w: &mut FrameWriter<'_>) -> Result<(), Error> {
        w.u8(self.info_flag).u8(self.command);
        self.modules.iter().try_for_each(|m| m.emit(w))
    }
}

/// The reply to 0x44: one module, or every module of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct AlarmReply {
    /// INFOFLAG.
    pub info_flag: u8,
    /// The module count after a request for `FF`, else the module address.
    pub command: u8,
    /// One entry per module.
    pub modules: Vec<ModuleAlarm>,
}

/// One module's alarm block. Warning bytes: 00 normal, 01 below the limit, 02 above, F0 other.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModuleAlarm {
    /// One warning per cell.
    pub cell_warns: Vec<u8>,
    /// One warning per temperature sensor, in the 0x42 order.
    pub temp_warns: Vec<u8>,
    /// Charge-current warning.
    pub charge_current_warn: u8,
    /// Module-voltage warning.
    pub voltage_warn: u8,
    /// Discharge-current warning.
    pub discharge_current_warn: u8,
    /// Status1: protections.
    pub status1: Status1,
    /// Status2: switches.
    pub status2: Status2,
    /// Status3: current and charge state.
    pub status3: Status3,
    /// Cell errors (above 4.2 V or below 1 V): bit *n* = cell *n + 1*; Status4 is the low byte
    /// (cells 1–8), Status5 the high byte (cells 9–16).
    pub cell_errors: u16,
    /// Bytes after Status5 (one 00 in real US2000/US3000 replies), kept as sent.
    pub extra: Vec<u8>,
}

impl ModuleAlarm {
    /// Status1..Status5 as on the wire.
    pub fn status_bytes(&self) -> [u8; 5] {
        let [s4, s5] = self.cell_errors.to_le_bytes();
        [self.status1.bits(), self.status2.bits(), self.status3.bits(), s4, s5]
    }

    fn parse(info: &mut Info<'_>, extra: usize) -> Result<Self, Error> {
        let mut cell_warns = Vec::new();
        let n = info.u8("cell count")?;
        info.bytes_into("cell warnings", usize::from(n), &mut cell_warns)?;
        let mut temp_warns = Vec::new();
        let t = info.u8("temperature count")?;
        info.bytes_into("temperature warnings", usize::from(t), &mut temp_warns)?;
        let [cc, v, dc, s1, s2, s3, s4, s5] = info.array::<8>("warnings and status bytes")?;
        let mut rest = Vec::new();
        info.bytes_into("trailing bytes", extra, &mut rest)?;
        Ok(Self {
            cell_warns,
            temp_warns,
            charge_current_warn: cc,
            voltage_warn: v,
            discharge_current_warn: dc,
            status1: Status1::from_bits_retain(s1),
            status2: Status2::from_bits_retain(s2),
            status3: Status3::from_bits_retain(s3),
            cell_errors: u16::from_le_bytes([s4, s5]),
            extra: rest,
        })
    }

    fn emit(&self, w: &mut FrameWriter<'_>) -> Result<(), Error> {
        w.u8(count("cell warnings", self.cell_warns.len())?).bytes(&self.cell_warns);
        w.u8(count("temperature warnings", self.temp_warns.len())?).bytes(&self.temp_warns);
        w.bytes(&[self.charge_current_warn, self.voltage_warn, self.discharge_current_warn]);
        w.bytes(&self.status_bytes()).bytes(&self.extra);
        Ok(())
    }
}

impl AlarmReply {
    /// Decodes a 0x44 reply INFO, tolerating the trailing byte real units send: a group reply
    /// when M modules with the same number (0–2) of trailing bytes fill INFO exactly, otherwise one
    /// module whose trailing bytes are kept.
    ///
    /// # Errors
    /// A truncation naming the field when INFO is too short for one module.
    pub fn parse(info: &mut Info<'_>) -> Result<Self, Error> {
        let info_flag = info.u8("INFOFLAG")?;
        let command = info.u8("command")?;
        if command > 1 && command != 0xFF {
            for extra in 0..=2 {
                if let Some(modules) = exactly(info, command, |i| ModuleAlarm::parse(i, extra)) {
                    return Ok(Self { info_flag, command, modules });
                }
            }
        }
        let mut module = ModuleAlarm::parse(info, 0)?;
        module.extra = info.rest();
        Ok(Self { info_flag, command, modules: vec![module] })
    }

    /// Encodes the reply INFO.
    ///
    /// # Errors
    /// [`Error::TooMany`] for more than 255 cells or sensors.
    pub fn emit(&self, w: &mut FrameWriter<'_>) -> Result<(), Error> {
        w.u8(self.info_flag).u8(self.command);
        self.modules.iter().try_for_each(|m| m.emit(w))
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for ModuleAnalog {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("ModuleAnalog", 10)?;
        st.serialize_field("cells_mv", &self.cells)?;
        st.serialize_field("temps_dc", &self.temps)?;
        st.serialize_field("current_ma", &self.current)?;
        st.serialize_field("voltage_mv", &self.voltage)?;
        st.serialize_field("remaining_mah", &self.remaining)?;
        st.serialize_field("total_mah", &self.total)?;
        st.serialize_field("cycles", &self.cycles)?;
        st.serialize_field("soc_pct", &self.soc())?;
        st.serialize_field("user_defined", &self.user_defined)?;
        st.serialize_field("extra", &self.extra)?;
        st.end()
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for ModuleAlarm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use ascii_envelope::flags::{CellMask, FlagList};
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("ModuleAlarm", 11)?;
        st.serialize_field("cell_warns", &self.cell_warns)?;
        st.serialize_field("temp_warns", &self.temp_warns)?;
        st.serialize_field("charge_current_warn", &self.charge_current_warn)?;
        st.serialize_field("voltage_warn", &self.voltage_warn)?;
        st.serialize_field("discharge_current_warn", &self.discharge_current_warn)?;
        st.serialize_field("status", &self.status_bytes())?;
        st.serialize_field("status1_flags", &FlagList(self.status1))?;
        st.serialize_field("status2_flags", &FlagList(self.status2))?;
        st.serialize_field("status3_flags", &FlagList(self.status3))?;
        st.serialize_field("cell_errors", &CellMask(self.cell_errors))?;
        st.serialize_field("extra", &self.extra)?;
        st.end()
    }
}
