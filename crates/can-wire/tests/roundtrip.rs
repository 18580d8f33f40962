//! Every frame survives a trip through an slcan line, and no byte stream makes the decoder panic
//! or grow.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use can_wire::slcan::{self, Decoder, Item};
use can_wire::{CanFrame, CanId};
use proptest::prelude::*;

fn any_frame() -> impl Strategy<Value = CanFrame> {
    let id = prop_oneof![
        (0u16..=CanId::MAX_STANDARD).prop_map(CanId::Standard),
        (0u32..=CanId::MAX_EXTENDED).prop_map(CanId::Extended),
    ];
    (id, proptest::collection::vec(any::<u8>(), 0..=8), any::<bool>()).prop_map(|(id, data, remote)| {
        if remote {
            CanFrame::remote(id, data.len() as u8).unwrap()
        } else {
            CanFrame::new(id, &data).unwrap()
        }
    })
}

#[test]
fn candump_notation_errors_name_the_problem() {
    for (text, reason) in [
        ("351", "no '#'"),
        ("35G#00", "the id is not hex"),
        ("3510#00", "3 hex digits"),
        ("800#", "out of range"),
        ("351#0", "odd number"),
        ("351#000000000000000000", "more than 8"),
        ("351#R9", "0 to 8"),
        ("351#ZZ", "not hex"),
        ("+35#00", "the id is not hex"),
        ("35C#+F", "the data is not hex"),
    ] {
        let e = text.parse::<CanFrame>().unwrap_err().to_string();
        assert!(e.contains(reason), "{text}: {e}");
    }
    assert_eq!("35C#C0.00".parse::<CanFrame>().unwrap().data(), [0xC0, 0x00]);
    assert!("7FF#R".parse::<CanFrame>().unwrap().is_remote());
}

proptest! {
    #[test]
    fn frames_round_trip_through_lines(frames in proptest::collection::vec(any_frame(), 0..20), split in 1usize..40) {
        let mut bytes = Vec::new();
        for f in &frames {
            slcan::encode(f, &mut bytes);
        }
        let mut decoder = Decoder::new();
        let mut got = Vec::new();
        for chunk in bytes.chunks(split) {
            assert_eq!(decoder.push(chunk), chunk.len());
            while let Some(item) = decoder.next_item() {
                got.push(item);
            }
        }
        let want: Vec<Item> = frames.into_iter().map(Item::Frame).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn frames_round_trip_through_candump_notation(frame in any_frame()) {
        let text = frame.to_string();
        prop_assert_eq!(text.parse::<CanFrame>().unwrap(), frame);
    }

    #[test]
    fn any_text_parses_or_names_its_problem(text in ".{0,30}") {
        let _ = text.parse::<CanFrame>();
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
        let mut decoder = Decoder::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let n = decoder.push(rest);
            rest = &rest[n..];
            while let Some(item) = decoder.next_item() {
                if let Item::Frame(f) = item {
                    // A frame read from noise is still a valid frame: it encodes back to a line.
                    let mut line = Vec::new();
                    slcan::encode(&f, &mut line);
                    prop_assert!(line.len() <= slcan::MAX_LINE);
                }
            }
            prop_assert!(decoder.buffered() <= slcan::MAX_LINE + slcan::MAX_INPUT);
        }
    }
}
