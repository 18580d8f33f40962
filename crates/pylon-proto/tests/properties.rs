//! Round trips for every message type, and no input makes a decoder panic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use ascii_envelope::{FrameWriter, Header};
use proptest::prelude::*;
use pylon_proto::*;
use units::{DeciAmps, DeciKelvin, MilliAmpHours, Millivolts, Percent, Pylon};

fn mv() -> impl Strategy<Value = Millivolts> {
    any::<u16>().prop_map(Millivolts::from_raw)
}
fn dk() -> impl Strategy<Value = DeciKelvin<Pylon>> {
    any::<u16>().prop_map(DeciKelvin::from_raw)
}
fn da() -> impl Strategy<Value = DeciAmps> {
    any::<i16>().prop_map(DeciAmps::from_raw)
}
fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=max)
}
fn text(len: usize) -> impl Strategy<Value = Text> {
    prop::collection::vec(any::<u8>(), len).prop_map(Text)
}

fn module_analog(single: bool) -> impl Strategy<Value = ModuleAnalog> {
    (
        prop::collection::vec(mv(), 0..17),
        prop::collection::vec(dk(), 0..8),
        da(),
        mv(),
        prop_oneof![Just(2u8), Just(4u8), any::<u8>()],
        (0u32..1 << 24, 0u32..1 << 24, any::<u16>()),
        bytes(4),
    )
        .prop_map(move |(cells, temps, current, voltage, ud, (rem, total, cycles), extra)| {
            let narrow = |v: u32| if ud == UD_LARGE_CAPACITY { v } else { v & 0xFFFF };
            ModuleAnalog {
                cells,
                temps,
                current,
                voltage,
                remaining: MilliAmpHours::from_raw(narrow(rem)),
                user_defined: ud,
                total: MilliAmpHours::from_raw(narrow(total)),
                cycles,
                extra: if single { extra } else { Vec::new() },
            }
        })
}

fn module_alarm(single: bool) -> impl Strategy<Value = ModuleAlarm> {
    (bytes(16), bytes(8), any::<[u8; 8]>(), bytes(2)).prop_map(move |(cell_warns, temp_warns, s, extra)| {
        ModuleAlarm {
            cell_warns,
            temp_warns,
            charge_current_warn: s[0],
            voltage_warn: s[1],
            discharge_current_warn: s[2],
            status1: Status1::from_bits_retain(s[3]),
            status2: Status2::from_bits_retain(s[4]),
            status3: Status3::from_bits_retain(s[5]),
            cell_errors: u16::from_le_bytes([s[6], s[7]]),
            extra: if single { extra } else { Vec::new() },
        }
    })
}

fn management() -> impl Strategy<Value = Management> {
    (mv(), mv(), da(), da(), any::<u8>()).prop_map(|(cv, dv, cc, dc, f)| Management {
        charge_voltage: cv,
        discharge_voltage: dv,
        charge_current: cc,
        discharge_current: dc,
        flags: ManagementFlags::from_bits_retain(f),
    })
}

fn temp_stats() -> impl Strategy<Value = TempStats> {
    (dk(), dk(), any::<u16>(), dk(), any::<u16>()).prop_map(|(average, max, max_id, min, min_id)| TempStats {
        average,
        max,
        max_id,
        min,
        min_id,
    })
}

fn system_analog(unit: SystemCurrentUnit) -> impl Strategy<Value = SystemAnalog> {
    (
        (mv(), any::<i16>(), any::<u8>(), any::<u16>(), any::<u16>(), any::<u8>(), any::<u8>()),
        (mv(), any::<u16>(), mv(), any::<u16>()),
        (temp_stats(), temp_stats(), temp_stats()),
    )
        .prop_map(
            move |((v, i, soc, ac, mc, asoh, msoh), (cmax, cmaxid, cmin, cminid), (ct, mt, bt))| {
                let current = match unit {
                    SystemCurrentUnit::CentiAmp => SystemCurrent::Centi(units::CentiAmps::from_raw(i)),
                    SystemCurrentUnit::DeciAmp => SystemCurrent::Deci(DeciAmps::from_raw(i)),
                };
                SystemAnalog {
                    voltage: v,
                    current,
                    soc: Percent::from_raw(soc),
                    average_cycles: ac,
                    max_cycles: mc,
                    average_soh: Percent::from_raw(asoh),
                    min_soh: Percent::from_raw(msoh),
                    cell_max: cmax,
                    cell_max_id: cmaxid,
                    cell_min: cmin,
                    cell_min_id: cminid,
                    cell_temp: ct,
                    mosfet_temp: mt,
                    bms_temp: bt,
                }
            },
        )
}

fn response(unit: SystemCurrentUnit) -> impl Strategy<Value = (u8, Response)> {
    prop_oneof![
        Just((0x4F, Response::ProtocolVersion)),
        (text(10), any::<[u8; 2]>(), text(20)).prop_map(|(device_name, software_version, manufacturer)| (
            0x51,
            Response::ManufacturerInfo(ManufacturerInfo { device_name, software_version, manufacturer })
        )),
        (text(10), text(20), any::<[u8; 2]>(), prop::collection::vec(text(16), 0..4)).prop_map(
            |(device_name, manufacturer, software_version, serials)| (
                0x60,
                Response::SystemInfo(SystemInfo { device_name, manufacturer, software_version, serials })
            )
        ),
        system_analog(unit).prop_map(|s| (0x61, Response::SystemAnalog(s))),
        any::<[u8; 4]>().prop_map(|b| (
            0x62,
            Response::SystemAlarm(SystemAlarm {
                alarm1: SystemAlarm1::from_bits_retain(b[0]),
                alarm2: SystemAlarm2::from_bits_retain(b[1]),
                protect1: SystemAlarm1::from_bits_retain(b[2]),
                protect2: SystemAlarm2::from_bits_retain(b[3]),
            })
        )),
        management().prop_map(|m| (0x63, Response::SystemManagement(m))),
        (any::<u8>(), mv(), mv(), mv(), (dk(), dk(), da()), (mv(), mv(), mv()), (dk(), dk(), da())).prop_map(
            |(info_flag, ch, cl, cu, (cht, clt, cc), (mh, ml, mu), (dht, dlt, dc))| (
                0x47,
                Response::SystemParameters(SystemParameters {
                    info_flag,
                    cell_high: ch,
                    cell_low: cl,
                    cell_under: cu,
                    charge_high_temp: cht,
                    charge_low_temp: clt,
                    charge_current: cc,
                    module_high: mh,
                    module_low: ml,
                    module_under: mu,
                    discharge_high_temp: dht,
                    discharge_low_temp: dlt,
                    discharge_current: dc,
                })
            )
        ),
        (any::<u8>(), module_analog(true)).prop_map(|(info_flag, m)| (
            0x42,
            Response::Analog(AnalogReply { info_flag, command: 1, modules: vec![m] })
        )),
        (any::<u8>(), prop::collection::vec(module_analog(false), 2..5)).prop_map(|(info_flag, modules)| (
            0x42,
            Response::Analog(AnalogReply { info_flag, command: modules.len() as u8, modules })
        )),
        (any::<u8>(), module_alarm(true)).prop_map(|(info_flag, m)| (
            0x44,
            Response::Alarm(AlarmReply { info_flag, command: 1, modules: vec![m] })
        )),
        (any::<u8>(), prop::collection::vec(module_alarm(false), 2..5)).prop_map(|(info_flag, modules)| (
            0x44,
            Response::Alarm(AlarmReply { info_flag, command: modules.len() as u8, modules })
        )),
        (any::<u8>(), management())
            .prop_map(|(command, limits)| (0x92, Response::Management { command, limits })),
        (any::<u8>(), text(16)).prop_map(|(command, serial)| (0x93, Response::Serial { command, serial })),
        (any::<u8>(), any::<[u8; 2]>(), any::<[u8; 3]>()).prop_map(|(command, m, l)| (
            0x96,
            Response::Firmware { command, manufacture_version: m, mainline_version: l }
        )),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        Just(Command::ProtocolVersion),
        Just(Command::ManufacturerInfo),
        Just(Command::SystemInfo),
        Just(Command::SystemAnalog),
        Just(Command::SystemAlarm),
        Just(Command::SystemManagement),
        Just(Command::SystemParameters),
        any::<u8>().prop_map(|command| Command::Analog { command }),
        any::<u8>().prop_map(|command| Command::Alarm { command }),
        any::<u8>().prop_map(|command| Command::Management { command }),
        any::<u8>().prop_map(|command| Command::Serial { command }),
        any::<u8>().prop_map(|command| Command::Firmware { command }),
    ]
}

fn unit() -> impl Strategy<Value = SystemCurrentUnit> {
    prop_oneof![Just(SystemCurrentUnit::CentiAmp), Just(SystemCurrentUnit::DeciAmp)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn requests_round_trip(adr in any::<u8>(), command in command()) {
        let request = Request { adr, command };
        let mut out = Vec::new();
        request.emit(&mut out).unwrap();
        prop_assert_eq!(Request::parse(&out).unwrap(), request);
    }

    #[test]
    fn replies_round_trip(
        (unit, (cid2, response)) in unit().prop_flat_map(|u| (Just(u), response(u))),
        ver in any::<u8>(),
        adr in any::<u8>(),
    ) {
        let reply = Reply { ver, adr, outcome: Ok(response) };
        let mut out = Vec::new();
        reply.emit(&mut out).unwrap();
        let dialect = Dialect { system_current: unit, ..Dialect::default() };
        prop_assert_eq!(Reply::parse(cid2, &out, dialect).unwrap(), reply);
    }

    #[test]
    fn system_management_round_trips_in_10_ma(
        voltages in (any::<u16>(), any::<u16>()),
        currents in (-3276i16..=3276, -3276i16..=3276),
        flags in any::<u8>(),
    ) {
        let limits = Management {
            charge_voltage: Millivolts::from_raw(voltages.0),
            discharge_voltage: Millivolts::from_raw(voltages.1),
            charge_current: DeciAmps::from_raw(currents.0),
            discharge_current: DeciAmps::from_raw(currents.1),
            flags: ManagementFlags::from_bits_retain(flags),
        };
        let reply = Reply::ok(2, Response::SystemManagement(limits));
        let centi = Dialect { management_current: SystemCurrentUnit::CentiAmp, ..Dialect::default() };
        let (mut deci_bytes, mut centi_bytes) = (Vec::new(), Vec::new());
        reply.emit(&mut deci_bytes).unwrap();
        reply.emit_in(&mut centi_bytes, centi).unwrap();
        prop_assert_eq!(Reply::parse(0x63, &centi_bytes, centi).unwrap(), reply.clone());
        prop_assert_eq!(Reply::parse(0x63, &deci_bytes, Dialect::default()).unwrap(), reply);
        // The two differ exactly in the current fields whenever a current is not zero.
        prop_assert_eq!(deci_bytes == centi_bytes, currents == (0, 0));
    }

    #[test]
    fn refusals_round_trip(adr in any::<u8>(), rtn in 1u8.., cid2 in any::<u8>()) {
        let reply = Reply::refuse(adr, Rtn::from_raw(rtn));
        let mut out = Vec::new();
        reply.emit(&mut out).unwrap();
        prop_assert_eq!(Reply::parse(cid2, &out, Dialect::default()).unwrap(), reply);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in bytes(300), cid2 in any::<u8>()) {
        let _ = Request::parse(&data);
        let _ = Reply::parse(cid2, &data, Dialect::default());
    }

    #[test]
    fn arbitrary_info_never_panics(cid2 in any::<u8>(), info in bytes(200), as_request in any::<bool>()) {
        let mut out = Vec::new();
        let header = Header { ver: 0x20, adr: 2, cid1: 0x46, cid2: if as_request { cid2 } else { 0 } };
        let mut w = FrameWriter::new(&mut out, header);
        w.bytes(&info);
        w.finish().unwrap();
        if as_request {
            let _ = Request::parse(&out);
        } else if let Ok(reply) = Reply::parse(cid2, &out, Dialect::default()) {
            let mut again = Vec::new();
            reply.emit(&mut again).unwrap();
        }
    }
}

#[test]
fn a_large_capacity_without_ud4_is_refused_on_emit() {
    let m =
        ModuleAnalog { remaining: MilliAmpHours::from_raw(70_000), user_defined: 2, ..Default::default() };
    let reply = Reply::ok(2, Response::Analog(AnalogReply { info_flag: 0, command: 2, modules: vec![m] }));
    let e = reply.emit(&mut Vec::new()).unwrap_err();
    assert_eq!(e.to_string(), "remaining capacity 70000 mAh does not fit 16 bits; send user-defined 4");
}
