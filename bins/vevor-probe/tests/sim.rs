//! `vevor-probe` reads and sets the simulated inverter over TCP.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

#[path = "../../../tests/common/peer.rs"]
mod peer;
#[path = "../../../tests/common/sim.rs"]
mod simkit;

const BIN: &str = env!("CARGO_BIN_EXE_vevor-probe");

#[test]
fn read_and_set_the_simulated_inverter() {
    let run = simkit::start_sim(1);
    let (code, out, err) = peer::probe(BIN, &["--link", &run.inverter, "read", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let battery_mv = v["battery_voltage_mv"].as_i64().unwrap();
    assert!((25_000..28_000).contains(&battery_mv), "{battery_mv}");
    assert!(v["pv_power_w"].as_i64().unwrap() > 0, "11:00: the sun shines");
    let (code, out, err) = peer::probe(BIN, &["--link", &run.inverter, "set", "output_priority", "usb"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "output_priority: sbu -> usb (read back)");
    let (code, _, err) = peer::probe(BIN, &["--link", &run.inverter, "set", "charging_priority", "7"]);
    assert_eq!(code, 1);
    assert!(err.contains("not allowed"), "{err}");
    run.sim.stop();
}
