use crate::{Error, FN_SET_LEVEL, MAX_FRAME_LEN, crc16};

/// Which direction a byte stream carries: requests (a server reads) or responses (a client reads).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// Master → slave.
    Request,
    /// Slave → master.
    Response,
}

/// The PDU length (function code included) of the frame whose PDU starts `pdu`, if it can be known
/// yet: `Ok(None)` means more bytes are needed to tell. A 0x6F response has no known layout; its
/// length is `Ok(None)` and [`Decoder`] searches for a CRC-valid end instead.
///
/// # Errors
/// [`Error::UnknownFunction`] for a code outside the table.
pub fn pdu_len(side: Side, pdu: &[u8]) -> Result<Option<usize>, Error> {
    let Some(&function) = pdu.first() else { return Ok(None) };
    let at = |i: usize| pdu.get(i).map(|&b| usize::from(b));
    let len = match (side, function) {
        (Side::Request, 0x01..=0x06) => Some(5),
        (Side::Request, 0x0F | 0x10) => at(5).map(|n| 6 + n),
        (Side::Request, 0x17) => at(9).map(|n| 10 + n),
        (Side::Request, FN_SET_LEVEL) => Some(5),
        (Side::Response, f) if f & 0x80 != 0 => Some(2),
        (Side::Response, 0x01..=0x04 | 0x17) => at(1).map(|n| 2 + n),
        (Side::Response, 0x05 | 0x06 | 0x0F | 0x10) => Some(5),
        (Side::Response, FN_SET_LEVEL) => None,
        (_, other) => return Err(Error::UnknownFunction(other)),
    };
    Ok(len)
}

/// One byte into a running CRC-16/MODBUS.
fn crc_step(crc: u16, byte: u8) -> u16 {
    let mut crc = crc ^ u16::from(byte);
    for _ in 0..8 {
        crc = if crc & 1 != 0 { (crc >> 1) ^ 0xA001 } else { crc >> 1 };
    }
    crc
}

/// The shortest length (at least 4) whose last two bytes are the CRC of the bytes before them,
/// found in one pass with a running CRC.
fn first_crc_valid_end(buf: &[u8]) -> Option<usize> {
    let mut crc = buf.iter().take(2).fold(0xFFFF, |c, &b| crc_step(c, b));
    for end in 4..=buf.len() {
        if end > 4 {
            crc = crc_step(crc, buf[end - 3]);
        }
        if crc == u16::from_le_bytes([buf[end - 2], buf[end - 1]]) {
            return Some(end);
        }
    }
    None
}

/// One CRC-checked frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtuFrame {
    /// Slave address.
    pub slave: u8,
    /// The PDU: function code and data.
    pub pdu: Vec<u8>,
}

/// Appends `slave`, `pdu` and the CRC to `out`.
///
/// # Errors
/// [`Error::TooLong`] for a PDU over 253 bytes.
pub fn encode_frame(slave: u8, pdu: &[u8], out: &mut Vec<u8>) -> Result<usize, Error> {
    if pdu.len() > MAX_FRAME_LEN - 3 {
        return Err(Error::TooLong(pdu.len()));
    }
    let start = out.len();
    out.push(slave);
    out.extend_from_slice(pdu);
    let crc = crc16(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out.len() - start)
}

/// Finds CRC-valid frames in a byte stream (split reads, garbage, several frames at once).
///
/// Framing is by expected length (the function's PDU length) and by inter-frame gap: on garbage —
/// an unknown function code or a CRC mismatch at the expected length — it drops one byte and tries
/// again; bytes that could still be the start of a long frame wait until the caller reports a quiet
/// line with [`Decoder::gap`]. The buffer never exceeds [`MAX_FRAME_LEN`] bytes.
#[derive(Clone, Debug)]
pub struct Decoder {
    side: Side,
    buf: Vec<u8>,
    discarded: u64,
    bad_frames: u64,
    last_error: Option<Error>,
    /// Set while [`Decoder::gap`] runs: nothing more is coming, so a short 0x6F reply may end here.
    at_gap: bool,
}

impl Decoder {
    /// A decoder for one direction.
    pub fn new(side: Side) -> Self {
        Self {
            side,
            buf: Vec::with_capacity(MAX_FRAME_LEN),
            discarded: 0,
            bad_frames: 0,
            last_error: None,
            at_gap: false,
        }
    }

    /// Appends as much of `data` as fits and returns how many bytes were taken. Take frames with
    /// [`Decoder::next_frame`] until `None`, then push the rest; at least one byte then fits.
    pub fn push(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(MAX_FRAME_LEN - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        n
    }

    /// The next CRC-valid frame, or `None` when more bytes are needed. A frame that fails its
    /// checks is skipped (one byte dropped); the error is kept in [`Decoder::last_error`].
    pub fn next_frame(&mut self) -> Option<Result<RtuFrame, Error>> {
        loop {
            if self.buf.len() < 4 {
                return None;
            }
            let pdu = &self.buf[1..];
            match pdu_len(self.side, pdu) {
                Err(e) => self.skip(e),
                Ok(Some(len)) if len + 3 > MAX_FRAME_LEN => self
                    .skip(Error::Malformed { function: pdu[0], what: format!("byte count {len} too large") }),
                Ok(Some(len)) => {
                    let total = len + 3;
                    if self.buf.len() < total {
                        return None;
                    }
                    let expected = crc16(&self.buf[..total - 2]);
                    let found = u16::from_le_bytes([self.buf[total - 2], self.buf[total - 1]]);
                    if expected != found {
                        self.skip(Error::Crc { expected, found });
                        continue;
                    }
                    return Some(Ok(self.take(total)));
                }
                Ok(None) if pdu[0] == FN_SET_LEVEL && self.side == Side::Response => {
                    // Unknown layout. Known shapes first — the 8-byte echo of the request (pymodbus),
                    // then `slave 6F N <N bytes> CRC` (what the original client expected) — and then
                    // the shortest prefix with a valid CRC.
                    let crc_ok = |end: usize| {
                        end >= 4
                            && end <= self.buf.len()
                            && crc16(&self.buf[..end - 2])
                                == u16::from_le_bytes([self.buf[end - 2], self.buf[end - 1]])
                    };
                    let counted = 5 + usize::from(self.buf[2]);
                    // Any other CRC-valid end only once the 8-byte echo is ruled out, so a reply
                    // still arriving is not cut short by a chance CRC match of a prefix.
                    let end = [8, counted].into_iter().find(|&e| crc_ok(e)).or_else(|| {
                        if self.buf.len() >= 8 || self.at_gap { first_crc_valid_end(&self.buf) } else { None }
                    });
                    match end {
                        Some(end) => return Some(Ok(self.take(end))),
                        None if self.buf.len() >= MAX_FRAME_LEN => self.skip(Error::Malformed {
                            function: FN_SET_LEVEL,
                            what: "no CRC-valid end".into(),
                        }),
                        None => return None,
                    }
                }
                Ok(None) => return None,
            }
        }
    }

    /// Pushes all of `data`, calling `on_frame` for every valid frame in order.
    pub fn feed(&mut self, mut data: &[u8], mut on_frame: impl FnMut(RtuFrame)) {
        loop {
            while let Some(frame) = self.next_frame() {
                if let Ok(frame) = frame {
                    on_frame(frame);
                }
            }
            if data.is_empty() {
                return;
            }
            let n = self.push(data);
            data = &data[n..];
        }
    }

    /// The line went quiet (an inter-frame gap): what is held cannot be the start of a frame still
    /// arriving. Drops bytes until a complete valid frame starts the buffer and returns it, or
    /// empties the buffer. Garbage that looks like the start of a long frame thus cannot hide a
    /// real frame behind it for longer than one gap.
    pub fn gap(&mut self) -> Option<RtuFrame> {
        self.at_gap = true;
        let found = loop {
            match self.next_frame() {
                Some(Ok(frame)) => break Some(frame),
                Some(Err(_)) => {}
                None if self.buf.is_empty() => break None,
                None => {
                    self.buf.remove(0);
                    self.discarded += 1;
                }
            }
        };
        self.at_gap = false;
        found
    }

    fn take(&mut self, n: usize) -> RtuFrame {
        let frame = RtuFrame { slave: self.buf[0], pdu: self.buf[1..n - 2].to_vec() };
        self.buf.drain(..n);
        frame
    }

    fn skip(&mut self, e: Error) {
        if matches!(e, Error::Crc { .. }) {
            self.bad_frames += 1;
        }
        self.last_error = Some(e);
        self.buf.remove(0);
        self.discarded += 1;
    }

    /// Bytes dropped as garbage so far.
    pub fn discarded(&self) -> u64 {
        self.discarded
    }

    /// Candidate frames dropped for a bad CRC so far.
    pub fn bad_frames(&self) -> u64 {
        self.bad_frames
    }

    /// Why the last byte was dropped.
    pub fn last_error(&self) -> Option<&Error> {
        self.last_error.as_ref()
    }

    /// Bytes held.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Forgets held bytes (before a new request), counting them as discarded.
    pub fn clear(&mut self) {
        self.discarded += self.buf.len() as u64;
        self.buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const READ_REPLY: [u8; 11] = [0x01, 0x03, 0x06, 0x08, 0xFC, 0x13, 0x88, 0x04, 0xB0, 0xF7, 0xF3];

    fn frames(side: Side, data: &[u8], chunk: usize) -> Vec<RtuFrame> {
        let mut d = Decoder::new(side);
        let mut v = Vec::new();
        for piece in data.chunks(chunk) {
            d.feed(piece, |f| v.push(f));
        }
        v
    }

    #[test]
    fn the_running_crc_matches_the_crc() {
        let mut frame = Vec::new();
        encode_frame(1, &[0x6F, 0x00, 0x00, 0x00, 0x0F], &mut frame).unwrap();
        assert_eq!(first_crc_valid_end(&frame), Some(8));
        let data = [0x01u8, 0x03, 0x06, 0x08, 0xFC, 0x13, 0x88, 0x04, 0xB0];
        assert_eq!(data.iter().fold(0xFFFF, |c, &b| crc_step(c, b)), crc16(&data));
    }

    #[test]
    fn eg4_pdf_examples_verify() {
        assert_eq!(frames(Side::Request, &[0x01, 0x03, 0x00, 0xCA, 0x00, 0x03, 0x25, 0xF5], 1).len(), 1);
        assert_eq!(frames(Side::Response, &READ_REPLY, 1).len(), 1);
        // The write-320 reply of the EG4 PDF.
        assert_eq!(frames(Side::Response, &[0x01, 0x10, 0x01, 0x40, 0x00, 0x01, 0x01, 0xE1], 3).len(), 1);
        // A standard FC16 request with its byte count.
        let req = [0x01, 0x10, 0x01, 0x2D, 0x00, 0x01, 0x02, 0x00, 0x02, 0x31, 0x2C];
        assert_eq!(frames(Side::Request, &req, 2)[0].pdu, &req[1..9]);
    }

    #[test]
    fn garbage_and_back_to_back_frames() {
        let mut data = vec![0xFF, 0x00, 0x13];
        data.extend_from_slice(&READ_REPLY);
        data.extend_from_slice(&READ_REPLY);
        let got = frames(Side::Response, &data, 4);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].pdu, &READ_REPLY[1..9]);
    }

    #[test]
    fn set_level_replies_of_any_shape() {
        // pymodbus echoes the 4 data bytes; the ref's class expected a byte count.
        let mut echo = Vec::new();
        encode_frame(1, &[0x6F, 0x00, 0x00, 0x00, 0x0F], &mut echo).unwrap();
        assert_eq!(echo, [0x01, 0x6F, 0x00, 0x00, 0x00, 0x0F, 0x95, 0xC7]);
        assert_eq!(frames(Side::Response, &echo, 1)[0].pdu, &echo[1..6]);
        let mut counted = Vec::new();
        encode_frame(1, &[0x6F, 0x02, 0x00, 0x0F], &mut counted).unwrap();
        assert_eq!(frames(Side::Response, &counted, 1)[0].pdu, &counted[1..5]);
    }

    #[test]
    fn a_gap_resynchronises_past_garbage_that_looks_like_a_long_frame() {
        // 00 01 0A looks like the start of an 13-byte read-coils reply; the real reply follows.
        let mut d = Decoder::new(Side::Response);
        let mut data = vec![0x00, 0x01, 0x0A];
        data.extend_from_slice(&READ_REPLY);
        let mut got = Vec::new();
        d.feed(&data, |f| got.push(f));
        assert!(got.is_empty(), "without a gap the decoder waits for the long frame");
        assert_eq!(d.gap().map(|f| f.pdu), Some(READ_REPLY[1..9].to_vec()));
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn a_set_level_that_never_ends_does_not_hold_the_buffer() {
        let mut data = vec![0x01, 0x6F];
        data.extend(std::iter::repeat_n(0x55, 600));
        data.extend_from_slice(&READ_REPLY);
        let got = frames(Side::Response, &data, 7);
        assert_eq!(got.last().map(|f| f.pdu.clone()), Some(READ_REPLY[1..9].to_vec()));
    }
}
