//! The libp2p side of a node: one swarm, owned by one event loop task, driven by commands from
//! cloneable handles. Gossipsub carries new records (validated and stored before they are
//! accepted for forwarding); request-response fetches records a node lacks.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::Arc;
use std::time::Duration;

use attrib_protocol::encoding::MAX_MESSAGE_BYTES;
use attrib_protocol::sync::{FetchRequest, FetchResponse, MAX_FETCH_IDS, MAX_FETCH_RECORDS};
use attrib_protocol::{NetworkId, RecordId};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageAuthenticity, MessageId};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, allow_block_list, connection_limits, identify, noise,
    ping, tcp, yamux,
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::ingest::{Ingest, Outcome};
use crate::store::Missing;

/// The largest gossip message: records are at most 32 KiB, so this leaves ample headroom.
pub const MAX_GOSSIP_BYTES: usize = 64 * 1024;
const FETCH_PROTOCOL: StreamProtocol = StreamProtocol::new("/attrib/fetch/1");

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

/// The node's libp2p behaviour.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    allowed: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    limits: connection_limits::Behaviour,
    gossip: gossipsub::Behaviour,
    fetch: request_response::Behaviour<FetchCodec>,
    identify: identify::Behaviour,
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
}

/// Network settings.
pub(crate) struct NetworkSettings {
    pub(crate) keypair: libp2p::identity::Keypair,
    pub(crate) listen: Vec<Multiaddr>,
    pub(crate) bootstrap: Vec<Multiaddr>,
    pub(crate) heartbeat: Duration,
}

/// The event loop state.
pub(crate) struct EventLoop {
    swarm: Swarm<Behaviour>,
    topic: IdentTopic,
    ingest: Ingest,
    commands: mpsc::Receiver<Command>,
    bootstrap: Vec<Multiaddr>,
    connected: HashSet<PeerId>,
    subscribed: HashSet<PeerId>,
    gossip_peers: watch::Sender<usize>,
    listen_addrs: watch::Sender<Vec<Multiaddr>>,
    in_flight: HashMap<OutboundRequestId, PeerId>,
    wanted: HashSet<WantKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum WantKey {
    Record(RecordId),
    Chain(attrib_protocol::MemberKey, u64),
}

impl EventLoop {
    pub(crate) fn new(
        settings: NetworkSettings,
        ingest: Ingest,
        commands: mpsc::Receiver<Command>,
        gossip_peers: watch::Sender<usize>,
        listen_addrs: watch::Sender<Vec<Multiaddr>>,
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
        let limits = connection_limits::ConnectionLimits::default()
            .with_max_established_per_peer(Some(2))
            .with_max_pending_incoming(Some(64))
            .with_max_established(Some(1024));
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(settings.keypair)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| crate::NodeError::Network(e.to_string()))?
            .with_behaviour(|key| {
                let gossip = gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, gossip_cfg)?;
                let fetch = request_response::Behaviour::new(
                    [(FETCH_PROTOCOL, ProtocolSupport::Full)],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(30)),
                );
                Ok(Behaviour {
                    allowed,
                    limits: connection_limits::Behaviour::new(limits),
                    gossip,
                    fetch,
                    identify: identify::Behaviour::new(identify::Config::new(
                        "/attrib/1".into(),
                        key.public(),
                    )),
                    ping: ping::Behaviour::default(),
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
        for addr in &settings.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| crate::NodeError::Network(format!("cannot listen on {addr}: {e}")))?;
        }
        for addr in &settings.bootstrap {
            if let Err(e) = swarm.dial(addr.clone()) {
                tracing::warn!(%addr, error = %e, "cannot dial bootstrap peer");
            }
        }
        Ok(EventLoop {
            swarm,
            topic,
            ingest,
            commands,
            bootstrap: settings.bootstrap,
            connected: HashSet::new(),
            subscribed: HashSet::new(),
            gossip_peers,
            listen_addrs,
            in_flight: HashMap::new(),
            wanted: HashSet::new(),
        })
    }

    /// Runs until the command channel closes (every handle dropped) or `shutdown` fires.
    pub(crate) async fn run(mut self, mut shutdown: oneshot::Receiver<()>) {
        let mut redial = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                command = self.commands.recv() => match command {
                    Some(c) => self.handle_command(c),
                    None => break,
                },
                event = self.swarm.select_next_some() => self.handle_swarm_event(event),
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
                let roster = self.ingest.roster();
                let peers = self
                    .connected
                    .iter()
                    .map(|p| PeerInfo {
                        peer_id: p.to_string(),
                        role: roster
                            .member_of_node(&p.to_string())
                            .map_or("observer".into(), |m| m.code.to_string()),
                        subscribed: self.subscribed.contains(p),
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
        }
    }

    fn handle_redial_tick(&mut self) {
        if self.connected.len() < self.bootstrap.len() {
            for addr in self.bootstrap.clone() {
                let _ = self.swarm.dial(addr);
            }
        }
    }

    fn handle_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                let addrs = self.swarm.listeners().cloned().collect();
                self.listen_addrs.send_replace(addrs);
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                tracing::debug!(peer = %peer_id, "connected");
                self.connected.insert(peer_id);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                tracing::debug!(peer = %peer_id, "disconnected");
                self.connected.remove(&peer_id);
                self.subscribed.remove(&peer_id);
                self.publish_peer_count();
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossip(e)) => self.handle_gossip_event(e),
            SwarmEvent::Behaviour(BehaviourEvent::Fetch(e)) => self.handle_fetch_event(e),
            SwarmEvent::IncomingConnectionError { error, .. } => {
                tracing::debug!(%error, "incoming connection refused or failed");
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(?peer_id, %error, "outgoing connection failed");
            }
            _ => {}
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
                let acceptance = match self.ingest.receive(&message.data) {
                    Ok(outcome) => {
                        self.follow_up(outcome, propagation_source);
                        MessageAcceptance::Accept
                    }
                    Err(e) if e.is_peer_fault() => {
                        tracing::warn!(peer = %propagation_source, error = %e, "rejected gossiped record");
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
    fn follow_up(&mut self, outcome: Outcome, peer: PeerId) {
        let Outcome::Waiting(missing) = outcome else {
            return;
        };
        let (key, request) = match missing {
            Missing::Target(id) => (WantKey::Record(id), FetchRequest::Records(vec![id])),
            Missing::Chain { author, from, to } => (
                WantKey::Chain(author, from),
                FetchRequest::Chain { author, from, to },
            ),
        };
        if self.wanted.insert(key) {
            let id = self
                .swarm
                .behaviour_mut()
                .fetch
                .send_request(&peer, request);
            self.in_flight.insert(id, peer);
        }
    }

    fn handle_fetch_event(&mut self, event: request_response::Event<FetchRequest, FetchResponse>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let response = self.ingest.serve(&request);
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
                    self.in_flight.remove(&request_id);
                    self.wanted.clear();
                    for bytes in response.records.iter().take(MAX_FETCH_RECORDS) {
                        match self.ingest.receive(bytes) {
                            Ok(outcome) => self.follow_up(outcome, peer),
                            Err(e) => {
                                tracing::warn!(%peer, error = %e, "peer served a bad record");
                            }
                        }
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                self.in_flight.remove(&request_id);
                self.wanted.clear();
                tracing::debug!(%peer, %error, "fetch failed");
            }
            _ => {}
        }
    }
}

/// Frames fetch messages as a u32 big-endian length and the bincode encoding.
#[derive(Debug, Clone, Default)]
pub(crate) struct FetchCodec;

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
