use modbus_core::{Encode, FunctionCode};

use crate::{Error, FN_SET_LEVEL};

/// A Modbus exception code, kept as sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExceptionCode(pub u8);

impl ExceptionCode {
    /// 01: illegal function (Vevor: a read-only register).
    pub const ILLEGAL_FUNCTION: Self = Self(1);
    /// 02: illegal data address.
    pub const ILLEGAL_DATA_ADDRESS: Self = Self(2);
    /// 03: illegal data value (Vevor: out of range).
    pub const ILLEGAL_DATA_VALUE: Self = Self(3);
    /// 04: server device failure.
    pub const SERVER_DEVICE_FAILURE: Self = Self(4);
    /// 07: Vevor: not modifiable in the current working mode.
    pub const NOT_MODIFIABLE_NOW: Self = Self(7);

    /// Words for the code.
    pub fn description(self) -> &'static str {
        match self.0 {
            1 => "illegal function",
            2 => "illegal data address",
            3 => "illegal data value",
            4 => "server device failure",
            5 => "acknowledge",
            6 => "server device busy",
            7 => "not modifiable now",
            8 => "memory parity error",
            0x0A => "gateway path unavailable",
            0x0B => "gateway target device failed to respond",
            _ => "unknown exception",
        }
    }
}

impl core::fmt::Display for ExceptionCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "exception {:02X} ({})", self.0, self.description())
    }
}

/// A request PDU with owned data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// FC 03.
    ReadHolding {
        /// First register.
        address: u16,
        /// Registers to read.
        count: u16,
    },
    /// FC 04.
    ReadInput {
        /// First register.
        address: u16,
        /// Registers to read.
        count: u16,
    },
    /// FC 06.
    WriteSingle {
        /// Register.
        address: u16,
        /// Value.
        value: u16,
    },
    /// FC 16.
    WriteMultiple {
        /// First register.
        address: u16,
        /// Values.
        values: Vec<u16>,
    },
    /// Any other function, with its data bytes (0x6F: `00 00 vv vv`).
    Custom {
        /// Function code.
        function: u8,
        /// Data after the function code.
        data: Vec<u8>,
    },
}

impl Request {
    /// The function code.
    pub fn function(&self) -> u8 {
        match self {
            Self::ReadHolding { .. } => 0x03,
            Self::ReadInput { .. } => 0x04,
            Self::WriteSingle { .. } => 0x06,
            Self::WriteMultiple { .. } => 0x10,
            Self::Custom { function, .. } => *function,
        }
    }

    /// Appends the whole frame for `slave` (encoded with modbus-core) to `out`.
    ///
    /// # Errors
    /// [`Error::TooLong`] when the PDU does not fit a frame.
    pub fn encode(&self, slave: u8, out: &mut Vec<u8>) -> Result<usize, Error> {
        let mut pdu = [0u8; 253];
        let mut words = [0u8; 252];
        let request = match self {
            Self::ReadHolding { address, count } => {
                modbus_core::Request::ReadHoldingRegisters(*address, *count)
            }
            Self::ReadInput { address, count } => modbus_core::Request::ReadInputRegisters(*address, *count),
            Self::WriteSingle { address, value } => {
                modbus_core::Request::WriteSingleRegister(*address, *value)
            }
            Self::WriteMultiple { address, values } => {
                // Modbus allows 1..=123 registers per write; modbus-core's byte count would overflow past 127.
                if values.is_empty() || values.len() > 123 {
                    return Err(Error::TooLong(values.len() * 2));
                }
                // modbus-core keeps the whole target slice as the data: give it exactly the bytes needed.
                let target = &mut words[..values.len() * 2];
                let data = modbus_core::Data::from_words(values, target)
                    .map_err(|_| Error::TooLong(values.len() * 2))?;
                modbus_core::Request::WriteMultipleRegisters(*address, data)
            }
            Self::Custom { function, data } => {
                modbus_core::Request::Custom(FunctionCode::Custom(*function), data)
            }
        };
        let n = request.encode(&mut pdu).map_err(|_| Error::TooLong(pdu.len()))?;
        crate::encode_frame(slave, &pdu[..n], out)
    }

    /// Decodes a request PDU whose length [`crate::pdu_len`] has checked (server side).
    ///
    /// # Errors
    /// [`Error::UnknownFunction`] or [`Error::Malformed`].
    pub fn parse(pdu: &[u8]) -> Result<Self, Error> {
        let function = *pdu.first().ok_or(Error::Malformed { function: 0, what: "empty PDU".into() })?;
        let malformed = |what: &str| Error::Malformed { function, what: what.into() };
        match crate::pdu_len(crate::Side::Request, pdu)? {
            Some(len) if len == pdu.len() => {}
            _ => return Err(malformed("length does not match the function")),
        }
        let request = modbus_core::Request::try_from(pdu).map_err(|e| malformed(&e.to_string()))?;
        Ok(match request {
            modbus_core::Request::ReadHoldingRegisters(address, count) => {
                Self::ReadHolding { address, count }
            }
            modbus_core::Request::ReadInputRegisters(address, count) => Self::ReadInput { address, count },
            modbus_core::Request::WriteSingleRegister(address, value) => Self::WriteSingle { address, value },
            modbus_core::Request::WriteMultipleRegisters(address, data) => {
                let bytes = data.payload();
                if bytes.len() % 2 != 0 || bytes.len() / 2 != data.len() {
                    return Err(malformed("byte count does not match the register count"));
                }
                Self::WriteMultiple {
                    address,
                    values: bytes.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect(),
                }
            }
            _ => Self::Custom { function, data: pdu[1..].to_vec() },
        })
    }
}

/// A response PDU with owned data; an exception is a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// FC 03: the holding registers read.
    ReadHolding(Vec<u16>),
    /// FC 04: the input registers read.
    ReadInput(Vec<u16>),
    /// FC 06: the register and value written, echoed.
    WriteSingle {
        /// Register.
        address: u16,
        /// Value.
        value: u16,
    },
    /// FC 16: the first register and the count written.
    WriteMultiple {
        /// First register.
        address: u16,
        /// Registers written.
        count: u16,
    },
    /// Any other function with its data (0x6F: whatever the device sends).
    Custom {
        /// Function code.
        function: u8,
        /// Data after the function code.
        data: Vec<u8>,
    },
    /// An exception reply (function | 0x80, code).
    Exception {
        /// The function refused (without the 0x80 bit).
        function: u8,
        /// Why.
        code: ExceptionCode,
    },
}

impl Response {
    /// Decodes a response PDU whose length has been checked by the framing (client side).
    ///
    /// # Errors
    /// [`Error::Malformed`] for a PDU inconsistent with its function.
    pub fn parse(pdu: &[u8]) -> Result<Self, Error> {
        let function = *pdu.first().ok_or(Error::Malformed { function: 0, what: "empty PDU".into() })?;
        let malformed = |what: &str| Error::Malformed { function, what: what.into() };
        if function & 0x80 != 0 {
            let code = *pdu.get(1).ok_or_else(|| malformed("exception without a code"))?;
            return Ok(Self::Exception { function: function & 0x7F, code: ExceptionCode(code) });
        }
        if function == FN_SET_LEVEL {
            return Ok(Self::Custom { function, data: pdu[1..].to_vec() });
        }
        if crate::pdu_len(crate::Side::Response, pdu)? != Some(pdu.len()) {
            return Err(malformed("length does not match the function"));
        }
        match function {
            0x03 | 0x04 => {
                let bytes = &pdu[2..];
                if bytes.len() % 2 != 0 {
                    return Err(malformed("odd byte count for registers"));
                }
                let values = bytes.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
                Ok(if function == 0x03 { Self::ReadHolding(values) } else { Self::ReadInput(values) })
            }
            0x06 | 0x10 => {
                let a = u16::from_be_bytes([pdu[1], pdu[2]]);
                let b = u16::from_be_bytes([pdu[3], pdu[4]]);
                Ok(if function == 0x06 {
                    Self::WriteSingle { address: a, value: b }
                } else {
                    Self::WriteMultiple { address: a, count: b }
                })
            }
            _ => Ok(Self::Custom { function, data: pdu[1..].to_vec() }),
        }
    }

    /// Appends the whole frame for `slave` to `out` (server side), encoded with modbus-core.
    ///
    /// # Errors
    /// [`Error::TooLong`] when the PDU does not fit a frame.
    pub fn encode(&self, slave: u8, out: &mut Vec<u8>) -> Result<usize, Error> {
        let mut pdu = [0u8; 253];
        let mut words = [0u8; 252];
        let n = match self {
            Self::Exception { function, code } => {
                pdu[0] = function | 0x80;
                pdu[1] = code.0;
                2
            }
            Self::ReadHolding(values) | Self::ReadInput(values) if values.is_empty() => {
                // modbus-core refuses empty data; an empty read reply is just the byte count 0.
                pdu[0] = if matches!(self, Self::ReadHolding(_)) { 0x03 } else { 0x04 };
                pdu[1] = 0;
                2
            }
            Self::ReadHolding(values) | Self::ReadInput(values) => {
                let too_long = || Error::TooLong(values.len() * 2);
                if values.len() > 125 {
                    return Err(too_long());
                }
                let target = &mut words[..values.len() * 2];
                let data = modbus_core::Data::from_words(values, target).map_err(|_| too_long())?;
                let response = if matches!(self, Self::ReadHolding(_)) {
                    modbus_core::Response::ReadHoldingRegisters(data)
                } else {
                    modbus_core::Response::ReadInputRegisters(data)
                };
                response.encode(&mut pdu).map_err(|_| too_long())?
            }
            Self::WriteSingle { address, value } => {
                modbus_core::Response::WriteSingleRegister(*address, *value)
                    .encode(&mut pdu)
                    .map_err(|_| Error::TooLong(5))?
            }
            Self::WriteMultiple { address, count } => {
                modbus_core::Response::WriteMultipleRegisters(*address, *count)
                    .encode(&mut pdu)
                    .map_err(|_| Error::TooLong(5))?
            }
            Self::Custom { function, data } => {
                modbus_core::Response::Custom(FunctionCode::Custom(*function), data)
                    .encode(&mut pdu)
                    .map_err(|_| Error::TooLong(1 + data.len()))?
            }
        };
        crate::encode_frame(slave, &pdu[..n], out)
    }
}
