//! Modbus RTU framing, both sides.
//!
//! ```text
//!  slave(1) | function(1) | data (0..252) | CRC-16/MODBUS (2, low byte first)
//!  01         03            00 CA 00 03     25 F5        read holding 202..204
//!  01         03            06 08FC 1388 04B0  F7 F3     -> 230.0 V, 50.00 Hz, 1200 W
//! ```
//!
//! modbus-core's RTU decoders panic on some valid-CRC frames and return nothing for function 0x6F,
//! so this crate frames RTU itself: [`pdu_len`] is a length table for the standard codes, exception
//! replies and the Eco-Worthy counter's custom 0x6F; [`Decoder`] finds CRC-valid frames in a byte
//! stream, dropping one byte at a time on garbage, with a bounded buffer. Only a PDU whose length has
//! been checked reaches modbus-core's `try_from`; requests and replies are encoded with its encoders.
//!
//! ```
//! use modbus_rtu::{Decoder, Request, Response, Side};
//!
//! let mut out = Vec::new();
//! Request::ReadHolding { address: 202, count: 3 }.encode(1, &mut out)?;
//! assert_eq!(out, [0x01, 0x03, 0x00, 0xCA, 0x00, 0x03, 0x25, 0xF5]);
//!
//! let mut decoder = Decoder::new(Side::Response);
//! decoder.push(&[0x01, 0x03, 0x06, 0x08, 0xFC, 0x13, 0x88, 0x04, 0xB0, 0xF7, 0xF3]);
//! let frame = decoder.next_frame().expect("a whole frame")?;
//! assert_eq!(frame.slave, 1);
//! assert_eq!(Response::parse(&frame.pdu)?, Response::ReadHolding(vec![2300, 5000, 1200]));
//! # Ok::<(), modbus_rtu::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod decoder;
mod pdu;

pub use decoder::{Decoder, RtuFrame, Side, encode_frame, pdu_len};
pub use pdu::{ExceptionCode, Request, Response};

/// The longest RTU frame: slave, 253 bytes of PDU, CRC.
pub const MAX_FRAME_LEN: usize = 256;

/// Custom function of the Eco-Worthy counter: set the SOC readout to full or empty.
pub const FN_SET_LEVEL: u8 = 0x6F;

/// What is wrong with a frame or PDU.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The CRC does not match.
    #[error("CRC: expected {expected:04X}, found {found:04X}")]
    Crc {
        /// CRC computed over the frame.
        expected: u16,
        /// CRC in the frame (as sent, low byte first, shown as a number).
        found: u16,
    },
    /// A function code the length table does not know.
    #[error("unknown function code {0:02X}")]
    UnknownFunction(u8),
    /// A PDU shorter than its function needs, or inconsistent with its byte count.
    #[error("function {function:02X}: {what}")]
    Malformed {
        /// The function code.
        function: u8,
        /// What is inconsistent.
        what: String,
    },
    /// A PDU too long for a frame (emit side).
    #[error("PDU of {0} bytes does not fit an RTU frame")]
    TooLong(usize),
}

/// CRC-16/MODBUS of `data`, as the number whose low byte goes first on the wire.
pub fn crc16(data: &[u8]) -> u16 {
    // modbus-core returns the CRC byte-swapped, for a big-endian write.
    modbus_core::rtu::crc16(data).swap_bytes()
}
