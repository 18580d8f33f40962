//! Hex digits on the wire: upper case on emit, either case accepted on parse.

const INVALID: u8 = 0xFF;

/// Nibble value of every byte, or `INVALID`.
static NIBBLE: [u8; 256] = {
    let mut t = [INVALID; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'A' as usize + i] = 10 + i as u8;
        t[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

pub(crate) const UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Decodes two characters already known to be hex digits. Never panics: a non-hex byte reads as
/// garbage bits, which callers exclude by validating first.
#[inline]
pub(crate) fn byte_unchecked(hi: u8, lo: u8) -> u8 {
    (NIBBLE[hi as usize] << 4) | (NIBBLE[lo as usize] & 0x0F)
}

/// Index of the first non-hex byte of `s`, if any.
#[inline]
pub(crate) fn first_non_hex(s: &[u8]) -> Option<usize> {
    s.iter().position(|&c| NIBBLE[c as usize] == INVALID)
}

/// The ASCII sum of `s` if every byte is a hex digit, else the index of the first one that is not.
/// One pass for both, since every frame's INFO needs both.
#[inline]
pub(crate) fn sum_if_hex(s: &[u8]) -> Result<u32, usize> {
    let mut sum = 0u32;
    let mut bad = 0u8;
    for &c in s {
        bad |= NIBBLE[c as usize] & 0xF0;
        sum = sum.wrapping_add(u32::from(c));
    }
    if bad != 0 {
        return Err(first_non_hex(s).unwrap_or(0));
    }
    Ok(sum)
}

#[inline]
pub(crate) fn push_byte(out: &mut Vec<u8>, b: u8) {
    out.extend_from_slice(&[UPPER[usize::from(b >> 4)], UPPER[usize::from(b & 0x0F)]]);
}
