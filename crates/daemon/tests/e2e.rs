//! The daemon against the simulated plant over real TCP, as a real installation is wired: the
//! simulated inverter polls the daemon's Pylontech responder, and what it is told is asserted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::time::{Duration, Instant};

use daemon::Config;
use daemon::runtime::Daemon;
use link::Link;
use pylon_proto::ManagementFlags;
use sim::server::{Options, Sim, lock};

use plant::{start_with, state_dir};
use test_support::plant;

fn start(packs: usize) -> (Sim, Daemon) {
    start_in(packs, &state_dir(&format!("{packs}-{:?}", std::thread::current().id())))
}

fn start_in(packs: usize, dir: &std::path::Path) -> (Sim, Daemon) {
    start_with(packs, None, Options::default(), dir)
}

/// Waits until the simulated inverter's last 0x63 satisfies `f`; returns how long it took.
fn until(sim: &Sim, limit: Duration, f: impl Fn(ManagementFlags) -> bool) -> Duration {
    let started = Instant::now();
    loop {
        if lock(&sim.plant()).inverter.bms.is_some_and(|m| f(m.flags)) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "the inverter was not told in {limit:?}: {:?}",
            lock(&sim.plant()).inverter.bms
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn enabled(f: ManagementFlags) -> bool {
    f.contains(ManagementFlags::CHARGE_ENABLE | ManagementFlags::DISCHARGE_ENABLE)
}

#[test]
fn the_inverter_is_enabled_then_disabled_by_a_reported_fault() {
    let (sim, daemon) = start(2);
    let first = until(&sim, Duration::from_secs(15), enabled);
    eprintln!("first enabled 0x63 after {first:?}");
    // The inverter now follows the BMS: it charges from the PV surplus at 11:00.
    std::thread::sleep(Duration::from_secs(2));
    assert!(lock(&sim.plant()).inverter.limits().from_bms);
    // Each pack's last 0x42 + 0x44 cycle is recorded; the simulator paces it like a 9600 baud wire
    // plus 15 ms of think time per reply, so it can be no shorter than that.
    for pack in &daemon.handle().published().packs {
        let cycle = pack.cycle.expect("a complete poll cycle");
        let wire = cycle.wire_time(9600);
        assert!(cycle.bytes > 200, "0x42 and 0x44 move a few hundred bytes, not {}", cycle.bytes);
        assert!(cycle.took >= wire + Duration::from_millis(30), "{cycle:?} is shorter than the wire allows");
        assert!(cycle.took < wire + Duration::from_millis(500), "{cycle:?} is far slower than the wire");
    }
    sim.command("fault pack 1 overtemp").unwrap();
    let t = until(&sim, Duration::from_secs(5), |f| {
        !f.intersects(ManagementFlags::CHARGE_ENABLE | ManagementFlags::DISCHARGE_ENABLE)
    });
    eprintln!("time to safe for a reported fault, as the inverter saw it: {t:?}");
    // One poll period (1 s) for the daemon, one for the inverter's own poll, plus the loop.
    assert!(t < Duration::from_millis(2800), "{t:?}");
    let reasons = daemon.handle().published().decision.clone().unwrap().reasons;
    assert!(
        reasons.iter().any(|r| matches!(r, maestro_core::Reason::BmsProtection { pack: 1, .. })),
        "{reasons:?}"
    );
    sim.command("clear pack 1").unwrap();
    until(&sim, Duration::from_secs(5), enabled);
    daemon.stop();
    sim.stop();
}

#[test]
fn a_silent_pack_disables_within_stale_after() {
    let (sim, daemon) = start(2);
    until(&sim, Duration::from_secs(15), enabled);
    sim.command("silence pack 2").unwrap();
    let t = until(&sim, Duration::from_secs(10), |f| f.is_empty());
    eprintln!("time to safe for a silent pack, as the inverter saw it: {t:?}");
    // stale_after 5 s + the inverter's poll.
    assert!(t >= Duration::from_secs(4) && t < Duration::from_millis(7500), "{t:?}");
    let events = daemon.handle().recent_events(1000);
    assert!(
        events.iter().any(|e| e.reasons.iter().any(|r| r.contains("pack 2 has not answered recently"))),
        "{events:?}"
    );
    daemon.stop();
    sim.stop();
}

#[test]
fn a_forced_disable_survives_a_restart() {
    let dir = state_dir("restart");
    let (sim, daemon) = start_in(1, &dir);
    until(&sim, Duration::from_secs(15), enabled);
    daemon.set_overrides(daemon::state::Overrides { forced_disable: true, charge_voltage_mv: None }).unwrap();
    until(&sim, Duration::from_secs(5), |f| f.is_empty());
    daemon.stop();
    sim.stop();
    // A new daemon on a new plant, the same state file: still forced off.
    let (sim, daemon) = start_in(1, &dir);
    std::thread::sleep(Duration::from_secs(4));
    let told = lock(&sim.plant()).inverter.bms;
    assert!(told.is_some_and(|m| m.flags.is_empty()), "{told:?}");
    let reasons = daemon.handle().published().decision.clone().unwrap().reasons;
    assert!(reasons.contains(&maestro_core::Reason::ForcedDisable), "{reasons:?}");
    let log = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("charge disabled, discharge disabled")
                && l.contains("forced off by the operator")),
        "{log}"
    );
    daemon.stop();
    sim.stop();
}

#[test]
fn a_corrupt_state_file_stops_start_up() {
    let dir = state_dir("corrupt");
    std::fs::write(dir.join("state.json"), "not json").unwrap();
    let toml = format!(
        "[pylon]\nlink = \"tcp://127.0.0.1:1\"\n[[pack]]\nlink = \"tcp://127.0.0.1:2\"\n[state]\nstate_file = \"{}\"\nevent_log = \"{}\"\n",
        dir.join("state.json").display(),
        dir.join("events.jsonl").display()
    );
    let e = Daemon::start(Config::parse(&toml, "t.toml").unwrap()).unwrap_err().to_string();
    assert!(e.contains("state.json cannot be read") && e.contains("--reset-state"), "{e}");
}

#[test]
fn a_stalled_safety_loop_stops_enabled_replies() {
    let (sim, daemon) = start(1);
    until(&sim, Duration::from_secs(15), enabled);
    daemon.handle().freeze_safety_loop(true);
    let t = until(&sim, Duration::from_secs(8), |f| f.is_empty());
    eprintln!("a stalled safety loop reached the inverter as disabled after {t:?}");
    // decision_max_age 3 s + the inverter's 1 s poll.
    assert!(t < Duration::from_millis(4600), "{t:?}");
    daemon.handle().freeze_safety_loop(false);
    until(&sim, Duration::from_secs(5), enabled);
    daemon.stop();
    sim.stop();
}

#[test]
fn a_panicking_worker_is_restarted() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    let runs = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(daemon::runtime::Stop::new());
    let r = runs.clone();
    let handle = daemon::runtime::supervise("flaky".into(), stop, move || {
        if r.fetch_add(1, Ordering::Relaxed) < 2 {
            panic!("injected");
        }
    })
    .unwrap();
    handle.join().unwrap();
    assert_eq!(runs.load(Ordering::Relaxed), 3, "two panics, two restarts, then a normal end");
}

/// Waits until `f` holds for the plant; returns how long it took.
fn until_plant(sim: &Sim, limit: Duration, what: &str, f: impl Fn(&sim::Plant) -> bool) -> Duration {
    let started = Instant::now();
    loop {
        if f(&lock(&sim.plant())) {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SAFETY.md §2 (v2): the operator's charge-voltage override is suspended while a rebalance is
/// active (one below the threshold would keep the run from ever reaching it) and applies again after.
#[test]
fn a_charge_voltage_override_is_suspended_while_a_rebalance_runs() {
    let dir = state_dir("override-suspended");
    let (sim, daemon) = start_in(2, &dir);
    until(&sim, Duration::from_secs(15), enabled);
    let told = |mv: u16| move |p: &sim::Plant| p.inverter.bms.is_some_and(|m| m.charge_voltage.raw() == mv);
    let set = daemon::control::Control::SetChargeVoltage { charge_voltage_mv: Some(27_500) };
    daemon.handle().control(&set).unwrap();
    until_plant(&sim, Duration::from_secs(5), "the override in 0x63", told(27_500));
    daemon.rebalance_start().unwrap();
    until_plant(&sim, Duration::from_secs(8), "the rebalance voltage, not the override", told(27_950));
    let o = daemon.handle().status().overrides;
    assert_eq!((o.charge_voltage_mv, o.charge_voltage_suspended), (Some(27_500), true));
    daemon.rebalance_cancel().unwrap();
    until_plant(&sim, Duration::from_secs(8), "the override again after the cancel", told(27_500));
    assert!(!daemon.handle().status().overrides.charge_voltage_suspended);
    daemon.stop();
    sim.stop();
}

#[test]
fn a_rebalance_start_and_cancel_reach_the_inverter_and_the_coil() {
    let dir = state_dir("rebalance");
    let (sim, daemon) = start_in(2, &dir);
    until(&sim, Duration::from_secs(15), enabled);
    std::thread::sleep(Duration::from_secs(3)); // the inverter's output priority has been read
    daemon.rebalance_start().unwrap();
    until_plant(&sim, Duration::from_secs(8), "output priority utility first", |p| {
        p.inverter.registers.get(301) == 0
    });
    until_plant(&sim, Duration::from_secs(8), "raised charge voltage in 0x63", |p| {
        p.inverter.bms.is_some_and(|m| m.charge_voltage.raw() == 27950)
    });
    until_plant(&sim, Duration::from_secs(10), "coil at the rebalance capacity", |p| {
        let s = p.coil.registers.settings;
        (s.capacity_mah, s.full_voltage_cv) == (240_000, 2795)
    });
    let saved = std::fs::read_to_string(dir.join("state.json")).unwrap();
    assert!(saved.contains("\"step\": \"running\""), "{saved}");

    daemon.rebalance_cancel().unwrap();
    until_plant(&sim, Duration::from_secs(8), "output priority restored to sbu", |p| {
        p.inverter.registers.get(301) == 2
    });
    until_plant(&sim, Duration::from_secs(8), "charging priority pv only", |p| {
        p.inverter.registers.get(331) == 3
    });
    until_plant(&sim, Duration::from_secs(8), "regular charge voltage", |p| {
        p.inverter.bms.is_some_and(|m| m.charge_voltage.raw() == 27350)
    });
    until_plant(&sim, Duration::from_secs(10), "coil back to its regular capacity", |p| {
        let s = p.coil.registers.settings;
        (s.capacity_mah, s.full_voltage_cv) == (205_000, 2735)
    });
    let saved = std::fs::read_to_string(dir.join("state.json")).unwrap();
    assert!(saved.contains("\"step\": \"idle\"") && saved.contains("\"soc_uncalibrated\": true"), "{saved}");
    // The daemon logs a write once it has read it back, a moment after the device took it.
    let started = Instant::now();
    for needle in [
        "rebalance: Started(Operator)",
        "inverter output priority set to 0 (confirmed)",
        "rebalance: Cancelled",
        "coil capacity 205000 mAh",
    ] {
        loop {
            let log = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
            if log.contains(needle) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(5), "{needle} not in {log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    daemon.stop();
    sim.stop();
}

/// `[pylon] link` as a TCP listener, as `demo --pylon-listen` exposes it: an outside master asks
/// every Pylontech command and gets a well-formed reply (RTN 00) from the right address.
#[test]
fn an_outside_master_gets_an_answer_to_every_command() {
    use pylon_proto::{Command, Dialect, Reply, Request};
    let dir = state_dir("outside-master");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let pylon = format!("tcp-listen://127.0.0.1:{port}");
    let (sim, daemon) = start_with(2, Some(&pylon), Options::default(), &dir);
    let mut master = Link::open(&format!("tcp://127.0.0.1:{port}")).unwrap();
    let ask = |master: &mut Link, adr: u8, command: Command| {
        let mut frame = Vec::new();
        Request { adr, command }.emit(&mut frame).unwrap();
        let bytes = master.request(&frame, &mut link::AsciiDeframer::new(), Duration::from_secs(1))?;
        Ok::<_, link::Error>(Reply::parse(command.cid2(), &bytes, Dialect::default()).unwrap())
    };
    // Silent until the first complete snapshot; then it answers.
    let started = Instant::now();
    while ask(&mut master, 2, Command::SystemManagement).is_err() {
        assert!(started.elapsed() < Duration::from_secs(15), "the responder never answered");
    }
    let system = [
        Command::ProtocolVersion,
        Command::ManufacturerInfo,
        Command::SystemInfo,
        Command::SystemAnalog,
        Command::SystemAlarm,
        Command::SystemManagement,
        Command::SystemParameters,
        Command::Analog { command: 0xFF },
        Command::Alarm { command: 0xFF },
    ];
    for command in system {
        let reply = ask(&mut master, 2, command).unwrap();
        assert_eq!(reply.adr, 2, "{command:?}");
        assert!(reply.outcome.is_ok(), "{command:?}: {:?}", reply.outcome);
    }
    // Pack i answers per-module commands at address 2 + i - 1.
    for adr in [2u8, 3] {
        for command in [
            Command::Analog { command: adr },
            Command::Alarm { command: adr },
            Command::Management { command: adr },
            Command::Serial { command: adr },
            Command::Firmware { command: adr },
        ] {
            let reply = ask(&mut master, adr, command).unwrap();
            assert_eq!(reply.adr, adr, "{command:?}");
            assert!(reply.outcome.is_ok(), "{command:?} at {adr}: {:?}", reply.outcome);
        }
    }
    daemon.stop();
    sim.stop();
}

// Each fault kind and its rule, rule 15's recovery current and a silent counter now run in plant
// time over simulated wires: crates/sim-world/tests/scenarios.rs.
