//! `pace-probe` live commands against a Pace BMS served in-process over TCP and a pty. The BMS
//! answers with the real captures of `fixtures/pace/` and keeps configuration writes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

#[path = "../../../tests/common/peer.rs"]
mod peer;

use std::sync::{Arc, Mutex};

use link::AsciiDeframer;
use pace_proto::{Command, Config, MosfetSwitch, Refusal, Reply, Request, Response, Rtn};
use peer::probe;

const BIN: &str = env!("CARGO_BIN_EXE_pace-probe");
const P02: &[u8] = include_bytes!("../../../fixtures/pace/esphome-pbmstools/002-analog-reply-16s.txt");
const P04: &[u8] = include_bytes!("../../../fixtures/pace/esphome-pbmstools/004-status-reply.txt");
const P11: &[u8] = include_bytes!("../../../fixtures/pace/esphome-pbmstools/012-cell-ov-reply.txt");
const P27: &[u8] = include_bytes!("../../../fixtures/pace/esphome-pbmstools/028-discharge-oc1-reply.txt");

/// A pack at ADR 0 whose configuration writes stick; it refuses turning the discharge MOSFET off.
fn bms(seen: Arc<Mutex<Vec<Request>>>) -> impl Fn(&[u8]) -> Option<Vec<u8>> + Send + Sync {
    let cell_ov = Mutex::new(match Reply::parse(0xD1, P11).unwrap().outcome {
        Ok(Response::Config(c)) => c,
        _ => unreachable!(),
    });
    let discharge = Mutex::new(match Reply::parse(0xDB, P27).unwrap().outcome {
        Ok(Response::Config(c)) => c,
        _ => unreachable!(),
    });
    move |frame: &[u8]| {
        let request = Request::parse(frame).ok()?;
        seen.lock().unwrap().push(request.clone());
        if request.adr != 0 {
            return None; // another pack's address: a real BMS stays silent
        }
        let ok = |r: Response| Ok(r);
        let outcome = match &request.command {
            Command::Analog { .. } => Reply::parse(0x42, P02).unwrap().outcome,
            Command::Status { .. } => Reply::parse(0x44, P04).unwrap().outcome,
            Command::Version => {
                ok(Response::Version { version: pace_proto::Text::padded("P16S100A-1812-1.00", 20, b' ') })
            }
            Command::ReadConfig(k) if k.name() == "cell-ov" => {
                ok(Response::Config(cell_ov.lock().unwrap().clone()))
            }
            Command::ReadConfig(k) if k.name() == "discharge-oc1" => {
                // Read back negative, as the real BMS does.
                let Config::DischargeOc1(mut c) = discharge.lock().unwrap().clone() else { unreachable!() };
                c.alarm_a = -c.alarm_a.abs();
                c.protect_a = -c.protect_a.abs();
                ok(Response::Config(Config::DischargeOc1(c)))
            }
            Command::WriteConfig(c @ Config::CellOv(_)) => {
                *cell_ov.lock().unwrap() = c.clone();
                ok(Response::Ack)
            }
            Command::WriteConfig(c @ Config::DischargeOc1(_)) => {
                *discharge.lock().unwrap() = c.clone();
                ok(Response::Ack)
            }
            Command::DischargeMosfet(MosfetSwitch::Off) => {
                Err(Refusal { rtn: Rtn::OperationError, info: vec![0x04] })
            }
            Command::ChargeMosfet(_) | Command::DischargeMosfet(_) => {
                ok(Response::Mosfet { system: pace_proto::SystemState::from_bits_retain(0x26) })
            }
            _ => Err(Refusal { rtn: Rtn::Cid2Invalid, info: vec![] }),
        };
        let mut out = Vec::new();
        Reply { adr: 0, outcome }.emit(&mut out).ok()?;
        Some(out)
    }
}

fn serve() -> (String, Arc<Mutex<Vec<Request>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    (peer::serve_tcp(AsciiDeframer::new, bms(seen.clone())), seen)
}

fn json(args: &[&str]) -> serde_json::Value {
    let (code, out, err) = probe(BIN, args);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn analog_and_status_with_default_adr_and_ff() {
    let (url, seen) = serve();
    let v = json(&["--link", &url, "analog", "--json"]);
    assert_eq!(v["packs"][0]["voltage_mv"], 52429);
    assert_eq!(v["packs"][0]["current_ma"], -2250);
    let v = json(&["status", "--json", "--link", &url]);
    assert_eq!(v["packs"][0]["system"], 14);
    assert_eq!(v["packs"][0]["system_flags"][0], "charge_mosfet_on");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0], Request { adr: 0, command: Command::Analog { pack: 0xFF } });
    assert_eq!(seen[1], Request { adr: 0, command: Command::Status { pack: 0xFF } });
}

#[test]
fn read_and_write_a_configuration() {
    let (url, _) = serve();
    let v = json(&["--link", &url, "read", "cell-ov", "--json"]);
    assert_eq!(
        (v["alarm_mv"].as_i64(), v["protect_mv"].as_i64(), v["delay_ms"].as_i64()),
        (Some(3600), Some(3700), Some(1000))
    );

    // Without --yes nothing is written.
    let (code, out, err) = probe(BIN, &["--link", &url, "write", "cell-ov", "alarm_mv=3650"]);
    assert_eq!(code, 1);
    assert!(out.contains("would write cell-ov"), "{out}");
    assert!(err.contains("not written: add --yes"), "{err}");
    assert_eq!(json(&["--link", &url, "read", "cell-ov", "--json"])["alarm_mv"], 3600);

    let v = json(&["--link", &url, "write", "cell-ov", "alarm_mv=3650", "delay_ms=2000", "--yes", "--json"]);
    assert_eq!((v["alarm_mv"].as_i64(), v["delay_ms"].as_i64()), (Some(3650), Some(2000)));
    assert_eq!(json(&["--link", &url, "read", "cell-ov", "--json"])["alarm_mv"], 3650);

    // Out of the BMS's limits, or a field the block does not have: refused before sending.
    let (code, _, err) = probe(BIN, &["--link", &url, "write", "cell-ov", "alarm_mv=5000", "--yes"]);
    assert_eq!((code, err.trim()), (1, "pace-probe: alarm_mv=5000 is outside 2500..4500 in steps of 10"));
    let (code, _, err) = probe(BIN, &["--link", &url, "write", "cell-ov", "alarm=1", "--yes"]);
    assert_eq!(code, 1);
    assert!(err.contains("cell-ov has no field 'alarm'; its fields: alarm_mv"), "{err}");
    let (code, _, err) = probe(BIN, &["--link", &url, "read", "cell-overvoltage"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown configuration 'cell-overvoltage'; known: cell-ov, cell-uv"), "{err}");
}

#[test]
fn a_discharge_limit_read_negative_is_written_positive() {
    let (url, seen) = serve();
    let v = json(&["--link", &url, "write", "discharge-oc1", "alarm_a=100", "--yes", "--json"]);
    assert_eq!((v["alarm_a"].as_i64(), v["protect_a"].as_i64()), (Some(100), Some(110)));
    let writes: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|r| matches!(r.command, Command::WriteConfig(_)))
        .cloned()
        .collect();
    let Command::WriteConfig(Config::DischargeOc1(c)) = &writes[0].command else { panic!() };
    assert_eq!((c.alarm_a, c.protect_a), (100, 110));
}

#[test]
fn mosfets_shutdown_and_refusals() {
    let (url, _) = serve();
    let v = json(&["--link", &url, "mosfet", "charge", "off", "--json"]);
    assert_eq!(v["system"], 0x26);
    let (code, _, err) = probe(BIN, &["--link", &url, "mosfet", "discharge", "off"]);
    assert_eq!(code, 1);
    assert_eq!(err.trim(), format!("pace-probe: {url}: the BMS refused: RTN 09 (operation or write error)"));
    let (code, _, err) = probe(BIN, &["--link", &url, "shutdown"]);
    assert_eq!(code, 1);
    assert!(err.contains("add --yes"), "{err}");
}

#[test]
fn another_address_times_out_with_the_link_named() {
    let (url, _) = serve();
    let (code, _, err) = probe(BIN, &["--link", &url, "--adr", "3", "analog", "--timeout", "0.4"]);
    assert_eq!(code, 1);
    assert_eq!(err.trim(), format!("pace-probe: {url}: no reply within 0.4 s"));
}

#[test]
fn watch_redraws() {
    let (url, _) = serve();
    let (code, out, err) = probe(BIN, &["--link", &url, "watch", "--count", "2"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.matches("\x1b[2J").count(), 2);
    assert!(out.contains("52.429 V") && out.contains("charge_mosfet_on"), "{out}");
}

#[test]
fn over_a_pty() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let path = peer::serve_pty(AsciiDeframer::new, bms(seen));
    let v = json(&["--link", &format!("serial://{path}?baud=9600"), "version", "--json"]);
    assert_eq!(v["version"], "P16S100A-1812-1.00");
}
