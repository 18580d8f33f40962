//! The current limits of SAFETY.md §2a: computed from what each pack can carry now, never from the
//! nominal sum. Pure; the time is passed in.
//!
//! ```text
//!  per pack: can carry? (fresh, MOSFET on, no blocking protection), alarm, own current
//!        │
//!        ├─► base = derating × n × a_min ──► × taper (cell voltage, cell temperature)
//!        │                                    ≤ recovery current (rule 15)
//!        └─► per-pack guard: a pack above guard × alarm cuts the limit at once
//!                                             │
//!                   falls at once, rises ≤ limit_rise_per_s × base per second ──► limit
//! ```
//!
//! ```
//! use translator::limits::{Limiter, LimitInput, LimitSettings, PackFlow};
//!
//! let mut limiter = Limiter::new(LimitSettings::default());
//! let pack = PackFlow { can_charge: true, can_discharge: true, current_ma: 10_000, charge_alarm_a: Some(30), discharge_alarm_a: Some(30) };
//! let input = LimitInput { packs: &[pack, pack, pack], cell_max_mv: Some(3300), cell_min_mv: Some(3290), cell_temp_min_dc: Some(200), recovery: false, hold: false };
//! let limits = limiter.update(0, &input);
//! assert_eq!(limits.charge.base_ma, Some(72_000)); // 0.8 × 3 × 30 A
//! assert_eq!(limits.charge.limit_ma, Some(72_000));
//!
//! // A cell near full tapers the charge limit at once.
//! let limits = limiter.update(1000, &LimitInput { cell_max_mv: Some(3450), ..input });
//! assert_eq!(limits.charge.limit_ma, Some(36_000));
//! ```

use pace_proto::{FaultState, PackStatus, Protect1, Protect2, SystemState};

/// A piecewise linear table: `(x, factor)` points with rising `x`; flat beyond its ends.
#[derive(Clone, Debug, PartialEq)]
pub struct Taper {
    points: Vec<(f64, f64)>,
}

impl Taper {
    /// A table from its points.
    ///
    /// # Errors
    /// A message when it has no point, an `x` does not rise, or a factor lies outside 0..=1.
    pub fn new(points: Vec<(f64, f64)>) -> Result<Self, String> {
        if points.is_empty() {
            return Err("a taper table needs at least one point".into());
        }
        if let Some(w) = points.windows(2).find(|w| w[1].0 <= w[0].0 || w[0].0.is_nan()) {
            return Err(format!("the points must rise: {} is followed by {}", w[0].0, w[1].0));
        }
        if let Some((x, f)) = points.iter().find(|(x, f)| !(0.0..=1.0).contains(f) || !x.is_finite()) {
            return Err(format!("the factor at {x} is {f}; factors lie from 0 to 1"));
        }
        Ok(Self { points })
    }

    fn fixed(points: &[(f64, f64)]) -> Self {
        Self { points: points.to_vec() }
    }

    /// The points.
    pub fn points(&self) -> &[(f64, f64)] {
        &self.points
    }

    /// The factor at `x`.
    pub fn at(&self, x: f64) -> f64 {
        let first = self.points[0];
        if x <= first.0 {
            return first.1;
        }
        for w in self.points.windows(2) {
            let ((x0, f0), (x1, f1)) = (w[0], w[1]);
            if x <= x1 {
                return f0 + (f1 - f0) * (x - x0) / (x1 - x0);
            }
        }
        self.points[self.points.len() - 1].1
    }
}

/// The limits' settings (SAFETY.md §2a defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct LimitSettings {
    /// Share of `n × a_min` the base limit is.
    pub current_derating: f64,
    /// Charge factor by the highest cell voltage, mV.
    pub charge_by_cell_mv: Taper,
    /// Charge factor by the lowest cell temperature, °C.
    pub charge_by_temp_c: Taper,
    /// Discharge factor by the lowest cell voltage, mV.
    pub discharge_by_cell_mv: Taper,
    /// Discharge factor by the lowest cell temperature, °C.
    pub discharge_by_temp_c: Taper,
    /// A rising limit moves up by at most this share of the base limit per second.
    pub limit_rise_per_s: f64,
    /// A pack above this share of its own alarm cuts the limit.
    pub pack_current_guard: f64,
    /// While a BMS under-voltage protection holds (rule 15), at most this per pack that can take
    /// charge, A.
    pub recovery_charge_a: f64,
    /// During a rebalance's top hold (SAFETY.md §2b), at most this per pack that can take charge,
    /// A: a pack whose BMS releases its over-voltage protection by itself then finds the bus near
    /// its own resting voltage.
    pub hold_charge_a: f64,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            current_derating: 0.8,
            charge_by_cell_mv: Taper::fixed(&[(3400.0, 1.0), (3450.0, 0.5), (3500.0, 0.25), (3550.0, 0.1)]),
            charge_by_temp_c: Taper::fixed(&[
                (2.0, 0.0),
                (5.0, 0.2),
                (10.0, 0.5),
                (15.0, 1.0),
                (40.0, 1.0),
                (45.0, 0.5),
                (50.0, 0.0),
            ]),
            discharge_by_cell_mv: Taper::fixed(&[(2900.0, 0.2), (3000.0, 0.5), (3100.0, 1.0)]),
            discharge_by_temp_c: Taper::fixed(&[
                (-15.0, 0.0),
                (-10.0, 0.3),
                (0.0, 0.6),
                (10.0, 1.0),
                (45.0, 1.0),
                (50.0, 0.5),
            ]),
            limit_rise_per_s: 0.10,
            pack_current_guard: 0.9,
            recovery_charge_a: 2.0,
            hold_charge_a: 2.0,
        }
    }
}

/// A direction of current.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Into the packs.
    Charge,
    /// Out of them.
    Discharge,
}

/// Whether a pack's last 0x44 status lets it carry current in `direction`: the MOSFET of that
/// direction on, and no protection or fault of that pack that blocks it. (Freshness is the
/// caller's: a stale status never counts.)
pub fn can_carry(status: &PackStatus, direction: Direction) -> bool {
    let (mosfet, p1, p2, fault) = match direction {
        Direction::Charge => (
            SystemState::CHARGE_MOSFET_ON,
            Protect1::HIGH_CELL_VOLTAGE
                | Protect1::HIGH_TOTAL_VOLTAGE
                | Protect1::CHARGE_OVER_CURRENT
                | Protect1::SHORT_CIRCUIT,
            Protect2::HIGH_CHARGE_TEMP
                | Protect2::LOW_CHARGE_TEMP
                | Protect2::HIGH_MOSFET_TEMP
                | Protect2::HIGH_ENVIRONMENT_TEMP
                | Protect2::LOW_ENVIRONMENT_TEMP,
            FaultState::CHARGE_MOSFET,
        ),
        // Over-voltage protection locks the Pace discharge MOSFET too.
        Direction::Discharge => (
            SystemState::DISCHARGE_MOSFET_ON,
            Protect1::HIGH_CELL_VOLTAGE
                | Protect1::HIGH_TOTAL_VOLTAGE
                | Protect1::LOW_CELL_VOLTAGE
                | Protect1::LOW_TOTAL_VOLTAGE
                | Protect1::DISCHARGE_OVER_CURRENT
                | Protect1::SHORT_CIRCUIT,
            Protect2::HIGH_DISCHARGE_TEMP
                | Protect2::LOW_DISCHARGE_TEMP
                | Protect2::HIGH_MOSFET_TEMP
                | Protect2::HIGH_ENVIRONMENT_TEMP
                | Protect2::LOW_ENVIRONMENT_TEMP,
            FaultState::DISCHARGE_MOSFET,
        ),
    };
    // Rule 5's faults (sampling, cell, NTC) stop a pack in both directions.
    let any_fault = FaultState::SAMPLING | FaultState::CELL | FaultState::NTC | fault;
    status.system.contains(mosfet)
        && !status.protect1.intersects(p1)
        && !status.protect2.intersects(p2)
        && !status.fault.intersects(any_fault)
}

/// One pack, as the limits see it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PackFlow {
    /// Fresh data and [`can_carry`] in charge.
    pub can_charge: bool,
    /// Fresh data and [`can_carry`] in discharge.
    pub can_discharge: bool,
    /// Its own current, mA, charge positive (0 when unknown).
    pub current_ma: i32,
    /// Its charge over-current alarm, A (`None`: not read yet).
    pub charge_alarm_a: Option<u16>,
    /// Its discharge over-current alarm, A, magnitude.
    pub discharge_alarm_a: Option<u16>,
}

impl PackFlow {
    fn can(&self, d: Direction) -> bool {
        match d {
            Direction::Charge => self.can_charge,
            Direction::Discharge => self.can_discharge,
        }
    }

    fn alarm_a(&self, d: Direction) -> Option<u16> {
        match d {
            Direction::Charge => self.charge_alarm_a,
            Direction::Discharge => self.discharge_alarm_a,
        }
    }

    /// Its current in the direction of `d`, mA (0 when it flows the other way).
    fn flow_ma(&self, d: Direction) -> i32 {
        match d {
            Direction::Charge => self.current_ma.max(0),
            Direction::Discharge => (-self.current_ma).max(0),
        }
    }
}

/// What the limits look at.
#[derive(Clone, Copy, Debug)]
pub struct LimitInput<'a> {
    /// The packs, pack 1 first.
    pub packs: &'a [PackFlow],
    /// The highest cell, mV.
    pub cell_max_mv: Option<u16>,
    /// The lowest cell, mV.
    pub cell_min_mv: Option<u16>,
    /// The lowest cell temperature, 0.1 °C.
    pub cell_temp_min_dc: Option<i32>,
    /// A BMS under-voltage protection holds (rule 15): charge at the recovery current.
    pub recovery: bool,
    /// A rebalance's top hold is on (§2b): charge at the hold current.
    pub hold: bool,
}

/// The table a factor comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Table {
    /// By the highest cell voltage (charge) or the lowest (discharge), mV.
    CellVoltage,
    /// By the lowest cell temperature, °C.
    CellTemperature,
}

impl Table {
    /// Its name in the status, metrics and config.
    pub fn name(self) -> &'static str {
        match self {
            Self::CellVoltage => "cell_voltage",
            Self::CellTemperature => "cell_temperature",
        }
    }
}

/// One taper factor and what it was read at.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Factor {
    /// The table.
    pub table: Table,
    /// The value it was read at (mV or °C).
    pub at: f64,
    /// The factor, 0..=1.
    pub factor: f64,
}

impl Factor {
    /// Why, in plain words.
    pub fn describe(&self, d: Direction) -> String {
        match (self.table, d) {
            (Table::CellVoltage, Direction::Charge) => format!("highest cell {:.0} mV", self.at),
            (Table::CellVoltage, Direction::Discharge) => format!("lowest cell {:.0} mV", self.at),
            (Table::CellTemperature, _) => format!("coldest cell {:.1} °C", self.at),
        }
    }
}

/// The per-pack guard's cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuardCut {
    /// The pack that cut it (the worst), 1-based.
    pub pack: usize,
    /// Its current in this direction, mA.
    pub current_ma: i32,
    /// Its alarm, A.
    pub alarm_a: u16,
    /// The limit it cut to, mA.
    pub cut_ma: i32,
}

/// One direction's limit and how it was made.
#[derive(Clone, Debug, PartialEq)]
pub struct DirectionLimit {
    /// Packs that can carry current this way (`n`).
    pub packs: usize,
    /// The lowest alarm among them (`a_min`), A.
    pub a_min: Option<u16>,
    /// `derating × n × a_min`, mA (`None`: a counted pack's alarm is unread).
    pub base_ma: Option<i32>,
    /// The tables' factors.
    pub factors: Vec<Factor>,
    /// The lowest factor (1.0 with no table data).
    pub taper: f64,
    /// The recovery cap, mA, while rule 15 holds (charge only).
    pub recovery_ma: Option<i32>,
    /// The top-hold cap, mA, during a rebalance's top hold (charge only).
    pub hold_ma: Option<i32>,
    /// The guard's cut, while a pack is above its guard.
    pub guard: Option<GuardCut>,
    /// Base × taper, capped by the recovery current, mA: where the limit goes without a guard cut
    /// (it rises to it at the allowed rate).
    pub target_ma: Option<i32>,
    /// What the inverter is told, mA (`None`: unknown).
    pub limit_ma: Option<i32>,
}

/// Both directions, and each pack's share.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Charge.
    pub charge: DirectionLimit,
    /// Discharge (positive).
    pub discharge: DirectionLimit,
    /// Each pack's share of the two limits, mA (0 for a pack that cannot carry that way).
    pub shares_ma: Vec<(i32, i32)>,
}

impl Limits {
    /// One direction.
    pub fn get(&self, d: Direction) -> &DirectionLimit {
        match d {
            Direction::Charge => &self.charge,
            Direction::Discharge => &self.discharge,
        }
    }
}

/// The limits' memory: the last limit of each direction (for the rise rate) and when.
#[derive(Clone, Debug)]
pub struct Limiter {
    settings: LimitSettings,
    last: Option<(u64, [f64; 2])>,
}

impl Limiter {
    /// A limiter with no history: its first limits apply as computed.
    pub fn new(settings: LimitSettings) -> Self {
        Self { settings, last: None }
    }

    /// The settings.
    pub fn settings(&self) -> &LimitSettings {
        &self.settings
    }

    /// The limits at `now_ms` (any monotonic epoch).
    pub fn update(&mut self, now_ms: u64, input: &LimitInput<'_>) -> Limits {
        let dt_s = self.last.map_or(0.0, |(at, _)| now_ms.saturating_sub(at) as f64 / 1000.0);
        let previous = self.last.map(|(_, l)| l);
        let charge = self.direction(Direction::Charge, input, previous.map(|l| l[0]), dt_s);
        let discharge = self.direction(Direction::Discharge, input, previous.map(|l| l[1]), dt_s);
        let remember = |d: &DirectionLimit| d.limit_ma.map_or(0.0, f64::from);
        self.last = Some((now_ms, [remember(&charge), remember(&discharge)]));
        let share = |d: &DirectionLimit, can: bool| match d.limit_ma {
            Some(l) if can && d.packs > 0 => l / d.packs as i32,
            _ => 0,
        };
        let shares_ma = input
            .packs
            .iter()
            .map(|p| (share(&charge, p.can_charge), share(&discharge, p.can_discharge)))
            .collect();
        Limits { charge, discharge, shares_ma }
    }

    fn direction(
        &self,
        d: Direction,
        input: &LimitInput<'_>,
        previous_ma: Option<f64>,
        dt_s: f64,
    ) -> DirectionLimit {
        let s = &self.settings;
        let counted: Vec<&PackFlow> = input.packs.iter().filter(|p| p.can(d)).collect();
        let n = counted.len();
        let alarms: Option<Vec<u16>> = counted.iter().map(|p| p.alarm_a(d)).collect();
        let a_min = alarms.as_ref().and_then(|a| a.iter().copied().min());
        let base_ma = match (&alarms, a_min) {
            (_, Some(a)) => Some(s.current_derating * n as f64 * f64::from(a) * 1000.0),
            (Some(_), None) => Some(0.0), // nobody can carry this way
            (None, _) => None,
        };
        let (voltage, voltage_table, temp_table) = match d {
            Direction::Charge => (input.cell_max_mv, &s.charge_by_cell_mv, &s.charge_by_temp_c),
            Direction::Discharge => (input.cell_min_mv, &s.discharge_by_cell_mv, &s.discharge_by_temp_c),
        };
        let mut factors = Vec::new();
        if let Some(mv) = voltage {
            let at = f64::from(mv);
            factors.push(Factor { table: Table::CellVoltage, at, factor: voltage_table.at(at) });
        }
        if let Some(dc) = input.cell_temp_min_dc {
            let at = f64::from(dc) / 10.0;
            factors.push(Factor { table: Table::CellTemperature, at, factor: temp_table.at(at) });
        }
        let taper = factors.iter().map(|f| f.factor).fold(1.0, f64::min);
        let cap = |on: bool, per_pack_a: f64| {
            (d == Direction::Charge && on).then_some(per_pack_a * n as f64 * 1000.0)
        };
        let recovery_ma = cap(input.recovery, s.recovery_charge_a);
        let hold_ma = cap(input.hold, s.hold_charge_a);
        let Some(base) = base_ma else {
            return DirectionLimit {
                packs: n,
                a_min,
                base_ma: None,
                factors,
                taper,
                recovery_ma: recovery_ma.map(round),
                hold_ma: hold_ma.map(round),
                guard: None,
                target_ma: None,
                limit_ma: None,
            };
        };
        let mut target = base * taper;
        for cap in [recovery_ma, hold_ma].into_iter().flatten() {
            target = target.min(cap);
        }
        // The per-pack guard: the worst pack relative to its own guard. The stack's net current this
        // way is what the inverter draws; packs at different voltages also push current into
        // each other (a freshly unlocked pack charges from the others), which no limit removes.
        let net: i64 = input.packs.iter().map(|p| i64::from(p.current_ma)).sum();
        let net_ma = match d {
            Direction::Charge => net.max(0),
            Direction::Discharge => (-net).max(0),
        } as f64;
        let worst = input
            .packs
            .iter()
            .enumerate()
            .filter_map(|(k, p)| {
                let alarm = p.alarm_a(d)?;
                let guard_ma = s.pack_current_guard * f64::from(alarm) * 1000.0;
                (guard_ma > 0.0).then(|| (k, p, alarm, f64::from(p.flow_ma(d)) / guard_ma))
            })
            .max_by(|a, b| a.3.total_cmp(&b.3));
        let guard = worst.filter(|w| w.3 >= 1.0).map(|(k, p, alarm, ratio)| {
            // From the current flowing now, so an inverter that has not yet followed the last cut
            // does not compound it: scaled (SAFETY.md's limit × guard × alarm / |I|, right when
            // the packs share in proportion), or less the pack's excess over its guard (right when
            // part of its current circulates into another pack) — whichever is lower.
            let excess_ma = f64::from(p.flow_ma(d)) * (1.0 - 1.0 / ratio);
            let cut = (net_ma / ratio).min(net_ma - excess_ma).max(0.0);
            GuardCut { pack: k + 1, current_ma: p.flow_ma(d), alarm_a: alarm, cut_ma: round(cut) }
        });
        let limit = match (previous_ma, guard) {
            // Cut at once; no rise while a pack is above its guard.
            (Some(prev), Some(g)) => target.min(prev).min(f64::from(g.cut_ma)),
            (None, Some(g)) => target.min(f64::from(g.cut_ma)),
            // Falls at once, rises at the allowed rate.
            (Some(prev), None) if target > prev => target.min(prev + s.limit_rise_per_s * base * dt_s),
            _ => target,
        };
        DirectionLimit {
            packs: n,
            a_min,
            base_ma: Some(round(base)),
            factors,
            taper,
            recovery_ma: recovery_ma.map(round),
            hold_ma: hold_ma.map(round),
            guard,
            target_ma: Some(round(target.max(0.0))),
            limit_ma: Some(round(limit.max(0.0))),
        }
    }
}

fn round(ma: f64) -> i32 {
    ma.round().clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
}
