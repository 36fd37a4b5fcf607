//! Peer-to-peer fetch and catch-up messages: how a node asks a peer for records it lacks (a
//! response's missing target, a gap in an author's chain) and learns what a peer holds (its
//! contiguous chain head per author, and the fork proofs it knows). Any peer can answer for any
//! author, because records are self-authenticating: the asker checks every record it gets.
//!
//! Catch-up: a node sends [`FetchRequest::Heads`]; the answer's `heads` say, per author, how far
//! the peer's contiguous chain goes. For each author where the peer is ahead, the node asks
//! [`FetchRequest::Chain`] from its own head + 1, batch after batch, until it has caught up.
//! A head at the same seq with a different id reveals a fork; fetching that one record proves it.

use bincode::{Decode, Encode};

use crate::encoding::{self, EncodingError};
use crate::id::{MemberKey, RecordId};

/// Most ids in one [`FetchRequest::Records`].
pub const MAX_FETCH_IDS: usize = 256;
/// Most records in one [`FetchResponse`].
pub const MAX_FETCH_RECORDS: usize = 512;
/// Most record bytes in one [`FetchResponse`], leaving room under the message limit.
pub const MAX_FETCH_BYTES: usize = encoding::MAX_MESSAGE_BYTES - 64 * 1024;
/// Most fork proofs in one [`FetchResponse`].
pub const MAX_FETCH_FORKS: usize = 64;

/// A request for records.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum FetchRequest {
    /// These records, by id (at most [`MAX_FETCH_IDS`]).
    Records(Vec<RecordId>),
    /// The author's records with `from <= seq <= to` (the answer may stop early).
    Chain {
        /// The author.
        author: MemberKey,
        /// First seq wanted.
        from: u64,
        /// Last seq wanted.
        to: u64,
    },
    /// The peer's contiguous chain heads and its fork proofs.
    Heads,
}

/// A peer's contiguous chain head for one author.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct HeadEntry {
    /// The author.
    pub author: MemberKey,
    /// Every record `1..=seq` is held.
    pub seq: u64,
    /// The id of the record at `seq`.
    pub id: RecordId,
}

/// The answer to a [`FetchRequest`]: records as their exact bytes (each checked by the
/// receiver), and for [`FetchRequest::Heads`] the chain heads and fork proofs.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Default)]
pub struct FetchResponse {
    /// Encoded records (at most [`MAX_FETCH_RECORDS`] and [`MAX_FETCH_BYTES`]). In an answer to
    /// `Heads`: the head record of the asking node's state's chain, if held, which proves the
    /// head named for it.
    pub records: Vec<Vec<u8>>,
    /// Contiguous chain heads, one per author (for `Heads`).
    pub heads: Vec<HeadEntry>,
    /// Encoded fork proofs (for `Heads`; at most [`MAX_FETCH_FORKS`]).
    pub forks: Vec<Vec<u8>>,
    /// The answering node holds its state's key (for `Heads`): another node of the same state
    /// that also holds it must not sign while both run, or the state's chain forks.
    pub signer: bool,
}

impl FetchRequest {
    /// Encodes the request.
    pub fn encode(&self) -> Vec<u8> {
        encoding::message_to_vec(self)
    }
    /// Decodes a request (bounded).
    pub fn decode(bytes: &[u8]) -> Result<Self, EncodingError> {
        encoding::message_from_slice(bytes)
    }
}

impl FetchResponse {
    /// Encodes the response.
    pub fn encode(&self) -> Vec<u8> {
        encoding::message_to_vec(self)
    }
    /// Decodes a response (bounded).
    pub fn decode(bytes: &[u8]) -> Result<Self, EncodingError> {
        encoding::message_from_slice(bytes)
    }
}
