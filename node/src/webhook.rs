//! Outbound webhooks: each configured endpoint gets one HTTP POST per matching record, in feed
//! order, at least once: a delivery is retried with exponential backoff until the endpoint
//! answers 2xx, and the webhook's cursor is persisted after each success, so a restart resumes
//! where delivery stopped. The record id is sent as `Idempotency-Key` so receivers can drop
//! repeats. Only records at or below the webhook's TLP level (never above the node's ceiling)
//! are sent.
//!
//! With a `secret_file`, every delivery is signed so the receiver can tell it came from this
//! node and is fresh: `X-Attrib-Timestamp` (Unix seconds) and `X-Attrib-Signature:
//! sha256=<hex HMAC-SHA256(secret, timestamp ‖ "." ‖ body)>` (README: "Verifying a delivery").

use std::path::PathBuf;
use std::time::Duration;

use hmac::Mac;

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
    /// A file holding a secret shared with the receiver (at least 16 characters, readable by
    /// the node's user only; relative to the config file): deliveries are then signed.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// The secret, read from `secret_file` when the config is loaded.
    #[serde(skip)]
    pub secret: Option<WebhookSecret>,
}

/// A webhook's shared secret (not shown by `Debug`).
#[derive(Clone)]
pub struct WebhookSecret(pub String);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

impl WebhookSecret {
    /// The `X-Attrib-Signature` value for a body sent at `timestamp` (Unix seconds).
    pub fn sign(&self, timestamp: u64, body: &[u8]) -> String {
        // HMAC takes a key of any length.
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(self.0.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }
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
                "webhook {name}: kind {kind:?} is not a record kind; use claim, rebuttal, endorsement, retraction or withdrawal"
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
    let body = match serde_json::to_vec(entry) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(webhook = %config.name, record = %entry.record.id(), error = %e, "webhook entry could not be encoded: skipped");
            return;
        }
    };
    loop {
        let mut request = http
            .post(&config.url)
            .header("Idempotency-Key", entry.record.id().to_hex())
            .header("X-Attrib-Cursor", entry.cursor.to_string())
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(secret) = &config.secret {
            // Signed at each attempt, so a retry carries a fresh timestamp.
            let timestamp = crate::now_ms() / 1000;
            request = request
                .header("X-Attrib-Timestamp", timestamp.to_string())
                .header("X-Attrib-Signature", secret.sign(timestamp, &body));
        }
        let result = request.body(body.clone()).send().await;
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
