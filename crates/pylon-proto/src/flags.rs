//! Flag bytes of the Pylontech replies, named as in the V3.3 spec.

use bitflags::bitflags;

pub use ascii_envelope::flags::{FlagName, flag_names};

bitflags! {
    /// 0x44 Status1: protections (V3.3).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct Status1: u8 {
        /// b0: module over-voltage.
        const MODULE_OVER_VOLTAGE = 1 << 0;
        /// b1: cell under-voltage.
        const CELL_UNDER_VOLTAGE = 1 << 1;
        /// b2: charge over-current.
        const CHARGE_OVER_CURRENT = 1 << 2;
        /// b4: discharge over-current.
        const DISCHARGE_OVER_CURRENT = 1 << 4;
        /// b5: discharge over-temperature.
        const DISCHARGE_OVER_TEMP = 1 << 5;
        /// b6: charge over-temperature.
        const CHARGE_OVER_TEMP = 1 << 6;
        /// b7: module under-voltage.
        const MODULE_UNDER_VOLTAGE = 1 << 7;
        const _ = !0;
    }
}

bitflags! {
    /// 0x44 Status2: switches.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct Status2: u8 {
        /// b0: pre-charge MOSFET (reserved).
        const PRE_MOSFET = 1 << 0;
        /// b1: charge MOSFET on.
        const CHARGE_MOSFET_ON = 1 << 1;
        /// b2: discharge MOSFET on.
        const DISCHARGE_MOSFET_ON = 1 << 2;
        /// b3: using battery power.
        const USING_BATTERY_POWER = 1 << 3;
        const _ = !0;
    }
}

bitflags! {
    /// 0x44 Status3: current and charge state.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct Status3: u8 {
        /// b0: buzzer on.
        const BUZZER = 1 << 0;
        /// b3: fully charged (SOC 100 %).
        const FULLY_CHARGED = 1 << 3;
        /// b5: heater on.
        const HEATER = 1 << 5;
        /// b6: effective discharge current (< −0.1 A).
        const EFFECTIVE_DISCHARGE_CURRENT = 1 << 6;
        /// b7: effective charge current (> 0.1 A).
        const EFFECTIVE_CHARGE_CURRENT = 1 << 7;
        const _ = !0;
    }
}

bitflags! {
    /// The status byte of 0x92 and 0x63 (V3.3 §3.6).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct ManagementFlags: u8 {
        /// b3: full-charge request (SOC has not reached 97 % in 30 days).
        const FULL_CHARGE_REQUEST = 1 << 3;
        /// b4: charge immediately 2 ("强充2", SOC 9–13 %).
        const CHARGE_IMMEDIATELY_2 = 1 << 4;
        /// b5: charge immediately 1 ("强充1", SOC 5–9 % on US3000B).
        const CHARGE_IMMEDIATELY_1 = 1 << 5;
        /// b6: discharge enable.
        const DISCHARGE_ENABLE = 1 << 6;
        /// b7: charge enable.
        const CHARGE_ENABLE = 1 << 7;
        const _ = !0;
    }
}

bitflags! {
    /// First byte of a 0x62 alarm or protection pair, with the bit meanings of Pylontech's CAN
    /// frame 0x359 (no official 0x62 text is known).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct SystemAlarm1: u8 {
        /// b1: over-voltage.
        const OVER_VOLTAGE = 1 << 1;
        /// b2: under-voltage.
        const UNDER_VOLTAGE = 1 << 2;
        /// b3: over-temperature.
        const OVER_TEMPERATURE = 1 << 3;
        /// b4: under-temperature.
        const UNDER_TEMPERATURE = 1 << 4;
        /// b7: discharge over-current.
        const DISCHARGE_OVER_CURRENT = 1 << 7;
        const _ = !0;
    }
}

bitflags! {
    /// Second byte of a 0x62 alarm or protection pair (CAN 0x359 meanings).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct SystemAlarm2: u8 {
        /// b0: charge over-current.
        const CHARGE_OVER_CURRENT = 1 << 0;
        /// b3: system (BMS) fault.
        const SYSTEM_FAULT = 1 << 3;
        const _ = !0;
    }
}
