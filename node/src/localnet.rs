//! An in-process network of real nodes on loopback, with deterministic keys: what `attrib demo`
//! runs and what the multi-node tests start. Nothing here is mocked: each node has its own
//! libp2p swarm on 127.0.0.1 and its own sled store.

use std::path::PathBuf;
use std::time::Duration;

use attrib_protocol::{Member, MemberSigningKey, Roster, RosterFile, StateCode, member_key};
use libp2p::Multiaddr;
use libp2p::identity::Keypair;

use crate::{ApiConfig, Node, NodeConfig, NodeError};

const CODES: [&str; 12] = [
    "FRA", "DEU", "RUS", "USA", "GBR", "CHN", "IND", "BRA", "JPN", "ZAF", "EST", "NLD",
];

/// One participant of a local network: its state and both keys, derived from a seed.
#[derive(Clone)]
pub struct LocalMember {
    /// The state code.
    pub code: StateCode,
    /// The record-signing key.
    pub state_key: MemberSigningKey,
    /// The node's libp2p identity.
    pub node_key: Keypair,
}

impl LocalMember {
    /// Member `index` of a network made from `seed`.
    pub fn new(seed: u64, index: usize) -> LocalMember {
        // The first twelve are real codes; then QAA, QAB, ... (ISO 3166 user-assigned range).
        let code = match CODES.get(index).and_then(|c| c.parse().ok()) {
            Some(code) => code,
            None => {
                let i = (index - CODES.len()) % 676;
                StateCode::from_bytes([b'Q', b'A' + (i / 26) as u8, b'A' + (i % 26) as u8])
                    .unwrap_or_else(|| unreachable!("capital letters by construction"))
            }
        };
        let mut state = [0u8; 32];
        state[..8].copy_from_slice(&seed.to_le_bytes());
        state[8..16].copy_from_slice(&(index as u64).to_le_bytes());
        state[16] = 1;
        let mut node = state;
        node[16] = 2;
        LocalMember {
            code,
            state_key: MemberSigningKey::from_bytes(&state),
            node_key: Keypair::ed25519_from_bytes(node)
                .unwrap_or_else(|_| Keypair::generate_ed25519()),
        }
    }

    /// The node's peer id, as roster text.
    pub fn peer_id(&self) -> String {
        self.node_key.public().to_peer_id().to_string()
    }
}

/// The roster of a local network, with optional extra admitted node ids (e.g. a test harness).
pub fn local_roster(members: &[LocalMember], extra: &[(LocalMember, bool)]) -> Roster {
    let mut file = RosterFile {
        network: "attrib-local".into(),
        ..Default::default()
    };
    for m in members {
        file.members.push(Member {
            code: m.code,
            name: format!("State {}", m.code),
            key: member_key(&m.state_key),
            nodes: vec![m.peer_id()],
        });
    }
    for (m, is_member) in extra {
        if *is_member {
            file.members.push(Member {
                code: m.code,
                name: format!("State {}", m.code),
                key: member_key(&m.state_key),
                nodes: vec![m.peer_id()],
            });
        } else {
            file.observers.push(attrib_protocol::Observer {
                name: format!("Observer {}", m.code),
                nodes: vec![m.peer_id()],
            });
        }
    }
    Roster::new(file).unwrap_or_else(|e| panic!("local roster is valid by construction: {e}"))
}

/// The config of a local node: loopback port 0, fast heartbeat, optional API on port 0.
pub fn local_config(
    member: &LocalMember,
    roster: &Roster,
    data_dir: Option<PathBuf>,
    bootstrap: Vec<Multiaddr>,
    api_token: Option<String>,
) -> NodeConfig {
    NodeConfig {
        roster: roster.clone(),
        state_key: Some(member.state_key.clone()),
        node_key: member.node_key.clone(),
        data_dir,
        listen: vec![
            "/ip4/127.0.0.1/tcp/0"
                .parse()
                .unwrap_or_else(|_| unreachable!()),
        ],
        bootstrap,
        api: api_token.map(|token| ApiConfig {
            listen: ([127, 0, 0, 1], 0).into(),
            metrics_token: Some(format!("{token}-metrics")),
            token,
            public_reads: false,
            allow_remote: false,
        }),
        heartbeat: Duration::from_millis(100),
        sync_interval: Duration::from_millis(500),
        ping_interval: Duration::from_secs(15),
        ping_timeout: Duration::from_secs(20),
        new_chain: false,
        tlp_ceiling: attrib_protocol::Tlp::Amber,
        webhooks: Vec::new(),
        limits: crate::limits::Limits::default(),
        verify_on_start: false,
    }
}

/// Starts one node per member; each dials all the nodes started before it. Waits until every
/// node sees all others subscribed to the record topic (or `timeout` passes: then an error).
pub async fn start_local_network(
    members: &[LocalMember],
    roster: &Roster,
    data_dirs: Option<Vec<PathBuf>>,
    api_token: Option<String>,
    timeout: Duration,
) -> Result<Vec<Node>, NodeError> {
    let mut nodes: Vec<Node> = Vec::new();
    let mut addrs: Vec<Multiaddr> = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let dir = data_dirs.as_ref().and_then(|d| d.get(i).cloned());
        let mut config = local_config(m, roster, dir, addrs.clone(), api_token.clone());
        // A network started here is new: every state's chain starts on its node now.
        config.new_chain = true;
        let node = Node::start(config).await?;
        let listen = node.handle().listen_addrs(timeout).await;
        let addr = listen.first().cloned().ok_or_else(|| {
            NodeError::Network(format!("node {} did not start listening", m.code))
        })?;
        addrs.push(addr);
        nodes.push(node);
    }
    for (node, m) in nodes.iter().zip(members) {
        if !node
            .handle()
            .wait_for_gossip_peers(members.len() - 1, timeout)
            .await
        {
            return Err(NodeError::Network(format!(
                "node {} did not see all {} peers subscribed within {timeout:?}",
                m.code,
                members.len() - 1
            )));
        }
    }
    Ok(nodes)
}
