//! The state file and event log after a crash (issue 10 item 3): a torn last line of the event
//! log is ended before anything is appended, a leftover `state.json.tmp` is removed, and every
//! line the daemon writes is one JSON object. And start-up fails loudly (item 4): a Pylontech
//! port that cannot be listened on is an error from `Daemon::start` naming it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use daemon::runtime::Daemon;

fn config(dir: &std::path::Path, pylon: &str) -> daemon::Config {
    let toml = format!(
        "[pylon]\nlink = \"{pylon}\"\n\n[[pack]]\nlink = \"tcp://127.0.0.1:2\"\n\n[state]\nstate_file = \"{0}/state.json\"\nevent_log = \"{0}/events.jsonl\"\n",
        dir.display()
    );
    daemon::Config::parse(&toml, "t").unwrap()
}

fn fresh(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("p2p-writer-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_torn_event_log_line_is_ended_and_a_leftover_temp_state_is_removed() {
    let dir = fresh("torn");
    let torn = "{\"time\":\"2026-11-30T23:59:59Z\",\"event\":\"charge ena";
    std::fs::write(dir.join("events.jsonl"), format!("{{\"time\":\"t\",\"event\":\"before\"}}\n{torn}"))
        .unwrap();
    std::fs::write(dir.join("state.json.tmp"), "{\"half\":").unwrap();
    let d = Daemon::start(config(&dir, "tcp://127.0.0.1:1")).unwrap();
    assert!(!dir.join("state.json.tmp").exists(), "the leftover temp state is still there");
    d.control(&daemon::control::Control::ForceDisable).unwrap();
    d.stop();
    let log = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines[1], torn, "{log}");
    assert!(lines.len() >= 4, "{log}");
    for line in &lines[2..] {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    assert!(log.ends_with('\n'));
    assert!(lines.iter().any(|l| l.contains("pace2pylon stopped")), "{log}");
    let state = std::fs::read_to_string(dir.join("state.json")).unwrap();
    assert!(state.contains("\"forced_disable\": true"), "{state}");
}

#[test]
fn a_pylontech_port_that_cannot_be_listened_on_stops_start_up_naming_it() {
    let dir = fresh("bind");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("tcp-listen://{}", taken.local_addr().unwrap());
    let e = Daemon::start(config(&dir, &url)).unwrap_err().to_string();
    assert!(e.contains(&url), "{e}");
}
