//! Made-up days of one-minute samples in the daemon's history format: a battery that charges
//! from the sun by day and carries the house by night, with charging cut for two hours by a hot
//! cell (two to four hours before the end) and a half-hour gap where the daemon was down (five
//! hours before). Plausible, not measured: for the history
//! endpoint's tests and the page's charts.

use std::path::Path;

use daemon::history::{INTERVAL_S, PackSample, Sample};

/// The samples of the `hours` before `end_s` (Unix seconds, taken down to a minute) for `packs`
/// packs, oldest first; the gap leaves some minutes out.
pub fn days(end_s: i64, hours: i64, packs: usize) -> Vec<Sample> {
    let end = end_s - end_s.rem_euclid(INTERVAL_S);
    let first = end - hours * 3600;
    let mut out = Vec::new();
    let mut soc: f64 = 55.0;
    for k in 0..hours * 60 {
        let t = first + k * INTERVAL_S;
        let minutes_before_end = (end - t) / 60;
        // The daemon was down for half an hour five hours ago.
        if (300..330).contains(&minutes_before_end) {
            continue;
        }
        let hour = (t.rem_euclid(86_400)) as f64 / 3600.0;
        // Sun from 8 to 17 h, the house all day, more in the evening.
        let sun =
            if (8.0..17.0).contains(&hour) { ((hour - 8.0) / 9.0 * std::f64::consts::PI).sin() } else { 0.0 };
        let house = if (18.0..23.0).contains(&hour) { 0.45 } else { 0.2 };
        let hot = (120..240).contains(&minutes_before_end);
        let mut amps = 90.0 * sun - 60.0 * house;
        if hot && amps > 0.0 {
            amps = 0.0;
        }
        if soc >= 99.0 && amps > 0.0 {
            amps = 2.0;
        }
        if soc <= 12.0 && amps < 0.0 {
            amps = 0.0;
        }
        soc = (soc + amps / 200.0 * 100.0 / 60.0).clamp(10.0, 100.0);
        let volts = 51.2 + (soc - 50.0) * 0.02 + amps * 0.01;
        let cell = (volts / 16.0 * 1000.0) as u16;
        let limit_a = if soc > 95.0 { 20.0 } else { 100.0 };
        out.push(Sample {
            time: jiff::Timestamp::from_second(t).map(|t| t.to_string()).unwrap(),
            soc_pct: Some(soc.round() as u8),
            voltage_mv: Some((volts * 1000.0) as u32),
            current_ma: Some((amps * 1000.0) as i32),
            power_w: Some((volts * amps) as i64),
            cell_min_mv: Some(cell - 6),
            cell_max_mv: Some(cell + 4 + if hot { 40 } else { 0 }),
            charge_enabled: !hot,
            discharge_enabled: soc > 10.5,
            charge_limit_ma: Some(if hot { 0 } else { (limit_a * 1000.0) as i32 }),
            discharge_limit_ma: Some(100_000),
            reasons: if hot {
                vec!["pack 2 cell 3 is too hot to charge (46.0 °C)".into()]
            } else {
                Vec::new()
            },
            packs: (0..packs)
                .map(|p| PackSample {
                    current_ma: Some((amps * 1000.0 / packs as f64 * (1.0 + 0.05 * p as f64)) as i32),
                    soc_pct: Some((soc - p as f64).round().clamp(0.0, 100.0) as u8),
                })
                .collect(),
        });
    }
    out
}

/// Writes `samples` as a history file at `path`.
pub fn write(path: &Path, samples: &[Sample]) {
    let text: String = samples.iter().map(|s| serde_json::to_string(s).unwrap() + "\n").collect();
    std::fs::write(path, text).unwrap();
}
