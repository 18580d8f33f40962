//! Round trips for every message type, and no input makes a decoder panic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use ascii_envelope::{FrameWriter, Header};
use pace_proto::*;
use proptest::prelude::*;
use units::{CentiAmpHours, CentiAmps, DeciKelvin, Millivolts, Percent};

fn mv() -> impl Strategy<Value = Millivolts> {
    any::<u16>().prop_map(Millivolts::from_raw)
}
fn dk() -> impl Strategy<Value = DeciKelvin<units::Pace>> {
    any::<u16>().prop_map(DeciKelvin::from_raw)
}
fn cah() -> impl Strategy<Value = CentiAmpHours> {
    any::<u16>().prop_map(CentiAmpHours::from_raw)
}
fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=max)
}

fn pack_analog(extra: Option<usize>) -> impl Strategy<Value = PackAnalog> {
    (
        prop::collection::vec(mv(), 0..20),
        prop::collection::vec(dk(), 0..10),
        any::<i16>(),
        mv(),
        cah(),
        any::<u8>(),
        (cah(), any::<u16>(), cah()),
        bytes(20),
    )
        .prop_map(
            move |(
                cells,
                temps,
                current,
                voltage,
                remaining,
                user_defined,
                (full, cycles, design),
                mut ex,
            )| {
                let implied = match user_defined {
                    9 | 4 => 14,
                    2 => 1,
                    _ => 0,
                };
                ex.resize(extra.map_or(ex.len(), |_| implied), 0xA5);
                PackAnalog {
                    cells,
                    temps,
                    current: CentiAmps::from_raw(current),
                    voltage,
                    remaining,
                    user_defined,
                    full,
                    cycles,
                    design,
                    extra: ex,
                }
            },
        )
}

fn analog() -> impl Strategy<Value = AnalogReply> {
    prop_oneof![
        (any::<u8>(), pack_analog(None)).prop_map(|(info_flag, p)| AnalogReply {
            info_flag,
            command: 1,
            packs: vec![p]
        }),
        (any::<u8>(), 2usize..5)
            .prop_flat_map(|(f, m)| (Just(f), prop::collection::vec(pack_analog(Some(0)), m)))
            .prop_map(|(info_flag, packs)| {
                // Every pack of one reply carries the same vendor-byte count, the one pack 1's P implies.
                let e = packs[0].extra.len();
                let packs = packs
                    .into_iter()
                    .map(|mut p| {
                        p.extra.resize(e, 0x5A);
                        p
                    })
                    .collect::<Vec<_>>();
                AnalogReply { info_flag, command: packs.len() as u8, packs }
            }),
    ]
}

fn pack_status(with_extra: bool) -> impl Strategy<Value = PackStatus> {
    (bytes(20), bytes(10), any::<[u8; 12]>(), bytes(4)).prop_map(move |(cells, temps, s, extra)| PackStatus {
        cell_warns: cells.into_iter().map(WarnValue::from_raw).collect(),
        temp_warns: temps.into_iter().map(WarnValue::from_raw).collect(),
        charge_current_warn: WarnValue::from_raw(s[0]),
        voltage_warn: WarnValue::from_raw(s[1]),
        discharge_current_warn: WarnValue::from_raw(s[2]),
        protect1: Protect1::from_bits_retain(s[3]),
        protect2: Protect2::from_bits_retain(s[4]),
        system: SystemState::from_bits_retain(s[5]),
        control: ControlState::from_bits_retain(s[6]),
        fault: FaultState::from_bits_retain(s[7]),
        balance: Balance([s[8], s[9]]),
        warn1: Warn1::from_bits_retain(s[10]),
        warn2: Warn2::from_bits_retain(s[11]),
        extra: if with_extra { extra } else { Vec::new() },
    })
}

fn status() -> impl Strategy<Value = StatusReply> {
    prop_oneof![
        (any::<u8>(), pack_status(true)).prop_map(|(info_flag, p)| StatusReply {
            info_flag,
            command: 1,
            packs: vec![p]
        }),
        (any::<u8>(), prop::collection::vec(pack_status(false), 2..5))
            .prop_map(|(info_flag, packs)| StatusReply { info_flag, command: packs.len() as u8, packs }),
    ]
}

fn voltage() -> impl Strategy<Value = VoltageProtection> {
    (any::<u8>(), mv(), mv(), mv(), any::<u8>()).prop_map(|(lead, alarm, protect, release, delay)| {
        VoltageProtection { lead, alarm, protect, release, delay }
    })
}
fn current() -> impl Strategy<Value = CurrentProtection> {
    (any::<u8>(), any::<i16>(), any::<i16>(), any::<u8>())
        .prop_map(|(lead, alarm_a, protect_a, delay)| CurrentProtection { lead, alarm_a, protect_a, delay })
}
fn temps() -> impl Strategy<Value = TempThresholds> {
    (dk(), dk(), dk()).prop_map(|(alarm, protect, release)| TempThresholds { alarm, protect, release })
}

/// A configuration block; `read` allows what only a read reply carries (the E3 repeat, A6).
fn config(read: bool) -> impl Strategy<Value = Config> {
    let extra = if read { bytes(3).boxed() } else { Just(Vec::new()).boxed() };
    let all = prop_oneof![
        voltage().prop_map(Config::CellOv),
        voltage().prop_map(Config::CellUv),
        voltage().prop_map(Config::PackOv),
        voltage().prop_map(Config::PackUv),
        current().prop_map(Config::ChargeOc),
        current().prop_map(Config::DischargeOc1),
        (any::<[u8; 3]>(), extra).prop_map(|([lead, protect_a, delay], extra)| Config::DischargeOc2(
            DischargeOc2 { lead, protect_a, delay, extra }
        )),
        any::<u8>().prop_map(|delay| Config::ShortCircuit(ShortCircuit { delay })),
        (mv(), mv()).prop_map(|(threshold, delta)| Config::Balancing(Balancing { threshold, delta })),
        (mv(), any::<u8>(), any::<u8>()).prop_map(|(cell, lead, minutes)| Config::Sleep(Sleep {
            cell,
            lead,
            minutes
        })),
        (mv(), any::<u16>(), any::<u8>()).prop_map(|(voltage, current_ma, p)| Config::FullCharge(
            FullCharge { voltage, current_ma, low_soc: Percent::from_raw(p) }
        )),
        (any::<u8>(), temps(), temps()).prop_map(|(lead, charge, discharge)| Config::OverTemp(
            ChargeDischargeTemps { lead, charge, discharge }
        )),
        (any::<u8>(), temps(), temps()).prop_map(|(lead, charge, discharge)| Config::UnderTemp(
            ChargeDischargeTemps { lead, charge, discharge }
        )),
        (any::<u8>(), temps()).prop_map(|(lead, over)| Config::MosfetTemp(MosfetTemp { lead, over })),
        (any::<u8>(), temps(), temps())
            .prop_map(|(lead, under, over)| Config::EnvironmentTemp(EnvironmentTemps { lead, under, over })),
        (any::<u8>(), any::<u8>())
            .prop_map(|(lead, current_a)| Config::ChargeLimiter(ChargeLimiter { lead, current_a })),
        (cah(), cah(), cah()).prop_map(|(remaining, full, design)| Config::Capacity(Capacity {
            remaining,
            full,
            design
        })),
        any::<[u8; 3]>().prop_map(|[can, rs485, mode]| Config::Protocols(Protocols { can, rs485, mode })),
        any::<[u8; 6]>().prop_map(|[year, month, day, hour, minute, second]| Config::Time(DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second
        })),
    ];
    all.prop_filter("writes of read-only blocks do not exist", move |c| {
        read || c.kind().write_cid2().is_some()
    })
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        any::<u8>().prop_map(|pack| Command::Analog { pack }),
        any::<u8>().prop_map(|pack| Command::Status { pack }),
        Just(Command::PackCount),
        Just(Command::Version),
        Just(Command::Serial),
        prop::sample::select(ConfigKind::ALL).prop_map(Command::ReadConfig),
        config(false).prop_map(Command::WriteConfig),
        any::<u8>().prop_map(|b| Command::Switch(SwitchCommand::from_raw(b))),
        any::<u8>().prop_map(|b| Command::ChargeMosfet(MosfetSwitch::from_raw(b))),
        any::<u8>().prop_map(|b| Command::DischargeMosfet(MosfetSwitch::from_raw(b))),
        Just(Command::Shutdown),
        any::<u16>().prop_map(|index| Command::History { index }),
    ]
}

fn history() -> impl Strategy<Value = HistoryRecord> {
    (
        any::<[u8; 6]>(),
        prop::collection::vec(mv(), 0..17),
        prop::collection::vec(dk(), 0..7),
        any::<i16>(),
        mv(),
        cah(),
        cah(),
        bytes(12),
    )
        .prop_map(|(t, cells, temps, current, voltage, remaining, full, extra)| HistoryRecord {
            time: DateTime { year: t[0], month: t[1], day: t[2], hour: t[3], minute: t[4], second: t[5] },
            cells,
            temps,
            current: CentiAmps::from_raw(current),
            voltage,
            remaining,
            full,
            extra,
        })
}

/// A response together with the CID2 of a request it answers.
fn response() -> impl Strategy<Value = (u8, Response)> {
    let ack_cid2 = prop::sample::select(
        ConfigKind::ALL.iter().filter_map(|k| k.write_cid2()).chain([0x9C, 0xA1]).collect::<Vec<_>>(),
    );
    prop_oneof![
        analog().prop_map(|a| (0x42, Response::Analog(a))),
        status().prop_map(|s| (0x44, Response::Status(s))),
        any::<u8>().prop_map(|count| (0x90, Response::PackCount { count })),
        any::<[u8; 20]>().prop_map(|t| (0xC1, Response::Version { version: Text(t.to_vec()) })),
        (any::<bool>(), any::<[u8; 40]>()).prop_map(|(short, t)| (
            0xC2,
            Response::Serial { serial: Text(t[..if short { 20 } else { 40 }].to_vec()) }
        )),
        config(true).prop_map(|c| (c.kind().read_cid2(), Response::Config(c))),
        (any::<u8>(), any::<u8>()).prop_map(|(c, s)| (
            0x99,
            Response::Switch {
                command: SwitchCommand::from_raw(c),
                control: ControlState::from_bits_retain(s)
            }
        )),
        (prop::sample::select(vec![0x9A, 0x9B]), any::<u8>())
            .prop_map(|(cid2, s)| (cid2, Response::Mosfet { system: SystemState::from_bits_retain(s) })),
        history().prop_map(|h| (0xA1, Response::History(h))),
        ack_cid2.prop_map(|cid2| (cid2, Response::Ack)),
    ]
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
    fn replies_round_trip(adr in any::<u8>(), (cid2, response) in response()) {
        let reply = Reply { adr, outcome: Ok(response) };
        let mut out = Vec::new();
        reply.emit(&mut out).unwrap();
        let back = Reply::parse(cid2, &out).unwrap();
        prop_assert_eq!(back, reply);
    }

    #[test]
    fn refusals_round_trip(adr in any::<u8>(), rtn in 1u8.., info in bytes(8), cid2 in any::<u8>()) {
        let reply = Reply { adr, outcome: Err(Refusal { rtn: Rtn::from_raw(rtn), info }) };
        let mut out = Vec::new();
        reply.emit(&mut out).unwrap();
        prop_assert_eq!(Reply::parse(cid2, &out).unwrap(), reply);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in bytes(300), cid2 in any::<u8>()) {
        let _ = Request::parse(&data);
        let _ = Reply::parse(cid2, &data);
    }

    /// Valid envelopes with random INFO reach every INFO decoder.
    #[test]
    fn arbitrary_info_never_panics(cid2 in any::<u8>(), info in bytes(200), as_request in any::<bool>()) {
        let mut out = Vec::new();
        let header = Header { ver: 0x25, adr: 1, cid1: 0x46, cid2: if as_request { cid2 } else { 0 } };
        let mut w = FrameWriter::new(&mut out, header);
        w.bytes(&info);
        w.finish().unwrap();
        if as_request {
            let _ = Request::parse(&out);
        } else if let Ok(reply) = Reply::parse(cid2, &out) {
            // Whatever decodes must encode again.
            let mut again = Vec::new();
            reply.emit(&mut again).unwrap();
        }
    }
}

#[test]
fn a_write_of_a_read_only_block_is_refused() {
    let req = Request { adr: 0, command: Command::WriteConfig(Config::Capacity(Capacity::default())) };
    assert_eq!(req.emit(&mut Vec::new()), Err(Error::ReadOnly("capacity")));
}

#[test]
fn reply_errors_name_the_field() {
    // A 0x42 reply cut off in the middle of pack 1's voltage.
    let mut out = Vec::new();
    let mut w = FrameWriter::new(&mut out, Header { ver: 0x25, adr: 1, cid1: 0x46, cid2: 0 });
    w.bytes(&[0x00, 0x01, 0x01, 0x0C, 0xC7, 0x00, 0xFF, 0x1F, 0xCC]);
    w.finish().unwrap();
    let e = Reply::parse(0x42, &out).unwrap_err();
    assert_eq!(e.to_string(), "info too short: pack voltage needs 2 bytes at info byte 8, 1 left");
    assert_eq!(Reply::parse(0x77, b"~250046000000FDAF").unwrap_err().to_string(), "unknown CID2 77");
}
