//! `pylon-probe query` against a Pylontech master served in-process, and `sniff` on a line.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

#[path = "../../../tests/common/peer.rs"]
mod peer;

use std::io::Write;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use link::AsciiDeframer;
use peer::probe;
use pylon_proto::units::{DeciAmps, Millivolts};
use pylon_proto::{Command, Dialect, Management, ManagementFlags, Reply, Request, Response, Rtn, Text};

const BIN: &str = env!("CARGO_BIN_EXE_pylon-probe");
const Y05: &[u8] = include_bytes!("../../../fixtures/pylon/python-pylontech/002-analog-reply-3-modules.txt");
const Y13: &[u8] = include_bytes!("../../../fixtures/pylon/martiby-ess/004-serial-reply.txt");

fn limits() -> Management {
    Management {
        charge_voltage: Millivolts::from_raw(27350),
        discharge_voltage: Millivolts::from_raw(24400),
        charge_current: DeciAmps::from_raw(400),
        discharge_current: DeciAmps::from_raw(-400),
        flags: ManagementFlags::CHARGE_ENABLE | ManagementFlags::DISCHARGE_ENABLE,
    }
}

/// A master at ADR 2 with modules at 2, 3 and 4; unknown commands get RTN 04.
fn master(seen: Arc<Mutex<Vec<Request>>>) -> impl Fn(&[u8]) -> Option<Vec<u8>> + Send + Sync {
    move |frame: &[u8]| {
        let request = Request::parse(frame).ok()?;
        seen.lock().unwrap().push(request);
        if !(2..=4).contains(&request.adr) {
            return None;
        }
        let reply = match request.command {
            Command::SystemManagement => Reply::ok(2, Response::SystemManagement(limits())),
            Command::Analog { command: 0xFF } => Reply::parse(0x42, Y05, Dialect::default()).unwrap(),
            Command::Serial { command } => {
                let mut r = Reply::parse(0x93, Y13, Dialect::default()).unwrap();
                r.adr = request.adr;
                r.outcome = Ok(Response::Serial { command, serial: Text::padded("PACE-PACK-02", 16, b' ') });
                r
            }
            _ => Reply::refuse(request.adr, Rtn::Cid2Invalid),
        };
        let mut out = Vec::new();
        reply.emit(&mut out).ok()?;
        Some(out)
    }
}

fn serve() -> (String, Arc<Mutex<Vec<Request>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    (peer::serve_tcp(AsciiDeframer::new, master(seen.clone())), seen)
}

#[test]
fn query_system_and_module_commands() {
    let (url, seen) = serve();
    let (code, out, err) = probe(BIN, &["--link", &url, "query", "63", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["charge_voltage_mv"].as_i64(), v["discharge_current_ma"].as_i64(), v["flags"].as_i64()),
        (Some(27350), Some(-40000), Some(0xC0))
    );

    let (code, out, _) = probe(BIN, &["query", "42", "--link", &url, "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["modules"].as_array().unwrap().len(), 3);

    let (code, out, err) = probe(BIN, &["--link", &url, "query", "93", "--pack", "2"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("PACE-PACK-02"), "{out}");

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0], Request { adr: 2, command: Command::SystemManagement });
    assert_eq!(seen[1], Request { adr: 2, command: Command::Analog { command: 0xFF } });
    // Pack 2 is module address 3, with the command value 3.
    assert_eq!(seen[2], Request { adr: 3, command: Command::Serial { command: 3 } });
}

#[test]
fn a_refusal_exits_non_zero_and_says_so() {
    let (url, _) = serve();
    let (code, out, err) = probe(BIN, &["--link", &url, "query", "62"]);
    assert_eq!(code, 1);
    assert!(out.contains("rtn"), "{out}");
    assert_eq!(err.trim(), format!("pylon-probe: {url}: the BMS refused: RTN 04 (CID2 invalid)"));
    let (code, _, err) = probe(BIN, &["--link", &url, "query", "99"]);
    assert_eq!(code, 1);
    assert!(err.contains("99 is not a command pylon-probe sends"), "{err}");
}

#[test]
fn sniff_prints_every_frame_decoded() {
    // A console-server port on which an inverter and a BMS talk; the sniffer connects to it.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("tcp://{}", listener.local_addr().unwrap());
    thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        thread::sleep(Duration::from_millis(100));
        let mut reply = Vec::new();
        Reply::ok(2, Response::SystemManagement(limits())).emit(&mut reply).unwrap();
        let mut stream = b"~200246630000FDA9\r".to_vec();
        stream.extend_from_slice(b"\x00junk");
        stream.extend_from_slice(&reply);
        stream.extend_from_slice(b"~200246630000FDA8\r"); // bad checksum
        for piece in stream.chunks(7) {
            s.write_all(piece).unwrap();
            thread::sleep(Duration::from_millis(2));
        }
        thread::sleep(Duration::from_secs(2));
    });
    let dir = std::env::temp_dir().join(format!("p2p-sniff-capture-{}", std::process::id()));
    let capture = dir.to_str().unwrap();
    let (code, out, err) = probe(
        BIN,
        &["--link", &url, "sniff", "--count", "3", "--seconds", "5", "--json", "--capture", capture],
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0]["request"]["request"], "system_management");
    assert_eq!(lines[1]["reply"]["charge_voltage_mv"], 27350);
    assert_eq!(lines[2]["error"], "checksum: expected FDA9, found FDA8");
    assert!(lines.iter().all(|l| l["time"].as_str().is_some_and(|t| t.len() == 12)));

    // The same frames in pace2pylon's capture format, seen from the battery's side.
    let folder = link::capture::find(&dir).unwrap().expect("a capture folder");
    assert_ne!(folder, dir, "the capture has a folder of its own");
    let text = std::fs::read_to_string(folder.join("capture-000001.log")).unwrap();
    assert!(link::capture::parse_header(text.lines().next().unwrap()).is_some(), "{text}");
    let records: Vec<link::capture::Record> =
        text.lines().filter_map(|l| link::capture::Record::parse(l).unwrap()).collect();
    let dirs: Vec<&str> = records.iter().map(|r| r.dir.name()).collect();
    assert_eq!(dirs, ["rx", "tx", "tx"], "{text}");
    assert!(records.iter().all(|r| r.link == "pylon"));
    assert_eq!(records[0].bytes, b"~200246630000FDA9\r");
    assert!(text.contains(&format!("# link pylon {url}")), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn query_over_a_pty() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let path = peer::serve_pty(AsciiDeframer::new, master(seen));
    let (code, out, err) =
        probe(BIN, &["--link", &format!("serial://{path}?baud=9600"), "query", "63", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"charge_voltage_mv\":27350"), "{out}");
}
