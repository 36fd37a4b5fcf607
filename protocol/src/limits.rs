//! Size limits. Every limit here is part of the protocol: a record over any of them is invalid
//! everywhere, so all nodes agree on what is valid.

/// Largest encoded record, in bytes (32 KiB). Chosen to sit well under gossipsub's 64 KiB
/// default transmit size with room for framing, and so that a sync batch of many records stays
/// small. Claims are text plus evidence *hashes*, never the artefacts themselves.
pub const MAX_RECORD_BYTES: usize = 32 * 1024;

/// Longest title (incident title), in bytes of UTF-8.
pub const MAX_TITLE: usize = 200;
/// Longest free text (summary, statement, reason), in bytes of UTF-8.
pub const MAX_TEXT: usize = 8 * 1024;
/// Longest short label (actor name, tag, sector, evidence kind), in bytes of UTF-8.
pub const MAX_LABEL: usize = 128;
/// Longest evidence description or locator, in bytes of UTF-8.
pub const MAX_EVIDENCE_TEXT: usize = 1024;
/// Most tags or sectors on a claim.
pub const MAX_TAGS: usize = 32;
/// Most evidence items on one record.
pub const MAX_EVIDENCE: usize = 64;
/// How far in the future (by the receiver's clock) a record's `created_at` may be: 5 minutes.
pub const MAX_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;
