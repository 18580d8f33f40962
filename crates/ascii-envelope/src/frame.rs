use crate::{EOI, Error, HEADER_LEN, SOI, hex};

/// The four one-byte header fields. In a reply, `cid2` carries the return code ([`crate::Rtn`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// Protocol version: 0x25 for Pace v25, 0x20 for Pylontech.
    pub ver: u8,
    /// Device address.
    pub adr: u8,
    /// Device type: 0x46 for LiFePO4 battery packs.
    pub cid1: u8,
    /// Command code in a request, return code in a reply.
    pub cid2: u8,
}

/// A frame whose envelope has been checked: SOI, hex digits, LCHKSUM, LENID and CHKSUM.
///
/// INFO stays as the ASCII characters of the input; [`Frame::info`] reads it field by field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    header: Header,
    info: &'a [u8],
    checksum: u16,
}

/// Offsets of the fields, in characters from SOI.
mod field {
    pub const VER: usize = 1;
    pub const ADR: usize = 3;
    pub const CID1: usize = 5;
    pub const CID2: usize = 7;
    pub const LENGTH: usize = 9;
}

impl<'a> Frame<'a> {
    /// Checks one frame: `~`, header, INFO and CHKSUM, with or without the trailing CR. Lower-case
    /// hex is accepted; the checksum is then over the lower-case characters, as sent.
    ///
    /// # Errors
    /// The first problem found, in wire order: [`Error::MissingSoi`], [`Error::TooShort`],
    /// [`Error::NotHex`] in the header, [`Error::LengthChecksum`], [`Error::Length`],
    /// [`Error::OddLength`], [`Error::NotHex`] in INFO or CHKSUM, [`Error::Checksum`].
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let bytes = bytes.strip_suffix(&[EOI]).unwrap_or(bytes);
        if bytes.first() != Some(&SOI) {
            return Err(Error::MissingSoi);
        }
        if bytes.len() < HEADER_LEN + 4 {
            return Err(Error::TooShort { len: bytes.len() });
        }
        if let Some(i) = hex::first_non_hex(&bytes[1..HEADER_LEN]) {
            return Err(Error::NotHex { at: 1 + i });
        }
        let byte_at = |at: usize| hex::byte_unchecked(bytes[at], bytes[at + 1]);
        let header = Header {
            ver: byte_at(field::VER),
            adr: byte_at(field::ADR),
            cid1: byte_at(field::CID1),
            cid2: byte_at(field::CID2),
        };
        let length = u16::from_be_bytes([byte_at(field::LENGTH), byte_at(field::LENGTH + 2)]);
        let lenid = length & 0x0FFF;
        let found = (length >> 12) as u8;
        let expected = length_checksum(lenid);
        if found != expected {
            return Err(Error::LengthChecksum { expected, found });
        }
        let info_end = bytes.len() - 4;
        let actual = info_end - HEADER_LEN;
        let declared = usize::from(lenid);
        if declared != actual {
            return Err(Error::Length { declared, actual });
        }
        if declared % 2 != 0 {
            return Err(Error::OddLength { lenid: declared });
        }
        let info_sum = hex::sum_if_hex(&bytes[HEADER_LEN..info_end])
            .map_err(|i| Error::NotHex { at: HEADER_LEN + i })?;
        if let Some(i) = hex::first_non_hex(&bytes[info_end..]) {
            return Err(Error::NotHex { at: info_end + i });
        }
        let found = u16::from_be_bytes([byte_at(info_end), byte_at(info_end + 2)]);
        let header_sum = bytes[1..HEADER_LEN].iter().fold(0u32, |acc, &c| acc + u32::from(c));
        let expected = (header_sum.wrapping_add(info_sum) as u16).wrapping_neg();
        if found != expected {
            return Err(Error::Checksum { expected, found });
        }
        Ok(Self { header, info: &bytes[HEADER_LEN..info_end], checksum: found })
    }

    /// The header fields.
    pub fn header(&self) -> Header {
        self.header
    }

    /// A cursor over INFO, from its first byte.
    pub fn info(&self) -> Info<'a> {
        Info { hex: self.info, pos: 0 }
    }

    /// INFO as the ASCII hex characters of the frame.
    pub fn info_hex(&self) -> &'a [u8] {
        self.info
    }

    /// INFO length in bytes (LENID / 2).
    pub fn info_len(&self) -> usize {
        self.info.len() / 2
    }

    /// The CHKSUM field.
    pub fn checksum(&self) -> u16 {
        self.checksum
    }
}

/// The LCHKSUM nibble for a LENID: the nibble sum, negated mod 16.
///
/// ```
/// assert_eq!(ascii_envelope::length_checksum(0x012), 0xD); // LENGTH D012, both PDFs' example
/// ```
pub fn length_checksum(lenid: u16) -> u8 {
    let sum = (lenid & 0xF) + ((lenid >> 4) & 0xF) + ((lenid >> 8) & 0xF);
    (sum as u8).wrapping_neg() & 0x0F
}

/// CHKSUM of the characters between SOI and CHKSUM: their ASCII sum, negated mod 65536.
///
/// ```
/// assert_eq!(ascii_envelope::checksum(b"1203400356ABCEFE"), 0xFC72); // Pace PDF example
/// ```
pub fn checksum(chars: &[u8]) -> u16 {
    let sum = chars.iter().fold(0u32, |acc, &c| acc.wrapping_add(u32::from(c)));
    (sum as u16).wrapping_neg()
}

/// A cursor over INFO that reads big-endian fields of whole bytes.
///
/// Every read names the field it is for, so a short INFO is reported as e.g. `info too short: pack
/// voltage needs 2 bytes at info byte 40, 1 left`.
#[derive(Clone, Debug)]
pub struct Info<'a> {
    hex: &'a [u8],
    pos: usize,
}

impl<'a> Info<'a> {
    /// Bytes not yet read.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.hex.len() / 2 - self.pos
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Offset of the next byte in INFO.
    pub fn position(&self) -> usize {
        self.pos
    }

    #[inline]
    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], Error> {
        let available = self.remaining();
        if n > available {
            return Err(Error::Truncated { field, at: self.pos, needed: n, available });
        }
        let start = self.pos * 2;
        self.pos += n;
        Ok(&self.hex[start..start + n * 2])
    }

    /// Reads one byte.
    ///
    /// # Errors
    /// [`Error::Truncated`] when INFO has no byte left.
    #[inline]
    pub fn u8(&mut self, field: &'static str) -> Result<u8, Error> {
        let s = self.take(field, 1)?;
        Ok(hex::byte_unchecked(s[0], s[1]))
    }

    /// Reads a big-endian u16.
    ///
    /// # Errors
    /// [`Error::Truncated`] when fewer than 2 bytes are left.
    #[inline]
    pub fn u16(&mut self, field: &'static str) -> Result<u16, Error> {
        let s = self.take(field, 2)?;
        Ok(u16::from_be_bytes([hex::byte_unchecked(s[0], s[1]), hex::byte_unchecked(s[2], s[3])]))
    }

    /// Reads a big-endian two's-complement i16.
    ///
    /// # Errors
    /// [`Error::Truncated`] when fewer than 2 bytes are left.
    #[inline]
    pub fn i16(&mut self, field: &'static str) -> Result<i16, Error> {
        self.u16(field).map(|v| v as i16)
    }

    /// Reads `n` big-endian u16 values, mapped by `map` (a run of cell voltages or temperatures).
    /// The length is checked once for the whole run.
    ///
    /// # Errors
    /// [`Error::Truncated`] when fewer than `2 * n` bytes are left.
    #[inline]
    pub fn u16s<T>(
        &mut self,
        field: &'static str,
        n: usize,
        map: impl Fn(u16) -> T,
    ) -> Result<Vec<T>, Error> {
        let s = self.take(field, 2 * n)?;
        Ok(s.chunks_exact(4)
            .map(|c| {
                map(u16::from_be_bytes([hex::byte_unchecked(c[0], c[1]), hex::byte_unchecked(c[2], c[3])]))
            })
            .collect())
    }

    /// Reads a big-endian 24-bit unsigned number.
    ///
    /// # Errors
    /// [`Error::Truncated`] when fewer than 3 bytes are left.
    pub fn u24(&mut self, field: &'static str) -> Result<u32, Error> {
        let s = self.take(field, 3)?;
        Ok(s.chunks_exact(2).fold(0u32, |acc, p| (acc << 8) | u32::from(hex::byte_unchecked(p[0], p[1]))))
    }

    /// Reads `N` bytes into an array.
    ///
    /// # Errors
    /// [`Error::Truncated`] when fewer than `N` bytes are left.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], Error> {
        let s = self.take(field, N)?;
        let mut out = [0u8; N];
        for (o, p) in out.iter_mut().zip(s.chunks_exact(2)) {
            *o = hex::byte_unchecked(p[0], p[1]);
        }
        Ok(out)
    }

    /// Reads `n` bytes and appends them to `out`.
    ///
    /// # Errors
    /// [`Error::Truncated`] when fewer than `n` bytes are left.
    pub fn bytes_into(&mut self, field: &'static str, n: usize, out: &mut Vec<u8>) -> Result<(), Error> {
        let s = self.take(field, n)?;
        out.extend(s.chunks_exact(2).map(|p| hex::byte_unchecked(p[0], p[1])));
        Ok(())
    }

    /// Reads every byte that is left.
    pub fn rest(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.remaining());
        let n = self.remaining();
        // Cannot fail: exactly the remaining bytes are asked for.
        let _ = self.bytes_into("rest", n, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_checksums_of_the_spec_examples() {
        for (lenid, length) in
            [(0u16, 0x0000u16), (2, 0xE002), (4, 0xC004), (0x12, 0xD012), (0x4C, 0x004C), (0x7A, 0xF07A)]
        {
            assert_eq!(u16::from(length_checksum(lenid)) << 12 | lenid, length, "LENID {lenid:#x}");
        }
        assert_eq!(length_checksum(0x62), 0x8);
    }

    #[test]
    fn parses_a_pace_request_with_and_without_cr() {
        for raw in [&b"~25014642E00201FD30\r"[..], b"~25014642E00201FD30"] {
            let f = Frame::parse(raw).unwrap();
            assert_eq!(f.header(), Header { ver: 0x25, adr: 1, cid1: 0x46, cid2: 0x42 });
            assert_eq!(f.info_len(), 1);
            assert_eq!(f.checksum(), 0xFD30);
        }
    }

    #[test]
    fn lower_case_is_accepted_with_its_own_checksum() {
        // Same request with lower-case hex: the checksum is over the characters as sent.
        let body = b"25014642e00201";
        let sum = checksum(body);
        let frame = format!("~{}{sum:04x}", core::str::from_utf8(body).unwrap());
        let f = Frame::parse(frame.as_bytes()).unwrap();
        assert_eq!(f.info().u8("cmd").unwrap(), 1);
    }

    #[test]
    fn errors_name_the_problem() {
        let e = |s: &str| Frame::parse(s.as_bytes()).unwrap_err().to_string();
        assert_eq!(e("~25014642E00201FD31"), "checksum: expected FD30, found FD31");
        assert_eq!(e("~25014642E00301FD30"), "length checksum: expected D, found E");
        assert_eq!(e("~25014642C00401FD30"), "length: LENID says 4, INFO has 2");
        assert_eq!(e("~25014642E002G1FD30"), "not hex at byte 13");
        assert_eq!(e("~2501"), "frame too short: 5 bytes, the shortest frame has 17 before its CR");
        assert_eq!(e("25014642E00201FD30"), "frame does not start with '~'");
        assert_eq!(e(""), "frame does not start with '~'");
        assert_eq!(e("~25014642F00101FD30"), "length: LENID says 1, INFO has 2");
    }

    #[test]
    fn info_cursor_reports_truncation_with_field_and_offset() {
        let f = Frame::parse(b"~25014642E00201FD30").unwrap();
        let mut info = f.info();
        assert_eq!(info.u8("command").unwrap(), 1);
        assert_eq!(
            info.u16("pack voltage").unwrap_err().to_string(),
            "info too short: pack voltage needs 2 bytes at info byte 1, 0 left"
        );
    }
}
