//! Outbound webhooks: each configured endpoint gets one HTTP POST per matching record, in feed
//! order, at least once: a delivery is retried with exponential backoff until the endpoint
//! answers 2xx, and the webhook's cursor is persisted after each success, so a restart resumes
//! where delivery stopped. The record id is sent as `Idempotency-Key` so receivers can drop
//! repeats. Only records at or below the webhook's TLP level (never above the node's ceiling)
//! are sent.

use std::time::Duration;

use attrib_protocol::{StateCode, Tlp};
use serde::{Deserialize, Serialize};

use crate::{FeedFilter, NodeHandle};

/// One `[[webhook]]` table in the node config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// A name, unique per node (its delivery cursor is stored under it).
    pub name: String,
    /// Where to POST (http:// or https://).
    pub url: String,
    /// Only this kind of record.
    #[serde(default)]
    pub kind: Option<String>,
    /// Only claims about this state (and responses to them).
    #[serde(default)]
    pub about: Option<StateCode>,
    /// Only records at or below this TLP level (capped by the node's ceiling).
    #[serde(default)]
    pub max_tlp: Option<Tlp>,
    /// Deliver the existing record too on first start (default: only records from now on).
    #[serde(default)]
    pub from_start: bool,
}

const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Runs one webhook until the task is aborted.
pub(crate) async fn run(node: NodeHandle, config: WebhookConfig) {
    let key = format!("webhook/{}", config.name);
    let store = node.shared.store.clone();
    let mut cursor = match store.meta_u64(&key) {
        Ok(Some(c)) => c,
        _ if config.from_start => 0,
        _ => store.last_cursor(),
    };
    let ceiling = node.tlp_ceiling();
    let filter = FeedFilter {
        kind: config.kind.clone(),
        author: None,
        about: config.about,
        max_tlp: Some(config.max_tlp.map_or(ceiling, |t| t.min(ceiling))),
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let mut updates = node.feed_updates();
    tracing::info!(webhook = %config.name, url = %config.url, cursor, "webhook delivery running");
    loop {
        updates.borrow_and_update();
        let page = match node.read_feed(cursor, 64, filter.clone()).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(webhook = %config.name, error = %e, "webhook stopped: store error");
                return;
            }
        };
        for entry in &page.entries {
            deliver(&http, &config, entry).await;
            cursor = entry.cursor;
            let _ = store.set_meta_u64(&key, cursor);
        }
        let advanced = page.next != cursor;
        cursor = page.next;
        if advanced {
            let _ = store.set_meta_u64(&key, cursor);
        }
        if page.entries.is_empty() && !advanced && updates.changed().await.is_err() {
            return;
        }
    }
}

/// POSTs one entry until the endpoint accepts it.
async fn deliver(http: &reqwest::Client, config: &WebhookConfig, entry: &crate::FeedEntry) {
    let mut backoff = Duration::from_millis(100);
    let mut attempt = 1u32;
    loop {
        let result = http
            .post(&config.url)
            .header("Idempotency-Key", entry.record.id().to_hex())
            .header("X-Attrib-Cursor", entry.cursor.to_string())
            .json(entry)
            .send()
            .await;
        match result {
            Ok(resp) if resp.status().is_success() => return,
            Ok(resp) => {
                tracing::warn!(webhook = %config.name, status = %resp.status(), attempt, "webhook endpoint refused a delivery; retrying");
            }
            Err(e) => {
                tracing::warn!(webhook = %config.name, error = %e, attempt, "webhook delivery failed; retrying");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        attempt += 1;
    }
}
