//! STIX 2.1: how attrib records look to threat-intelligence tools, and back.
//!
//! Mapping (one record gives a few objects, all with ids derived from the record id, so an
//! export is deterministic and re-exports update rather than duplicate):
//! - a **claim** becomes a `campaign` (the observed activity: title, summary, first/last seen,
//!   evidence hashes as external references), a `threat-actor` (the named actor, or "state
//!   actor of XXX"), an `identity` for the accused state, and `relationship`s `attributed-to`
//!   (campaign → threat-actor with the claim's `confidence`; threat-actor → state identity);
//! - a **rebuttal** or **endorsement** becomes an `opinion` on the claim's relationship
//!   (rebuttal stances map to disagreement, endorsements to their STIX opinion);
//! - a **retraction**, or a revision that supersedes a claim, becomes a new version of the
//!   claim's relationship with `revoked: true`;
//! - every author is an `identity` (`created_by_ref`), TLP is a marking definition.
//!
//! The object that stands for a record (the claim's relationship, an opinion, a revoked
//! relationship version) carries the exact signed record (hex) and the network id in a STIX 2.1
//! property extension ([`EXTENSION_ID`], defined in every bundle): the signature travels with
//! the export and [`verify_bundle`] checks a bundle offline against the roster.
//!
//! Ids are deterministic (derived from record ids by SHA-256) and shaped as UUIDv4, as STIX
//! recommends for domain objects.

use attrib_protocol::{
    Body, Claim, Evidence, Opinion, Record, RecordId, Roster, Stance, StateCode, Tlp, check_record,
};
use serde_json::{Value, json};

use crate::FeedEntry;

/// The attrib property extension: where the original signed record travels.
pub const EXTENSION_ID: &str = "extension-definition--3f0c2a8e-5d41-4b9e-9a7c-2e6b1d8f4c30";
/// The identity that defines the extension.
const ATTRIB_IDENTITY: &str = "identity--8c1e4f2a-7b3d-4e9a-b6c5-1d2f3a4b5c6d";

/// The extension definition and its author, included once in every bundle.
pub fn extension_objects() -> Vec<Value> {
    vec![
        json!({
            "type": "identity",
            "spec_version": "2.1",
            "id": ATTRIB_IDENTITY,
            "created": FIXED_CREATED,
            "modified": FIXED_CREATED,
            "name": "attrib",
            "identity_class": "system",
            "description": "The attrib multilateral attribution-claim exchange.",
        }),
        json!({
            "type": "extension-definition",
            "spec_version": "2.1",
            "id": EXTENSION_ID,
            "created_by_ref": ATTRIB_IDENTITY,
            "created": FIXED_CREATED,
            "modified": FIXED_CREATED,
            "name": "attrib signed record",
            "description": "The exact signed attrib record (hex) this object was made from, and its network id; verify with `attrib verify --stix`.",
            "schema": "https://example.invalid/attrib/stix-extension-v1.json",
            "version": "1.0.0",
            "extension_types": ["property-extension"],
        }),
    ]
}

fn record_extension(record: &Record, network: &str) -> Value {
    json!({
        EXTENSION_ID: {
            "extension_type": "property-extension",
            "record": hex::encode(record.as_bytes()),
            "network": network,
        }
    })
}

/// The signed record (hex) an exported object carries, if any.
pub fn carried_record(object: &Value) -> Option<&str> {
    object["extensions"][EXTENSION_ID]["record"].as_str()
}

/// The STIX 2.1 TLP 1.0 marking definitions (TLP 2.0 has no predefined STIX ids; CLEAR is
/// TLP:WHITE, AMBER+STRICT is exported as TLP:AMBER with a `tlp:amber+strict` label).
pub fn tlp_marking(tlp: Tlp) -> &'static str {
    match tlp {
        Tlp::Clear => "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9",
        Tlp::Green => "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da",
        Tlp::Amber | Tlp::AmberStrict => "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
        Tlp::Red => "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed",
    }
}

fn stix_id(kind: &str, name: &str) -> String {
    format!("{kind}--{}", stix_uuid(name))
}

/// The UUID part of the id of the object named `name` (one per object a record makes).
fn stix_uuid(name: &str) -> uuid::Uuid {
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(format!("attrib/stix/v1/{name}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// What a STIX object id made by [`objects_of`] was made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectOrigin {
    /// An object made from this record (its other versions come from the records that
    /// revoke it: see [`objects_of`]).
    Record(RecordId),
    /// The identity of this state.
    State(StateCode),
}

/// Which of the records `ids`, or which state, the object `object_id` was made from. Object
/// ids are hashes, so this recomputes, for each record, the ids an object of that type could
/// have: one or two hashes a record.
pub fn origin_of(object_id: &str, ids: &[RecordId]) -> Option<ObjectOrigin> {
    let (kind, uuid) = object_id.split_once("--")?;
    let uuid: uuid::Uuid = uuid.parse().ok()?;
    let names: &[&str] = match kind {
        "campaign" => &["campaign"],
        "threat-actor" => &["actor"],
        "relationship" => &["attributed-to", "actor-state"],
        "opinion" => &["opinion"],
        "identity" => {
            let letters = b'A'..=b'Z';
            return letters.clone().find_map(|a| {
                letters.clone().find_map(|b| {
                    letters.clone().find_map(|c| {
                        let code = StateCode::from_bytes([a, b, c])?;
                        (stix_uuid(&format!("state/{code}")) == uuid)
                            .then_some(ObjectOrigin::State(code))
                    })
                })
            });
        }
        _ => return None,
    };
    ids.iter()
        .find(|id| {
            names
                .iter()
                .any(|n| stix_uuid(&format!("{id}/{n}")) == uuid)
        })
        .map(|id| ObjectOrigin::Record(*id))
}

/// The id of the claim relationship (campaign → actor) made from claim `id`.
pub fn claim_relationship_id(id: &RecordId) -> String {
    stix_id("relationship", &format!("{id}/attributed-to"))
}

/// The id of the opinion made from rebuttal or endorsement `id`.
pub fn opinion_id(id: &RecordId) -> String {
    stix_id("opinion", &format!("{id}/opinion"))
}

/// The id of the `identity` of a state.
pub fn state_identity_id(code: StateCode) -> String {
    stix_id("identity", &format!("state/{code}"))
}

/// STIX timestamp (UTC, millisecond precision) of ms since the epoch.
pub fn timestamp_ms(ms: u64) -> String {
    timestamp_us(ms.saturating_mul(1000))
}

/// STIX timestamp (UTC, microsecond precision) of µs since the epoch.
pub fn timestamp_us(us: u64) -> String {
    let t = std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_micros(us));
    let mut text = t.map_or_else(
        || "9999-12-31T23:59:59.999999Z".to_string(),
        |t| humantime::format_rfc3339_micros(t).to_string(),
    );
    if !text.ends_with('Z') || text.len() != 27 {
        text = "9999-12-31T23:59:59.999999Z".to_string();
    }
    text
}

/// Parses a STIX/TAXII timestamp into µs since the epoch.
pub fn parse_timestamp_us(s: &str) -> Option<u64> {
    let t = attrib_protocol::parse_rfc3339(s).ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_micros() as u64)
}

const FIXED_CREATED: &str = "2020-01-01T00:00:00.000Z";

/// The STIX identity of a state (a roster member is named as in the roster).
pub fn state_identity(roster: &Roster, code: StateCode) -> Value {
    let name = roster
        .member_by_code(code)
        .map_or(code.to_string(), |m| format!("{} ({code})", m.name));
    json!({
        "type": "identity",
        "spec_version": "2.1",
        "id": state_identity_id(code),
        "created": FIXED_CREATED,
        "modified": FIXED_CREATED,
        "name": name,
        "identity_class": "organization",
        "sectors": ["government-national"],
    })
}

fn external_references(evidence: &[Evidence]) -> Vec<Value> {
    evidence
        .iter()
        .map(|e| {
            let mut r = json!({
                "source_name": format!("attrib-evidence:{}", e.kind),
                "description": if e.description.is_empty() { e.kind.clone() } else { e.description.clone() },
                "hashes": { "SHA-256": e.sha256.to_hex() },
            });
            if let Some(l) = &e.locator {
                r["external_id"] = json!(l);
            }
            r
        })
        .collect()
}

fn opinion_of_stance(s: Stance) -> &'static str {
    match s {
        Stance::Deny => "strongly-disagree",
        Stance::DisputeEvidence | Stance::DisputeAttribution => "disagree",
        Stance::PartiallyAccept | Stance::RequestInformation => "neutral",
    }
}

fn opinion_name(o: Opinion) -> &'static str {
    attrib_protocol::opinion_label(o)
}

/// The claim's relationship object (the version made from the claim itself, or a revoked
/// version at `revoked_at`).
fn claim_relationship(
    claim_record: &Record,
    claim: &Claim,
    author: Option<StateCode>,
    network: &str,
    revoked_at: Option<(u64, &Record)>,
) -> Value {
    let id = claim_record.id();
    let created = timestamp_ms(claim_record.created_at());
    let mut rel = json!({
        "type": "relationship",
        "spec_version": "2.1",
        "id": claim_relationship_id(&id),
        "created": created,
        "modified": created,
        "relationship_type": "attributed-to",
        "source_ref": stix_id("campaign", &format!("{id}/campaign")),
        "target_ref": stix_id("threat-actor", &format!("{id}/actor")),
        "confidence": claim.confidence,
        "description": format!("{} attributes \"{}\" to {}", author.map_or("?".into(), |c| c.to_string()), claim.incident.title, attribution_text(claim)),
        "object_marking_refs": [tlp_marking(claim.tlp)],
        "external_references": external_references(&claim.evidence),
        "extensions": record_extension(claim_record, network),
    });
    if rel["external_references"]
        .as_array()
        .is_some_and(Vec::is_empty)
    {
        rel.as_object_mut().map(|o| o.remove("external_references"));
    }
    if let Some(code) = author {
        rel["created_by_ref"] = json!(state_identity_id(code));
    }
    if claim.tlp == Tlp::AmberStrict {
        rel["labels"] = json!(["tlp:amber+strict"]);
    }
    if let Some((at_ms, by)) = revoked_at {
        let modified = timestamp_ms(at_ms.max(claim_record.created_at() + 1));
        rel["modified"] = json!(modified);
        rel["revoked"] = json!(true);
        rel["extensions"] = record_extension(by, network);
    }
    rel
}

fn attribution_text(claim: &Claim) -> String {
    match (&claim.attributed_to.state, &claim.attributed_to.actor) {
        (Some(s), Some(a)) => format!("{a} ({s})"),
        (Some(s), None) => format!("a state actor of {s}"),
        (None, Some(a)) => a.clone(),
        (None, None) => "an unknown actor".into(),
    }
}

/// The records [`objects_of`] consults besides the one it converts, as far as the reader may
/// see them.
pub trait Records {
    /// A record by id: a response's claim, a revision's predecessor.
    fn record(&self, id: &RecordId) -> Option<Record>;
    /// The records that respond to `target` (revisions of it included).
    fn responses(&self, target: &RecordId) -> Vec<Record>;
}

/// The same author's earlier rebuttal (or endorsement) of the same claim that `record`, a
/// rebuttal (endorsement), replaces: its standing one of that kind, if any (a thread counts
/// each state's standing one of each kind only; a withdrawal in between already ended it).
fn replaced_opinion(record: &Record, records: &dyn Records) -> Option<Record> {
    let same_kind = |r: &&Record| {
        matches!(
            (r.body(), record.body()),
            (Body::Rebuttal(_), Body::Rebuttal(_)) | (Body::Endorsement(_), Body::Endorsement(_))
        )
    };
    ended_positions(record, records)
        .into_iter()
        .find(|r| same_kind(&r))
}

/// The author's standing rebuttal and endorsement of `record`'s claim just before `record`
/// (see [`attrib_protocol::standing_positions`]): what a withdrawal ends, and where a
/// rebuttal's or endorsement's predecessor is found.
fn ended_positions(record: &Record, records: &dyn Records) -> Vec<Record> {
    let Some(target) = record.body().target() else {
        return Vec::new();
    };
    let responses = records.responses(&target);
    attrib_protocol::standing_positions(&responses, &record.author(), record.seq())
        .into_iter()
        .cloned()
        .collect()
}

/// Whether a same-author revision of `claim` came before `record` (a retraction of it): the
/// claim's relationship is revoked once, by whichever came first.
fn revised_before(claim: &RecordId, record: &Record, records: &dyn Records) -> bool {
    records.responses(claim).iter().any(|r| {
        r.author() == record.author()
            && r.seq() < record.seq()
            && r.body()
                .as_claim()
                .is_some_and(|c| c.supersedes == Some(*claim))
    })
}

/// The revoked version of `earlier`'s opinion, carrying `by`, the record that ends it.
fn revoked_opinion(
    earlier: &Record,
    by: &Record,
    author: Option<StateCode>,
    network: &str,
    records: &dyn Records,
) -> Option<Value> {
    let mut old = opinion_of(earlier, author, network, records)?;
    let at = by.created_at().max(earlier.created_at() + 1);
    old["modified"] = json!(timestamp_ms(at));
    old["revoked"] = json!(true);
    old["extensions"] = record_extension(by, network);
    Some(old)
}

/// Whether `o` has the shape of a revoked opinion that `by` (a rebuttal, endorsement or
/// withdrawal) makes of an earlier record not at hand: all that can be checked without it (a
/// revoked opinion, of `by`'s claim, by `by`'s author, revoked no earlier than `by`).
fn revoked_opinion_shape(o: &Value, by: &Record, roster: &Roster) -> bool {
    let Some(target) = by.body().target() else {
        return false;
    };
    let author = roster
        .member_by_key(&by.author())
        .is_none_or(|m| o["created_by_ref"] == json!(state_identity_id(m.code)));
    let modified = o["modified"]
        .as_str()
        .and_then(parse_timestamp_us)
        .is_some_and(|us| us / 1000 >= by.created_at());
    o["type"] == "opinion"
        && o["revoked"] == json!(true)
        && o["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("opinion--"))
        && o["object_refs"] == json!([claim_relationship_id(&target)])
        && author
        && modified
}

/// The opinion object of a rebuttal or endorsement (`None` for other records).
fn opinion_of(
    record: &Record,
    author: Option<StateCode>,
    network: &str,
    records: &dyn Records,
) -> Option<Value> {
    let created = timestamp_ms(record.created_at());
    let (target, opinion, explanation, evidence) = match record.body() {
        Body::Rebuttal(r) => (
            r.target,
            opinion_of_stance(r.stance),
            format!(
                "rebuttal ({}): {}",
                attrib_protocol::stance_label(r.stance),
                r.statement
            ),
            &r.evidence,
        ),
        Body::Endorsement(e) => (
            e.target,
            opinion_name(e.agreement),
            format!("endorsement: {}", e.statement),
            &e.evidence,
        ),
        _ => return None,
    };
    let tlp = records
        .record(&target)
        .and_then(|t| t.body().as_claim().map(|c| c.tlp))
        .unwrap_or(Tlp::Red);
    let mut op = json!({
        "type": "opinion",
        "spec_version": "2.1",
        "id": opinion_id(&record.id()),
        "created": created,
        "modified": created,
        "opinion": opinion,
        "explanation": explanation,
        "object_refs": [claim_relationship_id(&target)],
        "object_marking_refs": [tlp_marking(tlp)],
        "extensions": record_extension(record, network),
    });
    if !evidence.is_empty() {
        op["external_references"] = json!(external_references(evidence));
    }
    if let Some(code) = author {
        op["created_by_ref"] = json!(state_identity_id(code));
        op["authors"] = json!([code.to_string()]);
    }
    Some(op)
}

/// The STIX objects made from one stored record. `records` finds the claim a response
/// targets and the responses before it.
pub fn objects_of(entry: &FeedEntry, roster: &Roster, records: &dyn Records) -> Vec<Value> {
    let record = &entry.record;
    let network = roster.network_id().to_hex();
    let author = entry.author_state;
    let mut out = Vec::new();
    if let Some(code) = author {
        out.push(state_identity(roster, code));
    }
    let created = timestamp_ms(record.created_at());
    match record.body() {
        Body::Claim(claim) => {
            let id = record.id();
            let marking = json!([tlp_marking(claim.tlp)]);
            let mut campaign = json!({
                "type": "campaign",
                "spec_version": "2.1",
                "id": stix_id("campaign", &format!("{id}/campaign")),
                "created": created,
                "modified": created,
                "name": claim.incident.title,
                "first_seen": timestamp_ms(claim.incident.observed_from),
                "last_seen": timestamp_ms(claim.incident.observed_to.max(claim.incident.observed_from + 1)),
                "object_marking_refs": marking,
            });
            if !claim.incident.summary.is_empty() {
                campaign["description"] = json!(claim.incident.summary);
            }
            let labels: Vec<&String> = claim
                .incident
                .sectors
                .iter()
                .chain(&claim.incident.tags)
                .collect();
            if !labels.is_empty() {
                campaign["labels"] = json!(labels);
            }
            let actor_name = claim.attributed_to.actor.clone().unwrap_or_else(|| {
                format!(
                    "State actor of {}",
                    claim
                        .attributed_to
                        .state
                        .map_or("?".into(), |s| s.to_string())
                )
            });
            let mut actor = json!({
                "type": "threat-actor",
                "spec_version": "2.1",
                "id": stix_id("threat-actor", &format!("{id}/actor")),
                "created": created,
                "modified": created,
                "name": actor_name,
                "object_marking_refs": marking,
            });
            if claim.attributed_to.state.is_some() {
                actor["threat_actor_types"] = json!(["nation-state"]);
            }
            if let Some(code) = author {
                campaign["created_by_ref"] = json!(state_identity_id(code));
                actor["created_by_ref"] = json!(state_identity_id(code));
            }
            out.push(campaign);
            out.push(actor);
            out.push(claim_relationship(record, claim, author, &network, None));
            if let Some(accused) = claim.attributed_to.state {
                out.push(state_identity(roster, accused));
                let mut rel = json!({
                    "type": "relationship",
                    "spec_version": "2.1",
                    "id": stix_id("relationship", &format!("{id}/actor-state")),
                    "created": created,
                    "modified": created,
                    "relationship_type": "attributed-to",
                    "source_ref": stix_id("threat-actor", &format!("{id}/actor")),
                    "target_ref": state_identity_id(accused),
                    "confidence": claim.confidence,
                    "object_marking_refs": marking,
                });
                if let Some(code) = author {
                    rel["created_by_ref"] = json!(state_identity_id(code));
                }
                out.push(rel);
            }
            if let Some(old) = claim.supersedes
                && let Some(old_record) = records.record(&old)
                && let Some(old_claim) = old_record.body().as_claim()
            {
                out.push(claim_relationship(
                    &old_record,
                    old_claim,
                    author,
                    &network,
                    Some((record.created_at(), record)),
                ));
            }
        }
        Body::Rebuttal(_) | Body::Endorsement(_) => {
            out.extend(opinion_of(record, author, &network, records));
            // It replaces the state's earlier one of its kind: that opinion is revoked by it.
            if let Some(earlier) = replaced_opinion(record, records) {
                out.extend(revoked_opinion(&earlier, record, author, &network, records));
            }
        }
        // It ends the state's standing opinions on the claim: each is revoked by it.
        Body::Withdrawal(_) => {
            for earlier in ended_positions(record, records) {
                out.extend(revoked_opinion(&earlier, record, author, &network, records));
            }
        }
        Body::Retraction(r) => {
            if let Some(target) = records.record(&r.target)
                && let Some(claim) = target.body().as_claim()
                && !revised_before(&r.target, record, records)
            {
                out.push(claim_relationship(
                    &target,
                    claim,
                    author,
                    &network,
                    Some((record.created_at(), record)),
                ));
            }
        }
        Body::Unknown { .. } => {}
    }
    out
}

/// A STIX 2.1 bundle of the objects made from `entries` (identities deduplicated).
pub fn bundle(entries: &[FeedEntry], roster: &Roster, records: &dyn Records) -> Value {
    let mut seen = std::collections::HashSet::new();
    let mut objects = extension_objects();
    for e in entries {
        for o in objects_of(e, roster, records) {
            let key = format!("{}|{}", o["id"], o["modified"]);
            if seen.insert(key) {
                objects.push(o);
            }
        }
    }
    let mut id_source = String::new();
    for e in entries {
        id_source.push_str(&e.record.id().to_hex());
    }
    json!({
        "type": "bundle",
        "id": stix_id("bundle", &id_source),
        "objects": objects,
    })
}

/// What [`verify_bundle`] found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BundleReport {
    /// Signed records whose signature and carrying object's id check out (a record carried by
    /// two objects, an opinion and its revoked version, counts once).
    pub verified: usize,
    /// Objects without an attrib record (identities, campaigns, actors, ...): each must be
    /// one that the bundle's signed records make, or it is a problem.
    pub unsigned: usize,
    /// Of the verified, objects whose STIX properties could not be compared with their record:
    /// they are made with a record that is not in the bundle (a revoked version whose claim
    /// was exported earlier, say). Their signed record is verified all the same.
    pub properties_unchecked: usize,
    /// Problems, one line each.
    pub problems: Vec<String>,
}

/// Verifies every attrib record carried in a bundle against the roster (signature, network,
/// and that the carrying object's id derives from the record), offline, and that each
/// carrying object says what its record says: its STIX properties are compared with the
/// object attrib makes from the record, so an edited confidence or description is caught.
/// Every object that carries no record must be one those records make (compared the same
/// way); anything else, and a bundle with no signed record at all, is a problem.
pub fn verify_bundle(bundle: &Value, roster: &Roster) -> BundleReport {
    let mut report = BundleReport::default();
    let Some(objects) = bundle["objects"].as_array() else {
        report
            .problems
            .push("not a STIX bundle: no `objects` array".into());
        return report;
    };
    // First every carried record's signature, then what each carrying object must be (which
    // for a revoked opinion depends on the other records).
    let mut checked: Vec<(&Value, Record)> = Vec::new();
    let mut refused = 0usize;
    for o in objects {
        let Some(hex_record) = carried_record(o) else {
            report.unsigned += 1;
            continue;
        };
        let oid = o["id"].as_str().unwrap_or("?");
        let bytes = match hex::decode(hex_record) {
            Ok(b) => b,
            Err(_) => {
                report
                    .problems
                    .push(format!("{oid}: the carried record is not hex"));
                continue;
            }
        };
        match check_record(&bytes, roster, u64::MAX / 2) {
            Ok(r) => checked.push((o, r)),
            Err(e) => {
                refused += 1;
                report.problems.push(format!("{oid}: {e}"));
            }
        }
    }
    if checked.is_empty() && refused > 0 {
        // Every record failing is more likely the wrong roster than every record forged.
        report.problems.insert(
            0,
            format!(
                "none of the bundle's {refused} signed record(s) verifies under this roster (network {:?}, id {}): is it the roster of the network that exported the bundle? (`attrib roster show` names a roster's network and id)",
                roster.network_name(),
                roster.network_id().to_hex()
            ),
        );
    }
    let records = BundleRecords::new(checked.iter().map(|(_, r)| r.clone()));
    // The opinion ids of the bundle's records: a revoked opinion whose record is in the bundle
    // is checked against it; one whose record is not can only be checked for its shape.
    let bundle_opinions: std::collections::HashSet<String> =
        records.by_id.keys().map(opinion_id).collect();
    let absent_and_shaped = |o: &Value, oid: &str, by: &Record| {
        !bundle_opinions.contains(oid) && revoked_opinion_shape(o, by, roster)
    };
    let mut carried: Vec<(&Value, Record)> = Vec::new();
    for (o, record) in checked {
        let oid = o["id"].as_str().unwrap_or("?");
        let revoked = o["revoked"] == json!(true);
        let expected = match record.body() {
            Body::Claim(_) if !revoked => Some(claim_relationship_id(&record.id())),
            Body::Claim(c) => c.supersedes.map(|t| claim_relationship_id(&t)),
            Body::Retraction(r) => Some(claim_relationship_id(&r.target)),
            Body::Rebuttal(_) | Body::Endorsement(_) if !revoked => Some(opinion_id(&record.id())),
            // The opinion it replaces: checked when that record is in the bundle, otherwise
            // checked for its shape only and left unchecked (and counted so) below.
            Body::Rebuttal(_) | Body::Endorsement(_) => match replaced_opinion(&record, &records) {
                Some(earlier) => Some(opinion_id(&earlier.id())),
                None => absent_and_shaped(o, oid, &record).then(|| oid.to_string()),
            },
            // One of the opinions it ends, the same way.
            Body::Withdrawal(_) => {
                let ended = ended_positions(&record, &records)
                    .iter()
                    .any(|r| opinion_id(&r.id()) == oid);
                (ended || absent_and_shaped(o, oid, &record)).then(|| oid.to_string())
            }
            Body::Unknown { .. } => None,
        };
        if expected.as_deref() != Some(oid) {
            report.problems.push(format!(
                "{oid}: does not correspond to the record it carries ({})",
                record.id()
            ));
            continue;
        }
        carried.push((o, record));
    }
    // Every object attrib makes from these records, by id and version: the carrying objects
    // and the others (campaigns, actors, identities, the actor-to-state relationships).
    let mut derived: std::collections::HashMap<(String, String), Value> = Default::default();
    // A record can travel in more than one object (an opinion and its revoked version).
    let mut verified = std::collections::HashSet::new();
    for (o, record) in carried {
        let entry = FeedEntry {
            cursor: 0,
            received_us: 0,
            author_state: roster.member_by_key(&record.author()).map(|m| m.code),
            tlp: Tlp::Clear,
            record,
        };
        let made = objects_of(&entry, roster, &records);
        // An opinion takes its claim's TLP marking: without the claim that one property cannot
        // be remade, the others can.
        let target = match entry.record.body() {
            Body::Rebuttal(r) => Some(r.target),
            Body::Endorsement(e) => Some(e.target),
            Body::Withdrawal(w) => Some(w.target),
            _ => None,
        };
        let marking_unknown = target.is_some_and(|t| !records.by_id.contains_key(&t));
        let without_marking = |v: &Value| {
            let mut v = v.clone();
            if marking_unknown {
                v.as_object_mut().map(|m| m.remove("object_marking_refs"));
            }
            v
        };
        // What the record makes besides the carrying object stands whatever that object says.
        for m in made.iter().filter(|m| carried_record(m).is_none()) {
            derived.insert(version_key(m), m.clone());
        }
        let twin = made
            .iter()
            .find(|m| m["id"] == o["id"] && carried_record(m) == carried_record(o));
        match twin {
            Some(m) if without_marking(m) == without_marking(o) => {}
            Some(m) => {
                report.problems.push(format!(
                    "{}: {} from the signed record it carries ({})",
                    o["id"].as_str().unwrap_or("?"),
                    differ(differing_properties(
                        &without_marking(m),
                        &without_marking(o)
                    )),
                    entry.record.id()
                ));
                continue;
            }
            None => report.properties_unchecked += 1,
        }
        if marking_unknown && twin.is_some() {
            report.properties_unchecked += 1;
        }
        verified.insert(entry.record.id());
    }
    report.verified = verified.len();
    // Every other object must be one those records make (or the extension's own): an object
    // made from no signed record could say anything in any state's name.
    // (When every carried record was refused, the first problem has said why.)
    let fixed = extension_objects();
    let all_refused = report.verified == 0 && refused > 0;
    for o in objects
        .iter()
        .filter(|o| carried_record(o).is_none() && !all_refused)
    {
        let oid = o["id"].as_str().unwrap_or("?");
        match derived.get(&version_key(o)) {
            Some(m) if m != o => report.problems.push(format!(
                "{oid}: {} from what the signed records in the bundle say",
                differ(differing_properties(m, o)),
            )),
            Some(_) => {}
            None if fixed.contains(o) => {}
            None => report.problems.push(format!(
                "{oid}: made from no verified record in this bundle (every object of an attrib export is): it was added, its record was stripped, or its record did not verify"
            )),
        }
    }
    // (A bundle whose records all failed has said why above.)
    if report.verified == 0 && report.unsigned == objects.len() {
        report
            .problems
            .push("no signed record in this bundle: nothing in it can be verified".into());
    }
    report
}

/// The signed records of a bundle, for [`objects_of`].
struct BundleRecords {
    by_id: std::collections::HashMap<RecordId, Record>,
    /// Claim → the records responding to it, so a lookup does not scan the bundle.
    responses: std::collections::HashMap<RecordId, Vec<RecordId>>,
}

impl BundleRecords {
    fn new(records: impl IntoIterator<Item = Record>) -> BundleRecords {
        let by_id: std::collections::HashMap<RecordId, Record> =
            records.into_iter().map(|r| (r.id(), r)).collect();
        let mut responses: std::collections::HashMap<RecordId, Vec<RecordId>> = Default::default();
        for r in by_id.values() {
            if let Some(target) = r.body().target() {
                responses.entry(target).or_default().push(r.id());
            }
        }
        BundleRecords { by_id, responses }
    }
}

impl Records for BundleRecords {
    fn record(&self, id: &RecordId) -> Option<Record> {
        self.by_id.get(id).cloned()
    }

    fn responses(&self, target: &RecordId) -> Vec<Record> {
        self.responses
            .get(target)
            .into_iter()
            .flatten()
            .filter_map(|id| self.record(id))
            .collect()
    }
}

/// An object's id and version (`modified`).
fn version_key(o: &Value) -> (String, String) {
    (
        o["id"].as_str().unwrap_or_default().to_string(),
        o["modified"].as_str().unwrap_or_default().to_string(),
    )
}

/// "`a` differs" or "`a`, `b` differ".
fn differ(properties: Vec<String>) -> String {
    let verb = if properties.len() == 1 {
        "differs"
    } else {
        "differ"
    };
    format!("{} {verb}", properties.join(", "))
}

/// The top-level properties in which two objects differ.
fn differing_properties(a: &Value, b: &Value) -> Vec<String> {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return vec!["the object".into()];
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("`{k}`"))
        .collect()
}

/// Turns a STIX bundle's attribution into a claim draft for a person to review and submit:
/// from a bundle attrib exported, the claim its relationship carries, word for word; from
/// other tools, a `relationship` `attributed-to` with its source campaign/intrusion-set/incident
/// and its target threat-actor/identity (following threat-actor → identity to the state), or
/// a `report`. `pick`, a record id or a prefix of one, chooses one of the attrib claims in
/// the bundle; without it, a bundle with several attrib claims that stand (neither retracted
/// nor revised in it) is refused: a draft is one claim. Fails with a message naming what is
/// missing.
pub fn claim_from_stix(bundle: &Value, pick: Option<&str>) -> Result<Claim, String> {
    let objects = bundle["objects"]
        .as_array()
        .ok_or("not a STIX bundle: no `objects` array")?;
    // The claims attrib relationships carry, once each; a claim whose relationship has a
    // revoked version in the bundle was retracted or revised.
    let mut claims: Vec<(RecordId, Claim, bool)> = Vec::new();
    for o in objects
        .iter()
        .filter(|o| o["type"] == "relationship" && o["revoked"] != json!(true))
    {
        let Some(record) = carried_record(o)
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| Record::decode(&b).ok())
        else {
            continue;
        };
        let (Some(claim), false) = (
            record.body().as_claim(),
            claims.iter().any(|(id, ..)| *id == record.id()),
        ) else {
            continue;
        };
        let revoked = objects
            .iter()
            .any(|r| r["id"] == o["id"] && r["revoked"] == json!(true));
        claims.push((record.id(), claim.clone(), revoked));
    }
    let listed = |claims: &[&(RecordId, Claim, bool)]| {
        claims
            .iter()
            .map(|(id, c, _)| format!("{} \"{}\"", id.to_hex(), c.incident.title))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(pick) = pick {
        let pick = pick.trim().to_ascii_lowercase();
        let found: Vec<&(RecordId, Claim, bool)> = claims
            .iter()
            .filter(|(id, ..)| id.to_hex().starts_with(&pick))
            .collect();
        return match found.as_slice() {
            [(id, _, true)] => Err(format!(
                "claim {} was retracted or revised in this bundle; pick the claim that stands (its revision) instead",
                id.to_hex()
            )),
            [(_, claim, false)] => Ok(Claim {
                supersedes: None,
                ..claim.clone()
            }),
            [] if claims.is_empty() => Err(
                "the bundle holds no attrib claims: --id picks among the claims of a bundle attrib exported; without it, the bundle's attribution is read".into(),
            ),
            [] => Err(format!(
                "no attrib claim in the bundle has an id starting with {pick:?}; it holds: {}",
                listed(&claims.iter().collect::<Vec<_>>())
            )),
            many => Err(format!(
                "{} claims in the bundle have ids starting with {pick:?}: give more digits ({})",
                many.len(),
                listed(many)
            )),
        };
    }
    let live: Vec<&Claim> = claims.iter().filter(|c| !c.2).map(|c| &c.1).collect();
    match (live.as_slice(), claims.is_empty()) {
        ([claim], _) => {
            return Ok(Claim {
                supersedes: None,
                ..(*claim).clone()
            });
        }
        ([], false) => {
            return Err(
                "the bundle's attrib claims were all retracted or revised: nothing to import"
                    .into(),
            );
        }
        ([], true) => {}
        (many, _) => {
            return Err(format!(
                "the bundle holds {} attrib claims that stand and a draft is one claim: choose one with --id ({})",
                many.len(),
                listed(&claims.iter().filter(|c| !c.2).collect::<Vec<_>>())
            ));
        }
    }
    let by_id = |id: &str| objects.iter().find(|o| o["id"] == id);
    let rel = objects
        .iter()
        .find(|o| o["type"] == "relationship" && o["relationship_type"] == "attributed-to")
        .ok_or("the bundle has no `attributed-to` relationship to import")?;
    let source = rel["source_ref"].as_str().and_then(by_id);
    let target = rel["target_ref"].as_str().and_then(by_id);
    let report = objects.iter().find(|o| o["type"] == "report");
    let title = source
        .and_then(|s| s["name"].as_str())
        .or_else(|| report.and_then(|r| r["name"].as_str()))
        .unwrap_or("Imported attribution")
        .chars()
        .take(attrib_protocol::limits::MAX_TITLE)
        .collect::<String>();
    let summary = source
        .and_then(|s| s["description"].as_str())
        .or_else(|| report.and_then(|r| r["description"].as_str()))
        .or_else(|| rel["description"].as_str())
        .unwrap_or("")
        .to_string();
    let time = |v: &Value| v.as_str().and_then(parse_timestamp_us).map(|us| us / 1000);
    let now = crate::now_ms();
    let from = source
        .and_then(|s| time(&s["first_seen"]))
        .or_else(|| time(&rel["created"]))
        .unwrap_or(now);
    let to = source
        .and_then(|s| time(&s["last_seen"]))
        .unwrap_or(from)
        .max(from);
    let mut state = None;
    let mut actor = None;
    // A state: a location's `country` (ISO 3166-1 alpha-2, as STIX has it), or a code in
    // parentheses at the end of a name ("Russian Federation (RUS)", as attrib exports it).
    let state_of = |t: &Value| -> Option<StateCode> {
        if t["type"] != "identity" && t["type"] != "location" {
            return None;
        }
        let country = t["country"].as_str().map(str::trim).and_then(|c| {
            crate::iso3166::alpha3_of(c)
                .or_else(|| crate::iso3166::is_assigned(&c.to_ascii_uppercase()).then_some(c))
        });
        country
            .map(str::to_ascii_uppercase)
            .or_else(|| {
                t["name"]
                    .as_str()
                    .and_then(|n| n.rsplit('(').next())
                    .map(|n| n.trim_end_matches(')').trim().to_string())
            })
            .and_then(|c| c.parse().ok())
    };
    // The state an actor is tied to: attributed to, located at, or originating from.
    let state_behind = |actor: &Value| {
        objects
            .iter()
            .filter(|o| {
                o["type"] == "relationship"
                    && matches!(
                        o["relationship_type"].as_str(),
                        Some("attributed-to" | "located-at" | "originates-from")
                    )
                    && o["source_ref"] == actor["id"]
            })
            .filter_map(|o| o["target_ref"].as_str().and_then(by_id))
            .find_map(state_of)
    };
    if let Some(t) = target {
        match t["type"].as_str() {
            Some("identity") | Some("location") => state = state_of(t),
            _ => {
                actor = t["name"].as_str().map(str::to_string);
                // The actor tied in turn to a state (threat-actor → identity or location).
                state = state_behind(t);
            }
        }
    }
    // Or the attributed intrusion set or campaign itself (intrusion-set → location).
    if state.is_none() {
        state = source.and_then(state_behind);
    }
    if state.is_none() && actor.is_none() {
        actor = Some("unnamed actor (imported)".into());
    }
    let tlp = rel["object_marking_refs"]
        .as_array()
        .and_then(|m| m.first())
        .and_then(|m| m.as_str())
        .and_then(|m| {
            [Tlp::Clear, Tlp::Green, Tlp::Amber, Tlp::Red]
                .into_iter()
                .find(|t| tlp_marking(*t) == m)
        })
        .unwrap_or(Tlp::Amber);
    let evidence = rel["external_references"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(
            source
                .and_then(|s| s["external_references"].as_array())
                .into_iter()
                .flatten(),
        )
        .filter_map(|r| {
            let sha = r["hashes"]["SHA-256"].as_str()?.parse().ok()?;
            Some(Evidence {
                kind: r["source_name"]
                    .as_str()
                    .unwrap_or("reference")
                    .trim_start_matches("attrib-evidence:")
                    .chars()
                    .take(64)
                    .collect(),
                sha256: sha,
                description: r["description"]
                    .as_str()
                    .unwrap_or("")
                    .chars()
                    .take(1024)
                    .collect(),
                locator: r["url"]
                    .as_str()
                    .or(r["external_id"].as_str())
                    .map(str::to_string),
            })
        })
        .take(attrib_protocol::limits::MAX_EVIDENCE)
        .collect();
    Ok(Claim {
        incident: attrib_protocol::Incident {
            title,
            summary,
            observed_from: from,
            observed_to: to,
            sectors: vec![],
            tags: vec![],
        },
        attributed_to: attrib_protocol::Attribution { state, actor },
        confidence: rel["confidence"].as_u64().unwrap_or(50).min(100) as u8,
        evidence,
        tlp,
        supersedes: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(id: &str, kind: &str, source: &str, target: &str) -> Value {
        json!({"type": "relationship", "id": id, "relationship_type": kind,
               "source_ref": source, "target_ref": target, "confidence": 70})
    }

    #[test]
    fn a_foreign_bundle_names_its_state_by_a_locations_country() {
        // As threat-intelligence platforms export it: an intrusion set attributed to a threat
        // actor located in a country (alpha-2), or an intrusion set originating from one.
        let set = json!({"type": "intrusion-set", "id": "intrusion-set--1", "name": "Loader wave",
                         "first_seen": "2026-11-01T00:00:00Z"});
        let actor = json!({"type": "threat-actor", "id": "threat-actor--1", "name": "APT-EXAMPLE"});
        let ru =
            json!({"type": "location", "id": "location--1", "name": "Russia", "country": "ru"});
        let bundle = json!({"type": "bundle", "objects": [
            set, actor, ru,
            rel("relationship--1", "attributed-to", "intrusion-set--1", "threat-actor--1"),
            rel("relationship--2", "located-at", "threat-actor--1", "location--1"),
        ]});
        let draft = claim_from_stix(&bundle, None).unwrap();
        assert_eq!(draft.incident.title, "Loader wave");
        assert_eq!(draft.attributed_to.actor.as_deref(), Some("APT-EXAMPLE"));
        assert_eq!(
            draft.attributed_to.state.map(|s| s.to_string()).as_deref(),
            Some("RUS")
        );
        assert_eq!(draft.confidence, 70);

        let campaign = json!({"type": "campaign", "id": "campaign--1", "name": "Port outage"});
        let set = json!({"type": "intrusion-set", "id": "intrusion-set--2", "name": "APT-OTHER"});
        let cn = json!({"type": "location", "id": "location--2", "country": "CN"});
        let bundle = json!({"type": "bundle", "objects": [
            campaign, set, cn,
            rel("relationship--3", "attributed-to", "campaign--1", "intrusion-set--2"),
            rel("relationship--4", "originates-from", "intrusion-set--2", "location--2"),
        ]});
        let draft = claim_from_stix(&bundle, None).unwrap();
        assert_eq!(draft.attributed_to.actor.as_deref(), Some("APT-OTHER"));
        assert_eq!(
            draft.attributed_to.state.map(|s| s.to_string()).as_deref(),
            Some("CHN")
        );

        // A country that is no ISO 3166-1 code names no state; the actor stands alone.
        let bundle = json!({"type": "bundle", "objects": [
            {"type": "intrusion-set", "id": "intrusion-set--3", "name": "X"},
            {"type": "threat-actor", "id": "threat-actor--3", "name": "Y"},
            {"type": "location", "id": "location--3", "country": "ZZ"},
            rel("relationship--5", "attributed-to", "intrusion-set--3", "threat-actor--3"),
            rel("relationship--6", "located-at", "threat-actor--3", "location--3"),
        ]});
        let draft = claim_from_stix(&bundle, None).unwrap();
        assert_eq!(draft.attributed_to.state, None);
        assert_eq!(draft.attributed_to.actor.as_deref(), Some("Y"));
    }
}
