//! Golden vectors: fixed keys and contents give exactly these bytes and ids, so the wire format
//! cannot change by accident. To change the format on purpose (a new version), regenerate with
//! `ATTRIB_BLESS=1 cargo test -p attrib-protocol golden` and say why in the commit.

use attrib_protocol::*;

use crate::fixture::*;

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/records.json");

fn vectors() -> serde_json::Value {
    let n = net();
    let c = n
        .fra
        .sign(&n.roster, 1, None, Body::Claim(claim("Grid outage")));
    let reb = n.rus.sign(&n.roster, 1, None, rebuttal(c.id()));
    let end = n.deu.sign(
        &n.roster,
        1,
        None,
        endorsement(c.id(), Opinion::StronglyAgree),
    );
    let ret = n.fra.sign(&n.roster, 2, Some(c.id()), retraction(c.id()));
    let unk = n.deu.sign(
        &n.roster,
        2,
        Some(end.id()),
        Body::Unknown {
            code: 77,
            payload: vec![0xAB; 3],
        },
    );
    let wd = n.deu.sign(&n.roster, 3, Some(unk.id()), withdrawal(c.id()));
    let fork = ForkProof::new(
        c.clone(),
        n.fra.sign(&n.roster, 1, None, Body::Claim(claim("Other"))),
    )
    .expect("fork");
    let records: Vec<serde_json::Value> = [("claim", &c), ("rebuttal", &reb), ("endorsement", &end), ("retraction", &ret), ("unknown-kind", &unk), ("withdrawal", &wd)]
        .iter()
        .map(|(name, r)| {
            serde_json::json!({ "name": name, "id": r.id().to_hex(), "bytes": hex::encode(r.as_bytes()) })
        })
        .collect();
    serde_json::json!({
        "comment": "attrib record format v1. Keys: ed25519 secret key = 32 bytes of 1 (FRA), 2 (DEU), 3 (RUS). See protocol/tests/golden.rs.",
        "roster_toml": n.roster.to_toml(),
        "network_id": n.roster.network_id().to_hex(),
        "records": records,
        "fork_proof": { "id": fork.id().to_hex(), "bytes": hex::encode(fork.encode()) },
    })
}

#[test]
fn golden_vectors_match() {
    let now = serde_json::to_string_pretty(&vectors()).expect("json") + "\n";
    if std::env::var_os("ATTRIB_BLESS").is_some() {
        std::fs::write(PATH, &now).expect("write vectors");
        return;
    }
    let stored =
        std::fs::read_to_string(PATH).expect("vectors file exists (ATTRIB_BLESS=1 creates it)");
    assert!(
        stored == now,
        "the record encoding changed: {PATH} no longer matches.\n\
         If this is deliberate, bump the record version and re-bless."
    );
}

#[test]
fn golden_records_verify_from_the_file_alone() {
    // A third party holding only the vectors file can verify every record.
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(PATH).expect("vectors")).expect("json");
    let roster =
        Roster::from_toml(stored["roster_toml"].as_str().expect("roster")).expect("roster");
    assert_eq!(
        roster.network_id().to_hex(),
        stored["network_id"].as_str().expect("id")
    );
    for v in stored["records"].as_array().expect("records") {
        let bytes = hex::decode(v["bytes"].as_str().expect("bytes")).expect("hex");
        let r = check_record(&bytes, &roster, NOW).expect("valid record");
        assert_eq!(r.id().to_hex(), v["id"].as_str().expect("id"));
    }
    let fork = hex::decode(stored["fork_proof"]["bytes"].as_str().expect("bytes")).expect("hex");
    let proof = ForkProof::decode(&fork).expect("decodes");
    assert!(proof.verify(&roster).is_ok());
}
