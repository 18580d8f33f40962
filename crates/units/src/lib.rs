//! Wire-scale newtypes for the Pace v25 and Pylontech RS485 protocols.
//!
//! On the wire every quantity is an integer with a fixed scale, and the two protocols disagree on
//! several scales (Pace current is 10 mA per step, Pylontech 100 mA; Pace temperatures are 0.1 K with
//! offset 2730, Pylontech with 2731). Each type here *is* one wire scale, so mixing them up is a type
//! error instead of a silent factor of ten:
//!
//! | type                    | wire encoding                      | used by                              |
//! |-------------------------|------------------------------------|--------------------------------------|
//! | [`Millivolts`]          | u16, 1 mV/LSB                      | cell and pack voltages, both         |
//! | [`CentiAmps`]           | i16, 10 mA/LSB, charge positive    | Pace 0x42 current, Pylon 0x61 (dialect) |
//! | [`DeciAmps`]            | i16, 100 mA/LSB, charge positive   | Pylontech currents and limits        |
//! | [`DeciKelvin<Pace>`]    | u16, 0.1 K/LSB, 0 °C = 2730        | Pace temperatures                    |
//! | [`DeciKelvin<Pylon>`]   | u16, 0.1 K/LSB, 0 °C = 2731        | Pylontech temperatures               |
//! | [`CentiAmpHours`]       | u16, 10 mAh/LSB                    | Pace capacities                      |
//! | [`MilliAmpHours`]       | u16 or u24, 1 mAh/LSB              | Pylontech capacities                 |
//! | [`Percent`]             | u8, 1 %/LSB                        | SOC, SOH                             |
//!
//! Conversions between scales are named (`to_milliamps`, `to_deci_celsius`, [`DeciAmps::from_centiamps`]),
//! integer-only and exact or explicitly rounded. Floats appear only at the web/MQTT edge, through the
//! `as_*_f64` accessors.
//!
//! ```
//! use units::{CentiAmps, DeciAmps, DeciKelvin, Pace, Pylon};
//!
//! let pace = DeciKelvin::<Pace>::from_raw(2985);
//! assert_eq!(pace.to_deci_celsius(), 255); // 25.5 °C
//! let pylon = DeciKelvin::<Pylon>::from_deci_celsius(pace.to_deci_celsius());
//! assert_eq!(pylon.raw(), 2986);
//!
//! // -2.25 A from a Pace pack becomes -2.3 A for a Pylontech reader (half away from zero).
//! assert_eq!(DeciAmps::from_centiamps(CentiAmps::from_raw(-225)).raw(), -23);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use core::fmt;
use core::marker::PhantomData;

/// A voltage, u16 on the wire, 1 mV per LSB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Millivolts(u16);

impl Millivolts {
    /// Wraps a raw wire value (mV).
    pub const fn from_raw(raw: u16) -> Self {
        Self(raw)
    }
    /// The raw wire value (mV).
    pub const fn raw(self) -> u16 {
        self.0
    }
    /// The value in volts, for display only.
    pub fn as_volts_f64(self) -> f64 {
        f64::from(self.0) / 1000.0
    }
}

impl fmt::Display for Millivolts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03} V", self.0 / 1000, self.0 % 1000)
    }
}

/// A current, i16 on the wire, 10 mA per LSB, charge positive (Pace v25 0x42).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CentiAmps(i16);

impl CentiAmps {
    /// Wraps a raw wire value (10 mA steps).
    pub const fn from_raw(raw: i16) -> Self {
        Self(raw)
    }
    /// The raw wire value (10 mA steps).
    pub const fn raw(self) -> i16 {
        self.0
    }
    /// The current in mA (exact).
    pub const fn to_milliamps(self) -> i32 {
        self.0 as i32 * 10
    }
    /// The nearest representable value to `ma` milliamps, rounded half away from zero and saturated
    /// at the i16 range.
    pub fn from_milliamps(ma: i32) -> Self {
        Self(saturate_i16(div_round_half_away(i64::from(ma), 10)))
    }
    /// The value in amperes, for display only.
    pub fn as_amps_f64(self) -> f64 {
        f64::from(self.0) / 100.0
    }
}

impl fmt::Display for CentiAmps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_scaled(f, i64::from(self.0), 100, 2, " A")
    }
}

/// A current, i16 on the wire, 100 mA per LSB, charge positive (Pylontech 0x42, 0x92, 0x63).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeciAmps(i16);

impl DeciAmps {
    /// Wraps a raw wire value (100 mA steps).
    pub const fn from_raw(raw: i16) -> Self {
        Self(raw)
    }
    /// The raw wire value (100 mA steps).
    pub const fn raw(self) -> i16 {
        self.0
    }
    /// The current in mA (exact).
    pub const fn to_milliamps(self) -> i32 {
        self.0 as i32 * 100
    }
    /// The nearest representable value to `ma` milliamps, rounded half away from zero and saturated
    /// at the i16 range.
    pub fn from_milliamps(ma: i32) -> Self {
        Self(saturate_i16(div_round_half_away(i64::from(ma), 100)))
    }
    /// Re-expresses a Pace 10 mA current in 100 mA steps, rounded half away from zero
    /// (EMULATION.md: −2.25 A becomes −2.3 A).
    pub fn from_centiamps(c: CentiAmps) -> Self {
        Self(saturate_i16(div_round_half_away(i64::from(c.raw()), 10)))
    }
    /// The value in amperes, for display only.
    pub fn as_amps_f64(self) -> f64 {
        f64::from(self.0) / 10.0
    }
}

impl fmt::Display for DeciAmps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_scaled(f, i64::from(self.0), 10, 1, " A")
    }
}

/// The Kelvin offset of one protocol's temperature encoding.
pub trait TemperatureScale: Copy + fmt::Debug + Default + PartialEq + Eq + core::hash::Hash {
    /// Raw value that means 0.0 °C.
    const ZERO_CELSIUS: u16;
    /// Protocol name, for messages.
    const NAME: &'static str;
}

/// Pace v25 temperatures: 0.1 K with 0 °C = 2730 (Pace PDF: "25.5 ℃ = 25.5*10+2730 = 2985").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Pace;
impl TemperatureScale for Pace {
    const ZERO_CELSIUS: u16 = 2730;
    const NAME: &'static str = "pace";
}

/// Pylontech temperatures: 0.1 K with 0 °C = 2731 (Pylon V2.8/V3.3: "25.5 ℃ = 25.5*10+2731 = 2986").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Pylon;
impl TemperatureScale for Pylon {
    const ZERO_CELSIUS: u16 = 2731;
    const NAME: &'static str = "pylon";
}

/// A temperature, u16 on the wire, 0.1 K per LSB with the offset of protocol `S`.
pub struct DeciKelvin<S>(u16, PhantomData<S>);

impl<S: TemperatureScale> DeciKelvin<S> {
    /// Wraps a raw wire value.
    pub const fn from_raw(raw: u16) -> Self {
        Self(raw, PhantomData)
    }
    /// The raw wire value.
    pub const fn raw(self) -> u16 {
        self.0
    }
    /// The temperature in 0.1 °C steps (exact).
    pub const fn to_deci_celsius(self) -> i32 {
        self.0 as i32 - S::ZERO_CELSIUS as i32
    }
    /// The wire value for `dc` tenths of a degree Celsius, saturated at the u16 range.
    pub fn from_deci_celsius(dc: i32) -> Self {
        let raw = (i64::from(dc) + i64::from(S::ZERO_CELSIUS)).clamp(0, i64::from(u16::MAX));
        Self(raw as u16, PhantomData)
    }
    /// The same temperature in another protocol's encoding.
    pub fn convert<T: TemperatureScale>(self) -> DeciKelvin<T> {
        DeciKelvin::from_deci_celsius(self.to_deci_celsius())
    }
    /// The value in °C, for display only.
    pub fn as_celsius_f64(self) -> f64 {
        f64::from(self.to_deci_celsius()) / 10.0
    }
}

// Manual impls: derives would put bounds on the zero-sized marker.
impl<S> Clone for DeciKelvin<S> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<S> Copy for DeciKelvin<S> {}
impl<S> PartialEq for DeciKelvin<S> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl<S> Eq for DeciKelvin<S> {}
impl<S> PartialOrd for DeciKelvin<S> {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<S> Ord for DeciKelvin<S> {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}
impl<S> core::hash::Hash for DeciKelvin<S> {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}
impl<S: TemperatureScale> Default for DeciKelvin<S> {
    fn default() -> Self {
        Self::from_raw(S::ZERO_CELSIUS)
    }
}
impl<S: TemperatureScale> fmt::Debug for DeciKelvin<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeciKelvin<{}>({})", S::NAME, self.0)
    }
}
impl<S: TemperatureScale> fmt::Display for DeciKelvin<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_scaled(f, i64::from(self.to_deci_celsius()), 10, 1, " °C")
    }
}

/// A capacity, u16 on the wire, 10 mAh per LSB (Pace v25).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CentiAmpHours(u16);

impl CentiAmpHours {
    /// Wraps a raw wire value (10 mAh steps).
    pub const fn from_raw(raw: u16) -> Self {
        Self(raw)
    }
    /// The raw wire value (10 mAh steps).
    pub const fn raw(self) -> u16 {
        self.0
    }
    /// The capacity in mAh (exact).
    pub const fn to_milliamp_hours(self) -> MilliAmpHours {
        MilliAmpHours(self.0 as u32 * 10)
    }
}

impl fmt::Display for CentiAmpHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_scaled(f, i64::from(self.0), 100, 2, " Ah")
    }
}

/// A capacity in mAh: u16 on the wire, or u24 in Pylontech's "user defined 4" fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MilliAmpHours(u32);

impl MilliAmpHours {
    /// Wraps a value in mAh.
    pub const fn from_raw(raw: u32) -> Self {
        Self(raw)
    }
    /// The value in mAh.
    pub const fn raw(self) -> u32 {
        self.0
    }
    /// The value as a 16-bit wire field, if it fits.
    pub fn to_u16(self) -> Option<u16> {
        u16::try_from(self.0).ok()
    }
}

impl fmt::Display for MilliAmpHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_scaled(f, i64::from(self.0), 1000, 3, " Ah")
    }
}

/// A percentage (SOC, SOH), u8 on the wire, 1 % per LSB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Percent(u8);

impl Percent {
    /// Wraps a raw wire value (%).
    pub const fn from_raw(raw: u8) -> Self {
        Self(raw)
    }
    /// The raw wire value (%).
    pub const fn raw(self) -> u8 {
        self.0
    }
    /// `part / whole` in whole percent, rounded down and capped at 100 %; `None` when `whole` is 0.
    pub fn ratio_capped(part: u32, whole: u32) -> Option<Self> {
        if whole == 0 {
            return None;
        }
        let pct = (u64::from(part) * 100 / u64::from(whole)).min(100);
        Some(Self(pct as u8))
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} %", self.0)
    }
}

fn div_round_half_away(n: i64, d: i64) -> i64 {
    let q = n / d;
    let r = n % d;
    if 2 * r.abs() >= d { q + n.signum() } else { q }
}

fn saturate_i16(v: i64) -> i16 {
    v.clamp(i64::from(i16::MIN), i64::from(i16::MAX)) as i16
}

fn fmt_scaled(f: &mut fmt::Formatter<'_>, v: i64, scale: i64, digits: usize, unit: &str) -> fmt::Result {
    let sign = if v < 0 { "-" } else { "" };
    let a = v.unsigned_abs();
    let s = scale.unsigned_abs();
    write!(f, "{sign}{}.{:0digits$}{unit}", a / s, a % s)
}

#[cfg(feature = "serde")]
mod serde_impls {
    //! Each quantity serializes as one integer in the unit its JSON field name carries.
    use super::*;
    use serde::{Serialize, Serializer};

    impl Serialize for Millivolts {
        fn serialize<Z: Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
            s.serialize_u16(self.0)
        }
    }
    impl Serialize for CentiAmps {
        /// mA.
        fn serialize<Z: Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
            s.serialize_i32(self.to_milliamps())
        }
    }
    impl Serialize for DeciAmps {
        /// mA.
        fn serialize<Z: Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
            s.serialize_i32(self.to_milliamps())
        }
    }
    impl<S: TemperatureScale> Serialize for DeciKelvin<S> {
        /// 0.1 °C.
        fn serialize<Z: Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
            s.serialize_i32(self.to_deci_celsius())
        }
    }
    impl Serialize for CentiAmpHours {
        /// mAh.
        fn serialize<Z: Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
            s.serialize_u32(self.to_milliamp_hours().raw())
        }
    }
    impl Serialize for MilliAmpHours {
        fn serialize<Z: Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
            s.serialize_u32(self.0)
        }
    }
    impl Serialize for Percent {
        fn serialize<Z: Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
            s.serialize_u8(self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pace_and_pylon_offsets_follow_their_specs() {
        // Pace PDF: 25.5 °C = 2985; its worked example 0x0BB7 = 2999 -> 26.9 °C.
        assert_eq!(DeciKelvin::<Pace>::from_deci_celsius(255).raw(), 2985);
        assert_eq!(DeciKelvin::<Pace>::from_raw(0x0BB7).to_deci_celsius(), 269);
        // Pylon V2.8/V3.3: 25.5 °C = 2986.
        assert_eq!(DeciKelvin::<Pylon>::from_deci_celsius(255).raw(), 2986);
        assert_eq!(DeciKelvin::<Pace>::from_raw(2971).convert::<Pylon>().raw(), 2972);
    }

    #[test]
    fn currents_convert_exactly_or_round_half_away_from_zero() {
        assert_eq!(CentiAmps::from_raw(-225).to_milliamps(), -2250);
        assert_eq!(DeciAmps::from_centiamps(CentiAmps::from_raw(-225)).raw(), -23);
        assert_eq!(DeciAmps::from_centiamps(CentiAmps::from_raw(225)).raw(), 23);
        assert_eq!(DeciAmps::from_centiamps(CentiAmps::from_raw(224)).raw(), 22);
        assert_eq!(DeciAmps::from_centiamps(CentiAmps::from_raw(-4)).raw(), 0);
        assert_eq!(DeciAmps::from_raw(-26).to_milliamps(), -2600);
        assert_eq!(DeciAmps::from_milliamps(i32::MAX).raw(), i16::MAX);
    }

    #[test]
    fn display_shows_units() {
        assert_eq!(Millivolts::from_raw(3269).to_string(), "3.269 V");
        assert_eq!(CentiAmps::from_raw(-225).to_string(), "-2.25 A");
        assert_eq!(CentiAmps::from_raw(-5).to_string(), "-0.05 A");
        assert_eq!(DeciKelvin::<Pace>::from_raw(2720).to_string(), "-1.0 °C");
        assert_eq!(CentiAmpHours::from_raw(4819).to_string(), "48.19 Ah");
        assert_eq!(MilliAmpHours::from_raw(95460).to_string(), "95.460 Ah");
    }

    #[test]
    fn soc_ratio_is_capped_and_total() {
        assert_eq!(Percent::ratio_capped(4819, 10346), Some(Percent::from_raw(46)));
        assert_eq!(Percent::ratio_capped(200, 100), Some(Percent::from_raw(100)));
        assert_eq!(Percent::ratio_capped(1, 0), None);
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_writes_the_json_unit() {
        let t = DeciKelvin::<Pace>::from_raw(2971);
        assert_eq!(serde_json::to_string(&t).unwrap(), "241");
        assert_eq!(serde_json::to_string(&CentiAmps::from_raw(-225)).unwrap(), "-2250");
        assert_eq!(serde_json::to_string(&CentiAmpHours::from_raw(4819)).unwrap(), "48190");
    }

    proptest! {
        #[test]
        fn temperature_round_trips_between_scales(raw in 2731u16..u16::MAX) {
            let pylon = DeciKelvin::<Pace>::from_raw(raw).convert::<Pylon>();
            prop_assert_eq!(pylon.convert::<Pace>().raw(), raw);
        }

        #[test]
        fn deci_amps_never_further_than_half_a_step(c in any::<i16>()) {
            let d = DeciAmps::from_centiamps(CentiAmps::from_raw(c));
            let err = (d.to_milliamps() - CentiAmps::from_raw(c).to_milliamps()).abs();
            prop_assert!(err <= 50 || d.raw() == i16::MAX || d.raw() == i16::MIN);
        }
    }
}
