//! `pace2pylon scan` against the simulator, over TCP and a pty, as a new user runs it: what it
//! finds, and that the configuration it writes is valid and names the simulator's lines.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::process::Command;

use test_support::process::sim_printing_config;

const BIN: &str = env!("CARGO_BIN_EXE_pace2pylon");

/// The `link = "…"` values of a printed configuration, in order.
fn links(config: &str) -> Vec<String> {
    config
        .lines()
        .filter_map(|l| l.strip_prefix("link = \""))
        .map(|l| l.trim_end_matches('"').to_owned())
        .collect()
}

#[test]
fn scan_finds_every_simulated_device_and_writes_a_valid_configuration() {
    let (_sim, sim_config, _out) = sim_printing_config(BIN, 2);
    // The simulator's lines: the BMS port first, then the packs, the counter, the inverter.
    let lines = links(&sim_config);
    assert_eq!(lines.len(), 5, "{sim_config}");
    // --print-config: the configuration alone on standard output, the reports (here JSON) on
    // standard error.
    let out = Command::new(BIN).arg("scan").args(&lines).args(["--json", "--print-config"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reports: Vec<serde_json::Value> =
        String::from_utf8(out.stderr).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let kinds: Vec<&str> = reports.iter().map(|r| r["found"][0]["kind"].as_str().unwrap_or("none")).collect();
    assert_eq!(kinds, ["inverter_bms_port", "pace_pack", "pace_pack", "coil", "vevor"], "{reports:?}");
    // The simulated inverter polls 0x61, waits for an answer that never comes, then 0x63.
    assert_eq!(reports[0]["found"][0]["polls"][0], "0x61 at ADR 02", "{:?}", reports[0]);
    let pack = &reports[1]["found"][0];
    assert_eq!((pack["adr"].as_u64(), pack["cells"].as_u64()), (Some(0), Some(8)));
    assert!(pack["serial"].as_str().unwrap().starts_with("SIMPACK01"), "{pack}");

    // check-config accepts the configuration, and it names the same lines as the simulator's own.
    let written = String::from_utf8(out.stdout).unwrap();
    assert_eq!(links(&written), lines, "{written}");
    let path = std::env::temp_dir().join(format!("p2p-scan-{}.toml", std::process::id()));
    std::fs::write(&path, &written).unwrap();
    let check = Command::new(BIN).arg("check-config").arg(&path).output().unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(check.status.success(), "{written}\n{}", String::from_utf8_lossy(&check.stderr));
    // In words, one line says what answered.
    let out = Command::new(BIN).args(["scan", &lines[0], &lines[1], "--listen", "1.5"]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("Pace pack at ADR 0") && said.contains("inverter BMS port"), "{said}");
}

#[test]
fn scan_finds_a_pack_on_a_serial_line() {
    // A pty made by socat and bridged to the simulator's TCP port, as a USB serial adapter and
    // the pack behind it would be.
    let (_sim, sim_config, _out) = sim_printing_config(BIN, 1);
    let pack = links(&sim_config)[1].clone();
    let dir = std::env::temp_dir().join(format!("p2p-scan-pty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tty = dir.join("ttyUSB0");
    let _socat = test_support::process::Guard(
        Command::new(test_support::process::tool("socat"))
            .arg(format!("pty,raw,echo=0,link={}", tty.display()))
            .arg(format!("tcp:{}", pack.trim_start_matches("tcp://")))
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = std::time::Instant::now();
    while !tty.exists() {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "socat made no pty");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let tty = tty.display().to_string();
    let out = Command::new(BIN).args(["scan", &tty, "--json", "--listen", "0.5"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["found"][0]["kind"], "pace_pack", "{report}");
    // The first rate tried, 9600 baud, answered (a pty passes bytes at any rate).
    assert_eq!(report["link"], format!("serial://{tty}"));
}

#[test]
fn scan_names_lines_it_cannot_use_and_bad_ranges() {
    let out = Command::new(BIN).args(["scan", "/dev/p2p-no-such-port", "--listen", "0"]).output().unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("/dev/p2p-no-such-port: cannot scan"), "{said}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing answered on any line"));
    for (range, says) in [("/dev/ttyUSB", "give FROM-TO"), ("/dev/ttyUSB9-2", "TO must be at least FROM")] {
        let out = Command::new(BIN).args(["scan", "--range", range]).output().unwrap();
        assert!(String::from_utf8_lossy(&out.stderr).contains(says), "{range}");
    }
    let out = Command::new(BIN).arg("scan").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("give the lines to scan"));
}
