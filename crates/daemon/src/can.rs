//! The CAN side's driver: the profile's whole set of frames every `can.period_s` (in one burst or
//! spread over the period), the limits and enable bits again at once whenever they change, and
//! the inverter's heartbeat (0x305) and shutdown request (0x300) read in between.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use link::CanBus;
use pylon_can::{Battery, CanFrame, Message, Profile, RequestFlags};
use translator::can::CanSettings;

use crate::config::{self, CanProfile};
use crate::runtime::{Stop, nap};
use crate::shared::lock;
use crate::shared::{CanReadings, Shared};
use maestro_core::Millis;

/// How often the decision is looked at between periodic sets: a change reaches the bus within
/// this long.
const WATCH: Duration = Duration::from_millis(100);
/// How long a failing bus is left alone before the next attempt.
const RETRY: Duration = Duration::from_millis(500);

/// The pylon-can profile of a `can.profile`.
pub fn profile(p: CanProfile) -> Profile {
    match p {
        CanProfile::Pylon => Profile::Pylon,
        CanProfile::Lux => Profile::Lux,
        CanProfile::Sma => Profile::Sma,
        CanProfile::Solark => Profile::Solark,
        CanProfile::Victron => Profile::Victron,
    }
}

/// Whether the inverter's heartbeat has been missing for `can.peer_timeout_s` at `now` (counted
/// from the start when none ever came), as the status shows it.
pub(crate) fn peer_silent(can: &CanReadings, config: &config::Can, now: Millis) -> bool {
    let since = can.heartbeat_at.unwrap_or(Millis(0));
    now.since(since) > (config.peer_timeout_s * 1000.0) as u64
}

/// What must reach the inverter at once when it changes towards safety: an enable bit that
/// clears, a current limit or the charge voltage that falls. A rise waits for the next set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Urgent {
    requests: RequestFlags,
    charge_current_da: i16,
    discharge_current_da: i16,
    charge_voltage_dv: u16,
}

impl Urgent {
    /// Whether going from `self` to `next` must be told now.
    fn safer(self, next: Self) -> bool {
        !next.requests.contains(self.requests)
            || next.charge_current_da < self.charge_current_da
            || next.discharge_current_da < self.discharge_current_da
            || next.charge_voltage_dv < self.charge_voltage_dv
    }

    /// What the inverter holds after `id` (0x351 or 0x35C) of `now` went out.
    fn merge(self, id: u16, now: Self) -> Self {
        match id {
            0x35C => Self { requests: now.requests, ..self },
            _ => Self { requests: self.requests, ..now },
        }
    }

    fn of(b: &Battery) -> Self {
        Self {
            requests: b.requests,
            charge_current_da: b.charge_current_da,
            discharge_current_da: b.discharge_current_da,
            charge_voltage_dv: b.charge_voltage_dv,
        }
    }
}

/// Sends and reads on `bus` until `stop`.
pub(crate) fn drive(
    mut bus: CanBus,
    can: &config::Can,
    settings: &CanSettings,
    shared: &Shared,
    stop: &Stop,
) {
    let profile = profile(can.profile);
    let period = Duration::from_secs_f64(can.period_s);
    let mut next_set = Instant::now();
    // The ids of this period's set still to send, with when: each frame is built from the
    // decision of the moment it goes out, so a queued frame can never undo an urgent one.
    let mut pending: VecDeque<(Instant, u16)> = VecDeque::new();
    // What the inverter was last told of the urgent fields (only once it went out).
    let mut told: Option<Urgent> = None;
    while !stop.is_stopped() {
        let now = Instant::now();
        let battery = {
            let snapshot = lock(&shared.published).snapshot.clone();
            translator::can::battery(&snapshot, settings, shared.now().0)
        };
        let mut failed = None;
        let Some(b) = &battery else {
            // Nothing true to say yet, or the silent policy: say nothing.
            pending.clear();
            told = None;
            if let Err(e) = receive_until(&mut bus, Instant::now() + WATCH, profile, shared) {
                note_error(&bus, shared, e);
                nap(stop, RETRY);
            }
            continue;
        };
        let frames = pylon_can::frames(profile, b);
        let frame = |id: u16| frames.iter().find(|f| f.id().raw() == u32::from(id)).copied();
        let urgent = Urgent::of(b);
        if told.is_some_and(|t| t.safer(urgent)) {
            // The limits and the enable bits go out now, not at the next set.
            let sent =
                [0x351, 0x35C].into_iter().filter_map(frame).try_for_each(|f| send(&mut bus, &f, shared));
            match sent {
                Ok(()) => {
                    lock(&shared.can).urgent_sets += 1;
                    told = Some(urgent);
                }
                // Not told: the fall is seen again on the next pass.
                Err(e) => failed = Some(e),
            }
        }
        if failed.is_none() && now >= next_set {
            let ids = profile.ids();
            let step = if can.spread { period / ids.len().max(1) as u32 } else { Duration::ZERO };
            pending = ids.iter().enumerate().map(|(k, id)| (now + step * k as u32, *id)).collect();
            next_set = now + period;
        }
        if next_set <= now {
            next_set = now + period;
        }
        while failed.is_none() {
            let Some((at, id)) = pending.front().copied() else { break };
            if at > Instant::now() {
                break;
            }
            let Some(f) = frame(id) else {
                pending.pop_front();
                continue;
            };
            match send(&mut bus, &f, shared) {
                Ok(()) => {
                    pending.pop_front();
                    // Whatever the inverter was told last is what it holds now.
                    if matches!(id, 0x351 | 0x35C) {
                        told = Some(told.map_or(urgent, |t| t.merge(id, urgent)));
                    }
                }
                Err(e) => failed = Some(e),
            }
        }
        if let Some(e) = failed {
            note_error(&bus, shared, e);
            nap(stop, RETRY);
            continue;
        }
        // Read until the next thing to do: a spread frame, the next set, or a look at the decision.
        let mut until = (Instant::now() + WATCH).min(next_set);
        if let Some((at, _)) = pending.front() {
            until = until.min(*at);
        }
        if let Err(e) = receive_until(&mut bus, until, profile, shared) {
            note_error(&bus, shared, e);
            nap(stop, RETRY);
        }
    }
    bus.close();
}

fn send(bus: &mut CanBus, frame: &CanFrame, shared: &Shared) -> Result<(), link::Error> {
    bus.send(frame)?;
    let stats = bus.stats();
    let mut can = lock(&shared.can);
    can.frames_sent += 1;
    can.stats = stats;
    can.error = None;
    drop(can);
    Ok(())
}

fn note_error(bus: &CanBus, shared: &Shared, e: link::Error) {
    let text = e.to_string();
    let mut can = lock(&shared.can);
    can.stats = bus.stats();
    if can.error.as_deref() != Some(text.as_str()) {
        log::warn!("can: {text}");
    }
    can.error = Some(text);
}

fn receive_until(
    bus: &mut CanBus,
    until: Instant,
    profile: Profile,
    shared: &Shared,
) -> Result<(), link::Error> {
    loop {
        let frame = bus.receive(until)?;
        let stats = bus.stats();
        lock(&shared.can).stats = stats;
        let Some(frame) = frame else { return Ok(()) };
        match Message::decode(profile, &frame) {
            Ok(Some(Message::Heartbeat(_))) => {
                let mut can = lock(&shared.can);
                can.heartbeats += 1;
                can.heartbeat_at = Some(shared.now());
                drop(can);
                // The station judges the heartbeat's loss (`can.peer_timeout_disables`).
                let _ = shared.inbox.try_send(crate::runtime::Inbox::Heartbeat);
            }
            Ok(Some(Message::RemoteCommand(r))) if r.shutdown && profile == Profile::Lux => {
                let first = lock(&shared.can).shutdown_request_at.replace(shared.now()).is_none();
                if first {
                    // Not obeyed: the packs' own BMS and the fail-safe rules decide.
                    shared.event("the inverter asks the battery to shut down (CAN 0x300); not obeyed".into());
                }
            }
            // Another battery's frames, our own echoed by a monitor, other devices: not ours.
            Ok(_) => {}
            Err(e) => {
                lock(&shared.can).bad_frames += 1;
                log::debug!("can: {e}");
            }
        }
        if Instant::now() >= until {
            return Ok(());
        }
    }
}
