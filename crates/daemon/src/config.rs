//! The configuration file: TOML, every key known, defaults from SAFETY.md.

use serde::{Deserialize, Serialize};

pub mod bounds;

/// The whole file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The inverter-facing Pylontech RS485 side, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pylon: Option<Pylon>,
    /// The inverter-facing Pylontech CAN side, if any (beside or instead of `[pylon]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub can: Option<Can>,
    /// The packs, pack 1 first.
    #[serde(rename = "pack")]
    pub packs: Vec<Pack>,
    /// The coulomb counter, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coil: Option<ModbusDevice>,
    /// The inverter's Modbus port, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inverter: Option<ModbusDevice>,
    /// Fail-safe thresholds.
    #[serde(default)]
    pub safety: Safety,
    /// Poll timing.
    #[serde(default)]
    pub poll: Poll,
    /// The state file and the event log.
    #[serde(default)]
    pub state: State,
    /// The rebalance procedure.
    #[serde(default)]
    pub rebalance: Rebalance,
    /// Cheap-tariff windows.
    #[serde(default)]
    pub tariff: Tariff,
    /// The web UI, the JSON API and the metrics.
    #[serde(default)]
    pub http: Http,
    /// MQTT with Home Assistant discovery (off unless `url` is set).
    #[serde(default)]
    pub mqtt: Mqtt,
}

/// `[http]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Serve the web UI and the API.
    pub enabled: bool,
    /// Address and port to listen on; `127.0.0.1` keeps it on this machine.
    pub listen: String,
    /// The bearer token `POST /api/v1/control` needs; without one (here, in `token_file` or in
    /// `PACE2PYLON_HTTP_TOKEN`) control is refused.
    pub token: Option<String>,
    /// A file holding the token (first line), kept out of the configuration.
    pub token_file: Option<String>,
}

impl Default for Http {
    fn default() -> Self {
        Self { enabled: true, listen: "127.0.0.1:8080".into(), token: None, token_file: None }
    }
}

/// `[mqtt]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mqtt {
    /// The broker, `mqtt://host[:port]` (port 1883 by default); no URL, no MQTT.
    pub url: Option<String>,
    /// User name.
    pub username: Option<String>,
    /// Password (or `password_file`, or `PACE2PYLON_MQTT_PASSWORD`).
    pub password: Option<String>,
    /// A file holding the password (first line).
    pub password_file: Option<String>,
    /// MQTT client id.
    pub client_id: String,
    /// Home Assistant's discovery prefix.
    pub discovery_prefix: String,
    /// Prefix of our state, availability and command topics.
    pub topic_prefix: String,
    /// Offer a force-disable switch and rebalance buttons in Home Assistant.
    pub allow_control: bool,
    /// State is published on change and at least this often, seconds.
    pub state_every_s: f64,
}

impl Default for Mqtt {
    fn default() -> Self {
        Self {
            url: None,
            username: None,
            password: None,
            password_file: None,
            client_id: "pace2pylon".into(),
            discovery_prefix: "homeassistant".into(),
            topic_prefix: "pace2pylon".into(),
            allow_control: false,
            state_every_s: 30.0,
        }
    }
}

/// A broker address from `mqtt://host[:port]`.
///
/// # Errors
/// A message saying what is wrong with the URL.
pub fn parse_mqtt_url(url: &str) -> Result<(String, u16), String> {
    let rest = url
        .strip_prefix("mqtt://")
        .ok_or_else(|| format!("'{url}' is not mqtt://host[:port] (TLS brokers are not supported)"))?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| format!("'{url}': '{p}' is not a port number"))?),
        None => (rest, 1883),
    };
    if host.is_empty() || host.contains('/') || port == 0 {
        return Err(format!("'{url}' is not mqtt://host[:port]"));
    }
    Ok((host.trim_start_matches('[').trim_end_matches(']').to_owned(), port))
}

/// A secret given inline, in a file (first line) or in an environment variable, in that order.
///
/// # Errors
/// The file cannot be read or is empty.
pub fn secret(inline: Option<&str>, file: Option<&str>, env: &str) -> Result<Option<String>, String> {
    if let Some(s) = inline {
        return Ok(Some(s.to_owned()));
    }
    if let Some(f) = file {
        let text = crate::file::read_text_bounded(std::path::Path::new(f), crate::file::SECRET_MAX_BYTES)
            .map_err(|e| format!("{f}: {e}"))?;
        let first = text.lines().next().unwrap_or("").trim();
        if first.is_empty() {
            return Err(format!("{f} is empty"));
        }
        return Ok(Some(first.to_owned()));
    }
    Ok(std::env::var(env).ok().filter(|v| !v.is_empty()))
}

/// `[rebalance]` (SAFETY.md §4 defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rebalance {
    /// A rebalance is due this many days after the last one.
    pub every_days: f64,
    /// Coil capacity during a rebalance, mAh.
    pub capacity_mah: u32,
    /// Coil capacity normally, mAh.
    pub regular_capacity_mah: u32,
    /// Charge voltage limit and coil full voltage during a rebalance, mV.
    pub charge_voltage_mv: u16,
    /// Coil voltage that marks "threshold hit", mV.
    pub threshold_mv: u32,
    /// Completion needs the coil current below this, A.
    pub tail_current_a: f64,
    /// Top hold: completion needs every pack's cell spread at or below this, mV.
    pub balanced_delta_mv: u16,
    /// ... unless this long has passed since the threshold was hit, seconds.
    pub hold_max_s: u64,
    /// During the top hold, charge at most this per pack that can take charge, A (SAFETY.md §2b).
    pub hold_charge_a: f64,
    /// The v2 key, replaced by `safety.join_wait_max_s`: refused with a message saying so.
    #[serde(skip_serializing)]
    pub unlock_grace_s: Option<u64>,
    /// Settling ends after this long at the latest, seconds.
    pub settle_max_s: u64,
    /// A rule-14 trigger this soon after the last completion raises `pack_imbalance` instead of
    /// starting another rebalance, seconds.
    pub retrigger_min_s: u64,
}

impl Default for Rebalance {
    fn default() -> Self {
        Self {
            every_days: 14.0,
            capacity_mah: 240_000,
            regular_capacity_mah: 205_000,
            charge_voltage_mv: 27950,
            threshold_mv: 27_800,
            tail_current_a: 5.0,
            balanced_delta_mv: 40,
            hold_max_s: 4 * 3600,
            hold_charge_a: 2.0,
            unlock_grace_s: None,
            settle_max_s: 36 * 3600,
            retrigger_min_s: 3 * 86400,
        }
    }
}

/// `[tariff]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tariff {
    /// IANA time zone of the windows (e.g. `Europe/Warsaw`).
    pub time_zone: String,
    /// Cheap windows, `HH:MM-HH:MM` local time.
    pub cheap_windows: Vec<String>,
}

impl Default for Tariff {
    fn default() -> Self {
        Self {
            time_zone: "UTC".into(),
            cheap_windows: vec!["00:00-06:00".into(), "13:00-15:00".into(), "22:00-24:00".into()],
        }
    }
}

/// Parses `HH:MM-HH:MM` into minutes after midnight, `[start, end)`.
pub fn parse_window(w: &str) -> Result<(u16, u16), String> {
    let minutes = |t: &str| -> Option<u16> {
        let (h, m) = t.trim().split_once(':')?;
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
    };
    let (a, b) = w.split_once('-').ok_or_else(|| format!("'{w}' is not HH:MM-HH:MM"))?;
    match (minutes(a), minutes(b)) {
        (Some(a), Some(b)) if a < b => Ok((a, b)),
        _ => Err(format!("'{w}' is not HH:MM-HH:MM with the start before the end")),
    }
}

/// `[state]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct State {
    /// Rebalance state and operator overrides (JSON, mode 0600, written atomically).
    pub state_file: String,
    /// The event log (JSON lines, mode 0600).
    pub event_log: String,
    /// Rotate the event log past this size, bytes.
    pub event_log_max_bytes: u64,
    /// Rotated event logs kept.
    pub event_log_keep: u32,
    /// The last 48 hours in one-minute samples (JSON lines, mode 0600); by default
    /// `history.jsonl` beside the state file.
    pub history_file: Option<String>,
    /// The energy meters are written to the state file this often (and at a clean stop); the
    /// status shows what was written, so a crash loses at most this much of their growth.
    pub energy_save_s: f64,
}

impl Default for State {
    fn default() -> Self {
        Self {
            state_file: "/var/lib/pace2pylon/state.json".into(),
            event_log: "/var/lib/pace2pylon/events.jsonl".into(),
            event_log_max_bytes: 1 << 20,
            event_log_keep: 3,
            energy_save_s: 60.0,
            history_file: None,
        }
    }
}

impl State {
    /// Where the history is kept: `history_file`, or `history.jsonl` beside the state file.
    pub fn history_path(&self) -> std::path::PathBuf {
        match &self.history_file {
            Some(f) => f.into(),
            None => std::path::Path::new(&self.state_file).with_file_name("history.jsonl"),
        }
    }
}

/// `[pylon]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pylon {
    /// The line to the inverter's BMS port.
    pub link: String,
    /// The inverter family whose dialect sets the defaults of the options below: `vevor`
    /// (default), `voltronic`, `srne`, `deye` or `generic`.
    #[serde(default)]
    pub profile: PylonProfile,
    /// The master's address.
    #[serde(default = "default_address")]
    pub address: u8,
    /// The VER of replies: a hex byte (`"20"`, `"28"`) or `"echo"` (the request's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_ver: Option<String>,
    /// The ADR of replies: `echo` (the request's) or `master`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_adr: Option<ReplyAdr>,
    /// Answer system commands at any address (SRNE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any_address: Option<bool>,
    /// Answer 0x4F and 0x51 sent to ADR 0 (python-pylontech).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info_at_adr0: Option<bool>,
    /// Unit of the 0x61 current: `centi_amp` (10 mA) or `deci_amp` (0.1 A).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_current_unit: Option<CurrentUnit>,
    /// Unit of the 0x63 current limits: `deci_amp` or `centi_amp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management_current_unit: Option<CurrentUnit>,
    /// Send the 0x63/0x92 discharge limit positive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positive_discharge_limit: Option<bool>,
    /// 0x42 and 0x92 at the master's own address describe the whole stack (Voltronic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_at_master: Option<bool>,
    /// Add the trailing byte after 0x44 Status5, as real units do.
    #[serde(default)]
    pub alarm_trailing_byte: bool,
    /// `disable` (default) or `silent`.
    #[serde(default)]
    pub on_comm_loss: CommLoss,
    /// 0x51/0x60 device name.
    #[serde(default = "default_name")]
    pub device_name: String,
    /// 0x51/0x60 manufacturer.
    #[serde(default = "default_name")]
    pub manufacturer: String,
}

/// `pylon.profile`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PylonProfile {
    /// Vevor EML3500 (0x61/0x63 at ADR 2).
    #[default]
    Vevor,
    /// Voltronic / MPP Solar "PYL" mode (0x4F, 0x42, 0x92).
    Voltronic,
    /// SRNE and rebrands.
    Srne,
    /// Deye / Sunsynk "Lithium 12".
    Deye,
    /// Any other master (python-pylontech).
    Generic,
}

impl PylonProfile {
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
}

/// `pylon.reply_adr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyAdr {
    /// The request's ADR.
    Echo,
    /// The master's address.
    Master,
}

/// A `pylon.reply_ver` value: `Some(ver)` for a hex byte, `None` for `echo`.
///
/// # Errors
/// What the value should look like.
pub fn parse_reply_ver(text: &str) -> Result<Option<u8>, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("echo") {
        return Ok(None);
    }
    let digits = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
    match u8::from_str_radix(digits, 16) {
        Ok(v) if !digits.is_empty() && digits.len() <= 2 => Ok(Some(v)),
        _ => Err(format!("'{text}' is not a hex byte (\"20\", \"28\") or \"echo\"")),
    }
}

fn default_address() -> u8 {
    2
}
fn default_name() -> String {
    "pace2pylon".into()
}

/// `[can]`: Pylontech-style CAN toward an inverter or a monitor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Can {
    /// The bus: `slcan:///dev/ttyACM0`, `slcan+tcp://host:port` or `socketcan://can0`.
    pub link: String,
    /// Which frames, in which layout: `pylon` (default), `lux`, `sma`, `solark` or `victron`.
    #[serde(default)]
    pub profile: CanProfile,
    /// Every frame is sent once per this period, s.
    #[serde(default = "default_can_period")]
    pub period_s: f64,
    /// Spread the frames over the period instead of sending them in one burst.
    #[serde(default)]
    pub spread: bool,
    /// Without the inverter's 0x305 heartbeat for this long, the status shows an alarm, s.
    #[serde(default = "default_peer_timeout")]
    pub peer_timeout_s: f64,
    /// A missing heartbeat is also a reason to disable charging and discharging (off by
    /// default: a monitor, or an inverter that sends no 0x305, would otherwise lock the stack).
    #[serde(default)]
    pub peer_timeout_disables: bool,
    /// The 0x35E manufacturer name (inverters match on it; 8 characters at most).
    #[serde(default = "default_can_manufacturer")]
    pub manufacturer: String,
    /// `disable` (default: send both off) or `silent` (send nothing, so the inverter falls back to
    /// its own settings) while data is lost or the safety loop stalls.
    #[serde(default)]
    pub on_comm_loss: CommLoss,
}

fn default_can_period() -> f64 {
    1.0
}
fn default_peer_timeout() -> f64 {
    10.0
}
fn default_can_manufacturer() -> String {
    "PYLON".into()
}

impl Can {
    fn check(&self) -> Result<(), (String, String)> {
        for (key, v) in [("can.period_s", self.period_s), ("can.peer_timeout_s", self.peer_timeout_s)] {
            bounds::check(key, v).map_err(|e| (key.to_owned(), e))?;
        }
        if self.peer_timeout_s <= self.period_s {
            return Err(("can.peer_timeout_s".into(), "must be longer than can.period_s".into()));
        }
        if self.manufacturer.len() > 8 || !self.manufacturer.is_ascii() {
            return Err((
                "can.manufacturer".into(),
                format!("'{}' must be at most 8 ASCII characters", self.manufacturer),
            ));
        }
        Ok(())
    }
}

/// `can.profile`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CanProfile {
    /// Pylontech LV CAN V1.2 (Deye, Sunsynk, Growatt, Solis, GoodWe …).
    #[default]
    Pylon,
    /// EG4 / Luxpower.
    Lux,
    /// SMA Sunny Island.
    Sma,
    /// Sol-Ark.
    Solark,
    /// Victron (GX devices).
    Victron,
}

/// The 0x61 current unit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CurrentUnit {
    /// 10 mA.
    #[default]
    CentiAmp,
    /// 0.1 A.
    DeciAmp,
}

/// The comm-loss policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommLoss {
    /// Disabled replies.
    #[default]
    Disable,
    /// No replies.
    Silent,
}

/// `[[pack]]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pack {
    /// Its line.
    pub link: String,
    /// Its DIP-switch address.
    #[serde(default)]
    pub adr: u8,
}

/// `[coil]` and `[inverter]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusDevice {
    /// Its line.
    pub link: String,
    /// Its Modbus address.
    #[serde(default = "default_slave")]
    pub slave: u8,
}

fn default_slave() -> u8 {
    1
}

/// `[safety]`: SAFETY.md's thresholds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Safety {
    /// Rules 2-3, seconds.
    pub stale_after_s: f64,
    /// Rule 10, seconds.
    pub decision_max_age_s: f64,
    /// Rule 7, seconds.
    pub overcurrent_for_s: f64,
    /// Rule 11, mV.
    pub cell_ov_mv: u16,
    /// Rule 11 release, mV.
    pub cell_ov_release_mv: u16,
    /// Rule 14, mV.
    pub cell_uv_mv: u16,
    /// Rule 14 release, mV.
    pub cell_uv_release_mv: u16,
    /// Rule 8 cell, °C.
    pub cell_ot_c: f64,
    /// Rule 12, °C.
    pub cell_cold_charge_c: f64,
    /// Rule 9, °C.
    pub cell_cold_discharge_c: f64,
    /// The regular charge voltage limit, mV.
    pub charge_voltage_mv: u16,
    /// §2a: the base limit is this share of `n × a_min`.
    pub current_derating: f64,
    /// §2a: a rising limit moves up by at most this share of the base limit per second.
    pub limit_rise_per_s: f64,
    /// §2a: a pack above this share of its own alarm cuts the limit.
    pub pack_current_guard: f64,
    /// §2a: while a BMS under-voltage protection holds, charge at most this per pack, A.
    pub recovery_charge_a: f64,
    /// §2b: a pack's MOSFET is switched on only within this of the bus, mV.
    pub join_delta_mv: u16,
    /// §2b: the next pack joins after the last one's current stayed below half its alarm this
    /// long, seconds.
    pub join_settle_s: f64,
    /// §2b: a pack too far from the bus blocks the direction that widens the gap at most this
    /// long, seconds; then it is left out and joins when the gap closes.
    pub join_wait_max_s: u64,
    /// §2a: the taper tables.
    pub taper: TaperTables,
}

/// `[safety.taper]`: piecewise linear `[x, factor]` points, `x` rising (SAFETY.md §2a defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaperTables {
    /// Charge by the highest cell voltage: `[mV, factor]`.
    pub charge_cell_mv: Vec<TaperPoint>,
    /// Charge by the lowest cell temperature: `[°C, factor]`.
    pub charge_temp_c: Vec<TaperPoint>,
    /// Discharge by the lowest cell voltage: `[mV, factor]`.
    pub discharge_cell_mv: Vec<TaperPoint>,
    /// Discharge by the lowest cell temperature: `[°C, factor]`.
    pub discharge_temp_c: Vec<TaperPoint>,
}

/// One `[x, factor]` row of a taper table: exactly two numbers (a row with a third is refused,
/// never cut).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(into = "[f64; 2]")]
pub struct TaperPoint(pub [f64; 2]);

impl From<TaperPoint> for [f64; 2] {
    fn from(p: TaperPoint) -> Self {
        p.0
    }
}

impl<'de> Deserialize<'de> for TaperPoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let row = Vec::<f64>::deserialize(d)?;
        match row[..] {
            [x, factor] => Ok(Self([x, factor])),
            _ => Err(serde::de::Error::custom(format!(
                "a taper row is [x, factor]: two numbers, not {}",
                row.len()
            ))),
        }
    }
}

impl Default for TaperTables {
    fn default() -> Self {
        let d = translator::limits::LimitSettings::default();
        let points =
            |t: &translator::limits::Taper| t.points().iter().map(|&(x, f)| TaperPoint([x, f])).collect();
        Self {
            charge_cell_mv: points(&d.charge_by_cell_mv),
            charge_temp_c: points(&d.charge_by_temp_c),
            discharge_cell_mv: points(&d.discharge_by_cell_mv),
            discharge_temp_c: points(&d.discharge_by_temp_c),
        }
    }
}

impl Safety {
    /// The §2a settings these keys make.
    ///
    /// # Errors
    /// The key of a bad taper table and what is wrong with it.
    pub fn limit_settings(
        &self,
        hold_charge_a: f64,
    ) -> Result<translator::limits::LimitSettings, (String, String)> {
        use translator::limits::Taper;
        let table = |key: &str, points: &[TaperPoint]| {
            Taper::new(points.iter().map(|TaperPoint([x, f])| (*x, *f)).collect())
                .map_err(|e| (format!("safety.taper.{key}"), e))
        };
        let t = &self.taper;
        Ok(translator::limits::LimitSettings {
            current_derating: self.current_derating,
            charge_by_cell_mv: table("charge_cell_mv", &t.charge_cell_mv)?,
            charge_by_temp_c: table("charge_temp_c", &t.charge_temp_c)?,
            discharge_by_cell_mv: table("discharge_cell_mv", &t.discharge_cell_mv)?,
            discharge_by_temp_c: table("discharge_temp_c", &t.discharge_temp_c)?,
            limit_rise_per_s: self.limit_rise_per_s,
            pack_current_guard: self.pack_current_guard,
            recovery_charge_a: self.recovery_charge_a,
            hold_charge_a,
        })
    }
}

impl Default for Safety {
    fn default() -> Self {
        Self {
            stale_after_s: 5.0,
            decision_max_age_s: 3.0,
            overcurrent_for_s: 2.0,
            cell_ov_mv: 3630,
            cell_ov_release_mv: 3400,
            cell_uv_mv: 2850,
            cell_uv_release_mv: 3100,
            cell_ot_c: 50.0,
            cell_cold_charge_c: 2.0,
            cell_cold_discharge_c: -15.0,
            charge_voltage_mv: 27350,
            current_derating: 0.8,
            limit_rise_per_s: 0.10,
            pack_current_guard: 0.9,
            recovery_charge_a: 2.0,
            join_delta_mv: 100,
            join_settle_s: 5.0,
            join_wait_max_s: 15 * 60,
            taper: TaperTables::default(),
        }
    }
}

/// `[poll]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Poll {
    /// 0x42 + 0x44 every this many seconds.
    pub period_s: f64,
    /// Reply timeout, seconds.
    pub timeout_s: f64,
    /// Limit reads every this many seconds.
    pub limits_every_s: f64,
}

impl Default for Poll {
    fn default() -> Self {
        Self { period_s: 1.0, timeout_s: 0.5, limits_every_s: 600.0 }
    }
}

/// A configuration error, naming the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// TOML syntax or a key's type/value (toml names the key and the line).
    #[error("{file}: {message}")]
    Toml {
        /// The file.
        file: String,
        /// toml's message.
        message: String,
    },
    /// A value out of its range.
    #[error("{file}: {key}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// The address a listening link (`tcp-listen://`, `slcan+tcp-listen://`) binds.
fn listen_addr(url: &str) -> Option<std::net::SocketAddr> {
    let endpoint = match link::CanEndpoint::parse(url) {
        Ok(link::CanEndpoint::Slcan { line, .. }) => line,
        _ => link::Endpoint::parse(url).ok()?,
    };
    match endpoint {
        link::Endpoint::TcpListen { addr } => addr.parse().ok(),
        _ => None,
    }
}

/// Whether two listening addresses take the same port (an unspecified address takes every one).
fn same_port(a: Option<std::net::SocketAddr>, b: Option<std::net::SocketAddr>) -> bool {
    let (Some(a), Some(b)) = (a, b) else { return false };
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Words that mark a line as holding a secret.
const SECRET_WORDS: [&str; 3] = ["token", "password", "secret"];

/// toml's message, unless the line it points at holds a secret: then the line and anything of
/// its value are left out, and the message says so.
fn toml_message(text: &str, e: &toml::de::Error) -> String {
    let full = e.to_string().trim_end().to_owned();
    let Some(span) = e.span() else { return full };
    let start = span.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |k| k + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |k| start + k);
    let line = &text[line_start..line_end];
    let lower = line.to_ascii_lowercase();
    if !SECRET_WORDS.iter().any(|w| lower.contains(w)) {
        return full;
    }
    let number = text[..line_start].matches('\n').count() + 1;
    let value = line.split_once('=').map_or("", |(_, v)| v.trim().trim_matches(['"', '\'']));
    let message = e.message().trim_end();
    let message = if value.len() >= 3 && (message.contains(value) || value.contains(message)) {
        "the value is not valid here"
    } else {
        message
    };
    let key = line.split_once('=').map_or("", |(k, _)| k.trim());
    format!(
        "TOML parse error at line {number} ({key}): {message}; the line is not shown because it holds a secret"
    )
}

impl Config {
    /// Parses and checks `text` read from `file`.
    ///
    /// # Errors
    /// [`Error`] naming the key and the problem.
    pub fn parse(text: &str, file: &str) -> Result<Self, Error> {
        let config: Config = toml::from_str(text)
            .map_err(|e| Error::Toml { file: file.into(), message: toml_message(text, &e) })?;
        config.check(file)?;
        Ok(config)
    }

    fn check(&self, file: &str) -> Result<(), Error> {
        let bad =
            |key: &str, message: String| Err(Error::Invalid { file: file.into(), key: key.into(), message });
        if self.packs.is_empty() {
            return bad("pack", "at least one [[pack]] is needed".into());
        }
        if self.rebalance.unlock_grace_s.is_some() {
            return bad(
                "rebalance.unlock_grace_s",
                "this key is gone: packs now join the bus one at a time, each only within \
                 safety.join_delta_mv of it, and the completion waits for them at most \
                 safety.join_wait_max_s (900 s by default); remove the line"
                    .into(),
            );
        }
        if self.pylon.is_none() && self.can.is_none() {
            return bad(
                "pylon",
                "nothing faces the inverter; add [pylon] (RS485) or [can] (CAN), or both".into(),
            );
        }
        if let Some(ver) = self.pylon.as_ref().and_then(|p| p.reply_ver.as_deref()) {
            if let Err(e) = parse_reply_ver(ver) {
                return bad("pylon.reply_ver", e);
            }
        }
        let mut links: Vec<(String, &String)> =
            self.pylon.iter().map(|p| ("pylon.link".to_owned(), &p.link)).collect();
        links.extend(self.packs.iter().enumerate().map(|(k, p)| (format!("pack[{}].link", k + 1), &p.link)));
        if let Some(c) = &self.coil {
            links.push(("coil.link".into(), &c.link));
        }
        if let Some(i) = &self.inverter {
            links.push(("inverter.link".into(), &i.link));
        }
        for (key, url) in &links {
            if let Err(e) = link::Endpoint::parse(url) {
                return bad(key, e.to_string());
            }
        }
        if let Some(can) = &self.can {
            // Opening is lazy: this checks the URL, and that this build has its transport.
            if let Err(e) = link::CanBus::open(&can.link) {
                return bad("can.link", e.to_string());
            }
            if let Err((key, message)) = can.check() {
                return bad(&key, message);
            }
            links.push(("can.link".into(), &can.link));
        }
        for (k, (key, url)) in links.iter().enumerate() {
            if let Some((other, _)) = links[..k].iter().find(|(_, u)| u == url) {
                return bad(
                    key,
                    format!("{url} is already used by {other}; every device needs its own line"),
                );
            }
            // Two listening links on one port: the second could never be bound.
            let port = listen_addr(url);
            if let Some((other, _)) = links[..k].iter().find(|(_, u)| same_port(port, listen_addr(u))) {
                return bad(
                    key,
                    format!("{url} listens on the port {other} listens on; give each its own port"),
                );
            }
        }
        for (key, v) in self.numbers() {
            if let Err(e) = bounds::check(&key, v) {
                return bad(&key, e);
            }
        }
        for (k, pack) in self.packs.iter().enumerate() {
            if let Err(e) = bounds::check("pack.adr", f64::from(pack.adr)) {
                return bad(&format!("pack[{}].adr", k + 1), e);
            }
        }
        if let Err((key, message)) = self.orderings() {
            return bad(key, message);
        }
        if let Err((key, message)) = self.safety.limit_settings(self.rebalance.hold_charge_a) {
            return bad(&key, message);
        }
        if let Err((key, message)) = self.taper_inside_thresholds() {
            return bad(&key, message);
        }
        for (k, w) in self.tariff.cheap_windows.iter().enumerate() {
            if let Err(e) = parse_window(w) {
                return bad(&format!("tariff.cheap_windows[{}]", k + 1), e);
            }
        }
        if jiff::tz::TimeZone::get(&self.tariff.time_zone).is_err() {
            return bad(
                "tariff.time_zone",
                format!("'{}' is not a known time zone (e.g. Europe/Warsaw, UTC)", self.tariff.time_zone),
            );
        }
        if self.http.enabled && self.http.listen.parse::<std::net::SocketAddr>().is_err() {
            return bad("http.listen", format!("'{}' is not an address:port", self.http.listen));
        }
        if self.http.token.as_deref().is_some_and(|t| t.trim() == "<hidden>") {
            return bad(
                "http.token",
                "'<hidden>' is the placeholder of a copied configuration, not a token".into(),
            );
        }
        if self.http.token.as_deref().is_some_and(|t| t.len() < 8) {
            return bad("http.token", "must be at least 8 characters".into());
        }
        let m = &self.mqtt;
        if let Some(url) = &m.url {
            if let Err(e) = parse_mqtt_url(url) {
                return bad("mqtt.url", e);
            }
        }
        for (key, v) in [
            ("mqtt.client_id", &m.client_id),
            ("mqtt.discovery_prefix", &m.discovery_prefix),
            ("mqtt.topic_prefix", &m.topic_prefix),
        ] {
            if v.is_empty() || v.contains(['#', '+', ' ']) {
                return bad(key, format!("'{v}' must be non-empty, without spaces, '#' or '+'"));
            }
        }
        Ok(())
    }

    /// Every numeric key with its value, as [`bounds::BOUNDS`] names them (a pack's keys once per
    /// pack, as `pack[N].adr`).
    fn numbers(&self) -> Vec<(String, f64)> {
        let (s, p, st, r) = (&self.safety, &self.poll, &self.state, &self.rebalance);
        let mut n: Vec<(String, f64)> = [
            ("safety.stale_after_s", s.stale_after_s),
            ("safety.decision_max_age_s", s.decision_max_age_s),
            ("safety.overcurrent_for_s", s.overcurrent_for_s),
            ("safety.cell_ov_mv", f64::from(s.cell_ov_mv)),
            ("safety.cell_ov_release_mv", f64::from(s.cell_ov_release_mv)),
            ("safety.cell_uv_mv", f64::from(s.cell_uv_mv)),
            ("safety.cell_uv_release_mv", f64::from(s.cell_uv_release_mv)),
            ("safety.cell_ot_c", s.cell_ot_c),
            ("safety.cell_cold_charge_c", s.cell_cold_charge_c),
            ("safety.cell_cold_discharge_c", s.cell_cold_discharge_c),
            ("safety.charge_voltage_mv", f64::from(s.charge_voltage_mv)),
            ("safety.current_derating", s.current_derating),
            ("safety.limit_rise_per_s", s.limit_rise_per_s),
            ("safety.pack_current_guard", s.pack_current_guard),
            ("safety.recovery_charge_a", s.recovery_charge_a),
            ("safety.join_delta_mv", f64::from(s.join_delta_mv)),
            ("safety.join_settle_s", s.join_settle_s),
            ("safety.join_wait_max_s", s.join_wait_max_s as f64),
            ("poll.period_s", p.period_s),
            ("poll.timeout_s", p.timeout_s),
            ("poll.limits_every_s", p.limits_every_s),
            ("state.event_log_max_bytes", st.event_log_max_bytes as f64),
            ("state.event_log_keep", f64::from(st.event_log_keep)),
            ("state.energy_save_s", st.energy_save_s),
            ("rebalance.every_days", r.every_days),
            ("rebalance.capacity_mah", f64::from(r.capacity_mah)),
            ("rebalance.regular_capacity_mah", f64::from(r.regular_capacity_mah)),
            ("rebalance.charge_voltage_mv", f64::from(r.charge_voltage_mv)),
            ("rebalance.threshold_mv", f64::from(r.threshold_mv)),
            ("rebalance.tail_current_a", r.tail_current_a),
            ("rebalance.balanced_delta_mv", f64::from(r.balanced_delta_mv)),
            ("rebalance.hold_max_s", r.hold_max_s as f64),
            ("rebalance.hold_charge_a", r.hold_charge_a),
            ("rebalance.settle_max_s", r.settle_max_s as f64),
            ("rebalance.retrigger_min_s", r.retrigger_min_s as f64),
            ("mqtt.state_every_s", self.mqtt.state_every_s),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        n.extend(self.pylon.iter().map(|p| ("pylon.address".to_owned(), f64::from(p.address))));
        n.extend(self.coil.iter().map(|c| ("coil.slave".to_owned(), f64::from(c.slave))));
        n.extend(self.inverter.iter().map(|i| ("inverter.slave".to_owned(), f64::from(i.slave))));
        n
    }

    /// The orderings between keys: each release on the safe side of its threshold, the
    /// temperatures in order, the poll inside the staleness, the rebalance's voltages above the
    /// regular one and fitting the same number of cells.
    fn orderings(&self) -> Result<(), (&'static str, String)> {
        let (s, r) = (&self.safety, &self.rebalance);
        let order =
            |ok: bool, key: &'static str, message: String| if ok { Ok(()) } else { Err((key, message)) };
        order(
            s.cell_ov_release_mv < s.cell_ov_mv,
            "safety.cell_ov_release_mv",
            format!("{} must lie below safety.cell_ov_mv ({})", s.cell_ov_release_mv, s.cell_ov_mv),
        )?;
        order(
            s.cell_uv_release_mv > s.cell_uv_mv,
            "safety.cell_uv_release_mv",
            format!("{} must lie above safety.cell_uv_mv ({})", s.cell_uv_release_mv, s.cell_uv_mv),
        )?;
        order(
            s.cell_uv_release_mv < s.cell_ov_release_mv,
            "safety.cell_uv_release_mv",
            format!(
                "{} must lie below safety.cell_ov_release_mv ({}): the two latches would fight",
                s.cell_uv_release_mv, s.cell_ov_release_mv
            ),
        )?;
        order(
            s.cell_cold_discharge_c < s.cell_cold_charge_c,
            "safety.cell_cold_discharge_c",
            format!(
                "{} must lie below safety.cell_cold_charge_c ({})",
                s.cell_cold_discharge_c, s.cell_cold_charge_c
            ),
        )?;
        order(
            s.cell_cold_charge_c + 10.0 <= s.cell_ot_c,
            "safety.cell_cold_charge_c",
            format!(
                "{} must lie at least 10 °C below safety.cell_ot_c ({})",
                s.cell_cold_charge_c, s.cell_ot_c
            ),
        )?;
        order(
            self.poll.period_s * 2.0 <= s.stale_after_s,
            "poll.period_s",
            format!(
                "{} s must be at most half of safety.stale_after_s ({} s): every pack would go stale between two reads",
                self.poll.period_s, s.stale_after_s
            ),
        )?;
        order(
            self.poll.timeout_s < self.poll.period_s,
            "poll.timeout_s",
            format!("{} must be shorter than poll.period_s ({})", self.poll.timeout_s, self.poll.period_s),
        )?;
        let regular = u32::from(s.charge_voltage_mv);
        let cells: Vec<u16> = bounds::cell_counts(regular, bounds::CHARGE_PER_CELL_MV).collect();
        let (lo, hi) = bounds::CHARGE_PER_CELL_MV;
        order(
            !cells.is_empty(),
            "safety.charge_voltage_mv",
            format!(
                "{regular} mV is {lo}-{hi} mV a cell for no stack of {}-{} cells",
                bounds::CELLS.0,
                bounds::CELLS.1
            ),
        )?;
        let max_per_cell = u32::from(s.cell_ov_mv).min(bounds::REBALANCE_PER_CELL_MAX_MV);
        let rebalance = u32::from(r.charge_voltage_mv);
        order(
            rebalance > regular,
            "rebalance.charge_voltage_mv",
            format!("{rebalance} must lie above safety.charge_voltage_mv ({regular})"),
        )?;
        order(
            cells.iter().any(|&n| {
                bounds::charge_voltage_fits(rebalance, n, true) && rebalance <= u32::from(n) * max_per_cell
            }),
            "rebalance.charge_voltage_mv",
            format!(
                "{rebalance} mV is above {max_per_cell} mV a cell (the lower of safety.cell_ov_mv and {} mV) for the {} cells safety.charge_voltage_mv ({regular}) implies",
                bounds::REBALANCE_PER_CELL_MAX_MV,
                cells.iter().map(u16::to_string).collect::<Vec<_>>().join(" or ")
            ),
        )?;
        order(
            regular < r.threshold_mv && r.threshold_mv < rebalance,
            "rebalance.threshold_mv",
            format!(
                "{} must lie between safety.charge_voltage_mv ({regular}) and rebalance.charge_voltage_mv ({rebalance})",
                r.threshold_mv
            ),
        )?;
        order(
            r.regular_capacity_mah < r.capacity_mah,
            "rebalance.regular_capacity_mah",
            format!("{} must be below rebalance.capacity_mah ({})", r.regular_capacity_mah, r.capacity_mah),
        )?;
        Ok(())
    }

    /// Each taper table's points lie inside the thresholds of its quantity: a point beyond the
    /// threshold could never apply before the rule blocks that direction.
    fn taper_inside_thresholds(&self) -> Result<(), (String, String)> {
        let (s, t) = (&self.safety, &self.safety.taper);
        let (uv, ov) = (f64::from(s.cell_uv_mv), f64::from(s.cell_ov_mv));
        for (key, points, lo, hi, between) in [
            ("charge_cell_mv", &t.charge_cell_mv, uv, ov, "safety.cell_uv_mv and safety.cell_ov_mv"),
            ("discharge_cell_mv", &t.discharge_cell_mv, uv, ov, "safety.cell_uv_mv and safety.cell_ov_mv"),
            (
                "charge_temp_c",
                &t.charge_temp_c,
                s.cell_cold_charge_c,
                s.cell_ot_c,
                "safety.cell_cold_charge_c and safety.cell_ot_c",
            ),
            (
                "discharge_temp_c",
                &t.discharge_temp_c,
                s.cell_cold_discharge_c,
                s.cell_ot_c,
                "safety.cell_cold_discharge_c and safety.cell_ot_c",
            ),
        ] {
            if let Some(TaperPoint([x, _])) = points.iter().find(|TaperPoint([x, _])| !(lo..=hi).contains(x))
            {
                return Err((
                    format!("safety.taper.{key}"),
                    format!("the point at {x} lies outside {lo}..{hi} (between {between})"),
                ));
            }
        }
        Ok(())
    }

    /// The effective configuration, as TOML, without its secrets: each one set is left out and
    /// named in a comment at the top, so the text can never be read back with a placeholder as
    /// the secret's value.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        let mut hidden = Vec::new();
        for (key, secret) in
            [("http.token", &mut shown.http.token), ("mqtt.password", &mut shown.mqtt.password)]
        {
            if secret.take().is_some() {
                hidden.push(key);
            }
        }
        let head: String = hidden.iter().map(|k| format!("# {k}: set, not shown\n")).collect();
        match toml::to_string(&shown) {
            Ok(text) => head + &text,
            Err(e) => format!("# cannot show the configuration: {e}\n"),
        }
    }
}
