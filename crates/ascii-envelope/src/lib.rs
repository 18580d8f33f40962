//! The ASCII-hex frame shared by Pace v25 and Pylontech RS485 (the YD/T 1363 family).
//!
//! ```text
//!  offset  0    1-2  3-4  5-6   7-8       9-12    13 .. 13+LENID   +4       +1
//!         +----+----+----+-----+---------+-------+--------------+--------+-----+
//!         | ~  |VER |ADR |CID1 |CID2/RTN | LENGTH|    INFO      | CHKSUM | CR  |
//!         +----+----+----+-----+---------+-------+--------------+--------+-----+
//!          SOI  every field after SOI is ASCII hex, high nibble first      EOI
//!
//!  LENGTH = LCHKSUM (4 bits) | LENID (12 bits, the number of INFO characters)
//!  LCHKSUM = (-(LENID nibble sum)) mod 16        CHKSUM = (-(ASCII sum VER..INFO)) mod 65536
//! ```
//!
//! * [`Frame::parse`] checks a whole frame (SOI, hex, LCHKSUM, LENID, CHKSUM) and gives a view whose
//!   [`Info`] cursor reads typed fields without copying.
//! * [`FrameWriter`] emits a frame in upper-case hex, filling LENGTH and CHKSUM.
//! * [`Framer`] finds frames in a byte stream with garbage, split reads and several frames at once,
//!   with a bounded buffer.
//! * [`Rtn`] is the return code a device puts in the CID2 field of a reply.
//!
//! ```
//! use ascii_envelope::{Frame, FrameWriter, Header};
//!
//! let mut out = Vec::new();
//! let mut w = FrameWriter::new(&mut out, Header { ver: 0x25, adr: 0x01, cid1: 0x46, cid2: 0x42 });
//! w.u8(0x01);
//! w.finish()?;
//! assert_eq!(out, b"~25014642E00201FD30\r");
//!
//! let frame = Frame::parse(&out)?;
//! assert_eq!(frame.header().cid2, 0x42);
//! assert_eq!(frame.info().u8("command")?, 0x01);
//! # Ok::<(), ascii_envelope::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
pub mod flags;
mod frame;
mod framer;
mod hex;
mod rtn;
mod text;
mod writer;

pub use error::Error;
pub use frame::{Frame, Header, Info, checksum, length_checksum};
pub use framer::Framer;
pub use rtn::Rtn;
pub use text::Text;
pub use writer::FrameWriter;

/// Start of frame, sent raw.
pub const SOI: u8 = b'~';
/// End of frame, sent raw.
pub const EOI: u8 = b'\r';
/// Characters before INFO: SOI + VER + ADR + CID1 + CID2 + LENGTH.
pub const HEADER_LEN: usize = 13;
/// The largest even LENID: INFO is whole bytes of two hex characters each.
pub const MAX_INFO_CHARS: usize = 4094;
/// The shortest frame, including EOI (an empty INFO).
pub const MIN_FRAME_LEN: usize = HEADER_LEN + 4 + 1;
/// The longest frame, including EOI.
pub const MAX_FRAME_LEN: usize = MIN_FRAME_LEN + MAX_INFO_CHARS;
