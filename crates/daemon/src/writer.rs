//! The one thread that writes the state file and the event log. Everyone else only enqueues
//! through a bounded channel, so a slow or full disk never holds up the safety loop; the writes
//! (and the log's rotation) happen one at a time, in order.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::shared::lock;
use crate::state::{self, EventLine, EventLog, Persisted};

/// Jobs waiting at most; beyond that an event line is dropped (and counted), never waited for.
const QUEUE: usize = 1024;

enum Job {
    Event(EventLine),
    /// Write the state as it is now (writes asked for while one waits coalesce).
    State,
    /// As `State`, and say how it went.
    StateConfirmed(SyncSender<Result<(), String>>),
    /// Append a minute to the history file.
    History(Box<crate::history::Sample>),
    Stop,
}

/// The handle the daemon's threads enqueue through.
#[derive(Debug)]
pub(crate) struct Writer {
    tx: SyncSender<Job>,
    dirty: Arc<AtomicBool>,
    dropped: AtomicU64,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Event(_) => "Event",
            Self::State => "State",
            Self::StateConfirmed(_) => "StateConfirmed",
            Self::History(_) => "History",
            Self::Stop => "Stop",
        })
    }
}

impl Writer {
    /// Starts the writer thread for `state_file` (from `persisted`), `log` and the history file;
    /// after each state file written, `energy_on_disk` is set to the meters it holds.
    ///
    /// # Errors
    /// The thread cannot be spawned.
    pub(crate) fn start(
        state_file: std::path::PathBuf,
        persisted: Arc<Mutex<Persisted>>,
        log: EventLog,
        mut history: Option<crate::history::HistoryFile>,
        energy_on_disk: Arc<Mutex<crate::energy::Energy>>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE);
        let dirty = Arc::new(AtomicBool::new(false));
        let (flag, dirty_seen) = (dirty.clone(), dirty.clone());
        let save = move || {
            flag.store(false, Ordering::Relaxed);
            let now = lock(&persisted).clone();
            state::save(&state_file, &now).map_err(|e| e.to_string())?;
            // What the status shows of the meters: only what the file holds.
            *lock(&energy_on_disk) = now.energy;
            Ok(())
        };
        let thread = std::thread::Builder::new().name("writer".into()).spawn(move || {
            for job in rx {
                let stop = matches!(job, Job::Stop);
                match job {
                    Job::Event(line) => {
                        if let Err(e) = log.append(&line) {
                            log::warn!("event log: {e}");
                        }
                    }
                    Job::State => {
                        if let Err(e) = save() {
                            log::error!("{e}");
                        }
                    }
                    Job::StateConfirmed(reply) => {
                        let _ = reply.send(save());
                    }
                    Job::History(sample) => {
                        if let Some(file) = &mut history {
                            if let Err(e) = file.append(&sample) {
                                log::warn!("history file: {e}");
                            }
                        }
                    }
                    Job::Stop => {}
                }
                // A write asked for while the queue was full is done now.
                if dirty_seen.load(Ordering::Relaxed) {
                    if let Err(e) = save() {
                        log::error!("{e}");
                    }
                }
                if stop {
                    return;
                }
            }
        })?;
        Ok(Self { tx, dirty, dropped: AtomicU64::new(0), thread: Mutex::new(Some(thread)) })
    }

    /// Enqueues an event line; never waits.
    pub(crate) fn event(&self, line: EventLine) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(Job::Event(line)) {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                log::warn!("event log: the writer is behind; {n} lines dropped so far");
            }
        }
    }

    /// Asks for the state file to be written with the state as it is then; never waits. While
    /// the queue is full the request is kept and done after the next job.
    pub(crate) fn state(&self) {
        self.dirty.store(true, Ordering::Relaxed);
        let _ = self.tx.try_send(Job::State);
    }

    /// Enqueues a minute for the history file; never waits (a full queue drops it: the charts in
    /// memory keep it).
    pub(crate) fn history(&self, sample: crate::history::Sample) {
        let _ = self.tx.try_send(Job::History(Box::new(sample)));
    }

    /// Asks for the state file to be written and returns where the outcome will come; never
    /// waits (the station thread asks, the operator's request waits).
    pub(crate) fn state_confirmed_later(&self) -> mpsc::Receiver<Result<(), String>> {
        let (reply, outcome) = mpsc::sync_channel(1);
        if let Err(
            TrySendError::Full(Job::StateConfirmed(reply))
            | TrySendError::Disconnected(Job::StateConfirmed(reply)),
        ) = self.tx.try_send(Job::StateConfirmed(reply))
        {
            self.dirty.store(true, Ordering::Relaxed);
            let _ = reply.send(Err("the state file writer is behind; the change applies in memory".into()));
        }
        outcome
    }

    /// Writes what is queued and ends the thread.
    pub(crate) fn stop(&self) {
        let _ = self.tx.send(Job::Stop);
        let thread = lock(&self.thread).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}
