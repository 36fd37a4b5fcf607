//! Network benchmark: N real nodes on loopback in one process, claims published from several
//! members at a fixed total rate; per-record delivery latency to every node, completeness, CPU
//! and memory; and, in the same run, a bare gossipsub mesh with the same nodes, topology,
//! message sizes and rate, without validation or storage, as the baseline.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use attrib_node::localnet::{LocalMember, local_config, local_roster};
use attrib_node::{Node, NodeHandle, gossip_topic};
use attrib_protocol::{RecordId, Roster};
use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, gossipsub, noise, tcp, yamux};
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;

use attrib_tests::bench_claim as claim_body;

use super::{cpu_seconds, peak_rss_kib, percentile};

pub(crate) const DEGREE: usize = 6;
pub(crate) const PUBLISHERS: usize = 10;
/// Gossipsub heartbeat for both attrib nodes and the baseline.
pub(crate) const HEARTBEAT: Duration = Duration::from_millis(700);

/// Who dials whom: node i dials up to DEGREE random earlier nodes (seeded).
pub(crate) fn topology(n: usize) -> Vec<Vec<usize>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(100);
    (0..n)
        .map(|i| {
            let mut targets: Vec<usize> = (0..i).collect();
            let mut picked = Vec::new();
            while picked.len() < DEGREE.min(i) {
                let k = rng.gen_range(0..targets.len());
                picked.push(targets.swap_remove(k));
            }
            picked
        })
        .collect()
}

/// The baseline's behaviour.
pub(crate) type BareGossip =
    gossipsub::Behaviour<gossipsub::IdentityTransform, gossipsub::AllowAllSubscriptionFilter>;

/// A bare gossipsub swarm (the baseline): same identity, transport, heartbeat, message ids and
/// size limit as an attrib node, no validation, no storage, no other protocols. Subscribed to
/// `topic` and listening on loopback; returns its listen address too.
pub(crate) async fn bare_swarm(
    m: &LocalMember,
    topic: &gossipsub::IdentTopic,
) -> anyhow::Result<(libp2p::Swarm<BareGossip>, Multiaddr)> {
    let cfg = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .message_id_fn(|msg| gossipsub::MessageId::new(RecordId::of_encoding(&msg.data).as_bytes()))
        .max_transmit_size(attrib_node::MAX_GOSSIP_BYTES)
        .heartbeat_interval(HEARTBEAT)
        .build()?;
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(m.node_key.clone())
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|_| {
            Ok(BareGossip::new(
                gossipsub::MessageAuthenticity::Anonymous,
                cfg,
            )?)
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
        .build();
    swarm.behaviour_mut().subscribe(topic)?;
    swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
    loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            return Ok((swarm, address));
        }
    }
}

/// The baseline's message k: the size of an attrib record, a record signed by the publisher.
pub(crate) fn bare_message(m: &LocalMember, roster: &Roster, k: usize) -> Vec<u8> {
    let c = attrib_protocol::RecordContent {
        author: attrib_protocol::member_key(&m.state_key),
        seq: k as u64 + 1,
        prev: Some(RecordId([1; 32])),
        created_at: attrib_node::now_ms(),
        body: claim_body(k as u64, m.code),
    };
    attrib_protocol::Record::sign(c, &m.state_key, roster.network_id())
        .as_bytes()
        .to_vec()
}

#[derive(Default)]
struct Stats {
    latencies_ms: Vec<f64>,
    /// For attrib: latency from the moment the submission was acknowledged (durable at the
    /// publisher, handed to gossipsub) rather than from the submission call.
    after_ack_ms: Vec<f64>,
    delivered: usize,
    expected: usize,
    cpu_s: f64,
}

impl Stats {
    /// Adds another round's deliveries and CPU time (latencies stay sorted).
    fn absorb(&mut self, other: Stats) {
        self.latencies_ms.extend(other.latencies_ms);
        self.latencies_ms.sort_by(f64::total_cmp);
        self.after_ack_ms.extend(other.after_ack_ms);
        self.after_ack_ms.sort_by(f64::total_cmp);
        self.delivered += other.delivered;
        self.expected += other.expected;
        self.cpu_s += other.cpu_s;
    }
}

/// Latency percentiles (of sorted latencies) and completeness, as one report line.
pub(crate) fn delivery(sorted_ms: &[f64], delivered: usize, expected: usize) -> String {
    format!(
        "p50 {:>7.2} ms  p95 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  delivered {}/{} ({:.1}%)",
        percentile(sorted_ms, 0.5),
        percentile(sorted_ms, 0.95),
        percentile(sorted_ms, 0.99),
        sorted_ms.last().copied().unwrap_or(f64::NAN),
        delivered,
        expected,
        100.0 * delivered as f64 / expected.max(1) as f64,
    )
}

fn summary(name: &str, s: &Stats, nodes: usize, wall: Duration) {
    println!(
        "  {name:<22} {}  CPU {:.2}% of a core per node",
        delivery(&s.latencies_ms, s.delivered, s.expected),
        100.0 * s.cpu_s / wall.as_secs_f64() / nodes as f64,
    );
}

async fn run_attrib(n: usize, rate: usize, seconds: usize) -> anyhow::Result<(Stats, Duration)> {
    let members: Vec<LocalMember> = (0..n).map(|i| LocalMember::new(14, i)).collect();
    let roster = local_roster(&members, &[]);
    let topo = topology(n);
    let mut nodes: Vec<Node> = Vec::new();
    let mut addrs: Vec<Multiaddr> = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let bootstrap = topo[i].iter().map(|j| addrs[*j].clone()).collect();
        let mut cfg = local_config(m, &roster, None, bootstrap, None);
        cfg.heartbeat = HEARTBEAT;
        cfg.sync_interval = Duration::from_secs(30);
        cfg.new_chain = true; // a new network: every chain starts now
        let node = Node::start(cfg).await?;
        addrs.push(node.handle().listen_addrs(Duration::from_secs(10)).await[0].clone());
        nodes.push(node);
    }
    let handles: Vec<NodeHandle> = nodes.iter().map(Node::handle).collect();
    for h in &handles {
        anyhow::ensure!(
            h.wait_for_gossip_peers(DEGREE.min(n - 1), Duration::from_secs(60))
                .await,
            "mesh did not form"
        );
    }
    // Let the mesh settle for two heartbeats (measurement hygiene, not synchronisation).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cpu0 = super::cpu_seconds();
    let wall0 = Instant::now();
    let total = rate * seconds;
    let mut sent: HashMap<RecordId, (u64, u64, usize)> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    for k in 0..total {
        tick.tick().await;
        let p = k % PUBLISHERS.min(n);
        let t0 = attrib_node::now_us();
        let s = handles[p]
            .submit(claim_body(k as u64, members[p].code))
            .await?;
        sent.insert(s.id, (t0, attrib_node::now_us(), p));
    }
    // Wait for completeness (bounded): every node holds every record.
    let deadline = Instant::now() + Duration::from_secs(30);
    for h in &handles {
        while h.record_count() < total && Instant::now() < deadline {
            let mut u = h.feed_updates();
            let _ = tokio::time::timeout(Duration::from_millis(200), u.changed()).await;
        }
    }
    let wall = wall0.elapsed();
    let cpu_s = super::cpu_seconds() - cpu0;
    let mut latencies = Vec::new();
    let mut after_ack = Vec::new();
    let mut delivered = 0;
    for (i, h) in handles.iter().enumerate() {
        for (id, (t0, t1, publisher)) in &sent {
            if *publisher == i {
                continue;
            }
            if let Some(entry) = h.get(id)? {
                delivered += 1;
                latencies.push(entry.received_us.saturating_sub(*t0) as f64 / 1000.0);
                after_ack.push(entry.received_us.saturating_sub(*t1) as f64 / 1000.0);
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    after_ack.sort_by(f64::total_cmp);
    for node in nodes {
        node.shutdown().await?;
    }
    Ok((
        Stats {
            latencies_ms: latencies,
            after_ack_ms: after_ack,
            delivered,
            expected: total * (n - 1),
            cpu_s,
        },
        wall,
    ))
}

/// The baseline: bare gossipsub swarms, same identities, topology, heartbeat and message bytes.
async fn run_baseline(
    n: usize,
    rate: usize,
    seconds: usize,
    roster: &Roster,
) -> anyhow::Result<(Stats, Duration)> {
    let members: Vec<LocalMember> = (0..n).map(|i| LocalMember::new(14, i)).collect();
    let topic = gossip_topic(roster.network_id());
    let topo = topology(n);
    let (arrivals_tx, mut arrivals) = mpsc::unbounded_channel::<(usize, Vec<u8>, u64)>();
    let mut publish: Vec<mpsc::UnboundedSender<Vec<u8>>> = Vec::new();
    let mut addrs: Vec<Multiaddr> = Vec::new();
    let (ready_tx, mut ready) = mpsc::unbounded_channel::<usize>();
    for (i, m) in members.iter().enumerate() {
        let (mut swarm, addr) = bare_swarm(m, &topic).await?;
        for j in &topo[i] {
            swarm.dial(addrs[*j].clone())?;
        }
        addrs.push(addr);
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        publish.push(tx);
        let (arrivals_tx, ready_tx, topic) = (arrivals_tx.clone(), ready_tx.clone(), topic.clone());
        let want = DEGREE.min(n - 1);
        tokio::spawn(async move {
            let mut subscribed: std::collections::HashSet<PeerId> = Default::default();
            let mut announced = false;
            loop {
                tokio::select! {
                    m = rx.recv() => match m {
                        Some(bytes) => { let _ = swarm.behaviour_mut().publish(topic.clone(), bytes); }
                        None => break,
                    },
                    e = swarm.select_next_some() => match e {
                        SwarmEvent::Behaviour(gossipsub::Event::Message { message, .. }) => {
                            let _ = arrivals_tx.send((i, message.data, attrib_node::now_us()));
                        }
                        SwarmEvent::Behaviour(gossipsub::Event::Subscribed { peer_id, .. }) => {
                            subscribed.insert(peer_id);
                            if !announced && subscribed.len() >= want {
                                announced = true;
                                let _ = ready_tx.send(i);
                            }
                        }
                        _ => {}
                    },
                }
            }
        });
    }
    for _ in 0..n {
        tokio::time::timeout(Duration::from_secs(60), ready.recv()).await?;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cpu0 = cpu_seconds();
    let wall0 = Instant::now();
    let total = rate * seconds;
    let mut sent: HashMap<RecordId, (u64, usize)> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    for k in 0..total {
        tick.tick().await;
        let p = k % PUBLISHERS.min(n);
        let bytes = bare_message(&members[p], roster, k);
        let id = RecordId::of_encoding(&bytes);
        sent.insert(id, (attrib_node::now_us(), p));
        publish[p].send(bytes)?;
    }
    let mut latencies = Vec::new();
    let expected = total * (n - 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while latencies.len() < expected {
        match tokio::time::timeout_at(deadline, arrivals.recv()).await {
            Ok(Some((_, data, at))) => {
                if let Some((t0, _)) = sent.get(&RecordId::of_encoding(&data)) {
                    latencies.push(at.saturating_sub(*t0) as f64 / 1000.0);
                }
            }
            _ => break,
        }
    }
    let wall = wall0.elapsed();
    let cpu_s = cpu_seconds() - cpu0;
    let delivered = latencies.len();
    latencies.sort_by(f64::total_cmp);
    drop(publish);
    Ok((
        Stats {
            latencies_ms: latencies,
            after_ack_ms: Vec::new(),
            delivered,
            expected,
            cpu_s,
        },
        wall,
    ))
}

fn svg(path: &str, attrib: &[f64], baseline: &[f64], n: usize, rate: usize) -> anyhow::Result<()> {
    let (w, h, left, bottom) = (720.0, 420.0, 60.0, 50.0);
    let max_ms = percentile(attrib, 0.999)
        .max(percentile(baseline, 0.999))
        .max(1.0)
        * 1.1;
    let x = |ms: f64| left + (ms / max_ms).min(1.0) * (w - left - 20.0);
    let y = |q: f64| (h - bottom) - q * (h - bottom - 30.0);
    let curve = |data: &[f64]| -> String {
        let mut pts = String::new();
        for (i, v) in data.iter().enumerate().step_by((data.len() / 400).max(1)) {
            pts.push_str(&format!(
                "{:.1},{:.1} ",
                x(*v),
                y((i + 1) as f64 / data.len() as f64)
            ));
        }
        pts
    };
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{left}" y="18" font-size="14">Delivery latency to every node, {n} nodes, {rate} claims/s (CDF)</text>
<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="black"/>
<line x1="{left}" y1="30" x2="{left}" y2="{}" stroke="black"/>
"#,
        h - bottom,
        w - 20.0,
        h - bottom,
        h - bottom
    );
    for k in 0..=5 {
        let ms = max_ms * k as f64 / 5.0;
        out.push_str(&format!(
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{ms:.0} ms</text>
"#,
            x(ms),
            h - bottom + 18.0
        ));
    }
    for q in [0.5, 0.95, 0.99] {
        out.push_str(&format!(r##"<line x1="{left}" y1="{0:.1}" x2="{1}" y2="{0:.1}" stroke="#ddd"/><text x="{2}" y="{3:.1}" text-anchor="end">p{4}</text>
"##, y(q), w - 20.0, left - 5.0, y(q) + 4.0, (q * 100.0) as u32));
    }
    out.push_str(&format!(
        r##"<polyline fill="none" stroke="#999" stroke-width="2" points="{}"/>
<polyline fill="none" stroke="#c0392b" stroke-width="2" points="{}"/>
<text x="{}" y="{}" fill="#c0392b">attrib (validate + store + forward)</text>
<text x="{}" y="{}" fill="#999">bare gossipsub baseline</text>
</svg>
"##,
        curve(baseline),
        curve(attrib),
        w - 280.0,
        h - bottom - 40.0,
        w - 280.0,
        h - bottom - 22.0
    ));
    std::fs::write(path, out)?;
    Ok(())
}

/// Runs `rounds` rounds, each the baseline then attrib on fresh nodes, and reports each
/// round's p99 ratio and the ratio over all rounds' deliveries pooled. One round's ratio
/// swings widely on this machine (the baseline's own p99 moved between 15 and 26 ms from one
/// run to the next), so the pooled figure is the one to quote.
pub(crate) async fn run(
    n: usize,
    rate: usize,
    seconds: usize,
    svg_path: Option<String>,
    rounds: usize,
) -> anyhow::Result<()> {
    let members: Vec<LocalMember> = (0..n).map(|i| LocalMember::new(14, i)).collect();
    let roster = local_roster(&members, &[]);
    println!(
        "network: {n} nodes in one process, {rate} claims/s for {seconds} s from {} publishers, degree {DEGREE}, {rounds} round(s)",
        PUBLISHERS.min(n)
    );
    let (mut base, mut attrib) = (Stats::default(), Stats::default());
    let (mut base_wall, mut wall) = (Duration::ZERO, Duration::ZERO);
    let mut ratios = super::RoundRatios::default();
    // Peak RSS is read in the first round: glibc raises its mmap threshold once large blocks
    // are freed, so later rounds keep hundreds of MiB of freed buffers (not a leak: with
    // MALLOC_MMAP_THRESHOLD_ fixed, RSS stays level over rounds).
    let (mut peak_after_baseline, mut peak_first_round) = (0, 0);
    for round in 1..=rounds.max(1) {
        let (b, bw) = run_baseline(n, rate, seconds, &roster).await?;
        if round == 1 {
            peak_after_baseline = peak_rss_kib();
        }
        let (a, aw) = run_attrib(n, rate, seconds).await?;
        if round == 1 {
            peak_first_round = peak_rss_kib();
        }
        ratios.round(round, &b.latencies_ms, &a.latencies_ms);
        base.absorb(b);
        attrib.absorb(a);
        base_wall += bw;
        wall += aw;
    }
    println!("  all rounds pooled:");
    summary("bare gossipsub", &base, n, base_wall);
    summary("attrib", &attrib, n, wall);
    let a = &attrib.after_ack_ms;
    println!(
        "  attrib from acknowledgement: p50 {:>7.2} ms  p99 {:>7.2} ms (the rest is signing and the durable write at the publisher)",
        percentile(a, 0.5),
        percentile(a, 0.99)
    );
    println!(
        "  {}   peak RSS of the process in round 1: {} MiB ({} MiB after the baseline), about {:.1} MiB per node",
        ratios.summary(&base.latencies_ms, &attrib.latencies_ms),
        peak_first_round / 1024,
        peak_after_baseline / 1024,
        peak_first_round as f64 / 1024.0 / n as f64
    );
    if let Some(path) = svg_path {
        svg(&path, &attrib.latencies_ms, &base.latencies_ms, n, rate)?;
        println!("  latency distribution written to {path}");
    }
    Ok(())
}
