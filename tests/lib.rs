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
pub const DEADLINE: Duration = Duration::from_secs(20);

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
        let dirs = (0..n)
            .map(|i| dir.path().join(format!("node{i}")))
            .collect();
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

    /// Restarts node `i` on its data dir, dialing the other running nodes.
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        let bootstrap = (0..self.nodes.len())
            .filter(|j| *j != i && self.nodes[*j].is_some())
            .map(|j| self.addrs[j].clone())
            .collect();
        let cfg = local_config(
            &self.members[i],
            &self.roster,
            Some(self.dir.path().join(format!("node{i}"))),
            bootstrap,
            Some("test-token".into()),
        );
        let node = Node::start(cfg).await?;
        self.addrs[i] = node.handle().listen_addrs(DEADLINE).await[0].clone();
        self.nodes[i] = Some(node);
        Ok(())
    }
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
        let topic = gossip_topic(network);
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(member.node_key.clone())
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )?
            .with_behaviour(|_| {
                let cfg = gossip_config(Duration::from_millis(100)).map_err(anyhow::Error::msg)?;
                Ok(gossipsub::Behaviour::<
                    gossipsub::IdentityTransform,
                    gossipsub::AllowAllSubscriptionFilter,
                >::new(
                    gossipsub::MessageAuthenticity::Anonymous, cfg
                )?)
            })
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
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
