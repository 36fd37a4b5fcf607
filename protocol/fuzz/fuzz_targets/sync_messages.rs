//! Fuzz decoding of peer-to-peer fetch messages (requests and responses, and the records inside).
//! Run: `cd protocol && RUSTC_BOOTSTRAP=1 cargo fuzz run sync_messages`.
#![no_main]

use attrib_protocol::sync::{FetchRequest, FetchResponse};
use attrib_protocol::{ForkProof, Record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = FetchRequest::decode(data) {
        assert_eq!(request.encode(), data, "requests decode only from canonical bytes");
    }
    if let Ok(response) = FetchResponse::decode(data) {
        assert_eq!(response.encode(), data);
        for r in &response.records {
            let _ = Record::decode(r);
        }
        for p in &response.forks {
            let _ = ForkProof::decode(p);
        }
    }
});
