//! SAFETY.md §2b, joining the bus: when a pack whose MOSFETs are off may be switched back on.
//!
//! A pack held off (a BMS protection, a rebalance's over-voltage lock, a fuse replaced, an
//! operator's unlock) sits at its own voltage while the busbar moves on. Closing its MOSFET drives
//! about ΔV / (R_pack + R_rest) between it and the others, and no limit told to the inverter can
//! stop that current. [`Joiner`] decides, step by step and without I/O, which waiting pack may be
//! sent its MOSFET-on command now:
//!
//! - only one within `delta_mv` of the bus, the smallest |ΔV| first;
//! - one at a time: the next waits until the last one's current has stayed below half its alarm
//!   for `settle_ms`;
//! - a pack still too far away blocks the direction that widens the gap (`joining`) for at most
//!   `wait_max_ms`, then is left out (`isolated`, blocking nothing) and joined whenever the gap
//!   closes later.
//!
//! ```
//! use maestro_core::join::{Bus, JoinConfig, JoinPack, Joiner, Waiting};
//! use maestro_core::Millis;
//!
//! let mut joiner = Joiner::new(JoinConfig::default());
//! let packs = [
//!     JoinPack { waiting: true, voltage_mv: Some(27_900), current_ma: Some(0), alarm_a: Some(30) },
//!     JoinPack { waiting: false, voltage_mv: Some(27_300), current_ma: Some(5_000), alarm_a: Some(30) },
//! ];
//! // The locked pack is 600 mV above the bus: no command, and discharging (which would widen the
//! // gap) is blocked, so the bus rises toward it.
//! let out = joiner.step(Millis(0), Bus::At(27_300), &packs);
//! assert_eq!(out.command, None);
//! assert_eq!(out.waiting, [Waiting::Joining { pack: 1, delta_mv: 600 }]);
//! assert_eq!(out.waiting[0].blocks_charge(), Some(false));
//! // Within 100 mV: the command goes out.
//! let out = joiner.step(Millis(1000), Bus::At(27_850), &packs);
//! assert_eq!(out.command, Some(0));
//! ```

use crate::rules::Millis;

/// The join rule's settings (SAFETY.md §2b defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JoinConfig {
    /// A pack joins only within this of the bus, mV.
    pub delta_mv: u32,
    /// The last pack to join must have stayed below half its alarm this long before the next.
    pub settle_ms: u64,
    /// A pack too far away blocks the direction that widens the gap for at most this long.
    pub wait_max_ms: u64,
}

impl Default for JoinConfig {
    fn default() -> Self {
        Self { delta_mv: 100, settle_ms: 5_000, wait_max_ms: 15 * 60 * 1000 }
    }
}

/// What the bus is, as far as the daemon knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bus {
    /// At this voltage, mV: the coil's when fresh, else the mean of the packs that can carry.
    At(u32),
    /// Empty: no coil and no pack on it (each of the others known to be off), so nothing can drive
    /// current into a pack that joins.
    Empty,
    /// Not known (the coil's data and the other packs' are stale): nothing joins.
    Unknown,
}

/// One pack as the join rule sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JoinPack {
    /// Its MOSFET is off and is to be switched on (it waits to join).
    pub waiting: bool,
    /// Its own voltage (0x42), mV (`None`: not read, or stale).
    pub voltage_mv: Option<u32>,
    /// Its own current, mA, charge positive.
    pub current_ma: Option<i32>,
    /// The lower of its over-current alarms, A.
    pub alarm_a: Option<u16>,
}

/// A pack that waits and is not joined this step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiting {
    /// Too far from the bus: the direction that widens the gap is blocked (charging when the pack
    /// lies below the bus, discharging when above). `delta_mv` is pack − bus.
    Joining {
        /// The pack, numbered from 1.
        pack: usize,
        /// Its voltage minus the bus's, mV.
        delta_mv: i32,
    },
    /// Waited longer than `wait_max_ms`: left out, blocking nothing, joined when the gap closes.
    Isolated {
        /// The pack, numbered from 1.
        pack: usize,
        /// Its voltage minus the bus's, mV (`None`: one of them is unknown).
        delta_mv: Option<i32>,
    },
}

impl Waiting {
    /// Whether this blocks charging (`Some(true)`), discharging (`Some(false)`) or nothing.
    pub fn blocks_charge(&self) -> Option<bool> {
        match *self {
            Self::Joining { delta_mv, .. } => Some(delta_mv < 0),
            Self::Isolated { .. } => None,
        }
    }
}

/// One step's outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JoinOutput {
    /// The pack (index from 0) to send its MOSFET-on command now, if any.
    pub command: Option<usize>,
    /// Every waiting pack not commanded this step, pack order.
    pub waiting: Vec<Waiting>,
}

/// The join rule's memory: since when each pack waits, and the last join.
#[derive(Clone, Debug, Default)]
pub struct Joiner {
    config: JoinConfig,
    waiting_since: Vec<Option<Millis>>,
    /// The last pack commanded, when, and since when its current has stayed below half its alarm.
    last: Option<(usize, Millis, Option<Millis>)>,
}

impl Joiner {
    /// A join rule with these settings and nothing waiting.
    pub fn new(config: JoinConfig) -> Self {
        Self { config, ..Self::default() }
    }

    /// The settings.
    pub fn config(&self) -> &JoinConfig {
        &self.config
    }

    /// One step at `now` with the bus as it is. On an empty bus every waiting pack is within
    /// reach; on an unknown one none is, nor is a pack whose own voltage is unknown.
    pub fn step(&mut self, now: Millis, bus: Bus, packs: &[JoinPack]) -> JoinOutput {
        self.waiting_since.resize(packs.len(), None);
        for (since, p) in self.waiting_since.iter_mut().zip(packs) {
            *since = if p.waiting { Some(since.unwrap_or(now)) } else { None };
        }
        let settled = self.settled(now, packs);
        let delta = |p: &JoinPack| {
            let own = i64::from(p.voltage_mv?);
            match bus {
                Bus::At(bus) => Some(own - i64::from(bus)),
                Bus::Empty => Some(0),
                Bus::Unknown => None,
            }
        };
        let within = |d: i64| d.unsigned_abs() <= u64::from(self.config.delta_mv);
        let command = settled
            .then(|| {
                packs
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.waiting)
                    .filter_map(|(k, p)| delta(p).filter(|d| within(*d)).map(|d| (d.unsigned_abs(), k)))
                    .min()
                    .map(|(_, k)| k)
            })
            .flatten();
        if let Some(k) = command {
            self.last = Some((k, now, None));
        }
        let waiting = packs
            .iter()
            .enumerate()
            .filter(|&(k, p)| p.waiting && Some(k) != command)
            .filter_map(|(k, p)| {
                let d = delta(p).map(|d| d.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32);
                let waited = self.waiting_since[k].map_or(0, |since| now.since(since));
                match d {
                    // Within reach, only held by the one-at-a-time rule: nothing to block.
                    Some(d) if within(i64::from(d)) => None,
                    Some(d) if waited < self.config.wait_max_ms => {
                        Some(Waiting::Joining { pack: k + 1, delta_mv: d })
                    }
                    d => Some(Waiting::Isolated { pack: k + 1, delta_mv: d }),
                }
            })
            .collect();
        JoinOutput { command, waiting }
    }

    /// Whether the last pack commanded has settled: its current below half its alarm for
    /// `settle_ms` (an unknown current or alarm counts from the command on).
    fn settled(&mut self, now: Millis, packs: &[JoinPack]) -> bool {
        let settle_ms = self.config.settle_ms;
        let Some((k, at, calm_since)) = self.last.as_mut() else { return true };
        let calm = packs.get(*k).is_none_or(|p| match (p.current_ma, p.alarm_a) {
            (Some(i), Some(alarm)) => i64::from(i).unsigned_abs() * 2 < u64::from(alarm) * 1000,
            _ => true,
        });
        if !calm {
            *calm_since = None;
            return false;
        }
        let since = *calm_since.get_or_insert(now.max(*at));
        let done = now.since(since) >= settle_ms;
        if done {
            self.last = None;
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(waiting: bool, mv: u32, ma: i32) -> JoinPack {
        JoinPack { waiting, voltage_mv: Some(mv), current_ma: Some(ma), alarm_a: Some(30) }
    }

    #[test]
    fn never_a_command_while_the_gap_is_wider_than_delta() {
        let mut j = Joiner::new(JoinConfig::default());
        for (t, bus) in [(0, 27_000), (1000, 27_899), (2000, 28_101)] {
            let out = j.step(Millis(t), Bus::At(bus), &[pack(true, 28_000, 0)]);
            assert_eq!(out.command, None, "bus {bus}");
        }
        let out = j.step(Millis(3000), Bus::At(28_100), &[pack(true, 28_000, 0)]);
        assert_eq!(out.command, Some(0), "exactly delta away joins");
        let unknown = JoinPack { voltage_mv: None, ..pack(true, 28_000, 0) };
        let out = j.step(Millis(9000), Bus::At(28_000), &[unknown]);
        assert_eq!(out.command, None, "a pack of unknown voltage never joins");
        let out = j.step(Millis(20_000), Bus::Unknown, &[pack(true, 28_000, 0)]);
        assert_eq!(out.command, None, "an unknown bus joins nothing");
        let out = j.step(Millis(30_000), Bus::Empty, &[pack(true, 28_000, 0)]);
        assert_eq!(out.command, Some(0), "an empty bus drives nothing into it");
    }

    #[test]
    fn packs_join_one_at_a_time_smallest_gap_first_after_the_last_settled() {
        let mut j = Joiner::new(JoinConfig::default());
        let bus = Bus::At(27_500);
        let mut packs = [pack(true, 27_560, 0), pack(true, 27_520, 0), pack(false, 27_500, 4000)];
        assert_eq!(j.step(Millis(0), bus, &packs).command, Some(1), "20 mV before 60 mV");
        packs[1] = pack(false, 27_500, 20_000); // joined; an inrush above half its alarm
        for t in [1000, 4000, 8000] {
            let out = j.step(Millis(t), bus, &packs);
            assert_eq!(out.command, None, "at {t}: the last one has not settled");
            assert_eq!(out.waiting, [], "within reach: nothing is blocked while it waits its turn");
        }
        packs[1] = pack(false, 27_500, 6000); // below 15 A from 9 s on
        assert_eq!(j.step(Millis(9000), bus, &packs).command, None);
        assert_eq!(j.step(Millis(13_999), bus, &packs).command, None);
        assert_eq!(j.step(Millis(14_000), bus, &packs).command, Some(0), "settled 5 s");
    }

    #[test]
    fn a_pack_too_far_blocks_the_widening_direction_then_is_isolated_then_joins() {
        let mut j = Joiner::new(JoinConfig::default());
        let low = [pack(true, 26_400, 0)];
        let out = j.step(Millis(0), Bus::At(27_000), &low);
        assert_eq!(out.waiting, [Waiting::Joining { pack: 1, delta_mv: -600 }]);
        assert_eq!(out.waiting[0].blocks_charge(), Some(true), "below the bus: charging widens it");
        let high = [pack(true, 27_600, 0)];
        let mut k = Joiner::new(JoinConfig::default());
        assert_eq!(k.step(Millis(0), Bus::At(27_000), &high).waiting[0].blocks_charge(), Some(false));
        let out = j.step(Millis(15 * 60 * 1000), Bus::At(27_000), &low);
        assert_eq!(out.waiting, [Waiting::Isolated { pack: 1, delta_mv: Some(-600) }]);
        assert_eq!(out.waiting[0].blocks_charge(), None, "isolated blocks nothing");
        // Hours later a night load brings the bus down to it.
        let out = j.step(Millis(5 * 3600 * 1000), Bus::At(26_480), &low);
        assert_eq!(out.command, Some(0));
    }

    proptest::proptest! {
        /// Whatever the packs and the bus: a command only ever goes to a waiting pack within
        /// delta of the bus, and never two commands within settle_ms while the last one's current
        /// stays above half its alarm.
        #[test]
        fn commands_only_within_delta_and_one_at_a_time(
            steps in proptest::collection::vec(
                (24_000u32..30_000, proptest::collection::vec((proptest::bool::ANY, 24_000u32..30_000, -60_000i32..60_000), 1..6)),
                1..60,
            ),
        ) {
            let mut j = Joiner::new(JoinConfig::default());
            let mut last: Option<(usize, u64)> = None;
            for (s, (bus, packs)) in steps.iter().enumerate() {
                let now = s as u64 * 1000;
                let packs: Vec<JoinPack> = packs.iter().map(|&(w, mv, ma)| pack(w, mv, ma)).collect();
                let out = j.step(Millis(now), Bus::At(*bus), &packs);
                if let Some(k) = out.command {
                    let p = packs[k];
                    proptest::prop_assert!(p.waiting);
                    proptest::prop_assert!(p.voltage_mv.unwrap().abs_diff(*bus) <= 100);
                    if let Some((_, at)) = last {
                        proptest::prop_assert!(now - at >= 5000, "two joins {} ms apart", now - at);
                    }
                    last = Some((k, now));
                }
            }
        }
    }
}
