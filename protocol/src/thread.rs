//! Thread status: what a claim and its responses add up to, in a form a person reads quickly.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::body::{Body, Opinion, Stance};
use crate::id::{RecordId, StateCode};
use crate::record::Record;
use crate::roster::Roster;

/// One state's current position on a claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Position<T> {
    /// The state.
    pub state: StateCode,
    /// Its position.
    pub position: T,
    /// The record that states it (the state's latest on this claim).
    pub record: RecordId,
}

/// The summary of a claim thread.
///
/// Only each state's *standing* endorsement and rebuttal count: its latest of each kind (by the
/// author's seq), unless the state withdrew after it (see [`standing_positions`]). Responses
/// from unknown authors, or that do not target this claim, are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThreadStatus {
    /// The claim.
    pub claim: RecordId,
    /// Who claims.
    pub claimant: Option<StateCode>,
    /// The state the claim attributes the incident to, if any.
    pub accused_state: Option<StateCode>,
    /// The actor the claim names, if any.
    pub accused_actor: Option<String>,
    /// The claim's confidence, 0–100.
    pub confidence: u8,
    /// Endorsements, one per state, sorted by state.
    pub endorsements: Vec<Position<Opinion>>,
    /// How many states hold each opinion.
    pub endorsement_counts: BTreeMap<Opinion, usize>,
    /// Rebuttals, one per state, sorted by state.
    pub rebuttals: Vec<Position<Stance>>,
    /// Whether the accused state itself rebutted.
    pub rebutted_by_accused: bool,
    /// States whose latest word on the claim is a withdrawal: they hold no position on it now.
    /// The position names the kinds it ended (`endorsement`, `rebuttal`).
    pub withdrawals: Vec<Position<Vec<&'static str>>>,
    /// The author's retraction, if any.
    pub retracted_by: Option<RecordId>,
    /// Later claims by the author that supersede this one.
    pub superseded_by: Vec<RecordId>,
}

impl ThreadStatus {
    /// Summarises `claim` and its `responses`. Returns `None` if `claim` is not a claim.
    pub fn of(claim: &Record, responses: &[Record], roster: &Roster) -> Option<ThreadStatus> {
        let Body::Claim(c) = claim.body() else {
            return None;
        };
        let code = |r: &Record| roster.member_by_key(&r.author()).map(|m| m.code);
        let responses: Vec<Record> = responses
            .iter()
            .filter(|r| r.body().target() == Some(claim.id()) && code(r).is_some())
            .cloned()
            .collect();
        let mut endorsements: BTreeMap<StateCode, (u64, Opinion, RecordId)> = BTreeMap::new();
        let mut rebuttals: BTreeMap<StateCode, (u64, Stance, RecordId)> = BTreeMap::new();
        // Each state's latest withdrawal that ended something, with the kinds it ended.
        let mut withdrawals: BTreeMap<StateCode, (u64, Vec<&'static str>, RecordId)> =
            BTreeMap::new();
        let mut retracted_by = None;
        let mut superseded_by = Vec::new();
        for r in &responses {
            let Some(state) = code(r) else { continue };
            let same_author = r.author() == claim.author();
            match r.body() {
                // Of two (a fork), the lesser id, whatever the order they came in.
                Body::Retraction(_) if same_author => {
                    retracted_by = Some(retracted_by.map_or(r.id(), |by: RecordId| by.min(r.id())));
                }
                Body::Claim(_) if same_author => superseded_by.push(r.id()),
                // Only one that ended a position counts (a second one, or one by a state that
                // held none, says nothing more).
                Body::Withdrawal(_) if !same_author => {
                    let ended: Vec<&'static str> =
                        standing_positions(&responses, &r.author(), r.seq())
                            .iter()
                            .map(|p| p.body().kind_name())
                            .collect();
                    if !ended.is_empty() {
                        keep_latest(&mut withdrawals, state, (r.seq(), ended, r.id()));
                    }
                }
                _ => {}
            }
        }
        let authors: std::collections::BTreeSet<_> = responses
            .iter()
            .filter(|r| r.author() != claim.author())
            .map(Record::author)
            .collect();
        for author in authors {
            for r in standing_positions(&responses, &author, u64::MAX) {
                let Some(state) = code(r) else { continue };
                match r.body() {
                    Body::Endorsement(e) => {
                        endorsements.insert(state, (r.seq(), e.agreement, r.id()));
                    }
                    Body::Rebuttal(b) => {
                        rebuttals.insert(state, (r.seq(), b.stance, r.id()));
                    }
                    _ => {}
                }
            }
        }
        // A withdrawal stands only if no endorsement or rebuttal of the state came after it.
        withdrawals.retain(|state, (seq, _, _)| {
            endorsements.get(state).is_none_or(|e| e.0 < *seq)
                && rebuttals.get(state).is_none_or(|b| b.0 < *seq)
        });
        superseded_by.sort();
        let mut endorsement_counts = BTreeMap::new();
        for (_, o, _) in endorsements.values() {
            *endorsement_counts.entry(*o).or_insert(0) += 1;
        }
        let accused_state = c.attributed_to.state;
        Some(ThreadStatus {
            claim: claim.id(),
            claimant: code(claim),
            accused_state,
            accused_actor: c.attributed_to.actor.clone(),
            confidence: c.confidence,
            rebutted_by_accused: accused_state.is_some_and(|s| rebuttals.contains_key(&s)),
            endorsements: positions(endorsements),
            endorsement_counts,
            rebuttals: positions(rebuttals),
            withdrawals: positions(withdrawals),
            retracted_by,
            superseded_by,
        })
    }

    /// One line for people, e.g. `FRA attributes to RUS (confidence 80): 2 agree, 1 disagree;
    /// rebutted by RUS (the accused: deny)`.
    pub fn headline(&self) -> String {
        let who = self.claimant.map_or("?".to_string(), |c| c.to_string());
        let target = match (&self.accused_state, &self.accused_actor) {
            (Some(s), Some(a)) => format!("{s} ({a})"),
            (Some(s), None) => s.to_string(),
            (None, Some(a)) => a.clone(),
            (None, None) => "?".into(),
        };
        let mut line = format!(
            "{who} attributes to {target} (confidence {})",
            self.confidence
        );
        if self.endorsement_counts.is_empty() {
            line.push_str(": no endorsements");
        } else {
            let parts: Vec<String> = self
                .endorsement_counts
                .iter()
                .rev()
                .map(|(o, n)| format!("{n} {}", opinion_label(*o)))
                .collect();
            line.push_str(&format!(": {}", parts.join(", ")));
        }
        for r in &self.rebuttals {
            let accused = Some(r.state) == self.accused_state;
            line.push_str(&format!(
                "; rebutted by {}{} ({})",
                r.state,
                if accused { ", the accused" } else { "" },
                stance_label(r.position)
            ));
        }
        for w in &self.withdrawals {
            line.push_str(&format!(
                "; {} withdrew its {}",
                w.state,
                w.position.join(" and ")
            ));
        }
        if self.retracted_by.is_some() {
            line.push_str("; RETRACTED by its author");
        }
        if !self.superseded_by.is_empty() {
            line.push_str("; superseded by a revised claim");
        }
        line
    }
}

/// The STIX-style label of an opinion (`strongly-agree`, ...).
pub fn opinion_label(o: Opinion) -> &'static str {
    match o {
        Opinion::StronglyDisagree => "strongly-disagree",
        Opinion::Disagree => "disagree",
        Opinion::Neutral => "neutral",
        Opinion::Agree => "agree",
        Opinion::StronglyAgree => "strongly-agree",
    }
}

/// The label of a rebuttal stance (`deny`, `dispute-evidence`, ...).
pub fn stance_label(s: Stance) -> &'static str {
    match s {
        Stance::Deny => "deny",
        Stance::DisputeEvidence => "dispute-evidence",
        Stance::DisputeAttribution => "dispute-attribution",
        Stance::PartiallyAccept => "partially-accept",
        Stance::RequestInformation => "request-information",
    }
}

/// The records that make up `author`'s standing position on a claim just before its record at
/// `before_seq` (`u64::MAX`: now), among `responses` (records that respond to the claim): its
/// latest endorsement and its latest rebuttal, each unless a withdrawal by `author` came after
/// it. A later endorsement replaces an earlier one, a later rebuttal an earlier one, and a
/// withdrawal ends both. Two of one kind at the same seq (a fork: the author equivocated) are
/// told apart by id, the greater standing, so that every node picks the same one whatever
/// order it received them in.
pub fn standing_positions<'a>(
    responses: &'a [Record],
    author: &crate::MemberKey,
    before_seq: u64,
) -> Vec<&'a Record> {
    let own = || {
        responses
            .iter()
            .filter(move |r| r.author() == *author && r.seq() < before_seq)
    };
    let withdrawn_at = own()
        .filter(|r| matches!(r.body(), Body::Withdrawal(_)))
        .map(Record::seq)
        .max();
    let latest = |kind: fn(&Body) -> bool| {
        own()
            .filter(|r| kind(r.body()))
            .max_by_key(|r| (r.seq(), r.id()))
            .filter(|r| withdrawn_at.is_none_or(|w| w < r.seq()))
    };
    [
        latest(|b| matches!(b, Body::Endorsement(_))),
        latest(|b| matches!(b, Body::Rebuttal(_))),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn keep_latest<T>(
    map: &mut BTreeMap<StateCode, (u64, T, RecordId)>,
    state: StateCode,
    entry: (u64, T, RecordId),
) {
    // The later by seq; at one seq (a fork), the greater id, as in `standing_positions`.
    match map.get(&state) {
        Some(old) if (old.0, old.2) >= (entry.0, entry.2) => {}
        _ => {
            map.insert(state, entry);
        }
    }
}

fn positions<T>(map: BTreeMap<StateCode, (u64, T, RecordId)>) -> Vec<Position<T>> {
    map.into_iter()
        .map(|(state, (_, position, record))| Position {
            state,
            position,
            record,
        })
        .collect()
}
