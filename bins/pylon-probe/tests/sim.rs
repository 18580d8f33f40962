//! `pylon-probe sniff` on the simulated inverter's BMS port sees its polls.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

#[path = "../../../tests/common/peer.rs"]
mod peer;
#[path = "../../../tests/common/sim.rs"]
mod simkit;

const BIN: &str = env!("CARGO_BIN_EXE_pylon-probe");

#[test]
fn sniffing_the_inverter_bms_port_shows_its_polls() {
    let run = simkit::start_sim(1);
    let (code, out, err) =
        peer::probe(BIN, &["--link", &run.bms, "sniff", "--count", "2", "--seconds", "10", "--json"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let names: Vec<_> = lines.iter().map(|l| l["request"]["request"].as_str().unwrap_or("?")).collect();
    assert_eq!(names, ["system_analog", "system_management"], "{out}");
    assert!(lines.iter().all(|l| l["request"]["adr"] == 2));
    run.sim.stop();
}
