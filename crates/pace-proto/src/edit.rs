//! Editing a configuration block by its JSON field names, within the limits PbmsTools enforces
//! (as esphome-pace-bms documents them).

use units::{DeciKelvin, Millivolts, Pace, Percent};

use crate::config::*;

/// A write limit: `min..=max` in the field's JSON unit, in steps of `step`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// Lowest value.
    pub min: i64,
    /// Highest value.
    pub max: i64,
    /// Step.
    pub step: i64,
}

const fn lim(min: i64, max: i64, step: i64) -> Limit {
    Limit { min, max, step }
}

const DELAY_100MS: Limit = lim(1000, 20000, 500);
const DELAY_OC: Limit = lim(500, 25000, 500);
const ANY_BYTE: Limit = lim(0, 255, 1);

impl Limit {
    fn check(self, key: &str, v: i64) -> Result<i64, String> {
        if v < self.min || v > self.max || (v - self.min) % self.step != 0 {
            let step = if self.step > 1 { format!(" in steps of {}", self.step) } else { String::new() };
            return Err(format!("{key}={v} is outside {}..{}{step}", self.min, self.max));
        }
        Ok(v)
    }
}

fn voltage_limit(kind: ConfigKind) -> Limit {
    match kind {
        ConfigKind::CellOv => lim(2500, 4500, 10),
        ConfigKind::PackOv => lim(20000, 65000, 10),
        ConfigKind::CellUv => lim(2000, 3500, 10),
        _ => lim(15000, 50000, 10),
    }
}

fn temp_limit(kind: ConfigKind, under: bool) -> Limit {
    match (kind, under) {
        (ConfigKind::UnderTemp, _) | (ConfigKind::EnvironmentTemp, true) => lim(-350, 300, 10),
        (ConfigKind::MosfetTemp, _) => lim(300, 1200, 10),
        _ => lim(200, 1000, 10),
    }
}

fn set_temp(t: &mut TempThresholds, which: &str, v: i64) -> bool {
    let k = DeciKelvin::<Pace>::from_deci_celsius(v as i32);
    match which {
        "alarm_dc" => t.alarm = k,
        "protect_dc" => t.protect = k,
        "release_dc" => t.release = k,
        _ => return false,
    }
    true
}

impl Config {
    /// The field names [`Config::set`] takes for this block (its JSON names).
    pub fn keys(&self) -> &'static [&'static str] {
        match self {
            Self::CellOv(_) | Self::CellUv(_) | Self::PackOv(_) | Self::PackUv(_) => {
                &["alarm_mv", "protect_mv", "release_mv", "delay_ms"]
            }
            Self::ChargeOc(_) | Self::DischargeOc1(_) => &["alarm_a", "protect_a", "delay_ms"],
            Self::DischargeOc2(_) => &["protect_a", "delay_ms"],
            Self::ShortCircuit(_) => &["delay_us"],
            Self::Balancing(_) => &["threshold_mv", "delta_mv"],
            Self::Sleep(_) => &["cell_mv", "delay_min"],
            Self::FullCharge(_) => &["full_charge_mv", "full_charge_ma", "low_soc_pct"],
            Self::OverTemp(_) | Self::UnderTemp(_) => &[
                "charge_alarm_dc",
                "charge_protect_dc",
                "charge_release_dc",
                "discharge_alarm_dc",
                "discharge_protect_dc",
                "discharge_release_dc",
            ],
            Self::MosfetTemp(_) => &["alarm_dc", "protect_dc", "release_dc"],
            Self::EnvironmentTemp(_) => &[
                "under_alarm_dc",
                "under_protect_dc",
                "under_release_dc",
                "over_alarm_dc",
                "over_protect_dc",
                "over_release_dc",
            ],
            Self::ChargeLimiter(_) => &["current_a"],
            Self::Capacity(_) => &[],
            Self::Protocols(_) => &["can", "rs485", "mode"],
            Self::Time(_) => &["year", "month", "day", "hour", "minute", "second"],
        }
    }

    /// Sets one field by its JSON name, the value in that name's unit (`alarm_mv=3650`,
    /// `delay_ms=1000`, `charge_alarm_dc=500`), checked against the write limits.
    ///
    /// # Errors
    /// A message naming the key: unknown for this block, or outside its limits.
    pub fn set(&mut self, key: &str, v: i64) -> Result<(), String> {
        let kind = self.kind();
        let unknown = |keys: &[&str]| {
            format!(
                "{} has no field '{key}'; its fields: {}",
                kind.name(),
                if keys.is_empty() { "none (read only)".to_owned() } else { keys.join(", ") }
            )
        };
        let keys = self.keys();
        let mv = |v: i64| Millivolts::from_raw(v as u16);
        match self {
            Self::CellOv(c) | Self::CellUv(c) | Self::PackOv(c) | Self::PackUv(c) => match key {
                "alarm_mv" => c.alarm = mv(voltage_limit(kind).check(key, v)?),
                "protect_mv" => c.protect = mv(voltage_limit(kind).check(key, v)?),
                "release_mv" => c.release = mv(voltage_limit(kind).check(key, v)?),
                "delay_ms" => c.delay = (DELAY_100MS.check(key, v)? / 100) as u8,
                _ => return Err(unknown(keys)),
            },
            Self::ChargeOc(c) | Self::DischargeOc1(c) => match key {
                // Discharge limits read back negative but are written positive.
                "alarm_a" => c.alarm_a = lim(1, 220, 1).check(key, v.abs())? as i16,
                "protect_a" => c.protect_a = lim(1, 220, 1).check(key, v.abs())? as i16,
                "delay_ms" => c.delay = (DELAY_OC.check(key, v)? / 100) as u8,
                _ => return Err(unknown(keys)),
            },
            Self::DischargeOc2(d) => match key {
                "protect_a" => d.protect_a = lim(5, 255, 5).check(key, v)? as u8,
                "delay_ms" => d.delay = (lim(100, 2000, 100).check(key, v)? / 25) as u8,
                _ => return Err(unknown(keys)),
            },
            Self::ShortCircuit(s) => match key {
                "delay_us" => s.delay = (lim(100, 500, 50).check(key, v)? / 25) as u8,
                _ => return Err(unknown(keys)),
            },
            Self::Balancing(b) => match key {
                "threshold_mv" => b.threshold = mv(lim(3300, 4500, 10).check(key, v)?),
                "delta_mv" => b.delta = mv(lim(20, 500, 1).check(key, v)?),
                _ => return Err(unknown(keys)),
            },
            Self::Sleep(s) => match key {
                "cell_mv" => s.cell = mv(lim(2000, 4000, 10).check(key, v)?),
                "delay_min" => s.minutes = lim(1, 120, 1).check(key, v)? as u8,
                _ => return Err(unknown(keys)),
            },
            Self::FullCharge(f) => match key {
                "full_charge_mv" => f.voltage = mv(lim(20000, 65000, 10).check(key, v)?),
                "full_charge_ma" => f.current_ma = lim(500, 5000, 500).check(key, v)? as u16,
                "low_soc_pct" => f.low_soc = Percent::from_raw(lim(0, 100, 1).check(key, v)? as u8),
                _ => return Err(unknown(keys)),
            },
            Self::OverTemp(t) | Self::UnderTemp(t) => {
                let limit = temp_limit(kind, false);
                let ok = match key.split_once('_') {
                    Some(("charge", which)) => set_temp(&mut t.charge, which, limit.check(key, v)?),
                    Some(("discharge", which)) => set_temp(&mut t.discharge, which, limit.check(key, v)?),
                    _ => false,
                };
                if !ok {
                    return Err(unknown(keys));
                }
            }
            Self::MosfetTemp(m) => {
                if !set_temp(&mut m.over, key, temp_limit(kind, false).check(key, v)?) {
                    return Err(unknown(keys));
                }
            }
            Self::EnvironmentTemp(e) => {
                let ok = match key.split_once('_') {
                    Some(("under", which)) => {
                        set_temp(&mut e.under, which, temp_limit(kind, true).check(key, v)?)
                    }
                    Some(("over", which)) => {
                        set_temp(&mut e.over, which, temp_limit(kind, false).check(key, v)?)
                    }
                    _ => false,
                };
                if !ok {
                    return Err(unknown(keys));
                }
            }
            Self::ChargeLimiter(c) => match key {
                "current_a" => c.current_a = lim(5, 150, 1).check(key, v)? as u8,
                _ => return Err(unknown(keys)),
            },
            Self::Capacity(_) => return Err(unknown(keys)),
            Self::Protocols(p) => match key {
                "can" => p.can = ANY_BYTE.check(key, v)? as u8,
                "rs485" => p.rs485 = ANY_BYTE.check(key, v)? as u8,
                "mode" => p.mode = ANY_BYTE.check(key, v)? as u8,
                _ => return Err(unknown(keys)),
            },
            Self::Time(t) => match key {
                "year" => t.year = (lim(2000, 2255, 1).check(key, v)? - 2000) as u8,
                "month" => t.month = lim(1, 12, 1).check(key, v)? as u8,
                "day" => t.day = lim(1, 31, 1).check(key, v)? as u8,
                "hour" => t.hour = lim(0, 23, 1).check(key, v)? as u8,
                "minute" => t.minute = lim(0, 59, 1).check(key, v)? as u8,
                "second" => t.second = lim(0, 59, 1).check(key, v)? as u8,
                _ => return Err(unknown(keys)),
            },
        }
        Ok(())
    }

    /// The block as a write carries it: discharge over-current written positive, the E3 repeat
    /// dropped.
    pub fn into_write(mut self) -> Self {
        match &mut self {
            Self::DischargeOc1(c) => {
                c.alarm_a = c.alarm_a.saturating_abs();
                c.protect_a = c.protect_a.saturating_abs();
            }
            Self::DischargeOc2(d) => d.extra.clear(),
            _ => {}
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell_ov() -> Config {
        Config::CellOv(VoltageProtection {
            lead: 1,
            alarm: Millivolts::from_raw(3600),
            protect: Millivolts::from_raw(3700),
            release: Millivolts::from_raw(3380),
            delay: 10,
        })
    }

    #[test]
    fn fields_are_set_in_their_json_units() {
        let mut c = cell_ov();
        c.set("alarm_mv", 3650).unwrap();
        c.set("delay_ms", 2000).unwrap();
        let Config::CellOv(v) = c else { panic!() };
        assert_eq!((v.alarm.raw(), v.delay, v.lead), (3650, 20, 1));
    }

    #[test]
    fn limits_and_unknown_keys_are_named() {
        let mut c = cell_ov();
        assert_eq!(
            c.set("alarm_mv", 5000).unwrap_err(),
            "alarm_mv=5000 is outside 2500..4500 in steps of 10"
        );
        assert_eq!(
            c.set("delay_ms", 1234).unwrap_err(),
            "delay_ms=1234 is outside 1000..20000 in steps of 500"
        );
        assert_eq!(
            c.set("alarm", 1).unwrap_err(),
            "cell-ov has no field 'alarm'; its fields: alarm_mv, protect_mv, release_mv, delay_ms"
        );
        let mut t = Config::OverTemp(ChargeDischargeTemps::default());
        t.set("discharge_protect_dc", 600).unwrap();
        let Config::OverTemp(t) = t else { panic!() };
        assert_eq!(t.discharge.protect.to_deci_celsius(), 600);
    }

    #[test]
    fn a_read_discharge_limit_is_written_positive() {
        let read =
            Config::DischargeOc1(CurrentProtection { lead: 1, alarm_a: -105, protect_a: -110, delay: 10 });
        let Config::DischargeOc1(w) = read.into_write() else { panic!() };
        assert_eq!((w.alarm_a, w.protect_a), (105, 110));
    }
}
