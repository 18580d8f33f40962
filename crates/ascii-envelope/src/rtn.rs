use core::fmt;

/// The return code a device puts in the CID2 field of a reply.
///
/// Codes 00–06 are common to Pace and Pylontech; 07 and 09 are Pace's, 90/91 Pylontech's and E1–E4
/// appear in Pace firmware (PROTOCOLS.md §1.3). Any other value is kept as [`Rtn::Unknown`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rtn {
    /// 00: normal.
    Normal,
    /// 01: VER error.
    VerError,
    /// 02: CHKSUM error.
    ChecksumError,
    /// 03: LCHKSUM error.
    LengthChecksumError,
    /// 04: CID2 invalid (unknown command).
    Cid2Invalid,
    /// 05: command format error.
    CommandFormatError,
    /// 06: invalid data in INFO.
    InvalidData,
    /// 07: no data (history record).
    NoData,
    /// 09: operation or write error (Pace: e.g. refusing to turn both MOSFETs off).
    OperationError,
    /// 90: ADR error.
    AdrError,
    /// 91: internal communication error.
    CommunicationError,
    /// E1: CID1 error.
    Cid1Error,
    /// E2: command execution failed.
    ExecutionFailed,
    /// E3: equipment failure.
    EquipmentFailure,
    /// E4: invalid permission.
    InvalidPermission,
    /// Any other code, kept as sent.
    Unknown(u8),
}

impl Rtn {
    /// Decodes a wire value; never fails.
    pub const fn from_raw(raw: u8) -> Self {
        match raw {
            0x00 => Self::Normal,
            0x01 => Self::VerError,
            0x02 => Self::ChecksumError,
            0x03 => Self::LengthChecksumError,
            0x04 => Self::Cid2Invalid,
            0x05 => Self::CommandFormatError,
            0x06 => Self::InvalidData,
            0x07 => Self::NoData,
            0x09 => Self::OperationError,
            0x90 => Self::AdrError,
            0x91 => Self::CommunicationError,
            0xE1 => Self::Cid1Error,
            0xE2 => Self::ExecutionFailed,
            0xE3 => Self::EquipmentFailure,
            0xE4 => Self::InvalidPermission,
            other => Self::Unknown(other),
        }
    }

    /// The wire value.
    pub const fn raw(self) -> u8 {
        match self {
            Self::Normal => 0x00,
            Self::VerError => 0x01,
            Self::ChecksumError => 0x02,
            Self::LengthChecksumError => 0x03,
            Self::Cid2Invalid => 0x04,
            Self::CommandFormatError => 0x05,
            Self::InvalidData => 0x06,
            Self::NoData => 0x07,
            Self::OperationError => 0x09,
            Self::AdrError => 0x90,
            Self::CommunicationError => 0x91,
            Self::Cid1Error => 0xE1,
            Self::ExecutionFailed => 0xE2,
            Self::EquipmentFailure => 0xE3,
            Self::InvalidPermission => 0xE4,
            Self::Unknown(raw) => raw,
        }
    }

    /// Whether this is 00, normal.
    pub const fn is_normal(self) -> bool {
        matches!(self, Self::Normal)
    }

    /// A short description in words.
    pub const fn description(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::VerError => "VER error",
            Self::ChecksumError => "CHKSUM error",
            Self::LengthChecksumError => "LCHKSUM error",
            Self::Cid2Invalid => "CID2 invalid",
            Self::CommandFormatError => "command format error",
            Self::InvalidData => "invalid data",
            Self::NoData => "no data",
            Self::OperationError => "operation or write error",
            Self::AdrError => "ADR error",
            Self::CommunicationError => "internal communication error",
            Self::Cid1Error => "CID1 error",
            Self::ExecutionFailed => "command execution failed",
            Self::EquipmentFailure => "equipment failure",
            Self::InvalidPermission => "invalid permission",
            Self::Unknown(_) => "unknown return code",
        }
    }
}

impl fmt::Display for Rtn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RTN {:02X} ({})", self.raw(), self.description())
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Rtn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.raw())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_round_trips() {
        for b in 0..=255u8 {
            assert_eq!(Rtn::from_raw(b).raw(), b);
        }
        assert_eq!(Rtn::from_raw(9).to_string(), "RTN 09 (operation or write error)");
    }
}
