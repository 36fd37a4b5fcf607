//! Fuzz record decoding and validation, and fork-proof decoding.
//! Run: `cd protocol && cargo +nightly fuzz run decode_validate` (see README "Fuzzing").
#![no_main]

use attrib_protocol::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = MemberSigningKey::from_bytes(&[1; 32]);
    let roster = Roster::new(RosterFile {
        network: "fuzz".into(),
        members: vec![Member {
            code: "FRA".parse().expect("code"),
            name: "France".into(),
            key: member_key(&key),
            nodes: vec![],
        }],
        ..Default::default()
    })
    .expect("roster");
    if let Ok(record) = Record::decode(data) {
        // Whatever decodes must re-encode to the same bytes and id.
        assert_eq!(RecordId::of_encoding(record.as_bytes()), record.id());
        assert_eq!(record.as_bytes(), data);
        let _ = check_content(record.content());
    }
    let _ = check_record(data, &roster, u64::MAX / 2);
    if let Ok(proof) = ForkProof::decode(data) {
        let _ = proof.verify(&roster);
    }
});
