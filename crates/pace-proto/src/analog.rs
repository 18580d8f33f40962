//! 0x42, analog values (PROTOCOLS.md §1.5, Pace PDF A.13/A.14).
//!
//! ```text
//! INFOFLAG(1)=00  M(1): pack count (request FF) or echoed pack number
//! per pack: n(1) cell mV(2)×n  t(1) temp 0.1K(2)×t  current 10mA(2, signed)  voltage mV(2)
//!           remaining 10mAh(2)  P(1)  full 10mAh(2)  cycles(2)  design 10mAh(2)  [vendor bytes]
//! ```

use ascii_envelope::{FrameWriter, Info};
use units::{CentiAmpHours, CentiAmps, DeciKelvin, Millivolts, Pace, Percent};

use crate::Error;

/// The reply to 0x42: one or several packs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct AnalogReply {
    /// INFOFLAG (00 in every capture).
    pub info_flag: u8,
    /// The pack count when the request asked for `FF`, else the pack number echoed.
    pub command: u8,
    /// One entry per pack, in wire order.
    pub packs: Vec<PackAnalog>,
}

/// One pack's analog block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackAnalog {
    /// Cell voltages, u16 mV each.
    pub cells: Vec<Millivolts>,
    /// Temperatures, u16 0.1 K (offset 2730) each; usually cell 1–4, MOSFET, environment.
    pub temps: Vec<DeciKelvin<Pace>>,
    /// Pack current, i16 10 mA, charge positive.
    pub current: CentiAmps,
    /// Pack voltage, u16 mV.
    pub voltage: Millivolts,
    /// Remaining capacity, u16 10 mAh.
    pub remaining: CentiAmpHours,
    /// The user-defined count P (normally 3; 9 on EASUN packs; 2 seen in a multi-pack reply).
    pub user_defined: u8,
    /// Full capacity, u16 10 mAh.
    pub full: CentiAmpHours,
    /// Charge cycles, u16.
    pub cycles: u16,
    /// Design capacity, u16 10 mAh.
    pub design: CentiAmpHours,
    /// Vendor bytes after the design capacity (14 on EASUN packs with P = 9), kept as sent.
    pub extra: Vec<u8>,
}

impl PackAnalog {
    /// State of charge, remaining / full, rounded down and capped at 100 %; `None` if full is 0.
    pub fn soc(&self) -> Option<Percent> {
        Percent::ratio_capped(u32::from(self.remaining.raw()), u32::from(self.full.raw()))
    }

    /// State of health, full / design capped at 100 %; `None` if design is 0.
    pub fn soh(&self) -> Option<Percent> {
        Percent::ratio_capped(u32::from(self.full.raw()), u32::from(self.design.raw()))
    }

    /// The lowest and highest cell with their 1-based numbers.
    pub fn cell_extremes(&self) -> Option<((usize, Millivolts), (usize, Millivolts))> {
        let min = self.cells.iter().enumerate().min_by_key(|(_, v)| **v)?;
        let max = self.cells.iter().enumerate().max_by_key(|(_, v)| **v)?;
        Some(((min.0 + 1, *min.1), (max.0 + 1, *max.1)))
    }

    fn parse(info: &mut Info<'_>, extra: usize) -> Result<Self, Error> {
        let n = info.u8("cell count")?;
        let cells = info.u16s("cell voltages", usize::from(n), Millivolts::from_raw)?;
        let t = info.u8("temperature count")?;
        let temps = info.u16s("temperatures", usize::from(t), DeciKelvin::from_raw)?;
        let current = CentiAmps::from_raw(info.i16("current")?);
        let voltage = Millivolts::from_raw(info.u16("pack voltage")?);
        let remaining = CentiAmpHours::from_raw(info.u16("remaining capacity")?);
        let user_defined = info.u8("user-defined count")?;
        let full = CentiAmpHours::from_raw(info.u16("full capacity")?);
        let cycles = info.u16("cycle count")?;
        let design = CentiAmpHours::from_raw(info.u16("design capacity")?);
        let mut vendor = Vec::new();
        info.bytes_into("vendor bytes", extra, &mut vendor)?;
        Ok(Self {
            cells,
            temps,
            current,
            voltage,
            remaining,
            user_defined,
            full,
            cycles,
            design,
            extra: vendor,
        })
    }

    fn emit(&self, w: &mut FrameWriter<'_>) -> Result<(), Error> {
        w.u8(count("cells", self.cells.len())?);
        for c in &self.cells {
            w.u16(c.raw());
        }
        w.u8(count("temperatures", self.temps.len())?);
        for t in &self.temps {
            w.u16(t.raw());
        }
        w.i16(self.current.raw()).u16(self.voltage.raw()).u16(self.remaining.raw());
        w.u8(self.user_defined).u16(self.full.raw()).u16(self.cycles).u16(self.design.raw());
        w.bytes(&self.extra);
        Ok(())
    }
}

/// Vendor bytes after the design capacity implied by P, as seen in captures: P = 9 (EASUN) and
/// P = 4 (Eenovance) add 14, P = 2 (Greenrich, FSP) adds 1, the standard P = 3 none.
fn vendor_bytes_for(user_defined: u8) -> usize {
    match user_defined {
        9 | 4 => 14,
        2 => 1,
        _ => 0,
    }
}

pub(crate) fn count(what: &'static str, n: usize) -> Result<u8, Error> {
    u8::try_from(n).map_err(|_| Error::TooMany { what, count: n })
}

/// P (the user-defined count) of the pack block starting at `info`, or `None` if INFO is too short.
fn peek_user_defined(info: &Info<'_>) -> Option<u8> {
    let mut probe = info.clone();
    let n = probe.u8("").ok()?;
    for _ in 0..n {
        probe.u16("").ok()?;
    }
    let t = probe.u8("").ok()?;
    for _ in 0..(3 + usize::from(t)) {
        probe.u16("").ok()?;
    }
    probe.u8("").ok()
}

impl AnalogReply {
    /// Decodes a 0x42 reply INFO.
    ///
    /// The second byte is the pack count M after a request for `FF`, or the echoed pack number.
    /// When M packs fill INFO exactly, the reply is read as M packs; otherwise as one pack, whose
    /// trailing bytes are vendor bytes. Vendor bytes per pack in a multi-pack reply are what P
    /// implies (14 for P = 9), or else the one count that makes all M packs fill INFO exactly.
    ///
    /// # Errors
    /// A [`Error::Frame`] truncation naming the field when INFO is too short for one pack.
    pub fn parse(info: &mut Info<'_>) -> Result<Self, Error> {
        let info_flag = info.u8("INFOFLAG")?;
        let command = info.u8("command")?;
        if command > 1 && command != 0xFF {
            if let Some(packs) = Self::parse_packs(info, command) {
                return Ok(Self { info_flag, command, packs });
            }
        }
        // One pack: everything after its design capacity is vendor bytes.
        let mut pack = PackAnalog::parse(info, 0)?;
        pack.extra = info.rest();
        Ok(Self { info_flag, command, packs: vec![pack] })
    }

    /// Tries to read exactly `m` packs filling INFO; `None` if no vendor-byte count does.
    fn parse_packs(info: &mut Info<'_>, m: u8) -> Option<Vec<PackAnalog>> {
        let implied = peek_user_defined(info).map_or(0, vendor_bytes_for);
        let candidates = core::iter::once(implied).chain((0..=32).filter(move |e| *e != implied));
        for extra in candidates {
            let mut trial = info.clone();
            let packs: Result<Vec<_>, _> = (0..m).map(|_| PackAnalog::parse(&mut trial, extra)).collect();
            if let Ok(packs) = packs {
                if trial.is_empty() {
                    *info = trial;
                    return Some(packs);
                }
            }
        }
        None
    }

    /// Encodes the reply INFO.
    ///
    /// # Errors
    /// [`Error::TooMany`] when a pack has more than 255 cells or temperatures.
    pub fn emit(&self, w: &mut FrameWriter<'_>) -> Result<(), Error> {
        w.u8(self.info_flag).u8(self.command);
        for p in &self.packs {
            p.emit(w)?;
        }
        Ok(())
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for PackAnalog {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("PackAnalog", 13)?;
        st.serialize_field("cells_mv", &self.cells)?;
        st.serialize_field("temps_dc", &self.temps)?;
        st.serialize_field("current_ma", &self.current)?;
        st.serialize_field("voltage_mv", &self.voltage)?;
        st.serialize_field("remaining_mah", &self.remaining)?;
        st.serialize_field("full_mah", &self.full)?;
        st.serialize_field("design_mah", &self.design)?;
        st.serialize_field("cycles", &self.cycles)?;
        st.serialize_field("soc_pct", &self.soc())?;
        st.serialize_field("soh_pct", &self.soh())?;
        st.serialize_field("user_defined", &self.user_defined)?;
        st.serialize_field("extra", &self.extra)?;
        st.end()
    }
}
