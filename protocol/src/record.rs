//! The signed record envelope, its wire encoding and its id.
//!
//! # Wire format (version 1)
//! ```text
//! record    = version:u8(=1) || content || signature:[u8; 64]
//! content   = bincode(RecordContent)          (see `encoding` for the configuration)
//! signature = ed25519(member key, "attrib/record/v1" || network_id || content)
//! id        = SHA-256(record)
//! ```
//! The signature covers everything but itself, under a domain-separation prefix and the network
//! id, so a record signed for one network never verifies on another. The id is the hash of the
//! whole signed encoding; with `verify_strict` signatures are not malleable, so a record has one
//! id. Golden vectors in `protocol/tests/vectors/` pin this format.

use std::fmt;
use std::sync::Arc;

use bincode::{Decode, Encode};
use ed25519_dalek::{Signature, Signer, SigningKey};
use serde::Serialize;

use crate::body::Body;
use crate::encoding;
use crate::id::{MemberKey, NetworkId, RecordId};
use crate::limits::MAX_RECORD_BYTES;
use crate::roster::Roster;
use crate::validate::RecordError;

/// The first byte of every version-1 record.
pub const RECORD_VERSION: u8 = 1;
/// Domain separation prefix of record signatures.
pub const SIGNING_DOMAIN: &[u8] = b"attrib/record/v1";
const SIGNATURE_LEN: usize = 64;

/// Everything a record says, i.e. everything the signature covers (with the network id).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct RecordContent {
    /// The author's member key.
    pub author: MemberKey,
    /// Position in the author's chain: 1, 2, 3, ...
    pub seq: u64,
    /// Id of the author's record at `seq - 1`; `None` exactly when `seq == 1`.
    pub prev: Option<RecordId>,
    /// When the author made it, ms since the Unix epoch (author's clock).
    pub created_at: u64,
    /// What it says.
    pub body: Body,
}

/// A signed record with its id and exact bytes.
///
/// A `Record` is immutable. One made by [`Record::sign`] or [`Record::decode`] is in canonical
/// form and its id matches its bytes; only [`crate::check_record`] (or
/// [`Record::verify_signature`]) says the signature is good. Cloning is cheap (shared bytes).
#[derive(Clone)]
pub struct Record {
    content: Arc<RecordContent>,
    id: RecordId,
    bytes: Arc<[u8]>,
}

impl Record {
    /// Signs `content` with the member's key for `network`.
    pub fn sign(content: RecordContent, key: &SigningKey, network: NetworkId) -> Record {
        let encoded = encoding::to_vec(&content);
        let signature = key.sign(&signing_message(network, &encoded));
        let mut bytes = Vec::with_capacity(1 + encoded.len() + SIGNATURE_LEN);
        bytes.push(RECORD_VERSION);
        bytes.extend_from_slice(&encoded);
        bytes.extend_from_slice(&signature.to_bytes());
        Record {
            id: RecordId::of_encoding(&bytes),
            content: Arc::new(content),
            bytes: bytes.into(),
        }
    }

    /// Decodes a record: size limit, version, bounded canonical decoding. Does not check the
    /// signature, the roster or the limits on fields (see [`crate::check_record`]).
    pub fn decode(bytes: &[u8]) -> Result<Record, RecordError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(RecordError::TooLarge {
                size: bytes.len(),
                max: MAX_RECORD_BYTES,
            });
        }
        if bytes.len() < 1 + SIGNATURE_LEN {
            return Err(RecordError::Truncated { size: bytes.len() });
        }
        if bytes[0] != RECORD_VERSION {
            return Err(RecordError::UnsupportedVersion { version: bytes[0] });
        }
        let content: RecordContent = encoding::from_slice(&bytes[1..bytes.len() - SIGNATURE_LEN])?;
        Ok(Record {
            content: Arc::new(content),
            id: RecordId::of_encoding(bytes),
            bytes: bytes.into(),
        })
    }

    /// Checks the signature against the author's key in the roster (`verify_strict`).
    pub fn verify_signature(&self, roster: &Roster) -> Result<(), RecordError> {
        let key = roster
            .verifying_key(&self.content.author)
            .ok_or(RecordError::UnknownAuthor {
                author: self.content.author,
            })?;
        let message = signing_message(roster.network_id(), self.content_bytes());
        key.verify_strict(&message, &self.signature())
            .map_err(|_| RecordError::BadSignature { id: self.id })
    }

    /// The message the signature covers, for batch verification by callers.
    pub fn signed_message(&self, network: NetworkId) -> Vec<u8> {
        signing_message(network, self.content_bytes())
    }

    /// The record id.
    pub fn id(&self) -> RecordId {
        self.id
    }
    /// What the record says.
    pub fn content(&self) -> &RecordContent {
        &self.content
    }
    /// The author's member key.
    pub fn author(&self) -> MemberKey {
        self.content.author
    }
    /// Position in the author's chain.
    pub fn seq(&self) -> u64 {
        self.content.seq
    }
    /// The author's previous record.
    pub fn prev(&self) -> Option<RecordId> {
        self.content.prev
    }
    /// Author's timestamp, ms since the Unix epoch.
    pub fn created_at(&self) -> u64 {
        self.content.created_at
    }
    /// The body.
    pub fn body(&self) -> &Body {
        &self.content.body
    }
    /// The signature.
    pub fn signature(&self) -> Signature {
        let mut sig = [0u8; SIGNATURE_LEN];
        sig.copy_from_slice(&self.bytes[self.bytes.len() - SIGNATURE_LEN..]);
        Signature::from_bytes(&sig)
    }
    /// The exact signed encoding (what is stored, sent and hashed).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
    /// The shared encoding.
    pub fn bytes(&self) -> Arc<[u8]> {
        self.bytes.clone()
    }

    fn content_bytes(&self) -> &[u8] {
        &self.bytes[1..self.bytes.len() - SIGNATURE_LEN]
    }
}

fn signing_message(network: NetworkId, content: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNING_DOMAIN.len() + 32 + content.len());
    m.extend_from_slice(SIGNING_DOMAIN);
    m.extend_from_slice(network.as_bytes());
    m.extend_from_slice(content);
    m
}

impl PartialEq for Record {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}
impl Eq for Record {}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("id", &self.id)
            .field("author", &self.content.author)
            .field("seq", &self.content.seq)
            .field("kind", &self.content.body.kind_name())
            .finish()
    }
}

/// JSON form: `id`, the content fields, `signature` (hex) and `encoded` (the exact signed bytes,
/// hex), so a JSON export can still be verified offline.
impl Serialize for Record {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            id: RecordId,
            author: MemberKey,
            seq: u64,
            prev: Option<RecordId>,
            created_at: u64,
            body: &'a Body,
            signature: String,
            encoded: String,
        }
        View {
            id: self.id,
            author: self.content.author,
            seq: self.content.seq,
            prev: self.content.prev,
            created_at: self.content.created_at,
            body: &self.content.body,
            signature: hex::encode(self.signature().to_bytes()),
            encoded: hex::encode(&self.bytes),
        }
        .serialize(s)
    }
}

/// Signing keys, re-exported so users of the crate need not depend on ed25519-dalek directly.
pub use ed25519_dalek::SigningKey as MemberSigningKey;

/// The member key (public half) of a signing key.
pub fn member_key(key: &SigningKey) -> MemberKey {
    MemberKey(key.verifying_key().to_bytes())
}
