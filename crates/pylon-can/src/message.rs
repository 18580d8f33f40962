//! One message per CAN id, with its layout in each profile. README's CAN table gives each
//! field's source and whether it is confirmed or assumed.

use can_wire::{CanFrame, CanId};

use crate::flags::{Alarm, AlarmPairs, Protection, RequestFlags};
use crate::{Error, Profile};

/// 0x351: what the inverter may do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Limits {
    /// Charge voltage limit, u16 0.1 V.
    pub charge_voltage_dv: u16,
    /// Charge current limit, i16 0.1 A.
    pub charge_current_da: i16,
    /// Discharge current limit, i16 0.1 A (positive, as real batteries send it).
    pub discharge_current_da: i16,
    /// Discharge (cut-off) voltage limit, u16 0.1 V, in bytes 6-7 (absent from the V1.2 text
    /// but sent by real US5000s and read by most inverters).
    pub discharge_voltage_dv: Option<u16>,
}

/// 0x355: state of charge and health.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Soc {
    /// SOC, u16 %.
    pub soc_pct: u16,
    /// SOH, u16 %.
    pub soh_pct: u16,
    /// SOC in 0.01 %, bytes 4-5 (SMA's HiResSOC; Victron reads it too).
    pub soc_centi_pct: Option<u16>,
    /// Highest and lowest cell voltage, u16 mV each, bytes 4-7 (Lux).
    pub cell_max_min_mv: Option<(u16, u16)>,
}

/// 0x356: what the battery measures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Measurements {
    /// Voltage, 10 mV (sent as i16 0.01 V; Sol-Ark: 0.1 V, so a multiple of 10 here).
    pub voltage_cv: i32,
    /// Current, i16 0.1 A, positive while charging.
    pub current_da: i16,
    /// Temperature, i16 0.1 °C (Pylontech: the average cell temperature; Lux: the highest).
    pub temperature_dc: i16,
    /// Lowest cell temperature, i16 0.1 °C, bytes 6-7 (Lux).
    pub temperature_min_dc: Option<i16>,
}

/// 0x359: protections and alarms (warnings), and the module count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ProtectionFlags {
    /// Bytes 0-1.
    pub protection: Protection,
    /// Bytes 2-3.
    pub alarm: Alarm,
    /// Byte 4: modules in parallel.
    pub modules: u8,
    /// Bytes 5-6: capacity, u16 Ah (Lux, in place of Pylontech's "PN").
    pub capacity_ah: Option<u16>,
}

/// 0x35C: the battery's requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Requests {
    /// Byte 0.
    pub flags: RequestFlags,
    /// Bytes 2-3: cycle count, u16 (Lux).
    pub cycles: Option<u16>,
}

/// 0x35A: SMA's alarms and warnings (Victron reads the same).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SmaAlarms {
    /// Bytes 0-3.
    pub alarms: AlarmPairs,
    /// Bytes 4-7.
    pub warnings: AlarmPairs,
}

/// 0x35B: SMA's events (byte 0: b0 start SOC recalibration, b1 stop it, b2 start power
/// limitation, b3 stop it, b4 preventive shutdown); 8 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Events {
    /// Byte 0.
    pub bits: u8,
}

/// 0x35F: battery data (SMA, Victron).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct BatteryInfo {
    /// Bytes 0-1: battery type, two ASCII letters (`LI` as a real Pylontech sends).
    pub kind: [u8; 2],
    /// Bytes 2-3: BMS version, major then minor.
    pub version: (u8, u8),
    /// Bytes 4-5: capacity, u16 Ah.
    pub capacity_ah: u16,
    /// Bytes 6-7: manufacturer id or reserved (SMA: 0xFFFF, "invalid", when unused).
    pub extra: u16,
}

/// 0x372: module counts (Victron).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ModuleCounts {
    /// Modules online.
    pub online: u16,
    /// Modules blocking charge.
    pub blocking_charge: u16,
    /// Modules blocking discharge.
    pub blocking_discharge: u16,
    /// Modules offline.
    pub offline: u16,
}

/// 0x373: cell extremes (Victron).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct CellExtremes {
    /// Lowest cell voltage, u16 mV.
    pub min_mv: u16,
    /// Highest cell voltage, u16 mV.
    pub max_mv: u16,
    /// Lowest cell temperature, u16 K.
    pub min_temp_k: u16,
    /// Highest cell temperature, u16 K.
    pub max_temp_k: u16,
}

/// Which extreme an 0x374-0x377 name belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Extreme {
    /// 0x374: the cell with the lowest voltage.
    MinCellVoltage,
    /// 0x375: the cell with the highest voltage.
    MaxCellVoltage,
    /// 0x376: the cell with the lowest temperature.
    MinCellTemperature,
    /// 0x377: the cell with the highest temperature.
    MaxCellTemperature,
}

impl Extreme {
    const ALL: [Self; 4] =
        [Self::MinCellVoltage, Self::MaxCellVoltage, Self::MinCellTemperature, Self::MaxCellTemperature];

    const fn id(self) -> u16 {
        0x374 + self as u16
    }
}

/// Up to 8 ASCII bytes (0x35E, 0x374-0x377, 0x382). Two names are equal when their text is:
/// trailing spaces and NULs are padding.
#[derive(Clone, Copy, Default)]
pub struct Name {
    bytes: [u8; 8],
    len: u8,
}

impl Name {
    /// The first 8 bytes of `text`, padded with spaces to 8 (as real Pylontech sends "PYLON   ").
    pub fn padded(text: &str) -> Self {
        let mut bytes = [b' '; 8];
        let t = text.as_bytes();
        let n = t.len().min(8);
        bytes[..n].copy_from_slice(&t[..n]);
        Self { bytes, len: 8 }
    }

    /// The first 8 bytes of `text`, padded with NULs to 8 (Victron's ids and names).
    pub fn nul_padded(text: &str) -> Self {
        let mut bytes = [0; 8];
        let t = text.as_bytes();
        let n = t.len().min(8);
        bytes[..n].copy_from_slice(&t[..n]);
        Self { bytes, len: 8 }
    }

    /// The bytes as received or built.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The text without its padding; other bytes escaped.
    pub fn text(&self) -> String {
        self.meaning().escape_ascii().to_string()
    }

    fn read(data: &[u8]) -> Self {
        let mut bytes = [0; 8];
        bytes[..data.len()].copy_from_slice(data);
        Self { bytes, len: data.len() as u8 }
    }
}

impl Name {
    /// The bytes without their padding.
    fn meaning(&self) -> &[u8] {
        let end = self.as_bytes().iter().rposition(|b| !matches!(b, 0 | b' ')).map_or(0, |k| k + 1);
        &self.as_bytes()[..end]
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        self.meaning() == other.meaning()
    }
}

impl Eq for Name {}

impl std::hash::Hash for Name {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.meaning().hash(state);
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Name({:?})", self.as_bytes().escape_ascii().to_string())
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Name {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text())
    }
}

/// 0x305: the inverter's heartbeat (zeros from most; SMA's Sunny Island puts its own voltage,
/// current, temperature and SOC in it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Heartbeat {
    /// Its data bytes.
    pub data: [u8; 8],
    /// How many there are.
    pub len: u8,
}

/// 0x300: the inverter's remote command (Lux v03).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct RemoteCommand {
    /// Byte 0 b0: shut the battery down.
    pub shutdown: bool,
}

/// One frame's meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case", tag = "frame"))]
pub enum Message {
    /// 0x351.
    Limits(Limits),
    /// 0x355.
    Soc(Soc),
    /// 0x356.
    Measurements(Measurements),
    /// 0x359.
    Protection(ProtectionFlags),
    /// 0x35A.
    Alarms(SmaAlarms),
    /// 0x35B.
    Events(Events),
    /// 0x35C.
    Requests(Requests),
    /// 0x35E: the manufacturer's name.
    Manufacturer {
        /// The name.
        name: Name,
    },
    /// 0x35F.
    Info(BatteryInfo),
    /// 0x372.
    Modules(ModuleCounts),
    /// 0x373.
    CellExtremes(CellExtremes),
    /// 0x374-0x377: which cell holds an extreme.
    ExtremeId {
        /// Which extreme.
        extreme: Extreme,
        /// The cell's name.
        name: Name,
    },
    /// 0x379: installed capacity, u16 Ah.
    Capacity {
        /// Ah.
        capacity_ah: u16,
    },
    /// 0x382: the product family's name (Victron).
    Family {
        /// The name.
        name: Name,
    },
    /// 0x305, from the inverter.
    Heartbeat(Heartbeat),
    /// 0x300, from a Lux inverter.
    RemoteCommand(RemoteCommand),
}

/// A frame's bytes being built: little-endian fields at fixed offsets.
struct Out {
    data: [u8; 8],
    len: usize,
}

impl Out {
    fn new() -> Self {
        Self { data: [0; 8], len: 0 }
    }
    fn u8(&mut self, at: usize, v: u8) -> &mut Self {
        self.data[at] = v;
        self.len = self.len.max(at + 1);
        self
    }
    fn u16(&mut self, at: usize, v: u16) -> &mut Self {
        self.data[at..at + 2].copy_from_slice(&v.to_le_bytes());
        self.len = self.len.max(at + 2);
        self
    }
    fn i16(&mut self, at: usize, v: i16) -> &mut Self {
        self.u16(at, v as u16)
    }
    fn bytes(&mut self, at: usize, v: &[u8]) -> &mut Self {
        self.data[at..at + v.len()].copy_from_slice(v);
        self.len = self.len.max(at + v.len());
        self
    }
    /// Pads with zeros to at least `len` bytes.
    fn at_least(&mut self, len: usize) -> &mut Self {
        self.len = self.len.max(len);
        self
    }
    fn frame(&self, id: u16, pad: bool) -> CanFrame {
        let len = if pad { 8 } else { self.len };
        CanFrame::standard(id, self.data, len as u8)
    }
}

/// A received frame's bytes.
struct In<'a> {
    id: u16,
    data: &'a [u8],
}

impl In<'_> {
    fn need(&self, len: usize) -> Result<(), Error> {
        if self.data.len() < len {
            return Err(Error::Short { id: self.id, got: self.data.len(), need: len });
        }
        Ok(())
    }
    fn has(&self, len: usize) -> bool {
        self.data.len() >= len
    }
    fn u16(&self, at: usize) -> u16 {
        u16::from_le_bytes([self.data[at], self.data[at + 1]])
    }
    fn i16(&self, at: usize) -> i16 {
        self.u16(at) as i16
    }
}

impl Message {
    /// Its CAN id.
    pub const fn id(&self) -> u16 {
        match self {
            Self::Limits(_) => 0x351,
            Self::Soc(_) => 0x355,
            Self::Measurements(_) => 0x356,
            Self::Protection(_) => 0x359,
            Self::Alarms(_) => 0x35A,
            Self::Events(_) => 0x35B,
            Self::Requests(_) => 0x35C,
            Self::Manufacturer { .. } => 0x35E,
            Self::Info(_) => 0x35F,
            Self::Modules(_) => 0x372,
            Self::CellExtremes(_) => 0x373,
            Self::ExtremeId { extreme, .. } => extreme.id(),
            Self::Capacity { .. } => 0x379,
            Self::Family { .. } => 0x382,
            Self::Heartbeat(_) => 0x305,
            Self::RemoteCommand(_) => 0x300,
        }
    }

    /// The frame, laid out as `profile` has it. A field the profile does not carry is not sent
    /// (Lux's cell extremes in a Pylontech 0x355, say); Sol-Ark's and Lux's battery frames are
    /// padded to 8 bytes.
    pub fn encode(&self, profile: Profile) -> CanFrame {
        let mut o = Out::new();
        let lux = profile == Profile::Lux;
        match self {
            Self::Limits(l) => {
                o.u16(0, l.charge_voltage_dv).i16(2, l.charge_current_da).i16(4, l.discharge_current_da);
                if let Some(v) = l.discharge_voltage_dv {
                    o.u16(6, v);
                }
            }
            Self::Soc(s) => {
                o.u16(0, s.soc_pct).u16(2, s.soh_pct);
                match (lux, s.soc_centi_pct, s.cell_max_min_mv) {
                    (true, _, Some((max, min))) => {
                        o.u16(4, max).u16(6, min);
                    }
                    (false, Some(centi), _) if profile != Profile::Solark => {
                        o.u16(4, centi);
                    }
                    _ => {}
                }
            }
            Self::Measurements(m) => {
                let voltage = if profile == Profile::Solark { m.voltage_cv / 10 } else { m.voltage_cv };
                o.i16(0, saturate(voltage)).i16(2, m.current_da).i16(4, m.temperature_dc);
                if let (true, Some(min)) = (lux, m.temperature_min_dc) {
                    o.i16(6, min);
                }
            }
            Self::Protection(p) => {
                o.u16(0, p.protection.bits()).u16(2, p.alarm.bits()).u8(4, p.modules);
                match (lux, p.capacity_ah) {
                    (true, Some(ah)) => o.u16(5, ah),
                    _ => o.bytes(5, b"PN"),
                };
            }
            Self::Alarms(a) => {
                o.bytes(0, &a.alarms.0.to_le_bytes()).bytes(4, &a.warnings.0.to_le_bytes());
            }
            Self::Events(e) => {
                o.u8(0, e.bits).at_least(8);
            }
            Self::Requests(r) => {
                o.u8(0, r.flags.bits()).u8(1, 0);
                if let (true, Some(cycles)) = (lux, r.cycles) {
                    o.u16(2, cycles);
                }
            }
            Self::Manufacturer { name } | Self::ExtremeId { name, .. } | Self::Family { name } => {
                o.bytes(0, name.as_bytes());
            }
            Self::Info(i) => {
                o.bytes(0, &i.kind)
                    .u8(2, i.version.0)
                    .u8(3, i.version.1)
                    .u16(4, i.capacity_ah)
                    .u16(6, i.extra);
            }
            Self::Modules(m) => {
                o.u16(0, m.online).u16(2, m.blocking_charge).u16(4, m.blocking_discharge).u16(6, m.offline);
            }
            Self::CellExtremes(c) => {
                o.u16(0, c.min_mv).u16(2, c.max_mv).u16(4, c.min_temp_k).u16(6, c.max_temp_k);
            }
            Self::Capacity { capacity_ah } => {
                o.u16(0, *capacity_ah).at_least(8);
            }
            Self::Heartbeat(h) => {
                o.bytes(0, &h.data[..usize::from(h.len.min(8))]);
            }
            Self::RemoteCommand(r) => {
                o.u8(0, u8::from(r.shutdown)).at_least(8);
            }
        }
        // The battery's frames are padded where the profile wants 8 bytes; the inverter's are
        // sent as they are.
        let inverter = matches!(self, Self::Heartbeat(_) | Self::RemoteCommand(_));
        o.frame(self.id(), profile.pads() && !inverter)
    }

    /// What `frame` means in `profile`; `Ok(None)` for an id this crate does not know (another
    /// device on the bus). Longer frames than a layout needs are accepted; the extra bytes are
    /// not read.
    ///
    /// # Errors
    /// [`Error::Short`] for a known id with fewer bytes than its layout, [`Error::NotData`] for a
    /// remote frame with a known id (an extended id is another device's: `Ok(None)`).
    pub fn decode(profile: Profile, frame: &CanFrame) -> Result<Option<Self>, Error> {
        let CanId::Standard(id) = frame.id() else { return Ok(None) };
        if !matches!(id, 0x300 | 0x305 | 0x351 | 0x355 | 0x356 | 0x359..=0x35C | 0x35E | 0x35F | 0x372..=0x377 | 0x379 | 0x382)
        {
            return Ok(None);
        }
        if frame.is_remote() {
            return Err(Error::NotData(frame.id()));
        }
        let d = In { id, data: frame.data() };
        let lux = profile == Profile::Lux;
        let message = match id {
            0x351 => {
                d.need(6)?;
                Self::Limits(Limits {
                    charge_voltage_dv: d.u16(0),
                    charge_current_da: d.i16(2),
                    discharge_current_da: d.i16(4),
                    discharge_voltage_dv: d.has(8).then(|| d.u16(6)),
                })
            }
            0x355 => {
                d.need(4)?;
                let hires = matches!(profile, Profile::Pylon | Profile::Sma | Profile::Victron);
                Self::Soc(Soc {
                    soc_pct: d.u16(0),
                    soh_pct: d.u16(2),
                    soc_centi_pct: (hires && d.has(6)).then(|| d.u16(4)),
                    cell_max_min_mv: (lux && d.has(8)).then(|| (d.u16(4), d.u16(6))),
                })
            }
            0x356 => {
                d.need(6)?;
                let raw = i32::from(d.i16(0));
                Self::Measurements(Measurements {
                    voltage_cv: if profile == Profile::Solark { raw * 10 } else { raw },
                    current_da: d.i16(2),
                    temperature_dc: d.i16(4),
                    temperature_min_dc: (lux && d.has(8)).then(|| d.i16(6)),
                })
            }
            0x359 => {
                d.need(5)?;
                Self::Protection(ProtectionFlags {
                    protection: Protection::from_bits_retain(d.u16(0)),
                    alarm: Alarm::from_bits_retain(d.u16(2)),
                    modules: d.data[4],
                    capacity_ah: (lux && d.has(7)).then(|| d.u16(5)),
                })
            }
            0x35A => {
                d.need(8)?;
                let word = |at: usize| {
                    u32::from_le_bytes([d.data[at], d.data[at + 1], d.data[at + 2], d.data[at + 3]])
                };
                Self::Alarms(SmaAlarms { alarms: AlarmPairs(word(0)), warnings: AlarmPairs(word(4)) })
            }
            0x35B => {
                d.need(1)?;
                Self::Events(Events { bits: d.data[0] })
            }
            0x35C => {
                d.need(1)?;
                Self::Requests(Requests {
                    flags: RequestFlags::from_bits_retain(d.data[0]),
                    cycles: (lux && d.has(4)).then(|| d.u16(2)),
                })
            }
            0x35E => Self::Manufacturer { name: Name::read(d.data) },
            0x35F => {
                d.need(6)?;
                Self::Info(BatteryInfo {
                    kind: [d.data[0], d.data[1]],
                    version: (d.data[2], d.data[3]),
                    capacity_ah: d.u16(4),
                    extra: if d.has(8) { d.u16(6) } else { 0 },
                })
            }
            0x372 => {
                d.need(8)?;
                Self::Modules(ModuleCounts {
                    online: d.u16(0),
                    blocking_charge: d.u16(2),
                    blocking_discharge: d.u16(4),
                    offline: d.u16(6),
                })
            }
            0x373 => {
                d.need(8)?;
                Self::CellExtremes(CellExtremes {
                    min_mv: d.u16(0),
                    max_mv: d.u16(2),
                    min_temp_k: d.u16(4),
                    max_temp_k: d.u16(6),
                })
            }
            0x374..=0x377 => {
                let extreme = Extreme::ALL[usize::from(id - 0x374)];
                Self::ExtremeId { extreme, name: Name::read(d.data) }
            }
            0x379 => {
                d.need(2)?;
                Self::Capacity { capacity_ah: d.u16(0) }
            }
            0x382 => Self::Family { name: Name::read(d.data) },
            0x305 => {
                let mut data = [0; 8];
                data[..d.data.len()].copy_from_slice(d.data);
                Self::Heartbeat(Heartbeat { data, len: d.data.len() as u8 })
            }
            _ => {
                // 0x300, the only id left.
                d.need(1)?;
                Self::RemoteCommand(RemoteCommand { shutdown: d.data[0] & 1 == 1 })
            }
        };
        Ok(Some(message))
    }
}

fn saturate(v: i32) -> i16 {
    v.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}
