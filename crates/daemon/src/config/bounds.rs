//! Every numeric key's accepted values, from LiFePO4 physics and the protocols' field widths, and
//! the orderings between keys. One table ([`BOUNDS`]) is the truth: the check reads it, and the
//! configuration reference in `docs/configuration.md` is tested against it.
//!
//! A value outside its bound is refused when the file is read, naming the key; NaN and the
//! infinities are refused everywhere. Voltages that depend on the number of cells in series can
//! only be checked loosely here (a stack has 4 to 16 cells): [`charge_voltage_fits`] checks them
//! again against what the packs report, and the safety loop blocks charging while they do not fit.

/// A numeric key's inclusive range and where it comes from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bound {
    /// The key, `section.name` (`[[pack]]` keys as `pack.name`).
    pub key: &'static str,
    /// The lowest value accepted.
    pub lo: f64,
    /// The highest value accepted.
    pub hi: f64,
    /// Why these values.
    pub why: &'static str,
}

const fn b(key: &'static str, lo: f64, hi: f64, why: &'static str) -> Bound {
    Bound { key, lo, hi, why }
}

/// The fewest and the most LiFePO4 cells in series a Pace pack has (4S 12 V to 16S 48 V).
pub const CELLS: (u16, u16) = (4, 16);
/// A regular charge voltage lies within this range per cell, mV: below it a LiFePO4 cell never
/// charges full, above it the cells run into their BMS's over-voltage protection.
pub const CHARGE_PER_CELL_MV: (u32, u32) = (3350, 3600);
/// A rebalance's charge voltage reaches at most this per cell, mV (the cells' own absolute limit).
pub const REBALANCE_PER_CELL_MAX_MV: u32 = 3650;

/// Every numeric key's bound. Keys with orderings between them are also checked by
/// [`orderings`](super::Config).
pub const BOUNDS: &[Bound] = &[
    b("pack.adr", 0.0, 16.0, "a Pace pack's DIP switches (0-15; some firmwares count from 1)"),
    b("coil.slave", 1.0, 247.0, "Modbus unit addresses"),
    b("inverter.slave", 1.0, 247.0, "Modbus unit addresses"),
    b("pylon.address", 1.0, 254.0, "a Pylontech address byte; 0 and 255 are not a master's"),
    b("can.period_s", 0.1, 10.0, "inverters drop a BMS that is silent for about 10 s"),
    b("can.peer_timeout_s", 1.0, 600.0, "the inverter's heartbeat comes every second or so"),
    b("safety.stale_after_s", 1.0, 60.0, "older readings say nothing true about a pack (rules 2-3)"),
    b("safety.decision_max_age_s", 0.5, 30.0, "rule 10: a stalled safety loop is noticed within it"),
    b("safety.overcurrent_for_s", 0.0, 10.0, "a BMS trips on over-current within seconds (rule 7)"),
    b("safety.cell_ov_mv", 3450.0, 3750.0, "LiFePO4 is full at 3.45-3.65 V; BMSes protect by 3.75 V"),
    b("safety.cell_ov_release_mv", 3300.0, 3700.0, "below the over-voltage threshold (rule 11)"),
    b(
        "safety.cell_uv_mv",
        2500.0,
        3100.0,
        "LiFePO4 is damaged below 2.5 V and still full of charge at 3.1 V",
    ),
    b("safety.cell_uv_release_mv", 2600.0, 3300.0, "above the under-voltage threshold (rule 14)"),
    b("safety.cell_ot_c", 30.0, 70.0, "LiFePO4 cells age fast above 45-60 °C"),
    b("safety.cell_cold_charge_c", 0.0, 15.0, "LiFePO4 must never be charged below 0 °C"),
    b("safety.cell_cold_discharge_c", -30.0, 0.0, "LiFePO4 discharges down to -20 °C"),
    b("safety.charge_voltage_mv", 13_400.0, 57_600.0, "4-16 cells × 3.35-3.60 V; checked again per cell"),
    b("safety.current_derating", 0.1, 1.0, "a share of the packs' own alarms"),
    b("safety.limit_rise_per_s", 0.01, 1.0, "a share of the base limit per second"),
    b("safety.pack_current_guard", 0.5, 1.0, "a share of a pack's own alarm"),
    b("safety.recovery_charge_a", 0.0, 50.0, "per pack, into cells under BMS protection"),
    b("safety.join_delta_mv", 20.0, 300.0, "about 15 mΩ a 24 V pack: 0.3 V drives 20 A between packs"),
    b("safety.join_settle_s", 1.0, 600.0, "a joining pack's inrush fades within seconds"),
    b("safety.join_wait_max_s", 10.0, 86_400.0, "how long a gap may block a direction, up to a day"),
    b("poll.period_s", 0.2, 10.0, "a pack must be read several times within safety.stale_after_s"),
    b("poll.timeout_s", 0.05, 10.0, "a Pace reply comes within 0.3 s at 9600 baud"),
    b("poll.limits_every_s", 10.0, 86_400.0, "the packs' settings change only when written"),
    b("state.event_log_max_bytes", 4096.0, 1_073_741_824.0, "4 KiB to 1 GiB"),
    b("state.event_log_keep", 0.0, 100.0, "rotated files kept"),
    b("state.energy_save_s", 1.0, 3600.0, "how much of the meters' growth a crash may lose"),
    b("rebalance.every_days", 1.0, 365.0, "days"),
    b("rebalance.capacity_mah", 1000.0, 4_000_000.0, "1 Ah to 4000 Ah"),
    b("rebalance.regular_capacity_mah", 1000.0, 4_000_000.0, "1 Ah to 4000 Ah"),
    b(
        "rebalance.charge_voltage_mv",
        13_400.0,
        58_400.0,
        "4-16 cells × at most 3.65 V; checked again per cell",
    ),
    b("rebalance.threshold_mv", 13_400.0, 58_400.0, "between the regular and the rebalance charge voltage"),
    b("rebalance.tail_current_a", 0.5, 100.0, "the current that marks a full stack"),
    b("rebalance.balanced_delta_mv", 5.0, 500.0, "a cell spread"),
    b("rebalance.hold_max_s", 0.0, 604_800.0, "up to a week"),
    b(
        "rebalance.hold_charge_a",
        0.0,
        10.0,
        "per pack at the top: a pack releasing by itself finds the bus near",
    ),
    b("rebalance.settle_max_s", 60.0, 2_592_000.0, "up to 30 days"),
    b("rebalance.retrigger_min_s", 0.0, 31_536_000.0, "up to a year"),
    b("mqtt.state_every_s", 1.0, 30.0, "Home Assistant marks a silent entity unavailable"),
];

/// The bound of `key`.
pub fn bound(key: &str) -> Option<&'static Bound> {
    BOUNDS.iter().find(|b| b.key == key)
}

/// Whether `v` is finite and inside `key`'s bound; `Err` says what is wrong.
///
/// # Errors
/// The value is NaN, infinite or outside the bound (or `key` has none: a bug, said plainly).
pub fn check(key: &str, v: f64) -> Result<(), String> {
    let Some(b) = bound(key) else { return Err(format!("no bound is known for {key}")) };
    if !v.is_finite() {
        let what = if v.is_nan() { "not a number" } else { "not a finite number" };
        return Err(format!("{v} is {what}; give a value from {} to {}", b.lo, b.hi));
    }
    if !(b.lo..=b.hi).contains(&v) {
        return Err(format!("{v} is outside {}..{} ({})", b.lo, b.hi, b.why));
    }
    Ok(())
}

/// The cell counts (in [`CELLS`]) for which `mv` lies in `per_cell` (mV per cell, inclusive).
pub fn cell_counts(mv: u32, per_cell: (u32, u32)) -> impl Iterator<Item = u16> {
    (CELLS.0..=CELLS.1)
        .filter(move |&n| (u32::from(n) * per_cell.0..=u32::from(n) * per_cell.1).contains(&mv))
}

/// Whether a charge voltage of `mv` fits a stack of `cells` in series: within
/// [`CHARGE_PER_CELL_MV`] per cell, or, during a rebalance, from its lower end to
/// [`REBALANCE_PER_CELL_MAX_MV`].
pub fn charge_voltage_fits(mv: u32, cells: u16, rebalance: bool) -> bool {
    let n = u32::from(cells);
    let hi = if rebalance { REBALANCE_PER_CELL_MAX_MV } else { CHARGE_PER_CELL_MV.1 };
    n > 0 && (n * CHARGE_PER_CELL_MV.0..=n * hi).contains(&mv)
}

/// The configuration reference's table of bounds (Markdown), as `docs/configuration.md` holds it.
pub fn markdown_table() -> String {
    let mut out = String::from("| key | from | to | why |\n|---|---:|---:|---|\n");
    for b in BOUNDS {
        out.push_str(&format!("| `{}` | {} | {} | {} |\n", b.key, b.lo, b.hi, b.why));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bound_is_finite_and_ordered() {
        for b in BOUNDS {
            assert!(b.lo.is_finite() && b.hi.is_finite() && b.lo < b.hi, "{}", b.key);
        }
    }

    #[test]
    fn nan_and_infinities_are_refused_for_every_key() {
        for b in BOUNDS {
            for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
                let e = check(b.key, v).unwrap_err();
                assert!(e.contains("number; give a value from"), "{}: {e}", b.key);
            }
            assert!(check(b.key, b.lo).is_ok() && check(b.key, b.hi).is_ok(), "{}", b.key);
            assert!(check(b.key, b.hi + 1.0).is_err(), "{}", b.key);
        }
    }

    #[test]
    fn charge_voltages_fit_their_cell_counts() {
        assert!(charge_voltage_fits(27_350, 8, false));
        assert!(!charge_voltage_fits(57_350, 8, false), "a 48 V limit on 8 cells");
        assert!(!charge_voltage_fits(28_950, 8, false), "3.62 V a cell is a rebalance's");
        assert!(charge_voltage_fits(28_950, 8, true));
        assert!(!charge_voltage_fits(29_300, 8, true), "above 3.65 V a cell");
        assert!(!charge_voltage_fits(26_700, 8, true), "below 3.35 V a cell charges nothing");
        assert!(!charge_voltage_fits(27_350, 0, false));
        assert_eq!(cell_counts(57_350, CHARGE_PER_CELL_MV).collect::<Vec<_>>(), [16]);
        assert_eq!(cell_counts(27_350, CHARGE_PER_CELL_MV).collect::<Vec<_>>(), [8]);
        assert_eq!(cell_counts(29_500, CHARGE_PER_CELL_MV).count(), 0, "between 8 and 9 cells");
    }
}
