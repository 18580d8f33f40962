//! Real frames (fixtures/can, one file per capture) decoded against the values their sources
//! state, and encoded back byte for byte where our profile sends that layout.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use pylon_can::*;

fn capture(name: &str) -> Vec<CanFrame> {
    let path = format!("{}/../../fixtures/can/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| l.split_once('#').map_or(l, |_| l.split("  #").next().unwrap()).trim())
        .filter(|l| !l.is_empty())
        .map(|l| l.parse().unwrap())
        .collect()
}

fn decode(profile: Profile, f: &CanFrame) -> Message {
    Message::decode(profile, f).unwrap().unwrap_or_else(|| panic!("{f} not known"))
}

#[test]
fn a_us5000_on_v1_2_firmware() {
    let frames = capture("us5000-v1.2.log");
    let got: Vec<Message> = frames.iter().map(|f| decode(Profile::Pylon, f)).collect();
    assert_eq!(
        got[0],
        Message::Limits(Limits {
            charge_voltage_dv: 532,
            charge_current_da: 4800,
            discharge_current_da: 4800,
            discharge_voltage_dv: Some(450),
        })
    );
    assert_eq!(
        got[1],
        Message::Soc(Soc { soc_pct: 88, soh_pct: 94, soc_centi_pct: None, cell_max_min_mv: None })
    );
    assert_eq!(
        got[2],
        Message::Measurements(Measurements {
            voltage_cv: 4986,
            current_da: -270,
            temperature_dc: 363,
            temperature_min_dc: None
        })
    );
    assert_eq!(
        got[3],
        Message::Protection(ProtectionFlags {
            protection: Protection::empty(),
            alarm: Alarm::empty(),
            modules: 6,
            capacity_ah: None
        })
    );
    assert_eq!(
        got[4],
        Message::Requests(Requests {
            flags: RequestFlags::CHARGE_ENABLE | RequestFlags::DISCHARGE_ENABLE,
            cycles: None
        })
    );
    let Message::Manufacturer { name } = got[5] else { panic!() };
    assert_eq!((name.text(), name.as_bytes()), ("PYLON".to_owned(), &b"PYLON   "[..]));
    // Our pylon profile sends these six layouts byte for byte.
    for (m, f) in got.iter().zip(&frames) {
        assert_eq!(m.encode(Profile::Pylon), *f, "{f}");
    }
}

#[test]
fn a_us5000_on_new_firmware() {
    let frames = capture("us5000-new.log");
    let got: Vec<Message> = frames.iter().map(|f| decode(Profile::Pylon, f)).collect();
    assert_eq!(
        got[1],
        Message::Soc(Soc { soc_pct: 84, soh_pct: 96, soc_centi_pct: Some(0), cell_max_min_mv: None })
    );
    assert_eq!(
        got[2],
        Message::Measurements(Measurements {
            voltage_cv: 4987,
            current_da: -279,
            temperature_dc: 363,
            temperature_min_dc: None
        })
    );
    let Message::Alarms(a) = got[3] else { panic!() };
    assert!(AlarmKind::ALL.iter().all(|k| a.alarms.get(*k).is_none() && a.warnings.get(*k).is_none()));
    assert_eq!(
        got[5],
        Message::Info(BatteryInfo { kind: *b"LI", version: (1, 3), capacity_ah: 572, extra: 0x00AA })
    );
    for (m, f) in got.iter().zip(&frames) {
        assert_eq!(m.encode(Profile::Pylon), *f, "{f}");
    }
}

#[test]
fn a_byd_stack_and_a_victron_gx() {
    let frames = capture("byd-lvs-victron.log");
    let got: Vec<Message> = frames[..14].iter().map(|f| decode(Profile::Victron, f)).collect();
    let Message::Limits(l) = got[0] else { panic!() };
    assert_eq!(
        (l.charge_voltage_dv, l.charge_current_da, l.discharge_current_da, l.discharge_voltage_dv),
        (584, 1280, 1280, Some(430))
    );
    let Message::Soc(s) = got[1] else { panic!() };
    assert_eq!((s.soc_pct, s.soh_pct), (67, 100));
    let Message::Measurements(m) = got[2] else { panic!() };
    assert_eq!((m.voltage_cv, m.current_da, m.temperature_dc), (5310, -7, 140));
    let Message::Alarms(a) = got[3] else { panic!() };
    assert!(
        AlarmKind::ALL.iter().all(|k| a.alarms.get(*k) == Some(false) && a.warnings.get(*k) == Some(false))
    );
    assert_eq!(got[4], Message::Events(Events { bits: 0 }));
    let Message::Manufacturer { name } = got[5] else { panic!() };
    assert_eq!(name.text(), "BYD");
    let Message::Info(i) = got[6] else { panic!() };
    assert_eq!((i.kind, i.capacity_ah), (*b"Li", 105));
    assert_eq!(
        got[7],
        Message::Modules(ModuleCounts { online: 2, blocking_charge: 0, blocking_discharge: 0, offline: 0 })
    );
    assert_eq!(
        got[8],
        Message::CellExtremes(CellExtremes { min_mv: 3306, max_mv: 3329, min_temp_k: 287, max_temp_k: 290 })
    );
    let Message::ExtremeId { extreme: Extreme::MinCellVoltage, name } = got[9] else { panic!() };
    assert_eq!(name.text(), "2");
    let Message::ExtremeId { extreme: Extreme::MaxCellTemperature, name } = got[10] else { panic!() };
    assert_eq!(name.text(), "1");
    assert_eq!(got[11], Message::Capacity { capacity_ah: 156 });
    let Message::Family { name } = got[12] else { panic!() };
    assert_eq!(name.text(), "PREMIUM");
    assert_eq!(got[13], Message::Heartbeat(Heartbeat { data: [0; 8], len: 8 }));
    // The GX's 0x307 is not ours to read.
    assert_eq!(Message::decode(Profile::Victron, &frames[14]).unwrap(), None);
}

#[test]
fn a_pytes_stack_and_a_victron_gx() {
    let frames = capture("pytes-victron.log");
    let got: Vec<Message> = frames.iter().map(|f| decode(Profile::Victron, f)).collect();
    let Message::Limits(l) = got[0] else { panic!() };
    assert_eq!(
        (l.charge_voltage_dv, l.charge_current_da, l.discharge_current_da, l.discharge_voltage_dv),
        (568, 1000, 1000, Some(455))
    );
    let Message::Measurements(m) = got[2] else { panic!() };
    assert_eq!((m.voltage_cv, m.current_da, m.temperature_dc), (5262, -7, 180));
    let Message::Manufacturer { name } = got[4] else { panic!() };
    assert_eq!((name.text(), name.as_bytes().len()), ("PYTES".to_owned(), 5));
    let Message::Info(i) = got[5] else { panic!() };
    assert_eq!(i.capacity_ah, 50);
    assert_eq!(
        got[6],
        Message::Modules(ModuleCounts { online: 2, blocking_charge: 1, blocking_discharge: 1, offline: 2 })
    );
    assert_eq!(
        got[7],
        Message::CellExtremes(CellExtremes { min_mv: 3288, max_mv: 3290, min_temp_k: 289, max_temp_k: 291 })
    );
    let Message::ExtremeId { name, .. } = got[8] else { panic!() };
    assert_eq!(name.text(), "0800");
    assert_eq!(got[9], Message::Capacity { capacity_ah: 100 });
}

#[test]
fn short_frames_and_strangers_are_named_or_passed_over() {
    let short: CanFrame = "351#1402C012".parse().unwrap();
    assert_eq!(
        Message::decode(Profile::Pylon, &short).unwrap_err().to_string(),
        "frame 351 has 4 data bytes; its layout needs 6"
    );
    let remote: CanFrame = "35C#R2".parse().unwrap();
    assert!(
        Message::decode(Profile::Pylon, &remote)
            .unwrap_err()
            .to_string()
            .contains("not a standard data frame")
    );
    for stranger in ["123#00", "18FF50E5#0102", "351000#00"] {
        if let Ok(f) = stranger.parse::<CanFrame>() {
            assert_eq!(Message::decode(Profile::Pylon, &f).unwrap(), None, "{stranger}");
        }
    }
}

#[test]
fn each_profile_sends_its_set_with_its_lengths() {
    let b = Battery { soc_centi_pct: 5049, capacity_ah: 200, cycles: 17, modules: 2, ..Battery::default() };
    let lens = |p: Profile| frames(p, &b).iter().map(|f| (f.id().raw(), f.len())).collect::<Vec<_>>();
    assert_eq!(
        lens(Profile::Pylon),
        [(0x351, 8), (0x355, 4), (0x356, 6), (0x359, 7), (0x35C, 2), (0x35E, 8)]
    );
    assert!(lens(Profile::Solark).iter().all(|(_, len)| *len == 8));
    assert!(lens(Profile::Lux).iter().all(|(_, len)| *len == 8));
    assert_eq!(
        lens(Profile::Sma).iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        [0x351, 0x355, 0x356, 0x35A, 0x35B, 0x35E, 0x35F]
    );
    // SMA: SOC in 0.01 %, unused fields "invalid".
    let sma = frames(Profile::Sma, &b);
    assert_eq!(sma[1].data(), [50, 0, 100, 0, 0xB9, 0x13]);
    assert_eq!(&sma[6].data()[6..], [0xFF, 0xFF]);
    // Lux: capacity in 0x359 and cycles in 0x35C.
    let lux = frames(Profile::Lux, &b);
    assert_eq!(&lux[3].data()[4..7], [2, 200, 0]);
    assert_eq!(&lux[4].data()[2..4], [17, 0]);
    // Sol-Ark: voltage in 0.1 V.
    let b = Battery { voltage_cv: 5262, ..b };
    assert_eq!(&frames(Profile::Solark, &b)[2].data()[..2], 526u16.to_le_bytes());
    assert_eq!(&frames(Profile::Pylon, &b)[2].data()[..2], 5262u16.to_le_bytes());
}

#[test]
fn sma_alarm_pairs_follow_the_protections() {
    let b =
        Battery { protection: Protection::OVER_VOLTAGE, alarm: Alarm::LOW_TEMPERATURE, ..Battery::default() };
    let Message::Alarms(a) = decode(Profile::Sma, &frames(Profile::Sma, &b)[3]) else { panic!() };
    assert_eq!(a.alarms.raised().collect::<Vec<_>>(), [AlarmKind::General, AlarmKind::HighVoltage]);
    assert_eq!(a.warnings.raised().collect::<Vec<_>>(), [AlarmKind::General, AlarmKind::LowTemperature]);
    assert_eq!(a.alarms.get(AlarmKind::LowVoltage), Some(false), "reported and cleared");
    assert_eq!(a.alarms.get(AlarmKind::Contactor), None, "not known here: not reported");
}

#[test]
fn regression_a_short_frame_in_a_padded_profile_keeps_its_meaning() {
    // Found by the proptest: Lux pads 0x374 to eight NULs, which is the same empty name.
    let empty: CanFrame = "374#".parse().unwrap();
    let m = Message::decode(Profile::Lux, &empty).unwrap().unwrap();
    let padded = m.encode(Profile::Lux);
    assert_eq!(padded.data(), [0; 8]);
    assert_eq!(Message::decode(Profile::Lux, &padded).unwrap(), Some(m));
    // The inverter's frames are never padded.
    let beat = Message::Heartbeat(Heartbeat { data: [0; 8], len: 0 });
    assert_eq!(beat.encode(Profile::Solark).len(), 0);
    // A 6-byte 0x351 in Sol-Ark comes back once with its discharge voltage 0, then stays.
    let short: CanFrame = "351#1402C012C012".parse().unwrap();
    let once = Message::decode(
        Profile::Solark,
        &Message::decode(Profile::Solark, &short).unwrap().unwrap().encode(Profile::Solark),
    )
    .unwrap()
    .unwrap();
    assert_eq!(Message::decode(Profile::Solark, &once.encode(Profile::Solark)).unwrap(), Some(once));
}
