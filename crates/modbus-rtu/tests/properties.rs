//! Round trips and no-panic properties of the RTU framing and PDUs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use modbus_rtu::*;
use proptest::prelude::*;

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (any::<u16>(), 1u16..126).prop_map(|(address, count)| Request::ReadHolding { address, count }),
        (any::<u16>(), 1u16..126).prop_map(|(address, count)| Request::ReadInput { address, count }),
        (any::<u16>(), any::<u16>()).prop_map(|(address, value)| Request::WriteSingle { address, value }),
        (any::<u16>(), prop::collection::vec(any::<u16>(), 1..123))
            .prop_map(|(address, values)| Request::WriteMultiple { address, values }),
        any::<u16>().prop_map(|v| Request::Custom {
            function: FN_SET_LEVEL,
            data: vec![0, 0, (v >> 8) as u8, v as u8]
        }),
    ]
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        prop::collection::vec(any::<u16>(), 0..125).prop_map(Response::ReadHolding),
        prop::collection::vec(any::<u16>(), 0..125).prop_map(Response::ReadInput),
        (any::<u16>(), any::<u16>()).prop_map(|(address, value)| Response::WriteSingle { address, value }),
        (any::<u16>(), any::<u16>()).prop_map(|(address, count)| Response::WriteMultiple { address, count }),
        (0x01u8..0x7F, any::<u8>())
            .prop_map(|(function, c)| Response::Exception { function, code: ExceptionCode(c) }),
        any::<[u8; 4]>().prop_map(|d| Response::Custom { function: FN_SET_LEVEL, data: d.to_vec() }),
    ]
}

proptest! {
    #[test]
    fn requests_round_trip_through_the_decoder(slave in any::<u8>(), req in request(), chunk in 1usize..20) {
        let mut out = Vec::new();
        req.encode(slave, &mut out).unwrap();
        let mut d = Decoder::new(Side::Request);
        let mut got = Vec::new();
        for piece in out.chunks(chunk) {
            d.feed(piece, |f| got.push(f));
        }
        prop_assert_eq!(got.len(), 1);
        prop_assert_eq!(got[0].slave, slave);
        prop_assert_eq!(Request::parse(&got[0].pdu).unwrap(), req);
    }

    #[test]
    fn responses_round_trip_through_the_decoder(slave in any::<u8>(), rsp in response(), chunk in 1usize..20) {
        let mut out = Vec::new();
        rsp.encode(slave, &mut out).unwrap();
        let mut d = Decoder::new(Side::Response);
        let mut got = Vec::new();
        for piece in out.chunks(chunk) {
            d.feed(piece, |f| got.push(f));
        }
        prop_assert_eq!(got.len(), 1);
        prop_assert_eq!(Response::parse(&got[0].pdu).unwrap(), rsp);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(
        data in prop::collection::vec(any::<u8>(), 0..2000),
        chunk in 1usize..300,
        request_side in any::<bool>(),
    ) {
        let side = if request_side { Side::Request } else { Side::Response };
        let mut d = Decoder::new(side);
        for piece in data.chunks(chunk) {
            d.feed(piece, |f| {
                let _ = Request::parse(&f.pdu);
                let _ = Response::parse(&f.pdu);
            });
            prop_assert!(d.buffered() <= MAX_FRAME_LEN);
        }
    }

    #[test]
    fn arbitrary_pdus_never_panic(pdu in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = Request::parse(&pdu);
        let _ = Response::parse(&pdu);
        let _ = pdu_len(Side::Request, &pdu);
        let _ = pdu_len(Side::Response, &pdu);
    }

    #[test]
    fn a_frame_is_found_after_garbage(garbage in prop::collection::vec(any::<u8>(), 0..40), v in any::<u16>()) {
        let mut out = garbage.clone();
        Response::ReadHolding(vec![v, 1, 2]).encode(1, &mut out).unwrap();
        let mut d = Decoder::new(Side::Response);
        let mut got = Vec::new();
        d.feed(&out, |f| got.push(f));
        // Garbage that looks like the start of a long frame waits for the line to go quiet. A
        // stretch of garbage can hold a CRC-valid frame by chance (1 in 65536): the quiet line
        // gives that one first, and the real frame after it to the caller who asks on.
        while let Some(f) = d.gap() {
            got.push(f);
            while let Some(next) = d.next_frame() {
                got.extend(next.ok());
            }
        }
        prop_assert!(got.iter().any(|f| Response::parse(&f.pdu).ok() == Some(Response::ReadHolding(vec![v, 1, 2]))));
    }
}

#[test]
fn computed_frames_of_protocols_md() {
    let mut out = Vec::new();
    Request::ReadHolding { address: 200, count: 35 }.encode(1, &mut out).unwrap();
    assert_eq!(out, [0x01, 0x03, 0x00, 0xC8, 0x00, 0x23, 0x85, 0xED]);
    out.clear();
    Request::WriteMultiple { address: 301, values: vec![2] }.encode(1, &mut out).unwrap();
    assert_eq!(out, [0x01, 0x10, 0x01, 0x2D, 0x00, 0x01, 0x02, 0x00, 0x02, 0x31, 0x2C]);
    out.clear();
    Request::ReadInput { address: 0, count: 12 }.encode(1, &mut out).unwrap();
    assert_eq!(out, [0x01, 0x04, 0x00, 0x00, 0x00, 0x0C, 0xF0, 0x0F]);
    out.clear();
    Request::Custom { function: FN_SET_LEVEL, data: vec![0, 0, 0, 0] }.encode(1, &mut out).unwrap();
    assert_eq!(out, [0x01, 0x6F, 0x00, 0x00, 0x00, 0x00, 0xD5, 0xC3]);
    out.clear();
    Request::ReadHolding { address: 760, count: 20 }.encode(1, &mut out).unwrap();
    assert_eq!(out, [0x01, 0x03, 0x02, 0xF8, 0x00, 0x14, 0xC5, 0x8C]);
}
