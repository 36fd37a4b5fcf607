//! What the store finds records by (id, author and seq, claim responded to), in memory.
//!
//! The records in sled are the only persistent truth: the index is rebuilt from them when the
//! store opens (one scan, a few hundred ms per 100,000 records) and updated after every write.
//! Keeping it out of sled makes a record one sled entry instead of four or five, which is what
//! bounded ingest speed and disk use. It costs about 60 bytes of memory per record.

use std::collections::{BTreeMap, HashMap};

use attrib_protocol::{ChainHead, MemberKey, Record, RecordId};

/// The lookups the store answers without reading sled.
#[derive(Debug, Default)]
pub(super) struct Index {
    by_id: HashMap<RecordId, u64>,
    chains: HashMap<MemberKey, Chain>,
    responses: HashMap<RecordId, Vec<u64>>,
}

/// One author's stored records.
#[derive(Debug)]
struct Chain {
    /// Cursors of seq 1, 2, ..., head: the contiguous chain, each record linked to the one
    /// before it.
    linked: Vec<u64>,
    /// The head's id (meaningful when `linked` is not empty).
    head_id: RecordId,
    /// Records kept beside the chain (the conflicting side of a fork), by seq.
    beside: BTreeMap<u64, Vec<u64>>,
}

impl Default for Chain {
    fn default() -> Self {
        Chain {
            linked: Vec::new(),
            head_id: RecordId([0; 32]),
            beside: BTreeMap::new(),
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
}

/// A record entry that did not fit its author's chain when the index was built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Misfit {
    pub(super) cursor: u64,
    pub(super) id: RecordId,
    pub(super) seq: u64,
    /// The author's contiguous head when the record was met.
    pub(super) head: u64,
}

impl Index {
    /// Adds a record stored at `cursor`. A record marked as extending its author's head must
    /// do so (seq one above the head, linked to it); one that does not (a record before it is
    /// missing or damaged) is kept beside the chain and returned as a misfit.
    pub(super) fn add(
        &mut self,
        cursor: u64,
        record: &Record,
        extends_head: bool,
    ) -> Result<(), Misfit> {
        let id = record.id();
        self.by_id.insert(id, cursor);
        if let Some(target) = record.body().target() {
            self.responses.entry(target).or_default().push(cursor);
        }
        let chain = self.chains.entry(record.author()).or_default();
        if extends_head && chain.extended_by(record) {
            chain.linked.push(cursor);
            chain.head_id = id;
            return Ok(());
        }
        chain.beside.entry(record.seq()).or_default().push(cursor);
        if extends_head {
            return Err(Misfit {
                cursor,
                id,
                seq: record.seq(),
                head: chain.linked.len() as u64,
            });
        }
        Ok(())
    }

    /// Where the record with this id is stored.
    pub(super) fn cursor(&self, id: &RecordId) -> Option<u64> {
        self.by_id.get(id).copied()
    }

    /// Every indexed id with its cursor (in no particular order).
    pub(super) fn ids(&self) -> impl Iterator<Item = (&RecordId, &u64)> {
        self.by_id.iter()
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

    /// Authors with records kept beside their chain.
    pub(super) fn beside(&self) -> impl Iterator<Item = (&MemberKey, u64, &[u64])> {
        self.chains.iter().flat_map(|(a, c)| {
            c.beside
                .iter()
                .map(move |(seq, cursors)| (a, *seq, cursors.as_slice()))
        })
    }
}

impl std::fmt::Display for Misfit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "record {} (cursor {}, seq {}) does not link to its author's chain, whose contiguous head is seq {}",
            self.id, self.cursor, self.seq, self.head
        )
    }
}
