//! Everything the web page, the API, the metrics and MQTT show, as one serializable value taken
//! from the shared state in one go. Field names carry their unit (`_mv`, `_ma`, `_dc` for 0.1 °C,
//! `_mah`, `_pct`, `_ms`, `_w`).

use serde::Serialize;

pub use maestro_core::Step;
use maestro_core::{Blocks, Reason};
use pace_proto::flags::flag_names;

use crate::control::charging_priority_name;
use crate::shared::{INVERTER_LIVE_FIRST, LATENCY_BUCKETS_US, Shared, lock};

/// The whole status.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// pace2pylon's version.
    pub version: &'static str,
    /// Wall clock now, RFC 3339.
    pub time: String,
    /// Seconds since start.
    pub uptime_s: u64,
    /// Charging enabled, as the inverter is told.
    pub charge_enabled: bool,
    /// Discharging enabled, as the inverter is told.
    pub discharge_enabled: bool,
    /// Age of the safety loop's last decision (`null` before the first).
    pub decision_age_ms: Option<u64>,
    /// Whether any source's data is stale or missing.
    pub data_stale: bool,
    /// Every active safety reason.
    pub reasons: Vec<ReasonStatus>,
    /// The aggregate the inverter is told (`null` until a pack reported).
    pub stack: Option<Stack>,
    /// How the current limits were made (SAFETY.md §2a; `null` before the first cycle).
    pub limits: Option<CurrentLimits>,
    /// One per pack, pack 1 first.
    pub packs: Vec<Pack>,
    /// The coulomb counter.
    pub coil: Coil,
    /// The inverter's Modbus port.
    pub inverter: Inverter,
    /// The rebalance procedure.
    pub rebalance: Rebalance,
    /// The operator's standing orders.
    pub overrides: Overrides,
    /// The Pylontech RS485 side: line counters and reply latency; null without `[pylon]`.
    pub pylon: Option<Pylon>,
    /// The Pylontech CAN side: frames sent, the inverter's heartbeat; null without `[can]`.
    pub can: Option<Can>,
    /// Energy into and out of the stack.
    pub energy: Energy,
}

/// Energy into and out of the stack since its counters began (they only grow, and survive a
/// restart in the state file; see `daemon::energy`).
#[derive(Clone, Debug, Serialize)]
pub struct Energy {
    /// Into the stack, kWh.
    pub charged_kwh: f64,
    /// Out of the stack, kWh.
    pub discharged_kwh: f64,
    /// What the last step was measured by: `coil` or `packs` (`null` before the first).
    pub source: Option<crate::energy::Source>,
}

/// Wh as kWh to 0.1 Wh (rounding keeps a growing counter growing).
fn kwh(wh: f64) -> f64 {
    (wh * 10.0).round() / 10_000.0
}

/// The CAN side.
#[derive(Clone, Debug, Serialize)]
pub struct Can {
    /// Its bus.
    pub link: String,
    /// The profile (`pylon`, `lux`, `sma`, `solark`, `victron`).
    pub profile: &'static str,
    /// Frames sent.
    pub frames_sent: u64,
    /// Limits and enable bits sent at once because they changed towards safety (a bit cleared, a
    /// limit fell).
    pub urgent_sets: u64,
    /// The inverter's 0x305 heartbeats received.
    pub heartbeats: u64,
    /// Seconds since the last heartbeat (`null`: none yet).
    pub heartbeat_age_s: Option<f64>,
    /// No heartbeat for `can.peer_timeout_s` (since the start if none came): an alarm, and a
    /// reason with `can.peer_timeout_disables`.
    pub peer_alarm: bool,
    /// Seconds since a Lux inverter last asked the battery to shut down (0x300; not obeyed).
    pub shutdown_request_age_s: Option<f64>,
    /// Known frames that did not decode.
    pub bad_frames: u64,
    /// The bus's error while it is failing.
    pub error: Option<String>,
    /// Its counters (`frames`: frames received).
    pub link_stats: LinkStats,
}

/// One active reason.
#[derive(Clone, Debug, Serialize)]
pub struct ReasonStatus {
    /// Stable name (`pack_stale`, `cell_over_voltage`, ...).
    pub code: &'static str,
    /// SAFETY.md §3 rule number (0: the current limits are not read yet).
    pub rule: u8,
    /// `charge`, `discharge`, `both`, or `nothing` for an alarm (`pack_imbalance`).
    pub blocks: &'static str,
    /// The pack it is about, if any.
    pub pack: Option<usize>,
    /// `pack_joining` and `pack_isolated`: the pack's voltage minus the bus's, mV.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta_mv: Option<i32>,
    /// In plain words.
    pub text: String,
}

/// Every reason code, in rule order (for MQTT binary sensors and metrics); `pack_isolated` and
/// `pack_imbalance` are alarms that block nothing.
pub const REASON_CODES: [&str; 27] = [
    "forced_disable",
    "pack_stale",
    "coil_stale",
    "bms_protection",
    "bms_fault",
    "bms_over_voltage",
    "over_current",
    "cell_over_temperature",
    "bms_over_temperature",
    "mosfet_over_temperature",
    "cell_too_cold",
    "decision_stale",
    "limits_unknown",
    "cell_over_voltage",
    "too_cold_to_charge",
    "rebalance_settling",
    "cell_under_voltage",
    "bms_under_voltage",
    "bms_charge_temperature",
    "pack_over_current",
    "no_pack_can_charge",
    "no_pack_can_discharge",
    "inverter_silent",
    "config_out_of_range",
    "pack_joining",
    "pack_isolated",
    "pack_imbalance",
];

/// A reason's stable name and the pack it concerns.
pub fn reason_code(r: &Reason) -> (&'static str, Option<usize>) {
    let pack = match r {
        Reason::PackStale { pack }
        | Reason::BmsProtection { pack, .. }
        | Reason::BmsFault { pack, .. }
        | Reason::BmsOverVoltage { pack }
        | Reason::BmsUnderVoltage { pack }
        | Reason::BmsChargeTemperature { pack }
        | Reason::PackOverCurrent { pack, .. }
        | Reason::PackJoining { pack, .. }
        | Reason::PackIsolated { pack, .. } => Some(*pack),
        _ => None,
    };
    (r.code(), pack)
}

/// One direction's current limit and how it was made (SAFETY.md §2a).
#[derive(Clone, Debug, Serialize)]
pub struct DirectionLimit {
    /// Packs that can carry current this way (`n`).
    pub packs: usize,
    /// The lowest over-current alarm among them, A (`a_min`).
    pub a_min_a: Option<u16>,
    /// `current_derating × n × a_min` (`null`: an alarm is unread).
    pub base_ma: Option<i32>,
    /// Each taper factor with its reason.
    pub factors: Vec<LimitFactor>,
    /// The lowest factor.
    pub taper: f64,
    /// The recovery cap while a BMS under-voltage protection holds (charge only).
    pub recovery_ma: Option<i32>,
    /// The top-hold cap during a rebalance's top hold (charge only, SAFETY.md §2b).
    pub hold_ma: Option<i32>,
    /// The per-pack guard's cut, while a pack is at or above its guard.
    pub guard: Option<GuardCut>,
    /// Base × taper (capped by the recovery current): the limit rises to it at `limit_rise_per_s`.
    pub target_ma: Option<i32>,
    /// What the inverter is told (`null`: unknown).
    pub limit_ma: Option<i32>,
}

/// One taper factor.
#[derive(Clone, Debug, Serialize)]
pub struct LimitFactor {
    /// `cell_voltage` or `cell_temperature`.
    pub table: &'static str,
    /// The value it was read at: mV or °C.
    pub at: f64,
    /// 0..=1.
    pub factor: f64,
    /// In words.
    pub reason: String,
}

/// The per-pack guard's cut.
#[derive(Clone, Debug, Serialize)]
pub struct GuardCut {
    /// The pack (the worst), 1-based.
    pub pack: usize,
    /// Its current this way.
    pub current_ma: i32,
    /// Its alarm, A.
    pub alarm_a: u16,
    /// The limit it cut to.
    pub cut_ma: i32,
}

/// Both directions.
#[derive(Clone, Debug, Serialize)]
pub struct CurrentLimits {
    /// Charge.
    pub charge: DirectionLimit,
    /// Discharge (magnitudes).
    pub discharge: DirectionLimit,
}

impl CurrentLimits {
    fn from(l: &translator::limits::Limits) -> Self {
        use translator::limits::Direction;
        let direction = |d: Direction| {
            let x = l.get(d);
            DirectionLimit {
                packs: x.packs,
                a_min_a: x.a_min,
                base_ma: x.base_ma,
                factors: x
                    .factors
                    .iter()
                    .map(|f| LimitFactor {
                        table: f.table.name(),
                        at: f.at,
                        factor: (f.factor * 1000.0).round() / 1000.0,
                        reason: f.describe(d),
                    })
                    .collect(),
                taper: (x.taper * 1000.0).round() / 1000.0,
                recovery_ma: x.recovery_ma,
                hold_ma: x.hold_ma,
                guard: x.guard.map(|g| GuardCut {
                    pack: g.pack,
                    current_ma: g.current_ma,
                    alarm_a: g.alarm_a,
                    cut_ma: g.cut_ma,
                }),
                target_ma: x.target_ma,
                limit_ma: x.limit_ma,
            }
        };
        Self { charge: direction(Direction::Charge), discharge: direction(Direction::Discharge) }
    }
}

/// The aggregate.
#[derive(Clone, Debug, Serialize)]
pub struct Stack {
    /// Mean pack voltage.
    pub voltage_mv: u16,
    /// Sum of pack currents (+ charging).
    pub current_ma: i32,
    /// Voltage × current.
    pub power_w: i64,
    /// SOC as the inverter is told.
    pub soc_pct: u8,
    /// Lowest cell and its id ((pack << 8) | cell).
    pub cell_min_mv: u16,
    /// Its id.
    pub cell_min_id: u16,
    /// Highest cell.
    pub cell_max_mv: u16,
    /// Its id.
    pub cell_max_id: u16,
    /// Highest cell temperature.
    pub cell_temp_max_dc: Option<i32>,
    /// Lowest cell temperature.
    pub cell_temp_min_dc: Option<i32>,
    /// Charge voltage limit sent.
    pub charge_voltage_mv: u16,
    /// Discharge voltage limit sent.
    pub discharge_voltage_mv: Option<u16>,
    /// Charge current limit sent.
    pub charge_current_ma: Option<i32>,
    /// Discharge current limit sent (magnitude).
    pub discharge_current_ma: Option<i32>,
    /// Mean cycles.
    pub cycles: u16,
    /// Mean state of health.
    pub soh_pct: u8,
    /// Packs reporting.
    pub packs_reporting: usize,
}

/// Line counters.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct LinkStats {
    /// Connected now.
    pub connected: bool,
    /// Valid frames received.
    pub frames: u64,
    /// Requests without a valid reply in time.
    pub timeouts: u64,
    /// Frames failing their checksum or CRC.
    pub checksum_errors: u64,
    /// Reconnections.
    pub reconnects: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
}

impl From<link::Stats> for LinkStats {
    fn from(s: link::Stats) -> Self {
        Self {
            connected: s.connected,
            frames: s.frames,
            timeouts: s.timeouts,
            checksum_errors: s.checksum_errors,
            reconnects: s.reconnects,
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
        }
    }
}

/// Status flags of one pack, as names.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PackFlags {
    /// Protections (protect 1 and 2).
    pub protections: Vec<String>,
    /// Faults.
    pub faults: Vec<String>,
    /// Warnings (warn 1 and 2).
    pub warnings: Vec<String>,
    /// System state.
    pub system: Vec<String>,
    /// Control state.
    pub control: Vec<String>,
}

/// One pack.
#[derive(Clone, Debug, Serialize)]
pub struct Pack {
    /// 1-based.
    pub number: usize,
    /// Its Pylontech RS485 address toward the inverter (`pylon.address` + number - 1); null
    /// without `[pylon]`.
    pub pylon_adr: Option<usize>,
    /// Its line.
    pub link: String,
    /// Age of its last 0x42 reply.
    pub age_ms: Option<u64>,
    /// No reply within `stale_after_s`.
    pub stale: bool,
    /// Cell voltages, cell 1 first.
    pub cells_mv: Vec<u16>,
    /// 1-based number of the lowest cell.
    pub cell_min: Option<usize>,
    /// 1-based number of the highest cell.
    pub cell_max: Option<usize>,
    /// Highest minus lowest cell.
    pub cell_delta_mv: Option<u16>,
    /// 1-based numbers of the cells being balanced.
    pub balancing: Vec<usize>,
    /// Temperatures in the Pace order: cells 1-4, MOSFET, environment.
    pub temps_dc: Vec<i32>,
    /// Pack current (+ charging).
    pub current_ma: Option<i32>,
    /// Pack voltage.
    pub voltage_mv: Option<u16>,
    /// State of charge from remaining / full.
    pub soc_pct: Option<u8>,
    /// Remaining capacity.
    pub remaining_mah: Option<u32>,
    /// Full capacity.
    pub full_mah: Option<u32>,
    /// Design capacity.
    pub design_mah: Option<u32>,
    /// Cycles.
    pub cycles: Option<u16>,
    /// Decoded 0x44 flags.
    pub flags: PackFlags,
    /// Over-voltage alarm read from its configuration.
    pub pack_ov_alarm_mv: Option<u16>,
    /// Under-voltage alarm read from its configuration.
    pub pack_uv_alarm_mv: Option<u16>,
    /// Charge over-current alarm read from its configuration, A.
    pub charge_alarm_a: Option<u16>,
    /// Discharge over-current alarm read from its configuration, A (magnitude).
    pub discharge_alarm_a: Option<u16>,
    /// It can take charge now (SAFETY.md §2a: fresh, MOSFET on, no protection that blocks it).
    pub can_charge: bool,
    /// It can give discharge now.
    pub can_discharge: bool,
    /// Its share of the charge limit, as 0x92 tells it.
    pub share_charge_ma: Option<i32>,
    /// Its share of the discharge limit (magnitude).
    pub share_discharge_ma: Option<i32>,
    /// C2 serial.
    pub serial: Option<String>,
    /// C1 version.
    pub firmware: Option<String>,
    /// The last problem on its line.
    pub last_error: Option<String>,
    /// The last 0x42 + 0x44 cycle, ms.
    pub poll_cycle_ms: Option<f64>,
    /// Energy into this pack, kWh (grows only).
    pub energy_charged_kwh: f64,
    /// Energy out of this pack, kWh (grows only).
    pub energy_discharged_kwh: f64,
    /// Its line.
    pub link_stats: LinkStats,
}

/// The coulomb counter.
#[derive(Clone, Debug, Serialize)]
pub struct Coil {
    /// Configured at all.
    pub configured: bool,
    /// Age of its last reading.
    pub age_ms: Option<u64>,
    /// No reading within `stale_after_s` (when configured).
    pub stale: bool,
    /// SOC.
    pub soc_pct: Option<u16>,
    /// Voltage.
    pub voltage_mv: Option<u32>,
    /// Current (+ charging).
    pub current_ma: Option<i32>,
    /// Power magnitude.
    pub power_w: Option<f64>,
    /// Remaining capacity.
    pub remaining_mah: Option<u32>,
    /// Temperature, 0.1 °C.
    pub temperature_dc: Option<i32>,
    /// `idle`, `charging`, `discharging`.
    pub state: Option<&'static str>,
    /// Its configured capacity.
    pub capacity_mah: Option<u32>,
    /// Its configured full voltage.
    pub full_voltage_mv: Option<u32>,
    /// The last problem on its line.
    pub last_error: Option<String>,
    /// Its line.
    pub link_stats: LinkStats,
}

/// The inverter.
#[derive(Clone, Debug, Serialize)]
pub struct Inverter {
    /// Configured at all.
    pub configured: bool,
    /// Age of its live registers.
    pub age_ms: Option<u64>,
    /// Nothing read within `stale_after_s` (when configured).
    pub stale: bool,
    /// Register 201, as a name where known.
    pub working_mode: Option<String>,
    /// PV power.
    pub pv_power_w: Option<i32>,
    /// Load (output active power).
    pub load_power_w: Option<i32>,
    /// Grid (mains) power.
    pub grid_power_w: Option<i32>,
    /// Battery power as the inverter sees it.
    pub battery_power_w: Option<i32>,
    /// Battery voltage as the inverter sees it, mV.
    pub battery_voltage_mv: Option<i32>,
    /// Battery SOC as the inverter shows it.
    pub battery_soc_pct: Option<i32>,
    /// Register 301.
    pub output_priority: Option<u16>,
    /// Its name.
    pub output_priority_name: Option<&'static str>,
    /// Register 331.
    pub charging_priority: Option<u16>,
    /// Its name.
    pub charging_priority_name: Option<&'static str>,
    /// The last problem on its line.
    pub last_error: Option<String>,
    /// Its line.
    pub link_stats: LinkStats,
}

/// The rebalance procedure.
#[derive(Clone, Debug, Serialize)]
pub struct Rebalance {
    /// `idle`, `running`, `completing` or `settling`.
    pub step: Step,
    /// Rule 14 asked for one.
    pub needed: bool,
    /// The coil voltage passed the threshold in this run.
    pub threshold_hit: bool,
    /// Last completion, RFC 3339.
    pub last_completed: Option<String>,
    /// The next one is due then (every `rebalance.every_days`).
    pub next_due: Option<String>,
    /// The last run was cancelled: the SOC is not calibrated.
    pub soc_uncalibrated: bool,
    /// Progress in words (what the step waits for).
    pub progress: String,
    /// The `pack_imbalance` alarm: a cell drifted low again soon after a rebalance.
    pub imbalance: Option<ImbalanceStatus>,
}

/// The `pack_imbalance` alarm.
#[derive(Clone, Debug, Serialize)]
pub struct ImbalanceStatus {
    /// The pack, 1-based.
    pub pack: usize,
    /// The cell, 1-based.
    pub cell: usize,
    /// Raised then, RFC 3339.
    pub since: Option<String>,
}

/// The operator's standing orders.
#[derive(Clone, Debug, Serialize)]
pub struct Overrides {
    /// Charging and discharging forced off.
    pub forced_disable: bool,
    /// Charge voltage override.
    pub charge_voltage_mv: Option<u16>,
    /// The override is set but suspended: a rebalance is active (SAFETY.md §2, v2).
    pub charge_voltage_suspended: bool,
    /// Forced charging priority.
    pub charging_priority: Option<u16>,
}

/// The Pylontech side.
#[derive(Clone, Debug, Serialize)]
pub struct Pylon {
    /// Its line.
    pub link: String,
    /// The profile (`vevor`, `voltronic`, `srne`, `deye`, `generic`); the options in force are in
    /// `check-config`'s output.
    pub profile: &'static str,
    /// Replies sent.
    pub replies: u64,
    /// Frames not answered.
    pub unanswered: u64,
    /// Mean reply latency, µs.
    pub latency_mean_us: Option<u64>,
    /// Sum of the reply latencies, µs.
    pub latency_sum_us: u64,
    /// Longest reply latency, µs.
    pub latency_max_us: u64,
    /// Replies per latency bucket: `[upper bound µs or null for +Inf, count]`, not cumulative.
    pub latency_buckets: Vec<(Option<u64>, u64)>,
    /// Its line.
    pub link_stats: LinkStats,
}

fn names<F: bitflags::Flags<Bits = u8>>(out: &mut Vec<String>, f: F) {
    out.extend(flag_names(f).map(|n| n.to_string()));
}

fn rfc3339(unix_s: u64) -> Option<String> {
    jiff::Timestamp::from_second(i64::try_from(unix_s).ok()?).ok().map(|t| t.to_string())
}

impl Shared {
    /// The status now.
    pub fn status(&self) -> Status {
        let now = self.now();
        let config = &self.config;
        let stale_ms = (config.safety.stale_after_s * 1000.0) as u64;
        let age = |t: maestro_core::Millis| now.since(t);
        // One cycle's view: the readings, the decision and the limits it was made from.
        let published = self.published();
        let decision = published.decision.clone();
        let snapshot = published.snapshot.clone();
        let limits = published.limits.as_ref().map(CurrentLimits::from);
        let imbalance = published.rebalance.imbalance;
        let mut reasons: Vec<ReasonStatus> = decision
            .as_ref()
            .map(|d| {
                d.reasons
                    .iter()
                    .map(|r| {
                        let (code, pack) = reason_code(r);
                        ReasonStatus {
                            code,
                            rule: r.rule(),
                            blocks: match r.blocks() {
                                Blocks::Both => "both",
                                Blocks::Charge => "charge",
                                Blocks::Discharge => "discharge",
                                Blocks::Nothing => "nothing",
                            },
                            delta_mv: match r {
                                Reason::PackJoining { delta_mv, .. } => Some(*delta_mv),
                                Reason::PackIsolated { delta_mv, .. } => *delta_mv,
                                _ => None,
                            },
                            pack,
                            text: r.describe(),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let can = config.can.as_ref().map(|c| {
            let r = lock(&self.can).clone();
            let seconds = |t: maestro_core::Millis| age(t) as f64 / 1000.0;
            Can {
                link: c.link.clone(),
                profile: crate::can::profile(c.profile).name(),
                frames_sent: r.frames_sent,
                urgent_sets: r.urgent_sets,
                heartbeats: r.heartbeats,
                heartbeat_age_s: r.heartbeat_at.map(seconds),
                peer_alarm: crate::can::peer_silent(&r, c, now),
                shutdown_request_age_s: r.shutdown_request_at.map(seconds),
                bad_frames: r.bad_frames,
                error: r.error.clone(),
                link_stats: r.stats.into(),
            }
        });
        // Without `peer_timeout_disables` the silent inverter is an alarm that blocks nothing.
        if can.as_ref().is_some_and(|c| c.peer_alarm) && !reasons.iter().any(|r| r.code == "inverter_silent")
        {
            reasons.push(ReasonStatus {
                code: "inverter_silent",
                rule: 0,
                blocks: "nothing",
                pack: None,
                delta_mv: None,
                text: Reason::InverterSilent.describe(),
            });
        }
        if let Some(i) = imbalance {
            reasons.push(ReasonStatus {
                code: "pack_imbalance",
                rule: 14,
                blocks: "nothing",
                pack: Some(i.pack),
                delta_mv: None,
                text: format!(
                    "pack {} cell {} drifted low again soon after a rebalance: probably a weak cell",
                    i.pack, i.cell
                ),
            });
        }
        // One lock at a time: the meters as the state file holds them.
        let energy = lock(&self.energy_on_disk).clone();
        let energy_source = published.energy_source;
        let packs: Vec<Pack> = published
            .packs
            .iter()
            .enumerate()
            .map(|(k, r)| {
                let (can_charge, can_discharge) = published.can_carry.get(k).copied().unwrap_or_default();
                let analog = r.analog.as_ref().map(|(a, _)| a);
                let status = r.status.as_ref().map(|(s, _)| s);
                let age_ms = r.analog.as_ref().map(|(_, t)| age(*t));
                let extremes = analog.and_then(|a| a.cell_extremes());
                let mut flags = PackFlags::default();
                if let Some(s) = status {
                    names(&mut flags.protections, s.protect1);
                    names(&mut flags.protections, s.protect2);
                    names(&mut flags.faults, s.fault);
                    names(&mut flags.warnings, s.warn1);
                    names(&mut flags.warnings, s.warn2);
                    names(&mut flags.system, s.system);
                    names(&mut flags.control, s.control);
                }
                let mah = |c: units::CentiAmpHours| u32::from(c.raw()) * 10;
                Pack {
                    number: k + 1,
                    pylon_adr: config.pylon.as_ref().map(|p| usize::from(p.address) + k),
                    link: config.packs.get(k).map(|p| p.link.clone()).unwrap_or_default(),
                    age_ms,
                    stale: age_ms.is_none_or(|a| a > stale_ms),
                    cells_mv: analog.map(|a| a.cells.iter().map(|c| c.raw()).collect()).unwrap_or_default(),
                    cell_min: extremes.map(|(min, _)| min.0),
                    cell_max: extremes.map(|(_, max)| max.0),
                    cell_delta_mv: extremes.map(|(min, max)| max.1.raw() - min.1.raw()),
                    balancing: status
                        .map(|s| {
                            let mask = s.balance.cells_pdf();
                            (0..16).filter(|b| mask & (1 << b) != 0).map(|b| b + 1).collect()
                        })
                        .unwrap_or_default(),
                    temps_dc: analog
                        .map(|a| a.temps.iter().map(|t| t.to_deci_celsius()).collect())
                        .unwrap_or_default(),
                    current_ma: analog.map(|a| i32::from(a.current.raw()) * 10),
                    voltage_mv: analog.map(|a| a.voltage.raw()),
                    soc_pct: analog.and_then(|a| a.soc()).map(|p| p.raw()),
                    remaining_mah: analog.map(|a| mah(a.remaining)),
                    full_mah: analog.map(|a| mah(a.full)),
                    design_mah: analog.map(|a| mah(a.design)),
                    cycles: analog.map(|a| a.cycles),
                    flags,
                    pack_ov_alarm_mv: r.limits.pack_ov_alarm.map(|v| v.raw()),
                    pack_uv_alarm_mv: r.limits.pack_uv_alarm.map(|v| v.raw()),
                    charge_alarm_a: r.limits.charge_oc_alarm_a,
                    discharge_alarm_a: r.limits.discharge_oc_alarm_a,
                    can_charge,
                    can_discharge,
                    share_charge_ma: snapshot.packs.get(k).map(|p| p.share_ma.0),
                    share_discharge_ma: snapshot.packs.get(k).map(|p| p.share_ma.1),
                    serial: r.serial.as_ref().map(|t| t.trimmed().into_owned()),
                    firmware: r.version.as_ref().map(|t| t.trimmed().into_owned()),
                    last_error: r.last_error.clone(),
                    poll_cycle_ms: r.cycle.map(|c| (c.took.as_secs_f64() * 1e5).round() / 100.0),
                    energy_charged_kwh: kwh(energy.packs.get(k).map_or(0.0, |e| e.charged_wh)),
                    energy_discharged_kwh: kwh(energy.packs.get(k).map_or(0.0, |e| e.discharged_wh)),
                    link_stats: r.link.into(),
                }
            })
            .collect();
        let coil = {
            let c = published.coil.clone();
            let settings = published.coil_settings;
            let reading = c.reading.map(|(r, _)| r);
            let age_ms = c.reading.map(|(_, t)| age(t));
            let configured = config.coil.is_some();
            Coil {
                configured,
                age_ms,
                stale: configured && age_ms.is_none_or(|a| a > stale_ms),
                soc_pct: reading.map(|r| r.soc_pct),
                voltage_mv: reading.map(|r| r.voltage_mv()),
                current_ma: reading.map(|r| r.current_ma()),
                power_w: reading.map(|r| r.power_mw() as f64 / 1000.0),
                remaining_mah: reading.map(|r| r.remaining_mah),
                temperature_dc: reading.map(|r| i32::from(r.temperature_c) * 10),
                state: reading.map(|r| r.state.name()),
                capacity_mah: settings.map(|s| s.capacity_mah),
                full_voltage_mv: settings.map(|s| u32::from(s.full_voltage_cv) * 10),
                last_error: c.last_error,
                link_stats: c.link.into(),
            }
        };
        let inverter = {
            let i = published.inverter.clone();
            let configured = config.inverter.is_some();
            let age_ms = i.live.map(|(_, t)| age(t));
            let reg = |address: u16| -> Option<u16> {
                let (regs, _) = i.live?;
                regs.get(usize::from(address.checked_sub(INVERTER_LIVE_FIRST)?)).copied()
            };
            let signed = |address: u16| reg(address).map(|v| i32::from(v as i16));
            let working_mode = vevor_modbus::item("working_mode").ok().and_then(|item| {
                let v = reg(item.address)?;
                Some(vevor_modbus::decode(item, &[v]).display(item))
            });
            Inverter {
                configured,
                age_ms,
                stale: configured && age_ms.is_none_or(|a| a > stale_ms),
                working_mode,
                pv_power_w: signed(223),
                load_power_w: signed(213),
                grid_power_w: signed(204),
                battery_power_w: signed(217),
                battery_voltage_mv: signed(215).map(|v| v * 100),
                battery_soc_pct: signed(229),
                output_priority: i.output_priority,
                output_priority_name: i.output_priority.and_then(output_priority_name),
                charging_priority: i.charging_priority,
                charging_priority_name: i.charging_priority.and_then(charging_priority_name),
                last_error: i.last_error,
                link_stats: i.link.into(),
            }
        };
        let rebalance = {
            let r = &published.rebalance;
            let every_s = (config.rebalance.every_days * 86400.0) as u64;
            let progress = match r.step {
                Step::Idle if r.needed => "needed: a cell fell below the under-voltage threshold".to_owned(),
                Step::Idle => "idle".to_owned(),
                Step::Running if r.threshold_hit => format!(
                    "threshold hit; waiting for the coil current below {} A, balancing to end and every pack's cells within {} mV (at most {} h at the top)",
                    config.rebalance.tail_current_a,
                    config.rebalance.balanced_delta_mv,
                    config.rebalance.hold_max_s as f64 / 3600.0
                ),
                Step::Completing => format!(
                    "completing: charging stopped; the locked packs join the bus one at a time, each within {} mV of it (at most {} s)",
                    config.safety.join_delta_mv, config.safety.join_wait_max_s
                ),
                Step::Running => format!(
                    "charging to {:.2} V; waiting for the coil voltage above {:.2} V",
                    f64::from(config.rebalance.charge_voltage_mv) / 1000.0,
                    f64::from(config.rebalance.threshold_mv) / 1000.0
                ),
                Step::Settling => format!(
                    "settling: charging blocked until the coil's remaining capacity falls to {} Ah (at most {} h)",
                    config.rebalance.regular_capacity_mah / 1000,
                    config.rebalance.settle_max_s as f64 / 3600.0
                ),
            };
            Rebalance {
                step: r.step,
                needed: r.needed,
                threshold_hit: r.threshold_hit,
                last_completed: r.last_completed_s.and_then(rfc3339),
                next_due: r.last_completed_s.and_then(|t| rfc3339(t + every_s)),
                soc_uncalibrated: r.soc_uncalibrated,
                progress,
                imbalance: r.imbalance.map(|i| ImbalanceStatus {
                    pack: i.pack,
                    cell: i.cell,
                    since: rfc3339(i.at_s),
                }),
            }
        };
        let overrides = {
            // One lock at a time: never hold one mutex while taking another.
            let o = published.overrides.clone();
            let (forced, active) =
                (published.rebalance.forced_charging_priority, published.rebalance.active());
            Overrides {
                forced_disable: o.forced_disable,
                charge_voltage_mv: o.charge_voltage_mv,
                charge_voltage_suspended: o.charge_voltage_mv.is_some() && active,
                charging_priority: forced,
            }
        };
        let pylon = config.pylon.as_ref().map(|p| {
            let r = *lock(&self.replies);
            Pylon {
                link: p.link.clone(),
                profile: p.profile.name(),
                replies: r.replies,
                unanswered: r.unanswered,
                latency_mean_us: r.latency_sum_us.checked_div(r.replies),
                latency_sum_us: r.latency_sum_us,
                latency_max_us: r.latency_max_us,
                latency_buckets: LATENCY_BUCKETS_US
                    .iter()
                    .map(|&b| Some(b))
                    .chain([None])
                    .zip(r.latency_buckets)
                    .collect(),
                link_stats: (*lock(&self.pylon_link)).into(),
            }
        });
        let stack = snapshot.view.map(|v| {
            let temp = |t: Option<translator::TempStats>, max: bool| {
                t.map(|t| if max { t.max.0 } else { t.min.0 }.to_deci_celsius())
            };
            Stack {
                voltage_mv: v.voltage.raw(),
                current_ma: v.current_ma,
                power_w: i64::from(v.voltage.raw()) * i64::from(v.current_ma) / 1_000_000,
                soc_pct: v.soc.raw(),
                cell_min_mv: v.cell_min.0.raw(),
                cell_min_id: v.cell_min.1,
                cell_max_mv: v.cell_max.0.raw(),
                cell_max_id: v.cell_max.1,
                cell_temp_max_dc: temp(v.cell_temp, true),
                cell_temp_min_dc: temp(v.cell_temp, false),
                charge_voltage_mv: v.charge_voltage_limit.raw(),
                discharge_voltage_mv: v.discharge_voltage_limit.map(|m| m.raw()),
                charge_current_ma: v.max_charge_ma,
                discharge_current_ma: v.max_discharge_ma.map(i32::abs),
                cycles: v.cycles_avg,
                soh_pct: v.soh_avg.raw(),
                packs_reporting: v.packs_reporting,
            }
        });
        let data_stale = packs.iter().any(|p| p.stale) || coil.stale || inverter.stale;
        Status {
            version: env!("CARGO_PKG_VERSION"),
            time: jiff::Timestamp::now().round(jiff::Unit::Second).map(|t| t.to_string()).unwrap_or_default(),
            uptime_s: jiff::Timestamp::now().duration_since(self.started).as_secs().max(0) as u64,
            charge_enabled: decision.as_ref().is_some_and(|d| d.charge),
            discharge_enabled: decision.as_ref().is_some_and(|d| d.discharge),
            decision_age_ms: decision.as_ref().map(|d| age(d.at)),
            data_stale,
            reasons,
            stack,
            limits,
            packs,
            coil,
            inverter,
            rebalance,
            overrides,
            pylon,
            can,
            energy: Energy {
                charged_kwh: kwh(energy.stack.charged_wh),
                discharged_kwh: kwh(energy.stack.discharged_wh),
                source: energy_source,
            },
        }
    }

    /// The most recent `limit` events, newest last.
    pub fn recent_events(&self, limit: usize) -> Vec<crate::state::EventLine> {
        let e = lock(&self.events);
        e.iter().skip(e.len().saturating_sub(limit)).cloned().collect()
    }
}

fn output_priority_name(v: u16) -> Option<&'static str> {
    vevor_modbus::map::OUTPUT_PRIORITIES.iter().find(|(k, _)| *k == v).map(|(_, name)| *name)
}
