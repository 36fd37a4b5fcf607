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
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier};
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

    /// Checks the signature against the author's key in the roster, with the result of
    /// `verify_strict` at less cost. `verify` recomputes `R` and compares its canonical
    /// encoding with the signature's bytes, so a signature it accepts has an `R` that is a
    /// point, canonically encoded; [`strict_r`] adds, on the bytes, that `R` is not of small
    /// order, where `verify_strict` decompresses `R` (a square root, about a tenth of the
    /// check) to ask that. `verify_strict` also refuses weak (small-order) keys: so does the
    /// roster, and so does this check (three doublings on the key's point).
    pub fn verify_signature(&self, roster: &Roster) -> Result<(), RecordError> {
        let key = roster
            .verifying_key(&self.content.author)
            .ok_or(RecordError::UnknownAuthor {
                author: self.content.author,
            })?;
        let message = signing_message(roster.network_id(), self.content_bytes());
        let signature = self.signature();
        if !key.is_weak() && strict_r(&signature) && key.verify(&message, &signature).is_ok() {
            Ok(())
        } else {
            Err(RecordError::BadSignature { id: self.id })
        }
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

/// The checks on `R` that `verify_strict` makes and `verify` and batch verification do not:
/// the encoding is canonical and the point is not of small order. Both are decided on the
/// bytes: decompressing (and recompressing) `R` cost more than half of a batch check.
pub(crate) fn strict_r(signature: &ed25519_dalek::Signature) -> bool {
    let r = signature.r_bytes();
    !y_out_of_range(r) && !small_order_encodings().contains(r)
}

/// Whether an encoded point's y coordinate (its low 255 bits) is at least p = 2^255 - 19, a
/// non-canonical encoding of y - p.
fn y_out_of_range(b: &[u8; 32]) -> bool {
    b[0] >= 0xed && b[1..31].iter().all(|&x| x == 0xff) && b[31] & 0x7f == 0x7f
}

/// The encodings (with y < p) of the eight points of small order: each canonical encoding and
/// the same with the sign bit flipped. For x ≠ 0 the flipped one encodes the negated point
/// (also of small order); for the two points with x = 0 it is the only other, non-canonical,
/// encoding.
fn small_order_encodings() -> &'static [[u8; 32]; 16] {
    static ENCODINGS: std::sync::OnceLock<[[u8; 32]; 16]> = std::sync::OnceLock::new();
    ENCODINGS.get_or_init(|| {
        let mut out = [[0u8; 32]; 16];
        for (i, p) in curve25519_dalek::constants::EIGHT_TORSION
            .iter()
            .enumerate()
        {
            let canonical = p.compress().to_bytes();
            let mut flipped = canonical;
            flipped[31] ^= 0x80;
            out[2 * i] = canonical;
            out[2 * i + 1] = flipped;
        }
        out
    })
}

#[cfg(test)]
mod strict_r_tests {
    use super::*;

    /// What `verify_strict` demands of `R`, the slow way: it decompresses, recompresses to the
    /// same bytes, and is not of small order.
    fn reference(r: &[u8; 32]) -> Option<bool> {
        let compressed = curve25519_dalek::edwards::CompressedEdwardsY(*r);
        let point = compressed.decompress()?;
        Some(point.compress() == compressed && !point.is_small_order())
    }

    fn strict(r: [u8; 32]) -> bool {
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&r);
        strict_r(&ed25519_dalek::Signature::from_bytes(&sig))
    }

    #[test]
    fn byte_checks_agree_with_decompressing() {
        let mut cases: Vec<[u8; 32]> = small_order_encodings().to_vec();
        // y = p + k for small k (non-canonical), with and without the sign bit.
        for k in 0u8..19 {
            let mut b = [0xff; 32];
            b[0] = 0xed + k;
            b[31] = 0x7f;
            cases.push(b);
            b[31] = 0xff;
            cases.push(b);
        }
        // Points on the curve: multiples of the base point, and their negations.
        let mut p = curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
        for _ in 0..64 {
            cases.push(p.compress().to_bytes());
            cases.push((-p).compress().to_bytes());
            p += curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
        }
        // Pseudo-random bytes (most are not points; those that are, are checked too).
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            let mut b = [0u8; 32];
            for chunk in b.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chunk.copy_from_slice(&x.to_le_bytes());
            }
            cases.push(b);
        }
        let mut points = 0;
        for r in cases {
            if let Some(expected) = reference(&r) {
                points += 1;
                assert_eq!(strict(r), expected, "R = {}", hex::encode(r));
            }
        }
        assert!(points > 100, "too few cases were points: {points}");
    }
}
