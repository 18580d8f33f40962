//! Names for the bits of status bytes, shared by the Pace and Pylontech flag types (which are
//! `bitflags` types in their protocol crates).

/// Names of the set flags in snake_case, bit 0 first; an unnamed set bit is `bitN`.
pub fn flag_names<F>(flags: F) -> impl Iterator<Item = FlagName>
where
    F: bitflags::Flags<Bits = u8>,
{
    let bits = flags.bits();
    (0..8u8).filter(move |b| bits & (1 << b) != 0).map(|b| {
        let named = F::FLAGS.iter().find(|f| f.value().bits() == 1 << b && !f.name().is_empty());
        match named {
            Some(f) => FlagName::Named(f.name()),
            None => FlagName::Bit(b),
        }
    })
}

/// One flag's name, as [`flag_names`] yields it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagName {
    /// A named flag (the constant's name; displayed in snake_case).
    Named(&'static str),
    /// A bit with no name in the spec.
    Bit(u8),
}

impl core::fmt::Display for FlagName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Named(n) => {
                for c in n.chars() {
                    core::fmt::Write::write_char(f, c.to_ascii_lowercase())?;
                }
                Ok(())
            }
            Self::Bit(b) => write!(f, "bit{b}"),
        }
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for FlagName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Serializes a flag set as the list of its names.
#[cfg(feature = "serde")]
#[derive(Clone, Copy, Debug)]
pub struct FlagList<F>(pub F);

#[cfg(feature = "serde")]
impl<F: bitflags::Flags<Bits = u8> + Copy> serde::Serialize for FlagList<F> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(flag_names(self.0))
    }
}

/// Serializes a cell mask (bit n = cell n + 1) as the list of 1-based cell numbers.
#[cfg(feature = "serde")]
#[derive(Clone, Copy, Debug)]
pub struct CellMask(pub u16);

#[cfg(feature = "serde")]
impl serde::Serialize for CellMask {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq((0..16u8).filter(|b| self.0 & (1 << b) != 0).map(|b| b + 1))
    }
}
