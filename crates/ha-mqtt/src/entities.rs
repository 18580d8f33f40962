//! The Home Assistant entities and the state payloads they read, both derived from one
//! [`Status`], so an entity never points at a field the state does not carry.

use std::collections::BTreeMap;

use daemon::status::{REASON_CODES, Status};
use serde_json::{Map, Value, json};

use crate::Options;

/// The device an entity belongs to.
#[derive(Clone, Debug, PartialEq)]
pub struct Device {
    /// Topic and id part: `stack`, `pack3`, `coil`, `inverter`.
    pub key: String,
    /// Shown name.
    pub name: String,
    /// Manufacturer.
    pub manufacturer: &'static str,
    /// Model.
    pub model: String,
    /// Serial number, if known.
    pub serial: Option<String>,
    /// Firmware, if known.
    pub firmware: Option<String>,
    /// Whether it hangs off the stack device.
    pub via_stack: bool,
}

/// One Home Assistant entity.
#[derive(Clone, Debug, PartialEq)]
pub struct Entity {
    /// `sensor`, `binary_sensor`, `switch` or `button`.
    pub component: &'static str,
    /// Its device.
    pub device: Device,
    /// Object id part (`voltage`, `cell_3`).
    pub object: String,
    /// Shown name.
    pub name: String,
    /// The state JSON's field it shows (`None` for buttons).
    pub field: Option<String>,
    /// Home Assistant device class.
    pub device_class: Option<&'static str>,
    /// `measurement` or `total_increasing`.
    pub state_class: Option<&'static str>,
    /// Unit of measurement.
    pub unit: Option<&'static str>,
    /// Suggested display precision.
    pub precision: Option<u8>,
    /// `diagnostic` for the less important ones.
    pub category: Option<&'static str>,
    /// Options of an `enum` sensor.
    pub options: Vec<&'static str>,
    /// Command topic suffix after `P/control/` (switches and buttons).
    pub command: Option<&'static str>,
    /// Topic suffix after `P/` of a JSON object Home Assistant shows as the entity's attributes.
    pub attributes: Option<&'static str>,
}

impl Entity {
    fn new(
        component: &'static str,
        device: &Device,
        object: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        let object = object.into();
        Self {
            component,
            device: device.clone(),
            field: Some(object.clone()),
            object,
            name: name.into(),
            device_class: None,
            state_class: None,
            unit: None,
            precision: None,
            category: None,
            options: Vec::new(),
            command: None,
            attributes: None,
        }
    }

    fn measure(mut self, class: Option<&'static str>, unit: &'static str, precision: u8) -> Self {
        self.device_class = class;
        self.state_class = Some("measurement");
        self.unit = Some(unit);
        self.precision = Some(precision);
        self
    }

    /// A measurement without a unit (a count or a factor).
    fn plain(mut self, precision: u8) -> Self {
        self.state_class = Some("measurement");
        self.precision = Some(precision);
        self
    }

    fn diagnostic(mut self) -> Self {
        self.category = Some("diagnostic");
        self
    }

    fn class(mut self, class: &'static str) -> Self {
        self.device_class = Some(class);
        self
    }

    /// Whether Home Assistant takes the state as text: a sensor without unit, state class,
    /// precision or device class.
    fn is_text(&self) -> bool {
        self.component == "sensor"
            && self.unit.is_none()
            && self.state_class.is_none()
            && self.precision.is_none()
            && self.device_class.is_none()
    }

    /// The value template. A JSON null renders as `None`, which Home Assistant takes as unknown
    /// for numbers and binary sensors; a text sensor (before 2024.10) would show the word, so
    /// its template says `unknown`, which is the very state Home Assistant stores for unknown.
    pub fn template(&self, field: &str) -> String {
        if self.is_text() {
            format!("{{{{ value_json.{field} if value_json.{field} is not none else 'unknown' }}}}")
        } else {
            format!("{{{{ value_json.{field} }}}}")
        }
    }

    /// The unique id: `P_<device>_<object>`.
    pub fn unique_id(&self, options: &Options) -> String {
        format!("{}_{}_{}", options.topic_prefix, self.device.key, self.object)
    }

    /// The retained discovery message: topic and JSON payload.
    pub fn discovery(&self, options: &Options) -> (String, String) {
        let p = &options.topic_prefix;
        let id = self.unique_id(options);
        let topic = format!(
            "{}/{}/{p}/{}_{}/config",
            options.discovery_prefix, self.component, self.device.key, self.object
        );
        let d = &self.device;
        let mut device = Map::new();
        device.insert("identifiers".into(), json!([format!("{p}_{}", d.key)]));
        device.insert("name".into(), json!(d.name));
        device.insert("manufacturer".into(), json!(d.manufacturer));
        device.insert("model".into(), json!(d.model));
        if let Some(s) = &d.serial {
            device.insert("serial_number".into(), json!(s));
        }
        if let Some(f) = &d.firmware {
            device.insert("sw_version".into(), json!(f));
        }
        if d.via_stack {
            device.insert("via_device".into(), json!(format!("{p}_stack")));
        }
        let mut c = Map::new();
        c.insert("name".into(), json!(self.name));
        c.insert("unique_id".into(), json!(id));
        c.insert("availability_topic".into(), json!(format!("{p}/availability")));
        c.insert("device".into(), Value::Object(device));
        c.insert("origin".into(), json!({"name": "pace2pylon", "sw_version": env!("CARGO_PKG_VERSION")}));
        if let Some(field) = &self.field {
            c.insert("state_topic".into(), json!(format!("{p}/{}/state", d.key)));
            c.insert("value_template".into(), json!(self.template(field)));
        }
        if let Some(command) = self.command {
            c.insert("command_topic".into(), json!(format!("{p}/control/{command}")));
        }
        if let Some(attributes) = self.attributes {
            c.insert("json_attributes_topic".into(), json!(format!("{p}/{attributes}")));
        }
        for (key, value) in [
            ("device_class", self.device_class),
            ("state_class", self.state_class),
            ("unit_of_measurement", self.unit),
            ("entity_category", self.category),
        ] {
            if let Some(v) = value {
                c.insert(key.into(), json!(v));
            }
        }
        if let Some(p) = self.precision {
            c.insert("suggested_display_precision".into(), json!(p));
        }
        if !self.options.is_empty() {
            c.insert("options".into(), json!(self.options));
        }
        (topic, Value::Object(c).to_string())
    }
}

fn devices(s: &Status) -> (Device, Vec<Device>, Device, Device) {
    let stack = Device {
        key: "stack".into(),
        name: "pace2pylon stack".into(),
        manufacturer: "pace2pylon",
        model: format!("Pylontech emulation of {} Pace packs", s.packs.len()),
        serial: None,
        firmware: Some(s.version.into()),
        via_stack: false,
    };
    let packs = s
        .packs
        .iter()
        .map(|p| Device {
            key: format!("pack{}", p.number),
            name: format!("Pack {}", p.number),
            manufacturer: "Pace",
            model: "Pace BMS (protocol v25)".into(),
            serial: p.serial.clone(),
            firmware: p.firmware.clone(),
            via_stack: true,
        })
        .collect();
    let coil = Device {
        key: "coil".into(),
        name: "Coulomb counter".into(),
        manufacturer: "unknown",
        model: "Modbus coulomb counter".into(),
        serial: None,
        firmware: None,
        via_stack: true,
    };
    let inverter = Device {
        key: "inverter".into(),
        name: "Inverter".into(),
        manufacturer: "Vevor / EG4",
        model: "hybrid inverter (Modbus)".into(),
        serial: None,
        firmware: None,
        via_stack: true,
    };
    (stack, packs, coil, inverter)
}

/// The most cells, temperature sensors and packs a retained topic is believed for.
const MAX_CELLS: usize = 32;
const MAX_TEMPS: usize = 16;
const MAX_PACKS: usize = 255;

/// What the broker's retained discovery said of each pack when we connected: its cell and
/// temperature sensor counts. Until a pack is read again they are announced as before, so Home
/// Assistant keeps its entities (shown unknown) instead of losing them at every restart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Announced {
    /// Pack number → (cells, temperature sensors).
    pub packs: BTreeMap<usize, (usize, usize)>,
}

impl Announced {
    /// Reads the counts from discovery topics (`H/sensor/P/pack3_cell_16/config`).
    pub fn from_topics<'a>(topics: impl IntoIterator<Item = &'a str>, options: &Options) -> Self {
        let head = format!("{}/sensor/{}/pack", options.discovery_prefix, options.topic_prefix);
        let mut packs: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
        for topic in topics {
            let Some(object) = topic.strip_prefix(&head).and_then(|t| t.strip_suffix("/config")) else {
                continue;
            };
            let Some((pack, sensor)) = object.split_once('_') else { continue };
            let Some(pack) = pack
                .parse::<usize>()
                .ok()
                .filter(|p| pack.bytes().all(|b| b.is_ascii_digit()) && (1..=MAX_PACKS).contains(p))
            else {
                continue;
            };
            // Digits only, and no more than a pack can have: a stray retained topic must not
            // make billions of entities.
            let count = |prefix: &str, max: usize| {
                sensor
                    .strip_prefix(prefix)
                    .filter(|k| !k.is_empty() && k.len() <= 3 && k.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|k| k.parse::<usize>().ok())
                    .filter(|k| (1..=max).contains(k))
            };
            let entry = packs.entry(pack).or_default();
            if let Some(k) = count("cell_", MAX_CELLS) {
                entry.0 = entry.0.max(k);
            } else if let Some(k) = count("temp_", MAX_TEMPS) {
                entry.1 = entry.1.max(k);
            }
        }
        packs.retain(|_, counts| *counts != (0, 0));
        Self { packs }
    }
}

/// Every entity for this status; a pack not read yet keeps the counts it was `announced` with.
pub fn entities(s: &Status, options: &Options, announced: &Announced) -> Vec<Entity> {
    let (stack, packs, coil, inverter) = devices(s);
    let sensor = |d: &Device, o: &str, n: &str| Entity::new("sensor", d, o, n);
    let binary = |d: &Device, o: &str, n: &str| Entity::new("binary_sensor", d, o, n);
    let mut e = vec![
        sensor(&stack, "voltage", "Voltage").measure(Some("voltage"), "V", 2),
        sensor(&stack, "current", "Current").measure(Some("current"), "A", 1),
        sensor(&stack, "power", "Power").measure(Some("power"), "W", 0),
        sensor(&stack, "soc", "State of charge").measure(Some("battery"), "%", 0),
        sensor(&stack, "cell_min", "Lowest cell").measure(Some("voltage"), "V", 3),
        sensor(&stack, "cell_max", "Highest cell").measure(Some("voltage"), "V", 3),
        sensor(&stack, "cell_delta", "Cell spread").measure(Some("voltage"), "mV", 0),
        sensor(&stack, "cell_temp_max", "Warmest cell").measure(Some("temperature"), "°C", 1),
        sensor(&stack, "charge_voltage_limit", "Charge voltage limit")
            .measure(Some("voltage"), "V", 2)
            .diagnostic(),
        sensor(&stack, "charge_current_limit", "Charge current limit")
            .measure(Some("current"), "A", 0)
            .diagnostic(),
        sensor(&stack, "discharge_current_limit", "Discharge current limit")
            .measure(Some("current"), "A", 0)
            .diagnostic(),
        sensor(&stack, "charge_limit_base", "Charge limit base")
            .measure(Some("current"), "A", 1)
            .diagnostic(),
        sensor(&stack, "discharge_limit_base", "Discharge limit base")
            .measure(Some("current"), "A", 1)
            .diagnostic(),
        sensor(&stack, "charge_limit_packs", "Packs that can charge").plain(0).diagnostic(),
        sensor(&stack, "discharge_limit_packs", "Packs that can discharge").plain(0).diagnostic(),
        sensor(&stack, "charge_limit_taper", "Charge taper factor").plain(2).diagnostic(),
        sensor(&stack, "discharge_limit_taper", "Discharge taper factor").plain(2).diagnostic(),
        sensor(&stack, "charge_limit_reason", "Charge limit reason").diagnostic(),
        sensor(&stack, "discharge_limit_reason", "Discharge limit reason").diagnostic(),
        Entity {
            options: vec!["idle", "running", "completing", "settling"],
            ..sensor(&stack, "rebalance_step", "Rebalance step").class("enum")
        },
        Entity { attributes: Some(REASONS_TOPIC), ..sensor(&stack, "reasons", "Safety reasons") },
        energy(sensor(&stack, "energy_charged_kwh", "Energy charged")),
        energy(sensor(&stack, "energy_discharged_kwh", "Energy discharged")),
        binary(&stack, "charge_enabled", "Charge enabled"),
        binary(&stack, "discharge_enabled", "Discharge enabled"),
        binary(&stack, "data_stale", "Data stale").class("problem"),
    ];
    for code in REASON_CODES {
        let name = format!("Reason: {}", code.replace('_', " "));
        e.push(binary(&stack, &format!("reason_{code}"), &name).class("problem").diagnostic());
    }
    if options.allow_control {
        e.push(Entity {
            command: Some("force_disable/set"),
            ..Entity::new("switch", &stack, "forced_disable", "Force disable")
        });
        for (object, name, command) in [
            ("rebalance_start", "Start rebalance", "rebalance_start/press"),
            ("rebalance_cancel", "Cancel rebalance", "rebalance_cancel/press"),
        ] {
            e.push(Entity {
                field: None,
                command: Some(command),
                ..Entity::new("button", &stack, object, name)
            });
        }
    } else {
        e.push(binary(&stack, "forced_disable", "Forced disable"));
    }
    for (p, d) in s.packs.iter().zip(&packs) {
        e.extend([
            sensor(d, "voltage", "Voltage").measure(Some("voltage"), "V", 2),
            sensor(d, "current", "Current").measure(Some("current"), "A", 1),
            sensor(d, "soc", "State of charge").measure(Some("battery"), "%", 0),
            sensor(d, "remaining", "Remaining capacity").measure(None, "Ah", 1),
            Entity { state_class: Some("total_increasing"), ..sensor(d, "cycles", "Cycles").diagnostic() },
            sensor(d, "cell_min", "Lowest cell").measure(Some("voltage"), "V", 3),
            sensor(d, "cell_max", "Highest cell").measure(Some("voltage"), "V", 3),
            sensor(d, "cell_delta", "Cell spread").measure(Some("voltage"), "mV", 0),
            sensor(d, "charge_share", "Charge limit share").measure(Some("current"), "A", 1).diagnostic(),
            sensor(d, "discharge_share", "Discharge limit share")
                .measure(Some("current"), "A", 1)
                .diagnostic(),
            binary(d, "data_stale", "Data stale").class("problem"),
            binary(d, "balancing", "Balancing").diagnostic(),
            energy(sensor(d, "energy_charged_kwh", "Energy charged")),
            energy(sensor(d, "energy_discharged_kwh", "Energy discharged")),
        ]);
        let before = announced.packs.get(&p.number).copied().unwrap_or_default();
        let cells = if p.cells_mv.is_empty() { before.0 } else { p.cells_mv.len() };
        let temps = if p.temps_dc.is_empty() { before.1 } else { p.temps_dc.len() };
        for c in 1..=cells {
            e.push(
                sensor(d, &format!("cell_{c}"), &format!("Cell {c}"))
                    .measure(Some("voltage"), "V", 3)
                    .diagnostic(),
            );
        }
        for (k, name) in temperature_names(temps).iter().enumerate() {
            e.push(
                sensor(d, &format!("temp_{}", k + 1), &format!("Temperature {name}"))
                    .measure(Some("temperature"), "°C", 1)
                    .diagnostic(),
            );
        }
    }
    if s.coil.configured {
        e.extend([
            sensor(&coil, "soc", "State of charge").measure(Some("battery"), "%", 0),
            sensor(&coil, "voltage", "Voltage").measure(Some("voltage"), "V", 2),
            sensor(&coil, "current", "Current").measure(Some("current"), "A", 1),
            sensor(&coil, "power", "Power").measure(Some("power"), "W", 0),
            sensor(&coil, "remaining", "Remaining capacity").measure(None, "Ah", 1),
            binary(&coil, "data_stale", "Data stale").class("problem"),
        ]);
    }
    if s.inverter.configured {
        e.extend([
            sensor(&inverter, "pv_power", "PV power").measure(Some("power"), "W", 0),
            sensor(&inverter, "load_power", "Load power").measure(Some("power"), "W", 0),
            sensor(&inverter, "grid_power", "Grid power").measure(Some("power"), "W", 0),
            sensor(&inverter, "battery_power", "Battery power").measure(Some("power"), "W", 0),
            sensor(&inverter, "working_mode", "Working mode"),
            sensor(&inverter, "output_priority", "Output priority"),
            sensor(&inverter, "charging_priority", "Charging priority"),
            binary(&inverter, "data_stale", "Data stale").class("problem"),
        ]);
    }
    e
}

/// A meter for Home Assistant's Energy dashboard: kWh, only growing.
fn energy(e: Entity) -> Entity {
    Entity {
        device_class: Some("energy"),
        state_class: Some("total_increasing"),
        unit: Some("kWh"),
        precision: Some(2),
        ..e
    }
}

/// Names of a pack's temperature sensors in the Pace order: cells, then MOSFET and environment.
fn temperature_names(count: usize) -> Vec<String> {
    (0..count)
        .map(|k| match count - k {
            2 if count >= 3 => "MOSFET".to_owned(),
            1 if count >= 3 => "environment".to_owned(),
            _ => format!("cell sensor {}", k + 1),
        })
        .collect()
}

fn on_off(b: bool) -> &'static str {
    if b { "ON" } else { "OFF" }
}

fn volts<T: Into<f64>>(mv: Option<T>) -> Value {
    mv.map_or(Value::Null, |v| json!(v.into().round() / 1000.0))
}

fn amps(ma: Option<i32>) -> Value {
    ma.map_or(Value::Null, |v| json!((f64::from(v) / 10.0).round() / 100.0))
}

/// What shapes a direction's limit, in a few words (HA's 255-character state limit is far).
fn limit_reason(d: &daemon::status::DirectionLimit) -> String {
    let mut why = vec![format!("{} packs", d.packs)];
    why.extend(
        d.factors.iter().filter(|f| f.factor < 1.0).map(|f| format!("{} × {:.2}", f.reason, f.factor)),
    );
    if d.hold_ma.is_some() {
        why.push("top hold".into());
    }
    if d.recovery_ma.is_some() {
        why.push("recovery current".into());
    }
    if let Some(g) = &d.guard {
        why.push(format!("guard: pack {} at {:.1} A", g.pack, f64::from(g.current_ma) / 1000.0));
    }
    why.join(", ")
}

/// Home Assistant's longest state.
pub const MAX_STATE_CHARS: usize = 255;

/// The topic (after `P/`) of the reasons sensor's attributes: every reason in full.
pub const REASONS_TOPIC: &str = "stack/reasons";

/// The `reasons` state: `none`, the reasons in words when they fit in Home Assistant's 255
/// characters, else their count and codes (`×N` when several packs share one), cut to fit. The
/// whole list is in the attributes ([`REASONS_TOPIC`]).
pub fn reasons_state(s: &Status) -> String {
    if s.reasons.is_empty() {
        return "none".into();
    }
    let words = s.reasons.iter().map(|r| r.text.as_str()).collect::<Vec<_>>().join("; ");
    if words.chars().count() <= MAX_STATE_CHARS {
        return words;
    }
    let mut codes: Vec<(&str, usize)> = Vec::new();
    for r in &s.reasons {
        match codes.iter_mut().find(|(c, _)| *c == r.code) {
            Some((_, n)) => *n += 1,
            None => codes.push((r.code, 1)),
        }
    }
    let parts: Vec<String> = codes
        .iter()
        .map(|(c, n)| if *n > 1 { format!("{} ×{n}", c.replace('_', " ")) } else { c.replace('_', " ") })
        .collect();
    let summary = format!("{} reasons: {}", s.reasons.len(), parts.join(", "));
    if summary.chars().count() <= MAX_STATE_CHARS {
        return summary;
    }
    let mut cut: String = summary.chars().take(MAX_STATE_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// Every device's state topic and JSON payload. Each payload carries every field an entity of
/// `entities` reads from it, `null` while unknown (Home Assistant then shows unknown rather than
/// logging a template warning for a missing key).
pub fn states(s: &Status, options: &Options, entities: &[Entity]) -> Vec<(String, String)> {
    let p = &options.topic_prefix;
    let mut devices: Vec<(String, Value)> = Vec::new();
    let st = s.stack.as_ref();
    let mut stack = json!({
        "voltage": volts(st.map(|v| v.voltage_mv)),
        "current": amps(st.map(|v| v.current_ma)),
        "power": st.map(|v| v.power_w),
        "soc": st.map(|v| v.soc_pct),
        "cell_min": volts(st.map(|v| v.cell_min_mv)),
        "cell_max": volts(st.map(|v| v.cell_max_mv)),
        "cell_delta": st.map(|v| v.cell_max_mv - v.cell_min_mv),
        "cell_temp_max": st.and_then(|v| v.cell_temp_max_dc).map(|t| f64::from(t) / 10.0),
        "charge_voltage_limit": volts(st.map(|v| v.charge_voltage_mv)),
        "charge_current_limit": amps(st.and_then(|v| v.charge_current_ma)),
        "discharge_current_limit": amps(st.and_then(|v| v.discharge_current_ma)),
        "charge_limit_base": amps(s.limits.as_ref().and_then(|l| l.charge.base_ma)),
        "discharge_limit_base": amps(s.limits.as_ref().and_then(|l| l.discharge.base_ma)),
        "charge_limit_packs": s.limits.as_ref().map(|l| l.charge.packs),
        "discharge_limit_packs": s.limits.as_ref().map(|l| l.discharge.packs),
        "charge_limit_taper": s.limits.as_ref().map(|l| l.charge.taper),
        "discharge_limit_taper": s.limits.as_ref().map(|l| l.discharge.taper),
        "charge_limit_reason": s.limits.as_ref().map(|l| limit_reason(&l.charge)),
        "discharge_limit_reason": s.limits.as_ref().map(|l| limit_reason(&l.discharge)),
        "rebalance_step": s.rebalance.step,
        "reasons": reasons_state(s),
        "charge_enabled": on_off(s.charge_enabled),
        "discharge_enabled": on_off(s.discharge_enabled),
        "data_stale": on_off(s.data_stale),
        "forced_disable": on_off(s.overrides.forced_disable),
        "energy_charged_kwh": s.energy.charged_kwh,
        "energy_discharged_kwh": s.energy.discharged_kwh,
    });
    if let Some(map) = stack.as_object_mut() {
        for code in REASON_CODES {
            map.insert(format!("reason_{code}"), json!(on_off(s.reasons.iter().any(|r| r.code == code))));
        }
    }
    devices.push(("stack".into(), stack));
    for pack in &s.packs {
        // A silent pack's last values are not passed off as current: Home Assistant shows
        // "unknown" and the data-stale sensor says why.
        let fresh = !pack.stale;
        let extreme =
            |k: Option<usize>| volts(k.and_then(|k| pack.cells_mv.get(k - 1).copied()).filter(|_| fresh));
        let mut m = json!({
            "voltage": volts(pack.voltage_mv.filter(|_| fresh)),
            "current": amps(pack.current_ma.filter(|_| fresh)),
            "soc": pack.soc_pct.filter(|_| fresh),
            "remaining": pack.remaining_mah.filter(|_| fresh).map(|v| f64::from(v) / 1000.0),
            "cycles": pack.cycles,
            "cell_min": extreme(pack.cell_min),
            "cell_max": extreme(pack.cell_max),
            "cell_delta": pack.cell_delta_mv.filter(|_| fresh),
            "charge_share": amps(pack.share_charge_ma),
            "discharge_share": amps(pack.share_discharge_ma),
            "data_stale": on_off(pack.stale),
            "balancing": on_off(!pack.balancing.is_empty()),
            "energy_charged_kwh": pack.energy_charged_kwh,
            "energy_discharged_kwh": pack.energy_discharged_kwh,
        });
        if let Some(map) = m.as_object_mut() {
            for (c, mv) in pack.cells_mv.iter().enumerate() {
                map.insert(format!("cell_{}", c + 1), volts(Some(*mv).filter(|_| fresh)));
            }
            for (k, t) in pack.temps_dc.iter().enumerate() {
                map.insert(format!("temp_{}", k + 1), json!(Some(f64::from(*t) / 10.0).filter(|_| fresh)));
            }
        }
        devices.push((format!("pack{}", pack.number), m));
    }
    let c = &s.coil;
    if c.configured {
        let fresh = !c.stale;
        let m = json!({
            "soc": c.soc_pct.filter(|_| fresh),
            "voltage": volts(c.voltage_mv.filter(|_| fresh).map(|v| v as f64)),
            "current": amps(c.current_ma.filter(|_| fresh)),
            "power": c.power_w.filter(|_| fresh).map(|w| w.round()),
            "remaining": c.remaining_mah.filter(|_| fresh).map(|v| f64::from(v) / 1000.0),
            "data_stale": on_off(c.stale),
        });
        devices.push(("coil".into(), m));
    }
    let i = &s.inverter;
    if i.configured {
        let fresh = !i.stale;
        let m = json!({
            "pv_power": i.pv_power_w.filter(|_| fresh),
            "load_power": i.load_power_w.filter(|_| fresh),
            "grid_power": i.grid_power_w.filter(|_| fresh),
            "battery_power": i.battery_power_w.filter(|_| fresh),
            "working_mode": i.working_mode,
            "output_priority": i.output_priority_name.map(str::to_owned).or(i.output_priority.map(|v| v.to_string())),
            "charging_priority": i.charging_priority_name.map(str::to_owned).or(i.charging_priority.map(|v| v.to_string())),
            "data_stale": on_off(i.stale),
        });
        devices.push(("inverter".into(), m));
    }
    for e in entities {
        let (Some(field), Some((_, Value::Object(state)))) =
            (&e.field, devices.iter_mut().find(|(key, _)| *key == e.device.key))
        else {
            continue;
        };
        state.entry(field.clone()).or_insert(Value::Null);
    }
    let mut out: Vec<(String, String)> =
        devices.into_iter().map(|(key, state)| (format!("{p}/{key}/state"), state.to_string())).collect();
    out.push((
        format!("{p}/{REASONS_TOPIC}"),
        json!({"count": s.reasons.len(), "reasons": s.reasons}).to_string(),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> Options {
        Options {
            host: "localhost".into(),
            port: 1883,
            credentials: None,
            client_id: "t".into(),
            discovery_prefix: "homeassistant".into(),
            topic_prefix: "p2p".into(),
            allow_control: false,
            state_every: std::time::Duration::from_secs(60),
        }
    }

    #[test]
    fn announced_counts_come_from_our_own_cell_and_temperature_topics_only() {
        let topics = [
            "homeassistant/sensor/p2p/pack1_cell_16/config",
            "homeassistant/sensor/p2p/pack1_cell_3/config",
            "homeassistant/sensor/p2p/pack1_temp_6/config",
            "homeassistant/sensor/p2p/pack2_voltage/config",
            "homeassistant/sensor/other/pack3_cell_8/config",
            "homeassistant/sensor/p2p/packx_cell_8/config",
            "homeassistant/binary_sensor/p2p/pack4_cell_8/config",
            "homeassistant/sensor/p2p/pack5_cell_4000000000/config",
            "homeassistant/sensor/p2p/pack6_cell_+1/config",
            "homeassistant/sensor/p2p/pack+7_cell_1/config",
            "homeassistant/sensor/p2p/pack8_temp_0/config",
        ];
        let a = Announced::from_topics(topics, &options());
        assert_eq!(a.packs, BTreeMap::from([(1, (16, 6))]));
    }

    #[test]
    fn only_text_sensors_turn_null_into_unknown() {
        let d = Device {
            key: "inverter".into(),
            name: "Inverter".into(),
            manufacturer: "x",
            model: "y".into(),
            serial: None,
            firmware: None,
            via_stack: true,
        };
        let text = Entity::new("sensor", &d, "working_mode", "Working mode");
        assert_eq!(
            text.template("working_mode"),
            "{{ value_json.working_mode if value_json.working_mode is not none else 'unknown' }}"
        );
        let number = Entity::new("sensor", &d, "pv_power", "PV").measure(Some("power"), "W", 0);
        assert_eq!(number.template("pv_power"), "{{ value_json.pv_power }}");
        let binary = Entity::new("binary_sensor", &d, "data_stale", "Stale");
        assert_eq!(binary.template("data_stale"), "{{ value_json.data_stale }}");
    }
}
