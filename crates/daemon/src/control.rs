//! The operator's orders, as the API and MQTT send them: one JSON object with an `action`.
//!
//! ```json
//! {"action": "force_disable"}
//! {"action": "set_charge_voltage", "charge_voltage_mv": 27200}
//! {"action": "force_charging_priority", "priority": "pv_utility"}
//! {"action": "join_pack", "pack": 3}
//! ```

use serde::{Deserialize, Serialize};

use std::sync::mpsc::{self, SyncSender};

use crate::runtime::{Inbox, Taken};
use crate::shared::{Shared, lock};

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

/// The longest an order waits for the station thread to take it.
const TAKE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Shared {
    /// Hands `message` (made with the reply's sender) to the station thread and waits for what
    /// it did, then for the state file when the order changed what survives a restart.
    fn ask(
        &self,
        message: impl FnOnce(SyncSender<Result<Taken, Refused>>) -> Inbox,
    ) -> Result<String, Refused> {
        let busy = || Refused::Conflict("the daemon is busy; try again in a second".into());
        let (reply, outcome) = mpsc::sync_channel(1);
        self.inbox.try_send(message(reply)).map_err(|_| busy())?;
        let taken = outcome.recv_timeout(TAKE_WAIT).map_err(|_| busy())??;
        if let Some(saved) = taken.saved {
            let written = saved.recv_timeout(TAKE_WAIT).unwrap_or_else(|_| {
                Err(format!("the state file was not written within {} s", TAKE_WAIT.as_secs()))
            });
            written.map_err(|e| Refused::NotSaved(format!("applied, but not saved: {e}")))?;
        }
        Ok(taken.text)
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
        self.ask(|reply| Inbox::Order(order.clone(), reply))
    }

    /// Replaces the operator's standing orders whole and waits for the state file.
    ///
    /// # Errors
    /// As [`Shared::control`].
    pub fn set_overrides(&self, overrides: crate::state::Overrides) -> Result<String, Refused> {
        self.ask(|reply| Inbox::Overrides(overrides, reply))
    }
}
