//! The libp2p side of a node: one swarm, owned by one event loop task, driven by commands from
//! cloneable handles. Gossipsub carries new records (validated and stored before they are
//! accepted for forwarding); request-response fetches records a node lacks.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::Arc;
use std::time::Duration;

use attrib_protocol::encoding::MAX_MESSAGE_BYTES;
use attrib_protocol::sync::{FetchRequest, FetchResponse, MAX_FETCH_IDS, MAX_FETCH_RECORDS};
use attrib_protocol::{ForkProof, MemberKey, NetworkId, RecordId};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageAuthenticity, MessageId};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, DialError, NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, allow_block_list, connection_limits, noise, ping,
    tcp, yamux,
};
use rand::seq::SliceRandom;
use tokio::sync::{mpsc, oneshot, watch};

use crate::ingest::{BatchReport, Ingest, Outcome};
use crate::limits::Bucket;
use crate::store::Missing;

/// The largest gossip message: records are at most 32 KiB, so this leaves ample headroom.
pub const MAX_GOSSIP_BYTES: usize = 64 * 1024;
const FETCH_PROTOCOL: StreamProtocol = StreamProtocol::new("/attrib/fetch/1");

/// The TCP socket address of an `/ip4/../tcp/..` or `/ip6/../tcp/..` multiaddr.
pub fn tcp_socket_addr(addr: &Multiaddr) -> Option<std::net::SocketAddr> {
    use libp2p::multiaddr::Protocol;
    let mut ip = None;
    let mut port = None;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(a) => ip = Some(std::net::IpAddr::V4(a)),
            Protocol::Ip6(a) => ip = Some(std::net::IpAddr::V6(a)),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    Some((ip?, port?).into())
}

/// A dial error in one line, with its causes (libp2p's own text stops at "failed to
/// negotiate transport protocol" and leaves out, say, "Connection refused").
fn dial_error_text(error: &DialError) -> String {
    match error {
        DialError::Denied { cause }
            if cause
                .downcast_ref::<allow_block_list::NotAllowed>()
                .is_some() =>
        {
            format!(
                "{}: the node there is not in this node's roster (it runs on another network, or the roster lacks its peer id); compare `attrib status` network ids with its operator",
                crate::error_chain(error)
            )
        }
        DialError::Transport(attempts) => attempts
            .iter()
            .map(|(_, e)| crate::error_chain(e))
            .collect::<Vec<_>>()
            .join("; "),
        other => crate::error_chain(other),
    }
}

/// The gossipsub topic of a network: records of different networks never mix.
pub fn gossip_topic(network: NetworkId) -> IdentTopic {
    IdentTopic::new(format!("/attrib/records/{}", network.to_hex()))
}

/// The gossipsub configuration every attrib node uses: explicit validation, message id =
/// record id, anonymous messages (records carry their own signatures).
pub fn gossip_config(heartbeat: Duration) -> Result<gossipsub::Config, String> {
    gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .validate_messages()
        .message_id_fn(|m| MessageId::new(RecordId::of_encoding(&m.data).as_bytes()))
        .max_transmit_size(MAX_GOSSIP_BYTES)
        .heartbeat_interval(heartbeat)
        .build()
        .map_err(|e| e.to_string())
}

/// Gossipsub peer scoring for a small permissioned network: nodes often share an IP (NAT,
/// loopback tests), and quiet periods are normal, so only invalid messages (P4) cost much; a
/// little credit comes from time in the mesh and first deliveries. One invalid record takes a
/// peer below the publish threshold, two below the graylist threshold.
pub fn gossip_scoring(
    topic: &IdentTopic,
) -> (gossipsub::PeerScoreParams, gossipsub::PeerScoreThresholds) {
    let topic_params = gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 100.0,
        first_message_deliveries_weight: 0.5,
        first_message_deliveries_decay: 0.9,
        first_message_deliveries_cap: 20.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: -60.0,
        invalid_message_deliveries_decay: 0.99,
        ..Default::default()
    };
    let mut params = gossipsub::PeerScoreParams {
        ip_colocation_factor_weight: 0.0,
        ..Default::default()
    };
    params.topics.insert(topic.hash(), topic_params);
    (params, gossipsub::PeerScoreThresholds::default())
}

/// How many invalid records a peer may send before it is disconnected and refused.
pub const INVALID_STRIKES: u32 = 2;
/// How long such a peer is refused.
pub const BAN_DURATION: Duration = Duration::from_secs(600);

/// The node's libp2p behaviour.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    allowed: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    limits: connection_limits::Behaviour,
    gossip: gossipsub::Behaviour,
    fetch: request_response::Behaviour<FetchCodec>,
    ping: ping::Behaviour,
}

/// Commands from handles to the event loop.
#[derive(Debug)]
pub(crate) enum Command {
    /// Gossip a stored record.
    Publish(Arc<[u8]>),
    /// Report connected peers.
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    /// Report listen addresses.
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    /// Dial an address now.
    Dial(Multiaddr),
    /// Refuse (and drop) or re-admit a peer.
    SetBlocked(PeerId, bool),
    /// Start a catch-up round with every connected peer now.
    SyncNow,
}

/// What the event loop knows of the node's own state's chain on the network, for signing: a
/// node must not sign while its copy of its own chain may be behind (that would fork it).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct OwnChainSync {
    /// Since the node started, a member node has told it its chain heads, and every heads
    /// request sent until then has been answered or has failed. Stays true once set.
    pub(crate) settled: bool,
    /// Records of the node's own chain are being fetched from a peer.
    pub(crate) fetching: bool,
    /// The longest the own chain is, as far as peers have said (and not been shown wrong).
    pub(crate) claimed: u64,
    /// A connected node of this node's own state that also holds the state key: while it is
    /// connected, this node does not sign (two signers fork the chain).
    pub(crate) second_signer: Option<PeerId>,
    /// A node with this node's own identity answers at a bootstrap address: a copy of this
    /// node, which signs with the same key. This node does not sign while it answers.
    pub(crate) copy_running: bool,
}

impl OwnChainSync {
    /// Whether a node holding its own chain up to `held` may be behind: some of it is being
    /// fetched, or a peer said it goes further.
    pub(crate) fn behind(&self, held: u64) -> bool {
        self.fetching || held < self.claimed
    }
}

/// A connected peer, for status.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerInfo {
    /// Its peer id.
    pub peer_id: String,
    /// The member state running it, or `observer`.
    pub role: String,
    /// Whether it is subscribed to the record topic.
    pub subscribed: bool,
    /// Connections open to it (one, unless both sides dialled at once).
    pub connections: u32,
    /// Round-trip time of the last ping answered, in milliseconds (none before the first).
    pub rtt_ms: Option<f64>,
}

/// How this node fares with one of its bootstrap addresses (in `status`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BootstrapInfo {
    /// The address, as configured.
    pub address: String,
    /// The peer it led to, while that peer is connected.
    pub peer_id: Option<String>,
    /// It answered with this node's own identity: this node's own address, or a copy of this
    /// node running elsewhere. Not dialled again.
    pub own_address: bool,
    /// Why the last dial failed (cleared when one succeeds); it is dialled again every few
    /// seconds.
    pub error: Option<String>,
}

/// Network settings.
pub(crate) struct NetworkSettings {
    pub(crate) keypair: libp2p::identity::Keypair,
    pub(crate) listen: Vec<Multiaddr>,
    pub(crate) bootstrap: Vec<Multiaddr>,
    pub(crate) heartbeat: Duration,
    pub(crate) sync_interval: Duration,
    /// Each connection is pinged this often; one whose pings fail twice in a row (unanswered
    /// for `ping_timeout`; libp2p reports only the second) is closed (a peer whose host died
    /// without closing its TCP connections would otherwise look connected until TCP gives up,
    /// many minutes later), and bootstrap peers are then redialled.
    pub(crate) ping_interval: Duration,
    pub(crate) ping_timeout: Duration,
    /// The node's own state's member key (none on an observer).
    pub(crate) own: Option<MemberKey>,
    pub(crate) limits: crate::limits::Limits,
    /// Where the event loop reports how it fares with each bootstrap address.
    pub(crate) bootstrap_report: watch::Sender<Vec<BootstrapInfo>>,
}

/// Sync counters, for status and measurements.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct SyncStats {
    /// Catch-up rounds started (heads requests sent).
    pub rounds: u64,
    /// Fetch requests sent.
    pub requests: u64,
    /// Bytes of fetch requests sent (framed).
    pub request_bytes: u64,
    /// Bytes of fetch responses received (framed).
    pub response_bytes: u64,
    /// Records received in fetch responses.
    pub records_received: u64,
    /// Records refused as invalid in fetch responses.
    pub invalid_received: u64,
    /// Gossiped records refused as invalid (bad signature, broken rule).
    pub gossip_invalid: u64,
    /// Gossip messages ignored unread because their sender exceeded its rate.
    pub gossip_rate_limited: u64,
    /// Fetch requests answered empty because their sender exceeded its rate.
    pub fetch_rate_limited: u64,
    /// Fetch requests not sent because too many were outstanding.
    pub fetch_deferred: u64,
}

/// What a fetch request was for.
#[derive(Debug, Clone)]
enum Want {
    Heads,
    Chain { author: MemberKey },
    Records(Vec<RecordId>),
}

/// A batch ingested off the event loop.
struct BatchDone {
    peer: PeerId,
    want: Want,
    report: Result<BatchReport, crate::StoreError>,
}

/// The event loop state.
pub(crate) struct EventLoop {
    swarm: Swarm<Behaviour>,
    topic: IdentTopic,
    ingest: Ingest,
    commands: mpsc::Receiver<Command>,
    bootstrap: Vec<Multiaddr>,
    /// Connected peers, with when their first connection came up.
    connected: HashMap<PeerId, tokio::time::Instant>,
    /// Peers already warned about for staying off the record topic (see `warn_off_topic`).
    warned_off_topic: HashSet<PeerId>,
    /// Connected nodes of this node's state that hold its key too (see `OwnChainSync`).
    second_signers: std::collections::BTreeSet<PeerId>,
    /// This node's dials to bootstrap addresses and their connections, while open: an address
    /// is not dialled again while it has one.
    bootstrap_links: HashMap<ConnectionId, Multiaddr>,
    /// The peer each bootstrap address led to, once a dial to it succeeded: that address is
    /// not dialled again while its peer is connected, however the connection came about.
    bootstrap_peers: HashMap<Multiaddr, PeerId>,
    /// Bootstrap addresses that answered with this node's own identity (not dialled again).
    self_addrs: HashSet<Multiaddr>,
    /// Bootstrap addresses where another node answered with this node's identity: a copy of
    /// this node (dialled again, to see it gone). This node signs nothing while any is known.
    copies: HashSet<Multiaddr>,
    /// Why the last dial to a bootstrap address failed, until one succeeds.
    bootstrap_errors: HashMap<Multiaddr, String>,
    bootstrap_report: watch::Sender<Vec<BootstrapInfo>>,
    /// Connections open to each connected peer.
    connections: HashMap<PeerId, u32>,
    /// Last ping round trip to each connected peer.
    rtt: HashMap<PeerId, Duration>,
    subscribed: HashSet<PeerId>,
    gossip_peers: watch::Sender<usize>,
    listen_addrs: watch::Sender<Vec<Multiaddr>>,
    in_flight: HashMap<OutboundRequestId, (PeerId, Want)>,
    /// Authors whose chain is being fetched (one request per author at a time).
    chain_in_flight: HashSet<MemberKey>,
    /// Records being fetched by id.
    records_in_flight: HashSet<RecordId>,
    /// How far each peer said each author's chain goes.
    peer_heads: HashMap<(PeerId, MemberKey), u64>,
    /// The node's own state, if it is a member node, and what is known of its chain.
    own: Option<MemberKey>,
    own_chain: watch::Sender<OwnChainSync>,
    /// How long each peer proved the own chain is (with the head record: see `proves_head`).
    /// Kept when the peer leaves (the chain exists out there all the same); lowered when the
    /// peer, asked for the rest, has none of it.
    own_claims: HashMap<PeerId, u64>,
    /// Head records of the own chain asked for because a peer named them without proof (see
    /// `request_own_head`); signing waits while any is asked.
    own_head_fetches: HashSet<RecordId>,
    /// Peers asked for such a record on their current connection.
    unproven_asked: HashSet<PeerId>,
    /// A member node has answered a heads request since the node started.
    heard_member: bool,
    /// The bootstrap dials made at the start that have neither connected nor failed: until
    /// they have, the peers they reach have not been asked for their chain heads.
    startup_dials: HashSet<ConnectionId>,
    /// Peers that served invalid records; not asked again until they reconnect.
    distrusted: HashSet<PeerId>,
    /// Invalid records received per peer.
    strikes: HashMap<PeerId, u32>,
    /// Peers refused until then.
    banned: HashMap<PeerId, tokio::time::Instant>,
    batches_tx: mpsc::Sender<BatchDone>,
    batches: mpsc::Receiver<BatchDone>,
    sync_interval: Duration,
    stats: watch::Sender<SyncStats>,
    limits: crate::limits::Limits,
    gossip_buckets: HashMap<PeerId, Bucket>,
    fetch_buckets: HashMap<PeerId, Bucket>,
}

impl EventLoop {
    pub(crate) fn new(
        settings: NetworkSettings,
        ingest: Ingest,
        commands: mpsc::Receiver<Command>,
        gossip_peers: watch::Sender<usize>,
        listen_addrs: watch::Sender<Vec<Multiaddr>>,
        stats: watch::Sender<SyncStats>,
        own_chain: watch::Sender<OwnChainSync>,
    ) -> Result<EventLoop, crate::NodeError> {
        let roster = ingest.roster().clone();
        let network = roster.network_id();
        let gossip_cfg = gossip_config(settings.heartbeat).map_err(crate::NodeError::Network)?;
        let mut allowed = allow_block_list::Behaviour::default();
        for node in roster.node_ids() {
            let peer: PeerId = node.parse().map_err(|_| {
                crate::NodeError::Config(format!(
                    "roster lists node {node:?}, which is not a libp2p peer id"
                ))
            })?;
            allowed.allow_peer(peer);
        }
        let l = &settings.limits;
        let limits = connection_limits::ConnectionLimits::default()
            .with_max_established_per_peer(Some(l.max_connections_per_peer))
            .with_max_pending_incoming(Some(l.max_pending_incoming))
            .with_max_pending_outgoing(Some(l.max_pending_outgoing))
            .with_max_established(Some(l.max_connections));
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(settings.keypair)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| crate::NodeError::Network(e.to_string()))?
            .with_behaviour(|_| {
                let mut gossip =
                    gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, gossip_cfg)?;
                let (params, thresholds) = gossip_scoring(&gossip_topic(network));
                gossip.with_peer_score(params, thresholds)?;
                let fetch = fetch_behaviour();
                Ok(Behaviour {
                    allowed,
                    limits: connection_limits::Behaviour::new(limits),
                    gossip,
                    fetch,
                    ping: ping::Behaviour::new(
                        ping::Config::new()
                            .with_interval(settings.ping_interval)
                            .with_timeout(settings.ping_timeout),
                    ),
                })
            })
            .map_err(|e| crate::NodeError::Network(e.to_string()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
            .build();
        let topic = gossip_topic(network);
        swarm
            .behaviour_mut()
            .gossip
            .subscribe(&topic)
            .map_err(|e| crate::NodeError::Network(e.to_string()))?;
        // libp2p's listeners share their port (SO_REUSEPORT, for dialling from it), so a second
        // node on the same port would start without a word and take half of the first one's
        // connections. A plain bind of each address first tells; all before this node listens
        // anywhere, and one at a time (an IPv6 probe is dual-stack and would meet this node's
        // own IPv4 socket on the same port).
        for addr in &settings.listen {
            if let Some(socket) = tcp_socket_addr(addr).filter(|s| s.port() != 0) {
                drop(std::net::TcpListener::bind(socket).map_err(|e| {
                    crate::NodeError::Network(format!(
                        "cannot listen on {addr}: {e}; is another node (or program) using port {}? choose another `listen` port",
                        socket.port()
                    ))
                })?);
            }
        }
        for addr in &settings.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| crate::NodeError::Network(format!("cannot listen on {addr}: {e}")))?;
        }
        let (batches_tx, batches) = mpsc::channel(64);
        Ok(EventLoop {
            swarm,
            topic,
            ingest,
            commands,
            bootstrap: settings.bootstrap,
            connected: HashMap::new(),
            warned_off_topic: HashSet::new(),
            second_signers: Default::default(),
            bootstrap_links: HashMap::new(),
            bootstrap_peers: HashMap::new(),
            self_addrs: HashSet::new(),
            copies: HashSet::new(),
            bootstrap_errors: HashMap::new(),
            bootstrap_report: settings.bootstrap_report,
            connections: HashMap::new(),
            rtt: HashMap::new(),
            subscribed: HashSet::new(),
            gossip_peers,
            listen_addrs,
            in_flight: HashMap::new(),
            chain_in_flight: HashSet::new(),
            records_in_flight: HashSet::new(),
            peer_heads: HashMap::new(),
            own: settings.own,
            own_chain,
            own_claims: HashMap::new(),
            own_head_fetches: HashSet::new(),
            unproven_asked: HashSet::new(),
            heard_member: false,
            startup_dials: HashSet::new(),
            distrusted: HashSet::new(),
            strikes: HashMap::new(),
            banned: HashMap::new(),
            batches_tx,
            batches,
            sync_interval: settings.sync_interval,
            stats,
            limits: settings.limits,
            gossip_buckets: HashMap::new(),
            fetch_buckets: HashMap::new(),
        })
    }

    /// Runs until the command channel closes (every handle dropped) or `shutdown` fires.
    pub(crate) async fn run(mut self, mut shutdown: oneshot::Receiver<()>) {
        self.dial_bootstrap(true);
        // Not at once: the bootstrap peers were just dialled. (Dialling every bootstrap address
        // again before those connections were up opened a second connection to each: a third
        // of all connection attempts in the 100-node bench.)
        let redial_every = Duration::from_secs(5);
        let mut redial =
            tokio::time::interval_at(tokio::time::Instant::now() + redial_every, redial_every);
        redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sync = tokio::time::interval(self.sync_interval);
        loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                command = self.commands.recv() => match command {
                    Some(c) => self.handle_command(c),
                    None => break,
                },
                Some(done) = self.batches.recv() => self.handle_batch_done(done),
                event = self.swarm.select_next_some() => self.handle_swarm_event(event),
                _ = sync.tick() => self.handle_sync_tick(),
                _ = redial.tick() => self.handle_redial_tick(),
            }
        }
        tracing::debug!("network event loop stopped");
    }

    fn handle_command(&mut self, command: Command) {
        match command {
            Command::Publish(bytes) => {
                if let Err(e) = self
                    .swarm
                    .behaviour_mut()
                    .gossip
                    .publish(self.topic.clone(), bytes.to_vec())
                {
                    // Stored already; peers get it by fetch or sync.
                    tracing::debug!(error = %e, "gossip publish did not go out");
                }
            }
            Command::Peers(reply) => {
                let peers = self
                    .connected
                    .keys()
                    .map(|p| PeerInfo {
                        peer_id: p.to_string(),
                        role: self.role_of(p),
                        subscribed: self.subscribed.contains(p),
                        connections: self.connections.get(p).copied().unwrap_or(1),
                        rtt_ms: self.rtt.get(p).map(|d| d.as_secs_f64() * 1000.0),
                    })
                    .collect();
                let _ = reply.send(peers);
            }
            Command::ListenAddrs(reply) => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            Command::Dial(addr) => {
                if let Err(e) = self.swarm.dial(addr.clone()) {
                    tracing::warn!(%addr, error = %e, "dial failed");
                }
            }
            Command::SetBlocked(peer, blocked) => {
                let allowed = &mut self.swarm.behaviour_mut().allowed;
                if blocked {
                    allowed.disallow_peer(peer);
                    let _ = self.swarm.disconnect_peer_id(peer);
                } else if self.ingest.roster().admits_node(&peer.to_string()) {
                    allowed.allow_peer(peer);
                }
            }
            Command::SyncNow => {
                let peers: Vec<PeerId> = self.connected.keys().copied().collect();
                for peer in peers {
                    self.request_heads(peer);
                }
            }
        }
    }

    /// Every sync interval: a catch-up round with a few random peers, and a retry of missing
    /// response targets.
    fn handle_sync_tick(&mut self) {
        let mut peers: Vec<PeerId> = self
            .connected
            .keys()
            .filter(|p| !self.distrusted.contains(p))
            .copied()
            .collect();
        peers.shuffle(&mut rand::thread_rng());
        for peer in peers.iter().take(3) {
            self.request_heads(*peer);
        }
        let targets: Vec<RecordId> = self
            .ingest
            .store()
            .missing_targets(MAX_FETCH_IDS)
            .unwrap_or_default()
            .into_iter()
            .filter(|t| !self.records_in_flight.contains(t))
            .collect();
        if let (false, Some(peer)) = (targets.is_empty(), peers.first()) {
            self.request_records(*peer, targets);
        }
        // A fetch of the own chain that failed is tried again here, not at once.
        self.request_own_chain();
        self.publish_own_chain();
    }

    /// Whether another fetch request to `peer` fits the in-flight bounds.
    fn has_capacity(&self, peer: PeerId) -> bool {
        let to_peer = self.in_flight.values().filter(|(p, _)| *p == peer).count();
        let ok = self.in_flight.len() < self.limits.max_in_flight_fetches
            && to_peer < self.limits.max_in_flight_fetches_per_peer;
        if !ok {
            self.stats.send_modify(|s| s.fetch_deferred += 1);
        }
        ok
    }

    fn send(&mut self, peer: PeerId, request: FetchRequest, want: Want) {
        let len = request.encode().len() as u64 + 4;
        let id = self
            .swarm
            .behaviour_mut()
            .fetch
            .send_request(&peer, request);
        self.in_flight.insert(id, (peer, want));
        self.stats.send_modify(|s| {
            s.requests += 1;
            s.request_bytes += len;
        });
    }

    fn request_heads(&mut self, peer: PeerId) {
        if self
            .in_flight
            .values()
            .any(|(p, w)| *p == peer && matches!(w, Want::Heads))
        {
            return;
        }
        self.stats.send_modify(|s| s.rounds += 1);
        self.send(peer, FetchRequest::Heads, Want::Heads);
    }

    fn request_chain(&mut self, peer: PeerId, author: MemberKey, from: u64, to: u64) {
        // The node's own chain is fetched even past the per-peer request limit: signing waits
        // for it.
        if to < from
            || self.chain_in_flight.contains(&author)
            || (self.own != Some(author) && !self.has_capacity(peer))
        {
            return;
        }
        self.chain_in_flight.insert(author);
        self.publish_own_chain();
        let to = to.min(from.saturating_add(MAX_FETCH_RECORDS as u64 - 1));
        if self.own == Some(author) {
            tracing::info!(%peer, from, to, "fetching this state's own chain (signing waits until it is whole)");
        }
        self.send(
            peer,
            FetchRequest::Chain { author, from, to },
            Want::Chain { author },
        );
    }

    fn request_records(&mut self, peer: PeerId, ids: Vec<RecordId>) {
        if !self.has_capacity(peer) {
            return;
        }
        let ids: Vec<RecordId> = ids
            .into_iter()
            .filter(|id| self.records_in_flight.insert(*id))
            .take(MAX_FETCH_IDS)
            .collect();
        if !ids.is_empty() {
            self.send(peer, FetchRequest::Records(ids.clone()), Want::Records(ids));
        }
    }

    /// Asks `peer` for the own chain's head record it named without proof; signing waits for
    /// the answer. Once per connection: a peer naming heads that do not exist holds signing up
    /// for one request at most.
    fn request_own_head(&mut self, peer: PeerId, id: RecordId) {
        if !self.unproven_asked.insert(peer) || !self.records_in_flight.insert(id) {
            return;
        }
        self.own_head_fetches.insert(id);
        self.send(
            peer,
            FetchRequest::Records(vec![id]),
            Want::Records(vec![id]),
        );
    }

    /// A peer told us its chain heads: fetch what we lack, check what differs.
    fn handle_heads(&mut self, peer: PeerId, response: FetchResponse) {
        for proof in response
            .forks
            .iter()
            .take(attrib_protocol::sync::MAX_FETCH_FORKS)
        {
            match ForkProof::decode(proof).and_then(|p| p.verify(self.ingest.roster()).map(|_| p)) {
                Ok(p) => {
                    // The proof's check covered all but the clock (a proof holds whenever it
                    // is read); the store takes no record from the future, whatever brings it.
                    let (a, b) = p.records();
                    for r in [a, b] {
                        if attrib_protocol::check_clock(r, crate::now_ms()).is_err() {
                            continue;
                        }
                        if let Ok(Outcome::Waiting(m)) = self.ingest.append(r.clone()) {
                            self.follow_up(m, peer);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "peer sent an invalid fork proof");
                    self.distrusted.insert(peer);
                    self.own_claims.remove(&peer);
                    self.publish_own_chain();
                    return;
                }
            }
        }
        if self.own.is_some() {
            // What this peer says of the own chain: nothing, unless its heads name it below.
            self.own_claims.insert(peer, 0);
            let peer_state = self
                .ingest
                .roster()
                .member_of_node(&peer.to_string())
                .map(|m| m.code);
            if response.signer
                && peer_state.is_some()
                && peer_state == self.own_state()
                && self.second_signers.insert(peer)
            {
                tracing::error!(%peer, "another node of this state also holds the state key: this node signs nothing while it is connected (two signers fork the state's chain); stop one of them, or run it without state_key");
            }
        }
        for head in response.heads {
            if self.ingest.roster().member_by_key(&head.author).is_none() {
                continue;
            }
            let ours = self.ingest.store().chain_head(&head.author).ok().flatten();
            let our_seq = ours.map_or(0, |h| h.seq);
            self.peer_heads.insert((peer, head.author), head.seq);
            if self.own == Some(head.author) && head.seq > our_seq {
                // Signing waits for a longer own chain only when the peer proves it holds one:
                // with the head record, signed with this state's key. A bare number from a
                // dishonest member would otherwise keep this state from signing at all.
                // Without the proof (a peer of an earlier version sends none) the head record
                // is asked for by id, once per connection: it cannot be forged, and once here
                // it waits for the rest of the chain, which keeps signing back (pending
                // records) until the chain is whole.
                if !proves_head(&response.records, &head, self.ingest.roster()) {
                    tracing::info!(%peer, seq = head.seq, held = our_seq, "peer names a longer chain of this state without its head record: asking for that record");
                    self.request_own_head(peer, head.id);
                    continue;
                }
                self.own_claims.insert(peer, head.seq);
            }
            if head.seq > our_seq {
                self.request_chain(peer, head.author, our_seq + 1, head.seq);
            } else if head.seq == our_seq && ours.is_some_and(|h| h.id != head.id) {
                // Same length, different head: one record proves the fork.
                self.request_chain(peer, head.author, head.seq, head.seq);
            }
        }
        if self
            .ingest
            .roster()
            .member_of_node(&peer.to_string())
            .is_some()
        {
            self.heard_member = true;
        }
        // The fetches of anything missing of the own chain are in flight by now.
        self.publish_own_chain();
    }

    /// A batch from a peer was ingested: continue the catch-up, chase what is still missing.
    fn handle_batch_done(&mut self, done: BatchDone) {
        self.continue_catch_up(done);
        // Only now: a chain fetched in several requests is not finished between two of them.
        self.publish_own_chain();
    }

    /// Tells signing what is known of the node's own chain (see [`OwnChainSync`]).
    fn publish_own_chain(&self) {
        let Some(own) = self.own else { return };
        let now = OwnChainSync {
            settled: self.own_chain.borrow().settled
                || (self.heard_member
                    && self.startup_dials.is_empty()
                    && !self
                        .in_flight
                        .values()
                        .any(|(_, w)| matches!(w, Want::Heads))),
            fetching: self.chain_in_flight.contains(&own) || !self.own_head_fetches.is_empty(),
            claimed: self.own_claims.values().copied().max().unwrap_or(0),
            second_signer: self.second_signers.iter().next().copied(),
            copy_running: !self.copies.is_empty(),
        };
        let held = self.held_seq(own);
        if self.own_chain.borrow().behind(held) && !now.behind(held) {
            tracing::info!(
                seq = held,
                "this state's own chain is whole: signing may go on"
            );
        }
        self.own_chain.send_if_modified(|s| {
            let changed = (
                s.settled,
                s.fetching,
                s.claimed,
                s.second_signer,
                s.copy_running,
            ) != (
                now.settled,
                now.fetching,
                now.claimed,
                now.second_signer,
                now.copy_running,
            );
            *s = now;
            changed
        });
    }

    /// After a piece of the own chain came (or did not): a peer asked for the rest that sent
    /// none of it does not have it, whatever its heads said; and the rest is asked of a peer
    /// that said it has more.
    fn chase_own_chain(&mut self, own: MemberKey, from: PeerId, stored: usize) {
        let ours = self.held_seq(own);
        if stored == 0
            && let Some(claim) = self.own_claims.get_mut(&from)
        {
            *claim = (*claim).min(ours);
        }
        self.request_own_chain();
    }

    /// How far this node holds `author`'s chain without a gap (0 for none).
    fn held_seq(&self, author: MemberKey) -> u64 {
        self.ingest
            .store()
            .chain_head(&author)
            .ok()
            .flatten()
            .map_or(0, |h| h.seq)
    }

    /// Asks the peer that said the own chain is longest for what this node lacks of it.
    fn request_own_chain(&mut self) {
        let Some(own) = self.own else { return };
        if self.chain_in_flight.contains(&own) {
            return;
        }
        let ours = self.held_seq(own);
        let ahead = self
            .own_claims
            .iter()
            .filter(|(p, c)| {
                **c > ours && self.connected.contains_key(*p) && !self.distrusted.contains(*p)
            })
            .max_by_key(|(_, c)| **c)
            .map(|(p, c)| (*p, *c));
        if let Some((peer, claim)) = ahead {
            self.request_chain(peer, own, ours + 1, claim);
        }
    }

    fn continue_catch_up(&mut self, done: BatchDone) {
        match &done.want {
            Want::Chain { author } => {
                self.chain_in_flight.remove(author);
            }
            Want::Records(ids) => {
                for id in ids {
                    self.records_in_flight.remove(id);
                    self.own_head_fetches.remove(id);
                }
            }
            Want::Heads => {}
        }
        let report = match done.report {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "store failed while ingesting a batch");
                return;
            }
        };
        if report.invalid > 0 {
            tracing::warn!(peer = %done.peer, invalid = report.invalid, "peer served invalid records; not syncing from it until it reconnects");
            self.distrusted.insert(done.peer);
            // Nor is what it said of this node's own chain believed.
            self.own_claims.remove(&done.peer);
            self.strike(done.peer);
            return;
        }
        if let Want::Chain { author } = done.want {
            if self.own == Some(author) {
                // Records refused as made "in the future" (this clock is behind) exist all
                // the same: the chain is not shorter for them.
                self.chase_own_chain(author, done.peer, report.stored + report.early);
            } else {
                let ours = self.held_seq(author);
                let theirs = self
                    .peer_heads
                    .get(&(done.peer, author))
                    .copied()
                    .unwrap_or(0);
                if report.stored > 0 && theirs > ours {
                    self.request_chain(done.peer, author, ours + 1, theirs);
                }
            }
        }
        for missing in report.waiting {
            self.follow_up(missing, done.peer);
        }
    }

    /// Counts an invalid record against a peer; at [`INVALID_STRIKES`] the peer is disconnected
    /// and refused for [`BAN_DURATION`].
    fn strike(&mut self, peer: PeerId) {
        let strikes = self.strikes.entry(peer).or_default();
        *strikes += 1;
        if *strikes >= INVALID_STRIKES {
            tracing::warn!(%peer, strikes = *strikes, "peer keeps sending invalid records: disconnecting and refusing it for {BAN_DURATION:?}");
            self.strikes.remove(&peer);
            self.banned
                .insert(peer, tokio::time::Instant::now() + BAN_DURATION);
            self.swarm.behaviour_mut().allowed.disallow_peer(peer);
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    fn handle_redial_tick(&mut self) {
        let now = tokio::time::Instant::now();
        let expired: Vec<PeerId> = self
            .banned
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(p, _)| *p)
            .collect();
        for peer in expired {
            self.banned.remove(&peer);
            self.swarm.behaviour_mut().allowed.allow_peer(peer);
        }
        // Every bootstrap peer not connected now, whatever else is: a peer that restarted
        // does not dial back the nodes that had dialled it.
        self.dial_bootstrap(false);
        self.warn_off_topic();
    }

    /// Warns once about each peer connected for a while that never joined the record topic:
    /// its topic comes from its roster's network id, so it runs another roster (another
    /// network), and no record passes between the two nodes.
    fn warn_off_topic(&mut self) {
        let settled = Duration::from_secs(10);
        let off: Vec<PeerId> = self
            .connected
            .iter()
            .filter(|(p, at)| {
                at.elapsed() > settled
                    && !self.subscribed.contains(*p)
                    && !self.warned_off_topic.contains(*p)
            })
            .map(|(p, _)| *p)
            .collect();
        for peer in off {
            tracing::warn!(peer = %peer, state = %self.role_of(&peer), "peer is connected but not on this network's record topic: it runs another roster (network id); no records pass between the two nodes. Compare `attrib status` network ids with its operator");
            self.warned_off_topic.insert(peer);
        }
    }

    /// Dials the bootstrap addresses that have no dial or connection of this node's open.
    fn dial_bootstrap(&mut self, first: bool) {
        for addr in self.bootstrap.clone() {
            if self.self_addrs.contains(&addr) {
                continue;
            }
            let linked = self.bootstrap_links.values().any(|a| *a == addr);
            let reached = self
                .bootstrap_peers
                .get(&addr)
                .is_some_and(|p| self.connected.contains_key(p));
            if linked || reached {
                continue;
            }
            let opts = DialOpts::from(addr.clone());
            let id = opts.connection_id();
            match self.swarm.dial(opts) {
                Ok(()) => {
                    self.bootstrap_links.insert(id, addr);
                    if first {
                        self.startup_dials.insert(id);
                    }
                }
                Err(DialError::NoAddresses) => self.bootstrap_is_self(addr),
                Err(e) => self.bootstrap_failed(addr, dial_error_text(&e)),
            }
        }
        self.report_bootstrap();
    }

    /// Notes a bootstrap address where a node answered with this node's identity: this node
    /// itself, or a copy of it (see [`EventLoop::is_this_node`]).
    fn bootstrap_answers_as_self(&mut self, addr: Multiaddr) {
        if self.is_this_node(&addr) {
            self.bootstrap_is_self(addr);
            return;
        }
        if self.copies.insert(addr.clone()) {
            tracing::error!(%addr, "a node with this node's own identity answers at this bootstrap address: a copy of this node's key and data directory runs there, and two signers fork the state's chain. This node signs nothing while it answers there. Stop the copy; if the address is this node's own (behind NAT), remove it from bootstrap");
            self.publish_own_chain();
        }
        self.bootstrap_errors.insert(
            addr,
            "a node with this node's identity answers here: a copy of this node (this node signs nothing while it runs)".into(),
        );
    }

    /// A copy of this node no longer answers at `addr`: signing may go on.
    fn copy_gone(&mut self, addr: &Multiaddr) {
        if self.copies.remove(addr) {
            tracing::warn!(%addr, "no copy of this node answers at this bootstrap address any more: this node signs again");
            self.publish_own_chain();
        }
    }

    /// Whether `addr`, where a node with this node's identity answered, is this node's own:
    /// an address of this machine (loopback, or one a socket can be bound to here) at a port
    /// this node listens on. A name (DNS) counts as this machine. Anything else is a copy.
    fn is_this_node(&self, addr: &Multiaddr) -> bool {
        use libp2p::multiaddr::Protocol;
        let tcp_port = |a: &Multiaddr| {
            a.iter().find_map(|p| match p {
                Protocol::Tcp(port) => Some(port),
                _ => None,
            })
        };
        let Some(port) = tcp_port(addr) else {
            return true;
        };
        if !self.swarm.listeners().any(|l| tcp_port(l) == Some(port)) {
            return false;
        }
        let ip: Option<std::net::IpAddr> = addr.iter().find_map(|p| match p {
            Protocol::Ip4(a) => Some(a.into()),
            Protocol::Ip6(a) => Some(a.into()),
            _ => None,
        });
        ip.is_none_or(|ip| {
            ip.is_loopback() || ip.is_unspecified() || std::net::UdpSocket::bind((ip, 0)).is_ok()
        })
    }

    /// Notes a bootstrap address that is this node's: not dialled again; said once.
    fn bootstrap_is_self(&mut self, addr: Multiaddr) {
        tracing::warn!(%addr, "this bootstrap address is this node's own: remove it from bootstrap");
        self.copy_gone(&addr);
        self.bootstrap_errors.remove(&addr);
        self.self_addrs.insert(addr);
    }

    /// Notes a failed dial to a bootstrap address: said once (at warn) until a dial to it
    /// succeeds, so an address that never answers is seen in the log and in `status`.
    fn bootstrap_failed(&mut self, addr: Multiaddr, error: String) {
        self.copy_gone(&addr);
        if !self.bootstrap_errors.contains_key(&addr) {
            tracing::warn!(%addr, %error, "cannot reach bootstrap peer; dialling it again every few seconds (`attrib status` shows the last error)");
        } else {
            tracing::debug!(%addr, %error, "cannot reach bootstrap peer");
        }
        self.bootstrap_errors.insert(addr, error);
    }

    /// Publishes how this node fares with each bootstrap address.
    fn report_bootstrap(&self) {
        let report: Vec<BootstrapInfo> = self
            .bootstrap
            .iter()
            .map(|addr| BootstrapInfo {
                address: addr.to_string(),
                peer_id: self
                    .bootstrap_peers
                    .get(addr)
                    .filter(|p| self.connected.contains_key(p))
                    .map(ToString::to_string),
                own_address: self.self_addrs.contains(addr),
                error: self.bootstrap_errors.get(addr).cloned(),
            })
            .collect();
        self.bootstrap_report.send_if_modified(|held| {
            let changed = *held != report;
            if changed {
                *held = report;
            }
            changed
        });
    }

    fn handle_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                let addrs = self.swarm.listeners().cloned().collect();
                self.listen_addrs.send_replace(addrs);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                self.connections.insert(peer_id, num_established.get());
                if let Some(addr) = self.bootstrap_links.get(&connection_id).cloned() {
                    self.copy_gone(&addr);
                    let addr = &addr;
                    self.bootstrap_peers.insert(addr.clone(), peer_id);
                    if self.bootstrap_errors.remove(addr).is_some() {
                        tracing::info!(%addr, peer = %peer_id, "reached bootstrap peer");
                    }
                }
                if let std::collections::hash_map::Entry::Vacant(first) =
                    self.connected.entry(peer_id)
                {
                    first.insert(tokio::time::Instant::now());
                    tracing::info!(peer = %peer_id, state = %self.role_of(&peer_id), "peer connected");
                    self.distrusted.remove(&peer_id);
                    self.request_heads(peer_id);
                }
                if self.startup_dials.remove(&connection_id) {
                    self.publish_own_chain();
                }
                self.report_bootstrap();
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                self.bootstrap_links.remove(&connection_id);
                if num_established > 0 {
                    self.connections.insert(peer_id, num_established);
                    return;
                }
                let lasted = self.connected.remove(&peer_id).map(|at| at.elapsed());
                // (Not when this node dropped the peer itself, for invalid records.)
                if lasted.is_some_and(|d| d < Duration::from_secs(2))
                    && !self.banned.contains_key(&peer_id)
                {
                    // The usual sign of a peer that does not admit this node; it says nothing.
                    tracing::warn!(peer = %peer_id, state = %self.role_of(&peer_id), "peer closed the connection right after it opened: it may not admit this node (its roster lacks this node's peer id, or it refuses this node for a while after invalid records); compare `attrib status` network ids with its operator");
                } else {
                    tracing::info!(peer = %peer_id, state = %self.role_of(&peer_id), "peer disconnected");
                }
                self.warned_off_topic.remove(&peer_id);
                self.unproven_asked.remove(&peer_id);
                if self.second_signers.remove(&peer_id) {
                    tracing::info!(peer = %peer_id, "the other node holding this state's key is gone: this node signs again");
                    self.publish_own_chain();
                }
                self.connections.remove(&peer_id);
                self.rtt.remove(&peer_id);
                self.peer_heads.retain(|(p, _), _| *p != peer_id);
                self.gossip_buckets.remove(&peer_id);
                self.fetch_buckets.remove(&peer_id);
                self.subscribed.remove(&peer_id);
                self.publish_peer_count();
                self.report_bootstrap();
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossip(e)) => self.handle_gossip_event(e),
            SwarmEvent::Behaviour(BehaviourEvent::Fetch(e)) => self.handle_fetch_event(e),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(e)) => self.handle_ping_event(e),
            SwarmEvent::IncomingConnectionError { error, .. } => {
                tracing::debug!(%error, "incoming connection refused or failed");
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id,
                connection_id,
                error,
            } => {
                let addr = self.bootstrap_links.remove(&connection_id);
                let startup_dial = self.startup_dials.remove(&connection_id);
                // First what the failure says (a copy of this node stops signing), then what
                // signing may do now.
                match (&error, addr) {
                    // libp2p does not dial the node's own listen addresses (no address is
                    // left to dial).
                    (DialError::NoAddresses, Some(addr)) => self.bootstrap_is_self(addr),
                    (DialError::LocalPeerId { .. }, Some(addr)) => {
                        self.bootstrap_answers_as_self(addr);
                    }
                    (_, Some(addr)) => self.bootstrap_failed(addr, dial_error_text(&error)),
                    (_, None) => {
                        tracing::debug!(?peer_id, %error, "outgoing connection failed");
                    }
                }
                if startup_dial {
                    self.publish_own_chain();
                }
                self.report_bootstrap();
            }
            _ => {}
        }
    }

    /// The state this node signs for, if it holds a state key.
    fn own_state(&self) -> Option<attrib_protocol::StateCode> {
        self.own
            .and_then(|k| self.ingest.roster().member_by_key(&k))
            .map(|m| m.code)
    }

    /// The member state running a peer, or `observer`.
    fn role_of(&self, peer: &PeerId) -> String {
        self.ingest
            .roster()
            .member_of_node(&peer.to_string())
            .map_or("observer".into(), |m| m.code.to_string())
    }

    /// Keeps each peer's round-trip time, and closes a connection whose ping failed: its peer
    /// is gone or stuck, and a dead connection would otherwise stay counted as a peer.
    fn handle_ping_event(&mut self, event: ping::Event) {
        match event.result {
            Ok(rtt) => {
                self.rtt.insert(event.peer, rtt);
            }
            Err(ping::Failure::Unsupported) => {
                tracing::debug!(peer = %event.peer, "peer does not answer pings");
            }
            Err(error) => {
                tracing::warn!(peer = %event.peer, %error, "ping failed: closing the connection");
                self.swarm.close_connection(event.connection);
            }
        }
    }

    fn publish_peer_count(&self) {
        self.gossip_peers.send_replace(self.subscribed.len());
    }

    fn handle_gossip_event(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                let (rate, burst) = (
                    self.limits.gossip_per_sec_per_peer,
                    self.limits.gossip_burst_per_peer,
                );
                let allowed = self
                    .gossip_buckets
                    .entry(propagation_source)
                    .or_insert_with(|| Bucket::new(burst))
                    .take(rate, burst);
                if !allowed {
                    self.stats.send_modify(|s| s.gossip_rate_limited += 1);
                    self.swarm
                        .behaviour_mut()
                        .gossip
                        .report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            MessageAcceptance::Ignore,
                        );
                    return;
                }
                let acceptance = match self.ingest.receive(&message.data) {
                    Ok(Outcome::Duplicate) => MessageAcceptance::Ignore,
                    Ok(Outcome::Waiting(missing)) => {
                        self.follow_up(missing, propagation_source);
                        MessageAcceptance::Accept
                    }
                    Ok(Outcome::Stored { .. } | Outcome::Fork) => MessageAcceptance::Accept,
                    Err(e) if e.is_peer_fault() => {
                        tracing::warn!(peer = %propagation_source, error = %e, "rejected gossiped record");
                        self.stats.send_modify(|s| s.gossip_invalid += 1);
                        self.strike(propagation_source);
                        MessageAcceptance::Reject
                    }
                    Err(e) => {
                        tracing::warn!(peer = %propagation_source, error = %e, "could not take gossiped record");
                        MessageAcceptance::Ignore
                    }
                };
                self.swarm
                    .behaviour_mut()
                    .gossip
                    .report_message_validation_result(&message_id, &propagation_source, acceptance);
            }
            gossipsub::Event::Subscribed { peer_id, topic } if topic == self.topic.hash() => {
                tracing::info!(peer = %peer_id, "peer joined the record topic");
                self.subscribed.insert(peer_id);
                self.publish_peer_count();
            }
            gossipsub::Event::Unsubscribed { peer_id, topic } if topic == self.topic.hash() => {
                self.subscribed.remove(&peer_id);
                self.publish_peer_count();
            }
            _ => {}
        }
    }

    /// After an ingest: ask the peer that sent the record for whatever it still needs.
    fn follow_up(&mut self, missing: Missing, peer: PeerId) {
        match missing {
            Missing::Target(id) => self.request_records(peer, vec![id]),
            Missing::Chain { author, from, to } => {
                let known = self.peer_heads.get(&(peer, author)).copied().unwrap_or(0);
                self.peer_heads.insert((peer, author), known.max(to));
                self.request_chain(peer, author, from, to);
            }
        }
    }

    fn handle_fetch_event(&mut self, event: request_response::Event<FetchRequest, FetchResponse>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let (rate, burst) = (
                        self.limits.fetch_per_sec_per_peer,
                        self.limits.fetch_burst_per_peer,
                    );
                    let allowed = self
                        .fetch_buckets
                        .entry(peer)
                        .or_insert_with(|| Bucket::new(burst))
                        .take(rate, burst);
                    if !allowed {
                        // Refused, not answered empty: an empty answer would say "I hold none
                        // of that", and the asker takes that as what this node has.
                        self.stats.send_modify(|s| s.fetch_rate_limited += 1);
                        drop(channel);
                        return;
                    }
                    let asker = self
                        .ingest
                        .roster()
                        .member_of_node(&peer.to_string())
                        .map(|m| m.key);
                    let response = self.ingest.serve(&request, self.own.is_some(), asker);
                    tracing::debug!(%peer, records = response.records.len(), "serving fetch");
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .fetch
                        .send_response(channel, response);
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    let Some((_, want)) = self.in_flight.remove(&request_id) else {
                        return;
                    };
                    let len = response.encode().len() as u64 + 4;
                    let count = response.records.len().min(MAX_FETCH_RECORDS);
                    self.stats.send_modify(|s| {
                        s.response_bytes += len;
                        s.records_received += count as u64;
                    });
                    if let Want::Heads = want {
                        self.handle_heads(peer, response);
                        return;
                    }
                    let ingest = self.ingest.clone();
                    let done = self.batches_tx.clone();
                    let stats = self.stats.clone();
                    let mut records = response.records;
                    records.truncate(MAX_FETCH_RECORDS);
                    tokio::task::spawn_blocking(move || {
                        let report = ingest.receive_batch(&records);
                        if let Ok(r) = &report {
                            stats.send_modify(|s| s.invalid_received += r.invalid as u64);
                        }
                        let _ = done.blocking_send(BatchDone { peer, want, report });
                    });
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some((_, want)) = self.in_flight.remove(&request_id) {
                    match want {
                        Want::Chain { author } => {
                            self.chain_in_flight.remove(&author);
                            self.publish_own_chain();
                        }
                        Want::Records(ids) => {
                            for id in ids {
                                self.records_in_flight.remove(&id);
                                self.own_head_fetches.remove(&id);
                            }
                            self.publish_own_chain();
                        }
                        Want::Heads => self.publish_own_chain(),
                    }
                }
                tracing::debug!(%peer, %error, "fetch failed");
            }
            _ => {}
        }
    }
}

/// Whether `records` (a heads answer's) hold the record `head` names, validly signed by its
/// author. This node's clock has no say: a record of its own that it made "in the future" of
/// a clock now behind proves its chain all the same.
fn proves_head(
    records: &[Vec<u8>],
    head: &attrib_protocol::sync::HeadEntry,
    roster: &attrib_protocol::Roster,
) -> bool {
    records.iter().take(1).any(|bytes| {
        attrib_protocol::Record::decode(bytes).is_ok_and(|r| {
            r.author() == head.author
                && r.seq() == head.seq
                && r.id() == head.id
                && attrib_protocol::check_signed(&r, roster).is_ok()
        })
    })
}

/// The request-response behaviour for attrib's fetch protocol (`/attrib/fetch/1`), as nodes
/// run it; test harnesses use it to speak the protocol.
pub fn fetch_behaviour() -> request_response::Behaviour<FetchCodec> {
    request_response::Behaviour::new(
        [(FETCH_PROTOCOL, ProtocolSupport::Full)],
        // Streams per connection, both ways: each side asks at most
        // `max_in_flight_fetches_per_peer` (8) at a time, plus its own chain; more only pins
        // memory for a peer that asks and does not read.
        request_response::Config::default()
            .with_request_timeout(Duration::from_secs(30))
            .with_max_concurrent_streams(32),
    )
}

/// Frames fetch messages as a u32 big-endian length and the bincode encoding.
#[derive(Debug, Clone, Default)]
pub struct FetchCodec;

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("fetch message of {len} bytes is over the {MAX_MESSAGE_BYTES}-byte limit"),
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message too large"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(bytes).await?;
    io.close().await
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

impl request_response::Codec for FetchCodec {
    type Protocol = StreamProtocol;
    type Request = FetchRequest;
    type Response = FetchResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<FetchRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        let request = FetchRequest::decode(&read_frame(io).await?).map_err(invalid)?;
        if let FetchRequest::Records(ids) = &request
            && ids.len() > MAX_FETCH_IDS
        {
            return Err(invalid(format!("more than {MAX_FETCH_IDS} ids requested")));
        }
        Ok(request)
    }

    async fn read_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<FetchResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        FetchResponse::decode(&read_frame(io).await?).map_err(invalid)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: FetchRequest,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &req.encode()).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: FetchResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &res.encode()).await
    }
}
