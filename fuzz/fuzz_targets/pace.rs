//! Any bytes as a Pace request and as the reply to any CID2; whatever decodes must encode again.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&cid2, frame)) = data.split_first() else { return };
    if let Ok(req) = pace_proto::Request::parse(frame) {
        let _ = req.emit(&mut Vec::new());
    }
    if let Ok(reply) = pace_proto::Reply::parse(cid2, frame) {
        assert!(reply.emit(&mut Vec::new()).is_ok());
    }
});
