//! `pace2pylon run --config FILE` as installed: against `pace2pylon sim` on its printed ports, with
//! `[http]` and `[mqtt]` in the file, through a real mosquitto; then SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use test_support::process::{Guard, broker, free_port, sim_printing_config, tool};

const BIN: &str = env!("CARGO_BIN_EXE_pace2pylon");

fn http(port: u16, method: &str, path: &str, extra: &str, body: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn retained(port: u16, topic: &str) -> String {
    let out = Command::new(tool("mosquitto_sub"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", topic, "--retained-only", "-W", "2"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn run_serves_the_web_ui_and_publishes_to_mqtt_as_its_config_says() {
    let (_sim, mut config, _out) = sim_printing_config(env!("CARGO_BIN_EXE_pace2pylon"), 2);
    let (_broker, mqtt_port) = broker();
    let http_port = free_port();
    let dir = std::env::temp_dir().join(format!("p2p-run-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    config += &format!(
        "\n[state]\nstate_file = \"{0}/state.json\"\nevent_log = \"{0}/events.jsonl\"\n\n\
         [http]\nlisten = \"127.0.0.1:{http_port}\"\ntoken = \"run-cli-token-1234\"\n\n\
         [mqtt]\nurl = \"mqtt://127.0.0.1:{mqtt_port}\"\ntopic_prefix = \"p2ptest\"\nclient_id = \"p2ptest\"\n",
        dir.display()
    );
    let path = dir.join("run.toml");
    std::fs::write(&path, &config).unwrap();
    let checked = Command::new(BIN).arg("check-config").arg(&path).output().unwrap();
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stderr));

    let mut run = Guard(
        Command::new(BIN)
            .arg("run")
            .arg("--config")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    loop {
        let ok = std::net::TcpStream::connect(("127.0.0.1", http_port)).is_ok()
            && http(http_port, "GET", "/healthz", "", "").starts_with("HTTP/1.1 200");
        if ok {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "run never became healthy");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The status is the last safety-loop cycle's view: the packs' cells appear with the first
    // cycle after their first poll.
    let status = loop {
        let status = http(http_port, "GET", "/api/v1/status", "", "");
        if status.contains("\"number\":2") && status.contains("\"cells_mv\":[3") {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no cells in the status: {status}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.contains("\"charge_alarm_a\""), "{status}");
    let refused = http(http_port, "POST", "/api/v1/control", "", r#"{"action":"force_disable"}"#);
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    let done = http(
        http_port,
        "POST",
        "/api/v1/control",
        "Authorization: Bearer run-cli-token-1234\r\n",
        r#"{"action":"force_disable"}"#,
    );
    assert!(done.starts_with("HTTP/1.1 200"), "{done}");

    let started = Instant::now();
    while retained(mqtt_port, "p2ptest/availability") != "online"
        || retained(mqtt_port, "homeassistant/sensor/p2ptest/pack2_voltage/config").is_empty()
    {
        assert!(started.elapsed() < Duration::from_secs(20), "no MQTT discovery from run");
    }

    let _ = Command::new("kill").args(["-TERM", &run.0.id().to_string()]).status();
    assert!(run.0.wait().unwrap().success());
    assert_eq!(retained(mqtt_port, "p2ptest/availability"), "offline");
    let state = std::fs::read_to_string(dir.join("state.json")).unwrap();
    assert!(state.contains("\"forced_disable\": true"), "the order was saved: {state}");
}
