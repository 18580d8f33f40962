//! Any bytes as a Pylontech request and as the reply to any CID2 in both dialects; whatever
//! decodes must encode again.
#![no_main]
use pylon_proto::{Dialect, Reply, Request, SystemCurrentUnit};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&cid2, frame)) = data.split_first() else { return };
    if let Ok(req) = Request::parse(frame) {
        assert!(req.emit(&mut Vec::new()).is_ok());
    }
    for unit in [SystemCurrentUnit::CentiAmp, SystemCurrentUnit::DeciAmp] {
        if let Ok(reply) = Reply::parse(cid2, frame, Dialect { system_current: unit }) {
            assert!(reply.emit(&mut Vec::new()).is_ok());
        }
    }
});
