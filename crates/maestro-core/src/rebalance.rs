//! The rebalancing procedure (SAFETY.md §4): the Pace BMS balances cells only while its
//! over-voltage protection is active, so the stack is charged until it trips, left to balance, then
//! unlocked, and the coulomb counter is recalibrated to full.
//!
//! ```text
//!            trigger (rule 14, operator, every 14 days)        threshold hit ∧ I < 5 A ∧ no balancing
//!   Idle ──────────────────────────────────────────► Running ─────────────────────────────► Settling
//!    ▲                                                  │ cancel                               │
//!    └──────────────────────────────────────────────────┴──────── coil remaining ≤ regular ◄───┘
//! ```
//!
//! [`Rebalance::step`] is pure. It returns [`Targets`] the daemon keeps the devices at — writing only
//! when a device reports another value, confirming by reading back — and one-shot [`Action`]s for
//! transitions. [`RebalanceState`] is what must survive a restart (SAFETY.md §5).

use serde::{Deserialize, Serialize};

/// Output priority: utility first (Vevor register 301).
pub const OUTPUT_UTILITY_FIRST: u16 = 0;
/// Output priority: solar, battery, utility (the usual setting).
pub const OUTPUT_SBU: u16 = 2;
/// Charging priority: PV and utility (register 331).
pub const CHARGE_PV_AND_UTILITY: u16 = 2;
/// Charging priority: PV only.
pub const CHARGE_PV_ONLY: u16 = 3;

/// The procedure's settings (SAFETY.md defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RebalanceConfig {
    /// Coil capacity during a rebalance, mAh.
    pub capacity_mah: u32,
    /// Coil capacity normally, mAh.
    pub regular_capacity_mah: u32,
    /// Coil full voltage during a rebalance, 0.01 V.
    pub full_voltage_cv: u16,
    /// Coil full voltage normally, 0.01 V.
    pub regular_full_voltage_cv: u16,
    /// The coil voltage that marks "threshold hit", mV.
    pub threshold_mv: u32,
    /// Completion needs the coil current below this, mA.
    pub tail_current_ma: u32,
    /// A rebalance is due this long after the last completed one, seconds.
    pub every_s: u64,
    /// Cheap-tariff windows, minutes after local midnight, `[start, end)`.
    pub cheap_windows: Vec<(u16, u16)>,
}

impl Default for RebalanceConfig {
    fn default() -> Self {
        Self {
            capacity_mah: 240_000,
            regular_capacity_mah: 205_000,
            full_voltage_cv: 2795,
            regular_full_voltage_cv: 2735,
            threshold_mv: 27_800,
            tail_current_ma: 5000,
            every_s: 14 * 24 * 3600,
            cheap_windows: vec![(0, 360), (780, 900), (1320, 1440)],
        }
    }
}

/// Where the procedure is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Nothing running.
    #[default]
    Idle,
    /// Charging towards over-voltage protection and balancing.
    Running,
    /// Completed; charging stays off until the stack has given back the extra capacity.
    Settling,
}

/// What must survive a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RebalanceState {
    /// The step.
    pub step: Step,
    /// Rule 14 asked for a rebalance (the SOC meter drifted).
    pub needed: bool,
    /// The coil voltage passed the threshold during this run.
    pub threshold_hit: bool,
    /// The inverter's output priority before the run, to restore.
    pub remembered_output_priority: Option<u16>,
    /// When the last run completed, seconds since the Unix epoch.
    pub last_completed_s: Option<u64>,
    /// The operator forced a charging priority.
    pub forced_charging_priority: Option<u16>,
    /// The last run was cancelled: the coil's SOC is not calibrated.
    pub soc_uncalibrated: bool,
    /// Output priority still to restore (kept until the inverter reports it).
    #[serde(default)]
    pub restore_output_priority: Option<u16>,
    /// Charging priority still to restore (kept until the inverter reports it).
    #[serde(default)]
    pub restore_charging_priority: Option<u16>,
    /// Coil capacity and full voltage still to restore (kept until the coil reports them).
    #[serde(default)]
    pub restore_coil: Option<(u32, u16)>,
}

/// What the procedure looks at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RebalanceInput {
    /// Wall clock, seconds since the Unix epoch.
    pub now_s: u64,
    /// Local minutes after midnight, for the tariff windows.
    pub local_minute: u16,
    /// Rule 14 fired now.
    pub cell_under_voltage: bool,
    /// The operator asked to start.
    pub start: bool,
    /// The operator asked to cancel.
    pub cancel: bool,
    /// Coil voltage, mV (`None`: unknown).
    pub coil_voltage_mv: Option<u32>,
    /// Coil current magnitude, mA.
    pub coil_current_ma: Option<u32>,
    /// Coil remaining capacity, mAh.
    pub coil_remaining_mah: Option<u32>,
    /// Some pack reports balancing.
    pub balancing: bool,
    /// The inverter's output priority as it reports it now.
    pub output_priority: Option<u16>,
    /// The inverter's charging priority as it reports it now.
    pub charging_priority: Option<u16>,
    /// The coil's capacity (mAh) and full voltage (0.01 V) as it reports them now.
    pub coil_settings: Option<(u32, u16)>,
}

/// The values the daemon keeps the devices at while they apply (`None`: leave as is).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Targets {
    /// Vevor register 301.
    pub output_priority: Option<u16>,
    /// Vevor register 331.
    pub charging_priority: Option<u16>,
    /// Coil capacity (mAh) and full voltage (0.01 V).
    pub coil: Option<(u32, u16)>,
    /// The charge voltage limit is raised (the translator's rebalance voltage).
    pub raised_charge_voltage: bool,
    /// Charging is blocked (rule 13).
    pub settling: bool,
}

/// A one-shot step of a transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Turn the charge MOSFET on (0x9A 00) on every pack locked by over-voltage protection or
    /// reporting "fully".
    UnlockPacks,
    /// Write the coil capacity (mAh) with this full voltage, confirm, then set the coil to full
    /// (0x6F 000F): the coil ignores "set full" unless its capacity was just written.
    CalibrateCoilFull {
        /// Capacity to write first, mAh.
        capacity_mah: u32,
        /// Full voltage to write with it, 0.01 V.
        full_voltage_cv: u16,
    },
}

/// A transition, for the event log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Started, and why.
    Started(Trigger),
    /// The coil voltage passed the threshold.
    ThresholdHit,
    /// Completed: packs unlocked, coil calibrated.
    Completed,
    /// Settled: the coil is back to its regular capacity.
    Settled,
    /// Cancelled by the operator.
    Cancelled,
}

/// Why a rebalance started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// A cell fell below the under-voltage threshold (rule 14).
    CellUnderVoltage,
    /// The operator asked.
    Operator,
    /// `rebalance_every` passed since the last one.
    Due,
}

/// The procedure.
#[derive(Clone, Debug, Default)]
pub struct Rebalance {
    config: RebalanceConfig,
    state: RebalanceState,
}

/// What one step produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Keep the devices at these.
    pub targets: Targets,
    /// Do these once, in order.
    pub actions: Vec<Action>,
    /// Log these.
    pub events: Vec<Event>,
    /// The persisted state changed: write it.
    pub state_changed: bool,
}

impl Rebalance {
    /// The procedure, resuming from `state` (as loaded at start).
    pub fn new(config: RebalanceConfig, state: RebalanceState) -> Self {
        Self { config, state }
    }

    /// The state to persist.
    pub fn state(&self) -> &RebalanceState {
        &self.state
    }

    /// The operator forces a charging priority (`None` releases it). Forced, it holds in every
    /// step; released outside a run, the inverter goes back to PV only (a run sets its own).
    pub fn force_charging_priority(&mut self, priority: Option<u16>) {
        let released = priority.is_none() && self.state.forced_charging_priority.is_some();
        self.state.forced_charging_priority = priority;
        if released && self.state.step != Step::Running {
            self.state.restore_charging_priority = Some(CHARGE_PV_ONLY);
        }
    }

    fn in_cheap_window(&self, minute: u16) -> bool {
        self.config.cheap_windows.iter().any(|&(a, b)| (a..b).contains(&minute))
    }

    /// Advances the procedure.
    pub fn step(&mut self, input: &RebalanceInput) -> Outcome {
        let before = self.state.clone();
        let mut out = Outcome::default();
        let c = &self.config;
        if input.cell_under_voltage {
            self.state.needed = true;
        }
        if input.cancel && self.state.step != Step::Idle {
            self.state.step = Step::Idle;
            self.state.needed = false;
            self.state.threshold_hit = false;
            self.state.soc_uncalibrated = true;
            out.actions.push(Action::UnlockPacks);
            out.events.push(Event::Cancelled);
            // Restore on the way out, until the devices report it.
            self.state.restore_output_priority =
                Some(self.state.remembered_output_priority.take().unwrap_or(OUTPUT_SBU));
            self.state.restore_charging_priority =
                Some(self.state.forced_charging_priority.unwrap_or(CHARGE_PV_ONLY));
            self.state.restore_coil = Some((c.regular_capacity_mah, c.regular_full_voltage_cv));
            self.restore(input, &mut out.targets);
            out.state_changed = self.state != before;
            return out;
        }
        if self.state.step == Step::Idle {
            let due = self.state.last_completed_s.is_some_and(|t| input.now_s.saturating_sub(t) > c.every_s);
            let trigger = if self.state.needed {
                Some(Trigger::CellUnderVoltage)
            } else if input.start {
                Some(Trigger::Operator)
            } else if due {
                Some(Trigger::Due)
            } else {
                None
            };
            if let Some(trigger) = trigger {
                self.state.step = Step::Running;
                self.state.threshold_hit = false;
                self.state.soc_uncalibrated = false;
                self.state.remembered_output_priority = Some(input.output_priority.unwrap_or(OUTPUT_SBU));
                out.events.push(Event::Started(trigger));
            }
        }
        match self.state.step {
            Step::Idle => {}
            Step::Running => {
                if !self.state.threshold_hit && input.coil_voltage_mv.is_some_and(|v| v > c.threshold_mv) {
                    self.state.threshold_hit = true;
                    out.events.push(Event::ThresholdHit);
                }
                let tail = input.coil_current_ma.is_some_and(|i| i < c.tail_current_ma);
                if self.state.threshold_hit && tail && !input.balancing {
                    self.state.step = Step::Settling;
                    self.state.needed = false;
                    self.state.threshold_hit = false;
                    self.state.last_completed_s = Some(input.now_s);
                    out.actions.push(Action::UnlockPacks);
                    out.actions.push(Action::CalibrateCoilFull {
                        capacity_mah: c.capacity_mah - 1,
                        full_voltage_cv: c.full_voltage_cv,
                    });
                    out.events.push(Event::Completed);
                    self.state.restore_output_priority =
                        Some(self.state.remembered_output_priority.take().unwrap_or(OUTPUT_SBU));
                    self.state.restore_charging_priority =
                        Some(self.state.forced_charging_priority.unwrap_or(CHARGE_PV_ONLY));
                    out.targets.settling = true;
                } else {
                    out.targets.output_priority = Some(OUTPUT_UTILITY_FIRST);
                    out.targets.charging_priority = Some(self.state.forced_charging_priority.unwrap_or(
                        if self.in_cheap_window(input.local_minute) {
                            CHARGE_PV_AND_UTILITY
                        } else {
                            CHARGE_PV_ONLY
                        },
                    ));
                    out.targets.coil = Some((c.capacity_mah, c.full_voltage_cv));
                    out.targets.raised_charge_voltage = true;
                }
            }
            Step::Settling => {
                if input.coil_remaining_mah.is_some_and(|r| r <= c.regular_capacity_mah) {
                    self.state.step = Step::Idle;
                    self.state.restore_coil = Some((c.regular_capacity_mah, c.regular_full_voltage_cv));
                    out.events.push(Event::Settled);
                } else {
                    out.targets.settling = true;
                }
            }
        }
        if self.state.step != Step::Running {
            self.restore(input, &mut out.targets);
            if let Some(forced) = self.state.forced_charging_priority {
                out.targets.charging_priority = Some(forced);
            }
        }
        out.state_changed = self.state != before;
        out
    }

    /// Keeps asking for pending restores until the devices report them, then forgets them.
    fn restore(&mut self, input: &RebalanceInput, targets: &mut Targets) {
        if let Some(v) = self.state.restore_output_priority {
            if input.output_priority == Some(v) {
                self.state.restore_output_priority = None;
            } else {
                targets.output_priority = Some(v);
            }
        }
        if let Some(v) = self.state.restore_charging_priority {
            if input.charging_priority == Some(v) {
                self.state.restore_charging_priority = None;
            } else {
                targets.charging_priority = Some(v);
            }
        }
        if let Some(v) = self.state.restore_coil {
            if input.coil_settings == Some(v) {
                self.state.restore_coil = None;
            } else {
                targets.coil = Some(v);
            }
        }
    }
}
