//! attrib benchmarks that need real nodes. Each prints its figures and, in the same run, the
//! baseline they are compared with. Commands (see BENCHMARKS.md):
//!
//! ```text
//! cargo run --release -p attrib-tests --bin bench -- ingest [RECORDS]
//! cargo run --release -p attrib-tests --bin bench -- api [RECORDS]
//! cargo run --release -p attrib-tests --bin bench -- network [NODES] [RATE] [SECONDS] [SVG] [ROUNDS]
//! cargo run --release -p attrib-tests --bin bench -- network-procs [NODES] [RATE] [SECONDS] [ROUNDS]
//! cargo run --release -p attrib-tests --bin bench -- footprint [RECORDS]
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use attrib_node::localnet::{LocalMember, local_config, local_roster};
use attrib_node::{Node, Store};
use attrib_protocol::*;

/// Appends records with `append_batch`, failing on the first one the store refuses.
fn append_all(store: &Store, records: Vec<Record>) -> anyhow::Result<()> {
    for appended in store.append_batch(records)? {
        appended?;
    }
    Ok(())
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// Each round's p99 ratio, attrib's over the baseline's, as the network benchmarks print and
/// pool them.
#[derive(Default)]
struct RoundRatios(Vec<f64>);

impl RoundRatios {
    /// Notes and prints one round's ratio (latencies sorted, in ms).
    fn round(&mut self, round: usize, bare: &[f64], attrib: &[f64]) {
        let (bp, ap) = (percentile(bare, 0.99), percentile(attrib, 0.99));
        self.0.push(ap / bp);
        println!(
            "  round {round}: p99 bare {bp:.2} ms, attrib {ap:.2} ms, ratio {:.2}",
            ap / bp
        );
    }

    /// The ratio of the pooled latencies, with each round's and their median.
    fn summary(&self, bare: &[f64], attrib: &[f64]) -> String {
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        format!(
            "p99 attrib / p99 baseline, pooled: {:.2} (rounds: {}; median {:.2})",
            percentile(attrib, 0.99) / percentile(bare, 0.99),
            self.0
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(" / "),
            percentile(&sorted, 0.5),
        )
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// A `kB` field of `/proc/<process>/status` (`process` is `self` or a pid).
fn status_kib(process: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{process}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn rss_kib() -> u64 {
    status_kib("self", "VmRSS:")
}

fn peak_rss_kib() -> u64 {
    status_kib("self", "VmHWM:")
}

/// CPU seconds (utime + stime) of `/proc/<process>` (`self` or a pid).
fn cpu_seconds_of(process: &str) -> f64 {
    // In clock ticks (100 Hz on Linux).
    std::fs::read_to_string(format!("/proc/{process}/stat"))
        .ok()
        .and_then(|s| {
            let after = s.rsplit(')').next()?.split_whitespace().collect::<Vec<_>>();
            let utime: f64 = after.get(11)?.parse().ok()?;
            let stime: f64 = after.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(0.0)
}

fn cpu_seconds() -> f64 {
    cpu_seconds_of("self")
}

fn dir_bytes(path: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            let p = e.path();
            total += if p.is_dir() {
                dir_bytes(&p)
            } else {
                e.metadata().map_or(0, |m| m.len())
            };
        }
    }
    total
}

/// Ingest: received bytes → durable in sled through the real validation path, one at a time
/// (gossip) and in batches (sync), against raw ed25519 verification of the same records.
fn ingest(n: usize) -> anyhow::Result<()> {
    let members: Vec<LocalMember> = (0..20).map(|i| LocalMember::new(11, i)).collect();
    let roster = local_roster(&members, &[]);
    let records = attrib_tests::signed_claims(&members, &roster, (n / 20) as u64);
    let bytes: Vec<Vec<u8>> = records.iter().map(|r| r.as_bytes().to_vec()).collect();
    let n = records.len();
    let now = attrib_node::now_ms();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    // Baselines: raw ed25519-dalek on the same signatures and messages.
    let msgs: Vec<Vec<u8>> = records
        .iter()
        .map(|r| r.signed_message(roster.network_id()))
        .collect();
    let sigs: Vec<ed25519_dalek::Signature> = records.iter().map(Record::signature).collect();
    let keys: Vec<ed25519_dalek::VerifyingKey> = records
        .iter()
        .map(|r| *roster.verifying_key(&r.author()).expect("member"))
        .collect();
    // Each measurement runs ROUNDS times, interleaved with the others so that a slow moment
    // of this shared machine touches them alike, and its best round is reported.
    type Measure<'a> = Box<dyn Fn() -> anyhow::Result<f64> + 'a>;
    let raw_single: Measure = Box::new(|| {
        let t = Instant::now();
        for i in 0..n {
            keys[i].verify_strict(&msgs[i], &sigs[i])?;
        }
        Ok(rate(n, t.elapsed()))
    });
    let raw_batch: Measure = Box::new(|| {
        let t = Instant::now();
        for chunk in (0..n).collect::<Vec<_>>().chunks(512) {
            let m: Vec<&[u8]> = chunk.iter().map(|i| msgs[*i].as_slice()).collect();
            let s: Vec<_> = chunk.iter().map(|i| sigs[*i]).collect();
            let k: Vec<_> = chunk.iter().map(|i| keys[*i]).collect();
            ed25519_dalek::verify_batch(&m, &s, &k)?;
        }
        Ok(rate(n, t.elapsed()))
    });
    // Where the time goes: the checks alone (decode, rules, batch verification), and the
    // store alone on pre-checked records.
    let checks_only: Measure = Box::new(|| {
        let t = Instant::now();
        for chunk in bytes.chunks(512) {
            let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
            for r in check_records(&refs, &roster, now) {
                r?;
            }
        }
        Ok(rate(n, t.elapsed()))
    });
    // Each store measurement: `fill` on a fresh store, timed until everything is durable.
    let in_fresh_store = |fill: &dyn Fn(&Store) -> anyhow::Result<()>| -> anyhow::Result<f64> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        let t = Instant::now();
        fill(&store)?;
        rt.block_on(store.flush())?;
        let rate = rate(n, t.elapsed());
        anyhow::ensure!(store.counts().records == n, "not all records stored");
        Ok(rate)
    };
    let store_only: Measure = Box::new(|| {
        in_fresh_store(&|store| {
            for r in &records {
                store.append(r.clone())?;
            }
            Ok(())
        })
    });
    let store_batched: Measure = Box::new(|| {
        in_fresh_store(&|store| {
            for chunk in records.chunks(512) {
                append_all(store, chunk.to_vec())?;
            }
            Ok(())
        })
    });
    // Gossip-style: one record at a time, checked and appended; durable at the end.
    let gossip: Measure = Box::new(|| {
        in_fresh_store(&|store| {
            for b in &bytes {
                store.append(check_record(b, &roster, now)?)?;
            }
            Ok(())
        })
    });
    // Sync-style: batches of 512, one batch signature check each, appended; durable at the
    // end, as a node does with fetch answers (records from peers are not flushed one by one;
    // a peer has them again). With `flush_each`, also a flush after every batch: what it
    // would cost to make each fetch answer durable before the next.
    let sync_with = |flush_each: bool| {
        in_fresh_store(&|store| {
            for chunk in bytes.chunks(512) {
                let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
                let checked = check_records(&refs, &roster, now)
                    .into_iter()
                    .collect::<Result<Vec<_>, _>>()?;
                append_all(store, checked)?;
                if flush_each {
                    rt.block_on(store.flush())?;
                }
            }
            Ok(())
        })
    };
    let sync: Measure = Box::new(|| sync_with(false));
    let sync_flush_each: Measure = Box::new(|| sync_with(true));
    // Sync-style, pipelined: one thread checks batch k+1 while another appends batch k, as a
    // node does with fetch responses in flight (checks run on blocking threads; appends are
    // serialised by the store). Batches of 512, in order, durable at the end.
    let sync_two: Measure = Box::new(|| {
        in_fresh_store(&|store| {
            std::thread::scope(|scope| -> anyhow::Result<()> {
                let (checked_tx, checked_rx) = std::sync::mpsc::sync_channel::<Vec<Record>>(1);
                let (bytes, roster) = (&bytes, &roster);
                let checker = scope.spawn(move || -> anyhow::Result<()> {
                    for chunk in bytes.chunks(512) {
                        let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
                        let batch = check_records(&refs, roster, now)
                            .into_iter()
                            .collect::<Result<Vec<_>, _>>()?;
                        if checked_tx.send(batch).is_err() {
                            break;
                        }
                    }
                    Ok(())
                });
                for batch in checked_rx {
                    append_all(store, batch)?;
                }
                checker
                    .join()
                    .map_err(|_| anyhow::anyhow!("check thread panicked"))?
            })
        })
    });
    const ROUNDS: usize = 3;
    let measures = [
        &raw_single,
        &raw_batch,
        &checks_only,
        &store_only,
        &store_batched,
        &gossip,
        &sync,
        &sync_flush_each,
        &sync_two,
    ];
    let mut best = [0f64; 9];
    for _ in 0..ROUNDS {
        for (b, m) in best.iter_mut().zip(measures) {
            *b = b.max(m()?);
        }
    }
    let [
        raw_single,
        raw_batch,
        checks_only,
        store_only,
        store_batched,
        gossip,
        sync,
        sync_flush_each,
        sync_two,
    ] = best;

    println!("ingest of {n} records from 20 authors (records/s, best of {ROUNDS} rounds)");
    println!("  raw ed25519 verify_strict, one by one : {raw_single:>9.0}");
    println!("  raw ed25519 verify_batch (512)        : {raw_batch:>9.0}");
    println!("  batch checks alone (decode, rules, verify_batch): {checks_only:>9.0}");
    println!("  store append alone (pre-checked)      : {store_only:>9.0}");
    println!("  store append_batch alone (512, pre-checked): {store_batched:>9.0}");
    println!(
        "  gossip-style ingest (check + append)  : {gossip:>9.0}   ratio to raw single: {:.2}",
        gossip / raw_single
    );
    println!(
        "  sync-style ingest (batches of 512)    : {sync:>9.0}   ratio to raw batch:  {:.2}",
        sync / raw_batch
    );
    println!(
        "    the same with a flush after every batch: {sync_flush_each:>9.0}   ratio to raw batch:  {:.2}",
        sync_flush_each / raw_batch
    );
    println!(
        "  sync-style, check and append pipelined: {sync_two:>9.0}   ratio to raw batch:  {:.2} (2 threads against a 1-thread baseline)",
        sync_two / raw_batch
    );
    Ok(())
}

/// Through the API, as an integrator sees it: submissions with 256 in flight (each
/// acknowledged when durable), pre-signed records the same way, and submit → SSE latency at
/// 100 records/s.
async fn api(n: usize) -> anyhow::Result<()> {
    let inflight = 256usize;
    let members: Vec<LocalMember> = (0..inflight + 1).map(|i| LocalMember::new(12, i)).collect();
    let roster = local_roster(&members, &[]);
    let dir = tempfile::tempdir()?;
    let mut config = local_config(
        &members[0],
        &roster,
        Some(dir.path().join("n")),
        vec![],
        Some("bench".into()),
    );
    config.new_chain = true; // a single node: its chain starts here
    let node = Node::start(config).await?;
    // A node waits a few seconds after its start for peers to tell it its chain; this one has
    // none. Its first record is signed once that wait is over, before the clock starts.
    node.handle()
        .submit(attrib_tests::claim("before the measurement"))
        .await?;
    let base = format!("http://{}", node.api_addr().expect("api"));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(inflight)
        .build()?;
    let claim = serde_json::json!({
        "incident": { "title": "Grid outage", "summary": "Wiper on SCADA hosts", "observed_from": 1_763_000_000_000u64, "observed_to": 1_763_100_000_000u64 },
        "attributed_to": { "state": "RUS", "actor": "APT-X" },
        "confidence": 70, "tlp": "GREEN"
    });

    // (a) submissions signed by the node.
    let per_task = n / inflight;
    let submitted = per_task * inflight;
    let claim_body = serde_json::to_vec(&claim)?;
    let a = post_all(
        &http,
        &format!("{base}/v1/claims"),
        "application/json",
        vec![vec![claim_body; per_task]; inflight],
    )
    .await?;

    // (b) pre-signed records, one author per in-flight slot so each stream is in chain order.
    let chains: Vec<Vec<Record>> = members[1..]
        .iter()
        .map(|m| attrib_tests::signed_claims(std::slice::from_ref(m), &roster, per_task as u64))
        .collect();
    let record_bodies: Vec<Vec<Vec<u8>>> = chains
        .iter()
        .map(|c| c.iter().map(|r| r.as_bytes().to_vec()).collect())
        .collect();
    let b = post_all(
        &http,
        &format!("{base}/v1/records"),
        "application/octet-stream",
        record_bodies.clone(),
    )
    .await?;

    // Floor in the same run: the same client and requests against an HTTP server that
    // answers at once (no checks, no store): what HTTP alone costs on this machine.
    let floor_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let floor_addr = floor_listener.local_addr()?;
    let floor_server = tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/v1/records",
            axum::routing::post(|body: axum::body::Bytes| async move {
                let id = RecordId::of_encoding(&body);
                (
                    axum::http::StatusCode::CREATED,
                    axum::Json(serde_json::json!({ "id": id, "cursor": 1 })),
                )
            }),
        );
        axum::serve(floor_listener, app).await
    });
    let floor = post_all(
        &http,
        &format!("http://{floor_addr}/v1/records"),
        "application/octet-stream",
        record_bodies,
    )
    .await?;
    floor_server.abort();

    // Baseline in the same run: the same records into a fresh store alone (append +
    // group-committed flush, 256 chains in flight), without HTTP, JSON or signatures.
    let store_dir = tempfile::tempdir()?;
    let store = Arc::new(Store::open(store_dir.path())?);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for chain in chains {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for r in chain {
                store.append(r)?;
                store.flush_through(store.last_cursor()).await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let store_only = rate(submitted, t.elapsed());

    // (c) submit → SSE delivery at 100 records/s.
    let resp = http
        .get(format!(
            "{base}/v1/feed/stream?since={}",
            node.handle().feed_updates().borrow().to_owned()
        ))
        .bearer_auth("bench")
        .send()
        .await?;
    let mut body = resp.bytes_stream();
    let sent: Arc<std::sync::Mutex<HashMap<String, Instant>>> = Default::default();
    let sender = {
        let (http, base, claim, sent) = (http.clone(), base.clone(), claim.clone(), sent.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            for _ in 0..1000 {
                tick.tick().await;
                let start = Instant::now();
                let r: serde_json::Value = http
                    .post(format!("{base}/v1/claims"))
                    .bearer_auth("bench")
                    .json(&claim)
                    .send()
                    .await?
                    .json()
                    .await?;
                sent.lock()
                    .expect("lock")
                    .insert(r["id"].as_str().unwrap_or("").to_string(), start);
            }
            Ok::<_, anyhow::Error>(())
        })
    };
    use futures::StreamExt;
    // Arrival time of each record's event; matched with its send time once every POST has
    // been answered (an answer may come after the event).
    let mut arrivals: Vec<(String, Instant)> = Vec::new();
    let mut buf = String::new();
    while arrivals.len() < 1000 {
        let chunk = tokio::time::timeout(Duration::from_secs(30), body.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("stream ended"))??;
        let now = Instant::now();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data:")) {
                let v: serde_json::Value = serde_json::from_str(data.trim())?;
                let id = v["record"]["id"].as_str().unwrap_or("").to_string();
                arrivals.push((id, now));
            }
        }
    }
    sender.await??;
    let mut latencies = {
        let sent = sent.lock().expect("lock");
        let mut latencies = Vec::with_capacity(arrivals.len());
        for (id, at) in &arrivals {
            let start = sent
                .get(id)
                .ok_or_else(|| anyhow::anyhow!("feed delivered {id}, which was not submitted"))?;
            latencies.push(at.duration_since(*start).as_secs_f64() * 1000.0);
        }
        latencies
    };
    latencies.sort_by(f64::total_cmp);
    println!(
        "through the local API ({inflight} requests in flight, each acknowledged when durable)"
    );
    println!("  (a) submissions signed by the node : {a:>8.0} records/s");
    println!("  (b) pre-signed records             : {b:>8.0} records/s");
    println!(
        "  floor: same client and requests, a server that answers at once: {floor:>8.0} requests/s  (a/floor {:.2}, b/floor {:.2})",
        a / floor,
        b / floor
    );
    println!(
        "  baseline: store append + group commit only, same run: {store_only:>8.0} records/s  (a/baseline {:.2}, b/baseline {:.2})",
        a / store_only,
        b / store_only
    );
    println!(
        "  (c) submit -> SSE delivery at 100/s: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    node.shutdown().await?;
    Ok(())
}

/// Posts every slot's bodies in order, one request in flight per slot, each answered 201;
/// returns requests per second.
async fn post_all(
    http: &reqwest::Client,
    url: &str,
    content_type: &'static str,
    slots: Vec<Vec<Vec<u8>>>,
) -> anyhow::Result<f64> {
    let total: usize = slots.iter().map(Vec::len).sum();
    let t = Instant::now();
    let mut tasks = Vec::new();
    for bodies in slots {
        let (http, url) = (http.clone(), url.to_string());
        tasks.push(tokio::spawn(async move {
            for body in bodies {
                let r = http
                    .post(&url)
                    .bearer_auth("bench")
                    .header("content-type", content_type)
                    .body(body)
                    .send()
                    .await?;
                anyhow::ensure!(r.status().as_u16() == 201, "{url}: {}", r.status());
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(rate(total, t.elapsed()))
}

/// The 20 members and roster the footprint bench's records are signed under.
fn footprint_network() -> (Vec<LocalMember>, attrib_protocol::Roster) {
    let members: Vec<LocalMember> = (0..20).map(|i| LocalMember::new(13, i)).collect();
    let roster = local_roster(&members, &[]);
    (members, roster)
}

/// Disk bytes per record with N records stored, and the node's RSS on them (measured by
/// [`footprint_open`] in a process of its own: this one holds what the import left).
async fn footprint(n: usize) -> anyhow::Result<()> {
    let (members, roster) = footprint_network();
    let records = attrib_tests::signed_claims(&members, &roster, (n / 20) as u64);
    let encoded: usize = records.iter().map(|r| r.as_bytes().len()).sum();
    // The same records as gossip brings them, one at a time: an entry each.
    let one_by_one = {
        let dir = tempfile::tempdir()?;
        let store = Store::open(&dir.path().join("s"))?;
        for r in &records {
            store.append(r.clone())?;
        }
        drop(store);
        dir_bytes(&dir.path().join("s"))
    };
    let dir = tempfile::tempdir()?;
    let node = Node::start(local_config(
        &members[0],
        &roster,
        Some(dir.path().join("n")),
        vec![],
        None,
    ))
    .await?;
    let bytes: Vec<Vec<u8>> = records.iter().map(|r| r.as_bytes().to_vec()).collect();
    drop(records);
    for chunk in bytes.chunks(512) {
        node.handle().import(chunk.to_vec()).await?;
    }
    drop(bytes);
    let n = node.handle().record_count();
    node.shutdown().await?;
    let disk = dir_bytes(&dir.path().join("n"));
    println!("footprint with {n} records stored");
    let opened = std::process::Command::new(std::env::current_exe()?)
        .arg("footprint-open")
        .arg(dir.path().join("n"))
        .status()?;
    anyhow::ensure!(opened.success(), "footprint-open failed: {opened}");
    println!(
        "  disk, records imported (or caught up) in batches: {disk} bytes = {:.0} bytes/record; encoded record: {:.0} bytes; ratio {:.2}",
        disk as f64 / n as f64,
        encoded as f64 / n as f64,
        disk as f64 / encoded as f64
    );
    println!(
        "  disk, records stored one at a time (as gossip brings them): {one_by_one} bytes = {:.0} bytes/record; ratio {:.2}",
        one_by_one as f64 / n as f64,
        one_by_one as f64 / encoded as f64
    );
    Ok(())
}

/// Starts a node on the data dir [`footprint`] filled, in this fresh process, and prints its
/// start time and RSS.
async fn footprint_open(data_dir: &str) -> anyhow::Result<()> {
    let (members, roster) = footprint_network();
    let before = rss_kib();
    let opening = Instant::now();
    let node = Node::start(local_config(
        &members[0],
        &roster,
        Some(data_dir.into()),
        vec![],
        None,
    ))
    .await?;
    let reopen = opening.elapsed();
    let _ = node
        .handle()
        .feed(0, 1000, &attrib_node::FeedFilter::default())?;
    let rss = rss_kib();
    println!(
        "  node start on the stored records (store open, index rebuilt): {:.2} s",
        reopen.as_secs_f64()
    );
    println!(
        "  RSS of a process of its own: {before} KiB before the node; {rss} KiB with the node open; node share: {} KiB",
        rss.saturating_sub(before)
    );
    node.shutdown().await?;
    Ok(())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg =
        |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    match args.first().map(String::as_str) {
        Some("ingest") => tokio::task::block_in_place(|| ingest(arg(1, 20_000))),
        Some("api") => api(arg(1, 20_480)).await,
        Some("footprint") => footprint(arg(1, 100_000)).await,
        Some("footprint-open") => footprint_open(&args[1]).await,
        Some("network") => {
            let svg = args.get(4).filter(|a| a.parse::<usize>().is_err()).cloned();
            let rounds = arg(if svg.is_some() { 5 } else { 4 }, 3);
            network::run(arg(1, 100), arg(2, 10), arg(3, 20), svg, rounds).await
        }
        Some("network-procs") => tokio::task::block_in_place(|| {
            processes::run(arg(1, 100), arg(2, 10), arg(3, 10), arg(4, 3))
        }),
        Some("network-child") => processes::child(&args[1..]).await,
        _ => {
            eprintln!("usage: bench ingest|api|network|network-procs|footprint [N ...]");
            std::process::exit(2);
        }
    }
}

mod network;
mod processes;
