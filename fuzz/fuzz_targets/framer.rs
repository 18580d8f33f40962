//! Any bytes, in chunks of any size, into the stream framer: every frame it yields is `~ … CR`,
//! and it never holds more than its bound.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else { return };
    let mut framer = ascii_envelope::Framer::with_max_frame_len(64 + usize::from(chunk));
    for piece in rest.chunks(usize::from(chunk).max(1)) {
        framer.feed(piece, |f| assert!(f.first() == Some(&b'~') && f.last() == Some(&b'\r')));
        assert!(framer.buffered() <= 64 + usize::from(chunk));
    }
});
