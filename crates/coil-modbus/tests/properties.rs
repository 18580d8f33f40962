//! Register round trips, and no PDU or request makes the decoders or the device side panic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use coil_modbus::*;
use modbus_rtu::Request;
use proptest::prelude::*;

proptest! {
    #[test]
    fn readings_and_settings_round_trip(r in any::<[u16; 12]>(), s in any::<[u16; 10]>()) {
        prop_assert_eq!(Reading::from_registers(&r).to_registers(), r);
        prop_assert_eq!(Settings::from_registers(&s).to_registers(), s);
    }

    #[test]
    fn arbitrary_pdus_never_panic(pdu in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_inputs(&pdu);
        let _ = parse_settings(&pdu);
    }

    #[test]
    fn the_device_side_answers_any_request(address in any::<u16>(), count in any::<u16>(), values in prop::collection::vec(any::<u16>(), 0..20), data in prop::collection::vec(any::<u8>(), 0..8)) {
        let mut regs = Registers { reading: Reading::from_registers(&[0; 12]), settings: Settings::default() };
        for req in [
            Request::ReadInput { address, count },
            Request::ReadHolding { address, count },
            Request::WriteSingle { address, value: count },
            Request::WriteMultiple { address, values: values.clone() },
            Request::Custom { function: 0x6F, data: data.clone() },
            Request::Custom { function: 0x41, data: data.clone() },
        ] {
            let (response, _) = regs.serve(&req);
            let mut out = Vec::new();
            let _ = response.encode(1, &mut out);
        }
    }
}
