//! The state the daemon's threads share: the pollers' mailboxes, the operator's orders, what the
//! last safety-loop cycle published, the event log's recent lines and the writer thread. Every
//! other module reads it; it depends on none of them.

use std::collections::VecDeque;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use maestro_core::{Decision, Millis, Step};
use pace_proto::{PackAnalog, PackStatus, Text};
use translator::PackLimits;
use translator::respond::Snapshot;

use crate::config::Config;
use crate::state::EventLine;
use crate::writer::Writer;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the pollers last read from one pack.
#[derive(Clone, Debug, Default)]
pub struct PackReadings {
    /// Last 0x42 block and when it arrived (shared: copying the readings copies no cells).
    pub analog: Option<(Arc<PackAnalog>, Millis)>,
    /// Last 0x44 block and when it arrived.
    pub status: Option<(Arc<PackStatus>, Millis)>,
    /// Limits read from its configuration.
    pub limits: PackLimits,
    /// Whether all limit reads succeeded once.
    pub limits_read: bool,
    /// C2 serial.
    pub serial: Option<Text>,
    /// C1 version.
    pub version: Option<Text>,
    /// The last problem on its line.
    pub last_error: Option<String>,
    /// The last complete 0x42 + 0x44 exchange.
    pub cycle: Option<Cycle>,
    /// Its line's counters.
    pub link: link::Stats,
}

/// One poll cycle of a pack: how long the 0x42 and 0x44 exchanges took and how many bytes they
/// moved, from which the time the wire alone needs follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cycle {
    /// From the first request written to the last reply parsed.
    pub took: Duration,
    /// Request and reply bytes of both exchanges.
    pub bytes: usize,
}

impl Cycle {
    /// The time `bytes` take at `baud` with 8N1 framing (10 bits a byte).
    pub fn wire_time(&self, baud: u32) -> Duration {
        Duration::from_secs_f64(self.bytes as f64 * 10.0 / f64::from(baud.max(1)))
    }
}

/// The counter's last reading.
#[derive(Clone, Debug, Default)]
pub struct CoilReadings {
    /// Reading and when it arrived.
    pub reading: Option<(coil_modbus::Reading, Millis)>,
    /// Its line's counters.
    pub link: link::Stats,
    /// The last problem on its line.
    pub last_error: Option<String>,
}

/// What the inverter reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InverterReadings {
    /// Register 301.
    pub output_priority: Option<u16>,
    /// Register 331.
    pub charging_priority: Option<u16>,
    /// Live registers from [`INVERTER_LIVE_FIRST`] on, and when they arrived.
    pub live: Option<([u16; INVERTER_LIVE_COUNT as usize], Millis)>,
    /// When 300..=331 were last read.
    pub settings_at: Option<Millis>,
    /// Its line's counters.
    pub link: link::Stats,
    /// The last problem on its line.
    pub last_error: Option<String>,
}

/// First live register the inverter poller reads (working mode).
pub const INVERTER_LIVE_FIRST: u16 = 201;
/// Live registers read, 201..=234.
pub const INVERTER_LIVE_COUNT: u16 = 34;

/// The responder's counters and its reply latency (frame received to reply written).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplyStats {
    /// Replies sent.
    pub replies: u64,
    /// Frames not answered (another address, before the first snapshot, `silent` policy).
    pub unanswered: u64,
    /// Sum of the latencies, µs.
    pub latency_sum_us: u64,
    /// Longest latency, µs.
    pub latency_max_us: u64,
    /// Replies per latency bucket ([`LATENCY_BUCKETS_US`], then the rest).
    pub latency_buckets: [u64; LATENCY_BUCKETS_US.len() + 1],
}

/// Upper bounds of the reply-latency buckets, µs.
pub const LATENCY_BUCKETS_US: [u64; 8] = [100, 250, 500, 1000, 2000, 5000, 10_000, 50_000];

impl ReplyStats {
    pub(crate) fn record(&mut self, latency: Duration) {
        let us = latency.as_micros().min(u128::from(u64::MAX)) as u64;
        self.replies += 1;
        self.latency_sum_us = self.latency_sum_us.saturating_add(us);
        self.latency_max_us = self.latency_max_us.max(us);
        let k = LATENCY_BUCKETS_US.iter().position(|&b| us <= b).unwrap_or(LATENCY_BUCKETS_US.len());
        self.latency_buckets[k] += 1;
    }
}

/// An operator's order for the procedure, waiting for the safety loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Start a rebalance.
    Start,
    /// Cancel the rebalance.
    Cancel,
    /// Force a charging priority (`None` releases it).
    ChargingPriority(Option<u16>),
    /// Switch this pack (1-based), held off by its charge MOSFET, back on by the join rule
    /// (SAFETY.md §2b).
    Join(usize),
}

/// Orders in the order they were given; the safety loop takes one per cycle, so a start and a
/// cancel sent at once end cancelled. Bounded: an order beyond [`Orders::MAX`] is refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Orders {
    queue: VecDeque<Order>,
}

impl Orders {
    /// Orders waiting at most.
    pub const MAX: usize = 32;

    /// Queues `order`; false when the queue is full.
    pub fn push(&mut self, order: Order) -> bool {
        if self.queue.len() >= Self::MAX {
            return false;
        }
        self.queue.push_back(order);
        true
    }

    /// The procedure's step once the waiting orders are carried out, given its step now (a
    /// start makes it run, a cancel makes it idle).
    pub fn step_after(&self, now: Step) -> Step {
        self.queue.iter().fold(now, |step, order| match order {
            Order::Start => Step::Running,
            Order::Cancel => Step::Idle,
            Order::ChargingPriority(_) | Order::Join(_) => step,
        })
    }

    /// The next order, oldest first.
    pub fn pop(&mut self) -> Option<Order> {
        self.queue.pop_front()
    }

    /// The next order, left in the queue (the safety loop removes it once the step it made is
    /// published, so an order is always either waiting or seen in the published step).
    pub fn peek(&self) -> Option<Order> {
        self.queue.front().copied()
    }
}

/// What the CAN driver has seen and sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CanReadings {
    /// The bus's counters.
    pub stats: link::Stats,
    /// Frames sent.
    pub frames_sent: u64,
    /// Sets of frames sent at once because the decision or the limits changed.
    pub urgent_sets: u64,
    /// The inverter's 0x305 heartbeats received.
    pub heartbeats: u64,
    /// When the last one arrived (ms since start).
    pub heartbeat_at: Option<Millis>,
    /// When a Lux inverter last asked the battery to shut down (0x300).
    pub shutdown_request_at: Option<Millis>,
    /// Frames that did not decode (a known id too short, a remote frame).
    pub bad_frames: u64,
    /// The last error of the bus, if it is failing now.
    pub error: Option<String>,
}

/// State shared between the threads.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) epoch: Instant,
    /// What the station's last step saw and decided, swapped whole: the responder, the status,
    /// the web and MQTT read one step, never a mix of two.
    pub published: Mutex<Arc<Published>>,
    /// Recent events, newest last (the last 1000).
    pub events: Mutex<VecDeque<EventLine>>,
    /// The station thread's inbox: the lines' replies, the operator's orders.
    pub(crate) inbox: SyncSender<crate::runtime::Inbox>,
    /// The responder's counters and latencies.
    pub replies: Mutex<ReplyStats>,
    /// The Pylontech line's counters.
    pub pylon_link: Mutex<link::Stats>,
    /// The CAN side's counters and the inverter's heartbeat.
    pub can: Mutex<CanReadings>,
    /// The rate at which operator orders are taken.
    pub order_rate: Mutex<crate::control::OrderRate>,
    /// The last 48 hours in one-minute samples.
    pub history: Mutex<crate::history::History>,
    /// The energy meters as the state file holds them: what the status shows, so a restart,
    /// a crash or a failed write never shows less than was shown.
    pub energy_on_disk: Arc<Mutex<crate::energy::Energy>>,
    /// The configuration the daemon runs with.
    pub config: Config,
    /// When the daemon started (wall clock).
    pub started: jiff::Timestamp,
    /// The one thread writing the state file and the event log.
    pub(crate) writer: Writer,
    pub(crate) hooks: Hooks,
}

/// What one cycle of the safety loop saw and decided: the readings it decided on, the snapshot
/// the responder answers from, the decision, the limits and the procedure's state. Built whole and
/// swapped as one `Arc`.
#[derive(Clone, Debug, Default)]
pub struct Published {
    /// The packs' readings as the controller saw them, pack 1 first.
    pub packs: Vec<PackReadings>,
    /// Whether each pack counted for charging and for discharging (SAFETY.md §2a), as the
    /// controller judged it.
    pub can_carry: Vec<(bool, bool)>,
    /// The counter.
    pub coil: CoilReadings,
    /// The counter's settings as last read or confirmed.
    pub coil_settings: Option<coil_modbus::Settings>,
    /// The inverter.
    pub inverter: InverterReadings,
    /// What the responder answers from.
    pub snapshot: Arc<Snapshot>,
    /// The decision (`None` before the first cycle).
    pub decision: Option<Decision>,
    /// The current limits (`None` before the first cycle).
    pub limits: Option<translator::limits::Limits>,
    /// The rebalance procedure's state.
    pub rebalance: maestro_core::RebalanceState,
    /// Where the stack's energy meter took its last step from.
    pub energy_source: Option<crate::energy::Source>,
    /// The operator's standing orders.
    pub overrides: crate::state::Overrides,
}

impl Shared {
    /// The last cycle's view.
    pub fn published(&self) -> Arc<Published> {
        lock(&self.published).clone()
    }
}

/// What the daemon's embedder wants called.
#[derive(Default)]
pub struct Hooks {
    /// After each decision of the safety loop, on its thread (e.g. to feed systemd's watchdog).
    /// It must return at once.
    pub decided: Option<Box<dyn Fn() + Send + Sync>>,
    /// Every byte of every line (packs, coil, inverter, the Pylontech RS485 port) goes to it.
    pub capture: Option<Arc<link::capture::Recorder>>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("decided", &self.decided.is_some())
            .field("capture", &self.capture.is_some())
            .finish()
    }
}

impl Shared {
    /// Monotonic now.
    pub fn now(&self) -> Millis {
        Millis(self.epoch.elapsed().as_millis() as u64)
    }

    pub(crate) fn event(&self, text: String) {
        self.event_with(text, Vec::new());
    }

    /// Monotonic and wall-clock now, as the station takes the time.
    pub fn clock(&self) -> crate::core::Now {
        crate::core::Now { mono: self.now(), wall: jiff::Timestamp::now() }
    }

    pub(crate) fn event_with(&self, text: String, reasons: Vec<String>) {
        if reasons.is_empty() {
            log::info!("{text}");
        } else {
            log::info!("{text}: {}", reasons.join("; "));
        }
        let line = EventLine { time: wall_clock(), event: text, reasons };
        self.writer.event(line.clone());
        let mut e = lock(&self.events);
        if e.len() >= 1000 {
            e.pop_front();
        }
        e.push_back(line);
    }
}

/// The wall clock as RFC 3339 UTC, for the event log.
fn wall_clock() -> String {
    jiff::Timestamp::now().round(jiff::Unit::Second).map(|t| t.to_string()).unwrap_or_default()
}
