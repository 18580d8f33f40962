//! Many seeds, many faults: no SAFETY.md §6 invariant is ever violated. A failure names its seed
//! and prints the violations with what led to them and the trace's tail; `pace2pylon simulate`
//! with the printed arguments replays it exactly.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use proptest::prelude::*;
use sim_world::{Run, Schedule, check, default_config, simulate};

/// What a failed run prints: its replay command, the violations, the last events.
fn report(run: &Run, packs: usize, days: f64, faults: &str) -> String {
    let card = &run.scorecard;
    let mut out = format!(
        "seed {} violated {} invariant(s): replay with `pace2pylon simulate --packs {packs} --days {days} --seed {} --faults {faults} --trace`\n{}\n",
        card.seed,
        card.safety_violations.total,
        card.seed,
        serde_json::to_string_pretty(card).unwrap()
    );
    for e in run.events.iter().filter(|e| e.contains(" violation: ")) {
        out += &format!("  {e}\n");
    }
    out += "the trace's last 40 events:\n";
    for e in run.events.iter().rev().take(40).rev() {
        out += &format!("  {e}\n");
    }
    out
}

/// Runs `check` on every case, on both cores; the failures it reports, in no particular order.
fn on_both_cores<T: Sync>(cases: &[T], check: impl Fn(&T) -> Option<String> + Sync) -> Vec<String> {
    let failures = std::sync::Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                while let Some(case) = cases.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) {
                    if let Some(failure) = check(case) {
                        failures.lock().unwrap().push(failure);
                    }
                }
            });
        }
    });
    failures.into_inner().unwrap()
}

/// Issue 12: at least 20 seeds × 7 plant days with the default faults, 1 to 4 packs, on both cores.
#[test]
fn twenty_seeds_of_a_week_with_the_default_faults_violate_nothing() {
    let seeds: Vec<u64> = (1..=20).collect();
    let failures = on_both_cores(&seeds, |&seed| {
        let packs = 1 + (seed as usize % 4);
        let run = simulate(&default_config(packs).unwrap(), 7.0, seed, &Schedule::default_schedule());
        let card = &run.scorecard;
        eprintln!(
            "seed {seed:>2}, {packs} packs: {} violations, lock-out {} h, time-to-safe {:?} / {:?}, {} rebalances, {} events",
            card.safety_violations.total,
            card.availability.lockout_hours,
            card.time_to_safe_s.reported_fault_max,
            card.time_to_safe_s.silent_pack_max,
            card.rebalances.started,
            card.events
        );
        let bounded = card.time_to_safe_s.reported_fault_max.is_none_or(|t| t <= 1.5)
            && card.time_to_safe_s.silent_pack_max.is_none_or(|t| t <= 5.5);
        (card.safety_violations.total > 0 || card.availability.lockout_hours > 0.0 || !bounded)
            .then(|| report(&run, packs, 7.0, "default"))
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The month-long soak's failures of SAFETY.md v2 (`cargo xtask soak 30`): seed 4 with 5 packs, 6
/// with 7 and 8 with 9. A rebalance's completion switched on a pack that had sat locked in
/// over-voltage protection while the bus moved on, the others drove over 30 A into it, and its BMS
/// tripped. With the join rule (§2b) each month runs with no violation and no harm at all.
#[test]
fn regression_a_month_of_seeds_4_6_and_8_joins_every_pack_without_harm() {
    let failures = on_both_cores(&[(4u64, 5usize), (6, 7), (8, 9)], |&(seed, packs)| {
        let run = simulate(&default_config(packs).unwrap(), 30.0, seed, &Schedule::default_schedule());
        let card = &run.scorecard;
        let h = &card.harm;
        eprintln!(
            "seed {seed}, {packs} packs, 30 days: {} violations, harm {h:?}, {} rebalances",
            card.safety_violations.total, card.rebalances.completed
        );
        if card.rebalances.completed < 2 {
            return Some(format!("seed {seed}: the month had only {} rebalances", card.rebalances.completed));
        }
        (card.safety_violations.total > 0 || h.harmed() > 0 || h.excused_step_trips > 0).then(|| {
            let mut text = report(&run, packs, 30.0, "default");
            for e in run.events.iter().filter(|e| e.contains(" harm: ") || e.contains(" excused: ")) {
                text += &format!("  {e}\n");
            }
            text
        })
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// One fault the generated schedules may inject, always cleared after its window.
fn choice() -> impl Strategy<Value = String> {
    prop_oneof![
        (10u32..300).prop_map(|s| format!("silence pack * for {s}s then restore pack *")),
        (10u32..900).prop_map(|s| format!("noise pack * for {s}s then quiet pack *")),
        (10u32..300).prop_map(|s| format!("garbage pack * for {s}s then clear pack *")),
        (10u32..300).prop_map(|s| format!("silence coil for {s}s then restore coil")),
        (10u32..300).prop_map(|s| format!("lose inverter for {s}s then restore inverter")),
        Just("restart daemon for 15s".to_owned()),
        (
            prop::sample::select(vec!["cell-ov", "overtemp", "overcurrent", "short-circuit", "mosfet-fault"]),
            10u32..600
        )
            .prop_map(|(kind, s)| format!("fault pack * {kind} for {s}s then clear pack *")),
    ]
}

/// A schedule of 1 to 4 rules, each every 1 to 6 plant hours with a jitter, of 1 to 4 choices.
fn schedule() -> impl Strategy<Value = String> {
    prop::collection::vec((1u32..=6, prop::collection::vec(choice(), 1..=4)), 1..=4).prop_map(|rules| {
        rules
            .into_iter()
            .map(|(h, choices)| format!("every {h}h ±{}m: {}\n", h * 20, choices.join(" | ")))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// Issue 12: over random seeds and random fault schedules (every fault cleared after its
    /// window), no invariant is violated and nothing locks both directions out.
    #[test]
    fn random_fault_schedules_violate_nothing(seed in 0u64..1_000_000, packs in 1usize..=3, text in schedule()) {
        let config = default_config(packs).unwrap();
        let schedule = Schedule::parse(&text, "generated").unwrap();
        check(&schedule, &config).unwrap();
        let run = simulate(&config, 1.0, seed, &schedule);
        prop_assert!(
            run.scorecard.safety_violations.total == 0 && run.scorecard.availability.lockout_hours == 0.0,
            "schedule:\n{text}\n{}",
            report(&run, packs, 1.0, "FILE (the schedule above)")
        );
    }
}

/// Found by `random_fault_schedules_violate_nothing` (seed 723064): a daemon restart while its one
/// pack is noisy leaves the responder silent by design (no complete snapshot yet). The inverter ran
/// on the last answer it heard, and the scorer took that for the daemon's decision. Now the
/// inverter falls back to its own settings after 30 s of unanswered polls, and "enabled while a
/// rule holds" is judged only while the inverter hears the daemon.
#[test]
fn regression_a_silent_restarted_daemon_is_not_taken_for_its_last_answer() {
    let text = "every 4h ±80m: noise pack * for 742s then quiet pack * | silence pack * for 165s then restore pack * | restart daemon for 15s | lose inverter for 165s then restore inverter\n\
                every 4h ±80m: restart daemon for 15s | silence pack * for 190s then restore pack * | noise pack * for 894s then quiet pack *\n\
                every 1h ±20m: silence pack * for 32s then restore pack * | fault pack * cell-ov for 126s then clear pack *\n\
                every 4h ±80m: fault pack * mosfet-fault for 494s then clear pack *\n";
    let config = default_config(1).unwrap();
    let schedule = Schedule::parse(text, "generated").unwrap();
    let run = simulate(&config, 1.0, 723_064, &schedule);
    assert_eq!(run.scorecard.safety_violations.total, 0, "{}", report(&run, 1, 1.0, "FILE"));
}
