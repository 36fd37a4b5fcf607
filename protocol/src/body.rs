//! What a record says: claims, rebuttals, endorsements, retractions, withdrawals.
//!
//! # Extensibility rule
//! A body is encoded as a *kind number* followed by a length-prefixed *payload*. The kinds known
//! today are 1 = claim, 2 = rebuttal, 3 = endorsement, 4 = retraction, 5 = withdrawal. A node
//! that meets a kind it does not know keeps it as [`Body::Unknown`]: the envelope (author, chain
//! position, signature, size) is still fully verified, the record is stored and forwarded, and it
//! is shown as "unknown kind N", but it is never interpreted and cannot be the target of a
//! response. This
//! keeps every author's hash chain whole across software versions. A change to an existing
//! body's fields is a new kind number, never an edit of an old one, so old signatures stay valid.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::encoding;
use crate::id::{RecordId, Sha256Digest, StateCode};

/// The names of the record kinds this version knows, as [`Body::kind_name`] gives them.
pub const KIND_NAMES: [&str; 5] = [
    "claim",
    "rebuttal",
    "endorsement",
    "retraction",
    "withdrawal",
];
/// The kind number of a claim.
pub const KIND_CLAIM: u16 = 1;
/// The kind number of a rebuttal.
pub const KIND_REBUTTAL: u16 = 2;
/// The kind number of an endorsement.
pub const KIND_ENDORSEMENT: u16 = 3;
/// The kind number of a retraction.
pub const KIND_RETRACTION: u16 = 4;
/// The kind number of a withdrawal.
pub const KIND_WITHDRAWAL: u16 = 5;

/// An attribution claim: "incident X, observed then, is attributed to Y, with this confidence
/// and this evidence".
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    /// What happened.
    pub incident: Incident,
    /// To whom it is attributed.
    pub attributed_to: Attribution,
    /// Confidence, 0–100, on the STIX 2.1 confidence scale.
    pub confidence: u8,
    /// Evidence, by hash.
    #[serde(default)]
    pub evidence: Vec<Evidence>,
    /// Who may see this outside the member network.
    pub tlp: Tlp,
    /// The author's earlier claim that this one revises, if any. Only the author of that claim
    /// may supersede it.
    #[serde(default)]
    pub supersedes: Option<RecordId>,
}

/// The incident a claim is about.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Incident {
    /// A short title.
    pub title: String,
    /// What was observed.
    #[serde(default)]
    pub summary: String,
    /// Start of the observed activity, ms since the Unix epoch (in JSON/TOML also an RFC 3339
    /// time such as `"2026-11-20T08:00:00Z"`).
    #[serde(deserialize_with = "time_ms")]
    pub observed_from: u64,
    /// End of the observed activity, ms since the Unix epoch (≥ `observed_from`; also RFC 3339).
    #[serde(deserialize_with = "time_ms")]
    pub observed_to: u64,
    /// Affected sectors (e.g. `energy`, `health`).
    #[serde(default)]
    pub sectors: Vec<String>,
    /// Free tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// Whom a claim attributes the incident to: a state, a named actor or group, or both.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attribution {
    /// The state held responsible, if any.
    #[serde(default)]
    pub state: Option<StateCode>,
    /// The actor or group held responsible, if any (e.g. `APT-X`).
    #[serde(default)]
    pub actor: Option<String>,
}

/// A piece of evidence, by hash: the artefact itself never leaves its owner.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// What kind of artefact (e.g. `malware-sample`, `pcap`, `log`, `report`).
    pub kind: String,
    /// SHA-256 of the artefact.
    pub sha256: Sha256Digest,
    /// What it shows.
    pub description: String,
    /// Where a member may request it, if anywhere.
    #[serde(default)]
    pub locator: Option<String>,
}

/// Parses an RFC 3339 time with its zone: `Z` or an offset such as `+02:00`
/// (`2026-11-20T08:00:00Z`, `2026-11-20T10:00:00.5+02:00`). A time without a zone is refused
/// rather than guessed: a record's times are signed for good.
pub fn parse_rfc3339(text: &str) -> Result<std::time::SystemTime, String> {
    let t = text.trim();
    let hint = "write e.g. 2026-11-20T08:00:00Z (UTC) or 2026-11-20T10:00:00+02:00";
    let (local, offset_s): (&str, i64) = if let Some(base) = t.strip_suffix(['Z', 'z']) {
        (base, 0)
    } else {
        let split = t.len().checked_sub(6).filter(|i| t.is_char_boundary(*i));
        let zone = split.map(|i| (&t[..i], &t.as_bytes()[i..]));
        match zone {
            Some((base, [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2]))
                if [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()) =>
            {
                let num = |a: &u8, b: &u8| i64::from(a - b'0') * 10 + i64::from(b - b'0');
                let (h, m) = (num(h1, h2), num(m1, m2));
                if h > 23 || m > 59 {
                    return Err(format!("{text:?} has an offset out of range; {hint}"));
                }
                let secs = h * 3600 + m * 60;
                (base, if *sign == b'-' { -secs } else { secs })
            }
            _ if humantime::parse_rfc3339_weak(t).is_ok() => {
                return Err(format!(
                    "{text:?} has no time zone: add Z for UTC or an offset like +02:00; {hint}"
                ));
            }
            _ => return Err(format!("{text:?} is not a time; {hint}")),
        }
    };
    let at = humantime::parse_rfc3339_weak(local)
        .map_err(|e| format!("{text:?} is not a time ({e}); {hint}"))?;
    let shift = std::time::Duration::from_secs(offset_s.unsigned_abs());
    let utc = if offset_s >= 0 {
        at.checked_sub(shift)
    } else {
        at.checked_add(shift)
    };
    utc.ok_or_else(|| format!("{text:?} is out of range; {hint}"))
}

/// Accepts ms since the epoch as a number, or an RFC 3339 time as a string.
fn time_ms<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Time {
        Ms(u64),
        Text(String),
    }
    match Time::deserialize(d)? {
        Time::Ms(ms) => Ok(ms),
        Time::Text(t) => parse_rfc3339(&t)
            .and_then(|at| {
                at.duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .map_err(|_| format!("{t:?} is before 1970"))
            })
            .map_err(|e| serde::de::Error::custom(format!("{e} (or ms since 1970)"))),
    }
}

/// Traffic Light Protocol 2.0 marking. In JSON/TOML: `CLEAR`, `GREEN`, `AMBER`,
/// `AMBER+STRICT`, `RED` (any case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode, Serialize)]
pub enum Tlp {
    /// TLP:CLEAR, no limit on disclosure.
    #[serde(rename = "CLEAR")]
    Clear,
    /// TLP:GREEN, the community.
    #[serde(rename = "GREEN")]
    Green,
    /// TLP:AMBER, recipients' organisations and their clients.
    #[serde(rename = "AMBER")]
    Amber,
    /// TLP:AMBER+STRICT, recipients' organisations only.
    #[serde(rename = "AMBER+STRICT")]
    AmberStrict,
    /// TLP:RED, named recipients only.
    #[serde(rename = "RED")]
    Red,
}

impl<'de> Deserialize<'de> for Tlp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s
            .to_ascii_uppercase()
            .replace(['_', ' '], "+")
            .trim_start_matches("TLP:")
        {
            "CLEAR" | "WHITE" => Ok(Tlp::Clear),
            "GREEN" => Ok(Tlp::Green),
            "AMBER" => Ok(Tlp::Amber),
            "AMBER+STRICT" => Ok(Tlp::AmberStrict),
            "RED" => Ok(Tlp::Red),
            _ => Err(serde::de::Error::custom(format!(
                "{s:?} is not a TLP level: use CLEAR, GREEN, AMBER, AMBER+STRICT or RED"
            ))),
        }
    }
}

/// How a rebuttal disputes a claim.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Stance {
    /// The claim is false.
    Deny,
    /// The evidence does not show what the claim says.
    DisputeEvidence,
    /// The activity happened but the attribution is wrong.
    DisputeAttribution,
    /// Part of the claim is accepted.
    PartiallyAccept,
    /// More information is asked for before taking a position.
    RequestInformation,
}

/// Agreement with a claim, on the STIX 2.1 opinion scale.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Opinion {
    /// strongly-disagree
    StronglyDisagree,
    /// disagree
    Disagree,
    /// neutral
    Neutral,
    /// agree
    Agree,
    /// strongly-agree
    StronglyAgree,
}

/// A dispute of a claim, by the accused or anyone.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rebuttal {
    /// The claim disputed.
    pub target: RecordId,
    /// How it is disputed.
    pub stance: Stance,
    /// Reasons.
    pub statement: String,
    /// Counter-evidence, by hash.
    #[serde(default)]
    pub evidence: Vec<Evidence>,
}

/// A third state's position on a claim.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endorsement {
    /// The claim endorsed (or not).
    pub target: RecordId,
    /// Agreement with the claim.
    pub agreement: Opinion,
    /// Reasons (may be empty).
    #[serde(default)]
    pub statement: String,
    /// Supporting evidence, by hash.
    #[serde(default)]
    pub evidence: Vec<Evidence>,
}

/// The withdrawal of a claim by its own author.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retraction {
    /// The claim withdrawn.
    pub target: RecordId,
    /// Why.
    pub reason: String,
}

/// A state takes back its own position on someone else's claim: its standing endorsement and
/// rebuttal of the claim stop counting (a later endorsement or rebuttal counts again). The
/// claim's author retracts instead.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Withdrawal {
    /// The claim.
    pub target: RecordId,
    /// Why.
    pub reason: String,
}

/// What a record says. See the module docs for the extensibility rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    /// Kind 1.
    Claim(Claim),
    /// Kind 2.
    Rebuttal(Rebuttal),
    /// Kind 3.
    Endorsement(Endorsement),
    /// Kind 4.
    Retraction(Retraction),
    /// Kind 5.
    Withdrawal(Withdrawal),
    /// A kind this software does not know: kept verbatim, never interpreted.
    Unknown {
        /// The kind number.
        code: u16,
        /// The payload bytes, as signed.
        #[serde(serialize_with = "hex_bytes")]
        payload: Vec<u8>,
    },
}

fn hex_bytes<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(bytes))
}

impl Body {
    /// The kind number (see the module docs).
    pub fn code(&self) -> u16 {
        match self {
            Body::Claim(_) => KIND_CLAIM,
            Body::Rebuttal(_) => KIND_REBUTTAL,
            Body::Endorsement(_) => KIND_ENDORSEMENT,
            Body::Retraction(_) => KIND_RETRACTION,
            Body::Withdrawal(_) => KIND_WITHDRAWAL,
            Body::Unknown { code, .. } => *code,
        }
    }

    /// A short lowercase name of the kind (one of [`KIND_NAMES`], or `unknown`).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Body::Claim(_) => "claim",
            Body::Rebuttal(_) => "rebuttal",
            Body::Endorsement(_) => "endorsement",
            Body::Retraction(_) => "retraction",
            Body::Withdrawal(_) => "withdrawal",
            Body::Unknown { .. } => "unknown",
        }
    }

    /// The claim this body responds to: the target of a rebuttal, endorsement, retraction or
    /// withdrawal, or
    /// the claim a revised claim supersedes.
    pub fn target(&self) -> Option<RecordId> {
        match self {
            Body::Claim(c) => c.supersedes,
            Body::Rebuttal(r) => Some(r.target),
            Body::Endorsement(e) => Some(e.target),
            Body::Retraction(r) => Some(r.target),
            Body::Withdrawal(w) => Some(w.target),
            Body::Unknown { .. } => None,
        }
    }

    /// The claim, if this is one.
    pub fn as_claim(&self) -> Option<&Claim> {
        match self {
            Body::Claim(c) => Some(c),
            _ => None,
        }
    }

    fn payload(&self) -> Vec<u8> {
        match self {
            Body::Claim(b) => encoding::to_vec(b),
            Body::Rebuttal(b) => encoding::to_vec(b),
            Body::Endorsement(b) => encoding::to_vec(b),
            Body::Retraction(b) => encoding::to_vec(b),
            Body::Withdrawal(b) => encoding::to_vec(b),
            Body::Unknown { payload, .. } => payload.clone(),
        }
    }
}

impl Encode for Body {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        encoder: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        self.code().encode(encoder)?;
        self.payload().encode(encoder)
    }
}

impl<Context> Decode<Context> for Body {
    fn decode<D: bincode::de::Decoder<Context = Context>>(
        decoder: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        let code = u16::decode(decoder)?;
        let payload = Vec::<u8>::decode(decoder)?;
        fn inner<T: Decode<()> + Encode>(p: &[u8]) -> Result<T, bincode::error::DecodeError> {
            encoding::from_slice(p).map_err(|_| {
                bincode::error::DecodeError::Other("body payload is not a valid encoding")
            })
        }
        Ok(match code {
            KIND_CLAIM => Body::Claim(inner(&payload)?),
            KIND_REBUTTAL => Body::Rebuttal(inner(&payload)?),
            KIND_ENDORSEMENT => Body::Endorsement(inner(&payload)?),
            KIND_RETRACTION => Body::Retraction(inner(&payload)?),
            KIND_WITHDRAWAL => Body::Withdrawal(inner(&payload)?),
            code => Body::Unknown { code, payload },
        })
    }
}
bincode::impl_borrow_decode!(Body);
