//! The node's metrics in the Prometheus text format (`GET /metrics`), made from its
//! [`Status`]: what an operator alerts on (a member state's node unreachable, a failing store,
//! invalid records arriving, the own chain not advancing) and graphs.

use std::fmt::Write as _;

use attrib_protocol::StateCode;

use crate::Status;

/// The media type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders `status` as Prometheus metrics; `members` are the roster's member states.
pub fn render(status: &Status, members: &[StateCode]) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP attrib_{name} {help}");
        let _ = writeln!(out, "# TYPE attrib_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "attrib_{name}{labels} {value}");
        }
    };
    let one = |v: f64| vec![(String::new(), v)];
    let info = labels(&[
        ("network", &status.network_name),
        ("network_id", &status.network_id.to_string()),
        ("peer_id", &status.peer_id),
        ("state", status.state.as_ref().map_or("", StateCode::as_str)),
    ]);
    metric(
        "node_info",
        "gauge",
        "This node: its network, peer id and the state it signs for (empty for an observer).",
        &[(info, 1.0)],
    );
    metric(
        "uptime_seconds",
        "gauge",
        "Seconds since the node started.",
        &one(status.uptime_s as f64),
    );
    metric(
        "store_failing",
        "gauge",
        "1 once a store operation has failed (disk full, I/O error; `attrib status` says which): fix the cause and restart the node.",
        &one(f64::from(u8::from(status.store_failure.is_some()))),
    );
    metric(
        "records_missing",
        "gauge",
        "Records the store lost to damage found when it opened, while they are still missing (they are fetched again from peers; `attrib status` says more).",
        &one(status.records_missing.unwrap_or(0) as f64),
    );
    metric(
        "signing_blocked",
        "gauge",
        "1 while this node cannot sign for its state (`attrib status` says why: another node holding the state key is connected, or its own chain is still being fetched).",
        &one(f64::from(u8::from(status.signing_blocked.is_some()))),
    );
    metric(
        "records_stored",
        "gauge",
        "Records stored.",
        &one(status.counts.records as f64),
    );
    metric(
        "records_pending",
        "gauge",
        "Valid records waiting for an earlier record of their chain or for the claim they answer.",
        &one(status.counts.pending as f64),
    );
    metric(
        "fork_proofs",
        "gauge",
        "Fork proofs held (a state signed two records at one place in its chain).",
        &one(status.counts.forks as f64),
    );
    metric(
        "equivocating_states",
        "gauge",
        "Member states known to have equivocated.",
        &one(status.equivocators.len() as f64),
    );
    metric(
        "feed_last_cursor",
        "gauge",
        "The feed cursor of the last stored record.",
        &one(status.last_cursor as f64),
    );
    metric(
        "own_chain_seq",
        "gauge",
        "Records this node's state has signed (its chain's head seq; 0 for none or an observer).",
        &one(status.own_head.map_or(0, |h| h.seq) as f64),
    );
    metric(
        "peers_connected",
        "gauge",
        "Peers connected.",
        &one(status.peers.len() as f64),
    );
    metric(
        "peers_subscribed",
        "gauge",
        "Connected peers subscribed to this network's record topic.",
        &one(status.peers.iter().filter(|p| p.subscribed).count() as f64),
    );
    let unreachable: Vec<(String, f64)> = members
        .iter()
        .filter(|c| Some(**c) != status.state)
        .map(|c| {
            let down = status.unreachable.contains(c);
            (labels(&[("state", c.as_str())]), f64::from(u8::from(down)))
        })
        .collect();
    metric(
        "state_unreachable",
        "gauge",
        "1 for a member state (this node's own aside) with no node connected to this one.",
        &unreachable,
    );
    metric(
        "bootstrap_unreached",
        "gauge",
        "Bootstrap addresses whose last dial failed (`attrib status` says why).",
        &one(status
            .bootstrap
            .iter()
            .filter(|b| b.error.is_some())
            .count() as f64),
    );
    let rtts: Vec<(String, f64)> = status
        .peers
        .iter()
        .filter_map(|p| {
            let rtt = p.rtt_ms? / 1000.0;
            Some((labels(&[("peer_id", &p.peer_id), ("role", &p.role)]), rtt))
        })
        .collect();
    metric(
        "peer_rtt_seconds",
        "gauge",
        "Round-trip time of each connected peer's last answered ping.",
        &rtts,
    );
    let sync = &status.sync;
    for (name, help, value) in [
        (
            "sync_rounds_total",
            "Catch-up rounds started (chain heads asked of a peer).",
            sync.rounds,
        ),
        ("sync_requests_total", "Fetch requests sent.", sync.requests),
        (
            "sync_request_bytes_total",
            "Bytes of fetch requests sent.",
            sync.request_bytes,
        ),
        (
            "sync_response_bytes_total",
            "Bytes of fetch responses received.",
            sync.response_bytes,
        ),
        (
            "sync_records_received_total",
            "Records received in fetch responses.",
            sync.records_received,
        ),
        (
            "sync_invalid_records_total",
            "Records in fetch responses refused as invalid.",
            sync.invalid_received,
        ),
        (
            "gossip_invalid_records_total",
            "Gossiped records refused as invalid (the sending peer is struck, and banned after repeats).",
            sync.gossip_invalid,
        ),
        (
            "gossip_rate_limited_total",
            "Gossip messages ignored because their sender exceeded its rate.",
            sync.gossip_rate_limited,
        ),
        (
            "fetch_rate_limited_total",
            "Fetch requests refused because their sender exceeded its rate.",
            sync.fetch_rate_limited,
        ),
        (
            "fetch_deferred_total",
            "Fetch requests not sent because too many were outstanding.",
            sync.fetch_deferred,
        ),
    ] {
        metric(name, "counter", help, &one(value as f64));
    }
    out
}

/// `{k="v",...}` with each value escaped as the text format asks.
fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            let escaped = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{escaped}\"")
        })
        .collect();
    format!("{{{}}}", inner.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            labels(&[("network", "a \"b\"\\\nc"), ("state", "FRA")]),
            r#"{network="a \"b\"\\\nc",state="FRA"}"#
        );
    }
}
