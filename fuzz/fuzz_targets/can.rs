//! Any bytes as an slcan stream, and every frame read from it through each CAN profile's
//! decoder: nothing panics, the decoder stays bounded, and what was understood re-encodes to
//! the same meaning.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut decoder = can_wire::slcan::Decoder::new();
    let mut rest = data;
    while !rest.is_empty() {
        let n = decoder.push(rest);
        rest = &rest[n..];
        while let Some(item) = decoder.next_item() {
            let can_wire::slcan::Item::Frame(frame) = item else { continue };
            for profile in pylon_can::Profile::ALL {
                if let Ok(Some(m)) = pylon_can::Message::decode(profile, &frame) {
                    assert_eq!(pylon_can::Message::decode(profile, &m.encode(profile)), Ok(Some(m)));
                }
            }
        }
        assert!(decoder.buffered() <= can_wire::slcan::MAX_LINE + can_wire::slcan::MAX_INPUT);
    }
});
