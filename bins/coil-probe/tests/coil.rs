//! `coil-probe` against a counter served in-process (TCP and a pty) and against pymodbus.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

#[path = "../../../tests/common/peer.rs"]
mod peer;

use std::sync::{Arc, Mutex};

use coil_modbus::{Reading, Registers, Settings, State};
use link::RtuDeframer;
use modbus_rtu::{Request, Side};
use peer::{PymodbusPeer, probe};

const BIN: &str = env!("CARGO_BIN_EXE_coil-probe");

fn counter() -> Arc<Mutex<Registers>> {
    Arc::new(Mutex::new(Registers {
        reading: Reading {
            soc_pct: 87,
            temperature_c: -3,
            voltage_cv: 2675,
            current_ca: 1234,
            power_dw: 33010,
            energy_cwh: 123_456,
            remaining_mah: 135_732,
            flags: 0,
            state: State::Discharging,
        },
        settings: Settings {
            address: 1,
            capacity_mah: 205_000,
            full_voltage_cv: 2735,
            empty_voltage_cv: 2200,
            ..Default::default()
        },
    }))
}

/// A counter served by this crate's own device side; `silent_set_level` drops 0x6F like a real
/// counter might.
fn answer(
    regs: Arc<Mutex<Registers>>,
    silent_set_level: bool,
) -> impl Fn(&[u8]) -> Option<Vec<u8>> + Send + Sync {
    move |frame: &[u8]| {
        let (slave, pdu) = frame.split_first()?;
        let request = Request::parse(pdu).ok()?;
        if silent_set_level && request.function() == 0x6F {
            return None;
        }
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
fn read_settings_and_writes_over_tcp() {
    let regs = counter();
    let url = peer::serve_tcp(rtu_requests, answer(regs.clone(), false));
    let (code, out, err) = probe(BIN, &["--link", &url, "read", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["soc_pct"], 87);
    assert_eq!(v["voltage_mv"], 26750);
    assert_eq!(v["current_ma"], -12340);
    assert_eq!(v["remaining_mah"], 135_732);
    assert_eq!(v["temperature_c"], -3);
    assert_eq!(v["state"], "discharging");

    let (code, out, _) = probe(BIN, &["settings", "--link", &url]);
    assert_eq!(code, 0);
    assert!(out.contains("205.000 Ah") && out.contains("27.350 V"), "{out}");

    let (code, out, err) = probe(BIN, &["--link", &url, "set-capacity", "240000", "--full-voltage", "27.95"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("capacity") && out.contains("240.000 Ah") && out.contains("27.950 V"), "{out}");
    assert_eq!(regs.lock().unwrap().settings.capacity_mah, 240_000);
    assert_eq!(regs.lock().unwrap().settings.full_voltage_cv, 2795);

    let (code, out, err) = probe(BIN, &["--link", &url, "set-full"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "set-full sent; the counter replied (6F 00 00 00 0F)");
}

#[test]
fn a_silent_set_level_is_reported_as_such() {
    let url = peer::serve_tcp(rtu_requests, answer(counter(), true));
    let (code, out, err) = probe(BIN, &["--link", &url, "set-empty", "--timeout", "0.3", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["command"].as_str(), v["replied"].as_bool()), (Some("set-empty"), Some(false)));
}

#[test]
fn over_a_pty() {
    let path = peer::serve_pty(rtu_requests, answer(counter(), false));
    let (code, out, err) = probe(BIN, &["--link", &format!("serial://{path}"), "read", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"soc_pct\":87"), "{out}");
}

#[test]
fn errors_name_the_link_and_the_problem() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("tcp://127.0.0.1:{port}");
    let (code, _, err) = probe(BIN, &["--link", &url, "read", "--timeout", "1"]);
    assert_eq!(code, 1);
    assert!(err.starts_with(&format!("coil-probe: {url}: cannot open:")), "{err}");

    let silent = peer::serve_tcp(rtu_requests, |_| None);
    let (code, _, err) = probe(BIN, &["--link", &silent, "read", "--timeout", "0.5"]);
    assert_eq!(code, 1);
    assert_eq!(err.trim(), format!("coil-probe: {silent}: no reply within 0.5 s"));

    let (code, _, err) = probe(BIN, &["read"]);
    assert_eq!(code, 1);
    assert!(err.contains("give --link"), "{err}");
    let (code, _, err) = probe(BIN, &["--link", "tcp://x", "read"]);
    assert_eq!((code, err.trim()), (1, "coil-probe: tcp://x: missing ':port'"));
    let (code, _, err) = probe(BIN, &["--link", &silent, "set-capacity", "1000", "--full-voltage", "27.355"]);
    assert_eq!(code, 2);
    assert!(err.contains("at most two decimals"), "{err}");
}

#[test]
fn interop_with_pymodbus() {
    let peer = PymodbusPeer::start();
    let (code, out, err) = probe(BIN, &["--link", &peer.coil, "read", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["soc_pct"].as_i64(), v["voltage_mv"].as_i64(), v["current_ma"].as_i64()),
        (Some(64), Some(26610), Some(8500))
    );
    assert_eq!(
        (v["remaining_mah"].as_i64(), v["power_mw"].as_i64(), v["state"].as_str()),
        (Some(135_732), Some(226_100), Some("charging"))
    );

    let (code, out, err) = probe(BIN, &["--link", &peer.coil, "set-full"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("replied"), "{out}");
    let (code, _, err) = probe(BIN, &["--link", &peer.coil, "set-empty"]);
    assert_eq!(code, 0, "{err}");

    let (code, out, err) =
        probe(BIN, &["--link", &peer.coil, "set-capacity", "240000", "--full-voltage", "27.95", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["capacity_mah"].as_i64(), v["full_voltage_mv"].as_i64()), (Some(240_000), Some(27950)));

    let log = peer.logged();
    let levels: Vec<_> =
        log.iter().filter(|e| e["function"] == 0x6F).map(|e| e["level"].as_i64().unwrap()).collect();
    assert_eq!(levels, [15, 0]);
    // pymodbus's own client sees the block write: capacity high word, low word, full voltage.
    assert_eq!(peer.read_holding(&peer.coil, 1, 3), [3, 0xA980, 2795]);
}
