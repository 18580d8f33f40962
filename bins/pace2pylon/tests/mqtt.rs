//! `pace2pylon demo --mqtt` through a real mosquitto broker, watched with mosquitto_sub as Home
//! Assistant would see it: discovery payloads, state values, availability, re-announcement on
//! Home Assistant's birth message, `offline` on a clean stop and the last will after a kill.
//! `cargo xtask test` installs mosquitto; without it these tests fail and say so.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use test_support::process::{Guard, broker, free_port, mosquitto_on, tool, wait_for_port};

/// Every message mosquitto_sub printed (`-v`: topic, space, payload), in order.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, String)>>>);

impl Seen {
    fn watch(port: u16) -> (Guard, Self) {
        let mut child = Command::new(tool("mosquitto_sub"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", "#", "-v"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let seen = Self::default();
        let s = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let (topic, payload) = line.split_once(' ').unwrap_or((&line, ""));
                s.0.lock().unwrap().push((topic.to_owned(), payload.to_owned()));
            }
        });
        (Guard(child), seen)
    }

    fn all(&self) -> Vec<(String, String)> {
        self.0.lock().unwrap().clone()
    }

    fn last(&self, topic: &str) -> Option<String> {
        self.all().into_iter().rev().find(|(t, _)| t == topic).map(|(_, p)| p)
    }

    fn count(&self, f: impl Fn(&str) -> bool) -> usize {
        self.all().iter().filter(|(t, _)| f(t)).count()
    }

    fn wait(&self, what: &str, limit: Duration, ok: impl Fn(&Self) -> bool) {
        let start = Instant::now();
        while !ok(self) {
            assert!(start.elapsed() < limit, "{what}: not seen within {limit:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn demo(port: u16, packs: u32) -> Guard {
    Guard(
        Command::new(env!("CARGO_BIN_EXE_pace2pylon"))
            .args(["demo", "--packs", &packs.to_string(), "--http", "127.0.0.1:0"])
            .args(["--mqtt", &format!("mqtt://127.0.0.1:{port}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn configs(seen: &Seen) -> BTreeMap<String, Value> {
    seen.all()
        .into_iter()
        .filter(|(t, _)| t.starts_with("homeassistant/") && t.ends_with("/config"))
        .map(|(t, p)| (t.clone(), serde_json::from_str(&p).unwrap_or_else(|e| panic!("{t}: {e}: {p}"))))
        .collect()
}

const AVAILABILITY: &str = "pace2pylon/availability";

#[test]
fn home_assistant_sees_every_device_with_states_and_availability() {
    let (_broker, port) = broker();
    let (_sub, seen) = Seen::watch(port);
    let mut d = demo(port, 3);
    seen.wait("online", Duration::from_secs(20), |s| s.last(AVAILABILITY).as_deref() == Some("online"));
    // Serials and cell counts arrive with the first polls; discovery follows them.
    seen.wait("a pack's cell sensors", Duration::from_secs(20), |s| {
        s.count(|t| t == "homeassistant/sensor/pace2pylon/pack3_cell_8/config") > 0
    });
    seen.wait("inverter state", Duration::from_secs(20), |s| s.last("pace2pylon/inverter/state").is_some());
    std::thread::sleep(Duration::from_secs(2));

    let configs = configs(&seen);
    let mut devices = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for (topic, c) in &configs {
        let component = topic.split('/').nth(1).unwrap();
        assert!(["sensor", "binary_sensor", "switch", "button"].contains(&component), "{topic}");
        assert!(ids.insert(c["unique_id"].as_str().unwrap().to_owned()), "{topic}: unique_id repeated");
        assert_eq!(c["availability_topic"], AVAILABILITY, "{topic}");
        devices.insert(c["device"]["identifiers"][0].as_str().unwrap().to_owned());
        assert!(c["device"]["name"].is_string() && c["name"].is_string(), "{topic}");
        // The template's field is in the state topic's JSON: no entity reads a missing field.
        let state_topic = c["state_topic"].as_str().unwrap();
        let template = c["value_template"].as_str().unwrap();
        let field = template.trim_start_matches("{{ value_json.").split([' ', '}']).next().unwrap();
        let state: Value = serde_json::from_str(&seen.last(state_topic).expect(state_topic)).unwrap();
        assert!(state.get(field).is_some(), "{topic}: {field} missing from {state_topic}: {state}");
        if component == "binary_sensor" {
            assert!(state[field] == "ON" || state[field] == "OFF", "{topic}: {}", state[field]);
        }
        if c["device_class"] == "voltage" || c["device_class"] == "current" || c["device_class"] == "power" {
            assert_eq!(c["state_class"], "measurement", "{topic}");
            assert!(c["unit_of_measurement"].is_string(), "{topic}");
        }
    }
    let expected: BTreeSet<String> = ["stack", "pack1", "pack2", "pack3", "coil", "inverter"]
        .iter()
        .map(|d| format!("pace2pylon_{d}"))
        .collect();
    assert_eq!(devices, expected);
    for object in [
        "charge_enabled",
        "discharge_enabled",
        "data_stale",
        "reason_pack_stale",
        "reason_cell_under_voltage",
    ] {
        assert!(
            configs.contains_key(&format!("homeassistant/binary_sensor/pace2pylon/stack_{object}/config")),
            "{object}"
        );
    }
    let soc = &configs["homeassistant/sensor/pace2pylon/stack_soc/config"];
    assert_eq!(
        (soc["device_class"].as_str(), soc["unit_of_measurement"].as_str()),
        (Some("battery"), Some("%"))
    );
    let pack1 = &configs["homeassistant/sensor/pace2pylon/pack1_voltage/config"];
    assert_eq!(pack1["device"]["via_device"], "pace2pylon_stack");
    assert!(pack1["device"]["serial_number"].as_str().unwrap().starts_with("SIMPACK01"));
    assert!(
        !configs.keys().any(|t| t.contains("/switch/") || t.contains("/button/")),
        "control is off by default"
    );

    let stack: Value = serde_json::from_str(&seen.last("pace2pylon/stack/state").unwrap()).unwrap();
    assert_eq!(stack["charge_enabled"], "ON", "{stack}");
    assert!((20.0..30.0).contains(&stack["voltage"].as_f64().unwrap()), "{stack}");
    assert_eq!(stack["reasons"], "none");
    let p1: Value = serde_json::from_str(&seen.last("pace2pylon/pack1/state").unwrap()).unwrap();
    assert!((2.5..3.7).contains(&p1["cell_1"].as_f64().unwrap()), "{p1}");
    assert_eq!(p1["data_stale"], "OFF");

    // Home Assistant restarted: everything is announced again.
    let before = seen.count(|t| t.ends_with("/config"));
    let published = Command::new(tool("mosquitto_pub"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", "homeassistant/status", "-m", "online"])
        .status()
        .unwrap();
    assert!(published.success());
    seen.wait("re-announced discovery", Duration::from_secs(10), |s| {
        s.count(|t| t.ends_with("/config")) >= before + configs.len()
    });

    // A clean stop says offline.
    let stopped = Command::new("kill").args(["-TERM", &d.0.id().to_string()]).status().unwrap();
    assert!(stopped.success());
    let exit = d.0.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    seen.wait("offline after SIGTERM", Duration::from_secs(5), |s| {
        s.last(AVAILABILITY).as_deref() == Some("offline")
    });
}

#[test]
fn a_killed_daemon_is_reported_offline_by_its_last_will() {
    let (_broker, port) = broker();
    let (_sub, seen) = Seen::watch(port);
    let mut d = demo(port, 1);
    seen.wait("online", Duration::from_secs(20), |s| s.last(AVAILABILITY).as_deref() == Some("online"));
    d.0.kill().unwrap();
    let _ = d.0.wait();
    seen.wait("the last will", Duration::from_secs(10), |s| {
        s.last(AVAILABILITY).as_deref() == Some("offline")
    });
    // Retained, so Home Assistant starting later still sees it.
    let late = Command::new(tool("mosquitto_sub"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", AVAILABILITY, "--retained-only", "-W", "3"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&late.stdout).trim(), "offline");
}

#[test]
fn a_broker_that_is_not_there_does_not_stop_the_demo() {
    let port = free_port();
    let mut d = demo(port, 1);
    std::thread::sleep(Duration::from_secs(4));
    assert!(d.0.try_wait().unwrap().is_none(), "the demo must keep running without its broker");
    // And the broker coming up later is found (reconnect with backoff).
    let _broker = mosquitto_on(port);
    wait_for_port(port, "mosquitto");
    let (_sub, seen) = Seen::watch(port);
    seen.wait("online after the broker appeared", Duration::from_secs(40), |s| {
        s.last(AVAILABILITY).as_deref() == Some("online")
    });
    let _ = Command::new("kill").args(["-TERM", &d.0.id().to_string()]).status();
    let _ = d.0.wait();
}

#[test]
fn the_reasons_sensor_always_fits_and_its_attributes_hold_every_reason() {
    let (_broker, port) = broker();
    let (_sub, seen) = Seen::watch(port);
    let mut d = demo(port, 64);
    seen.wait("online", Duration::from_secs(30), |s| s.last(AVAILABILITY).as_deref() == Some("online"));
    // Every pack silent: 64 "pack N has not answered recently" are far more than 255 characters.
    {
        use std::io::Write;
        let stdin = d.0.stdin.as_mut().unwrap();
        for k in 1..=64 {
            writeln!(stdin, "silence pack {k}").unwrap();
        }
    }
    let attributes = "pace2pylon/stack/reasons";
    seen.wait("64 stale packs in the attributes", Duration::from_secs(40), |s| {
        s.last(attributes).is_some_and(|p| {
            let v: Value = serde_json::from_str(&p).unwrap();
            v["reasons"].as_array().unwrap().iter().filter(|r| r["code"] == "pack_stale").count() == 64
        })
    });
    let config: Value = serde_json::from_str(
        &seen.last("homeassistant/sensor/pace2pylon/stack_reasons/config").expect("the reasons sensor"),
    )
    .unwrap();
    assert_eq!(config["json_attributes_topic"], attributes);
    for (topic, payload) in seen.all() {
        if topic == "pace2pylon/stack/state" {
            let state: Value = serde_json::from_str(&payload).unwrap();
            let reasons = state["reasons"].as_str().unwrap();
            assert!(reasons.chars().count() <= 255, "{} characters: {reasons}", reasons.chars().count());
        }
    }
    let state: Value = serde_json::from_str(&seen.last("pace2pylon/stack/state").unwrap()).unwrap();
    let summary = state["reasons"].as_str().unwrap();
    assert!(summary.contains("reasons: pack stale ×64"), "{summary}");
    let v: Value = serde_json::from_str(&seen.last(attributes).unwrap()).unwrap();
    assert_eq!(v["count"].as_u64(), Some(v["reasons"].as_array().unwrap().len() as u64));
    assert!(v["reasons"][0]["text"].as_str().unwrap().contains("has not answered recently"), "{v}");
}

/// A regression test: a broker restarted without persistence forgets the retained discovery; the
/// daemon, reconnecting, announces everything again (the sync wait after the connection once
/// swallowed the re-announcement).
#[test]
fn regression_a_restarted_broker_gets_the_discovery_again() {
    let (broker1, port) = broker();
    let mut d = demo(port, 1);
    let config = "homeassistant/sensor/pace2pylon/pack1_voltage/config";
    let retained = || {
        let out = Command::new(tool("mosquitto_sub"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", config, "--retained-only", "-W", "2"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let start = Instant::now();
    while retained().is_empty() {
        assert!(start.elapsed() < Duration::from_secs(30), "no discovery on the first broker");
    }
    drop(broker1);
    std::thread::sleep(Duration::from_secs(1));
    let _broker2 = mosquitto_on(port);
    wait_for_port(port, "mosquitto");
    let start = Instant::now();
    while retained().is_empty() {
        assert!(start.elapsed() < Duration::from_secs(60), "the restarted broker never got the discovery");
    }
    let _ = Command::new("kill").args(["-TERM", &d.0.id().to_string()]).status();
    let _ = d.0.wait();
}

/// Home Assistant's birth message repeated as fast as a client can send it: the log gets a few
/// lines, not one per message, and the discovery is re-announced at most every 5 s.
#[test]
fn a_flood_of_home_assistant_births_is_neither_a_log_flood_nor_a_discovery_flood() {
    let (_broker, port) = broker();
    let (_sub, seen) = Seen::watch(port);
    let mut d = Guard(
        Command::new(env!("CARGO_BIN_EXE_pace2pylon"))
            .args(["demo", "--packs", "1", "--http", "127.0.0.1:0"])
            .args(["--mqtt", &format!("mqtt://127.0.0.1:{port}")])
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let (err, l) = (d.0.stderr.take().unwrap(), log.clone());
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            l.lock().unwrap().push(line);
        }
    });
    let config = "homeassistant/sensor/pace2pylon/pack1_voltage/config";
    seen.wait("online", Duration::from_secs(30), |s| s.last(AVAILABILITY).as_deref() == Some("online"));
    seen.wait("the first discovery", Duration::from_secs(60), |s| s.count(|t| t == config) > 0);
    let before = seen.count(|t| t == config);
    let lines_before = log.lock().unwrap().len();
    let started = Instant::now();
    let mut flood = Command::new(tool("mosquitto_pub"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", "homeassistant/status", "-l", "-q", "0"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = flood.stdin.take().unwrap();
        let births = "online\n".repeat(50_000);
        std::io::Write::write_all(&mut stdin, births.as_bytes()).unwrap();
    }
    assert!(flood.wait().unwrap().success());
    std::thread::sleep(Duration::from_secs(6));
    let took = started.elapsed().as_secs_f64();
    let announced = seen.count(|t| t == config) - before;
    let lines = log.lock().unwrap()[lines_before..].to_vec();
    eprintln!("50 000 births in {took:.1} s: {announced} re-announcements, {} log lines", lines.len());
    assert!(announced >= 1, "the birth is answered");
    assert!(announced as f64 <= took / 5.0 + 2.0, "{announced} re-announcements in {took:.1} s");
    let warnings = lines.iter().filter(|l| l.contains("WARN")).count();
    assert!(warnings <= 5, "{warnings} warnings: {:?}", &lines[..lines.len().min(20)]);
    let _ = Command::new("kill").args(["-TERM", &d.0.id().to_string()]).status();
    let _ = d.0.wait();
}
