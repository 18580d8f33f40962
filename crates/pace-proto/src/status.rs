//! 0x44, warnings, protections and states (PROTOCOLS.md §1.6 and §2, Pace PDF A.17/A.18).
//!
//! ```text
//! INFOFLAG(1)=00  M(1): pack count (request FF) or echoed pack number
//! per pack: n(1) cell warn(1)×n  t(1) temp warn(1)×t  charge-current warn(1) voltage warn(1)
//!           discharge-current warn(1) protect1 protect2 system control fault balance1 balance2
//!           warn1 warn2  [vendor bytes: one more on EASUN packs]
//! ```

use ascii_envelope::{FrameWriter, Info};

use crate::Error;
use crate::analog::count;
use crate::flags::{Balance, ControlState, FaultState, Protect1, Protect2, SystemState, Warn1, Warn2};

/// A warning value byte: 00 normal, 01 below the lower limit, 02 above the upper limit, 80–EF user
/// defined, F0 other fault.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct WarnValue(u8);

impl WarnValue {
    /// Normal.
    pub const NORMAL: Self = Self(0x00);
    /// Below the lower limit.
    pub const BELOW_LOWER: Self = Self(0x01);
    /// Above the upper limit.
    pub const ABOVE_UPPER: Self = Self(0x02);
    /// Other fault.
    pub const OTHER_FAULT: Self = Self(0xF0);

    /// Wraps a wire value.
    pub const fn from_raw(raw: u8) -> Self {
        Self(raw)
    }
    /// The wire value.
    pub const fn raw(self) -> u8 {
        self.0
    }
    /// Whether this is anything but normal.
    pub const fn is_alarm(self) -> bool {
        self.0 != 0
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for WarnValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.0)
    }
}

/// The reply to 0x44: one or several packs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct StatusReply {
    /// INFOFLAG (00 in every capture).
    pub info_flag: u8,
    /// The pack count when the request asked for `FF`, else the pack number echoed.
    pub command: u8,
    /// One entry per pack, in wire order.
    pub packs: Vec<PackStatus>,
}

/// One pack's status block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PackStatus {
    /// One warning per cell.
    pub cell_warns: Vec<WarnValue>,
    /// One warning per temperature sensor, in the 0x42 order.
    pub temp_warns: Vec<WarnValue>,
    /// Charge-current warning.
    pub charge_current_warn: WarnValue,
    /// Total-voltage warning.
    pub voltage_warn: WarnValue,
    /// Discharge-current warning.
    pub discharge_current_warn: WarnValue,
    /// Protect state 1.
    pub protect1: Protect1,
    /// Protect state 2.
    pub protect2: Protect2,
    /// System state.
    pub system: SystemState,
    /// Control state.
    pub control: ControlState,
    /// Fault state.
    pub fault: FaultState,
    /// Balance state 1 and 2, raw.
    pub balance: Balance,
    /// Warn state 1.
    pub warn1: Warn1,
    /// Warn state 2.
    pub warn2: Warn2,
    /// Vendor bytes after warn state 2 (one on EASUN packs), kept as sent.
    pub extra: Vec<u8>,
}

impl PackStatus {
    fn parse(info: &mut Info<'_>, extra: usize) -> Result<Self, Error> {
        let warns = |info: &mut Info<'_>, field: &'static str| -> Result<Vec<WarnValue>, Error> {
            let n = info.u8(field)?;
            (0..n).map(|_| Ok(WarnValue(info.u8(field)?))).collect()
        };
        let cell_warns = warns(info, "cell warnings")?;
        let temp_warns = warns(info, "temperature warnings")?;
        let [cc, v, dc, p1, p2, sys, ctl, fault, b1, b2, w1, w2] = info.array::<12>("state bytes")?;
        let mut vendor = Vec::new();
        info.bytes_into("vendor bytes", extra, &mut vendor)?;
        Ok(Self {
            cell_warns,
            temp_warns,
            charge_current_warn: WarnValue(cc),
            voltage_warn: WarnValue(v),
            discharge_current_warn: WarnValue(dc),
            protect1: Protect1::from_bits_retain(p1),
            protect2: Protect2::from_bits_retain(p2),
            system: SystemState::from_bits_retain(sys),
            control: ControlState::from_bits_retain(ctl),
            fault: FaultState::from_bits_retain(fault),
            balance: Balance([b1, b2]),
            warn1: Warn1::from_bits_retain(w1),
            warn2: Warn2::from_bits_retain(w2),
            extra: vendor,
        })
    }

    fn emit(&self, w: &mut FrameWriter<'_>) -> Result<(), Error> {
        w.u8(count("cell warnings", self.cell_warns.len())?);
        self.cell_warns.iter().for_each(|x| {
            w.u8(x.0);
        });
        w.u8(count("temperature warnings", self.temp_warns.len())?);
        self.temp_warns.iter().for_each(|x| {
            w.u8(x.0);
        });
        w.bytes(&[
            self.charge_current_warn.0,
            self.voltage_warn.0,
            self.discharge_current_warn.0,
            self.protect1.bits(),
            self.protect2.bits(),
            self.system.bits(),
            self.control.bits(),
            self.fault.bits(),
            self.balance.0[0],
            self.balance.0[1],
            self.warn1.bits(),
            self.warn2.bits(),
        ]);
        w.bytes(&self.extra);
        Ok(())
    }
}

impl StatusReply {
    /// Decodes a 0x44 reply INFO, with the same multi-pack and vendor-byte rules as
    /// [`crate::AnalogReply::parse`] (one trailing byte per pack is the EASUN variant).
    ///
    /// # Errors
    /// A [`Error::Frame`] truncation naming the field when INFO is too short for one pack.
    pub fn parse(info: &mut Info<'_>) -> Result<Self, Error> {
        let info_flag = info.u8("INFOFLAG")?;
        let command = info.u8("command")?;
        if command > 1 && command != 0xFF {
            for extra in 0..=8 {
                let mut trial = info.clone();
                let packs: Result<Vec<_>, _> =
                    (0..command).map(|_| PackStatus::parse(&mut trial, extra)).collect();
                if let (Ok(packs), true) = (packs, trial.is_empty()) {
                    *info = trial;
                    return Ok(Self { info_flag, command, packs });
                }
            }
        }
        let mut pack = PackStatus::parse(info, 0)?;
        pack.extra = info.rest();
        Ok(Self { info_flag, command, packs: vec![pack] })
    }

    /// Encodes the reply INFO.
    ///
    /// # Errors
    /// [`Error::TooMany`] when a pack has more than 255 cells or sensors.
    pub fn emit(&self, w: &mut FrameWriter<'_>) -> Result<(), Error> {
        w.u8(self.info_flag).u8(self.command);
        for p in &self.packs {
            p.emit(w)?;
        }
        Ok(())
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for PackStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use crate::flags::{CellMask, FlagList};
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("PackStatus", 26)?;
        st.serialize_field("cell_warns", &self.cell_warns)?;
        st.serialize_field("temp_warns", &self.temp_warns)?;
        st.serialize_field("charge_current_warn", &self.charge_current_warn)?;
        st.serialize_field("voltage_warn", &self.voltage_warn)?;
        st.serialize_field("discharge_current_warn", &self.discharge_current_warn)?;
        st.serialize_field("protect1", &self.protect1.bits())?;
        st.serialize_field("protect2", &self.protect2.bits())?;
        st.serialize_field("system", &self.system.bits())?;
        st.serialize_field("control", &self.control.bits())?;
        st.serialize_field("fault", &self.fault.bits())?;
        st.serialize_field("balance1", &self.balance.0[0])?;
        st.serialize_field("balance2", &self.balance.0[1])?;
        st.serialize_field("warn1", &self.warn1.bits())?;
        st.serialize_field("warn2", &self.warn2.bits())?;
        st.serialize_field("protect1_flags", &FlagList(self.protect1))?;
        st.serialize_field("protect2_flags", &FlagList(self.protect2))?;
        st.serialize_field("system_flags", &FlagList(self.system))?;
        st.serialize_field("control_flags", &FlagList(self.control))?;
        st.serialize_field("fault_flags", &FlagList(self.fault))?;
        st.serialize_field("warn1_flags", &FlagList(self.warn1))?;
        st.serialize_field("warn2_flags", &FlagList(self.warn2))?;
        st.serialize_field("balancing_cells", &CellMask(self.balance.cells_pdf()))?;
        st.serialize_field("balancing_cells_esphome", &CellMask(self.balance.cells_esphome()))?;
        st.serialize_field("extra", &self.extra)?;
        st.end()
    }
}
