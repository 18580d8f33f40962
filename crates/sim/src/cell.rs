//! One LiFePO4 cell: open-circuit voltage over state of charge, internal resistance, heat.

/// Open-circuit voltage (mV) at state of charge (0..=1): steep ends, a flat middle.
const OCV: &[(f64, f64)] = &[
    (0.00, 2500.0),
    (0.02, 2900.0),
    (0.05, 3050.0),
    (0.10, 3180.0),
    (0.20, 3240.0),
    (0.30, 3270.0),
    (0.40, 3285.0),
    (0.50, 3295.0),
    (0.60, 3305.0),
    (0.70, 3320.0),
    (0.80, 3335.0),
    (0.90, 3350.0),
    (0.95, 3380.0),
    (0.98, 3450.0),
    (1.00, 3600.0),
    // Overcharge: a full cell that is still pushed climbs fast; this is where BMS protection trips.
    (1.02, 3900.0),
];

/// The highest state of charge the model allows (overcharged).
pub const MAX_SOC: f64 = 1.02;

/// The open-circuit voltage in mV at `soc`, clamped to the curve's ends.
pub fn ocv_mv(soc: f64) -> f64 {
    let soc = soc.clamp(0.0, MAX_SOC);
    for w in OCV.windows(2) {
        let ((s0, v0), (s1, v1)) = (w[0], w[1]);
        if soc <= s1 {
            return v0 + (v1 - v0) * (soc - s0) / (s1 - s0);
        }
    }
    OCV[OCV.len() - 1].1
}

/// Energy (Wh) stored per Ah of capacity from 0 to `soc`: the integral of the OCV curve.
pub fn energy_wh_per_ah(soc: f64) -> f64 {
    let soc = soc.clamp(0.0, MAX_SOC);
    let mut e = 0.0;
    for w in OCV.windows(2) {
        let ((s0, v0), (s1, v1)) = (w[0], w[1]);
        let hi = soc.min(s1);
        if hi <= s0 {
            break;
        }
        let vh = v0 + (v1 - v0) * (hi - s0) / (s1 - s0);
        e += (hi - s0) * (v0 + vh) / 2.0 / 1000.0;
    }
    e
}

/// A cell's state.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    /// True capacity, Ah.
    pub capacity_ah: f64,
    /// True state of charge, 0..=1 (up to [`MAX_SOC`] when overcharged).
    pub soc: f64,
    /// Internal resistance, Ω.
    pub resistance: f64,
    /// Temperature, °C.
    pub temp_c: f64,
}

impl Cell {
    /// Open-circuit voltage, mV.
    pub fn ocv_mv(&self) -> f64 {
        ocv_mv(self.soc)
    }

    /// Terminal voltage at `current_a` (charge positive), mV.
    pub fn voltage_mv(&self, current_a: f64) -> f64 {
        self.ocv_mv() + current_a * self.resistance * 1000.0
    }

    /// Moves charge: `current_a` for `dt` seconds (charge positive).
    pub fn pass(&mut self, current_a: f64, dt: f64) {
        self.soc = (self.soc + current_a * dt / 3600.0 / self.capacity_ah).clamp(0.0, MAX_SOC);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_curve_is_monotonic_with_steep_ends() {
        let mut last = 0.0;
        for k in 0..=100 {
            let v = ocv_mv(f64::from(k) / 100.0);
            assert!(v >= last);
            last = v;
        }
        assert!(ocv_mv(0.5) - ocv_mv(0.3) < 40.0, "flat middle");
        assert!(ocv_mv(1.0) - ocv_mv(0.95) > 150.0, "steep top");
        assert!(ocv_mv(MAX_SOC) > 3700.0, "an overcharged cell passes the protect level");
        assert!(ocv_mv(0.05) - ocv_mv(0.0) > 400.0, "steep bottom");
    }

    #[test]
    fn stored_energy_matches_a_numeric_integral() {
        let n = 100_000;
        let numeric: f64 =
            (0..n).map(|k| ocv_mv((f64::from(k) + 0.5) / f64::from(n)) / 1000.0 / f64::from(n)).sum();
        // (the overcharge region above 1.0 is not part of this integral)
        assert!((energy_wh_per_ah(1.0) - numeric).abs() < 1e-4, "{} vs {numeric}", energy_wh_per_ah(1.0));
    }
}
