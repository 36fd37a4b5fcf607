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
    /// Where to POST (http://; for an https endpoint, a local TLS-terminating forwarder).
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

impl WebhookConfig {
    /// Checks what the node cannot deliver on, naming the webhook and the key.
    pub fn check(&self) -> Result<(), String> {
        let name = &self.name;
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "webhook name {name:?}: use letters, digits, '-' and '_' (its delivery cursor is stored under it)"
            ));
        }
        let url = reqwest::Url::parse(&self.url).map_err(|e| {
            format!(
                "webhook {name}: url {:?} is not a URL ({e}); it must be http://host[:port]/path",
                self.url
            )
        })?;
        match url.scheme() {
            "http" if url.host_str().is_some_and(|h| !h.is_empty()) => {}
            "https" => {
                return Err(format!(
                    "webhook {name}: this build posts plain http only; point url at a local TLS-terminating forwarder (stunnel, nginx) for an https endpoint"
                ));
            }
            _ => {
                return Err(format!(
                    "webhook {name}: url {:?} must be http://host[:port]/path",
                    self.url
                ));
            }
        }
        if let Some(kind) = &self.kind
            && !attrib_protocol::KIND_NAMES.contains(&kind.as_str())
        {
            return Err(format!(
                "webhook {name}: kind {kind:?} is not a record kind; use claim, rebuttal, endorsement or retraction"
            ));
        }
        Ok(())
    }
}

const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Runs one webhook until the task is aborted.
pub(crate) async fn run(node: NodeHandle, config: WebhookConfig) {
    let key = format!("webhook/{}", config.name);
    let store = node.shared.store.clone();
    let mut cursor = match store.meta_u64(&key) {
        Ok(Some(c)) => c,
        other => {
            let start = if config.from_start {
                0
            } else {
                store.last_cursor()
            };
            if let Ok(None) = other {
                // Saved at once: after a restart, delivery goes on from here, not from the
                // feed's end at that later time (which would skip what came in between).
                let _ = store.set_meta_u64(&key, start);
            }
            start
        }
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

/// Whether an answer means the endpoint will never take this record: a 4xx, except those that
/// say "later" (408 timeout, 425 too early, 429 too many requests).
fn refused_for_good(status: reqwest::StatusCode) -> bool {
    status.is_client_error() && !matches!(status.as_u16(), 408 | 425 | 429)
}

/// POSTs one entry until the endpoint accepts it, or refuses it for good.
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
        let (id, cursor) = (entry.record.id(), entry.cursor);
        match result {
            Ok(resp) if resp.status().is_success() => return,
            Ok(resp) if refused_for_good(resp.status()) => {
                // Sending the same record again cannot help; holding every later record back
                // behind it would stop the webhook for good.
                tracing::error!(webhook = %config.name, status = %resp.status(), record = %id, cursor, "webhook endpoint refused this record for good (a 4xx answer): skipped; fetch it with `attrib show` or GET /v1/records/{id} if it is needed");
                return;
            }
            Ok(resp) => {
                tracing::warn!(webhook = %config.name, status = %resp.status(), record = %id, cursor, attempt, "webhook endpoint refused a delivery; retrying");
            }
            Err(e) => {
                let cause = crate::error_chain(&e);
                tracing::warn!(webhook = %config.name, error = %cause, record = %id, cursor, attempt, "webhook delivery failed; retrying");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        attempt += 1;
    }
}
