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
        hold: false,
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
    let Ok(Response::SystemAnalog(a)) = Reply::parse(
        0x61,
        &bytes,
        Dialect { system_current: pylon_proto::SystemCurrentUnit::DeciAmp, ..Dialect::default() },
    )
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

// Each RS485 profile against a scripted master that polls as its inverter does (README's
// profile table; the requests of real captures where one exists).

fn request_ver(ver: u8, adr: u8, cid2: u8, info: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = FrameWriter::new(&mut out, Header { ver, adr, cid1: 0x46, cid2 });
    w.bytes(info);
    w.finish().unwrap();
    out
}

fn profile(p: Profile) -> EmulationSettings {
    let mut settings = EmulationSettings::default();
    settings.apply(p.options());
    settings
}

/// What the master gets back: the reply's VER and ADR and its decoded body.
fn poll(
    s: &Snapshot,
    settings: &EmulationSettings,
    frame: &[u8],
    dialect: Dialect,
) -> Option<(u8, u8, Response)> {
    let bytes = respond(s, frame, settings, 1000)?;
    let header = ascii_envelope::Frame::parse(&bytes).unwrap().header();
    assert_eq!(header.cid2, 0, "RTN 00, never an echoed CID2");
    let reply =
        Reply::parse(ascii_envelope::Frame::parse(frame).unwrap().header().cid2, &bytes, dialect).unwrap();
    Some((header.ver, header.adr, reply.outcome.unwrap()))
}

#[test]
fn vevor_polls_0x61_and_0x63_at_adr_2() {
    let (s, settings) = (snapshot(1000), profile(Profile::Vevor));
    assert_eq!(settings, EmulationSettings::default(), "vevor is the default");
    let (ver, adr, Response::SystemAnalog(a)) =
        poll(&s, &settings, b"~200246610000FDAB\r", Dialect::default()).unwrap()
    else {
        panic!()
    };
    assert_eq!((ver, adr, a.current.raw()), (0x20, 2, -450));
    let (_, _, Response::SystemManagement(m)) =
        poll(&s, &settings, b"~200246630000FDA9\r", Dialect::default()).unwrap()
    else {
        panic!()
    };
    assert_eq!((m.charge_current.raw(), m.discharge_current.raw()), (1664, -840));
}

#[test]
fn voltronic_sweeps_0x4f_then_reads_the_stack_from_0x42_and_0x92_at_adr_2() {
    let (mut s, settings) = (snapshot(1000), profile(Profile::Voltronic));
    // The VM IV's sweep (fixture R1/R2: VER 00, ADR 02, 12, 22 … 52): only ADR 02 is answered,
    // with VER 28 as diyBMS answers it.
    let answered: Vec<u8> = [0x02u8, 0x12, 0x22, 0x32, 0x42, 0x52]
        .into_iter()
        .filter(|adr| respond(&s, &request_ver(0x00, *adr, 0x4F, &[]), &settings, 1000).is_some())
        .collect();
    assert_eq!(answered, [0x02]);
    let (ver, adr, body) = poll(&s, &settings, b"~0002464F0000FD9A\r", Dialect::default()).unwrap();
    assert_eq!((ver, adr, body), (0x28, 2, Response::ProtocolVersion));
    // 0x42 at the master, for the master: the whole stack, so the pack count is 2.
    let (ver, _, Response::Analog(a)) =
        poll(&s, &settings, &request_ver(0x28, 2, 0x42, &[2]), Dialect::default()).unwrap()
    else {
        panic!()
    };
    assert_eq!((ver, a.command, a.modules.len()), (0x28, 2, 2));
    // 0x92 at the master: the stack's limits, discharge positive, and the stop bits.
    let (_, _, Response::Management { limits, .. }) =
        poll(&s, &settings, &request_ver(0x28, 2, 0x92, &[2]), Dialect::default()).unwrap()
    else {
        panic!()
    };
    assert_eq!((limits.charge_current.raw(), limits.discharge_current.raw()), (1664, 840));
    assert_eq!(limits.flags, ManagementFlags::CHARGE_ENABLE | ManagementFlags::DISCHARGE_ENABLE);
    s.enable.charge = false;
    let (_, _, Response::Management { limits, .. }) =
        poll(&s, &settings, &request_ver(0x28, 2, 0x92, &[2]), Dialect::default()).unwrap()
    else {
        panic!()
    };
    assert_eq!(limits.flags, ManagementFlags::DISCHARGE_ENABLE, "stop charging is in 0x92");
    assert_eq!(limits.charge_current.raw(), 1664, "the limit itself stays; the bit stops it");
    // 0x93 and 0x96 at the master are still pack 1's: one module's serial and firmware.
    let (_, _, Response::Serial { command, .. }) =
        poll(&s, &settings, &request_ver(0x28, 2, 0x93, &[2]), Dialect::default()).unwrap()
    else {
        panic!()
    };
    assert_eq!(command, 2);
    assert!(matches!(
        poll(&s, &settings, &request_ver(0x28, 2, 0x96, &[2]), Dialect::default()),
        Some((_, _, Response::Firmware { .. }))
    ));
}

#[test]
fn srne_polls_several_addresses_and_takes_every_reply_as_adr_2() {
    let (s, settings) = (snapshot(1000), profile(Profile::Srne));
    let centi =
        Dialect { management_current: pylon_proto::SystemCurrentUnit::CentiAmp, ..Dialect::default() };
    for adr in [2u8, 3, 4, 5, 0x12] {
        for cid2 in [0x61, 0x62, 0x63] {
            let (ver, reply_adr, body) = poll(&s, &settings, &request(adr, cid2, &[]), centi).unwrap();
            assert_eq!((ver, reply_adr), (0x20, 2), "ADR {adr:02X} CID2 {cid2:02X}");
            if let Response::SystemManagement(m) = body {
                // Decoded in 10 mA the limits are the same amperes; discharge positive.
                assert_eq!((m.charge_current.raw(), m.discharge_current.raw()), (1664, 840));
            }
        }
    }
    // The same 0x63 read as 0.1 A would be ten times too large: the unit is really 10 mA.
    let (_, _, Response::SystemManagement(m)) =
        poll(&s, &settings, &request(2, 0x63, &[]), Dialect::default()).unwrap()
    else {
        panic!()
    };
    assert_eq!(m.charge_current.raw(), 16640);
}

#[test]
fn deye_reads_0x63_in_deci_amps_from_adr_2() {
    let (s, settings) = (snapshot(1000), profile(Profile::Deye));
    let (ver, adr, Response::SystemManagement(m)) =
        poll(&s, &settings, &request(2, 0x63, &[]), Dialect::default()).unwrap()
    else {
        panic!()
    };
    assert_eq!((ver, adr, m.charge_current.raw(), m.discharge_current.raw()), (0x20, 2, 1664, 840));
    assert_eq!(
        respond(&s, &request(3, 0x63, &[]), &settings, 1000),
        None,
        "system commands at the master only"
    );
}

#[test]
fn generic_answers_python_pylontech_as_a_real_stack_does() {
    let (s, settings) = (snapshot(1000), profile(Profile::Generic));
    // python-pylontech asks 0x4F and 0x51 at ADR 0 with VER 20.
    let (ver, adr, body) = poll(&s, &settings, &request(0, 0x4F, &[]), Dialect::default()).unwrap();
    assert_eq!((ver, adr, body), (0x20, 0, Response::ProtocolVersion));
    assert!(matches!(
        poll(&s, &settings, &request(0, 0x51, &[]), Dialect::default()),
        Some((_, 0, Response::ManufacturerInfo(_)))
    ));
    // 0x42 FF at the master: every pack; 0x92 at a pack's address: that pack, ADR echoed.
    let (_, _, Response::Analog(a)) =
        poll(&s, &settings, &request(2, 0x42, &[0xFF]), Dialect::default()).unwrap()
    else {
        panic!()
    };
    assert_eq!(a.modules.len(), 2);
    let (_, adr, Response::Management { command, .. }) =
        poll(&s, &settings, &request(3, 0x92, &[3]), Dialect::default()).unwrap()
    else {
        panic!()
    };
    assert_eq!((adr, command), (3, 3));
    // scan_for_batteries: 0x93 at every ADR with INFO = ADR finds exactly the two packs.
    let found: Vec<u8> = (0u8..=254)
        .filter(|adr| respond(&s, &request(*adr, 0x93, &[*adr]), &settings, 1000).is_some())
        .collect();
    assert_eq!(found, [2, 3]);
    // Other profiles do not answer at ADR 0.
    assert_eq!(respond(&s, &request(0, 0x4F, &[]), &profile(Profile::Vevor), 1000), None);
}

#[test]
fn a_reply_ver_of_echo_answers_in_the_requests_ver() {
    let s = snapshot(1000);
    let settings = EmulationSettings { reply_ver: ReplyVer::Echo, ..EmulationSettings::default() };
    for ver in [0x00, 0x20, 0x25, 0x28] {
        let (got, _, _) = poll(&s, &settings, &request_ver(ver, 2, 0x4F, &[]), Dialect::default()).unwrap();
        assert_eq!(got, ver);
    }
}

// The CAN side tells the same decision and limits as 0x63.

#[test]
fn can_battery_follows_the_decision_as_0x63_does() {
    use pylon_can::RequestFlags;
    use translator::can::{CanSettings, battery};
    let settings = CanSettings::default();
    let mut s = snapshot(1000);
    let b = battery(&s, &settings, 1000).unwrap();
    assert_eq!(b.requests, RequestFlags::CHARGE_ENABLE | RequestFlags::DISCHARGE_ENABLE);
    assert_eq!(
        (b.charge_current_da, b.discharge_current_da),
        (1664, 840),
        "the 0x63 limits, discharge positive"
    );
    assert_eq!((b.charge_voltage_dv, b.discharge_voltage_dv), (273, 448));
    assert_eq!((b.voltage_cv, b.current_da, b.soc_centi_pct), (5242, -45, 4600));
    assert_eq!(
        (b.modules, b.modules_blocking_charge, b.modules_blocking_discharge, b.modules_offline),
        (2, 0, 1, 0)
    );
    assert_eq!(b.cell_min_max_mv, (3269, 3272));
    // Charging disabled: its bit clear and its limit 0; discharging untouched.
    s.enable.charge = false;
    let b = battery(&s, &settings, 1000).unwrap();
    assert_eq!(
        (b.requests, b.charge_current_da, b.discharge_current_da),
        (RequestFlags::DISCHARGE_ENABLE, 0, 840)
    );
    // Rule 10 and comm loss: everything off; the silent policy sends nothing.
    s.enable.charge = true;
    let stale = battery(&s, &settings, 4001).unwrap();
    assert_eq!(
        (stale.requests, stale.charge_current_da, stale.discharge_current_da),
        (RequestFlags::empty(), 0, 0)
    );
    s.enable.comm_lost = true;
    assert_eq!(battery(&s, &settings, 1000).unwrap().requests, RequestFlags::empty());
    let silent = CanSettings { on_comm_loss: CommLoss::Silent, ..CanSettings::default() };
    assert_eq!(battery(&s, &silent, 1000), None);
    assert_eq!(battery(&Snapshot { view: None, ..snapshot(1000) }, &settings, 1000), None);
}

#[test]
fn can_protections_are_those_0x62_reports() {
    use pylon_can::{Alarm, Protection};
    let mut s = snapshot(1000);
    s.protections.under_voltage = true;
    s.protections.charge_over_current = true;
    let b = translator::can::battery(&s, &translator::can::CanSettings::default(), 1000).unwrap();
    assert_eq!(b.protection, Protection::UNDER_VOLTAGE | Protection::CHARGE_OVER_CURRENT);
    let Ok(Response::SystemAlarm(a)) = ask(&s, 2, 0x62, &[]).outcome else { panic!() };
    assert_eq!(b.alarm.bits(), u16::from(a.alarm1.bits()) | u16::from(a.alarm2.bits()) << 8);
    assert_eq!(
        b.alarm.contains(Alarm::LOW_VOLTAGE),
        a.alarm1.contains(pylon_proto::SystemAlarm1::UNDER_VOLTAGE)
    );
}
