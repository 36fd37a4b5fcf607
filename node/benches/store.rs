//! Micro benchmarks of the sled store: append one record at a time and in batches (with one
//! flush per batch). `cargo bench -p attrib-node`.

use attrib_node::Store;
use attrib_protocol::*;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

fn chain(n: u64) -> Vec<Record> {
    let key = MemberSigningKey::from_bytes(&[1; 32]);
    let mut out: Vec<Record> = Vec::new();
    for seq in 1..=n {
        let content = RecordContent {
            author: member_key(&key),
            seq,
            prev: out.last().map(Record::id),
            created_at: 1_764_000_000_000,
            body: Body::Claim(Claim {
                incident: Incident {
                    title: format!("incident {seq}"),
                    summary: "Intrusion into government mail servers.".into(),
                    observed_from: 1,
                    observed_to: 2,
                    sectors: vec![],
                    tags: vec![],
                },
                attributed_to: Attribution {
                    state: None,
                    actor: Some("APT-X".into()),
                },
                confidence: 50,
                evidence: vec![],
                tlp: Tlp::Green,
                supersedes: None,
            }),
        };
        out.push(Record::sign(content, &key, NetworkId([0; 32])));
    }
    out
}

fn benches(c: &mut Criterion) {
    let records = chain(20_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // One record at a time into a growing store: each measured run appends the next records
    // of the chain; when the chain is used up, a fresh store starts it again (not measured).
    c.bench_function("store append one (no flush)", |b| {
        let mut store: Option<(tempfile::TempDir, Store)> = None;
        let mut next = 0usize;
        b.iter_custom(|iters| {
            let mut elapsed = std::time::Duration::ZERO;
            for _ in 0..iters {
                if store.is_none() || next == records.len() {
                    let dir = tempfile::tempdir().expect("dir");
                    let s = Store::open(dir.path()).expect("store");
                    store = Some((dir, s));
                    next = 0;
                }
                let (_, s) = store.as_ref().expect("open");
                let r = records[next].clone();
                let t = std::time::Instant::now();
                s.append(r).expect("append");
                elapsed += t.elapsed();
                next += 1;
            }
            elapsed
        })
    });
    let batch: Vec<Record> = records[..512].to_vec();
    let fresh = || {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path()).expect("store");
        (dir, store, batch.clone())
    };
    c.bench_function("store append x512 (no flush)", |b| {
        b.iter_batched(
            fresh,
            |(dir, store, recs)| {
                for r in recs {
                    store.append(r).expect("append");
                }
                (dir, store)
            },
            BatchSize::PerIteration,
        )
    });
    c.bench_function("store append x512 + one flush", |b| {
        b.iter_batched(
            fresh,
            |(dir, store, recs)| {
                for r in recs {
                    store.append(r).expect("append");
                }
                rt.block_on(store.flush()).expect("flush");
                (dir, store)
            },
            BatchSize::PerIteration,
        )
    });
}

criterion_group!(store, benches);
criterion_main!(store);
