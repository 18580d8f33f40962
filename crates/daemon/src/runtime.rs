//! The daemon's threads. A dead line, a garbled frame or a silent device never blocks another
//! thread: each device has its own poller, the safety loop only reads what they stored, and the
//! responder answers from the last immutable snapshot.

use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use link::{AsciiDeframer, Link};
use maestro_core::Millis;
use translator::respond::{CommLoss, EmulationSettings, Snapshot};

use crate::config::{self, Config};
use crate::control::{Control, Refused};
use crate::core::Now;
use crate::handle::Handle;
use crate::history;
use crate::machine::Problem;
pub use crate::shared::{
    CoilReadings, Cycle, Hooks, INVERTER_LIVE_COUNT, INVERTER_LIVE_FIRST, InverterReadings,
    LATENCY_BUCKETS_US, Order, Orders, PackReadings, Published, ReplyStats,
};
use crate::shared::{Shared, lock};
use crate::state::{self, EventLog, Overrides, Persisted};
use crate::station::{Event, LineId, Persist, Station};
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

/// Starts a named thread.
fn spawn(name: String, body: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, StartError> {
    thread::Builder::new()
        .name(name.clone())
        .spawn(body)
        .map_err(|source| StartError::Thread { name, source })
}

/// Runs `body` until it returns; a panic is logged and `body` runs again after a backoff (1 s
/// doubling to 30 s): the station thread starts afresh from the state file as a restarted
/// daemon would.
fn restarting(name: &str, mut body: impl FnMut()) {
    let mut backoff = Duration::from_secs(1);
    while std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut body)).is_err() {
        log::error!("the {name} thread panicked; starting it again in {} s", backoff.as_secs());
        thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Messages the station thread's inbox holds at most (the line threads wait beyond).
const INBOX: usize = 256;

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
        let (inbox, station_inbox) = mpsc::sync_channel(INBOX);
        // The daemon's clock and a capture's time line are one: a replay sees the same times.
        let epoch = hooks.capture.as_ref().map_or_else(Instant::now, |c| c.epoch());
        let shared = Arc::new(Shared {
            epoch,
            published: Mutex::new(Arc::new(Published {
                packs: vec![PackReadings::default(); config.packs.len()],
                rebalance: persisted_rebalance.clone(),
                overrides: lock(&persisted).overrides.clone(),
                ..Published::default()
            })),
            events: Mutex::new(VecDeque::new()),
            inbox,
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
        let mut started = Started { stop: stop.clone(), shared: shared.clone(), threads: Vec::new() };
        let threads = &mut started.threads;
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
        // One thread per device line, moving bytes only; each opens its link itself.
        let urls = config
            .packs
            .iter()
            .enumerate()
            .map(|(k, p)| (LineId::Pack(k), p.link.clone()))
            .chain(config.coil.iter().map(|c| (LineId::Coil, c.link.clone())))
            .chain(config.inverter.iter().map(|i| (LineId::Inverter, i.link.clone())));
        let mut lines = Vec::new();
        for (line, url) in urls {
            let (tx, rx) = mpsc::sync_channel::<Request>(4);
            let shared = shared.clone();
            threads.push(spawn(line.name(), move || line_loop(line, &url, &shared, &rx))?);
            lines.push((line, tx));
        }
        {
            let (shared, config) = (shared.clone(), config.clone());
            threads.push(spawn("station".into(), move || {
                restarting("station", || station_loop(&config, &shared, &persisted, &station_inbox, &lines));
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
        self.shared.set_overrides(overrides).map(|_| ()).map_err(|e| e.to_string())
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
        let _ = self.shared.inbox.send(Inbox::Stop);
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
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Started {
    fn drop(&mut self) {
        if self.threads.is_empty() {
            return;
        }
        self.stop.stop();
        let _ = self.shared.inbox.send(Inbox::Stop);
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

/// A request for a line thread: write these bytes, await the reply until `reply_by`.
#[derive(Debug)]
struct Request {
    seq: u64,
    bytes: Vec<u8>,
    reply_by: Millis,
}

/// The line threads wait this long past the station's own deadline, so a missing reply is
/// always counted by the station (as in the simulated world and the replay); the line's own
/// timeout is only a backstop.
const LINE_GRACE: Duration = Duration::from_millis(20);

/// One device line's thread: it writes what the station asks and hands back what came, or the
/// line's error, with the line's counters. It only moves bytes; it ends when the station thread
/// ends.
fn line_loop(line: LineId, url: &str, shared: &Shared, requests: &Receiver<Request>) {
    let mut link: Option<Link> = None;
    for request in requests {
        let opened = match link.take() {
            Some(l) => Ok(l),
            None => open(url, &line.name(), shared),
        };
        let (outcome, stats, kept) = match opened {
            Ok(mut l) => {
                let timeout = Duration::from_millis(request.reply_by.since(shared.now())) + LINE_GRACE;
                let mut deframer = line.deframer();
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    l.request(&request.bytes, deframer.as_mut(), timeout)
                }));
                match outcome {
                    Ok(outcome) => {
                        let stats = l.stats();
                        (outcome.map_err(|e| e.to_string()), stats, Some(l))
                    }
                    // A link that panicked is dropped and opened afresh for the next request.
                    Err(_) => {
                        (Err(format!("{line}: the line's driver failed; reopening it")), l.stats(), None)
                    }
                }
            }
            Err(e) => (Err(e.to_string()), link::Stats::default(), None),
        };
        link = kept;
        let sent = shared.inbox.send(Inbox::Line { line, seq: request.seq, outcome, stats });
        if sent.is_err() {
            return;
        }
    }
}

/// What reaches the station thread.
#[derive(Debug)]
pub(crate) enum Inbox {
    /// A line thread's exchange: the reply frame or the line's error, and its counters.
    Line { line: LineId, seq: u64, outcome: Result<Vec<u8>, String>, stats: link::Stats },
    /// An operator's order, and where its outcome goes.
    Order(Control, SyncSender<Result<Taken, Refused>>),
    /// The operator's standing orders, whole.
    Overrides(Overrides, SyncSender<Result<Taken, Refused>>),
    /// The inverter's CAN heartbeat arrived.
    Heartbeat,
    /// Fault injection: the controller stops (or goes on) deciding.
    Freeze(bool),
    /// The daemon stops.
    Stop,
}

/// An order the station took: what was done, and the state file write to wait for, if it
/// changed what survives a restart.
#[derive(Debug)]
pub(crate) struct Taken {
    pub(crate) text: String,
    pub(crate) saved: Option<Receiver<Result<(), String>>>,
}

/// The station thread: the one owner of the daemon's machines. It hands the lines' replies and
/// the operator's orders to the [`Station`] with the time, writes what it asks on the line
/// threads, passes its events to the event log, the state file and the history, and publishes
/// its steps. Every decision is the station's; this only moves data.
fn station_loop(
    config: &Config,
    shared: &Shared,
    persisted: &Mutex<Persisted>,
    inbox: &Receiver<Inbox>,
    lines: &[(LineId, SyncSender<Request>)],
) {
    let loaded = lock(persisted).clone();
    let mut station = Station::new(config, &loaded, shared.clock());
    // A capture also holds when the station took the time and each reply (see `replay`).
    let mark = |now: Now, what: &[u8]| {
        if let Some(capture) = &shared.hooks.capture {
            capture.mark(crate::replay::JOURNAL, Duration::from_millis(now.mono.0), what);
        }
    };
    let mut seqs = vec![0u64; lines.len()];
    let mut published = station.published();
    loop {
        let now = shared.clock();
        let ticked = station.poll_timeout() <= now.mono;
        if ticked {
            station.handle_timeout(now);
        }
        let writes: Vec<_> = std::iter::from_fn(|| station.poll_transmit()).collect();
        let saved = pass_on(&mut station, shared, persisted);
        let now_published = station.published();
        if !Arc::ptr_eq(&now_published, &published) {
            published = now_published;
            *lock(&shared.published) = published.clone();
            if let Some(alive) = &shared.hooks.decided {
                alive();
            }
        }
        drop(saved);
        // Marked once published and before anything is written: in the capture, a request of the
        // inverter before the mark was answered from the step before, one after it from this one.
        if ticked {
            mark(now, b"");
        }
        for t in writes {
            if let Some(k) = lines.iter().position(|(id, _)| *id == t.line) {
                seqs[k] += 1;
                let request = Request { seq: seqs[k], bytes: t.bytes, reply_by: t.reply_by };
                // A line thread that is gone is restarted by nothing: its replies stop, and the
                // station counts them missing (rule 2 or 3).
                let _ = lines[k].1.send(request);
            }
        }
        let wait = Duration::from_millis(station.poll_timeout().since(shared.now()));
        match inbox.recv_timeout(wait) {
            Ok(Inbox::Line { line, seq, outcome, stats }) => {
                station.handle_link_stats(line, stats);
                let current = lines.iter().position(|(id, _)| *id == line).map(|k| seqs[k]);
                // What comes back for an exchange the station has given up on is not its reply.
                if current == Some(seq) {
                    let now = shared.clock();
                    match outcome {
                        Ok(frame) => {
                            mark(now, line.name().as_bytes());
                            station.handle_frame(line, now, &frame);
                        }
                        Err(e) => {
                            mark(now, format!("!{line} {e}").as_bytes());
                            station.handle_failure(line, now, Problem::Line(e));
                        }
                    }
                }
            }
            Ok(Inbox::Order(order, reply)) => {
                if let Ok(json) = serde_json::to_string(&order) {
                    mark(shared.clock(), format!("?{json}").as_bytes());
                }
                let outcome = station.handle_order(&order);
                let saved = pass_on(&mut station, shared, persisted);
                let _ = reply.send(outcome.map(|text| Taken { text, saved }));
            }
            Ok(Inbox::Overrides(overrides, reply)) => {
                station.set_overrides(overrides);
                let saved = pass_on(&mut station, shared, persisted);
                let _ = reply.send(Ok(Taken { text: "overrides set".into(), saved }));
            }
            Ok(Inbox::Heartbeat) => {
                let now = shared.clock();
                mark(now, b"^heartbeat");
                station.handle_heartbeat(now);
            }
            Ok(Inbox::Freeze(frozen)) => {
                mark(shared.clock(), if frozen { b"^freeze" } else { b"^thaw" });
                station.freeze(frozen);
            }
            Ok(Inbox::Stop) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
    // What flowed since the last minute's save is kept too.
    let energy = station.save_energy();
    lock(persisted).energy = energy;
    shared.writer.state();
}

/// The station's events to where they go: the event log, the process log, the state file (a
/// change of the operator's orders is written and confirmed: its outcome is returned), the
/// history.
fn pass_on(
    station: &mut Station,
    shared: &Shared,
    persisted: &Mutex<Persisted>,
) -> Option<Receiver<Result<(), String>>> {
    let mut write = false;
    let mut confirm = false;
    while let Some(event) = station.poll_event() {
        match event {
            Event::Log { text, reasons } => shared.event_with(text, reasons),
            Event::Warn(text) => log::warn!("{text}"),
            Event::Persist(change) => {
                confirm |= matches!(change, Persist::Overrides(_));
                let mut p = lock(persisted);
                match change {
                    Persist::Rebalance(r) => p.rebalance = r,
                    Persist::Energy(e) => p.energy = e,
                    Persist::Overrides(o) => p.overrides = o,
                }
                p.version = state::VERSION;
                drop(p);
                write = true;
            }
            Event::History(closed) => {
                let kept = lock(&shared.history).record(closed);
                if let Some(sample) = kept {
                    shared.writer.history(sample);
                }
            }
        }
    }
    if confirm {
        return Some(shared.writer.state_confirmed_later());
    }
    if write {
        shared.writer.state();
    }
    None
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
