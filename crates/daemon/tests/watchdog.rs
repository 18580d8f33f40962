//! The service manager's watchdog is fed by the safety loop alone (issue 10 item 9): a loop that
//! stops deciding stops feeding it, so systemd restarts the process.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use daemon::runtime::{Daemon, Hooks};

fn wait_for(what: &str, limit: Duration, ok: impl Fn() -> bool) {
    let started = Instant::now();
    while !ok() {
        assert!(started.elapsed() < limit, "{what} did not happen within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_stalled_safety_loop_stops_feeding_the_watchdog() {
    let dir = std::env::temp_dir().join(format!("p2p-watchdog-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let toml = format!(
        "[pylon]\nlink = \"tcp://127.0.0.1:1\"\n\n[[pack]]\nlink = \"tcp://127.0.0.1:2\"\n\n[state]\nstate_file = \"{0}/s.json\"\nevent_log = \"{0}/e.jsonl\"\n",
        dir.display()
    );
    let fed = Arc::new(AtomicU64::new(0));
    let counter = fed.clone();
    let hooks = Hooks {
        decided: Some(Box::new(move || {
            counter.fetch_add(1, Ordering::Relaxed);
        })),
        ..Hooks::default()
    };
    let d = Daemon::start_with(daemon::Config::parse(&toml, "t").unwrap(), hooks).unwrap();
    wait_for("a first decision", Duration::from_secs(5), || fed.load(Ordering::Relaxed) > 0);
    d.handle().freeze_safety_loop(true);
    std::thread::sleep(Duration::from_millis(500)); // a cycle under way finishes
    let frozen = fed.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(fed.load(Ordering::Relaxed), frozen, "fed while the loop was not deciding");
    d.handle().freeze_safety_loop(false);
    wait_for("feeding again", Duration::from_secs(5), || fed.load(Ordering::Relaxed) > frozen);
    d.stop();
}
