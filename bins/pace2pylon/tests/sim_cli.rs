//! `pace2pylon sim` as a user runs it: ports, --print-config, commands on standard input, SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};

use test_support::process::{printed_config, sim_printing_config, wait_for_port};

const BIN: &str = env!("CARGO_BIN_EXE_pace2pylon");

/// A base port with P..P+2 and P+100..P+102 free (checked by binding them briefly).
fn free_base() -> u16 {
    for _ in 0..50 {
        let p = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if p > 60000 {
            continue;
        }
        let ports = [p, p + 1, p + 100, p + 101, p + 102];
        if ports.iter().all(|q| TcpListener::bind(("127.0.0.1", *q)).is_ok()) {
            return p;
        }
    }
    panic!("no free ports");
}

#[test]
fn sim_serves_prints_its_config_answers_commands_and_stops_on_sigterm() {
    let base = free_base();
    let mut child = Command::new(BIN)
        .args(["sim", "--packs", "2", "--base-port", &base.to_string(), "--speed", "10", "--print-config"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_port(base, "the simulator");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    // The configuration comes first on standard output.
    let config = printed_config(&mut stdout);
    assert!(config.contains(&format!("[pylon]\n# The simulated inverter polls whoever connects to its BMS port.\nlink = \"tcp://127.0.0.1:{}\"", base + 102)), "{config}");
    assert_eq!(config.matches("[[pack]]").count(), 2);
    assert!(config.contains(&format!("link = \"tcp://127.0.0.1:{}\"", base + 1)));
    assert!(config.contains(&format!("[coil]\nlink = \"tcp://127.0.0.1:{}\"", base + 100)));

    let mut answer = |cmd: &str| {
        writeln!(stdin, "{cmd}").unwrap();
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        line.trim().to_owned()
    };
    assert_eq!(answer("fault pack 1 overtemp"), "ok");
    assert_eq!(answer("silence pack 2"), "ok");
    assert_eq!(answer("fault pack 9 overtemp"), "error: no pack 9: packs are numbered 1 to 2");
    assert!(answer("jump").starts_with("error: unknown command 'jump'"));

    // A busy port is refused with the port named.
    let other =
        Command::new(BIN).args(["sim", "--packs", "1", "--base-port", &base.to_string()]).output().unwrap();
    assert_eq!(other.status.code(), Some(1));
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(err.contains(&format!("tcp-listen://127.0.0.1:{base}: cannot open")), "{err}");

    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn base_port_zero_gives_every_line_its_own_free_port_and_prints_it() {
    let (_sim, config, _out) = sim_printing_config(env!("CARGO_BIN_EXE_pace2pylon"), 2);
    let ports: Vec<u16> = config
        .lines()
        .filter_map(|l| l.strip_prefix("link = \"tcp://127.0.0.1:"))
        .map(|p| p.trim_end_matches('"').parse().unwrap())
        .collect();
    assert_eq!(ports.len(), 5, "two packs, the coil, the inverter and its BMS port: {config}");
    let mut unique = ports.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 5, "{ports:?}");
    for port in &ports {
        assert!(*port >= 1024, "{ports:?}");
        TcpStream::connect(("127.0.0.1", *port)).unwrap_or_else(|e| panic!("port {port} is not served: {e}"));
    }
}
