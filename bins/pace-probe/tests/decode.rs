//! `pace-probe decode` as a user runs it: arguments, standard input, exit codes, messages.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::io::Write;
use std::process::{Command, Output, Stdio};

const P02: &str = include_str!("../../../fixtures/pace/esphome-pbmstools/002-analog-reply-16s.txt");

fn probe(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pace-probe"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = stdin.unwrap_or("").to_owned();
    let mut pipe = child.stdin.take().unwrap();
    std::thread::spawn(move || pipe.write_all(input.as_bytes()));
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_request_decodes_without_cmd() {
    let out = probe(&["decode", "--json", "~25014642E00201FD30"], None);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["adr"].as_u64(), v["request"].as_str(), v["pack"].as_u64()),
        (Some(1), Some("analog"), Some(1))
    );
}

#[test]
fn a_reply_decodes_with_units_in_json_and_table() {
    let out = probe(&["decode", "--cmd", "42", "--json", P02.trim_end()], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pack = &v["packs"][0];
    assert_eq!(pack["cells_mv"][0], 3271);
    assert_eq!(pack["temps_dc"][0], 241);
    assert_eq!(pack["current_ma"], -2250);
    assert_eq!(pack["voltage_mv"], 52429);
    assert_eq!(pack["remaining_mah"], 48190);
    assert_eq!(pack["full_mah"], 103460);
    assert_eq!(pack["design_mah"], 100000);
    assert_eq!(pack["cycles"], 140);
    assert_eq!((v["adr"].as_u64(), v["rtn"].as_u64()), (Some(1), Some(0)));

    // --json is accepted before the subcommand too, and without it a table with units comes out.
    let out = probe(&["--json", "decode", "--cmd", "42", P02.trim_end()], None);
    assert!(out.status.success());
    let out = probe(&["decode", "--cmd", "0x42", P02.trim_end()], None);
    let t = text(&out.stdout);
    assert!(t.contains("52.429 V") && t.contains("-2.250 A") && t.contains("24.1 23.9"), "{t}");
}

#[test]
fn an_invalid_frame_exits_non_zero_with_the_exact_problem() {
    let out = probe(&["decode", "~25014642E00201FD31"], None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr).trim(), "checksum: expected FD30, found FD31");
    assert!(out.stdout.is_empty());

    let out = probe(&["decode", "--cmd", "42", &P02.trim_end()[..60]], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("length: LENID says 122, INFO has"), "{}", text(&out.stderr));

    let out = probe(&["decode", "~2501464XE00201FD30"], None);
    assert_eq!(text(&out.stderr).trim(), "not hex at byte 8");
}

#[test]
fn a_reply_without_cmd_says_how_to_decode_it() {
    let out = probe(&["decode", P02.trim_end()], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--cmd"), "{}", text(&out.stderr));
}

#[test]
fn standard_input_gives_one_result_per_line_and_goes_on_after_errors() {
    let log = format!("{}\n12:00:01 {}\n\n~25014642E00201FD31\n", P02.trim_end(), P02.trim_end());
    let out = probe(&["decode", "--cmd", "42", "--json", "-"], Some(&log));
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<serde_json::Value> =
        text(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["packs"][0]["voltage_mv"], 52429);
    assert_eq!(lines[2]["line"], 4);
    assert_eq!(lines[2]["error"], "checksum: expected FD30, found FD31");
    assert_eq!(text(&out.stderr).trim(), "line 4: checksum: expected FD30, found FD31");
}

#[test]
fn a_bad_cmd_argument_is_a_usage_error() {
    let out = probe(&["decode", "--cmd", "4242", "~25014642E00201FD30"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("'4242' is not a hex byte"), "{}", text(&out.stderr));
}
