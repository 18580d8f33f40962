//! The Vevor EML3500-24L inverter's Modbus port (the EG4 3000EHV register map, holding registers,
//! FC03 read / FC16 write, slave 1), both sides.
//!
//! ```text
//!  blocks read (an item is never split):  100-101 fault   108-109 warning   186-197 serial
//!  201-234 live data   300-343 settings   351   406   420   643-644 rating   760-775 BMS mirror
//! ```
//!
//! Every item is a row of the [`map`] with its scale, signedness, unit and the values a write may
//! carry. [`decode`] turns registers into [`Value`]s; [`validate_write`] refuses read-only items and
//! values outside the allowed set with a message listing them; an exception reply is a value.
//!
//! ```
//! use vevor_modbus::{map, parse_value, validate_write};
//!
//! let item = map::find("output_priority").unwrap();
//! assert_eq!(parse_value(item, "sbu").unwrap(), 2);
//! let e = validate_write(map::find("charging_priority").unwrap(), 7).unwrap_err();
//! assert_eq!(e.to_string(), "charging_priority: 7 is not allowed; allowed: 0 utility, 1 pv, 2 pv_utility, 3 pv_only");
//! assert!(validate_write(map::find("battery_soc").unwrap(), 50).is_err()); // read only
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod map;

use std::collections::BTreeMap;

use map::{Access, Allowed, Format, Item};
use modbus_rtu::{ExceptionCode, Request, Response};

pub use map::{Access as ItemAccess, find};

/// The inverter's default slave address.
pub const DEFAULT_SLAVE: u8 = 1;

/// Register blocks read for all live data, settings and the BMS mirror; no item straddles two.
pub const BLOCKS: &[(u16, u16)] =
    &[(100, 2), (108, 2), (186, 12), (201, 34), (300, 44), (351, 1), (406, 1), (420, 1), (643, 2), (760, 16)];

/// What went wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No item has that name.
    #[error("unknown register '{name}'; known: {known}")]
    UnknownName {
        /// The name given.
        name: String,
        /// The names that exist.
        known: String,
    },
    /// The item cannot be written.
    #[error("{0} is read only")]
    ReadOnly(&'static str),
    /// The value is outside the allowed set.
    #[error("{name}: {value} is not allowed; allowed: {allowed}")]
    NotAllowed {
        /// The item.
        name: &'static str,
        /// The value given, as given.
        value: String,
        /// The allowed values.
        allowed: String,
    },
    /// The value cannot be read as a number or a name.
    #[error("{name}: '{value}' is not {expected}")]
    BadValue {
        /// The item.
        name: &'static str,
        /// The text given.
        value: String,
        /// What was expected.
        expected: String,
    },
    /// The reply is malformed or of another kind than asked.
    #[error("unexpected reply: {0}")]
    Unexpected(String),
    /// A reply PDU that fails to decode.
    #[error(transparent)]
    Rtu(#[from] modbus_rtu::Error),
}

/// An item's decoded value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// A number: the raw register value (sign applied); divide by the item's divisor for its unit.
    Number(i64),
    /// A named choice (raw value and its name, if the map knows it).
    Choice(u16, Option<&'static str>),
    /// Text.
    Text(String),
}

impl Value {
    /// The raw number behind the value (0 for text).
    pub fn raw(&self) -> i64 {
        match self {
            Self::Number(n) => *n,
            Self::Choice(v, _) => i64::from(*v),
            Self::Text(_) => 0,
        }
    }

    /// The value in the item's unit, as text (`26.8 V`, `sbu`). A choice with a unit (the output
    /// voltage and frequency settings) shows as its number.
    pub fn display(&self, item: &Item) -> String {
        match self {
            Self::Choice(v, _) if !item.unit.is_empty() => Self::Number(i64::from(*v)).display(item),
            Self::Number(n) => {
                let text = scaled(*n, item.divisor);
                if item.unit.is_empty() { text } else { format!("{text} {}", item.unit) }
            }
            Self::Choice(_, Some(name)) => (*name).to_owned(),
            Self::Choice(v, None) => format!("{v} (unknown)"),
            Self::Text(t) => t.clone(),
        }
    }

    /// The JSON key and value for the item: numbers as integers in a unit suffixed to the name
    /// (`battery_voltage_mv: 26800`, `battery_current_ma: -12300`, `battery_soc_pct: 77`), named
    /// choices and text as strings, unknown choices as their number.
    pub fn json_field(&self, item: &Item) -> (String, JsonValue) {
        match self {
            Self::Choice(v, _) if !item.unit.is_empty() => Self::Number(i64::from(*v)).json_field(item),
            Self::Number(n) => {
                let (suffix, factor) = match item.unit {
                    "V" => ("_mv", 1000),
                    "A" => ("_ma", 1000),
                    "Hz" => ("_mhz", 1000),
                    "W" => ("_w", 1),
                    "VA" => ("_va", 1),
                    "%" => ("_pct", 1),
                    "°C" => ("_c", 1),
                    "min" => ("_min", 1),
                    "days" => ("_days", 1),
                    _ => ("", 1),
                };
                let value = n * factor / i64::from(item.divisor.max(1));
                (format!("{}{suffix}", item.name), JsonValue::Int(value))
            }
            Self::Choice(_, Some(name)) => (item.name.to_owned(), JsonValue::Str((*name).to_owned())),
            Self::Choice(v, None) => (item.name.to_owned(), JsonValue::Int(i64::from(*v))),
            Self::Text(t) => (item.name.to_owned(), JsonValue::Str(t.clone())),
        }
    }
}

/// A JSON scalar, so this crate needs no serde.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JsonValue {
    /// An integer.
    Int(i64),
    /// A string.
    Str(String),
}

fn scaled(n: i64, divisor: u16) -> String {
    let d = i64::from(divisor.max(1));
    if d == 1 {
        return n.to_string();
    }
    let decimals = (d as f64).log10().round() as usize;
    let sign = if n < 0 { "-" } else { "" };
    let a = n.unsigned_abs();
    let du = d.unsigned_abs();
    format!("{sign}{}.{:0decimals$}", a / du, a % du)
}

/// Decodes `item` from its registers (`regs.len() == item.format.registers()`).
pub fn decode(item: &Item, regs: &[u16]) -> Value {
    let first = regs.first().copied().unwrap_or(0);
    let value = match item.format {
        Format::U16 => i64::from(first),
        Format::I16 => i64::from(first as i16),
        Format::U32 => (i64::from(first) << 16) | i64::from(regs.get(1).copied().unwrap_or(0)),
        Format::Ascii(_) => {
            let bytes: Vec<u8> = regs.iter().flat_map(|r| r.to_be_bytes()).collect();
            let end = bytes.iter().rposition(|&b| b != 0 && b != b' ').map_or(0, |i| i + 1);
            return Value::Text(String::from_utf8_lossy(&bytes[..end]).into_owned());
        }
    };
    match item.allowed {
        Allowed::Choices(choices) => {
            let v = value as u16;
            Value::Choice(v, choices.iter().find(|(c, _)| *c == v).map(|(_, n)| *n))
        }
        _ => Value::Number(value),
    }
}

/// Reads `text` as a value for `item`: a choice's name or number, or a number in the item's unit
/// (`40` for 40 A is raw 400). Returns the raw register value, validated.
///
/// # Errors
/// [`Error::BadValue`], [`Error::NotAllowed`] or [`Error::ReadOnly`].
pub fn parse_value(item: &'static Item, text: &str) -> Result<u16, Error> {
    let t = text.trim();
    let raw = if let Allowed::Choices(choices) = item.allowed {
        if let Some((v, _)) = choices.iter().find(|(_, n)| n.eq_ignore_ascii_case(t)) {
            *v
        } else {
            parse_scaled(item, t)?
        }
    } else {
        parse_scaled(item, t)?
    };
    validate_write(item, raw)?;
    Ok(raw)
}

fn parse_scaled(item: &'static Item, t: &str) -> Result<u16, Error> {
    let bad = || Error::BadValue {
        name: item.name,
        value: t.to_owned(),
        expected: match (item.allowed, item.unit) {
            (Allowed::Choices(_), _) => format!("one of: {}", allowed_list(item)),
            (_, "") => "a number".to_owned(),
            (_, unit) => format!("a number of {unit}"),
        },
    };
    let number = t.strip_suffix(item.unit).unwrap_or(t).trim();
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    let divisor = u64::from(item.divisor.max(1));
    let decimals = (divisor as f64).log10().round() as usize;
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    if frac.len() > decimals {
        return Err(Error::NotAllowed {
            name: item.name,
            value: t.to_owned(),
            allowed: format!("steps of {} {}", scaled(1, item.divisor), item.unit),
        });
    }
    let int: u64 = int.parse().map_err(|_| bad())?;
    let frac_value: u64 = if frac.is_empty() {
        0
    } else {
        frac.parse::<u64>().map_err(|_| bad())? * 10u64.pow((decimals - frac.len()) as u32)
    };
    let raw = int.checked_mul(divisor).and_then(|v| v.checked_add(frac_value)).ok_or_else(bad)?;
    u16::try_from(raw).map_err(|_| Error::NotAllowed {
        name: item.name,
        value: t.to_owned(),
        allowed: allowed_list(item),
    })
}

/// The allowed values of `item`, for messages.
pub fn allowed_list(item: &Item) -> String {
    match item.allowed {
        Allowed::Any => "any 16-bit value".to_owned(),
        Allowed::Range { min, max } => {
            let unit = if item.unit.is_empty() { String::new() } else { format!(" {}", item.unit) };
            format!(
                "{} to {}{unit}",
                scaled(i64::from(min), item.divisor),
                scaled(i64::from(max), item.divisor)
            )
        }
        Allowed::Choices(choices) => {
            choices.iter().map(|(v, n)| format!("{v} {n}")).collect::<Vec<_>>().join(", ")
        }
    }
}

/// Checks that `raw` may be written to `item`.
///
/// # Errors
/// [`Error::ReadOnly`] or [`Error::NotAllowed`] (listing the allowed values).
pub fn validate_write(item: &'static Item, raw: u16) -> Result<(), Error> {
    if item.access == Access::ReadOnly || item.format.registers() != 1 {
        return Err(Error::ReadOnly(item.name));
    }
    let ok = match item.allowed {
        Allowed::Any => true,
        Allowed::Range { min, max } => (min..=max).contains(&raw),
        Allowed::Choices(choices) => choices.iter().any(|(v, _)| *v == raw),
    };
    if ok {
        Ok(())
    } else {
        Err(Error::NotAllowed { name: item.name, value: raw.to_string(), allowed: allowed_list(item) })
    }
}

/// The item named `name`.
///
/// # Errors
/// [`Error::UnknownName`] listing the names that exist.
pub fn item(name: &str) -> Result<&'static Item, Error> {
    map::find(name).ok_or_else(|| Error::UnknownName {
        name: name.to_owned(),
        known: map::all().map(|i| i.name).collect::<Vec<_>>().join(", "),
    })
}

/// The read request for one item (or a whole block).
pub fn read_request(address: u16, count: u16) -> Request {
    Request::ReadHolding { address, count }
}

/// The write request for one item: FC16 with its byte count, as the original wrote (the Vevor
/// accepted it). Validated first.
///
/// # Errors
/// As [`validate_write`].
pub fn write_request(item: &'static Item, raw: u16) -> Result<Request, Error> {
    validate_write(item, raw)?;
    Ok(Request::WriteMultiple { address: item.address, values: vec![raw] })
}

/// Decodes the reply to a block read; an exception is a value.
///
/// # Errors
/// [`Error::Unexpected`] for a reply that is not `count` holding registers.
pub fn parse_read(pdu: &[u8], count: u16) -> Result<Result<Vec<u16>, ExceptionCode>, Error> {
    match Response::parse(pdu)? {
        Response::ReadHolding(v) if v.len() == usize::from(count) => Ok(Ok(v)),
        Response::ReadHolding(v) => {
            Err(Error::Unexpected(format!("{} registers, expected {count}", v.len())))
        }
        Response::Exception { code, .. } => Ok(Err(code)),
        other => Err(Error::Unexpected(format!("{other:?}"))),
    }
}

/// Decodes the reply to a write; an exception is a value.
///
/// # Errors
/// [`Error::Unexpected`] for a reply of another kind.
pub fn parse_write(pdu: &[u8]) -> Result<Result<(), ExceptionCode>, Error> {
    match Response::parse(pdu)? {
        Response::WriteMultiple { .. } | Response::WriteSingle { .. } => Ok(Ok(())),
        Response::Exception { code, .. } => Ok(Err(code)),
        other => Err(Error::Unexpected(format!("{other:?}"))),
    }
}

/// Every item decoded from a set of block reads (address → registers).
pub fn decode_blocks(blocks: &BTreeMap<u16, Vec<u16>>) -> Vec<(&'static Item, Value)> {
    let register = |a: u16| {
        blocks.iter().find_map(|(start, regs)| {
            a.checked_sub(*start).and_then(|off| regs.get(usize::from(off)).copied())
        })
    };
    map::all()
        .filter(|i| i.access != Access::WriteOnly)
        .filter_map(|i| {
            let regs: Option<Vec<u16>> = (0..i.format.registers()).map(|k| register(i.address + k)).collect();
            regs.map(|r| (i, decode(i, &r)))
        })
        .collect()
}

/// The inverter's registers, for the device side (the simulator).
#[derive(Clone, Debug, Default)]
pub struct Registers {
    values: BTreeMap<u16, u16>,
}

impl Registers {
    /// Sets a register directly (the model's own updates; no validation).
    pub fn set(&mut self, address: u16, value: u16) {
        self.values.insert(address, value);
    }

    /// A register's value (0 when never set).
    pub fn get(&self, address: u16) -> u16 {
        self.values.get(&address).copied().unwrap_or(0)
    }

    /// Answers one request as the inverter does: reads of 1..=125 registers below 800 (unset ones
    /// read 0); writes only to writable items with allowed values (exception 01 for read-only,
    /// 03 for a bad value, 02 for an unmapped address); other functions get exception 01. Returns
    /// the addresses written.
    pub fn serve(&mut self, request: &Request) -> (Response, Vec<u16>) {
        let exception = |function, code| (Response::Exception { function, code }, Vec::new());
        match request {
            Request::ReadHolding { address, count } => {
                let end = u32::from(*address) + u32::from(*count);
                if *count == 0 || *count > 125 || end > 800 {
                    return exception(0x03, ExceptionCode::ILLEGAL_DATA_ADDRESS);
                }
                (Response::ReadHolding((*address..end as u16).map(|a| self.get(a)).collect()), Vec::new())
            }
            Request::WriteSingle { address, value } => match self.write(*address, &[*value]) {
                Ok(()) => (Response::WriteSingle { address: *address, value: *value }, vec![*address]),
                Err(code) => exception(0x06, code),
            },
            Request::WriteMultiple { address, values } => match self.write(*address, values) {
                Ok(()) => (
                    Response::WriteMultiple { address: *address, count: values.len() as u16 },
                    (0..values.len() as u16).map(|k| address + k).collect(),
                ),
                Err(code) => exception(0x10, code),
            },
            other => exception(other.function(), ExceptionCode::ILLEGAL_FUNCTION),
        }
    }

    fn write(&mut self, address: u16, values: &[u16]) -> Result<(), ExceptionCode> {
        for (k, v) in values.iter().enumerate() {
            let a = address + k as u16;
            let item = map::at(a).ok_or(ExceptionCode::ILLEGAL_DATA_ADDRESS)?;
            match validate_write(item, *v) {
                Ok(()) => {}
                Err(Error::ReadOnly(_)) => return Err(ExceptionCode::ILLEGAL_FUNCTION),
                Err(_) => return Err(ExceptionCode::ILLEGAL_DATA_VALUE),
            }
        }
        for (k, v) in values.iter().enumerate() {
            self.values.insert(address + k as u16, *v);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_cover_every_readable_item_without_splitting_it() {
        for item in map::all().filter(|i| i.access != Access::WriteOnly) {
            let span = item.address..item.address + item.format.registers();
            let inside = BLOCKS.iter().filter(|(s, n)| span.start >= *s && span.end <= s + n).count();
            assert_eq!(inside, 1, "{} must lie in exactly one block", item.name);
            for (s, n) in BLOCKS {
                let block = *s..s + n;
                let straddles = (block.contains(&span.start)) != (block.contains(&(span.end - 1)));
                assert!(!straddles, "{} straddles block {s}+{n}", item.name);
            }
        }
    }

    #[test]
    fn names_are_unique_and_addresses_do_not_overlap() {
        let items: Vec<_> = map::all().collect();
        for (k, a) in items.iter().enumerate() {
            for b in &items[k + 1..] {
                assert_ne!(a.name, b.name);
                let (ea, eb) = (a.address + a.format.registers(), b.address + b.format.registers());
                assert!(ea <= b.address || eb <= a.address, "{} overlaps {}", a.name, b.name);
            }
        }
    }

    #[test]
    fn eg4_pdf_read_example_decodes() {
        // 01 03 06 08FC 1388 04B0: 230.0 V, 50.00 Hz, 1200 W.
        let mut blocks = BTreeMap::new();
        blocks.insert(202, vec![0x08FC, 0x1388, 0x04B0]);
        let got = decode_blocks(&blocks);
        let show: Vec<String> = got.iter().map(|(i, v)| format!("{} {}", i.name, v.display(i))).collect();
        assert_eq!(show, ["mains_voltage 230.0 V", "mains_frequency 50.00 Hz", "mains_power 1200 W"]);
    }

    #[test]
    fn json_fields_carry_their_unit() {
        let v = find("battery_voltage").unwrap();
        assert_eq!(decode(v, &[268]).json_field(v), ("battery_voltage_mv".into(), JsonValue::Int(26800)));
        let c = find("battery_current").unwrap();
        assert_eq!(
            decode(c, &[(-123i16) as u16]).json_field(c),
            ("battery_current_ma".into(), JsonValue::Int(-12300))
        );
        let p = find("output_priority").unwrap();
        assert_eq!(decode(p, &[2]).json_field(p), ("output_priority".into(), JsonValue::Str("sbu".into())));
    }

    #[test]
    fn values_by_name_or_number_in_the_unit() {
        let cur = find("max_charging_current").unwrap();
        assert_eq!(parse_value(cur, "40").unwrap(), 400);
        assert_eq!(parse_value(cur, "40.5A").unwrap(), 405);
        assert_eq!(
            parse_value(cur, "5").unwrap_err().to_string(),
            "max_charging_current: 50 is not allowed; allowed: 10.0 to 80.0 A"
        );
        assert!(parse_value(cur, "40.55").unwrap_err().to_string().contains("steps of 0.1 A"));
        assert!(parse_value(cur, "-3").unwrap_err().to_string().contains("is not a number of A"));
        let pri = find("charging_priority").unwrap();
        assert_eq!(parse_value(pri, "PV_only").unwrap(), 3);
        assert_eq!(parse_value(pri, "2").unwrap(), 2);
        assert!(
            item("nope").unwrap_err().to_string().starts_with("unknown register 'nope'; known: fault_code")
        );
    }

    #[test]
    fn the_device_side_refuses_as_the_inverter_does() {
        let mut regs = Registers::default();
        regs.set(229, 77);
        let (r, written) = regs.serve(&Request::WriteMultiple { address: 301, values: vec![2] });
        assert_eq!((r, written), (Response::WriteMultiple { address: 301, count: 1 }, vec![301]));
        assert_eq!(regs.get(301), 2);
        let (r, _) = regs.serve(&Request::WriteMultiple { address: 229, values: vec![5] });
        assert_eq!(r, Response::Exception { function: 0x10, code: ExceptionCode::ILLEGAL_FUNCTION });
        let (r, _) = regs.serve(&Request::WriteSingle { address: 331, value: 7 });
        assert_eq!(r, Response::Exception { function: 0x06, code: ExceptionCode::ILLEGAL_DATA_VALUE });
        let (r, _) = regs.serve(&Request::ReadHolding { address: 228, count: 2 });
        assert_eq!(r, Response::ReadHolding(vec![0, 77]));
    }
}
