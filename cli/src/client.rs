//! The HTTP client of the node's local API.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use attrib_node::config::{FileConfig, read_secret_file};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A connection to a node's local API.
pub(crate) struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// The API base URL from `--api`: `http://` and a host, or a bare `host:port` (taken as
/// `http://`).
fn api_base(given: &str) -> Result<String> {
    let trimmed = given.trim().trim_end_matches('/');
    let url = if trimmed.contains("://") {
        trimmed.to_string()
    } else {
        format!("http://{trimmed}")
    };
    let hint = "give the node's API address, e.g. --api http://127.0.0.1:4711 (its `api_listen`)";
    let parsed = reqwest::Url::parse(&url)
        .map_err(|e| anyhow!("--api {given:?} is not a URL ({e}); {hint}"))?;
    match parsed.scheme() {
        "http" => {}
        // The node's API is plain HTTP on a local address; this build has no TLS client.
        "https" => bail!(
            "--api {given:?}: the node's API speaks plain http (keep it on a local address); {hint}"
        ),
        other => bail!("--api {given:?}: the scheme must be http, not {other:?}; {hint}"),
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        bail!("--api {given:?} names no host; {hint}");
    }
    if parsed.path() != "/" || parsed.query().is_some() {
        bail!("--api {given:?}: give only the scheme, host and port, no path; {hint}");
    }
    Ok(url)
}

impl Client {
    /// From `--api`/`--token-file`, falling back to the node config file.
    pub(crate) fn new(
        config: &Path,
        api: Option<String>,
        token_file: Option<PathBuf>,
    ) -> Result<Client> {
        // The config is needed for the API address, and for the token unless --token-file is
        // given; read-only commands with --api work without any config.
        let file = match (&api, &token_file) {
            (Some(_), Some(_)) => None,
            (Some(_), None) => FileConfig::read(config).ok(),
            (None, _) => Some(FileConfig::read(config).with_context(|| {
                format!(
                    "no node config at {} (pass --config, or --api and --token-file)",
                    config.display()
                )
            })?),
        };
        let base = match api {
            Some(a) => api_base(&a)?,
            None => format!(
                "http://{}",
                file.as_ref()
                    .map(|f| f.api_listen)
                    .ok_or_else(|| anyhow!("no API address"))?
            ),
        };
        let token_path = token_file.or_else(|| {
            file.as_ref()
                .map(|f| config.parent().unwrap_or(Path::new(".")).join(&f.api_token))
        });
        let token = match token_path {
            Some(p) => {
                let t = read_secret_file(&p)
                    .map_err(|e| {
                        anyhow!("the API token file (--token-file, or api_token in the node config): {e}")
                    })?
                    .trim()
                    .to_string();
                if t.is_empty() {
                    bail!(
                        "the token file {} is empty; it should hold the token `attrib init` wrote",
                        p.display()
                    );
                }
                Some(t)
            }
            None => None,
        };
        Ok(Client {
            base,
            token,
            http: reqwest::Client::new(),
        })
    }

    /// Whether requests carry the API token.
    pub(crate) fn has_token(&self) -> bool {
        self.token.is_some()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn check(&self, resp: reqwest::Result<reqwest::Response>) -> Result<reqwest::Response> {
        let resp = resp.map_err(|e| {
            if e.is_connect() {
                anyhow!(
                    "cannot reach the node at {}: is it running? (`attrib node run`)",
                    self.base
                )
            } else if e.is_request() || e.is_body() || e.is_decode() {
                // Something listens there but does not speak HTTP: often the libp2p port.
                anyhow!(
                    "request to the node at {} failed: {}; something answers there, but not the node's API: is that its API address (`api_listen` in the node config), not its libp2p one (`listen`)?",
                    self.base,
                    attrib_node::error_chain(&e)
                )
            } else {
                anyhow!("request to the node at {} failed: {e}", self.base)
            }
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let msg = match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(body) => crate::render::printable(body["error"].as_str().unwrap_or("no details"))
                .into_owned(),
            // Not the node's JSON (a proxy, another server on that port): say what came back.
            Err(_) if text.trim().is_empty() => "no details".to_string(),
            Err(_) => crate::render::printable(&text.trim().chars().take(300).collect::<String>())
                .into_owned(),
        };
        bail!("the node refused the request ({status}): {msg}")
    }

    /// A GET that carries the token when there is one (some reads, e.g. `include_red`, need it).
    fn get_request(&self, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.get(self.url(path));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let resp = self.check(self.get_request(path).send().await).await?;
        Ok(resp.json().await?)
    }

    pub(crate) async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        let token = self
            .token
            .as_ref()
            .ok_or_else(|| anyhow!("no API token: pass --token-file or --config"))?;
        let resp = self
            .check(
                self.http
                    .post(self.url(path))
                    .bearer_auth(token)
                    .json(body)
                    .send()
                    .await,
            )
            .await?;
        Ok(resp.json().await?)
    }

    /// A full record id from a full id or a unique prefix (asked of the node).
    pub(crate) async fn resolve(&self, id: &str) -> Result<attrib_protocol::RecordId> {
        if let Ok(full) = id.parse() {
            return Ok(full);
        }
        let q = if self.has_token() {
            "?include_red=true"
        } else {
            ""
        };
        let entry: serde_json::Value = self.get(&format!("/v1/records/{id}{q}")).await?;
        entry["record"]["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("the node answered without a record id"))
    }

    pub(crate) async fn stream(&self, path: &str) -> Result<reqwest::Response> {
        self.check(self.get_request(path).send().await).await
    }

    /// Like [`Client::stream`], but a node that cannot be reached (not running, restarting) is
    /// `Ok(Err(why))`, for callers that had reached it before and try again; a refusal by the
    /// node is an error.
    pub(crate) async fn stream_or_unreachable(
        &self,
        path: &str,
    ) -> Result<std::result::Result<reqwest::Response, String>> {
        match self.get_request(path).send().await {
            Err(e) if e.is_connect() || e.is_timeout() || e.is_request() => Ok(Err(format!(
                "cannot reach the node at {}: {}",
                self.base,
                attrib_node::error_chain(&e)
            ))),
            sent => self.check(sent).await.map(Ok),
        }
    }
}
