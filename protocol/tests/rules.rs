//! Each validation failure is its own typed error; chain rules; thread status; roster.

use attrib_protocol::*;

use crate::fixture::*;

#[test]
fn a_valid_record_passes_and_keeps_its_id() {
    let n = net();
    let r = n
        .fra
        .sign(&n.roster, 1, None, Body::Claim(claim("Grid outage")));
    let got = check_record(r.as_bytes(), &n.roster, NOW).expect("valid");
    assert_eq!(got.id(), r.id());
    assert_eq!(got.content(), r.content());
    assert_eq!(got.as_bytes(), r.as_bytes());
}

#[test]
fn unknown_author_is_refused() {
    let n = net();
    let outsider = TestMember::new("XYZ", 9);
    let r = outsider.sign(&n.roster, 1, None, Body::Claim(claim("x")));
    assert_eq!(
        check_record(r.as_bytes(), &n.roster, NOW),
        Err(RecordError::UnknownAuthor {
            author: outsider.public()
        })
    );
}

#[test]
fn record_signed_for_another_network_has_a_bad_signature() {
    let n = net();
    let other = roster_of(&[&TestMember::new("FRA", 1), &TestMember::new("ITA", 4)]);
    let r = n.fra.sign(&other, 1, None, Body::Claim(claim("x")));
    assert_eq!(
        check_record(r.as_bytes(), &n.roster, NOW),
        Err(RecordError::BadSignature { id: r.id() })
    );
}

#[test]
fn forged_signature_is_refused() {
    let n = net();
    let r = n.fra.sign(&n.roster, 1, None, Body::Claim(claim("x")));
    // Same content, signed by DEU's key but claiming FRA as author.
    let forged = Record::sign(r.content().clone(), &n.deu.key, n.roster.network_id());
    assert!(matches!(
        check_record(forged.as_bytes(), &n.roster, NOW),
        Err(RecordError::BadSignature { .. })
    ));
}

#[test]
fn future_timestamp_is_refused_and_small_skew_accepted() {
    let n = net();
    let mut content = n
        .fra
        .sign(&n.roster, 1, None, Body::Claim(claim("x")))
        .content()
        .clone();
    content.created_at = NOW + limits::MAX_CLOCK_SKEW_MS + 1;
    let r = Record::sign(content.clone(), &n.fra.key, n.roster.network_id());
    assert!(matches!(
        check_record(r.as_bytes(), &n.roster, NOW),
        Err(RecordError::FromTheFuture { .. })
    ));
    content.created_at = NOW + limits::MAX_CLOCK_SKEW_MS;
    let r = Record::sign(content, &n.fra.key, n.roster.network_id());
    assert!(check_record(r.as_bytes(), &n.roster, NOW).is_ok());
}

#[test]
fn bad_chain_fields_are_refused() {
    let n = net();
    let id = RecordId([1; 32]);
    for (seq, prev) in [(0, None), (1, Some(id)), (2, None)] {
        let r = n.fra.sign(&n.roster, seq, prev, Body::Claim(claim("x")));
        assert!(
            matches!(
                check_record(r.as_bytes(), &n.roster, NOW),
                Err(RecordError::InvalidField { .. })
            ),
            "seq {seq} prev {prev:?} accepted"
        );
    }
}

#[test]
fn field_limits_are_enforced() {
    let n = net();
    let mut c = claim("x");
    c.incident.title = "t".repeat(limits::MAX_TITLE + 1);
    let r = n.fra.sign(&n.roster, 1, None, Body::Claim(c));
    assert!(matches!(
        check_record(r.as_bytes(), &n.roster, NOW),
        Err(RecordError::FieldTooLong {
            field: "incident.title",
            ..
        })
    ));

    let mut c = claim("x");
    c.incident.tags = vec!["t".into(); limits::MAX_TAGS + 1];
    let r = n.fra.sign(&n.roster, 1, None, Body::Claim(c));
    assert!(matches!(
        check_record(r.as_bytes(), &n.roster, NOW),
        Err(RecordError::TooManyItems {
            field: "incident.tags",
            ..
        })
    ));

    let mut c = claim("x");
    c.confidence = 101;
    let r = n.fra.sign(&n.roster, 1, None, Body::Claim(c));
    assert!(matches!(
        check_record(r.as_bytes(), &n.roster, NOW),
        Err(RecordError::InvalidField {
            field: "confidence",
            ..
        })
    ));

    let mut c = claim("x");
    c.attributed_to = Attribution {
        state: None,
        actor: None,
    };
    let r = n.fra.sign(&n.roster, 1, None, Body::Claim(c));
    assert!(matches!(
        check_record(r.as_bytes(), &n.roster, NOW),
        Err(RecordError::InvalidField {
            field: "attributed_to",
            ..
        })
    ));
}

#[test]
fn text_that_a_terminal_would_act_on_is_refused_before_signing_but_stays_valid() {
    // A forged line of output, a screen clear, a NUL, a right-to-left override and a C1
    // control in a title; line breaks are refused in one-line fields and allowed in free text.
    let n = net();
    let body = |edit: &dyn Fn(&mut Claim)| {
        let mut c = claim("x");
        edit(&mut c);
        Body::Claim(c)
    };
    for bad in [
        "Ok\n3  claim  deadbeef0000  DEU -> FRA (99%): fake",
        "\u{1b}[2J\u{1b}[31mred",
        "nul\0byte",
        "gpj.\u{202E}exe",
        "c1\u{85}control",
        "line\u{2028}separator",
    ] {
        let b = body(&|c: &mut Claim| c.incident.title = bad.into());
        assert!(
            matches!(
                check_printable(&b),
                Err(RecordError::InvalidField {
                    field: "incident.title",
                    ..
                })
            ),
            "{bad:?}"
        );
        // Not a validity rule: such a record, signed elsewhere or before, is still valid.
        let r = n.fra.sign(&n.roster, 1, None, b);
        assert!(
            check_record(r.as_bytes(), &n.roster, NOW).is_ok(),
            "{bad:?}"
        );
    }
    assert!(matches!(
        check_printable(&body(
            &|c: &mut Claim| c.incident.summary = "\u{1b}]0;title\u{7}".into()
        )),
        Err(RecordError::InvalidField {
            field: "incident.summary",
            ..
        })
    ));
    assert!(matches!(
        check_printable(&body(
            &|c: &mut Claim| c.attributed_to.actor = Some("APT\u{2066}X".into())
        )),
        Err(RecordError::InvalidField {
            field: "attributed_to.actor",
            ..
        })
    ));
    assert!(
        check_printable(&body(&|c: &mut Claim| {
            c.incident.summary = "line one\r\n\tline two".into();
            c.incident.title = "Überfall auf das Netz — 東京 \u{200F}שלום".into();
        }))
        .is_ok()
    );
}

#[test]
fn oversized_record_is_refused_before_decoding() {
    let n = net();
    let mut c = claim("x");
    c.incident.summary = "s".repeat(limits::MAX_TEXT);
    c.evidence = (0..40)
        .map(|i| Evidence {
            kind: "log".into(),
            sha256: Sha256Digest::of(&[i]),
            description: "d".repeat(limits::MAX_EVIDENCE_TEXT),
            locator: None,
        })
        .collect();
    let r = n.fra.sign(&n.roster, 1, None, Body::Claim(c));
    assert!(r.as_bytes().len() > limits::MAX_RECORD_BYTES);
    assert!(matches!(
        check_record(r.as_bytes(), &n.roster, NOW),
        Err(RecordError::TooLarge { .. })
    ));
}

#[test]
fn wrong_version_trailing_and_truncated_bytes_are_refused() {
    let n = net();
    let r = n.fra.sign(&n.roster, 1, None, Body::Claim(claim("x")));
    let mut v2 = r.as_bytes().to_vec();
    v2[0] = 2;
    assert_eq!(
        check_record(&v2, &n.roster, NOW),
        Err(RecordError::UnsupportedVersion { version: 2 })
    );
    assert!(matches!(
        check_record(&[1, 2, 3], &n.roster, NOW),
        Err(RecordError::Truncated { .. })
    ));
    let mut longer = r.as_bytes().to_vec();
    longer.insert(longer.len() - 64, 0);
    assert!(matches!(
        check_record(&longer, &n.roster, NOW),
        Err(RecordError::Encoding(_))
    ));
}

#[test]
fn unknown_body_kinds_are_kept_verbatim_and_verified() {
    let n = net();
    let body = Body::Unknown {
        code: 99,
        payload: vec![1, 2, 3],
    };
    let r = n.fra.sign(&n.roster, 1, None, body.clone());
    let got = check_record(r.as_bytes(), &n.roster, NOW).expect("unknown kinds are accepted");
    assert_eq!(got.body(), &body);
    assert_eq!(got.body().target(), None);
}

#[test]
fn response_rules() {
    let n = net();
    let c = n.fra.sign(&n.roster, 1, None, Body::Claim(claim("x")));
    let reb = n.rus.sign(&n.roster, 1, None, rebuttal(c.id()));
    assert_eq!(check_response(&reb, &c), Ok(()));

    // A response to a rebuttal is not a response to a claim.
    let e = n
        .deu
        .sign(&n.roster, 1, None, endorsement(reb.id(), Opinion::Agree));
    assert_eq!(
        check_response(&e, &reb),
        Err(RecordError::TargetNotClaim {
            target: reb.id(),
            kind: "rebuttal"
        })
    );
    let e = n
        .deu
        .sign(&n.roster, 1, None, endorsement(c.id(), Opinion::Agree));
    assert_eq!(check_response(&e, &c), Ok(()));
    let own = n.fra.sign(
        &n.roster,
        2,
        Some(c.id()),
        endorsement(c.id(), Opinion::Agree),
    );
    assert_eq!(
        check_response(&own, &c),
        Err(RecordError::SelfEndorsement { target: c.id() })
    );

    let self_rebut = n.fra.sign(&n.roster, 2, Some(c.id()), rebuttal(c.id()));
    assert_eq!(
        check_response(&self_rebut, &c),
        Err(RecordError::SelfRebuttal { target: c.id() })
    );

    let bad = n.deu.sign(&n.roster, 2, Some(e.id()), retraction(c.id()));
    assert_eq!(
        check_response(&bad, &c),
        Err(RecordError::RetractionByNonAuthor { target: c.id() })
    );
    let good = n.fra.sign(&n.roster, 2, Some(c.id()), retraction(c.id()));
    assert_eq!(check_response(&good, &c), Ok(()));

    // A withdrawal is a third state's; the author retracts instead.
    let own_withdrawal = n.fra.sign(&n.roster, 2, Some(c.id()), withdrawal(c.id()));
    assert_eq!(
        check_response(&own_withdrawal, &c),
        Err(RecordError::WithdrawalByAuthor { target: c.id() })
    );
    let withdrawn = n.deu.sign(&n.roster, 2, Some(e.id()), withdrawal(c.id()));
    assert_eq!(check_response(&withdrawn, &c), Ok(()));
    let mut no_reason = withdrawn.content().clone();
    no_reason.body = Body::Withdrawal(Withdrawal {
        target: c.id(),
        reason: " ".into(),
    });
    assert!(matches!(
        check_content(&no_reason),
        Err(RecordError::InvalidField {
            field: "reason",
            ..
        })
    ));

    let mut revised = claim("x, revised");
    revised.supersedes = Some(c.id());
    let by_other = n
        .deu
        .sign(&n.roster, 2, Some(e.id()), Body::Claim(revised.clone()));
    assert_eq!(
        check_response(&by_other, &c),
        Err(RecordError::SupersedeByNonAuthor { target: c.id() })
    );
    let by_author = n.fra.sign(&n.roster, 2, Some(c.id()), Body::Claim(revised));
    assert_eq!(check_response(&by_author, &c), Ok(()));
}

#[test]
fn chain_classification() {
    let n = net();
    let chain = n.fra.chain(&n.roster, 5);
    let mut held = Held::default();
    assert_eq!(chain::classify(&chain[0], &held), ChainPosition::Next);
    held.0.push(chain[0].clone());
    assert_eq!(chain::classify(&chain[0], &held), ChainPosition::Duplicate);
    assert_eq!(chain::classify(&chain[1], &held), ChainPosition::Next);
    assert_eq!(
        chain::classify(&chain[4], &held),
        ChainPosition::Gap { from: 2, to: 4 }
    );

    // Equivocation at seq 1: a different record with the same author and seq.
    let other = n.fra.sign(&n.roster, 1, None, Body::Claim(claim("other")));
    let ChainPosition::Fork(proof) = chain::classify(&other, &held) else {
        panic!("fork not detected");
    };
    assert_eq!(proof.verify(&n.roster), Ok(n.fra.public()));

    // A broken link: seq 2 whose prev is not the held seq 1.
    let broken = n.fra.sign(
        &n.roster,
        2,
        Some(RecordId([9; 32])),
        Body::Claim(claim("b")),
    );
    let ChainPosition::Fork(proof) = chain::classify(&broken, &held) else {
        panic!("broken link not detected");
    };
    assert_eq!(proof.verify(&n.roster), Ok(n.fra.public()));
}

#[test]
fn fork_proofs_round_trip_and_refuse_non_forks() {
    let n = net();
    let a = n.fra.sign(&n.roster, 1, None, Body::Claim(claim("a")));
    let b = n.fra.sign(&n.roster, 1, None, Body::Claim(claim("b")));
    let proof = ForkProof::new(a.clone(), b.clone()).expect("a fork");
    // The same fork gives the same proof whatever the order.
    assert_eq!(
        ForkProof::new(b, a.clone()).map(|p| p.encode()),
        Some(proof.encode())
    );
    let decoded = ForkProof::decode(&proof.encode()).expect("decodes");
    assert_eq!(decoded.verify(&n.roster), Ok(n.fra.public()));

    let chain = n.fra.chain(&n.roster, 2);
    assert!(
        ForkProof::new(chain[0].clone(), chain[1].clone()).is_none(),
        "a good link is no fork"
    );
    let d = n.deu.sign(&n.roster, 1, None, Body::Claim(claim("a")));
    assert!(
        ForkProof::new(a.clone(), d).is_none(),
        "different authors are no fork"
    );
    assert!(ForkProof::new(a.clone(), a).is_none());

    // A "proof" whose second record is forged fails verification.
    let c = n.fra.sign(&n.roster, 1, None, Body::Claim(claim("c")));
    let forged = Record::sign(c.content().clone(), &n.deu.key, n.roster.network_id());
    let p = ForkProof::new(chain[0].clone(), forged).expect("structurally a fork");
    assert!(matches!(
        p.verify(&n.roster),
        Err(ForkProofError::Record(RecordError::BadSignature { .. }))
    ));
}

#[test]
fn thread_status_is_the_same_whatever_order_a_forked_position_arrived_in() {
    // DEU equivocates: two endorsements at seq 1. Nodes receive them in either order and must
    // show the same standing endorsement.
    let n = net();
    let c = n.fra.sign(&n.roster, 1, None, Body::Claim(claim("x")));
    let a = n
        .deu
        .sign(&n.roster, 1, None, endorsement(c.id(), Opinion::Disagree));
    let b = n.deu.sign(
        &n.roster,
        1,
        None,
        endorsement(c.id(), Opinion::StronglyAgree),
    );
    let one = ThreadStatus::of(&c, &[a.clone(), b.clone()], &n.roster).expect("claim");
    let other = ThreadStatus::of(&c, &[b.clone(), a.clone()], &n.roster).expect("claim");
    assert_eq!(one.endorsements, other.endorsements);
    assert_eq!(one.endorsements[0].record, a.id().max(b.id()));
}

#[test]
fn thread_status_summarises_latest_positions() {
    let n = net();
    let c = n.fra.sign(&n.roster, 1, None, Body::Claim(claim("x")));
    let e1 = n
        .deu
        .sign(&n.roster, 1, None, endorsement(c.id(), Opinion::Disagree));
    let e2 = n.deu.sign(
        &n.roster,
        2,
        Some(e1.id()),
        endorsement(c.id(), Opinion::Agree),
    );
    let reb = n.rus.sign(&n.roster, 1, None, rebuttal(c.id()));
    let unrelated = n
        .rus
        .sign(&n.roster, 2, Some(reb.id()), rebuttal(RecordId([5; 32])));
    let status =
        ThreadStatus::of(&c, &[e2.clone(), e1, reb.clone(), unrelated], &n.roster).expect("claim");
    assert_eq!(status.claimant, Some(n.fra.code));
    assert_eq!(status.endorsements.len(), 1);
    assert_eq!(status.endorsements[0].position, Opinion::Agree);
    assert_eq!(status.endorsements[0].record, e2.id());
    assert_eq!(status.rebuttals.len(), 1);
    assert!(status.rebutted_by_accused);
    assert_eq!(status.retracted_by, None);
    let line = status.headline();
    assert!(line.contains("FRA attributes to RUS"), "{line}");
    assert!(line.contains("1 agree"), "{line}");
    assert!(
        line.contains("rebutted by RUS, the accused (deny)"),
        "{line}"
    );

    let r = n.fra.sign(&n.roster, 2, Some(c.id()), retraction(c.id()));
    let status = ThreadStatus::of(&c, std::slice::from_ref(&r), &n.roster).expect("claim");
    assert_eq!(status.retracted_by, Some(r.id()));
    assert!(status.headline().contains("RETRACTED"));
    assert!(ThreadStatus::of(&r, &[], &n.roster).is_none());
}

#[test]
fn a_withdrawal_ends_a_states_standing_position_until_it_speaks_again() {
    let n = net();
    let c = n.fra.sign(&n.roster, 1, None, Body::Claim(claim("x")));
    let e1 = n
        .deu
        .sign(&n.roster, 1, None, endorsement(c.id(), Opinion::Agree));
    let b1 = n.deu.sign(&n.roster, 2, Some(e1.id()), rebuttal(c.id()));
    let w = n.deu.sign(&n.roster, 3, Some(b1.id()), withdrawal(c.id()));
    let reb = n.rus.sign(&n.roster, 1, None, rebuttal(c.id()));
    let all = vec![e1.clone(), b1.clone(), w.clone(), reb.clone()];

    // Before the withdrawal DEU stood on both; after it, on nothing.
    let ids = |v: Vec<&Record>| v.iter().map(|r| r.id()).collect::<Vec<_>>();
    assert_eq!(
        ids(standing_positions(&all, &n.deu.public(), w.seq())),
        vec![e1.id(), b1.id()]
    );
    assert!(standing_positions(&all, &n.deu.public(), u64::MAX).is_empty());
    let status = ThreadStatus::of(&c, &all, &n.roster).expect("claim");
    assert!(status.endorsements.is_empty(), "{status:?}");
    assert!(status.endorsement_counts.is_empty());
    assert_eq!(status.rebuttals.len(), 1);
    assert_eq!(status.rebuttals[0].state, n.rus.code);
    assert_eq!(status.withdrawals.len(), 1);
    assert_eq!(status.withdrawals[0].state, n.deu.code);
    assert_eq!(status.withdrawals[0].record, w.id());
    let line = status.headline();
    assert!(line.contains("no endorsements"), "{line}");
    assert!(
        line.contains("DEU withdrew its endorsement and rebuttal"),
        "{line}"
    );
    assert_eq!(
        status.withdrawals[0].position,
        vec!["endorsement", "rebuttal"]
    );

    // A later endorsement counts again, and the withdrawal no longer stands.
    let e2 = n.deu.sign(
        &n.roster,
        4,
        Some(w.id()),
        endorsement(c.id(), Opinion::Disagree),
    );
    let mut all = all;
    all.push(e2.clone());
    assert_eq!(
        ids(standing_positions(&all, &n.deu.public(), u64::MAX)),
        vec![e2.id()]
    );
    let status = ThreadStatus::of(&c, &all, &n.roster).expect("claim");
    assert_eq!(status.endorsements.len(), 1);
    assert_eq!(status.endorsements[0].record, e2.id());
    assert_eq!(status.rebuttals.len(), 1, "DEU's rebuttal stays withdrawn");
    assert!(status.withdrawals.is_empty());

    // A withdrawal that ends nothing (RUS's second) names nobody more.
    let w2 = n.rus.sign(&n.roster, 2, Some(reb.id()), withdrawal(c.id()));
    let w3 = n.rus.sign(&n.roster, 3, Some(w2.id()), withdrawal(c.id()));
    all.push(w2.clone());
    all.push(w3);
    let status = ThreadStatus::of(&c, &all, &n.roster).expect("claim");
    assert!(status.rebuttals.is_empty());
    assert_eq!(status.withdrawals.len(), 1);
    assert_eq!(status.withdrawals[0].record, w2.id());
}

#[test]
fn roster_network_id_ignores_order_and_formatting() {
    let n = net();
    let text = n.roster.to_toml();
    let again = Roster::from_toml(&format!("# a comment\n{text}")).expect("parses");
    assert_eq!(again.network_id(), n.roster.network_id());
    let reordered = roster_of(&[&n.rus, &n.deu, &n.fra]);
    assert_eq!(reordered.network_id(), n.roster.network_id());
    let other = roster_of(&[&n.rus, &n.deu]);
    assert_ne!(other.network_id(), n.roster.network_id());
    assert!(n.roster.admits_node("peer-observer"));
    assert!(n.roster.member_of_node("peer-observer").is_none());
    assert_eq!(
        n.roster.member_of_node("peer-FRA").map(|m| m.code),
        Some(n.fra.code)
    );
    assert!(!n.roster.admits_node("peer-XYZ"));
}

#[test]
fn roster_errors() {
    let fra = TestMember::new("FRA", 1);
    let dup = TestMember::new("FRA", 2);
    let same_key = TestMember::new("DEU", 1);
    assert!(matches!(
        Roster::new(roster_file(&[&fra, &dup])),
        Err(RosterError::DuplicateState(_))
    ));
    assert!(matches!(
        Roster::new(roster_file(&[&fra, &same_key])),
        Err(RosterError::DuplicateKey(_, _))
    ));
    assert!(matches!(
        Roster::new(roster_file(&[])),
        Err(RosterError::NoMembers)
    ));
    let mut weak = roster_file(&[&fra]);
    weak.members[0].key = MemberKey([0; 32]);
    assert!(matches!(Roster::new(weak), Err(RosterError::BadKey(_))));
    assert!(matches!(
        Roster::from_toml("network = 3"),
        Err(RosterError::Toml(_))
    ));
    assert!(matches!(
        Roster::from_toml("network = \"x\"\nbogus = 1"),
        Err(RosterError::Toml(_))
    ));
}

fn roster_file(members: &[&TestMember]) -> RosterFile {
    RosterFile {
        network: "t".into(),
        epoch: 0,
        members: members
            .iter()
            .map(|m| attrib_protocol::Member {
                code: m.code,
                name: "n".into(),
                key: m.public(),
                nodes: vec![],
            })
            .collect(),
        observers: vec![],
    }
}

#[test]
fn batch_check_agrees_with_single_checks() {
    // A batch mixing valid records, a forged signature, garbage and a non-member gives, record
    // by record, the same verdicts as checking each alone.
    let n = net();
    let good1 = n.fra.sign(&n.roster, 1, None, Body::Claim(claim("a")));
    let good2 = n.rus.sign(&n.roster, 1, None, rebuttal(good1.id()));
    let forged = Record::sign(good2.content().clone(), &n.deu.key, n.roster.network_id());
    let outsider = TestMember::new("XYZ", 9).sign(&n.roster, 1, None, Body::Claim(claim("x")));
    let items: Vec<&[u8]> = vec![
        good1.as_bytes(),
        forged.as_bytes(),
        &[1, 2, 3],
        outsider.as_bytes(),
        good2.as_bytes(),
    ];
    let batch = check_records(&items, &n.roster, NOW);
    let single: Vec<_> = items
        .iter()
        .map(|b| check_record(b, &n.roster, NOW))
        .collect();
    assert_eq!(batch, single);
    assert!(batch[0].is_ok() && batch[4].is_ok());
    assert!(matches!(batch[1], Err(RecordError::BadSignature { .. })));
    // An all-valid batch passes in one go.
    let ok = check_records(&[good1.as_bytes(), good2.as_bytes()], &n.roster, NOW);
    assert!(ok.iter().all(Result::is_ok));
}

#[test]
fn observed_times_cannot_be_after_the_record() {
    let n = net();
    let mut c = claim("x");
    c.incident.observed_to = NOW + limits::MAX_CLOCK_SKEW_MS * 10;
    let r = n.fra.sign(&n.roster, 1, None, Body::Claim(c));
    assert!(matches!(
        check_record(r.as_bytes(), &n.roster, NOW),
        Err(RecordError::InvalidField {
            field: "incident.observed_to",
            ..
        })
    ));
}

#[test]
fn claim_files_accept_rfc3339_times_and_any_case_tlp() {
    let json = r#"{
        "incident": { "title": "t", "observed_from": "2026-11-20T08:00:00Z", "observed_to": 1763629200000 },
        "attributed_to": { "state": "RUS" },
        "confidence": 60,
        "tlp": "amber+strict"
    }"#;
    let c: Claim = serde_json::from_str(json).unwrap();
    assert_eq!(c.incident.observed_from, 1_795_161_600_000);
    assert_eq!(c.tlp, Tlp::AmberStrict);
    assert_eq!(c.incident.summary, "");
    let bad = json.replace("amber+strict", "orange");
    let err = serde_json::from_str::<Claim>(&bad).unwrap_err().to_string();
    assert!(err.contains("not a TLP level"), "{err}");
    let bad = json.replace("2026-11-20T08:00:00Z", "yesterday");
    let err = serde_json::from_str::<Claim>(&bad).unwrap_err().to_string();
    assert!(err.contains("not a time"), "{err}");
}

#[test]
fn times_need_a_zone_and_offsets_are_applied() {
    let ms = |t: &str| {
        parse_rfc3339(t).map(|at| {
            at.duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
        })
    };
    let utc = ms("2026-11-20T08:00:00Z").unwrap();
    assert_eq!(ms("2026-11-20T10:00:00+02:00").unwrap(), utc);
    assert_eq!(ms("2026-11-20T03:00:00-05:00").unwrap(), utc);
    assert_eq!(ms("2026-11-20T08:00:00.5z").unwrap(), utc + 500);
    assert!(
        ms("2026-11-20T08:00:00")
            .unwrap_err()
            .contains("no time zone")
    );
    assert!(ms("2026-11-20T08:00:00+24:00").is_err());
    assert!(ms("yesterday").is_err());
    // The same rule in a claim file: an offset is read, a missing zone refused.
    let with = |t: &str| {
        serde_json::from_value::<Incident>(serde_json::json!({
            "title": "x", "summary": "", "observed_from": t, "observed_to": t
        }))
    };
    assert_eq!(
        with("2026-11-20T10:00:00+02:00").unwrap().observed_from,
        utc
    );
    assert!(with("2026-11-20T08:00:00").is_err());
}

#[test]
fn a_signature_whose_r_is_of_small_order_is_refused() {
    // With its secret scalar a, an author can sign with R = the identity point: s = k·a, where
    // k = H(R ‖ A ‖ M), satisfies [s]B = R + [k]A. Plain `verify` accepts that signature;
    // `verify_strict` refuses it, and so must the record check.
    use ed25519_dalek::Verifier;
    use sha2::{Digest, Sha512};
    let n = net();
    let r = n.fra.sign(&n.roster, 1, None, Body::Claim(claim("x")));
    let message = r.signed_message(n.roster.network_id());
    let mut identity = [0u8; 32]; // the encoding of the identity point (y = 1)
    identity[0] = 1;
    let public = n.fra.key.verifying_key();
    let k = curve25519_dalek::Scalar::from_hash(
        Sha512::new()
            .chain_update(identity)
            .chain_update(public.as_bytes())
            .chain_update(&message),
    );
    let s = k * n.fra.key.to_scalar();
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&identity);
    sig[32..].copy_from_slice(s.as_bytes());
    let sig = ed25519_dalek::Signature::from_bytes(&sig);
    assert!(
        public.verify(&message, &sig).is_ok(),
        "the forged signature passes plain verify"
    );
    assert!(public.verify_strict(&message, &sig).is_err());
    let mut bytes = r.as_bytes().to_vec();
    let at = bytes.len() - 64;
    bytes[at..].copy_from_slice(&sig.to_bytes());
    assert!(matches!(
        check_record(&bytes, &n.roster, NOW),
        Err(RecordError::BadSignature { .. })
    ));
    let batch = check_records(&[&bytes[..], r.as_bytes()], &n.roster, NOW);
    assert!(matches!(batch[0], Err(RecordError::BadSignature { .. })));
    assert!(batch[1].is_ok());
}
