//! The local record store, in sled.
//!
//! One sled tree; every key starts with a byte naming what it is (see [`key`]):
//! - `f` cursor → received-at µs ‖ flags ‖ record bytes: the records themselves, in feed order
//!   (flag bit 0: the record extended its author's contiguous head);
//! - `r` id → cursor: records by id;
//! - `c` author ‖ seq ‖ id → cursor: each author's chain (forks give two entries at one seq);
//! - `h` author → contiguous head seq ‖ id;
//! - `a` target ‖ cursor: responses (and revisions) by the claim they target;
//! - `p` author ‖ seq ‖ id → bytes: valid records waiting for a chain gap or a response target;
//! - `t` target ‖ author ‖ seq ‖ id: which pending records wait for which target;
//! - `x` proof id → proof bytes, `e` author → proof id: fork proofs and equivocators;
//! - `m` name → u64: small numbers the node keeps (e.g. a webhook's delivery cursor).
//!
//! Guarantees:
//! - [`Store::append`] is idempotent and atomic: the record's `f` entry is its commit point,
//!   written before its index entries (and before its pending entry is removed). sled recovers
//!   a prefix of the writes made, so after a crash only the last record can be half-indexed,
//!   and opening the store completes its entries (see [`Store::open`]). This costs one ordinary
//!   insert per entry: sled's atomic `Batch` and transactions each write and sync the log
//!   buffer twice (`pin_log`), which made them the store's bottleneck.
//! - Feed order: every stored record gets the next cursor (1, 2, 3, ...) at arrival; cursors
//!   never change and are never reused, so a subscriber resumes from its last cursor. Records
//!   are written under their cursor, so appends go to the end of the tree and the feed is one
//!   range scan.
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
    /// The data dir was written by an older version with a different layout.
    #[error(
        "the data dir uses an older store layout; move the data dir aside and restart: the node rebuilds the record (its own chain included) from its peers"
    )]
    OldLayout,
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
    /// Valid but waiting for `Missing`; kept pending.
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
    /// The one tree (sled's default tree) holding everything; see the module docs.
    db: sled::Db,
    /// Guards appends; holds the next cursor, the chain heads and pending counts.
    append_lock: Mutex<AppendState>,
    limits: PendingLimits,
    /// Every record with a cursor up to this is on disk.
    durable: std::sync::atomic::AtomicU64,
    /// One flush at a time; waiters behind it usually find their record already covered.
    flush_lock: tokio::sync::Mutex<()>,
}

/// What appends need to know without reading the tree; rebuilt from it on open.
struct AppendState {
    next: u64,
    last_received_us: u64,
    pending_total: usize,
    pending_by_author: HashMap<MemberKey, usize>,
    /// Each author's contiguous chain head (mirrors the `h` entries).
    heads: HashMap<MemberKey, ChainHead>,
    /// Each author's highest stored seq, contiguous or not (a fork can sit above the head).
    top_seq: HashMap<MemberKey, u64>,
}

impl AppendState {
    fn pending_removed(&mut self, author: &MemberKey) {
        self.pending_total = self.pending_total.saturating_sub(1);
        if let Some(n) = self.pending_by_author.get_mut(author) {
            *n = n.saturating_sub(1);
        }
    }
}

/// Key layout of the store's one tree (module docs). Each function builds one kind of key.
mod key {
    use attrib_protocol::{MemberKey, Record, RecordId};

    pub(super) const FEED: u8 = b'f';
    pub(super) const ID: u8 = b'r';
    pub(super) const CHAIN: u8 = b'c';
    pub(super) const HEAD: u8 = b'h';
    pub(super) const RESPONSE: u8 = b'a';
    pub(super) const PENDING: u8 = b'p';
    pub(super) const PENDING_TARGET: u8 = b't';
    pub(super) const FORK: u8 = b'x';
    pub(super) const EQUIVOCATOR: u8 = b'e';
    pub(super) const META: u8 = b'm';

    fn tagged(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
        let mut k = Vec::with_capacity(1 + parts.iter().map(|p| p.len()).sum::<usize>());
        k.push(tag);
        for p in parts {
            k.extend_from_slice(p);
        }
        k
    }

    pub(super) fn feed(cursor: u64) -> Vec<u8> {
        tagged(FEED, &[&cursor.to_be_bytes()])
    }

    pub(super) fn id(id: &RecordId) -> Vec<u8> {
        tagged(ID, &[id.as_bytes()])
    }

    /// `c` author ‖ seq ‖ id; without `id`, the prefix of every record at that seq.
    pub(super) fn chain(author: &MemberKey, seq: u64, id: Option<&RecordId>) -> Vec<u8> {
        let id = id.map_or(&[][..], |i| i.as_bytes());
        tagged(CHAIN, &[author.as_bytes(), &seq.to_be_bytes(), id])
    }

    /// The prefix of every `c` key of one author.
    pub(super) fn chain_of(author: &MemberKey) -> Vec<u8> {
        tagged(CHAIN, &[author.as_bytes()])
    }

    pub(super) fn head(author: &MemberKey) -> Vec<u8> {
        tagged(HEAD, &[author.as_bytes()])
    }

    pub(super) fn response(target: &RecordId, cursor: u64) -> Vec<u8> {
        tagged(RESPONSE, &[target.as_bytes(), &cursor.to_be_bytes()])
    }

    /// The prefix of every `a` key of one target.
    pub(super) fn responses_to(target: &RecordId) -> Vec<u8> {
        tagged(RESPONSE, &[target.as_bytes()])
    }

    /// `p` author ‖ seq ‖ id; without `id`, the prefix of every pending record at that seq.
    pub(super) fn pending(author: &MemberKey, seq: u64, id: Option<&RecordId>) -> Vec<u8> {
        let id = id.map_or(&[][..], |i| i.as_bytes());
        tagged(PENDING, &[author.as_bytes(), &seq.to_be_bytes(), id])
    }

    pub(super) fn pending_of(record: &Record) -> Vec<u8> {
        pending(&record.author(), record.seq(), Some(&record.id()))
    }

    /// `t` target ‖ (the pending key without its tag).
    pub(super) fn pending_target(target: &RecordId, pending_key: &[u8]) -> Vec<u8> {
        tagged(PENDING_TARGET, &[target.as_bytes(), &pending_key[1..]])
    }

    /// The pending key a `t` key points at.
    pub(super) fn pending_from_target(target_key: &[u8]) -> Vec<u8> {
        tagged(PENDING, &[&target_key[33.min(target_key.len())..]])
    }

    pub(super) fn fork(proof: &RecordId) -> Vec<u8> {
        tagged(FORK, &[proof.as_bytes()])
    }

    pub(super) fn equivocator(author: &MemberKey) -> Vec<u8> {
        tagged(EQUIVOCATOR, &[author.as_bytes()])
    }

    pub(super) fn meta(name: &str) -> Vec<u8> {
        tagged(META, &[name.as_bytes()])
    }

    /// The first key after every key of this kind (an exclusive range end).
    pub(super) fn end_of(tag: u8) -> Vec<u8> {
        vec![tag + 1]
    }
}

impl Store {
    /// Opens (or creates) the store in `dir` with default bounds. If the process died while
    /// writing a record, the record's index entries are completed first.
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
                .cache_capacity(16 * 1024 * 1024)
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
        // The first layout kept one tree per index; its trees are named, ours is the default.
        if db.tree_names().iter().any(|n| n.as_ref() == b"records") {
            return Err(StoreError::OldLayout);
        }
        let (next, last_received_us) = match db.scan_prefix([key::FEED]).next_back() {
            Some(entry) => {
                let (k, v) = entry?;
                let cursor = cursor_of(&k[1..])?;
                let last = decode_stored(cursor, &v)?;
                // Complete the last record's entries in case the process died writing them.
                let pending = db.contains_key(key::pending_of(&last.record))?;
                index(&db, &last.record, cursor, extends_head(&v), pending)?;
                (cursor + 1, last.received_us)
            }
            None => (1, 0),
        };
        // A fork proof is written before its equivocator mark; complete the mark.
        for entry in db.scan_prefix([key::FORK]) {
            let (k, v) = entry?;
            let proof = ForkProof::decode(&v)
                .map_err(|e| StoreError::Corrupt(format!("fork proof: {e}")))?;
            if !db.contains_key(key::equivocator(&proof.author()))? {
                db.insert(key::equivocator(&proof.author()), &k[1..])?;
            }
        }
        let mut pending_by_author: HashMap<MemberKey, usize> = HashMap::new();
        let mut pending_total = 0;
        for k in db.scan_prefix([key::PENDING]).keys() {
            let k = k?;
            *pending_by_author
                .entry(MemberKey(key32(&k[1..33.min(k.len())])?))
                .or_default() += 1;
            pending_total += 1;
        }
        let mut heads = HashMap::new();
        let mut top_seq = HashMap::new();
        for entry in db.scan_prefix([key::HEAD]) {
            let (k, v) = entry?;
            let author = MemberKey(key32(&k[1..])?);
            heads.insert(author, decode_head(&v)?);
            if let Some(top) = db.scan_prefix(key::chain_of(&author)).keys().next_back() {
                let top = top?;
                top_seq.insert(author, cursor_of(&top[33..41.min(top.len())])?);
            }
        }
        let store = Store {
            db,
            limits,
            durable: std::sync::atomic::AtomicU64::new(next - 1),
            flush_lock: tokio::sync::Mutex::new(()),
            append_lock: Mutex::new(AppendState {
                next,
                last_received_us,
                pending_total,
                pending_by_author,
                heads,
                top_seq,
            }),
        };
        // Records left pending by a write the process did not finish may be storable now.
        if pending_total > 0 {
            let candidates = store
                .db
                .scan_prefix([key::PENDING])
                .keys()
                .map(|k| k.map(|k| k.to_vec()))
                .collect::<Result<Vec<_>, _>>()?;
            let mut state = store.lock();
            store.settle(&mut state, Vec::new(), candidates)?;
        }
        Ok(store)
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
        // The next record of its author's chain cannot be stored yet; anything else may be.
        if !Self::is_next(state, &record) && self.contains(&record.id())? {
            return Ok(Appended::Duplicate);
        }
        let pkey = key::pending_of(&record);
        let already_pending = state.pending_total > 0 && self.db.contains_key(&pkey)?;
        match self.place(state, &record, already_pending)? {
            Placement::Stored(cursor) => {
                let released = self.release_pending(state, &record)?;
                Ok(Appended::Stored { cursor, released })
            }
            Placement::Duplicate => Ok(Appended::Duplicate),
            Placement::Fork(proof, cursor) => Ok(Appended::Fork { proof, cursor }),
            Placement::Wait(missing) => {
                let author = record.author();
                if !already_pending {
                    let head = state.heads.get(&author).map_or(0, |h| h.seq);
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
                }
                // The target entry first: alone it is harmless (the target gets fetched), while
                // a pending record without it would never be looked for.
                if let Missing::Target(t) = &missing {
                    self.db.insert(key::pending_target(t, &pkey), &[])?;
                }
                if !already_pending {
                    self.db.insert(pkey.as_slice(), record.as_bytes())?;
                    state.pending_total += 1;
                    *state.pending_by_author.entry(author).or_default() += 1;
                }
                Ok(Appended::Pending(missing))
            }
        }
    }

    /// Drops a pending record that can never be stored (or already is).
    fn unpend(&self, state: &mut AppendState, record: &Record) -> Result<(), StoreError> {
        unpend(&self.db, record)?;
        state.pending_removed(&record.author());
        Ok(())
    }

    /// Decides where a record goes and writes it if it can be stored now; a record that was
    /// pending leaves the pending entries in the same write.
    fn place(
        &self,
        state: &mut AppendState,
        record: &Record,
        was_pending: bool,
    ) -> Result<Placement, StoreError> {
        let target = match record.body().target() {
            Some(t) => Some((t, self.get(&t)?)),
            None => None,
        };
        match self.classify_fast(state, record)? {
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
                self.db.insert(key::fork(&proof_id), proof.encode())?;
                self.db
                    .insert(key::equivocator(&proof.author()), proof_id.as_bytes())?;
                let cursor = if stored {
                    Some(self.write(state, record, false, was_pending)?)
                } else {
                    if was_pending {
                        self.unpend(state, record)?;
                    }
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
                let cursor = self.write(state, record, true, was_pending)?;
                Ok(Placement::Stored(cursor))
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
        if state.pending_total == 0 {
            return Ok(Vec::new());
        }
        self.settle(state, vec![stored.clone()], Vec::new())
    }

    /// Tries to store the pending records under `candidates` (pending keys), then those waiting
    /// for each record stored on the way (starting with `queue`), and so on.
    fn settle(
        &self,
        state: &mut AppendState,
        mut queue: Vec<Record>,
        mut candidates: Vec<Vec<u8>>,
    ) -> Result<Vec<(u64, Record)>, StoreError> {
        let mut released = Vec::new();
        loop {
            if candidates.is_empty() {
                let Some(r) = queue.pop() else {
                    break;
                };
                candidates = self.waiting_for(&r)?;
            }
            for pkey in std::mem::take(&mut candidates) {
                let Some(bytes) = self.db.get(&pkey)? else {
                    continue;
                };
                let record = Record::decode(&bytes)
                    .map_err(|e| StoreError::Corrupt(format!("pending record: {e}")))?;
                match self.place(state, &record, true) {
                    Ok(Placement::Wait(Missing::Target(t))) => {
                        self.db.insert(key::pending_target(&t, &pkey), &[])?;
                    }
                    Ok(Placement::Wait(_)) => {}
                    Ok(Placement::Duplicate) => self.unpend(state, &record)?,
                    Ok(Placement::Stored(cursor)) => {
                        released.push((cursor, record.clone()));
                        queue.push(record);
                    }
                    Ok(Placement::Fork(_, cursor)) => {
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

    /// The pending keys of records that may wait for `stored`: its successor in the author's
    /// chain and responses to it.
    fn waiting_for(&self, stored: &Record) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut candidates: Vec<Vec<u8>> = Vec::new();
        if let Some(next) = stored.seq().checked_add(1) {
            for k in self
                .db
                .scan_prefix(key::pending(&stored.author(), next, None))
                .keys()
            {
                candidates.push(k?.to_vec());
            }
        }
        for k in self
            .db
            .scan_prefix(key::pending_target(&stored.id(), &[key::PENDING]))
            .keys()
        {
            candidates.push(key::pending_from_target(&k?));
        }
        // A record can wait for its author's previous record and target it too.
        candidates.sort();
        candidates.dedup();
        Ok(candidates)
    }

    /// Writes a record (its commit point) and then its index entries; returns its cursor.
    fn write(
        &self,
        state: &mut AppendState,
        record: &Record,
        extends_head: bool,
        was_pending: bool,
    ) -> Result<u64, StoreError> {
        let cursor = state.next;
        let received_us = crate::now_us().max(state.last_received_us + 1);
        let mut value = Vec::with_capacity(9 + record.as_bytes().len());
        value.extend_from_slice(&received_us.to_be_bytes());
        value.push(u8::from(extends_head));
        value.extend_from_slice(record.as_bytes());
        self.db.insert(key::feed(cursor), value)?;
        index(&self.db, record, cursor, extends_head, was_pending)?;
        state.next += 1;
        state.last_received_us = received_us;
        let author = record.author();
        if extends_head {
            state.heads.insert(
                author,
                ChainHead {
                    seq: record.seq(),
                    id: record.id(),
                },
            );
        }
        let top = state.top_seq.entry(author).or_default();
        *top = (*top).max(record.seq());
        if was_pending {
            state.pending_removed(&author);
        }
        Ok(cursor)
    }

    /// A small persistent number kept by the node (e.g. a webhook's delivery cursor).
    pub fn meta_u64(&self, name: &str) -> Result<Option<u64>, StoreError> {
        match self.db.get(key::meta(name))? {
            Some(v) => Ok(Some(cursor_of(&v)?)),
            None => Ok(None),
        }
    }

    /// Sets a persistent number (see [`Store::meta_u64`]).
    pub fn set_meta_u64(&self, name: &str, value: u64) -> Result<(), StoreError> {
        self.db.insert(key::meta(name), &value.to_be_bytes())?;
        Ok(())
    }

    /// The stored records whose id starts with the hex digits `prefix` (at most `limit`).
    pub fn find_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<RecordId>, StoreError> {
        let even = &prefix[..prefix.len() - prefix.len() % 2];
        let Ok(bytes) = hex::decode(even) else {
            return Ok(Vec::new());
        };
        let mut start = vec![key::ID];
        start.extend_from_slice(&bytes);
        let mut out = Vec::new();
        for k in self.db.scan_prefix(start).keys() {
            let id = record_id(&k?[1..])?;
            if id.to_hex().starts_with(prefix) {
                out.push(id);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Checks the whole store: every record decodes, passes the field rules and its signature
    /// (batch-verified) and is indexed under its own id; every chain link holds (or the author
    /// is a known equivocator); every id, chain, head and response index entry agrees with the
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
        // The id index: which id each cursor should hold.
        let mut indexed: HashMap<u64, RecordId> = HashMap::new();
        for entry in self.db.scan_prefix([key::ID]) {
            let (k, v) = entry?;
            match (record_id(&k[1..]), cursor_of(&v)) {
                (Ok(id), Ok(cursor)) => {
                    if let Some(other) = indexed.insert(cursor, id) {
                        problem(
                            &mut report,
                            format!("id index names cursor {cursor} for both {other} and {id}"),
                        );
                    }
                }
                _ => problem(&mut report, "an id index entry has the wrong size".into()),
            }
        }
        // Records: decode, id, rules, signatures (in batches).
        let name = |indexed: &HashMap<u64, RecordId>, cursor: u64| match indexed.get(&cursor) {
            Some(id) => format!("record {id} (cursor {cursor})"),
            None => format!("record at cursor {cursor}"),
        };
        let mut batch: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut held: HashMap<u64, ()> = HashMap::new();
        let check = |batch: &mut Vec<(u64, Vec<u8>)>, report: &mut IntegrityReport| {
            let refs: Vec<&[u8]> = batch.iter().map(|(_, b)| b.as_slice()).collect();
            for ((cursor, _), checked) in
                batch
                    .iter()
                    .zip(attrib_protocol::check_records(&refs, roster, u64::MAX / 2))
            {
                let p = match checked {
                    Ok(r) if indexed.get(cursor) == Some(&r.id()) => continue,
                    Ok(r) => format!(
                        "{} has id {} but is not indexed under it",
                        name(&indexed, *cursor),
                        r.id()
                    ),
                    Err(e) => format!("{}: {e}", name(&indexed, *cursor)),
                };
                if report.problems.len() < 1000 {
                    report.problems.push(p);
                }
            }
            batch.clear();
        };
        for entry in self.db.scan_prefix([key::FEED]) {
            let (k, v) = entry?;
            report.records_checked += 1;
            let Ok(cursor) = cursor_of(&k[1..]) else {
                problem(&mut report, "a record key has the wrong size".into());
                continue;
            };
            held.insert(cursor, ());
            if v.len() < 9 {
                problem(
                    &mut report,
                    format!("{}: entry too short", name(&indexed, cursor)),
                );
                continue;
            }
            batch.push((cursor, v[9..].to_vec()));
            if batch.len() >= 512 {
                check(&mut batch, &mut report);
            }
        }
        check(&mut batch, &mut report);
        for (cursor, id) in &indexed {
            if !held.contains_key(cursor) {
                problem(
                    &mut report,
                    format!("id index names cursor {cursor} for {id}, which holds no record"),
                );
            }
        }
        // Chain index and links.
        for entry in self.db.scan_prefix([key::CHAIN]) {
            let (k, v) = entry?;
            if k.len() != 73 {
                problem(&mut report, "a chain index key has the wrong size".into());
                continue;
            }
            let author = MemberKey(key32(&k[1..33])?);
            let seq = cursor_of(&k[33..41])?;
            let id = record_id(&k[41..])?;
            let Some(r) = cursor_of(&v)
                .ok()
                .and_then(|c| self.at_cursor(c).ok().flatten())
            else {
                problem(
                    &mut report,
                    format!("chain index names missing record {id}"),
                );
                continue;
            };
            if r.id() != id || r.author() != author || r.seq() != seq {
                problem(
                    &mut report,
                    format!("chain index entry for {id} names another record"),
                );
            }
            if seq > 1 {
                let prev_ok = match r.prev() {
                    Some(p) => self
                        .db
                        .contains_key(key::chain(&author, seq - 1, Some(&p)))?,
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
            if !self
                .db
                .contains_key(key::chain(&author, head.seq, Some(&head.id)))?
            {
                problem(
                    &mut report,
                    format!("chain head of {author} (seq {}) is not stored", head.seq),
                );
            }
            let mut expected = 1;
            for k in self.db.scan_prefix(key::chain_of(&author)).keys() {
                let k = k?;
                let seq = cursor_of(&k[33..41.min(k.len())])?;
                if seq > head.seq || seq < expected {
                    continue;
                }
                if seq > expected {
                    break;
                }
                expected += 1;
            }
            if expected <= head.seq {
                problem(
                    &mut report,
                    format!("chain of {author} has gaps below its head {}", head.seq),
                );
            }
        }
        // Responses index.
        for k in self.db.scan_prefix([key::RESPONSE]).keys() {
            let k = k?;
            let (Ok(target), Ok(cursor)) = (
                record_id(&k[1..33.min(k.len())]),
                cursor_of(&k[33.min(k.len())..]),
            ) else {
                problem(
                    &mut report,
                    "a responses index key has the wrong size".into(),
                );
                continue;
            };
            match self.at_cursor(cursor).ok().flatten() {
                Some(r) if r.body().target() == Some(target) => {}
                _ => problem(
                    &mut report,
                    format!("responses index entry for cursor {cursor} is wrong"),
                ),
            }
        }
        Ok(report)
    }

    /// Whether a record with this id is stored.
    pub fn contains(&self, id: &RecordId) -> Result<bool, StoreError> {
        Ok(self.db.contains_key(key::id(id))?)
    }

    /// The record with this id, if stored (pending records are not returned).
    pub fn get(&self, id: &RecordId) -> Result<Option<Record>, StoreError> {
        Ok(self.get_stored(id)?.map(|s| s.record))
    }

    /// The record with its feed cursor and arrival time.
    pub fn get_stored(&self, id: &RecordId) -> Result<Option<Stored>, StoreError> {
        match self.db.get(key::id(id))? {
            None => Ok(None),
            Some(c) => self.stored_at(cursor_of(&c)?),
        }
    }

    /// The record at a feed cursor.
    fn stored_at(&self, cursor: u64) -> Result<Option<Stored>, StoreError> {
        match self.db.get(key::feed(cursor))? {
            None => Ok(None),
            Some(v) => decode_stored(cursor, &v).map(Some),
        }
    }

    fn at_cursor(&self, cursor: u64) -> Result<Option<Record>, StoreError> {
        Ok(self.stored_at(cursor)?.map(|s| s.record))
    }

    /// Records in feed order with cursor > `after`, at most `limit`.
    pub fn feed_after(&self, after: u64, limit: usize) -> Result<Vec<Stored>, StoreError> {
        let mut out = Vec::new();
        let start = key::feed(after.saturating_add(1));
        for entry in self.db.range(start..key::end_of(key::FEED)) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = entry?;
            out.push(decode_stored(cursor_of(&k[1..])?, &v)?);
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
        for k in self.db.scan_prefix(key::responses_to(claim)).keys() {
            let k = k?;
            if let Some(r) = self.at_cursor(cursor_of(&k[33..])?)? {
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
        let start = key::chain(author, from, None);
        let end = key::chain(author, to.saturating_add(1), None);
        let mut out = Vec::new();
        for entry in self.db.range(start..end) {
            if out.len() >= limit {
                break;
            }
            let (_, c) = entry?;
            if let Some(r) = self.at_cursor(cursor_of(&c)?)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Claims that pending responses wait for and that are not stored, at most `limit`.
    pub fn missing_targets(&self, limit: usize) -> Result<Vec<RecordId>, StoreError> {
        let mut out: Vec<RecordId> = Vec::new();
        for k in self.db.scan_prefix([key::PENDING_TARGET]).keys() {
            let id = record_id(&k?[1..33])?;
            if out.last() != Some(&id) && !self.contains(&id)? {
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
        self.db
            .scan_prefix([key::FORK])
            .values()
            .map(|v| {
                ForkProof::decode(&v?).map_err(|e| StoreError::Corrupt(format!("fork proof: {e}")))
            })
            .collect()
    }

    /// Whether this author is known to have equivocated.
    pub fn is_equivocator(&self, author: &MemberKey) -> Result<bool, StoreError> {
        Ok(self.db.contains_key(key::equivocator(author))?)
    }

    /// Authors known to have equivocated.
    pub fn equivocators(&self) -> Result<Vec<MemberKey>, StoreError> {
        self.db
            .scan_prefix([key::EQUIVOCATOR])
            .keys()
            .map(|k| Ok(MemberKey(key32(&k?[1..])?)))
            .collect()
    }

    /// All contiguous chain heads.
    pub fn heads(&self) -> Result<Vec<(MemberKey, ChainHead)>, StoreError> {
        self.db
            .scan_prefix([key::HEAD])
            .map(|e| {
                let (k, v) = e?;
                Ok((MemberKey(key32(&k[1..])?), decode_head(&v)?))
            })
            .collect()
    }

    /// SHA-256 over the sorted ids of all stored records.
    pub fn record_set_digest(&self) -> Result<RecordId, StoreError> {
        let mut all = Vec::new();
        for k in self.db.scan_prefix([key::ID]).keys() {
            all.extend_from_slice(&k?[1..]);
        }
        Ok(RecordId::of_encoding(&all))
    }

    /// Counts for status.
    pub fn counts(&self) -> Counts {
        let (records, pending) = {
            let state = self.lock();
            ((state.next - 1) as usize, state.pending_total)
        };
        Counts {
            records,
            pending,
            forks: self.db.scan_prefix([key::FORK]).keys().count(),
        }
    }

    /// The chain rules of [`chain::classify`], with a fast path for the common case (the record
    /// extends the contiguous head and nothing is stored at or above its seq) that needs only
    /// what the append state holds in memory.
    fn classify_fast(
        &self,
        state: &AppendState,
        record: &Record,
    ) -> Result<ChainPosition, StoreError> {
        if Self::is_next(state, record) {
            return Ok(ChainPosition::Next);
        }
        Ok(chain::classify(record, self))
    }

    /// Whether the record extends its author's contiguous head and nothing of the author is
    /// stored beyond it (decided from memory; the common case on every ingest path).
    fn is_next(state: &AppendState, record: &Record) -> bool {
        let author = record.author();
        let seq = record.seq();
        let extends = match state.heads.get(&author) {
            Some(h) => h.seq + 1 == seq && record.prev() == Some(h.id),
            None => seq == 1,
        };
        extends && state.top_seq.get(&author).copied().unwrap_or(0) < seq
    }

    fn head_of(&self, author: &MemberKey) -> Result<Option<ChainHead>, StoreError> {
        self.db
            .get(key::head(author))?
            .map(|v| decode_head(&v))
            .transpose()
    }

    fn at_seq(&self, author: &MemberKey, seq: u64) -> Result<Option<Record>, StoreError> {
        match self
            .db
            .scan_prefix(key::chain(author, seq, None))
            .values()
            .next()
        {
            None => Ok(None),
            Some(c) => self.at_cursor(cursor_of(&c?)?),
        }
    }

    /// The author's contiguous chain head.
    pub fn chain_head(&self, author: &MemberKey) -> Result<Option<ChainHead>, StoreError> {
        self.head_of(author)
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

/// Writes the index entries of the record stored at `cursor` and, if it was pending, removes
/// its pending entries. Idempotent, so opening the store can complete an interrupted write.
fn index(
    db: &sled::Tree,
    record: &Record,
    cursor: u64,
    extends_head: bool,
    was_pending: bool,
) -> Result<(), StoreError> {
    let id = record.id();
    let author = record.author();
    let at = cursor.to_be_bytes();
    db.insert(key::id(&id), &at)?;
    db.insert(key::chain(&author, record.seq(), Some(&id)), &at)?;
    if extends_head {
        let head = ChainHead {
            seq: record.seq(),
            id,
        };
        db.insert(key::head(&author), encode_head(&head))?;
    }
    if let Some(t) = record.body().target() {
        db.insert(key::response(&t, cursor), &[])?;
    }
    if was_pending {
        unpend(db, record)?;
    }
    Ok(())
}

/// Removes a record's pending entries: the record first, then its target entry (a target
/// entry alone is harmless).
fn unpend(db: &sled::Tree, record: &Record) -> Result<(), StoreError> {
    let pkey = key::pending_of(record);
    db.remove(&pkey)?;
    if let Some(t) = record.body().target() {
        db.remove(key::pending_target(&t, &pkey))?;
    }
    Ok(())
}

/// Whether a stored record entry says its record extended its author's contiguous head.
fn extends_head(v: &[u8]) -> bool {
    v.get(8).is_some_and(|flags| flags & 1 == 1)
}

fn decode_stored(cursor: u64, v: &[u8]) -> Result<Stored, StoreError> {
    if v.len() < 9 {
        return Err(StoreError::Corrupt(format!(
            "record entry at cursor {cursor} too short"
        )));
    }
    let received_us = cursor_of(&v[..8])?;
    let record = Record::decode(&v[9..])
        .map_err(|e| StoreError::Corrupt(format!("record at cursor {cursor}: {e}")))?;
    Ok(Stored {
        cursor,
        received_us,
        record,
    })
}

fn encode_head(head: &ChainHead) -> Vec<u8> {
    let mut v = Vec::with_capacity(40);
    v.extend_from_slice(&head.seq.to_be_bytes());
    v.extend_from_slice(head.id.as_bytes());
    v
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
        .map_err(|_| StoreError::Corrupt("a stored number is not 8 bytes".into()))?;
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
        for r in [&c[0], &c[3]] {
            assert!(matches!(
                store.append(r.clone()).unwrap(),
                Appended::Duplicate
            ));
        }
        assert_eq!(store.counts().records, 4);
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
    fn a_record_written_without_its_index_entries_is_completed_on_open() {
        // What a crash between a record's commit point and its index entries leaves: only the
        // `f` entry (sled recovers a prefix of the writes, so this is the worst case).
        let dir = tempfile::tempdir().unwrap();
        let key = MemberSigningKey::from_bytes(&[1; 32]);
        let c = chain(&key, 3);
        let rus = MemberSigningKey::from_bytes(&[2; 32]);
        let r = sign(&rus, 1, None, rebut(c[1].id()));
        {
            let store = Store::open(dir.path()).unwrap();
            store.append(c[0].clone()).unwrap();
            // The rebuttal waits for c[1]; c[1] is then "stored" up to its commit point only.
            assert!(matches!(
                store.append(r.clone()).unwrap(),
                Appended::Pending(_)
            ));
            let mut value = 7u64.to_be_bytes().to_vec();
            value.push(1);
            value.extend_from_slice(c[1].as_bytes());
            store.db.insert(key::feed(2), value).unwrap();
            futures::executor::block_on(store.db.flush_async()).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.last_cursor(), 3);
        assert_eq!(store.get_stored(&c[1].id()).unwrap().unwrap().cursor, 2);
        assert_eq!(
            store.chain_head(&member_key(&key)).unwrap().map(|h| h.seq),
            Some(2)
        );
        // The rebuttal that waited for c[1] was released on open, and the chain continues.
        assert_eq!(store.counts().pending, 0);
        assert_eq!(store.get_stored(&r.id()).unwrap().unwrap().cursor, 3);
        assert!(matches!(
            store.append(c[2].clone()).unwrap(),
            Appended::Stored { cursor: 4, .. }
        ));
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
        let cursor = store.get_stored(&id).unwrap().unwrap().cursor;
        let mut v = store.db.get(key::feed(cursor)).unwrap().unwrap().to_vec();
        let last = v.len() - 1;
        v[last] ^= 1;
        store.db.insert(key::feed(cursor), v).unwrap();
        // An id index entry pointing nowhere, and a dropped chain index entry.
        store
            .db
            .insert(key::id(&RecordId([7; 32])), &99u64.to_be_bytes())
            .unwrap();
        store
            .db
            .remove(key::chain(&records[3].author(), 4, Some(&records[3].id())))
            .unwrap();
        let report = store.verify_all(&roster).unwrap();
        let text = report.problems.join("\n");
        assert!(text.contains(&format!("record {id}")), "{text}");
        assert!(text.contains("id index names cursor 99"), "{text}");
        assert!(
            text.contains("does not link") || text.contains("gaps below its head"),
            "{text}"
        );
    }
}

#[cfg(test)]
mod layout_tests {
    use super::*;

    #[test]
    fn a_data_dir_in_the_old_layout_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            db.open_tree("records").unwrap().insert(b"k", b"v").unwrap();
            db.flush().unwrap();
        }
        let err = Store::open(dir.path()).err().expect("old layout opened");
        assert!(matches!(err, StoreError::OldLayout), "{err}");
        assert!(err.to_string().contains("move the data dir aside"));
    }
}
