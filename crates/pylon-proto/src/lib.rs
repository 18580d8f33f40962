//! Pylontech low-voltage RS485 protocol: the commands an inverter sends to a Pylontech master BMS
//! and the replies, both sides.
//!
//! The inverter (or `pylon-probe query`) encodes a [`Request`] and decodes the [`Reply`]; pace2pylon's
//! responder decodes the request and encodes the reply, with the same types.
//!
//! ```text
//!  inverter                                          master BMS (ADR 02, VER 20, CID1 46)
//!   | ~20 02 46 63 0000 FDA9 CR   ---------------->  |  0x63 system recommend
//!   | <----------------  ~20 02 46 00 D012 6AD6 5F50 0190 FE70 C0 F99B CR
//!   |                    27.35 V / 24.40 V, +40.0 A / -40.0 A, charge + discharge enabled
//! ```
//!
//! Units follow the wire ([`units`]): mV, currents in 0.1 A (except the 0x61 system current, whose
//! unit is a [`Dialect`] choice), temperatures in 0.1 K with offset 2731, capacities in mAh. A
//! device's refusal (an RTN other than 00) is a [`Refusal`] value inside [`Reply::outcome`].
//!
//! ```
//! use pylon_proto::{Command, Dialect, Management, ManagementFlags, Reply, Request, Response};
//! use units::{DeciAmps, Millivolts};
//!
//! let request = Request::parse(b"~200246630000FDA9\r")?;
//! assert_eq!(request, Request { adr: 2, command: Command::SystemManagement });
//!
//! let limits = Management {
//!     charge_voltage: Millivolts::from_raw(27350),
//!     discharge_voltage: Millivolts::from_raw(24400),
//!     charge_current: DeciAmps::from_raw(400),
//!     discharge_current: DeciAmps::from_raw(-400),
//!     flags: ManagementFlags::CHARGE_ENABLE | ManagementFlags::DISCHARGE_ENABLE,
//! };
//! let reply = Reply::ok(2, Response::SystemManagement(limits));
//! let mut out = Vec::new();
//! reply.emit(&mut out)?;
//! assert_eq!(Reply::parse(0x63, &out, Dialect::default())?, reply);
//! # Ok::<(), pylon_proto::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod flags;
mod module;
mod system;

use ascii_envelope::{Frame, FrameWriter, Header, Info};
pub use ascii_envelope::{Rtn, Text};

pub use flags::{ManagementFlags, Status1, Status2, Status3, SystemAlarm1, SystemAlarm2};
pub use module::{AlarmReply, AnalogReply, ModuleAlarm, ModuleAnalog, UD_LARGE_CAPACITY};
pub use system::{
    Dialect, Management, ManufacturerInfo, SystemAlarm, SystemAnalog, SystemCurrent, SystemCurrentUnit,
    SystemInfo, SystemParameters, TempStats,
};
pub use units;

/// VER of Pylontech frames.
pub const VER: u8 = 0x20;
/// CID1 of LiFePO4 batteries.
pub const CID1: u8 = 0x46;

/// Command codes (CID2 of a request).
pub mod cid2 {
    /// 0x42: analog values of a module.
    pub const ANALOG: u8 = 0x42;
    /// 0x44: alarm information of a module.
    pub const ALARM: u8 = 0x44;
    /// 0x47: system parameters.
    pub const SYSTEM_PARAMETERS: u8 = 0x47;
    /// 0x4F: protocol version.
    pub const PROTOCOL_VERSION: u8 = 0x4F;
    /// 0x51: manufacturer information.
    pub const MANUFACTURER_INFO: u8 = 0x51;
    /// 0x60: basic system information.
    pub const SYSTEM_INFO: u8 = 0x60;
    /// 0x61: system analog data.
    pub const SYSTEM_ANALOG: u8 = 0x61;
    /// 0x62: system alarms and protections.
    pub const SYSTEM_ALARM: u8 = 0x62;
    /// 0x63: system recommendations (charge/discharge management).
    pub const SYSTEM_MANAGEMENT: u8 = 0x63;
    /// 0x92: charge/discharge management of a module.
    pub const MANAGEMENT: u8 = 0x92;
    /// 0x93: serial number of a module.
    pub const SERIAL: u8 = 0x93;
    /// 0x96: firmware versions of a module.
    pub const FIRMWARE: u8 = 0x96;
}

/// What went wrong decoding or encoding a Pylontech frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The envelope or an INFO field is malformed.
    #[error(transparent)]
    Frame(#[from] ascii_envelope::Error),
    /// A CID2 this protocol does not define.
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
    /// More than 255 items where a one-byte count holds them (emit side).
    #[error("too many {what}: {count}, a count byte holds 255")]
    TooMany {
        /// The items.
        what: &'static str,
        /// How many there were.
        count: usize,
    },
    /// A capacity above 65 535 mAh in a 16-bit field (emit side; user-defined 4 carries 24 bits).
    #[error("{what} {mah} mAh does not fit 16 bits; send user-defined 4")]
    CapacityTooLarge {
        /// The field.
        what: &'static str,
        /// The value.
        mah: u32,
    },
}

fn expect_end(info: &Info<'_>, what: &'static str) -> Result<(), Error> {
    match info.remaining() {
        0 => Ok(()),
        count => Err(Error::TrailingBytes { what, count }),
    }
}

/// What a request asks for.
///
/// Per-module commands carry the command value: the module address, or `FF` for the whole group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    /// 0x4F.
    ProtocolVersion,
    /// 0x51.
    ManufacturerInfo,
    /// 0x60.
    SystemInfo,
    /// 0x61.
    SystemAnalog,
    /// 0x62.
    SystemAlarm,
    /// 0x63.
    SystemManagement,
    /// 0x47.
    SystemParameters,
    /// 0x42.
    Analog {
        /// Module address or `FF`.
        command: u8,
    },
    /// 0x44.
    Alarm {
        /// Module address or `FF`.
        command: u8,
    },
    /// 0x92.
    Management {
        /// Module address.
        command: u8,
    },
    /// 0x93.
    Serial {
        /// Module address.
        command: u8,
    },
    /// 0x96.
    Firmware {
        /// Module address.
        command: u8,
    },
}

impl Command {
    /// The CID2 of this request.
    pub fn cid2(self) -> u8 {
        match self {
            Self::ProtocolVersion => cid2::PROTOCOL_VERSION,
            Self::ManufacturerInfo => cid2::MANUFACTURER_INFO,
            Self::SystemInfo => cid2::SYSTEM_INFO,
            Self::SystemAnalog => cid2::SYSTEM_ANALOG,
            Self::SystemAlarm => cid2::SYSTEM_ALARM,
            Self::SystemManagement => cid2::SYSTEM_MANAGEMENT,
            Self::SystemParameters => cid2::SYSTEM_PARAMETERS,
            Self::Analog { .. } => cid2::ANALOG,
            Self::Alarm { .. } => cid2::ALARM,
            Self::Management { .. } => cid2::MANAGEMENT,
            Self::Serial { .. } => cid2::SERIAL,
            Self::Firmware { .. } => cid2::FIRMWARE,
        }
    }

    /// The command value of a per-module command.
    pub fn module(self) -> Option<u8> {
        match self {
            Self::Analog { command }
            | Self::Alarm { command }
            | Self::Management { command }
            | Self::Serial { command }
            | Self::Firmware { command } => Some(command),
            _ => None,
        }
    }
}

/// A request frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Request {
    /// ADR of the frame.
    pub adr: u8,
    /// The command.
    pub command: Command,
}

impl Request {
    /// Decodes a request (device side), liberally: any VER; lower-case hex; INFO of the system
    /// commands ignored (some masters send the address); for per-module commands the first INFO
    /// byte is the command value and any further bytes are ignored.
    ///
    /// # Errors
    /// An envelope error, [`Error::UnknownCid2`], or a truncation when a per-module command has no
    /// command byte (a device answers RTN 05).
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let frame = Frame::parse(bytes)?;
        let header = frame.header();
        let mut info = frame.info();
        let mut value = || info.u8("command value");
        let command = match header.cid2 {
            cid2::PROTOCOL_VERSION => Command::ProtocolVersion,
            cid2::MANUFACTURER_INFO => Command::ManufacturerInfo,
            cid2::SYSTEM_INFO => Command::SystemInfo,
            cid2::SYSTEM_ANALOG => Command::SystemAnalog,
            cid2::SYSTEM_ALARM => Command::SystemAlarm,
            cid2::SYSTEM_MANAGEMENT => Command::SystemManagement,
            cid2::SYSTEM_PARAMETERS => Command::SystemParameters,
            cid2::ANALOG => Command::Analog { command: value()? },
            cid2::ALARM => Command::Alarm { command: value()? },
            cid2::MANAGEMENT => Command::Management { command: value()? },
            cid2::SERIAL => Command::Serial { command: value()? },
            cid2::FIRMWARE => Command::Firmware { command: value()? },
            other => return Err(Error::UnknownCid2(other)),
        };
        Ok(Self { adr: header.adr, command })
    }

    /// Appends the request frame to `out` and returns its length.
    ///
    /// # Errors
    /// None in practice; the signature matches [`Reply::emit`].
    pub fn emit(&self, out: &mut Vec<u8>) -> Result<usize, Error> {
        let mut w =
            FrameWriter::new(out, Header { ver: VER, adr: self.adr, cid1: CID1, cid2: self.command.cid2() });
        if let Some(value) = self.command.module() {
            w.u8(value);
        }
        Ok(w.finish()?)
    }
}

/// A successful reply's content, by the command it answers.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(untagged))]
pub enum Response {
    /// 0x4F: empty INFO; the protocol version is the reply's VER.
    ProtocolVersion,
    /// 0x51.
    ManufacturerInfo(ManufacturerInfo),
    /// 0x60.
    SystemInfo(SystemInfo),
    /// 0x61.
    SystemAnalog(SystemAnalog),
    /// 0x62.
    SystemAlarm(SystemAlarm),
    /// 0x63: limits and flags, no command byte.
    SystemManagement(Management),
    /// 0x47.
    SystemParameters(SystemParameters),
    /// 0x42.
    Analog(AnalogReply),
    /// 0x44.
    Alarm(AlarmReply),
    /// 0x92: a module's limits, after its command byte.
    Management {
        /// The command value echoed.
        command: u8,
        /// The limits and flags.
        #[cfg_attr(feature = "serde", serde(flatten))]
        limits: Management,
    },
    /// 0x93: 16 ASCII bytes.
    Serial {
        /// The command value echoed.
        command: u8,
        /// The serial number.
        serial: Text,
    },
    /// 0x96.
    Firmware {
        /// The command value echoed.
        command: u8,
        /// Manufacture version (major, minor).
        manufacture_version: [u8; 2],
        /// Mainline version (major, minor, patch).
        mainline_version: [u8; 3],
    },
}

/// A device's refusal: an RTN other than 00, with whatever INFO came with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The return code.
    pub rtn: Rtn,
    /// INFO, raw.
    pub info: Vec<u8>,
}

/// A reply frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// VER of the frame (the answer to 0x4F; 20 in real replies).
    pub ver: u8,
    /// ADR of the frame.
    pub adr: u8,
    /// The content (RTN 00) or the refusal.
    pub outcome: Result<Response, Refusal>,
}

impl Reply {
    /// A successful reply with VER 20.
    pub fn ok(adr: u8, response: Response) -> Self {
        Self { ver: VER, adr, outcome: Ok(response) }
    }

    /// A refusal with empty INFO and VER 20.
    pub fn refuse(adr: u8, rtn: Rtn) -> Self {
        Self { ver: VER, adr, outcome: Err(Refusal { rtn, info: Vec::new() }) }
    }

    /// The return code.
    pub fn rtn(&self) -> Rtn {
        match &self.outcome {
            Ok(_) => Rtn::Normal,
            Err(r) => r.rtn,
        }
    }

    /// Decodes the reply to a request whose CID2 was `request` (host side).
    ///
    /// Trailing bytes are kept where real units send them (0x42/0x44 of one module) and refused
    /// elsewhere.
    ///
    /// # Errors
    /// An envelope error, a truncation naming the field, [`Error::UnknownCid2`] when `request` is
    /// not a Pylontech command, or [`Error::TrailingBytes`].
    pub fn parse(request: u8, bytes: &[u8], dialect: Dialect) -> Result<Self, Error> {
        let frame = Frame::parse(bytes)?;
        let header = frame.header();
        let mut info = frame.info();
        let rtn = Rtn::from_raw(header.cid2);
        if !rtn.is_normal() {
            let outcome = Err(Refusal { rtn, info: info.rest() });
            return Ok(Self { ver: header.ver, adr: header.adr, outcome });
        }
        let info = &mut info;
        let response = match request {
            cid2::PROTOCOL_VERSION => Response::ProtocolVersion,
            cid2::MANUFACTURER_INFO => Response::ManufacturerInfo(ManufacturerInfo::parse(info)?),
            cid2::SYSTEM_INFO => Response::SystemInfo(SystemInfo::parse(info)?),
            cid2::SYSTEM_ANALOG => Response::SystemAnalog(SystemAnalog::parse(info, dialect.system_current)?),
            cid2::SYSTEM_ALARM => Response::SystemAlarm(system::alarm_parse(info)?),
            cid2::SYSTEM_MANAGEMENT => {
                Response::SystemManagement(Management::parse(info, dialect.management_current)?)
            }
            cid2::SYSTEM_PARAMETERS => Response::SystemParameters(SystemParameters::parse(info)?),
            cid2::ANALOG => Response::Analog(AnalogReply::parse(info)?),
            cid2::ALARM => Response::Alarm(AlarmReply::parse(info)?),
            cid2::MANAGEMENT => {
                let command = info.u8("command value")?;
                Response::Management { command, limits: Management::parse(info, SystemCurrentUnit::DeciAmp)? }
            }
            cid2::SERIAL => Response::Serial {
                command: info.u8("command value")?,
                serial: Text::read(info, "serial", 16)?,
            },
            cid2::FIRMWARE => Response::Firmware {
                command: info.u8("command value")?,
                manufacture_version: info.array::<2>("manufacture version")?,
                mainline_version: info.array::<3>("mainline version")?,
            },
            other => return Err(Error::UnknownCid2(other)),
        };
        expect_end(info, "the reply")?;
        Ok(Self { ver: header.ver, adr: header.adr, outcome: Ok(response) })
    }

    /// Appends the reply frame to `out` and returns its length (device side), in the default
    /// [`Dialect`].
    ///
    /// # Errors
    /// [`Error::TooMany`], [`Error::CapacityTooLarge`], or an INFO too long for a frame.
    pub fn emit(&self, out: &mut Vec<u8>) -> Result<usize, Error> {
        self.emit_in(out, Dialect::default())
    }

    /// As [`Reply::emit`], with the 0x63 currents in `dialect`'s unit (the 0x61 current carries
    /// its unit in its value).
    ///
    /// # Errors
    /// As [`Reply::emit`].
    pub fn emit_in(&self, out: &mut Vec<u8>, dialect: Dialect) -> Result<usize, Error> {
        let mut w = FrameWriter::new(
            out,
            Header { ver: self.ver, adr: self.adr, cid1: CID1, cid2: self.rtn().raw() },
        );
        match &self.outcome {
            Err(refusal) => {
                w.bytes(&refusal.info);
            }
            Ok(response) => match response {
                Response::ProtocolVersion => {}
                Response::ManufacturerInfo(m) => m.emit(&mut w),
                Response::SystemInfo(s) => s.emit(&mut w)?,
                Response::SystemAnalog(s) => s.emit(&mut w),
                Response::SystemAlarm(a) => system::alarm_emit(a, &mut w),
                Response::SystemManagement(m) => m.emit(&mut w, dialect.management_current),
                Response::SystemParameters(p) => p.emit(&mut w),
                Response::Analog(a) => a.emit(&mut w)?,
                Response::Alarm(a) => a.emit(&mut w)?,
                Response::Management { command, limits } => {
                    w.u8(*command);
                    limits.emit(&mut w, SystemCurrentUnit::DeciAmp);
                }
                Response::Serial { command, serial } => {
                    w.u8(*command).bytes(&serial.fixed(16, b' '));
                }
                Response::Firmware { command, manufacture_version, mainline_version } => {
                    w.u8(*command).bytes(manufacture_version).bytes(mainline_version);
                }
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
            ver: u8,
            #[serde(flatten)]
            body: Body<'a>,
        }
        let body = match &self.outcome {
            Ok(r) => Body::Ok(r),
            Err(r) => Body::Refused { error: r.rtn.description(), info: &r.info },
        };
        Out { adr: self.adr, rtn: self.rtn(), ver: self.ver, body }.serialize(s)
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Request {
    /// `{"adr":2,"cid2":99,"request":"system_management"}`; per-module requests add `command`.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("adr", &self.adr)?;
        m.serialize_entry("cid2", &self.command.cid2())?;
        let name = match self.command {
            Command::ProtocolVersion => "protocol_version",
            Command::ManufacturerInfo => "manufacturer_info",
            Command::SystemInfo => "system_info",
            Command::SystemAnalog => "system_analog",
            Command::SystemAlarm => "system_alarm",
            Command::SystemManagement => "system_management",
            Command::SystemParameters => "system_parameters",
            Command::Analog { .. } => "analog",
            Command::Alarm { .. } => "alarm",
            Command::Management { .. } => "management",
            Command::Serial { .. } => "serial",
            Command::Firmware { .. } => "firmware",
        };
        m.serialize_entry("request", name)?;
        if let Some(value) = self.command.module() {
            m.serialize_entry("command", &value)?;
        }
        m.end()
    }
}
