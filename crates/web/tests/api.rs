//! The API over real HTTP on 127.0.0.1, against the daemon polling the simulated plant: every
//! endpoint, control refused and accepted, bad requests; and what the simulated inverter is told
//! after an order.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use test_support::plant;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use pylon_proto::ManagementFlags;
use serde_json::Value;
use sim::server::{Options as SimOptions, Sim, lock};

const TOKEN: &str = "test-token-0123456789";

struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// One request on its own connection, as curl would send it.
fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    if !body.is_empty() || method == "POST" {
        req += &format!("Content-Length: {}\r\n", body.len());
    }
    req += "\r\n";
    s.write_all(req.as_bytes()).unwrap();
    // A refused oversized body may be cut off by the server: that is fine.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete response");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    Answer { status, head, body: raw[split + 4..].to_vec() }
}

fn post(addr: SocketAddr, token: Option<&str>, body: &str) -> Answer {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    http(addr, "POST", "/api/v1/control", &headers, body.as_bytes())
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "{what} did not happen within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn inverter_told(sim: &Sim) -> Option<pylon_proto::Management> {
    lock(&sim.plant()).inverter.bms
}

#[test]
fn every_endpoint_over_real_http() {
    let dir = plant::state_dir("web-api");
    let (sim, daemon) = plant::start_with(
        2,
        None,
        SimOptions { poll_every: Duration::from_millis(200), ..SimOptions::default() },
        &dir,
    );
    let web = web::Web::start(
        daemon.handle(),
        web::Options { listen: "127.0.0.1:0".into(), token: Some(TOKEN.into()) },
    )
    .unwrap();
    let addr = web.local_addr();
    assert_ne!(addr.port(), 0, "port 0 was resolved to the real port");

    // Health and status once the daemon decided.
    wait_for("a healthy daemon", Duration::from_secs(10), || {
        http(addr, "GET", "/healthz", &[], b"").status == 200
    });
    wait_for("both directions enabled", Duration::from_secs(10), || {
        http(addr, "GET", "/api/v1/status", &[], b"").json()["charge_enabled"] == true
    });
    let a = http(addr, "GET", "/api/v1/status", &[], b"");
    assert_eq!(a.status, 200);
    assert_eq!(a.header("Content-Type").as_deref(), Some("application/json"));
    let s = a.json();
    let packs = s["packs"].as_array().unwrap();
    assert_eq!(packs.len(), 2);
    for (k, p) in packs.iter().enumerate() {
        assert_eq!(p["number"], k + 1);
        assert_eq!(p["cells_mv"].as_array().unwrap().len(), 8, "{p}");
        assert!(
            p["cells_mv"].as_array().unwrap().iter().all(|c| (2500..3700).contains(&c.as_u64().unwrap()))
        );
        assert_eq!(p["temps_dc"].as_array().unwrap().len(), 6);
        assert_eq!(p["stale"], false);
        assert!(p["age_ms"].as_u64().unwrap() < 5000);
        assert!(p["flags"]["system"].as_array().unwrap().iter().any(|f| f == "charge_mosfet_on"), "{p}");
        assert!(p["link_stats"]["frames"].as_u64().unwrap() > 0);
    }
    assert_eq!(s["reasons"], Value::Array(vec![]));
    assert_eq!(s["stack"]["charge_voltage_mv"], 27350);
    assert!(s["coil"]["soc_pct"].is_u64() && s["inverter"]["pv_power_w"].is_i64(), "{s}");
    assert_eq!(s["rebalance"]["step"], "idle");
    wait_for("the simulated inverter answered", Duration::from_secs(10), || {
        http(addr, "GET", "/api/v1/status", &[], b"").json()["pylon"]["replies"].as_u64().unwrap() > 0
    });

    // The page and its assets come from the binary; nothing else is served.
    let page = http(addr, "GET", "/", &[], b"");
    assert_eq!(page.status, 200);
    assert!(page.header("Content-Type").unwrap().starts_with("text/html"));
    let html = String::from_utf8(page.body.clone()).unwrap();
    assert!(
        html.contains("<script src=\"/app.js\"") && !html.contains("http://") && !html.contains("https://")
    );
    assert!(page.header("Content-Security-Policy").unwrap().contains("default-src 'self'"));
    assert_eq!(http(addr, "GET", "/app.js", &[], b"").status, 200);
    assert_eq!(http(addr, "GET", "/app.css", &[], b"").status, 200);
    for path in ["/../../etc/passwd", "/assets/app.js", "/nope"] {
        let a = http(addr, "GET", path, &[], b"");
        assert_eq!(a.status, 404, "{path}");
        assert!(a.json()["error"].as_str().unwrap().contains("no such page"));
    }
    let a = http(addr, "PUT", "/api/v1/status", &[], b"{}");
    assert_eq!(a.status, 405);
    assert_eq!(a.header("Allow").as_deref(), Some("GET, HEAD"));
    assert_eq!(http(addr, "GET", "/api/v1/control", &[], b"").status, 405);

    // Metrics: the text format, one HELP and TYPE per family, before its samples.
    let a = http(addr, "GET", "/metrics", &[], b"");
    assert_eq!(a.status, 200);
    assert!(a.header("Content-Type").unwrap().starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(a.body).unwrap();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap();
            assert!(typed.insert(name.to_owned()), "{name} typed twice");
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        value.parse::<f64>().unwrap_or_else(|_| panic!("bad value in {line}"));
        let name = series.split('{').next().unwrap();
        let family = name.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count");
        assert!(typed.contains(name) || typed.contains(family), "{name} has no TYPE before it");
    }
    for needle in [
        "pace2pylon_charge_enabled 1",
        "pace2pylon_pack_cell_voltage_volts{pack=\"2\",cell=\"8\"} 3.",
        "pace2pylon_pack_temperature_celsius{pack=\"1\",sensor=\"mosfet\"}",
        "pace2pylon_reason_active{reason=\"pack_stale\"} 0",
        "pace2pylon_link_frames_total{link=\"pack1\"}",
        "pace2pylon_link_timeouts_total{link=\"coil\"}",
        "pace2pylon_pylon_reply_latency_seconds_bucket{le=\"+Inf\"}",
        "pace2pylon_inverter_pv_power_watts",
        "pace2pylon_rebalance_step{step=\"idle\"} 1",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}");
    }

    // Events.
    let a = http(addr, "GET", "/api/v1/events?limit=2", &[], b"");
    assert_eq!(a.status, 200);
    let events = a.json()["events"].as_array().unwrap().clone();
    assert!(!events.is_empty() && events.len() <= 2);
    assert!(events.iter().all(|e| e["time"].is_string() && e["event"].is_string()));
    for bad in ["/api/v1/events?limit=0", "/api/v1/events?limit=x", "/api/v1/events?since=1"] {
        let a = http(addr, "GET", bad, &[], b"");
        assert_eq!(a.status, 400, "{bad}");
        assert!(a.json()["error"].is_string());
    }
    // A 5000-digit limit is named, not echoed whole.
    let long = format!("/api/v1/events?limit={}", "9".repeat(5000));
    let a = http(addr, "GET", &long, &[], b"");
    assert_eq!(a.status, 400);
    assert!(a.json()["error"].as_str().unwrap().len() < 200, "{:?}", a.json());

    // Control: refused without the token, with a wrong one, for bad bodies.
    let a = post(addr, None, r#"{"action":"force_disable"}"#);
    assert_eq!(a.status, 401);
    assert!(a.json()["error"].as_str().unwrap().contains("Authorization: Bearer"));
    assert_eq!(post(addr, Some("wrong-token-0123456789"), r#"{"action":"force_disable"}"#).status, 401);
    let a = post(addr, Some(TOKEN), "{not json");
    assert_eq!(a.status, 400);
    assert!(a.json()["error"].as_str().unwrap().contains("not JSON"));
    let a = post(addr, Some(TOKEN), r#"{"action":"self_destruct"}"#);
    assert_eq!(a.status, 400);
    assert!(a.json()["error"].as_str().unwrap().contains("force_disable, release_force_disable"));
    assert_eq!(post(addr, Some(TOKEN), r#"{"verb":"force_disable"}"#).status, 400);
    assert_eq!(post(addr, Some(TOKEN), r#"{"action":"force_disable","extra":1}"#).status, 400);
    let big = format!(r#"{{"action":"force_disable","pad":"{}"}}"#, "x".repeat(70 * 1024));
    assert_eq!(post(addr, Some(TOKEN), &big).status, 413);
    assert_eq!(post(addr, Some(TOKEN), r#"{"action":"rebalance_cancel"}"#).status, 409, "nothing to cancel");
    assert_eq!(
        inverter_told(&sim).unwrap().flags & ManagementFlags::CHARGE_ENABLE,
        ManagementFlags::CHARGE_ENABLE
    );
    assert_eq!(
        lock(&sim.plant()).inverter.bms.as_ref().map(|m| m.charge_voltage.raw()),
        Some(27350),
        "nothing changed by the refused orders"
    );

    // Accepted orders reach the inverter on the wire.
    let a = post(addr, Some(TOKEN), r#"{"action":"force_disable"}"#);
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    wait_for("the inverter told to stop both", Duration::from_secs(5), || {
        inverter_told(&sim).is_some_and(|m| {
            m.flags
                .intersection(ManagementFlags::CHARGE_ENABLE | ManagementFlags::DISCHARGE_ENABLE)
                .is_empty()
        })
    });
    let s = http(addr, "GET", "/api/v1/status", &[], b"").json();
    assert_eq!(s["overrides"]["forced_disable"], true);
    assert!(s["reasons"].as_array().unwrap().iter().any(|r| r["code"] == "forced_disable" && r["rule"] == 1));
    assert_eq!(post(addr, Some(TOKEN), r#"{"action":"release_force_disable"}"#).status, 200);
    wait_for("both enabled again", Duration::from_secs(5), || {
        inverter_told(&sim).is_some_and(|m| {
            m.flags.contains(ManagementFlags::CHARGE_ENABLE | ManagementFlags::DISCHARGE_ENABLE)
        })
    });

    let a = post(addr, Some(TOKEN), r#"{"action":"set_charge_voltage","charge_voltage_mv":26000}"#);
    assert_eq!(a.status, 400);
    assert!(a.json()["error"].as_str().unwrap().contains("above 27000"));
    assert_eq!(
        post(addr, Some(TOKEN), r#"{"action":"set_charge_voltage","charge_voltage_mv":27200}"#).status,
        200
    );
    wait_for("the inverter told 27.2 V", Duration::from_secs(5), || {
        inverter_told(&sim).is_some_and(|m| m.charge_voltage.raw() == 27200)
    });
    assert_eq!(
        post(addr, Some(TOKEN), r#"{"action":"set_charge_voltage","charge_voltage_mv":null}"#).status,
        200
    );
    wait_for("back to 27.35 V", Duration::from_secs(5), || {
        inverter_told(&sim).is_some_and(|m| m.charge_voltage.raw() == 27350)
    });

    let a = post(addr, Some(TOKEN), r#"{"action":"force_charging_priority","priority":"solar"}"#);
    assert_eq!(a.status, 400);
    assert!(a.json()["error"].as_str().unwrap().contains("pv_utility"));
    assert_eq!(
        post(addr, Some(TOKEN), r#"{"action":"force_charging_priority","priority":"pv_utility"}"#).status,
        200
    );
    wait_for("register 331 = 2 on the inverter", Duration::from_secs(8), || {
        lock(&sim.plant()).inverter.registers.get(331) == 2
    });
    assert_eq!(post(addr, Some(TOKEN), r#"{"action":"reset_charging_priority"}"#).status, 200);
    wait_for("register 331 back to 3 (PV only)", Duration::from_secs(8), || {
        lock(&sim.plant()).inverter.registers.get(331) == 3
    });
    wait_for("the status to show pv_only", Duration::from_secs(5), || {
        http(addr, "GET", "/api/v1/status", &[], b"").json()["inverter"]["charging_priority_name"]
            == "pv_only"
    });

    // The orders are in the event log.
    let events = http(addr, "GET", "/api/v1/events?limit=1000", &[], b"").json();
    let text = events.to_string();
    assert!(
        text.contains("forced_disable: true") && text.contains("charging priority forced to pv_utility"),
        "{text}"
    );

    web.stop();
    daemon.stop();
    sim.stop();
}

#[test]
fn without_a_token_control_is_refused_and_says_how_to_enable_it() {
    let dir = plant::state_dir("web-no-token");
    let (sim, daemon) = plant::start_with(1, None, SimOptions::default(), &dir);
    let web =
        web::Web::start(daemon.handle(), web::Options { listen: "127.0.0.1:0".into(), token: None }).unwrap();
    let a = post(web.local_addr(), Some("anything-at-all"), r#"{"action":"force_disable"}"#);
    assert_eq!(a.status, 403);
    assert!(a.json()["error"].as_str().unwrap().contains("[http] token"));
    assert!(!daemon.handle().status().overrides.forced_disable);
    web.stop();
    daemon.stop();
    sim.stop();
}

#[test]
fn a_busy_port_is_a_clear_error() {
    let dir = plant::state_dir("web-busy");
    let (sim, daemon) = plant::start_with(1, None, SimOptions::default(), &dir);
    let first =
        web::Web::start(daemon.handle(), web::Options { listen: "127.0.0.1:0".into(), token: None }).unwrap();
    let taken = first.local_addr().to_string();
    let e =
        web::Web::start(daemon.handle(), web::Options { listen: taken.clone(), token: None }).unwrap_err();
    assert!(e.to_string().contains(&taken), "{e}");
    first.stop();
    daemon.stop();
    sim.stop();
}
