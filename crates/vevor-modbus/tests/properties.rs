//! No PDU, value text or request makes the Vevor decoders, validation or device side panic, and
//! whatever validates is accepted by the device side.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use modbus_rtu::{Request, Response};
use proptest::prelude::*;
use vevor_modbus::*;

proptest! {
    #[test]
    fn arbitrary_pdus_never_panic(pdu in prop::collection::vec(any::<u8>(), 0..300), count in any::<u16>()) {
        let _ = parse_read(&pdu, count);
        let _ = parse_write(&pdu);
    }

    #[test]
    fn arbitrary_value_text_never_panics(text in ".{0,12}", k in any::<prop::sample::Index>()) {
        let items: Vec<_> = map::all().collect();
        let item = items[k.index(items.len())];
        let _ = parse_value(item, &text);
    }

    #[test]
    fn a_validated_write_is_accepted_by_the_device(k in any::<prop::sample::Index>(), raw in any::<u16>()) {
        let items: Vec<_> = map::all().filter(|i| i.access != map::Access::ReadOnly).collect();
        let item = items[k.index(items.len())];
        let mut regs = Registers::default();
        let (response, written) = regs.serve(&Request::WriteMultiple { address: item.address, values: vec![raw] });
        match validate_write(item, raw) {
            Ok(()) => {
                prop_assert_eq!(written, vec![item.address]);
                prop_assert_eq!(regs.get(item.address), raw);
            }
            Err(_) => prop_assert!(matches!(response, Response::Exception { .. }), "{:?}", response),
        }
    }

    #[test]
    fn reads_anywhere_never_panic(address in any::<u16>(), count in any::<u16>()) {
        let (response, _) = Registers::default().serve(&Request::ReadHolding { address, count });
        let mut out = Vec::new();
        let _ = response.encode(1, &mut out);
    }
}
