//! pace2pylon on MQTT, with Home Assistant discovery.
//!
//! Two threads: one polls the rumqttc connection (and so keeps it alive and reconnects), the other
//! reads the daemon's status once a second and publishes. Publishing uses `try_publish`, which
//! never waits: when the broker is gone and the client's queue is full, state is dropped and sent
//! afresh on reconnection. Nothing here ever holds a lock of the daemon for longer than copying
//! the status, so a lost broker cannot delay the safety loop.
//!
//! Topics (`P` = `topic_prefix`, `H` = `discovery_prefix`):
//! - `P/availability`: `online` / `offline` (retained; `offline` is also the last will);
//! - `P/stack/state`, `P/pack<N>/state`, `P/coil/state`, `P/inverter/state`: one JSON object per
//!   device, published when it changes and at least every `state_every_s`;
//! - `H/<component>/P/<object>/config`: retained discovery, re-sent when Home Assistant says
//!   `online` on `H/status` and when the set of entities changes (e.g. a pack's cell count is
//!   first known). On connecting, the publisher first hears what the broker retains there (until
//!   its marker on `P/sync` comes back): a pack not read yet is announced with the counts it had,
//!   and an entity no longer wanted (a pack taken out of the configuration, the read-only
//!   `forced_disable` once `allow_control` is on) is removed with an empty retained config;
//! - with `allow_control`: `P/control/force_disable/set` (`ON`/`OFF`),
//!   `P/control/rebalance_start/press`, `P/control/rebalance_cancel/press`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod entities;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use daemon::Handle;
use daemon::control::Control;
use rumqttc::{Client, Event, LastWill, MqttOptions, Outgoing, Packet, QoS};

pub use entities::{Announced, Entity, entities, states};

/// Where and how to publish.
#[derive(Clone, Debug)]
pub struct Options {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// User name and password.
    pub credentials: Option<(String, String)>,
    /// MQTT client id.
    pub client_id: String,
    /// Home Assistant's discovery prefix.
    pub discovery_prefix: String,
    /// Prefix of our own topics; also the prefix of every unique id.
    pub topic_prefix: String,
    /// Offer the force-disable switch and the rebalance buttons.
    pub allow_control: bool,
    /// Publish every device's state at least this often.
    pub state_every: Duration,
}

impl Options {
    fn availability(&self) -> String {
        format!("{}/availability", self.topic_prefix)
    }

    /// The filter over our discovery topics.
    fn discovery_filter(&self) -> String {
        format!("{}/+/{}/+/config", self.discovery_prefix, self.topic_prefix)
    }

    /// Whether `topic` is `H/<component>/P/<object>/config` (either prefix may hold `/`).
    fn is_discovery(&self, topic: &str) -> bool {
        let object = topic
            .strip_prefix(self.discovery_prefix.as_str())
            .and_then(|t| t.strip_prefix('/'))
            .and_then(|t| t.split_once('/'))
            .filter(|(component, _)| !component.is_empty())
            .and_then(|(_, t)| t.strip_prefix(self.topic_prefix.as_str()))
            .and_then(|t| t.strip_prefix('/'))
            .and_then(|t| t.strip_suffix("/config"));
        object.is_some_and(|o| !o.is_empty() && !o.contains('/'))
    }

    /// The marker that says every retained discovery message has been heard.
    fn sync_topic(&self) -> String {
        format!("{}/sync", self.topic_prefix)
    }
}

/// What the broker retained under our discovery topics when we connected, as the connection
/// thread hears it; `synced` once our marker came back after them.
#[derive(Debug, Default)]
struct Retained {
    /// Their topics (only the topics matter: their payloads are never kept), at most
    /// [`RETAINED_MAX`].
    configs: std::collections::BTreeSet<String>,
    /// Retained configs beyond the bound, or with topics too long to be ours: passed over.
    ignored: u64,
    synced: bool,
    /// Home Assistant's birth was heard and its re-announcement is not done yet: further births
    /// until then add nothing.
    birth_pending: bool,
}

impl Retained {
    /// Notes a retained config's topic, within the bounds.
    fn hear(&mut self, topic: String) {
        if self.configs.len() < RETAINED_MAX && topic.len() <= TOPIC_MAX {
            self.configs.insert(topic);
        } else {
            self.ignored += 1;
        }
    }
}

/// Home Assistant is re-announced to at most this often, however often it says it is online.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(5);

/// Retained discovery topics under our prefix kept at most (64 packs of 16 cells announce about
/// 1 500): a broker holding more costs a count, never memory.
const RETAINED_MAX: usize = 4096;
/// A discovery topic longer than this is not one of ours.
const TOPIC_MAX: usize = 256;

/// A log line said at most once per [`Throttle::EVERY`], with how many were held back: a flood
/// (a broker repeating a message, a script sending orders in a loop) is counted, not logged line
/// by line.
#[derive(Debug, Default)]
struct Throttle {
    last: Option<Instant>,
    held: u64,
}

impl Throttle {
    const EVERY: Duration = Duration::from_secs(10);

    /// `Some(held back since the last time)` when the line may be said now.
    fn pass(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|t| now.duration_since(t) < Self::EVERY) {
            self.held += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held))
    }
}

/// ` (and N more like it)` for a throttled line that held `n` back.
fn more(n: u64) -> String {
    if n == 0 { String::new() } else { format!(" (and {n} more like it in the last 10 s)") }
}

/// The longest wait for the marker before publishing without it.
const SYNC_WAIT: Duration = Duration::from_secs(3);

/// What the connection thread tells the publisher.
#[derive(Debug)]
enum Note {
    Connected,
    Synced,
    HomeAssistantOnline,
    Command { topic: String, payload: String },
}

impl Note {
    fn what(&self) -> String {
        match self {
            Self::Connected => "the connected note".into(),
            Self::Synced => "the synced note".into(),
            Self::HomeAssistantOnline => "Home Assistant's online note".into(),
            Self::Command { topic, .. } => format!("a command on {topic}"),
        }
    }
}

/// Notes waiting for the publisher at most: a broker flooding the command topics costs dropped
/// commands (logged), never memory, and never stalls the connection.
const NOTES: usize = 64;

/// Hands `n` to the publisher without waiting; what is dropped is logged through `behind`.
fn note(notes: &SyncSender<Note>, n: Note, behind: &mut Throttle) {
    if let Err(TrySendError::Full(n)) = notes.try_send(n) {
        if let Some(held) = behind.pass(Instant::now()) {
            log::warn!("mqtt: the publisher is behind; dropped {}{}", n.what(), more(held));
        }
    }
}

/// Without a CONNACK this long after start, the log says so.
const NO_CONNACK_AFTER: Duration = Duration::from_secs(8);

/// A running publisher.
#[derive(Debug)]
pub struct Publisher {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Publisher {
    /// Starts both threads. It never fails: an unreachable broker is retried with backoff.
    pub fn start(shared: Handle, options: Options) -> Self {
        let mut mqtt = MqttOptions::new(options.client_id.clone(), options.host.clone(), options.port);
        mqtt.set_keep_alive(Duration::from_secs(15))
            .set_clean_session(true)
            .set_max_packet_size(256 * 1024, 256 * 1024)
            .set_last_will(LastWill::new(options.availability(), "offline", QoS::AtLeastOnce, true));
        if let Some((user, password)) = &options.credentials {
            mqtt.set_credentials(user.clone(), password.clone());
        }
        let (client, mut connection) = Client::new(mqtt, 4096);
        let stop = Arc::new(AtomicBool::new(false));
        let retained = Arc::new(std::sync::Mutex::new(Retained::default()));
        let conn_retained = retained.clone();
        let (notes_tx, notes_rx) = mpsc::sync_channel(NOTES);
        let mut threads = Vec::new();
        let conn_stop = stop.clone();
        let conn_options = options.clone();
        let spawned = std::thread::Builder::new().name("mqtt connection".into()).spawn(move || {
            poll_connection(&mut connection, &conn_options, &notes_tx, &conn_retained, &conn_stop);
        });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => log::error!("mqtt: cannot start the connection thread: {e}"),
        }
        let pub_stop = stop.clone();
        let spawned = std::thread::Builder::new().name("mqtt publisher".into()).spawn(move || {
            publish_loop(&client, &shared, &options, &notes_rx, &retained, &pub_stop);
        });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => log::error!("mqtt: cannot start the publisher thread: {e}"),
        }
        Self { stop, threads }
    }

    /// Publishes `offline`, disconnects cleanly and waits for both threads (at most a few seconds).
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Keeps the connection going; reports connections, Home Assistant's birth message and commands.
/// After stop, drains until the disconnect went out (the `offline` before it with it).
fn poll_connection(
    connection: &mut rumqttc::Connection,
    options: &Options,
    notes: &SyncSender<Note>,
    retained: &std::sync::Mutex<Retained>,
    stop: &AtomicBool,
) {
    let control = format!("{}/control/", options.topic_prefix);
    let sync = options.sync_topic();
    let ha_status = format!("{}/status", options.discovery_prefix);
    let mut backoff = Duration::from_millis(500);
    let mut was_connected = false;
    let mut last_failure: Option<String> = None;
    let waiting_since = Instant::now();
    let mut told_no_connack = false;
    let mut drain_until: Option<Instant> = None;
    let mut behind = Throttle::default();
    loop {
        if stop.load(Ordering::Relaxed) && drain_until.is_none() {
            drain_until = Some(Instant::now() + Duration::from_secs(3));
        }
        if drain_until.is_some_and(|t| Instant::now() > t) {
            log::debug!("mqtt: gave up draining the connection");
            return;
        }
        match connection.recv_timeout(Duration::from_millis(200)) {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                log::info!("mqtt: connected to {}:{}", options.host, options.port);
                was_connected = true;
                last_failure = None;
                backoff = Duration::from_millis(500);
                *lock(retained) = Retained::default();
                note(notes, Note::Connected, &mut behind);
            }
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                let payload = String::from_utf8_lossy(&p.payload).trim().to_owned();
                if p.topic == ha_status {
                    // One waiting re-announcement covers any number of births.
                    if payload == "online" && !std::mem::replace(&mut lock(retained).birth_pending, true) {
                        note(notes, Note::HomeAssistantOnline, &mut behind);
                    }
                } else if p.topic == sync {
                    lock(retained).synced = true;
                    note(notes, Note::Synced, &mut behind);
                } else if options.is_discovery(&p.topic) {
                    // Only what the broker kept from before; our own publications come back live.
                    if p.retain && !p.payload.is_empty() {
                        lock(retained).hear(p.topic);
                    }
                } else if p.topic.starts_with(&control) {
                    note(notes, Note::Command { topic: p.topic, payload }, &mut behind);
                }
            }
            Ok(Ok(Event::Outgoing(Outgoing::Disconnect))) if drain_until.is_some() => return,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                if drain_until.is_some() {
                    return;
                }
                if was_connected {
                    log::warn!(
                        "mqtt: connection to {}:{} lost: {e}; reconnecting",
                        options.host,
                        options.port
                    );
                } else {
                    // Said once at warning level (a broker that cannot be reached must not stay
                    // silent), then at debug level while it goes on failing the same way.
                    let why = e.to_string();
                    if last_failure.as_deref() == Some(why.as_str()) {
                        log::debug!("mqtt: cannot connect to {}:{}: {why}", options.host, options.port);
                    } else {
                        log::warn!(
                            "mqtt: cannot connect to {}:{}: {why}; retrying",
                            options.host,
                            options.port
                        );
                        last_failure = Some(why);
                    }
                }
                was_connected = false;
                let until = Instant::now() + backoff;
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            Err(rumqttc::RecvTimeoutError::Timeout) => {
                // Each short wait restarts rumqttc's connect, so its own CONNACK timeout never
                // fires: a port that takes the TCP connection and never answers is told here.
                let waited = waiting_since.elapsed();
                if !was_connected && !told_no_connack && waited >= NO_CONNACK_AFTER {
                    log::warn!(
                        "mqtt: {}:{} sent no CONNACK within {} s (is it an MQTT broker that accepts this client?); still trying",
                        options.host,
                        options.port,
                        waited.as_secs()
                    );
                    told_no_connack = true;
                }
            }
            Err(rumqttc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The publisher's memory: what was last sent where and when.
#[derive(Debug, Default)]
struct Sent {
    states: BTreeMap<String, (String, Instant)>,
    configs: BTreeMap<String, String>,
    /// What the discovery last sent describes.
    shape: Option<Shape>,
    /// Some discovery message could not be queued: try again next second.
    discovery_pending: bool,
}

/// What this connection found retained under our discovery topics, and what of it is still to
/// be removed.
#[derive(Debug, Default)]
struct Before {
    announced: Announced,
    unwanted: BTreeSet<String>,
}

/// What the discovery depends on: the devices and their fixed facts (cell and sensor counts,
/// serial, firmware), not their values.
#[derive(Debug, PartialEq, Eq)]
struct Shape {
    packs: Vec<(usize, usize, Option<String>, Option<String>)>,
    coil: bool,
    inverter: bool,
}

impl Shape {
    fn of(s: &daemon::status::Status) -> Self {
        Self {
            packs: s
                .packs
                .iter()
                .map(|p| (p.cells_mv.len(), p.temps_dc.len(), p.serial.clone(), p.firmware.clone()))
                .collect(),
            coil: s.coil.configured,
            inverter: s.inverter.configured,
        }
    }
}

/// Queues every discovery message that differs from what was sent, and removes (an empty
/// retained config) what is no longer wanted: held by the broker from before, or sent by us for
/// a shape that changed since.
fn publish_discovery(
    client: &Client,
    wanted: &[Entity],
    options: &Options,
    sent: &mut Sent,
    before: &mut Before,
) {
    sent.discovery_pending = false;
    let topics: Vec<(String, String)> = wanted.iter().map(|e| e.discovery(options)).collect();
    let wanted_topics: BTreeSet<&str> = topics.iter().map(|(t, _)| t.as_str()).collect();
    let unwanted: Vec<String> = before
        .unwanted
        .iter()
        .chain(sent.configs.keys())
        .filter(|t| !wanted_topics.contains(t.as_str()))
        .cloned()
        .collect();
    for topic in unwanted {
        match client.try_publish(&topic, QoS::AtLeastOnce, true, Vec::new()) {
            Ok(()) => {
                log::info!("mqtt: removed {topic}, which is no longer wanted");
                before.unwanted.remove(&topic);
                sent.configs.remove(&topic);
            }
            Err(e) => {
                sent.discovery_pending = true;
                log::debug!("mqtt: removal of {topic} not queued: {e}");
            }
        }
    }
    for (topic, payload) in topics {
        before.unwanted.remove(&topic);
        if sent.configs.get(&topic) == Some(&payload) {
            continue;
        }
        match client.try_publish(&topic, QoS::AtLeastOnce, true, payload.clone()) {
            Ok(()) => {
                sent.configs.insert(topic, payload);
            }
            Err(e) => {
                sent.discovery_pending = true;
                log::debug!("mqtt: discovery {topic} not queued: {e}");
            }
        }
    }
}

fn publish_loop(
    client: &Client,
    shared: &Handle,
    options: &Options,
    notes: &Receiver<Note>,
    retained: &std::sync::Mutex<Retained>,
    stop: &AtomicBool,
) {
    let mut sent = Sent::default();
    let mut connected = false;
    let mut syncing: Option<Instant> = None;
    let mut before = Before::default();
    // Kept until carried out: a connection or Home Assistant's birth during the sync wait is
    // not forgotten.
    let mut announce = false;
    let mut last_announce: Option<Instant> = None;
    let mut refused = Throttle::default();
    let availability = options.availability();
    while !stop.load(Ordering::Relaxed) {
        match notes.recv_timeout(Duration::from_secs(1)) {
            Ok(Note::Connected) => {
                connected = true;
                announce = true;
                let mut topics = vec![
                    format!("{}/status", options.discovery_prefix),
                    options.discovery_filter(),
                    options.sync_topic(),
                ];
                if options.allow_control {
                    topics.push(format!("{}/control/+/+", options.topic_prefix));
                }
                for t in topics {
                    if let Err(e) = client.try_subscribe(t, QoS::AtLeastOnce) {
                        log::warn!("mqtt: cannot subscribe: {e}");
                    }
                }
                // The broker handles one client's packets in order: when this comes back, every
                // retained config the subscription above brought has been heard (mosquitto sends
                // them at the SUBACK; a broker that sends them later may be overtaken, and what
                // it had retained is then only announced afresh, never removed).
                if let Err(e) = client.try_publish(options.sync_topic(), QoS::AtLeastOnce, false, "sync") {
                    log::warn!("mqtt: cannot publish the sync marker: {e}");
                }
                syncing = Some(Instant::now());
                if let Err(e) = client.try_publish(&availability, QoS::AtLeastOnce, true, "online") {
                    log::warn!("mqtt: cannot publish availability: {e}");
                }
            }
            Ok(Note::Synced) => {}
            Ok(Note::HomeAssistantOnline) => announce = true,
            Ok(Note::Command { topic, payload }) => command(shared, options, &topic, &payload, &mut refused),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if !connected {
            continue;
        }
        if let Some(since) = syncing {
            let mut r = lock(retained);
            if !r.synced && since.elapsed() < SYNC_WAIT {
                continue;
            }
            if !r.synced {
                log::warn!("mqtt: the broker did not return the sync marker; publishing without it");
            }
            let configs = std::mem::take(&mut r.configs);
            let ignored = std::mem::take(&mut r.ignored);
            drop(r);
            if ignored > 0 {
                log::warn!(
                    "mqtt: the broker holds {ignored} more retained configs under {}/ than pace2pylon announces (at most {RETAINED_MAX} are looked at); the rest are left alone",
                    options.discovery_prefix
                );
            }
            before = Before {
                announced: Announced::from_topics(configs.iter().map(String::as_str), options),
                unwanted: configs.into_iter().collect(),
            };
            syncing = None;
            if let Err(e) = client.try_unsubscribe(options.discovery_filter()) {
                log::debug!("mqtt: cannot unsubscribe from discovery: {e}");
            }
        }
        let status = shared.status();
        if announce && last_announce.is_none_or(|t: Instant| t.elapsed() >= ANNOUNCE_EVERY) {
            sent = Sent::default();
            announce = false;
            last_announce = Some(Instant::now());
            lock(retained).birth_pending = false;
        }
        let wanted = entities(&status, options, &before.announced);
        // Discovery depends only on what the devices are, not on their values: rebuilt when that
        // changes (a cell count or serial number first known), not every second.
        let shape = Shape::of(&status);
        if sent.shape.as_ref() != Some(&shape) || sent.discovery_pending {
            publish_discovery(client, &wanted, options, &mut sent, &mut before);
            sent.shape = Some(shape);
        }
        let now = Instant::now();
        for (topic, payload) in states(&status, options, &wanted) {
            let due = match sent.states.get(&topic) {
                Some((last, at)) => *last != payload || now.duration_since(*at) >= options.state_every,
                None => true,
            };
            if due {
                match client.try_publish(&topic, QoS::AtMostOnce, false, payload.clone()) {
                    Ok(()) => {
                        sent.states.insert(topic, (payload, now));
                    }
                    Err(e) => log::debug!("mqtt: state {topic} not queued: {e}"),
                }
            }
        }
    }
    // A clean shutdown says so; the last will covers the unclean ones.
    if connected {
        let _ = client.try_publish(&availability, QoS::AtLeastOnce, true, "offline");
    }
    let _ = client.try_disconnect();
}

/// Carries out a command from Home Assistant (only with `allow_control`); what is refused or
/// unknown is logged through `refused`.
fn command(shared: &Handle, options: &Options, topic: &str, payload: &str, refused: &mut Throttle) {
    if !options.allow_control {
        return;
    }
    let Some(name) = topic.strip_prefix(&format!("{}/control/", options.topic_prefix)) else {
        return;
    };
    let order = match (name, payload) {
        ("force_disable/set", "ON") => Control::ForceDisable,
        ("force_disable/set", "OFF") => Control::ReleaseForceDisable,
        ("rebalance_start/press", _) => Control::RebalanceStart,
        ("rebalance_cancel/press", _) => Control::RebalanceCancel,
        _ => {
            if let Some(held) = refused.pass(Instant::now()) {
                let shown: String = payload.chars().take(64).collect();
                log::warn!("mqtt: unknown command {topic} = {shown:?}{}", more(held));
            }
            return;
        }
    };
    match shared.control(&order) {
        Ok(done) => log::info!("mqtt: {done}"),
        Err(e) => {
            if let Some(held) = refused.pass(Instant::now()) {
                log::warn!("mqtt: {topic}: {e}{}", more(held));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(discovery: &str, prefix: &str) -> Options {
        Options {
            host: "h".into(),
            port: 1,
            credentials: None,
            client_id: "c".into(),
            discovery_prefix: discovery.into(),
            topic_prefix: prefix.into(),
            allow_control: false,
            state_every: Duration::from_secs(30),
        }
    }

    #[test]
    fn our_discovery_topics_are_told_from_others_whatever_the_prefixes() {
        let o = options("homeassistant", "pace2pylon");
        assert!(o.is_discovery("homeassistant/sensor/pace2pylon/pack1_cell_3/config"));
        assert!(!o.is_discovery("homeassistant/sensor/other/pack1_cell_3/config"));
        assert!(!o.is_discovery("homeassistant/sensor/pace2pylon/pack1/cell_3/config"));
        assert!(!o.is_discovery("homeassistant//pace2pylon/x/config"));
        assert!(!o.is_discovery("homeassistant/sensor/pace2pylon//config"));
        assert!(!o.is_discovery("pace2pylon/pack1/state"));
        let nested = options("ha/discovery", "home/battery");
        assert!(nested.is_discovery("ha/discovery/switch/home/battery/stack_forced_disable/config"));
        assert!(!nested.is_discovery("ha/discovery/switch/home/other/stack_forced_disable/config"));
    }

    #[test]
    fn retained_discovery_is_bounded_in_count_and_topic_size() {
        let mut r = Retained::default();
        for k in 0..RETAINED_MAX + 600 {
            r.hear(format!("homeassistant/sensor/pace2pylon/x{k}/config"));
        }
        r.hear(format!("homeassistant/sensor/pace2pylon/{}/config", "y".repeat(1000)));
        assert_eq!(r.configs.len(), RETAINED_MAX);
        assert_eq!(r.ignored, 601);
    }

    #[test]
    fn a_throttled_line_is_said_once_per_period_with_the_count_held_back() {
        let mut t = Throttle::default();
        let t0 = Instant::now();
        assert_eq!(t.pass(t0), Some(0));
        for k in 1..=1000 {
            assert_eq!(t.pass(t0 + Duration::from_millis(k)), None);
        }
        assert_eq!(t.pass(t0 + Throttle::EVERY), Some(1000));
        assert_eq!(more(1000), " (and 1000 more like it in the last 10 s)");
    }
}
