//! `coil-probe` reads and sets the simulated counter over TCP.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

#[path = "../../../tests/common/peer.rs"]
mod peer;
#[path = "../../../tests/common/sim.rs"]
mod simkit;

const BIN: &str = env!("CARGO_BIN_EXE_coil-probe");

#[test]
fn read_and_set_the_simulated_counter() {
    let run = simkit::start_sim(2);
    let (code, out, err) = peer::probe(BIN, &["--link", &run.coil, "read", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["soc_pct"].as_i64(), v["remaining_mah"].as_i64()), (Some(60), Some(24000)));
    let (code, out, err) = peer::probe(BIN, &["--link", &run.coil, "set-full"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("replied"), "{out}");
    let (_, out, _) = peer::probe(BIN, &["--link", &run.coil, "read", "--json"]);
    assert!(out.contains("\"soc_pct\":100"), "{out}");
    run.sim.command("silence coil").unwrap();
    let (code, _, err) = peer::probe(BIN, &["--link", &run.coil, "read", "--timeout", "0.5"]);
    assert_eq!(code, 1);
    assert!(err.contains("no reply within 0.5 s"), "{err}");
    run.sim.stop();
}
