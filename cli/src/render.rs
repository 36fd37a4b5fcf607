//! Human-readable rendering of API answers (JSON values) for the terminal.

use std::fmt::Write;

use serde_json::Value;

/// A string field as it may reach a terminal: text comes from other states' records, so
/// control characters (which a terminal acts on) and bidirectional overrides (which reorder
/// what is shown) are replaced, and a line break is followed by an indent, so that no text can
/// pass for a line of this program's own output. Records are checked for these too, but a
/// record stored by an older version may carry them.
fn s(v: &Value) -> std::borrow::Cow<'_, str> {
    printable(v.as_str().unwrap_or(""))
}

/// Text from a record or a server, safe to print (see [`s`]).
pub(crate) fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    use attrib_protocol::acts_on_terminal;
    if !text.chars().any(acts_on_terminal) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\n      "),
            '\t' => out.push(' '),
            c if acts_on_terminal(c) => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out.into()
}

/// Whom a claim attributes to: `RUS (APT-X)`, `RUS`, `APT-X` or `?`.
fn accused(state: &Value, actor: &Value) -> String {
    match (state.is_string(), actor.is_string()) {
        (true, true) => format!("{} ({})", s(state), s(actor)),
        (true, false) => s(state).into_owned(),
        (false, true) => s(actor).into_owned(),
        (false, false) => "?".into(),
    }
}

fn short(v: &Value) -> String {
    s(v).chars().take(12).collect()
}

fn time(ms: &Value) -> String {
    let ms = ms.as_u64().unwrap_or(0);
    let mut out = String::new();
    match std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_millis(ms)) {
        Some(t) if write!(out, "{}", humantime::format_rfc3339_seconds(t)).is_ok() => out,
        _ => format!("{ms} ms after 1970"),
    }
}

/// One record as a block of lines.
pub(crate) fn entry(e: &Value) -> String {
    let r = &e["record"];
    let b = &r["body"];
    let who = s(&e["author_state"]);
    let mut out = String::new();
    let kind = s(&b["kind"]).to_uppercase();
    let _ = writeln!(
        out,
        "{kind} {}  by {who}  seq {}  {}  (cursor {})",
        short(&r["id"]),
        r["seq"],
        time(&r["created_at"]),
        e["cursor"]
    );
    match s(&b["kind"]).as_ref() {
        "claim" => {
            let i = &b["incident"];
            let a = &b["attributed_to"];
            let target = accused(&a["state"], &a["actor"]);
            let _ = writeln!(out, "  {}", s(&i["title"]));
            let _ = writeln!(
                out,
                "  attributed to {target}, confidence {}, TLP:{}",
                b["confidence"],
                s(&b["tlp"])
            );
            let _ = writeln!(
                out,
                "  observed {} .. {}",
                time(&i["observed_from"]),
                time(&i["observed_to"])
            );
            if !s(&i["summary"]).is_empty() {
                let _ = writeln!(out, "  {}", s(&i["summary"]));
            }
            for (name, list) in [("sectors", &i["sectors"]), ("tags", &i["tags"])] {
                let items: Vec<_> = list.as_array().into_iter().flatten().map(s).collect();
                if !items.is_empty() {
                    let _ = writeln!(out, "  {name}: {}", items.join(", "));
                }
            }
            if let Some(sup) = b["supersedes"].as_str() {
                let _ = writeln!(out, "  revises claim {}", &sup[..12.min(sup.len())]);
            }
        }
        "rebuttal" => {
            let _ = writeln!(
                out,
                "  {} claim {}: {}",
                s(&b["stance"]),
                short(&b["target"]),
                s(&b["statement"])
            );
        }
        "endorsement" => {
            let statement = s(&b["statement"]);
            let sep = if statement.is_empty() { "" } else { ": " };
            let _ = writeln!(
                out,
                "  {} with claim {}{sep}{statement}",
                s(&b["agreement"]),
                short(&b["target"])
            );
        }
        "retraction" => {
            let _ = writeln!(
                out,
                "  retracts claim {}: {}",
                short(&b["target"]),
                s(&b["reason"])
            );
        }
        "withdrawal" => {
            let _ = writeln!(
                out,
                "  withdraws its position on claim {}: {}",
                short(&b["target"]),
                s(&b["reason"])
            );
        }
        _ => {
            let _ = writeln!(
                out,
                "  (a record kind this version does not know: {})",
                b["code"]
            );
        }
    }
    for ev in b["evidence"].as_array().into_iter().flatten() {
        let _ = write!(
            out,
            "  evidence [{}] sha256:{}",
            s(&ev["kind"]),
            s(&ev["sha256"])
        );
        let note = s(&ev["description"]);
        if !note.is_empty() {
            let _ = write!(out, " {note}");
        }
        if let Some(at) = ev["locator"].as_str() {
            let _ = write!(out, " (request it at: {})", printable(at));
        }
        out.push('\n');
    }
    out
}

/// A claim thread.
pub(crate) fn thread(t: &Value) -> String {
    let mut out = entry(&t["claim"]);
    let st = &t["status"];
    let _ = writeln!(out, "\nSTATUS  {}", headline(st));
    if let Some(latest) = t["line_retracted_at"].as_str() {
        let _ = writeln!(
            out,
            "ENDED   its latest version {latest} was RETRACTED by its author"
        );
    }
    for eq in t["equivocating"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "WARNING {} has signed conflicting records (equivocation); treat its records with care",
            s(eq)
        );
    }
    let responses = t["responses"].as_array().cloned().unwrap_or_default();
    if responses.is_empty() {
        let _ = writeln!(out, "\nno responses yet");
    } else {
        let _ = writeln!(out, "\nRESPONSES ({})", responses.len());
        // Endorsements and rebuttals that no longer count (replaced or withdrawn) say so.
        let standing: Vec<&Value> = ["endorsements", "rebuttals"]
            .iter()
            .flat_map(|k| st[*k].as_array().into_iter().flatten())
            .map(|p| &p["record"])
            .collect();
        for r in &responses {
            let kind = &r["record"]["body"]["kind"];
            let gone = (kind == "endorsement" || kind == "rebuttal")
                && !standing.contains(&&r["record"]["id"]);
            for (i, line) in entry(r).lines().enumerate() {
                if i == 0 && gone {
                    let _ = writeln!(out, "  {line}  [no longer counts: replaced or withdrawn]");
                } else {
                    let _ = writeln!(out, "  {line}");
                }
            }
        }
    }
    out
}

fn headline(st: &Value) -> String {
    let who = s(&st["claimant"]);
    let target = accused(&st["accused_state"], &st["accused_actor"]);
    let mut line = format!(
        "{who} attributes to {target}, confidence {}",
        st["confidence"]
    );
    let ends: Vec<String> = st["endorsements"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| format!("{} {}", s(&e["state"]), s(&e["position"])))
        .collect();
    line.push_str(&if ends.is_empty() {
        "; no endorsements".into()
    } else {
        format!("; endorsements: {}", ends.join(", "))
    });
    for r in st["rebuttals"].as_array().into_iter().flatten() {
        let accused = r["state"] == st["accused_state"];
        line.push_str(&format!(
            "; rebutted by {}{} ({})",
            s(&r["state"]),
            if accused { ", the accused" } else { "" },
            s(&r["position"])
        ));
    }
    for w in st["withdrawals"].as_array().into_iter().flatten() {
        let kinds: Vec<_> = w["position"]
            .as_array()
            .into_iter()
            .flatten()
            .map(s)
            .collect();
        line.push_str(&format!(
            "; {} withdrew its {}",
            s(&w["state"]),
            kinds.join(" and ")
        ));
    }
    if !st["retracted_by"].is_null() {
        line.push_str("; RETRACTED by its author");
    }
    let revisions: Vec<&str> = st["superseded_by"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !revisions.is_empty() {
        line.push_str(&format!(
            "; superseded by revised claim {} (`attrib show` it)",
            revisions.join(", ")
        ));
    }
    line
}

/// One feed entry on one line.
pub(crate) fn feed_line(e: &Value) -> String {
    let r = &e["record"];
    let b = &r["body"];
    let what = match s(&b["kind"]).as_ref() {
        "claim" => format!(
            "{} -> {} ({}%, TLP:{}): {}",
            s(&e["author_state"]),
            if b["attributed_to"]["state"].is_string() {
                s(&b["attributed_to"]["state"])
            } else if b["attributed_to"]["actor"].is_string() {
                s(&b["attributed_to"]["actor"])
            } else {
                "?".into()
            },
            b["confidence"],
            s(&b["tlp"]),
            s(&b["incident"]["title"])
        ),
        "rebuttal" => format!(
            "{} {} {}",
            s(&e["author_state"]),
            s(&b["stance"]),
            short(&b["target"])
        ),
        "endorsement" => format!(
            "{} {} {}",
            s(&e["author_state"]),
            s(&b["agreement"]),
            short(&b["target"])
        ),
        "retraction" => format!("{} retracts {}", s(&e["author_state"]), short(&b["target"])),
        "withdrawal" => format!(
            "{} withdraws from {}",
            s(&e["author_state"]),
            short(&b["target"])
        ),
        other => format!("{} {other}", s(&e["author_state"])),
    };
    format!(
        "{:>6}  {:<11} {}  {}\n",
        e["cursor"].as_u64().unwrap_or(0),
        s(&b["kind"]),
        short(&r["id"]),
        what
    )
}

/// Node status.
pub(crate) fn status(st: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "network     {} ({})",
        s(&st["network_name"]),
        s(&st["network_id"])
    );
    let role = match (st["state"].as_str(), st["node_of"].as_str()) {
        (Some(state), _) => state.to_string(),
        (None, Some(state)) => format!(
            "{state}, without its state key (a standby: relays and serves the record, signs nothing)"
        ),
        (None, None) => "observer".to_string(),
    };
    let _ = writeln!(out, "node        {} state {role}", s(&st["peer_id"]));
    if let Some(failure) = st["store_failure"].as_str() {
        let _ = writeln!(
            out,
            "store       FAILING, refusing writes: {}",
            printable(failure)
        );
    }
    if let Some(missing) = st["records_missing"].as_u64() {
        let _ = writeln!(
            out,
            "store       DAMAGED: {missing} record(s) fewer than when the node last closed; peers' copies are being fetched again (`attrib verify --all` lists the damage; if no peer holds them, accept the loss by deleting records.tally in the data dir)"
        );
    }
    if let Some(why) = st["signing_blocked"].as_str() {
        let _ = writeln!(out, "signing     BLOCKED: {}", printable(why));
    }
    let c = &st["counts"];
    let _ = writeln!(
        out,
        "records     {} stored, {} pending, {} fork proofs; last cursor {}",
        c["records"], c["pending"], c["forks"], st["last_cursor"]
    );
    match st["own_head"].as_object() {
        Some(h) => {
            let _ = writeln!(out, "own chain   seq {} head {}", h["seq"], short(&h["id"]));
        }
        // A node without the state key signs nothing: it has no chain of its own.
        None if st["state"].is_string() => {
            let _ = writeln!(out, "own chain   empty");
        }
        None => {}
    }
    let peers = st["peers"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(out, "peers       {}", peers.len());
    for p in &peers {
        let connections = p["connections"].as_u64().unwrap_or(1);
        let _ = writeln!(
            out,
            "  {} {}{}{}{}",
            s(&p["role"]),
            s(&p["peer_id"]),
            match p["rtt_ms"].as_f64() {
                Some(ms) => format!("  rtt {ms:.1} ms"),
                None => String::new(),
            },
            if p["subscribed"] == true {
                ""
            } else {
                " (not subscribed)"
            },
            if connections > 1 {
                format!(" ({connections} connections: each node dialled the other; harmless)")
            } else {
                String::new()
            }
        );
    }
    for b in st["bootstrap"].as_array().into_iter().flatten() {
        let role = peers
            .iter()
            .find(|p| p["peer_id"] == b["peer_id"])
            .map_or("peer".into(), |p| s(&p["role"]));
        let state = if b["own_address"] == true {
            "this node's own address (or a copy of this node): not dialled".to_string()
        } else if !b["peer_id"].is_null() {
            format!("connected ({role})")
        } else if let Some(e) = b["error"].as_str() {
            format!("NOT REACHED: {}", printable(e))
        } else {
            "dialling".to_string()
        };
        let _ = writeln!(out, "bootstrap   {}: {state}", s(&b["address"]));
    }
    let unreachable: Vec<&str> = st["unreachable"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str())
        .collect();
    if !unreachable.is_empty() {
        let _ = writeln!(
            out,
            "unreachable {} (roster members with no node connected to this one)",
            unreachable.join(", ")
        );
    }
    let eq = st["equivocators"].as_array().cloned().unwrap_or_default();
    if eq.is_empty() {
        let _ = writeln!(out, "equivocators none");
    } else {
        let list: Vec<_> = eq.iter().map(s).collect();
        let _ = writeln!(
            out,
            "EQUIVOCATING {} (signed conflicting records; see `attrib forks`)",
            list.join(", ")
        );
    }
    let sy = &st["sync"];
    let _ = writeln!(
        out,
        "sync        (catch-up; records that came by gossip are not counted here) {} rounds, {} requests, {} records received ({} invalid), {} bytes in",
        sy["rounds"],
        sy["requests"],
        sy["records_received"],
        sy["invalid_received"],
        sy["response_bytes"]
    );
    for l in st["listen"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "listening   {}", s(l));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_shows_its_sectors_tags_and_where_evidence_can_be_requested() {
        let e = serde_json::json!({
            "cursor": 3, "author_state": "FRA",
            "record": {"id": "ab12", "seq": 1, "created_at": 0, "body": {
                "kind": "claim", "confidence": 70, "tlp": "GREEN",
                "incident": {"title": "t", "summary": "", "observed_from": 0, "observed_to": 0,
                             "sectors": ["energy", "health"], "tags": ["wiper"]},
                "attributed_to": {"state": null, "actor": "APT-X"},
                "evidence": [
                    {"kind": "pcap", "sha256": "00ff", "description": "capture",
                     "locator": "https://cert.example/req/7"},
                    {"kind": "log", "sha256": "11ee", "description": "logs", "locator": null}
                ]
            }}
        });
        let shown = entry(&e);
        for want in [
            "  sectors: energy, health\n",
            "  tags: wiper\n",
            "  evidence [pcap] sha256:00ff capture (request it at: https://cert.example/req/7)\n",
            "  evidence [log] sha256:11ee logs\n",
        ] {
            assert!(shown.contains(want), "{want:?} missing from\n{shown}");
        }
    }

    #[test]
    fn text_from_records_cannot_act_on_the_terminal_or_forge_a_line() {
        let v = Value::String("Ok\u{1b}[2J\u{202E}x\nSTATUS  fake\ttab".into());
        assert_eq!(s(&v), "Ok\u{FFFD}[2J\u{FFFD}x\n      STATUS  fake tab");
        let plain = Value::String("Überfall — 東京".into());
        assert!(matches!(s(&plain), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn status_says_when_the_store_is_failing_signing_is_blocked_and_a_bootstrap_peer_is_not_reached()
     {
        let mut st = serde_json::json!({
            "network_name": "n", "network_id": "ab", "peer_id": "p", "state": "FRA",
            "counts": {"records": 1, "pending": 0, "forks": 0}, "last_cursor": 1,
            "peers": [], "unreachable": [], "equivocators": [], "store_failure": null,
        });
        assert!(!status(&st).contains("FAILING"));
        st["bootstrap"] = serde_json::json!([
            {"address": "/ip4/192.0.2.1/tcp/4710", "peer_id": null, "own_address": false,
             "error": "Connection refused (os error 111)"},
            {"address": "/ip4/127.0.0.1/tcp/4710", "peer_id": null, "own_address": true, "error": null},
        ]);
        let shown = status(&st);
        assert!(
            shown.contains("bootstrap   /ip4/192.0.2.1/tcp/4710: NOT REACHED: Connection refused (os error 111)")
                && shown.contains("bootstrap   /ip4/127.0.0.1/tcp/4710: this node's own address"),
            "{shown}"
        );
        assert!(!shown.contains("BLOCKED"), "{shown}");
        assert!(!shown.contains("DAMAGED"), "{shown}");
        st["records_missing"] = 3.into();
        assert!(
            status(&st)
                .contains("store       DAMAGED: 3 record(s) fewer than when the node last closed"),
            "{}",
            status(&st)
        );
        st["signing_blocked"] =
            "another node of this state (peer 12D3) also holds the state key".into();
        assert!(
            status(&st).contains("signing     BLOCKED: another node of this state (peer 12D3) also holds the state key"),
            "{}",
            status(&st)
        );
        st["store_failure"] = "store I/O error: No space left on device".into();
        let shown = status(&st);
        assert!(
            shown.contains(
                "store       FAILING, refusing writes: store I/O error: No space left on device"
            ),
            "{shown}"
        );
    }
}
