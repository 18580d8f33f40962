//! Daemon measurements that a criterion loop cannot make: reply latency over a pseudo-terminal,
//! the poll cycle of twelve packs against the wire-time limit, and time-to-safe. Run by
//! `cargo xtask bench`, which prints the figures; each line of output here is one JSON object.
//!
//! The plant is the simulator over loopback TCP, pacing every exchange at 9600 baud (the request's
//! and the reply's bytes) with no think time, so what is measured beyond the wire is ours.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark fails loudly

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use daemon::runtime::Daemon;
use pylon_proto::{Command, ManagementFlags, Request};
use serde_json::json;
use serialport::{SerialPort, TTYPort};
use sim::server::{Options, Sim, lock};

const BAUD: u32 = 9600;

use test_support::plant;

/// The plant paced at 9600 baud with no think time, the simulated inverter polling every
/// `inverter_polls`, and the daemon; `pylon` is the daemon's responder link when not the sim's port.
fn start(packs: usize, pylon: Option<String>, inverter_polls: Duration, tag: &str) -> (Sim, Daemon) {
    let options =
        Options { baud: BAUD, reply_delay: Duration::ZERO, poll_every: inverter_polls, ..Options::default() };
    plant::start_with(packs, pylon.as_deref(), options, &plant::state_dir(&format!("bench-{tag}")))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Pylontech reply latency: from the request's last byte written into the pty to the reply's
/// first byte read back, with the daemon polling twelve packs meanwhile.
fn reply_latency() {
    let (mut master, slave) = TTYPort::pair().expect("a pseudo-terminal pair");
    let path = slave.name().expect("the pty's name");
    drop(slave);
    let (sim, daemon) =
        start(12, Some(format!("serial://{path}?baud={BAUD}")), Duration::from_secs(1), "latency");
    master.set_timeout(Duration::from_secs(2)).unwrap();
    std::thread::sleep(Duration::from_secs(3)); // packs read, snapshot built
    let commands = [
        Command::SystemAnalog,
        Command::SystemManagement,
        Command::Analog { command: 0xFF },
        Command::SystemParameters,
    ];
    let mut samples = Vec::new();
    let mut byte = [0u8; 1];
    for i in 0..2000 {
        let mut frame = Vec::new();
        Request { adr: 2, command: commands[i % commands.len()] }.emit(&mut frame).unwrap();
        master.write_all(&frame).unwrap();
        master.flush().unwrap();
        let sent = Instant::now();
        master.read_exact(&mut byte).unwrap();
        samples.push(sent.elapsed());
        assert_eq!(byte[0], b'~', "the reply starts with SOI");
        while byte[0] != b'\r' {
            master.read_exact(&mut byte).unwrap();
        }
    }
    daemon.stop();
    sim.stop();
    samples.sort();
    println!(
        "{}",
        json!({"bench": "pylon reply latency over a pty", "samples": samples.len(),
               "p50_ms": ms(percentile(&samples, 0.5)), "p99_ms": ms(percentile(&samples, 0.99)),
               "max_ms": ms(*samples.last().unwrap()), "goal": "p99 < 2 ms"})
    );
}

/// One poll cycle (0x42 + 0x44) of twelve packs on their own lines, against the time the bytes
/// alone need at 9600 baud.
fn poll_cycle() {
    let (sim, daemon) = start(12, None, Duration::from_secs(1), "cycle");
    std::thread::sleep(Duration::from_secs(3));
    let mut worst = Vec::new();
    let mut wire = Duration::ZERO;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_secs(1));
        let mut cycle = Duration::ZERO;
        for pack in &daemon.handle().published().packs {
            let c = pack.cycle.expect("every pack polled");
            cycle = cycle.max(c.took);
            wire = wire.max(c.wire_time(BAUD));
        }
        worst.push(cycle);
    }
    daemon.stop();
    sim.stop();
    worst.sort();
    let p50 = percentile(&worst, 0.5);
    println!(
        "{}",
        json!({"bench": "poll cycle of 12 packs at 9600 baud", "samples": worst.len(),
               "wire_ms": ms(wire), "p50_ms": ms(p50), "max_ms": ms(*worst.last().unwrap()),
               "ratio": ms(p50) / ms(wire), "goal": "within 1.2x of the wire time"})
    );
}

/// From the fault appearing in the plant to the inverter's 0x63 saying both directions are off.
/// The simulated inverter asks every 50 ms here, so the figure is the daemon's plus at most one
/// 0x61/0x63 round (about 0.15 s at 9600 baud); the fault itself waits up to one pack poll period
/// (1 s) to be read, which SAFETY.md's target includes.
fn time_to_safe(kind: &str, command: &str) {
    let mut samples = Vec::new();
    for run in 0..5 {
        let (sim, daemon) = start(4, None, Duration::from_millis(50), &format!("safe-{run}"));
        let enabled = ManagementFlags::CHARGE_ENABLE | ManagementFlags::DISCHARGE_ENABLE;
        let ready = Instant::now();
        while !lock(&sim.plant()).inverter.bms.is_some_and(|m| m.flags.contains(enabled)) {
            assert!(ready.elapsed() < Duration::from_secs(20), "never enabled");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(330 * run)); // other phases of the pack poll
        sim.command(command).unwrap();
        let started = Instant::now();
        while lock(&sim.plant()).inverter.bms.is_some_and(|m| m.flags.intersects(enabled)) {
            assert!(started.elapsed() < Duration::from_secs(30), "never made safe");
            std::thread::sleep(Duration::from_millis(5));
        }
        samples.push(started.elapsed());
        daemon.stop();
        sim.stop();
    }
    samples.sort();
    println!(
        "{}",
        json!({"bench": format!("time-to-safe, {kind}"), "samples": samples.len(),
               "p50_ms": ms(percentile(&samples, 0.5)), "max_ms": ms(*samples.last().unwrap()),
               "goal": if kind == "reported fault" { "<= poll period + 0.5 s = 1.5 s" } else { "<= stale_after + 0.5 s = 5.5 s" }})
    );
}

fn main() {
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |name: &str| only.as_deref().is_none_or(|o| name.contains(o));
    if wanted("latency") {
        reply_latency();
    }
    if wanted("cycle") {
        poll_cycle();
    }
    if wanted("safe") {
        time_to_safe("reported fault", "fault pack 1 overtemp");
        time_to_safe("silent pack", "silence pack 2");
    }
}
