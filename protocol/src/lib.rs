//! # attrib-protocol
//!
//! The rules of the attrib attribution-claim exchange, with no I/O: everything a third party
//! needs to verify a copy of the record offline.
//!
//! - [`Roster`]: the member states, their signing keys, the admitted nodes; its [`NetworkId`].
//! - [`Record`]: a signed, content-addressed, hash-chained envelope around a [`Body`]
//!   ([`Claim`], [`Rebuttal`], [`Endorsement`], [`Retraction`]). Its [`RecordId`] is the
//!   SHA-256 of its exact bytes.
//! - [`check_record`]: the stand-alone validation of received bytes, failing with a
//!   [`RecordError`] that says what was wrong; [`check_response`] for responses and their target.
//! - [`chain::classify`]: where a record stands in its author's chain (next, duplicate, gap,
//!   fork); [`ForkProof`]: equivocation anyone can verify.
//! - [`ThreadStatus`]: what a claim and its responses add up to.
//!
//! Encoding lives in one module ([`encoding`]): bincode 2.0.1, one fixed configuration,
//! bounded decoding, canonical form only.
//!
//! ```
//! use attrib_protocol::*;
//!
//! let key = MemberSigningKey::from_bytes(&[7u8; 32]);
//! let roster = Roster::new(RosterFile {
//!     network: "example".into(),
//!     members: vec![Member {
//!         code: "FRA".parse().unwrap(),
//!         name: "France".into(),
//!         key: member_key(&key),
//!         nodes: vec![],
//!     }],
//!     ..Default::default()
//! })
//! .unwrap();
//! let claim = Claim {
//!     incident: Incident {
//!         title: "Grid outage".into(),
//!         summary: "Wiper malware on SCADA hosts".into(),
//!         observed_from: 1_700_000_000_000,
//!         observed_to: 1_700_000_600_000,
//!         sectors: vec!["energy".into()],
//!         tags: vec![],
//!     },
//!     attributed_to: Attribution { state: Some("XYZ".parse().unwrap()), actor: None },
//!     confidence: 70,
//!     evidence: vec![],
//!     tlp: Tlp::Amber,
//!     supersedes: None,
//! };
//! let content = RecordContent {
//!     author: member_key(&key),
//!     seq: 1,
//!     prev: None,
//!     created_at: 1_700_000_700_000,
//!     body: Body::Claim(claim),
//! };
//! let record = Record::sign(content, &key, roster.network_id());
//! let received = check_record(record.as_bytes(), &roster, 1_700_000_700_000).unwrap();
//! assert_eq!(received.id(), record.id());
//! ```

#![deny(missing_docs)]

mod body;
pub mod chain;
pub mod encoding;
mod id;
pub mod limits;
mod record;
mod roster;
pub mod sync;
mod thread;
mod validate;

pub use body::{
    Attribution, Body, Claim, Endorsement, Evidence, Incident, KIND_CLAIM, KIND_ENDORSEMENT,
    KIND_NAMES, KIND_REBUTTAL, KIND_RETRACTION, KIND_WITHDRAWAL, Opinion, Rebuttal, Retraction,
    Stance, Tlp, Withdrawal, parse_rfc3339,
};
pub use chain::{ChainHead, ChainPosition, ChainView, ForkProof, ForkProofError};
pub use id::{
    MemberKey, NetworkId, ParseHexError, ParseStateCodeError, RecordId, Sha256Digest, StateCode,
};
pub use record::{
    MemberSigningKey, RECORD_VERSION, Record, RecordContent, SIGNING_DOMAIN, member_key,
};
pub use roster::{Member, Observer, Roster, RosterError, RosterFile};
pub use thread::{Position, ThreadStatus, opinion_label, stance_label, standing_positions};
pub use validate::{
    RecordError, acts_on_terminal, check_clock, check_content, check_printable, check_record,
    check_records, check_response, check_response_content, check_signed,
};
