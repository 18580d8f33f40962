//! The Modbus devices' pollers without I/O: the coulomb counter and the inverter. Each reads its
//! device and keeps some of its holding registers at the targets the rebalance procedure sets:
//! it writes only when a value differs, confirms by reading back, and reports the value unknown
//! while the write is on its way (the procedure must never take the old reading for the device's
//! word that a restore has happened). Like [`crate::poller::PackPoller`], the same machines run in
//! the daemon's threads and in the simulated world.

use std::collections::VecDeque;
use std::time::Duration;

use maestro_core::{Action, Millis};
use modbus_rtu::{Request, Response};

use crate::machine::{Machine, Note, Problem};
use crate::shared::{CoilReadings, INVERTER_LIVE_COUNT, INVERTER_LIVE_FIRST, InverterReadings};

/// What every Modbus poller has: one exchange at a time on its line (the queue of requests and
/// the one in flight), its cycle's schedule, and its notes for the driver.
#[derive(Clone, Debug)]
struct Exchanges<A> {
    slave: u8,
    line: String,
    timeout: Duration,
    plan: VecDeque<A>,
    in_flight: Option<(A, Duration)>,
    /// From one cycle's start to the next's.
    period: Duration,
    next_cycle: Duration,
    cycle_started: Duration,
    cycling: bool,
    notes: VecDeque<Note>,
}

/// What a device's poller asks.
trait Ask: Clone {
    fn request(&self) -> Request;
}

impl<A: Ask> Exchanges<A> {
    fn new(slave: u8, line: String, timeout: Duration, period: Duration) -> Self {
        Self {
            slave,
            line,
            timeout,
            plan: VecDeque::new(),
            in_flight: None,
            period,
            next_cycle: Duration::ZERO,
            cycle_started: Duration::ZERO,
            cycling: false,
            notes: VecDeque::new(),
        }
    }

    /// A note for the driver (at most 64 wait; more are dropped).
    fn note(&mut self, note: Note) {
        if self.notes.len() < 64 {
            self.notes.push_back(note);
        }
    }

    /// The next request's bytes, if one is queued and none is in flight.
    fn transmit(&mut self, now: Duration) -> Option<Vec<u8>> {
        if self.in_flight.is_some() {
            return None;
        }
        while let Some(ask) = self.plan.pop_front() {
            let mut frame = Vec::with_capacity(32);
            if ask.request().encode(self.slave, &mut frame).is_ok() {
                self.in_flight = Some((ask, now + self.timeout));
                return Some(frame);
            }
        }
        None
    }

    /// A deframed reply (slave address, then the PDU) for the request in flight.
    fn reply(&mut self, frame: &[u8]) -> Option<(A, Result<Response, Problem>)> {
        let (ask, _) = self.in_flight.take()?;
        let line = self.line.clone();
        let result = match frame.split_first() {
            Some((slave, pdu)) if *slave == self.slave => Response::parse(pdu)
                .map_err(|e| Problem::Decode { line: line.clone(), error: e.to_string() })
                .and_then(|r| match r {
                    Response::Exception { function, code } => {
                        Err(Problem::Exception { line, function, code: code.to_string() })
                    }
                    r => Ok(r),
                }),
            _ => Err(Problem::Unexpected {
                line,
                asked: "Modbus".into(),
                got: "a reply from another address".into(),
            }),
        };
        Some((ask, result))
    }

    fn timed_out(&mut self, now: Duration) -> Option<(A, Problem)> {
        let (_, deadline) = self.in_flight.as_ref()?;
        if now < *deadline {
            return None;
        }
        let (ask, _) = self.in_flight.take()?;
        Some((ask, Problem::NoReply { line: self.line.clone(), after: self.timeout }))
    }

    fn failed(&mut self) -> Option<A> {
        self.in_flight.take().map(|(a, _)| a)
    }

    fn deadline(&self) -> Option<Duration> {
        self.in_flight.as_ref().map(|(_, d)| *d)
    }
}

/// A Modbus device's poller: the requests of its cycle and what their replies mean. The
/// [`Machine`] around it (timeouts, the cycle's schedule, the exchange in flight) is the same for
/// every device.
trait Device {
    type Ask: Ask;
    fn exchanges(&self) -> &Exchanges<Self::Ask>;
    fn exchanges_mut(&mut self) -> &mut Exchanges<Self::Ask>;
    /// Queues the requests of a cycle starting at `now`.
    fn start_cycle(&mut self, now: Duration);
    /// The reply to `ask`, or why there is none.
    fn handle(&mut self, now: Duration, ask: Self::Ask, result: Result<Response, Problem>);
    fn link_stats(&mut self) -> &mut link::Stats;
}

impl<D: Device> Machine for D {
    fn poll_transmit(&mut self, now: Duration) -> Option<Vec<u8>> {
        self.handle_timeout(now);
        let x = self.exchanges_mut();
        if x.in_flight.is_some() {
            return None;
        }
        if !x.cycling {
            if now < x.next_cycle {
                return None;
            }
            x.cycling = true;
            x.cycle_started = now;
            self.start_cycle(now);
        }
        let x = self.exchanges_mut();
        let frame = x.transmit(now);
        if frame.is_none() {
            x.cycling = false;
            x.next_cycle = (x.cycle_started + x.period).max(now);
        }
        frame
    }

    fn poll_timeout(&self) -> Duration {
        let x = self.exchanges();
        match x.deadline() {
            Some(d) => d,
            None if x.cycling => Duration::ZERO,
            None => x.next_cycle,
        }
    }

    fn handle_timeout(&mut self, now: Duration) {
        if let Some((ask, problem)) = self.exchanges_mut().timed_out(now) {
            self.handle(now, ask, Err(problem));
        }
    }

    fn handle_frame(&mut self, now: Duration, frame: &[u8]) {
        match self.exchanges_mut().reply(frame) {
            Some((ask, result)) => self.handle(now, ask, result),
            None => self.exchanges_mut().note(Note::BadFrame),
        }
    }

    fn handle_failure(&mut self, now: Duration, problem: Problem) {
        if let Some(ask) = self.exchanges_mut().failed() {
            self.handle(now, ask, Err(problem));
        }
    }

    fn poll_note(&mut self) -> Option<Note> {
        self.exchanges_mut().notes.pop_front()
    }

    fn set_link_stats(&mut self, stats: link::Stats) {
        *self.link_stats() = stats;
    }
}

fn holding(r: Result<Response, Problem>, count: usize, line: &str) -> Result<Vec<u16>, Problem> {
    match r? {
        Response::ReadHolding(v) if v.len() == count => Ok(v),
        other => {
            Err(Problem::Unexpected { line: line.into(), asked: "FC03".into(), got: format!("{other:?}") })
        }
    }
}

/// What the counter's poller asks.
#[derive(Clone, Debug, PartialEq, Eq)]
enum CoilAsk {
    Inputs,
    Settings,
    /// Capacity and full voltage to registers 1..=3, for the target or a calibration.
    Write([u16; 3], Option<Action>),
    ReadBack([u16; 3], Option<Action>),
    SetFull(Action),
}

impl Ask for CoilAsk {
    fn request(&self) -> Request {
        match self {
            Self::Inputs => coil_modbus::request::read_inputs(),
            Self::Settings => coil_modbus::request::read_settings(),
            Self::Write(values, _) => Request::WriteMultiple { address: 1, values: values.to_vec() },
            Self::ReadBack(..) => Request::ReadHolding { address: 1, count: 3 },
            Self::SetFull(_) => coil_modbus::request::set_level(coil_modbus::Level::Full),
        }
    }
}

fn capacity_registers((capacity_mah, full_cv): (u32, u16)) -> [u16; 3] {
    [(capacity_mah >> 16) as u16, capacity_mah as u16, full_cv]
}

/// The counter's poller: its reading every poll period; every 5 s (or when an action waits) its
/// settings, kept at the target capacity and full voltage; the calibration to full (capacity
/// written first: the counter ignores "set full" otherwise).
#[derive(Clone, Debug)]
pub struct CoilPoller {
    x: Exchanges<CoilAsk>,
    last_settings: Option<Duration>,
    readings: CoilReadings,
    settings: Option<coil_modbus::Settings>,
    target: Option<(u32, u16)>,
    actions: Vec<Action>,
    was_ok: bool,
}

/// How often the counter's settings are read.
const COIL_SETTINGS_EVERY: Duration = Duration::from_secs(5);

impl CoilPoller {
    /// The counter at `slave` on the line named `line`, read every `period`.
    pub fn new(slave: u8, line: impl Into<String>, period: Duration, timeout: Duration) -> Self {
        Self {
            x: Exchanges::new(slave, line.into(), timeout, period),
            last_settings: None,
            readings: CoilReadings::default(),
            settings: None,
            target: None,
            actions: Vec::new(),
            was_ok: true,
        }
    }

    /// The reading, its line's counters, its last problem.
    pub fn readings(&self) -> &CoilReadings {
        &self.readings
    }

    /// The settings as last read or confirmed (`None` while a write is on its way).
    pub fn settings(&self) -> Option<coil_modbus::Settings> {
        self.settings
    }

    /// Keep the capacity (mAh) and full voltage (0.01 V) at this.
    pub fn set_target(&mut self, target: Option<(u32, u16)>) {
        self.target = target;
    }

    /// A one-shot action (the calibration to full).
    pub fn act(&mut self, action: Action) {
        if self.actions.len() < 8 {
            self.actions.push(action);
        }
    }

    fn note(&mut self, note: Note) {
        self.x.note(note);
    }

    fn start_cycle(&mut self, now: Duration) {
        let due = self.last_settings.is_none_or(|t| now.saturating_sub(t) >= COIL_SETTINGS_EVERY);
        if due || !self.actions.is_empty() {
            self.last_settings = Some(now);
            self.x.plan.push_back(CoilAsk::Settings);
        }
        self.x.plan.push_back(CoilAsk::Inputs);
    }

    /// After the settings were read: the target's write, then the actions, before the reading.
    fn plan_writes(&mut self) {
        let Some(s) = self.settings else { return };
        let mut steps = Vec::new();
        if let Some(target) = self.target.filter(|t| *t != (s.capacity_mah, s.full_voltage_cv)) {
            let values = capacity_registers(target);
            // Unknown until confirmed.
            self.settings = None;
            steps.extend([CoilAsk::Write(values, None), CoilAsk::ReadBack(values, None)]);
        }
        for action in std::mem::take(&mut self.actions) {
            if let Action::CalibrateCoilFull { capacity_mah, full_voltage_cv } = action {
                let values = capacity_registers((capacity_mah, full_voltage_cv));
                // Re-read at the next settings read; unknown until then.
                self.settings = None;
                steps.extend([
                    CoilAsk::Write(values, Some(action)),
                    CoilAsk::ReadBack(values, Some(action)),
                    CoilAsk::SetFull(action),
                ]);
            }
        }
        for step in steps.into_iter().rev() {
            self.x.plan.push_front(step);
        }
    }

    fn handle(&mut self, now: Duration, ask: CoilAsk, result: Result<Response, Problem>) {
        let line = self.x.line.clone();
        match ask {
            CoilAsk::Inputs => {
                let problem = match result {
                    Ok(Response::ReadInput(v)) => match <[u16; 12]>::try_from(v.as_slice()) {
                        Ok(regs) => {
                            self.readings.reading = Some((
                                coil_modbus::Reading::from_registers(&regs),
                                Millis(now.as_millis() as u64),
                            ));
                            None
                        }
                        Err(_) => {
                            Some(format!("{line}: the counter sent {} input registers, not 12", v.len()))
                        }
                    },
                    Ok(other) => Some(format!("{line}: unexpected reply {other:?}")),
                    Err(Problem::Exception { code, .. }) => {
                        Some(format!("{line}: the counter refused: {code}"))
                    }
                    Err(p) => Some(p.to_string()),
                };
                match &problem {
                    None if !self.was_ok => {
                        self.note(Note::Event("the coulomb counter answers again".into()));
                        self.was_ok = true;
                    }
                    Some(p) if self.was_ok => {
                        self.note(Note::Warn(format!("coil: {p}")));
                        self.was_ok = false;
                    }
                    _ => {}
                }
                self.readings.last_error = problem;
            }
            CoilAsk::Settings => match holding(result, usize::from(coil_modbus::HOLDING_COUNT), &line) {
                Ok(v) => {
                    if let Ok(regs) = <[u16; 10]>::try_from(v.as_slice()) {
                        self.settings = Some(coil_modbus::Settings::from_registers(&regs));
                        self.plan_writes();
                    }
                }
                // The reading still follows; the writes wait for settings that were read.
                Err(e) => log::debug!("coil settings: {e}"),
            },
            CoilAsk::Write(values, action) => {
                if let Err(e) = result {
                    self.x.plan.retain(|a| !matches!(a, CoilAsk::ReadBack(v, _) if *v == values));
                    self.write_failed(action, &e.to_string());
                }
            }
            CoilAsk::ReadBack(values, action) => match holding(result, 3, &line) {
                Ok(back) if back == values => {
                    if action.is_none() {
                        let capacity = (u32::from(values[0]) << 16) | u32::from(values[1]);
                        if let Some(s) = self.settings.as_mut() {
                            (s.capacity_mah, s.full_voltage_cv) = (capacity, values[2]);
                        }
                        self.note(Note::Event(format!(
                            "coil capacity {capacity} mAh, full voltage {} cV (confirmed)",
                            values[2]
                        )));
                        // The settings as they are now: read again at once to know the rest.
                        self.last_settings = None;
                    }
                }
                Ok(back) => {
                    let e = format!("{line}: wrote {values:?} to 1 but it reads back {back:?}");
                    self.write_failed(action, &e);
                }
                Err(e) => self.write_failed(action, &e.to_string()),
            },
            CoilAsk::SetFull(action) => {
                let how = match result {
                    Ok(_) => Ok("the counter replied"),
                    Err(Problem::NoReply { .. }) => Ok("no reply, as the counter often does"),
                    Err(e) => Err(e.to_string()),
                };
                match how {
                    Ok(how) => self.note(Note::Event(format!("coil calibrated to full ({how})"))),
                    Err(e) => {
                        self.note(Note::Event(format!("coil calibration failed: {e}; retrying")));
                        self.act(action);
                    }
                }
            }
        }
    }

    fn write_failed(&mut self, action: Option<Action>, e: &str) {
        match action {
            None => self.note(Note::Event(format!("coil capacity could not be set: {e}; retrying"))),
            Some(action) => {
                self.x.plan.retain(|a| !matches!(a, CoilAsk::SetFull(_) | CoilAsk::ReadBack(_, Some(_))));
                self.note(Note::Event(format!("coil calibration failed: {e}; retrying")));
                self.act(action);
            }
        }
    }
}

impl Device for CoilPoller {
    type Ask = CoilAsk;
    fn exchanges(&self) -> &Exchanges<CoilAsk> {
        &self.x
    }
    fn exchanges_mut(&mut self) -> &mut Exchanges<CoilAsk> {
        &mut self.x
    }
    fn start_cycle(&mut self, now: Duration) {
        CoilPoller::start_cycle(self, now);
    }
    fn handle(&mut self, now: Duration, ask: CoilAsk, result: Result<Response, Problem>) {
        CoilPoller::handle(self, now, ask, result);
    }
    fn link_stats(&mut self) -> &mut link::Stats {
        &mut self.readings.link
    }
}

/// What the inverter's poller asks.
#[derive(Clone, Debug, PartialEq, Eq)]
enum InverterAsk {
    Live,
    Settings,
    Write(u16, u16),
    ReadBack(u16, u16),
}

impl Ask for InverterAsk {
    fn request(&self) -> Request {
        match self {
            Self::Live => Request::ReadHolding { address: INVERTER_LIVE_FIRST, count: INVERTER_LIVE_COUNT },
            Self::Settings => Request::ReadHolding { address: 300, count: 32 },
            Self::Write(address, value) => Request::WriteMultiple { address: *address, values: vec![*value] },
            Self::ReadBack(address, _) => Request::ReadHolding { address: *address, count: 1 },
        }
    }
}

/// The inverter's registers the rebalance procedure keeps.
fn register_name(address: u16) -> &'static str {
    if address == 301 { "output priority" } else { "charging priority" }
}

/// The inverter's poller: its live registers and settings every 2 s, registers 301 (output
/// priority) and 331 (charging priority) kept at the targets.
#[derive(Clone, Debug)]
pub struct InverterPoller {
    x: Exchanges<InverterAsk>,
    readings: InverterReadings,
    targets: (Option<u16>, Option<u16>),
    live_error: Option<String>,
    failing: bool,
}

/// How often the inverter is read.
pub const INVERTER_EVERY: Duration = Duration::from_secs(2);

impl InverterPoller {
    /// The inverter at `slave` on the line named `line`.
    pub fn new(slave: u8, line: impl Into<String>) -> Self {
        Self {
            x: Exchanges::new(slave, line.into(), Duration::from_secs(1), INVERTER_EVERY),
            readings: InverterReadings::default(),
            targets: (None, None),
            live_error: None,
            failing: false,
        }
    }

    /// What the inverter reports.
    pub fn readings(&self) -> &InverterReadings {
        &self.readings
    }

    /// Keep 301 and 331 at these (`None`: leave it as it is).
    pub fn set_targets(&mut self, output_priority: Option<u16>, charging_priority: Option<u16>) {
        self.targets = (output_priority, charging_priority);
    }

    fn note(&mut self, note: Note) {
        self.x.note(note);
    }

    fn slot(&mut self, address: u16) -> &mut Option<u16> {
        if address == 301 { &mut self.readings.output_priority } else { &mut self.readings.charging_priority }
    }

    fn handle(&mut self, now: Duration, ask: InverterAsk, result: Result<Response, Problem>) {
        let line = self.x.line.clone();
        let at = Millis(now.as_millis() as u64);
        match ask {
            InverterAsk::Live => match holding(result, usize::from(INVERTER_LIVE_COUNT), &line) {
                Ok(v) => {
                    if let Ok(regs) = <[u16; INVERTER_LIVE_COUNT as usize]>::try_from(v.as_slice()) {
                        self.readings.live = Some((regs, at));
                    }
                    self.live_error = None;
                }
                Err(e) => self.live_error = Some(e.to_string()),
            },
            InverterAsk::Settings => {
                match holding(result, 32, &line) {
                    Ok(regs) => {
                        self.readings.output_priority = Some(regs[1]);
                        self.readings.charging_priority = Some(regs[31]);
                        self.readings.settings_at = Some(at);
                        self.readings.last_error = self.live_error.clone();
                        let mut steps = Vec::new();
                        for (address, target) in [(301u16, self.targets.0), (331, self.targets.1)] {
                            let Some(target) = target else { continue };
                            if *self.slot(address) == Some(target) {
                                continue;
                            }
                            // While the write is on its way the value is unknown.
                            *self.slot(address) = None;
                            steps.extend([
                                InverterAsk::Write(address, target),
                                InverterAsk::ReadBack(address, target),
                            ]);
                        }
                        self.x.plan.extend(steps);
                        self.failing = false;
                    }
                    Err(e) => {
                        if !self.failing {
                            self.note(Note::Warn(format!("inverter: {e}")));
                            self.failing = true;
                        }
                        self.readings.last_error = self.live_error.clone().or(Some(e.to_string()));
                    }
                }
            }
            InverterAsk::Write(address, target) => {
                if let Err(e) = result {
                    self.x.plan.retain(|a| *a != InverterAsk::ReadBack(address, target));
                    self.write_failed(address, target, &e.to_string());
                }
            }
            InverterAsk::ReadBack(address, target) => match holding(result, 1, &line) {
                Ok(back) if back == [target] => {
                    // What was read back is the device's value now.
                    *self.slot(address) = Some(target);
                    let name = register_name(address);
                    self.note(Note::Event(format!("inverter {name} set to {target} (confirmed)")));
                }
                Ok(back) => {
                    let e = format!("{line}: wrote [{target}] to {address} but it reads back {back:?}");
                    self.write_failed(address, target, &e);
                }
                Err(e) => self.write_failed(address, target, &e.to_string()),
            },
        }
    }

    fn write_failed(&mut self, address: u16, target: u16, e: &str) {
        let name = register_name(address);
        self.note(Note::Event(format!("inverter {name} could not be set to {target}: {e}; retrying")));
    }
}

impl Device for InverterPoller {
    type Ask = InverterAsk;
    fn exchanges(&self) -> &Exchanges<InverterAsk> {
        &self.x
    }
    fn exchanges_mut(&mut self) -> &mut Exchanges<InverterAsk> {
        &mut self.x
    }
    fn start_cycle(&mut self, _now: Duration) {
        self.x.plan.extend([InverterAsk::Live, InverterAsk::Settings]);
    }
    fn handle(&mut self, now: Duration, ask: InverterAsk, result: Result<Response, Problem>) {
        InverterPoller::handle(self, now, ask, result);
    }
    fn link_stats(&mut self) -> &mut link::Stats {
        &mut self.readings.link
    }
}
