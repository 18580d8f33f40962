//! The simulator on real TCP sockets, talked to with the project's codecs and links.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::time::{Duration, Instant};

use link::{AsciiDeframer, Link, RtuDeframer};
use modbus_rtu::Side;
use pylon_proto::units::{DeciAmps, Millivolts};
use pylon_proto::{Management, ManagementFlags};
use sim::server::{Lines, Options, Sim, lock};
use sim::{Plant, PlantConfig};

struct Running {
    sim: Sim,
    packs: Vec<String>,
    coil: String,
    inverter: String,
    bms: String,
}

fn listen() -> (Link, String) {
    let mut l = Link::open("tcp-listen://127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().unwrap();
    (l, format!("tcp://{addr}"))
}

fn start(packs: usize, options: Options) -> Running {
    let (mut links, mut urls) = (Vec::new(), Vec::new());
    for _ in 0..packs {
        let (l, u) = listen();
        links.push(l);
        urls.push(u);
    }
    let (coil, coil_url) = listen();
    let (inverter, inverter_url) = listen();
    let (bms_port, bms_url) = listen();
    let plant = Plant::new(PlantConfig { packs, start_of_day_s: 11.0 * 3600.0, ..PlantConfig::default() });
    let sim = Sim::start(
        plant,
        Lines { packs: links, coil, inverter, bms_port: sim::server::BmsPort::Rs485(bms_port) },
        options,
    );
    Running { sim, packs: urls, coil: coil_url, inverter: inverter_url, bms: bms_url }
}

fn pace(url: &str, command: pace_proto::Command) -> Result<pace_proto::Reply, String> {
    let mut link = Link::open(url).unwrap();
    let cid2 = command.cid2();
    let mut frame = Vec::new();
    pace_proto::Request { adr: 0, command }.emit(&mut frame).unwrap();
    let bytes =
        link.request(&frame, &mut AsciiDeframer::new(), Duration::from_secs(2)).map_err(|e| e.to_string())?;
    pace_proto::Reply::parse(cid2, &bytes).map_err(|e| e.to_string())
}

#[test]
fn every_device_answers_over_tcp() {
    let run = start(2, Options::default());
    for url in &run.packs {
        let reply = pace(url, pace_proto::Command::Analog { pack: 0xFF }).unwrap();
        let Ok(pace_proto::Response::Analog(a)) = reply.outcome else { panic!() };
        let p = &a.packs[0];
        assert_eq!(p.cells.len(), 8);
        let sum: u32 = p.cells.iter().map(|c| u32::from(c.raw())).sum();
        assert!((sum as i64 - i64::from(p.voltage.raw())).abs() <= 8);
        assert!(p.cells.iter().all(|c| (3000..3500).contains(&c.raw())), "{:?}", p.cells);
    }
    let mut coil = Link::open(&run.coil).unwrap();
    let mut frame = Vec::new();
    coil_modbus::request::read_inputs().encode(1, &mut frame).unwrap();
    let bytes = coil.request(&frame, &mut RtuDeframer::new(Side::Response), Duration::from_secs(2)).unwrap();
    let reading = coil_modbus::parse_inputs(&bytes[1..]).unwrap().unwrap();
    assert_eq!(reading.soc_pct, 60);
    assert!((2500..2800).contains(&reading.voltage_cv), "{reading:?}");

    let mut inv = Link::open(&run.inverter).unwrap();
    frame.clear();
    vevor_modbus::read_request(215, 1).encode(1, &mut frame).unwrap();
    let bytes = inv.request(&frame, &mut RtuDeframer::new(Side::Response), Duration::from_secs(2)).unwrap();
    let regs = vevor_modbus::parse_read(&bytes[1..], 1).unwrap().unwrap();
    assert!((250..280).contains(&regs[0]), "battery voltage {} (0.1 V)", regs[0]);
    run.sim.stop();
}

#[test]
fn the_inverter_polls_its_bms_port_and_falls_back_without_answers() {
    let options = Options {
        no_comm_after: Duration::from_millis(1500),
        poll_every: Duration::from_millis(200),
        ..Options::default()
    };
    let run = start(1, options);
    // Play the Pylontech master on the inverter's BMS port for a while.
    let mut master = Link::open(&run.bms).unwrap();
    let mut d = AsciiDeframer::new();
    let limits = Management {
        charge_voltage: Millivolts::from_raw(27350),
        discharge_voltage: Millivolts::from_raw(24400),
        charge_current: DeciAmps::from_raw(300),
        discharge_current: DeciAmps::from_raw(-300),
        flags: ManagementFlags::CHARGE_ENABLE | ManagementFlags::DISCHARGE_ENABLE,
    };
    master.send(b"").unwrap();
    let mut seen = Vec::new();
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let Some(frame) = master.receive(&mut d, Instant::now() + Duration::from_millis(300)).unwrap() else {
            continue;
        };
        let request = pylon_proto::Request::parse(&frame).unwrap();
        seen.push(request);
        if request.command == pylon_proto::Command::SystemManagement {
            let mut out = Vec::new();
            pylon_proto::Reply::ok(2, pylon_proto::Response::SystemManagement(limits))
                .emit(&mut out)
                .unwrap();
            master.send(&out).unwrap();
        }
    }
    assert!(seen.iter().any(|r| r.adr == 2 && r.command == pylon_proto::Command::SystemAnalog), "{seen:?}");
    assert!(seen.iter().any(|r| r.adr == 2 && r.command == pylon_proto::Command::SystemManagement));
    assert_eq!(lock(&run.sim.plant()).inverter.bms, Some(limits));
    assert!(lock(&run.sim.plant()).inverter.limits().from_bms);
    // Go silent: after no_comm_after the inverter uses its own settings.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(lock(&run.sim.plant()).inverter.bms, None);
    assert_eq!(lock(&run.sim.plant()).inverter.limits(), sim::NO_COMM);
    drop(master);
    run.sim.stop();
}

#[test]
fn silence_and_garbage() {
    let run = start(1, Options::default());
    run.sim.command("silence pack 1").unwrap();
    let e = pace(&run.packs[0], pace_proto::Command::Status { pack: 0xFF }).unwrap_err();
    assert!(e.contains("no reply within 2.0 s"), "{e}");
    run.sim.command("restore pack 1").unwrap();
    assert!(pace(&run.packs[0], pace_proto::Command::Status { pack: 0xFF }).is_ok());
    run.sim.command("garbage pack 1").unwrap();
    // With noise on the line some replies are garbled; the link sorts out the good ones.
    let mut link = Link::open(&run.packs[0]).unwrap();
    let mut frame = Vec::new();
    pace_proto::Request { adr: 0, command: pace_proto::Command::Version }.emit(&mut frame).unwrap();
    let mut good = 0;
    for _ in 0..8 {
        if link.request(&frame, &mut AsciiDeframer::new(), Duration::from_millis(600)).is_ok() {
            good += 1;
        }
    }
    let stats = link.stats();
    assert!(good >= 1 && stats.checksum_errors + stats.timeouts >= 1, "good {good}, {stats:?}");
    run.sim.stop();
}

#[test]
fn a_fault_command_changes_what_the_bms_reports() {
    let run = start(2, Options::default());
    run.sim.command("fault pack 2 short-circuit").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let Ok(pace_proto::Response::Status(s)) =
        pace(&run.packs[1], pace_proto::Command::Status { pack: 0xFF }).unwrap().outcome
    else {
        panic!()
    };
    assert!(s.packs[0].protect1.contains(pace_proto::Protect1::SHORT_CIRCUIT));
    let Ok(pace_proto::Response::Status(s)) =
        pace(&run.packs[0], pace_proto::Command::Status { pack: 0xFF }).unwrap().outcome
    else {
        panic!()
    };
    assert!(s.packs[0].protect1.is_empty());
    run.sim.stop();
}

#[test]
fn the_can_inverter_obeys_0x351_and_0x35c_beats_and_falls_back_when_the_frames_stop() {
    use pylon_can::{Battery, Message, Profile, RequestFlags};
    let options = Options {
        no_comm_after: Duration::from_millis(1500),
        poll_every: Duration::from_millis(200),
        ..Options::default()
    };
    let (pack, _) = listen();
    let links = vec![pack];
    let (coil, _) = listen();
    let (inverter, _) = listen();
    let mut bus = link::CanBus::open("slcan+tcp-listen://127.0.0.1:0").unwrap();
    let addr = bus.local_addr().unwrap().unwrap();
    let plant = Plant::new(PlantConfig { packs: 1, start_of_day_s: 11.0 * 3600.0, ..PlantConfig::default() });
    let sim = Sim::start(
        plant,
        Lines { packs: links, coil, inverter, bms_port: sim::server::BmsPort::Can(bus) },
        options,
    );
    // Be the battery on the inverter's CAN port.
    let mut battery = link::CanBus::open(&format!("slcan+tcp://{addr}")).unwrap();
    let b = Battery {
        charge_voltage_dv: 273,
        discharge_voltage_dv: 244,
        charge_current_da: 300,
        discharge_current_da: 250,
        requests: RequestFlags::DISCHARGE_ENABLE,
        soc_centi_pct: 6100,
        ..Battery::default()
    };
    let (mut heartbeats, until) = (0, Instant::now() + Duration::from_secs(2));
    while Instant::now() < until {
        for f in pylon_can::frames(Profile::Pylon, &b) {
            battery.send(&f).unwrap();
        }
        while let Ok(Some(f)) = battery.receive(Instant::now() + Duration::from_millis(100)) {
            heartbeats +=
                usize::from(matches!(Message::decode(Profile::Pylon, &f), Ok(Some(Message::Heartbeat(_)))));
        }
    }
    let told = lock(&sim.plant()).inverter.clone();
    let m = told.bms.expect("the inverter follows the CAN frames");
    assert_eq!((m.charge_voltage.raw(), m.discharge_voltage.raw()), (27300, 24400));
    assert_eq!((m.charge_current.raw(), m.discharge_current.raw()), (300, 250));
    assert_eq!(m.flags, ManagementFlags::DISCHARGE_ENABLE, "charging is not enabled in 0x35C");
    assert_eq!(told.bms_soc, Some(61));
    let l = told.limits();
    assert!(l.from_bms && !l.charge && l.discharge && (l.discharge_a - 25.0).abs() < 1e-9, "{l:?}");
    assert!(heartbeats >= 5, "0x305 every 200 ms: {heartbeats} in 2 s");
    // The battery goes quiet: after no_comm_after the inverter uses its own settings.
    std::thread::sleep(Duration::from_millis(2000));
    assert!(lock(&sim.plant()).inverter.bms.is_none());
    assert!(!lock(&sim.plant()).inverter.limits().from_bms);
    sim.stop();
}
