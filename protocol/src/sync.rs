//! Peer-to-peer fetch messages: how a node asks a peer for records it lacks (a response's
//! missing target, a gap in an author's chain). Any peer can answer for any author, because
//! records are self-authenticating: the asker checks every record it gets.

use bincode::{Decode, Encode};

use crate::encoding::{self, EncodingError};
use crate::id::{MemberKey, RecordId};

/// Most ids in one [`FetchRequest::Records`].
pub const MAX_FETCH_IDS: usize = 256;
/// Most records in one [`FetchResponse`].
pub const MAX_FETCH_RECORDS: usize = 512;

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
}

/// Records sent in answer, as their exact bytes (each checked by the receiver).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Default)]
pub struct FetchResponse {
    /// Encoded records (at most [`MAX_FETCH_RECORDS`]).
    pub records: Vec<Vec<u8>>,
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
