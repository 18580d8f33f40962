//! 0xA1, one history record (layout from esphome's comments; not in the Pace PDF).
//!
//! ```text
//! YY-2000 MM DD hh mm ss (1 each)  n(1) cell mV(2)×n  t(1) temp 0.1K(2)×t  current 10mA(2, signed)
//! voltage mV(2)  remaining 10mAh(2)  full 10mAh(2)  [12 bytes of alarm/protect/fault data, raw]
//! ```

use ascii_envelope::{FrameWriter, Info};
use units::{CentiAmpHours, CentiAmps, DeciKelvin, Millivolts, Pace};

use crate::{DateTime, Error, analog::count};

/// One record of the BMS's history log.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct HistoryRecord {
    /// When the record was written.
    pub time: DateTime,
    /// Cell voltages, u16 mV each.
    #[cfg_attr(feature = "serde", serde(rename = "cells_mv"))]
    pub cells: Vec<Millivolts>,
    /// Temperatures, u16 0.1 K (offset 2730) each.
    #[cfg_attr(feature = "serde", serde(rename = "temps_dc"))]
    pub temps: Vec<DeciKelvin<Pace>>,
    /// Current, i16 10 mA.
    #[cfg_attr(feature = "serde", serde(rename = "current_ma"))]
    pub current: CentiAmps,
    /// Pack voltage, u16 mV.
    #[cfg_attr(feature = "serde", serde(rename = "voltage_mv"))]
    pub voltage: Millivolts,
    /// Remaining capacity, u16 10 mAh.
    #[cfg_attr(feature = "serde", serde(rename = "remaining_mah"))]
    pub remaining: CentiAmpHours,
    /// Full capacity, u16 10 mAh.
    #[cfg_attr(feature = "serde", serde(rename = "full_mah"))]
    pub full: CentiAmpHours,
    /// The rest of the record (alarm, protection and fault data of unknown layout), raw.
    pub extra: Vec<u8>,
}

impl HistoryRecord {
    pub(crate) fn parse(info: &mut Info<'_>) -> Result<Self, Error> {
        let [year, month, day, hour, minute, second] = info.array::<6>("record time")?;
        let n = info.u8("cell count")?;
        let cells = info.u16s("cell voltages", usize::from(n), Millivolts::from_raw)?;
        let t = info.u8("temperature count")?;
        let temps = info.u16s("temperatures", usize::from(t), DeciKelvin::from_raw)?;
        Ok(Self {
            time: DateTime { year, month, day, hour, minute, second },
            cells,
            temps,
            current: CentiAmps::from_raw(info.i16("current")?),
            voltage: Millivolts::from_raw(info.u16("pack voltage")?),
            remaining: CentiAmpHours::from_raw(info.u16("remaining capacity")?),
            full: CentiAmpHours::from_raw(info.u16("full capacity")?),
            extra: info.rest(),
        })
    }

    pub(crate) fn emit(&self, w: &mut FrameWriter<'_>) -> Result<(), Error> {
        let t = &self.time;
        w.bytes(&[t.year, t.month, t.day, t.hour, t.minute, t.second]);
        w.u8(count("cells", self.cells.len())?);
        self.cells.iter().for_each(|c| {
            w.u16(c.raw());
        });
        w.u8(count("temperatures", self.temps.len())?);
        self.temps.iter().for_each(|c| {
            w.u16(c.raw());
        });
        w.i16(self.current.raw()).u16(self.voltage.raw()).u16(self.remaining.raw()).u16(self.full.raw());
        w.bytes(&self.extra);
        Ok(())
    }
}
