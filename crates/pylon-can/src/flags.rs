//! The bit fields: 0x359's protections and alarms, 0x35C's requests, and the 2-bit pairs of
//! 0x35A.

use bitflags::bitflags;

bitflags! {
    /// 0x359 bytes 0-1 (byte 1 is the high byte): what the battery protects against now.
    /// Bit positions from the Pylontech V1.2 text (system error at byte 1 bit 3).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct Protection: u16 {
        /// Byte 0 b1: cell or module over-voltage.
        const OVER_VOLTAGE = 1 << 1;
        /// Byte 0 b2: cell or module under-voltage.
        const UNDER_VOLTAGE = 1 << 2;
        /// Byte 0 b3: cell over-temperature.
        const OVER_TEMPERATURE = 1 << 3;
        /// Byte 0 b4: cell under-temperature.
        const UNDER_TEMPERATURE = 1 << 4;
        /// Byte 0 b7: discharge over-current.
        const DISCHARGE_OVER_CURRENT = 1 << 7;
        /// Byte 1 b0: charge over-current.
        const CHARGE_OVER_CURRENT = 1 << 8;
        /// Byte 1 b3: system error.
        const SYSTEM_ERROR = 1 << 11;
        const _ = !0;
    }
}

bitflags! {
    /// 0x359 bytes 2-3 (byte 3 is the high byte): warnings, below the protections.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct Alarm: u16 {
        /// Byte 2 b1: cell or module high voltage.
        const HIGH_VOLTAGE = 1 << 1;
        /// Byte 2 b2: cell or module low voltage.
        const LOW_VOLTAGE = 1 << 2;
        /// Byte 2 b3: cell high temperature.
        const HIGH_TEMPERATURE = 1 << 3;
        /// Byte 2 b4: cell low temperature.
        const LOW_TEMPERATURE = 1 << 4;
        /// Byte 2 b7: discharge high current.
        const DISCHARGE_HIGH_CURRENT = 1 << 7;
        /// Byte 3 b0: charge high current.
        const CHARGE_HIGH_CURRENT = 1 << 8;
        /// Byte 3 b3: internal communication fail.
        const INTERNAL_COMMUNICATION_FAIL = 1 << 11;
        const _ = !0;
    }
}

bitflags! {
    /// 0x35C byte 0: what the battery asks of the inverter.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct RequestFlags: u8 {
        /// b3: full charge request (SOC has not reached 97 % in 30 days).
        const FULL_CHARGE = 1 << 3;
        /// b4: force charge II (Pylontech's name; Lux and Sol-Ark call it request 1).
        const FORCE_CHARGE_2 = 1 << 4;
        /// b5: force charge I (Lux and Sol-Ark: request 2).
        const FORCE_CHARGE_1 = 1 << 5;
        /// b6: discharge enable.
        const DISCHARGE_ENABLE = 1 << 6;
        /// b7: charge enable.
        const CHARGE_ENABLE = 1 << 7;
        const _ = !0;
    }
}

/// One alarm or warning of SMA's 0x35A, by its pair's position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum AlarmKind {
    /// General.
    General = 0,
    /// Battery high voltage.
    HighVoltage = 1,
    /// Battery low voltage.
    LowVoltage = 2,
    /// Battery high temperature.
    HighTemperature = 3,
    /// Battery low temperature.
    LowTemperature = 4,
    /// High temperature while charging.
    HighTemperatureCharge = 5,
    /// Low temperature while charging.
    LowTemperatureCharge = 6,
    /// High discharge current.
    HighDischargeCurrent = 7,
    /// High charge current.
    HighChargeCurrent = 8,
    /// Contactor.
    Contactor = 9,
    /// Short circuit.
    ShortCircuit = 10,
    /// BMS internal.
    BmsInternal = 11,
    /// Cell imbalance.
    CellImbalance = 12,
}

impl AlarmKind {
    /// Every kind, in pair order.
    pub const ALL: [Self; 13] = [
        Self::General,
        Self::HighVoltage,
        Self::LowVoltage,
        Self::HighTemperature,
        Self::LowTemperature,
        Self::HighTemperatureCharge,
        Self::LowTemperatureCharge,
        Self::HighDischargeCurrent,
        Self::HighChargeCurrent,
        Self::Contactor,
        Self::ShortCircuit,
        Self::BmsInternal,
        Self::CellImbalance,
    ];
}

/// Four bytes of 2-bit pairs (SMA's 0x35A, as Victron reads it too): `01` raised, `10` cleared
/// ("OK"), `00` not reported (ignored by the inverter), `11` ignored. Byte 0's low bits are pair 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct AlarmPairs(pub u32);

impl AlarmPairs {
    /// Every pair "not reported".
    pub const NONE: Self = Self(0);

    /// Reports `kind`: `Some(true)` raised, `Some(false)` cleared, `None` not reported.
    pub fn set(&mut self, kind: AlarmKind, state: Option<bool>) {
        let shift = 2 * kind as u32;
        let bits = match state {
            None => 0b00,
            Some(true) => 0b01,
            Some(false) => 0b10,
        };
        self.0 = (self.0 & !(0b11 << shift)) | (bits << shift);
    }

    /// What `kind` says: `Some(true)` raised, `Some(false)` cleared, `None` not reported (`00` or
    /// `11`).
    pub fn get(self, kind: AlarmKind) -> Option<bool> {
        match (self.0 >> (2 * kind as u32)) & 0b11 {
            0b01 => Some(true),
            0b10 => Some(false),
            _ => None,
        }
    }

    /// The kinds raised.
    pub fn raised(self) -> impl Iterator<Item = AlarmKind> {
        AlarmKind::ALL.into_iter().filter(move |k| self.get(*k) == Some(true))
    }
}

#[cfg(feature = "serde")]
mod serde_impls {
    use super::{Alarm, Protection, RequestFlags};

    macro_rules! as_bits_and_names {
        ($t:ty) => {
            impl serde::Serialize for $t {
                fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                    use serde::ser::SerializeStruct;
                    let names: Vec<&str> = self.iter_names().map(|(n, _)| n).collect();
                    let mut st = s.serialize_struct(stringify!($t), 2)?;
                    st.serialize_field("bits", &self.bits())?;
                    st.serialize_field("names", &names)?;
                    st.end()
                }
            }
        };
    }
    as_bits_and_names!(Protection);
    as_bits_and_names!(Alarm);
    as_bits_and_names!(RequestFlags);
}
