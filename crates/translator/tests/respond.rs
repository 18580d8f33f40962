//! The responder against EMULATION.md: requests in, replies decoded with pylon-proto and checked.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::sync::Arc;

use ascii_envelope::{FrameWriter, Header};
use pace_proto::{Protect1, Response as PaceResponse};
use pylon_proto::{Dialect, ManagementFlags, Reply, Response, Rtn, Status1, Status2};
use translator::respond::*;
use translator::*;
use units::{Millivolts, Pace};

const P02: &[u8] = include_bytes!("../../../fixtures/pace/esphome-pbmstools/002-analog-reply-16s.txt");
const P04: &[u8] = include_bytes!("../../../fixtures/pace/esphome-pbmstools/004-status-reply.txt");

fn limits() -> PackLimits {
    PackLimits {
        pack_ov_alarm: Some(Millivolts::from_raw(57600)),
        pack_uv_alarm: Some(Millivolts::from_raw(44800)),
        pack_uv_protect: Some(Millivolts::from_raw(40000)),
        cell_uv_protect: Some(Millivolts::from_raw(2500)),
        charge_oc_alarm_a: Some(104),
        discharge_oc_alarm_a: Some(105),
    }
}

/// Two packs from the real captures (P02 analog, P04 status), pack 2 in cell-UV protection.
fn snapshot(now_ms: u64) -> Snapshot {
    let Ok(PaceResponse::Analog(a)) = pace_proto::Reply::parse(0x42, P02).unwrap().outcome else { panic!() };
    let Ok(PaceResponse::Status(s)) = pace_proto::Reply::parse(0x44, P04).unwrap().outcome else { panic!() };
    let analog = a.packs[0].clone();
    let mut status2 = s.packs[0].clone();
    status2.protect1 = Protect1::LOW_CELL_VOLTAGE;
    let packs = vec![
        PackSnapshot {
            analog: Some(Arc::new(analog.clone())),
            status: Some(Arc::new(s.packs[0].clone())),
            limits: limits(),
            serial: Some(pace_proto::Text(b"1812101380309D      ".to_vec())),
            share_ma: (0, 0),
        },
        PackSnapshot {
            analog: Some(Arc::new(analog)),
            status: Some(Arc::new(status2)),
            limits: limits(),
            serial: None,
            share_ma: (0, 0),
        },
    ];
    let mut packs = packs;
    let limits = current_limits(&packs);
    for (p, share) in packs.iter_mut().zip(&limits.shares_ma) {
        p.share_ma = *share;
    }
    let inputs: Vec<PackInput<'_>> =
        packs.iter().map(|p| PackInput { analog: p.analog.as_deref(), limits: p.limits }).collect();
    let view = aggregate(
        &Input {
            packs: &inputs,
            coil: None,
            rebalance_active: false,
            charge_voltage_override: None,
            limits: Some(&limits),
        },
        &Settings::default(),
    );
    Snapshot {
        view,
        packs,
        enable: Enable { charge: true, discharge: true, at_ms: now_ms, comm_lost: false },
        protections: Protections::default(),
    }
}

/// SAFETY.md §2a over the snapshot's packs, as the daemon computes them.
fn current_limits(packs: &[PackSnapshot]) -> limits::Limits {
    use limits::{Direction, LimitInput, LimitSettings, Limiter, PackFlow, can_carry};
    let flows: Vec<PackFlow> = packs
        .iter()
        .map(|p| {
            let status = p.status.as_ref().unwrap();
            PackFlow {
                can_charge: can_carry(status, Direction::Charge),
                can_discharge: can_carry(status, Direction::Discharge),
                current_ma: p.analog.as_ref().map_or(0, |a| a.current.to_milliamps()),
                charge_alarm_a: p.limits.charge_oc_alarm_a,
                discharge_alarm_a: p.limits.discharge_oc_alarm_a,
            }
        })
        .collect();
    let input = LimitInput {
        packs: &flows,
        cell_max_mv: Some(3300),
        cell_min_mv: Some(3280),
        cell_temp_min_dc: Some(250),
        recovery: false,
    };
    Limiter::new(LimitSettings::default()).update(0, &input)
}

fn request(adr: u8, cid2: u8, info: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = FrameWriter::new(&mut out, Header { ver: 0x20, adr, cid1: 0x46, cid2 });
    w.bytes(info);
    w.finish().unwrap();
    out
}

fn ask(s: &Snapshot, adr: u8, cid2: u8, info: &[u8]) -> Reply {
    let bytes = respond(s, &request(adr, cid2, info), &EmulationSettings::default(), 1000).expect("a reply");
    Reply::parse(cid2, &bytes, Dialect::default()).unwrap()
}

#[test]
fn system_management_0x63() {
    let s = snapshot(1000);
    // The Vevor's own poll, byte for byte (fixture Y43).
    let bytes = respond(&s, b"~200246630000FDA9\r", &EmulationSettings::default(), 1000).unwrap();
    let Ok(Response::SystemManagement(m)) = Reply::parse(0x63, &bytes, Dialect::default()).unwrap().outcome
    else {
        panic!()
    };
    assert_eq!((m.charge_voltage.raw(), m.discharge_voltage.raw()), (27350, 44800));
    // SAFETY.md §2a: 0.8 × 2 × 104 A; pack 2 is in under-voltage protection and cannot give
    // discharge, so 0.8 × 1 × 105 A; the discharge limit negative as the original sent it.
    assert_eq!((m.charge_current.raw(), m.discharge_current.raw()), (1664, -840));
    assert_eq!(m.flags, ManagementFlags::CHARGE_ENABLE | ManagementFlags::DISCHARGE_ENABLE);
}

#[test]
fn comm_loss_and_a_stalled_loop_disable_or_silence() {
    let mut s = snapshot(1000);
    s.enable.comm_lost = true;
    let Ok(Response::SystemManagement(m)) = ask(&s, 2, 0x63, &[]).outcome else { panic!() };
    assert_eq!((m.flags.bits(), m.charge_current.raw(), m.discharge_current.raw()), (0, 0, 0));
    // Rule 10: an old decision is never served as enabled.
    let s = snapshot(1000);
    let bytes = respond(&s, &request(2, 0x63, &[]), &EmulationSettings::default(), 4001).unwrap();
    let Ok(Response::SystemManagement(m)) = Reply::parse(0x63, &bytes, Dialect::default()).unwrap().outcome
    else {
        panic!()
    };
    assert_eq!(m.flags.bits(), 0);
    assert!(respond(&s, &request(2, 0x63, &[]), &EmulationSettings::default(), 4000).is_some());
    // The silent policy stops answering.
    let silent = EmulationSettings { on_comm_loss: CommLoss::Silent, ..EmulationSettings::default() };
    assert_eq!(respond(&s, &request(2, 0x63, &[]), &silent, 4001), None);
    // Before the first complete snapshot nothing true can be said.
    let empty = Snapshot { view: None, ..snapshot(1000) };
    assert_eq!(respond(&empty, &request(2, 0x63, &[]), &EmulationSettings::default(), 1000), None);
}

#[test]
fn system_analog_0x61() {
    let s = snapshot(1000);
    let Ok(Response::SystemAnalog(a)) = ask(&s, 2, 0x61, &[]).outcome else { panic!() };
    assert_eq!(a.voltage.raw(), 52429);
    assert_eq!(a.current.raw(), -450); // 2 × -2.25 A in 10 mA, the default dialect
    assert_eq!(a.soc.raw(), 46);
    assert_eq!((a.cell_max.raw(), a.cell_max_id), (3272, 0x0102));
    assert_eq!((a.cell_min.raw(), a.cell_min_id), (3269, 0x0106));
    // Same 0.1 °C value with the Pylontech offset: raw + 1.
    assert_eq!(a.cell_temp.max.to_deci_celsius(), 241);
    assert_eq!(a.bms_temp.max.to_deci_celsius(), 274);
    let deci = EmulationSettings {
        system_current_unit: pylon_proto::SystemCurrentUnit::DeciAmp,
        ..EmulationSettings::default()
    };
    let bytes = respond(&s, &request(2, 0x61, &[]), &deci, 1000).unwrap();
    let Ok(Response::SystemAnalog(a)) =
        Reply::parse(0x61, &bytes, Dialect { system_current: pylon_proto::SystemCurrentUnit::DeciAmp })
            .unwrap()
            .outcome
    else {
        panic!()
    };
    assert_eq!(a.current.raw(), -45);
}

#[test]
fn per_pack_analog_0x42_at_its_address_and_all_at_the_master() {
    let s = snapshot(1000);
    let Ok(Response::Analog(all)) = ask(&s, 2, 0x42, &[0xFF]).outcome else { panic!() };
    assert_eq!((all.command, all.modules.len()), (2, 2));
    let Ok(Response::Analog(one)) = ask(&s, 3, 0x42, &[0x03]).outcome else { panic!() };
    let m = &one.modules[0];
    assert_eq!((one.command, m.cells.len(), m.voltage.raw()), (3, 16, 52429));
    assert_eq!(m.current.raw(), -23, "-2.25 A rounds half away from zero to -2.3 A");
    // [env, cell1..4, MOSFET], each the same 0.1 °C as the Pace reading.
    let dc: Vec<i32> = m.temps.iter().map(|t| t.to_deci_celsius()).collect();
    assert_eq!(dc, [274, 241, 239, 239, 239, 265]);
    assert_eq!(m.temps[0].raw(), units::DeciKelvin::<Pace>::from_raw(0x0BBC).raw() + 1);
    // 103 460 mAh does not fit 16 bits: user-defined 4 with 24-bit capacities.
    assert_eq!((m.user_defined, m.remaining.raw(), m.total.raw(), m.cycles), (4, 48190, 103460, 140));
}

#[test]
fn per_pack_alarm_0x44_status_bits() {
    let s = snapshot(1000);
    let Ok(Response::Alarm(a)) = ask(&s, 3, 0x44, &[0x03]).outcome else { panic!() };
    let m = &a.modules[0];
    assert_eq!(m.status1, Status1::CELL_UNDER_VOLTAGE);
    assert_eq!(
        m.status2,
        Status2::USING_BATTERY_POWER | Status2::DISCHARGE_MOSFET_ON | Status2::CHARGE_MOSFET_ON
    );
    assert!(m.status3.contains(pylon_proto::Status3::EFFECTIVE_DISCHARGE_CURRENT));
    assert_eq!((m.cell_warns.len(), m.temp_warns.len(), m.extra.len()), (16, 6, 0));
}

#[test]
fn module_management_serial_firmware() {
    let s = snapshot(1000);
    let Ok(Response::Management { command, limits }) = ask(&s, 2, 0x92, &[0x02]).outcome else { panic!() };
    // Each pack's share of the §2a limits: pack 1 carries half the charge and all the discharge.
    assert_eq!((command, limits.charge_current.raw(), limits.discharge_current.raw()), (2, 832, -840));
    assert_eq!(limits.flags.bits(), 0xC0);
    let Ok(Response::Management { limits, .. }) = ask(&s, 3, 0x92, &[0x03]).outcome else { panic!() };
    assert_eq!((limits.charge_current.raw(), limits.discharge_current.raw()), (832, 0));
    let Ok(Response::Serial { serial, .. }) = ask(&s, 2, 0x93, &[0x02]).outcome else { panic!() };
    assert_eq!(serial.trimmed(), "1812101380309D");
    let Ok(Response::Serial { serial, .. }) = ask(&s, 3, 0x93, &[0x03]).outcome else { panic!() };
    assert_eq!(serial.trimmed(), "PACE-PACK-02");
    let Ok(Response::Firmware { manufacture_version, mainline_version, .. }) =
        ask(&s, 3, 0x96, &[0x03]).outcome
    else {
        panic!()
    };
    assert_eq!((manufacture_version, mainline_version), ([0, 1], [0, 1, 0]));
}

#[test]
fn parameters_version_manufacturer_and_system_info() {
    let s = snapshot(1000);
    let Ok(Response::SystemParameters(p)) = ask(&s, 2, 0x47, &[]).outcome else { panic!() };
    assert_eq!((p.cell_high.raw(), p.cell_low.raw(), p.cell_under.raw()), (3630, 2850, 2500));
    assert_eq!((p.module_high.raw(), p.module_low.raw(), p.module_under.raw()), (57600, 44800, 40000));
    assert_eq!(
        (
            p.charge_high_temp.to_deci_celsius(),
            p.charge_low_temp.to_deci_celsius(),
            p.discharge_low_temp.to_deci_celsius()
        ),
        (500, 20, -150)
    );
    assert_eq!((p.charge_current.raw(), p.discharge_current.raw()), (1664, -840));
    let r = ask(&s, 3, 0x4F, &[]);
    assert_eq!((r.ver, r.outcome), (0x20, Ok(Response::ProtocolVersion)));
    let Ok(Response::ManufacturerInfo(m)) = ask(&s, 2, 0x51, &[]).outcome else { panic!() };
    assert_eq!(
        (m.device_name.trimmed().as_ref(), m.manufacturer.trimmed().as_ref()),
        ("pace2pylon", "pace2pylon")
    );
    let Ok(Response::SystemInfo(i)) = ask(&s, 2, 0x60, &[]).outcome else { panic!() };
    assert_eq!(i.serials.len(), 2);
}

#[test]
fn errors_and_addresses() {
    let s = snapshot(1000);
    let settings = EmulationSettings::default();
    // Unknown CID2 at our address: RTN 04; a per-pack command without its byte: RTN 05; a command
    // byte that is neither the address nor FF: RTN 06.
    assert_eq!(ask(&s, 2, 0x99, &[]).rtn(), Rtn::Cid2Invalid);
    assert_eq!(ask(&s, 2, 0x42, &[]).rtn(), Rtn::CommandFormatError);
    assert_eq!(ask(&s, 3, 0x42, &[0x05]).rtn(), Rtn::InvalidData);
    // Another address, a bad checksum: silence.
    assert_eq!(respond(&s, &request(5, 0x42, &[0x05]), &settings, 1000), None);
    assert_eq!(respond(&s, &request(0x12, 0x63, &[]), &settings, 1000), None);
    assert_eq!(respond(&s, b"~200246630000FDA8\r", &settings, 1000), None);
    // System commands at any address with the SRNE option, answered as the master.
    let any = EmulationSettings { any_address: true, ..settings.clone() };
    let bytes = respond(&s, b"~201246630000FDA8\r", &any, 1000).unwrap();
    assert_eq!(Reply::parse(0x63, &bytes, Dialect::default()).unwrap().adr, 2);
    // Lower-case hex is accepted; the reply is upper case.
    let lower = String::from_utf8(request(2, 0x63, &[])).unwrap().to_lowercase();
    let sum = ascii_envelope::checksum(&lower.as_bytes()[1..lower.len() - 5]);
    let lower = format!("{}{sum:04x}\r", &lower[..lower.len() - 5]);
    let bytes = respond(&s, lower.as_bytes(), &settings, 1000).unwrap();
    assert!(bytes.iter().all(|b| !b.is_ascii_lowercase()));
    // Extra INFO bytes on a per-pack request (some masters send [address, module]) are ignored.
    assert_eq!(ask(&s, 3, 0x42, &[0x03, 0x01]).rtn(), Rtn::Normal);
}

#[test]
fn arbitrary_requests_never_panic() {
    let s = snapshot(1000);
    let settings = EmulationSettings::default();
    for cid2 in 0..=255u8 {
        for info in [&[][..], &[0xFF], &[2], &[3, 1], &[0; 40]] {
            for adr in [0u8, 2, 3, 4, 0xFF] {
                let _ = respond(&s, &request(adr, cid2, info), &settings, 1000);
            }
        }
    }
}
