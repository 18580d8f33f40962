//! The daemon's threads. A dead line, a garbled frame or a silent device never blocks another
//! thread: each device has its own poller, the safety loop only reads what they stored, and the
//! responder answers from the last immutable snapshot.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use link::{AsciiDeframer, Deframer, Link, RtuDeframer};
use maestro_core::Targets;
use translator::respond::{CommLoss, EmulationSettings, Snapshot};

use crate::config::{self, Config};
use crate::core::{Controller, Inputs, Now};
use crate::energy::Meter;
use crate::handle::Handle;
use crate::history;
use crate::keeper::{CoilPoller, InverterPoller};
use crate::poller::{Machine, Note, PackPoller, Problem, Timing};
pub use crate::shared::{
    CoilReadings, Cycle, Hooks, INVERTER_LIVE_COUNT, INVERTER_LIVE_FIRST, InverterReadings,
    LATENCY_BUCKETS_US, Order, Orders, PackReadings, Published, ReplyStats,
};
use crate::shared::{Shared, lock};
use crate::state::{self, EventLog};
use crate::writer::Writer;

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
pub(crate) fn nap(stop: &Stop, d: Duration) {
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
        let (history, history_file) = load_history(&config.state.history_path());
        let energy_on_disk = Arc::new(Mutex::new(lock(&persisted).energy.clone()));
        let writer =
            Writer::start(state_file, persisted.clone(), event_log, history_file, energy_on_disk.clone())
                .map_err(|source| StartError::Thread { name: "writer".into(), source })?;
        let shared = Arc::new(Shared {
            epoch: Instant::now(),
            packs: config.packs.iter().map(|_| Mutex::new(PackReadings::default())).collect(),
            coil: Mutex::new(CoilReadings::default()),
            published: Mutex::new(Arc::new(Published {
                packs: vec![PackReadings::default(); config.packs.len()],
                rebalance: persisted_rebalance.clone(),
                ..Published::default()
            })),
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
            can: Mutex::new(crate::shared::CanReadings::default()),
            history: Mutex::new(history),
            order_rate: Mutex::new(crate::control::OrderRate::default()),
            energy_on_disk,
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
            .chain(config.pylon.iter().map(|p| &p.link))
        {
            link::Endpoint::parse(url)?;
        }
        if let Some(can) = &config.can {
            link::CanBus::open(&can.link)?;
        }
        for (k, pack) in config.packs.iter().enumerate() {
            let (shared, stop2, timing, adr, url) =
                (shared.clone(), stop.clone(), Timing::of(&config), pack.adr, pack.link.clone());
            let name = format!("pack{}", k + 1);
            threads.push(supervise(format!("pack {}", k + 1), stop.clone(), move || {
                if let Ok(link) = open(&url, &name, &shared) {
                    poll_pack(k, adr, link, &shared, &stop2, timing);
                }
            })?);
        }
        if let Some(coil) = &config.coil {
            let (shared, stop2, poll, slave, url) =
                (shared.clone(), stop.clone(), config.poll.clone(), coil.slave, coil.link.clone());
            threads.push(supervise("coil".into(), stop.clone(), move || {
                if let Ok(link) = open(&url, "coil", &shared) {
                    poll_coil(slave, link, &shared, &stop2, &poll);
                }
            })?);
        }
        if let Some(inverter) = &config.inverter {
            let (shared, stop2, slave, url) =
                (shared.clone(), stop.clone(), inverter.slave, inverter.link.clone());
            threads.push(supervise("inverter".into(), stop.clone(), move || {
                if let Ok(link) = open(&url, "inverter", &shared) {
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
        if let Some(pylon) = &config.pylon {
            let settings = emulation_settings(&config);
            let (shared, stop2, url) = (shared.clone(), stop.clone(), pylon.link.clone());
            // A listening port is bound now: one that cannot be is a start-up error, not a
            // daemon the inverter can never reach.
            let mut first = open_pylon(&url, &shared)?;
            first.local_addr()?;
            let first = Mutex::new(Some(first));
            threads.push(supervise("pylon".into(), stop.clone(), move || {
                let link = lock(&first).take().map_or_else(|| open_pylon(&url, &shared), Ok);
                if let Ok(link) = link {
                    respond_loop(link, &settings, &shared, &stop2);
                }
            })?);
        }
        if let Some(can) = &config.can {
            let settings = can_settings(&config);
            let (shared, stop2, can) = (shared.clone(), stop.clone(), can.clone());
            // A listening bus is bound now, as the RS485 port is.
            let mut first = open_can(&can.link, &shared)?;
            first.local_addr()?;
            let first = Mutex::new(Some(first));
            threads.push(supervise("can".into(), stop.clone(), move || {
                let bus = lock(&first).take().map_or_else(|| open_can(&can.link, &shared), Ok);
                if let Ok(bus) = bus {
                    crate::can::drive(bus, &can, &settings, &shared, &stop2);
                }
            })?);
        }
        let threads = std::mem::take(&mut started.threads);
        Ok(Self { shared, stop, threads })
    }

    /// The shared state (readings, decision, snapshot, events).
    pub fn handle(&self) -> Handle {
        Handle::new(self.shared.clone())
    }

    /// The snapshot the responder answers from now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        lock(&self.shared.published).snapshot.clone()
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

/// The link at `url`, tapped by the capture (if one runs) under `name`.
fn open(url: &str, name: &str, shared: &Shared) -> Result<Link, link::Error> {
    let mut link = Link::open(url)?;
    if let Some(capture) = &shared.hooks.capture {
        link.set_tap(capture.tap(name, url));
    }
    Ok(link)
}

/// The inverter's Pylontech line: on a listening port a newer peer takes over only with a
/// request of good checksum.
fn open_pylon(url: &str, shared: &Shared) -> Result<Link, link::Error> {
    let mut link = open(url, "pylon", shared)?;
    link.take_over_on(|| Box::new(link::AsciiDeframer::new()));
    Ok(link)
}

/// The CAN bus at `url`, tapped by the capture (if one runs) as `can`.
fn open_can(url: &str, shared: &Shared) -> Result<link::CanBus, link::Error> {
    let mut bus = link::CanBus::open(url)?;
    if let Some(capture) = &shared.hooks.capture {
        bus.set_tap(capture.tap("can", url));
    }
    Ok(bus)
}

/// The history kept in `path`, cut back to its last 48 hours, and the file to append to; a file
/// that cannot be read is left alone (and not written) this run, and said so.
fn load_history(path: &std::path::Path) -> (history::History, Option<history::HistoryFile>) {
    let now = jiff::Timestamp::now().as_second();
    match history::History::load(path, now) {
        Ok((kept, loaded)) => {
            if loaded.bad > 0 {
                log::warn!(
                    "{}: passed over {} lines that are not samples (they do not parse, or are too long)",
                    path.display(),
                    loaded.bad
                );
            }
            if loaded.out_of_order > 0 {
                log::warn!(
                    "{}: {} lines are dated before the line above them; each is put in its place",
                    path.display(),
                    loaded.out_of_order
                );
            }
            let mut file = history::HistoryFile::new(path.to_owned(), loaded.lines);
            // Rewritten only for what is known bad: lines that are not samples, or beyond 48 h.
            if loaded.needs_rewrite() {
                if let Err(e) = file.rewrite(&kept) {
                    log::warn!(
                        "{}: cannot be written ({e}); the history is kept in memory only",
                        path.display()
                    );
                    return (kept, None);
                }
            }
            (kept, Some(file))
        }
        Err(e) => {
            log::warn!(
                "{}: cannot be read ({e}); the history starts afresh and is not saved",
                path.display()
            );
            (history::History::default(), None)
        }
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

/// What the responder is told by `[pylon]` and `[safety]` (the CAN side uses the same rule 10
/// age and thresholds; without `[pylon]` its keys keep their defaults).
pub fn emulation_settings(config: &Config) -> EmulationSettings {
    let s = &config.safety;
    let version =
        env!("CARGO_PKG_VERSION").split('.').map(|v| v.parse::<u8>().unwrap_or(0)).collect::<Vec<_>>();
    let mut settings = EmulationSettings {
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
        ..EmulationSettings::default()
    };
    if let Some(p) = &config.pylon {
        use translator::respond::{Profile, ReplyAdr, ReplyVer};
        let unit = |u: config::CurrentUnit| match u {
            config::CurrentUnit::CentiAmp => pylon_proto::SystemCurrentUnit::CentiAmp,
            config::CurrentUnit::DeciAmp => pylon_proto::SystemCurrentUnit::DeciAmp,
        };
        let profile = match p.profile {
            config::PylonProfile::Vevor => Profile::Vevor,
            config::PylonProfile::Voltronic => Profile::Voltronic,
            config::PylonProfile::Srne => Profile::Srne,
            config::PylonProfile::Deye => Profile::Deye,
            config::PylonProfile::Generic => Profile::Generic,
        };
        let mut o = profile.options();
        // `check` has refused a reply_ver that does not parse.
        if let Some(ver) = p.reply_ver.as_deref().and_then(|v| config::parse_reply_ver(v).ok()) {
            o.reply_ver = ver.map_or(ReplyVer::Echo, ReplyVer::Fixed);
        }
        if let Some(adr) = p.reply_adr {
            o.reply_adr = match adr {
                config::ReplyAdr::Echo => ReplyAdr::Echo,
                config::ReplyAdr::Master => ReplyAdr::Master,
            };
        }
        o.any_address = p.any_address.unwrap_or(o.any_address);
        o.info_at_adr0 = p.info_at_adr0.unwrap_or(o.info_at_adr0);
        o.system_current_unit = p.system_current_unit.map_or(o.system_current_unit, unit);
        o.management_current_unit = p.management_current_unit.map_or(o.management_current_unit, unit);
        o.positive_discharge_limit = p.positive_discharge_limit.unwrap_or(o.positive_discharge_limit);
        o.stack_at_master = p.stack_at_master.unwrap_or(o.stack_at_master);
        settings.apply(o);
        settings.address = p.address;
        settings.alarm_trailing_byte = p.alarm_trailing_byte;
        settings.on_comm_loss = match p.on_comm_loss {
            config::CommLoss::Disable => CommLoss::Disable,
            config::CommLoss::Silent => CommLoss::Silent,
        };
        settings.device_name.clone_from(&p.device_name);
        settings.manufacturer.clone_from(&p.manufacturer);
    }
    settings
}

/// What the CAN side is told by `[can]` (its own comm-loss policy) and `[safety]` (rule 10's age).
pub fn can_settings(config: &Config) -> translator::can::CanSettings {
    let e = emulation_settings(config);
    let on_comm_loss = match config.can.as_ref().map(|c| c.on_comm_loss) {
        Some(config::CommLoss::Silent) => CommLoss::Silent,
        _ => CommLoss::Disable,
    };
    translator::can::CanSettings {
        manufacturer: config.can.as_ref().map_or_else(|| "PYLON".into(), |c| c.manufacturer.clone()),
        version: (e.version.0, e.version.1),
        decision_max_age_ms: e.decision_max_age_ms,
        on_comm_loss,
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

fn poll_pack(k: usize, adr: u8, mut link: Link, shared: &Shared, stop: &Stop, timing: Timing) {
    let mut poller = PackPoller::new(k + 1, adr, link.name(), timing);
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
    let save_every_ms = (config.state.energy_save_s * 1000.0) as u64;
    let loaded = lock(&shared.persisted).energy.clone();
    let mut meter = Meter::new(loaded, config.packs.len(), shared.now(), save_every_ms);
    let stale_ms = (config.safety.stale_after_s * 1000.0) as u64;
    while !stop.is_stopped() {
        if shared.freeze_safety_loop.load(Ordering::Relaxed) {
            nap(stop, Duration::from_millis(250));
            continue;
        }
        let now = Now { mono: shared.now(), wall: jiff::Timestamp::now() };
        let readings: Vec<PackReadings> = shared.packs.iter().map(|p| lock(p).clone()).collect();
        // Copied out one at a time: never hold one mutex while taking another.
        let coil = lock(&shared.coil).clone();
        let coil_settings = *lock(&shared.coil_settings);
        let inverter = lock(&shared.inverter).clone();
        let overrides = lock(&shared.persisted).overrides.clone();
        // Left queued until the step it makes is published (see `Orders::peek`).
        let order = lock(&shared.orders).peek();
        let inputs = Inputs {
            packs: &readings,
            coil: coil.reading,
            coil_settings,
            inverter: &inverter,
            overrides: &overrides,
            order,
            inverter_silent: config.can.as_ref().is_some_and(|c| {
                c.peer_timeout_disables && crate::can::peer_silent(&lock(&shared.can), c, now.mono)
            }),
        };
        let out = controller.step(now, &inputs);
        let moment = history::moment(&now, &out, &readings, stale_ms);
        let minute = lock(&shared.history).observe(&moment);
        if let Some(sample) = minute {
            shared.writer.history(sample);
        }
        *lock(&shared.targets) = out.targets;
        for (k, command) in out.pack_commands {
            lock(&shared.pack_commands[k]).push(command);
        }
        lock(&shared.coil_actions).extend(out.coil_actions);
        for (text, reasons) in out.events {
            shared.event_with(text, reasons);
        }
        let energy = meter.step(now.mono, &readings, coil.reading);
        if out.persist || energy.is_some() {
            let rebalance = out.rebalance.clone();
            shared.persist(|p| {
                p.rebalance = rebalance;
                if let Some(e) = energy {
                    p.energy = e;
                }
            });
        }
        let published = Published {
            packs: readings,
            can_carry: out.can_carry,
            coil,
            coil_settings,
            inverter,
            snapshot: Arc::new(out.snapshot),
            decision: Some(out.decision),
            limits: Some(out.limits),
            rebalance: out.rebalance,
            energy_source: meter.source(),
        };
        {
            // The queue, then the published step: an order is waiting, or its step is published.
            let mut orders = lock(&shared.orders);
            *lock(&shared.published) = Arc::new(published);
            if order.is_some() {
                orders.pop();
            }
        }
        // Only a loop that decided feeds the service manager's watchdog: a stalled one gets the
        // process restarted.
        if let Some(alive) = &shared.hooks.decided {
            alive();
        }
        // Until the controller's next deadline: its cadence, or a reading going stale.
        nap(stop, Duration::from_millis(controller.poll_timeout().since(shared.now())));
    }
    // What flowed since the last minute's save is kept too.
    let energy = meter.save(shared.now());
    shared.persist(|p| p.energy = energy);
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
                let snapshot = lock(&shared.published).snapshot.clone();
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
