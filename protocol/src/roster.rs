//! The member roster: which states take part, their record-signing keys, and which libp2p
//! peers may connect (member nodes and read-only observers).
//!
//! A roster file is TOML, edited by people:
//!
//! ```toml
//! network = "attrib-pilot"
//!
//! [[member]]
//! code = "FRA"
//! name = "France"
//! key = "…64 hex digits…"
//! nodes = ["12D3KooW…"]
//!
//! [[observer]]
//! name = "Observer organisation"
//! nodes = ["12D3KooW…"]
//! ```
//!
//! The [`NetworkId`] is SHA-256 over `attrib/network/v1` and the canonical encoding of the
//! *genesis* roster (members sorted by code, observers by name, node lists sorted). Formatting,
//! comments and ordering in the file do not change it. Later roster changes agreed by the
//! members will be records signed under this network id (the `epoch` field counts them; it is 0
//! for a genesis roster), so the network id stays stable.

use std::collections::BTreeMap;

use bincode::{Decode, Encode};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::encoding;
use crate::id::{MemberKey, NetworkId, StateCode};
use crate::limits::MAX_LABEL;

/// Domain separation prefix for the network id.
const NETWORK_DOMAIN: &[u8] = b"attrib/network/v1";

/// A participating state.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// ISO 3166-1 alpha-3 code.
    pub code: StateCode,
    /// Display name.
    pub name: String,
    /// Record-signing key (ed25519 public key, hex).
    pub key: MemberKey,
    /// libp2p peer ids (base58 text) of this state's nodes.
    #[serde(default)]
    pub nodes: Vec<String>,
}

/// A read-only participant (e.g. an international organisation): receives records, authors none.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Observer {
    /// Display name.
    pub name: String,
    /// libp2p peer ids (base58 text) of its nodes.
    pub nodes: Vec<String>,
}

/// The file form of a roster (what people edit), before checks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterFile {
    /// A human name for the network.
    pub network: String,
    /// Roster changes since genesis (0 for a genesis roster).
    #[serde(default)]
    pub epoch: u64,
    /// The member states.
    #[serde(default, rename = "member")]
    pub members: Vec<Member>,
    /// The observers.
    #[serde(default, rename = "observer")]
    pub observers: Vec<Observer>,
}

/// Why a roster was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RosterError {
    /// The TOML text did not parse into a roster.
    #[error("roster file is not valid: {0}")]
    Toml(String),
    /// A roster needs at least one member.
    #[error("roster has no members; add at least one [[member]] entry")]
    NoMembers,
    /// Two members share a state code.
    #[error("state {0} is listed twice in the roster")]
    DuplicateState(StateCode),
    /// Two members share a key.
    #[error("members {0} and {1} have the same key; each state needs its own key")]
    DuplicateKey(StateCode, StateCode),
    /// A member key is not a usable ed25519 public key.
    #[error(
        "the key of {0} is not a valid ed25519 public key (or is a weak key); regenerate it with `attrib init`"
    )]
    BadKey(StateCode),
    /// A peer id appears twice.
    #[error("node {0} is listed twice in the roster")]
    DuplicateNode(String),
    /// A name is empty or too long.
    #[error("{what} must be 1..={MAX_LABEL} bytes")]
    BadName {
        /// Which name.
        what: String,
    },
}

/// A checked roster: unique states, unique valid keys, unique node ids, canonical order.
///
/// Lookups by key and by peer id are O(log n). The roster is immutable once built.
#[derive(Debug, Clone)]
pub struct Roster {
    file: RosterFile,
    network_id: NetworkId,
    by_key: BTreeMap<MemberKey, (usize, VerifyingKey)>,
    by_node: BTreeMap<String, Option<usize>>,
}

#[derive(Encode)]
struct CanonicalRoster<'a> {
    network: &'a str,
    epoch: u64,
    members: &'a [Member],
    observers: &'a [Observer],
}

impl Roster {
    /// Parses and checks a roster file.
    pub fn from_toml(text: &str) -> Result<Self, RosterError> {
        let file: RosterFile =
            toml::from_str(text).map_err(|e| RosterError::Toml(e.to_string()))?;
        Self::new(file)
    }

    /// Checks a roster and puts it in canonical order.
    pub fn new(mut file: RosterFile) -> Result<Self, RosterError> {
        check_name("network name", &file.network)?;
        if file.members.is_empty() {
            return Err(RosterError::NoMembers);
        }
        file.members.sort_by_key(|m| m.code);
        file.observers.sort_by(|a, b| a.name.cmp(&b.name));
        for w in file.members.windows(2) {
            if w[0].code == w[1].code {
                return Err(RosterError::DuplicateState(w[0].code));
            }
        }
        for m in file.members.iter_mut() {
            m.nodes.sort();
        }
        for o in file.observers.iter_mut() {
            o.nodes.sort();
        }
        let mut by_key = BTreeMap::new();
        let mut by_node = BTreeMap::new();
        for (i, m) in file.members.iter().enumerate() {
            check_name(&format!("name of {}", m.code), &m.name)?;
            let vk = VerifyingKey::from_bytes(m.key.as_bytes())
                .ok()
                .filter(|k| !k.is_weak())
                .ok_or(RosterError::BadKey(m.code))?;
            if let Some((j, _)) = by_key.insert(m.key, (i, vk)) {
                return Err(RosterError::DuplicateKey(file.members[j].code, m.code));
            }
            for n in &m.nodes {
                if by_node.insert(n.clone(), Some(i)).is_some() {
                    return Err(RosterError::DuplicateNode(n.clone()));
                }
            }
        }
        for o in &file.observers {
            check_name("observer name", &o.name)?;
            for n in &o.nodes {
                if by_node.insert(n.clone(), None).is_some() {
                    return Err(RosterError::DuplicateNode(n.clone()));
                }
            }
        }
        let canonical = CanonicalRoster {
            network: &file.network,
            epoch: file.epoch,
            members: &file.members,
            observers: &file.observers,
        };
        let mut h = Sha256::new();
        h.update(NETWORK_DOMAIN);
        h.update(encoding::to_vec(&canonical));
        let network_id = NetworkId(h.finalize().into());
        Ok(Self {
            file,
            network_id,
            by_key,
            by_node,
        })
    }

    /// The roster as TOML, in canonical order.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(&self.file).unwrap_or_default()
    }

    /// The network id (see the module docs).
    pub fn network_id(&self) -> NetworkId {
        self.network_id
    }

    /// The network's human name.
    pub fn network_name(&self) -> &str {
        &self.file.network
    }

    /// The members, sorted by state code.
    pub fn members(&self) -> &[Member] {
        &self.file.members
    }

    /// The observers, sorted by name.
    pub fn observers(&self) -> &[Observer] {
        &self.file.observers
    }

    /// The member whose key this is.
    pub fn member_by_key(&self, key: &MemberKey) -> Option<&Member> {
        self.by_key.get(key).map(|(i, _)| &self.file.members[*i])
    }

    /// The member with this state code.
    pub fn member_by_code(&self, code: StateCode) -> Option<&Member> {
        self.file.members.iter().find(|m| m.code == code)
    }

    /// The parsed verifying key of a member key.
    pub fn verifying_key(&self, key: &MemberKey) -> Option<&VerifyingKey> {
        self.by_key.get(key).map(|(_, vk)| vk)
    }

    /// Whether this peer id belongs to a member node or an observer.
    pub fn admits_node(&self, peer_id: &str) -> bool {
        self.by_node.contains_key(peer_id)
    }

    /// The member that runs this node, if it is a member node (observers give `None`).
    pub fn member_of_node(&self, peer_id: &str) -> Option<&Member> {
        self.by_node
            .get(peer_id)
            .copied()
            .flatten()
            .map(|i| &self.file.members[i])
    }

    /// Every admitted peer id, member nodes and observers.
    pub fn node_ids(&self) -> impl Iterator<Item = &str> {
        self.by_node.keys().map(String::as_str)
    }
}

fn check_name(what: &str, name: &str) -> Result<(), RosterError> {
    if name.is_empty() || name.len() > MAX_LABEL {
        return Err(RosterError::BadName {
            what: what.to_string(),
        });
    }
    Ok(())
}
