use crate::{EOI, Error, HEADER_LEN, Header, MAX_INFO_CHARS, SOI, checksum, hex, length_checksum};

/// Emits one frame into a `Vec<u8>`: header now, INFO field by field, LENGTH and CHKSUM on
/// [`FrameWriter::finish`]. All hex is upper case.
///
/// The frame is appended, so one buffer can be reused without allocating per frame.
#[derive(Debug)]
pub struct FrameWriter<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
}

impl<'a> FrameWriter<'a> {
    /// Starts a frame at the end of `out`.
    pub fn new(out: &'a mut Vec<u8>, header: Header) -> Self {
        let start = out.len();
        out.push(SOI);
        for b in [header.ver, header.adr, header.cid1, header.cid2] {
            hex::push_byte(out, b);
        }
        out.extend_from_slice(b"0000");
        Self { out, start }
    }

    /// Appends one INFO byte.
    #[inline]
    pub fn u8(&mut self, v: u8) -> &mut Self {
        hex::push_byte(self.out, v);
        self
    }

    /// Appends a big-endian u16.
    #[inline]
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes(&v.to_be_bytes())
    }

    /// Appends a big-endian two's-complement i16.
    #[inline]
    pub fn i16(&mut self, v: i16) -> &mut Self {
        self.u16(v as u16)
    }

    /// Appends the low 24 bits of `v`, big-endian.
    pub fn u24(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_be_bytes()[1..])
    }

    /// Appends raw bytes.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.out.reserve(v.len() * 2);
        for &b in v {
            hex::push_byte(self.out, b);
        }
        self
    }

    /// Writes LENGTH, CHKSUM and EOI, and returns the length of the whole frame.
    ///
    /// # Errors
    /// [`Error::InfoTooLong`] when INFO exceeds 4094 characters; the partial frame is then removed
    /// from the buffer.
    pub fn finish(self) -> Result<usize, Error> {
        let info_start = self.start + HEADER_LEN;
        let chars = self.out.len() - info_start;
        if chars > MAX_INFO_CHARS {
            self.out.truncate(self.start);
            return Err(Error::InfoTooLong { chars });
        }
        let lenid = chars as u16;
        let length = (u16::from(length_checksum(lenid)) << 12) | lenid;
        let length_at = self.start + 9;
        let digits = length.to_be_bytes();
        self.out[length_at] = hex::UPPER[usize::from(digits[0] >> 4)];
        self.out[length_at + 1] = hex::UPPER[usize::from(digits[0] & 0x0F)];
        self.out[length_at + 2] = hex::UPPER[usize::from(digits[1] >> 4)];
        self.out[length_at + 3] = hex::UPPER[usize::from(digits[1] & 0x0F)];
        let sum = checksum(&self.out[self.start + 1..]);
        for b in sum.to_be_bytes() {
            hex::push_byte(self.out, b);
        }
        self.out.push(EOI);
        Ok(self.out.len() - self.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Frame;

    #[test]
    fn emits_the_spec_frames_byte_exact() {
        let mut out = Vec::new();
        FrameWriter::new(&mut out, Header { ver: 0x25, adr: 0, cid1: 0x46, cid2: 0 }).finish().unwrap();
        assert_eq!(out, b"~250046000000FDAF\r");
        out.clear();
        let mut w = FrameWriter::new(&mut out, Header { ver: 0x25, adr: 0, cid1: 0x46, cid2: 0x09 });
        w.u8(0x04);
        w.finish().unwrap();
        assert_eq!(out, b"~25004609E00204FD2B\r");
    }

    #[test]
    fn too_long_info_is_refused_and_removed() {
        let mut out = b"keep".to_vec();
        let mut w = FrameWriter::new(&mut out, Header { ver: 0x20, adr: 2, cid1: 0x46, cid2: 0 });
        w.bytes(&[0u8; 2048]);
        assert_eq!(w.finish(), Err(Error::InfoTooLong { chars: 4096 }));
        assert_eq!(out, b"keep");
    }

    #[test]
    fn the_longest_info_round_trips() {
        let mut out = Vec::new();
        let mut w = FrameWriter::new(&mut out, Header { ver: 0x20, adr: 2, cid1: 0x46, cid2: 0 });
        w.bytes(&[0xA5u8; 2047]);
        w.finish().unwrap();
        assert_eq!(Frame::parse(&out).unwrap().info_len(), 2047);
    }
}
