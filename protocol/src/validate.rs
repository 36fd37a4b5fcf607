//! Validation: every reason a record can be refused, as one typed error, and the checks that
//! produce them. All checks are pure: the receiver's clock and the target record are passed in.

use crate::body::{Body, Evidence};
use crate::encoding::EncodingError;
use crate::id::{MemberKey, RecordId};
use crate::limits::*;
use crate::record::{Record, RecordContent};
use crate::roster::Roster;

/// Why a record was refused. Each variant names what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The bytes are not a canonical record encoding.
    #[error("record bytes do not decode: {0}")]
    Encoding(EncodingError),
    /// The encoded record is over [`MAX_RECORD_BYTES`].
    #[error("record is {size} bytes, over the {max}-byte limit; shorten texts or evidence lists")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Too short to hold a version byte and a signature.
    #[error("record is only {size} bytes: truncated")]
    Truncated {
        /// Its size.
        size: usize,
    },
    /// The first byte is not a record version this software knows.
    #[error(
        "record format version {version} is not supported (this software reads version 1): these bytes are not an attrib record, or one from a newer attrib (then upgrade)"
    )]
    UnsupportedVersion {
        /// The version byte found.
        version: u8,
    },
    /// A text field is over its limit.
    #[error("field `{field}` is {len} bytes, over its {max}-byte limit")]
    FieldTooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A list has too many items.
    #[error("field `{field}` has {count} items, over its limit of {max}")]
    TooManyItems {
        /// The field.
        field: &'static str,
        /// Its count.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A field has a value that is never valid.
    #[error("field `{field}` is invalid: {reason}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// The author key is not a member of the roster (observers author nothing).
    #[error("author {author} is not a member of this network's roster")]
    UnknownAuthor {
        /// The key.
        author: MemberKey,
    },
    /// The signature does not verify under the author's key for this network.
    #[error("record {id}: signature does not verify under the author's key for this network")]
    BadSignature {
        /// The record.
        id: RecordId,
    },
    /// `created_at` is further ahead of the receiver's clock than allowed.
    #[error(
        "record created at {created_at} ms is more than {max_skew_ms} ms ahead of this node's clock ({now} ms); check the author's clock"
    )]
    FromTheFuture {
        /// The record's timestamp.
        created_at: u64,
        /// The receiver's clock.
        now: u64,
        /// The allowed skew.
        max_skew_ms: u64,
    },
    /// A response targets a record that is not a claim.
    #[error("record targets {target}, which is not a claim but a record of kind {kind}")]
    TargetNotClaim {
        /// The target.
        target: RecordId,
        /// What it is.
        kind: &'static str,
    },
    /// A retraction by someone other than the claim's author.
    #[error("only the author of claim {target} may retract it")]
    RetractionByNonAuthor {
        /// The claim.
        target: RecordId,
    },
    /// A withdrawal by the claim's own author.
    #[error("a state cannot withdraw from its own claim {target}; retract or revise it instead")]
    WithdrawalByAuthor {
        /// The claim.
        target: RecordId,
    },
    /// A revision of someone else's claim.
    #[error("only the author of claim {target} may supersede it")]
    SupersedeByNonAuthor {
        /// The claim.
        target: RecordId,
    },
    /// A rebuttal of one's own claim (retract or revise it instead).
    #[error("a state cannot rebut its own claim {target}; retract or revise it instead")]
    SelfRebuttal {
        /// The claim.
        target: RecordId,
    },
    /// An endorsement of one's own claim.
    #[error("a state cannot endorse its own claim {target}")]
    SelfEndorsement {
        /// The claim.
        target: RecordId,
    },
}

// A manual conversion (not `#[from]`): the message already includes the cause.
impl From<EncodingError> for RecordError {
    fn from(e: EncodingError) -> Self {
        RecordError::Encoding(e)
    }
}

/// The full stand-alone check of received bytes: decode (bounded, canonical), field limits,
/// author in the roster, signature (`verify_strict`), and clock skew against `now_ms`.
/// What it cannot check alone (chain position, response target) is in [`crate::chain`] and
/// [`check_response`].
pub fn check_record(bytes: &[u8], roster: &Roster, now_ms: u64) -> Result<Record, RecordError> {
    let record = Record::decode(bytes)?;
    check_content(record.content())?;
    check_clock(&record, now_ms)?;
    record.verify_signature(roster)?;
    Ok(record)
}

/// The check of a record whose time is not judged now (a fork proof's records, which prove
/// what they prove whenever they are read, or a peer's proof of a chain head): field limits,
/// author in the roster, signature. [`check_record`] adds the clock.
pub fn check_signed(record: &Record, roster: &Roster) -> Result<(), RecordError> {
    check_content(record.content())?;
    record.verify_signature(roster)
}

/// Checks that `created_at` is not too far ahead of the receiver's clock.
pub fn check_clock(record: &Record, now_ms: u64) -> Result<(), RecordError> {
    if record.created_at() > now_ms.saturating_add(MAX_CLOCK_SKEW_MS) {
        return Err(RecordError::FromTheFuture {
            created_at: record.created_at(),
            now: now_ms,
            max_skew_ms: MAX_CLOCK_SKEW_MS,
        });
    }
    Ok(())
}

/// Checks the rules a record's content must meet on its own: chain fields and field limits.
/// Run by authors before signing, and by receivers.
pub fn check_content(c: &RecordContent) -> Result<(), RecordError> {
    if c.seq == 0 {
        return Err(RecordError::InvalidField {
            field: "seq",
            reason: "sequence numbers start at 1",
        });
    }
    if (c.seq == 1) != c.prev.is_none() {
        return Err(RecordError::InvalidField {
            field: "prev",
            reason: "must be absent exactly when seq is 1",
        });
    }
    match &c.body {
        Body::Claim(claim) => {
            let i = &claim.incident;
            text("incident.title", &i.title, MAX_TITLE)?;
            non_empty("incident.title", &i.title)?;
            text("incident.summary", &i.summary, MAX_TEXT)?;
            if i.observed_from > i.observed_to {
                return Err(RecordError::InvalidField {
                    field: "incident.observed_to",
                    reason: "must not be before observed_from",
                });
            }
            if i.observed_to > c.created_at.saturating_add(MAX_CLOCK_SKEW_MS) {
                return Err(RecordError::InvalidField {
                    field: "incident.observed_to",
                    reason: "must not be after the record's created_at (an incident is observed before it is claimed)",
                });
            }
            labels("incident.sectors", &i.sectors)?;
            labels("incident.tags", &i.tags)?;
            let a = &claim.attributed_to;
            if a.state.is_none() && a.actor.is_none() {
                return Err(RecordError::InvalidField {
                    field: "attributed_to",
                    reason: "name a state, an actor, or both",
                });
            }
            if let Some(actor) = &a.actor {
                text("attributed_to.actor", actor, MAX_LABEL)?;
                non_empty("attributed_to.actor", actor)?;
            }
            if claim.confidence > 100 {
                return Err(RecordError::InvalidField {
                    field: "confidence",
                    reason: "must be 0..=100 (STIX 2.1 confidence scale)",
                });
            }
            evidence(&claim.evidence)
        }
        Body::Rebuttal(r) => {
            text("statement", &r.statement, MAX_TEXT)?;
            non_empty("statement", &r.statement)?;
            evidence(&r.evidence)
        }
        Body::Endorsement(e) => {
            text("statement", &e.statement, MAX_TEXT)?;
            evidence(&e.evidence)
        }
        Body::Retraction(r) => {
            text("reason", &r.reason, MAX_TEXT)?;
            non_empty("reason", &r.reason)
        }
        Body::Withdrawal(w) => {
            text("reason", &w.reason, MAX_TEXT)?;
            non_empty("reason", &w.reason)
        }
        Body::Unknown { .. } => Ok(()),
    }
}

/// Checks a response (rebuttal, endorsement, retraction, superseding claim) against the record
/// it targets. `target` must be the record whose id is `record.body().target()`.
pub fn check_response(record: &Record, target: &Record) -> Result<(), RecordError> {
    check_response_content(record.content(), target)
}

/// [`check_response`] for content not yet signed: the rule depends only on who says what, so an
/// author can check a response before signing it.
pub fn check_response_content(content: &RecordContent, target: &Record) -> Result<(), RecordError> {
    let target_id = target.id();
    if !matches!(target.body(), Body::Claim(_)) {
        return Err(RecordError::TargetNotClaim {
            target: target_id,
            kind: target.body().kind_name(),
        });
    }
    let same_author = content.author == target.author();
    match &content.body {
        Body::Retraction(_) if !same_author => {
            Err(RecordError::RetractionByNonAuthor { target: target_id })
        }
        Body::Claim(_) if !same_author => {
            Err(RecordError::SupersedeByNonAuthor { target: target_id })
        }
        Body::Endorsement(_) if same_author => {
            Err(RecordError::SelfEndorsement { target: target_id })
        }
        Body::Rebuttal(_) if same_author => Err(RecordError::SelfRebuttal { target: target_id }),
        Body::Withdrawal(_) if same_author => {
            Err(RecordError::WithdrawalByAuthor { target: target_id })
        }
        _ => Ok(()),
    }
}

fn text(field: &'static str, s: &str, max: usize) -> Result<(), RecordError> {
    if s.len() > max {
        return Err(RecordError::FieldTooLong {
            field,
            len: s.len(),
            max,
        });
    }
    Ok(())
}

/// Checks that a record's text is safe to show, before it is signed or published here: no
/// control characters (a reader's terminal would act on them: move the cursor, clear the
/// screen, forge a line of output), line breaks and tabs aside in free text, and no
/// bidirectional embeddings, overrides or isolates (they reorder what is shown, so text reads
/// as something else; the plain marks LRM, RLM and ALM that right-to-left scripts need are
/// fine).
///
/// This is not a validity rule: records signed before it existed, or by other software, stay
/// valid, and a receiver must still escape what it shows (the CLI does).
pub fn check_printable(body: &Body) -> Result<(), RecordError> {
    match body {
        Body::Claim(c) => {
            printable("incident.title", &c.incident.title, false)?;
            printable("incident.summary", &c.incident.summary, true)?;
            for s in &c.incident.sectors {
                printable("incident.sectors", s, false)?;
            }
            for t in &c.incident.tags {
                printable("incident.tags", t, false)?;
            }
            if let Some(actor) = &c.attributed_to.actor {
                printable("attributed_to.actor", actor, false)?;
            }
            evidence_printable(&c.evidence)
        }
        Body::Rebuttal(r) => {
            printable("statement", &r.statement, true)?;
            evidence_printable(&r.evidence)
        }
        Body::Endorsement(e) => {
            printable("statement", &e.statement, true)?;
            evidence_printable(&e.evidence)
        }
        Body::Retraction(r) => printable("reason", &r.reason, true),
        Body::Withdrawal(w) => printable("reason", &w.reason, true),
        Body::Unknown { .. } => Ok(()),
    }
}

fn evidence_printable(items: &[Evidence]) -> Result<(), RecordError> {
    for e in items {
        printable("evidence.kind", &e.kind, false)?;
        printable("evidence.description", &e.description, true)?;
        if let Some(l) = &e.locator {
            printable("evidence.locator", l, false)?;
        }
    }
    Ok(())
}

fn printable(field: &'static str, s: &str, lines: bool) -> Result<(), RecordError> {
    // Free text keeps its line breaks and tabs.
    let allowed = |c: char| lines && matches!(c, '\n' | '\r' | '\t' | '\u{2028}' | '\u{2029}');
    if s.chars().any(|c| acts_on_terminal(c) && !allowed(c)) {
        return Err(RecordError::InvalidField {
            field,
            reason: if lines {
                "must not contain control characters other than line breaks and tabs, nor bidirectional embeddings, overrides or isolates (a reader's terminal would act on them)"
            } else {
                "must be one line without control characters or bidirectional embeddings, overrides or isolates (a reader's terminal would act on them)"
            },
        });
    }
    Ok(())
}

/// Whether a terminal showing `c` would do something other than print it: a control
/// character (line breaks and tabs among them), a line or paragraph separator, or a Unicode
/// bidirectional embedding, override or isolate (U+202A–U+202E, U+2066–U+2069), which reorders
/// the display of the text around it.
pub fn acts_on_terminal(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

fn non_empty(field: &'static str, s: &str) -> Result<(), RecordError> {
    if s.trim().is_empty() {
        return Err(RecordError::InvalidField {
            field,
            reason: "must not be empty",
        });
    }
    Ok(())
}

fn labels(field: &'static str, items: &[String]) -> Result<(), RecordError> {
    if items.len() > MAX_TAGS {
        return Err(RecordError::TooManyItems {
            field,
            count: items.len(),
            max: MAX_TAGS,
        });
    }
    for item in items {
        text(field, item, MAX_LABEL)?;
        non_empty(field, item)?;
    }
    Ok(())
}

fn evidence(items: &[Evidence]) -> Result<(), RecordError> {
    if items.len() > MAX_EVIDENCE {
        return Err(RecordError::TooManyItems {
            field: "evidence",
            count: items.len(),
            max: MAX_EVIDENCE,
        });
    }
    for e in items {
        text("evidence.kind", &e.kind, MAX_LABEL)?;
        non_empty("evidence.kind", &e.kind)?;
        text("evidence.description", &e.description, MAX_EVIDENCE_TEXT)?;
        if let Some(l) = &e.locator {
            text("evidence.locator", l, MAX_EVIDENCE_TEXT)?;
        }
    }
    Ok(())
}

/// Checks many received records at once, as [`check_record`] does for one, with one ed25519
/// batch verification for all signatures (falling back to one-by-one checks,
/// [`Record::verify_signature`], to find the bad ones if the batch fails). Results are in
/// input order.
///
/// The batch also demands what `verify_strict` demands of `R` (a canonical encoding of a point
/// that is not of small order). It does not test `R` for a torsion component, which would cost
/// more than the batch saves: a signature whose `R` carries one can only be made with the
/// author's secret key, and fails the one-by-one check; whether it passes the cofactorless
/// batch equation depends on the batch's random weights, which are derived from the batch's
/// contents, so its author can make one that passes a given batch (a batch of one, say). Such
/// a record (only ever its own author's doing) may therefore be accepted by a node during
/// catch-up and refused by others; it is still the author's signed statement and cannot be
/// attributed to anyone else.
pub fn check_records(
    items: &[&[u8]],
    roster: &Roster,
    now_ms: u64,
) -> Vec<Result<Record, RecordError>> {
    let mut out: Vec<Result<Record, RecordError>> = items
        .iter()
        .map(|bytes| {
            let record = Record::decode(bytes)?;
            check_content(record.content())?;
            check_clock(&record, now_ms)?;
            if roster.verifying_key(&record.author()).is_none() {
                return Err(RecordError::UnknownAuthor {
                    author: record.author(),
                });
            }
            Ok(record)
        })
        .collect();
    let ok: Vec<usize> = (0..out.len()).filter(|i| out[*i].is_ok()).collect();
    if ok.is_empty() {
        return out;
    }
    let network = roster.network_id();
    let mut messages = Vec::with_capacity(ok.len());
    let mut signatures = Vec::with_capacity(ok.len());
    let mut keys = Vec::with_capacity(ok.len());
    for i in &ok {
        if let Ok(r) = &out[*i]
            && let Some(key) = roster.verifying_key(&r.author())
        {
            messages.push(r.signed_message(network));
            signatures.push(r.signature());
            keys.push(*key);
        }
    }
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let batch_ok = ed25519_dalek::verify_batch(&refs, &signatures, &keys).is_ok()
        && signatures.iter().all(crate::record::strict_r);
    if !batch_ok {
        for i in ok {
            if let Ok(r) = &out[i]
                && let Err(e) = r.verify_signature(roster)
            {
                out[i] = Err(e);
            }
        }
    }
    out
}
