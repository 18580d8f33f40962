//! SAFETY.md §6 invariants over long random input sequences. The rule conditions here are computed
//! independently of the implementation, from the observation alone.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use maestro_core::*;
use pace_proto::{FaultState, Protect1, Protect2};
use proptest::prelude::*;

/// A pack in a step: analog age, status age, cells mV, temperatures 0.1 °C, protect 1, protect 2, fault.
type PackData = (Option<u64>, Option<u64>, Vec<u16>, Vec<i32>, u8, u8, u8);
/// ... and can take charge, can give discharge, its own current mA.
type PackStep = (PackData, (bool, bool, i32));

#[derive(Clone, Debug)]
struct Step {
    dt: u64,
    packs: Vec<PackStep>,
    coil: Option<Option<u64>>,
    current: i32,
    limits: Option<(i32, i32)>,
    forced: bool,
    rebalance: bool,
    settling: bool,
    silent: bool,
}

fn step() -> impl Strategy<Value = Step> {
    let pack = (
        prop::option::weighted(0.95, 0u64..8000),
        prop::option::weighted(0.95, 0u64..8000),
        prop::collection::vec(prop_oneof![8 => 3000u16..3500, 1 => 2500u16..3000, 1 => 3500u16..3800], 8),
        prop::collection::vec(prop_oneof![8 => 0i32..450, 1 => -300i32..0, 1 => 450i32..700], 6),
        prop_oneof![6 => Just(0u8), 1 => any::<u8>()],
        prop_oneof![6 => Just(0u8), 1 => any::<u8>()],
        prop_oneof![8 => Just(0u8), 1 => any::<u8>()],
    );
    let pack = (pack, (prop::bool::weighted(0.9), prop::bool::weighted(0.9), -40_000i32..40_000));
    (
        0u64..3000,
        prop::collection::vec(pack, 1..4),
        prop::option::of(prop::option::of(0u64..8000)),
        -80_000i32..80_000,
        prop::option::weighted(0.95, (10_000i32..60_000, 10_000i32..60_000)),
        prop::bool::weighted(0.05),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.05),
        prop::bool::weighted(0.03),
    )
        .prop_map(|(dt, packs, coil, current, limits, forced, rebalance, settling, silent)| Step {
            dt,
            packs,
            coil,
            current,
            limits,
            forced,
            rebalance,
            settling,
            silent,
        })
}

/// Builds the observation at `now`; ages in a step are "how long ago".
/// What the safety loop would see at `now` after step `s`.
fn observation<'a>(
    s: &Step,
    now: u64,
    packs: &'a [PackObservation],
    coil: Option<Option<Millis>>,
) -> Observation<'a> {
    Observation {
        now: Millis(now),
        packs,
        coil,
        current_ma: Some(s.current),
        charge_limit_ma: s.limits.map(|l| l.0),
        discharge_limit_ma: s.limits.map(|l| l.1),
        forced_disable: s.forced,
        rebalance_active: s.rebalance,
        rebalance_settling: s.settling,
        inverter_silent: s.silent,
        config_out_of_range: None,
        joining: &[],
    }
}

fn observe(s: &Step, now: u64) -> (Vec<PackObservation>, Option<Option<Millis>>) {
    let ago = |a: Option<u64>| a.map(|a| Millis(now.saturating_sub(a)));
    let packs = s
        .packs
        .iter()
        .map(|((an, st, cells, temps, p1, p2, f), (can_charge, can_discharge, current))| PackObservation {
            analog_at: ago(*an),
            status_at: ago(*st),
            cells_mv: cells.clone(),
            temps_dc: temps.clone(),
            protect1: Protect1::from_bits_retain(*p1),
            protect2: Protect2::from_bits_retain(*p2),
            fault: FaultState::from_bits_retain(*f),
            current_ma: Some(*current),
            charge_alarm_a: Some(30),
            discharge_alarm_a: Some(30),
            can_charge: *can_charge,
            can_discharge: *can_discharge,
            rebalance_locked: false,
        })
        .collect();
    (packs, s.coil.map(ago))
}

/// The rules' trigger conditions, from the observation alone: (blocks both, blocks charge, blocks discharge).
fn triggers(obs: &Observation<'_>) -> (bool, bool, bool) {
    let t = Thresholds::default();
    let stale = |at: Option<Millis>| at.is_none_or(|at| obs.now.0 - at.0.min(obs.now.0) > t.stale_after_ms);
    let packs = obs.packs;
    let cells = || packs.iter().flat_map(|p| p.cells_mv.iter().copied());
    let cell_t = || packs.iter().flat_map(|p| p.temps_dc.iter().take(4).copied());
    let both = obs.forced_disable
        || obs.inverter_silent
        || packs.iter().any(|p| stale(p.analog_at) || stale(p.status_at))
        || obs.coil.is_some_and(stale)
        || packs.iter().any(|p| p.protect1.bits() & 0x70 != 0 || p.protect2.bits() & 0x7A != 0)
        || packs.iter().any(|p| p.fault.bits() & 0x37 != 0)
        || (!obs.rebalance_active && packs.iter().any(|p| p.protect1.bits() & 0x05 != 0))
        || cell_t().any(|x| !(-150..=500).contains(&x))
        || packs.iter().any(|p| p.temps_dc[4] > 600 || p.temps_dc[5] > 550)
        || obs.charge_limit_ma.is_none();
    // An empty count blocks, unless a pack is held by its over-voltage protection during an
    // active rebalance (SAFETY.md §4: expected there, like rules 6 and 11).
    let fresh = || packs.iter().filter(|p| !stale(p.analog_at) && !stale(p.status_at));
    let held = obs.rebalance_active && fresh().any(|p| p.protect1.bits() & 0x05 != 0);
    let counted = |can: fn(&PackObservation) -> bool| {
        if held { usize::MAX } else { fresh().filter(|p| can(p)).count() }
    };
    let charge = (!obs.rebalance_active && cells().any(|v| v > 3630))
        || cell_t().any(|x| x < 20)
        || obs.rebalance_settling
        || packs.iter().any(|p| p.protect2.bits() & 0x05 != 0) // rule 16
        || counted(|p| p.can_charge) == 0;
    let discharge = cells().any(|v| v < 2850)
        || packs.iter().any(|p| p.protect1.bits() & 0x0A != 0) // rule 15
        || counted(|p| p.can_discharge) == 0;
    (both, charge, discharge)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn no_enable_while_a_rule_holds(steps in prop::collection::vec(step(), 1..60)) {
        let mut m = Maestro::default();
        let mut now = 10_000u64;
        for s in &steps {
            now += s.dt;
            let (packs, coil) = observe(s, now);
            let obs = observation(s, now, &packs, coil);
            let d = m.decide(&obs);
            let (both, charge, discharge) = triggers(&obs);
            prop_assert!(!(d.charge && (both || charge)), "charge enabled while a rule holds: {:?} {:?}", obs, d);
            prop_assert!(!(d.discharge && (both || discharge)), "discharge enabled while a rule holds: {:?} {:?}", obs, d);
            // Stale data always means both off.
            if packs.iter().any(|p| p.analog_at.is_none_or(|a| now - a.0 > 5000)) {
                prop_assert!(!d.charge && !d.discharge);
            }
            prop_assert_eq!(d.at, Millis(now));
        }
    }

    #[test]
    fn a_rebalance_relaxes_only_the_over_voltage_rules(steps in prop::collection::vec(step(), 1..60)) {
        let (mut normal, mut rebalancing) = (Maestro::default(), Maestro::default());
        let mut now = 10_000u64;
        for s in &steps {
            now += s.dt;
            let (packs, coil) = observe(s, now);
            let obs = Observation { rebalance_active: false, ..observation(s, now, &packs, coil) };
            let a = normal.decide(&obs);
            let b = rebalancing.decide(&Observation { rebalance_active: true, ..obs });
            // A pack in over-voltage protection, expected during a rebalance, also keeps an empty
            // §2a count from blocking (its limit is 0 A all the same).
            let fresh_ov = packs.iter().any(|p| {
                p.analog_at.is_some_and(|a| now - a.0 <= 5000) && p.status_at.is_some_and(|a| now - a.0 <= 5000)
                    && p.protect1.bits() & 0x05 != 0
            });
            let relaxed: Vec<_> = a.reasons.iter().filter(|r| {
                let over_voltage = matches!(r, Reason::BmsOverVoltage { .. } | Reason::CellOverVoltage);
                let empty_count = matches!(r, Reason::NoPackCanCharge | Reason::NoPackCanDischarge);
                let relaxed = over_voltage || (fresh_ov && empty_count);
                !relaxed
            }).cloned().collect();
            prop_assert_eq!(b.reasons, relaxed);
        }
    }
}
