//! Any bytes as a Pylontech request and as the reply to any CID2 in every dialect; whatever
//! decodes must encode again.
#![no_main]
use pylon_proto::{Dialect, Reply, Request, SystemCurrentUnit};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&cid2, frame)) = data.split_first() else { return };
    if let Ok(req) = Request::parse(frame) {
        assert!(req.emit(&mut Vec::new()).is_ok());
    }
    let units = [SystemCurrentUnit::CentiAmp, SystemCurrentUnit::DeciAmp];
    for (system_current, management_current) in units.into_iter().flat_map(|a| units.map(|b| (a, b))) {
        let dialect = Dialect { system_current, management_current };
        if let Ok(reply) = Reply::parse(cid2, frame, dialect) {
            assert!(reply.emit_in(&mut Vec::new(), dialect).is_ok());
        }
    }
});
