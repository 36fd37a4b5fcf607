//! Taking in records from anywhere (gossip, fetch answers) and serving fetch requests: the
//! checks and store calls both network paths share.

use std::sync::Arc;

use attrib_protocol::sync::{FetchRequest, FetchResponse, MAX_FETCH_RECORDS};
use attrib_protocol::{Record, RecordError, Roster, check_record};
use tokio::sync::watch;

use crate::store::{Appended, Missing, Store, StoreError};

/// What happened to a received record.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Stored (possibly with pending records released), or already held.
    Settled,
    /// Kept pending until this is fetched.
    Waiting(Missing),
}

/// Why a received record was not taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IngestError {
    /// The record is invalid: the sender is at fault.
    #[error("invalid record: {0}")]
    Invalid(#[from] RecordError),
    /// The store failed or is full: not the sender's fault.
    #[error(transparent)]
    Store(StoreError),
}

impl IngestError {
    /// Whether the peer that sent the record should be penalised.
    pub(crate) fn is_peer_fault(&self) -> bool {
        matches!(self, IngestError::Invalid(_))
    }
}

impl From<StoreError> for IngestError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Rejected(r) => IngestError::Invalid(r),
            other => IngestError::Store(other),
        }
    }
}

/// Shared ingest path.
#[derive(Clone)]
pub(crate) struct Ingest {
    store: Arc<Store>,
    roster: Arc<Roster>,
    feed: watch::Sender<u64>,
}

impl Ingest {
    pub(crate) fn new(store: Arc<Store>, roster: Arc<Roster>, feed: watch::Sender<u64>) -> Self {
        Ingest {
            store,
            roster,
            feed,
        }
    }

    pub(crate) fn roster(&self) -> &Roster {
        &self.roster
    }

    /// Checks and stores received bytes.
    pub(crate) fn receive(&self, bytes: &[u8]) -> Result<Outcome, IngestError> {
        let record = check_record(bytes, &self.roster, crate::now_ms())?;
        self.append(record)
    }

    /// Stores a checked record and tells feed subscribers.
    pub(crate) fn append(&self, record: Record) -> Result<Outcome, IngestError> {
        let id = record.id();
        match self.store.append(record)? {
            Appended::Stored { cursor, released } => {
                tracing::debug!(%id, cursor, released = released.len(), "stored record");
                self.notify();
                Ok(Outcome::Settled)
            }
            Appended::Duplicate => Ok(Outcome::Settled),
            Appended::Pending(missing) => {
                tracing::debug!(%id, ?missing, "record pending");
                Ok(Outcome::Waiting(missing))
            }
            Appended::Fork { proof, cursor } => {
                tracing::warn!(%id, cursor, author = %proof.author(), proof = %proof.id(), "author equivocated: fork proof stored");
                self.notify();
                Ok(Outcome::Settled)
            }
        }
    }

    fn notify(&self) {
        self.feed.send_replace(self.store.last_cursor());
    }

    /// Answers a fetch request from the store (bounded).
    pub(crate) fn serve(&self, request: &FetchRequest) -> FetchResponse {
        let records = match request {
            FetchRequest::Records(ids) => ids
                .iter()
                .take(MAX_FETCH_RECORDS)
                .filter_map(|id| self.store.get(id).ok().flatten())
                .map(|r| r.as_bytes().to_vec())
                .collect(),
            FetchRequest::Chain { author, from, to } => self
                .store
                .chain_range(author, *from, *to, MAX_FETCH_RECORDS)
                .unwrap_or_default()
                .into_iter()
                .map(|r| r.as_bytes().to_vec())
                .collect(),
        };
        FetchResponse { records }
    }
}
