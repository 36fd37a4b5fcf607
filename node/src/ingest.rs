//! Taking in records from anywhere (gossip, fetch answers, local submissions) and serving fetch
//! requests: the checks and store calls all paths share.

use std::sync::Arc;

use attrib_protocol::sync::{
    FetchRequest, FetchResponse, HeadEntry, MAX_FETCH_BYTES, MAX_FETCH_FORKS, MAX_FETCH_RECORDS,
};
use attrib_protocol::{
    ChainHead, MemberKey, Record, RecordError, RecordId, Roster, check_record, check_records,
};
use tokio::sync::watch;

use crate::store::{Appended, Missing, Store, StoreError};

/// What happened to a received record.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Stored at this feed cursor (possibly releasing pending records).
    Stored {
        /// Its feed cursor.
        cursor: u64,
    },
    /// Already held.
    Duplicate,
    /// Kept pending until this is fetched.
    Waiting(Missing),
    /// Its author equivocated; the fork proof is stored.
    Fork,
}

/// Why a received record was not taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IngestError {
    /// The record is invalid.
    #[error("invalid record: {0}")]
    Invalid(RecordError),
    /// The store failed or refused (full, too far ahead).
    #[error(transparent)]
    Store(StoreError),
}

impl IngestError {
    /// Whether the peer that sent the record should be penalised. A record from "the future"
    /// may only mean this node's clock is behind, so it is not the sender's fault.
    pub(crate) fn is_peer_fault(&self) -> bool {
        matches!(self, IngestError::Invalid(e) if !matches!(e, RecordError::FromTheFuture { .. }))
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

/// What a batch ingest did.
#[derive(Debug, Default)]
pub(crate) struct BatchReport {
    /// Records newly stored (including forks).
    pub(crate) stored: usize,
    /// Records refused as invalid (the sender's fault).
    pub(crate) invalid: usize,
    /// What pending records still need.
    pub(crate) waiting: Vec<Missing>,
    /// Authors whose chains advanced.
    pub(crate) advanced: Vec<MemberKey>,
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

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Checks and stores received bytes. A record already stored is recognised by its id
    /// before any signature check.
    pub(crate) fn receive(&self, bytes: &[u8]) -> Result<Outcome, IngestError> {
        if bytes.len() <= attrib_protocol::limits::MAX_RECORD_BYTES
            && self.store.contains(&RecordId::of_encoding(bytes))?
        {
            return Ok(Outcome::Duplicate);
        }
        let record = check_record(bytes, &self.roster, crate::now_ms())?;
        self.append(record)
    }

    /// Checks a batch (one batch signature verification) and stores what is valid.
    pub(crate) fn receive_batch(&self, items: &[Vec<u8>]) -> Result<BatchReport, StoreError> {
        let mut report = BatchReport::default();
        let mut refs: Vec<&[u8]> = Vec::with_capacity(items.len());
        for item in items {
            // Already stored: no need to verify its signature again.
            if item.len() <= attrib_protocol::limits::MAX_RECORD_BYTES
                && self.store.contains(&RecordId::of_encoding(item))?
            {
                continue;
            }
            refs.push(item);
        }
        for checked in check_records(&refs, &self.roster, crate::now_ms()) {
            let record = match checked {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "peer sent an invalid record");
                    report.invalid += 1;
                    continue;
                }
            };
            let author = record.author();
            match self.append(record) {
                Ok(Outcome::Stored { .. }) | Ok(Outcome::Fork) => {
                    report.stored += 1;
                    if !report.advanced.contains(&author) {
                        report.advanced.push(author);
                    }
                }
                Ok(Outcome::Duplicate) => {}
                Ok(Outcome::Waiting(m)) => report.waiting.push(m),
                Err(IngestError::Invalid(e)) => {
                    tracing::warn!(error = %e, "peer sent a record that breaks a rule");
                    report.invalid += 1;
                }
                Err(IngestError::Store(
                    e @ (StoreError::PendingFull | StoreError::TooFarAhead { .. }),
                )) => {
                    tracing::debug!(error = %e, "record not kept for now");
                }
                Err(IngestError::Store(e)) => return Err(e),
            }
        }
        Ok(report)
    }

    /// Stores a checked record and tells feed subscribers.
    pub(crate) fn append(&self, record: Record) -> Result<Outcome, IngestError> {
        let id = record.id();
        match self.store.append(record)? {
            Appended::Stored { cursor, released } => {
                tracing::debug!(%id, cursor, released = released.len(), "stored record");
                self.notify();
                Ok(Outcome::Stored { cursor })
            }
            Appended::Duplicate => Ok(Outcome::Duplicate),
            Appended::Pending(missing) => {
                tracing::debug!(%id, ?missing, "record pending");
                Ok(Outcome::Waiting(missing))
            }
            Appended::Fork { proof, cursor } => {
                tracing::warn!(%id, ?cursor, author = %proof.author(), proof = %proof.id(), "author equivocated: fork proof stored");
                self.notify();
                Ok(Outcome::Fork)
            }
        }
    }

    fn notify(&self) {
        self.feed.send_replace(self.store.last_cursor());
    }

    /// This node's contiguous chain heads.
    pub(crate) fn heads(&self) -> Vec<HeadEntry> {
        self.store
            .heads()
            .unwrap_or_default()
            .into_iter()
            .map(|(author, ChainHead { seq, id })| HeadEntry { author, seq, id })
            .collect()
    }

    /// Answers a fetch request from the store (bounded in count and bytes).
    pub(crate) fn serve(&self, request: &FetchRequest) -> FetchResponse {
        let records: Vec<Record> = match request {
            FetchRequest::Records(ids) => ids
                .iter()
                .take(MAX_FETCH_RECORDS)
                .filter_map(|id| self.store.get(id).ok().flatten())
                .collect(),
            FetchRequest::Chain { author, from, to } => self
                .store
                .chain_range(author, *from, *to, MAX_FETCH_RECORDS)
                .unwrap_or_default(),
            FetchRequest::Heads => {
                return FetchResponse {
                    records: Vec::new(),
                    heads: self.heads(),
                    forks: self
                        .store
                        .forks()
                        .unwrap_or_default()
                        .iter()
                        .take(MAX_FETCH_FORKS)
                        .map(|p| p.encode())
                        .collect(),
                };
            }
        };
        let mut bytes = 0;
        let records = records
            .into_iter()
            .take_while(|r| {
                bytes += r.as_bytes().len();
                bytes <= MAX_FETCH_BYTES
            })
            .map(|r| r.as_bytes().to_vec())
            .collect();
        FetchResponse {
            records,
            ..Default::default()
        }
    }
}

impl From<RecordError> for IngestError {
    fn from(e: RecordError) -> Self {
        IngestError::Invalid(e)
    }
}
