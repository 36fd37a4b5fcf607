//! Catch-up benchmark: a node that missed R records from A authors rejoins; how long until it
//! holds them all, and how many bytes it exchanged against the bytes of the records it lacked.
//!
//! `cargo run --release -p attrib-tests --bin catchup -- [RECORDS] [AUTHORS]` (default 10000 20)

use std::time::{Duration, Instant};

use attrib_node::Node;
use attrib_node::localnet::{LocalMember, local_config, local_roster};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let records: u64 = args.next().map_or(Ok(10_000), |a| a.parse())?;
    let authors: usize = args.next().map_or(Ok(20), |a| a.parse())?;
    let members: Vec<LocalMember> = (0..authors.max(2))
        .map(|i| LocalMember::new(42, i))
        .collect();
    let roster = local_roster(&members, &[]);

    // Every author signs its share offline.
    let per_author = records / members.len() as u64;
    let all: Vec<Vec<u8>> = attrib_tests::signed_claims(&members, &roster, per_author)
        .iter()
        .map(|r| r.as_bytes().to_vec())
        .collect();
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
