/// What is wrong with a frame, with the evidence.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The frame is empty or its first byte is not `~`.
    #[error("frame does not start with '~'")]
    MissingSoi,
    /// Fewer bytes than the 17 of an empty frame (18 with its CR).
    #[error("frame too short: {len} bytes, the shortest frame has 17 before its CR")]
    TooShort {
        /// Bytes seen, without a trailing CR.
        len: usize,
    },
    /// A character where a hex digit belongs; `at` is its 0-based offset in the frame.
    #[error("not hex at byte {at}")]
    NotHex {
        /// Offset in the frame, counting SOI as byte 0.
        at: usize,
    },
    /// The LCHKSUM nibble of LENGTH does not match LENID.
    #[error("length checksum: expected {expected:X}, found {found:X}")]
    LengthChecksum {
        /// LCHKSUM computed from LENID.
        expected: u8,
        /// LCHKSUM in the frame.
        found: u8,
    },
    /// LENID disagrees with the number of INFO characters actually present.
    #[error("length: LENID says {declared}, INFO has {actual}")]
    Length {
        /// INFO characters declared by LENID.
        declared: usize,
        /// INFO characters present.
        actual: usize,
    },
    /// LENID is odd, so INFO cannot be whole bytes.
    #[error("length: LENID {lenid} is odd, INFO must be whole bytes")]
    OddLength {
        /// The declared LENID.
        lenid: usize,
    },
    /// CHKSUM does not match the frame's ASCII sum.
    #[error("checksum: expected {expected:04X}, found {found:04X}")]
    Checksum {
        /// Checksum computed over VER..INFO.
        expected: u16,
        /// Checksum in the frame.
        found: u16,
    },
    /// INFO ended before a field the layout needs.
    #[error("info too short: {field} needs {needed} bytes at info byte {at}, {available} left")]
    Truncated {
        /// Which field was being read.
        field: &'static str,
        /// Offset of the field in INFO, in bytes.
        at: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in INFO.
        available: usize,
    },
    /// An INFO too long for LENID's 12 bits (emit side).
    #[error("info too long: {chars} hex characters, LENID holds at most 4094")]
    InfoTooLong {
        /// INFO characters that were to be sent.
        chars: usize,
    },
}
