//! # attrib-node
//!
//! A national node of the attrib network, as a library so that tests and the demo can run many
//! nodes in one process.
//!
//! - [`Node::start`] runs a node from a [`NodeConfig`]: a libp2p swarm (gossipsub for new
//!   records, request-response to fetch missing ones; only roster peers may connect), a sled
//!   [`Store`], and optionally the local HTTP API ([`api`]).
//! - [`NodeHandle`] is the cheap, cloneable way to use a running node: submit records (signed
//!   with the state key, appended to the state's own chain, durable before acknowledged), read
//!   records, threads and the feed, wait for peers, get status.
//! - [`config`] reads the operator's TOML config and key files.

#![deny(missing_docs)]

pub mod api;
pub mod config;
mod ingest;
mod iso3166;
pub mod limits;
pub mod localnet;
pub mod metrics;
mod network;
pub mod stix;
pub mod store;
pub mod taxii;
pub mod webhook;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use attrib_protocol::{
    Body, ChainHead, MemberSigningKey, NetworkId, Record, RecordContent, RecordError, RecordId,
    Roster, StateCode, ThreadStatus, Tlp, check_response_content, member_key,
};
use libp2p::{Multiaddr, PeerId};
use serde::Serialize;
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

pub use config::NodeConfig;
pub use network::{
    BAN_DURATION, BootstrapInfo, FetchCodec, INVALID_STRIKES, MAX_GOSSIP_BYTES, PeerInfo,
    SyncStats, fetch_behaviour, gossip_config, gossip_scoring, gossip_topic, tcp_socket_addr,
};
pub use store::{Counts, IntegrityReport, Store, StoreError, Stored, TALLY_FILE};

use ingest::Ingest;
use network::{Command, EventLoop, NetworkSettings, OwnChainSync};

/// A file in a data dir, written by `attrib init` beside a state key it has just made: that
/// state's chain cannot exist anywhere yet, so its node may sign the first record before a
/// peer has said whether the chain exists. A lost data dir takes the file with it, so a node
/// back with an empty data dir waits for a peer instead (see [`SubmitError::ChainUnknown`]).
pub const NEW_CHAIN_MARKER: &str = "new-chain";

/// Marks `data_dir` as the data dir of the state whose key `member` was just made (creating
/// the dir). The marker names the key, so it says nothing about another key.
pub fn mark_new_chain(
    data_dir: &std::path::Path,
    member: &attrib_protocol::MemberKey,
) -> std::io::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    std::fs::write(
        data_dir.join(NEW_CHAIN_MARKER),
        format!(
            "key {}\n\
             This state key was made with this data dir: its chain starts here. If no peer\n\
             answers within seconds of the node's start, the node signs the first record.\n\
             The node removes this file once it holds its first own record.\n",
            member.to_hex()
        ),
    )
}

/// Milliseconds since the Unix epoch, by this machine's clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Microseconds since the Unix epoch, by this machine's clock.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Why a node could not start or a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The configuration is wrong.
    #[error("configuration error: {0}")]
    Config(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// libp2p could not be set up.
    #[error("network error: {0}")]
    Network(String),
    /// The local API could not start.
    #[error(
        "cannot start the local API on {addr} (is another node or program using that port? choose another `api_listen`)"
    )]
    Api {
        /// Where it tried to listen.
        addr: SocketAddr,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
    /// The store failed verification at start; the node does not serve a damaged record.
    #[error(
        "the store is damaged ({problems} problem(s), first: {first}); move the data dir aside and let the node rebuild it from peers"
    )]
    Damaged {
        /// How many problems were found.
        problems: usize,
        /// The first one.
        first: String,
    },
}

/// Why a submission was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// This node has no state key (an observer node authors nothing).
    #[error(
        "this node holds no state key (an observer, or a standby node of its state): it cannot author records; submit through the node that holds the state key"
    )]
    Observer,
    /// The record would be invalid.
    #[error("{0}")]
    Invalid(RecordError),
    /// The state's own chain on this node is behind what peers hold (e.g. a wiped or restored
    /// data dir that is still catching up): signing now would fork the chain.
    #[error(
        "this node is still fetching its own state's records from peers ({pending} arrived out of order so far); retry in a few seconds (signing now would fork the state's chain)"
    )]
    CatchingUp {
        /// Own records held pending.
        pending: usize,
    },
    /// This node holds none of its state's records and has not yet compared chains with any
    /// peer: if the state signed before (on this node before its data dir was lost, or on
    /// another), signing now would fork its chain.
    #[error(
        "this node holds none of its state's records and no peer has told it whether the state's chain already exists (signing now could fork it); check that its bootstrap peers are up and retry. If this state's chain really starts on this node now, set `new_chain = true` in the node config and remove it once the first record is signed"
    )]
    ChainUnknown,
    /// A pre-signed record does not follow its author's chain on this node (earlier records
    /// are missing); it was kept pending, not published.
    #[error(
        "record seq {seq} does not follow its author's chain on this node (earlier records are missing); publish them first"
    )]
    OutOfOrder {
        /// Its seq.
        seq: u64,
    },
    /// Another node of this state signed the same seq first; nothing was published.
    #[error(
        "another record of this state took seq {seq} first (is a second node signing for this state?); nothing was published, retry"
    )]
    Conflict {
        /// The seq that was taken.
        seq: u64,
    },
    /// A pre-signed record conflicts with another record its author signed at the same seq.
    #[error(
        "record seq {seq} conflicts with another record its author signed at seq {seq}: the node keeps both as proof that the author equivocated (`attrib forks`), but this one is not part of the author's chain and was not gossiped"
    )]
    Equivocation {
        /// The seq signed twice.
        seq: u64,
    },
    /// Another node of this state, connected to this one, also holds the state key.
    #[error(
        "another node of this state (peer {peer}) also holds the state key, and two signers fork the state's chain: this node signs nothing while that node is connected. Stop one of them, or run it without state_key"
    )]
    SecondSigner {
        /// The other node's peer id.
        peer: String,
    },
    /// A node with this node's own identity answers at one of its bootstrap addresses.
    #[error(
        "a node with this node's own identity answers at one of its bootstrap addresses (`attrib status` shows which): a copy of this node's key and data directory runs there, and two signers fork the state's chain, so this node signs nothing while it answers. Stop the copy; if the address is this node's own (behind NAT), remove it from bootstrap"
    )]
    CopyRunning,
    /// A claim attributes the incident to the state that signs it.
    #[error(
        "a claim cannot attribute the incident to the state that signs it; name the actor alone (--actor) and describe it in the summary"
    )]
    SelfAttribution,
    /// A response to an earlier version of a claim whose latest version was retracted.
    #[error(
        "claim {claim} was revised, and its latest version {latest} was retracted by its author (for good): nothing more can be said about the claim"
    )]
    LineRetracted {
        /// The claim named.
        claim: RecordId,
        /// Its latest version, retracted.
        latest: RecordId,
    },
    /// A revision or retraction of a claim that was already revised.
    #[error(
        "claim {claim} was already revised by {by}; revise or retract {by} instead (revisions form one line, and only its latest version is revised or retracted)"
    )]
    AlreadyRevised {
        /// The claim named.
        claim: RecordId,
        /// Its revision.
        by: RecordId,
    },
    /// A claim names an accused state that is neither a roster member nor an ISO 3166-1 code.
    #[error(
        "{0} is neither a member of this network nor an ISO 3166-1 alpha-3 country code; check for a typo (a signed claim cannot be taken back, only retracted)"
    )]
    UnknownState(StateCode),
    /// A response to a claim its author has already retracted.
    #[error(
        "claim {0} was already retracted by its author (for good); nothing more can be said about it here"
    )]
    Retracted(RecordId),
    /// A withdrawal from a claim the state holds no position on.
    #[error(
        "this state has no standing endorsement or rebuttal of claim {0} to withdraw (`attrib show {0}` lists the positions)"
    )]
    NothingToWithdraw(RecordId),
    /// A response names a claim this node does not hold.
    #[error("no claim {0} is known to this node; check the id (`attrib feed --kind claim`)")]
    UnknownTarget(RecordId),
    /// The node is stopping.
    #[error("the node is stopping; retry when it is back")]
    Stopping,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An accepted submission: durable on this node's disk.
#[derive(Debug, Clone, Serialize)]
pub struct Submitted {
    /// The new record's id.
    pub id: RecordId,
    /// Its seq in the state's chain.
    pub seq: u64,
    /// Its feed cursor on this node.
    pub cursor: u64,
}

/// Which feed entries to return.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct FeedFilter {
    /// Only this kind (`claim`, `rebuttal`, `endorsement`, `retraction`, `withdrawal`).
    pub kind: Option<String>,
    /// Only records authored by this state.
    pub author: Option<StateCode>,
    /// Only claims attributing to this state, and responses to such claims.
    pub about: Option<StateCode>,
    /// Only records marked at most this TLP level (see [`NodeHandle::tlp_of`]). Outbound
    /// interfaces always set it to at most the node's TLP ceiling.
    pub max_tlp: Option<Tlp>,
}

/// One feed entry.
#[derive(Debug, Clone, Serialize)]
pub struct FeedEntry {
    /// Feed cursor on this node (resume after it).
    pub cursor: u64,
    /// When this node stored the record, µs since the Unix epoch.
    pub received_us: u64,
    /// The author's state code.
    pub author_state: Option<StateCode>,
    /// The TLP marking that governs the record (a claim's own; a response's claim's).
    pub tlp: Tlp,
    /// The record.
    pub record: Record,
}

/// A page of the feed.
#[derive(Debug, Clone, Serialize)]
pub struct FeedPage {
    /// Matching entries in feed order.
    pub entries: Vec<FeedEntry>,
    /// The cursor to pass as `since` for the next page.
    pub next: u64,
    /// Whether records lie beyond `next` (matching the filter or not): ask again from `next`.
    pub more: bool,
    /// The highest TLP level this page could contain.
    pub tlp_ceiling: Tlp,
}

/// Creates the data dir if need be and makes it readable by its owner only: it holds every
/// record, RED ones included.
fn owner_only_dir(dir: &Path) -> Result<(), NodeError> {
    let failed = |e: std::io::Error| data_dir_error(dir, &e);
    std::fs::create_dir_all(dir).map_err(failed)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir).map_err(failed)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(failed)?;
            tracing::info!(dir = %dir.display(), "data dir made readable by this user only (it holds RED records too)");
        }
    }
    Ok(())
}

/// The data dir cannot be created, read or written.
fn data_dir_error(dir: &Path, e: &dyn std::fmt::Display) -> NodeError {
    NodeError::Config(format!(
        "cannot open the data dir {}: {e}; check `data_dir` in the node config and that this user may write there",
        dir.display()
    ))
}

/// A feed hold of a local submission; feed readers are told when it ends.
struct HeldFeed {
    hold: Option<store::FeedHold>,
    ingest: Ingest,
}

impl Drop for HeldFeed {
    fn drop(&mut self) {
        drop(self.hold.take());
        self.ingest.notify();
    }
}

/// The most records one [`NodeHandle::feed`] call looks at, matching or not.
pub const FEED_SCAN: usize = 16 * 1024;
/// A feed page ends once its records reach this many bytes (a record is at most 32 KiB, and
/// its JSON several times that), whatever the limit asked: pages stay a few MiB.
pub const FEED_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// A claim with its responses and status.
#[derive(Debug, Clone, Serialize)]
pub struct Thread {
    /// The claim.
    pub claim: FeedEntry,
    /// Responses and revisions, in feed order.
    pub responses: Vec<FeedEntry>,
    /// What they add up to.
    pub status: ThreadStatus,
    /// States in this thread known to have equivocated (signed conflicting records).
    pub equivocating: Vec<StateCode>,
    /// When the claim was revised and its latest version was retracted: that version (the
    /// claim's line has ended).
    pub line_retracted_at: Option<RecordId>,
}

/// The records a reader with a TLP ceiling may see, for the STIX conversion (see
/// [`NodeHandle::lookup_within`]).
pub struct RecordsWithin {
    node: NodeHandle,
    max_tlp: Tlp,
}

impl RecordsWithin {
    fn visible(&self, record: &Record) -> bool {
        self.node.tlp_of(record).is_ok_and(|t| t <= self.max_tlp)
    }
}

impl stix::Records for RecordsWithin {
    fn record(&self, id: &RecordId) -> Option<Record> {
        let record = self.node.shared.store.get(id).ok().flatten()?;
        self.visible(&record).then_some(record)
    }

    fn responses(&self, target: &RecordId) -> Vec<Record> {
        // Every response here answers `target`: its marking is read once, not per response.
        let Ok(target_tlp) = self.node.claim_tlp(target) else {
            return Vec::new();
        };
        let responses = self.node.shared.store.responses(target);
        responses
            .unwrap_or_default()
            .into_iter()
            .filter(|r| tlp_given(r, |_| Ok(target_tlp)).is_ok_and(|t| t <= self.max_tlp))
            .collect()
    }
}

/// The TLP level that governs a record outside the member network (see
/// [`NodeHandle::tlp_of`]), with its target claim's marking from `claim_tlp`.
fn tlp_given(
    record: &Record,
    claim_tlp: impl FnOnce(&RecordId) -> Result<Tlp, StoreError>,
) -> Result<Tlp, StoreError> {
    Ok(match record.body() {
        Body::Claim(c) => c.tlp,
        Body::Unknown { .. } => Tlp::Red,
        other => match other.target() {
            Some(t) => claim_tlp(&t)?,
            None => Tlp::Red,
        },
    })
}

/// An error and its causes in one line, each cause once (a wrapper that repeats its cause's
/// text adds nothing), for logs and status.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&dyn std::error::Error> = Some(error);
    while let Some(cause) = next {
        let text = cause.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = cause.source();
    }
    parts.join(": ")
}

/// Node status.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The network id.
    pub network_id: NetworkId,
    /// The network's name.
    pub network_name: String,
    /// This node's peer id.
    pub peer_id: String,
    /// The state this node authors for (none for an observer).
    pub state: Option<StateCode>,
    /// The member state whose node this is by the roster, whether or not it holds the state
    /// key (a standby holds none); none for an observer.
    pub node_of: Option<StateCode>,
    /// Listen addresses.
    pub listen: Vec<String>,
    /// Connected peers.
    pub peers: Vec<PeerInfo>,
    /// How this node fares with each of its bootstrap addresses.
    pub bootstrap: Vec<BootstrapInfo>,
    /// Member states in the roster (this node's own aside) with no node connected to this one.
    pub unreachable: Vec<StateCode>,
    /// Record counts.
    pub counts: Counts,
    /// Last feed cursor.
    pub last_cursor: u64,
    /// This state's own chain head.
    pub own_head: Option<ChainHead>,
    /// States known to have equivocated.
    pub equivocators: Vec<StateCode>,
    /// Catch-up sync counters.
    pub sync: SyncStats,
    /// The store's first failed operation since the node started (disk full, I/O error), if
    /// any: fix the cause and restart the node.
    pub store_failure: Option<String>,
    /// How many records the store lost to damage found when it opened (it held more when it
    /// last closed), while any are still missing: they are fetched again from peers. `None`
    /// when none are.
    pub records_missing: Option<usize>,
    /// Seconds since the node started.
    pub uptime_s: u64,
    /// Why this node cannot sign for its state now, in the words a submission would get
    /// (another node holding the state key is connected, its own chain is still being
    /// fetched); `None` when it can, or holds no state key.
    pub signing_blocked: Option<String>,
}

struct Shared {
    store: Arc<Store>,
    roster: Arc<Roster>,
    state_key: Option<MemberSigningKey>,
    peer_id: PeerId,
    author_lock: Mutex<()>,
    ingest: Ingest,
    checker: ingest::BatchChecker,
    feed: watch::Receiver<u64>,
    gossip_peers: watch::Receiver<usize>,
    bootstrap: watch::Receiver<Vec<BootstrapInfo>>,
    listen_addrs: watch::Receiver<Vec<Multiaddr>>,
    sync_stats: watch::Receiver<SyncStats>,
    commands: mpsc::Sender<Command>,
    /// What the network knows of this state's chain (see [`NodeHandle::own_chain_ready`]).
    own_chain: watch::Receiver<OwnChainSync>,
    /// This state's chain starts on this node: its first record may be signed when no peer has
    /// answered within [`OWN_CHAIN_WAIT`] of the start.
    new_chain: bool,
    /// When the node started.
    started: tokio::time::Instant,
    /// The data dir's [`NEW_CHAIN_MARKER`], removed after the first own record.
    new_chain_marker: std::sync::Mutex<Option<std::path::PathBuf>>,
    tlp_ceiling: Tlp,
}

/// The data dir's [`NEW_CHAIN_MARKER`], if it is there and this state's chain has not begun
/// (one left behind by a node that stopped right after its first record is removed).
fn new_chain_marker(
    data_dir: Option<&std::path::Path>,
    state_key: Option<&MemberSigningKey>,
    store: &Store,
) -> Option<std::path::PathBuf> {
    let (Some(dir), Some(key)) = (data_dir, state_key) else {
        return None;
    };
    let marker = dir.join(NEW_CHAIN_MARKER);
    let text = std::fs::read_to_string(&marker).ok()?;
    let member = member_key(key);
    if !text
        .lines()
        .any(|l| l == format!("key {}", member.to_hex()))
    {
        tracing::warn!(path = %marker.display(), "the new-chain marker names another state key: ignored");
        return None;
    }
    if matches!(store.chain_head(&member), Ok(None)) {
        return Some(marker);
    }
    if let Err(e) = std::fs::remove_file(&marker) {
        tracing::warn!(path = %marker.display(), error = %e, "cannot remove the new-chain marker");
    }
    None
}

/// How long after its start a node waits for its peers' chain heads before it signs.
const OWN_CHAIN_WAIT: Duration = Duration::from_secs(5);

/// How long a stopping node waits for API requests in flight.
const API_DRAIN: Duration = Duration::from_secs(5);

/// A cheap, cloneable handle to a running node.
#[derive(Clone)]
pub struct NodeHandle {
    shared: Arc<Shared>,
}

/// A running node. Dropping it without [`Node::shutdown`] aborts its tasks.
#[must_use = "a node stops when dropped"]
pub struct Node {
    handle: NodeHandle,
    network: Option<JoinHandle<()>>,
    api: Option<JoinHandle<()>>,
    api_addr: Option<SocketAddr>,
    stop_network: Option<oneshot::Sender<()>>,
    stop_api: Option<watch::Sender<bool>>,
    webhooks: Vec<JoinHandle<()>>,
}

impl Node {
    /// Starts a node: opens the store, starts the swarm and (if configured) the API.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        config.check()?;
        let roster = Arc::new(config.roster);
        let state = match &config.state_key {
            Some(key) => Some(
                roster
                    .member_by_key(&member_key(key))
                    .ok_or_else(|| {
                        NodeError::Config(
                            "the state key is not a member key in the roster; check `state_key` and the roster".into(),
                        )
                    })?
                    .code,
            ),
            None => None,
        };
        let peer_id = config.node_key.public().to_peer_id();
        if !roster.admits_node(&peer_id.to_string()) {
            return Err(NodeError::Config(format!(
                "this node's peer id {peer_id} is not in the roster; add it to its member's `nodes` (or to an observer) and share the roster"
            )));
        }
        // Peers know a node's state by its peer id: a state key on a node listed for another
        // member (or as an observer) would present this node as that one. (A member's node
        // without the state key is one of its relay nodes.)
        let runs_for = roster.member_of_node(&peer_id.to_string()).map(|m| m.code);
        if let Some(own) = state
            && runs_for != Some(own)
        {
            let listed = runs_for.map_or("an observer".to_string(), |c| format!("{c}'s node"));
            return Err(NodeError::Config(format!(
                "this node's peer id {peer_id} is listed in the roster as {listed}, but it runs with {own}'s state key; use the node key that `attrib init` made for this node (node_key), or fix the roster"
            )));
        }
        let span = tracing::info_span!("node", state = %match (state, runs_for) {
            (Some(s), _) => s.to_string(),
            (None, Some(s)) => format!("{s} (no state key)"),
            (None, None) => "observer".to_string(),
        });
        let pending_limits = store::PendingLimits {
            max_pending: config.limits.max_pending,
            max_pending_per_author: config.limits.max_pending_per_author,
            max_seq_ahead: config.limits.max_seq_ahead,
        };
        if let Some(dir) = &config.data_dir {
            owner_only_dir(dir)?;
        }
        let store = Arc::new(match &config.data_dir {
            Some(dir) => Store::open_with(dir, pending_limits).map_err(|e| match e {
                StoreError::Sled(sled::Error::Io(io))
                    if io.to_string().contains("could not acquire lock") =>
                {
                    NodeError::Config(format!(
                        "data dir {} is in use: another attrib node is probably running with it; stop that node first",
                        dir.display()
                    ))
                }
                StoreError::Sled(sled::Error::Io(io)) => data_dir_error(dir, &io),
                StoreError::Sled(sled::Error::Corruption { .. }) => NodeError::Config(format!(
                    "the store in data dir {} is damaged (its files do not read back as written): move the data dir aside and start the node again; it rebuilds the record, its own state's chain included, from its peers",
                    dir.display()
                )),
                other => NodeError::Store(other),
            })?,
            None => Store::temporary_with(pending_limits)?,
        });
        if let Some(held) = store.bind_network(roster.network_id().as_bytes())? {
            return Err(NodeError::Config(format!(
                "the data dir {} holds records of network {}, but this roster is network {}: a roster change (a member, an observer or a node added or removed) makes a new network, under which the stored records' signatures are invalid. Run with the roster this data dir was made with, or give the new network a new data dir",
                config
                    .data_dir
                    .as_deref()
                    .map_or("(temporary)".into(), |d| d.display().to_string()),
                hex::encode(held),
                roster.network_id()
            )));
        }
        let new_chain_marker = new_chain_marker(
            config.data_dir.as_deref(),
            config.state_key.as_ref(),
            &store,
        );
        let new_chain = config.new_chain || new_chain_marker.is_some();
        if config.verify_on_start {
            let report = store.verify_all(&roster)?;
            if !report.problems.is_empty() {
                return Err(NodeError::Damaged {
                    problems: report.problems.len(),
                    first: report.problems[0].clone(),
                });
            }
            tracing::info!(
                records = report.records_checked,
                "store verified: no damage"
            );
        }
        let (feed_tx, feed_rx) = watch::channel(store.last_cursor());
        let (peers_tx, peers_rx) = watch::channel(0);
        let (addrs_tx, addrs_rx) = watch::channel(Vec::new());
        let (stats_tx, stats_rx) = watch::channel(SyncStats::default());
        let (cmd_tx, cmd_rx) = mpsc::channel(1024);
        let (own_chain_tx, own_chain_rx) = watch::channel(OwnChainSync::default());
        let (bootstrap_tx, bootstrap_rx) = watch::channel(Vec::new());
        let ingest = Ingest::new(store.clone(), roster.clone(), feed_tx);
        let event_loop = {
            let _enter = span.enter();
            EventLoop::new(
                NetworkSettings {
                    keypair: config.node_key,
                    listen: config.listen,
                    bootstrap: config.bootstrap,
                    heartbeat: config.heartbeat,
                    sync_interval: config.sync_interval,
                    ping_interval: config.ping_interval,
                    ping_timeout: config.ping_timeout,
                    own: config.state_key.as_ref().map(member_key),
                    limits: config.limits.clone(),
                    bootstrap_report: bootstrap_tx,
                },
                ingest.clone(),
                cmd_rx,
                peers_tx,
                addrs_tx,
                stats_tx,
                own_chain_tx,
            )?
        };
        if config.tlp_ceiling > Tlp::AmberStrict {
            tracing::warn!(
                "tlp_ceiling RED is served as AMBER+STRICT: RED records never leave the node except to a local reader holding the API token who asks for them"
            );
        }
        let (stop_network, stop_rx) = oneshot::channel();
        let network = tokio::spawn(event_loop.run(stop_rx).instrument(span.clone()));
        let checker = ingest::BatchChecker::start(roster.clone());
        let handle = NodeHandle {
            shared: Arc::new(Shared {
                store,
                roster,
                state_key: config.state_key,
                peer_id,
                author_lock: Mutex::new(()),
                checker,
                ingest,
                feed: feed_rx,
                gossip_peers: peers_rx,
                bootstrap: bootstrap_rx,
                listen_addrs: addrs_rx,
                sync_stats: stats_rx,
                commands: cmd_tx,
                own_chain: own_chain_rx,
                new_chain,
                started: tokio::time::Instant::now(),
                new_chain_marker: std::sync::Mutex::new(new_chain_marker),
                tlp_ceiling: config.tlp_ceiling.min(Tlp::AmberStrict),
            }),
        };
        let mut node = Node {
            handle: handle.clone(),
            network: Some(network),
            api: None,
            api_addr: None,
            stop_network: Some(stop_network),
            stop_api: None,
            webhooks: Vec::new(),
        };
        for hook in config.webhooks {
            node.webhooks.push(tokio::spawn(
                webhook::run(handle.clone(), hook).instrument(span.clone()),
            ));
        }
        if let Some(api) = config.api {
            if !api.listen.ip().is_loopback() && !api.allow_remote {
                return Err(NodeError::Config(format!(
                    "api_listen {} is not a loopback address; the local API has no TLS of its own. Keep it on 127.0.0.1, or put a TLS proxy in front and set api_allow_remote = true",
                    api.listen
                )));
            }
            let listener = tokio::net::TcpListener::bind(api.listen)
                .await
                .map_err(|source| NodeError::Api {
                    addr: api.listen,
                    source,
                })?;
            let addr = listener.local_addr().map_err(|source| NodeError::Api {
                addr: api.listen,
                source,
            })?;
            let (stop_api, stopping) = watch::channel(false);
            let router = api::router(handle, &api, &config.limits, stopping.clone());
            node.api = Some(tokio::spawn(
                async move {
                    tracing::info!(%addr, "local API listening");
                    let mut stopping = stopping;
                    let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
                        let _ = stopping.wait_for(|s| *s).await;
                    });
                    if let Err(e) = serve.await {
                        tracing::error!(error = %e, "local API stopped");
                    }
                }
                .instrument(span),
            ));
            node.api_addr = Some(addr);
            node.stop_api = Some(stop_api);
        }
        Ok(node)
    }

    /// A handle to this node.
    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// Where the local API listens, if it runs.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api_addr
    }

    /// Stops the node: API, swarm, then flushes the store.
    pub async fn shutdown(mut self) -> Result<(), NodeError> {
        for hook in self.webhooks.drain(..) {
            hook.abort();
        }
        if let Some(stop) = self.stop_api.take() {
            stop.send_replace(true);
        }
        if let Some(mut api) = self.api.take() {
            // Requests in flight get a moment to finish; a client that holds its connection
            // open does not keep the node from stopping. (A submission cut off here was not
            // acknowledged; what it stored is flushed below.)
            if tokio::time::timeout(API_DRAIN, &mut api).await.is_err() {
                tracing::warn!(
                    "local API clients still connected after {API_DRAIN:?}; closing them"
                );
                api.abort();
            }
        }
        if let Some(stop) = self.stop_network.take() {
            let _ = stop.send(());
        }
        if let Some(net) = self.network.take() {
            let _ = net.await;
        }
        self.handle.shared.store.flush().await?;
        // The process may exit before every task lets go of the store (so before it closes).
        self.handle.shared.store.write_tally();
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        for hook in self.webhooks.drain(..) {
            hook.abort();
        }
        if let Some(t) = self.api.take() {
            t.abort();
        }
        if let Some(t) = self.network.take() {
            t.abort();
        }
    }
}

impl NodeHandle {
    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.shared.peer_id
    }

    /// The roster.
    pub fn roster(&self) -> &Roster {
        &self.shared.roster
    }

    /// The state this node authors for.
    pub fn state(&self) -> Option<StateCode> {
        let key = self.shared.state_key.as_ref()?;
        self.shared
            .roster
            .member_by_key(&member_key(key))
            .map(|m| m.code)
    }

    /// Waits (a few seconds at most) until this node's copy of its own state's chain is known
    /// to be whole: the peers it reaches have been asked for their chain heads, none of the
    /// chain is being fetched, and it holds as much of it as any of them said. Signing before would fork the chain: a node back
    /// with a wiped data dir would sign seq 1 again, and every node would then hold proof
    /// that the state equivocated.
    async fn own_chain_ready(
        &self,
        author: &attrib_protocol::MemberKey,
    ) -> Result<(), SubmitError> {
        let store = &self.shared.store;
        let held = || store.chain_head(author).ok().flatten().map_or(0, |h| h.seq);
        let ready = |s: &OwnChainSync| s.settled && !s.behind(held());
        let mut own = self.shared.own_chain.clone();
        // Within the first seconds after the start the node waits to hear from its peers;
        // later it does not wait for peers that are not there, unless it holds none of its
        // chain (it must not sign then without having heard, so waiting costs nothing).
        let deadline = if held() == 0 && !self.shared.new_chain {
            tokio::time::Instant::now() + OWN_CHAIN_WAIT
        } else {
            self.shared.started + OWN_CHAIN_WAIT
        };
        match tokio::time::timeout_at(deadline, own.wait_for(ready)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(_)) => return Err(SubmitError::Stopping),
            Err(_) => {}
        }
        let s = *own.borrow();
        if s.behind(held()) {
            return Err(SubmitError::CatchingUp {
                pending: store.pending_of(author),
            });
        }
        if s.settled {
            return Ok(());
        }
        // No member node has answered. A node that holds its chain (its peers are down) may
        // go on; so may one whose chain starts here. One that holds nothing must not guess.
        if held() > 0 || self.shared.new_chain {
            tracing::warn!("signing before any peer has answered with its chain heads");
            return Ok(());
        }
        Err(SubmitError::ChainUnknown)
    }

    /// Why this node must not sign now because another node signs with its state key: a
    /// connected node of its state that holds the key, or a copy of this node.
    fn second_signer_seen(&self) -> Option<SubmitError> {
        let own = *self.shared.own_chain.borrow();
        if let Some(peer) = own.second_signer {
            return Some(SubmitError::SecondSigner {
                peer: peer.to_string(),
            });
        }
        own.copy_running.then_some(SubmitError::CopyRunning)
    }

    /// Signs `body` with the state key as the next record of the state's chain, stores it
    /// durably, then gossips it. Returns once the record is on disk.
    pub async fn submit(&self, body: Body) -> Result<Submitted, SubmitError> {
        let key = self
            .shared
            .state_key
            .as_ref()
            .ok_or(SubmitError::Observer)?;
        let store = &self.shared.store;
        let roster = &self.shared.roster;
        let author = member_key(key);
        if let Some(refused) = self.second_signer_seen() {
            return Err(refused);
        }
        // Before the lock: a wait here holds no other submission up.
        self.own_chain_ready(&author).await?;
        let _guard = self.shared.author_lock.lock().await;
        if let Body::Claim(c) = &body
            && let Some(accused) = c.attributed_to.state
            && roster.member_by_code(accused).is_none()
            && !iso3166::is_assigned(accused.as_str())
        {
            return Err(SubmitError::UnknownState(accused));
        }
        if let Body::Claim(c) = &body
            && c.attributed_to.state.is_some()
            && c.attributed_to.state == roster.member_by_key(&author).map(|m| m.code)
        {
            return Err(SubmitError::SelfAttribution);
        }
        if let Some(target) = body.target() {
            // A retraction is final, for revisions too, and for the versions before a
            // retracted revision.
            if self.is_retracted(&target)? {
                return Err(SubmitError::Retracted(target));
            }
            let latest = self.latest_version(&target)?;
            if latest != target && self.is_retracted(&latest)? {
                return Err(SubmitError::LineRetracted {
                    claim: target,
                    latest,
                });
            }
            // Revisions form one line: the latest is revised or retracted, not an earlier
            // one (a retraction of an earlier one would say nothing the line does not, and
            // has no form in a STIX export, where that version is revoked already).
            if matches!(body, Body::Claim(_) | Body::Retraction(_))
                && let Some(by) = store
                    .responses(&target)?
                    .iter()
                    .find(|r| matches!(r.body(), Body::Claim(_)) && r.author() == author)
            {
                return Err(SubmitError::AlreadyRevised {
                    claim: target,
                    by: by.id(),
                });
            }
        }
        if let Some(refused) = self.second_signer_seen() {
            return Err(refused);
        }
        let pending = store.pending_of(&author);
        let head = store.chain_head(&author)?;
        // Checked again under the lock, without waiting: a fetch may have begun meanwhile.
        if pending > 0
            || self
                .shared
                .own_chain
                .borrow()
                .behind(head.map_or(0, |h| h.seq))
        {
            return Err(SubmitError::CatchingUp { pending });
        }
        let target = body.target();
        let content = RecordContent {
            author,
            seq: head.map_or(1, |h| h.seq + 1),
            prev: head.map(|h| h.id),
            created_at: now_ms(),
            body,
        };
        if let Some(target) = target {
            let t = store
                .get(&target)?
                .ok_or(SubmitError::UnknownTarget(target))?;
            check_response_content(&content, &t)?;
            if matches!(content.body, Body::Withdrawal(_))
                && attrib_protocol::standing_positions(
                    &store.responses(&target)?,
                    &author,
                    u64::MAX,
                )
                .is_empty()
            {
                return Err(SubmitError::NothingToWithdraw(target));
            }
        }
        // Our own signature needs no check; the rules, the text and the size do.
        attrib_protocol::check_content(&content)?;
        attrib_protocol::check_printable(&content.body)?;
        let record = Record::sign(content, key, roster.network_id());
        let size = record.as_bytes().len();
        if size > attrib_protocol::limits::MAX_RECORD_BYTES {
            return Err(SubmitError::Invalid(RecordError::TooLarge {
                size,
                max: attrib_protocol::limits::MAX_RECORD_BYTES,
            }));
        }
        let (id, seq) = (record.id(), record.seq());
        let bytes = record.bytes();
        let held = self.hold_feed();
        let Some(ingest::Outcome::Stored { cursor }) = self.shared.ingest.append_signed(record)?
        else {
            return Err(SubmitError::Conflict { seq });
        };
        // The next submission may sign while this one waits for the disk.
        drop(_guard);
        self.settle(cursor, held, bytes).await?;
        let marker = self
            .shared
            .new_chain_marker
            .lock()
            .ok()
            .and_then(|mut m| m.take());
        if let Some(marker) = marker {
            // The chain has begun (and is on disk): the marker has done its work.
            if let Err(e) = std::fs::remove_file(&marker) {
                tracing::warn!(path = %marker.display(), error = %e, "cannot remove the new-chain marker");
            }
        }
        Ok(Submitted { id, seq, cursor })
    }

    /// Holds the feed before a local submission is appended (see [`Store::hold_feed`]); feed
    /// readers are told when the hold ends, however it ends.
    fn hold_feed(&self) -> HeldFeed {
        HeldFeed {
            hold: Some(self.shared.store.hold_feed()),
            ingest: self.shared.ingest.clone(),
        }
    }

    /// After a local submission is stored: waits until it is durable (group commit), lets
    /// feed readers see it, then gossips it. This runs to the end in a task of its own, so a
    /// submitter that goes away (an HTTP client disconnecting) leaves neither the record
    /// unpublished nor the feed showing it before it is on disk.
    async fn settle(
        &self,
        cursor: u64,
        mut held: HeldFeed,
        bytes: std::sync::Arc<[u8]>,
    ) -> Result<(), StoreError> {
        let node = self.clone();
        tokio::spawn(async move {
            match node.shared.store.flush_through(cursor).await {
                Ok(()) => {
                    drop(held);
                    let _ = node.shared.commands.send(Command::Publish(bytes)).await;
                    Ok(())
                }
                Err(e) => {
                    tracing::error!(cursor, error = %e, "a submission could not be made durable: the feed stops before it until the node restarts");
                    if let Some(hold) = held.hold.take() {
                        hold.keep();
                    }
                    Err(e)
                }
            }
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("the durable write of a submission failed: {e}")))?
    }

    /// Verifies the whole local store (see [`Store::verify_all`]).
    pub fn verify_store(&self) -> Result<store::IntegrityReport, StoreError> {
        self.shared.store.verify_all(&self.shared.roster)
    }

    /// The latest version of a claim: the claim itself, or the last revision of it by its
    /// author (revisions form one line), as far as this node knows.
    pub fn latest_version(&self, claim: &RecordId) -> Result<RecordId, StoreError> {
        let store = &self.shared.store;
        let Some(c) = store.get(claim)? else {
            return Ok(*claim);
        };
        let mut latest = *claim;
        // Bounded: each step is a record of the author's, and the line has no cycles (a
        // revision names an earlier record).
        while let Some(next) = store.responses(&latest)?.iter().find(|r| {
            r.author() == c.author()
                && r.body()
                    .as_claim()
                    .is_some_and(|rc| rc.supersedes == Some(latest))
        }) {
            latest = next.id();
        }
        Ok(latest)
    }

    /// Whether the claim's author has retracted it (as far as this node knows).
    pub fn is_retracted(&self, claim: &RecordId) -> Result<bool, StoreError> {
        let store = &self.shared.store;
        let Some(c) = store.get(claim)? else {
            return Ok(false);
        };
        Ok(store
            .responses(claim)?
            .iter()
            .any(|r| matches!(r.body(), Body::Retraction(_)) && r.author() == c.author()))
    }

    /// Publishes a record signed elsewhere (e.g. by an offline key): checks it like any
    /// received record, stores it durably, then gossips it.
    pub async fn publish_signed(&self, bytes: &[u8]) -> Result<Submitted, SubmitError> {
        let record = self
            .shared
            .checker
            .check(bytes.to_vec())
            .await
            .map_err(|e| match e {
                ingest::CheckError::Invalid(e) => SubmitError::Invalid(e),
                ingest::CheckError::Stopped => SubmitError::Stopping,
            })?;
        attrib_protocol::check_printable(record.body()).map_err(SubmitError::Invalid)?;
        let (id, seq) = (record.id(), record.seq());
        let shared = record.bytes();
        let held = self.hold_feed();
        let author = record.author();
        let cursor = match self.shared.ingest.append(record)? {
            ingest::Outcome::Stored { cursor } => cursor,
            ingest::Outcome::Duplicate => {
                // Held already: as its author's record at that seq, or kept beside the chain
                // as half of a fork proof (the same answer as the first time, then).
                let on_chain = self
                    .shared
                    .store
                    .chain_record(&author, seq)?
                    .is_some_and(|r| r.id() == id);
                if !on_chain {
                    return Err(SubmitError::Equivocation { seq });
                }
                self.shared.store.get_stored(&id)?.map_or(0, |s| s.cursor)
            }
            ingest::Outcome::Waiting(_) => return Err(SubmitError::OutOfOrder { seq }),
            ingest::Outcome::Fork => return Err(SubmitError::Equivocation { seq }),
        };
        self.settle(cursor, held, shared).await?;
        Ok(Submitted { id, seq, cursor })
    }

    /// Imports many records signed elsewhere at once (one batch signature check), without
    /// gossiping them: peers get them by catch-up sync. Returns (stored, refused): refused are
    /// the invalid ones and any made "in the future" by this node's clock.
    pub async fn import(&self, items: Vec<Vec<u8>>) -> Result<(usize, usize), StoreError> {
        let ingest = self.shared.ingest.clone();
        let report = tokio::task::spawn_blocking(move || ingest.receive_batch(&items))
            .await
            .map_err(|e| StoreError::Corrupt(format!("import task failed: {e}")))??;
        self.shared.store.flush().await?;
        Ok((report.stored, report.invalid + report.early))
    }

    /// The fork proofs this node holds.
    pub fn forks(&self) -> Result<Vec<attrib_protocol::ForkProof>, StoreError> {
        self.shared.store.forks()
    }

    /// A stored record with its cursor. A local submission not yet on disk is not found yet
    /// (see [`Store::hold_feed`]).
    pub fn get(&self, id: &RecordId) -> Result<Option<FeedEntry>, StoreError> {
        let store = &self.shared.store;
        match store.get_stored(id)? {
            Some(stored) if store.held_from().is_some_and(|h| stored.cursor >= h) => Ok(None),
            Some(stored) => Ok(Some(self.entry(stored)?)),
            None => Ok(None),
        }
    }

    fn entry(&self, stored: Stored) -> Result<FeedEntry, StoreError> {
        Ok(FeedEntry {
            cursor: stored.cursor,
            received_us: stored.received_us,
            author_state: self
                .shared
                .roster
                .member_by_key(&stored.record.author())
                .map(|m| m.code),
            tlp: self.tlp_of(&stored.record)?,
            record: stored.record,
        })
    }

    /// The TLP level that governs a record outside the member network: a claim's own marking;
    /// for a response, its claim's; RED for anything else (unknown kinds, missing targets).
    pub fn tlp_of(&self, record: &Record) -> Result<Tlp, StoreError> {
        tlp_given(record, |target| self.claim_tlp(target))
    }

    /// The marking of claim `id` as its responses take it: RED when it is not held (or is
    /// not a claim).
    fn claim_tlp(&self, id: &RecordId) -> Result<Tlp, StoreError> {
        Ok(match self.shared.store.get(id)? {
            Some(target) => target.body().as_claim().map_or(Tlp::Red, |c| c.tlp),
            None => Tlp::Red,
        })
    }

    /// Looks records up for the STIX conversion of a reader whose ceiling is `max_tlp`: a
    /// record marked above it is not found (a revision must not carry the claim it revises
    /// out, nor a response its claim, past the reader's ceiling).
    pub fn lookup_within(&self, max_tlp: Tlp) -> RecordsWithin {
        RecordsWithin {
            node: self.clone(),
            max_tlp,
        }
    }

    /// The most sensitive TLP level this node lets out through its outbound interfaces (feed,
    /// STIX, TAXII, webhooks) to readers without the API token. Never RED.
    pub fn tlp_ceiling(&self) -> Tlp {
        self.shared.tlp_ceiling
    }

    /// The ids of every record stored (held ones included: see [`NodeHandle::get`]).
    pub fn record_ids(&self) -> Vec<RecordId> {
        self.shared.store.record_ids()
    }

    /// A claim's thread, or `None` if no such claim is stored. Responses marked above
    /// `max_tlp` (a revision can be marked higher than the claim it revises) are left out, and
    /// the status is what the rest adds up to.
    pub fn thread(&self, id: &RecordId, max_tlp: Tlp) -> Result<Option<Thread>, StoreError> {
        let store = &self.shared.store;
        let Some(claim) = self.get(id)? else {
            return Ok(None);
        };
        let responses: Vec<FeedEntry> = store
            .responses(id)?
            .into_iter()
            .filter_map(|r| self.get(&r.id()).ok().flatten())
            .filter(|e| e.tlp <= max_tlp)
            .collect();
        let records: Vec<Record> = responses.iter().map(|e| e.record.clone()).collect();
        let Some(status) = ThreadStatus::of(&claim.record, &records, &self.shared.roster) else {
            return Ok(None);
        };
        let mut equivocating = Vec::new();
        for e in std::iter::once(&claim).chain(responses.iter()) {
            if store.is_equivocator(&e.record.author())?
                && let Some(s) = e.author_state
                && !equivocating.contains(&s)
            {
                equivocating.push(s);
            }
        }
        let latest = self.latest_version(id)?;
        let line_retracted_at = (latest != *id && self.is_retracted(&latest)?).then_some(latest);
        Ok(Some(Thread {
            claim,
            responses,
            status,
            equivocating,
            line_retracted_at,
        }))
    }

    /// Feed entries after cursor `since` that match `filter`, at most `limit`. One call looks
    /// at no more than [`FEED_SCAN`] records and stops after [`FEED_PAGE_BYTES`] of records: a
    /// page can be short, or empty, with `next` moved on; ask again from `next`. Records of a local submission not yet on disk are not shown
    /// (see [`Store::hold_feed`]).
    pub fn feed(
        &self,
        since: u64,
        limit: usize,
        filter: &FeedFilter,
    ) -> Result<FeedPage, StoreError> {
        const SCAN: usize = 1024;
        let store = &self.shared.store;
        let mut entries = Vec::new();
        let mut next = since;
        let (mut scanned, mut bytes) = (0, 0);
        // Whether a record lies beyond `next`: known when the scan stops before one, asked
        // when it stops at a bound, false when it ran out of records.
        let mut more = false;
        'scan: loop {
            if entries.len() >= limit || scanned >= FEED_SCAN || bytes >= FEED_PAGE_BYTES {
                more = !store.feed_after(next, 1)?.is_empty();
                break;
            }
            let batch = store.feed_after(next, SCAN)?;
            let end_reached = batch.len() < SCAN;
            let held = store.held_from();
            for stored in batch {
                if entries.len() >= limit
                    || bytes >= FEED_PAGE_BYTES
                    || held.is_some_and(|h| stored.cursor >= h)
                {
                    more = true;
                    break 'scan;
                }
                scanned += 1;
                next = stored.cursor;
                if self.matches(&stored.record, filter)? {
                    let entry = self.entry(stored)?;
                    if filter.max_tlp.is_none_or(|max| entry.tlp <= max) {
                        bytes += entry.record.as_bytes().len();
                        entries.push(entry);
                    }
                }
            }
            if end_reached {
                break;
            }
        }
        Ok(FeedPage {
            entries,
            next,
            more,
            tlp_ceiling: filter.max_tlp.unwrap_or(Tlp::Red),
        })
    }

    /// [`NodeHandle::feed`] on a blocking thread, for async callers: a page can take a
    /// while to scan and decode.
    pub async fn read_feed(
        &self,
        since: u64,
        limit: usize,
        filter: FeedFilter,
    ) -> Result<FeedPage, StoreError> {
        let node = self.clone();
        tokio::task::spawn_blocking(move || node.feed(since, limit, &filter))
            .await
            .map_err(|e| StoreError::Corrupt(format!("feed read failed: {e}")))?
    }

    fn matches(&self, record: &Record, filter: &FeedFilter) -> Result<bool, StoreError> {
        if let Some(kind) = &filter.kind
            && record.body().kind_name() != kind
        {
            return Ok(false);
        }
        if let Some(author) = filter.author
            && self
                .shared
                .roster
                .member_by_key(&record.author())
                .map(|m| m.code)
                != Some(author)
        {
            return Ok(false);
        }
        if let Some(about) = filter.about {
            let claim = match record.body() {
                Body::Claim(c) => Some(c.clone()),
                other => match other.target() {
                    Some(t) => self
                        .shared
                        .store
                        .get(&t)?
                        .and_then(|r| r.body().as_claim().cloned()),
                    None => None,
                },
            };
            if claim.and_then(|c| c.attributed_to.state) != Some(about) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// A receiver of the last feed cursor, updated whenever records are stored.
    pub fn feed_updates(&self) -> watch::Receiver<u64> {
        self.shared.feed.clone()
    }

    /// Waits until this node holds `id`, or the deadline passes.
    pub async fn wait_for_record(&self, id: &RecordId, timeout: Duration) -> bool {
        let mut updates = self.feed_updates();
        let wait = async {
            loop {
                if matches!(self.shared.store.get(id), Ok(Some(_))) {
                    return;
                }
                if updates.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }

    /// A receiver of how this node fares with each of its bootstrap addresses.
    pub fn bootstrap_updates(&self) -> watch::Receiver<Vec<BootstrapInfo>> {
        self.shared.bootstrap.clone()
    }

    /// A receiver of the number of peers subscribed to the record topic.
    pub fn gossip_peer_updates(&self) -> watch::Receiver<usize> {
        self.shared.gossip_peers.clone()
    }

    /// Waits until at least `n` peers are subscribed to the record topic, or the deadline passes.
    pub async fn wait_for_gossip_peers(&self, n: usize, timeout: Duration) -> bool {
        let mut rx = self.shared.gossip_peers.clone();
        tokio::time::timeout(timeout, rx.wait_for(|c| *c >= n))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Waits until the node listens somewhere, then returns its listen addresses.
    pub async fn listen_addrs(&self, timeout: Duration) -> Vec<Multiaddr> {
        let mut rx = self.shared.listen_addrs.clone();
        match tokio::time::timeout(timeout, rx.wait_for(|a| !a.is_empty())).await {
            Ok(Ok(addrs)) => addrs.clone(),
            _ => Vec::new(),
        }
    }

    /// Dials a peer address.
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NodeError> {
        self.shared
            .commands
            .send(Command::Dial(addr))
            .await
            .map_err(|_| NodeError::Stopped)
    }

    /// The node's status.
    pub async fn status(&self) -> Result<Status, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.shared
            .commands
            .send(Command::Peers(tx))
            .await
            .map_err(|_| NodeError::Stopped)?;
        let peers = rx.await.map_err(|_| NodeError::Stopped)?;
        let (tx, rx) = oneshot::channel();
        self.shared
            .commands
            .send(Command::ListenAddrs(tx))
            .await
            .map_err(|_| NodeError::Stopped)?;
        let listen = rx.await.map_err(|_| NodeError::Stopped)?;
        let store = &self.shared.store;
        let roster = &self.shared.roster;
        let own_head = match &self.shared.state_key {
            Some(k) => store.chain_head(&member_key(k))?,
            None => None,
        };
        let signing_blocked = self.shared.state_key.as_ref().and_then(|k| {
            let own = *self.shared.own_chain.borrow();
            let pending = store.pending_of(&member_key(k));
            if let Some(refused) = self.second_signer_seen() {
                Some(refused)
            } else if pending > 0 || own.behind(own_head.map_or(0, |h| h.seq)) {
                Some(SubmitError::CatchingUp { pending })
            } else if own_head.is_none() && !self.shared.new_chain && !own.settled {
                // What a submission would be refused with (see `own_chain_ready`).
                Some(SubmitError::ChainUnknown)
            } else {
                None
            }
            .map(|e| e.to_string())
        });
        let equivocators = store
            .equivocators()?
            .iter()
            .filter_map(|k| roster.member_by_key(k).map(|m| m.code))
            .collect();
        let unreachable = roster
            .members()
            .iter()
            .map(|m| m.code)
            .filter(|c| Some(*c) != self.state() && !peers.iter().any(|p| p.role == c.as_str()))
            .collect();
        Ok(Status {
            network_id: roster.network_id(),
            network_name: roster.network_name().to_string(),
            peer_id: self.shared.peer_id.to_string(),
            state: self.state(),
            node_of: roster
                .member_of_node(&self.shared.peer_id.to_string())
                .map(|m| m.code),
            listen: listen.iter().map(ToString::to_string).collect(),
            peers,
            bootstrap: self.shared.bootstrap.borrow().clone(),
            unreachable,
            counts: store.counts(),
            last_cursor: store.last_cursor(),
            own_head,
            equivocators,
            sync: *self.shared.sync_stats.borrow(),
            store_failure: store.failure(),
            records_missing: store.records_missing(),
            uptime_s: self.shared.started.elapsed().as_secs(),
            signing_blocked,
        })
    }

    /// Catch-up counters.
    pub fn sync_stats(&self) -> SyncStats {
        *self.shared.sync_stats.borrow()
    }

    /// A receiver of the catch-up counters, updated as they change.
    pub fn sync_updates(&self) -> watch::Receiver<SyncStats> {
        self.shared.sync_stats.clone()
    }

    /// Starts a catch-up round with every connected peer now.
    pub async fn sync_now(&self) -> Result<(), NodeError> {
        self.shared
            .commands
            .send(Command::SyncNow)
            .await
            .map_err(|_| NodeError::Stopped)
    }

    /// Refuses (and disconnects) a peer, or admits it again. Operators use it to suspend a
    /// misbehaving peer; tests use it to partition the network.
    pub async fn set_peer_blocked(&self, peer: PeerId, blocked: bool) -> Result<(), NodeError> {
        self.shared
            .commands
            .send(Command::SetBlocked(peer, blocked))
            .await
            .map_err(|_| NodeError::Stopped)
    }

    /// Number of records stored.
    pub fn record_count(&self) -> usize {
        self.shared.store.counts().records
    }

    /// A digest of the full set of stored record ids (order-independent): equal digests mean
    /// equal record sets.
    pub fn record_set_digest(&self) -> Result<RecordId, StoreError> {
        self.shared.store.record_set_digest()
    }
}

/// Where the local API listens and who may use it.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Listen address (loopback by default).
    pub listen: SocketAddr,
    /// Bearer token: required for writes, and for reads unless `public_reads`.
    pub token: String,
    /// A bearer token that opens `/metrics` only (which the API token opens too).
    pub metrics_token: Option<String>,
    /// Serve reads (feed, records, threads, status, STIX) without the token. TAXII always
    /// needs it.
    pub public_reads: bool,
    /// Allow a non-loopback listen address. The API has no TLS of its own: put a TLS proxy in
    /// front of it.
    pub allow_remote: bool,
}

/// Default data directory name inside a node directory.
pub fn default_data_dir(base: &std::path::Path) -> PathBuf {
    base.join("data")
}

impl From<ingest::IngestError> for SubmitError {
    fn from(e: ingest::IngestError) -> Self {
        match e {
            ingest::IngestError::Invalid(r) => SubmitError::Invalid(r),
            ingest::IngestError::Store(s) => SubmitError::Store(s),
        }
    }
}

// Manual conversion (not `#[from]`): the message already includes the cause.
impl From<RecordError> for SubmitError {
    fn from(e: RecordError) -> Self {
        SubmitError::Invalid(e)
    }
}
