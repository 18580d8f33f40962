//! Energy into and out of the battery, for Home Assistant's Energy dashboard and the metrics.
//!
//! Each new reading is a sample of power (its voltage × its current, positive charging). Between
//! two samples of one source the energy is the trapezoid of their charging parts and of their
//! discharging parts, so a current that changes sign costs little. A gap longer than
//! [`MAX_GAP_MS`] (the line was dead, the daemon stopped) counts nothing: what was not measured
//! is not guessed.
//!
//! The stack's counters follow the coulomb counter while it reads (it measures the whole stack's
//! current), else the sum of the packs'. Every pack has its own.
//!
//! The counters only grow. They are kept in the state file (every `state.energy_save_s`, and at
//! a clean stop), and what the status shows is what the state file holds (the writer thread
//! tells after each write), so a restart, a crash or a failed write never shows less than was
//! shown before (Home Assistant takes a `total_increasing` sensor that falls for a meter
//! reset and counts the whole total again).

use maestro_core::Millis;
use serde::{Deserialize, Serialize};

use crate::shared::PackReadings;

/// Samples further apart than this are not joined.
pub const MAX_GAP_MS: u64 = 60_000;

/// Energy one way and the other, Wh.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Counter {
    /// Into the battery.
    pub charged_wh: f64,
    /// Out of the battery.
    pub discharged_wh: f64,
}

impl Counter {
    fn add(&mut self, other: Self) {
        self.charged_wh += other.charged_wh;
        self.discharged_wh += other.discharged_wh;
    }

    /// The larger of each, so a counter never goes back whatever it is merged with.
    fn max(self, other: Self) -> Self {
        Self {
            charged_wh: self.charged_wh.max(other.charged_wh),
            discharged_wh: self.discharged_wh.max(other.discharged_wh),
        }
    }
}

/// The counters as the state file keeps them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Energy {
    /// The whole stack.
    pub stack: Counter,
    /// Each pack, pack 1 first.
    pub packs: Vec<Counter>,
}

/// No meter of a home battery reaches this, Wh (1 GWh): a larger value is a corrupt file.
pub const METER_MAX_WH: f64 = 1e9;

impl Energy {
    /// Whether every meter is a number from 0 to [`METER_MAX_WH`].
    ///
    /// # Errors
    /// The first meter that is not, named.
    pub fn check(&self) -> Result<(), String> {
        let counters = std::iter::once(("stack".to_owned(), &self.stack))
            .chain(self.packs.iter().enumerate().map(|(k, c)| (format!("pack {}", k + 1), c)));
        for (name, c) in counters {
            for (what, v) in [("charged", c.charged_wh), ("discharged", c.discharged_wh)] {
                if !(0.0..=METER_MAX_WH).contains(&v) {
                    return Err(format!(
                        "the {name} {what} energy meter holds {v} Wh, outside 0..{METER_MAX_WH} Wh"
                    ));
                }
            }
        }
        Ok(())
    }

    /// As loaded, with one counter for each of `packs` (a pack added to the configuration starts
    /// at zero; counters beyond the configuration's packs are dropped) and nothing negative or
    /// not a number (a hand-edited file).
    fn fitted(mut self, packs: usize) -> Self {
        self.packs.resize(packs, Counter::default());
        for c in std::iter::once(&mut self.stack).chain(&mut self.packs) {
            for v in [&mut c.charged_wh, &mut c.discharged_wh] {
                if !v.is_finite() || *v < 0.0 {
                    *v = 0.0;
                }
            }
        }
        self
    }
}

/// One source's last sample: when, and its power in W.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Sample {
    at: Millis,
    watts: f64,
}

impl Sample {
    /// What flowed since `self`, up to `next`; nothing across a gap or out of order.
    fn until(self, next: Self) -> Counter {
        if next.at.0 <= self.at.0 || next.at.0 - self.at.0 > MAX_GAP_MS {
            return Counter::default();
        }
        let hours = (next.at.0 - self.at.0) as f64 / 3_600_000.0;
        let trapezoid = |a: f64, b: f64| (a.max(0.0) + b.max(0.0)) / 2.0 * hours;
        Counter {
            charged_wh: trapezoid(self.watts, next.watts),
            discharged_wh: trapezoid(-self.watts, -next.watts),
        }
    }
}

/// Where the stack's counter took its last step from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The coulomb counter.
    Coil,
    /// The packs' own currents, summed.
    Packs,
}

/// Integrates the readings; sans-IO, stepped by the safety loop with the readings it decided on.
#[derive(Clone, Debug)]
pub struct Meter {
    save_every_ms: u64,
    energy: Energy,
    saved: Energy,
    saved_at: Millis,
    packs: Vec<Option<Sample>>,
    coil: Option<Sample>,
    source: Option<Source>,
}

impl Meter {
    /// Goes on from `loaded` (the state file's counters) for `packs` packs, saving every
    /// `save_every_ms` from `now`.
    pub fn new(loaded: Energy, packs: usize, now: Millis, save_every_ms: u64) -> Self {
        let energy = loaded.fitted(packs);
        Self {
            save_every_ms,
            saved: energy.clone(),
            energy,
            saved_at: now,
            packs: vec![None; packs],
            coil: None,
            source: None,
        }
    }

    /// Takes in the readings at `now`; returns the counters when they are due for the state file
    /// (every `save_every_ms` while they grow).
    pub fn step(
        &mut self,
        now: Millis,
        packs: &[PackReadings],
        coil: Option<(coil_modbus::Reading, Millis)>,
    ) -> Option<Energy> {
        let mut packs_sum = Counter::default();
        for (k, readings) in packs.iter().enumerate() {
            let Some((analog, at)) = &readings.analog else { continue };
            let watts = f64::from(analog.voltage.raw()) * f64::from(analog.current.raw()) * 10.0 / 1e6;
            let sample = Sample { at: *at, watts };
            let Some(slot) = self.packs.get_mut(k) else { continue };
            if slot.is_some_and(|s| s.at == sample.at) {
                continue;
            }
            if let Some(last) = *slot {
                let flowed = last.until(sample);
                packs_sum.add(flowed);
                if let Some(c) = self.energy.packs.get_mut(k) {
                    c.add(flowed);
                }
            }
            *slot = Some(sample);
        }
        let mut coil_flowed = None;
        if let Some((reading, at)) = coil {
            let sample =
                Sample { at, watts: f64::from(reading.voltage_mv()) * f64::from(reading.current_ma()) / 1e6 };
            if self.coil.is_none_or(|s| s.at != at) {
                coil_flowed = self.coil.map(|last| last.until(sample));
                self.coil = Some(sample);
            }
        }
        let coil_reads = self.coil.is_some_and(|s| now.since(s.at) <= MAX_GAP_MS);
        if coil_reads {
            if let Some(flowed) = coil_flowed {
                self.energy.stack.add(flowed);
                self.source = Some(Source::Coil);
            }
        } else if packs_sum != Counter::default() || self.packs.iter().any(Option::is_some) {
            self.energy.stack.add(packs_sum);
            self.source = Some(Source::Packs);
        }
        let due = now.since(self.saved_at) >= self.save_every_ms;
        (due && self.energy != self.saved).then(|| self.save(now))
    }

    /// Marks the counters as handed to the state file now and returns them (also at shutdown).
    pub fn save(&mut self, now: Millis) -> Energy {
        self.saved_at = now;
        self.saved = Energy {
            stack: self.saved.stack.max(self.energy.stack),
            packs: self
                .energy
                .packs
                .iter()
                .zip(&self.saved.packs)
                .map(|(now, before)| before.max(*now))
                .collect(),
        };
        self.saved.clone()
    }

    /// The counters as last handed to the state file: what the status shows.
    pub fn saved(&self) -> &Energy {
        &self.saved
    }

    /// Where the stack's counter last took a step from.
    pub fn source(&self) -> Option<Source> {
        self.source
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use pace_proto::PackAnalog;

    use super::*;

    fn pack(at: u64, volts: f64, amps: f64) -> PackReadings {
        let a = PackAnalog {
            cells: Vec::new(),
            temps: Vec::new(),
            current: units::CentiAmps::from_raw((amps * 100.0) as i16),
            voltage: units::Millivolts::from_raw((volts * 1000.0) as u16),
            remaining: units::CentiAmpHours::from_raw(0),
            user_defined: 3,
            full: units::CentiAmpHours::from_raw(0),
            cycles: 0,
            design: units::CentiAmpHours::from_raw(0),
            extra: Vec::new(),
        };
        PackReadings { analog: Some((Arc::new(a), Millis(at))), ..PackReadings::default() }
    }

    #[test]
    fn a_steady_charge_counts_volts_times_amps_times_hours() {
        let mut m = Meter::new(Energy::default(), 1, Millis(0), 60_000);
        // 52 V × 10 A for one hour, read every second.
        for s in 0..=3600 {
            m.step(Millis(s * 1000), &[pack(s * 1000, 52.0, 10.0)], None);
        }
        let e = m.save(Millis(3_600_000));
        assert!((e.packs[0].charged_wh - 520.0).abs() < 1e-6, "{e:?}");
        assert!((e.stack.charged_wh - 520.0).abs() < 1e-6, "{e:?}");
        assert_eq!(e.packs[0].discharged_wh, 0.0);
        assert_eq!(m.source(), Some(Source::Packs));
    }

    #[test]
    fn a_gap_counts_nothing_and_a_sign_change_splits() {
        let mut m = Meter::new(Energy::default(), 1, Millis(0), 60_000);
        m.step(Millis(0), &[pack(0, 50.0, 20.0)], None);
        // The line was dead for two minutes: not joined.
        m.step(Millis(120_000), &[pack(120_000, 50.0, 20.0)], None);
        assert_eq!(m.save(Millis(120_000)).packs[0], Counter::default());
        // +1000 W to -1000 W over 36 s: 5 Wh each way by the trapezoids.
        m.step(Millis(156_000), &[pack(156_000, 50.0, -20.0)], None);
        let e = m.save(Millis(156_000));
        assert!((e.packs[0].charged_wh - 5.0).abs() < 1e-9, "{e:?}");
        assert!((e.packs[0].discharged_wh - 5.0).abs() < 1e-9, "{e:?}");
    }

    #[test]
    fn the_same_reading_twice_counts_once() {
        let mut m = Meter::new(Energy::default(), 1, Millis(0), 60_000);
        m.step(Millis(0), &[pack(0, 50.0, 10.0)], None);
        for now in [1000, 2000, 3000] {
            m.step(Millis(now), &[pack(1000, 50.0, 10.0)], None);
        }
        let e = m.save(Millis(3000));
        assert!((e.packs[0].charged_wh - 500.0 / 3600.0).abs() < 1e-9, "{e:?}");
    }

    #[test]
    fn the_status_shows_what_was_saved_and_saving_is_due_once_a_minute() {
        let loaded = Energy { stack: Counter { charged_wh: 100.0, discharged_wh: 7.0 }, packs: vec![] };
        let mut m = Meter::new(loaded, 1, Millis(0), 60_000);
        assert_eq!(m.saved().stack.charged_wh, 100.0, "a restart goes on from the file");
        for s in 0..60 {
            assert!(m.step(Millis(s * 1000), &[pack(s * 1000, 50.0, 10.0)], None).is_none(), "{s}");
            assert_eq!(m.saved().stack.charged_wh, 100.0, "not shown before it is saved");
        }
        let saved = m.step(Millis(60_000), &[pack(60_000, 50.0, 10.0)], None).expect("due after a minute");
        assert!((saved.stack.charged_wh - 100.0 - 500.0 / 60.0).abs() < 1e-9, "{saved:?}");
        assert_eq!(m.saved(), &saved);
        assert!(m.step(Millis(61_000), &[pack(61_000, 50.0, 10.0)], None).is_none());
    }

    fn coil(volts: f64, amps: f64) -> coil_modbus::Reading {
        coil_modbus::Reading {
            soc_pct: 50,
            temperature_c: 20,
            voltage_cv: (volts * 100.0) as u16,
            current_ca: (amps.abs() * 100.0) as u16,
            power_dw: 0,
            energy_cwh: 0,
            remaining_mah: 0,
            flags: 0,
            state: if amps < 0.0 { coil_modbus::State::Discharging } else { coil_modbus::State::Charging },
        }
    }

    #[test]
    fn the_stack_follows_the_coil_while_it_reads_and_the_packs_when_it_does_not() {
        let mut m = Meter::new(Energy::default(), 2, Millis(0), 60_000);
        // Packs say 2 × 5 A of charge; the coil, which sees the whole stack, says 20 A of
        // discharge (the packs' own sensors are off): the stack takes the coil's word.
        for s in 0..=36 {
            let at = s * 1000;
            m.step(
                Millis(at),
                &[pack(at, 50.0, 5.0), pack(at, 50.0, 5.0)],
                Some((coil(50.0, -20.0), Millis(at))),
            );
        }
        let e = m.save(Millis(36_000));
        assert!((e.stack.discharged_wh - 10.0).abs() < 1e-9, "{e:?}");
        assert_eq!(e.stack.charged_wh, 0.0);
        assert!((e.packs[0].charged_wh - 2.5).abs() < 1e-9, "{e:?}");
        assert_eq!(m.source(), Some(Source::Coil));
        // The coil falls silent: after a minute the packs carry the stack's counter.
        let last_coil = Some((coil(50.0, -20.0), Millis(36_000)));
        for s in 37..=200 {
            let at = s * 1000;
            m.step(Millis(at), &[pack(at, 50.0, 5.0), pack(at, 50.0, 5.0)], last_coil);
        }
        let e = m.save(Millis(200_000));
        assert_eq!(m.source(), Some(Source::Packs));
        // The steps from 97 s on (more than a minute after the coil's last reading) to 200 s,
        // each adding the second before it: 104 s of 500 W.
        assert!((e.stack.charged_wh - 500.0 * 104.0 / 3600.0).abs() < 1e-6, "{e:?}");
    }

    #[test]
    fn a_hand_edited_file_never_makes_a_counter_negative() {
        let loaded = Energy {
            stack: Counter { charged_wh: -5.0, discharged_wh: f64::NAN },
            packs: vec![Counter::default(); 5],
        };
        let m = Meter::new(loaded, 2, Millis(0), 60_000);
        assert_eq!(m.saved().stack, Counter::default());
        assert_eq!(m.saved().packs.len(), 2);
    }
}
