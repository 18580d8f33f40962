//! Classic CAN frames and the slcan line codec, with no I/O.
//!
//! A [`CanFrame`] is one classic CAN 2.0 frame: an 11-bit or 29-bit identifier, up to 8 data
//! bytes, or a remote request. [`slcan`] turns frames into the Lawicel ASCII lines that USB-CAN
//! adapters (CANable, USBtin, CANUSB and friends) speak over a serial port, and cuts such a byte
//! stream back into frames, passing over the set-up lines and acknowledgements the other end
//! sends.
//!
//! ```
//! use can_wire::{CanFrame, CanId, slcan};
//!
//! let frame = CanFrame::new(CanId::standard(0x35C)?, &[0xC0, 0x00])?;
//! let mut line = Vec::new();
//! slcan::encode(&frame, &mut line);
//! assert_eq!(line, b"t35C2C000\r");
//!
//! let mut decoder = slcan::Decoder::new();
//! decoder.push(b"S6\rO\rt30580000000000000000\r");
//! assert_eq!(decoder.next_item(), Some(slcan::Item::Command("S6".into())));
//! assert_eq!(decoder.next_item(), Some(slcan::Item::Command("O".into())));
//! let Some(slcan::Item::Frame(heartbeat)) = decoder.next_item() else { panic!() };
//! assert_eq!(heartbeat.id(), CanId::standard(0x305)?);
//! # Ok::<(), can_wire::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod slcan;

use std::fmt;

/// What is wrong with a frame or a line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An identifier out of range for its kind.
    #[error("CAN id {id:#X} does not fit in {bits} bits")]
    Id {
        /// The identifier.
        id: u32,
        /// 11 or 29.
        bits: u8,
    },
    /// More than 8 data bytes.
    #[error("{0} data bytes; a classic CAN frame carries at most 8")]
    TooLong(usize),
    /// A line that is not a frame in the slcan syntax.
    #[error("not an slcan frame ({reason}): {line}")]
    Line {
        /// The line, escaped, cut at [`SHOWN_MAX`] characters.
        line: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// The most characters of a bad line an error shows.
pub const SHOWN_MAX: usize = 48;

/// `escaped` cut at [`SHOWN_MAX`] characters (`…` marks the cut): an error never carries a
/// whole flood.
pub(crate) fn shown(escaped: &str) -> String {
    match escaped.char_indices().nth(SHOWN_MAX) {
        Some((cut, _)) => format!("{}…", &escaped[..cut]),
        None => escaped.to_owned(),
    }
}

/// A CAN identifier: standard (11 bits) or extended (29 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CanId {
    /// An 11-bit identifier.
    Standard(u16),
    /// A 29-bit identifier.
    Extended(u32),
}

impl CanId {
    /// The largest standard identifier.
    pub const MAX_STANDARD: u16 = 0x7FF;
    /// The largest extended identifier.
    pub const MAX_EXTENDED: u32 = 0x1FFF_FFFF;

    /// An 11-bit identifier.
    ///
    /// # Errors
    /// [`Error::Id`] above 0x7FF.
    pub const fn standard(id: u16) -> Result<Self, Error> {
        if id > Self::MAX_STANDARD {
            return Err(Error::Id { id: id as u32, bits: 11 });
        }
        Ok(Self::Standard(id))
    }

    /// A 29-bit identifier.
    ///
    /// # Errors
    /// [`Error::Id`] above 0x1FFFFFFF.
    pub const fn extended(id: u32) -> Result<Self, Error> {
        if id > Self::MAX_EXTENDED {
            return Err(Error::Id { id, bits: 29 });
        }
        Ok(Self::Extended(id))
    }

    /// The identifier's number.
    pub const fn raw(self) -> u32 {
        match self {
            Self::Standard(id) => id as u32,
            Self::Extended(id) => id,
        }
    }

    /// Whether it is a 29-bit identifier.
    pub const fn is_extended(self) -> bool {
        matches!(self, Self::Extended(_))
    }
}

impl fmt::Display for CanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Standard(id) => write!(f, "{id:03X}"),
            Self::Extended(id) => write!(f, "{id:08X}"),
        }
    }
}

/// One classic CAN frame.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CanFrame {
    id: CanId,
    remote: bool,
    len: u8,
    data: [u8; 8],
}

impl CanFrame {
    /// A data frame.
    ///
    /// # Errors
    /// [`Error::TooLong`] for more than 8 bytes.
    pub fn new(id: CanId, data: &[u8]) -> Result<Self, Error> {
        if data.len() > 8 {
            return Err(Error::TooLong(data.len()));
        }
        let mut bytes = [0; 8];
        bytes[..data.len()].copy_from_slice(data);
        Ok(Self { id, remote: false, len: data.len() as u8, data: bytes })
    }

    /// A remote (RTR) frame asking for `len` bytes.
    ///
    /// # Errors
    /// [`Error::TooLong`] for a length above 8.
    pub fn remote(id: CanId, len: u8) -> Result<Self, Error> {
        if len > 8 {
            return Err(Error::TooLong(usize::from(len)));
        }
        Ok(Self { id, remote: true, len, data: [0; 8] })
    }

    /// A standard-id data frame from parts known to be valid (the protocol crates' own frames).
    /// An id above 0x7FF is masked to 11 bits.
    pub const fn standard(id: u16, data: [u8; 8], len: u8) -> Self {
        let len = if len > 8 { 8 } else { len };
        Self { id: CanId::Standard(id & CanId::MAX_STANDARD), remote: false, len, data }
    }

    /// Its identifier.
    pub const fn id(&self) -> CanId {
        self.id
    }

    /// Whether it is a remote request (no data).
    pub const fn is_remote(&self) -> bool {
        self.remote
    }

    /// Its data length code (0..=8).
    pub const fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether it carries no data.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Its data bytes (empty for a remote frame).
    pub fn data(&self) -> &[u8] {
        if self.remote { &[] } else { &self.data[..self.len()] }
    }
}

impl fmt::Debug for CanFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CanFrame({self})")
    }
}

/// Parses candump's notation: `35C#C000` (3 hex digits: a standard id), `1806E5F4#01` (8 digits:
/// extended), `7FF#R` or `7FF#R8` (a remote frame asking for 0 or 8 bytes). Dots between bytes
/// (`35C#C0.00`) are allowed.
impl std::str::FromStr for CanFrame {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self, Error> {
        let bad =
            |reason: &'static str| Error::Line { line: shown(&text.escape_default().to_string()), reason };
        let (id, data) = text.trim().split_once('#').ok_or_else(|| bad("no '#' between id and data"))?;
        // from_str_radix would take a sign: only hex digits are an id.
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("the id is not hex"));
        }
        let raw = u32::from_str_radix(id, 16).map_err(|_| bad("the id is not hex"))?;
        let id = match id.len() {
            3 => CanId::standard(raw as u16).map_err(|_| bad("the id is out of range"))?,
            8 => CanId::extended(raw).map_err(|_| bad("the id is out of range"))?,
            _ => return Err(bad("the id needs 3 hex digits (standard) or 8 (extended)")),
        };
        if let Some(len) = data.strip_prefix(['R', 'r']) {
            let len =
                if len.is_empty() { 0 } else { len.parse().map_err(|_| bad("the length is not 0 to 8"))? };
            return Self::remote(id, len).map_err(|_| bad("the length is not 0 to 8"));
        }
        let digits: Vec<u8> = data.bytes().filter(|b| *b != b'.').collect();
        if !digits.iter().all(u8::is_ascii_hexdigit) {
            return Err(bad("the data is not hex"));
        }
        if digits.len() % 2 == 1 {
            return Err(bad("the data has an odd number of hex digits"));
        }
        if digits.len() > 16 {
            return Err(bad("more than 8 data bytes"));
        }
        let mut bytes = Vec::with_capacity(8);
        for pair in digits.chunks_exact(2) {
            let pair = std::str::from_utf8(pair).map_err(|_| bad("the data is not hex"))?;
            bytes.push(u8::from_str_radix(pair, 16).map_err(|_| bad("the data is not hex"))?);
        }
        Self::new(id, &bytes)
    }
}

/// `35C#C000` (candump's notation), `35C#R2` for a remote frame.
impl fmt::Display for CanFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#", self.id)?;
        if self.remote {
            return write!(f, "R{}", self.len);
        }
        for b in self.data() {
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}
