use pace_proto::{FaultState, Protect1, Protect2};

use crate::join::Waiting;

/// A monotonic instant in milliseconds, from any epoch the caller keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Millis(pub u64);

impl Millis {
    /// Milliseconds from `earlier` to `self` (0 if `earlier` is later).
    pub fn since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// The thresholds of the rules, SAFETY.md defaults. Voltages in mV, temperatures in 0.1 °C.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    /// Rules 2-3: data older than this is stale.
    pub stale_after_ms: u64,
    /// Rule 10: a decision older than this is not served.
    pub decision_max_age_ms: u64,
    /// Rule 7: the current may exceed the limit by this factor...
    pub overcurrent_factor: f64,
    /// ... for this long before both directions are blocked,
    pub overcurrent_for_ms: u64,
    /// ... and the block releases after the current stayed below the limit this long.
    pub overcurrent_release_ms: u64,
    /// Rule 7 ignores currents up to this, mA: a limit of 0 A must not turn measurement noise
    /// into a block of both directions.
    pub overcurrent_floor_ma: i32,
    /// Rule 11: a cell above this blocks charging...
    pub cell_ov_mv: u16,
    /// ... until every cell is below this.
    pub cell_ov_release_mv: u16,
    /// Rule 14: a cell below this blocks discharging...
    pub cell_uv_mv: u16,
    /// ... until every cell is above this.
    pub cell_uv_release_mv: u16,
    /// Rule 8: cell temperature above this blocks both...
    pub cell_ot_dc: i32,
    /// ... until below this.
    pub cell_ot_release_dc: i32,
    /// Rule 8: BMS/environment temperature.
    pub bms_ot_dc: i32,
    /// Its release.
    pub bms_ot_release_dc: i32,
    /// Rule 8: MOSFET temperature.
    pub mosfet_ot_dc: i32,
    /// Its release.
    pub mosfet_ot_release_dc: i32,
    /// Rule 9: cell temperature below this blocks both (no discharging LiFePO4 that cold)...
    pub cell_cold_discharge_dc: i32,
    /// ... until above this.
    pub cell_cold_discharge_release_dc: i32,
    /// Rule 12: cell temperature below this blocks charging...
    pub cell_cold_charge_dc: i32,
    /// ... until above this.
    pub cell_cold_charge_release_dc: i32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            stale_after_ms: 5000,
            decision_max_age_ms: 3000,
            overcurrent_factor: 1.2,
            overcurrent_for_ms: 2000,
            overcurrent_release_ms: 10_000,
            overcurrent_floor_ma: 1000,
            cell_ov_mv: 3630,
            cell_ov_release_mv: 3400,
            cell_uv_mv: 2850,
            cell_uv_release_mv: 3100,
            cell_ot_dc: 500,
            cell_ot_release_dc: 450,
            bms_ot_dc: 550,
            bms_ot_release_dc: 500,
            mosfet_ot_dc: 600,
            mosfet_ot_release_dc: 550,
            cell_cold_discharge_dc: -150,
            cell_cold_discharge_release_dc: -100,
            cell_cold_charge_dc: 20,
            cell_cold_charge_release_dc: 50,
        }
    }
}

/// What a pack last reported.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PackObservation {
    /// When its last 0x42 reply arrived (`None`: never).
    pub analog_at: Option<Millis>,
    /// When its last 0x44 reply arrived (`None`: never).
    pub status_at: Option<Millis>,
    /// Cell voltages, mV.
    pub cells_mv: Vec<u16>,
    /// Temperatures in Pace order (cells 1-4, MOSFET, environment), 0.1 °C.
    pub temps_dc: Vec<i32>,
    /// Protect state 1.
    pub protect1: Protect1,
    /// Protect state 2.
    pub protect2: Protect2,
    /// Fault state.
    pub fault: FaultState,
    /// Its own current, mA, charge positive (`None`: unknown).
    pub current_ma: Option<i32>,
    /// Its charge over-current alarm, A (`None`: not read).
    pub charge_alarm_a: Option<u16>,
    /// Its discharge over-current alarm, A, magnitude.
    pub discharge_alarm_a: Option<u16>,
    /// It can take charge now (SAFETY.md §2a: MOSFET on, no protection of that direction).
    pub can_charge: bool,
    /// It can give discharge now.
    pub can_discharge: bool,
    /// A rebalance's completion or cancel left it to join the bus (SAFETY.md §2b, §4 step 3): its
    /// over-voltage lock is the rebalance's doing, so rules 6 and 11 are relaxed for it alone
    /// until it has joined.
    pub rebalance_locked: bool,
}

impl PackObservation {
    /// A pack whose analog and status replies both arrived at `at`, with no data yet.
    pub fn seen_at(at: Millis) -> Self {
        Self {
            analog_at: Some(at),
            status_at: Some(at),
            can_charge: true,
            can_discharge: true,
            ..Self::default()
        }
    }
}

/// Everything one decision looks at.
#[derive(Clone, Copy, Debug)]
pub struct Observation<'a> {
    /// Now.
    pub now: Millis,
    /// The packs, pack 1 first.
    pub packs: &'a [PackObservation],
    /// `None` when no counter is configured; else when its data last arrived (`Some(None)`: never).
    pub coil: Option<Option<Millis>>,
    /// Stack current, mA, charge positive (`None`: unknown).
    pub current_ma: Option<i32>,
    /// The system's charge current limit, mA (`None`: the packs' limits are not read yet).
    pub charge_limit_ma: Option<i32>,
    /// The system's discharge current limit, mA, positive.
    pub discharge_limit_ma: Option<i32>,
    /// The operator forced both directions off.
    pub forced_disable: bool,
    /// A rebalance is active: BMS and software over-voltage are expected.
    pub rebalance_active: bool,
    /// A completed rebalance is settling: charging stays off.
    pub rebalance_settling: bool,
    /// The inverter's CAN heartbeat stopped, and the configuration makes that a reason
    /// (`can.peer_timeout_disables`).
    pub inverter_silent: bool,
    /// The charge voltage the inverter would be told does not fit the cells the packs report: the
    /// configuration key (or override) that sets it.
    pub config_out_of_range: Option<&'static str>,
    /// The packs waiting to join the bus and not joined this step (SAFETY.md §2b).
    pub joining: &'a [Waiting],
}

impl Observation<'_> {
    /// An observation at `now` with no packs, no counter, known limits of 100 A, no current.
    pub fn at(now: Millis) -> Self {
        Observation {
            now,
            packs: &[],
            coil: None,
            current_ma: Some(0),
            charge_limit_ma: Some(100_000),
            discharge_limit_ma: Some(100_000),
            forced_disable: false,
            rebalance_active: false,
            rebalance_settling: false,
            inverter_silent: false,
            config_out_of_range: None,
            joining: &[],
        }
    }
}

/// What a reason blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Blocks {
    /// Charge and discharge.
    Both,
    /// Charging only.
    Charge,
    /// Discharging only.
    Discharge,
    /// Nothing: an alarm.
    Nothing,
}

/// Why charging and/or discharging is off. Packs are numbered from 1.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Rule 1: the operator forced both off.
    ForcedDisable,
    /// Rule 2: a pack's data is older than `stale_after` or never arrived.
    PackStale {
        /// The pack.
        pack: usize,
    },
    /// Rule 3: the counter's data is older than `stale_after` or never arrived.
    CoilStale,
    /// Rule 4: a BMS protection that stops the pack both ways (short circuit, over-current,
    /// environment, MOSFET and discharge temperatures).
    BmsProtection {
        /// The pack.
        pack: usize,
        /// Protect state 1 bits that count (6, 5, 4).
        protect1: u8,
        /// Protect state 2 bits that count (6, 5, 4, 3, 1).
        protect2: u8,
    },
    /// Rule 5: a BMS fault.
    BmsFault {
        /// The pack.
        pack: usize,
        /// Fault bits that count (5, 4, 2, 1, 0).
        fault: u8,
    },
    /// Rule 6: BMS over-voltage protection outside a rebalance (the BMS locks both directions).
    BmsOverVoltage {
        /// The pack.
        pack: usize,
    },
    /// Rule 7: the current stayed above 1.2 × its limit.
    OverCurrent,
    /// Rule 8: a cell is too hot.
    CellOverTemperature,
    /// Rule 8: a BMS board is too hot.
    BmsOverTemperature,
    /// Rule 8: a MOSFET is too hot.
    MosfetOverTemperature,
    /// Rule 9: a cell is too cold to discharge.
    CellTooCold,
    /// Rule 10: the safety loop has not decided for too long (set by the replying side).
    DecisionStale,
    /// The system's current limits are not known yet (the packs' limits are unread): nothing true
    /// can be said about currents, so both stay off.
    LimitsUnknown,
    /// Rule 11: a cell above the over-voltage threshold.
    CellOverVoltage,
    /// Rule 12: a cell is too cold to charge.
    TooColdToCharge,
    /// Rule 13: a completed rebalance is settling.
    RebalanceSettling,
    /// Rule 14: a cell below the under-voltage threshold (a rebalance is needed).
    CellUnderVoltage,
    /// Rule 15: a BMS under-voltage protection (protect 1 bit 1 or 3); charging stays allowed at
    /// the recovery current.
    BmsUnderVoltage {
        /// The pack.
        pack: usize,
    },
    /// Rule 16: a BMS charge-temperature protection (protect 2 bit 0 or 2).
    BmsChargeTemperature {
        /// The pack.
        pack: usize,
    },
    /// §2a: a pack stayed above its own over-current alarm for longer than `overcurrent_for`
    /// despite the limit's cut.
    PackOverCurrent {
        /// The pack.
        pack: usize,
        /// The direction of the current: charging (`true`) or discharging.
        charging: bool,
    },
    /// §2a: no pack can take charge.
    NoPackCanCharge,
    /// §2a: no pack can give discharge.
    NoPackCanDischarge,
    /// The inverter's CAN heartbeat (0x305) stopped (only with `can.peer_timeout_disables`).
    InverterSilent,
    /// A charge voltage from the configuration (or the operator's override) does not fit the
    /// number of cells the packs report: it is never told to the inverter, and charging stays
    /// off until the key is fixed.
    ConfigOutOfRange {
        /// The key that sets it.
        key: &'static str,
    },
    /// §2b: a pack waits to join the bus and is too far from it; the direction that widens the
    /// gap is blocked (charging when the pack lies below the bus, discharging when above).
    PackJoining {
        /// The pack.
        pack: usize,
        /// Its voltage minus the bus's, mV.
        delta_mv: i32,
    },
    /// §2b: a pack waited `join_wait_max_s` and is left out; an alarm that blocks nothing. It is
    /// joined when the gap closes.
    PackIsolated {
        /// The pack.
        pack: usize,
        /// Its voltage minus the bus's, mV (`None`: one of them unknown).
        delta_mv: Option<i32>,
    },
}

impl Reason {
    /// What it blocks.
    pub fn blocks(&self) -> Blocks {
        match self {
            Self::CellOverVoltage
            | Self::TooColdToCharge
            | Self::RebalanceSettling
            | Self::BmsChargeTemperature { .. }
            | Self::NoPackCanCharge
            | Self::ConfigOutOfRange { .. }
            | Self::PackOverCurrent { charging: true, .. } => Blocks::Charge,
            Self::CellUnderVoltage
            | Self::BmsUnderVoltage { .. }
            | Self::NoPackCanDischarge
            | Self::PackOverCurrent { charging: false, .. } => Blocks::Discharge,
            Self::PackJoining { delta_mv, .. } if *delta_mv < 0 => Blocks::Charge,
            Self::PackJoining { .. } => Blocks::Discharge,
            Self::PackIsolated { .. } => Blocks::Nothing,
            _ => Blocks::Both,
        }
    }

    /// The SAFETY.md §3 rule number (0 for the limits-unknown reason and the §2a reasons, which
    /// have no number).
    pub fn rule(&self) -> u8 {
        match self {
            Self::ForcedDisable => 1,
            Self::PackStale { .. } => 2,
            Self::CoilStale => 3,
            Self::BmsProtection { .. } => 4,
            Self::BmsFault { .. } => 5,
            Self::BmsOverVoltage { .. } => 6,
            Self::OverCurrent => 7,
            Self::CellOverTemperature | Self::BmsOverTemperature | Self::MosfetOverTemperature => 8,
            Self::CellTooCold => 9,
            Self::DecisionStale => 10,
            Self::LimitsUnknown => 0,
            Self::CellOverVoltage => 11,
            Self::TooColdToCharge => 12,
            Self::RebalanceSettling => 13,
            Self::CellUnderVoltage => 14,
            Self::BmsUnderVoltage { .. } => 15,
            Self::BmsChargeTemperature { .. } => 16,
            Self::PackOverCurrent { .. }
            | Self::NoPackCanCharge
            | Self::NoPackCanDischarge
            | Self::InverterSilent
            | Self::ConfigOutOfRange { .. }
            | Self::PackJoining { .. }
            | Self::PackIsolated { .. } => 0,
        }
    }

    /// The reason in plain words, for the UI and the event log.
    pub fn describe(&self) -> String {
        match self {
            Self::ForcedDisable => "charging and discharging are forced off by the operator".into(),
            Self::PackStale { pack } => format!("pack {pack} has not answered recently"),
            Self::CoilStale => "the coulomb counter has not answered recently".into(),
            Self::BmsProtection { pack, protect1, protect2 } => {
                format!(
                    "pack {pack} BMS protection active (protect 1 {protect1:02X}, protect 2 {protect2:02X})"
                )
            }
            Self::BmsFault { pack, fault } => format!("pack {pack} BMS reports a fault ({fault:02X})"),
            Self::BmsOverVoltage { pack } => {
                format!("pack {pack} BMS over-voltage protection (it locks both directions)")
            }
            Self::OverCurrent => "the current stayed above its limit".into(),
            Self::CellOverTemperature => "a cell is too hot".into(),
            Self::BmsOverTemperature => "a BMS board is too hot".into(),
            Self::MosfetOverTemperature => "a MOSFET is too hot".into(),
            Self::CellTooCold => "a cell is too cold to discharge".into(),
            Self::DecisionStale => "the safety loop stopped deciding".into(),
            Self::LimitsUnknown => "the packs' current limits are not read yet".into(),
            Self::CellOverVoltage => "a cell is above the over-voltage threshold".into(),
            Self::TooColdToCharge => "a cell is too cold to charge".into(),
            Self::RebalanceSettling => "a completed rebalance is settling".into(),
            Self::CellUnderVoltage => {
                "a cell is below the under-voltage threshold; a rebalance is needed".into()
            }
            Self::BmsUnderVoltage { pack } => format!(
                "pack {pack} BMS under-voltage protection (discharge off; charging at the recovery current)"
            ),
            Self::BmsChargeTemperature { pack } => {
                format!("pack {pack} BMS charge-temperature protection (charging off)")
            }
            Self::PackOverCurrent { pack, charging } => format!(
                "pack {pack} stayed above its {} over-current alarm despite the cut",
                if *charging { "charge" } else { "discharge" }
            ),
            Self::NoPackCanCharge => "no pack can take charge (MOSFET off or protecting)".into(),
            Self::NoPackCanDischarge => "no pack can give discharge (MOSFET off or protecting)".into(),
            Self::InverterSilent => "the inverter's CAN heartbeat (0x305) stopped".into(),
            Self::ConfigOutOfRange { key } => format!(
                "{key} does not fit the cells the packs report (3.35-3.60 V a cell, 3.65 V in a rebalance); \
                 charging stays off until it is fixed"
            ),
            Self::PackJoining { pack, delta_mv } => format!(
                "pack {pack} waits to join the bus: it lies {} mV {} it, so {} stays off while the bus moves toward it",
                delta_mv.unsigned_abs(),
                if *delta_mv < 0 { "below" } else { "above" },
                if *delta_mv < 0 { "charging" } else { "discharging" }
            ),
            Self::PackIsolated { pack, delta_mv: Some(d) } => {
                format!("pack {pack} is left off the bus ({d:+} mV from it); it joins when the gap closes")
            }
            Self::PackIsolated { pack, delta_mv: None } => {
                format!("pack {pack} is left off the bus; it joins when the gap closes")
            }
        }
    }

    /// A short machine name (`snake_case`), for metrics, MQTT and the API.
    pub fn code(&self) -> &'static str {
        match self {
            Self::ForcedDisable => "forced_disable",
            Self::PackStale { .. } => "pack_stale",
            Self::CoilStale => "coil_stale",
            Self::BmsProtection { .. } => "bms_protection",
            Self::BmsFault { .. } => "bms_fault",
            Self::BmsOverVoltage { .. } => "bms_over_voltage",
            Self::OverCurrent => "over_current",
            Self::CellOverTemperature => "cell_over_temperature",
            Self::BmsOverTemperature => "bms_over_temperature",
            Self::MosfetOverTemperature => "mosfet_over_temperature",
            Self::CellTooCold => "cell_too_cold",
            Self::DecisionStale => "decision_stale",
            Self::LimitsUnknown => "limits_unknown",
            Self::CellOverVoltage => "cell_over_voltage",
            Self::TooColdToCharge => "too_cold_to_charge",
            Self::RebalanceSettling => "rebalance_settling",
            Self::CellUnderVoltage => "cell_under_voltage",
            Self::BmsUnderVoltage { .. } => "bms_under_voltage",
            Self::BmsChargeTemperature { .. } => "bms_charge_temperature",
            Self::PackOverCurrent { .. } => "pack_over_current",
            Self::NoPackCanCharge => "no_pack_can_charge",
            Self::NoPackCanDischarge => "no_pack_can_discharge",
            Self::InverterSilent => "inverter_silent",
            Self::ConfigOutOfRange { .. } => "config_out_of_range",
            Self::PackJoining { .. } => "pack_joining",
            Self::PackIsolated { .. } => "pack_isolated",
        }
    }
}

/// One decision and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// When it was made.
    pub at: Millis,
    /// Charging enabled.
    pub charge: bool,
    /// Discharging enabled.
    pub discharge: bool,
    /// Every reason, in rule order (an alarm such as `pack_isolated` blocks nothing).
    pub reasons: Vec<Reason>,
    /// Rule 14 or 15 fired: a rebalance is needed.
    pub rebalance_needed: bool,
    /// The lowest cell: (pack, cell), both 1-based, for the `pack_imbalance` alarm.
    pub lowest_cell: Option<(usize, usize)>,
}

impl Decision {
    /// Whether the decision may still be served at `now` (rule 10).
    pub fn is_fresh(&self, now: Millis, max_age_ms: u64) -> bool {
        now.since(self.at) <= max_age_ms
    }
}

/// Whether `reasons` block direction `b` (a reason blocking both blocks each).
fn blocked(reasons: &[Reason], b: Blocks) -> bool {
    reasons.iter().any(|r| r.blocks() == Blocks::Both || r.blocks() == b)
}

/// A latch with hysteresis: set when `set` holds, cleared when `release` holds.
fn latch(flag: &mut bool, set: bool, release: bool) {
    if set {
        *flag = true;
    } else if release {
        *flag = false;
    }
}

/// Protect 1 bits of rule 4: short circuit, discharge OC, charge OC.
const RULE4_P1: u8 = 0b0111_0000;
/// Protect 2 bits of rule 4: environment low/high, MOSFET high, discharge low/high temperature
/// (b7 "fully" is not a protection; the charge temperatures are rule 16's).
const RULE4_P2: u8 = 0b0111_1010;
/// Protect 1 bits of rule 15: low cell voltage, low total voltage.
const RULE15_P1: u8 = 0b0000_1010;
/// Protect 2 bits of rule 16: high and low charge temperature.
const RULE16_P2: u8 = 0b0000_0101;
/// Fault bits of rule 5.
const RULE5_FAULT: u8 = 0b0011_0111;

/// The safety loop's state: the latches and the over-current timer.
#[derive(Clone, Debug, Default)]
pub struct Maestro {
    thresholds: Thresholds,
    cell_ov: bool,
    cell_uv: bool,
    cell_ot: bool,
    bms_ot: bool,
    mosfet_ot: bool,
    cold: bool,
    cold_charge: bool,
    overcurrent: bool,
    over_since: Option<Millis>,
    below_since: Option<Millis>,
    /// Rule 7: a limit that fell still applies, for `overcurrent_for`, while the inverter follows.
    grace: [Option<(i32, Millis)>; 2],
    last_limits: [Option<i32>; 2],
    /// Per pack and direction (charge, discharge): above its alarm since, below it since, latched.
    packs: Vec<[PackCurrent; 2]>,
}

#[derive(Clone, Copy, Debug, Default)]
struct PackCurrent {
    above_since: Option<Millis>,
    below_since: Option<Millis>,
    latched: bool,
}

impl Maestro {
    /// A safety loop with these thresholds and every latch released.
    pub fn new(thresholds: Thresholds) -> Self {
        Self { thresholds, ..Self::default() }
    }

    /// The thresholds.
    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// Decides. Packs with no data for a value (no cells, no temperatures yet) do not trip the
    /// rules on that value; rule 2 already blocks them.
    pub fn decide(&mut self, obs: &Observation<'_>) -> Decision {
        let t = self.thresholds;
        let now = obs.now;
        let mut reasons = Vec::new();
        if obs.forced_disable {
            reasons.push(Reason::ForcedDisable);
        }
        let stale = |at: Option<Millis>| at.is_none_or(|at| now.since(at) > t.stale_after_ms);
        for (k, p) in obs.packs.iter().enumerate() {
            if stale(p.analog_at) || stale(p.status_at) {
                reasons.push(Reason::PackStale { pack: k + 1 });
            }
        }
        if let Some(coil_at) = obs.coil {
            if stale(coil_at) {
                reasons.push(Reason::CoilStale);
            }
        }
        for (k, p) in obs.packs.iter().enumerate() {
            let (p1, p2) = (p.protect1.bits() & RULE4_P1, p.protect2.bits() & RULE4_P2);
            if p1 != 0 || p2 != 0 {
                reasons.push(Reason::BmsProtection { pack: k + 1, protect1: p1, protect2: p2 });
            }
        }
        for (k, p) in obs.packs.iter().enumerate() {
            let f = p.fault.bits() & RULE5_FAULT;
            if f != 0 {
                reasons.push(Reason::BmsFault { pack: k + 1, fault: f });
            }
        }
        if !obs.rebalance_active {
            for (k, p) in obs.packs.iter().enumerate().filter(|(_, p)| !p.rebalance_locked) {
                if p.protect1.intersects(Protect1::HIGH_CELL_VOLTAGE | Protect1::HIGH_TOTAL_VOLTAGE) {
                    reasons.push(Reason::BmsOverVoltage { pack: k + 1 });
                }
            }
        }

        // Rule 7: over-current with a hold time and a release time. A limit that just fell keeps
        // applying for `overcurrent_for` (the inverter reads it a moment later).
        let limits = [obs.charge_limit_ma, obs.discharge_limit_ma];
        for (k, limit) in limits.iter().enumerate() {
            if let (Some(new), Some(old)) = (*limit, self.applicable(k, now)) {
                if new < old {
                    self.grace[k] = Some((old, Millis(now.0 + t.overcurrent_for_ms)));
                }
            }
            self.last_limits[k] = *limit;
        }
        match (obs.current_ma, self.applicable(0, now), self.applicable(1, now)) {
            (Some(i), Some(cl), Some(dl)) => {
                let limit = if i >= 0 { cl } else { dl };
                let magnitude = f64::from(i.unsigned_abs());
                let threshold =
                    (t.overcurrent_factor * f64::from(limit.max(0))).max(f64::from(t.overcurrent_floor_ma));
                if magnitude > threshold {
                    let since = *self.over_since.get_or_insert(now);
                    if now.since(since) > t.overcurrent_for_ms {
                        self.overcurrent = true;
                    }
                } else {
                    self.over_since = None;
                }
                if magnitude < f64::from(limit.max(0)) {
                    let since = *self.below_since.get_or_insert(now);
                    if self.overcurrent && now.since(since) >= t.overcurrent_release_ms {
                        self.overcurrent = false;
                    }
                } else {
                    self.below_since = None;
                }
            }
            _ => reasons.push(Reason::LimitsUnknown),
        }
        if self.overcurrent {
            reasons.push(Reason::OverCurrent);
        }
        self.pack_over_current(obs, &mut reasons);

        // Rules 8, 9, 12: temperatures with hysteresis.
        let cell_temps = || obs.packs.iter().flat_map(|p| p.temps_dc.iter().take(4).copied());
        let sensor = |i: usize| obs.packs.iter().filter_map(move |p| p.temps_dc.get(i).copied());
        let max = |it: &mut dyn Iterator<Item = i32>| it.max();
        let min = |it: &mut dyn Iterator<Item = i32>| it.min();
        let (cell_max, cell_min) = (max(&mut cell_temps()), min(&mut cell_temps()));
        let (mos_max, bms_max) = (max(&mut sensor(4)), max(&mut sensor(5)));
        if let (Some(hi), Some(lo)) = (cell_max, cell_min) {
            latch(&mut self.cell_ot, hi > t.cell_ot_dc, hi < t.cell_ot_release_dc);
            latch(&mut self.cold, lo < t.cell_cold_discharge_dc, lo > t.cell_cold_discharge_release_dc);
            latch(&mut self.cold_charge, lo < t.cell_cold_charge_dc, lo > t.cell_cold_charge_release_dc);
        }
        if let Some(m) = mos_max {
            latch(&mut self.mosfet_ot, m > t.mosfet_ot_dc, m < t.mosfet_ot_release_dc);
        }
        if let Some(b) = bms_max {
            latch(&mut self.bms_ot, b > t.bms_ot_dc, b < t.bms_ot_release_dc);
        }
        if self.cell_ot {
            reasons.push(Reason::CellOverTemperature);
        }
        if self.bms_ot {
            reasons.push(Reason::BmsOverTemperature);
        }
        if self.mosfet_ot {
            reasons.push(Reason::MosfetOverTemperature);
        }
        if self.cold {
            reasons.push(Reason::CellTooCold);
        }

        // Rules 11 and 14: cell voltages with hysteresis. The over-voltage latch follows the cells
        // during a rebalance too, but only blocks outside one; it leaves out a pack the rebalance
        // locked until that pack has joined (§4 step 3).
        let unlocked_cells =
            || obs.packs.iter().filter(|p| !p.rebalance_locked).flat_map(|p| p.cells_mv.iter().copied());
        if let Some(hi) = unlocked_cells().max() {
            latch(&mut self.cell_ov, hi > t.cell_ov_mv, hi < t.cell_ov_release_mv);
        }
        // Beyond SAFETY.md, the safer reading: a pack left off the bus that cannot give discharge
        // (both MOSFETs held off) is not drained by discharging the others, and rule 14 for its low
        // cell would only keep the bus from coming down to it (§2b) — stacked with rule 13 after a
        // completion, both directions off. Its cells count again the moment it can discharge.
        let on_bus_cells = || {
            obs.packs
                .iter()
                .filter(|p| !p.rebalance_locked || p.can_discharge)
                .flat_map(|p| p.cells_mv.iter().copied())
        };
        if let Some(lo) = on_bus_cells().min() {
            latch(&mut self.cell_uv, lo < t.cell_uv_mv, lo > t.cell_uv_release_mv);
        }
        if self.cell_ov && !obs.rebalance_active {
            reasons.push(Reason::CellOverVoltage);
        }
        if self.cold_charge {
            reasons.push(Reason::TooColdToCharge);
        }
        if obs.rebalance_settling {
            reasons.push(Reason::RebalanceSettling);
        }
        if self.cell_uv {
            reasons.push(Reason::CellUnderVoltage);
        }
        let mut bms_under_voltage = false;
        for (k, p) in obs.packs.iter().enumerate() {
            if p.protect1.bits() & RULE15_P1 != 0 {
                bms_under_voltage = true;
                reasons.push(Reason::BmsUnderVoltage { pack: k + 1 });
            }
        }
        for (k, p) in obs.packs.iter().enumerate() {
            if p.protect2.bits() & RULE16_P2 != 0 {
                reasons.push(Reason::BmsChargeTemperature { pack: k + 1 });
            }
        }
        // §2a: a stale pack never counts (rule 2 blocks both anyway, but the count is shown).
        let counts = |can: fn(&PackObservation) -> bool| {
            obs.packs.iter().filter(|p| !stale(p.analog_at) && !stale(p.status_at) && can(p)).count()
        };
        // With every pack stale, rule 2 already says why; the count adds nothing. During an active
        // rebalance a pack held by its BMS's over-voltage protection is expected (rules 6 and 11
        // are relaxed for the same reason): while one is, an empty count does not block — the
        // limit is 0 A all the same, and the completion's unlock releases it.
        let held_by_the_rebalance = obs.packs.iter().any(|p| {
            (obs.rebalance_active || p.rebalance_locked)
                && !stale(p.analog_at)
                && !stale(p.status_at)
                && p.protect1.intersects(Protect1::HIGH_CELL_VOLTAGE | Protect1::HIGH_TOTAL_VOLTAGE)
        });
        if counts(|_| true) > 0 && !held_by_the_rebalance {
            if counts(|p| p.can_charge) == 0 {
                reasons.push(Reason::NoPackCanCharge);
            }
            if counts(|p| p.can_discharge) == 0 {
                reasons.push(Reason::NoPackCanDischarge);
            }
        }
        if obs.inverter_silent {
            reasons.push(Reason::InverterSilent);
        }
        if let Some(key) = obs.config_out_of_range {
            reasons.push(Reason::ConfigOutOfRange { key });
        }
        // §2b: a pack waiting to join blocks the direction that widens its gap, so that the bus
        // moves toward it — unless the other reasons block the narrowing direction already (rule
        // 13 after a completion): then the gap cannot close, blocking would only lock the stack
        // out, and the pack is left out at once (it joins when the gap closes).
        let (charge_blocked, discharge_blocked) =
            (blocked(&reasons, Blocks::Charge), blocked(&reasons, Blocks::Discharge));
        for w in obs.joining {
            reasons.push(match *w {
                // Below the bus: charging widens the gap, discharging narrows it.
                Waiting::Joining { pack, delta_mv }
                    if (delta_mv < 0 && discharge_blocked) || (delta_mv >= 0 && charge_blocked) =>
                {
                    Reason::PackIsolated { pack, delta_mv: Some(delta_mv) }
                }
                Waiting::Joining { pack, delta_mv } => Reason::PackJoining { pack, delta_mv },
                Waiting::Isolated { pack, delta_mv } => Reason::PackIsolated { pack, delta_mv },
            });
        }
        let lowest_cell = obs
            .packs
            .iter()
            .enumerate()
            .flat_map(|(k, p)| p.cells_mv.iter().enumerate().map(move |(c, v)| (*v, k + 1, c + 1)))
            .min()
            .map(|(_, pack, cell)| (pack, cell));

        Decision {
            at: now,
            charge: !blocked(&reasons, Blocks::Charge),
            discharge: !blocked(&reasons, Blocks::Discharge),
            rebalance_needed: self.cell_uv || bms_under_voltage,
            lowest_cell,
            reasons,
        }
    }

    /// Rule 7's applicable limit of direction `k` (0 charge, 1 discharge): the higher of the limit
    /// now and one that fell less than `overcurrent_for` ago.
    fn applicable(&mut self, k: usize, now: Millis) -> Option<i32> {
        if self.grace[k].is_some_and(|(_, until)| now >= until) {
            self.grace[k] = None;
        }
        let limit = self.last_limits[k]?;
        Some(self.grace[k].map_or(limit, |(old, _)| old.max(limit)))
    }

    /// §2a: a pack above 1.0 × its own alarm for longer than `overcurrent_for` blocks that
    /// direction; it releases after the pack stayed below its alarm for `overcurrent_release`.
    fn pack_over_current(&mut self, obs: &Observation<'_>, reasons: &mut Vec<Reason>) {
        let t = self.thresholds;
        let now = obs.now;
        self.packs.resize(obs.packs.len(), [PackCurrent::default(); 2]);
        for (k, p) in obs.packs.iter().enumerate() {
            for (d, alarm) in [p.charge_alarm_a, p.discharge_alarm_a].into_iter().enumerate() {
                let state = &mut self.packs[k][d];
                let flow = p.current_ma.map(|i| if d == 0 { i.max(0) } else { (-i).max(0) });
                let (Some(flow), Some(alarm)) = (flow, alarm) else { continue };
                let alarm_ma = i32::from(alarm) * 1000;
                if flow > alarm_ma {
                    state.below_since = None;
                    let since = *state.above_since.get_or_insert(now);
                    if now.since(since) > t.overcurrent_for_ms {
                        state.latched = true;
                    }
                } else {
                    state.above_since = None;
                    let since = *state.below_since.get_or_insert(now);
                    if state.latched && now.since(since) >= t.overcurrent_release_ms {
                        state.latched = false;
                    }
                }
                if state.latched {
                    reasons.push(Reason::PackOverCurrent { pack: k + 1, charging: d == 0 });
                }
            }
        }
    }
}
