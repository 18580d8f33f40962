//! Pace BMS protocol v25: every command of the Pace RS232 protocol and its reply, both sides.
//!
//! The host (pace2pylon, `pace-probe`) encodes a [`Request`] and decodes the [`Reply`]; the device
//! side (the simulator) decodes the request and encodes the reply, with the same types.
//!
//! ```text
//!  host                                             Pace BMS (VER 25, CID1 46)
//!   | ~25 01 46 42 E002 01 FD30 CR  --------------->  |   0x42 analog, pack 01
//!   | <---------------  ~25 01 46 00 F07A 0001 10 0CC7 ... E1E4 CR
//!   |                   RTN 00, INFOFLAG 00, pack 01, 16 cells, 6 temps, ...
//! ```
//!
//! Units follow the wire ([`units`]): cell and pack voltages in mV, current in 10 mA, temperatures in
//! 0.1 K with offset 2730, capacities in 10 mAh. A device's refusal (an RTN other than 00) is a
//! [`Refusal`] value inside [`Reply::outcome`], not an error.
//!
//! ```
//! use pace_proto::{Command, Reply, Request, Response};
//!
//! let mut out = Vec::new();
//! Request { adr: 1, command: Command::Analog { pack: 1 } }.emit(&mut out)?;
//! assert_eq!(out, b"~25014642E00201FD30\r");
//!
//! let wire = b"~25014600F07A0001100CC70CC80CC70CC70CC70CC50CC60CC70CC70CC60CC70CC60CC60CC70CC60CC7060B9B0B990B990B990BB30BBCFF1FCCCD12D303286A008C2710E1E4\r";
//! let reply = Reply::parse(0x42, wire)?;
//! let Ok(Response::Analog(analog)) = &reply.outcome else { panic!("not an analog reply") };
//! assert_eq!(analog.packs[0].current.to_milliamps(), -2250);
//!
//! let mut again = Vec::new();
//! reply.emit(&mut again)?;
//! assert_eq!(&again[..], &wire[..]);
//! # Ok::<(), pace_proto::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod analog;
mod config;
mod edit;
pub mod flags;
mod history;
mod status;

use ascii_envelope::{Frame, FrameWriter, Header, Info};
pub use ascii_envelope::{Rtn, Text};

pub use analog::{AnalogReply, PackAnalog};
pub use config::{
    Balancing, Capacity, ChargeDischargeTemps, ChargeLimiter, Config, ConfigKind, CurrentProtection,
    DateTime, DischargeOc2, EnvironmentTemps, FullCharge, MosfetTemp, Protocols, ShortCircuit, Sleep,
    TempThresholds, VoltageProtection,
};
pub use edit::Limit;
pub use flags::{Balance, ControlState, FaultState, Protect1, Protect2, SystemState, Warn1, Warn2};
pub use history::HistoryRecord;
pub use status::{PackStatus, StatusReply, WarnValue};

/// VER of Pace v25 frames.
pub const VER: u8 = 0x25;
/// CID1 of LiFePO4 packs.
pub const CID1: u8 = 0x46;

/// Command codes (CID2 of a request) other than the configuration blocks, which are in
/// [`ConfigKind`].
pub mod cid2 {
    /// 0x42: analog values.
    pub const ANALOG: u8 = 0x42;
    /// 0x44: warnings, protections and states.
    pub const STATUS: u8 = 0x44;
    /// 0x90: number of packs on the bus.
    pub const PACK_COUNT: u8 = 0x90;
    /// 0x99: buzzer, LED and current-limiter switches.
    pub const SWITCH: u8 = 0x99;
    /// 0x9A: charge MOSFET on/off.
    pub const CHARGE_MOSFET: u8 = 0x9A;
    /// 0x9B: discharge MOSFET on/off.
    pub const DISCHARGE_MOSFET: u8 = 0x9B;
    /// 0x9C: shutdown (a reboot while current flows).
    pub const SHUTDOWN: u8 = 0x9C;
    /// 0xA1: history record.
    pub const HISTORY: u8 = 0xA1;
    /// 0xC1: hardware/software version.
    pub const VERSION: u8 = 0xC1;
    /// 0xC2: serial number / product information.
    pub const SERIAL: u8 = 0xC2;
}

/// What went wrong decoding or encoding a Pace frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The envelope or an INFO field is malformed.
    #[error(transparent)]
    Frame(#[from] ascii_envelope::Error),
    /// A request with a CID2 this protocol does not define.
    #[error("unknown CID2 {0:02X}")]
    UnknownCid2(u8),
    /// INFO holds more bytes than the layout of `what` uses.
    #[error("{count} unexpected bytes after {what}")]
    TrailingBytes {
        /// The message whose layout ended.
        what: &'static str,
        /// Bytes left over.
        count: usize,
    },
    /// A reply that must have an empty INFO had some.
    #[error("{what}: expected an empty INFO, found {count} bytes")]
    NotEmpty {
        /// The reply expected.
        what: &'static str,
        /// Bytes found.
        count: usize,
    },
    /// A text field of a length no reply uses.
    #[error("{what}: {len} bytes, expected {expected}")]
    TextLength {
        /// The reply.
        what: &'static str,
        /// Bytes found.
        len: usize,
        /// What the protocol uses.
        expected: &'static str,
    },
    /// A write of a block that has no write command (A6 capacity).
    #[error("{0} is read only")]
    ReadOnly(&'static str),
    /// More than 255 items where a one-byte count holds them (emit side).
    #[error("too many {what}: {count}, a count byte holds 255")]
    TooMany {
        /// The items.
        what: &'static str,
        /// How many there were.
        count: usize,
    },
}

pub(crate) fn expect_end(info: &Info<'_>, what: &'static str) -> Result<(), Error> {
    match info.remaining() {
        0 => Ok(()),
        count => Err(Error::TrailingBytes { what, count }),
    }
}

/// A 0x99 switch command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SwitchCommand {
    /// 0x06: LED alarm off (the wire value is the reverse of the PDF).
    LedOff,
    /// 0x07: LED alarm on.
    LedOn,
    /// 0x08: current-limiter gear high.
    GearHigh,
    /// 0x09: current-limiter gear low.
    GearLow,
    /// 0x0A: current limiter off (the wire value is the reverse of the PDF).
    LimiterOff,
    /// 0x0B: current limiter on.
    LimiterOn,
    /// 0x0C: buzzer off.
    BuzzerOff,
    /// 0x0D: buzzer on.
    BuzzerOn,
    /// Any other value, kept as sent.
    Unknown(u8),
}

impl SwitchCommand {
    /// Decodes a wire value.
    pub const fn from_raw(raw: u8) -> Self {
        match raw {
            0x06 => Self::LedOff,
            0x07 => Self::LedOn,
            0x08 => Self::GearHigh,
            0x09 => Self::GearLow,
            0x0A => Self::LimiterOff,
            0x0B => Self::LimiterOn,
            0x0C => Self::BuzzerOff,
            0x0D => Self::BuzzerOn,
            other => Self::Unknown(other),
        }
    }
    /// The wire value.
    pub const fn raw(self) -> u8 {
        match self {
            Self::LedOff => 0x06,
            Self::LedOn => 0x07,
            Self::GearHigh => 0x08,
            Self::GearLow => 0x09,
            Self::LimiterOff => 0x0A,
            Self::LimiterOn => 0x0B,
            Self::BuzzerOff => 0x0C,
            Self::BuzzerOn => 0x0D,
            Self::Unknown(raw) => raw,
        }
    }
}

/// The INFO byte of 0x9A/0x9B: 00 turns the MOSFET on, 01 off (inferred from the system state the
/// BMS replies with, PROTOCOLS.md §1.10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MosfetSwitch {
    /// 00: on.
    On,
    /// 01: off.
    Off,
    /// Any other value, kept as sent.
    Unknown(u8),
}

impl MosfetSwitch {
    /// Decodes a wire value.
    pub const fn from_raw(raw: u8) -> Self {
        match raw {
            0 => Self::On,
            1 => Self::Off,
            other => Self::Unknown(other),
        }
    }
    /// The wire value.
    pub const fn raw(self) -> u8 {
        match self {
            Self::On => 0,
            Self::Off => 1,
            Self::Unknown(raw) => raw,
        }
    }
}

/// What a request asks for: one variant per command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// 0x42: analog values of pack `pack` (01..0F) or of all packs (`FF`).
    Analog {
        /// Pack number, or `FF` for all.
        pack: u8,
    },
    /// 0x44: status of pack `pack` or of all packs (`FF`).
    Status {
        /// Pack number, or `FF` for all.
        pack: u8,
    },
    /// 0x90: number of packs on the bus.
    PackCount,
    /// 0xC1: version string.
    Version,
    /// 0xC2: serial number string.
    Serial,
    /// A configuration read (D1, D3, ..., A6, EB, B1).
    ReadConfig(ConfigKind),
    /// A configuration write (D0, D2, ..., EC, B2) with the values to store.
    WriteConfig(Config),
    /// 0x99: a switch.
    Switch(SwitchCommand),
    /// 0x9A: the charge MOSFET.
    ChargeMosfet(MosfetSwitch),
    /// 0x9B: the discharge MOSFET.
    DischargeMosfet(MosfetSwitch),
    /// 0x9C: shut down (INFO 01).
    Shutdown,
    /// 0xA1: history record `index` (0 = newest).
    History {
        /// Record index, u16.
        index: u16,
    },
}

impl Command {
    /// The CID2 of this request.
    pub fn cid2(&self) -> u8 {
        match self {
            Self::Analog { .. } => cid2::ANALOG,
            Self::Status { .. } => cid2::STATUS,
            Self::PackCount => cid2::PACK_COUNT,
            Self::Version => cid2::VERSION,
            Self::Serial => cid2::SERIAL,
            Self::ReadConfig(kind) => kind.read_cid2(),
            // A read-only block has no write CID2; `Request::emit` refuses it.
            Self::WriteConfig(config) => config.kind().write_cid2().unwrap_or(config.kind().read_cid2()),
            Self::Switch(_) => cid2::SWITCH,
            Self::ChargeMosfet(_) => cid2::CHARGE_MOSFET,
            Self::DischargeMosfet(_) => cid2::DISCHARGE_MOSFET,
            Self::Shutdown => cid2::SHUTDOWN,
            Self::History { .. } => cid2::HISTORY,
        }
    }
}

/// A request frame: the address and what it asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// ADR of the frame (the DIP-switch address, 0–15).
    pub adr: u8,
    /// The command.
    pub command: Command,
}

impl Request {
    /// Decodes a request frame (device side). Any VER is accepted: some hosts send 20.
    ///
    /// # Errors
    /// An envelope error, [`Error::UnknownCid2`], a truncated INFO naming the field, or
    /// [`Error::TrailingBytes`] for a configuration write.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let frame = Frame::parse(bytes)?;
        let Header { adr, cid2: code, .. } = frame.header();
        let mut info = frame.info();
        let command = match code {
            cid2::ANALOG => Command::Analog { pack: info.u8("pack number")? },
            cid2::STATUS => Command::Status { pack: info.u8("pack number")? },
            cid2::PACK_COUNT => Command::PackCount,
            cid2::VERSION => Command::Version,
            cid2::SERIAL => Command::Serial,
            cid2::SWITCH => Command::Switch(SwitchCommand::from_raw(info.u8("switch command")?)),
            cid2::CHARGE_MOSFET => Command::ChargeMosfet(MosfetSwitch::from_raw(info.u8("MOSFET command")?)),
            cid2::DISCHARGE_MOSFET => {
                Command::DischargeMosfet(MosfetSwitch::from_raw(info.u8("MOSFET command")?))
            }
            cid2::SHUTDOWN => Command::Shutdown,
            cid2::HISTORY => Command::History { index: info.u16("record index")? },
            other => {
                if let Some(kind) = ConfigKind::from_read_cid2(other) {
                    Command::ReadConfig(kind)
                } else if let Some(kind) = ConfigKind::from_write_cid2(other) {
                    Command::WriteConfig(Config::parse(kind, &mut info, true)?)
                } else {
                    return Err(Error::UnknownCid2(other));
                }
            }
        };
        Ok(Self { adr, command })
    }

    /// Appends the request frame to `out` and returns its length.
    ///
    /// # Errors
    /// [`Error::ReadOnly`] for a write of a block without a write command.
    pub fn emit(&self, out: &mut Vec<u8>) -> Result<usize, Error> {
        if let Command::WriteConfig(config) = &self.command {
            if config.kind().write_cid2().is_none() {
                return Err(Error::ReadOnly(config.kind().name()));
            }
        }
        let mut w =
            FrameWriter::new(out, Header { ver: VER, adr: self.adr, cid1: CID1, cid2: self.command.cid2() });
        match &self.command {
            Command::Analog { pack } | Command::Status { pack } => {
                w.u8(*pack);
            }
            Command::PackCount | Command::Version | Command::Serial | Command::ReadConfig(_) => {}
            Command::WriteConfig(config) => config.emit(&mut w, true),
            Command::Switch(s) => {
                w.u8(s.raw());
            }
            Command::ChargeMosfet(m) | Command::DischargeMosfet(m) => {
                w.u8(m.raw());
            }
            Command::Shutdown => {
                w.u8(0x01);
            }
            Command::History { index } => {
                w.u16(*index);
            }
        }
        Ok(w.finish()?)
    }
}

/// A successful reply's content, by the command it answers.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(untagged))]
pub enum Response {
    /// 0x42.
    Analog(AnalogReply),
    /// 0x44.
    Status(StatusReply),
    /// 0x90: packs on the bus.
    PackCount {
        /// Number of packs.
        count: u8,
    },
    /// 0xC1: 20 ASCII bytes.
    Version {
        /// The version string.
        version: Text,
    },
    /// 0xC2: 20 or 40 ASCII bytes.
    Serial {
        /// The serial number.
        serial: Text,
    },
    /// A configuration read.
    Config(Config),
    /// 0x99: the command echoed and the control state after it.
    Switch {
        /// The command, echoed.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser_switch"))]
        command: SwitchCommand,
        /// The control state after the switch.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser_control"))]
        control: ControlState,
    },
    /// 0x9A/0x9B: the system state after the switch.
    Mosfet {
        /// The system state after the switch.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser_system"))]
        system: SystemState,
    },
    /// 0xA1: one history record.
    History(HistoryRecord),
    /// The empty reply: a write's ACK, 0x9C, or 0xA1 past the last record.
    Ack,
}

#[cfg(feature = "serde")]
fn ser_switch<S: serde::Serializer>(v: &SwitchCommand, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u8(v.raw())
}
#[cfg(feature = "serde")]
fn ser_control<S: serde::Serializer>(v: &ControlState, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u8(v.bits())
}
#[cfg(feature = "serde")]
fn ser_system<S: serde::Serializer>(v: &SystemState, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u8(v.bits())
}

/// A device's refusal: an RTN other than 00, with whatever INFO came with it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Refusal {
    /// The return code.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub rtn: Rtn,
    /// INFO, raw (RTN 09 to 0x9B carries the system state byte).
    pub info: Vec<u8>,
}

/// A reply frame: the address and either the content or the device's refusal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// ADR of the frame.
    pub adr: u8,
    /// The content (RTN 00) or the refusal.
    pub outcome: Result<Response, Refusal>,
}

impl Reply {
    /// The return code: 00 for a response, the refusal's otherwise.
    pub fn rtn(&self) -> Rtn {
        match &self.outcome {
            Ok(_) => Rtn::Normal,
            Err(r) => r.rtn,
        }
    }

    /// Decodes the reply to a request whose CID2 was `request` (host side). Any VER is accepted.
    ///
    /// # Errors
    /// An envelope error, a truncated INFO naming the field, [`Error::UnknownCid2`] when `request`
    /// is not a Pace command, or a layout error ([`Error::TrailingBytes`], [`Error::NotEmpty`],
    /// [`Error::TextLength`]).
    pub fn parse(request: u8, bytes: &[u8]) -> Result<Self, Error> {
        let frame = Frame::parse(bytes)?;
        let header = frame.header();
        let mut info = frame.info();
        let rtn = Rtn::from_raw(header.cid2);
        if !rtn.is_normal() {
            return Ok(Self { adr: header.adr, outcome: Err(Refusal { rtn, info: info.rest() }) });
        }
        let empty = |info: &Info<'_>, what: &'static str| match info.remaining() {
            0 => Ok(Response::Ack),
            count => Err(Error::NotEmpty { what, count }),
        };
        let text = |info: &mut Info<'_>, what: &'static str, ok: &[usize], expected: &'static str| {
            let len = info.remaining();
            if !ok.contains(&len) {
                return Err(Error::TextLength { what, len, expected });
            }
            Ok(Text(info.rest()))
        };
        let response = match request {
            cid2::ANALOG => Response::Analog(AnalogReply::parse(&mut info)?),
            cid2::STATUS => Response::Status(StatusReply::parse(&mut info)?),
            cid2::PACK_COUNT => {
                let count = info.u8("pack count")?;
                expect_end(&info, "pack count")?;
                Response::PackCount { count }
            }
            cid2::VERSION => Response::Version { version: text(&mut info, "version", &[20], "20")? },
            cid2::SERIAL => Response::Serial { serial: text(&mut info, "serial", &[20, 40], "20 or 40")? },
            cid2::SWITCH => {
                let command = SwitchCommand::from_raw(info.u8("switch command echo")?);
                let control = ControlState::from_bits_retain(info.u8("control state")?);
                expect_end(&info, "switch reply")?;
                Response::Switch { command, control }
            }
            cid2::CHARGE_MOSFET | cid2::DISCHARGE_MOSFET => {
                let system = SystemState::from_bits_retain(info.u8("system state")?);
                expect_end(&info, "MOSFET reply")?;
                Response::Mosfet { system }
            }
            cid2::SHUTDOWN => empty(&info, "shutdown ACK")?,
            cid2::HISTORY if info.is_empty() => Response::Ack,
            cid2::HISTORY => Response::History(HistoryRecord::parse(&mut info)?),
            other => {
                if let Some(kind) = ConfigKind::from_read_cid2(other) {
                    Response::Config(Config::parse(kind, &mut info, false)?)
                } else if ConfigKind::from_write_cid2(other).is_some() {
                    empty(&info, "write ACK")?
                } else {
                    return Err(Error::UnknownCid2(other));
                }
            }
        };
        Ok(Self { adr: header.adr, outcome: Ok(response) })
    }

    /// Appends the reply frame to `out` and returns its length (device side).
    ///
    /// # Errors
    /// [`Error::TooMany`] when a count does not fit its byte, or an INFO too long for a frame.
    pub fn emit(&self, out: &mut Vec<u8>) -> Result<usize, Error> {
        let header = Header { ver: VER, adr: self.adr, cid1: CID1, cid2: self.rtn().raw() };
        let mut w = FrameWriter::new(out, header);
        match &self.outcome {
            Err(refusal) => {
                w.bytes(&refusal.info);
            }
            Ok(response) => match response {
                Response::Analog(a) => a.emit(&mut w)?,
                Response::Status(s) => s.emit(&mut w)?,
                Response::PackCount { count } => {
                    w.u8(*count);
                }
                Response::Version { version: t } | Response::Serial { serial: t } => {
                    w.bytes(&t.0);
                }
                Response::Config(c) => c.emit(&mut w, false),
                Response::Switch { command, control } => {
                    w.u8(command.raw()).u8(control.bits());
                }
                Response::Mosfet { system } => {
                    w.u8(system.bits());
                }
                Response::History(h) => h.emit(&mut w)?,
                Response::Ack => {}
            },
        }
        Ok(w.finish()?)
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Reply {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        #[serde(untagged)]
        enum Body<'a> {
            Ok(&'a Response),
            Refused { error: &'static str, info: &'a [u8] },
        }
        #[derive(serde::Serialize)]
        struct Out<'a> {
            adr: u8,
            rtn: Rtn,
            #[serde(flatten)]
            body: Body<'a>,
        }
        let body = match &self.outcome {
            Ok(r) => Body::Ok(r),
            Err(r) => Body::Refused { error: r.rtn.description(), info: &r.info },
        };
        Out { adr: self.adr, rtn: self.rtn(), body }.serialize(s)
    }
}

// Re-exported so users can name the units of the fields without a direct dependency.
pub use units;

#[cfg(feature = "serde")]
impl serde::Serialize for Request {
    /// `{"adr":1,"cid2":66,"request":"analog","pack":1}`; writes carry the block's fields.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("adr", &self.adr)?;
        m.serialize_entry("cid2", &self.command.cid2())?;
        let name = match &self.command {
            Command::Analog { .. } => "analog",
            Command::Status { .. } => "status",
            Command::PackCount => "pack_count",
            Command::Version => "version",
            Command::Serial => "serial",
            Command::ReadConfig(_) => "read_config",
            Command::WriteConfig(_) => "write_config",
            Command::Switch(_) => "switch",
            Command::ChargeMosfet(_) => "charge_mosfet",
            Command::DischargeMosfet(_) => "discharge_mosfet",
            Command::Shutdown => "shutdown",
            Command::History { .. } => "history",
        };
        m.serialize_entry("request", name)?;
        match &self.command {
            Command::Analog { pack } | Command::Status { pack } => m.serialize_entry("pack", pack)?,
            Command::ReadConfig(kind) => m.serialize_entry("config", kind.name())?,
            Command::WriteConfig(config) => m.serialize_entry("values", config)?,
            Command::Switch(sw) => m.serialize_entry("switch", &sw.raw())?,
            Command::ChargeMosfet(x) | Command::DischargeMosfet(x) => {
                let state = match x {
                    MosfetSwitch::On => "on",
                    MosfetSwitch::Off => "off",
                    MosfetSwitch::Unknown(_) => "unknown",
                };
                m.serialize_entry("state", state)?;
                m.serialize_entry("value", &x.raw())?;
            }
            Command::History { index } => m.serialize_entry("index", index)?,
            Command::PackCount | Command::Version | Command::Serial | Command::Shutdown => {}
        }
        m.end()
    }
}
