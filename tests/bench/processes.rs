//! The network benchmark with every node in its own process. The parent starts N children of
//! this binary (`bench network-child ...`), first bare gossipsub swarms (the baseline), then
//! attrib nodes, with the same identities, topology, heartbeat, message sizes and rate as the
//! in-process variant; it drives publication through the children's stdin and reads deliveries
//! from their stdout, and reads each child's CPU time and peak memory from /proc.
//!
//! Line protocol. Child → parent: `READY <multiaddr>`, `MESH` (enough gossip peers),
//! `SENT <record id> <t0 µs> <t1 µs>` (before and after the submission), `GOT <record id> <µs>`
//! (a record from another node arrived; for attrib: stored). Parent → child: `PUBLISH <k>`;
//! end of input stops the child.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use attrib_node::localnet::{LocalMember, local_config, local_roster};
use attrib_node::{FeedFilter, Node, gossip_topic};
use attrib_protocol::RecordId;
use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, gossipsub};
use tokio::io::AsyncBufReadExt;

use super::network::{DEGREE, HEARTBEAT, PUBLISHERS, bare_message, bare_swarm, delivery, topology};
use super::{RoundRatios, cpu_seconds_of, status_kib};

const SEED: u64 = 15;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Bare,
    Attrib,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Bare => "bare",
            Kind::Attrib => "attrib",
        }
    }
}

struct Figures {
    latencies_ms: Vec<f64>,
    delivered: usize,
    expected: usize,
    cpu_share: Vec<f64>,
    peak_rss_kib: Vec<u64>,
}

impl Figures {
    /// Adds another round's figures to these.
    fn absorb(&mut self, other: Figures) {
        self.latencies_ms.extend(other.latencies_ms);
        self.latencies_ms.sort_by(f64::total_cmp);
        self.delivered += other.delivered;
        self.expected += other.expected;
        self.cpu_share.extend(other.cpu_share);
        self.peak_rss_kib.extend(other.peak_rss_kib);
    }
}

/// Runs both variants, `rounds` times (baseline then attrib, fresh processes each time), and
/// prints each round's ratio and the pooled figures side by side.
pub(crate) fn run(n: usize, rate: usize, seconds: usize, rounds: usize) -> anyhow::Result<()> {
    println!(
        "network: {n} nodes, one process each, {rate} claims/s for {seconds} s from {} publishers, degree {DEGREE}, {} round(s)",
        PUBLISHERS.min(n),
        rounds.max(1)
    );
    let mut pooled: Option<(Figures, Figures)> = None;
    let mut ratios = RoundRatios::default();
    for round in 1..=rounds.max(1) {
        let base = run_kind(Kind::Bare, n, rate, seconds)?;
        let attrib = run_kind(Kind::Attrib, n, rate, seconds)?;
        ratios.round(round, &base.latencies_ms, &attrib.latencies_ms);
        pooled = Some(match pooled {
            None => (base, attrib),
            Some((mut b, mut a)) => {
                b.absorb(base);
                a.absorb(attrib);
                (b, a)
            }
        });
    }
    let Some((base, attrib)) = pooled else {
        return Ok(());
    };
    if rounds > 1 {
        println!("  all rounds pooled:");
    }
    for (name, f) in [("bare gossipsub", &base), ("attrib", &attrib)] {
        let mean_cpu = f.cpu_share.iter().sum::<f64>() / f.cpu_share.len().max(1) as f64;
        let max_rss = f.peak_rss_kib.iter().max().copied().unwrap_or(0);
        let mean_rss = f.peak_rss_kib.iter().sum::<u64>() / f.peak_rss_kib.len().max(1) as u64;
        println!(
            "  {name:<16} {}  CPU {:.1}% of a core per node  peak RSS per node {} MiB mean, {} MiB max",
            delivery(&f.latencies_ms, f.delivered, f.expected),
            100.0 * mean_cpu,
            mean_rss / 1024,
            max_rss / 1024,
        );
    }
    println!(
        "  {}",
        ratios.summary(&base.latencies_ms, &attrib.latencies_ms)
    );
    Ok(())
}

/// CPU seconds and peak RSS (KiB) of a child.
fn proc_usage(pid: u32) -> (f64, u64) {
    let pid = pid.to_string();
    (cpu_seconds_of(&pid), status_kib(&pid, "VmHWM:"))
}

/// What the children have said so far.
#[derive(Default)]
struct Seen {
    addrs: Vec<String>,
    meshed: HashSet<usize>,
    sent: HashMap<String, (u64, usize)>,
    got: Vec<(String, u64)>,
}

impl Seen {
    fn take(&mut self, i: usize, line: &str) -> anyhow::Result<()> {
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next(), parts.next()) {
            (Some("READY"), Some(addr), _) => {
                anyhow::ensure!(self.addrs.len() == i, "child {i} ready out of turn");
                self.addrs.push(addr.to_string());
            }
            (Some("MESH"), _, _) => {
                self.meshed.insert(i);
            }
            (Some("SENT"), Some(id), Some(t0)) => {
                self.sent.insert(id.to_string(), (t0.parse()?, i));
            }
            (Some("GOT"), Some(id), Some(at)) => self.got.push((id.to_string(), at.parse()?)),
            _ => anyhow::bail!("child {i} said {line:?}"),
        }
        Ok(())
    }
}

fn run_kind(kind: Kind, n: usize, rate: usize, seconds: usize) -> anyhow::Result<Figures> {
    let exe = std::env::current_exe()?;
    let topo = topology(n);
    let dir = tempfile::tempdir()?;
    let (lines_tx, lines) = std_mpsc::channel::<(usize, String)>();
    let mut children: Vec<Child> = Vec::new();
    let mut inputs: Vec<ChildStdin> = Vec::new();
    let mut seen = Seen::default();
    let deadline = Instant::now() + Duration::from_secs(60 + n as u64);
    for (i, dials) in topo.iter().enumerate() {
        let mut child = Command::new(&exe)
            .arg("network-child")
            .arg(kind.name())
            .arg(i.to_string())
            .arg(n.to_string())
            .arg(dir.path().join(i.to_string()))
            .args(dials.iter().map(|j| seen.addrs[*j].clone()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let out = child.stdout.take().expect("piped stdout");
        inputs.push(child.stdin.take().expect("piped stdin"));
        children.push(child);
        let tx = lines_tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send((i, line)).is_err() {
                    break;
                }
            }
        });
        while seen.addrs.len() <= i {
            let (from, line) =
                lines.recv_timeout(deadline.saturating_duration_since(Instant::now()))?;
            seen.take(from, &line)?;
        }
    }
    while seen.meshed.len() < n {
        let (from, line) =
            lines.recv_timeout(deadline.saturating_duration_since(Instant::now()))?;
        seen.take(from, &line)?;
    }
    // Let the mesh settle for two heartbeats (measurement hygiene, not synchronisation).
    std::thread::sleep(Duration::from_millis(1500));
    let cpu0: Vec<f64> = children.iter().map(|c| proc_usage(c.id()).0).collect();
    let wall0 = Instant::now();
    let total = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    for k in 0..total {
        let due = wall0 + interval * k as u32;
        while Instant::now() < due {
            if let Ok((from, line)) = lines.recv_timeout(due - Instant::now()) {
                seen.take(from, &line)?;
            }
        }
        writeln!(inputs[k % PUBLISHERS.min(n)], "PUBLISH {k}")?;
    }
    let expected = total * (n - 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    while (seen.got.len() < expected || seen.sent.len() < total) && Instant::now() < deadline {
        if let Ok((from, line)) =
            lines.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            seen.take(from, &line)?;
        }
    }
    let wall = wall0.elapsed().as_secs_f64();
    let usage: Vec<(f64, u64)> = children.iter().map(|c| proc_usage(c.id())).collect();
    drop(inputs);
    for mut c in children {
        let stop = Instant::now() + Duration::from_secs(10);
        while c.try_wait()?.is_none() && Instant::now() < stop {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
    let mut latencies: Vec<f64> = seen
        .got
        .iter()
        .filter_map(|(id, at)| {
            let (t0, _) = seen.sent.get(id)?;
            Some(at.saturating_sub(*t0) as f64 / 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    Ok(Figures {
        delivered: latencies.len(),
        latencies_ms: latencies,
        expected,
        cpu_share: usage
            .iter()
            .zip(&cpu0)
            .map(|((cpu, _), c0)| (cpu - c0) / wall)
            .collect(),
        peak_rss_kib: usage.iter().map(|(_, rss)| *rss).collect(),
    })
}

/// A child: one node (attrib or bare gossipsub) speaking the line protocol.
pub(crate) async fn child(args: &[String]) -> anyhow::Result<()> {
    let [kind, i, n, dir, bootstrap @ ..] = args else {
        anyhow::bail!("usage: bench network-child bare|attrib INDEX N DIR [BOOTSTRAP ...]");
    };
    let (i, n): (usize, usize) = (i.parse()?, n.parse()?);
    let bootstrap: Vec<Multiaddr> = bootstrap
        .iter()
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let members: Vec<LocalMember> = (0..n).map(|j| LocalMember::new(SEED, j)).collect();
    let roster = local_roster(&members, &[]);
    let me = &members[i];
    let want = DEGREE.min(n - 1);
    // One writer thread: lines are written whole and flushed at once.
    let (say, said) = std_mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut out = std::io::stdout().lock();
        for line in said {
            if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
                break;
            }
        }
    });
    let mut input = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    match kind.as_str() {
        "attrib" => {
            let mut cfg = local_config(me, &roster, Some(dir.into()), bootstrap, None);
            cfg.heartbeat = HEARTBEAT;
            cfg.sync_interval = Duration::from_secs(30);
            cfg.new_chain = true; // a new network: every chain starts now
            let node = Node::start(cfg).await?;
            let h = node.handle();
            let addr = h.listen_addrs(Duration::from_secs(10)).await;
            let addr = addr
                .first()
                .ok_or_else(|| anyhow::anyhow!("not listening"))?;
            say.send(format!("READY {addr}"))?;
            {
                let (h, say) = (h.clone(), say.clone());
                tokio::spawn(async move {
                    if h.wait_for_gossip_peers(want, Duration::from_secs(120))
                        .await
                    {
                        let _ = say.send("MESH".into());
                    }
                });
            }
            {
                let (h, say) = (h.clone(), say.clone());
                let author = attrib_protocol::member_key(&me.state_key);
                tokio::spawn(async move {
                    let mut updates = h.feed_updates();
                    let mut cursor = 0;
                    loop {
                        updates.borrow_and_update();
                        let Ok(page) = h.feed(cursor, 1000, &FeedFilter::default()) else {
                            return;
                        };
                        for e in &page.entries {
                            if e.record.author() != author {
                                let _ =
                                    say.send(format!("GOT {} {}", e.record.id(), e.received_us));
                            }
                        }
                        cursor = page.next;
                        if page.entries.is_empty() && updates.changed().await.is_err() {
                            return;
                        }
                    }
                });
            }
            while let Some(line) = input.next_line().await? {
                if let Some(k) = line.strip_prefix("PUBLISH ") {
                    let k: u64 = k.trim().parse()?;
                    let t0 = attrib_node::now_us();
                    let s = h.submit(attrib_tests::bench_claim(k, me.code)).await?;
                    say.send(format!("SENT {} {t0} {}", s.id, attrib_node::now_us()))?;
                }
            }
            node.shutdown().await?;
        }
        "bare" => {
            let topic = gossip_topic(roster.network_id());
            let (mut swarm, addr) = bare_swarm(me, &topic).await?;
            for a in bootstrap {
                swarm.dial(a)?;
            }
            say.send(format!("READY {addr}"))?;
            let mut subscribed = HashSet::new();
            let mut announced = false;
            loop {
                tokio::select! {
                    line = input.next_line() => match line? {
                        Some(line) => {
                            if let Some(k) = line.strip_prefix("PUBLISH ") {
                                let bytes = bare_message(me, &roster, k.trim().parse()?);
                                let id = RecordId::of_encoding(&bytes);
                                let t0 = attrib_node::now_us();
                                let _ = swarm.behaviour_mut().publish(topic.clone(), bytes);
                                say.send(format!("SENT {id} {t0} {t0}"))?;
                            }
                        }
                        None => break,
                    },
                    e = swarm.select_next_some() => match e {
                        SwarmEvent::Behaviour(gossipsub::Event::Message { message, .. }) => {
                            let at = attrib_node::now_us();
                            say.send(format!("GOT {} {at}", RecordId::of_encoding(&message.data)))?;
                        }
                        SwarmEvent::Behaviour(gossipsub::Event::Subscribed { peer_id, .. }) => {
                            subscribed.insert(peer_id);
                            if !announced && subscribed.len() >= want {
                                announced = true;
                                say.send("MESH".into())?;
                            }
                        }
                        _ => {}
                    },
                }
            }
        }
        other => anyhow::bail!("unknown node kind {other:?}: bare or attrib"),
    }
    Ok(())
}
