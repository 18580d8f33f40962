//! `GET /api/v1/history` over real HTTP, against the daemon polling the simulated plant, with a
//! history file from before the start: read back (bad lines passed over), served by hours, cut
//! back to 48 hours, and a live minute appended to it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;
use sim::server::Options as SimOptions;
use test_support::{history, plant};

fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}")))
}

#[test]
fn the_history_survives_a_restart_is_served_by_hours_and_grows_each_minute() {
    let dir = plant::state_dir("web-history");
    let now = jiff::Timestamp::now().as_second();
    // Fifty hours up to the last whole minute, a line of garbage in the middle and a torn last
    // line (a crash mid-write).
    let samples = history::days(now, 50, 2);
    history::write(&dir.join("history.jsonl"), &samples);
    let mut text = std::fs::read_to_string(dir.join("history.jsonl")).unwrap();
    let middle = text.len() / 2;
    let cut = text[middle..].find('\n').unwrap() + middle + 1;
    text.insert_str(cut, "this is not a sample\n");
    text += "{\"time\":\"2026-";
    std::fs::write(dir.join("history.jsonl"), text).unwrap();

    let (_sim, daemon) = plant::start_with(
        2,
        None,
        SimOptions { poll_every: Duration::from_millis(200), ..SimOptions::default() },
        &dir,
    );
    let web =
        web::Web::start(daemon.handle(), web::Options { listen: "127.0.0.1:0".into(), token: None }).unwrap();
    let addr = web.local_addr();

    let (status, h) = get(addr, "/api/v1/history?hours=6");
    assert_eq!(status, 200, "{h}");
    assert_eq!((h["interval_s"].as_i64(), h["hours"].as_i64()), (Some(60), Some(6)));
    let six = h["samples"].as_array().unwrap();
    // 360 minutes but the half hour the made-up daemon was down, give or take the minute now.
    assert!((329..=330).contains(&six.len()), "{}", six.len());
    let last = six.last().unwrap();
    assert_eq!(last, &serde_json::to_value(samples.last().unwrap()).unwrap());
    for key in [
        "time",
        "soc_pct",
        "voltage_mv",
        "current_ma",
        "power_w",
        "cell_min_mv",
        "cell_max_mv",
        "charge_enabled",
        "discharge_enabled",
        "charge_limit_ma",
        "discharge_limit_ma",
        "reasons",
        "packs",
    ] {
        assert!(last.get(key).is_some(), "{key} missing: {last}");
    }
    let times: Vec<&str> = six.iter().map(|s| s["time"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "in order");
    assert!(six.iter().any(|s| s["charge_enabled"] == false && s["reasons"][0].is_string()));

    let (_, day) = get(addr, "/api/v1/history");
    assert_eq!(day["hours"], 24, "24 hours unless asked");
    let (_, all) = get(addr, "/api/v1/history?hours=48");
    let all = all["samples"].as_array().unwrap().len();
    assert!((2849..=2850).contains(&all), "48 hours kept of the 50 in the file: {all}");
    for bad in ["hours=0", "hours=49", "hours=two", "hours=", "days=2", "hours=6&x"] {
        let (status, e) = get(addr, &format!("/api/v1/history?{bad}"));
        assert_eq!(status, 400, "{bad}: {e}");
        assert!(e["error"].as_str().unwrap().contains("hours"), "{bad}: {e}");
    }

    // The file was cut back to those 48 hours at start, the garbage and the torn line gone.
    let kept = std::fs::read_to_string(dir.join("history.jsonl")).unwrap();
    let lines = kept.lines().count();
    assert!((2849..=2880).contains(&lines), "{lines}");
    assert!(kept.lines().all(|l| serde_json::from_str::<daemon::history::Sample>(l).is_ok()));

    // A live minute: sampled from the running daemon and appended. (The minute the daemon started
    // in may close before the packs were first read, without stack figures: the next one has them.)
    let started = Instant::now();
    let newest = loop {
        let (_, h) = get(addr, "/api/v1/history?hours=1");
        let newest = h["samples"].as_array().unwrap().last().cloned().unwrap();
        if newest["time"].as_str() > Some(samples.last().unwrap().time.as_str())
            && newest["voltage_mv"].is_u64()
        {
            break newest;
        }
        assert!(started.elapsed() < Duration::from_secs(150), "no new minute: {newest}");
        std::thread::sleep(Duration::from_millis(500));
    };
    let packs = newest["packs"].as_array().unwrap();
    assert_eq!(packs.len(), 2, "{newest}");
    assert!(newest["voltage_mv"].as_u64().unwrap() > 20_000, "{newest}");
    // The writer thread appends it soon after.
    let started = Instant::now();
    loop {
        let appended = std::fs::read_to_string(dir.join("history.jsonl")).unwrap();
        let last: Value = serde_json::from_str(appended.lines().last().unwrap()).unwrap();
        if last == newest {
            assert!(appended.lines().count() > lines);
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "not appended: {last} vs {newest}");
        std::thread::sleep(Duration::from_millis(100));
    }
    web.stop();
    daemon.stop();
}
