//! A capture run again, offline: the daemon's own pollers are fed the replies as they were
//! captured, at the times they were captured, and the controller decides on what they read, as
//! the safety loop did. So a capture from a user's strange pack or inverter becomes a test: what
//! the replay decides, and what it would have answered the inverter, can be compared with the
//! live run's event log and the answers it sent.
//!
//! Each line of the capture goes to the machine its name says (`packN`, `coil`, `inverter`);
//! a write the replayed machine would not have made is reported ([`Seen::Diverged`]) and the
//! capture's bytes go on regardless. On `pylon`, each request of the inverter is answered by the
//! translator from the replayed snapshot and compared with the answer the live run sent.
//!
//! What the capture cannot hold is assumed: no operator orders (they are in the event log, not
//! on a line), and the state file as a fresh start.

use std::time::Duration;

use link::capture::{Dir, Record};
use link::{AsciiDeframer, Deframer, RtuDeframer};
use maestro_core::Millis;
use pace_proto::{Reply, Request, Response};
use translator::respond::{EmulationSettings, Snapshot};

use crate::config::Config;
use crate::core::{Controller, Inputs, Now, STEP_EVERY_MS};
use crate::keeper::{CoilPoller, InverterPoller};
use crate::poller::{Machine, Note, PackPoller, Timing};
use crate::shared::{InverterReadings, PackReadings};
use crate::state::Overrides;

/// What the replay saw and did, in time order.
#[derive(Clone, Debug, PartialEq)]
pub enum Seen {
    /// One exchange on a line: what was asked and what came back, in words.
    Exchange {
        /// Since the capture began.
        t: Duration,
        /// The line's name.
        link: String,
        /// The request.
        asked: String,
        /// The reply, `no reply`, or what was wrong with it.
        answer: String,
    },
    /// An event of the replayed daemon, as the live one writes it in its event log (the
    /// decisions among them: `charge enabled, discharge disabled` with the reasons).
    Event {
        /// Since the capture began.
        t: Duration,
        /// The text.
        text: String,
        /// The reasons it carries.
        reasons: Vec<String>,
    },
    /// The capture holds a write the replayed machine would not have made at that time.
    Diverged {
        /// Since the capture began.
        t: Duration,
        /// The line.
        link: String,
        /// What the capture holds, hex.
        captured: String,
        /// What the replay would have written, hex (empty: nothing was due).
        replayed: String,
    },
    /// The inverter was answered otherwise than the replay would have answered.
    AnswerDiffers {
        /// Since the capture began.
        t: Duration,
        /// The request, in words.
        asked: String,
        /// The live run's answer, hex.
        captured: String,
        /// The replay's, hex (empty: it would not have answered).
        replayed: String,
    },
}

impl Seen {
    /// When, since the capture began.
    pub fn t(&self) -> Duration {
        match self {
            Self::Exchange { t, .. }
            | Self::Event { t, .. }
            | Self::Diverged { t, .. }
            | Self::AnswerDiffers { t, .. } => *t,
        }
    }
}

/// The longest stretch without a record that the replay steps through: past it (a record dated
/// far ahead, a capture resumed after days), it warns and jumps, shifting the later records back,
/// so one wrong time stamp cannot hold it for weeks.
pub const MAX_GAP: Duration = Duration::from_secs(600);

/// The replay's counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Records taken in.
    pub records: usize,
    /// Exchanges on the device lines.
    pub exchanges: usize,
    /// Writes the replayed machines would not have made.
    pub diverged: usize,
    /// The inverter's requests answered in the capture.
    pub answers: usize,
    /// Of them, answered byte for byte as the replay would have.
    pub answers_same: usize,
    /// Records of lines the configuration does not name.
    pub unknown_link: usize,
    /// Records of the CAN bus: captured, not replayed (the inverter's CAN side is not run again).
    pub can: usize,
    /// Controller steps.
    pub steps: usize,
}

/// A device line being replayed.
struct Line<M> {
    name: String,
    machine: M,
    deframer: Box<dyn Deframer>,
    /// The exchange in flight: its deadline, the request in words and its CID2 (Pace).
    awaiting: Option<(Duration, String, Option<u8>)>,
}

impl<M: Machine> Line<M> {
    fn new(name: &str, machine: M, deframer: Box<dyn Deframer>) -> Self {
        Self { name: name.to_owned(), machine, deframer, awaiting: None }
    }

    fn deadline(&self) -> Option<Duration> {
        self.awaiting.as_ref().map(|(d, _, _)| *d)
    }

    /// The deadline passed without a reply (a frame that needs a quiet gap gets it first).
    fn time_out(&mut self, now: Duration, seen: &mut dyn FnMut(Seen)) {
        if let Some(frame) = self.deframer.gap() {
            return self.frame(now, &frame, seen);
        }
        if let Some((deadline, asked, _)) = self.awaiting.take() {
            self.machine.handle_timeout(deadline.max(now));
            self.deframer.clear();
            seen(Seen::Exchange { t: now, link: self.name.clone(), asked, answer: "no reply".into() });
        }
    }

    fn frame(&mut self, now: Duration, frame: &[u8], seen: &mut dyn FnMut(Seen)) {
        match self.awaiting.take() {
            Some((_, asked, cid2)) => {
                self.machine.handle_frame(now, frame);
                let answer = describe_reply(cid2, frame);
                seen(Seen::Exchange { t: now, link: self.name.clone(), asked, answer });
            }
            None => self.machine.handle_frame(now, frame),
        }
    }

    fn record(&mut self, r: &Record, summary: &mut Summary, seen: &mut dyn FnMut(Seen)) {
        match r.dir {
            Dir::Tx => {
                if self.awaiting.is_some() {
                    self.time_out(r.t, seen);
                }
                // The machine's own deadline may lie a hair after the captured write (the live
                // thread woke a little late or early): it is given up to 50 ms.
                let mut wrote = self.machine.poll_transmit(r.t);
                if wrote.is_none() {
                    let due = self.machine.poll_timeout();
                    if due <= r.t + Duration::from_millis(50) {
                        wrote = self.machine.poll_transmit(due.max(r.t));
                    }
                }
                let replayed = wrote.unwrap_or_default();
                if replayed != r.bytes {
                    summary.diverged += 1;
                    seen(Seen::Diverged {
                        t: r.t,
                        link: self.name.clone(),
                        captured: hex(&r.bytes),
                        replayed: hex(&replayed),
                    });
                }
                summary.exchanges += 1;
                let deadline = self.machine.poll_timeout().max(r.t);
                self.deframer.clear();
                let cid2 = Request::parse(&r.bytes).ok().map(|q| q.command.cid2());
                self.awaiting = Some((deadline, describe_request(&r.bytes), cid2));
            }
            Dir::Rx => {
                let mut rest = r.bytes.as_slice();
                loop {
                    let k = self.deframer.push(rest);
                    rest = &rest[k..];
                    while let Some(frame) = self.deframer.next_frame() {
                        self.frame(r.t, &frame, seen);
                    }
                    if rest.is_empty() || k == 0 {
                        break;
                    }
                }
            }
        }
        while let Some(note) = self.machine.poll_note() {
            if let Note::Event(text) = note {
                seen(Seen::Event { t: r.t, text, reasons: Vec::new() });
            }
        }
    }
}

/// The inverter's side: requests in, answers out.
struct Pylon {
    settings: EmulationSettings,
    deframer: AsciiDeframer,
    /// The last request and what the replay would answer it.
    pending: Option<(String, Option<Vec<u8>>)>,
}

fn duration(t: Millis) -> Duration {
    Duration::from_millis(t.0)
}

fn millis(t: Duration) -> Millis {
    Millis(t.as_millis() as u64)
}

/// Runs `records` (in capture order) through the daemon of `config`; `wall0` is the wall clock
/// of the capture's `t = 0`. Tells `seen` everything as it happens; returns the counts.
pub fn run(
    config: &Config,
    wall0: jiff::Timestamp,
    records: &[Record],
    mut seen: impl FnMut(Seen),
) -> Summary {
    let seen: &mut dyn FnMut(Seen) = &mut seen;
    let mut summary = Summary::default();
    let timing = Timing::of(config);
    let mut packs: Vec<Line<PackPoller>> = config
        .packs
        .iter()
        .enumerate()
        .map(|(k, p)| {
            let machine = PackPoller::new(k + 1, p.adr, p.link.clone(), timing);
            Line::new(&format!("pack{}", k + 1), machine, Box::new(AsciiDeframer::new()))
        })
        .collect();
    let rtu = || Box::new(RtuDeframer::new(modbus_rtu::Side::Response)) as Box<dyn Deframer>;
    let secs = |s: f64| Duration::from_secs_f64(s.max(0.0));
    let mut coil = config.coil.as_ref().map(|c| {
        let timeout = secs(config.poll.timeout_s.max(0.5));
        let machine = CoilPoller::new(c.slave, c.link.clone(), secs(config.poll.period_s), timeout);
        Line::new("coil", machine, rtu())
    });
    let mut inverter = config
        .inverter
        .as_ref()
        .map(|i| Line::new("inverter", InverterPoller::new(i.slave, i.link.clone()), rtu()));
    let mut pylon = config.pylon.as_ref().map(|_| Pylon {
        settings: crate::runtime::emulation_settings(config),
        deframer: AsciiDeframer::new(),
        pending: None,
    });
    let mut controller = Controller::new(config, maestro_core::RebalanceState::default());
    let mut snapshot = Snapshot::default();
    let overrides = Overrides::default();
    let mut readings: Vec<PackReadings> = vec![PackReadings::default(); config.packs.len()];
    let mut next_step = Duration::ZERO;
    let no_inverter = InverterReadings::default();

    // Time jumped over so far: later records are replayed this much earlier.
    let mut shift = Duration::ZERO;
    let mut last = Duration::ZERO;
    let mut shifted;
    for r in records {
        summary.records += 1;
        let t = r.t.saturating_sub(shift);
        let r = if t > last + MAX_GAP {
            let jump = t - last - MAX_GAP;
            shift += jump;
            seen(Seen::Event {
                t: last,
                text: format!(
                    "the capture holds nothing for {:.0} s here; the replay jumps over all but {} s of it \
                     (later times are shown {:.0} s earlier)",
                    (t - last).as_secs_f64(),
                    MAX_GAP.as_secs(),
                    shift.as_secs_f64()
                ),
                reasons: Vec::new(),
            });
            shifted = Record { t: r.t.saturating_sub(shift), ..r.clone() };
            &shifted
        } else if shift > Duration::ZERO {
            shifted = Record { t, ..r.clone() };
            &shifted
        } else {
            r
        };
        last = last.max(r.t);
        // Everything due before this record: the lines' deadlines and the controller's steps.
        loop {
            let deadline = packs
                .iter()
                .filter_map(Line::deadline)
                .chain(coil.iter().filter_map(Line::deadline))
                .chain(inverter.iter().filter_map(Line::deadline))
                .min();
            let next = deadline.map_or(next_step, |d| d.min(next_step));
            if next > r.t {
                break;
            }
            if deadline == Some(next) && next < next_step {
                for line in &mut packs {
                    if line.deadline() == Some(next) {
                        line.time_out(next, seen);
                    }
                }
                if let Some(line) = coil.as_mut().filter(|l| l.deadline() == Some(next)) {
                    line.time_out(next, seen);
                }
                if let Some(line) = inverter.as_mut().filter(|l| l.deadline() == Some(next)) {
                    line.time_out(next, seen);
                }
                continue;
            }
            for (k, line) in packs.iter().enumerate() {
                readings[k].clone_from(line.machine.readings());
            }
            let now = Now {
                mono: millis(next),
                wall: wall0 + jiff::SignedDuration::from_millis(next.as_millis() as i64),
            };
            let inputs = Inputs {
                packs: &readings,
                coil: coil.as_ref().and_then(|l| l.machine.readings().reading),
                coil_settings: coil.as_ref().and_then(|l| l.machine.settings()),
                inverter: inverter.as_ref().map_or(&no_inverter, |l| l.machine.readings()),
                overrides: &overrides,
                order: None,
                inverter_silent: false,
            };
            let out = controller.step(now, &inputs);
            summary.steps += 1;
            snapshot = out.snapshot;
            for (text, reasons) in out.events {
                seen(Seen::Event { t: next, text, reasons });
            }
            if let Some(line) = &mut inverter {
                line.machine.set_targets(out.targets.output_priority, out.targets.charging_priority);
            }
            if let Some(line) = &mut coil {
                line.machine.set_target(out.targets.coil);
                for action in out.coil_actions {
                    line.machine.act(action);
                }
            }
            for (k, command) in out.pack_commands {
                if let Some(line) = packs.get_mut(k) {
                    line.machine.command(command);
                }
            }
            next_step = duration(controller.poll_timeout())
                .max(next + Duration::from_millis(1))
                .min(next + Duration::from_millis(STEP_EVERY_MS));
        }
        let name = r.link.as_str();
        if let Some(k) = name.strip_prefix("pack").and_then(|n| n.parse::<usize>().ok()) {
            if let Some(line) = k.checked_sub(1).and_then(|k| packs.get_mut(k)) {
                line.record(r, &mut summary, seen);
                continue;
            }
        }
        match (name, &mut coil, &mut inverter, &mut pylon) {
            ("coil", Some(line), _, _) => line.record(r, &mut summary, seen),
            ("inverter", _, Some(line), _) => line.record(r, &mut summary, seen),
            ("pylon", _, _, Some(p)) => p.record(r, &snapshot, &mut summary, seen),
            ("can", _, _, _) if config.can.is_some() => summary.can += 1,
            _ => summary.unknown_link += 1,
        }
    }
    summary
}

impl Pylon {
    fn record(&mut self, r: &Record, snapshot: &Snapshot, summary: &mut Summary, seen: &mut dyn FnMut(Seen)) {
        match r.dir {
            // The inverter asks.
            Dir::Rx => {
                let mut rest = r.bytes.as_slice();
                loop {
                    let k = self.deframer.push(rest);
                    rest = &rest[k..];
                    while let Some(frame) = self.deframer.next_frame() {
                        let answer =
                            translator::respond::respond(snapshot, &frame, &self.settings, millis(r.t).0);
                        self.pending = Some((describe_pylon_request(&frame), answer));
                    }
                    if rest.is_empty() || k == 0 {
                        break;
                    }
                }
            }
            // The live run answered.
            Dir::Tx => {
                summary.answers += 1;
                let (asked, replayed) =
                    self.pending.take().unwrap_or_else(|| ("an unseen request".into(), None));
                if replayed.as_deref() == Some(r.bytes.as_slice()) {
                    summary.answers_same += 1;
                } else {
                    seen(Seen::AnswerDiffers {
                        t: r.t,
                        asked,
                        captured: hex(&r.bytes),
                        replayed: replayed.map(|b| hex(&b)).unwrap_or_default(),
                    });
                }
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// A request in words: the Pace command, or the Modbus function and registers.
fn describe_request(frame: &[u8]) -> String {
    if frame.first() == Some(&b'~') {
        return match Request::parse(frame) {
            Ok(r) => format!("ADR {} {:?}", r.adr, r.command),
            Err(e) => format!("a frame that is not a Pace request ({e})"),
        };
    }
    match frame {
        [slave, function, a, b, c, d, ..] => format!(
            "slave {slave} function {function:02X} register {} count/value {}",
            u16::from_be_bytes([*a, *b]),
            u16::from_be_bytes([*c, *d])
        ),
        _ => format!("{} bytes", frame.len()),
    }
}

/// A reply to a request of `cid2` in words (the key figures of a 0x42; the others by kind).
fn describe_reply(cid2: Option<u8>, frame: &[u8]) -> String {
    let Some(cid2) = cid2 else {
        return format!("{} bytes", frame.len());
    };
    match Reply::parse(cid2, frame) {
        Ok(Reply { outcome: Ok(response), .. }) => match response {
            Response::Analog(a) => match a.packs.first() {
                Some(p) => {
                    let (lo, hi) =
                        p.cells.iter().fold((u16::MAX, 0), |(lo, hi), c| (lo.min(c.raw()), hi.max(c.raw())));
                    format!(
                        "0x42: {} cells {:.3}–{:.3} V, {:.2} V, {:+.2} A",
                        p.cells.len(),
                        f64::from(lo) / 1000.0,
                        f64::from(hi) / 1000.0,
                        f64::from(p.voltage.raw()) / 1000.0,
                        f64::from(p.current.raw()) / 100.0
                    )
                }
                None => "0x42: no pack".into(),
            },
            Response::Status(_) => "0x44: alarms and protections".into(),
            Response::Version { version } => format!("C1: {}", version.trimmed()),
            Response::Serial { serial } => format!("C2: {}", serial.trimmed()),
            other => {
                let text = format!("{other:?}");
                text.chars().take(100).collect()
            }
        },
        Ok(Reply { outcome: Err(refusal), .. }) => format!("refused: {}", refusal.rtn),
        Err(e) => format!("does not decode: {e}"),
    }
}

fn describe_pylon_request(frame: &[u8]) -> String {
    match pylon_proto::Request::parse(frame) {
        Ok(r) => format!("{r:?}").chars().take(100).collect(),
        Err(e) => format!("a frame that is not a Pylontech request ({e})"),
    }
}
