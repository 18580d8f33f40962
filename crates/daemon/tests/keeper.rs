//! The counter's and the inverter's pollers as machines, driven by hand against the simulated
//! plant's register models over real RTU framing, in made-up time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::time::Duration;

use daemon::keeper::{CoilPoller, InverterPoller};
use daemon::poller::{Machine, Note};
use link::{Deframer, RtuDeframer};
use maestro_core::Action;
use modbus_rtu::Side;
use sim::{Plant, PlantConfig};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A device's answer to a request's RTU bytes, as RTU bytes (`None`: it stays silent).
type Device<'a> = &'a mut dyn FnMut(u8, &modbus_rtu::Request) -> Option<modbus_rtu::Response>;

/// Runs `m` from `now` until it has nothing to send; each exchange takes 10 ms. Returns the
/// requests in the order they went out, and the time it stopped.
fn run(m: &mut dyn Machine, device: Device<'_>, mut now: Duration) -> (Vec<modbus_rtu::Request>, Duration) {
    let mut asked = Vec::new();
    while let Some(frame) = m.poll_transmit(now) {
        let mut at_device = RtuDeframer::new(Side::Request);
        at_device.push(&frame);
        let request = at_device.next_frame().or_else(|| at_device.gap()).expect("a whole RTU request");
        let (slave, pdu) = request.split_first().expect("a slave address");
        let request = modbus_rtu::Request::parse(pdu).expect("a valid request");
        asked.push(request.clone());
        now += ms(10);
        match device(*slave, &request) {
            Some(response) => {
                let mut bytes = Vec::new();
                response.encode(*slave, &mut bytes).expect("encodable");
                let mut at_daemon = RtuDeframer::new(Side::Response);
                at_daemon.push(&bytes);
                let reply = at_daemon.next_frame().or_else(|| at_daemon.gap()).expect("a whole RTU reply");
                m.handle_frame(now, &reply);
            }
            None => {
                now += ms(1000);
                m.handle_timeout(now);
            }
        }
    }
    (asked, now)
}

fn notes(m: &mut dyn Machine) -> Vec<Note> {
    std::iter::from_fn(|| m.poll_note()).collect()
}

fn events(m: &mut dyn Machine) -> Vec<String> {
    notes(m)
        .into_iter()
        .filter_map(|n| match n {
            Note::Event(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn plant() -> Plant {
    Plant::new(PlantConfig { packs: 1, ..PlantConfig::default() })
}

#[test]
fn the_inverter_is_written_only_when_it_differs_and_confirmed_by_reading_back() {
    let mut plant = plant();
    let mut inverter = InverterPoller::new(1, "inverter-line");
    let mut device = |_: u8, r: &modbus_rtu::Request| Some(plant.inverter.registers.serve(r).0);
    let (asked, _) = run(&mut inverter, &mut device, ms(0));
    assert_eq!(asked.len(), 2, "the live registers and the settings, no write: {asked:?}");
    let before = inverter.readings().charging_priority;
    assert!(before.is_some());
    assert!(events(&mut inverter).is_empty());
    // A target that differs: written once, read back, confirmed.
    let target = if before == Some(2) { 3 } else { 2 };
    inverter.set_targets(None, Some(target));
    // Before the cycle is due, nothing goes out.
    assert_eq!(inverter.poll_transmit(ms(1000)), None);
    let (asked, _) = run(&mut inverter, &mut device, ms(2000));
    assert_eq!(asked.len(), 4, "{asked:?}");
    assert_eq!(asked[2], modbus_rtu::Request::WriteMultiple { address: 331, values: vec![target] });
    assert_eq!(asked[3], modbus_rtu::Request::ReadHolding { address: 331, count: 1 });
    assert_eq!(inverter.readings().charging_priority, Some(target));
    assert_eq!(
        events(&mut inverter),
        vec![format!("inverter charging priority set to {target} (confirmed)")]
    );
    // Kept: the next cycle reads and does not write again.
    let (asked, _) = run(&mut inverter, &mut device, ms(4000));
    assert_eq!(asked.len(), 2, "{asked:?}");
}

#[test]
fn a_refused_inverter_write_is_unknown_reported_and_retried() {
    let mut inverter = InverterPoller::new(1, "inverter-line");
    let mut plant = plant();
    // A device that reads but refuses every write.
    let mut writes = 0;
    let mut device = |_: u8, r: &modbus_rtu::Request| match r {
        modbus_rtu::Request::WriteMultiple { .. } => {
            writes += 1;
            Some(modbus_rtu::Response::Exception { function: 0x10, code: modbus_rtu::ExceptionCode(4) })
        }
        r => Some(plant.inverter.registers.serve(r).0),
    };
    run(&mut inverter, &mut device, ms(0));
    inverter.set_targets(Some(0), None);
    let first = inverter.readings().output_priority;
    run(&mut inverter, &mut device, ms(2000));
    assert_ne!(first, Some(0));
    // Unknown until a write is confirmed: never the old value taken as the device's word.
    assert_eq!(inverter.readings().output_priority, None);
    let e = events(&mut inverter);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with(
            "inverter output priority could not be set to 0: inverter-line: the device refused function 10"
        ),
        "{e:?}"
    );
    assert!(e[0].ends_with("; retrying"), "{e:?}");
    run(&mut inverter, &mut device, ms(4000));
    assert_eq!(writes, 2, "retried at the next cycle");
}

#[test]
fn the_counter_is_kept_at_its_target_and_calibrated_even_without_a_reply_to_set_full() {
    let mut plant = plant();
    let mut coil = CoilPoller::new(1, "coil-line", ms(1000), ms(500));
    let mut set_full = 0;
    let mut device = |slave: u8, r: &modbus_rtu::Request| {
        if slave != 1 {
            return None;
        }
        let (response, effect) = plant.coil.registers.serve(r);
        plant.coil.apply(effect);
        // The counter often does not answer 0x6F.
        if matches!(r, modbus_rtu::Request::Custom { function: 0x6F, .. }) {
            set_full += 1;
            return None;
        }
        Some(response)
    };
    let (asked, _) = run(&mut coil, &mut device, ms(0));
    assert_eq!(asked.len(), 2, "settings, then the reading: {asked:?}");
    assert!(coil.readings().reading.is_some());
    let s = coil.settings().unwrap();
    let target = (s.capacity_mah + 1000, s.full_voltage_cv);
    coil.set_target(Some(target));
    coil.act(Action::CalibrateCoilFull { capacity_mah: target.0, full_voltage_cv: target.1 });
    // An action makes the settings due at once.
    let (asked, _) = run(&mut coil, &mut device, ms(1000));
    let writes =
        asked.iter().filter(|r| matches!(r, modbus_rtu::Request::WriteMultiple { address: 1, .. })).count();
    assert_eq!(writes, 2, "the target, then the calibration's capacity: {asked:?}");
    assert_eq!(set_full, 1);
    let e = events(&mut coil);
    assert!(
        e.contains(&format!("coil capacity {} mAh, full voltage {} cV (confirmed)", target.0, target.1)),
        "{e:?}"
    );
    assert!(e.contains(&"coil calibrated to full (no reply, as the counter often does)".to_owned()), "{e:?}");
    // The reading came last, after the writes.
    assert!(matches!(asked.last(), Some(modbus_rtu::Request::ReadInput { .. })), "{asked:?}");
}

#[test]
fn a_silent_counter_is_warned_once_and_its_return_is_an_event() {
    let mut plant = plant();
    let mut coil = CoilPoller::new(1, "coil-line", ms(1000), ms(500));
    let mut silent = true;
    let mut now = ms(0);
    for _ in 0..3 {
        let mut device = |_: u8, r: &modbus_rtu::Request| (!silent).then(|| plant.coil.registers.serve(r).0);
        now = run(&mut coil, &mut device, now).1.max(now + ms(1000));
    }
    let n = notes(&mut coil);
    assert_eq!(n.len(), 1, "{n:?}");
    assert!(
        matches!(&n[0], Note::Warn(w) if w.starts_with("coil: coil-line: no reply within 0.5 s")),
        "{n:?}"
    );
    assert!(coil.readings().last_error.is_some());
    silent = false;
    let mut device = |_: u8, r: &modbus_rtu::Request| (!silent).then(|| plant.coil.registers.serve(r).0);
    run(&mut coil, &mut device, now + ms(5000));
    assert_eq!(events(&mut coil), vec!["the coulomb counter answers again".to_owned()]);
    assert_eq!(coil.readings().last_error, None);
}
