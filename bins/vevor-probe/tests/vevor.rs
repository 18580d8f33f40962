//! `vevor-probe` against an inverter served in-process (TCP and a pty) and against pymodbus.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

#[path = "../../../tests/common/peer.rs"]
mod peer;

use std::sync::{Arc, Mutex};

use link::RtuDeframer;
use modbus_rtu::{Request, Side};
use peer::{PymodbusPeer, probe};
use vevor_modbus::Registers;

const BIN: &str = env!("CARGO_BIN_EXE_vevor-probe");

fn inverter() -> Arc<Mutex<Registers>> {
    let mut r = Registers::default();
    for (a, v) in [
        (201, 3u16),
        (202, 2301),
        (203, 5000),
        (215, 268),
        (216, (-123i16) as u16),
        (229, 77),
        (301, 0),
        (331, 3),
        (332, 300),
    ] {
        r.set(a, v);
    }
    Arc::new(Mutex::new(r))
}

fn answer(regs: Arc<Mutex<Registers>>) -> impl Fn(&[u8]) -> Option<Vec<u8>> + Send + Sync {
    move |frame: &[u8]| {
        let (slave, pdu) = frame.split_first()?;
        let request = Request::parse(pdu).ok()?;
        let (response, _) = regs.lock().unwrap().serve(&request);
        let mut out = Vec::new();
        response.encode(*slave, &mut out).ok()?;
        Some(out)
    }
}

fn rtu_requests() -> RtuDeframer {
    RtuDeframer::new(Side::Request)
}

#[test]
fn read_get_set_over_tcp() {
    let regs = inverter();
    let url = peer::serve_tcp(rtu_requests, answer(regs.clone()));
    let (code, out, err) = probe(BIN, &["--link", &url, "read", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["battery_voltage_mv"], 26800);
    assert_eq!(v["battery_current_ma"], -12300);
    assert_eq!(v["battery_soc_pct"], 77);
    assert_eq!(v["mains_frequency_mhz"], 50000);
    assert_eq!(v["working_mode"], "off_grid");

    let (code, out, _) = probe(BIN, &["--link", &url, "read"]);
    assert_eq!(code, 0);
    assert!(out.lines().any(|l| l.starts_with("battery_voltage") && l.ends_with("26.8 V")), "{out}");

    let (code, out, err) = probe(BIN, &["--link", &url, "set", "output_priority", "sbu"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "output_priority: usb -> sbu (read back)");
    assert_eq!(regs.lock().unwrap().get(301), 2);
    let (code, out, _) = probe(BIN, &["--link", &url, "set", "output_priority", "2"]);
    assert_eq!((code, out.trim()), (0, "output_priority: already sbu"));

    let (code, out, err) = probe(BIN, &["--link", &url, "set", "max_charging_current", "40"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "max_charging_current: 30.0 A -> 40.0 A (read back)");

    let (code, out, _) = probe(BIN, &["get", "charging_priority", "--link", &url, "--json"]);
    assert_eq!((code, out.trim()), (0, r#"{"charging_priority":"pv_only"}"#));
}

#[test]
fn refused_writes_say_why() {
    let url = peer::serve_tcp(rtu_requests, answer(inverter()));
    let (code, _, err) = probe(BIN, &["--link", &url, "set", "charging_priority", "7"]);
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        "vevor-probe: charging_priority: 7 is not allowed; allowed: 0 utility, 1 pv, 2 pv_utility, 3 pv_only"
    );
    let (code, _, err) = probe(BIN, &["--link", &url, "set", "battery_soc", "50"]);
    assert_eq!((code, err.trim()), (1, "vevor-probe: battery_soc is read only"));
    let (code, _, err) = probe(BIN, &["--link", &url, "set", "charge_prio", "pv"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown register 'charge_prio'; known: "), "{err}");
    let (code, _, err) = probe(BIN, &["--link", &url, "set", "output_priority", "sideways"]);
    assert_eq!(code, 1);
    assert!(err.contains("one of: 0 usb, 1 sub, 2 sbu"), "{err}");
}

#[test]
fn over_a_pty() {
    let path = peer::serve_pty(rtu_requests, answer(inverter()));
    let (code, out, err) = probe(BIN, &["--link", &path, "get", "battery_voltage"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.trim().ends_with("26.8 V"), "{out}");
}

#[test]
fn interop_with_pymodbus() {
    let peer = PymodbusPeer::start();
    let (code, out, err) = probe(BIN, &["--link", &peer.vevor, "read", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["battery_voltage_mv"].as_i64(), v["battery_current_ma"].as_i64()),
        (Some(26400), Some(-5600))
    );
    assert_eq!((v["battery_soc_pct"].as_i64(), v["mains_voltage_mv"].as_i64()), (Some(58), Some(230_100)));
    assert_eq!(v["bms_charge_voltage_limit_mv"], 27350);

    let (code, out, err) = probe(BIN, &["--link", &peer.vevor, "set", "output_priority", "usb"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "output_priority: sbu -> usb (read back)");
    let (code, out, err) = probe(BIN, &["--link", &peer.vevor, "set", "charging_priority", "pv_utility"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "charging_priority: pv_only -> pv_utility (read back)");
    // pymodbus's own client sees both writes.
    assert_eq!(peer.read_holding(&peer.vevor, 301, 1), [0]);
    assert_eq!(peer.read_holding(&peer.vevor, 331, 1), [2]);
}
