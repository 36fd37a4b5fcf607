//! The local record store, in sled.
//!
//! One sled tree; every key starts with a byte naming what it is (see [`key`]):
//! - `f` cursor → received-at µs ‖ flags ‖ record bytes: the records themselves, in feed order
//!   (flag bit 0: the record extended its author's contiguous head). Records that arrive
//!   together as a run of chain extensions (a catch-up answer) share an entry of up to
//!   [`GROUP_BYTES`], under the last one's cursor (layout at [`ENTRY_HEADER`]);
//! - `p` author ‖ seq ‖ id → bytes: valid records waiting for a chain gap or a response target;
//! - `t` target ‖ author ‖ seq ‖ id: which pending records wait for which target;
//! - `x` proof id → proof bytes, `e` author → proof id: fork proofs and equivocators;
//! - `k` number → author key: record entries name their author by a two-byte number instead
//!   of the 32-byte key, a tenth of a typical record (see [`NUMBERED`]); a number's entry is
//!   written before the first record entry that uses it;
//! - `m` name → u64: small numbers the node keeps (e.g. a webhook's delivery cursor).
//!
//! Records are found by id, by author and seq, and by the claim they respond to through an
//! [`index::Index`] held in memory and rebuilt from the `f` entries on open: a stored record is
//! one sled entry, or a share of one. (Earlier versions kept those indexes in sled as `r`, `c`, `h` and `a`
//! entries, four more inserts per record, which bounded ingest speed and tripled disk use;
//! opening such a store removes them once.)
//!
//! Guarantees:
//! - [`Store::append`] is idempotent and atomic: the record's `f` entry is its commit point,
//!   written before its pending entries are removed. sled recovers a prefix of the writes
//!   made, so after a crash a stored record may still have its pending entry; opening the
//!   store finds the record stored by its id and removes that entry. sled's atomic `Batch`
//!   and transactions are not used: each writes and syncs the log buffer twice (`pin_log`).
//! - Damage: a record whose predecessor is missing or damaged on disk is kept out of its
//!   author's chain (stranded) and reported by [`Store::verify_all`]; when the predecessor is
//!   stored again (fetched from a peer), the stranded records rejoin the chain.
//! - Feed order: every stored record gets the next cursor (1, 2, 3, ...) at arrival; cursors
//!   never change and are never reused, so a subscriber resumes from its last cursor. Records
//!   are written under their cursor, so appends go to the end of the tree and the feed is one
//!   range scan. Records from peers are not flushed one by one (they can be fetched again), so
//!   a crash can lose the last of them after a subscriber saw their cursors. To keep those
//!   cursors from being given to other records, cursors are reserved on disk in blocks of
//!   [`CURSOR_BLOCK`] (`m` `cursors_reserved`, flushed before a cursor of a new block is
//!   used), and a store opened after a crash goes on after the reserved block. A store that
//!   was closed (dropped) gives back its unused reservation, so cursors stay contiguous across
//!   clean restarts and jump only after a crash.
//! - Durability: after [`Store::flush`] returns, everything appended before is on disk.
//! - Only records that passed [`attrib_protocol::check_record`] are given to `append`; it adds
//!   the chain rules and the response rules, which need what the store holds.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, RwLock};

use attrib_protocol::{
    ChainHead, ChainPosition, ChainView, ForkProof, MemberKey, Record, RecordError, RecordId,
    chain, check_response,
};

mod index;

use index::{Added, Index};

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
    #[error(
        "store I/O error: {0} (check the data dir's disk: space, permissions; once it is fixed, restart the node, which may refuse writes until then)"
    )]
    Sled(sled::Error),
    /// A stored entry does not decode: the data dir is damaged.
    #[error(
        "store is damaged: {0}; run `attrib verify --all`, or move the data dir aside and restart (the node rebuilds from its peers)"
    )]
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
        /// Whether the proof is new to this store (false: the same conflicting record again).
        new_proof: bool,
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
    /// Guards appends; holds the next cursor and pending counts.
    append_lock: Mutex<AppendState>,
    /// Records by id, chain position and target; written only by appends (which hold
    /// `append_lock` too), after the record's entry.
    index: RwLock<Index>,
    /// Authors by number; given only by appends (which hold `append_lock`).
    authors: RwLock<AuthorNumbers>,
    limits: PendingLimits,
    /// Every record with a cursor up to this is on disk.
    durable: std::sync::atomic::AtomicU64,
    /// One flush at a time; waiters behind it usually find their record already covered.
    flush_lock: tokio::sync::Mutex<()>,
    /// Feed holds ([`Store::hold_feed`]): first held cursor → how many holds start there.
    held: Mutex<std::collections::BTreeMap<u64, usize>>,
    /// The first store operation that failed for sled's reasons (disk full, I/O error), for
    /// `status` and metrics: sled refuses every write after one until the store is opened
    /// again.
    failure: Mutex<Option<String>>,
    /// Whether a feed read has left out a damaged entry yet (logged once).
    damage_logged: std::sync::atomic::AtomicBool,
    /// This store's feed id (see [`Store::feed_id`]).
    feed_id: String,
    /// The tally file beside sled's files (see [`TALLY_FILE`]); none for a temporary store.
    tally: Option<std::path::PathBuf>,
    /// The tally found on open: how many records the store held when it last wrote one.
    tallied: Option<usize>,
}

/// A file in the data dir, outside sled, holding how many records the store held at its last
/// clean close or cursor reservation (each after a flush, so that many were on disk). A store
/// that opens holding fewer has lost records to damage that sled's recovery cannot see (it
/// recovers what reads back, which may be nearly nothing): the open says so, and `verify_all`
/// reports it until the records are back.
pub const TALLY_FILE: &str = "records.tally";

/// Keeps records appended after it was taken out of feed reads until it is dropped (see
/// [`Store::hold_feed`]).
#[must_use = "the hold ends when dropped"]
pub struct FeedHold {
    store: std::sync::Arc<Store>,
    from: u64,
    kept: bool,
}

impl FeedHold {
    /// Keeps the hold for the life of the store: for a record whose flush failed, which may
    /// not be on disk (the feed shows nothing from it on until the node restarts).
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for FeedHold {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        let mut held = self.store.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(&self.from) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.from);
            }
        }
    }
}

/// Most record bytes written as one entry by [`Store::append_batch`] (a record larger than
/// this is an entry of its own): four typical records. A sled insert costs about the same up to
/// this size, so a record costs a third of what it costs alone; larger entries made sled hold
/// more memory (BENCHMARKS.md).
pub const GROUP_BYTES: usize = 1280;

/// Cursors reserved on disk at a time (module docs): a crash skips at most this many.
pub const CURSOR_BLOCK: u64 = 1 << 16;

/// The `m` entry holding the highest reserved cursor.
const CURSORS_RESERVED: &str = "cursors_reserved";

/// The `m` entry holding the store's feed id.
const FEED_ID: &str = "feed_id";

/// What appends need to know without reading the tree; rebuilt from it on open.
struct AppendState {
    next: u64,
    /// Every cursor up to this one may have been given out; it is on disk.
    reserved: u64,
    last_received_us: u64,
    pending_total: usize,
    pending_by_author: HashMap<MemberKey, usize>,
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
    /// Index entries earlier versions kept in sled (id, chain, head, response): removed on open.
    pub(super) const OLD_INDEXES: [u8; 4] = [b'r', b'c', b'h', b'a'];
    pub(super) const PENDING: u8 = b'p';
    pub(super) const PENDING_TARGET: u8 = b't';
    pub(super) const FORK: u8 = b'x';
    pub(super) const EQUIVOCATOR: u8 = b'e';
    pub(super) const META: u8 = b'm';
    pub(super) const AUTHOR: u8 = b'k';

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

    pub(super) fn author(number: u16) -> Vec<u8> {
        tagged(AUTHOR, &[&number.to_be_bytes()])
    }

    /// The first key after every key of this kind (an exclusive range end).
    pub(super) fn end_of(tag: u8) -> Vec<u8> {
        vec![tag + 1]
    }
}

impl Drop for Store {
    /// Gives back the unused part of the cursor reservation, flushes, and writes the tally, so
    /// the next open goes on from the last stored cursor and knows how many records to find.
    fn drop(&mut self) {
        let state = self.lock();
        if state.reserved >= state.next {
            let used = state.next - 1;
            if let Err(e) = self
                .db
                .insert(key::meta(CURSORS_RESERVED), &used.to_be_bytes())
            {
                tracing::warn!(error = %e, "could not give back reserved feed cursors");
            }
        }
        drop(state);
        match self.db.flush() {
            Ok(_) => self.write_tally(),
            Err(e) => tracing::warn!(error = %e, "could not flush the store on close"),
        }
    }
}

impl Store {
    /// Opens (or creates) the store in `dir` with default bounds, building the index from the
    /// records (see the module docs).
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Self::open_with(dir, PendingLimits::default())
    }

    /// Opens (or creates) the store in `dir`. If another handle in this process is still
    /// letting go of the directory (sled's flusher thread outlives a dropped store for a
    /// moment), the lock is retried for up to two seconds before giving up.
    pub fn open_with(dir: &Path, limits: PendingLimits) -> Result<Store, StoreError> {
        Self::from_db(open_db(dir)?, limits, Some(dir.join(TALLY_FILE)))
    }

    /// A store in a temporary directory that is deleted on drop (tests, demo).
    pub fn temporary() -> Result<Store, StoreError> {
        Self::temporary_with(PendingLimits::default())
    }

    /// A temporary store with the given bounds.
    pub fn temporary_with(limits: PendingLimits) -> Result<Store, StoreError> {
        Self::from_db(sled::Config::new().temporary(true).open()?, limits, None)
    }

    fn from_db(
        db: sled::Db,
        limits: PendingLimits,
        tally: Option<std::path::PathBuf>,
    ) -> Result<Store, StoreError> {
        // The first layout kept one tree per index; its trees are named, ours is the default.
        if db.tree_names().iter().any(|n| n.as_ref() == b"records") {
            return Err(StoreError::OldLayout);
        }
        // Index entries an earlier version kept in sled: the index is in memory now.
        for tag in key::OLD_INDEXES {
            let mut removed = 0usize;
            for k in db.scan_prefix([tag]).keys() {
                db.remove(k?)?;
                removed += 1;
            }
            if removed > 0 {
                tracing::info!(removed, kind = %char::from(tag), "removed index entries of an earlier store layout");
            }
        }
        let (mut authors, mut problems) = AuthorNumbers::load(&db)?;
        let built = build_index(&db, &authors, None, |items| {
            items.iter().map(|b| Record::decode(b)).collect()
        })?;
        authors.next = authors.next.max(built.numbers_named);
        problems.extend(built.problems.iter().cloned());
        let tallied = tally.as_deref().and_then(read_tally);
        if let Some(lost) = records_lost(tallied, built.index.len()) {
            tracing::error!("{lost}");
            problems.push(lost);
        }
        if let Some(first) = problems.first() {
            tracing::warn!(
                problems = problems.len(),
                first = %first,
                "store is damaged; run `attrib verify --all`, or move the data dir aside and restart (the node rebuilds from its peers)"
            );
        }
        // Cursors reserved before a crash may have been seen by subscribers: go on after them.
        // (Two crashes in a row can leave a reservation blocks beyond the last record on disk,
        // so any number is taken, unless it is not a number or absurdly large: damage, after
        // which a block beyond the last record is the best guess.)
        let reserved = match db.get(key::meta(CURSORS_RESERVED))? {
            None => 0,
            Some(v) => match cursor_of(&v) {
                Ok(r) if r <= u64::MAX / 2 => r,
                _ => {
                    tracing::warn!(
                        "the store's cursor reservation is damaged; going on a block after the last record"
                    );
                    built.last_cursor.saturating_add(CURSOR_BLOCK)
                }
            },
        };
        let (next, last_received_us) = (
            built.last_cursor.max(reserved).saturating_add(1),
            built.last_received_us,
        );
        // A fork proof is written before its equivocator mark; complete the mark.
        for entry in db.scan_prefix([key::FORK]) {
            let (k, v) = entry?;
            let proof = ForkProof::decode(&v)
                .map_err(|e| StoreError::Corrupt(format!("fork proof: {e}")))?;
            if !db.contains_key(key::equivocator(&proof.author()))? {
                db.insert(key::equivocator(&proof.author()), &k[1..])?;
            }
        }
        let feed_id = match db.get(key::meta(FEED_ID))? {
            Some(id) => hex::encode(id),
            None => {
                let id: [u8; 16] = rand::random();
                db.insert(key::meta(FEED_ID), &id[..])?;
                db.flush()?;
                hex::encode(id)
            }
        };
        let mut pending_by_author: HashMap<MemberKey, usize> = HashMap::new();
        let mut pending_total = 0;
        for k in db.scan_prefix([key::PENDING]).keys() {
            let k = k?;
            *pending_by_author
                .entry(MemberKey(key32(&k[1..33.min(k.len())])?))
                .or_default() += 1;
            pending_total += 1;
        }
        let store = Store {
            db,
            limits,
            durable: std::sync::atomic::AtomicU64::new(next - 1),
            flush_lock: tokio::sync::Mutex::new(()),
            held: Mutex::new(Default::default()),
            failure: Mutex::new(None),
            damage_logged: Default::default(),
            feed_id,
            tally,
            tallied,
            append_lock: Mutex::new(AppendState {
                next,
                reserved,
                last_received_us,
                pending_total,
                pending_by_author,
            }),
            index: RwLock::new(built.index),
            authors: RwLock::new(authors),
        };
        // Records left pending by a write the process did not finish may be storable now, or
        // already stored (then their pending entries go).
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
        let flushed = self.db.flush_async().await.map_err(StoreError::from);
        self.noted(flushed)?;
        self.durable.fetch_max(upto, Ordering::AcqRel);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AppendState> {
        self.append_lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The index for reading. Take it for one statement, never across another store call: a
    /// thread that holds a read guard and asks again can deadlock behind a waiting writer.
    fn index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn index_mut(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Authors by number, for reading; like [`Store::index`], never held across another store
    /// call.
    fn authors(&self) -> std::sync::RwLockReadGuard<'_, AuthorNumbers> {
        self.authors.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Gives each new author among `records` a number. Its `k` entry is written before the
    /// record entries that use it, and sled recovers a prefix of the writes made, so a stored
    /// entry's numbers are always on disk. Called under the append lock.
    fn number_authors<'r>(
        &self,
        records: impl IntoIterator<Item = &'r Record> + Clone,
    ) -> Result<(), StoreError> {
        let authors = self.authors();
        if records
            .clone()
            .into_iter()
            .all(|r| authors.numbers.contains_key(&r.author()))
        {
            return Ok(());
        }
        drop(authors);
        let mut authors = self.authors.write().unwrap_or_else(|e| e.into_inner());
        for author in records.into_iter().map(Record::author) {
            if authors.numbers.contains_key(&author) {
                continue;
            }
            let Ok(number) = u16::try_from(authors.next) else {
                return Ok(());
            };
            self.db
                .insert(key::author(number), &author.as_bytes()[..])?;
            authors.next += 1;
            authors.keys.insert(number, author);
            authors.numbers.insert(author, number);
        }
        Ok(())
    }

    /// Appends a checked record (see the module docs). Idempotent.
    pub fn append(&self, record: Record) -> Result<Appended, StoreError> {
        let mut state = self.lock();
        let appended = self.append_locked(&mut state, record);
        self.noted(appended)
    }

    /// Appends a record this node has just signed as its author's next record, only if it
    /// still is: when a record of the same author at its seq arrived after the signing (from a
    /// second signer, or the chain coming back from peers), the new one is not stored (`None`),
    /// so the node never keeps, or serves, two of its own records at one height.
    pub fn append_if_next(&self, record: Record) -> Result<Option<Appended>, StoreError> {
        let mut state = self.lock();
        if self.pending_at_seq(&state, &record) || !self.index().is_next(&record) {
            return Ok(None);
        }
        let appended = self.append_locked(&mut state, record);
        self.noted(appended).map(Some)
    }

    /// Passes `result` on, noting a sled failure in it (see [`Store::failure`]).
    fn noted<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(e @ StoreError::Sled(_)) = &result {
            self.failure
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert_with(|| e.to_string());
        }
        result
    }

    /// The first append, flush or write that failed for sled's reasons since the store was
    /// opened, if any: the store refuses writes until the node restarts (with the cause
    /// fixed).
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn append_locked(
        &self,
        state: &mut AppendState,
        record: Record,
    ) -> Result<Appended, StoreError> {
        // The next record of its author's chain cannot be stored yet; anything else may be.
        let next = self.index().is_next(&record);
        if !next && self.contains(&record.id())? {
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
            Placement::Fork(proof, cursor, new_proof) => {
                // Kept beside the chain: what waits for it (responses, the rest of its branch)
                // is stored now too.
                if cursor.is_some() {
                    self.release_pending(state, &record)?;
                }
                Ok(Appended::Fork {
                    proof,
                    cursor,
                    new_proof,
                })
            }
            Placement::Wait(missing) => {
                let author = record.author();
                if !already_pending {
                    let head = self.index().head(&author).map_or(0, |h| h.seq);
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

    /// Appends checked records in order, as [`Store::append`] does one by one, with one result
    /// per record. Runs of records that each extend their author's chain (the usual catch-up
    /// answer) are written several to an entry (up to [`GROUP_BYTES`]): one sled insert instead
    /// of one per record, which is most of what a record costs to store. Such an entry is
    /// durable as a whole or not at all. An error of the store itself (I/O) ends the batch.
    pub fn append_batch(
        &self,
        records: Vec<Record>,
    ) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
        let appended = self.append_batch_unnoted(records);
        self.noted(appended)
    }

    fn append_batch_unnoted(
        &self,
        records: Vec<Record>,
    ) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
        let mut state = self.lock();
        let mut out = Vec::with_capacity(records.len());
        let mut run: Vec<Record> = Vec::new();
        let mut run_bytes = 0;
        // The run's last record of each author in it: the head the next one must extend.
        let mut run_heads: HashMap<MemberKey, (u64, RecordId)> = HashMap::new();
        for record in records {
            if !run.is_empty() && run_bytes + record.as_bytes().len() > GROUP_BYTES {
                out.extend(self.write_run(&mut state, &mut run)?);
                run_heads.clear();
                run_bytes = 0;
            }
            if self.extends_run(&state, &record, &run, &run_heads)? {
                run_bytes += record.as_bytes().len();
                run_heads.insert(record.author(), (record.seq(), record.id()));
                run.push(record);
                continue;
            }
            out.extend(self.write_run(&mut state, &mut run)?);
            run_heads.clear();
            run_bytes = 0;
            match self.append_locked(&mut state, record) {
                Err(e @ (StoreError::Sled(_) | StoreError::Corrupt(_))) => return Err(e),
                other => out.push(other),
            }
        }
        out.extend(self.write_run(&mut state, &mut run)?);
        Ok(out)
    }

    /// Whether `record` can join the run of chain extensions to be written together: it is
    /// its author's next record (after the index's head, or after the run's last record of
    /// that author), responds to nothing or to a stored claim it may respond to, and has
    /// nothing to do with a pending record: none pending at its place in the chain (itself or
    /// a fork of it) and none waiting for it. Anything else takes the one-by-one path, so
    /// pending records are placed and released exactly as by [`Store::append`].
    fn extends_run(
        &self,
        state: &AppendState,
        record: &Record,
        run: &[Record],
        run_heads: &HashMap<MemberKey, (u64, RecordId)>,
    ) -> Result<bool, StoreError> {
        let next = match run_heads.get(&record.author()) {
            Some((seq, id)) => {
                seq.checked_add(1) == Some(record.seq()) && record.prev() == Some(*id)
            }
            None => self.index().is_next(record),
        };
        if !next {
            return Ok(false);
        }
        if state.pending_total > 0
            && (self.pending_at_seq(state, record) || !self.waiting_for(record)?.is_empty())
        {
            return Ok(false);
        }
        let Some(target) = record.body().target() else {
            return Ok(true);
        };
        let target = match run.iter().find(|r| r.id() == target) {
            Some(r) => Some(r.clone()),
            None => self.get(&target)?,
        };
        Ok(target.is_some_and(|t| check_response(record, &t).is_ok()))
    }

    /// Writes a run from [`Store::extends_run`] as one entry (its commit point) and indexes
    /// it. Empties `run`.
    fn write_run(
        &self,
        state: &mut AppendState,
        run: &mut Vec<Record>,
    ) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
        if run.is_empty() {
            return Ok(Vec::new());
        }
        let (first, last) = (state.next, state.next + run.len() as u64 - 1);
        if last > state.reserved {
            self.reserve_cursors(state, first)?;
        }
        let mut received = Vec::with_capacity(run.len());
        for _ in run.iter() {
            let us = crate::now_us().max(state.last_received_us + 1);
            state.last_received_us = us;
            received.push(us);
        }
        self.number_authors(run.iter())?;
        let entry = {
            let authors = self.authors();
            let items: Vec<NewItem> = run
                .iter()
                .zip(&received)
                .map(|(r, us)| NewItem {
                    received_us: *us,
                    extends_head: true,
                    form: authors.stored_form(r),
                })
                .collect();
            encode_entry(&items)
        };
        self.db.insert(key::feed(last), entry)?;
        state.next = last + 1;
        let mut misplaced = None;
        {
            let mut index = self.index_mut();
            index.add_group(first, last);
            // All indexed before any mismatch is reported: the entry is on disk.
            for (cursor, record) in (first..).zip(run.iter()) {
                if !matches!(index.add(cursor, record, true), Added::Linked) {
                    misplaced.get_or_insert((cursor, record.id()));
                }
            }
        }
        if let Some((cursor, id)) = misplaced {
            run.clear();
            return Err(StoreError::Corrupt(format!(
                "record {id} (cursor {cursor}) was stored as its author's next record but does not extend its chain"
            )));
        }
        // Nothing pending waits for a run's records (`extends_run`), so nothing is released.
        let out = (first..=last)
            .map(|cursor| {
                Ok(Appended::Stored {
                    cursor,
                    released: Vec::new(),
                })
            })
            .collect();
        run.clear();
        Ok(out)
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
        // Whether a record to be stored extends its author's chain (else it goes beside it).
        let extends_head = match self.classify_fast(record) {
            ChainPosition::Duplicate => return Ok(Placement::Duplicate),
            // The other side of an author's fork goes on: kept beside the chain as the record
            // it extends is, so that every node holds the author's later records whichever
            // side it met first (it would otherwise wait for a gap that never fills).
            ChainPosition::Gap { .. } if self.extends_a_branch(record)? => false,
            ChainPosition::Gap { from, to } => {
                return Ok(Placement::Wait(Missing::Chain {
                    author: record.author(),
                    from,
                    to,
                }));
            }
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
                // A record that is not kept can arrive again (its id is not stored, so it is
                // no duplicate); its proof is then held already.
                let new_proof = !self.db.contains_key(key::fork(&proof_id))?;
                if new_proof {
                    self.db.insert(key::fork(&proof_id), proof.encode())?;
                    self.db
                        .insert(key::equivocator(&proof.author()), proof_id.as_bytes())?;
                }
                let cursor = if stored {
                    Some(self.write(state, record, false, was_pending)?)
                } else {
                    if was_pending {
                        self.unpend(state, record)?;
                    }
                    None
                };
                return Ok(Placement::Fork(proof, cursor, new_proof));
            }
            ChainPosition::Next => true,
        };
        match &target {
            Some((t, None)) => return Ok(Placement::Wait(Missing::Target(*t))),
            Some((_, Some(t))) => check_response(record, t)?,
            None => {}
        }
        let cursor = self.write(state, record, extends_head, was_pending)?;
        Ok(Placement::Stored(cursor))
    }

    /// Whether a record of `record`'s author at its seq (itself or another) is pending.
    fn pending_at_seq(&self, state: &AppendState, record: &Record) -> bool {
        state.pending_total > 0
            && self
                .db
                .scan_prefix(key::pending(&record.author(), record.seq(), None))
                .next()
                .is_some()
    }

    /// Whether `record` extends a record its author forked from the chain: its `prev` is the
    /// author's stored record at the seq before, and the author is known to have equivocated
    /// (so it is no record stranded by a damaged entry). Called for a record beyond the
    /// contiguous head, so a stored record at the seq before is beside the chain.
    fn extends_a_branch(&self, record: &Record) -> Result<bool, StoreError> {
        let author = record.author();
        let (Some(prev), Some(before)) = (record.prev(), record.seq().checked_sub(1)) else {
            return Ok(false);
        };
        Ok(self.is_equivocator(&author)?
            && self
                .get(&prev)?
                .is_some_and(|p| p.author() == author && p.seq() == before))
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
                // Stored already (the process stopped between storing it and removing its
                // pending entry): only the pending entry goes.
                if self.contains(&record.id())? {
                    self.unpend(state, &record)?;
                    continue;
                }
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
                    Ok(Placement::Fork(_, cursor, _)) => {
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

    /// Writes a record (its commit point), indexes it, then removes its pending entries if it
    /// was pending; returns its cursor.
    fn write(
        &self,
        state: &mut AppendState,
        record: &Record,
        extends_head: bool,
        was_pending: bool,
    ) -> Result<u64, StoreError> {
        let cursor = state.next;
        if cursor > state.reserved {
            self.reserve_cursors(state, cursor)?;
        }
        let received_us = crate::now_us().max(state.last_received_us + 1);
        self.number_authors([record])?;
        let form = self.authors().stored_form(record);
        self.db.insert(
            key::feed(cursor),
            encode_entry(&[NewItem {
                received_us,
                extends_head,
                form,
            }]),
        )?;
        // The record is stored: its cursor is taken and it is found from now on, whatever
        // happens to the pending entries below.
        state.next += 1;
        state.last_received_us = received_us;
        let added = self.index_mut().add(cursor, record, extends_head);
        if was_pending {
            unpend(&self.db, record)?;
            state.pending_removed(&record.author());
        }
        match added {
            Added::Linked | Added::Beside => Ok(cursor),
            // The chain rules just placed it; the index disagrees.
            Added::Stranded => Err(StoreError::Corrupt(format!(
                "record {} (cursor {cursor}) was stored as its author's next record but does not link to the head",
                record.id()
            ))),
            Added::Twice { first } => Err(StoreError::Corrupt(format!(
                "record {} was stored twice, at cursors {first} and {cursor}",
                record.id()
            ))),
        }
    }

    /// Reserves the block of cursors starting at `from` and makes the reservation durable
    /// before any of them is given out (module docs). Once per [`CURSOR_BLOCK`] appends.
    fn reserve_cursors(&self, state: &mut AppendState, from: u64) -> Result<(), StoreError> {
        let reserved = from.saturating_add(CURSOR_BLOCK - 1);
        self.db
            .insert(key::meta(CURSORS_RESERVED), &reserved.to_be_bytes())?;
        self.db.flush()?;
        state.reserved = reserved;
        self.write_tally();
        Ok(())
    }

    /// How many records fewer the store holds than its tally said when it opened (damage that
    /// sled's recovery could not see; see [`TALLY_FILE`]), while any are still missing: the
    /// node fetches what its peers hold again. `None` when none are.
    pub fn records_missing(&self) -> Option<usize> {
        let held = self.index().len();
        self.tallied.filter(|t| *t > held).map(|t| t - held)
    }

    /// Writes the tally file (after a flush: that many records are on disk). A failure is
    /// logged: the tally only helps find damage. The store writes it when it closes and at
    /// each cursor reservation; a node calls it after its last flush too, since a process that
    /// exits may not wait for the store to close.
    pub fn write_tally(&self) {
        let Some(path) = &self.tally else { return };
        let count = self.index().len().max(self.tallied.unwrap_or(0));
        let tmp = path.with_extension("tmp");
        let written =
            std::fs::write(&tmp, format!("{count}\n")).and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "could not write the store's record tally");
        }
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
        let set = self.db.insert(key::meta(name), &value.to_be_bytes());
        self.noted(set.map(drop).map_err(StoreError::from))
    }

    /// Ties the store to the network whose records it holds. A record's signature covers
    /// the network id (the roster's hash), so records stored for one roster are invalid under
    /// another. A store without an id takes `id`; one that has another id returns it
    /// (the caller must not run this network on it).
    pub fn bind_network(&self, id: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        let key = key::meta("network_id");
        match self.db.get(&key)? {
            Some(held) if held.as_ref() != id => Ok(Some(held.to_vec())),
            Some(_) => Ok(None),
            None => {
                let bound = self.db.insert(key, &id[..]);
                self.noted(bound.map(|_| None).map_err(StoreError::from))
            }
        }
    }

    /// The ids of every stored record (in id order).
    pub fn record_ids(&self) -> Vec<RecordId> {
        self.index().ids().map(|(id, _)| *id).collect()
    }

    /// The stored records whose id starts with the hex digits `prefix` (at most `limit`).
    pub fn find_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<RecordId>, StoreError> {
        if !prefix.is_ascii() || prefix.len() > 64 {
            return Ok(Vec::new());
        }
        let Ok(bytes) = hex::decode(&prefix[..prefix.len() - prefix.len() % 2]) else {
            return Ok(Vec::new());
        };
        let lower = prefix.to_ascii_lowercase();
        let mut start = [0u8; 32];
        start[..bytes.len()].copy_from_slice(&bytes);
        Ok(self
            .index()
            .ids_from(RecordId(start))
            .take_while(|id| id.as_bytes().starts_with(&bytes))
            .filter(|id| id.to_hex().starts_with(&lower))
            .take(limit)
            .copied()
            .collect())
    }

    /// Checks the whole store as it is on disk: every record decodes, passes the field rules
    /// and its signature (batch-verified); every author's records link into one chain, except
    /// the conflicting side of a fork whose proof is held; every record the running node
    /// indexes is still on disk. Returns what is damaged, one line per problem (at most 1,000).
    pub fn verify_all(
        &self,
        roster: &attrib_protocol::Roster,
    ) -> Result<IntegrityReport, StoreError> {
        // Records stored while the disk is read are checked only up to here, and the author
        // numbers are read after it: every number an entry up to here names is on disk by
        // then (written before the entry), even if a new author's record comes in meanwhile.
        let upto = self.last_cursor();
        // The author numbers as the disk has them, not as this process holds them.
        let (authors, mut problems) = AuthorNumbers::load(&self.db)?;
        let built = build_index(&self.db, &authors, Some(upto), |items| {
            attrib_protocol::check_records(items, roster, u64::MAX / 2)
        })?;
        problems.extend(built.problems);
        problems.extend(records_lost(self.tallied, built.index.len()));
        for (author, seq, cursor) in built.index.forks_beside() {
            if !self.is_equivocator(author)? {
                problems.push(format!(
                    "record at cursor {cursor} (seq {seq} of {author}) is kept beside its author's chain, but no fork proof of that author is held"
                ));
            }
        }
        let live: Vec<(RecordId, u64)> = self
            .index()
            .ids()
            .filter(|(_, c)| **c <= upto)
            .map(|(i, c)| (*i, *c))
            .collect();
        for (id, cursor) in live {
            if built.index.cursor(&id) != Some(cursor) {
                problems.push(format!(
                    "record {id} (cursor {cursor}) is missing from disk or damaged there"
                ));
            }
        }
        problems.truncate(1000);
        Ok(IntegrityReport {
            records_checked: built.entries,
            problems,
        })
    }

    /// Whether a record with this id is stored.
    pub fn contains(&self, id: &RecordId) -> Result<bool, StoreError> {
        Ok(self.index().cursor(id).is_some())
    }

    /// The record with this id, if stored (pending records are not returned).
    pub fn get(&self, id: &RecordId) -> Result<Option<Record>, StoreError> {
        Ok(self.get_stored(id)?.map(|s| s.record))
    }

    /// The record with its feed cursor and arrival time.
    pub fn get_stored(&self, id: &RecordId) -> Result<Option<Stored>, StoreError> {
        let cursor = self.index().cursor(id);
        match cursor {
            None => Ok(None),
            Some(c) => self.stored_at(c),
        }
    }

    /// The record at a feed cursor.
    fn stored_at(&self, cursor: u64) -> Result<Option<Stored>, StoreError> {
        let last = self.index().entry_of(cursor);
        let Some(v) = self.db.get(key::feed(last))? else {
            return Ok(None);
        };
        match entry_records(last, &v)?
            .into_iter()
            .find(|(c, _)| *c == cursor)
        {
            Some((_, item)) => decode_stored(cursor, &v, &item, &self.authors()).map(Some),
            None => Ok(None),
        }
    }

    fn at_cursor(&self, cursor: u64) -> Result<Option<Record>, StoreError> {
        Ok(self.stored_at(cursor)?.map(|s| s.record))
    }

    /// The records at these cursors, in this order (skipping any not on disk).
    fn at_cursors(&self, cursors: &[u64]) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::with_capacity(cursors.len());
        for c in cursors {
            out.extend(self.at_cursor(*c)?);
        }
        Ok(out)
    }

    /// Records in feed order with cursor > `after`, at most `limit`.
    pub fn feed_after(&self, after: u64, limit: usize) -> Result<Vec<Stored>, StoreError> {
        let mut out = Vec::new();
        let start = key::feed(after.saturating_add(1));
        let authors = self.authors();
        for entry in self.db.range(start..key::end_of(key::FEED)) {
            let (k, v) = entry?;
            let records = match entry_records(cursor_of(&k[1..])?, &v) {
                Ok(r) => r,
                Err(e) => {
                    self.skipped_damage(&e);
                    continue;
                }
            };
            for (cursor, item) in records {
                if out.len() >= limit {
                    return Ok(out);
                }
                if cursor > after {
                    match decode_stored(cursor, &v, &item, &authors) {
                        Ok(stored) => out.push(stored),
                        Err(e) => self.skipped_damage(&e),
                    }
                }
            }
        }
        Ok(out)
    }

    /// A damaged record entry met by a feed read is left out, so the damage does not stop
    /// every reader at that cursor (the record itself is fetched again from peers and comes
    /// under a new cursor); the first one is logged, and `attrib verify --all` lists them all.
    fn skipped_damage(&self, error: &StoreError) {
        use std::sync::atomic::Ordering;
        if !self.damage_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(%error, "a damaged record entry is left out of the feed; run `attrib verify --all` to list the damage");
        }
    }

    /// A random id given to this store when it was created: cursors mean something only
    /// together with it. A data dir that was wiped and rebuilt gets a new one, and its cursors
    /// start again, so a subscriber that sees another id reads again from the start (skipping
    /// records it holds, by id) instead of resuming after a cursor that now names other
    /// records.
    pub fn feed_id(&self) -> &str {
        &self.feed_id
    }

    /// The last assigned feed cursor (0 if empty).
    pub fn last_cursor(&self) -> u64 {
        self.lock().next - 1
    }

    /// Holds the feed before a record that is acknowledged only once durable (a local
    /// submission): every record appended from now on stays out of feed reads
    /// ([`Store::held_from`]) until the hold is dropped, after the flush. Otherwise a
    /// subscriber could see a record that a crash then loses, and the state's next record
    /// would reuse its place in the chain: two signed records at one height, a fork proof
    /// against our own state in the subscriber's hands.
    pub fn hold_feed(self: &std::sync::Arc<Self>) -> FeedHold {
        // Under the append lock, so that every later append gets a cursor from `from` on.
        let state = self.lock();
        let from = state.next;
        *self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(from)
            .or_insert(0) += 1;
        drop(state);
        FeedHold {
            store: self.clone(),
            from,
            kept: false,
        }
    }

    /// The first cursor that feed reads must not show yet, if a hold is on. Read it after the
    /// entries it filters: a hold is taken before the records it covers are written.
    pub fn held_from(&self) -> Option<u64> {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .next()
            .copied()
    }

    /// Records whose target is `claim` (responses and revisions), in feed order.
    pub fn responses(&self, claim: &RecordId) -> Result<Vec<Record>, StoreError> {
        let cursors = self.index().responses(claim).to_vec();
        self.at_cursors(&cursors)
    }

    /// The author's records with `from <= seq <= to` that are stored, at most `limit`, as
    /// they may be given to peers: without records under a feed hold (a local submission not
    /// yet on disk, see [`Store::hold_feed`]).
    pub fn chain_range(
        &self,
        author: &MemberKey,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let mut cursors = self.index().chain_range(author, from, to, limit);
        // Read after the index (see `held_from`).
        if let Some(held) = self.held_from() {
            cursors.retain(|c| *c < held);
        }
        self.at_cursors(&cursors)
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

    /// All contiguous chain heads as they may be told to peers: where a head is under a feed
    /// hold (a local submission not yet on disk, see [`Store::hold_feed`]), the last record
    /// before it. A peer told of a record that a crash then loses would hold the state's
    /// record at a height where the restarted node signs another.
    pub fn heads(&self) -> Result<Vec<(MemberKey, ChainHead)>, StoreError> {
        let mut heads = self.index().heads();
        // Read after the index (see `held_from`).
        if let Some(held) = self.held_from() {
            let mut shown = Vec::with_capacity(heads.len());
            for (author, mut head) in heads {
                loop {
                    let cursor = self.index().cursor(&head.id);
                    let Some(c) = cursor.filter(|c| *c >= held) else {
                        shown.push((author, head));
                        break;
                    };
                    let (Some(record), Some(seq)) = (self.at_cursor(c)?, head.seq.checked_sub(1))
                    else {
                        break;
                    };
                    match record.prev() {
                        Some(prev) if seq > 0 => head = ChainHead { seq, id: prev },
                        _ => break,
                    }
                }
            }
            heads = shown;
        }
        heads.sort_unstable_by_key(|(author, _)| *author);
        Ok(heads)
    }

    /// SHA-256 over the sorted ids of all stored records.
    pub fn record_set_digest(&self) -> Result<RecordId, StoreError> {
        let all: Vec<u8> = self
            .index()
            .ids()
            .flat_map(|(id, _)| id.as_bytes())
            .copied()
            .collect();
        Ok(RecordId::of_encoding(&all))
    }

    /// Counts for status.
    pub fn counts(&self) -> Counts {
        let pending = self.lock().pending_total;
        let records = self.index().len();
        Counts {
            records,
            pending,
            forks: self.db.scan_prefix([key::FORK]).keys().count(),
        }
    }

    /// The chain rules of [`chain::classify`], with a fast path for the common case (the record
    /// extends the contiguous head and nothing is stored at or above its seq) that reads only
    /// the index.
    fn classify_fast(&self, record: &Record) -> ChainPosition {
        if self.index().is_next(record) {
            return ChainPosition::Next;
        }
        chain::classify(record, self)
    }

    /// The author's record at `seq`: the one on its chain, or, where the chain has not
    /// reached `seq`, the first stored beside it.
    pub fn chain_record(&self, author: &MemberKey, seq: u64) -> Result<Option<Record>, StoreError> {
        self.at_seq(author, seq)
    }

    fn at_seq(&self, author: &MemberKey, seq: u64) -> Result<Option<Record>, StoreError> {
        let cursor = self.index().at(author, seq);
        match cursor {
            None => Ok(None),
            Some(c) => self.at_cursor(c),
        }
    }

    /// The author's contiguous chain head.
    pub fn chain_head(&self, author: &MemberKey) -> Result<Option<ChainHead>, StoreError> {
        Ok(self.index().head(author))
    }
}

enum Placement {
    Stored(u64),
    Duplicate,
    Fork(ForkProof, Option<u64>, bool),
    Wait(Missing),
}

/// The store's view of chains for the protocol's chain rules. Store errors read as "not held"
/// here; they surface on the next write.
impl ChainView for Store {
    fn head(&self, author: &MemberKey) -> Option<ChainHead> {
        self.index().head(author)
    }
    fn at(&self, author: &MemberKey, seq: u64) -> Option<Record> {
        self.at_seq(author, seq).ok().flatten()
    }
}

/// The index built from the record entries on disk, with what did not fit.
struct Built {
    index: Index,
    /// Records read (an entry may hold several).
    entries: usize,
    last_cursor: u64,
    last_received_us: u64,
    /// One past the highest author number a record entry names: numbers from here on are
    /// free, even if a `k` entry was lost.
    numbers_named: u32,
    /// Author numbers records name that the store does not hold: how many records, and the
    /// first and last cursor (reported as one problem each).
    lost_numbers: std::collections::BTreeMap<u16, (usize, u64, u64)>,
    /// Entries that do not decode (or that `check` refused), records stored twice and
    /// records that do not link into their author's chain, one line each (at most 1,000).
    problems: Vec<String>,
}

/// Builds the index from the `f` entries in one scan. `check` turns a batch of record
/// encodings into records: decoding alone when the store opens, full checks (signatures
/// included) when the store is verified. Entries it refuses are reported, not indexed.
fn build_index(
    db: &sled::Tree,
    authors: &AuthorNumbers,
    upto: Option<u64>,
    check: impl Fn(&[&[u8]]) -> Vec<Result<Record, RecordError>>,
) -> Result<Built, StoreError> {
    const BATCH: usize = 512;
    let mut built = Built {
        index: Index::default(),
        entries: 0,
        last_cursor: 0,
        last_received_us: 0,
        numbers_named: 0,
        lost_numbers: Default::default(),
        problems: Vec::new(),
    };
    // Each record with its cursor and its entry.
    let mut batch: Vec<(u64, sled::IVec, EntryItem)> = Vec::with_capacity(BATCH);
    let flush = |batch: &mut Vec<(u64, sled::IVec, EntryItem)>, built: &mut Built| {
        // Records whose bytes cannot be put back (an author number the store does not hold)
        // are reported here and left out of the check.
        let mut readable = Vec::with_capacity(batch.len());
        for (cursor, v, item) in batch.iter() {
            if let Some(n) = item.author_number(v) {
                built.numbers_named = built.numbers_named.max(u32::from(n) + 1);
            }
            match authors.record_bytes(v, item) {
                Ok(bytes) => readable.push((*cursor, item, bytes)),
                Err(EntryDamage::LostNumber(n)) => {
                    let lost = built.lost_numbers.entry(n).or_insert((0, *cursor, *cursor));
                    lost.0 += 1;
                    lost.2 = *cursor;
                }
                Err(e) => built.problem(format!("record at cursor {cursor}: {e}")),
            }
        }
        let items: Vec<&[u8]> = readable.iter().map(|(_, _, b)| b.as_ref()).collect();
        for ((cursor, item, _), (bytes, checked)) in
            readable.iter().zip(items.iter().zip(check(&items)))
        {
            let problem = match checked {
                Ok(record) => match built.index.add(*cursor, &record, item.extends_head) {
                    Added::Twice { first } => format!(
                        "record {} is stored twice, at cursors {first} and {cursor}",
                        record.id()
                    ),
                    // Stranded records may rejoin later in the scan; reported at the end.
                    Added::Linked | Added::Beside | Added::Stranded => continue,
                },
                Err(e) => format!(
                    "record at cursor {cursor} (id {}): {e}",
                    RecordId::of_encoding(bytes)
                ),
            };
            built.problem(problem);
        }
        batch.clear();
    };
    let end = upto.map_or(key::end_of(key::FEED), |c| key::feed(c.saturating_add(1)));
    for entry in db.range(key::feed(0)..end) {
        let (k, v) = entry?;
        let last = cursor_of(&k[1..])?;
        built.last_cursor = last;
        let records = match entry_records(last, &v) {
            Ok(r) => r,
            Err(e) => {
                built.entries += 1;
                built.problem(match e {
                    StoreError::Corrupt(what) => what,
                    other => other.to_string(),
                });
                continue;
            }
        };
        built.entries += records.len();
        if let (Some((first, _)), Some((_, item))) = (records.first(), records.last()) {
            built.index.add_group(*first, last);
            built.last_received_us = item.received_us;
        }
        for (cursor, item) in records {
            batch.push((cursor, v.clone(), item));
            if batch.len() == BATCH {
                flush(&mut batch, &mut built);
            }
        }
    }
    flush(&mut batch, &mut built);
    for (n, (count, first, last)) in std::mem::take(&mut built.lost_numbers) {
        built.problem(format!(
            "author number {n} is not in the store (its entry is lost): {count} record(s) at cursors {first}..={last} name it and cannot be read; the node fetches that author's records again from its peers"
        ));
    }
    // Records that stay stranded, unless their author is a known equivocator (whose records
    // may extend either side of a fork).
    let stranded: Vec<_> = built.index.stranded().collect();
    for s in stranded {
        if !db.contains_key(key::equivocator(&s.author))? {
            built.problem(s.to_string());
        }
    }
    Ok(built)
}

impl Built {
    /// Notes a problem (the first 1,000 are kept).
    fn problem(&mut self, p: String) {
        if self.problems.len() < 1000 {
            self.problems.push(p);
        }
    }
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

/// A record entry (`f` value) holds one record, or a group of records with consecutive
/// cursors (written together by [`Store::append_batch`]), under the last cursor. One record:
/// arrival time (µs, 8 bytes) ‖ flags (1 byte) ‖ the record's bytes. A group: for each record,
/// arrival time ‖ flags (bit 1 set) ‖ length (4 bytes) ‖ the record's bytes. Flags: bit 0, the
/// record extended its author's contiguous head; bit 1, [`GROUPED`]; bit 2, [`NUMBERED`].
const ENTRY_HEADER: usize = 9;
const GROUPED: u8 = 2;
/// The record's bytes name its author by number: version ‖ number (2 bytes) ‖ the rest, in
/// place of version ‖ author key (32 bytes) ‖ the rest. The `k` entry gives the key back.
const NUMBERED: u8 = 4;
/// Where a record's author key is in its encoding (after the version byte).
const AUTHOR_AT: std::ops::Range<usize> = 1..33;

/// Authors by number (`k` entries; see [`NUMBERED`]).
#[derive(Default)]
struct AuthorNumbers {
    keys: HashMap<u16, MemberKey>,
    numbers: HashMap<MemberKey, u16>,
    /// The next number to give; past `u16::MAX`, records keep their author's key.
    next: u32,
}

impl AuthorNumbers {
    /// Reads the `k` entries; a damaged one is reported (its records then are too) and its
    /// number is not given again.
    fn load(db: &sled::Tree) -> Result<(AuthorNumbers, Vec<String>), StoreError> {
        let mut authors = AuthorNumbers::default();
        let mut problems = Vec::new();
        for entry in db.scan_prefix([key::AUTHOR]) {
            let (k, v) = entry?;
            let Ok(number) = <[u8; 2]>::try_from(&k[1..]).map(u16::from_be_bytes) else {
                problems.push(format!("author number entry {k:?} has a damaged key"));
                continue;
            };
            authors.next = authors.next.max(u32::from(number) + 1);
            match key32(&v) {
                Ok(key) => {
                    authors.keys.insert(number, MemberKey(key));
                    authors.numbers.insert(MemberKey(key), number);
                }
                Err(_) => problems.push(format!("author number {number}'s entry is damaged")),
            }
        }
        Ok((authors, problems))
    }

    /// The record's bytes as an entry holds them: its author by number when it has one.
    fn stored_form<'r>(&self, record: &'r Record) -> (u8, std::borrow::Cow<'r, [u8]>) {
        let bytes = record.as_bytes();
        match self.numbers.get(&record.author()) {
            Some(n) if bytes.get(AUTHOR_AT) == Some(&record.author().as_bytes()[..]) => {
                let mut v = Vec::with_capacity(bytes.len() - AUTHOR_AT.len() + 2);
                v.push(bytes[0]);
                v.extend_from_slice(&n.to_be_bytes());
                v.extend_from_slice(&bytes[AUTHOR_AT.end..]);
                (NUMBERED, v.into())
            }
            _ => (0, bytes.into()),
        }
    }

    /// A record's bytes from an entry: its author key put back if the entry numbers it.
    fn record_bytes<'v>(
        &self,
        v: &'v [u8],
        item: &EntryItem,
    ) -> Result<std::borrow::Cow<'v, [u8]>, EntryDamage> {
        let stored = &v[item.bytes.clone()];
        if !item.numbered {
            return Ok(stored.into());
        }
        let (Some(version), Some(number)) = (stored.first(), item.author_number(v)) else {
            return Err(EntryDamage::TooShort);
        };
        let key = self
            .keys
            .get(&number)
            .ok_or(EntryDamage::LostNumber(number))?;
        let mut bytes = Vec::with_capacity(stored.len() - 2 + AUTHOR_AT.len());
        bytes.push(*version);
        bytes.extend_from_slice(key.as_bytes());
        bytes.extend_from_slice(&stored[3..]);
        Ok(bytes.into())
    }
}

/// Why a record's bytes cannot be read back from its entry.
#[derive(Debug, Clone, Copy)]
enum EntryDamage {
    TooShort,
    /// It names an author number whose `k` entry is not on disk.
    LostNumber(u16),
}

impl std::fmt::Display for EntryDamage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EntryDamage::TooShort => f.write_str("is too short"),
            EntryDamage::LostNumber(n) => {
                write!(f, "names author number {n}, which the store does not hold")
            }
        }
    }
}

/// One record to write into an entry.
struct NewItem<'r> {
    received_us: u64,
    extends_head: bool,
    /// [`NUMBERED`] or 0, and the bytes to store ([`AuthorNumbers::stored_form`]).
    form: (u8, std::borrow::Cow<'r, [u8]>),
}

/// One record in an entry: arrival time, flags and where its stored bytes are in the entry.
#[derive(Debug, Clone)]
struct EntryItem {
    received_us: u64,
    extends_head: bool,
    numbered: bool,
    bytes: std::ops::Range<usize>,
}

impl EntryItem {
    /// The author number its bytes name, if they name one.
    fn author_number(&self, v: &[u8]) -> Option<u16> {
        let at = self.bytes.start + 1;
        let n = v
            .get(at..at + 2)
            .filter(|_| self.numbered && at + 2 <= self.bytes.end)?;
        Some(u16::from_be_bytes([n[0], n[1]]))
    }
}

/// Encodes an entry of one or more records.
fn encode_entry(items: &[NewItem<'_>]) -> Vec<u8> {
    let grouped = items.len() > 1;
    let size: usize = items
        .iter()
        .map(|i| ENTRY_HEADER + 4 + i.form.1.len())
        .sum();
    let mut v = Vec::with_capacity(size);
    for item in items {
        let (numbered, record) = &item.form;
        v.extend_from_slice(&item.received_us.to_be_bytes());
        let flags = u8::from(item.extends_head) | numbered;
        if grouped {
            v.push(flags | GROUPED);
            v.extend_from_slice(&(record.len() as u32).to_be_bytes());
        } else {
            v.push(flags);
        }
        v.extend_from_slice(record);
    }
    v
}

/// The records of an entry, in cursor order; `None` if it is cut short or its records
/// disagree on whether they are a group.
fn split_entry(v: &[u8]) -> Option<Vec<EntryItem>> {
    let grouped = v.get(8)? & GROUPED != 0;
    let mut items = Vec::new();
    let mut at = 0;
    while at < v.len() || items.is_empty() {
        let header = v.get(at..at + ENTRY_HEADER)?;
        let received_us = u64::from_be_bytes(header[..8].try_into().ok()?);
        let flags = header[8];
        if (flags & GROUPED != 0) != grouped {
            return None;
        }
        at += ENTRY_HEADER;
        let len = if !grouped {
            v.len() - at
        } else {
            let len = v.get(at..at + 4)?;
            at += 4;
            u32::from_be_bytes(len.try_into().ok()?) as usize
        };
        let end = at.checked_add(len).filter(|e| *e <= v.len())?;
        items.push(EntryItem {
            received_us,
            extends_head: flags & 1 == 1,
            numbered: flags & NUMBERED != 0,
            bytes: at..end,
        });
        at = end;
    }
    Some(items)
}

/// The entry's records, each with its cursor, the entry being stored under `last`.
fn entry_records(last: u64, v: &[u8]) -> Result<Vec<(u64, EntryItem)>, StoreError> {
    let items = split_entry(v).ok_or_else(|| StoreError::Corrupt(too_short(last)))?;
    let first = last
        .checked_add(1)
        .and_then(|end| end.checked_sub(items.len() as u64))
        .filter(|first| *first > 0)
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "record entry at cursor {last} does not fit its key"
            ))
        })?;
    Ok((first..).zip(items).collect())
}

/// The count in a tally file; none if there is none (a store older than tallies, or a new
/// one) or it does not read as one.
fn read_tally(path: &Path) -> Option<usize> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The problem, if a store holding `held` records held more when it wrote its tally.
fn records_lost(tallied: Option<usize>, held: usize) -> Option<String> {
    let tallied = tallied.filter(|t| *t > held)?;
    Some(format!(
        "the store holds {held} records but held {tallied} when it was last closed or flushed: {} are missing or unreadable (damaged or replaced files; the disk deserves a look). Records its peers hold are fetched again (`attrib status` shows the count coming back); if they cannot come back (no peer holds them), accept the loss by deleting {TALLY_FILE} in the data dir",
        tallied - held
    ))
}

fn too_short(cursor: u64) -> String {
    format!("record entry at cursor {cursor} is too short")
}

fn decode_stored(
    cursor: u64,
    v: &[u8],
    item: &EntryItem,
    authors: &AuthorNumbers,
) -> Result<Stored, StoreError> {
    let damaged = |e: String| StoreError::Corrupt(format!("record at cursor {cursor}: {e}"));
    let bytes = authors
        .record_bytes(v, item)
        .map_err(|e| damaged(e.to_string()))?;
    let record = Record::decode(&bytes).map_err(|e| damaged(e.to_string()))?;
    Ok(Stored {
        cursor,
        received_us: item.received_us,
        record,
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

/// Opens the sled database in `dir`, retrying its lock for up to two seconds while another
/// handle in this process lets go of it (sled's flusher thread outlives a dropped handle for
/// a moment).
fn open_db(dir: &Path) -> Result<sled::Db, sled::Error> {
    let mut attempts = 0;
    loop {
        let opened = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            // Appends touch only the last pages and lookups go through the in-memory index,
            // so a small page cache costs no measurable throughput (BENCHMARKS.md).
            .cache_capacity(8 * 1024 * 1024)
            .open();
        match opened {
            Err(sled::Error::Io(e))
                if attempts < 40 && e.to_string().contains("could not acquire lock") =>
            {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
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

    pub(crate) fn claim(title: &str) -> Body {
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
    fn the_first_sled_failure_is_kept_and_other_errors_are_not_failures() {
        let store = Store::temporary().unwrap();
        let io = |m: &str| StoreError::Sled(sled::Error::Io(std::io::Error::other(m.to_string())));
        assert!(store.noted::<()>(Err(StoreError::PendingFull)).is_err());
        assert!(store.noted(Ok(())).is_ok());
        assert_eq!(store.failure(), None);
        assert!(
            store
                .noted::<()>(Err(io("No space left on device")))
                .is_err()
        );
        assert!(store.noted::<()>(Err(io("later"))).is_err());
        let failure = store.failure().unwrap();
        assert!(failure.contains("No space left on device"), "{failure}");
        assert!(!failure.contains("later"));
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
        // A conflicting response to a claim this store lacks keeps only its proof; the same
        // record again finds the proof held (no second "equivocated" warning).
        let rus_rebut_unknown = sign(&rus, 1, None, rebut(RecordId::of_encoding(b"elsewhere")));
        for new in [true, false] {
            assert!(matches!(
                store.append(rus_rebut_unknown.clone()).unwrap(),
                Appended::Fork { cursor: None, new_proof, .. } if new_proof == new
            ));
        }
        assert_eq!(store.forks().unwrap().len(), 2);
    }

    #[test]
    fn a_feed_hold_covers_what_is_appended_after_it_until_dropped() {
        let store = std::sync::Arc::new(Store::temporary().unwrap());
        let fra = MemberSigningKey::from_bytes(&[1; 32]);
        let first = sign(&fra, 1, None, claim("before"));
        store.append(first.clone()).unwrap();
        assert_eq!(store.held_from(), None);
        let hold = store.hold_feed();
        let second = store.hold_feed();
        let Appended::Stored { cursor, .. } = store
            .append(sign(&fra, 2, Some(first.id()), claim("own")))
            .unwrap()
        else {
            panic!("not stored");
        };
        assert_eq!(cursor, 2);
        assert_eq!(
            store.held_from(),
            Some(2),
            "the record after the hold is held"
        );
        drop(hold);
        assert_eq!(
            store.held_from(),
            Some(2),
            "until every hold from there is dropped"
        );
        drop(second);
        assert_eq!(store.held_from(), None);
        // A kept hold (its record's flush failed) stays.
        store.hold_feed().keep();
        assert_eq!(store.held_from(), Some(3));
    }

    #[test]
    fn an_equivocators_other_branch_goes_on_being_kept() {
        // FRA forks at seq 2. This store met the copy's record first; the original's chain
        // goes on from its own seq 2. Its later records are kept (beside the chain, as the
        // record they extend), not left waiting for a seq 3 that never links.
        let store = Store::temporary().unwrap();
        let fra = MemberSigningKey::from_bytes(&[1; 32]);
        let first = sign(&fra, 1, None, claim("one"));
        let copy = sign(&fra, 2, Some(first.id()), claim("the copy's two"));
        let mut original = vec![sign(&fra, 2, Some(first.id()), claim("two"))];
        for seq in 3..=5 {
            let prev = original.last().map(Record::id);
            original.push(sign(&fra, seq, prev, claim(&format!("{seq}"))));
        }
        for r in [first, copy] {
            assert!(matches!(store.append(r).unwrap(), Appended::Stored { .. }));
        }
        // The branch's fourth record first: it waits for the third, then is kept with it.
        assert!(matches!(
            store.append(original[2].clone()).unwrap(),
            Appended::Pending(_)
        ));
        for r in [&original[0], &original[1], &original[3]] {
            let appended = store.append(r.clone()).unwrap();
            assert!(
                !matches!(appended, Appended::Pending(_)),
                "seq {} left waiting: {appended:?}",
                r.seq()
            );
        }
        for r in &original {
            assert!(store.contains(&r.id()).unwrap(), "seq {} not kept", r.seq());
        }
        assert!(store.is_equivocator(&member_key(&fra)).unwrap());
        assert_eq!(store.pending_of(&member_key(&fra)), 0);
    }

    #[test]
    fn peers_are_not_told_of_held_records() {
        // A local submission not yet on disk is neither named as a head nor served in a chain
        // range: a crash could lose it, and the restarted node sign another at its seq.
        let store = std::sync::Arc::new(Store::temporary().unwrap());
        let fra = MemberSigningKey::from_bytes(&[1; 32]);
        let deu = MemberSigningKey::from_bytes(&[2; 32]);
        let first = sign(&fra, 1, None, claim("on disk"));
        store.append(first.clone()).unwrap();
        let hold = store.hold_feed();
        let second = sign(&fra, 2, Some(first.id()), claim("held"));
        let third = sign(&fra, 3, Some(second.id()), claim("held too"));
        let other = sign(&deu, 1, None, claim("held, first of its chain"));
        for r in [second.clone(), third.clone(), other] {
            assert!(matches!(store.append(r).unwrap(), Appended::Stored { .. }));
        }
        let fra_key = member_key(&fra);
        assert_eq!(
            store.heads().unwrap(),
            vec![(
                fra_key,
                ChainHead {
                    seq: 1,
                    id: first.id()
                }
            )],
            "held heads are named as the last record before them, or not at all"
        );
        let served: Vec<RecordId> = store
            .chain_range(&fra_key, 1, 10, 10)
            .unwrap()
            .iter()
            .map(Record::id)
            .collect();
        assert_eq!(served, vec![first.id()]);
        drop(hold);
        assert_eq!(store.heads().unwrap().len(), 2);
        assert_eq!(store.chain_range(&fra_key, 1, 10, 10).unwrap().len(), 3);
    }

    #[test]
    fn a_record_signed_here_is_stored_only_while_it_is_still_next() {
        // Signed at seq 2, but another record of the same key took seq 2 before the append
        // (a second signer): the new record is not kept, so no fork of its own is held.
        let store = Store::temporary().unwrap();
        let fra = MemberSigningKey::from_bytes(&[1; 32]);
        let first = sign(&fra, 1, None, claim("first"));
        store.append(first.clone()).unwrap();
        let elsewhere = sign(&fra, 2, Some(first.id()), claim("signed elsewhere"));
        let here = sign(&fra, 2, Some(first.id()), claim("signed here"));
        store.append(elsewhere).unwrap();
        assert!(store.append_if_next(here.clone()).unwrap().is_none());
        assert!(!store.contains(&here.id()).unwrap());
        assert!(store.forks().unwrap().is_empty());
        let next = sign(
            &fra,
            3,
            Some(store.chain_head(&member_key(&fra)).unwrap().unwrap().id),
            claim("next"),
        );
        assert!(matches!(
            store.append_if_next(next).unwrap(),
            Some(Appended::Stored { cursor: 3, .. })
        ));
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
    fn a_record_written_just_before_a_crash_is_found_and_releases_what_waited_for_it() {
        // What a crash right after a record's commit point leaves: only the
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
            // Written with the author's key (as stores before author numbers wrote them).
            let item = NewItem {
                received_us: 7,
                extends_head: true,
                form: (0, c[1].as_bytes().into()),
            };
            store
                .db
                .insert(key::feed(2), encode_entry(&[item]))
                .unwrap();
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
    fn the_index_rebuilt_on_open_answers_as_before() {
        let dir = tempfile::tempdir().unwrap();
        let fra = MemberSigningKey::from_bytes(&[1; 32]);
        let rus = MemberSigningKey::from_bytes(&[2; 32]);
        let c = chain(&fra, 3);
        let fork = sign(&fra, 2, Some(c[0].id()), claim("other"));
        let rebuttal = sign(&rus, 1, None, rebut(c[0].id()));
        type Answers = (
            Vec<(MemberKey, ChainHead)>,
            Vec<RecordId>,
            Vec<RecordId>,
            RecordId,
            Vec<RecordId>,
            Option<u64>,
        );
        let answers = |store: &Store| -> Answers {
            let ids = |rs: Vec<Record>| rs.iter().map(Record::id).collect::<Vec<_>>();
            (
                store.heads().unwrap(),
                ids(store
                    .chain_range(&member_key(&fra), 1, u64::MAX, 100)
                    .unwrap()),
                ids(store.responses(&c[0].id()).unwrap()),
                store.record_set_digest().unwrap(),
                store.find_prefix(&c[2].id().to_hex()[..5], 10).unwrap(),
                store.get_stored(&fork.id()).unwrap().map(|s| s.cursor),
            )
        };
        let before = {
            let store = Store::open(dir.path()).unwrap();
            for r in [&c[0], &rebuttal, &c[1], &fork, &c[2]] {
                store.append(r.clone()).unwrap();
            }
            // An index entry as an earlier version wrote it: removed on open.
            store.db.insert([b'r', 1, 2, 3], &[0; 8]).unwrap();
            futures::executor::block_on(store.flush()).unwrap();
            answers(&store)
        };
        // The fork sits beside the chain: after the chain's record at its seq.
        assert_eq!(before.1, vec![c[0].id(), c[1].id(), fork.id(), c[2].id()]);
        assert_eq!(before.2, vec![rebuttal.id()]);
        assert_eq!(before.4, vec![c[2].id()]);
        assert_eq!(before.5, Some(4));
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(answers(&store), before);
        assert!(store.db.scan_prefix([b'r']).next().is_none());
        // Lookups by prefix: any case, odd lengths; input that is no id prefix finds nothing.
        let hex = c[2].id().to_hex();
        assert_eq!(
            store.find_prefix(&hex[..9].to_uppercase(), 10).unwrap(),
            vec![c[2].id()]
        );
        assert_eq!(store.find_prefix(&hex, 10).unwrap(), vec![c[2].id()]);
        assert!(store.find_prefix("é", 10).unwrap().is_empty());
        assert!(
            store
                .find_prefix(&format!("{hex}0"), 10)
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.find_prefix("", 2).unwrap().len(), 2);
        assert_eq!(
            store.chain_range(&member_key(&fra), 3, 3, 10).unwrap()[0].id(),
            c[2].id()
        );
        assert!(
            store
                .chain_range(&member_key(&fra), 4, 9, 10)
                .unwrap()
                .is_empty()
        );
        // Ranges a peer may ask for: reversed, empty, from zero, to the end of time.
        let range = |from, to, limit| {
            store
                .chain_range(&member_key(&fra), from, to, limit)
                .unwrap()
                .iter()
                .map(Record::id)
                .collect::<Vec<_>>()
        };
        assert!(range(3, 2, 10).is_empty());
        assert!(range(0, 0, 10).is_empty());
        assert_eq!(range(0, 1, 10), vec![c[0].id()]);
        assert!(range(u64::MAX, u64::MAX, 10).is_empty());
        assert_eq!(range(2, u64::MAX, 2), vec![c[1].id(), fork.id()]);
        assert_eq!(range(3, u64::MAX, 10), vec![c[2].id()]);
    }

    #[test]
    fn a_batch_is_stored_as_one_by_one_but_in_groups() {
        let fra = MemberSigningKey::from_bytes(&[1; 32]);
        let rus = MemberSigningKey::from_bytes(&[2; 32]);
        let c = chain(&fra, 20);
        let rebuttal = sign(&rus, 1, None, rebut(c[0].id()));
        let second = sign(&rus, 2, Some(rebuttal.id()), claim("r2"));
        let fork = sign(&fra, 3, Some(c[1].id()), claim("other"));
        // Waits for its target, which comes later in the batch; a duplicate; a fork; a record
        // pending from before (c[12]) released by c[11]; a chain run of both authors.
        let mut batch = vec![rebuttal.clone()];
        batch.extend(c[..12].iter().cloned());
        batch.extend([c[5].clone(), fork.clone(), second.clone()]);
        batch.extend(c[13..].iter().cloned());
        let kind = |a: &Result<Appended, StoreError>| match a {
            Ok(Appended::Stored { released, .. }) => format!("stored+{}", released.len()),
            Ok(Appended::Duplicate) => "duplicate".into(),
            Ok(Appended::Pending(_)) => "pending".into(),
            Ok(Appended::Fork { cursor, .. }) => format!("fork {}", cursor.is_some()),
            Err(e) => format!("error {e}"),
        };
        let answers = |store: &Store| {
            let mut ids: Vec<RecordId> = store.index().ids().map(|(i, _)| *i).collect();
            ids.sort();
            (
                store.heads().unwrap(),
                ids,
                store.counts().records,
                store.counts().pending,
                store.responses(&c[0].id()).unwrap(),
                store.chain_range(&member_key(&fra), 1, 20, 100).unwrap(),
            )
        };

        let one_by_one = Store::temporary().unwrap();
        one_by_one.append(c[12].clone()).unwrap();
        let expected: Vec<String> = batch
            .iter()
            .map(|r| kind(&one_by_one.append(r.clone())))
            .collect();

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.append(c[12].clone()).unwrap();
        let got: Vec<String> = store
            .append_batch(batch.clone())
            .unwrap()
            .iter()
            .map(kind)
            .collect();
        assert_eq!(got, expected);
        assert_eq!(answers(&store), answers(&one_by_one));
        assert_eq!(store.counts().records, 23);
        assert_eq!(store.counts().pending, 0);
        // Fewer entries than records: the chain runs went in groups.
        let entries = store.db.scan_prefix([key::FEED]).count();
        assert!(entries <= 12, "{entries} entries");

        // Every record is found at its cursor, and the feed pages through groups in order.
        let check = |store: &Store| {
            let all = store.feed_after(0, 100).unwrap();
            assert_eq!(all.len(), 23);
            for (i, s) in all.iter().enumerate() {
                assert_eq!(
                    store.get_stored(&s.record.id()).unwrap().unwrap().cursor,
                    s.cursor
                );
                if i > 0 {
                    assert!(s.cursor > all[i - 1].cursor);
                    assert!(s.received_us > all[i - 1].received_us);
                }
                let page = store.feed_after(s.cursor - 1, 3).unwrap();
                let want: Vec<u64> = all[i..].iter().take(3).map(|s| s.cursor).collect();
                assert_eq!(page.iter().map(|s| s.cursor).collect::<Vec<_>>(), want);
            }
        };
        check(&store);
        let before = answers(&store);
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(answers(&store), before);
        check(&store);
    }

    /// Appends `before` one by one, then `batch` with `append_batch` on one store and one by
    /// one on another, and asserts the same outcomes, feed order, chains and pending records.
    fn batch_matches_one_by_one(before: &[Record], batch: &[Record]) {
        let kind = |a: &Result<Appended, StoreError>| match a {
            Ok(Appended::Stored { released, .. }) => format!(
                "stored, releasing {:?}",
                released.iter().map(|(_, r)| r.id()).collect::<Vec<_>>()
            ),
            Ok(Appended::Duplicate) => "duplicate".into(),
            Ok(Appended::Pending(m)) => format!("pending {m:?}"),
            Ok(Appended::Fork { cursor, .. }) => format!("fork stored {}", cursor.is_some()),
            Err(e) => format!("error {e}"),
        };
        let state = |store: &Store| {
            let feed: Vec<(u64, RecordId)> = store
                .feed_after(0, 1000)
                .unwrap()
                .iter()
                .map(|s| (s.cursor, s.record.id()))
                .collect();
            (
                feed,
                store.heads().unwrap(),
                store.counts().pending,
                store.forks().unwrap().len(),
            )
        };
        let one = Store::temporary().unwrap();
        let batched = Store::temporary().unwrap();
        for r in before {
            one.append(r.clone()).unwrap();
            batched.append(r.clone()).unwrap();
        }
        let expected: Vec<String> = batch.iter().map(|r| kind(&one.append(r.clone()))).collect();
        let got: Vec<String> = batched
            .append_batch(batch.to_vec())
            .unwrap()
            .iter()
            .map(kind)
            .collect();
        assert_eq!(got, expected);
        assert_eq!(state(&batched), state(&one));
    }

    #[test]
    fn a_batch_around_pending_records_matches_one_by_one() {
        let fra = MemberSigningKey::from_bytes(&[1; 32]);
        let rus = MemberSigningKey::from_bytes(&[2; 32]);
        let c = chain(&fra, 12);
        // A fork of c[4] (seq 5) arrives in a batch while c[4] waits for the gap before it.
        let fork = sign(&fra, 5, Some(c[3].id()), claim("other"));
        batch_matches_one_by_one(
            &[c[0].clone(), c[1].clone(), c[4].clone()],
            &[c[2].clone(), c[3].clone(), fork.clone(), c[5].clone()],
        );
        // A record in the middle of a run has waiters: its successor, and a response.
        let rebuttal = sign(&rus, 1, None, rebut(c[3].id()));
        batch_matches_one_by_one(&[c[0].clone(), c[5].clone(), rebuttal.clone()], &c[1..12]);
        // The last record of a run has a waiter, and the batch splits runs by size.
        let mut long = vec![c[0].clone()];
        long.extend(chain(&rus, 40));
        batch_matches_one_by_one(&[c[2].clone()], &[&long[..], &c[1..2]].concat());
    }

    #[test]
    fn a_stored_fork_still_pending_after_a_crash_is_not_stored_again() {
        // The process stopped after a released fork was stored and before its pending entry
        // was removed. On open, the chain rules would call it a fork again (the chain's own
        // record sits at its seq); it must be recognised as stored instead.
        let dir = tempfile::tempdir().unwrap();
        let key = MemberSigningKey::from_bytes(&[1; 32]);
        let c = chain(&key, 3);
        let fork = sign(&key, 3, Some(c[1].id()), claim("other"));
        {
            let store = Store::open(dir.path()).unwrap();
            for r in &c {
                store.append(r.clone()).unwrap();
            }
            assert!(matches!(
                store.append(fork.clone()).unwrap(),
                Appended::Fork {
                    cursor: Some(4),
                    ..
                }
            ));
            store
                .db
                .insert(key::pending_of(&fork), fork.as_bytes())
                .unwrap();
            futures::executor::block_on(store.db.flush_async()).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.last_cursor(), 4);
        assert_eq!(store.counts().pending, 0);
        assert_eq!(
            store
                .chain_range(&member_key(&key), 1, 3, 10)
                .unwrap()
                .len(),
            4
        );
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

    /// A store in `dir` holding `records`, appended one by one.
    fn store_with(dir: &Path, records: &[Record]) -> Store {
        let store = Store::open(dir).unwrap();
        for r in records {
            store.append(r.clone()).unwrap();
        }
        store
    }

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

        // A flipped bit in a stored record: its signature fails, and the record after it no
        // longer links to a chain.
        let cursor = store.get_stored(&records[2].id()).unwrap().unwrap().cursor;
        let mut v = store.db.get(key::feed(cursor)).unwrap().unwrap().to_vec();
        let last = v.len() - 1;
        v[last] ^= 1;
        store.db.insert(key::feed(cursor), v).unwrap();
        // A record dropped from disk while the node holds it.
        let dropped = store.get_stored(&records[4].id()).unwrap().unwrap().cursor;
        store.db.remove(key::feed(dropped)).unwrap();
        let report = store.verify_all(&roster).unwrap();
        let text = report.problems.join("\n");
        assert_eq!(report.records_checked, 4, "{text}");
        assert!(
            text.contains(&format!("record at cursor {cursor}")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "record {} (cursor 4, seq 4) does not link",
                records[3].id()
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("record {} (cursor 5) is missing", records[4].id())),
            "{text}"
        );
        // Also: record 3 as the node indexed it is no longer on disk.
        assert_eq!(report.problems.len(), 4, "{text}");
    }

    #[test]
    fn damage_inside_a_group_is_reported_for_the_record_it_hits() {
        let key = MemberSigningKey::from_bytes(&[1; 32]);
        let roster = roster(&key);
        let dir = tempfile::tempdir().unwrap();
        let records = chain(&key, &roster, 20);
        let damaged = {
            let store = Store::open(dir.path()).unwrap();
            let stored = store.append_batch(records.clone()).unwrap();
            assert!(
                stored
                    .iter()
                    .all(|a| matches!(a, Ok(Appended::Stored { .. })))
            );
            assert!(store.verify_all(&roster).unwrap().problems.is_empty());
            // The last byte of record 10 (seq 10), inside the second group of eight.
            let cursor = store.get_stored(&records[9].id()).unwrap().unwrap().cursor;
            let last = store.index().entry_of(cursor);
            assert!(last > cursor, "record 10 is not in a group");
            let mut v = store.db.get(key::feed(last)).unwrap().unwrap().to_vec();
            let items = split_entry(&v).unwrap();
            let at = items[items.len() - 1 - (last - cursor) as usize].bytes.end - 1;
            v[at] ^= 1;
            store.db.insert(key::feed(last), v).unwrap();
            cursor
        };
        let store = Store::open(dir.path()).unwrap();
        let report = store.verify_all(&roster).unwrap();
        let text = report.problems.join("\n");
        assert_eq!(report.records_checked, 20, "{text}");
        assert!(
            text.contains(&format!("record at cursor {damaged}")),
            "{text}"
        );
        // The records after it no longer link to the chain (the damaged bytes are another
        // id); the chain ends at the damaged record, which still decodes.
        assert!(text.contains("does not link"), "{text}");
        assert_eq!(
            store
                .chain_head(&records[0].author())
                .unwrap()
                .map(|h| h.seq),
            Some(10)
        );
        assert!(store.get(&records[9].id()).unwrap().is_none());
        // Its neighbours in the entry are still read.
        assert!(store.get(&records[8].id()).unwrap().is_some());
        assert!(store.get(&records[10].id()).unwrap().is_some());
    }

    #[test]
    fn entries_name_authors_by_number_and_give_back_the_exact_records() {
        let key = MemberSigningKey::from_bytes(&[1; 32]);
        let roster = roster(&key);
        let dir = tempfile::tempdir().unwrap();
        let records = chain(&key, &roster, 12);
        {
            let store = Store::open(dir.path()).unwrap();
            // One at a time (an entry each), then a batch (grouped entries).
            for r in &records[..4] {
                store.append(r.clone()).unwrap();
            }
            store.append_batch(records[4..].to_vec()).unwrap();
            // The single entry holds the record less 30 bytes: a number in place of the key.
            let v = store.db.get(key::feed(1)).unwrap().unwrap();
            assert_eq!(v.len(), ENTRY_HEADER + records[0].as_bytes().len() - 30);
            let author = member_key(&key);
            assert!(!v.windows(32).any(|w| w == author.as_bytes()));
            assert_eq!(
                store.db.get(key::author(0)).unwrap().unwrap().as_ref(),
                author.as_bytes()
            );
        }
        // Read back after a reopen (the index is rebuilt from the entries): the same bytes,
        // so the same ids, and the whole store checks.
        let store = Store::open(dir.path()).unwrap();
        let feed = store.feed_after(0, 100).unwrap();
        assert_eq!(feed.len(), 12);
        for (stored, record) in feed.iter().zip(&records) {
            assert_eq!(stored.record.as_bytes(), record.as_bytes());
            assert_eq!(stored.record.id(), record.id());
        }
        assert_eq!(
            store.get(&records[7].id()).unwrap(),
            Some(records[7].clone())
        );
        let report = store.verify_all(&roster).unwrap();
        assert_eq!(
            (report.records_checked, report.problems.len()),
            (12, 0),
            "{:?}",
            report.problems
        );
    }

    #[test]
    fn the_feed_id_stays_with_the_store() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let id = Store::open(a.path()).unwrap().feed_id().to_string();
        assert_eq!(id.len(), 32);
        assert_eq!(Store::open(a.path()).unwrap().feed_id(), id);
        assert_ne!(Store::open(b.path()).unwrap().feed_id(), id);
    }

    #[test]
    fn a_lost_author_number_is_reported_as_damage() {
        let key = MemberSigningKey::from_bytes(&[1; 32]);
        let roster = roster(&key);
        let dir = tempfile::tempdir().unwrap();
        let records = chain(&key, &roster, 3);
        {
            let store = store_with(dir.path(), &records);
            store.db.remove(key::author(0)).unwrap();
        }
        // The store opens (a damaged data dir is reported, not fatal) and says what is wrong.
        let store = Store::open(dir.path()).unwrap();
        let report = store.verify_all(&roster).unwrap();
        // One line for the lost number, not one per record (and the tally's count of what
        // went missing).
        assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
        assert!(
            report.problems[0].starts_with(
                "author number 0 is not in the store (its entry is lost): 3 record(s) at cursors 1..=3"
            ),
            "{:?}",
            report.problems
        );
        assert!(store.get(&records[0].id()).unwrap().is_none());
        // Feed readers are not stopped at the damage: they get nothing from it.
        assert!(store.feed_after(0, 10).unwrap().is_empty());
        // The author's records fetched again get a new number and are read again.
        for r in &records {
            store.append(r.clone()).unwrap();
        }
        assert_eq!(
            store.get(&records[2].id()).unwrap(),
            Some(records[2].clone())
        );
        let feed: Vec<u64> = store
            .feed_after(0, 10)
            .unwrap()
            .iter()
            .map(|s| s.cursor)
            .collect();
        assert_eq!(feed, vec![4, 5, 6]);
        // With the records back, the count is whole again.
        let report = store.verify_all(&roster).unwrap();
        assert!(
            !report
                .problems
                .iter()
                .any(|p| p.contains("are missing or unreadable")),
            "{:?}",
            report.problems
        );
        assert_eq!(
            store.db.get(key::author(1)).unwrap().unwrap().as_ref(),
            member_key(&key).as_bytes()
        );
    }

    #[test]
    fn cursors_seen_before_a_crash_are_not_given_to_other_records() {
        let key = MemberSigningKey::from_bytes(&[1; 32]);
        let roster = roster(&key);
        let dir = tempfile::tempdir().unwrap();
        let records = chain(&key, &roster, 5);
        {
            let store = Store::open(dir.path()).unwrap();
            for r in &records[..3] {
                store.append(r.clone()).unwrap();
            }
            // The reservation was made (and flushed) before cursor 1 was given out.
            assert_eq!(
                store.meta_u64(CURSORS_RESERVED).unwrap(),
                Some(CURSOR_BLOCK)
            );
        }
        // A clean close gives back the unused cursors: numbering goes on at 4.
        {
            let store = Store::open(dir.path()).unwrap();
            assert_eq!(store.last_cursor(), 3);
            store.append(records[3].clone()).unwrap();
            assert_eq!(
                store.get_stored(&records[3].id()).unwrap().unwrap().cursor,
                4
            );
        }
        // What a kill leaves when record 4 (seen by subscribers at cursor 4) was not yet
        // flushed: the reservation on disk and no record 4.
        {
            let db = open_db(dir.path()).unwrap();
            db.remove(key::feed(4)).unwrap();
            db.insert(
                key::meta(CURSORS_RESERVED),
                &(3 + CURSOR_BLOCK).to_be_bytes(),
            )
            .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.counts().records, 3);
        store.append(records[3].clone()).unwrap();
        store.append(records[4].clone()).unwrap();
        let again = store.get_stored(&records[3].id()).unwrap().unwrap().cursor;
        assert_eq!(
            again,
            4 + CURSOR_BLOCK,
            "cursor 4 was given to another record"
        );
        assert_eq!(store.feed_after(3, 10).unwrap().len(), 2);
        assert_eq!(store.counts().records, 5);
        drop(store);
        // A damaged reservation (out of range, or not a number) is not trusted, nor fatal.
        for damaged in [&u64::MAX.to_be_bytes()[..], &[1, 2, 3][..]] {
            {
                let db = open_db(dir.path()).unwrap();
                db.insert(key::meta(CURSORS_RESERVED), damaged).unwrap();
            }
            let store = Store::open(dir.path()).unwrap();
            let last = store.last_cursor();
            assert!(last <= 5 + 2 * CURSOR_BLOCK, "{last}");
            assert_eq!(store.counts().records, 5);
        }
        // Two kills in a row: the second reservation, made after the first restart, is
        // blocks beyond the last record on disk, and is honoured all the same.
        let far = 5 + 3 * CURSOR_BLOCK;
        {
            let db = open_db(dir.path()).unwrap();
            db.insert(key::meta(CURSORS_RESERVED), &far.to_be_bytes())
                .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.last_cursor(), far);
    }

    #[test]
    fn a_damaged_store_opens_and_reports_what_does_not_fit() {
        let key = MemberSigningKey::from_bytes(&[1; 32]);
        let roster = roster(&key);
        let dir = tempfile::tempdir().unwrap();
        let records = chain(&key, &roster, 4);
        {
            let store = store_with(dir.path(), &records);
            // Record 2 lost: records 3 and 4 no longer link to the chain.
            store.db.remove(key::feed(2)).unwrap();
            futures::executor::block_on(store.db.flush_async()).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let author = records[0].author();
        assert_eq!(store.chain_head(&author).unwrap().map(|h| h.seq), Some(1));
        assert!(store.contains(&records[3].id()).unwrap());
        assert_eq!(store.last_cursor(), 4);
        let report = store.verify_all(&roster).unwrap();
        let text = report.problems.join("\n");
        assert_eq!(report.problems.len(), 3, "{text}");
        assert!(
            text.contains(&format!(
                "record {} (cursor 3, seq 3) does not link",
                records[2].id()
            )),
            "{text}"
        );
        // The tally written when the store closed says one record went missing.
        assert!(
            text.contains("the store holds 3 records but held 4 when it was last closed"),
            "{text}"
        );
        assert_eq!(store.records_missing(), Some(1));
        // Records 3 and 4 are held: fetched again, they are duplicates, not new records.
        assert!(matches!(
            store.append(records[3].clone()).unwrap(),
            Appended::Duplicate
        ));
        // The lost record, fetched again from a peer, links, and the records after it rejoin
        // the chain; the store is whole again, also after a restart.
        assert!(matches!(
            store.append(records[1].clone()).unwrap(),
            Appended::Stored { cursor: 5, .. }
        ));
        assert_eq!(store.chain_head(&author).unwrap().map(|h| h.seq), Some(4));
        let ids = |store: &Store| -> Vec<RecordId> {
            store
                .chain_range(&author, 1, 10, 10)
                .unwrap()
                .iter()
                .map(Record::id)
                .collect()
        };
        let whole: Vec<RecordId> = records.iter().map(Record::id).collect();
        assert_eq!(ids(&store), whole);
        assert!(store.verify_all(&roster).unwrap().problems.is_empty());
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.chain_head(&author).unwrap().map(|h| h.seq), Some(4));
        assert_eq!(ids(&store), whole);
        assert!(store.verify_all(&roster).unwrap().problems.is_empty());
    }
}

#[cfg(test)]
mod layout_tests {
    use super::*;

    #[test]
    fn a_data_dir_in_the_old_layout_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = open_db(dir.path()).unwrap();
            db.open_tree("records").unwrap().insert(b"k", b"v").unwrap();
            db.flush().unwrap();
        }
        let err = Store::open(dir.path()).err().expect("old layout opened");
        assert!(matches!(err, StoreError::OldLayout), "{err}");
        assert!(err.to_string().contains("move the data dir aside"));
    }
}
