//! The bounds a node keeps on everything peers and users control, as one config table
//! (`[limits]` in node.toml). Every value has a default suited to a network of up to a few
//! hundred national nodes.
//!
//! Sizes that decide what is *valid* are protocol constants, the same on every node, and not
//! configurable (a node with a bigger limit would accept records others refuse):
//! [`attrib_protocol::limits::MAX_RECORD_BYTES`] (32 KiB per record), the field limits next to
//! it, [`attrib_protocol::encoding::MAX_MESSAGE_BYTES`] (4 MiB per fetch message),
//! [`attrib_protocol::sync::MAX_FETCH_RECORDS`] and [`attrib_protocol::sync::MAX_FETCH_IDS`],
//! and [`crate::MAX_GOSSIP_BYTES`] (64 KiB per gossip message).

use serde::{Deserialize, Serialize};

/// Node-local resource bounds. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Most valid records kept waiting for a chain gap or a claim, in all.
    pub max_pending: usize,
    /// Most such records from one author.
    pub max_pending_per_author: usize,
    /// How far beyond an author's contiguous head a record may be and still be kept.
    pub max_seq_ahead: u64,
    /// Most fetch requests this node has outstanding, in all.
    pub max_in_flight_fetches: usize,
    /// Most fetch requests outstanding to one peer.
    pub max_in_flight_fetches_per_peer: usize,
    /// Sustained gossip messages per second accepted from one peer (more are ignored unread).
    pub gossip_per_sec_per_peer: u32,
    /// Burst of gossip messages accepted from one peer.
    pub gossip_burst_per_peer: u32,
    /// Sustained fetch requests per second served to one peer (more get an empty answer).
    pub fetch_per_sec_per_peer: u32,
    /// Burst of fetch requests served to one peer.
    pub fetch_burst_per_peer: u32,
    /// Most established connections in all.
    pub max_connections: u32,
    /// Most established connections to one peer.
    pub max_connections_per_peer: u32,
    /// Most incoming connections still in their handshake.
    pub max_pending_incoming: u32,
    /// Most outgoing connections still in their handshake.
    pub max_pending_outgoing: u32,
    /// Largest local API request body, in bytes.
    pub api_max_body_bytes: usize,
    /// Most concurrent feed streams (SSE) on the local API.
    pub max_feed_streams: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pending: 10_000,
            max_pending_per_author: 2_000,
            max_seq_ahead: 100_000,
            max_in_flight_fetches: 64,
            max_in_flight_fetches_per_peer: 8,
            gossip_per_sec_per_peer: 500,
            gossip_burst_per_peer: 2_000,
            fetch_per_sec_per_peer: 50,
            fetch_burst_per_peer: 200,
            max_connections: 1_024,
            max_connections_per_peer: 2,
            max_pending_incoming: 64,
            max_pending_outgoing: 128,
            api_max_body_bytes: 256 * 1024,
            max_feed_streams: 256,
        }
    }
}

impl Limits {
    /// Refuses values that would switch a function off or break it (a zero, a body limit too
    /// small for a valid record, a stream bound too large to allocate), naming the key.
    pub fn check(&self) -> Result<(), String> {
        let positive = [
            ("max_pending", self.max_pending as u64),
            ("max_pending_per_author", self.max_pending_per_author as u64),
            ("max_seq_ahead", self.max_seq_ahead),
            ("max_in_flight_fetches", self.max_in_flight_fetches as u64),
            (
                "max_in_flight_fetches_per_peer",
                self.max_in_flight_fetches_per_peer as u64,
            ),
            (
                "gossip_per_sec_per_peer",
                self.gossip_per_sec_per_peer.into(),
            ),
            ("gossip_burst_per_peer", self.gossip_burst_per_peer.into()),
            ("fetch_per_sec_per_peer", self.fetch_per_sec_per_peer.into()),
            ("fetch_burst_per_peer", self.fetch_burst_per_peer.into()),
            ("max_connections", self.max_connections.into()),
            (
                "max_connections_per_peer",
                self.max_connections_per_peer.into(),
            ),
            ("max_pending_incoming", self.max_pending_incoming.into()),
            ("max_pending_outgoing", self.max_pending_outgoing.into()),
            ("max_feed_streams", self.max_feed_streams as u64),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!(
                "[limits] {key} = 0 would switch that function off; give at least 1, or leave it out for the default"
            ));
        }
        // A claim in JSON is larger than its binary encoding (escaped characters take up to
        // six bytes or twelve for a surrogate pair): room for the largest record.
        let min_body = 4 * attrib_protocol::limits::MAX_RECORD_BYTES;
        if self.api_max_body_bytes < min_body {
            return Err(format!(
                "[limits] api_max_body_bytes = {} is too small for a valid record; give at least {min_body}",
                self.api_max_body_bytes
            ));
        }
        const MAX_STREAMS: usize = 100_000;
        if self.max_feed_streams > MAX_STREAMS {
            return Err(format!(
                "[limits] max_feed_streams = {} is more than this node can hold open; give at most {MAX_STREAMS}",
                self.max_feed_streams
            ));
        }
        Ok(())
    }
}

/// A token bucket: `rate` tokens per second, up to `burst`.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    tokens: f64,
    last: std::time::Instant,
}

impl Bucket {
    pub(crate) fn new(burst: u32) -> Bucket {
        Bucket {
            tokens: f64::from(burst),
            last: std::time::Instant::now(),
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn take(&mut self, rate: u32, burst: u32) -> bool {
        let now = std::time::Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * f64::from(rate)).min(f64::from(burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
