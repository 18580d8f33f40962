//! Operator orders keep their order (issue 10 item 5): a rebalance start and a cancel sent at
//! once end cancelled, through the one path every order takes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::time::{Duration, Instant};

use daemon::control::{Control, Refused};
use daemon::runtime::Daemon;

/// A daemon whose devices are all unreachable: the safety loop still runs the procedure.
fn daemon(name: &str) -> Daemon {
    let dir = std::env::temp_dir().join(format!("p2p-orders-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let toml = format!(
        "[pylon]\nlink = \"tcp://127.0.0.1:1\"\n\n[[pack]]\nlink = \"tcp://127.0.0.1:2\"\n\n[state]\nstate_file = \"{0}/s.json\"\nevent_log = \"{0}/e.jsonl\"\n",
        dir.display()
    );
    Daemon::start(daemon::Config::parse(&toml, "t").unwrap()).unwrap()
}

fn events(d: &Daemon) -> Vec<String> {
    d.handle().recent_events(1000).into_iter().map(|e| e.event).collect()
}

#[test]
fn a_rebalance_start_then_cancel_sent_at_once_ends_cancelled() {
    let d = daemon("start-cancel");
    d.control(&Control::RebalanceStart).unwrap();
    d.control(&Control::RebalanceCancel).unwrap();
    // A second cancel is judged after the first: nothing will be under way by then.
    assert!(matches!(d.control(&Control::RebalanceCancel), Err(Refused::Conflict(_))));
    let started = Instant::now();
    loop {
        let seen = events(&d);
        let start = seen.iter().position(|e| e.starts_with("rebalance: Started"));
        let cancel = seen.iter().position(|e| e == "rebalance: Cancelled");
        if let (Some(s), Some(c)) = (start, cancel) {
            assert!(s < c, "{seen:?}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "not started then cancelled: {seen:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(d.handle().status().rebalance.step, daemon::status::Step::Idle);
    d.stop();
}

#[test]
fn a_second_start_while_one_is_queued_is_refused() {
    let d = daemon("twice");
    d.control(&Control::RebalanceStart).unwrap();
    assert!(matches!(d.control(&Control::RebalanceStart), Err(Refused::Conflict(_))));
    d.stop();
}

/// A flood of the same order (a script in a loop, a broker repeating a command): the first
/// changes the state and writes one event; the repeats change nothing and write nothing; past
/// the burst the orders are refused as too many, never queued.
#[test]
fn a_flood_of_identical_orders_writes_one_event_and_is_rate_limited() {
    let d = daemon("flood");
    let mut refused = 0;
    let mut taken = Vec::new();
    for _ in 0..200 {
        match d.control(&Control::ForceDisable) {
            Ok(done) => taken.push(done),
            Err(Refused::TooMany(_)) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    eprintln!("200 identical orders: {} taken, {refused} refused", taken.len());
    let forced: Vec<String> = events(&d).into_iter().filter(|e| e.contains("forced_disable")).collect();
    assert_eq!(forced, ["operator: forced_disable: true"], "one event for one change");
    assert_eq!(taken[0], "charging and discharging forced off");
    assert!(taken[1..].iter().all(|t| t.ends_with("already; nothing changed")), "{taken:?}");
    assert!(taken.len() <= 12 && refused >= 188, "{} taken, {refused} refused", taken.len());
    // The rate refills: a second later an order is taken again.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        d.control(&Control::ReleaseForceDisable).unwrap(),
        "forced disable released; the fail-safe rules decide again"
    );
    d.stop();
}

/// SAFETY.md §2b: the operator's join order names an existing pack, and is refused while that
/// pack has said nothing (its state unknown: whether it is off the bus cannot be told).
#[test]
fn a_join_order_names_a_pack_and_needs_its_state() {
    let parsed = Control::parse(br#"{"action": "join_pack", "pack": 1}"#).unwrap();
    assert_eq!(parsed, Control::JoinPack { pack: 1 });
    let extra = Control::parse(br#"{"action": "join_pack", "pack": 1, "now": true}"#).unwrap_err();
    assert!(extra.to_string().contains("unknown field 'now'"), "{extra}");
    let d = daemon("join");
    let none = d.control(&Control::JoinPack { pack: 2 }).unwrap_err();
    assert!(matches!(none, Refused::BadRequest(_)) && none.to_string().contains("no pack 2"), "{none}");
    let unknown = d.control(&Control::JoinPack { pack: 1 }).unwrap_err();
    assert!(
        matches!(unknown, Refused::Conflict(_)) && unknown.to_string().contains("not reported"),
        "{unknown}"
    );
    d.stop();
}
