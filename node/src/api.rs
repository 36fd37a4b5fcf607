//! The local HTTP API (`/v1/...`, JSON), used by the `attrib` CLI and integrations.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/v1/status` | network id, peers, counts, own chain head, equivocators |
//! | POST | `/v1/claims` | submit a [`Claim`] (token) |
//! | POST | `/v1/rebuttals` | submit a [`Rebuttal`] (token) |
//! | POST | `/v1/endorsements` | submit an [`Endorsement`] (token) |
//! | POST | `/v1/retractions` | submit a [`Retraction`] (token) |
//! | POST | `/v1/withdrawals` | submit a [`Withdrawal`] (token) |
//! | POST | `/v1/records` | publish a record signed elsewhere: the exact record bytes as `application/octet-stream` (token) |
//! | GET | `/v1/records/{id}` | one record with its cursor |
//! | GET | `/v1/forks` | fork proofs held: who equivocated, with the proof bytes (hex) |
//! | GET | `/v1/threads/{id}` | a claim, its responses, its status |
//! | GET | `/v1/feed?since=&limit=&kind=&author=&about=` | a page of the feed |
//! | GET | `/v1/feed/stream?since=...` | the feed live, as Server-Sent Events (`id` = cursor; `Last-Event-ID` resumes) |
//!
//! Write endpoints need `Authorization: Bearer <token>`. Errors are JSON `{"error": "..."}` with
//! a 4xx/5xx status and say what to fix.

use std::collections::VecDeque;
use std::convert::Infallible;

use attrib_protocol::{Body, Claim, Endorsement, Rebuttal, RecordId, Retraction, Tlp, Withdrawal};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::store::StoreError;
use crate::{FeedFilter, NodeHandle, SubmitError};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Largest feed page.
pub const MAX_PAGE: usize = 1000;
/// Most records in one STIX export.
pub const MAX_EXPORT: usize = 10 * MAX_PAGE;

#[derive(Clone)]
struct Api {
    node: NodeHandle,
    token: std::sync::Arc<str>,
    metrics_token: Option<std::sync::Arc<str>>,
    public_reads: bool,
    streams: std::sync::Arc<tokio::sync::Semaphore>,
    /// Turns true when the node stops: feed streams end so the server can drain.
    stopping: tokio::sync::watch::Receiver<bool>,
}

/// The API router for a node. Feed streams end when `stopping` turns true.
pub fn router(
    node: NodeHandle,
    config: &crate::ApiConfig,
    limits: &crate::limits::Limits,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> Router {
    let state = Api {
        node: node.clone(),
        token: config.token.clone().into(),
        metrics_token: config.metrics_token.clone().map(Into::into),
        public_reads: config.public_reads,
        streams: std::sync::Arc::new(tokio::sync::Semaphore::new(limits.max_feed_streams)),
        stopping,
    };
    let reads = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/records/{id}", get(record))
        .route("/v1/forks", get(forks))
        .route("/v1/threads/{id}", get(thread))
        .route("/v1/feed", get(feed))
        .route("/v1/feed/stream", get(feed_stream))
        .route("/v1/stix", get(stix_export))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            read_access,
        ));
    Router::new()
        .route("/v1/claims", post(submit::<Claim>))
        .route("/v1/rebuttals", post(submit::<Rebuttal>))
        .route("/v1/endorsements", post(submit::<Endorsement>))
        .route("/v1/retractions", post(submit::<Retraction>))
        .route("/v1/withdrawals", post(submit::<Withdrawal>))
        .route("/v1/records", post(publish_signed))
        .route("/v1/verify", post(verify_store))
        .route("/metrics", get(metrics))
        .merge(reads)
        .fallback(|| async {
            ApiError(
                StatusCode::NOT_FOUND,
                "no such endpoint; see the API list in the README".into(),
            )
        })
        .method_not_allowed_fallback(|method: axum::http::Method| async move {
            ApiError(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not allowed here: records are submitted with POST, everything else is read with GET"),
            )
        })
        .layer(DefaultBodyLimit::max(limits.api_max_body_bytes))
        .with_state(state)
        .merge(crate::taxii::router(node, config.token.clone()))
}

/// A query string, refused with a JSON error (axum's own rejection is plain text) that names
/// what was wrong.
struct ApiQuery<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| ApiQuery(q))
            .map_err(|e| {
                ApiError(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "{}; see the API list in the README for the parameters",
                        e.body_text()
                    ),
                )
            })
    }
}

/// Reads need the token too, unless the operator set `api_public_reads`.
async fn read_access(
    State(api): State<Api>,
    headers: HeaderMap,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<Response, ApiError> {
    if !api.public_reads {
        authorize(&api, &headers)?;
    }
    Ok(next.run(request).await)
}

/// Verifies the whole store as it is on disk (signatures, chain links, every record the node
/// holds still there) and reports what is damaged.
async fn verify_store(
    State(api): State<Api>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&api, &headers)?;
    let node = api.node.clone();
    let report = tokio::task::spawn_blocking(move || node.verify_store())
        .await
        .map_err(internal)?
        .map_err(internal)?;
    Ok(axum::Json(report))
}

/// An API error: a status and a message for people.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// A body kind the API accepts.
trait Submission: DeserializeOwned {
    fn into_body(self) -> Body;
}
impl Submission for Claim {
    fn into_body(self) -> Body {
        Body::Claim(self)
    }
}
impl Submission for Rebuttal {
    fn into_body(self) -> Body {
        Body::Rebuttal(self)
    }
}
impl Submission for Endorsement {
    fn into_body(self) -> Body {
        Body::Endorsement(self)
    }
}
impl Submission for Retraction {
    fn into_body(self) -> Body {
        Body::Retraction(self)
    }
}
impl Submission for Withdrawal {
    fn into_body(self) -> Body {
        Body::Withdrawal(self)
    }
}

/// The bearer token a request carries, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            // The scheme is case-insensitive (RFC 9110).
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(token.trim())
        })
}

fn authorize(api: &Api, headers: &HeaderMap) -> Result<(), ApiError> {
    let given = bearer(headers).ok_or_else(|| {
        ApiError(
            StatusCode::UNAUTHORIZED,
            "missing `Authorization: Bearer <token>`; the token is in the node's api.token file"
                .into(),
        )
    })?;
    if !constant_time_eq(given.trim().as_bytes(), api.token.as_bytes()) {
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "wrong API token; use the one in the node's api.token file".into(),
        ));
    }
    Ok(())
}

/// Compares secrets in time independent of where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A request body, or the reason it could not be read as a JSON error like every other
/// (the body limit's own answer is plain text).
fn request_body(
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Bytes, ApiError> {
    body.map_err(|r| {
        let what = if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            format!(
                "request body too large for this node (`api_max_body_bytes` in its [limits]); a record is at most {} KiB",
                attrib_protocol::limits::MAX_RECORD_BYTES / 1024
            )
        } else {
            format!("cannot read the request body: {}", r.body_text())
        };
        ApiError(r.status(), what)
    })
}

async fn submit<T: Submission>(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, axum::Json<crate::Submitted>), ApiError> {
    authorize(&api, &headers)?;
    let body = request_body(body)?;
    let value: T = serde_json::from_slice(&body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "request body is not a valid {}: {e}",
                std::any::type_name::<T>()
                    .rsplit("::")
                    .next()
                    .unwrap_or("record")
            ),
        )
    })?;
    submitted(api.node.submit(value.into_body()).await)
}

fn submitted(
    result: Result<crate::Submitted, SubmitError>,
) -> Result<(StatusCode, axum::Json<crate::Submitted>), ApiError> {
    let code = match &result {
        Ok(_) => StatusCode::CREATED,
        Err(SubmitError::Observer) => StatusCode::FORBIDDEN,
        Err(SubmitError::UnknownTarget(_)) => StatusCode::NOT_FOUND,
        Err(
            SubmitError::Invalid(_) | SubmitError::UnknownState(_) | SubmitError::SelfAttribution,
        ) => StatusCode::UNPROCESSABLE_ENTITY,
        Err(
            SubmitError::Retracted(_)
            | SubmitError::LineRetracted { .. }
            | SubmitError::NothingToWithdraw(_)
            | SubmitError::AlreadyRevised { .. }
            | SubmitError::SecondSigner { .. }
            | SubmitError::CopyRunning
            | SubmitError::Conflict { .. }
            | SubmitError::OutOfOrder { .. }
            | SubmitError::Equivocation { .. }
            | SubmitError::Store(StoreError::TooFarAhead { .. }),
        ) => StatusCode::CONFLICT,
        Err(
            SubmitError::CatchingUp { .. }
            | SubmitError::ChainUnknown
            | SubmitError::Stopping
            | SubmitError::Store(StoreError::PendingFull),
        ) => StatusCode::SERVICE_UNAVAILABLE,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    result
        .map(|s| (code, axum::Json(s)))
        .map_err(|e| ApiError(code, e.to_string()))
}

async fn publish_signed(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, axum::Json<crate::Submitted>), ApiError> {
    authorize(&api, &headers)?;
    let body = request_body(body)?;
    submitted(api.node.publish_signed(&body).await)
}

/// The fork proofs. A proof carries both conflicting records whole, so one with a record
/// above the reader's TLP ceiling is listed without it (ids and heights only).
async fn forks(
    State(api): State<Api>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ReadQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let ceiling = reader_ceiling(&api, &headers, q.include_red)?;
    let roster = api.node.roster();
    let mut proofs = Vec::new();
    for p in api.node.forks().map_err(internal)? {
        let (a, b) = p.records();
        let mut proof = serde_json::json!({
            "id": p.id(),
            "author": p.author(),
            "author_state": roster.member_by_key(&p.author()).map(|m| m.code),
            "seqs": [a.seq(), b.seq()],
            "records": [a.id(), b.id()],
        });
        let tlp = api
            .node
            .tlp_of(a)
            .map_err(internal)?
            .max(api.node.tlp_of(b).map_err(internal)?);
        if tlp <= ceiling {
            proof["proof"] = hex::encode(p.encode()).into();
        } else {
            proof["withheld"] = format!(
                "a record in this proof is marked TLP:{} (above TLP:{}); ask with include_red=true and the API token",
                tlp_name(tlp),
                tlp_name(ceiling)
            )
            .into();
        }
        proofs.push(proof);
    }
    Ok((
        [(TLP_CEILING_HEADER, tlp_name(ceiling))],
        axum::Json(proofs),
    ))
}

async fn status(State(api): State<Api>) -> Result<impl IntoResponse, ApiError> {
    Ok(axum::Json(api.node.status().await.map_err(internal)?))
}

/// Metrics need a token even when reads are public (they count RED records too): the API
/// token or the metrics token, which opens nothing else.
async fn metrics(State(api): State<Api>, headers: HeaderMap) -> Result<Response, ApiError> {
    let metrics_token = api.metrics_token.as_deref().filter(|m| {
        bearer(&headers).is_some_and(|given| constant_time_eq(given.as_bytes(), m.as_bytes()))
    });
    if metrics_token.is_none() {
        authorize(&api, &headers).map_err(|ApiError(code, _)| {
            ApiError(
                code,
                "missing or wrong token for /metrics: use the node's metrics.token (made by `attrib init`; `metrics_token` in node.toml), or its api.token".into(),
            )
        })?;
    }
    let status = api.node.status().await.map_err(internal)?;
    let members: Vec<_> = api.node.roster().members().iter().map(|m| m.code).collect();
    Ok((
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        crate::metrics::render(&status, &members),
    )
        .into_response())
}

/// A full id, or a unique prefix of at least 8 hex digits of a stored record's id.
fn parse_id_or_prefix(api: &Api, id: &str) -> Result<RecordId, ApiError> {
    if let Ok(full) = id.parse() {
        return Ok(full);
    }
    let lower = id.to_ascii_lowercase();
    if lower.len() < 8 || lower.len() > 64 || !lower.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "{id:?} is not a record id: give 64 hex digits, or a unique prefix of at least 8"
            ),
        ));
    }
    let found = api
        .node
        .shared
        .store
        .find_prefix(&lower, 2)
        .map_err(internal)?;
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no record starting with {lower} on this node"),
        )),
        _ => Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("{lower} is the start of several record ids; give more digits"),
        )),
    }
}

/// A record above the reader's ceiling, named as the reader asked for it (a prefix is not
/// completed: the full id is not the reader's to learn).
fn withheld(asked: &str, tlp: Tlp, ceiling: Tlp) -> ApiError {
    ApiError(
        StatusCode::FORBIDDEN,
        format!(
            "record {asked} is TLP:{}, above this node's outbound ceiling TLP:{}; a local reader holding the API token may ask with include_red=true (`--include-red` on the command line)",
            tlp_name(tlp),
            tlp_name(ceiling)
        ),
    )
}

async fn record(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(asked): Path<String>,
    ApiQuery(q): ApiQuery<ReadQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let id = parse_id_or_prefix(&api, &asked)?;
    let ceiling = reader_ceiling(&api, &headers, q.include_red)?;
    match api.node.get(&id).map_err(internal)? {
        Some(entry) if entry.tlp > ceiling => Err(withheld(&asked, entry.tlp, ceiling)),
        Some(entry) => Ok(([(TLP_CEILING_HEADER, tlp_name(ceiling))], axum::Json(entry))),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no record {id} on this node"),
        )),
    }
}

async fn thread(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(asked): Path<String>,
    ApiQuery(q): ApiQuery<ReadQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let id = parse_id_or_prefix(&api, &asked)?;
    let ceiling = reader_ceiling(&api, &headers, q.include_red)?;
    match api.node.thread(&id, ceiling).map_err(internal)? {
        Some(t) if t.claim.tlp > ceiling => Err(withheld(&asked, t.claim.tlp, ceiling)),
        Some(t) => Ok(([(TLP_CEILING_HEADER, tlp_name(ceiling))], axum::Json(t))),
        None => {
            // A response: point to its claim.
            let target = api.node.get(&id).map_err(internal)?.and_then(|e| {
                e.record
                    .body()
                    .target()
                    .map(|t| (e.record.body().kind_name(), t))
            });
            Err(ApiError(
                StatusCode::NOT_FOUND,
                match target {
                    Some((kind, claim)) => format!(
                        "{id} is not a claim but a {kind} of claim {claim}: ask for that claim's thread"
                    ),
                    None => format!(
                        "no claim {id} on this node (it may not have arrived yet, or it is not a claim)"
                    ),
                },
            ))
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedQuery {
    since: Option<u64>,
    limit: Option<usize>,
    kind: Option<String>,
    author: Option<String>,
    about: Option<String>,
    about_us: Option<bool>,
    tlp: Option<String>,
    include_red: Option<bool>,
}

/// The query of single-record reads: only the TLP override.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadQuery {
    include_red: Option<bool>,
}

/// The header that says which TLP ceiling applied to a response.
pub const TLP_CEILING_HEADER: &str = "x-attrib-tlp-ceiling";

/// The header naming the node store's feed id on feed pages and streams
/// ([`crate::Store::feed_id`]): a cursor is valid only with the feed id it came with.
pub const FEED_ID_HEADER: &str = "x-attrib-feed-id";

/// The TLP ceiling for this reader: the node's outbound ceiling, or RED for a local reader
/// who holds the API token and asks for it with `include_red=true`.
fn reader_ceiling(
    api: &Api,
    headers: &HeaderMap,
    include_red: Option<bool>,
) -> Result<Tlp, ApiError> {
    if include_red == Some(true) {
        authorize(api, headers)?;
        return Ok(Tlp::Red);
    }
    Ok(api.node.tlp_ceiling())
}

/// The TLP level as written in TLP 2.0 (`AMBER+STRICT`, ...).
pub(crate) fn tlp_name(t: Tlp) -> &'static str {
    match t {
        Tlp::Clear => "CLEAR",
        Tlp::Green => "GREEN",
        Tlp::Amber => "AMBER",
        Tlp::AmberStrict => "AMBER+STRICT",
        Tlp::Red => "RED",
    }
}

fn parse_tlp(s: &str) -> Result<Tlp, ApiError> {
    // `+` in a query string reads as a space unless escaped: AMBER STRICT is AMBER+STRICT.
    let name = s.trim().to_uppercase().replace([' ', '-', '_'], "+");
    serde_json::from_value(serde_json::Value::String(name)).map_err(|_| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("unknown TLP level {s:?}; use CLEAR, GREEN, AMBER, AMBER+STRICT or RED"),
        )
    })
}

impl FeedQuery {
    /// Where to start: `resume` (a stream's Last-Event-ID) or `since`. A cursor beyond this
    /// node's last is refused: cursors are this node's own, and one it never gave out means the
    /// reader's was from another node, or from before its data dir was rebuilt; reading on from
    /// it would silently skip everything up to there.
    fn since_checked(&self, api: &Api, resume: Option<u64>) -> Result<u64, ApiError> {
        let since = resume.or(self.since).unwrap_or(0);
        let last = api.node.shared.store.last_cursor();
        if since > last {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!(
                    "cursor {since} is beyond this node's last cursor {last}: cursors belong to one node, and this one never gave that out (another node's cursor, or this node's data dir was rebuilt); start again from 0 and skip records you hold, by id"
                ),
            ));
        }
        Ok(since)
    }

    /// The page size asked for: `default` when not given, at most `max` (a larger ask is
    /// capped; the page's `next` says where to go on). Zero is refused: it would page forever.
    fn page_limit(&self, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.limit {
            Some(0) => Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("limit=0 asks for nothing; give 1 to {max}"),
            )),
            Some(n) => Ok(n.min(max)),
            None => Ok(default),
        }
    }

    fn filter(&self, api: &Api, headers: &HeaderMap) -> Result<FeedFilter, ApiError> {
        let state = |s: &Option<String>| -> Result<_, ApiError> {
            s.as_deref()
                .map(|v| {
                    v.to_ascii_uppercase()
                        .parse()
                        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("{e}")))
                })
                .transpose()
        };
        if let Some(k) = &self.kind
            && k != "unknown"
            && !attrib_protocol::KIND_NAMES.contains(&k.as_str())
        {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!(
                    "unknown kind {k:?}; use claim, rebuttal, endorsement, retraction or withdrawal"
                ),
            ));
        }
        let mut about = state(&self.about)?;
        if self.about_us == Some(true) && about.is_some() {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "about_us and about both name the state the claims are about; give one".into(),
            ));
        }
        if self.about_us == Some(true) {
            about = Some(api.node.state().ok_or_else(|| {
                ApiError(
                    StatusCode::BAD_REQUEST,
                    "about_us needs a member node; this node is an observer (use about=XXX)".into(),
                )
            })?);
        }
        let ceiling = reader_ceiling(api, headers, self.include_red)?;
        let asked = self.tlp.as_deref().map(parse_tlp).transpose()?;
        // A state no record can name gives an empty feed for ever: more likely a typo.
        let roster = api.node.roster();
        let author = state(&self.author)?;
        if let Some(a) = author
            && roster.member_by_code(a).is_none()
        {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!(
                    "author={a}: not a member state of this network, so it authors nothing; members: {}",
                    roster
                        .members()
                        .iter()
                        .map(|m| m.code.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        if let Some(a) = about
            && roster.member_by_code(a).is_none()
            && !crate::iso3166::is_assigned(a.as_str())
        {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!(
                    "about={a}: neither a member state nor an ISO 3166-1 alpha-3 code, so no claim names it"
                ),
            ));
        }
        Ok(FeedFilter {
            kind: self.kind.clone(),
            author,
            about,
            max_tlp: Some(asked.map_or(ceiling, |t| t.min(ceiling))),
        })
    }
}

async fn feed(
    State(api): State<Api>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<FeedQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let filter = q.filter(&api, &headers)?;
    let limit = q.page_limit(100, MAX_PAGE)?;
    let page = api
        .node
        .read_feed(q.since_checked(&api, None)?, limit, filter)
        .await
        .map_err(internal)?;
    Ok((
        [
            (TLP_CEILING_HEADER, tlp_name(page.tlp_ceiling).to_string()),
            (FEED_ID_HEADER, api.node.shared.store.feed_id().to_string()),
        ],
        axum::Json(page),
    ))
}

/// A STIX 2.1 bundle of the feed page selected by the same query as `/v1/feed`.
async fn stix_export(
    State(api): State<Api>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<FeedQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let filter = q.filter(&api, &headers)?;
    let limit = q.page_limit(MAX_PAGE, MAX_EXPORT)?;
    let page = api
        .node
        .read_feed(q.since_checked(&api, None)?, limit, filter)
        .await
        .map_err(internal)?;
    let lookup = api.node.lookup_within(page.tlp_ceiling);
    let bundle = crate::stix::bundle(&page.entries, api.node.roster(), &lookup);
    Ok((
        [
            (TLP_CEILING_HEADER, tlp_name(page.tlp_ceiling).to_string()),
            ("x-attrib-next", page.next.to_string()),
            ("x-attrib-more", page.more.to_string()),
            (
                "content-type",
                "application/stix+json;version=2.1".to_string(),
            ),
        ],
        bundle.to_string(),
    ))
}

async fn feed_stream(
    State(api): State<Api>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<FeedQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let filter = q.filter(&api, &headers)?;
    let ceiling = filter.max_tlp.unwrap_or(Tlp::Red);
    let permit = api.streams.clone().try_acquire_owned().map_err(|_| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many feed streams are open on this node (limits.max_feed_streams); retry later"
                .into(),
        )
    })?;
    let resume = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError(
                        StatusCode::BAD_REQUEST,
                        "Last-Event-ID must be a feed cursor (the id: of an event this node sent)"
                            .into(),
                    )
                })?,
        ),
    };
    let since = q.since_checked(&api, resume)?;
    let feed_id = api.node.shared.store.feed_id().to_string();
    let node = api.node.clone();
    let updates = node.feed_updates();
    // The permit travels with the stream and is released when the subscriber goes away.
    let state = ((node, permit), since, updates, VecDeque::new(), filter);
    let stream = futures::stream::unfold(
        state,
        |((node, permit), mut cursor, mut updates, mut buf, filter)| async move {
            loop {
                if let Some(entry) = buf.pop_front() {
                    let entry: crate::FeedEntry = entry;
                    let event = Event::default()
                        .id(entry.cursor.to_string())
                        .event(entry.record.body().kind_name())
                        .json_data(&entry)
                        .unwrap_or_else(|_| Event::default().comment("unencodable entry"));
                    return Some((
                        Ok::<Event, Infallible>(event),
                        ((node, permit), cursor, updates, buf, filter),
                    ));
                }
                updates.borrow_and_update();
                let page = match node.read_feed(cursor, 256, filter.clone()).await {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(error = %e, "feed stream stopped: store error");
                        return None;
                    }
                };
                let advanced = page.next != cursor;
                cursor = page.next;
                buf.extend(page.entries);
                if buf.is_empty() && !advanced && updates.changed().await.is_err() {
                    return None;
                }
            }
        },
    );
    // A stream never ends by itself; it ends when the node stops, or the server could never
    // finish draining its connections.
    let mut stopping = api.stopping.clone();
    let stream = futures::StreamExt::take_until(stream, async move {
        let _ = stopping.wait_for(|s| *s).await;
    });
    Ok((
        [
            (TLP_CEILING_HEADER, tlp_name(ceiling).to_string()),
            (FEED_ID_HEADER, feed_id),
        ],
        Sse::new(stream).keep_alive(KeepAlive::default()),
    ))
}
