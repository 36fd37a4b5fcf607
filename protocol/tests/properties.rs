//! Property tests: round trips, bit flips, hostile bytes, chain rules on generated histories.

use attrib_protocol::*;
use proptest::prelude::*;

use crate::fixture::*;

fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!(".{{1,{max}}}"))
        .expect("regex")
        .prop_filter("non-blank", move |s| !s.trim().is_empty() && s.len() <= max)
}

fn evidence() -> impl Strategy<Value = Evidence> {
    (
        text(20),
        any::<[u8; 32]>(),
        text(40),
        proptest::option::of(text(20)),
    )
        .prop_map(|(kind, h, description, locator)| Evidence {
            kind,
            sha256: Sha256Digest(h),
            description,
            locator,
        })
}

fn claim_body() -> impl Strategy<Value = Body> {
    (
        text(60),
        text(200),
        0u64..NOW - 1_000_000,
        0u64..1_000_000,
        proptest::collection::vec(text(12), 0..4),
        proptest::option::of(text(20)),
        0u8..=100,
        proptest::collection::vec(evidence(), 0..3),
        prop_oneof![
            Just(Tlp::Clear),
            Just(Tlp::Green),
            Just(Tlp::Amber),
            Just(Tlp::AmberStrict),
            Just(Tlp::Red)
        ],
    )
        .prop_map(
            |(title, summary, from, len, tags, actor, confidence, evidence, tlp)| {
                Body::Claim(Claim {
                    incident: Incident {
                        title,
                        summary,
                        observed_from: from,
                        observed_to: from + len,
                        sectors: vec![],
                        tags,
                    },
                    attributed_to: Attribution {
                        state: Some("RUS".parse().expect("code")),
                        actor,
                    },
                    confidence,
                    evidence,
                    tlp,
                    supersedes: None,
                })
            },
        )
}

fn any_body() -> impl Strategy<Value = Body> {
    let target = any::<[u8; 32]>().prop_map(RecordId);
    prop_oneof![
        claim_body(),
        (target.clone(), text(100)).prop_map(|(t, s)| Body::Rebuttal(Rebuttal {
            target: t,
            stance: Stance::DisputeEvidence,
            statement: s,
            evidence: vec![],
        })),
        (target.clone(), text(100)).prop_map(|(t, s)| Body::Endorsement(Endorsement {
            target: t,
            agreement: Opinion::Neutral,
            statement: s,
            evidence: vec![],
        })),
        (target, text(100))
            .prop_map(|(t, reason)| Body::Retraction(Retraction { target: t, reason })),
        (5u16..1000, proptest::collection::vec(any::<u8>(), 0..50))
            .prop_map(|(code, payload)| Body::Unknown { code, payload }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn encode_decode_round_trip(body in any_body(), seq in 1u64..1_000_000, prev in any::<[u8; 32]>()) {
        let n = net();
        let prev = (seq > 1).then_some(RecordId(prev));
        let r = n.fra.sign(&n.roster, seq, prev, body);
        let back = check_record(r.as_bytes(), &n.roster, NOW + 1_000_000).expect("valid");
        prop_assert_eq!(back.content(), r.content());
        prop_assert_eq!(back.id(), r.id());
        prop_assert_eq!(RecordId::of_encoding(back.as_bytes()), r.id());
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let n = net();
        let _ = check_record(&bytes, &n.roster, NOW);
        let _ = ForkProof::decode(&bytes);
    }

    #[test]
    fn truncations_are_refused(body in claim_body(), cut in any::<prop::sample::Index>()) {
        let n = net();
        let r = n.fra.sign(&n.roster, 1, None, body);
        let len = cut.index(r.as_bytes().len());
        prop_assert!(check_record(&r.as_bytes()[..len], &n.roster, NOW).is_err());
    }

    #[test]
    fn chain_rules_on_shuffled_histories(len in 1u64..12, order in Just(()).prop_perturb(|_, mut rng| rng.random::<u64>())) {
        // Deliver a chain in a random order, keeping out-of-order records pending as a store would:
        // every record is classified Next exactly once, gaps name exactly what is missing, and
        // the final head is the last record.
        let n = net();
        let chain = n.fra.chain(&n.roster, len);
        let mut delivery: Vec<usize> = (0..chain.len()).collect();
        let mut s = order;
        for i in (1..delivery.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            delivery.swap(i, (s >> 33) as usize % (i + 1));
        }
        let mut held = Held::default();
        let mut pending: Vec<Record> = Vec::new();
        for i in delivery {
            let r = chain[i].clone();
            match chain::classify(&r, &held) {
                ChainPosition::Next => {
                    held.0.push(r);
                    // Drain pending records that now follow.
                    while let Some(pos) = pending.iter().position(|p| chain::classify(p, &held) == ChainPosition::Next) {
                        held.0.push(pending.remove(pos));
                    }
                }
                ChainPosition::Gap { from, to } => {
                    let head = held.head(&n.fra.public()).map_or(0, |h| h.seq);
                    prop_assert_eq!(from, head + 1);
                    prop_assert_eq!(to, r.seq() - 1);
                    pending.push(r);
                }
                other => prop_assert!(false, "unexpected {:?} for seq {}", other, r.seq()),
            }
        }
        prop_assert!(pending.is_empty());
        prop_assert_eq!(held.head(&n.fra.public()), Some(ChainHead { seq: len, id: chain[len as usize - 1].id() }));
        // Replaying anything is a duplicate; a second record at any seq is a fork.
        for r in &chain {
            prop_assert_eq!(chain::classify(r, &held), ChainPosition::Duplicate);
        }
        let seq = (order % len) + 1;
        let prev = (seq > 1).then(|| chain[seq as usize - 2].id());
        let evil = n.fra.sign(&n.roster, seq, prev, Body::Claim(claim("equivocation")));
        match chain::classify(&evil, &held) {
            ChainPosition::Fork(proof) => prop_assert_eq!(proof.verify(&n.roster), Ok(n.fra.public())),
            other => prop_assert!(false, "fork missed: {:?}", other),
        }
    }
}

#[test]
fn every_single_bit_flip_is_refused() {
    let n = net();
    let c = n
        .fra
        .sign(&n.roster, 1, None, Body::Claim(claim("Grid outage")));
    let r = n
        .rus
        .sign(&n.roster, 2, Some(RecordId([3; 32])), rebuttal(c.id()));
    for record in [c, r] {
        let bytes = record.as_bytes().to_vec();
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(
                check_record(&flipped, &n.roster, NOW).is_err(),
                "flip of bit {bit} accepted"
            );
        }
    }
}
