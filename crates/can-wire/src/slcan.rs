//! The slcan (Lawicel ASCII) line protocol: CAN frames as text lines over a serial port or socket.
//!
//! | line                  | meaning                                                        |
//! |-----------------------|----------------------------------------------------------------|
//! | `tIIILDD…`            | a data frame, 11-bit id `III`, `L` bytes `DD…` (hex)           |
//! | `TIIIIIIIILDD…`       | the same with a 29-bit id                                      |
//! | `rIIIL`, `RIIIIIIIIL` | a remote request for `L` bytes                                 |
//! | `S0`…`S8`             | set the bit rate (10k, 20k, 50k, 100k, 125k, 250k, 500k, 800k, 1M) |
//! | `O`, `C`, `L`         | open the channel, close it, open it listen-only                |
//! | empty, `z`, `Z`       | the adapter's "done" (the last two after a transmit)           |
//! | BEL (0x07)            | the adapter's "error"                                          |
//!
//! Every line ends in CR. A frame line may carry a 4-digit timestamp after its data (`Z1` mode);
//! it is accepted and ignored. Anything else is handed back as a [`Item::Command`], so a reader
//! on a line shared with another slcan host passes over that host's own set-up lines.

use crate::{CanFrame, CanId, Error};

/// The longest line kept: a 29-bit frame with 8 bytes and a timestamp is 31 characters. A longer
/// one is dropped whole (counted as invalid) without growing the buffer.
pub const MAX_LINE: usize = 64;

const BEL: u8 = 0x07;
const CR: u8 = b'\r';
const LF: u8 = b'\n';

/// The bit rates the `S` command knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bitrate {
    /// 10 kbit/s (`S0`).
    K10,
    /// 20 kbit/s (`S1`).
    K20,
    /// 50 kbit/s (`S2`).
    K50,
    /// 100 kbit/s (`S3`).
    K100,
    /// 125 kbit/s (`S4`).
    K125,
    /// 250 kbit/s (`S5`).
    K250,
    /// 500 kbit/s (`S6`), the Pylontech low-voltage bus.
    K500,
    /// 800 kbit/s (`S7`).
    K800,
    /// 1 Mbit/s (`S8`).
    M1,
}

const BITRATES: [(Bitrate, u32); 9] = [
    (Bitrate::K10, 10_000),
    (Bitrate::K20, 20_000),
    (Bitrate::K50, 50_000),
    (Bitrate::K100, 100_000),
    (Bitrate::K125, 125_000),
    (Bitrate::K250, 250_000),
    (Bitrate::K500, 500_000),
    (Bitrate::K800, 800_000),
    (Bitrate::M1, 1_000_000),
];

impl Bitrate {
    /// The rate for `bps` bits per second, if `S` has a code for it.
    pub fn from_bps(bps: u32) -> Option<Self> {
        BITRATES.iter().find(|(_, b)| *b == bps).map(|(r, _)| *r)
    }

    /// Bits per second.
    pub fn bps(self) -> u32 {
        BITRATES.iter().find(|(r, _)| *r == self).map_or(0, |(_, b)| *b)
    }

    /// Its `S` code digit.
    fn code(self) -> u8 {
        BITRATES.iter().position(|(r, _)| *r == self).map_or(b'6', |k| b'0' + k as u8)
    }
}

/// The lines that set an adapter up: close (it may be open from an earlier run), set the rate,
/// open. An adapter answers each with CR, or BEL when it was already in that state.
pub fn open_lines(bitrate: Bitrate) -> Vec<u8> {
    let mut out = b"C\r".to_vec();
    out.extend_from_slice(&[b'S', bitrate.code(), CR]);
    out.extend_from_slice(b"O\r");
    out
}

/// The line that closes the channel.
pub const CLOSE: &[u8] = b"C\r";

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_hex(out: &mut Vec<u8>, value: u32, digits: u32) {
    for k in (0..digits).rev() {
        out.push(HEX[(value >> (4 * k)) as usize & 0xF]);
    }
}

/// Appends `frame` as one slcan line, CR included.
pub fn encode(frame: &CanFrame, out: &mut Vec<u8>) {
    let (letter, digits) = match (frame.id(), frame.is_remote()) {
        (CanId::Standard(_), false) => (b't', 3),
        (CanId::Extended(_), false) => (b'T', 8),
        (CanId::Standard(_), true) => (b'r', 3),
        (CanId::Extended(_), true) => (b'R', 8),
    };
    out.push(letter);
    push_hex(out, frame.id().raw(), digits);
    out.push(b'0' + frame.len() as u8);
    for b in frame.data() {
        push_hex(out, u32::from(*b), 2);
    }
    out.push(CR);
}

/// What one line of the stream is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// A CAN frame.
    Frame(CanFrame),
    /// The adapter's "done": an empty line, or `z`/`Z` after a transmit.
    Ack,
    /// The adapter's "error" (BEL).
    Nak,
    /// Any other line (a set-up command of another host, a version reply), as text.
    Command(String),
    /// A line that starts like a frame but is not one, or one too long to keep.
    Invalid(Error),
}

fn hex_value(text: &[u8]) -> Option<u32> {
    if text.is_empty() {
        return None;
    }
    text.iter().try_fold(0u32, |acc, c| Some(acc << 4 | char::from(*c).to_digit(16)?))
}

fn invalid(line: &[u8], reason: &'static str) -> Error {
    Error::Line { line: crate::shown(&line.escape_ascii().to_string()), reason }
}

/// Parses one line (without its CR) as a frame.
///
/// # Errors
/// [`Error::Line`] naming what is wrong: an unknown letter, a short id, a bad length, data that
/// does not match the length, a non-hex digit.
pub fn parse_frame(line: &[u8]) -> Result<CanFrame, Error> {
    let (&letter, rest) = line.split_first().ok_or_else(|| invalid(line, "empty line"))?;
    let (digits, remote) = match letter {
        b't' => (3, false),
        b'T' => (8, false),
        b'r' => (3, true),
        b'R' => (8, true),
        _ => return Err(invalid(line, "a frame starts with t, T, r or R")),
    };
    if rest.len() < digits + 1 {
        return Err(invalid(line, "too short for an id and a length"));
    }
    let raw = hex_value(&rest[..digits]).ok_or_else(|| invalid(line, "the id is not hex"))?;
    let id = if digits == 3 { CanId::standard(raw as u16) } else { CanId::extended(raw) }
        .map_err(|_| invalid(line, "the id is out of range"))?;
    let len = char::from(rest[digits]).to_digit(10).filter(|l| *l <= 8);
    let len = len.ok_or_else(|| invalid(line, "the length is not 0 to 8"))? as usize;
    let body = &rest[digits + 1..];
    if remote {
        // A timestamp may follow.
        return match body.len() {
            0 | 4 => CanFrame::remote(id, len as u8),
            _ => Err(invalid(line, "a remote frame carries no data")),
        };
    }
    if body.len() != 2 * len && body.len() != 2 * len + 4 {
        return Err(invalid(line, "the data does not match the length"));
    }
    if body.len() == 2 * len + 4 && hex_value(&body[2 * len..]).is_none() {
        return Err(invalid(line, "the timestamp is not hex"));
    }
    let mut data = [0u8; 8];
    for (k, pair) in body[..2 * len].chunks_exact(2).enumerate() {
        data[k] = hex_value(pair).ok_or_else(|| invalid(line, "the data is not hex"))? as u8;
    }
    CanFrame::new(id, &data[..len])
}

fn classify(line: &[u8]) -> Item {
    match line.first() {
        None => Item::Ack,
        Some(b't' | b'T' | b'r' | b'R') => match parse_frame(line) {
            Ok(frame) => Item::Frame(frame),
            Err(e) => Item::Invalid(e),
        },
        Some(b'z' | b'Z') if line.len() == 1 => Item::Ack,
        Some(_) => Item::Command(line.escape_ascii().to_string()),
    }
}

/// Cuts a byte stream into [`Item`]s; holds at most [`MAX_LINE`] bytes.
#[derive(Debug, Default)]
pub struct Decoder {
    line: Vec<u8>,
    /// The current line grew past [`MAX_LINE`]: drop it through its end.
    overlong: bool,
    /// Bytes pushed but not yet cut.
    input: std::collections::VecDeque<u8>,
}

/// How many unread bytes [`Decoder::push`] takes at most; the rest wait for the next push.
pub const MAX_INPUT: usize = 4096;

impl Decoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes as much of `data` as fits and returns how many bytes were taken.
    pub fn push(&mut self, data: &[u8]) -> usize {
        let room = MAX_INPUT.saturating_sub(self.input.len());
        let n = room.min(data.len());
        self.input.extend(&data[..n]);
        n
    }

    /// The next complete item, or `None` when more bytes are needed.
    pub fn next_item(&mut self) -> Option<Item> {
        while let Some(byte) = self.input.pop_front() {
            match byte {
                BEL => {
                    self.line.clear();
                    self.overlong = false;
                    return Some(Item::Nak);
                }
                CR | LF => {
                    let overlong = std::mem::take(&mut self.overlong);
                    if overlong {
                        let shown = std::mem::take(&mut self.line);
                        return Some(Item::Invalid(invalid(&shown, "longer than any slcan line")));
                    }
                    // A bare LF (the second half of CR LF) is not an acknowledgement.
                    if byte == LF && self.line.is_empty() {
                        continue;
                    }
                    let line = std::mem::take(&mut self.line);
                    return Some(classify(&line));
                }
                _ if self.overlong => {}
                _ if self.line.len() >= MAX_LINE => self.overlong = true,
                _ => self.line.push(byte),
            }
        }
        None
    }

    /// Bytes held: a partial line and unread input.
    pub fn buffered(&self) -> usize {
        self.line.len() + self.input.len()
    }

    /// Forgets everything held; returns how many bytes that was.
    pub fn clear(&mut self) -> usize {
        let n = self.buffered();
        self.line.clear();
        self.input.clear();
        self.overlong = false;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(id: u16, data: &[u8]) -> CanFrame {
        CanFrame::new(CanId::standard(id).unwrap(), data).unwrap()
    }

    #[test]
    fn lines_of_every_kind() {
        let mut out = Vec::new();
        encode(&frame(0x351, &[0x2C, 0x01, 0xF4, 0x01, 0xF4, 0x01, 0xE0, 0x01]), &mut out);
        encode(&CanFrame::new(CanId::extended(0x1806E5F4).unwrap(), &[1]).unwrap(), &mut out);
        encode(&CanFrame::remote(CanId::standard(0x7FF).unwrap(), 8).unwrap(), &mut out);
        encode(&CanFrame::remote(CanId::extended(1).unwrap(), 0).unwrap(), &mut out);
        encode(&frame(0, &[]), &mut out);
        assert_eq!(out, b"t35182C01F401F401E001\rT1806E5F4101\rr7FF8\rR000000010\rt0000\r".to_vec());
    }

    #[test]
    fn set_up_lines_name_the_rate() {
        assert_eq!(open_lines(Bitrate::K500), b"C\rS6\rO\r");
        assert_eq!(open_lines(Bitrate::K10), b"C\rS0\rO\r");
        assert_eq!(Bitrate::from_bps(500_000), Some(Bitrate::K500));
        assert_eq!(Bitrate::from_bps(1_000_000).map(Bitrate::bps), Some(1_000_000));
        assert_eq!(Bitrate::from_bps(33_333), None);
    }

    #[test]
    fn a_stream_with_set_up_lines_acks_and_noise() {
        let mut d = Decoder::new();
        d.push(b"C\rS6\r\x07O\r\rz\rV1013\r\nt305800000000000000001234\rt30X0\rt3051\rt123\r");
        let items: Vec<Item> = std::iter::from_fn(|| d.next_item()).collect();
        assert_eq!(items[0], Item::Command("C".into()));
        assert_eq!(items[1], Item::Command("S6".into()));
        assert_eq!(items[2], Item::Nak);
        assert_eq!(items[3], Item::Command("O".into()));
        assert_eq!(items[4], Item::Ack);
        assert_eq!(items[5], Item::Ack);
        assert_eq!(items[6], Item::Command("V1013".into()));
        assert_eq!(items[7], Item::Frame(frame(0x305, &[0; 8])));
        assert!(matches!(&items[8], Item::Invalid(Error::Line { reason: "the id is not hex", .. })));
        assert!(matches!(
            &items[9],
            Item::Invalid(Error::Line { reason: "the data does not match the length", .. })
        ));
        assert!(matches!(
            &items[10],
            Item::Invalid(Error::Line { reason: "too short for an id and a length", .. })
        ));
        assert_eq!(items.len(), 11);
    }

    #[test]
    fn an_endless_line_stays_bounded_and_the_next_frame_is_read() {
        let mut d = Decoder::new();
        for _ in 0..1000 {
            let mut taken = 0;
            while taken < 1000 {
                taken += d.push(&[b'7'; 1000][taken..]);
                assert_eq!(d.next_item(), None);
                assert!(d.buffered() <= MAX_LINE + MAX_INPUT);
            }
        }
        d.push(b"\rt1001AA\r");
        assert!(matches!(
            d.next_item(),
            Some(Item::Invalid(Error::Line { reason: "longer than any slcan line", .. }))
        ));
        assert_eq!(d.next_item(), Some(Item::Frame(frame(0x100, &[0xAA]))));
    }
}
