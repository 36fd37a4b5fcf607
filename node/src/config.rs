//! Node configuration: the in-memory [`NodeConfig`] and the operator's TOML file that produces
//! it, plus the key and token files `attrib init` writes (owner-only permissions).
//!
//! A config file (paths are relative to the file's directory):
//! ```toml
//! state = "FRA"                    # omit on an observer node
//! roster = "roster.toml"
//! data_dir = "data"
//! state_key = "state.key"
//! node_key = "node.key"
//! api_token = "api.token"
//! listen = ["/ip4/0.0.0.0/tcp/4710"]
//! bootstrap = ["/ip4/192.0.2.10/tcp/4710"]
//! api_listen = "127.0.0.1:4711"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use attrib_protocol::{MemberSigningKey, Roster, StateCode, Tlp};
use libp2p::Multiaddr;
pub use libp2p::identity::Keypair;
use serde::{Deserialize, Serialize};

use crate::{ApiConfig, NodeError};

/// Everything a node needs to start.
pub struct NodeConfig {
    /// The network's roster.
    pub roster: Roster,
    /// The state's record-signing key; `None` on an observer node.
    pub state_key: Option<MemberSigningKey>,
    /// The node's libp2p identity.
    pub node_key: Keypair,
    /// Where the store lives; `None` for a temporary store (demo, tests).
    pub data_dir: Option<PathBuf>,
    /// libp2p listen addresses.
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start (and re-dial while disconnected).
    pub bootstrap: Vec<Multiaddr>,
    /// The local API, if it should run.
    pub api: Option<ApiConfig>,
    /// Gossipsub heartbeat.
    pub heartbeat: Duration,
    /// How often to run a catch-up round with a few peers.
    pub sync_interval: Duration,
    /// How often each connection is pinged.
    pub ping_interval: Duration,
    /// How long a ping may go unanswered before it fails; the second failure in a row closes
    /// the connection as dead (see the README: about a minute with the defaults).
    pub ping_timeout: Duration,
    /// This state's chain starts on this node now (the first node of a new network, a single
    /// node): when no peer has answered within a few seconds of the start, the node signs the
    /// first record anyway. `attrib init` marks a new key's data dir to the same effect. Left
    /// set on a node whose data dir is later lost, it would let that node fork its state's
    /// chain when no peer answers: remove it once the first record is signed.
    pub new_chain: bool,
    /// The most sensitive TLP level served to outside readers (feed API, STIX, TAXII,
    /// webhooks). RED is never served except to a local reader holding the API token who asks
    /// for it; a configured RED is treated as AMBER+STRICT.
    pub tlp_ceiling: Tlp,
    /// Outbound webhooks.
    pub webhooks: Vec<crate::webhook::WebhookConfig>,
    /// Resource bounds.
    pub limits: crate::limits::Limits,
    /// Verify the whole store (signatures, chain links, every record held still on disk) before serving; refuse to
    /// start if it is damaged.
    pub verify_on_start: bool,
}

/// The config file, as written by `attrib init`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The state this node authors for (omit for an observer).
    #[serde(default)]
    pub state: Option<StateCode>,
    /// Path of the roster file.
    pub roster: PathBuf,
    /// Data directory.
    pub data_dir: PathBuf,
    /// State key file (omit for an observer).
    #[serde(default)]
    pub state_key: Option<PathBuf>,
    /// Node key file.
    pub node_key: PathBuf,
    /// API token file.
    pub api_token: PathBuf,
    /// A token file for `/metrics` only, to give a monitoring system instead of the API token
    /// (which can sign records as the state). `attrib init` writes `metrics.token`.
    #[serde(default)]
    pub metrics_token: Option<PathBuf>,
    /// libp2p listen addresses.
    pub listen: Vec<String>,
    /// Peers to dial.
    #[serde(default)]
    pub bootstrap: Vec<String>,
    /// Local API address.
    pub api_listen: SocketAddr,
    /// Gossipsub heartbeat in ms (default 1000).
    #[serde(default)]
    pub heartbeat_ms: Option<u64>,
    /// Catch-up round interval in ms (default 10000).
    #[serde(default)]
    pub sync_interval_ms: Option<u64>,
    /// Sign the state's first record without first asking a peer whether its chain exists
    /// (default false; see [`NodeConfig::new_chain`]).
    #[serde(default)]
    pub new_chain: bool,
    /// Ping interval in ms (default 15000).
    #[serde(default)]
    pub ping_interval_ms: Option<u64>,
    /// Ping timeout in ms (default 20000): a ping unanswered this long fails, and two failures
    /// in a row close the connection.
    #[serde(default)]
    pub ping_timeout_ms: Option<u64>,
    /// TLP ceiling for outbound interfaces (default AMBER).
    #[serde(default)]
    pub tlp_ceiling: Option<Tlp>,
    /// Outbound webhooks: `[[webhook]]` tables.
    #[serde(default, rename = "webhook")]
    pub webhooks: Vec<crate::webhook::WebhookConfig>,
    /// Resource bounds: the `[limits]` table (see [`crate::limits::Limits`]).
    #[serde(default)]
    pub limits: crate::limits::Limits,
    /// Serve API reads without the token (default false).
    #[serde(default)]
    pub api_public_reads: bool,
    /// Allow a non-loopback `api_listen` (default false; put a TLS proxy in front).
    #[serde(default)]
    pub api_allow_remote: bool,
    /// Verify the whole store before serving (default false; `attrib node run --verify-store`).
    #[serde(default)]
    pub verify_on_start: bool,
}

impl FileConfig {
    /// Reads a config file.
    pub fn read(path: &Path) -> Result<FileConfig, NodeError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            NodeError::Config(format!(
                "cannot read config {}: {e}; create one with `attrib init`",
                path.display()
            ))
        })?;
        toml::from_str(&text)
            .map_err(|e| NodeError::Config(format!("config {} is invalid: {e}", path.display())))
    }

    /// Resolves paths against the config file's directory and loads roster, keys and token.
    pub fn load(path: &Path) -> Result<(FileConfig, NodeConfig), NodeError> {
        let file = Self::read(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let at = |p: &Path| base.join(p);
        let roster_path = at(&file.roster);
        let roster_text = std::fs::read_to_string(&roster_path).map_err(|e| {
            NodeError::Config(format!(
                "cannot read roster {}: {e}; build it with `attrib roster build`",
                roster_path.display()
            ))
        })?;
        let roster = Roster::from_toml(&roster_text)
            .map_err(|e| NodeError::Config(format!("roster {}: {e}", roster_path.display())))?;
        let state_key = match &file.state_key {
            Some(p) => Some(read_state_key(&at(p))?),
            None => None,
        };
        if let (Some(state), Some(key)) = (file.state, &state_key) {
            let member = roster.member_by_code(state).ok_or_else(|| {
                NodeError::Config(format!("state {state} is not a member in the roster"))
            })?;
            if member.key != attrib_protocol::member_key(key) {
                return Err(NodeError::Config(format!(
                    "the state key does not match {state}'s key in the roster"
                )));
            }
        }
        let node_key = read_node_key(&at(&file.node_key))?;
        let token = read_token(&at(&file.api_token), "API")?;
        let metrics_token = match &file.metrics_token {
            Some(p) => Some(read_token(&at(p), "metrics")?),
            None => None,
        };
        let mut webhooks = file.webhooks.clone();
        for w in &mut webhooks {
            if let Some(p) = &w.secret_file {
                let p = at(p);
                let what = format!("webhook {}'s secret", w.name);
                w.secret = Some(crate::webhook::WebhookSecret(read_token(&p, &what)?));
                w.secret_file = Some(p);
            }
        }
        let listen = parse_addrs("listen", &file.listen)?;
        let bootstrap = parse_addrs("bootstrap", &file.bootstrap)?;
        let config = NodeConfig {
            roster,
            state_key,
            node_key,
            data_dir: Some(at(&file.data_dir)),
            listen,
            bootstrap,
            api: Some(ApiConfig {
                listen: file.api_listen,
                token,
                metrics_token,
                public_reads: file.api_public_reads,
                allow_remote: file.api_allow_remote,
            }),
            heartbeat: Duration::from_millis(file.heartbeat_ms.unwrap_or(1000)),
            sync_interval: interval_ms("sync_interval_ms", file.sync_interval_ms, 10_000)?,
            ping_interval: interval_ms("ping_interval_ms", file.ping_interval_ms, 15_000)?,
            ping_timeout: interval_ms("ping_timeout_ms", file.ping_timeout_ms, 20_000)?,
            new_chain: file.new_chain,
            tlp_ceiling: file.tlp_ceiling.unwrap_or(Tlp::Amber),
            webhooks,
            limits: file.limits.clone(),
            verify_on_start: file.verify_on_start,
        };
        Ok((file, config))
    }
}

impl NodeConfig {
    /// Refuses settings the node cannot run with, naming them: a zero heartbeat, limits that
    /// switch a function off, webhooks it cannot deliver to.
    pub fn check(&self) -> Result<(), NodeError> {
        if self.heartbeat.is_zero() {
            return Err(NodeError::Config(
                "heartbeat_ms = 0: the gossip heartbeat must be at least 1 ms (default 1000)"
                    .into(),
            ));
        }
        self.limits.check().map_err(NodeError::Config)?;
        let mut names = std::collections::HashSet::new();
        for w in &self.webhooks {
            w.check().map_err(NodeError::Config)?;
            if !names.insert(w.name.as_str()) {
                return Err(NodeError::Config(format!(
                    "two webhooks are named {:?}; names must differ (each keeps its own delivery cursor)",
                    w.name
                )));
            }
        }
        Ok(())
    }
}

/// A config interval in ms: `default` when not given; under 100 ms is refused, naming the key
/// (a zero interval would spin).
fn interval_ms(key: &str, given: Option<u64>, default: u64) -> Result<Duration, NodeError> {
    const MIN_MS: u64 = 100;
    match given {
        Some(ms) if ms < MIN_MS => Err(NodeError::Config(format!(
            "{key} = {ms}: give at least {MIN_MS} ms, or leave it out for the default ({default})"
        ))),
        given => Ok(Duration::from_millis(given.unwrap_or(default))),
    }
}

/// Parses `what` addresses (`listen`, `bootstrap`) as multiaddrs, naming a bad one.
pub fn parse_addrs(what: &str, addrs: &[String]) -> Result<Vec<Multiaddr>, NodeError> {
    addrs
        .iter()
        .map(|a| {
            a.parse().map_err(|e| {
                NodeError::Config(format!(
                    "{what} address {a:?} is not a multiaddr ({e}); write e.g. /ip4/127.0.0.1/tcp/4710"
                ))
            })
        })
        .collect()
}

/// Writes a file readable only by its owner (mode 0600), refusing to overwrite.
pub fn write_secret_file(path: &Path, contents: &[u8]) -> Result<(), NodeError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| NodeError::Config(format!("cannot create {}: {e}", path.display())))?;
    f.write_all(contents)
        .map_err(|e| NodeError::Config(format!("cannot write {}: {e}", path.display())))
}

/// A bearer token from its file: not empty, and long enough not to be guessed.
fn read_token(path: &Path, what: &str) -> Result<String, NodeError> {
    let token = read_secret_file(path)?.trim().to_string();
    if token.is_empty() {
        return Err(NodeError::Config(format!(
            "the {what} token file {} is empty; restore it (or write a new random token into it)",
            path.display()
        )));
    }
    const MIN_TOKEN: usize = 16;
    if token.chars().count() < MIN_TOKEN {
        return Err(NodeError::Config(format!(
            "the {what} token in {} is {} characters; use at least {MIN_TOKEN} random ones, e.g. the 64 hex digits of `openssl rand -hex 32`",
            path.display(),
            token.chars().count()
        )));
    }
    Ok(token)
}

/// Reads a secret file, refusing one that others can read.
pub fn read_secret_file(path: &Path) -> Result<String, NodeError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)
            .map_err(|e| NodeError::Config(format!("cannot read {}: {e}", path.display())))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(NodeError::Config(format!(
                "{} is readable by other users; run `chmod 600 {}`",
                path.display(),
                path.display()
            )));
        }
    }
    std::fs::read_to_string(path)
        .map_err(|e| NodeError::Config(format!("cannot read {}: {e}", path.display())))
}

/// Reads a state key file (64 hex digits).
pub fn read_state_key(path: &Path) -> Result<MemberSigningKey, NodeError> {
    let text = read_secret_file(path)?;
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut bytes).map_err(|_| {
        NodeError::Config(format!(
            "{} is not a state key (64 hex digits)",
            path.display()
        ))
    })?;
    Ok(MemberSigningKey::from_bytes(&bytes))
}

/// Reads a node key file (hex of the libp2p protobuf keypair encoding).
pub fn read_node_key(path: &Path) -> Result<Keypair, NodeError> {
    let text = read_secret_file(path)?;
    let bytes = hex::decode(text.trim())
        .map_err(|_| NodeError::Config(format!("{} is not a node key (hex)", path.display())))?;
    Keypair::from_protobuf_encoding(&bytes)
        .map_err(|e| NodeError::Config(format!("{} is not a node key: {e}", path.display())))
}

/// The text of a node key file.
pub fn node_key_text(key: &Keypair) -> Result<String, NodeError> {
    key.to_protobuf_encoding()
        .map(hex::encode)
        .map_err(|e| NodeError::Config(format!("cannot encode node key: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_in_deploy_parses() {
        let text = include_str!("../../deploy/node.example.toml");
        let file: FileConfig = toml::from_str(text).expect("deploy/node.example.toml is valid");
        assert_eq!(file.tlp_ceiling, Some(Tlp::Amber));
        assert_eq!(file.limits, crate::limits::Limits::default());
    }

    #[test]
    fn limits_and_webhooks_a_node_cannot_run_with_are_named() {
        use crate::limits::Limits;
        assert_eq!(Limits::default().check(), Ok(()));
        let zero = Limits {
            max_feed_streams: 0,
            ..Limits::default()
        };
        assert!(zero.check().unwrap_err().contains("max_feed_streams = 0"));
        let small = Limits {
            api_max_body_bytes: 1000,
            ..Limits::default()
        };
        assert!(small.check().unwrap_err().contains("api_max_body_bytes"));
        let hook = |name: &str, url: &str, kind: Option<&str>| crate::webhook::WebhookConfig {
            name: name.into(),
            url: url.into(),
            kind: kind.map(str::to_string),
            about: None,
            max_tlp: None,
            from_start: false,
            secret_file: None,
            secret: None,
        };
        assert_eq!(
            hook("siem", "http://127.0.0.1:9000/a", Some("claim")).check(),
            Ok(())
        );
        for (bad, says) in [
            (hook("", "http://127.0.0.1/", None), "use letters"),
            (hook("a/b", "http://127.0.0.1/", None), "use letters"),
            (hook("siem", "127.0.0.1:9000", None), "must be http"),
            (
                hook("siem", "https://siem.example/", None),
                "plain http only",
            ),
            (
                hook("siem", "http://127.0.0.1/", Some("claims")),
                "not a record kind",
            ),
        ] {
            let err = bad.check().unwrap_err();
            assert!(err.contains(says), "{err}");
        }
    }

    #[test]
    fn an_interval_too_short_to_run_with_is_named() {
        assert_eq!(
            interval_ms("sync_interval_ms", None, 10_000).unwrap(),
            Duration::from_secs(10)
        );
        assert_eq!(
            interval_ms("ping_interval_ms", Some(250), 15_000).unwrap(),
            Duration::from_millis(250)
        );
        let err = interval_ms("ping_timeout_ms", Some(0), 20_000)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ping_timeout_ms = 0") && err.contains("at least 100 ms"),
            "{err}"
        );
    }

    #[test]
    fn a_typo_in_the_config_is_named() {
        let text = include_str!("../../deploy/node.example.toml").replace("bootstrap", "bootstrp");
        let err = toml::from_str::<FileConfig>(&text).unwrap_err().to_string();
        assert!(err.contains("bootstrp"), "{err}");
    }
}
