use std::borrow::Cow;

use crate::{Error, Info};

/// A fixed-width ASCII field (a name, version or serial), kept as sent.
///
/// [`Text::trimmed`] drops the NUL or space padding devices use; [`Text::fixed`] pads or cuts it
/// to a field width for sending.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Text(pub Vec<u8>);

impl Text {
    /// `s` padded with `pad` to `len` bytes, or cut to `len`.
    pub fn padded(s: &str, len: usize, pad: u8) -> Self {
        let mut v: Vec<u8> = s.bytes().take(len).collect();
        v.resize(len, pad);
        Self(v)
    }

    /// Reads `len` bytes of INFO.
    ///
    /// # Errors
    /// [`Error::Truncated`] naming `field` when INFO is shorter.
    pub fn read(info: &mut Info<'_>, field: &'static str, len: usize) -> Result<Self, Error> {
        let mut v = Vec::with_capacity(len);
        info.bytes_into(field, len, &mut v)?;
        Ok(Self(v))
    }

    /// The bytes padded with `pad` or cut to exactly `len`.
    pub fn fixed(&self, len: usize, pad: u8) -> Cow<'_, [u8]> {
        if self.0.len() == len {
            Cow::Borrowed(&self.0)
        } else {
            let mut v = self.0.clone();
            v.resize(len, pad);
            Cow::Owned(v)
        }
    }

    /// The text without trailing NUL or space padding (Pylontech's `-` padding is kept, it is text); bytes that are not UTF-8 become U+FFFD.
    pub fn trimmed(&self) -> Cow<'_, str> {
        let end = self.0.iter().rposition(|&b| !matches!(b, 0 | b' ')).map_or(0, |i| i + 1);
        String::from_utf8_lossy(&self.0[..end])
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Text {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.trimmed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_is_trimmed() {
        assert_eq!(Text(b"US2000C\0\0\0".to_vec()).trimmed(), "US2000C");
        assert_eq!(Text(b"P16S100A-1812-1.00 \0".to_vec()).trimmed(), "P16S100A-1812-1.00");
        assert_eq!(Text::padded("ab", 4, 0).0, b"ab\0\0");
        assert_eq!(Text(b"abc".to_vec()).fixed(2, 0).as_ref(), b"ab");
    }
}
