//! The Eco-Worthy 200 A battery monitor ("coil"): its shunt talks Modbus RTU (slave 1) to its
//! display. Register map from the original project's sniffing (PROTOCOLS.md §4.1).
//!
//! ```text
//! input registers (FC04) 0..11             holding registers (FC03 read, FC16 write) 0..9
//!  0 SOC %          6/7 energy 0.01 Wh       0 address        5 over-voltage 0.01 V
//!  1 temperature °C 8/9 remaining mAh        1/2 capacity mAh 6 over-current
//!  2 voltage 0.01 V     (8 = high word)      3 full V 0.01 V  7 over-temperature
//!  3 current 0.01 A 10 flags                 4 empty V 0.01 V 8 under-voltage 0.01 V
//!  4/5 power 0.1 W  11 state 0/1/2                            9 low SOC %
//! custom 0x6F: 6F 00 00 00 0F = set full (100 %), 6F 00 00 00 00 = set empty (0 %)
//! ```
//!
//! The client side builds [`modbus_rtu::Request`]s and decodes the replies; the server side (the
//! simulator) answers requests from a [`Registers`] store.
//!
//! ```
//! use coil_modbus::{Reading, State};
//!
//! // The registers the interop peer serves: 87 %, 26.75 V, 12.34 A discharging, 135 732 mAh.
//! let r = Reading::from_registers(&[87, 21, 2675, 1234, 0, 33010, 1, 57920, 0x0002, 0x1234, 0, 1]);
//! assert_eq!((r.soc_pct, r.voltage_mv(), r.current_ma(), r.remaining_mah), (87, 26750, -12340, 135_732));
//! assert_eq!(r.state, State::Discharging);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use modbus_rtu::{ExceptionCode, FN_SET_LEVEL, Request, Response};

/// The counter's default slave address.
pub const DEFAULT_SLAVE: u8 = 1;
/// Input registers read as one block.
pub const INPUT_COUNT: u16 = 12;
/// Holding registers read as one block.
pub const HOLDING_COUNT: u16 = 10;

/// What the counter says the current is doing (input register 11).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// 0: no current.
    Idle,
    /// 1: discharging.
    Discharging,
    /// 2: charging.
    Charging,
    /// Any other value, kept.
    Unknown(u16),
}

impl State {
    /// Decodes register 11.
    pub fn from_raw(v: u16) -> Self {
        match v {
            0 => Self::Idle,
            1 => Self::Discharging,
            2 => Self::Charging,
            other => Self::Unknown(other),
        }
    }
    /// The register value.
    pub fn raw(self) -> u16 {
        match self {
            Self::Idle => 0,
            Self::Discharging => 1,
            Self::Charging => 2,
            Self::Unknown(v) => v,
        }
    }
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Discharging => "discharging",
            Self::Charging => "charging",
            Self::Unknown(_) => "unknown",
        }
    }
}

/// The live values: input registers 0..11 decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reading {
    /// Register 0: state of charge, %.
    pub soc_pct: u16,
    /// Register 1: temperature, whole °C (signed).
    pub temperature_c: i16,
    /// Register 2: pack voltage, 0.01 V.
    pub voltage_cv: u16,
    /// Register 3: current magnitude, 0.01 A (the sign is in `state`).
    pub current_ca: u16,
    /// Registers 4/5: power, 0.1 W, high word first.
    pub power_dw: u32,
    /// Registers 6/7: energy, 0.01 Wh, high word first.
    pub energy_cwh: u32,
    /// Registers 8/9: remaining capacity, mAh; register 8 is the high word (the original's code,
    /// which worked, computes `(r8 << 16) + r9` although its names say the opposite).
    pub remaining_mah: u32,
    /// Register 10: flags of unknown meaning, raw.
    pub flags: u16,
    /// Register 11: idle, discharging or charging.
    pub state: State,
}

fn u32_of(hi: u16, lo: u16) -> u32 {
    (u32::from(hi) << 16) | u32::from(lo)
}

impl Reading {
    /// Decodes input registers 0..11.
    pub fn from_registers(r: &[u16; 12]) -> Self {
        Self {
            soc_pct: r[0],
            temperature_c: r[1] as i16,
            voltage_cv: r[2],
            current_ca: r[3],
            power_dw: u32_of(r[4], r[5]),
            energy_cwh: u32_of(r[6], r[7]),
            remaining_mah: u32_of(r[8], r[9]),
            flags: r[10],
            state: State::from_raw(r[11]),
        }
    }

    /// Encodes input registers 0..11 (server side).
    pub fn to_registers(&self) -> [u16; 12] {
        let split = |v: u32| [(v >> 16) as u16, v as u16];
        let [p_hi, p_lo] = split(self.power_dw);
        let [e_hi, e_lo] = split(self.energy_cwh);
        let [c_hi, c_lo] = split(self.remaining_mah);
        [
            self.soc_pct,
            self.temperature_c as u16,
            self.voltage_cv,
            self.current_ca,
            p_hi,
            p_lo,
            e_hi,
            e_lo,
            c_hi,
            c_lo,
            self.flags,
            self.state.raw(),
        ]
    }

    /// Voltage in mV.
    pub fn voltage_mv(&self) -> u32 {
        u32::from(self.voltage_cv) * 10
    }

    /// Signed current in mA: negative while discharging.
    pub fn current_ma(&self) -> i32 {
        let ma = i32::from(self.current_ca) * 10;
        if self.state == State::Discharging { -ma } else { ma }
    }

    /// Power in mW.
    pub fn power_mw(&self) -> u64 {
        u64::from(self.power_dw) * 100
    }

    /// Energy in mWh.
    pub fn energy_mwh(&self) -> u64 {
        u64::from(self.energy_cwh) * 10
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Reading {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Reading", 9)?;
        st.serialize_field("soc_pct", &self.soc_pct)?;
        st.serialize_field("temperature_c", &self.temperature_c)?;
        st.serialize_field("voltage_mv", &self.voltage_mv())?;
        st.serialize_field("current_ma", &self.current_ma())?;
        st.serialize_field("power_mw", &self.power_mw())?;
        st.serialize_field("energy_mwh", &self.energy_mwh())?;
        st.serialize_field("remaining_mah", &self.remaining_mah)?;
        st.serialize_field("flags", &self.flags)?;
        st.serialize_field("state", self.state.name())?;
        st.end()
    }
}

/// The settings: holding registers 0..9 decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Register 0: Modbus address.
    pub address: u16,
    /// Registers 1/2: full capacity, mAh, high word first.
    pub capacity_mah: u32,
    /// Register 3: full voltage (reset to 100 % above it), 0.01 V.
    pub full_voltage_cv: u16,
    /// Register 4: empty voltage (reset to 0 % below it), 0.01 V.
    pub empty_voltage_cv: u16,
    /// Register 5: over-voltage alarm, 0.01 V.
    pub over_voltage_cv: u16,
    /// Register 6: over-current alarm, raw (the original notes "2 decimals").
    pub over_current_raw: u16,
    /// Register 7: over-temperature alarm, raw.
    pub over_temperature_raw: u16,
    /// Register 8: under-voltage alarm, 0.01 V.
    pub under_voltage_cv: u16,
    /// Register 9: low-SOC alarm, %.
    pub low_soc_pct: u16,
}

impl Settings {
    /// Decodes holding registers 0..9.
    pub fn from_registers(r: &[u16; 10]) -> Self {
        Self {
            address: r[0],
            capacity_mah: u32_of(r[1], r[2]),
            full_voltage_cv: r[3],
            empty_voltage_cv: r[4],
            over_voltage_cv: r[5],
            over_current_raw: r[6],
            over_temperature_raw: r[7],
            under_voltage_cv: r[8],
            low_soc_pct: r[9],
        }
    }

    /// Encodes holding registers 0..9.
    pub fn to_registers(&self) -> [u16; 10] {
        [
            self.address,
            (self.capacity_mah >> 16) as u16,
            self.capacity_mah as u16,
            self.full_voltage_cv,
            self.empty_voltage_cv,
            self.over_voltage_cv,
            self.over_current_raw,
            self.over_temperature_raw,
            self.under_voltage_cv,
            self.low_soc_pct,
        ]
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Settings {
    /// Voltages in mV (`full_voltage_mv`), the alarms of unknown scale raw.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mv = |cv: u16| u32::from(cv) * 10;
        let mut st = s.serialize_struct("Settings", 9)?;
        st.serialize_field("address", &self.address)?;
        st.serialize_field("capacity_mah", &self.capacity_mah)?;
        st.serialize_field("full_voltage_mv", &mv(self.full_voltage_cv))?;
        st.serialize_field("empty_voltage_mv", &mv(self.empty_voltage_cv))?;
        st.serialize_field("over_voltage_mv", &mv(self.over_voltage_cv))?;
        st.serialize_field("over_current_raw", &self.over_current_raw)?;
        st.serialize_field("over_temperature_raw", &self.over_temperature_raw)?;
        st.serialize_field("under_voltage_mv", &mv(self.under_voltage_cv))?;
        st.serialize_field("low_soc_pct", &self.low_soc_pct)?;
        st.end()
    }
}

/// The readout level 0x6F sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Level {
    /// 0x000F: 100 %.
    Full,
    /// 0x0000: 0 %.
    Empty,
}

impl Level {
    /// The value sent.
    pub fn raw(self) -> u16 {
        match self {
            Self::Full => 0x000F,
            Self::Empty => 0x0000,
        }
    }
}

/// Requests of the host side.
pub mod request {
    use super::*;

    /// Read input registers 0..11.
    pub fn read_inputs() -> Request {
        Request::ReadInput { address: 0, count: INPUT_COUNT }
    }

    /// Read holding registers 0..9.
    pub fn read_settings() -> Request {
        Request::ReadHolding { address: 0, count: HOLDING_COUNT }
    }

    /// Write the capacity (mAh) and the full voltage (0.01 V) as one FC16 to registers 1..3.
    pub fn write_capacity(capacity_mah: u32, full_voltage_cv: u16) -> Request {
        Request::WriteMultiple {
            address: 1,
            values: vec![(capacity_mah >> 16) as u16, capacity_mah as u16, full_voltage_cv],
        }
    }

    /// The custom 0x6F: set the readout to full or empty.
    pub fn set_level(level: Level) -> Request {
        let [hi, lo] = level.raw().to_be_bytes();
        Request::Custom { function: FN_SET_LEVEL, data: vec![0, 0, hi, lo] }
    }
}

/// What went wrong with a reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The reply's PDU is malformed.
    #[error(transparent)]
    Rtu(#[from] modbus_rtu::Error),
    /// A reply of another kind or size than the request asks for.
    #[error("unexpected reply: {0}")]
    Unexpected(String),
}

/// Decodes the reply to [`request::read_inputs`]; an exception is a value.
///
/// # Errors
/// [`Error::Unexpected`] for a reply that is not 12 input registers.
pub fn parse_inputs(pdu: &[u8]) -> Result<Result<Reading, ExceptionCode>, Error> {
    match Response::parse(pdu)? {
        Response::ReadInput(v) => {
            let regs: [u16; 12] = v
                .as_slice()
                .try_into()
                .map_err(|_| Error::Unexpected(format!("{} input registers, expected 12", v.len())))?;
            Ok(Ok(Reading::from_registers(&regs)))
        }
        Response::Exception { code, .. } => Ok(Err(code)),
        other => Err(Error::Unexpected(format!("{other:?}"))),
    }
}

/// Decodes the reply to [`request::read_settings`]; an exception is a value.
///
/// # Errors
/// [`Error::Unexpected`] for a reply that is not 10 holding registers.
pub fn parse_settings(pdu: &[u8]) -> Result<Result<Settings, ExceptionCode>, Error> {
    match Response::parse(pdu)? {
        Response::ReadHolding(v) => {
            let regs: [u16; 10] = v
                .as_slice()
                .try_into()
                .map_err(|_| Error::Unexpected(format!("{} holding registers, expected 10", v.len())))?;
            Ok(Ok(Settings::from_registers(&regs)))
        }
        Response::Exception { code, .. } => Ok(Err(code)),
        other => Err(Error::Unexpected(format!("{other:?}"))),
    }
}

/// The counter's registers, for the device side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Registers {
    /// Input registers 0..11.
    pub reading: Reading,
    /// Holding registers 0..9.
    pub settings: Settings,
}

/// What a served request did to the device, so a model can act on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Nothing changed.
    None,
    /// Holding registers were written.
    SettingsChanged,
    /// 0x6F asked for this level.
    SetLevel(Level),
}

impl Registers {
    /// Answers one request PDU (server side), returning the response and what it changed. Reads
    /// beyond the map and writes to register 0 get exception 02; a 0x6F value other than full or
    /// empty gets exception 03; other functions get exception 01.
    pub fn serve(&mut self, request: &Request) -> (Response, Effect) {
        let exception = |function: u8, code| (Response::Exception { function, code }, Effect::None);
        match request {
            Request::ReadInput { address, count } => {
                let regs = self.reading.to_registers();
                match slice(&regs, *address, *count) {
                    Some(v) => (Response::ReadInput(v), Effect::None),
                    None => exception(0x04, ExceptionCode::ILLEGAL_DATA_ADDRESS),
                }
            }
            Request::ReadHolding { address, count } => {
                let regs = self.settings.to_registers();
                match slice(&regs, *address, *count) {
                    Some(v) => (Response::ReadHolding(v), Effect::None),
                    None => exception(0x03, ExceptionCode::ILLEGAL_DATA_ADDRESS),
                }
            }
            Request::WriteSingle { address, value } => self.write(*address, &[*value]).map_or_else(
                || exception(0x06, ExceptionCode::ILLEGAL_DATA_ADDRESS),
                |()| (Response::WriteSingle { address: *address, value: *value }, Effect::SettingsChanged),
            ),
            Request::WriteMultiple { address, values } => self.write(*address, values).map_or_else(
                || exception(0x10, ExceptionCode::ILLEGAL_DATA_ADDRESS),
                |()| {
                    (
                        Response::WriteMultiple { address: *address, count: values.len() as u16 },
                        Effect::SettingsChanged,
                    )
                },
            ),
            Request::Custom { function: FN_SET_LEVEL, data } => {
                let level = match data.as_slice() {
                    [0, 0, 0, 0x0F] => Level::Full,
                    [0, 0, 0, 0] => Level::Empty,
                    _ => return exception(FN_SET_LEVEL, ExceptionCode::ILLEGAL_DATA_VALUE),
                };
                // The real reply format is unknown; echo the request as pymodbus does.
                (Response::Custom { function: FN_SET_LEVEL, data: data.clone() }, Effect::SetLevel(level))
            }
            other => exception(other.function(), ExceptionCode::ILLEGAL_FUNCTION),
        }
    }

    fn write(&mut self, address: u16, values: &[u16]) -> Option<()> {
        let mut regs = self.settings.to_registers();
        let start = usize::from(address);
        if start == 0 || start + values.len() > regs.len() {
            return None;
        }
        regs[start..start + values.len()].copy_from_slice(values);
        self.settings = Settings::from_registers(&regs);
        Some(())
    }
}

fn slice(regs: &[u16], address: u16, count: u16) -> Option<Vec<u16>> {
    let start = usize::from(address);
    let end = start.checked_add(usize::from(count))?;
    (count > 0 && end <= regs.len()).then(|| regs[start..end].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_capacity_write_of_the_interop_check() {
        // set-capacity 205000 --full-voltage 27.35 must leave registers 1..3 = [3, 0x20C8, 2735].
        let Request::WriteMultiple { address, values } = request::write_capacity(205_000, 2735) else {
            panic!()
        };
        assert_eq!((address, values), (1, vec![3, 0x20C8, 2735]));
    }

    #[test]
    fn computed_frames_of_protocols_md() {
        let mut out = Vec::new();
        request::set_level(Level::Full).encode(DEFAULT_SLAVE, &mut out).unwrap();
        assert_eq!(out, [0x01, 0x6F, 0x00, 0x00, 0x00, 0x0F, 0x95, 0xC7]);
        out.clear();
        request::read_settings().encode(DEFAULT_SLAVE, &mut out).unwrap();
        assert_eq!(out, [0x01, 0x03, 0x00, 0x00, 0x00, 0x0A, 0xC5, 0xCD]);
    }

    #[test]
    fn coil_test_capacity_examples() {
        // The original's coil_test: (1, 0xA678) -> 108 152 mAh; (3, 0x1CE0) -> 204 000 mAh.
        let s = Settings::from_registers(&[1, 1, 0xA678, 2795, 2200, 0, 0, 0, 0, 0]);
        assert_eq!(s.capacity_mah, 108_152);
        assert_eq!(Settings::from_registers(&[1, 3, 0x1CE0, 0, 0, 0, 0, 0, 0, 0]).capacity_mah, 204_000);
    }

    #[test]
    fn serving_changes_the_registers() {
        let mut regs = Registers {
            reading: Reading::from_registers(&[50, 20, 2650, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            settings: Settings::default(),
        };
        let (rsp, effect) = regs.serve(&request::write_capacity(240_000, 2795));
        assert_eq!(rsp, Response::WriteMultiple { address: 1, count: 3 });
        assert_eq!(effect, Effect::SettingsChanged);
        assert_eq!((regs.settings.capacity_mah, regs.settings.full_voltage_cv), (240_000, 2795));
        assert_eq!(regs.serve(&request::set_level(Level::Empty)).1, Effect::SetLevel(Level::Empty));
        let (rsp, _) = regs.serve(&Request::ReadInput { address: 10, count: 5 });
        assert_eq!(rsp, Response::Exception { function: 4, code: ExceptionCode::ILLEGAL_DATA_ADDRESS });
        let (rsp, _) = regs.serve(&Request::WriteSingle { address: 0, value: 7 });
        assert!(matches!(rsp, Response::Exception { .. }));
    }
}
