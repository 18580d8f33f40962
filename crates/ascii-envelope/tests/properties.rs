//! Property tests: emit/parse round trips, and no input makes the parser or the framer panic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use ascii_envelope::{Frame, FrameWriter, Framer, Header};
use proptest::prelude::*;

fn header() -> impl Strategy<Value = Header> {
    (any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(ver, adr, cid1, cid2)| Header {
        ver,
        adr,
        cid1,
        cid2,
    })
}

proptest! {
    #[test]
    fn emitted_frames_parse_back(h in header(), info in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut out = Vec::new();
        let mut w = FrameWriter::new(&mut out, h);
        w.bytes(&info);
        let n = w.finish().unwrap();
        prop_assert_eq!(n, out.len());
        let f = Frame::parse(&out).unwrap();
        prop_assert_eq!(f.header(), h);
        prop_assert_eq!(f.info().rest(), info);
    }

    #[test]
    fn any_single_character_change_is_caught(
        h in header(),
        info in prop::collection::vec(any::<u8>(), 0..40),
        pos in any::<prop::sample::Index>(),
        delta in 1u8..16,
    ) {
        let mut out = Vec::new();
        let mut w = FrameWriter::new(&mut out, h);
        w.bytes(&info);
        w.finish().unwrap();
        // Change one hex digit (not SOI, not CR) to another hex digit.
        let i = 1 + pos.index(out.len() - 2);
        let digit = |c: u8| if c.is_ascii_digit() { c - b'0' } else { c - b'A' + 10 };
        let new = (digit(out[i]) + delta) % 16;
        out[i] = b"0123456789ABCDEF"[usize::from(new)];
        prop_assert!(Frame::parse(&out).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_parser(data in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(f) = Frame::parse(&data) {
            let mut info = f.info();
            while info.u8("byte").is_ok() {}
        }
    }

    #[test]
    fn near_frames_never_panic_the_parser(body in "[0-9A-Fa-f~\r]{0,60}") {
        let data = format!("~{body}");
        let _ = Frame::parse(data.as_bytes());
    }

    #[test]
    fn framer_finds_every_frame_in_garbage(
        frames in prop::collection::vec((header(), prop::collection::vec(any::<u8>(), 0..20)), 1..8),
        noise in prop::collection::vec(prop::collection::vec(any::<u8>().prop_filter("no SOI", |b| *b != b'~'), 0..10), 8),
        chunk in 1usize..50,
    ) {
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for (k, (h, info)) in frames.iter().enumerate() {
            // Garbage ending in CR guarantees the previous frame is closed and the noise is not a frame.
            stream.extend_from_slice(&noise[k]);
            let start = stream.len();
            let mut w = FrameWriter::new(&mut stream, *h);
            w.bytes(info);
            w.finish().unwrap();
            expected.push(stream[start..].to_vec());
        }
        let mut framer = Framer::new();
        let mut got = Vec::new();
        for piece in stream.chunks(chunk) {
            framer.feed(piece, |f| got.push(f.to_vec()));
        }
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_framer_and_stay_bounded(
        data in prop::collection::vec(any::<u8>(), 0..2000),
        max in 0usize..100,
        chunk in 1usize..300,
    ) {
        let mut framer = Framer::with_max_frame_len(max);
        let mut total = 0usize;
        for piece in data.chunks(chunk) {
            framer.feed(piece, |f| total += f.len());
            prop_assert!(framer.buffered() <= max.max(18));
        }
        prop_assert_eq!(total as u64 + framer.discarded() + framer.buffered() as u64, data.len() as u64);
    }
}
