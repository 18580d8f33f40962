//! The `generic` RS485 profile against python-pylontech (PyPI `python-pylontech`), an independent
//! Pylontech master, on one end of a socat pty pair at 115200 baud (its default), the daemon's
//! `serial://` line on the other: every answer it decodes is checked against the status.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::process::Command;
use std::time::{Duration, Instant};

use daemon::config::PylonProfile;
use daemon::runtime::Daemon;
use serde_json::Value;
use sim::PlantConfig;
use sim::server::Options;
use test_support::plant::{plant_and_config, state_dir};
use test_support::process::{pty_pair, python};

const MASTER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/interop/python_pylontech_master.py");

#[test]
fn python_pylontech_reads_a_stack_through_the_generic_profile() {
    let dir = state_dir("python-pylontech");
    let (daemon_side, master_side) = (dir.join("daemon-pty"), dir.join("master-pty"));
    let _ptys = pty_pair(&daemon_side, &master_side);
    let plant = PlantConfig { packs: 2, start_of_day_s: 11.0 * 3600.0, ..PlantConfig::default() };
    let pylon = format!("serial://{}?baud=115200", daemon_side.display());
    let (sim, mut config) = plant_and_config(plant, Some(&pylon), Options::default(), "", &dir);
    config.pylon.as_mut().unwrap().profile = PylonProfile::Generic;
    let daemon = Daemon::start(config).unwrap();
    let handle = daemon.handle();
    let started = Instant::now();
    while !handle.status().charge_enabled {
        assert!(started.elapsed() < Duration::from_secs(20), "the stack never came up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out =
        Command::new(python()).args([MASTER, &master_side.display().to_string(), "115200"]).output().unwrap();
    assert!(out.status.success(), "python-pylontech failed: {}", String::from_utf8_lossy(&out.stderr));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    let status = handle.status();
    eprintln!("python-pylontech read: {got}");

    // 0x4F and 0x51 at ADR 0, answered as a real unit does: VER 20, RTN 00.
    assert_eq!(got["protocol_version"], serde_json::json!({"ver": "20", "adr": "00", "cid2": "00"}));
    assert_eq!(got["manufacturer_info"]["DeviceName"].as_str().unwrap().trim_end_matches('\0'), "pace2pylon");
    // 0x47: the thresholds of [safety].
    let p = &got["system_parameters"];
    assert_eq!(
        p["CellHighVoltageLimit"].as_f64(),
        Some(f64::from(daemon::config::Safety::default().cell_ov_mv) / 1000.0)
    );
    // 0x42 FF: both packs, their cells and voltages as the status shows them (read moments apart).
    let modules = got["values"]["Module"].as_array().unwrap();
    assert_eq!(got["values"]["NumberOfModules"], 2);
    for (module, pack) in modules.iter().zip(&status.packs) {
        let cells: Vec<f64> =
            module["CellVoltages"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(cells.len(), pack.cells_mv.len());
        for (c, mv) in cells.iter().zip(&pack.cells_mv) {
            assert!((c * 1000.0 - f64::from(*mv)).abs() <= 15.0, "cell {c} V against {mv} mV");
        }
        let v = module["Voltage"].as_f64().unwrap() * 1000.0;
        assert!(
            (v - f64::from(pack.voltage_mv.unwrap())).abs() <= 60.0,
            "{v} mV against {:?}",
            pack.voltage_mv
        );
    }
    assert_eq!(got["values_single"]["NumberOfCells"].as_u64(), Some(status.packs[0].cells_mv.len() as u64));
    // 0x92 for pack 1: its share of the limits and the enable bits.
    let m = &got["management_info"];
    assert_eq!(m["status"]["ChargeEnable"], status.charge_enabled);
    assert_eq!(m["status"]["DischargeEnable"], status.discharge_enabled);
    assert!(m["ChargeCurrentLimit"].as_f64().unwrap() > 0.0, "{m}");
    // 0x93 and the scan: exactly the two packs, with the serials the status shows.
    // The responder sends the BMS's serial without its inner spaces, 16 characters at most.
    let serial = |k: usize| {
        let s: String = status.packs[k].serial.clone().unwrap_or_default().split_whitespace().collect();
        s.chars().take(16).collect::<String>()
    };
    assert_eq!(got["serial_number"]["ModuleSerialNumber"].as_str().unwrap().trim(), serial(0));
    let scan = got["scan"].as_object().unwrap();
    assert_eq!(scan.keys().collect::<Vec<_>>(), ["2", "3"], "{scan:?}");
    daemon.stop();
    sim.stop();
}
