//! The station on its own, in made-up time: what it writes, when it wants the time again, what a
//! missing reply does, and the order queue's one semantics (first in, first out).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use daemon::control::{Control, Refused};
use daemon::core::Now;
use daemon::state::Persisted;
use daemon::station::{Event, LineId, Persist, Station};
use maestro_core::{Millis, Step};

fn config(packs: usize) -> daemon::Config {
    let mut toml = String::from("[pylon]\nlink = \"tcp://127.0.0.1:1\"\n\n");
    for k in 0..packs {
        toml += &format!("[[pack]]\nlink = \"tcp://127.0.0.1:{}\"\n\n", 10 + k);
    }
    daemon::Config::parse(&toml, "station test").unwrap()
}

fn at(ms: u64) -> Now {
    Now {
        mono: Millis(ms),
        wall: jiff::Timestamp::from_second(1_800_000_000).unwrap()
            + jiff::SignedDuration::from_millis(ms as i64),
    }
}

/// Runs the station's own deadlines up to `until` without a single reply; returns what it wrote.
fn run_silent(station: &mut Station, until: u64) -> Vec<(u64, LineId)> {
    let mut written = Vec::new();
    loop {
        let due = station.poll_timeout().0;
        if due > until {
            return written;
        }
        station.handle_timeout(at(due));
        while let Some(t) = station.poll_transmit() {
            assert!(t.reply_by.0 > due, "a reply is awaited after the write: {t:?} at {due}");
            written.push((due, t.line));
        }
    }
}

#[test]
fn every_pack_is_asked_at_once_and_a_missing_reply_is_counted_at_its_deadline() {
    let mut station = Station::new(&config(2), &Persisted::default(), at(0));
    station.handle_timeout(at(0));
    let first: Vec<_> = std::iter::from_fn(|| station.poll_transmit()).collect();
    assert_eq!(first.iter().map(|t| t.line).collect::<Vec<_>>(), [LineId::Pack(0), LineId::Pack(1)]);
    // A Pace 0x42 request of the pack at ADR 0.
    assert!(first[0].bytes.starts_with(b"~25004642"), "{:?}", String::from_utf8_lossy(&first[0].bytes));
    // Nothing is written twice while a reply is awaited; the next deadline is the reply's.
    assert!(station.poll_transmit().is_none());
    let reply_by = first[0].reply_by;
    assert!(station.poll_timeout() <= reply_by);
    // No reply at all: the packs are asked again and again, and go stale.
    let written = run_silent(&mut station, 30_000);
    assert!(written.len() > 20, "{written:?}");
    let decision = station.published().decision.clone().unwrap();
    assert!(!decision.charge && !decision.discharge);
    let codes: Vec<_> = decision.reasons.iter().map(maestro_core::Reason::code).collect();
    assert!(codes.contains(&"pack_stale"), "{codes:?}");
    let warned = std::iter::from_fn(|| station.poll_event())
        .any(|e| matches!(e, Event::Warn(w) if w.contains("no reply")));
    assert!(warned, "a missing reply is said in the process log");
}

#[test]
fn orders_are_carried_out_first_in_first_out() {
    let mut station = Station::new(&config(1), &Persisted::default(), at(0));
    station.handle_order(&Control::RebalanceStart).unwrap();
    station.handle_order(&Control::RebalanceCancel).unwrap();
    // Judged after the two before it: nothing is under way by then.
    assert!(matches!(station.handle_order(&Control::RebalanceCancel), Err(Refused::Conflict(_))));
    let mut steps = Vec::new();
    for ms in [0, 250, 500, 750] {
        station.handle_timeout(at(ms));
        steps.push(station.rebalance().step);
    }
    assert_eq!(steps[0], Step::Running, "the start first");
    assert_eq!(steps[1], Step::Idle, "then the cancel");
    let events: Vec<_> = std::iter::from_fn(|| station.poll_event()).collect();
    let logged = |needle: &str| {
        events.iter().position(|e| matches!(e, Event::Log { text, .. } if text.contains(needle))).unwrap()
    };
    assert!(logged("rebalance start requested") < logged("rebalance cancel requested"));
    assert!(logged("rebalance: Started") < logged("rebalance: Cancelled"));
}

#[test]
fn a_standing_order_is_published_at_once_and_handed_out_to_be_saved() {
    let mut station = Station::new(&config(1), &Persisted::default(), at(0));
    station.handle_timeout(at(0));
    assert_eq!(station.handle_order(&Control::ForceDisable).unwrap(), "charging and discharging forced off");
    assert!(station.published().overrides.forced_disable, "the status shows it before the next step");
    let saved = std::iter::from_fn(|| station.poll_event())
        .any(|e| matches!(e, Event::Persist(Persist::Overrides(o)) if o.forced_disable));
    assert!(saved);
    // The same order again changes nothing: no event, nothing to save.
    assert!(station.handle_order(&Control::ForceDisable).unwrap().contains("nothing changed"));
    assert!(station.poll_event().is_none());
    station.handle_timeout(at(250));
    let d = station.published().decision.clone().unwrap();
    assert!(d.reasons.iter().any(|r| r.code() == "forced_disable"));
}

#[test]
fn an_order_for_a_pack_that_does_not_exist_is_refused_with_its_numbers() {
    let mut station = Station::new(&config(2), &Persisted::default(), at(0));
    let refused = station.handle_order(&Control::JoinPack { pack: 3 }).unwrap_err();
    assert!(
        matches!(&refused, Refused::BadRequest(m) if m.contains("packs are numbered 1 to 2")),
        "{refused}"
    );
    let refused = station.handle_order(&Control::JoinPack { pack: 1 }).unwrap_err();
    assert!(refused.to_string().contains("has not reported"), "{refused}");
}
