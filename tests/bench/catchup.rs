//! Catch-up benchmark: a node that missed R records from A authors rejoins; how long until it
//! holds them all, and how many bytes it exchanged against the bytes of the records it lacked.
//!
//! `cargo run --release -p attrib-tests --bin catchup -- [RECORDS] [AUTHORS]` (default 10000 20)

use std::time::{Duration, Instant};

use attrib_node::Node;
use attrib_node::localnet::{LocalMember, local_config, local_roster};
use attrib_protocol::{
    Attribution, Body, Claim, Incident, Record, RecordContent, RecordId, Tlp, member_key,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let records: u64 = args.next().map_or(Ok(10_000), |a| a.parse())?;
    let authors: usize = args.next().map_or(Ok(20), |a| a.parse())?;
    let members: Vec<LocalMember> = (0..authors.max(2))
        .map(|i| LocalMember::new(42, i))
        .collect();
    let roster = local_roster(&members, &[]);
    let network = roster.network_id();

    // Every author signs its share offline.
    let per_author = records / members.len() as u64;
    let mut all: Vec<Vec<u8>> = Vec::new();
    let now = attrib_node::now_ms();
    for m in &members {
        let mut prev: Option<RecordId> = None;
        for seq in 1..=per_author {
            let content = RecordContent {
                author: member_key(&m.state_key),
                seq,
                prev,
                created_at: now,
                body: Body::Claim(Claim {
                    incident: Incident {
                        title: format!("incident {seq} reported by {}", m.code),
                        summary:
                            "Intrusion into government mail servers; data exfiltrated over 3 weeks."
                                .into(),
                        observed_from: now - 86_400_000,
                        observed_to: now - 3_600_000,
                        sectors: vec!["government".into()],
                        tags: vec!["espionage".into()],
                    },
                    attributed_to: Attribution {
                        state: None,
                        actor: Some("APT-BENCH".into()),
                    },
                    confidence: 60,
                    evidence: vec![],
                    tlp: Tlp::Green,
                    supersedes: None,
                }),
            };
            let r = Record::sign(content, &m.state_key, network);
            prev = Some(r.id());
            all.push(r.as_bytes().to_vec());
        }
    }
    let total = all.len();
    let record_bytes: usize = all.iter().map(Vec::len).sum();

    let dir = tempfile::tempdir()?;
    let source = Node::start(local_config(
        &members[0],
        &roster,
        Some(dir.path().join("a")),
        vec![],
        None,
    ))
    .await?;
    for chunk in all.chunks(512) {
        source.handle().import(chunk.to_vec()).await?;
    }
    anyhow::ensure!(
        source.handle().record_count() == total,
        "source import incomplete"
    );
    let addr = source.handle().listen_addrs(Duration::from_secs(10)).await[0].clone();

    let started = Instant::now();
    let laggard = Node::start(local_config(
        &members[1],
        &roster,
        Some(dir.path().join("b")),
        vec![addr],
        None,
    ))
    .await?;
    let handle = laggard.handle();
    let mut updates = handle.feed_updates();
    while handle.record_count() < total {
        tokio::time::timeout(Duration::from_secs(120), updates.changed()).await??;
    }
    let elapsed = started.elapsed();
    let stats = handle.sync_stats();
    let exchanged = stats.request_bytes + stats.response_bytes;
    println!(
        "records missed:        {total} from {} authors",
        members.len()
    );
    println!(
        "time to converge:      {:.2} s ({:.0} records/s)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    println!("record bytes missed:   {record_bytes}");
    println!(
        "bytes exchanged:       {exchanged} (requests {}, responses {})",
        stats.request_bytes, stats.response_bytes
    );
    println!(
        "exchanged / missed:    {:.3}",
        exchanged as f64 / record_bytes as f64
    );
    println!("fetch requests:        {}", stats.requests);
    laggard.shutdown().await?;
    source.shutdown().await?;
    Ok(())
}
