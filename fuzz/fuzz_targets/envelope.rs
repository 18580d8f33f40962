//! Any bytes into the frame parser and its INFO cursor.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = ascii_envelope::Frame::parse(data) {
        let mut info = frame.info();
        while info.u16("word").is_ok() {}
        let _ = info.rest();
    }
});
