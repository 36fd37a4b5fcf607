//! Micro benchmarks of the protocol: encode, decode, id, sign, verify (single and batch), chain
//! classification. `cargo bench -p attrib-protocol`.

use attrib_protocol::*;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn setup() -> (MemberSigningKey, Roster, RecordContent) {
    let key = MemberSigningKey::from_bytes(&[1; 32]);
    let roster = Roster::new(RosterFile {
        network: "bench".into(),
        members: vec![Member {
            code: "FRA".parse().expect("code"),
            name: "France".into(),
            key: member_key(&key),
            nodes: vec![],
        }],
        ..Default::default()
    })
    .expect("roster");
    let content = RecordContent {
        author: member_key(&key),
        seq: 1,
        prev: None,
        created_at: 1_764_000_000_000,
        body: Body::Claim(Claim {
            incident: Incident {
                title: "Wiper attack on grid operator".into(),
                summary:
                    "Destructive malware on SCADA engineering workstations; 40 substations offline."
                        .into(),
                observed_from: 1_763_000_000_000,
                observed_to: 1_763_100_000_000,
                sectors: vec!["energy".into()],
                tags: vec!["wiper".into(), "ics".into()],
            },
            attributed_to: Attribution {
                state: Some("RUS".parse().expect("code")),
                actor: Some("APT-X".into()),
            },
            confidence: 75,
            evidence: vec![Evidence {
                kind: "malware-sample".into(),
                sha256: Sha256Digest::of(b"x"),
                description: "loader".into(),
                locator: None,
            }],
            tlp: Tlp::Amber,
            supersedes: None,
        }),
    };
    (key, roster, content)
}

struct Held(Vec<Record>);
impl ChainView for Held {
    fn head(&self, _: &MemberKey) -> Option<ChainHead> {
        self.0.last().map(|r| ChainHead {
            seq: r.seq(),
            id: r.id(),
        })
    }
    fn at(&self, _: &MemberKey, seq: u64) -> Option<Record> {
        self.0.get(seq as usize - 1).cloned()
    }
}

fn benches(c: &mut Criterion) {
    let (key, roster, content) = setup();
    let record = Record::sign(content.clone(), &key, roster.network_id());
    let bytes = record.as_bytes().to_vec();
    c.bench_function("encode content", |b| {
        b.iter(|| encoding::to_vec(black_box(&content)))
    });
    c.bench_function("decode record", |b| {
        b.iter(|| Record::decode(black_box(&bytes)))
    });
    c.bench_function("record id (sha-256)", |b| {
        b.iter(|| RecordId::of_encoding(black_box(&bytes)))
    });
    c.bench_function("sign record", |b| {
        b.iter_batched(
            || content.clone(),
            |c| Record::sign(c, &key, roster.network_id()),
            BatchSize::SmallInput,
        )
    });
    c.bench_function("verify record (single, strict)", |b| {
        b.iter(|| record.verify_signature(black_box(&roster)))
    });
    c.bench_function("check_record (decode + rules + verify)", |b| {
        b.iter(|| check_record(black_box(&bytes), &roster, 1_764_000_000_000))
    });
    let many: Vec<Vec<u8>> = (1..=64u64)
        .map(|seq| {
            let mut c = content.clone();
            c.seq = seq;
            c.prev = (seq > 1).then_some(RecordId([seq as u8; 32]));
            Record::sign(c, &key, roster.network_id())
                .as_bytes()
                .to_vec()
        })
        .collect();
    let refs: Vec<&[u8]> = many.iter().map(Vec::as_slice).collect();
    c.bench_function("check_records batch of 64", |b| {
        b.iter(|| check_records(black_box(&refs), &roster, 1_764_000_000_000))
    });
    let mut chain: Vec<Record> = Vec::new();
    for seq in 1..=100u64 {
        let mut c = content.clone();
        c.seq = seq;
        c.prev = chain.last().map(Record::id);
        chain.push(Record::sign(c, &key, roster.network_id()));
    }
    let next = {
        let mut c = content.clone();
        c.seq = 101;
        c.prev = chain.last().map(Record::id);
        Record::sign(c, &key, roster.network_id())
    };
    let held = Held(chain);
    c.bench_function("chain classify (next)", |b| {
        b.iter(|| chain::classify(black_box(&next), &held))
    });
}

criterion_group!(protocol, benches);
criterion_main!(protocol);
