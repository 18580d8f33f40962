//! Every Pylontech fixture decoded against the values its source states, and re-emitted
//! byte-identical.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use pylon_proto::*;

macro_rules! fixture {
    ($path:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/pylon/", $path, ".txt"))
            .as_slice()
    };
}

fn reply(cid2: u8, wire: &[u8]) -> Reply {
    let reply = Reply::parse(cid2, wire, Dialect::default())
        .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(wire)));
    let mut out = Vec::new();
    reply.emit(&mut out).unwrap();
    assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(wire), "re-emitted reply differs");
    reply
}

fn response(cid2: u8, wire: &[u8]) -> Response {
    reply(cid2, wire).outcome.unwrap_or_else(|e| panic!("refused: {e:?}"))
}

fn request(wire: &[u8]) -> Request {
    let req = Request::parse(wire).unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(wire)));
    let mut out = Vec::new();
    req.emit(&mut out).unwrap();
    assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(wire), "re-emitted request differs");
    req
}

fn analog(wire: &[u8]) -> AnalogReply {
    match response(0x42, wire) {
        Response::Analog(a) => a,
        other => panic!("{other:?}"),
    }
}

fn dc(m: &ModuleAnalog) -> Vec<i32> {
    m.temps.iter().map(|t| t.to_deci_celsius()).collect()
}

#[test]
fn y05_three_us2000_modules() {
    let a = analog(fixture!("python-pylontech/002-analog-reply-3-modules"));
    assert_eq!((a.info_flag, a.command, a.modules.len()), (0x11, 3, 3));
    let m1 = &a.modules[0];
    assert_eq!(m1.cells.len(), 15);
    assert_eq!((m1.current.to_milliamps(), m1.voltage.raw()), (-2600, 49545));
    assert_eq!((m1.remaining.raw(), m1.user_defined, m1.total.raw(), m1.cycles), (33500, 2, 50000, 31));
    assert_eq!(dc(m1), [230, 220, 220, 220, 220]);
    // The test asserts the total power and the SOC of the group.
    let power_mw: i64 = a
        .modules
        .iter()
        .map(|m| i64::from(m.voltage.raw()) * i64::from(m.current.to_milliamps()))
        .sum::<i64>()
        / 1000;
    assert_eq!(power_mw, -386_277); // -386.2778 W
    let rem: u32 = a.modules.iter().map(|m| m.remaining.raw()).sum();
    let total: u32 = a.modules.iter().map(|m| m.total.raw()).sum();
    assert_eq!(rem * 100 / total, 67);
}

#[test]
fn y08_eight_cells_with_24_bit_capacities() {
    let a = analog(fixture!("python-pylontech/003-analog-reply-8-cells-ud4"));
    let m = &a.modules[0];
    assert_eq!((m.cells.len(), m.current.to_milliamps(), m.voltage.raw()), (8, -600, 26638));
    assert_eq!((m.user_defined, m.remaining.raw(), m.total.raw(), m.cycles), (4, 95460, 111000, 0));
    assert!(m.extra.is_empty());
}

#[test]
fn y09_module_management() {
    let Response::Management { command, limits } =
        response(0x92, fixture!("python-pylontech/001-management-reply-0x92"))
    else {
        panic!()
    };
    assert_eq!(command, 2);
    assert_eq!((limits.charge_voltage.raw(), limits.discharge_voltage.raw()), (28400, 23200));
    assert_eq!(
        (limits.charge_current.to_milliamps(), limits.discharge_current.to_milliamps()),
        (55500, -55500)
    );
    assert_eq!(limits.flags, ManagementFlags::CHARGE_ENABLE | ManagementFlags::DISCHARGE_ENABLE);
}

#[test]
fn martiby_us2000_session() {
    assert_eq!(
        request(fixture!("martiby-ess/001-analog-request")),
        Request { adr: 2, command: Command::Analog { command: 2 } }
    );
    let a = analog(fixture!("martiby-ess/002-analog-reply"));
    assert_eq!((a.info_flag, a.command, a.modules.len()), (0x10, 2, 1));
    let m = &a.modules[0];
    let mv: Vec<u16> = m.cells.iter().map(|c| c.raw()).collect();
    assert_eq!((mv.iter().min(), mv.iter().max(), mv.len()), (Some(&3224), Some(&3228), 15));
    assert_eq!(dc(m), [201, 170, 172, 168, 184]);
    assert_eq!(
        (m.current.to_milliamps(), m.voltage.raw(), m.remaining.raw(), m.total.raw(), m.cycles),
        (0, 48390, 6415, 50000, 132)
    );
    assert_eq!(m.soc().unwrap().raw(), 12); // 12.83 %, the docstring rounds to 13 %

    assert_eq!(request(fixture!("martiby-ess/003-serial-request")).command, Command::Serial { command: 2 });
    let Response::Serial { command, serial } = response(0x93, fixture!("martiby-ess/004-serial-reply"))
    else {
        panic!()
    };
    assert_eq!((command, serial.trimmed().as_ref()), (2, "HPTCR03171112590"));

    assert_eq!(request(fixture!("martiby-ess/005-alarm-request")).command, Command::Alarm { command: 2 });
    let Response::Alarm(al) = response(0x44, fixture!("martiby-ess/006-alarm-reply")) else { panic!() };
    assert_eq!((al.info_flag, al.command), (0x10, 2));
    let m = &al.modules[0];
    assert_eq!((m.cell_warns.len(), m.temp_warns.len()), (15, 5));
    assert!(m.cell_warns.iter().chain(&m.temp_warns).all(|w| *w == 0));
    assert_eq!(m.status_bytes(), [0x00, 0x0E, 0x00, 0x00, 0x00]);
    assert_eq!(
        m.status2,
        Status2::USING_BATTERY_POWER | Status2::DISCHARGE_MOSFET_ON | Status2::CHARGE_MOSFET_ON
    );
    assert_eq!(m.extra, [0x00]);

    assert_eq!(request(fixture!("martiby-ess/007-manufacturer-request")).command, Command::ManufacturerInfo);
    let Response::ManufacturerInfo(info) = response(0x51, fixture!("martiby-ess/008-manufacturer-reply"))
    else {
        panic!()
    };
    assert_eq!(info.device_name.trimmed(), "US2000C");
    assert_eq!(info.software_version, [1, 7]);
    assert_eq!(info.manufacturer.trimmed(), "Pylon---------------");
}

#[test]
fn zivillian_protocol_version_and_firmware() {
    let r = reply(0x4F, fixture!("zivillian-esp32/001-protocol-version-reply"));
    assert_eq!((r.ver, r.adr, r.outcome), (0x20, 2, Ok(Response::ProtocolVersion)));
    assert_eq!(
        response(0x96, fixture!("zivillian-esp32/002-firmware-reply")),
        Response::Firmware { command: 2, manufacture_version: [1, 3], mainline_version: [0, 6, 9] }
    );
}

#[test]
fn vards_system_parameters() {
    assert_eq!(
        request(fixture!("vards-fake-serial/001-system-parameters-request")).command,
        Command::SystemParameters
    );
    let Response::SystemParameters(p) =
        response(0x47, fixture!("vards-fake-serial/002-system-parameters-reply"))
    else {
        panic!()
    };
    assert_eq!((p.cell_high.raw(), p.cell_low.raw(), p.cell_under.raw()), (3650, 3050, 2900));
    assert_eq!((p.charge_high_temp.to_deci_celsius(), p.charge_low_temp.to_deci_celsius()), (610, -110));
    assert_eq!((p.charge_current.raw(), p.discharge_current.raw()), (1020, -1000));
    assert_eq!((p.module_high.raw(), p.module_low.raw(), p.module_under.raw()), (54000, 46000, 44500));
    assert_eq!(
        (p.discharge_high_temp.to_deci_celsius(), p.discharge_low_temp.to_deci_celsius()),
        (610, -110)
    );
}

#[test]
fn robske_cid2_invalid() {
    let r = reply(0x42, fixture!("robske110-pylonlv/001-cid2-invalid-reply"));
    assert_eq!(r.rtn(), Rtn::Cid2Invalid);
}

#[test]
fn pylon_v28_pdf_routine() {
    assert_eq!(
        request(fixture!("pylon-v28-pdf/001-analog-request")),
        Request { adr: 1, command: Command::Analog { command: 1 } }
    );
    let a = analog(fixture!("pylon-v28-pdf/002-analog-reply"));
    let m = &a.modules[0];
    let mv: Vec<u16> = m.cells.iter().map(|c| c.raw()).collect();
    assert_eq!((mv.len(), mv[0], mv.iter().min(), mv.iter().max()), (15, 3397, Some(&3390), Some(&3403)));
    assert_eq!(m.temps.iter().map(|t| t.raw()).collect::<Vec<_>>(), [3011, 3011, 3011, 3021, 3021]);
    assert_eq!(dc(m), [280, 280, 280, 290, 290]);
    assert_eq!(
        (m.current.raw(), m.voltage.raw(), m.remaining.raw(), m.user_defined, m.total.raw(), m.cycles),
        (0, 50981, 49000, 2, 50000, 2)
    );
}

#[test]
fn inverter_polls() {
    assert_eq!(
        request(fixture!("inverter-polls/001-system-analog-request")),
        Request { adr: 2, command: Command::SystemAnalog }
    );
    assert_eq!(
        request(fixture!("inverter-polls/002-system-recommend-request")),
        Request { adr: 2, command: Command::SystemManagement }
    );
    assert_eq!(request(fixture!("inverter-polls/004-system-recommend-request-adr12")).adr, 0x12);
    assert_eq!(
        request(fixture!("python-pylontech/004-analog-request-all")).command,
        Command::Analog { command: 0xFF }
    );
    // 0x42 without its command byte: a device answers RTN 05.
    let e = Request::parse(fixture!("inverter-polls/003-analog-request-empty-info")).unwrap_err();
    assert_eq!(e.to_string(), "info too short: command value needs 1 bytes at info byte 0, 0 left");
}

#[test]
fn the_spec_checksum_example_is_rejected() {
    let e = ascii_envelope::Frame::parse(fixture!("bad/001-spec-checksum-example")).unwrap_err();
    // LENGTH 56AB is not a valid length field either; the first problem found is reported.
    assert!(e.to_string().starts_with("length"), "{e}");
    assert_eq!(ascii_envelope::checksum(b"1203400456ABCEFE"), 0xFC71);
}

#[test]
fn json_names_and_units_of_a_group_reply() {
    let r = Reply::parse(0x42, fixture!("python-pylontech/002-analog-reply-3-modules"), Dialect::default())
        .unwrap();
    let v: serde_json::Value = serde_json::to_value(&r).unwrap();
    assert_eq!(v["adr"], 2);
    assert_eq!(v["rtn"], 0);
    assert_eq!(v["info_flag"], 0x11);
    assert_eq!(v["modules"][0]["current_ma"], -2600);
    assert_eq!(v["modules"][0]["voltage_mv"], 49545);
    assert_eq!(v["modules"][0]["temps_dc"][0], 230);
    assert_eq!(v["modules"][0]["total_mah"], 50000);
    assert_eq!(v["modules"][2]["cells_mv"][0], 0x0CE2);
}

#[test]
fn every_pylon_fixture_has_a_valid_envelope_except_the_bad_ones() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/pylon");
    let mut seen = 0;
    for sub in std::fs::read_dir(dir).unwrap() {
        let sub = sub.unwrap().path();
        for file in std::fs::read_dir(&sub).unwrap() {
            let path = file.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("txt") {
                continue;
            }
            let wire = std::fs::read(&path).unwrap();
            let bad = sub.ends_with("bad");
            assert_eq!(ascii_envelope::Frame::parse(&wire).is_err(), bad, "{}", path.display());
            seen += 1;
        }
    }
    assert!(seen >= 24, "only {seen} fixtures");
}
