//! The local record store, in sled.
//!
//! Trees: `records` (id → cursor ‖ received-at µs ‖ bytes), `chain` (author ‖ seq ‖ id), `heads` (author →
//! contiguous head seq ‖ id), `feed` (cursor → id), `responses` (target ‖ cursor → id),
//! `pending` (author ‖ seq ‖ id → bytes: valid records waiting for a chain gap or a response
//! target), `pending_targets` (target ‖ author ‖ seq ‖ id → pending key),
//! `forks` (proof id → proof bytes) and `equivocators` (author → proof id).
//!
//! Guarantees:
//! - [`Store::append`] is idempotent and atomic: a record and all its index entries are written
//!   in one sled transaction, so a crash never leaves a half-indexed record.
//! - Feed order: every stored record gets the next cursor (1, 2, 3, ...) at arrival; cursors
//!   never change and are never reused, so a subscriber resumes from its last cursor.
//! - Durability: after [`Store::flush`] returns, everything appended before is on disk.
//! - Only records that passed [`attrib_protocol::check_record`] are given to `append`; it adds
//!   the chain rules and the response rules, which need what the store holds.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use attrib_protocol::{
    ChainHead, ChainPosition, ChainView, ForkProof, MemberKey, Record, RecordError, RecordId,
    chain, check_response,
};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

/// The store's bounds on pending records (from [`crate::limits::Limits`]).
#[derive(Debug, Clone, Copy)]
pub struct PendingLimits {
    /// Most records kept pending (waiting for a gap or a target) at once, in total.
    pub max_pending: usize,
    /// Most records of one author kept pending at once.
    pub max_pending_per_author: usize,
    /// How far beyond an author's contiguous head a record may be and still be kept pending;
    /// records further ahead are refused (sync fetches them in order when the gap closes).
    pub max_seq_ahead: u64,
}

impl Default for PendingLimits {
    fn default() -> Self {
        let l = crate::limits::Limits::default();
        PendingLimits {
            max_pending: l.max_pending,
            max_pending_per_author: l.max_pending_per_author,
            max_seq_ahead: l.max_seq_ahead,
        }
    }
}

/// A store failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// sled failed (disk full, I/O error, corrupt file).
    #[error("store I/O error: {0}")]
    Sled(sled::Error),
    /// A stored entry does not decode: the data dir is damaged.
    #[error("store is damaged: {0}; run `attrib verify --all` or restore the data dir from a peer")]
    Corrupt(String),
    /// The record breaks a rule that needs the store to check (e.g. retraction by non-author).
    #[error("record refused: {0}")]
    Rejected(RecordError),
    /// Too many records are waiting for gaps to fill.
    #[error(
        "too many pending records (limits.max_pending / max_pending_per_author); refusing more until gaps are filled"
    )]
    PendingFull,
    /// The record is too far beyond its author's contiguous head to be kept.
    #[error(
        "record seq {seq} is too far beyond its author's head {head} (limits.max_seq_ahead); it will be fetched in order"
    )]
    TooFarAhead {
        /// The record's seq.
        seq: u64,
        /// The author's contiguous head.
        head: u64,
    },
}

/// What is missing before a pending record can be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// The author's records `from..=to`.
    Chain {
        /// The author.
        author: MemberKey,
        /// First missing seq.
        from: u64,
        /// Last missing seq.
        to: u64,
    },
    /// The claim a response targets.
    Target(RecordId),
}

/// What [`Store::append`] did.
#[derive(Debug, Clone)]
pub enum Appended {
    /// Stored at `cursor`. `released` lists pending records stored because of it.
    Stored {
        /// Its feed cursor.
        cursor: u64,
        /// Pending records that could now be stored, with their cursors.
        released: Vec<(u64, Record)>,
    },
    /// Already held (stored or pending).
    Duplicate,
    /// Valid but waiting for `Missing`; kept in the pending tree.
    Pending(Missing),
    /// Conflicts with a held record: the proof is stored and the author marked equivocating;
    /// the record is kept (at `cursor`) but never becomes part of the contiguous chain. If it
    /// responds to a claim this node does not hold, only the proof is kept (`cursor` is `None`).
    Fork {
        /// The proof.
        proof: ForkProof,
        /// Its feed cursor, if the record was stored.
        cursor: Option<u64>,
    },
}

/// What [`Store::verify_all`] found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct IntegrityReport {
    /// Records checked.
    pub records_checked: usize,
    /// Damage found, one line each (empty when the store is whole).
    pub problems: Vec<String>,
}

/// A stored record with where and when it entered this node's feed.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Feed cursor.
    pub cursor: u64,
    /// When this node stored it, µs since the Unix epoch; strictly increasing with the cursor.
    pub received_us: u64,
    /// The record.
    pub record: Record,
}

/// Record counts for status.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Counts {
    /// Stored records.
    pub records: usize,
    /// Pending records.
    pub pending: usize,
    /// Fork proofs.
    pub forks: usize,
}

/// The sled-backed store. Cheap to share behind an `Arc`; appends are serialised internally.
pub struct Store {
    db: sled::Db,
    records: sled::Tree,
    chain: sled::Tree,
    heads: sled::Tree,
    feed: sled::Tree,
    responses: sled::Tree,
    pending: sled::Tree,
    pending_targets: sled::Tree,
    forks: sled::Tree,
    equivocators: sled::Tree,
    meta: sled::Tree,
    /// Guards appends; holds the next cursor and pending counts.
    append_lock: Mutex<AppendState>,
    limits: PendingLimits,
    /// Every record with a cursor up to this is on disk.
    durable: std::sync::atomic::AtomicU64,
    /// One flush at a time; waiters behind it usually find their record already covered.
    flush_lock: tokio::sync::Mutex<()>,
}

struct AppendState {
    next: u64,
    last_received_us: u64,
    records_total: usize,
    pending_total: usize,
    pending_by_author: HashMap<MemberKey, usize>,
}

impl Store {
    /// Opens (or creates) the store in `dir` with default bounds.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Self::open_with(dir, PendingLimits::default())
    }

    /// Opens (or creates) the store in `dir`. If another handle in this process is still
    /// letting go of the directory (sled's flusher thread outlives a dropped store for a
    /// moment), the lock is retried for up to two seconds before giving up.
    pub fn open_with(dir: &Path, limits: PendingLimits) -> Result<Store, StoreError> {
        let mut attempts = 0;
        loop {
            let opened = sled::Config::new()
                .path(dir)
                .mode(sled::Mode::HighThroughput)
                .cache_capacity(32 * 1024 * 1024)
                .open();
            match opened {
                Ok(db) => return Self::from_db(db, limits),
                Err(sled::Error::Io(e))
                    if attempts < 40 && e.to_string().contains("could not acquire lock") =>
                {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A store in a temporary directory that is deleted on drop (tests, demo).
    pub fn temporary() -> Result<Store, StoreError> {
        Self::temporary_with(PendingLimits::default())
    }

    /// A temporary store with the given bounds.
    pub fn temporary_with(limits: PendingLimits) -> Result<Store, StoreError> {
        Self::from_db(sled::Config::new().temporary(true).open()?, limits)
    }

    fn from_db(db: sled::Db, limits: PendingLimits) -> Result<Store, StoreError> {
        let feed = db.open_tree("feed")?;
        let records = db.open_tree("records")?;
        let (next, last_received_us) = match feed.last()? {
            Some((k, id)) => {
                let received = match records.get(&id)? {
                    Some(v) => decode_stored(&v)?.received_us,
                    None => 0,
                };
                (cursor_of(&k)? + 1, received)
            }
            None => (1, 0),
        };
        let pending = db.open_tree("pending")?;
        let mut pending_by_author: HashMap<MemberKey, usize> = HashMap::new();
        let mut pending_total = 0;
        for k in pending.iter().keys() {
            let k = k?;
            *pending_by_author
                .entry(MemberKey(key32(&k[..32])?))
                .or_default() += 1;
            pending_total += 1;
        }
        let records_total = records.len();
        Ok(Store {
            records,
            chain: db.open_tree("chain")?,
            heads: db.open_tree("heads")?,
            responses: db.open_tree("responses")?,
            pending_targets: db.open_tree("pending_targets")?,
            forks: db.open_tree("forks")?,
            equivocators: db.open_tree("equivocators")?,
            meta: db.open_tree("meta")?,
            pending,
            feed,
            db,
            limits,
            durable: std::sync::atomic::AtomicU64::new(next - 1),
            flush_lock: tokio::sync::Mutex::new(()),
            append_lock: Mutex::new(AppendState {
                next,
                last_received_us,
                records_total,
                pending_total,
                pending_by_author,
            }),
        })
    }

    /// Makes everything appended so far durable.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.flush_through(self.last_cursor()).await
    }

    /// Group commit: returns once every record up to feed cursor `cursor` is on disk. Callers
    /// that arrive while a flush is running wait for it, and the next flush covers all of them
    /// at once, so many concurrent submissions share one disk flush.
    pub async fn flush_through(&self, cursor: u64) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        if self.durable.load(Ordering::Acquire) >= cursor {
            return Ok(());
        }
        let _one_at_a_time = self.flush_lock.lock().await;
        if self.durable.load(Ordering::Acquire) >= cursor {
            return Ok(());
        }
        let upto = self.last_cursor();
        self.db.flush_async().await?;
        self.durable.fetch_max(upto, Ordering::AcqRel);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AppendState> {
        self.append_lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a checked record (see the module docs). Idempotent.
    pub fn append(&self, record: Record) -> Result<Appended, StoreError> {
        let mut state = self.lock();
        self.append_locked(&mut state, record)
    }

    fn append_locked(
        &self,
        state: &mut AppendState,
        record: Record,
    ) -> Result<Appended, StoreError> {
        let id = record.id();
        if self.records.contains_key(id.as_bytes())? {
            return Ok(Appended::Duplicate);
        }
        let pkey = pending_key(&record);
        let already_pending = self.pending.contains_key(&pkey)?;
        match self.place(state, &record)? {
            Placement::Stored(cursor) => {
                if already_pending {
                    self.unpend(state, &record)?;
                }
                let released = self.release_pending(state, &record)?;
                Ok(Appended::Stored { cursor, released })
            }
            Placement::Duplicate => Ok(Appended::Duplicate),
            Placement::Fork(proof, cursor) => Ok(Appended::Fork { proof, cursor }),
            Placement::Wait(missing) => {
                if !already_pending {
                    let author = record.author();
                    let head = self.head_of(&author)?.map_or(0, |h| h.seq);
                    if record.seq() > head.saturating_add(self.limits.max_seq_ahead) {
                        return Err(StoreError::TooFarAhead {
                            seq: record.seq(),
                            head,
                        });
                    }
                    let of_author = state.pending_by_author.get(&author).copied().unwrap_or(0);
                    if state.pending_total >= self.limits.max_pending
                        || of_author >= self.limits.max_pending_per_author
                    {
                        return Err(StoreError::PendingFull);
                    }
                    self.pending.insert(&pkey, record.as_bytes())?;
                    state.pending_total += 1;
                    *state.pending_by_author.entry(author).or_default() += 1;
                }
                if let Missing::Target(t) = &missing {
                    self.pending_targets
                        .insert(pending_target_key(t, &pkey), pkey.as_slice())?;
                }
                Ok(Appended::Pending(missing))
            }
        }
    }

    /// Removes a record from the pending indexes.
    fn unpend(&self, state: &mut AppendState, record: &Record) -> Result<(), StoreError> {
        let pkey = pending_key(record);
        if self.pending.remove(&pkey)?.is_some() {
            state.pending_total = state.pending_total.saturating_sub(1);
            if let Some(n) = state.pending_by_author.get_mut(&record.author()) {
                *n = n.saturating_sub(1);
            }
        }
        if let Some(t) = record.body().target() {
            self.pending_targets.remove(pending_target_key(&t, &pkey))?;
        }
        Ok(())
    }

    /// Decides where a record goes and writes it if it can be stored now.
    fn place(&self, state: &mut AppendState, record: &Record) -> Result<Placement, StoreError> {
        let target = match record.body().target() {
            Some(t) => Some((t, self.get(&t)?)),
            None => None,
        };
        match self.classify_fast(record)? {
            ChainPosition::Duplicate => Ok(Placement::Duplicate),
            ChainPosition::Gap { from, to } => Ok(Placement::Wait(Missing::Chain {
                author: record.author(),
                from,
                to,
            })),
            ChainPosition::Fork(proof) => {
                let stored = match &target {
                    Some((_, Some(t))) => {
                        check_response(record, t)?;
                        true
                    }
                    Some((_, None)) => false,
                    None => true,
                };
                let proof_id = proof.id();
                self.forks.insert(proof_id.as_bytes(), proof.encode())?;
                self.equivocators
                    .insert(proof.author().as_bytes(), proof_id.as_bytes())?;
                let cursor = if stored {
                    Some(self.insert(state, record, false)?)
                } else {
                    None
                };
                Ok(Placement::Fork(proof, cursor))
            }
            ChainPosition::Next => {
                match &target {
                    Some((t, None)) => return Ok(Placement::Wait(Missing::Target(*t))),
                    Some((_, Some(t))) => check_response(record, t)?,
                    None => {}
                }
                Ok(Placement::Stored(self.insert(state, record, true)?))
            }
        }
    }

    /// After `stored` is stored: stores the pending records that were waiting for it (its
    /// successor in the author's chain, responses to it), and theirs, and so on.
    fn release_pending(
        &self,
        state: &mut AppendState,
        stored: &Record,
    ) -> Result<Vec<(u64, Record)>, StoreError> {
        let mut released = Vec::new();
        let mut queue = vec![stored.clone()];
        while let Some(r) = queue.pop() {
            let mut candidates = Vec::new();
            if let Some(next) = r.seq().checked_add(1) {
                for entry in self.pending.scan_prefix(chain_key(&r.author(), next, None)) {
                    candidates.push(entry?.1);
                }
            }
            for entry in self.pending_targets.scan_prefix(r.id().as_bytes()) {
                if let Some(v) = self.pending.get(entry?.1)? {
                    candidates.push(v);
                }
            }
            for bytes in candidates {
                let record = Record::decode(&bytes)
                    .map_err(|e| StoreError::Corrupt(format!("pending record: {e}")))?;
                match self.place(state, &record) {
                    Ok(Placement::Wait(Missing::Target(t))) => {
                        let pkey = pending_key(&record);
                        self.pending_targets
                            .insert(pending_target_key(&t, &pkey), pkey.as_slice())?;
                    }
                    Ok(Placement::Wait(_)) => {}
                    Ok(Placement::Duplicate) => self.unpend(state, &record)?,
                    Ok(Placement::Stored(cursor)) => {
                        self.unpend(state, &record)?;
                        released.push((cursor, record.clone()));
                        queue.push(record);
                    }
                    Ok(Placement::Fork(_, cursor)) => {
                        self.unpend(state, &record)?;
                        if let Some(cursor) = cursor {
                            released.push((cursor, record));
                        }
                    }
                    Err(StoreError::Rejected(e)) => {
                        tracing::warn!(id = %record.id(), error = %e, "dropping pending record that breaks a response rule");
                        self.unpend(state, &record)?;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(released)
    }

    /// Writes a record and its index entries in one transaction; returns its cursor.
    fn insert(
        &self,
        state: &mut AppendState,
        record: &Record,
        extends_head: bool,
    ) -> Result<u64, StoreError> {
        let cursor = state.next;
        let received_us = crate::now_us().max(state.last_received_us + 1);
        let id = record.id();
        let author = record.author();
        let mut value = Vec::with_capacity(16 + record.as_bytes().len());
        value.extend_from_slice(&cursor.to_be_bytes());
        value.extend_from_slice(&received_us.to_be_bytes());
        value.extend_from_slice(record.as_bytes());
        let chain_key = chain_key(&author, record.seq(), Some(&id));
        let mut head = Vec::with_capacity(40);
        head.extend_from_slice(&record.seq().to_be_bytes());
        head.extend_from_slice(id.as_bytes());
        let target = record.body().target();
        let result: Result<(), TransactionError<()>> = (
            &self.records,
            &self.chain,
            &self.heads,
            &self.feed,
            &self.responses,
        )
            .transaction(|(records, chain, heads, feed, responses)| {
                records.insert(id.as_bytes(), value.as_slice())?;
                chain.insert(chain_key.as_slice(), &[])?;
                if extends_head {
                    heads.insert(author.as_bytes(), head.as_slice())?;
                }
                feed.insert(&cursor.to_be_bytes(), id.as_bytes())?;
                if let Some(t) = target {
                    let mut k = t.as_bytes().to_vec();
                    k.extend_from_slice(&cursor.to_be_bytes());
                    responses.insert(k, id.as_bytes())?;
                }
                Ok::<(), ConflictableTransactionError<()>>(())
            });
        match result {
            Ok(()) => {}
            Err(TransactionError::Storage(e)) => return Err(e.into()),
            Err(TransactionError::Abort(())) => {
                return Err(StoreError::Corrupt("transaction aborted".into()));
            }
        }
        state.next += 1;
        state.last_received_us = received_us;
        state.records_total += 1;
        Ok(cursor)
    }

    /// A small persistent number kept by the node (e.g. a webhook's delivery cursor).
    pub fn meta_u64(&self, key: &str) -> Result<Option<u64>, StoreError> {
        match self.meta.get(key.as_bytes())? {
            Some(v) => Ok(Some(cursor_of(&v)?)),
            None => Ok(None),
        }
    }

    /// Sets a persistent number (see [`Store::meta_u64`]).
    pub fn set_meta_u64(&self, key: &str, value: u64) -> Result<(), StoreError> {
        self.meta.insert(key.as_bytes(), &value.to_be_bytes())?;
        Ok(())
    }

    /// The stored records whose id starts with the hex digits `prefix` (at most `limit`).
    pub fn find_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<RecordId>, StoreError> {
        let even = &prefix[..prefix.len() - prefix.len() % 2];
        let Ok(bytes) = hex::decode(even) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for k in self.records.scan_prefix(bytes).keys() {
            let id = record_id(&k?)?;
            if id.to_hex().starts_with(prefix) {
                out.push(id);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Checks the whole store: every record decodes, is stored under its own id, passes the
    /// field rules and its signature (batch-verified); every chain link holds (or the author is
    /// a known equivocator); every chain, head, feed and response index entry agrees with the
    /// records. Returns what is damaged, one line per problem (at most 1,000 lines).
    pub fn verify_all(
        &self,
        roster: &attrib_protocol::Roster,
    ) -> Result<IntegrityReport, StoreError> {
        let mut report = IntegrityReport::default();
        let problem = |report: &mut IntegrityReport, p: String| {
            if report.problems.len() < 1000 {
                report.problems.push(p);
            }
        };
        // Records: decode, id, rules, signatures (in batches).
        let mut batch: Vec<(RecordId, Vec<u8>)> = Vec::new();
        let mut cursors: HashMap<RecordId, u64> = HashMap::new();
        let flush = |batch: &mut Vec<(RecordId, Vec<u8>)>, report: &mut IntegrityReport| {
            let refs: Vec<&[u8]> = batch.iter().map(|(_, b)| b.as_slice()).collect();
            for ((key, _), checked) in
                batch
                    .iter()
                    .zip(attrib_protocol::check_records(&refs, roster, u64::MAX / 2))
            {
                match checked {
                    Ok(r) if r.id() == *key => {}
                    Ok(r) => report
                        .problems
                        .push(format!("record stored under {key} has id {}", r.id())),
                    Err(e) => report.problems.push(format!("record {key}: {e}")),
                }
            }
            batch.clear();
        };
        for entry in self.records.iter() {
            let (k, v) = entry?;
            report.records_checked += 1;
            let key = match record_id(&k) {
                Ok(id) => id,
                Err(_) => {
                    problem(&mut report, "a record key is not 32 bytes".into());
                    continue;
                }
            };
            if v.len() < 16 {
                problem(&mut report, format!("record {key}: entry too short"));
                continue;
            }
            cursors.insert(key, cursor_of(&v[..8])?);
            batch.push((key, v[16..].to_vec()));
            if batch.len() >= 512 {
                flush(&mut batch, &mut report);
            }
        }
        flush(&mut batch, &mut report);
        // Feed: each cursor names a record stored with that cursor; each record has its entry.
        let mut in_feed = 0usize;
        for entry in self.feed.iter() {
            let (k, v) = entry?;
            let cursor = cursor_of(&k)?;
            let id = record_id(&v)?;
            in_feed += 1;
            match cursors.get(&id) {
                Some(c) if *c == cursor => {}
                Some(c) => problem(
                    &mut report,
                    format!("feed cursor {cursor} names {id}, stored with cursor {c}"),
                ),
                None => problem(
                    &mut report,
                    format!("feed cursor {cursor} names missing record {id}"),
                ),
            }
        }
        if in_feed != cursors.len() {
            problem(
                &mut report,
                format!("{} records but {in_feed} feed entries", cursors.len()),
            );
        }
        // Chain index and links.
        for entry in self.chain.iter().keys() {
            let k = entry?;
            if k.len() != 72 {
                problem(&mut report, "a chain index key has the wrong size".into());
                continue;
            }
            let author = MemberKey(key32(&k[..32])?);
            let seq = cursor_of(&k[32..40])?;
            let id = record_id(&k[40..])?;
            let Some(r) = self.get(&id).ok().flatten() else {
                problem(
                    &mut report,
                    format!("chain index names missing record {id}"),
                );
                continue;
            };
            if r.author() != author || r.seq() != seq {
                problem(
                    &mut report,
                    format!("chain index entry for {id} has the wrong author or seq"),
                );
            }
            if seq > 1 {
                let prev_ok = match r.prev() {
                    Some(p) => self
                        .chain
                        .contains_key(chain_key(&author, seq - 1, Some(&p)))?,
                    None => false,
                };
                if !prev_ok && !self.is_equivocator(&author)? {
                    problem(
                        &mut report,
                        format!(
                            "record {id} (seq {seq}) does not link to a stored record at seq {}",
                            seq - 1
                        ),
                    );
                }
            }
        }
        // Heads: every seq up to the head is held and the head id matches.
        for (author, head) in self.heads()? {
            match self.at_seq(&author, head.seq)? {
                Some(_)
                    if self
                        .chain
                        .contains_key(chain_key(&author, head.seq, Some(&head.id)))? => {}
                _ => problem(
                    &mut report,
                    format!("chain head of {author} (seq {}) is not stored", head.seq),
                ),
            }
            let held = self.chain.scan_prefix(author.as_bytes()).keys().count() as u64;
            if held < head.seq {
                problem(
                    &mut report,
                    format!("chain of {author} has gaps below its head {}", head.seq),
                );
            }
        }
        // Responses index.
        for entry in self.responses.iter() {
            let (k, v) = entry?;
            let id = record_id(&v)?;
            let target = record_id(&k[..32.min(k.len())]).ok();
            match self.get(&id).ok().flatten() {
                Some(r) if r.body().target() == target => {}
                _ => problem(
                    &mut report,
                    format!("responses index entry for {id} is wrong"),
                ),
            }
        }
        Ok(report)
    }

    /// Whether a record with this id is stored.
    pub fn contains(&self, id: &RecordId) -> Result<bool, StoreError> {
        Ok(self.records.contains_key(id.as_bytes())?)
    }

    /// The record with this id, if stored (pending records are not returned).
    pub fn get(&self, id: &RecordId) -> Result<Option<Record>, StoreError> {
        Ok(self.get_stored(id)?.map(|s| s.record))
    }

    /// The record with its feed cursor and arrival time.
    pub fn get_stored(&self, id: &RecordId) -> Result<Option<Stored>, StoreError> {
        match self.records.get(id.as_bytes())? {
            None => Ok(None),
            Some(v) => decode_stored(&v).map(Some),
        }
    }

    /// Records in feed order with cursor > `after`, at most `limit`.
    pub fn feed_after(&self, after: u64, limit: usize) -> Result<Vec<Stored>, StoreError> {
        let mut out = Vec::new();
        for entry in self.feed.range((after.saturating_add(1)).to_be_bytes()..) {
            if out.len() >= limit {
                break;
            }
            let (k, id) = entry?;
            let id = record_id(&id)?;
            let cursor = cursor_of(&k)?;
            let stored = self.get_stored(&id)?.ok_or_else(|| {
                StoreError::Corrupt(format!("feed entry {cursor} names missing record {id}"))
            })?;
            out.push(stored);
        }
        Ok(out)
    }

    /// The last assigned feed cursor (0 if empty).
    pub fn last_cursor(&self) -> u64 {
        self.lock().next - 1
    }

    /// Records whose target is `claim` (responses and revisions), in feed order.
    pub fn responses(&self, claim: &RecordId) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::new();
        for entry in self.responses.scan_prefix(claim.as_bytes()) {
            let (_, id) = entry?;
            let id = record_id(&id)?;
            if let Some(r) = self.get(&id)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// The author's records with `from <= seq <= to` that are stored, at most `limit`.
    pub fn chain_range(
        &self,
        author: &MemberKey,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let start = chain_key(author, from, None);
        let end = chain_key(author, to.saturating_add(1), None);
        let mut out = Vec::new();
        for entry in self.chain.range(start..end) {
            if out.len() >= limit {
                break;
            }
            let (k, _) = entry?;
            let id = record_id(&k[40..])?;
            if let Some(r) = self.get(&id)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Claims that pending responses wait for and that are not stored, at most `limit`.
    pub fn missing_targets(&self, limit: usize) -> Result<Vec<RecordId>, StoreError> {
        let mut out: Vec<RecordId> = Vec::new();
        for k in self.pending_targets.iter().keys() {
            let id = record_id(&k?[..32])?;
            if out.last() != Some(&id) && !self.records.contains_key(id.as_bytes())? {
                out.push(id);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// How many of this author's records are pending.
    pub fn pending_of(&self, author: &MemberKey) -> usize {
        self.lock()
            .pending_by_author
            .get(author)
            .copied()
            .unwrap_or(0)
    }

    /// The fork proofs held.
    pub fn forks(&self) -> Result<Vec<ForkProof>, StoreError> {
        self.forks
            .iter()
            .values()
            .map(|v| {
                ForkProof::decode(&v?).map_err(|e| StoreError::Corrupt(format!("fork proof: {e}")))
            })
            .collect()
    }

    /// Whether this author is known to have equivocated.
    pub fn is_equivocator(&self, author: &MemberKey) -> Result<bool, StoreError> {
        Ok(self.equivocators.contains_key(author.as_bytes())?)
    }

    /// Authors known to have equivocated.
    pub fn equivocators(&self) -> Result<Vec<MemberKey>, StoreError> {
        self.equivocators
            .iter()
            .keys()
            .map(|k| Ok(MemberKey(key32(&k?)?)))
            .collect()
    }

    /// All contiguous chain heads.
    pub fn heads(&self) -> Result<Vec<(MemberKey, ChainHead)>, StoreError> {
        self.heads
            .iter()
            .map(|e| {
                let (k, v) = e?;
                Ok((MemberKey(key32(&k)?), decode_head(&v)?))
            })
            .collect()
    }

    /// SHA-256 over the sorted ids of all stored records.
    pub fn record_set_digest(&self) -> Result<RecordId, StoreError> {
        let mut all = Vec::with_capacity(self.records.len() * 32);
        for k in self.records.iter().keys() {
            all.extend_from_slice(&k?);
        }
        Ok(RecordId::of_encoding(&all))
    }

    /// Counts for status.
    pub fn counts(&self) -> Counts {
        let state = self.lock();
        Counts {
            records: state.records_total,
            pending: state.pending_total,
            forks: self.forks.len(),
        }
    }

    /// The chain rules of [`chain::classify`], with a fast path for the common case (the record
    /// extends the contiguous head and nothing else is held at its seq or the next) that reads
    /// only index keys, without decoding neighbouring records.
    fn classify_fast(&self, record: &Record) -> Result<ChainPosition, StoreError> {
        let author = record.author();
        let seq = record.seq();
        let head = self.head_of(&author)?;
        let extends = match head {
            Some(h) => h.seq + 1 == seq && record.prev() == Some(h.id),
            None => seq == 1,
        };
        if extends
            && self
                .chain
                .scan_prefix(chain_key(&author, seq, None))
                .next()
                .is_none()
            && seq.checked_add(1).is_some_and(|n| {
                self.chain
                    .scan_prefix(chain_key(&author, n, None))
                    .next()
                    .is_none()
            })
        {
            return Ok(ChainPosition::Next);
        }
        Ok(chain::classify(record, self))
    }

    fn head_of(&self, author: &MemberKey) -> Result<Option<ChainHead>, StoreError> {
        self.heads
            .get(author.as_bytes())?
            .map(|v| decode_head(&v))
            .transpose()
    }

    fn at_seq(&self, author: &MemberKey, seq: u64) -> Result<Option<Record>, StoreError> {
        let prefix = chain_key(author, seq, None);
        match self.chain.scan_prefix(prefix).keys().next() {
            None => Ok(None),
            Some(k) => self.get(&record_id(&k?[40..])?),
        }
    }
}

enum Placement {
    Stored(u64),
    Duplicate,
    Fork(ForkProof, Option<u64>),
    Wait(Missing),
}

/// The store's view of chains for the protocol's chain rules. Store errors read as "not held"
/// here; they surface on the next write.
impl ChainView for Store {
    fn head(&self, author: &MemberKey) -> Option<ChainHead> {
        self.head_of(author).ok().flatten()
    }
    fn at(&self, author: &MemberKey, seq: u64) -> Option<Record> {
        self.at_seq(author, seq).ok().flatten()
    }
}

/// The contiguous head of an author's chain, from the store (`None` if no record 1).
impl Store {
    /// The author's contiguous chain head.
    pub fn chain_head(&self, author: &MemberKey) -> Result<Option<ChainHead>, StoreError> {
        self.head_of(author)
    }
}

fn pending_key(record: &Record) -> Vec<u8> {
    chain_key(&record.author(), record.seq(), Some(&record.id()))
}

/// The `pending_targets` key of a pending record (by its pending key) waiting for `target`.
fn pending_target_key(target: &RecordId, pending_key: &[u8]) -> Vec<u8> {
    let mut k = target.as_bytes().to_vec();
    k.extend_from_slice(pending_key);
    k
}

fn chain_key(author: &MemberKey, seq: u64, id: Option<&RecordId>) -> Vec<u8> {
    let mut k = Vec::with_capacity(72);
    k.extend_from_slice(author.as_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    if let Some(id) = id {
        k.extend_from_slice(id.as_bytes());
    }
    k
}

fn decode_stored(v: &[u8]) -> Result<Stored, StoreError> {
    if v.len() < 16 {
        return Err(StoreError::Corrupt("record entry too short".into()));
    }
    let cursor = cursor_of(&v[..8])?;
    let received_us = cursor_of(&v[8..16])?;
    let record = Record::decode(&v[16..])
        .map_err(|e| StoreError::Corrupt(format!("record at cursor {cursor}: {e}")))?;
    Ok(Stored {
        cursor,
        received_us,
        record,
    })
}

fn decode_head(v: &[u8]) -> Result<ChainHead, StoreError> {
    if v.len() != 40 {
        return Err(StoreError::Corrupt(
            "chain head entry has the wrong size".into(),
        ));
    }
    Ok(ChainHead {
        seq: cursor_of(&v[..8])?,
        id: record_id(&v[8..])?,
    })
}

fn cursor_of(k: &[u8]) -> Result<u64, StoreError> {
    let b: [u8; 8] = k
        .try_into()
        .map_err(|_| StoreError::Corrupt("cursor key is not 8 bytes".into()))?;
    Ok(u64::from_be_bytes(b))
}

fn key32(k: &[u8]) -> Result<[u8; 32], StoreError> {
    k.try_into()
        .map_err(|_| StoreError::Corrupt("key is not 32 bytes".into()))
}

fn record_id(v: &[u8]) -> Result<RecordId, StoreError> {
    Ok(RecordId(key32(v)?))
}

// Manual conversions (not `#[from]`): the messages already include the cause.
impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Sled(e)
    }
}

impl From<RecordError> for StoreError {
    fn from(e: RecordError) -> Self {
        StoreError::Rejected(e)
    }
}

#[cfg(test)]
mod tests {
    use attrib_protocol::{
        Attribution, Body, Claim, Incident, MemberSigningKey, NetworkId, Rebuttal, RecordContent,
        Retraction, Stance, Tlp, member_key,
    };

    use super::*;

    fn sign(key: &MemberSigningKey, seq: u64, prev: Option<RecordId>, body: Body) -> Record {
        let content = RecordContent {
            author: member_key(key),
            seq,
            prev,
            created_at: 1_000 + seq,
            body,
        };
        Record::sign(content, key, NetworkId([0; 32]))
    }

    fn claim(title: &str) -> Body {
        Body::Claim(Claim {
            incident: Incident {
                title: title.into(),
                summary: String::new(),
                observed_from: 1,
                observed_to: 2,
                sectors: vec![],
                tags: vec![],
            },
            attributed_to: Attribution {
                state: None,
                actor: Some("X".into()),
            },
            confidence: 10,
            evidence: vec![],
            tlp: Tlp::Clear,
            supersedes: None,
        })
    }

    fn rebut(target: RecordId) -> Body {
        Body::Rebuttal(Rebuttal {
            target,
            stance: Stance::Deny,
            statement: "no".into(),
            evidence: vec![],
        })
    }

    fn chain(key: &MemberSigningKey, n: u64) -> Vec<Record> {
        let mut out: Vec<Record> = Vec::new();
        for seq in 1..=n {
            let prev = out.last().map(Record::id);
            out.push(sign(key, seq, prev, claim(&format!("c{seq}"))));
        }
        out
    }

    #[test]
    fn out_of_order_chain_is_released_in_order_with_increasing_cursors() {
        let store = Store::temporary().unwrap();
        let key = MemberSigningKey::from_bytes(&[1; 32]);
        let c = chain(&key, 4);
        assert!(matches!(
            store.append(c[3].clone()).unwrap(),
            Appended::Pending(Missing::Chain { from: 1, to: 3, .. })
        ));
        assert!(matches!(
            store.append(c[2].clone()).unwrap(),
            Appended::Pending(_)
        ));
        // Appending a pending record again says what it still waits for.
        assert!(matches!(
            store.append(c[3].clone()).unwrap(),
            Appended::Pending(_)
        ));
        assert!(matches!(
            store.append(c[0].clone()).unwrap(),
            Appended::Stored { cursor: 1, .. }
        ));
        let Appended::Stored { cursor, released } = store.append(c[1].clone()).unwrap() else {
            panic!("seq 2 not stored");
        };
        assert_eq!(cursor, 2);
        let released: Vec<(u64, u64)> = released.iter().map(|(c, r)| (*c, r.seq())).collect();
        assert_eq!(released, vec![(3, 3), (4, 4)]);
        assert_eq!(store.counts().pending, 0);
        assert_eq!(
            store.chain_head(&member_key(&key)).unwrap().map(|h| h.seq),
            Some(4)
        );
        assert!(matches!(
            store.append(c[0].clone()).unwrap(),
            Appended::Duplicate
        ));
    }

    #[test]
    fn a_response_waits_for_its_claim() {
        let store = Store::temporary().unwrap();
        let fra = MemberSigningKey::from_bytes(&[1; 32]);
        let rus = MemberSigningKey::from_bytes(&[2; 32]);
        let c = sign(&fra, 1, None, claim("c"));
        let r = sign(&rus, 1, None, rebut(c.id()));
        assert!(
            matches!(store.append(r.clone()).unwrap(), Appended::Pending(Missing::Target(t)) if t == c.id())
        );
        assert_eq!(store.missing_targets(10).unwrap(), vec![c.id()]);
        let Appended::Stored { released, .. } = store.append(c.clone()).unwrap() else {
            panic!("claim not stored");
        };
        assert_eq!(released.len(), 1);
        assert_eq!(store.responses(&c.id()).unwrap(), vec![r]);
        assert!(store.missing_targets(10).unwrap().is_empty());
    }

    #[test]
    fn forks_are_kept_with_a_proof_and_invalid_fork_responses_refused() {
        let store = Store::temporary().unwrap();
        let fra = MemberSigningKey::from_bytes(&[1; 32]);
        let rus = MemberSigningKey::from_bytes(&[2; 32]);
        let c = sign(&fra, 1, None, claim("c"));
        store.append(c.clone()).unwrap();
        let other = sign(&fra, 1, None, claim("other"));
        assert!(matches!(
            store.append(other).unwrap(),
            Appended::Fork {
                cursor: Some(2),
                ..
            }
        ));
        assert!(store.is_equivocator(&member_key(&fra)).unwrap());
        assert_eq!(store.forks().unwrap().len(), 1);
        // RUS's seq 1 is a rebuttal; a conflicting seq 1 that retracts FRA's claim breaks the
        // response rules and is refused even though it is a fork.
        store.append(sign(&rus, 1, None, rebut(c.id()))).unwrap();
        let bad = sign(
            &rus,
            1,
            None,
            Body::Retraction(Retraction {
                target: c.id(),
                reason: "not mine".into(),
            }),
        );
        assert!(matches!(store.append(bad), Err(StoreError::Rejected(_))));
    }

    #[test]
    fn records_far_beyond_the_head_are_refused() {
        let store = Store::temporary().unwrap();
        let key = MemberSigningKey::from_bytes(&[1; 32]);
        let far = sign(
            &key,
            PendingLimits::default().max_seq_ahead + 2,
            Some(RecordId([1; 32])),
            claim("far"),
        );
        assert!(matches!(
            store.append(far),
            Err(StoreError::TooFarAhead { .. })
        ));
        assert_eq!(store.counts().pending, 0);
    }

    #[test]
    fn reopened_store_keeps_records_cursors_and_pending() {
        let dir = tempfile::tempdir().unwrap();
        let key = MemberSigningKey::from_bytes(&[1; 32]);
        let c = chain(&key, 3);
        {
            let store = Store::open(dir.path()).unwrap();
            store.append(c[0].clone()).unwrap();
            store.append(c[2].clone()).unwrap();
            futures::executor::block_on(store.flush()).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.counts().records, 1);
        assert_eq!(store.counts().pending, 1);
        assert_eq!(store.last_cursor(), 1);
        let Appended::Stored { cursor, released } = store.append(c[1].clone()).unwrap() else {
            panic!("not stored");
        };
        assert_eq!((cursor, released.len()), (2, 1));
        let feed: Vec<u64> = store
            .feed_after(0, 10)
            .unwrap()
            .iter()
            .map(|s| s.cursor)
            .collect();
        assert_eq!(feed, vec![1, 2, 3]);
    }
}

#[cfg(test)]
mod integrity_tests {
    use attrib_protocol::{
        Attribution, Body, Claim, Incident, Member, MemberSigningKey, RecordContent, Roster,
        RosterFile, Tlp, member_key,
    };

    use super::*;

    fn roster(key: &MemberSigningKey) -> Roster {
        Roster::new(RosterFile {
            network: "t".into(),
            members: vec![Member {
                code: "FRA".parse().unwrap(),
                name: "France".into(),
                key: member_key(key),
                nodes: vec![],
            }],
            ..Default::default()
        })
        .unwrap()
    }

    fn chain(key: &MemberSigningKey, roster: &Roster, n: u64) -> Vec<Record> {
        let mut out: Vec<Record> = Vec::new();
        for seq in 1..=n {
            let content = RecordContent {
                author: member_key(key),
                seq,
                prev: out.last().map(Record::id),
                created_at: 1_000 + seq,
                body: Body::Claim(Claim {
                    incident: Incident {
                        title: format!("c{seq}"),
                        summary: String::new(),
                        observed_from: 1,
                        observed_to: 2,
                        sectors: vec![],
                        tags: vec![],
                    },
                    attributed_to: Attribution {
                        state: None,
                        actor: Some("X".into()),
                    },
                    confidence: 1,
                    evidence: vec![],
                    tlp: Tlp::Clear,
                    supersedes: None,
                }),
            };
            out.push(Record::sign(content, key, roster.network_id()));
        }
        out
    }

    #[test]
    fn a_whole_store_verifies_and_each_kind_of_damage_is_reported() {
        let key = MemberSigningKey::from_bytes(&[1; 32]);
        let roster = roster(&key);
        let store = Store::temporary().unwrap();
        let records = chain(&key, &roster, 5);
        for r in &records {
            store.append(r.clone()).unwrap();
        }
        let report = store.verify_all(&roster).unwrap();
        assert_eq!(
            (report.records_checked, report.problems.len()),
            (5, 0),
            "{:?}",
            report.problems
        );

        // A flipped bit in a stored record: its signature fails.
        let id = records[2].id();
        let mut v = store.records.get(id.as_bytes()).unwrap().unwrap().to_vec();
        let last = v.len() - 1;
        v[last] ^= 1;
        store.records.insert(id.as_bytes(), v).unwrap();
        // A feed entry pointing nowhere, and a dropped chain index entry.
        store.feed.insert(99u64.to_be_bytes(), &[7u8; 32]).unwrap();
        store
            .chain
            .remove(chain_key(&records[3].author(), 4, Some(&records[3].id())))
            .unwrap();
        let report = store.verify_all(&roster).unwrap();
        let text = report.problems.join("\n");
        assert!(text.contains(&format!("record {id}")), "{text}");
        assert!(
            text.contains("feed cursor 99 names missing record"),
            "{text}"
        );
        assert!(
            text.contains("does not link") || text.contains("gaps below its head"),
            "{text}"
        );
    }
}
