//! Chain rules: where a record stands in its author's hash chain, and proofs of equivocation.
//!
//! Each author's records form a chain: seq 1, 2, 3, ..., each naming the id of the one before.
//! Given what a store holds of a chain (through [`ChainView`]), [`classify`] says whether a new
//! record is the next one, a duplicate, beyond a gap (and what is missing), or a fork. A fork is
//! a [`ForkProof`]: two records signed by the same author that cannot both be in one chain. Anyone
//! can verify it from the two records and the roster alone.

use crate::encoding::{self, EncodingError};
use crate::id::{MemberKey, RecordId};
use crate::record::Record;
use crate::roster::Roster;
use crate::validate::{RecordError, check_signed};

/// The contiguous head of an author's chain: every record `1..=seq` is held, the one at `seq`
/// has this id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChainHead {
    /// Highest contiguous seq.
    pub seq: u64,
    /// Id of the record at `seq`.
    pub id: RecordId,
}

/// What a store knows of authors' chains.
pub trait ChainView {
    /// The contiguous head of the author's chain, if any record `1..` is held.
    fn head(&self, author: &MemberKey) -> Option<ChainHead>;
    /// A record held at `(author, seq)` (if the author forked there, any one of them).
    fn at(&self, author: &MemberKey, seq: u64) -> Option<Record>;
}

/// Where a record stands in its author's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainPosition {
    /// It extends the contiguous head by one.
    Next,
    /// It is already held.
    Duplicate,
    /// Records `from..=to` are missing before it; keep it pending and fetch them.
    Gap {
        /// First missing seq.
        from: u64,
        /// Last missing seq.
        to: u64,
    },
    /// It conflicts with a held record: the author equivocated.
    Fork(ForkProof),
}

/// Classifies `record` against what `view` holds of its author's chain.
///
/// The record's own fields must already be checked ([`crate::check_record`]).
pub fn classify(record: &Record, view: &impl ChainView) -> ChainPosition {
    let author = record.author();
    let seq = record.seq();
    if let Some(held) = view.at(&author, seq) {
        if held.id() == record.id() {
            return ChainPosition::Duplicate;
        }
        if let Some(proof) = ForkProof::new(held, record.clone()) {
            return ChainPosition::Fork(proof);
        }
    }
    if seq > 1
        && let Some(before) = view.at(&author, seq - 1)
        && record.prev() != Some(before.id())
        && let Some(proof) = ForkProof::new(before, record.clone())
    {
        return ChainPosition::Fork(proof);
    }
    if let Some(after) = seq.checked_add(1).and_then(|next| view.at(&author, next))
        && after.prev() != Some(record.id())
        && let Some(proof) = ForkProof::new(record.clone(), after)
    {
        return ChainPosition::Fork(proof);
    }
    let head = view.head(&author).map_or(0, |h| h.seq);
    if seq > head.saturating_add(1) {
        ChainPosition::Gap {
            from: head + 1,
            to: seq - 1,
        }
    } else {
        ChainPosition::Next
    }
}

/// Proof that an author equivocated: two records by the same author that cannot both belong to
/// one chain, either because they share a seq (and differ), or because one is at seq `n`, the
/// other at `n + 1`, and the second does not name the first as `prev`.
///
/// The pair is kept in a canonical order (by seq, then id), so one fork has one proof encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForkProof {
    first: Record,
    second: Record,
}

/// Why a fork proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ForkProofError {
    /// The proof bytes are not two length-prefixed records.
    #[error("fork proof does not decode: {0}")]
    Encoding(EncodingError),
    /// One of the records is invalid.
    #[error("fork proof holds an invalid record: {0}")]
    Record(RecordError),
    /// The two records are valid but do not show equivocation.
    #[error("not a fork: {0}")]
    NotAFork(&'static str),
}

impl ForkProof {
    /// Pairs two records if, structurally, they prove a fork (signatures are not checked here;
    /// see [`ForkProof::verify`]).
    pub fn new(a: Record, b: Record) -> Option<ForkProof> {
        Self::check_structure(&a, &b).ok()?;
        let (first, second) = if (a.seq(), a.id()) <= (b.seq(), b.id()) {
            (a, b)
        } else {
            (b, a)
        };
        Some(ForkProof { first, second })
    }

    fn check_structure(a: &Record, b: &Record) -> Result<(), ForkProofError> {
        if a.author() != b.author() {
            return Err(ForkProofError::NotAFork(
                "the records have different authors",
            ));
        }
        if a.id() == b.id() {
            return Err(ForkProofError::NotAFork(
                "the two records are the same record",
            ));
        }
        let (lo, hi) = if a.seq() <= b.seq() { (a, b) } else { (b, a) };
        if lo.seq() == hi.seq() {
            return Ok(());
        }
        if lo.seq() + 1 == hi.seq() && hi.prev() != Some(lo.id()) {
            return Ok(());
        }
        Err(ForkProofError::NotAFork(
            "the records neither share a seq nor break a link between consecutive seqs",
        ))
    }

    /// Verifies the proof against the roster: both records well formed and signed by the same
    /// member, and in conflict. Returns the equivocating author.
    pub fn verify(&self, roster: &Roster) -> Result<MemberKey, ForkProofError> {
        for r in [&self.first, &self.second] {
            check_signed(r, roster)?;
        }
        Self::check_structure(&self.first, &self.second)?;
        Ok(self.first.author())
    }

    /// The equivocating author.
    pub fn author(&self) -> MemberKey {
        self.first.author()
    }

    /// The two records, in canonical order.
    pub fn records(&self) -> (&Record, &Record) {
        (&self.first, &self.second)
    }

    /// A stable id for the proof: SHA-256 of its encoding.
    pub fn id(&self) -> RecordId {
        RecordId::of_encoding(&self.encode())
    }

    /// Encodes the proof (the two records' exact bytes).
    pub fn encode(&self) -> Vec<u8> {
        encoding::pair_to_vec(self.first.as_bytes(), self.second.as_bytes())
    }

    /// Decodes a proof and checks its structure (not its signatures: call [`ForkProof::verify`]).
    pub fn decode(bytes: &[u8]) -> Result<ForkProof, ForkProofError> {
        let (a, b) = encoding::pair_from_slice(bytes)?;
        let (a, b) = (Record::decode(&a)?, Record::decode(&b)?);
        Self::check_structure(&a, &b)?;
        let proof = ForkProof::new(a, b).ok_or(ForkProofError::NotAFork("not a fork"))?;
        if proof.encode() != bytes {
            return Err(ForkProofError::Encoding(EncodingError::NonCanonical));
        }
        Ok(proof)
    }
}

// Manual conversions (not `#[from]`): the message already includes the cause, so it is not
// also reported as a `source` (which would print it twice in error chains).
impl From<EncodingError> for ForkProofError {
    fn from(e: EncodingError) -> Self {
        ForkProofError::Encoding(e)
    }
}

impl From<RecordError> for ForkProofError {
    fn from(e: RecordError) -> Self {
        ForkProofError::Record(e)
    }
}
