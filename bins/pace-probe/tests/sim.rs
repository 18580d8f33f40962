//! `pace-probe` reads the simulated packs over TCP, and sees injected faults.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

#[path = "../../../tests/common/peer.rs"]
mod peer;
#[path = "../../../tests/common/sim.rs"]
mod simkit;

const BIN: &str = env!("CARGO_BIN_EXE_pace-probe");

#[test]
fn analog_status_and_a_fault_on_the_simulator() {
    let run = simkit::start_sim(2);
    let (code, out, err) = peer::probe(BIN, &["--link", &run.packs[0], "analog", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let cells: Vec<i64> =
        v["packs"][0]["cells_mv"].as_array().unwrap().iter().map(|c| c.as_i64().unwrap()).collect();
    assert_eq!(cells.len(), 8);
    assert!(cells.iter().all(|c| (3000..3500).contains(c)), "{cells:?}");
    assert!((cells.iter().sum::<i64>() - v["packs"][0]["voltage_mv"].as_i64().unwrap()).abs() <= 8);
    assert_eq!(v["packs"][0]["design_mah"], 20000);

    run.sim.command("fault pack 2 cell-uv").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (code, out, err) = peer::probe(BIN, &["--link", &run.packs[1], "status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["packs"][0]["protect1_flags"], serde_json::json!(["low_cell_voltage"]));
    assert!(
        !v["packs"][0]["system_flags"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("discharge_mosfet_on"))
    );

    let (code, out, err) = peer::probe(BIN, &["--link", &run.packs[0], "read", "pack-ov", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"protect_mv\":29600"), "{out}");
    run.sim.stop();
}
