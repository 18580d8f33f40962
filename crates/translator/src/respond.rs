//! The Pylontech responder's logic (EMULATION.md): a request frame and an immutable snapshot in,
//! the reply bytes out — or silence. Pure: the daemon owns the wire and the clock.

use std::sync::Arc;

use ascii_envelope::{Frame, Rtn, Text};
use pace_proto::{PackAnalog, PackStatus};
use pylon_proto::{
    AlarmReply, AnalogReply, Command, Dialect, Management, ManagementFlags, ManufacturerInfo, ModuleAlarm,
    ModuleAnalog, Reply, Request, Response, Status1, Status2, Status3, SystemAlarm, SystemAlarm1,
    SystemAlarm2, SystemAnalog, SystemCurrent, SystemCurrentUnit, SystemInfo, SystemParameters,
    TempStats as PylonTemps, UD_LARGE_CAPACITY,
};
use units::{DeciAmps, DeciKelvin, MilliAmpHours, Millivolts, Pace, Pylon};

use crate::{PackLimits, SystemView, TempStats};

/// What the inverter is told while communication with the packs is lost (`pylon.on_comm_loss`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CommLoss {
    /// Answer 0x63 with both enable bits clear and both current limits 0.
    #[default]
    Disable,
    /// Stop answering, so the inverter falls back to its own no-communication settings.
    Silent,
}

/// The VER of every reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyVer {
    /// This VER (real Pylontech units send 0x20 on every reply; diyBMS sends 0x28 to Voltronic).
    Fixed(u8),
    /// The request's VER.
    Echo,
}

/// The ADR of every reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyAdr {
    /// The request's ADR (real units: a module at 03 answers from 03); a system command taken
    /// at another address under `any_address` is still answered as the master.
    Echo,
    /// The master's address whatever was polled (SRNE takes every reply as ADR 2's).
    Master,
}

/// An inverter family's RS485 dialect: the defaults `[pylon] profile` picks, each still settable
/// on its own. README's table gives the source of each and whether it is confirmed or assumed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Profile {
    /// Vevor EML3500 (polls 0x61 and 0x63 at ADR 2): the original pace2pylon's replies.
    #[default]
    Vevor,
    /// Voltronic / MPP Solar "PYL" mode: 0x4F, 0x42 and 0x92 at ADR 2, never 0x44; the stack is
    /// the master module, the stop bits are in 0x92, VER 0x28 as diyBMS answers it.
    Voltronic,
    /// SRNE (and rebrands): 0x61-0x63 at several addresses, every reply from ADR 2, 0x63 in 10 mA.
    Srne,
    /// Deye / Sunsynk "Lithium 12": 0x61-0x63 at ADR 2, 0x63 in 0.1 A.
    Deye,
    /// Any other master (python-pylontech): real units' behaviour, 0x4F/0x51 also at ADR 0.
    Generic,
}

/// What a [`Profile`] sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProfileOptions {
    /// The VER of replies.
    pub reply_ver: ReplyVer,
    /// The ADR of replies.
    pub reply_adr: ReplyAdr,
    /// Answer system commands at any address.
    pub any_address: bool,
    /// Answer 0x4F and 0x51 sent to ADR 0.
    pub info_at_adr0: bool,
    /// Unit of the 0x61 current.
    pub system_current_unit: SystemCurrentUnit,
    /// Unit of the 0x63 current limits.
    pub management_current_unit: SystemCurrentUnit,
    /// Send the 0x63/0x92 discharge limit positive.
    pub positive_discharge_limit: bool,
    /// 0x42 and 0x92 at the master's own address describe the whole stack.
    pub stack_at_master: bool,
}

impl Profile {
    /// Every profile, in the order the README lists them.
    pub const ALL: [Self; 5] = [Self::Vevor, Self::Voltronic, Self::Srne, Self::Deye, Self::Generic];

    /// Its name in the configuration.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Vevor => "vevor",
            Self::Voltronic => "voltronic",
            Self::Srne => "srne",
            Self::Deye => "deye",
            Self::Generic => "generic",
        }
    }

    /// Its defaults.
    pub const fn options(self) -> ProfileOptions {
        use SystemCurrentUnit::{CentiAmp, DeciAmp};
        let base = ProfileOptions {
            reply_ver: ReplyVer::Fixed(pylon_proto::VER),
            reply_adr: ReplyAdr::Echo,
            any_address: false,
            info_at_adr0: false,
            system_current_unit: CentiAmp,
            management_current_unit: DeciAmp,
            positive_discharge_limit: false,
            stack_at_master: false,
        };
        match self {
            Self::Vevor => base,
            Self::Voltronic => ProfileOptions {
                reply_ver: ReplyVer::Fixed(0x28),
                reply_adr: ReplyAdr::Master,
                positive_discharge_limit: true,
                stack_at_master: true,
                ..base
            },
            Self::Srne => ProfileOptions {
                reply_adr: ReplyAdr::Master,
                any_address: true,
                management_current_unit: CentiAmp,
                positive_discharge_limit: true,
                ..base
            },
            Self::Deye => {
                ProfileOptions { reply_adr: ReplyAdr::Master, positive_discharge_limit: true, ..base }
            }
            Self::Generic => ProfileOptions { info_at_adr0: true, ..base },
        }
    }
}

/// The responder's settings (the `[pylon]` table and the thresholds 0x47 reports).
#[derive(Clone, Debug, PartialEq)]
pub struct EmulationSettings {
    /// The master's address.
    pub address: u8,
    /// The VER of replies.
    pub reply_ver: ReplyVer,
    /// The ADR of replies.
    pub reply_adr: ReplyAdr,
    /// Answer system commands at any address (SRNE behaviour).
    pub any_address: bool,
    /// Answer 0x4F and 0x51 sent to ADR 0 (python-pylontech asks there).
    pub info_at_adr0: bool,
    /// Unit of the 0x61 current.
    pub system_current_unit: SystemCurrentUnit,
    /// Unit of the 0x63 current limits.
    pub management_current_unit: SystemCurrentUnit,
    /// Send the 0x63/0x92 discharge limit positive (the original sent it negative).
    pub positive_discharge_limit: bool,
    /// 0x42 and 0x92 at the master's own address describe the whole stack (Voltronic reads the
    /// pack count from 0x42 and the stack's limits and stop bits from 0x92 there).
    pub stack_at_master: bool,
    /// Add the trailing byte real Pylontech units send after 0x44 Status5.
    pub alarm_trailing_byte: bool,
    /// Comm-loss policy.
    pub on_comm_loss: CommLoss,
    /// 0x51/0x60 device name.
    pub device_name: String,
    /// 0x51/0x60 manufacturer.
    pub manufacturer: String,
    /// Our version (major, minor, patch) for 0x51 and 0x96.
    pub version: (u8, u8, u8),
    /// 0x47 cell high voltage (`safety.cell_ov`), mV.
    pub cell_ov_mv: u16,
    /// 0x47 cell low voltage (`safety.cell_uv`), mV.
    pub cell_uv_mv: u16,
    /// 0x47 charge/discharge high temperature (`safety.cell_ot`), 0.1 °C.
    pub cell_ot_dc: i32,
    /// 0x47 charge low temperature (`safety.cell_cold_charge`), 0.1 °C.
    pub cell_cold_charge_dc: i32,
    /// 0x47 discharge low temperature (`safety.cell_cold_discharge`), 0.1 °C.
    pub cell_cold_discharge_dc: i32,
    /// Rule 10: a decision older than this is not served as "enabled", ms.
    pub decision_max_age_ms: u64,
}

impl EmulationSettings {
    /// Takes a profile's options.
    pub fn apply(&mut self, o: ProfileOptions) {
        self.reply_ver = o.reply_ver;
        self.reply_adr = o.reply_adr;
        self.any_address = o.any_address;
        self.info_at_adr0 = o.info_at_adr0;
        self.system_current_unit = o.system_current_unit;
        self.management_current_unit = o.management_current_unit;
        self.positive_discharge_limit = o.positive_discharge_limit;
        self.stack_at_master = o.stack_at_master;
    }

    /// The options in force, as a profile would give them.
    pub fn options(&self) -> ProfileOptions {
        ProfileOptions {
            reply_ver: self.reply_ver,
            reply_adr: self.reply_adr,
            any_address: self.any_address,
            info_at_adr0: self.info_at_adr0,
            system_current_unit: self.system_current_unit,
            management_current_unit: self.management_current_unit,
            positive_discharge_limit: self.positive_discharge_limit,
            stack_at_master: self.stack_at_master,
        }
    }
}

impl Default for EmulationSettings {
    fn default() -> Self {
        let o = Profile::Vevor.options();
        Self {
            address: 2,
            reply_ver: o.reply_ver,
            reply_adr: o.reply_adr,
            any_address: o.any_address,
            info_at_adr0: o.info_at_adr0,
            system_current_unit: o.system_current_unit,
            management_current_unit: o.management_current_unit,
            positive_discharge_limit: o.positive_discharge_limit,
            stack_at_master: o.stack_at_master,
            alarm_trailing_byte: false,
            on_comm_loss: CommLoss::Disable,
            device_name: "pace2pylon".into(),
            manufacturer: "pace2pylon".into(),
            version: (0, 1, 0),
            cell_ov_mv: 3630,
            cell_uv_mv: 2850,
            cell_ot_dc: 500,
            cell_cold_charge_dc: 20,
            cell_cold_discharge_dc: -150,
            decision_max_age_ms: 3000,
        }
    }
}

/// One pack as the responder sees it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PackSnapshot {
    /// Last 0x42 block (shared with the readings it came from: a snapshot copies no cells).
    pub analog: Option<Arc<PackAnalog>>,
    /// Last 0x44 block.
    pub status: Option<Arc<PackStatus>>,
    /// Its limits.
    pub limits: PackLimits,
    /// Its serial from C2, if read.
    pub serial: Option<Text>,
    /// Its share of the charge and discharge limits, mA (SAFETY.md §2a), for 0x92.
    pub share_ma: (i32, i32),
}

/// The safety loop's last decision, as far as replies need it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Enable {
    /// Charging enabled.
    pub charge: bool,
    /// Discharging enabled.
    pub discharge: bool,
    /// When it was decided, ms (monotonic, the same clock as `now`).
    pub at_ms: u64,
    /// Data is stale or missing (comm loss towards the packs or the counter).
    pub comm_lost: bool,
}

impl Enable {
    /// Whether the decision may be served as it is: data is not lost, and it is no older than
    /// `max_age_ms` (rule 10). Otherwise nothing may be served as enabled.
    pub fn may_serve(&self, max_age_ms: u64, now_ms: u64) -> bool {
        !self.comm_lost && now_ms.saturating_sub(self.at_ms) <= max_age_ms
    }
}

/// The protections 0x62 reports (from the safety loop's reasons).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Protections {
    /// Over-voltage.
    pub over_voltage: bool,
    /// Under-voltage.
    pub under_voltage: bool,
    /// Over-temperature.
    pub over_temperature: bool,
    /// Under-temperature.
    pub under_temperature: bool,
    /// Discharge over-current.
    pub discharge_over_current: bool,
    /// Charge over-current.
    pub charge_over_current: bool,
    /// A BMS fault.
    pub fault: bool,
}

/// Everything one reply is built from: immutable, made by the safety loop.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// The aggregate; `None` before the first complete snapshot (the responder stays silent).
    pub view: Option<SystemView>,
    /// The packs, pack 1 first.
    pub packs: Vec<PackSnapshot>,
    /// The decision.
    pub enable: Enable,
    /// The protections for 0x62.
    pub protections: Protections,
}

fn k_to_pylon(t: DeciKelvin<Pace>) -> DeciKelvin<Pylon> {
    t.convert()
}

fn mah(c: units::CentiAmpHours) -> MilliAmpHours {
    c.to_milliamp_hours()
}

/// EMULATION.md's 0x42 block of one pack.
pub fn module_analog(a: &PackAnalog) -> ModuleAnalog {
    // Pace [cell1..cell4, MOSFET, environment] -> Pylontech [BMS board, cell1..cell4, MOSFET].
    let mut temps: Vec<DeciKelvin<Pylon>> = Vec::with_capacity(a.temps.len());
    if a.temps.len() >= 6 {
        temps.push(k_to_pylon(a.temps[5]));
        temps.extend(a.temps[..5].iter().map(|t| k_to_pylon(*t)));
        temps.extend(a.temps[6..].iter().map(|t| k_to_pylon(*t)));
    } else {
        temps.extend(a.temps.iter().map(|t| k_to_pylon(*t)));
    }
    let (remaining, total) = (mah(a.remaining), mah(a.full));
    let fits = remaining.to_u16().is_some() && total.to_u16().is_some();
    ModuleAnalog {
        cells: a.cells.clone(),
        temps,
        current: DeciAmps::from_centiamps(a.current),
        voltage: a.voltage,
        remaining,
        user_defined: if fits { 2 } else { UD_LARGE_CAPACITY },
        total,
        cycles: a.cycles,
        extra: Vec::new(),
    }
}

fn reorder<T: Copy>(v: &[T]) -> Vec<T> {
    if v.len() >= 6 {
        let mut out = vec![v[5]];
        out.extend_from_slice(&v[..5]);
        out.extend_from_slice(&v[6..]);
        out
    } else {
        v.to_vec()
    }
}

/// EMULATION.md's 0x44 block of one pack.
pub fn module_alarm(s: &PackStatus, a: Option<&PackAnalog>, trailing: bool) -> ModuleAlarm {
    use pace_proto::{ControlState, Protect1, Protect2, SystemState};
    let p1 = s.protect1;
    let mut status1 = Status1::empty();
    status1.set(Status1::MODULE_UNDER_VOLTAGE, p1.contains(Protect1::LOW_TOTAL_VOLTAGE));
    status1.set(Status1::CHARGE_OVER_TEMP, s.protect2.contains(Protect2::HIGH_CHARGE_TEMP));
    status1.set(Status1::DISCHARGE_OVER_TEMP, s.protect2.contains(Protect2::HIGH_DISCHARGE_TEMP));
    status1.set(Status1::DISCHARGE_OVER_CURRENT, p1.contains(Protect1::DISCHARGE_OVER_CURRENT));
    status1.set(Status1::CHARGE_OVER_CURRENT, p1.contains(Protect1::CHARGE_OVER_CURRENT));
    status1.set(Status1::CELL_UNDER_VOLTAGE, p1.contains(Protect1::LOW_CELL_VOLTAGE));
    status1.set(
        Status1::MODULE_OVER_VOLTAGE,
        p1.intersects(Protect1::HIGH_TOTAL_VOLTAGE | Protect1::HIGH_CELL_VOLTAGE),
    );
    let mut status2 = Status2::empty();
    status2.set(Status2::USING_BATTERY_POWER, s.system.contains(SystemState::DISCHARGING));
    status2.set(Status2::DISCHARGE_MOSFET_ON, s.system.contains(SystemState::DISCHARGE_MOSFET_ON));
    status2.set(Status2::CHARGE_MOSFET_ON, s.system.contains(SystemState::CHARGE_MOSFET_ON));
    let current_ma = a.map_or(0, |a| a.current.to_milliamps());
    let mut status3 = Status3::empty();
    status3.set(Status3::EFFECTIVE_CHARGE_CURRENT, current_ma > 100);
    status3.set(Status3::EFFECTIVE_DISCHARGE_CURRENT, current_ma < -100);
    status3.set(Status3::FULLY_CHARGED, s.protect2.contains(Protect2::FULLY));
    status3.set(Status3::BUZZER, s.control.contains(ControlState::BUZZER));
    let cell_errors = a.map_or(0, |a| {
        a.cells
            .iter()
            .take(16)
            .enumerate()
            .fold(0u16, |m, (k, v)| if v.raw() > 4200 || v.raw() < 1000 { m | 1 << k } else { m })
    });
    ModuleAlarm {
        cell_warns: s.cell_warns.iter().map(|w| w.raw()).collect(),
        temp_warns: reorder(&s.temp_warns.iter().map(|w| w.raw()).collect::<Vec<_>>()),
        charge_current_warn: s.charge_current_warn.raw(),
        voltage_warn: s.voltage_warn.raw(),
        discharge_current_warn: s.discharge_current_warn.raw(),
        status1,
        status2,
        status3,
        cell_errors,
        extra: if trailing { vec![0] } else { Vec::new() },
    }
}

fn pylon_temps(t: Option<TempStats>) -> PylonTemps {
    let t = t.unwrap_or(TempStats {
        average: DeciKelvin::from_deci_celsius(0),
        max: (DeciKelvin::from_deci_celsius(0), 0),
        min: (DeciKelvin::from_deci_celsius(0), 0),
    });
    PylonTemps {
        average: k_to_pylon(t.average),
        max: k_to_pylon(t.max.0),
        max_id: t.max.1,
        min: k_to_pylon(t.min.0),
        min_id: t.min.1,
    }
}

/// Comm loss or a stalled safety loop (rule 10): nothing may be served as enabled.
fn disabled(snapshot: &Snapshot, settings: &EmulationSettings, now_ms: u64) -> bool {
    !snapshot.enable.may_serve(settings.decision_max_age_ms, now_ms)
}

/// What 0x63 (and the flags of 0x92) say now.
fn management(
    snapshot: &Snapshot,
    view: &SystemView,
    settings: &EmulationSettings,
    now_ms: u64,
) -> Management {
    let e = snapshot.enable;
    let disabled = disabled(snapshot, settings, now_ms);
    let mut flags = ManagementFlags::empty();
    flags.set(ManagementFlags::CHARGE_ENABLE, e.charge && !disabled);
    flags.set(ManagementFlags::DISCHARGE_ENABLE, e.discharge && !disabled);
    let deci = |ma: Option<i32>| DeciAmps::from_milliamps(if disabled { 0 } else { ma.unwrap_or(0) });
    let discharge = deci(view.max_discharge_ma);
    Management {
        charge_voltage: view.charge_voltage_limit,
        discharge_voltage: view.discharge_voltage_limit.unwrap_or(Millivolts::from_raw(0)),
        charge_current: deci(view.max_charge_ma),
        discharge_current: if settings.positive_discharge_limit {
            discharge
        } else {
            DeciAmps::from_raw(-discharge.raw())
        },
        flags,
    }
}

/// Answers one request frame. `None` means no reply: not our address, a bad frame, before the
/// first complete snapshot, or comm loss under the `silent` policy.
pub fn respond(
    snapshot: &Snapshot,
    frame: &[u8],
    settings: &EmulationSettings,
    now_ms: u64,
) -> Option<Vec<u8>> {
    // A bad checksum or LCHKSUM: it may not have been for us.
    let header = Frame::parse(frame).ok()?.header();
    let n = snapshot.packs.len();
    let master = settings.address;
    let owns_pack = |adr: u8| adr.checked_sub(master).map(usize::from).filter(|k| *k < n);
    let is_system = matches!(header.cid2, 0x47 | 0x60 | 0x61 | 0x62 | 0x63);
    let is_info = matches!(header.cid2, 0x4F | 0x51);
    // System commands are the master's (V3.5: "only respond on master addresses").
    let owned = header.adr == master
        || (owns_pack(header.adr).is_some() && !is_system)
        || (settings.any_address && is_system)
        || (settings.info_at_adr0 && header.adr == 0 && is_info);
    if !owned {
        return None;
    }
    let view = snapshot.view.as_ref()?;
    if settings.on_comm_loss == CommLoss::Silent && disabled(snapshot, settings, now_ms) {
        return None;
    }
    let reply_adr = match settings.reply_adr {
        ReplyAdr::Master => master,
        ReplyAdr::Echo if is_system => master,
        ReplyAdr::Echo => header.adr,
    };
    let reply_ver = match settings.reply_ver {
        ReplyVer::Fixed(ver) => ver,
        ReplyVer::Echo => header.ver,
    };
    let dialect = Dialect {
        system_current: settings.system_current_unit,
        management_current: settings.management_current_unit,
    };
    let refuse = |rtn: Rtn| {
        let mut out = Vec::new();
        Reply { ver: reply_ver, ..Reply::refuse(reply_adr, rtn) }.emit_in(&mut out, dialect).ok()?;
        Some(out)
    };
    let request = match Request::parse(frame) {
        Ok(r) => r,
        Err(pylon_proto::Error::UnknownCid2(_)) => return refuse(Rtn::Cid2Invalid),
        Err(_) => return refuse(Rtn::CommandFormatError),
    };
    // Per-pack commands: the command byte is our module address or FF at the master (or, when
    // the stack is the master module, the master's own address).
    let whole_stack =
        |value: u8| header.adr == master && (value == 0xFF || (settings.stack_at_master && value == master));
    let per_pack = |value: u8| -> Result<Vec<usize>, Rtn> {
        if whole_stack(value) {
            Ok((0..n).collect())
        } else if value == header.adr {
            owns_pack(value).map(|k| vec![k]).ok_or(Rtn::InvalidData)
        } else {
            Err(Rtn::InvalidData)
        }
    };
    let response = match request.command {
        Command::ProtocolVersion => Response::ProtocolVersion,
        Command::ManufacturerInfo => Response::ManufacturerInfo(ManufacturerInfo {
            device_name: Text::padded(&settings.device_name, 10, 0),
            software_version: [settings.version.0, settings.version.1],
            manufacturer: Text::padded(&settings.manufacturer, 20, 0),
        }),
        Command::SystemInfo => Response::SystemInfo(SystemInfo {
            device_name: Text::padded(&settings.device_name, 10, 0),
            manufacturer: Text::padded(&settings.manufacturer, 20, 0),
            software_version: [settings.version.0, settings.version.1],
            serials: (0..n).map(|k| serial(&snapshot.packs[k], k)).collect(),
        }),
        Command::SystemAnalog => Response::SystemAnalog(SystemAnalog {
            voltage: view.voltage,
            current: SystemCurrent::from_milliamps(view.current_ma, settings.system_current_unit),
            soc: view.soc,
            average_cycles: view.cycles_avg,
            max_cycles: view.cycles_max,
            average_soh: view.soh_avg,
            min_soh: view.soh_min,
            cell_max: view.cell_max.0,
            cell_max_id: view.cell_max.1,
            cell_min: view.cell_min.0,
            cell_min_id: view.cell_min.1,
            cell_temp: pylon_temps(view.cell_temp),
            mosfet_temp: pylon_temps(view.mosfet_temp),
            bms_temp: pylon_temps(view.bms_temp),
        }),
        Command::SystemAlarm => Response::SystemAlarm(system_alarm(snapshot)),
        Command::SystemManagement => Response::SystemManagement(management(snapshot, view, settings, now_ms)),
        Command::SystemParameters => Response::SystemParameters(parameters(snapshot, view, settings)),
        Command::Analog { command } => match per_pack(command) {
            Err(rtn) => return refuse(rtn),
            Ok(packs) => {
                let modules: Option<Vec<_>> =
                    packs.iter().map(|k| snapshot.packs[*k].analog.as_deref().map(module_analog)).collect();
                let Some(modules) = modules else { return refuse(Rtn::CommunicationError) };
                let count = if whole_stack(command) { modules.len() as u8 } else { command };
                Response::Analog(AnalogReply { info_flag: 0, command: count, modules })
            }
        },
        Command::Alarm { command } => match per_pack(command) {
            Err(rtn) => return refuse(rtn),
            Ok(packs) => {
                let modules: Option<Vec<_>> = packs
                    .iter()
                    .map(|k| {
                        let p = &snapshot.packs[*k];
                        p.status
                            .as_ref()
                            .map(|s| module_alarm(s, p.analog.as_deref(), settings.alarm_trailing_byte))
                    })
                    .collect();
                let Some(modules) = modules else { return refuse(Rtn::CommunicationError) };
                let count = if whole_stack(command) { modules.len() as u8 } else { command };
                Response::Alarm(AlarmReply { info_flag: 0, command: count, modules })
            }
        },
        Command::Management { command } if settings.stack_at_master && whole_stack(command) => {
            let mut limits = management(snapshot, view, settings, now_ms);
            if settings.positive_discharge_limit {
                limits.discharge_current =
                    DeciAmps::from_raw(limits.discharge_current.raw().saturating_abs());
            }
            Response::Management { command, limits }
        }
        Command::Management { command } | Command::Serial { command } | Command::Firmware { command } => {
            // 0x93 and 0x96 describe one module: the master's own address is pack 1 even when
            // the stack is the master module for 0x42 and 0x92.
            let own_module = !matches!(request.command, Command::Management { .. })
                && settings.stack_at_master
                && command == master
                && header.adr == master;
            let one = if own_module {
                owns_pack(command).map(|k| vec![k]).ok_or(Rtn::InvalidData)
            } else {
                per_pack(command)
            };
            let k = match one {
                Ok(v) if v.len() == 1 => v[0],
                Ok(_) => return refuse(Rtn::InvalidData),
                Err(rtn) => return refuse(rtn),
            };
            match request.command {
                Command::Management { .. } => {
                    let system = management(snapshot, view, settings, now_ms);
                    let (charge, discharge) = snapshot.packs[k].share_ma;
                    let off = disabled(snapshot, settings, now_ms);
                    let share = |ma: i32| DeciAmps::from_milliamps(if off { 0 } else { ma });
                    let discharge = share(discharge);
                    Response::Management {
                        command,
                        limits: Management {
                            charge_current: share(charge),
                            discharge_current: if settings.positive_discharge_limit {
                                discharge
                            } else {
                                DeciAmps::from_raw(-discharge.raw())
                            },
                            ..system
                        },
                    }
                }
                Command::Serial { .. } => Response::Serial { command, serial: serial(&snapshot.packs[k], k) },
                _ => Response::Firmware {
                    command,
                    manufacture_version: [settings.version.0, settings.version.1],
                    mainline_version: [settings.version.0, settings.version.1, settings.version.2],
                },
            }
        }
    };
    let mut out = Vec::new();
    Reply { ver: reply_ver, adr: reply_adr, outcome: Ok(response) }.emit_in(&mut out, dialect).ok()?;
    Some(out)
}

fn serial(p: &PackSnapshot, k: usize) -> Text {
    match &p.serial {
        Some(t) if !t.trimmed().is_empty() => {
            let s: String = t.trimmed().chars().filter(|c| !c.is_whitespace()).take(16).collect();
            Text::padded(&s, 16, b' ')
        }
        _ => Text::padded(&format!("PACE-PACK-{:02}", k + 1), 16, b' '),
    }
}

pub(crate) fn system_alarm(snapshot: &Snapshot) -> SystemAlarm {
    use pace_proto::{Warn1, Warn2};
    let pr = snapshot.protections;
    let mut protect1 = SystemAlarm1::empty();
    protect1.set(SystemAlarm1::OVER_VOLTAGE, pr.over_voltage);
    protect1.set(SystemAlarm1::UNDER_VOLTAGE, pr.under_voltage);
    protect1.set(SystemAlarm1::OVER_TEMPERATURE, pr.over_temperature);
    protect1.set(SystemAlarm1::UNDER_TEMPERATURE, pr.under_temperature);
    protect1.set(SystemAlarm1::DISCHARGE_OVER_CURRENT, pr.discharge_over_current);
    let mut protect2 = SystemAlarm2::empty();
    protect2.set(SystemAlarm2::CHARGE_OVER_CURRENT, pr.charge_over_current);
    protect2.set(SystemAlarm2::SYSTEM_FAULT, pr.fault);
    let (mut alarm1, mut alarm2) = (SystemAlarm1::empty(), SystemAlarm2::empty());
    for s in snapshot.packs.iter().filter_map(|p| p.status.as_ref()) {
        alarm1 |= if s.warn1.intersects(Warn1::HIGH_CELL_VOLTAGE | Warn1::HIGH_TOTAL_VOLTAGE) {
            SystemAlarm1::OVER_VOLTAGE
        } else {
            SystemAlarm1::empty()
        };
        alarm1 |= if s.warn1.intersects(Warn1::LOW_CELL_VOLTAGE | Warn1::LOW_TOTAL_VOLTAGE) {
            SystemAlarm1::UNDER_VOLTAGE
        } else {
            SystemAlarm1::empty()
        };
        let hot = Warn2::HIGH_CHARGE_TEMP
            | Warn2::HIGH_DISCHARGE_TEMP
            | Warn2::HIGH_ENVIRONMENT_TEMP
            | Warn2::HIGH_MOSFET_TEMP;
        alarm1 |=
            if s.warn2.intersects(hot) { SystemAlarm1::OVER_TEMPERATURE } else { SystemAlarm1::empty() };
        let cold = Warn2::LOW_CHARGE_TEMP | Warn2::LOW_DISCHARGE_TEMP | Warn2::LOW_ENVIRONMENT_TEMP;
        alarm1 |=
            if s.warn2.intersects(cold) { SystemAlarm1::UNDER_TEMPERATURE } else { SystemAlarm1::empty() };
        alarm1 |= if s.warn1.contains(Warn1::DISCHARGE_CURRENT) {
            SystemAlarm1::DISCHARGE_OVER_CURRENT
        } else {
            SystemAlarm1::empty()
        };
        alarm2 |= if s.warn1.contains(Warn1::CHARGE_CURRENT) {
            SystemAlarm2::CHARGE_OVER_CURRENT
        } else {
            SystemAlarm2::empty()
        };
        alarm2 |= if !s.fault.is_empty() { SystemAlarm2::SYSTEM_FAULT } else { SystemAlarm2::empty() };
    }
    SystemAlarm { alarm1, alarm2, protect1, protect2 }
}

fn parameters(snapshot: &Snapshot, view: &SystemView, settings: &EmulationSettings) -> SystemParameters {
    let dk = |dc: i32| DeciKelvin::<Pylon>::from_deci_celsius(dc);
    let limits = snapshot.packs.iter().map(|p| p.limits);
    let mv = |v: Option<Millivolts>, default: u16| v.unwrap_or(Millivolts::from_raw(default));
    SystemParameters {
        info_flag: 0,
        cell_high: Millivolts::from_raw(settings.cell_ov_mv),
        cell_low: Millivolts::from_raw(settings.cell_uv_mv),
        cell_under: mv(limits.clone().filter_map(|l| l.cell_uv_protect).min(), 2500),
        charge_high_temp: dk(settings.cell_ot_dc),
        charge_low_temp: dk(settings.cell_cold_charge_dc),
        charge_current: DeciAmps::from_milliamps(view.max_charge_ma.unwrap_or(0)),
        module_high: mv(limits.clone().filter_map(|l| l.pack_ov_alarm).min(), 0),
        module_low: mv(view.discharge_voltage_limit, 0),
        module_under: mv(limits.filter_map(|l| l.pack_uv_protect).max(), 0),
        discharge_high_temp: dk(settings.cell_ot_dc),
        discharge_low_temp: dk(settings.cell_cold_discharge_dc),
        discharge_current: DeciAmps::from_milliamps(-view.max_discharge_ma.unwrap_or(0)),
    }
}
