//! Taking in records from anywhere (gossip, fetch answers, local submissions) and serving fetch
//! requests: the checks and store calls all paths share.

use std::sync::Arc;

use attrib_protocol::sync::{
    FetchRequest, FetchResponse, HeadEntry, MAX_FETCH_BYTES, MAX_FETCH_FORKS, MAX_FETCH_RECORDS,
};
use attrib_protocol::{
    ChainHead, MemberKey, Record, RecordError, RecordId, Roster, check_record, check_records,
};
use tokio::sync::{mpsc, oneshot, watch};

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
    /// Records refused for now as made "in the future" by this node's clock: not the
    /// sender's fault (this clock may be behind, or the author's ahead); fetched again later.
    pub(crate) early: usize,
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
        let mut records = Vec::with_capacity(refs.len());
        for checked in check_records(&refs, &self.roster, crate::now_ms()) {
            match checked {
                Ok(r) => records.push(r),
                Err(e @ RecordError::FromTheFuture { .. }) => {
                    tracing::warn!(error = %e, "record not taken for now");
                    report.early += 1;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "peer sent an invalid record");
                    report.invalid += 1;
                }
            }
        }
        let sent: Vec<(MemberKey, RecordId)> =
            records.iter().map(|r| (r.author(), r.id())).collect();
        // In pieces, so an import of any size holds the store's append lock only briefly.
        let mut results = Vec::with_capacity(records.len());
        let mut records = records.into_iter().peekable();
        while records.peek().is_some() {
            let piece: Vec<Record> = records.by_ref().take(MAX_FETCH_RECORDS).collect();
            match self.store.append_batch(piece) {
                Ok(r) => results.extend(r),
                Err(e) => {
                    // Whatever was stored before the failure is announced all the same.
                    self.notify();
                    return Err(e);
                }
            }
        }
        for ((author, id), result) in sent.into_iter().zip(results) {
            match self.outcome(&id, result) {
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
                Err(IngestError::Store(e)) => {
                    self.notify();
                    return Err(e);
                }
            }
        }
        if report.stored > 0 {
            self.notify();
        }
        Ok(report)
    }

    /// Stores a checked record and tells feed subscribers.
    pub(crate) fn append(&self, record: Record) -> Result<Outcome, IngestError> {
        let id = record.id();
        self.announced(&id, self.store.append(record))
    }

    /// Stores a record this node has just signed, only while it is still its author's next
    /// record (see [`Store::append_if_next`]); `None` when it no longer is (nothing stored).
    pub(crate) fn append_signed(&self, record: Record) -> Result<Option<Outcome>, IngestError> {
        let id = record.id();
        match self.store.append_if_next(record).transpose() {
            Some(appended) => self.announced(&id, appended).map(Some),
            None => Ok(None),
        }
    }

    /// What an append did; feed subscribers are told of a stored record.
    fn announced(
        &self,
        id: &RecordId,
        appended: Result<Appended, StoreError>,
    ) -> Result<Outcome, IngestError> {
        let outcome = self.outcome(id, appended);
        if matches!(outcome, Ok(Outcome::Stored { .. } | Outcome::Fork)) {
            self.notify();
        }
        outcome
    }

    /// What a store append did, logged.
    fn outcome(
        &self,
        id: &RecordId,
        appended: Result<Appended, StoreError>,
    ) -> Result<Outcome, IngestError> {
        match appended? {
            Appended::Stored { cursor, released } => {
                tracing::debug!(%id, cursor, released = released.len(), "stored record");
                Ok(Outcome::Stored { cursor })
            }
            Appended::Duplicate => Ok(Outcome::Duplicate),
            Appended::Pending(missing) => {
                tracing::debug!(%id, ?missing, "record pending");
                Ok(Outcome::Waiting(missing))
            }
            Appended::Fork {
                proof,
                cursor,
                new_proof,
            } => {
                if new_proof {
                    tracing::warn!(%id, ?cursor, author = %proof.author(), proof = %proof.id(), "author equivocated: fork proof stored");
                } else {
                    tracing::debug!(%id, proof = %proof.id(), "conflicting record again; its fork proof is held");
                }
                Ok(Outcome::Fork)
            }
        }
    }

    pub(crate) fn notify(&self) {
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

    /// Answers a fetch request from the store (bounded in count and bytes); `signer` says
    /// whether this node holds its state's key, `asker` is the state key of the asking node's
    /// state (none for an observer).
    pub(crate) fn serve(
        &self,
        request: &FetchRequest,
        signer: bool,
        asker: Option<MemberKey>,
    ) -> FetchResponse {
        let records: Vec<Record> = match request {
            FetchRequest::Records(ids) => {
                // Each id once: a request naming one large record many times must not make a
                // response many times its size.
                let mut seen = std::collections::HashSet::new();
                let stored: Vec<_> = ids
                    .iter()
                    .filter(|id| seen.insert(**id))
                    .take(MAX_FETCH_RECORDS)
                    .filter_map(|id| self.store.get_stored(id).ok().flatten())
                    .collect();
                // Read after the records (see `Store::held_from`).
                let held = self.store.held_from();
                stored
                    .into_iter()
                    .filter(|s| held.is_none_or(|h| s.cursor < h))
                    .map(|s| s.record)
                    .collect()
            }
            FetchRequest::Chain { author, from, to } => self
                .store
                .chain_range(author, *from, *to, MAX_FETCH_RECORDS)
                .unwrap_or_default(),
            FetchRequest::Heads => {
                let heads = self.heads();
                // The asker's own head record: what proves the head named for its chain (its
                // node waits for that chain before it signs again).
                let proof = asker
                    .and_then(|a| heads.iter().find(|h| h.author == a))
                    .and_then(|h| self.store.get(&h.id).ok().flatten())
                    .map(|r| r.as_bytes().to_vec());
                return FetchResponse {
                    records: proof.into_iter().collect(),
                    heads,
                    forks: self
                        .store
                        .forks()
                        .unwrap_or_default()
                        .iter()
                        .take(MAX_FETCH_FORKS)
                        .map(|p| p.encode())
                        .collect(),
                    signer,
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

/// A record to check and where to send the verdict.
type CheckRequest = (Vec<u8>, oneshot::Sender<Result<Record, RecordError>>);

/// Checks records published through the API (signed elsewhere) like received ones, in
/// batches: submissions that arrive while one batch is being checked are checked together
/// next, with one ed25519 batch verification, the way group commit shares one disk flush
/// among concurrent submissions. A lone submission is checked at once, alone.
#[derive(Clone)]
pub(crate) struct BatchChecker {
    requests: mpsc::Sender<CheckRequest>,
}

/// The most records checked in one batch.
const CHECK_BATCH: usize = 64;

impl BatchChecker {
    /// Starts the checking task; it ends when every handle is dropped.
    pub(crate) fn start(roster: Arc<Roster>) -> BatchChecker {
        let (requests, mut queue) = mpsc::channel::<CheckRequest>(4 * CHECK_BATCH);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(CHECK_BATCH);
            while queue.recv_many(&mut batch, CHECK_BATCH).await > 0 {
                let roster = roster.clone();
                let items = std::mem::take(&mut batch);
                let checked = tokio::task::spawn_blocking(move || {
                    let refs: Vec<&[u8]> = items.iter().map(|(b, _)| b.as_slice()).collect();
                    let verdicts = check_records(&refs, &roster, crate::now_ms());
                    (items, verdicts)
                })
                .await;
                // A panic in the check drops the reply senders: callers see it as an error.
                if let Ok((items, verdicts)) = checked {
                    for ((_, reply), verdict) in items.into_iter().zip(verdicts) {
                        let _ = reply.send(verdict);
                    }
                }
            }
        });
        BatchChecker { requests }
    }

    /// Checks one record's bytes (decode, rules, roster, clock, signature).
    pub(crate) async fn check(&self, bytes: Vec<u8>) -> Result<Record, CheckError> {
        let (reply, verdict) = oneshot::channel();
        self.requests
            .send((bytes, reply))
            .await
            .map_err(|_| CheckError::Stopped)?;
        verdict
            .await
            .map_err(|_| CheckError::Stopped)?
            .map_err(CheckError::Invalid)
    }
}

/// Why [`BatchChecker::check`] gave no record.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CheckError {
    /// The record is invalid.
    #[error(transparent)]
    Invalid(RecordError),
    /// The node is stopping.
    #[error("the node is stopping; retry when it is back")]
    Stopped,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::localnet::{LocalMember, local_roster};
    use attrib_protocol::{RecordContent, member_key};

    #[test]
    fn records_from_the_future_in_a_batch_are_not_the_senders_fault() {
        // Made an hour ahead of this node's clock: this clock may be the one that is wrong,
        // so the peer that passed them on is not struck for it (nor the record kept yet).
        let fra = LocalMember::new(3, 0);
        let roster = Arc::new(local_roster(std::slice::from_ref(&fra), &[]));
        let store = Arc::new(Store::temporary().unwrap());
        let ingest = Ingest::new(store.clone(), roster.clone(), watch::channel(0).0);
        let content = RecordContent {
            author: member_key(&fra.state_key),
            seq: 1,
            prev: None,
            created_at: crate::now_ms() + 3_600_000,
            body: crate::store::tests::claim("early"),
        };
        let early = Record::sign(content, &fra.state_key, roster.network_id());
        let report = ingest.receive_batch(&[early.bytes().to_vec()]).unwrap();
        assert_eq!((report.stored, report.invalid, report.early), (0, 0, 1));
        assert!(!store.contains(&early.id()).unwrap());
    }
}
