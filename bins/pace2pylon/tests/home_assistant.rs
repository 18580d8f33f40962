//! What Home Assistant sees across a restart of `pace2pylon run`, through a real mosquitto: the
//! first state after the restart carries every key the broker's retained discovery announces
//! (each value template rendered by jinja2, Home Assistant's template engine, with undefined
//! names an error), no text sensor reads `None`, entities no longer wanted are removed with an
//! empty retained config, and the energy meters never fall.
//!
//! `cargo xtask test` installs mosquitto and jinja2; without them these tests fail and say so.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use test_support::process::{Guard, broker, free_port, python, sim_printing_config, tool};

const BIN: &str = env!("CARGO_BIN_EXE_pace2pylon");
const H: &str = "homeassistant";
const P: &str = "hatest";

/// Every message mosquitto_sub printed, in order (`-v`; an empty payload is a removal).
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
                // mosquitto_sub prints an empty payload as "(null)".
                let payload = if payload == "(null)" { "" } else { payload };
                s.0.lock().unwrap().push((topic.to_owned(), payload.to_owned()));
            }
        });
        (Guard(child), seen)
    }

    fn all(&self) -> Vec<(String, String)> {
        self.0.lock().unwrap().clone()
    }

    fn wait(&self, what: &str, limit: Duration, ok: impl Fn(&[(String, String)]) -> bool) {
        let start = Instant::now();
        while !ok(&self.all()) {
            assert!(start.elapsed() < limit, "{what}: not seen within {limit:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn http_get(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()
}

/// The discovery configs the broker retains after the messages `seen[..upto]`: topic → config.
fn retained_configs(seen: &[(String, String)]) -> BTreeMap<String, Value> {
    let mut configs = BTreeMap::new();
    for (topic, payload) in seen {
        if topic.starts_with(&format!("{H}/")) && topic.ends_with("/config") {
            if payload.is_empty() {
                configs.remove(topic);
            } else {
                configs.insert(topic.clone(), serde_json::from_str(payload).unwrap());
            }
        }
    }
    configs
}

/// Renders each `(template, state payload)` with jinja2 as Home Assistant does (`value_json` the
/// parsed payload), with an undefined name an error; returns what each rendered or its error.
fn render(cases: &[(String, String)]) -> Vec<Result<String, String>> {
    let script = r#"
import json, sys, jinja2
env = jinja2.Environment(undefined=jinja2.StrictUndefined)
out = []
for template, payload in json.load(sys.stdin):
    try:
        out.append({"ok": str(env.from_string(template).render(value=payload, value_json=json.loads(payload)))})
    except Exception as e:
        out.append({"error": f"{type(e).__name__}: {e}"})
print(json.dumps(out))
"#;
    let mut child = Command::new(python())
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(json!(cases).to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "jinja2 did not run: is it in target/pyvenv? (cargo xtask test)");
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    results
        .into_iter()
        .map(|r| match r.get("ok") {
            Some(v) => Ok(v.as_str().unwrap().to_owned()),
            None => Err(r["error"].as_str().unwrap().to_owned()),
        })
        .collect()
}

/// Checks the first state of every device after `from` against the discovery the broker held
/// when it arrived: every template renders, no text sensor says `None`.
fn first_states_fit_their_discovery(seen: &[(String, String)], from: usize) -> usize {
    let mut cases = Vec::new();
    let mut names = Vec::new();
    let mut checked_devices = 0;
    for device in ["stack", "pack1", "pack2", "coil", "inverter"] {
        let topic = format!("{P}/{device}/state");
        let Some(k) = (from..seen.len()).find(|&k| seen[k].0 == topic) else {
            panic!("no {topic} after the restart");
        };
        checked_devices += 1;
        for (config_topic, c) in retained_configs(&seen[..k]) {
            if c["state_topic"] != topic.as_str() {
                continue;
            }
            let template = c["value_template"].as_str().unwrap().to_owned();
            let text = config_topic.contains("/sensor/")
                && c.get("unit_of_measurement").is_none()
                && c.get("device_class").is_none()
                && c.get("state_class").is_none();
            names.push((config_topic, text, seen[k].1.clone()));
            cases.push((template, seen[k].1.clone()));
        }
    }
    assert!(cases.len() > 100, "{} entities checked", cases.len());
    for ((topic, text, state), rendered) in names.iter().zip(render(&cases)) {
        let rendered = rendered.unwrap_or_else(|e| panic!("{topic}: {e} in the first state {state}"));
        if *text {
            assert_ne!(rendered, "None", "{topic}: a text sensor shows the word None; state {state}");
        }
    }
    checked_devices
}

/// `sim`'s configuration with `packs` of its packs, our state file, web port and broker.
fn config(
    sim_config: &str,
    packs: usize,
    dir: &std::path::Path,
    http: u16,
    mqtt: u16,
    control: bool,
) -> String {
    let mut blocks = sim_config.split("[[pack]]");
    let mut text = blocks.next().unwrap().to_owned();
    let rest: Vec<&str> = blocks.collect();
    for (k, block) in rest.iter().enumerate() {
        if k < packs {
            text += "[[pack]]";
            text += block;
        } else {
            // The last block runs on to the coil and the inverter: keep them.
            if let Some(at) = block.find("\n[") {
                text += &block[at..];
            }
        }
    }
    text + &format!(
        "\n[state]\nstate_file = \"{0}/state.json\"\nevent_log = \"{0}/events.jsonl\"\nenergy_save_s = 2\n\n\
         [http]\nlisten = \"127.0.0.1:{http}\"\ntoken = \"ha-test-token-1234\"\n\n\
         [mqtt]\nurl = \"mqtt://127.0.0.1:{mqtt}\"\ntopic_prefix = \"{P}\"\nclient_id = \"{P}\"\nallow_control = {control}\n",
        dir.display()
    )
}

fn run(path: &std::path::Path, http: u16) -> Guard {
    let run = Guard(
        Command::new(BIN)
            .arg("run")
            .arg("--config")
            .arg(path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", http)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "run never served HTTP");
        std::thread::sleep(Duration::from_millis(100));
    }
    run
}

fn stop(mut run: Guard) {
    let _ = Command::new("kill").args(["-TERM", &run.0.id().to_string()]).status();
    assert!(run.0.wait().unwrap().success());
}

/// Every energy value any state carried for `field` on `topic`, in order.
fn energies(seen: &[(String, String)], topic: &str, field: &str) -> Vec<f64> {
    seen.iter()
        .filter(|(t, _)| t == topic)
        .filter_map(|(_, p)| serde_json::from_str::<Value>(p).ok()?.get(field)?.as_f64())
        .collect()
}

#[test]
fn a_restart_keeps_every_announced_key_removes_what_is_unwanted_and_energy_never_falls() {
    let (_sim, sim_config, _out) = sim_printing_config(BIN, 3);
    let (_broker, mqtt) = broker();
    let (_sub, seen) = Seen::watch(mqtt);
    let dir = std::env::temp_dir().join(format!("p2p-ha-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (http1, http2) = (free_port(), free_port());
    let path = dir.join("run.toml");

    // First run: three packs, read-only.
    std::fs::write(&path, config(&sim_config, 3, &dir, http1, mqtt, false)).unwrap();
    let first = run(&path, http1);
    seen.wait("pack 3's cells and a growing energy meter", Duration::from_secs(40), |s| {
        s.iter().any(|(t, _)| t == &format!("{H}/sensor/{P}/pack3_cell_8/config"))
            && energies(s, &format!("{P}/stack/state"), "energy_charged_kwh")
                .iter()
                .chain(&energies(s, &format!("{P}/stack/state"), "energy_discharged_kwh"))
                .any(|e| *e > 0.0)
    });
    let status: Value = serde_json::from_str(&http_get(http1, "/api/v1/status")).unwrap();
    assert_eq!(status["energy"]["source"], "coil", "{}", status["energy"]);
    let metrics = http_get(http1, "/metrics");
    assert!(metrics.contains("# TYPE pace2pylon_stack_energy_charged_kwh_total counter"), "{metrics}");
    assert!(metrics.contains("pace2pylon_pack_energy_discharged_kwh_total{pack=\"3\"}"), "{metrics}");
    let configs = retained_configs(&seen.all());
    let meter = &configs[&format!("{H}/sensor/{P}/stack_energy_charged_kwh/config")];
    assert_eq!(
        (&meter["device_class"], &meter["state_class"], &meter["unit_of_measurement"]),
        (&json!("energy"), &json!("total_increasing"), &json!("kWh"))
    );
    assert!(configs.contains_key(&format!("{H}/binary_sensor/{P}/stack_forced_disable/config")));
    std::thread::sleep(Duration::from_secs(2));
    stop(first);
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).unwrap()).unwrap();
    assert!(saved["energy"]["stack"]["charged_wh"].is_number(), "{saved}");

    // Second run: pack 3 taken out, control allowed. Its first states meet the discovery the
    // broker still holds from the first run: pack 1's eight cells before it is read again.
    let restart = seen.all().len();
    std::fs::write(&path, config(&sim_config, 2, &dir, http2, mqtt, true)).unwrap();
    let second = run(&path, http2);
    seen.wait("the second run's states", Duration::from_secs(30), |s| {
        ["stack", "pack1", "pack2", "coil", "inverter"]
            .iter()
            .all(|d| s[restart..].iter().any(|(t, _)| t == &format!("{P}/{d}/state")))
    });
    let all = seen.all();
    assert_eq!(first_states_fit_their_discovery(&all, restart), 5);
    let pack1_first = all[restart..].iter().find(|(t, _)| t == &format!("{P}/pack1/state")).unwrap();
    let pack1_first: Value = serde_json::from_str(&pack1_first.1).unwrap();
    assert!(pack1_first.get("cell_8").is_some(), "announced before, so carried: {pack1_first}");

    // What is no longer wanted is removed, with an empty retained config.
    let removed = |topic: String| {
        seen.wait(&format!("the removal of {topic}"), Duration::from_secs(20), |s| {
            s[restart..].iter().any(|(t, p)| *t == topic && p.is_empty())
        });
    };
    removed(format!("{H}/sensor/{P}/pack3_voltage/config"));
    removed(format!("{H}/sensor/{P}/pack3_cell_8/config"));
    removed(format!("{H}/binary_sensor/{P}/stack_forced_disable/config"));
    let now = retained_configs(&seen.all());
    assert!(now.contains_key(&format!("{H}/switch/{P}/stack_forced_disable/config")));
    assert!(!now.keys().any(|t| t.contains("/pack3_")), "pack 3 is gone: {:?}", now.keys());
    let late = Command::new(tool("mosquitto_sub"))
        .args(["-h", "127.0.0.1", "-p", &mqtt.to_string(), "-t", &format!("{H}/+/{P}/pack3_voltage/config")])
        .args(["--retained-only", "-W", "2"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&late.stdout).trim().is_empty(), "the broker forgot it");

    // The meters: never lower than before, across a clean restart and a crash (SIGKILL: no
    // last save), in the stack and each pack.
    std::thread::sleep(Duration::from_secs(3));
    let mut second = second;
    second.0.kill().unwrap();
    let _ = second.0.wait();
    let crashed = seen.all().len();
    let http3 = free_port();
    std::fs::write(&path, config(&sim_config, 2, &dir, http3, mqtt, true)).unwrap();
    let third = run(&path, http3);
    seen.wait("the third run's stack state", Duration::from_secs(30), |s| {
        s[crashed..].iter().filter(|(t, _)| t == &format!("{P}/stack/state")).count() >= 3
    });
    stop(third);
    let all = seen.all();
    for (topic, field) in [
        ("stack", "energy_charged_kwh"),
        ("stack", "energy_discharged_kwh"),
        ("pack1", "energy_charged_kwh"),
        ("pack1", "energy_discharged_kwh"),
        ("pack2", "energy_discharged_kwh"),
    ] {
        let values = energies(&all, &format!("{P}/{topic}/state"), field);
        assert!(values.len() > 4, "{topic} {field}: {values:?}");
        for pair in values.windows(2) {
            assert!(pair[1] >= pair[0], "{topic} {field} fell: {values:?}");
        }
    }
    let stack = |field| energies(&all, &format!("{P}/stack/state"), field);
    let grew = |v: Vec<f64>| v.last().copied().unwrap_or(0.0) - v.first().copied().unwrap_or(0.0);
    let moved = grew(stack("energy_charged_kwh")) + grew(stack("energy_discharged_kwh"));
    eprintln!("the stack's meters moved {moved} kWh across the three runs");
    assert!(moved > 0.0, "the meters never moved");
    let _ = std::fs::remove_dir_all(&dir);
}
