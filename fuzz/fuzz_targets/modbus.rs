//! Any bytes, in any chunks, into the RTU decoder of both directions, and every PDU it yields into
//! the request/response parsers and the coil and Vevor decoders.
#![no_main]
use modbus_rtu::{Decoder, Request, Response, Side};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else { return };
    for side in [Side::Request, Side::Response] {
        let mut d = Decoder::new(side);
        for piece in rest.chunks(usize::from(chunk).max(1)) {
            d.feed(piece, |f| {
                let _ = Request::parse(&f.pdu);
                if let Ok(r) = Response::parse(&f.pdu) {
                    assert!(r.encode(f.slave, &mut Vec::new()).is_ok() || matches!(r, Response::ReadHolding(ref v) | Response::ReadInput(ref v) if v.len() > 125));
                }
                let _ = coil_modbus::parse_inputs(&f.pdu);
                let _ = coil_modbus::parse_settings(&f.pdu);
                let _ = vevor_modbus::parse_read(&f.pdu, 34);
                let _ = vevor_modbus::parse_write(&f.pdu);
            });
            assert!(d.buffered() <= modbus_rtu::MAX_FRAME_LEN);
        }
    }
});
