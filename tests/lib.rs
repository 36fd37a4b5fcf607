//! Test support for multi-node scenarios: fresh nodes on loopback in temp dirs, and a harness
//! peer that speaks the real gossip protocol (to play a hostile or outside peer).

use std::collections::HashSet;
use std::time::Duration;

use attrib_node::localnet::{LocalMember, local_config, local_roster, start_local_network};
use attrib_node::{Node, NodeHandle, gossip_config, gossip_topic};
use attrib_protocol::{NetworkId, Roster};
use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, gossipsub, noise, tcp, yamux};
use tokio::sync::{mpsc, watch};

/// How long any single wait in a test may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A plain claim for scenarios where what it says does not matter: attributed to the actor
/// `APT-X`, confidence 50, TLP:GREEN.
pub fn claim(title: &str) -> attrib_protocol::Body {
    use attrib_protocol::*;
    Body::Claim(Claim {
        incident: Incident {
            title: title.into(),
            summary: String::new(),
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
    })
}

/// The claim the benchmarks publish: a realistic size, attributed to an actor.
pub fn bench_claim(i: u64, code: attrib_protocol::StateCode) -> attrib_protocol::Body {
    use attrib_protocol::*;
    Body::Claim(Claim {
        incident: Incident {
            title: format!("incident {i} reported by {code}"),
            summary: "Intrusion into government mail servers; data exfiltrated over three weeks."
                .into(),
            observed_from: 1_763_000_000_000,
            observed_to: 1_763_100_000_000,
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
    })
}

/// `per_author` benchmark claims from each member, signed offline as each member's chain from
/// seq 1, interleaved by seq (so any prefix holds whole chain prefixes).
pub fn signed_claims(
    members: &[LocalMember],
    roster: &Roster,
    per_author: u64,
) -> Vec<attrib_protocol::Record> {
    use attrib_protocol::*;
    let now = attrib_node::now_ms();
    let mut chains: Vec<Vec<Record>> = Vec::new();
    for m in members {
        let mut prev = None;
        let mut chain = Vec::new();
        for seq in 1..=per_author {
            let content = RecordContent {
                author: member_key(&m.state_key),
                seq,
                prev,
                created_at: now,
                body: bench_claim(seq, m.code),
            };
            let r = Record::sign(content, &m.state_key, roster.network_id());
            prev = Some(r.id());
            chain.push(r);
        }
        chains.push(chain);
    }
    let mut out = Vec::new();
    for i in 0..per_author as usize {
        for c in &chains {
            out.push(c[i].clone());
        }
    }
    out
}

/// Waits until `node` holds at least `n` records, or fails after [`DEADLINE`].
pub async fn wait_for_count(node: &NodeHandle, n: usize, what: &str) -> anyhow::Result<()> {
    let mut updates = node.feed_updates();
    let wait = async {
        while node.record_count() < n {
            if updates.changed().await.is_err() {
                break;
            }
        }
    };
    tokio::time::timeout(DEADLINE, wait).await.map_err(|_| {
        anyhow::anyhow!(
            "timed out waiting for {what}: holds {} of {n}",
            node.record_count()
        )
    })?;
    Ok(())
}

/// Waits until every running node holds the same record set as `nodes[0]` with `n` records.
pub async fn wait_converged(net: &TestNet, n: usize) -> anyhow::Result<()> {
    for (i, node) in net.nodes.iter().enumerate() {
        if let Some(node) = node {
            wait_for_count(&node.handle(), n, &format!("node {i} to converge")).await?;
        }
    }
    let digests: Vec<_> = net
        .nodes
        .iter()
        .flatten()
        .map(|n| n.handle().record_set_digest())
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(
        digests.windows(2).all(|w| w[0] == w[1]),
        "record sets differ: {digests:?}"
    );
    Ok(())
}

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A network of real nodes with data dirs under one temp dir.
pub struct TestNet {
    /// Members, in node order.
    pub members: Vec<LocalMember>,
    /// The roster.
    pub roster: Roster,
    /// The running nodes (`None` while stopped).
    pub nodes: Vec<Option<Node>>,
    /// Listen address of each node (stable across restarts is not guaranteed).
    pub addrs: Vec<Multiaddr>,
    /// Extra admitted peers (harness peers): (member, is_member).
    pub extra: Vec<(LocalMember, bool)>,
    dir: tempfile::TempDir,
}

impl TestNet {
    /// Starts `n` nodes (seeded keys), fully connected, each with a data dir and an API.
    /// `extra` are further admitted identities for harness peers: `(index, is_member)`.
    pub async fn start(n: usize, extra: &[(usize, bool)]) -> anyhow::Result<TestNet> {
        init_logs();
        let members: Vec<LocalMember> = (0..n).map(|i| LocalMember::new(7, i)).collect();
        let extra: Vec<(LocalMember, bool)> = extra
            .iter()
            .map(|(i, m)| (LocalMember::new(7, *i), *m))
            .collect();
        let roster = local_roster(&members, &extra);
        let dir = tempfile::tempdir()?;
        let dirs: Vec<_> = (0..n)
            .map(|i| dir.path().join(format!("node{i}")))
            .collect();
        for (d, m) in dirs.iter().zip(&members) {
            // As `attrib init` does: these states' keys are new, their chains start here.
            attrib_node::mark_new_chain(d, &attrib_protocol::member_key(&m.state_key))?;
        }
        let nodes = start_local_network(
            &members,
            &roster,
            Some(dirs),
            Some("test-token".into()),
            DEADLINE,
        )
        .await?;
        let mut addrs = Vec::new();
        for node in &nodes {
            addrs.push(node.handle().listen_addrs(DEADLINE).await[0].clone());
        }
        Ok(TestNet {
            members,
            roster,
            nodes: nodes.into_iter().map(Some).collect(),
            addrs,
            extra,
            dir,
        })
    }

    /// Node `i`'s handle (panics if stopped).
    pub fn node(&self, i: usize) -> NodeHandle {
        self.nodes[i].as_ref().expect("node is running").handle()
    }

    /// Node `i`'s API base URL.
    pub fn api(&self, i: usize) -> String {
        let addr = self.nodes[i]
            .as_ref()
            .expect("running")
            .api_addr()
            .expect("api");
        format!("http://{addr}")
    }

    /// Stops node `i` cleanly.
    pub async fn stop(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(node) = self.nodes[i].take() {
            node.shutdown().await?;
        }
        Ok(())
    }

    /// Node `i`'s data dir.
    pub fn data_dir(&self, i: usize) -> std::path::PathBuf {
        self.dir.path().join(format!("node{i}"))
    }

    /// Restarts node `i` on its data dir, dialing the other running nodes.
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        let bootstrap = (0..self.nodes.len())
            .filter(|j| *j != i && self.nodes[*j].is_some())
            .map(|j| self.addrs[j].clone())
            .collect();
        self.restart_with(i, bootstrap).await
    }

    /// Restarts node `i` on its data dir, dialing only `bootstrap`.
    pub async fn restart_with(
        &mut self,
        i: usize,
        bootstrap: Vec<Multiaddr>,
    ) -> anyhow::Result<()> {
        self.restart_configured(i, bootstrap, |_| {}).await
    }

    /// Restarts node `i` on its data dir, dialing only `bootstrap`, with `adjust` applied to
    /// its config (webhooks, TLP ceiling, ...).
    pub async fn restart_configured(
        &mut self,
        i: usize,
        bootstrap: Vec<Multiaddr>,
        adjust: impl FnOnce(&mut attrib_node::NodeConfig),
    ) -> anyhow::Result<()> {
        let mut cfg = local_config(
            &self.members[i],
            &self.roster,
            Some(self.dir.path().join(format!("node{i}"))),
            bootstrap,
            Some("test-token".into()),
        );
        adjust(&mut cfg);
        let node = Node::start(cfg).await?;
        self.addrs[i] = node.handle().listen_addrs(DEADLINE).await[0].clone();
        self.nodes[i] = Some(node);
        Ok(())
    }
}

/// GETs `url` with `client` and reads the answer as JSON (panics on failure: for tests).
pub async fn get_json(client: &reqwest::Client, url: String) -> serde_json::Value {
    client
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"))
}

/// GETs `url` with `client` and returns the body as text (panics on failure: for tests).
pub async fn get_text(client: &reqwest::Client, url: String) -> String {
    client
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: no body: {e}"))
}

/// An HTTP client that sends the test nodes' API token (reads need it unless the node serves
/// public reads).
pub fn reader() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_static("Bearer test-token"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("http client")
}

/// Runs a Python 3 script (`python3 -c`) with arguments; returns its stdout. The interop tests
/// use the OASIS tools: `pip install stix2-validator stix2 taxii2-client` (`.ci/run` does).
pub fn python(script: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run python3: {e}"))?;
    anyhow::ensure!(
        out.status.success(),
        "python failed (are stix2-validator, stix2 and taxii2-client installed? `pip install stix2-validator stix2 taxii2-client`):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// A libp2p swarm with `member`'s node identity, the node's transport (TCP, Noise, Yamux) and
/// `behaviour`: the base of every harness peer.
fn harness_swarm<B: libp2p::swarm::NetworkBehaviour>(
    member: &LocalMember,
    behaviour: B,
) -> anyhow::Result<libp2p::Swarm<B>> {
    Ok(
        libp2p::SwarmBuilder::with_existing_identity(member.node_key.clone())
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )?
            .with_behaviour(|_| behaviour)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build(),
    )
}

/// What a harness peer saw.
#[derive(Debug, Clone, Default)]
pub struct HarnessView {
    /// Peers subscribed to the record topic.
    pub subscribed: usize,
    /// Gossip messages received (their bytes).
    pub received: Vec<Vec<u8>>,
    /// Connections closed by the other side (or failed).
    pub closed: usize,
}

/// A bare gossipsub peer on the record topic: publishes whatever bytes a test gives it and
/// records what it receives. It runs no attrib validation at all.
pub struct HarnessPeer {
    publish: mpsc::Sender<Vec<u8>>,
    /// What it has seen so far.
    pub view: watch::Receiver<HarnessView>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HarnessPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HarnessPeer {
    /// Starts a harness peer with `member`'s node identity and dials `addr`.
    pub fn connect(
        member: &LocalMember,
        network: NetworkId,
        addr: Multiaddr,
    ) -> anyhow::Result<HarnessPeer> {
        Self::connect_sized(member, network, addr, attrib_node::MAX_GOSSIP_BYTES)
    }

    /// Like [`HarnessPeer::connect`], but willing to send messages up to `max_transmit` bytes
    /// (to send oversized messages).
    pub fn connect_sized(
        member: &LocalMember,
        network: NetworkId,
        addr: Multiaddr,
        max_transmit: usize,
    ) -> anyhow::Result<HarnessPeer> {
        let topic = gossip_topic(network);
        let cfg = gossipsub::ConfigBuilder::from(
            gossip_config(Duration::from_millis(100)).map_err(anyhow::Error::msg)?,
        )
        .max_transmit_size(max_transmit)
        .build()?;
        let gossip = gossipsub::Behaviour::<
            gossipsub::IdentityTransform,
            gossipsub::AllowAllSubscriptionFilter,
        >::new(gossipsub::MessageAuthenticity::Anonymous, cfg)
        .map_err(anyhow::Error::msg)?;
        let mut swarm = harness_swarm(member, gossip)?;
        swarm.behaviour_mut().subscribe(&topic)?;
        swarm.dial(addr)?;
        let (publish, mut rx) = mpsc::channel::<Vec<u8>>(64);
        let (view_tx, view) = watch::channel(HarnessView::default());
        let task = tokio::spawn(async move {
            let mut subscribed = HashSet::new();
            loop {
                tokio::select! {
                    msg = rx.recv() => match msg {
                        Some(bytes) => {
                            let _ = swarm.behaviour_mut().publish(topic.clone(), bytes);
                        }
                        None => break,
                    },
                    event = swarm.select_next_some() => match event {
                        SwarmEvent::Behaviour(gossipsub::Event::Subscribed { peer_id, .. }) => {
                            subscribed.insert(peer_id);
                            view_tx.send_modify(|v| v.subscribed = subscribed.len());
                        }
                        SwarmEvent::Behaviour(gossipsub::Event::Message { message, message_id, propagation_source }) => {
                            let _ = swarm.behaviour_mut().report_message_validation_result(&message_id, &propagation_source, gossipsub::MessageAcceptance::Ignore);
                            view_tx.send_modify(|v| v.received.push(message.data));
                        }
                        SwarmEvent::ConnectionClosed { .. } | SwarmEvent::OutgoingConnectionError { .. } => {
                            view_tx.send_modify(|v| v.closed += 1);
                        }
                        _ => {}
                    },
                }
            }
        });
        Ok(HarnessPeer {
            publish,
            view,
            task,
        })
    }

    /// Waits until `pred` holds for the view, or fails after [`DEADLINE`] saying `what`.
    pub async fn wait_for(
        &mut self,
        what: &str,
        pred: impl Fn(&HarnessView) -> bool,
    ) -> anyhow::Result<()> {
        tokio::time::timeout(DEADLINE, self.view.wait_for(|v| pred(v)))
            .await
            .map_err(|_| anyhow::anyhow!("timed out waiting for: {what}"))??;
        Ok(())
    }

    /// Publishes raw bytes on the record topic.
    pub async fn publish(&self, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.publish.send(bytes).await?;
        Ok(())
    }
}

/// A roster peer that speaks only the fetch protocol, as a node of an earlier version did (no
/// head record in its heads answers), and may lie: it claims to hold `author`'s chain up to
/// `records.len()` and serves `records` (e.g. forged) for chain and id requests; or
/// ([`LyingPeer::claiming`]) it names a head it does not have and never answers for it.
pub struct LyingPeer {
    /// Heads requests answered, chain requests answered (or held open).
    served: tokio::sync::watch::Receiver<(usize, usize)>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LyingPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LyingPeer {
    /// Starts the liar and dials `addr`.
    pub fn start(
        member: &LocalMember,
        _network: NetworkId,
        addr: Multiaddr,
        records: Vec<Vec<u8>>,
        author: attrib_protocol::MemberKey,
    ) -> anyhow::Result<LyingPeer> {
        let head_id = records
            .last()
            .map(|b| attrib_protocol::RecordId::of_encoding(b))
            .unwrap_or(attrib_protocol::RecordId([0; 32]));
        let seq = records.len() as u64;
        Self::spawn(member, addr, Some(records), author, seq, head_id)
    }

    /// A liar that names `author`'s chain head at `seq` (without the head record) and never
    /// answers a chain request (it holds them open), counting them.
    pub fn claiming(
        member: &LocalMember,
        addr: Multiaddr,
        author: attrib_protocol::MemberKey,
        seq: u64,
    ) -> anyhow::Result<LyingPeer> {
        Self::spawn(
            member,
            addr,
            None,
            author,
            seq,
            attrib_protocol::RecordId([7; 32]),
        )
    }

    fn spawn(
        member: &LocalMember,
        addr: Multiaddr,
        records: Option<Vec<Vec<u8>>>,
        author: attrib_protocol::MemberKey,
        seq: u64,
        head_id: attrib_protocol::RecordId,
    ) -> anyhow::Result<LyingPeer> {
        use attrib_protocol::sync::{FetchRequest, FetchResponse, HeadEntry};
        use libp2p::request_response;
        let mut swarm = harness_swarm(member, attrib_node::fetch_behaviour())?;
        swarm.dial(addr)?;
        let (count, served) = tokio::sync::watch::channel((0usize, 0usize));
        let task = tokio::spawn(async move {
            let mut held_open = Vec::new();
            while let Some(event) = swarm.next().await {
                if let SwarmEvent::Behaviour(request_response::Event::Message {
                    message:
                        request_response::Message::Request {
                            request, channel, ..
                        },
                    ..
                }) = event
                {
                    let response = match (request, &records) {
                        (FetchRequest::Heads, _) => {
                            count.send_modify(|n| n.0 += 1);
                            FetchResponse {
                                heads: vec![HeadEntry {
                                    author,
                                    seq,
                                    id: head_id,
                                }],
                                ..Default::default()
                            }
                        }
                        (FetchRequest::Chain { .. }, None) => {
                            count.send_modify(|n| n.1 += 1);
                            held_open.push(channel);
                            continue;
                        }
                        (FetchRequest::Chain { from, to, .. }, Some(records)) => {
                            count.send_modify(|n| n.1 += 1);
                            let lo = (from.max(1) - 1) as usize;
                            let hi = (to as usize).min(records.len());
                            FetchResponse {
                                records: records
                                    .get(lo..hi)
                                    .map(<[Vec<u8>]>::to_vec)
                                    .unwrap_or_default(),
                                ..Default::default()
                            }
                        }
                        (FetchRequest::Records(ids), Some(records)) => FetchResponse {
                            records: records
                                .iter()
                                .filter(|b| {
                                    ids.contains(&attrib_protocol::RecordId::of_encoding(b))
                                })
                                .cloned()
                                .collect(),
                            ..Default::default()
                        },
                        (FetchRequest::Records(_), None) => FetchResponse::default(),
                    };
                    let _ = swarm.behaviour_mut().send_response(channel, response);
                }
            }
        });
        Ok(LyingPeer { served, task })
    }

    /// How many chain requests it answered (or, from [`LyingPeer::claiming`], held open).
    pub fn served(&self) -> usize {
        self.served.borrow().1
    }

    /// Waits (up to [`DEADLINE`]) until it has answered `n` heads requests; false if it did not.
    /// A node asks a peer for heads again only after the previous answer was taken in.
    pub async fn wait_heads_answered(&self, n: usize) -> bool {
        let mut served = self.served.clone();
        matches!(
            tokio::time::timeout(DEADLINE, served.wait_for(|s| s.0 >= n)).await,
            Ok(Ok(_))
        )
    }
}

/// A roster peer that only sends fetch requests (to probe a node's bounds) and reports the
/// answers: `Ok(response)` or `Err(reason)` when the node refused the stream.
pub struct FetchProbe {
    requests: mpsc::Sender<(
        attrib_protocol::sync::FetchRequest,
        tokio::sync::oneshot::Sender<Result<attrib_protocol::sync::FetchResponse, String>>,
    )>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FetchProbe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FetchProbe {
    /// Connects with `member`'s node identity to the node at `addr`.
    pub fn connect(member: &LocalMember, addr: Multiaddr) -> anyhow::Result<FetchProbe> {
        use libp2p::request_response;
        let mut swarm = harness_swarm(member, attrib_node::fetch_behaviour())?;
        let target = addr.clone();
        swarm.dial(addr)?;
        let (requests, mut rx) = mpsc::channel::<(
            attrib_protocol::sync::FetchRequest,
            tokio::sync::oneshot::Sender<Result<attrib_protocol::sync::FetchResponse, String>>,
        )>(1024);
        let task = tokio::spawn(async move {
            let mut peer = None;
            let mut queued = Vec::new();
            let mut waiting = std::collections::HashMap::new();
            loop {
                tokio::select! {
                    req = rx.recv() => match req {
                        Some((request, reply)) => match peer {
                            Some(p) => {
                                let id = swarm.behaviour_mut().send_request(&p, request);
                                waiting.insert(id, reply);
                            }
                            None => queued.push((request, reply)),
                        },
                        None => break,
                    },
                    event = swarm.select_next_some() => match event {
                        SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                            peer = Some(peer_id);
                            for (request, reply) in queued.drain(..) {
                                let id = swarm.behaviour_mut().send_request(&peer_id, request);
                                waiting.insert(id, reply);
                            }
                        }
                        SwarmEvent::Behaviour(request_response::Event::Message {
                            message: request_response::Message::Response { request_id, response },
                            ..
                        }) => {
                            if let Some(reply) = waiting.remove(&request_id) {
                                let _ = reply.send(Ok(response));
                            }
                        }
                        SwarmEvent::Behaviour(request_response::Event::OutboundFailure { request_id, error, .. }) => {
                            if let Some(reply) = waiting.remove(&request_id) {
                                let _ = reply.send(Err(error.to_string()));
                            }
                        }
                        SwarmEvent::ConnectionClosed { num_established: 0, .. } => {
                            peer = None;
                            let _ = swarm.dial(target.clone());
                        }
                        _ => {}
                    },
                }
            }
        });
        Ok(FetchProbe { requests, task })
    }

    /// Sends one request and waits (up to [`DEADLINE`]) for its outcome.
    pub async fn ask(
        &self,
        request: attrib_protocol::sync::FetchRequest,
    ) -> anyhow::Result<Result<attrib_protocol::sync::FetchResponse, String>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.requests.send((request, tx)).await?;
        Ok(tokio::time::timeout(DEADLINE, rx).await??)
    }
}

/// A TCP relay on loopback in front of a node, which can be cut the way a dead host cuts a
/// link: connections through a cut link stay open but pass no more bytes (no FIN, no RST), and
/// new connections are refused until the link is restored, which closes the stale ones.
pub struct Link {
    /// Where to dial to reach the node through the link.
    pub addr: Multiaddr,
    cut: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Link {
    /// Opens a link to `target` (a node's `/ip4/.../tcp/...` listen address).
    pub async fn open(target: &Multiaddr) -> anyhow::Result<Link> {
        let to = attrib_node::tcp_socket_addr(target)
            .ok_or_else(|| anyhow::anyhow!("{target} is not an /ip4/../tcp/.. address"))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (cut, cut_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if *cut_rx.borrow() {
                    continue; // dropped: refused
                }
                let Ok(outbound) = tokio::net::TcpStream::connect(to).await else {
                    continue;
                };
                let (ri, wi) = inbound.into_split();
                let (ro, wo) = outbound.into_split();
                tokio::spawn(relay(ri, wo, cut_rx.clone()));
                tokio::spawn(relay(ro, wi, cut_rx.clone()));
            }
        });
        Ok(Link {
            addr: format!("/ip4/127.0.0.1/tcp/{port}").parse()?,
            cut,
            task,
        })
    }

    /// Cuts the link, or restores it.
    pub fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies bytes until the link is cut.
async fn relay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut cut: watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            _ = cut.wait_for(|c| *c) => break,
            n = from.read(&mut buf) => n,
        };
        match n {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if *cut.borrow() || to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    // Cut: hold the sockets open, passing nothing, until the link is restored; then close them,
    // as a host that comes back answers a stale connection with a reset.
    let _ = cut.wait_for(|c| !*c).await;
    drop((from, to));
}
