//! The daemon's threads. A dead line, a garbled frame or a silent device never blocks another
//! thread: each device has its own poller, the safety loop only reads what they stored, and the
//! responder answers from the last immutable snapshot.

use std::collections::VecDeque;
use std::sync::Condvar;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use link::{AsciiDeframer, Deframer, Link, RtuDeframer};
use maestro_core::{Action, Decision, Millis, Step, Targets};
use pace_proto::{Command, PackAnalog, PackStatus, Text};
use translator::PackLimits;
use translator::respond::{CommLoss, EmulationSettings, Snapshot};

use crate::config::{self, Config};
use crate::core::{Controller, Inputs, Now};
use crate::keeper::{CoilPoller, InverterPoller};
use crate::poller::{Machine, Note, PackPoller, Problem, Timing};
use crate::state::{self, EventLine, EventLog, Persisted};
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
    fn record(&mut self, latency: Duration) {
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
            Order::ChargingPriority(_) => step,
        })
    }

    /// The next order, oldest first.
    pub fn pop(&mut self) -> Option<Order> {
        self.queue.pop_front()
    }
}

/// State shared between the threads.
#[derive(Debug)]
pub struct Shared {
    epoch: Instant,
    /// One per pack.
    pub packs: Vec<Mutex<PackReadings>>,
    /// The counter.
    pub coil: Mutex<CoilReadings>,
    /// The snapshot the responder answers from, swapped whole.
    pub snapshot: Mutex<Arc<Snapshot>>,
    /// The last decision.
    pub decision: Mutex<Option<Decision>>,
    /// The current limits of SAFETY.md §2a as the last cycle made them (`None` before the first).
    pub limits: Mutex<Option<translator::limits::Limits>>,
    /// Recent events, newest last (the last 1000).
    pub events: Mutex<VecDeque<EventLine>>,
    /// What survives a restart.
    pub persisted: Arc<Mutex<Persisted>>,
    /// Fault injection: while set, the safety loop stops deciding, as a hung loop would (rule 10).
    pub freeze_safety_loop: AtomicBool,
    /// What the inverter reports (registers 301 and 331).
    pub inverter: Mutex<InverterReadings>,
    /// The counter's settings as last read.
    pub coil_settings: Mutex<Option<coil_modbus::Settings>>,
    /// The values the rebalance procedure wants the devices at.
    pub targets: Mutex<Targets>,
    /// One-shot commands for each pack's poller (e.g. 0x9A to unlock it).
    pub pack_commands: Vec<Mutex<Vec<Command>>>,
    /// One-shot actions for the counter.
    pub coil_actions: Mutex<Vec<Action>>,
    /// Operator orders for the procedure, taken by the safety loop in order.
    pub orders: Mutex<Orders>,
    /// The responder's counters and latencies.
    pub replies: Mutex<ReplyStats>,
    /// The Pylontech line's counters.
    pub pylon_link: Mutex<link::Stats>,
    /// The rebalance procedure's state as the safety loop last left it.
    pub rebalance: Mutex<maestro_core::RebalanceState>,
    /// The configuration the daemon runs with.
    pub config: Config,
    /// When the daemon started (wall clock).
    pub started: jiff::Timestamp,
    /// The one thread writing the state file and the event log.
    writer: Writer,
    hooks: Hooks,
}

/// What the daemon's embedder wants called.
#[derive(Default)]
pub struct Hooks {
    /// After each decision of the safety loop, on its thread (e.g. to feed systemd's watchdog).
    /// It must return at once.
    pub decided: Option<Box<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks").field("decided", &self.decided.is_some()).finish()
    }
}

impl Shared {
    /// Monotonic now, since the daemon started.
    pub fn mono(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Monotonic now.
    pub fn now(&self) -> Millis {
        Millis(self.epoch.elapsed().as_millis() as u64)
    }

    pub(crate) fn event(&self, text: String) {
        self.event_with(text, Vec::new());
    }

    /// Changes the operator's orders and writes the state file at once.
    ///
    /// # Errors
    /// The state file cannot be written (the change still applies in memory).
    pub fn set_overrides(&self, overrides: state::Overrides) -> Result<(), String> {
        self.event(format!("operator: {overrides:?}"));
        self.persist_confirmed(|p| p.overrides = overrides)
    }

    /// Changes what survives a restart and asks the writer thread to write the state file; never
    /// waits for the disk (the safety loop calls it).
    pub(crate) fn persist(&self, change: impl FnOnce(&mut Persisted)) {
        Self::change(&self.persisted, change);
        self.writer.state();
    }

    /// As [`Shared::persist`], and waits for the state file to be written (an operator's order
    /// is told whether it was saved).
    pub(crate) fn persist_confirmed(&self, change: impl FnOnce(&mut Persisted)) -> Result<(), String> {
        Self::change(&self.persisted, change);
        self.writer.state_confirmed()
    }

    fn change(persisted: &Mutex<Persisted>, change: impl FnOnce(&mut Persisted)) {
        let mut p = lock(persisted);
        change(&mut p);
        p.version = 1;
    }

    fn event_with(&self, text: String, reasons: Vec<String>) {
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

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A link URL that cannot be used.
    #[error(transparent)]
    Link(#[from] link::Error),
    /// The state file.
    #[error(transparent)]
    State(#[from] state::Error),
    /// A thread that cannot be started: the daemon does not run without it.
    #[error("cannot start the {name} thread: {source}")]
    Thread {
        /// Which thread.
        name: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A running daemon.
#[derive(Debug)]
pub struct Daemon {
    shared: Arc<Shared>,
    stop: Arc<Stop>,
    threads: Vec<JoinHandle<()>>,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Runs `body` on its own thread; if it panics, logs it and runs it again after a backoff (1 s
/// doubling to 30 s), until `stop`. A normal return ends the thread.
///
/// # Errors
/// [`StartError::Thread`] naming it when the thread cannot be spawned.
pub fn supervise(
    name: String,
    stop: Arc<Stop>,
    body: impl Fn() + Send + 'static,
) -> Result<JoinHandle<()>, StartError> {
    let thread_name = name.clone();
    thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let mut backoff = Duration::from_secs(1);
            loop {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(&body));
                if result.is_ok() || stop.is_stopped() {
                    return;
                }
                log::error!("thread {name} panicked; restarting it in {} s", backoff.as_secs());
                nap(&stop, backoff);
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        })
        .map_err(|source| StartError::Thread { name: thread_name, source })
}

/// The daemon's stop signal. Threads sleep on it until their next deadline and wake at once
/// when it is given: no thread wakes up just to look at a flag.
#[derive(Debug, Default)]
pub struct Stop {
    stopped: Mutex<bool>,
    given: Condvar,
}

impl Stop {
    /// A signal not yet given.
    pub fn new() -> Self {
        Self::default()
    }

    /// Gives it: every sleeper wakes.
    pub fn stop(&self) {
        *lock(&self.stopped) = true;
        self.given.notify_all();
    }

    /// Whether it was given.
    pub fn is_stopped(&self) -> bool {
        *lock(&self.stopped)
    }

    /// Sleeps up to `d`; true when the signal was given (before or while sleeping).
    pub fn sleep(&self, d: Duration) -> bool {
        let guard = lock(&self.stopped);
        let (guard, _) = self
            .given
            .wait_timeout_while(guard, d, |stopped| !*stopped)
            .unwrap_or_else(PoisonError::into_inner);
        *guard
    }
}

/// Sleeps up to `d`, waking early when asked to stop.
fn nap(stop: &Stop, d: Duration) {
    stop.sleep(d);
}

impl Daemon {
    /// Starts every thread. Links open lazily: a dead line makes its device stale, not the start
    /// fail; a listening Pylontech port is bound now.
    ///
    /// # Errors
    /// A corrupt or unreadable state file (never replaced silently), a link URL that cannot be
    /// used, a Pylontech port that cannot be bound, or a thread that cannot be started: each named.
    pub fn start(config: Config) -> Result<Self, StartError> {
        Self::start_with(config, Hooks::default())
    }

    /// As [`Daemon::start`], with `hooks` called as they say.
    ///
    /// # Errors
    /// As [`Daemon::start`].
    pub fn start_with(config: Config, hooks: Hooks) -> Result<Self, StartError> {
        let state_file = std::path::PathBuf::from(&config.state.state_file);
        let persisted = state::load(&state_file)?;
        let persisted_rebalance = persisted.rebalance.clone();
        state::remove_leftover_temp(&state_file);
        let event_log = EventLog::new(
            config.state.event_log.clone().into(),
            config.state.event_log_max_bytes,
            config.state.event_log_keep,
        );
        event_log.repair_torn_line()?;
        let persisted = Arc::new(Mutex::new(persisted));
        let writer = Writer::start(state_file, persisted.clone(), event_log)
            .map_err(|source| StartError::Thread { name: "writer".into(), source })?;
        let shared = Arc::new(Shared {
            epoch: Instant::now(),
            packs: config.packs.iter().map(|_| Mutex::new(PackReadings::default())).collect(),
            coil: Mutex::new(CoilReadings::default()),
            snapshot: Mutex::new(Arc::new(Snapshot::default())),
            decision: Mutex::new(None),
            limits: Mutex::new(None),
            events: Mutex::new(VecDeque::new()),
            persisted,
            freeze_safety_loop: AtomicBool::new(false),
            inverter: Mutex::new(InverterReadings::default()),
            coil_settings: Mutex::new(None),
            targets: Mutex::new(Targets::default()),
            pack_commands: config.packs.iter().map(|_| Mutex::new(Vec::new())).collect(),
            coil_actions: Mutex::new(Vec::new()),
            orders: Mutex::new(Orders::default()),
            replies: Mutex::new(ReplyStats::default()),
            pylon_link: Mutex::new(link::Stats::default()),
            rebalance: Mutex::new(persisted_rebalance),
            config: config.clone(),
            started: jiff::Timestamp::now(),
            writer,
            hooks,
        });
        shared.event(format!(
            "pace2pylon {} started with {} packs",
            env!("CARGO_PKG_VERSION"),
            config.packs.len()
        ));
        let stop = Arc::new(Stop::new());
        let mut started = Started { stop: stop.clone(), threads: Vec::new() };
        let threads = &mut started.threads;
        // Every worker opens its link itself, so a restarted worker starts clean.
        for url in config
            .packs
            .iter()
            .map(|p| &p.link)
            .chain(config.coil.iter().map(|c| &c.link))
            .chain([&config.pylon.link])
        {
            link::Endpoint::parse(url)?;
        }
        for (k, pack) in config.packs.iter().enumerate() {
            let (shared, stop2, poll, adr, url) =
                (shared.clone(), stop.clone(), config.poll.clone(), pack.adr, pack.link.clone());
            threads.push(supervise(format!("pack {}", k + 1), stop.clone(), move || {
                if let Ok(link) = Link::open(&url) {
                    poll_pack(k, adr, link, &shared, &stop2, &poll);
                }
            })?);
        }
        if let Some(coil) = &config.coil {
            let (shared, stop2, poll, slave, url) =
                (shared.clone(), stop.clone(), config.poll.clone(), coil.slave, coil.link.clone());
            threads.push(supervise("coil".into(), stop.clone(), move || {
                if let Ok(link) = Link::open(&url) {
                    poll_coil(slave, link, &shared, &stop2, &poll);
                }
            })?);
        }
        if let Some(inverter) = &config.inverter {
            let (shared, stop2, slave, url) =
                (shared.clone(), stop.clone(), inverter.slave, inverter.link.clone());
            threads.push(supervise("inverter".into(), stop.clone(), move || {
                if let Ok(link) = Link::open(&url) {
                    poll_inverter(slave, link, &shared, &stop2);
                }
            })?);
        }
        {
            let (shared, stop2, config) = (shared.clone(), stop.clone(), config.clone());
            threads.push(supervise("safety".into(), stop.clone(), move || {
                safety_loop(&config, &shared, &stop2)
            })?);
        }
        {
            let settings = emulation_settings(&config);
            let (shared, stop2, url) = (shared.clone(), stop.clone(), config.pylon.link.clone());
            // A listening port is bound now: one that cannot be is a start-up error, not a
            // daemon the inverter can never reach.
            let mut first = Link::open(&url)?;
            first.local_addr()?;
            let first = Mutex::new(Some(first));
            threads.push(supervise("pylon".into(), stop.clone(), move || {
                let link = lock(&first).take().map_or_else(|| Link::open(&url), Ok);
                if let Ok(link) = link {
                    respond_loop(link, &settings, &shared, &stop2);
                }
            })?);
        }
        let threads = std::mem::take(&mut started.threads);
        Ok(Self { shared, stop, threads })
    }

    /// The shared state (readings, decision, snapshot, events).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The snapshot the responder answers from now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        lock(&self.shared.snapshot).clone()
    }

    /// Changes the operator's orders and writes the state file at once.
    ///
    /// # Errors
    /// The state file cannot be written (the change still applies in memory).
    pub fn set_overrides(&self, overrides: state::Overrides) -> Result<(), String> {
        self.shared.set_overrides(overrides)
    }

    /// Asks the safety loop to start a rebalance (the same path as the API's order).
    ///
    /// # Errors
    /// As [`Daemon::control`].
    pub fn rebalance_start(&self) -> Result<String, crate::control::Refused> {
        self.control(&crate::control::Control::RebalanceStart)
    }

    /// Asks the safety loop to cancel the rebalance (the same path as the API's order).
    ///
    /// # Errors
    /// As [`Daemon::control`].
    pub fn rebalance_cancel(&self) -> Result<String, crate::control::Refused> {
        self.control(&crate::control::Control::RebalanceCancel)
    }

    /// Carries out an operator's order (from the API, MQTT or a test); says what was done.
    ///
    /// # Errors
    /// [`crate::control::Refused`] naming why the order cannot be carried out.
    pub fn control(&self, order: &crate::control::Control) -> Result<String, crate::control::Refused> {
        self.shared.control(order)
    }

    /// Stops every thread and waits for them.
    pub fn stop(self) {
        self.stop.stop();
        for t in self.threads {
            let _ = t.join();
        }
        self.shared.event("pace2pylon stopped".into());
        self.shared.writer.stop();
    }
}

/// The threads started so far: stopped and joined if start-up fails half-way, so a failed start
/// leaves nothing running.
struct Started {
    stop: Arc<Stop>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Started {
    fn drop(&mut self) {
        if self.threads.is_empty() {
            return;
        }
        self.stop.stop();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// What the responder is told by `[pylon]` and `[safety]`.
pub fn emulation_settings(config: &Config) -> EmulationSettings {
    let p = &config.pylon;
    let s = &config.safety;
    let version =
        env!("CARGO_PKG_VERSION").split('.').map(|v| v.parse::<u8>().unwrap_or(0)).collect::<Vec<_>>();
    EmulationSettings {
        address: p.address,
        any_address: p.any_address,
        system_current_unit: match p.system_current_unit {
            config::CurrentUnit::CentiAmp => pylon_proto::SystemCurrentUnit::CentiAmp,
            config::CurrentUnit::DeciAmp => pylon_proto::SystemCurrentUnit::DeciAmp,
        },
        positive_discharge_limit: p.positive_discharge_limit,
        alarm_trailing_byte: p.alarm_trailing_byte,
        on_comm_loss: match p.on_comm_loss {
            config::CommLoss::Disable => CommLoss::Disable,
            config::CommLoss::Silent => CommLoss::Silent,
        },
        device_name: p.device_name.clone(),
        manufacturer: p.manufacturer.clone(),
        version: (
            version.first().copied().unwrap_or(0),
            version.get(1).copied().unwrap_or(0),
            version.get(2).copied().unwrap_or(0),
        ),
        cell_ov_mv: s.cell_ov_mv,
        cell_uv_mv: s.cell_uv_mv,
        cell_ot_dc: (s.cell_ot_c * 10.0).round() as i32,
        cell_cold_charge_dc: (s.cell_cold_charge_c * 10.0).round() as i32,
        cell_cold_discharge_dc: (s.cell_cold_discharge_c * 10.0).round() as i32,
        decision_max_age_ms: (s.decision_max_age_s * 1000.0) as u64,
    }
}

/// Drives one poller on its line until `stop`: writes what it asks, waits for the reply or its
/// deadline, passes its notes on, and after every exchange lets `publish` copy out what it read.
/// The thread sleeps until the machine's next deadline: nothing wakes it in between but a stop.
fn drive<M: Machine>(
    machine: &mut M,
    link: &mut Link,
    deframer: &dyn Fn() -> Box<dyn Deframer>,
    shared: &Shared,
    stop: &Stop,
    mut before: impl FnMut(&mut M),
    mut publish: impl FnMut(&M),
) {
    while !stop.is_stopped() {
        before(machine);
        let now = shared.mono();
        match machine.poll_transmit(now) {
            Some(frame) => {
                let timeout = machine.poll_timeout().saturating_sub(now);
                match link.request(&frame, deframer().as_mut(), timeout) {
                    Ok(reply) => machine.handle_frame(shared.mono(), &reply),
                    Err(e) => machine.handle_failure(shared.mono(), Problem::Line(e.to_string())),
                }
            }
            None => {
                let wait = machine.poll_timeout().saturating_sub(now);
                if !wait.is_zero() {
                    nap(stop, wait);
                }
                machine.handle_timeout(shared.mono());
            }
        }
        while let Some(note) = machine.poll_note() {
            match note {
                Note::Event(text) => shared.event(text),
                Note::Warn(text) => log::warn!("{text}"),
                Note::BadFrame => link.count_bad_frame(),
            }
        }
        machine.set_link_stats(link.stats());
        publish(machine);
    }
}

fn poll_pack(k: usize, adr: u8, mut link: Link, shared: &Shared, stop: &Stop, poll: &config::Poll) {
    let mut poller = PackPoller::new(k + 1, adr, link.name(), Timing::of(poll));
    let ascii = || Box::new(AsciiDeframer::new()) as Box<dyn Deframer>;
    drive(
        &mut poller,
        &mut link,
        &ascii,
        shared,
        stop,
        |p| {
            let commands = std::mem::take(&mut *lock(&shared.pack_commands[k]));
            for command in commands {
                p.command(command);
            }
        },
        |p| lock(&shared.packs[k]).clone_from(p.readings()),
    );
}

fn rtu() -> Box<dyn Deframer> {
    Box::new(RtuDeframer::new(modbus_rtu::Side::Response))
}

fn poll_coil(slave: u8, mut link: Link, shared: &Shared, stop: &Stop, poll: &config::Poll) {
    let timeout = secs(poll.timeout_s.max(0.5));
    let mut poller = CoilPoller::new(slave, link.name(), secs(poll.period_s), timeout);
    drive(
        &mut poller,
        &mut link,
        &rtu,
        shared,
        stop,
        |p| {
            // Copied out: the safety loop sets the targets every cycle and never waits for a write.
            let target = lock(&shared.targets).coil;
            p.set_target(target);
            let actions = std::mem::take(&mut *lock(&shared.coil_actions));
            for action in actions {
                p.act(action);
            }
        },
        |p| {
            lock(&shared.coil).clone_from(p.readings());
            *lock(&shared.coil_settings) = p.settings();
        },
    );
}

/// The inverter: reads 301 and 331 every 2 s and keeps them at the rebalance targets, writing only
/// when they differ and confirming by reading back; a failed write is reported and retried.
fn poll_inverter(slave: u8, mut link: Link, shared: &Shared, stop: &Stop) {
    let mut poller = InverterPoller::new(slave, link.name());
    drive(
        &mut poller,
        &mut link,
        &rtu,
        shared,
        stop,
        |p| {
            let t = *lock(&shared.targets);
            p.set_targets(t.output_priority, t.charging_priority);
        },
        |p| lock(&shared.inverter).clone_from(p.readings()),
    );
}

/// The safety loop's driver: it gathers what the pollers and the operator left, hands it to the
/// [`Controller`] with the clocks, and carries out what comes back. Every decision is the
/// controller's; this only moves data.
fn safety_loop(config: &Config, shared: &Shared, stop: &Stop) {
    let mut controller = Controller::new(config, lock(&shared.persisted).rebalance.clone());
    while !stop.is_stopped() {
        if shared.freeze_safety_loop.load(Ordering::Relaxed) {
            nap(stop, Duration::from_millis(250));
            continue;
        }
        let now = Now { mono: shared.now(), wall: jiff::Timestamp::now() };
        let readings: Vec<PackReadings> = shared.packs.iter().map(|p| lock(p).clone()).collect();
        // Copied out one at a time: never hold one mutex while taking another.
        let coil = lock(&shared.coil).reading;
        let coil_settings = *lock(&shared.coil_settings);
        let inverter = lock(&shared.inverter).clone();
        let overrides = lock(&shared.persisted).overrides.clone();
        let order = lock(&shared.orders).pop();
        let inputs = Inputs {
            packs: &readings,
            coil,
            coil_settings,
            inverter: &inverter,
            overrides: &overrides,
            order,
        };
        let out = controller.step(now, &inputs);
        (*lock(&shared.rebalance)).clone_from(&out.rebalance);
        *lock(&shared.targets) = out.targets;
        for (k, command) in out.pack_commands {
            lock(&shared.pack_commands[k]).push(command);
        }
        lock(&shared.coil_actions).extend(out.coil_actions);
        for (text, reasons) in out.events {
            shared.event_with(text, reasons);
        }
        if out.persist {
            shared.persist(|p| p.rebalance = out.rebalance);
        }
        *lock(&shared.snapshot) = Arc::new(out.snapshot);
        *lock(&shared.decision) = Some(out.decision);
        *lock(&shared.limits) = Some(out.limits);
        // Only a loop that decided feeds the service manager's watchdog: a stalled one gets the
        // process restarted.
        if let Some(alive) = &shared.hooks.decided {
            alive();
        }
        nap(stop, Duration::from_millis(250));
    }
}

fn respond_loop(mut link: Link, settings: &EmulationSettings, shared: &Shared, stop: &Stop) {
    let mut deframer = AsciiDeframer::new();
    while !stop.is_stopped() {
        // Woken by a frame or, twice a second, to see whether the daemon stops.
        let received = link.receive(&mut deframer, Instant::now() + Duration::from_millis(500));
        *lock(&shared.pylon_link) = link.stats();
        match received {
            Ok(Some(frame)) => {
                let arrived = Instant::now();
                let snapshot = lock(&shared.snapshot).clone();
                match translator::respond::respond(&snapshot, &frame, settings, shared.now().0) {
                    Some(reply) => match link.send(&reply) {
                        Ok(()) => lock(&shared.replies).record(arrived.elapsed()),
                        Err(e) => log::warn!("pylon: {e}"),
                    },
                    None => lock(&shared.replies).unanswered += 1,
                }
            }
            Ok(None) => {}
            Err(e) => {
                log::debug!("pylon: {e}");
                nap(stop, Duration::from_millis(200));
            }
        }
    }
}
