//! The rebalancing procedure (SAFETY.md §4): the Pace BMS balances cells only while its
//! over-voltage protection is active, so the stack is charged until it trips, left to balance, then
//! unlocked, and the coulomb counter is recalibrated to full.
//!
//! ```text
//!        trigger (rule 14/15, operator, every 14 days)     threshold hit ∧ I < 5 A ∧ no balancing
//!                                                           ∧ (spread ≤ 40 mV ∨ held 4 h)
//!   Idle ─────────────────────────────────────► Running ──────────────────────────────► Completing
//!    ▲  ▲                                        ▲  │ cancel        packs joined ∨ 15 min │
//!    │  │                                        │  ▼                                       ▼
//!    │  └────────────────────────────────────────┼──┴──── remaining ≤ regular ∨ 36 h ── Settling
//!    │                                           └──────────── a new rebalance starts ─────┘
//!    └── a rule-14 trigger within 3 days of the last completion: no start, `pack_imbalance`
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
    /// Top hold: completion needs every pack's cell spread at or below this, mV ...
    pub balanced_delta_mv: u16,
    /// ... unless this long has passed since the threshold was hit, seconds.
    pub hold_max_s: u64,
    /// At completion, the packs locked by the rebalance join the bus one at a time (SAFETY.md
    /// §2b); the completion waits for them at most this long, seconds (`join_wait_max_s`). A pack
    /// still locked then is left out and joins later.
    pub join_wait_max_s: u64,
    /// Settling ends after this long at the latest, seconds.
    pub settle_max_s: u64,
    /// A rule-14 trigger this soon after the last completion starts no rebalance, seconds.
    pub retrigger_min_s: u64,
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
            balanced_delta_mv: 40,
            hold_max_s: 4 * 3600,
            join_wait_max_s: 15 * 60,
            settle_max_s: 36 * 3600,
            retrigger_min_s: 3 * 24 * 3600,
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
    /// Done; the packs locked by the rebalance join the bus one at a time (SAFETY.md §2b) while
    /// rules 6 and 11 stay relaxed; charging is already blocked (rule 13), discharging is not.
    Completing,
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
    /// When the threshold was hit, seconds since the Unix epoch (the top hold counts from it).
    #[serde(default)]
    pub threshold_hit_s: Option<u64>,
    /// When the unlock of the completion was sent, seconds since the Unix epoch.
    #[serde(default)]
    pub unlock_sent_s: Option<u64>,
    /// The `pack_imbalance` alarm: a cell drifted low again soon after a rebalance.
    #[serde(default)]
    pub imbalance: Option<Imbalance>,
    /// The packs (1-based) a completion or cancel (or the operator) left to join the bus
    /// (SAFETY.md §2b): rules 6 and 11 stay relaxed for them alone until each has joined, across a
    /// restart too.
    #[serde(default)]
    pub joining: Vec<usize>,
}

/// A cell that drifted low again less than `retrigger_min_s` after a completed rebalance:
/// probably a weak cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Imbalance {
    /// The pack, 1-based.
    pub pack: usize,
    /// The cell, 1-based.
    pub cell: usize,
    /// When it was raised, seconds since the Unix epoch.
    pub at_s: u64,
}

impl RebalanceState {
    /// A rebalance is active: running, or completing (SAFETY.md §4 keeps rules 6 and 11 relaxed
    /// in both).
    pub fn active(&self) -> bool {
        matches!(self.step, Step::Running | Step::Completing)
    }
}

/// What the procedure looks at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RebalanceInput {
    /// Wall clock, seconds since the Unix epoch.
    pub now_s: u64,
    /// Local minutes after midnight, for the tariff windows.
    pub local_minute: u16,
    /// Rule 14 or 15 fired now.
    pub cell_under_voltage: bool,
    /// The lowest cell (pack, cell), for the `pack_imbalance` alarm.
    pub lowest_cell: Option<(usize, usize)>,
    /// The largest cell spread (highest − lowest cell) of any pack, mV.
    pub cell_spread_mv: Option<u16>,
    /// Some pack is locked by over-voltage protection, or waits to join the bus.
    pub packs_locked: bool,
    /// Every pack's state is known now (fresh): the completion needs it, to know which packs
    /// its over-voltage lock holds (after a restart nothing is known for a few seconds).
    pub packs_reported: bool,
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
    /// Charging is blocked (rule 13): settling, or completing.
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
    /// The completion began: the packs are being unlocked.
    Unlocking,
    /// Completed: packs unlocked, coil calibrated.
    Completed,
    /// Settled: the coil is back to its regular capacity.
    Settled,
    /// Cancelled by the operator.
    Cancelled,
    /// Settling ended after `settle_max_s`, before the coil came down to the regular capacity.
    SettleTimedOut,
    /// Settling ended because a new rebalance starts.
    SettleEndedByStart,
    /// Settling ended because a cell under voltage blocks discharging: the extra capacity cannot
    /// be given back, and charging must not stay blocked as well.
    SettleEndedByUnderVoltage,
    /// A cell drifted low again less than `retrigger_min_s` after the last completion: no new
    /// rebalance; the alarm `pack_imbalance`.
    PackImbalance {
        /// The pack, 1-based.
        pack: usize,
        /// The cell, 1-based.
        cell: usize,
    },
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

    /// The settings.
    pub fn config(&self) -> &RebalanceConfig {
        &self.config
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
        if released && !self.state.active() {
            self.state.restore_charging_priority = Some(CHARGE_PV_ONLY);
        }
    }

    /// Keeps on the join list only the packs (1-based) `keep` holds to be still off the bus (the
    /// daemon's join rule keeps this list; it is persisted with the state).
    pub fn retain_joining(&mut self, mut keep: impl FnMut(usize) -> bool) {
        self.state.joining.retain(|&pack| keep(pack));
    }

    /// Puts a pack (1-based) on the join list, unless it is there already.
    pub fn add_joining(&mut self, pack: usize) {
        if !self.state.joining.contains(&pack) {
            self.state.joining.push(pack);
        }
    }

    fn in_cheap_window(&self, minute: u16) -> bool {
        self.config.cheap_windows.iter().any(|&(a, b)| (a..b).contains(&minute))
    }

    /// Advances the procedure.
    pub fn step(&mut self, input: &RebalanceInput) -> Outcome {
        let before = self.state.clone();
        let mut out = Outcome::default();
        let c = self.config.clone();
        if input.cell_under_voltage {
            self.under_voltage(input, &c, &mut out);
        }
        if input.cancel && self.state.step != Step::Idle {
            self.state.step = Step::Idle;
            self.state.needed = false;
            self.state.threshold_hit = false;
            self.state.threshold_hit_s = None;
            self.state.unlock_sent_s = None;
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
        if matches!(self.state.step, Step::Idle | Step::Settling) {
            self.maybe_start(input, &c, &mut out);
        }
        match self.state.step {
            Step::Idle => {}
            Step::Running => {
                if !self.state.threshold_hit && input.coil_voltage_mv.is_some_and(|v| v > c.threshold_mv) {
                    self.state.threshold_hit = true;
                    self.state.threshold_hit_s = Some(input.now_s);
                    out.events.push(Event::ThresholdHit);
                }
                let tail = input.coil_current_ma.is_some_and(|i| i < c.tail_current_ma);
                // Top hold: one pass at the top does not close a large gap.
                let held_long_enough =
                    self.state.threshold_hit_s.is_none_or(|t| input.now_s.saturating_sub(t) >= c.hold_max_s);
                let balanced =
                    input.cell_spread_mv.is_some_and(|d| d <= c.balanced_delta_mv) || held_long_enough;
                if self.state.threshold_hit && tail && !input.balancing && balanced && input.packs_reported {
                    // Charging stops and the locked packs join the bus one at a time (§2b);
                    // active stays set (rules 6 and 11 relaxed) until they have joined, so
                    // completing never blocks both directions.
                    self.state.step = Step::Completing;
                    self.state.unlock_sent_s = Some(input.now_s);
                    out.actions.push(Action::UnlockPacks);
                    out.events.push(Event::Unlocking);
                    out.targets.settling = true;
                }
                self.run_targets(input, &c, &mut out.targets);
            }
            Step::Completing => {
                let waited = self.state.unlock_sent_s.map_or(u64::MAX, |t| input.now_s.saturating_sub(t));
                if !input.packs_locked || waited >= c.join_wait_max_s {
                    // A pack still locked stays on the join list: it is left out (isolated)
                    // and joins when the gap closes.
                    self.complete(input, &c, &mut out);
                } else {
                    // The join rule sends each pack its command when it is within reach of the
                    // bus, and again if its BMS kept it locked.
                    self.run_targets(input, &c, &mut out.targets);
                    // Charging stops already (rule 13), so no pack trips again while the others
                    // are unlocked; discharging goes on (rules 6 and 11 stay relaxed).
                    out.targets.settling = true;
                }
            }
            Step::Settling => {
                let since = self.state.last_completed_s.map_or(0, |t| input.now_s.saturating_sub(t));
                let given_back = input.coil_remaining_mah.is_some_and(|r| r <= c.regular_capacity_mah);
                // A cell under voltage blocks discharging (rule 14 or 15): the stack cannot give
                // the extra capacity back, so settling would only keep charging blocked too — both
                // directions off until settle_max_s (found by `simulate`, seed 7, 2 packs, 30 days).
                let stuck = input.cell_under_voltage;
                if given_back || stuck || since >= c.settle_max_s {
                    self.state.step = Step::Idle;
                    self.state.restore_coil = Some((c.regular_capacity_mah, c.regular_full_voltage_cv));
                    out.events.push(if given_back {
                        Event::Settled
                    } else if stuck {
                        Event::SettleEndedByUnderVoltage
                    } else {
                        Event::SettleTimedOut
                    });
                } else {
                    out.targets.settling = true;
                }
            }
        }
        if !self.state.active() {
            self.restore(input, &mut out.targets);
            if let Some(forced) = self.state.forced_charging_priority {
                out.targets.charging_priority = Some(forced);
            }
        }
        out.state_changed = self.state != before;
        out
    }

    /// Rule 14 or 15 fired: a rebalance is needed, unless the last one completed less than
    /// `retrigger_min_s` ago — then the cell is probably weak, and the alarm says so.
    fn under_voltage(&mut self, input: &RebalanceInput, c: &RebalanceConfig, out: &mut Outcome) {
        let recent =
            self.state.last_completed_s.is_some_and(|t| input.now_s.saturating_sub(t) < c.retrigger_min_s);
        if !recent {
            self.state.needed = true;
        } else if self.state.imbalance.is_none() {
            let (pack, cell) = input.lowest_cell.unwrap_or((0, 0));
            self.state.imbalance = Some(Imbalance { pack, cell, at_s: input.now_s });
            out.events.push(Event::PackImbalance { pack, cell });
        }
    }

    fn maybe_start(&mut self, input: &RebalanceInput, c: &RebalanceConfig, out: &mut Outcome) {
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
        let Some(trigger) = trigger else { return };
        if self.state.step == Step::Settling {
            // The coil keeps its rebalance capacity: the new run needs it.
            out.events.push(Event::SettleEndedByStart);
        }
        self.state.step = Step::Running;
        self.state.threshold_hit = false;
        self.state.threshold_hit_s = None;
        self.state.soc_uncalibrated = false;
        self.state.imbalance = None;
        self.state.remembered_output_priority = Some(input.output_priority.unwrap_or(OUTPUT_SBU));
        out.events.push(Event::Started(trigger));
    }

    fn run_targets(&self, input: &RebalanceInput, c: &RebalanceConfig, targets: &mut Targets) {
        targets.output_priority = Some(OUTPUT_UTILITY_FIRST);
        targets.charging_priority = Some(self.state.forced_charging_priority.unwrap_or(
            if self.in_cheap_window(input.local_minute) { CHARGE_PV_AND_UTILITY } else { CHARGE_PV_ONLY },
        ));
        targets.coil = Some((c.capacity_mah, c.full_voltage_cv));
        targets.raised_charge_voltage = true;
    }

    /// The end of the completion: *needed* and *active* cleared, the coil calibrated to full,
    /// the priorities restored; settling begins.
    fn complete(&mut self, input: &RebalanceInput, c: &RebalanceConfig, out: &mut Outcome) {
        self.state.step = Step::Settling;
        self.state.needed = false;
        self.state.threshold_hit = false;
        self.state.threshold_hit_s = None;
        self.state.unlock_sent_s = None;
        self.state.last_completed_s = Some(input.now_s);
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
