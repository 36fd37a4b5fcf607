//! Deterministic members, roster and record builders shared by the protocol tests.

use attrib_protocol::*;

pub const NOW: u64 = 1_764_000_000_000;

pub struct TestMember {
    pub code: StateCode,
    pub key: MemberSigningKey,
}

impl TestMember {
    pub fn new(code: &str, seed: u8) -> TestMember {
        TestMember {
            code: code.parse().expect("valid code"),
            key: MemberSigningKey::from_bytes(&[seed; 32]),
        }
    }

    pub fn public(&self) -> MemberKey {
        member_key(&self.key)
    }

    /// Signs `body` as record `seq` following `prev`.
    pub fn sign(&self, roster: &Roster, seq: u64, prev: Option<RecordId>, body: Body) -> Record {
        let content = RecordContent {
            author: self.public(),
            seq,
            prev,
            created_at: NOW + seq,
            body,
        };
        Record::sign(content, &self.key, roster.network_id())
    }

    /// A chain of `n` claims.
    pub fn chain(&self, roster: &Roster, n: u64) -> Vec<Record> {
        let mut out: Vec<Record> = Vec::new();
        for seq in 1..=n {
            let prev = out.last().map(Record::id);
            out.push(self.sign(
                roster,
                seq,
                prev,
                Body::Claim(claim(&format!("incident {seq}"))),
            ));
        }
        out
    }
}

pub struct Net {
    pub fra: TestMember,
    pub deu: TestMember,
    pub rus: TestMember,
    pub roster: Roster,
}

pub fn net() -> Net {
    let fra = TestMember::new("FRA", 1);
    let deu = TestMember::new("DEU", 2);
    let rus = TestMember::new("RUS", 3);
    let roster = roster_of(&[&fra, &deu, &rus]);
    Net {
        fra,
        deu,
        rus,
        roster,
    }
}

pub fn roster_of(members: &[&TestMember]) -> Roster {
    Roster::new(RosterFile {
        network: "test".into(),
        epoch: 0,
        members: members
            .iter()
            .map(|m| attrib_protocol::Member {
                code: m.code,
                name: format!("State {}", m.code),
                key: m.public(),
                nodes: vec![format!("peer-{}", m.code)],
            })
            .collect(),
        observers: vec![Observer {
            name: "Observer".into(),
            nodes: vec!["peer-observer".into()],
        }],
    })
    .expect("valid roster")
}

pub fn claim(title: &str) -> Claim {
    Claim {
        incident: Incident {
            title: title.into(),
            summary: "Wiper malware deployed on grid operator SCADA hosts".into(),
            observed_from: NOW - 86_400_000,
            observed_to: NOW - 3_600_000,
            sectors: vec!["energy".into()],
            tags: vec!["wiper".into(), "ics".into()],
        },
        attributed_to: Attribution {
            state: Some("RUS".parse().expect("code")),
            actor: Some("APT-EXAMPLE".into()),
        },
        confidence: 80,
        evidence: vec![Evidence {
            kind: "malware-sample".into(),
            sha256: Sha256Digest::of(b"sample"),
            description: "loader found on three hosts".into(),
            locator: None,
        }],
        tlp: Tlp::Amber,
        supersedes: None,
    }
}

pub fn rebuttal(target: RecordId) -> Body {
    Body::Rebuttal(Rebuttal {
        target,
        stance: Stance::Deny,
        statement: "No state agency of ours was involved.".into(),
        evidence: vec![],
    })
}

pub fn endorsement(target: RecordId, agreement: Opinion) -> Body {
    Body::Endorsement(Endorsement {
        target,
        agreement,
        statement: "Consistent with our own telemetry.".into(),
        evidence: vec![],
    })
}

pub fn retraction(target: RecordId) -> Body {
    Body::Retraction(Retraction {
        target,
        reason: "Evidence was misread.".into(),
    })
}

pub fn withdrawal(target: RecordId) -> Body {
    Body::Withdrawal(Withdrawal {
        target,
        reason: "We can no longer support this attribution.".into(),
    })
}

/// A chain view over a list of held records (test model of a store).
#[derive(Default)]
pub struct Held(pub Vec<Record>);

impl ChainView for Held {
    fn head(&self, author: &MemberKey) -> Option<ChainHead> {
        let mut head = None;
        let mut seq = 1;
        while let Some(r) = self.at(author, seq) {
            head = Some(ChainHead { seq, id: r.id() });
            seq += 1;
        }
        head
    }
    fn at(&self, author: &MemberKey, seq: u64) -> Option<Record> {
        self.0
            .iter()
            .find(|r| r.author() == *author && r.seq() == seq)
            .cloned()
    }
}
