//! What the store finds records by (id, author and seq, claim responded to), in memory.
//!
//! The records in sled are the only persistent truth: the index is rebuilt from them when the
//! store opens (one scan, a few hundred ms per 100,000 records) and updated after every write.
//! Keeping it out of sled makes a record one sled entry (or a share of one) instead of four or
//! five, which is what bounded ingest speed and disk use. It costs about 60 bytes of memory per record.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use attrib_protocol::{ChainHead, MemberKey, Record, RecordId};

/// The lookups the store answers without reading sled.
#[derive(Debug, Default)]
pub(super) struct Index {
    /// Sorted, so a lookup by id prefix reads only the ids that match.
    by_id: BTreeMap<RecordId, u64>,
    chains: HashMap<MemberKey, Chain>,
    responses: HashMap<RecordId, Vec<u64>>,
    /// Entries holding a group of records (store module docs): last cursor → first cursor.
    /// A cursor in none of these is its own entry's key.
    groups: BTreeMap<u64, u64>,
}

/// One author's stored records.
#[derive(Debug)]
struct Chain {
    /// Cursors of seq 1, 2, ..., head: the contiguous chain, each record linked to the one
    /// before it.
    linked: Vec<u64>,
    /// The head's id (meaningful when `linked` is not empty).
    head_id: RecordId,
    /// Records kept beside the chain, by seq: the conflicting side of a fork, and stranded
    /// records (below).
    beside: BTreeMap<u64, Vec<u64>>,
    /// Records that were stored extending the chain but no longer link to it, because a
    /// record before them is missing or damaged on disk; they rejoin the chain when the gap is
    /// filled (the record fetched again from a peer).
    stranded: BTreeMap<u64, Vec<Stranded>>,
}

/// A stranded record: where it is and what it links to.
#[derive(Debug, Clone, Copy)]
struct Stranded {
    cursor: u64,
    id: RecordId,
    prev: Option<RecordId>,
}

impl Default for Chain {
    fn default() -> Self {
        Chain {
            linked: Vec::new(),
            head_id: RecordId([0; 32]),
            beside: BTreeMap::new(),
            stranded: BTreeMap::new(),
        }
    }
}

impl Chain {
    fn head(&self) -> Option<ChainHead> {
        (!self.linked.is_empty()).then_some(ChainHead {
            seq: self.linked.len() as u64,
            id: self.head_id,
        })
    }

    fn extended_by(&self, record: &Record) -> bool {
        match self.head() {
            Some(h) => h.seq + 1 == record.seq() && record.prev() == Some(h.id),
            None => record.seq() == 1,
        }
    }

    fn link(&mut self, cursor: u64, id: RecordId) {
        self.linked.push(cursor);
        self.head_id = id;
    }

    /// Links the stranded records that now extend the head, one after another.
    fn rejoin(&mut self) {
        loop {
            let seq = self.linked.len() as u64 + 1;
            let head = self.head().map(|h| h.id);
            let Some(waiting) = self.stranded.get_mut(&seq) else {
                return;
            };
            let Some(i) = waiting.iter().position(|s| s.prev == head) else {
                return;
            };
            let s = waiting.swap_remove(i);
            if waiting.is_empty() {
                self.stranded.remove(&seq);
            }
            if let Some(beside) = self.beside.get_mut(&seq) {
                beside.retain(|c| *c != s.cursor);
                if beside.is_empty() {
                    self.beside.remove(&seq);
                }
            }
            self.link(s.cursor, s.id);
        }
    }

    fn is_stranded(&self, seq: u64, cursor: u64) -> bool {
        self.stranded
            .get(&seq)
            .is_some_and(|w| w.iter().any(|s| s.cursor == cursor))
    }
}

/// Where [`Index::add`] put a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Added {
    /// In its author's chain, as the new head.
    Linked,
    /// Beside the chain, as the conflicting side of a fork.
    Beside,
    /// Marked as extending the chain but it does not link to the head: stranded beside it.
    Stranded,
    /// Not added: the id is already indexed, at this cursor.
    Twice {
        /// Where the record was indexed first.
        first: u64,
    },
}

/// A stranded record, for reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct StrandedRecord {
    pub(super) author: MemberKey,
    pub(super) seq: u64,
    pub(super) cursor: u64,
    pub(super) id: RecordId,
    /// The author's contiguous head.
    pub(super) head: u64,
}

impl Index {
    /// Adds a record stored at `cursor`. A record marked as extending its author's head
    /// (`extends_head`) should link to it; one that does not (a record before it is missing or
    /// damaged) is stranded beside the chain until the gap is filled.
    pub(super) fn add(&mut self, cursor: u64, record: &Record, extends_head: bool) -> Added {
        let id = record.id();
        if let Some(first) = self.by_id.get(&id) {
            return Added::Twice { first: *first };
        }
        self.by_id.insert(id, cursor);
        if let Some(target) = record.body().target() {
            self.responses.entry(target).or_default().push(cursor);
        }
        let chain = self.chains.entry(record.author()).or_default();
        if extends_head && chain.extended_by(record) {
            chain.link(cursor, id);
            chain.rejoin();
            return Added::Linked;
        }
        chain.beside.entry(record.seq()).or_default().push(cursor);
        if !extends_head {
            return Added::Beside;
        }
        chain
            .stranded
            .entry(record.seq())
            .or_default()
            .push(Stranded {
                cursor,
                id,
                prev: record.prev(),
            });
        Added::Stranded
    }

    /// Notes an entry holding the records at cursors `first..=last`.
    pub(super) fn add_group(&mut self, first: u64, last: u64) {
        if last > first {
            self.groups.insert(last, first);
        }
    }

    /// The cursor under which the record at `cursor` is written: the last cursor of its group,
    /// or its own.
    pub(super) fn entry_of(&self, cursor: u64) -> u64 {
        match self.groups.range(cursor..).next() {
            Some((last, first)) if *first <= cursor => *last,
            _ => cursor,
        }
    }

    /// How many records are stored.
    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Where the record with this id is stored.
    pub(super) fn cursor(&self, id: &RecordId) -> Option<u64> {
        self.by_id.get(id).copied()
    }

    /// Every indexed id with its cursor, in id order.
    pub(super) fn ids(&self) -> impl Iterator<Item = (&RecordId, &u64)> {
        self.by_id.iter()
    }

    /// Indexed ids from `start` on, in id order.
    pub(super) fn ids_from(&self, start: RecordId) -> impl Iterator<Item = &RecordId> {
        self.by_id
            .range((Bound::Included(start), Bound::Unbounded))
            .map(|(id, _)| id)
    }

    /// The author's contiguous chain head.
    pub(super) fn head(&self, author: &MemberKey) -> Option<ChainHead> {
        self.chains.get(author).and_then(Chain::head)
    }

    /// Every author's contiguous chain head.
    pub(super) fn heads(&self) -> Vec<(MemberKey, ChainHead)> {
        self.chains
            .iter()
            .filter_map(|(a, c)| Some((*a, c.head()?)))
            .collect()
    }

    /// The highest seq stored for the author, in the chain or beside it.
    pub(super) fn top_seq(&self, author: &MemberKey) -> u64 {
        self.chains.get(author).map_or(0, |c| {
            let beside = c.beside.keys().next_back().copied().unwrap_or(0);
            (c.linked.len() as u64).max(beside)
        })
    }

    /// Whether `record` extends its author's contiguous head and nothing of the author is
    /// stored at or beyond its seq: then it is the next record, with no lookup in sled.
    pub(super) fn is_next(&self, record: &Record) -> bool {
        let author = record.author();
        let extends = self
            .chains
            .get(&author)
            .map_or(record.seq() == 1, |c| c.extended_by(record));
        extends && self.top_seq(&author) < record.seq()
    }

    /// The cursor of a record at `(author, seq)`: the chain's if it holds one, else one kept
    /// beside it.
    pub(super) fn at(&self, author: &MemberKey, seq: u64) -> Option<u64> {
        let chain = self.chains.get(author)?;
        let linked = usize::try_from(seq)
            .ok()
            .and_then(|s| s.checked_sub(1))
            .and_then(|i| chain.linked.get(i));
        linked
            .or_else(|| chain.beside.get(&seq).and_then(|c| c.first()))
            .copied()
    }

    /// Cursors of the author's records with `from <= seq <= to`, in seq order (the chain's
    /// record before those beside it at the same seq), at most `limit`.
    pub(super) fn chain_range(
        &self,
        author: &MemberKey,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Vec<u64> {
        let from = from.max(1);
        let Some(chain) = self.chains.get(author).filter(|_| from <= to) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut beside = chain.beside.range(from..=to).peekable();
        let linked_to = to.min(chain.linked.len() as u64);
        let mut seq = from;
        while out.len() < limit {
            let in_chain = (seq <= linked_to).then(|| chain.linked[(seq - 1) as usize]);
            let next_beside = beside.peek().map(|(s, _)| **s);
            match (in_chain, next_beside) {
                (None, None) => break,
                (Some(c), _) => {
                    out.push(c);
                    if next_beside == Some(seq) {
                        out.extend(beside.next().into_iter().flat_map(|(_, c)| c.iter()));
                    }
                    seq += 1;
                }
                (None, Some(s)) => {
                    out.extend(beside.next().into_iter().flat_map(|(_, c)| c.iter()));
                    seq = s.saturating_add(1);
                }
            }
        }
        out.truncate(limit);
        out
    }

    /// Cursors of the records that respond to (or revise) `target`, in feed order.
    pub(super) fn responses(&self, target: &RecordId) -> &[u64] {
        self.responses.get(target).map_or(&[], Vec::as_slice)
    }

    /// The conflicting sides of forks kept beside their author's chain (stranded records
    /// are not among them): author, seq and cursor.
    pub(super) fn forks_beside(&self) -> impl Iterator<Item = (&MemberKey, u64, u64)> {
        self.chains.iter().flat_map(|(a, c)| {
            c.beside.iter().flat_map(move |(seq, cursors)| {
                cursors
                    .iter()
                    .filter(move |cursor| !c.is_stranded(*seq, **cursor))
                    .map(move |cursor| (a, *seq, *cursor))
            })
        })
    }

    /// The stranded records (see [`Chain`]).
    pub(super) fn stranded(&self) -> impl Iterator<Item = StrandedRecord> + '_ {
        self.chains.iter().flat_map(|(author, c)| {
            c.stranded.iter().flat_map(move |(seq, waiting)| {
                waiting.iter().map(move |s| StrandedRecord {
                    author: *author,
                    seq: *seq,
                    cursor: s.cursor,
                    id: s.id,
                    head: c.linked.len() as u64,
                })
            })
        })
    }
}

impl std::fmt::Display for StrandedRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "record {} (cursor {}, seq {}) does not link to its author's chain, whose contiguous head is seq {}",
            self.id, self.cursor, self.seq, self.head
        )
    }
}
