//! The state bytes of the 0x44 reply as flag sets (PROTOCOLS.md §2, Pace PDF tables A.19–A.25).
//!
//! Unknown bits are kept as sent (`from_bits_retain`), never dropped.

use bitflags::bitflags;

bitflags! {
    /// Protect state 1 (PDF A.19).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct Protect1: u8 {
        /// b0: cell over-voltage protection.
        const HIGH_CELL_VOLTAGE = 1 << 0;
        /// b1: cell under-voltage protection.
        const LOW_CELL_VOLTAGE = 1 << 1;
        /// b2: pack over-voltage protection.
        const HIGH_TOTAL_VOLTAGE = 1 << 2;
        /// b3: pack under-voltage protection.
        const LOW_TOTAL_VOLTAGE = 1 << 3;
        /// b4: charge over-current protection.
        const CHARGE_OVER_CURRENT = 1 << 4;
        /// b5: discharge over-current protection.
        const DISCHARGE_OVER_CURRENT = 1 << 5;
        /// b6: short-circuit protection.
        const SHORT_CIRCUIT = 1 << 6;
        const _ = !0;
    }
}

bitflags! {
    /// Protect state 2 (PDF A.20).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct Protect2: u8 {
        /// b0: charge over-temperature.
        const HIGH_CHARGE_TEMP = 1 << 0;
        /// b1: discharge over-temperature.
        const HIGH_DISCHARGE_TEMP = 1 << 1;
        /// b2: charge under-temperature.
        const LOW_CHARGE_TEMP = 1 << 2;
        /// b3: discharge under-temperature.
        const LOW_DISCHARGE_TEMP = 1 << 3;
        /// b4: MOSFET over-temperature.
        const HIGH_MOSFET_TEMP = 1 << 4;
        /// b5: environment over-temperature.
        const HIGH_ENVIRONMENT_TEMP = 1 << 5;
        /// b6: environment under-temperature.
        const LOW_ENVIRONMENT_TEMP = 1 << 6;
        /// b7: "Fully": the pack was fully charged (and its capacity recalibrated); not a protection.
        const FULLY = 1 << 7;
    }
}

bitflags! {
    /// System state (PDF A.21 "instructions state"). Names follow what esphome observed on real packs;
    /// the PDF's names are in each bit's doc.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct SystemState: u8 {
        /// b0: PDF "current limit indicate"; esphome: the charge current limiter is turned off.
        const CURRENT_LIMIT = 1 << 0;
        /// b1: charge MOSFET on.
        const CHARGE_MOSFET_ON = 1 << 1;
        /// b2: discharge MOSFET on.
        const DISCHARGE_MOSFET_ON = 1 << 2;
        /// b3: PDF "pack indicate"; esphome: discharging.
        const DISCHARGING = 1 << 3;
        /// b4: terminals reversed.
        const REVERSED = 1 << 4;
        /// b5: PDF "ACin"; esphome: charging.
        const CHARGING = 1 << 5;
        /// b7: heartbeat indicator.
        const HEART = 1 << 7;
        const _ = !0;
    }
}

bitflags! {
    /// Control state (PDF A.22; esphome "configuration status"). Names follow esphome's observations.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct ControlState: u8 {
        /// b0: buzzer warning enabled.
        const BUZZER = 1 << 0;
        /// b1 (undocumented, esphome): the charge MOSFET was turned off by command.
        const CHARGE_MOSFET_OFF = 1 << 1;
        /// b2 (undocumented, esphome): the discharge MOSFET was turned off by command.
        const DISCHARGE_MOSFET_OFF = 1 << 2;
        /// b3: current-limit gear low.
        const LOW_GEAR = 1 << 3;
        /// b4: PDF "current-limit function, 1 = disabled"; esphome: the limiter is enabled.
        const CURRENT_LIMITER = 1 << 4;
        /// b5: PDF "LED warn function, 1 = disabled"; esphome: LED alarm enabled.
        const LED_ALARM = 1 << 5;
        const _ = !0;
    }
}

bitflags! {
    /// Fault state (PDF A.23).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct FaultState: u8 {
        /// b0: charge MOSFET fault.
        const CHARGE_MOSFET = 1 << 0;
        /// b1: discharge MOSFET fault.
        const DISCHARGE_MOSFET = 1 << 1;
        /// b2: NTC (temperature sensor) fault.
        const NTC = 1 << 2;
        /// b4: cell fault.
        const CELL = 1 << 4;
        /// b5: sampling (ADC) fault.
        const SAMPLING = 1 << 5;
        const _ = !0;
    }
}

bitflags! {
    /// Warn state 1 (PDF A.24).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct Warn1: u8 {
        /// b0: cell voltage high.
        const HIGH_CELL_VOLTAGE = 1 << 0;
        /// b1: cell voltage low.
        const LOW_CELL_VOLTAGE = 1 << 1;
        /// b2: pack voltage high.
        const HIGH_TOTAL_VOLTAGE = 1 << 2;
        /// b3: pack voltage low.
        const LOW_TOTAL_VOLTAGE = 1 << 3;
        /// b4: charge current high.
        const CHARGE_CURRENT = 1 << 4;
        /// b5: discharge current high.
        const DISCHARGE_CURRENT = 1 << 5;
        const _ = !0;
    }
}

bitflags! {
    /// Warn state 2 (PDF A.25).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct Warn2: u8 {
        /// b0: charge temperature high.
        const HIGH_CHARGE_TEMP = 1 << 0;
        /// b1: discharge temperature high.
        const HIGH_DISCHARGE_TEMP = 1 << 1;
        /// b2: charge temperature low.
        const LOW_CHARGE_TEMP = 1 << 2;
        /// b3: discharge temperature low.
        const LOW_DISCHARGE_TEMP = 1 << 3;
        /// b4: environment temperature high.
        const HIGH_ENVIRONMENT_TEMP = 1 << 4;
        /// b5: environment temperature low.
        const LOW_ENVIRONMENT_TEMP = 1 << 5;
        /// b6: MOSFET temperature high.
        const HIGH_MOSFET_TEMP = 1 << 6;
        /// b7: low power (low SOC).
        const LOW_SOC = 1 << 7;
    }
}

/// The two balance-state bytes, kept raw because the sources disagree on their bit order.
///
/// * The Pace PDF: state 1 holds cells 1–8, state 2 cells 9–16, bit 0 = lowest cell.
/// * esphome reads both bytes as one big-endian u16 with bit 0 = cell 1, so state 2 holds cells 1–8.
///
/// No captured frame has a balancing bit set; [`Balance::cells_pdf`] is the default reading and
/// [`Balance::cells_esphome`] the alternative.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Balance(pub [u8; 2]);

impl Balance {
    /// Balancing cells as a mask, bit *n* = cell *n + 1*, per the Pace PDF.
    pub fn cells_pdf(self) -> u16 {
        u16::from_le_bytes(self.0)
    }
    /// Balancing cells as a mask, bit *n* = cell *n + 1*, per esphome.
    pub fn cells_esphome(self) -> u16 {
        u16::from_be_bytes(self.0)
    }
    /// Whether any balancing bit is set (the same under both readings).
    pub fn any(self) -> bool {
        self.0 != [0, 0]
    }
}

#[cfg(feature = "serde")]
pub(crate) use ascii_envelope::flags::{CellMask, FlagList};
pub use ascii_envelope::flags::{FlagName, flag_names};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_bits_are_kept_and_named_by_position() {
        let p = Protect1::from_bits_retain(0x81);
        assert_eq!(p.bits(), 0x81);
        let names: Vec<String> = flag_names(p).map(|n| n.to_string()).collect();
        assert_eq!(names, ["high_cell_voltage", "bit7"]);
    }

    #[test]
    fn system_state_of_capture_p04() {
        let s = SystemState::from_bits_retain(0x0E);
        let names: Vec<String> = flag_names(s).map(|n| n.to_string()).collect();
        assert_eq!(names, ["charge_mosfet_on", "discharge_mosfet_on", "discharging"]);
    }

    #[test]
    fn balance_readings_differ_in_byte_order() {
        let b = Balance([0x01, 0x00]);
        assert_eq!(b.cells_pdf(), 0x0001);
        assert_eq!(b.cells_esphome(), 0x0100);
    }
}
