//! `pylon-probe decode` as a user runs it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::io::Write;
use std::process::{Command, Output, Stdio};

const Y05: &str = include_str!("../../../fixtures/pylon/python-pylontech/002-analog-reply-3-modules.txt");
const Y17: &str = include_str!("../../../fixtures/pylon/martiby-ess/006-alarm-reply.txt");

fn probe(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pylon-probe"))
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

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn group_analog_reply() {
    let v = json(&probe(&["decode", "--json", "--cmd", "42", Y05.trim_end()], None));
    assert_eq!(v["info_flag"], 0x11);
    assert_eq!(v["modules"].as_array().unwrap().len(), 3);
    assert_eq!(v["modules"][0]["current_ma"], -2600);
    assert_eq!(v["modules"][0]["total_mah"], 50000);
    assert_eq!(v["modules"][0]["temps_dc"][0], 230);
}

#[test]
fn alarm_reply_has_status_bytes_and_names() {
    let v = json(&probe(&["decode", "--json", "--cmd", "44", Y17.trim_end()], None));
    let m = &v["modules"][0];
    assert_eq!(m["status"], serde_json::json!([0, 14, 0, 0, 0]));
    assert_eq!(
        m["status2_flags"],
        serde_json::json!(["charge_mosfet_on", "discharge_mosfet_on", "using_battery_power"])
    );
}

#[test]
fn system_management_and_current_unit_dialect() {
    let v = json(&probe(&["decode", "--json", "--cmd", "63", "~20024600D0126AD65F500190FE70C0F99B"], None));
    assert_eq!(
        (v["charge_voltage_mv"].as_u64(), v["discharge_voltage_mv"].as_u64(), v["flags"].as_u64()),
        (Some(27350), Some(24400), Some(0xC0))
    );
    assert_eq!(
        (v["charge_current_ma"].as_i64(), v["discharge_current_ma"].as_i64()),
        (Some(40000), Some(-40000))
    );
}

#[test]
fn requests_and_errors() {
    let v = json(&probe(&["decode", "--json", "~201246630000FDA8"], None));
    assert_eq!((v["adr"].as_u64(), v["request"].as_str()), (Some(0x12), Some("system_management")));
    let out = probe(&["decode", "~200246420000FDAC"], None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "info too short: command value needs 1 bytes at info byte 0, 0 left"
    );
    let out = probe(&["decode", "--cmd", "42", "-"], Some("~1203400456ABCEFEFC72\n"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("line 1: length"));
}
