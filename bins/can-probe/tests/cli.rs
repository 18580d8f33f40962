//! `can-probe` as a user runs it: decoding captures offline, and sniffing what another
//! `can-probe` sends over a real TCP line.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_can-probe");
const CAPTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/can/us5000-v1.2.log");

#[test]
fn decode_reads_a_capture_from_standard_input_as_json() {
    let mut child = Command::new(BIN)
        .args(["--json", "decode", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&std::fs::read(CAPTURE).unwrap()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[0]["message"]["charge_voltage_dv"], 532);
    assert_eq!(lines[2]["message"]["current_da"], -270);
    assert_eq!(
        lines[4]["message"]["flags"]["names"],
        serde_json::json!(["DISCHARGE_ENABLE", "CHARGE_ENABLE"])
    );
    assert_eq!(lines[5]["message"]["name"], "PYLON");
}

/// `decode -` as `pylon-probe decode -` behaves: bounded lines, any bytes, `line N: …` on
/// standard error and `{"line":N,"error":…}` with `--json`, nothing echoed whole.
#[test]
fn can_probe_decode_stdin_is_bounded_and_names_each_bad_line() {
    let mut input = b"351#1402C012C012C201\n".to_vec();
    input.extend_from_slice(b"\xff\xfe not text\n");
    input.extend_from_slice(b"# a comment\n\n");
    input.extend_from_slice(format!("{}#00\n", "7".repeat(100_000)).as_bytes());
    input.extend_from_slice(format!("35X#{}\n", "0".repeat(5000)).as_bytes());
    input.extend_from_slice(b"355#58005E00\n");
    let mut child = Command::new(BIN)
        .args(["--json", "decode", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "bad lines fail the command");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 2: no frame (ID#DATA) in"), "{stderr}");
    assert!(stderr.contains("line 5: too long (more than 65536 bytes); skipped"), "{stderr}");
    assert!(stderr.contains("line 6: \"35X#0000"), "{stderr}");
    assert!(stderr.len() < 2000, "nothing is echoed whole: {} bytes", stderr.len());
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert_eq!(lines[0]["message"]["charge_voltage_dv"], 532);
    assert_eq!(lines[1]["line"], 2);
    assert_eq!((lines[2]["line"].as_u64(), lines[3]["line"].as_u64()), (Some(5), Some(6)));
    assert_eq!(lines[4]["message"]["soc_pct"], 88, "decoding goes on after the bad lines");
}

#[test]
fn bad_frames_are_named_and_fail_the_command() {
    let out = Command::new(BIN).args(["decode", "351#14", "35X#00", "123#00"]).output().unwrap();
    assert!(!out.status.success());
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("frame 351 has 1 data bytes; its layout needs 6"), "{stdout}");
    assert!(stderr.contains("the id is not hex"), "{stderr}");
    assert!(stdout.contains("123#00") && stdout.contains("not a frame this profile knows"), "{stdout}");
    let out = Command::new(BIN).args(["--profile", "growatt", "decode", "351#00"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("unknown CAN profile 'growatt'; use pylon, lux, sma, solark, victron")
    );
    let out = Command::new(BIN).args(["sniff"]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("give --link"));
}

#[test]
fn sniff_shows_what_send_puts_on_the_bus() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut sniffer = Command::new(BIN)
        .args([
            "--link",
            &format!("slcan+tcp-listen://127.0.0.1:{port}"),
            "--json",
            "sniff",
            "--count",
            "2",
            "--seconds",
            "20",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let link = format!("slcan+tcp://127.0.0.1:{port}");
    let mut sent = false;
    for _ in 0..100 {
        let out = Command::new(BIN)
            .args(["--link", &link, "send", "305#0000000000000000", "35C#C000"])
            .output()
            .unwrap();
        if out.status.success() {
            sent = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(sent, "send never reached the sniffer");
    let lines: Vec<serde_json::Value> = BufReader::new(sniffer.stdout.take().unwrap())
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    assert!(sniffer.wait().unwrap().success());
    assert_eq!(lines[0]["frame"], "305#0000000000000000");
    assert_eq!(lines[0]["message"]["frame"], "heartbeat");
    assert_eq!(lines[1]["message"]["flags"]["bits"], 0xC0);
}
