//! The operator's orders, as the API and MQTT send them: one JSON object with an `action`.
//!
//! ```json
//! {"action": "force_disable"}
//! {"action": "set_charge_voltage", "charge_voltage_mv": 27200}
//! {"action": "force_charging_priority", "priority": "pv_utility"}
//! {"action": "join_pack", "pack": 3}
//! ```

use serde::{Deserialize, Serialize};

use maestro_core::Step;

use crate::shared::{Order, Orders, Shared, lock};

/// One order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Control {
    /// Force charging and discharging off (rule 1); survives a restart.
    ForceDisable,
    /// Release the forced disable.
    ReleaseForceDisable,
    /// Start a rebalance (SAFETY.md §4).
    RebalanceStart,
    /// Cancel the rebalance in whatever step it is.
    RebalanceCancel,
    /// Override the charge voltage limit; `null` (or no value) returns to the regular limit.
    SetChargeVoltage {
        /// The limit, mV: above 27 000 and below the lowest pack over-voltage alarm.
        #[serde(default)]
        charge_voltage_mv: Option<u16>,
    },
    /// Hold the inverter's charging priority (register 331) at this value, also during a rebalance.
    ForceChargingPriority {
        /// A name (`utility`, `pv`, `pv_utility`, `pv_only`) or its number 0..=3.
        priority: serde_json::Value,
    },
    /// Release the forced charging priority.
    ResetChargingPriority,
    /// Switch a pack held off by its charge MOSFET back on — only when it is within
    /// `safety.join_delta_mv` of the bus, by the join rule (SAFETY.md §2b).
    JoinPack {
        /// The pack, numbered from 1.
        pack: usize,
    },
}

impl Control {
    /// Every action's name, for error messages.
    pub const ACTIONS: &'static str = "force_disable, release_force_disable, rebalance_start, rebalance_cancel, \
         set_charge_voltage, force_charging_priority, reset_charging_priority, join_pack";

    /// Parses a request body, naming what is wrong.
    ///
    /// # Errors
    /// [`Refused::BadRequest`] for malformed JSON, an unknown action or a bad field.
    pub fn parse(body: &[u8]) -> Result<Self, Refused> {
        let value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| Refused::BadRequest(format!("the body is not JSON: {e}")))?;
        let action = value.get("action").and_then(serde_json::Value::as_str).map(str::to_owned);
        let action = action.ok_or_else(|| {
            Refused::BadRequest(format!("the body needs an \"action\" string; actions: {}", Self::ACTIONS))
        })?;
        if !Self::ACTIONS.split(", ").any(|a| a == action) {
            return Err(Refused::BadRequest(format!(
                "unknown action '{action}'; actions: {}",
                Self::ACTIONS
            )));
        }
        let allowed: &[&str] = match action.as_str() {
            "set_charge_voltage" => &["action", "charge_voltage_mv"],
            "force_charging_priority" => &["action", "priority"],
            "join_pack" => &["action", "pack"],
            _ => &["action"],
        };
        if let Some(extra) = value.as_object().and_then(|o| o.keys().find(|k| !allowed.contains(&k.as_str())))
        {
            return Err(Refused::BadRequest(format!(
                "{action}: unknown field '{extra}'; it takes {}",
                allowed.join(", ")
            )));
        }
        serde_json::from_value(value).map_err(|e| Refused::BadRequest(format!("{action}: {e}")))
    }
}

/// Why an order was not carried out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
    /// The order itself is wrong (HTTP 400).
    #[error("{0}")]
    BadRequest(String),
    /// The order is well formed but cannot be carried out now (HTTP 409).
    #[error("{0}")]
    Conflict(String),
    /// It was applied in memory but the state file could not be written (HTTP 500).
    #[error("{0}")]
    NotSaved(String),
    /// Orders come faster than [`OrderRate`] takes them (HTTP 429).
    #[error("{0}")]
    TooMany(String),
}

/// Orders taken in a burst at most, then refilled at [`OrderRate::PER_S`]: a flood of orders
/// (a script in a loop, a broker replaying commands) costs refusals, never a state-file write or
/// an event per order.
#[derive(Debug)]
pub struct OrderRate {
    tokens: f64,
    at: Option<std::time::Instant>,
}

impl Default for OrderRate {
    fn default() -> Self {
        Self { tokens: Self::BURST, at: None }
    }
}

impl OrderRate {
    /// Orders taken at once.
    pub const BURST: f64 = 10.0;
    /// Orders taken per second after the burst.
    pub const PER_S: f64 = 2.0;

    /// Takes one order at `now`, if the rate allows it.
    pub fn take(&mut self, now: std::time::Instant) -> bool {
        let elapsed = self.at.map_or(0.0, |at| now.saturating_duration_since(at).as_secs_f64());
        self.at = Some(now);
        self.tokens = (self.tokens + elapsed * Self::PER_S).min(Self::BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The charging priorities of register 331, by name (the inverter map's names).
const CHARGING_PRIORITIES: [&str; 4] = ["utility", "pv", "pv_utility", "pv_only"];

#[test]
fn the_names_are_the_inverter_maps() {
    for (value, name) in vevor_modbus::map::CHARGING_PRIORITIES {
        assert_eq!(CHARGING_PRIORITIES.get(usize::from(*value)), Some(name));
    }
}

pub(crate) fn charging_priority(v: &serde_json::Value) -> Result<u16, Refused> {
    let bad = || {
        Refused::BadRequest(format!(
            "priority {v} is not one of {} (or 0..=3)",
            CHARGING_PRIORITIES.join(", ")
        ))
    };
    match v {
        serde_json::Value::Number(n) => n.as_u64().filter(|&n| n < 4).map(|n| n as u16).ok_or_else(bad),
        serde_json::Value::String(s) => {
            CHARGING_PRIORITIES.iter().position(|p| p == s).map(|p| p as u16).ok_or_else(bad)
        }
        _ => Err(bad()),
    }
}

/// The name of a charging priority value.
pub fn charging_priority_name(v: u16) -> Option<&'static str> {
    CHARGING_PRIORITIES.get(usize::from(v)).copied()
}

impl Shared {
    /// Queues `order` behind the orders already waiting, unless `refuse` objects given the
    /// procedure's step once those are carried out; checked and queued under one lock, so two
    /// orders at once are judged in the order they are queued.
    fn order(&self, order: Order, refuse: impl FnOnce(Step) -> Option<Refused>) -> Result<(), Refused> {
        // The queue, then the published step, as the safety loop takes them when it publishes
        // a step and drops the order it carried out: the two are always seen together.
        let mut orders = lock(&self.orders);
        let step_now = self.published().rebalance.step;
        let refused = refuse(orders.step_after(step_now));
        let queued = refused.is_none() && orders.push(order);
        drop(orders);
        match refused {
            Some(refused) => Err(refused),
            None if !queued => Err(Refused::Conflict(format!(
                "{} orders are waiting already; try again in a second",
                Orders::MAX
            ))),
            None => Ok(()),
        }
    }

    /// Carries out an order; says what was done.
    ///
    /// # Errors
    /// [`Refused`] naming why not.
    pub fn control(&self, order: &Control) -> Result<String, Refused> {
        if !lock(&self.order_rate).take(std::time::Instant::now()) {
            return Err(Refused::TooMany(format!(
                "too many orders: at most {} at once and {} a second; try again in a second",
                OrderRate::BURST,
                OrderRate::PER_S
            )));
        }
        // Each order changes only its own field, in place: two orders at once never undo each
        // other. One that changes nothing is a no-op: no event, no write.
        let save = |what: &str, change: &dyn Fn(&mut crate::state::Overrides)| -> Result<bool, Refused> {
            let before = lock(&self.persisted).overrides.clone();
            let mut after = before.clone();
            change(&mut after);
            if after == before {
                return Ok(false);
            }
            self.event(format!("operator: {what}"));
            self.persist_confirmed(|p| change(&mut p.overrides))
                .map_err(|e| Refused::NotSaved(format!("applied, but not saved: {e}")))?;
            Ok(true)
        };
        let done = |changed: bool, what: &str| {
            if changed { what.to_owned() } else { format!("{what} already; nothing changed") }
        };
        match order {
            Control::ForceDisable => {
                let changed = save("forced_disable: true", &|o| o.forced_disable = true)?;
                Ok(done(changed, "charging and discharging forced off"))
            }
            Control::ReleaseForceDisable => {
                let changed = save("forced_disable: false", &|o| o.forced_disable = false)?;
                Ok(if changed {
                    "forced disable released; the fail-safe rules decide again".into()
                } else {
                    "not forced off; nothing changed".into()
                })
            }
            Control::RebalanceStart => {
                // A settling rebalance does not refuse a new one: the start ends the settling.
                self.order(Order::Start, |step| {
                    matches!(step, Step::Running | Step::Completing)
                        .then(|| Refused::Conflict("a rebalance is already under way".into()))
                })?;
                self.event("operator: rebalance start requested".into());
                Ok("rebalance start requested".into())
            }
            Control::RebalanceCancel => {
                self.order(Order::Cancel, |step| {
                    (step == Step::Idle).then(|| Refused::Conflict("no rebalance is under way".into()))
                })?;
                self.event("operator: rebalance cancel requested".into());
                Ok("rebalance cancel requested; the SOC is uncalibrated until the next full rebalance".into())
            }
            Control::SetChargeVoltage { charge_voltage_mv: Some(mv) } => {
                let lowest_ov = self
                    .packs
                    .iter()
                    .map(|p| lock(p).limits.pack_ov_alarm.map(units::Millivolts::raw))
                    .collect::<Option<Vec<u16>>>()
                    .and_then(|v| v.into_iter().min());
                let Some(lowest_ov) = lowest_ov else {
                    return Err(Refused::Conflict(
                        "the packs' over-voltage alarms are not read yet; try again in a few seconds".into(),
                    ));
                };
                if *mv <= 27_000 || *mv >= lowest_ov {
                    return Err(Refused::BadRequest(format!(
                        "charge_voltage_mv {mv} must lie above 27000 and below the lowest pack over-voltage alarm ({lowest_ov})"
                    )));
                }
                let changed =
                    save(&format!("charge_voltage_mv: {mv}"), &|o| o.charge_voltage_mv = Some(*mv))?;
                Ok(done(changed, &format!("charge voltage limit set to {mv} mV")))
            }
            Control::SetChargeVoltage { charge_voltage_mv: None } => {
                let changed = save("charge_voltage_mv: none", &|o| o.charge_voltage_mv = None)?;
                Ok(done(changed, "charge voltage override cleared"))
            }
            Control::ForceChargingPriority { priority } => {
                let value = charging_priority(priority)?;
                if self.config.inverter.is_none() {
                    return Err(Refused::Conflict("no [inverter] is configured".into()));
                }
                self.order(Order::ChargingPriority(Some(value)), |_| None)?;
                let done = format!("charging priority forced to {}", CHARGING_PRIORITIES[usize::from(value)]);
                self.event(format!("operator: {done}"));
                Ok(done)
            }
            Control::ResetChargingPriority => {
                self.order(Order::ChargingPriority(None), |_| None)?;
                self.event("operator: forced charging priority released".into());
                Ok("forced charging priority released".into())
            }
            Control::JoinPack { pack } => {
                let n = self.packs.len();
                let Some(readings) = pack.checked_sub(1).and_then(|k| self.packs.get(k)) else {
                    return Err(Refused::BadRequest(format!("no pack {pack}: packs are numbered 1 to {n}")));
                };
                let status = lock(readings).status.as_ref().map(|(s, _)| s.clone());
                let Some(status) = status else {
                    return Err(Refused::Conflict(format!("pack {pack} has not reported its state yet")));
                };
                let over_voltage = status.protect1.intersects(
                    pace_proto::Protect1::HIGH_CELL_VOLTAGE | pace_proto::Protect1::HIGH_TOTAL_VOLTAGE,
                );
                if over_voltage {
                    return Err(Refused::Conflict(format!(
                        "pack {pack} is held by its BMS's over-voltage protection: it releases itself \
                         at its release voltage (a rebalance's completion joins its packs by itself)"
                    )));
                }
                if status.system.contains(pace_proto::SystemState::CHARGE_MOSFET_ON) {
                    return Err(Refused::Conflict(format!(
                        "pack {pack} is on the bus already (its charge MOSFET is on)"
                    )));
                }
                self.order(Order::Join(*pack), |_| None)?;
                self.event(format!("operator: join pack {pack} requested"));
                Ok(format!(
                    "pack {pack} joins the bus when it is within {} mV of it (see its pack_joining or pack_isolated reason)",
                    self.config.safety.join_delta_mv
                ))
            }
        }
    }
}
