//! A read-only TAXII 2.1 server over the node's record (one collection with every record the
//! reader may see, as STIX 2.1 objects; see [`crate::stix`]).
//!
//! Endpoints: discovery `/taxii2/`, API root `/taxii2/attrib/`, `collections/`,
//! `collections/{id}/`, `collections/{id}/objects/` (`added_after`, `limit`, `next`,
//! `match[type]`, `match[id]`), one object's `collections/{id}/objects/{object-id}/`
//! (`match[version]`, by default its last version; `match[spec_version]`) and its
//! `versions/`, and `collections/{id}/manifest/`. Every endpoint needs the API token, as HTTP
//! Basic (any user name, the token as password) or Bearer. Responses use
//! `application/taxii+json;version=2.1` and carry `X-TAXII-Date-Added-First/Last` where the
//! spec asks. Only records at or below the node's TLP ceiling are served.

use std::collections::HashSet;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::stix::{
    ObjectOrigin, objects_of, origin_of, parse_timestamp_us, state_identity, timestamp_us,
};
use crate::{FeedEntry, FeedFilter, NodeHandle};

/// The TAXII 2.1 media type.
pub const TAXII_MEDIA_TYPE: &str = "application/taxii+json;version=2.1";
const STIX_MEDIA_TYPE: &str = "application/stix+json;version=2.1";
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

#[derive(Clone)]
struct Taxii {
    node: NodeHandle,
    token: std::sync::Arc<str>,
}

/// The TAXII routes, to merge into the API router.
pub fn router(node: NodeHandle, token: String) -> Router {
    Router::new()
        .route("/taxii2/", get(discovery))
        .route("/taxii2/attrib/", get(api_root))
        .route("/taxii2/attrib/collections/", get(collections))
        .route("/taxii2/attrib/collections/{id}/", get(collection))
        .route("/taxii2/attrib/collections/{id}/objects/", get(objects))
        .route(
            "/taxii2/attrib/collections/{id}/objects/{object_id}/",
            get(object),
        )
        .route(
            "/taxii2/attrib/collections/{id}/objects/{object_id}/versions/",
            get(versions),
        )
        .route("/taxii2/attrib/collections/{id}/manifest/", get(manifest))
        .method_not_allowed_fallback(|method: axum::http::Method| async move {
            TaxiiError(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not allowed: this TAXII server is read-only (GET)"),
            )
        })
        .layer(axum::middleware::map_response_with_state(
            node.tlp_ceiling(),
            |State(ceiling): State<attrib_protocol::Tlp>, mut response: Response| async move {
                response.headers_mut().insert(
                    crate::api::TLP_CEILING_HEADER,
                    HeaderValue::from_static(crate::api::tlp_name(ceiling)),
                );
                response
            },
        ))
        .with_state(Taxii {
            node,
            token: token.into(),
        })
}

/// The collection id: derived from the network id, stable across nodes of one network.
pub fn collection_id(node: &NodeHandle) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("attrib:{}/records", node.roster().network_id()).as_bytes(),
    )
    .to_string()
}

struct TaxiiError(StatusCode, String);

impl IntoResponse for TaxiiError {
    fn into_response(self) -> Response {
        let body = json!({ "title": self.0.canonical_reason().unwrap_or("error"), "description": self.1, "http_status": self.0.as_u16().to_string() });
        let mut resp = (self.0, body.to_string()).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(TAXII_MEDIA_TYPE),
        );
        if self.0 == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"attrib\""),
            );
        }
        resp
    }
}

fn taxii_json(value: Value, extra: Vec<(&'static str, String)>) -> Response {
    let mut resp = (StatusCode::OK, value.to_string()).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(TAXII_MEDIA_TYPE),
    );
    for (k, v) in extra {
        if let Ok(v) = HeaderValue::from_str(&v) {
            headers.insert(k, v);
        }
    }
    resp
}

/// Checks the token (Basic password or Bearer) and the Accept header.
fn check(t: &Taxii, headers: &HeaderMap) -> Result<(), TaxiiError> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let given = if let Some(b) = auth.strip_prefix("Bearer ") {
        Some(b.trim().to_string())
    } else if let Some(b) = auth.strip_prefix("Basic ") {
        base64_decode(b.trim())
            .and_then(|d| String::from_utf8(d).ok())
            .and_then(|s| s.split_once(':').map(|(_, p)| p.to_string()))
    } else {
        None
    };
    match given {
        Some(g) if crate::api::constant_time_eq(g.as_bytes(), t.token.as_bytes()) => {}
        _ => {
            return Err(TaxiiError(
                StatusCode::UNAUTHORIZED,
                "TAXII needs the node's API token: HTTP Basic with the token as password, or Bearer".into(),
            ));
        }
    }
    if let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())
        && !accepts_taxii_21(accept)
    {
        return Err(TaxiiError(
            StatusCode::NOT_ACCEPTABLE,
            format!("this server answers {TAXII_MEDIA_TYPE}"),
        ));
    }
    Ok(())
}

/// Whether an Accept header admits TAXII 2.1 JSON: `*/*`, `application/*`, or
/// `application/taxii+json` without a version or with version 2.1 (a client asking for 2.0
/// only gets a 406).
fn accepts_taxii_21(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let version = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("version"))
            .map(|(_, v)| v.trim().trim_matches('"').to_string());
        match media.as_str() {
            "*/*" | "application/*" => true,
            "application/taxii+json" => version.is_none_or(|v| v == "2.1"),
            _ => false,
        }
    })
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c)? as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn root_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}/taxii2/attrib/")
}

async fn discovery(State(t): State<Taxii>, headers: HeaderMap) -> Result<Response, TaxiiError> {
    check(&t, &headers)?;
    let root = root_url(&headers);
    Ok(taxii_json(
        json!({
            "title": format!("attrib node {}", t.node.state().map_or("observer".into(), |s| s.to_string())),
            "description": "The attrib attribution-claim record, read-only, as STIX 2.1.",
            "default": root,
            "api_roots": [root],
        }),
        vec![],
    ))
}

async fn api_root(State(t): State<Taxii>, headers: HeaderMap) -> Result<Response, TaxiiError> {
    check(&t, &headers)?;
    Ok(taxii_json(
        json!({
            "title": format!("attrib network {}", t.node.roster().network_name()),
            "versions": [TAXII_MEDIA_TYPE],
            "max_content_length": crate::api::MAX_BODY_BYTES,
        }),
        vec![],
    ))
}

fn collection_json(t: &Taxii) -> Value {
    json!({
        "id": collection_id(&t.node),
        "title": "attrib records",
        "description": format!("Every attribution claim, rebuttal, endorsement, retraction and withdrawal up to TLP:{}", crate::api::tlp_name(t.node.tlp_ceiling())),
        "can_read": true,
        "can_write": false,
        "media_types": [STIX_MEDIA_TYPE],
    })
}

async fn collections(State(t): State<Taxii>, headers: HeaderMap) -> Result<Response, TaxiiError> {
    check(&t, &headers)?;
    Ok(taxii_json(
        json!({ "collections": [collection_json(&t)] }),
        vec![],
    ))
}

fn known_collection(t: &Taxii, id: &str) -> Result<(), TaxiiError> {
    if id != collection_id(&t.node) {
        return Err(TaxiiError(
            StatusCode::NOT_FOUND,
            format!("no collection {id}"),
        ));
    }
    Ok(())
}

async fn collection(
    State(t): State<Taxii>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, TaxiiError> {
    check(&t, &headers)?;
    known_collection(&t, &id)?;
    Ok(taxii_json(collection_json(&t), vec![]))
}

/// One page of objects, with the date each was added and the token to continue from.
struct ObjectPage {
    objects: Vec<(Value, u64)>,
    more: bool,
    next: String,
}

/// Where a page starts: after feed cursor `cursor`, skipping the first `skip` objects of the
/// next record. Written `cursor.skip` in `next` tokens.
#[derive(Clone, Copy)]
struct Position {
    cursor: u64,
    skip: usize,
}

fn parse_position(s: &str) -> Option<Position> {
    let (c, k) = s.split_once('.').unwrap_or((s, "0"));
    Some(Position {
        cursor: c.parse().ok()?,
        skip: k.parse().ok()?,
    })
}

/// [`page`] on a blocking thread: it reads and converts records.
async fn read_page(t: &Taxii, query: Vec<(String, String)>) -> Result<ObjectPage, TaxiiError> {
    let t = t.clone();
    tokio::task::spawn_blocking(move || page(&t, &query))
        .await
        .map_err(|e| TaxiiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

/// A TAXII request's query parameters, and the ones every listing endpoint takes.
struct TaxiiQuery<'a>(&'a [(String, String)]);

impl TaxiiQuery<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `limit`: a positive number, at most [`MAX_LIMIT`]; [`DEFAULT_LIMIT`] when absent.
    fn limit(&self) -> Result<usize, TaxiiError> {
        match self.get("limit") {
            Some(l) => Ok(l
                .parse::<usize>()
                .ok()
                .filter(|l| *l > 0)
                .ok_or_else(|| bad(format!("limit {l:?} is not a positive number")))?
                .min(MAX_LIMIT)),
            None => Ok(DEFAULT_LIMIT),
        }
    }

    /// `added_after`, in µs since the epoch.
    fn added_after(&self) -> Result<Option<u64>, TaxiiError> {
        self.get("added_after")
            .map(|a| {
                parse_timestamp_us(a)
                    .ok_or_else(|| bad(format!("added_after {a:?} is not a timestamp")))
            })
            .transpose()
    }

    /// `next`, which must be a token this server gave.
    fn next<T>(&self, parse: impl FnOnce(&str) -> Option<T>) -> Result<Option<T>, TaxiiError> {
        self.get("next")
            .map(|n| {
                parse(n).ok_or_else(|| bad(format!("next {n:?} is not a value this server gave")))
            })
            .transpose()
    }
}

fn bad(message: String) -> TaxiiError {
    TaxiiError(StatusCode::BAD_REQUEST, message)
}

fn page(t: &Taxii, query: &[(String, String)]) -> Result<ObjectPage, TaxiiError> {
    let query = TaxiiQuery(query);
    let get = |k: &str| query.get(k);
    let limit = query.limit()?;
    let mut at = query
        .next(parse_position)?
        .unwrap_or(Position { cursor: 0, skip: 0 });
    let added_after = query.added_after()?;
    let types: Option<HashSet<String>> =
        get("match[type]").map(|v| v.split(',').map(str::to_string).collect());
    let ids: Option<HashSet<String>> =
        get("match[id]").map(|v| v.split(',').map(str::to_string).collect());
    if let Some((other, _)) = query
        .0
        .iter()
        .find(|(k, _)| k.starts_with("match[") && k != "match[type]" && k != "match[id]")
    {
        return Err(bad(format!(
            "{other} is not supported here; use match[type] or match[id]"
        )));
    }
    let filter = FeedFilter {
        max_tlp: Some(t.node.tlp_ceiling()),
        ..Default::default()
    };
    let lookup = t.node.lookup_within(t.node.tlp_ceiling());
    let mut objects: Vec<(Value, u64)> = Vec::new();
    let mut in_page: HashSet<(String, String)> = HashSet::new();
    // Records looked at in this request; past the bound the page ends early (more: true),
    // so a filter that matches nothing cannot make one request read the whole store.
    let mut examined = 0;
    loop {
        if examined >= crate::FEED_SCAN {
            return Ok(ObjectPage {
                objects,
                more: true,
                next: format!("{}.{}", at.cursor, at.skip),
            });
        }
        let feed = t
            .node
            .feed(at.cursor, 64, &filter)
            .map_err(|e| TaxiiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        // Cursors are dense, so the distance moved is what the read looked at.
        examined += feed.next.saturating_sub(at.cursor) as usize;
        if feed.entries.is_empty() {
            if feed.next != at.cursor {
                at = Position {
                    cursor: feed.next,
                    skip: 0,
                };
                continue;
            }
            return Ok(ObjectPage {
                objects,
                more: false,
                next: String::new(),
            });
        }
        for entry in &feed.entries {
            if added_after.is_some_and(|a| entry.received_us <= a) {
                at = Position {
                    cursor: entry.cursor,
                    skip: 0,
                };
                continue;
            }
            // The objects of one record, in a fixed order, so `skip` means the same thing on
            // every request.
            let all: Vec<Value> = objects_of(entry, t.node.roster(), &lookup)
                .into_iter()
                .filter(|o| {
                    let has = |set: &Option<HashSet<String>>, field: &str| {
                        set.as_ref()
                            .is_none_or(|s| o[field].as_str().is_some_and(|v| s.contains(v)))
                    };
                    has(&types, "type") && has(&ids, "id")
                })
                .collect();
            let from = at.skip.min(all.len());
            for (i, object) in all.iter().enumerate().skip(from) {
                if objects.len() == limit {
                    return Ok(ObjectPage {
                        objects,
                        more: true,
                        next: format!("{}.{i}", at.cursor),
                    });
                }
                // A state's identity comes with each of its records: once a page is enough.
                let key = (object["id"].to_string(), object["modified"].to_string());
                if in_page.insert(key) {
                    objects.push((object.clone(), entry.received_us));
                }
            }
            at = Position {
                cursor: entry.cursor,
                skip: 0,
            };
            if objects.len() == limit {
                // Anything left after this record? Peek cheaply: the next page says.
                let more = t
                    .node
                    .feed(at.cursor, 1, &filter)
                    .map(|p| !p.entries.is_empty())
                    .unwrap_or(false);
                return Ok(ObjectPage {
                    objects,
                    more,
                    next: format!("{}.0", at.cursor),
                });
            }
        }
        at = Position {
            cursor: feed.next.max(at.cursor),
            skip: 0,
        };
    }
}

/// The `X-TAXII-Date-Added-First/Last` headers of a page whose objects were added at `dates`
/// (in page order); none for a page without dates.
fn date_headers(dates: impl IntoIterator<Item = u64>) -> Vec<(&'static str, String)> {
    let mut dates = dates.into_iter();
    let Some(first) = dates.next() else {
        return vec![];
    };
    let last = dates.last().unwrap_or(first);
    vec![
        ("X-TAXII-Date-Added-First", timestamp_us(first)),
        ("X-TAXII-Date-Added-Last", timestamp_us(last)),
    ]
}

async fn objects(
    State(t): State<Taxii>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, TaxiiError> {
    check(&t, &headers)?;
    known_collection(&t, &id)?;
    let page = read_page(&t, query).await?;
    let extra = date_headers(page.objects.iter().map(|(_, d)| *d));
    let mut body = json!({
        "more": page.more,
        "objects": page.objects.into_iter().map(|(o, _)| o).collect::<Vec<_>>(),
    });
    if page.more {
        body["next"] = json!(page.next);
    }
    Ok(taxii_json(body, extra))
}

/// One version of an object, with the date its record was added (none for an identity).
type Version = (Value, Option<u64>);

/// A page of an object's versions and where the next page starts.
struct VersionPage {
    versions: Vec<Version>,
    more: bool,
    next: usize,
}

/// Every version of one object that this node serves, oldest first, each with the date its
/// record was added: the object made from its record, and the revoked version made by the
/// record that retracts or revises that claim, or replaces or withdraws that opinion. A state's
/// identity is made from no record and has no date.
fn object_versions(t: &Taxii, object_id: &str) -> Result<Vec<Version>, TaxiiError> {
    let not_found = || {
        TaxiiError(
            StatusCode::NOT_FOUND,
            format!(
                "no object {object_id} in this collection (or only in records above this node's TLP ceiling)"
            ),
        )
    };
    let internal =
        |e: crate::store::StoreError| TaxiiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let roster = t.node.roster();
    let ceiling = t.node.tlp_ceiling();
    let id = match origin_of(object_id, &t.node.record_ids()) {
        None => return Err(not_found()),
        Some(ObjectOrigin::State(code)) => return Ok(vec![(state_identity(roster, code), None)]),
        Some(ObjectOrigin::Record(id)) => id,
    };
    // Its record and the records that may revoke what it made: a claim's responses (its
    // retraction, its revision), or a response's fellow responses (the same state's later
    // one of its kind, which replaces it).
    let thread_of = |claim: &attrib_protocol::RecordId| -> Result<Vec<FeedEntry>, TaxiiError> {
        Ok(match t.node.thread(claim, ceiling).map_err(internal)? {
            Some(thread) => std::iter::once(thread.claim)
                .chain(thread.responses)
                .collect(),
            None => Vec::new(),
        })
    };
    let mut entries = thread_of(&id)?;
    if entries.is_empty()
        && let Some(entry) = t.node.get(&id).map_err(internal)?
    {
        let target = entry.record.body().target();
        entries.push(entry);
        if let Some(claim) = target {
            entries.extend(thread_of(&claim)?);
        }
    }
    let lookup = t.node.lookup_within(ceiling);
    let mut versions: Vec<Version> = Vec::new();
    for entry in entries.iter().filter(|e| e.tlp <= ceiling) {
        for object in objects_of(entry, roster, &lookup) {
            if object["id"] == object_id
                && !versions
                    .iter()
                    .any(|(v, _)| v["modified"] == object["modified"])
            {
                versions.push((object, Some(entry.received_us)));
            }
        }
    }
    if versions.is_empty() {
        return Err(not_found());
    }
    versions.sort_by(|a, b| a.0["modified"].as_str().cmp(&b.0["modified"].as_str()));
    Ok(versions)
}

/// The versions of one object a request asks for (`match[version]`, default the last, on the
/// object endpoint; `match[spec_version]`, `added_after`), and the page of them `limit` and
/// `next` select: `(versions, more, next)`.
fn select_versions(
    mut versions: Vec<Version>,
    query: &[(String, String)],
    versions_endpoint: bool,
) -> Result<VersionPage, TaxiiError> {
    let query = TaxiiQuery(query);
    let allowed: &[&str] = if versions_endpoint {
        &["added_after", "limit", "next", "match[spec_version]"]
    } else {
        &[
            "added_after",
            "limit",
            "next",
            "match[version]",
            "match[spec_version]",
        ]
    };
    if let Some((k, _)) = query.0.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        return Err(bad(format!(
            "{k} does not apply to this endpoint; it takes {}",
            allowed.join(", ")
        )));
    }
    let get = |k: &str| query.get(k);
    if let Some(after) = query.added_after()? {
        versions.retain(|(_, added)| added.is_none_or(|d| d > after));
    }
    if let Some(specs) = get("match[spec_version]") {
        let specs: Vec<&str> = specs.split(',').collect();
        versions.retain(|(o, _)| {
            o["spec_version"]
                .as_str()
                .is_some_and(|v| specs.contains(&v))
        });
    }
    if !versions_endpoint {
        let wanted: Vec<&str> = get("match[version]").unwrap_or("last").split(',').collect();
        let n = versions.len();
        let mut keep = vec![false; n];
        for w in &wanted {
            match *w {
                "all" => keep.iter_mut().for_each(|k| *k = true),
                "first" if n > 0 => keep[0] = true,
                "last" if n > 0 => keep[n - 1] = true,
                "first" | "last" => {}
                timestamp => {
                    let at = parse_timestamp_us(timestamp).ok_or_else(|| {
                        bad(format!(
                            "match[version] {timestamp:?} is neither first, last, all nor a timestamp"
                        ))
                    })?;
                    for (k, (o, _)) in keep.iter_mut().zip(&versions) {
                        if o["modified"].as_str().and_then(parse_timestamp_us) == Some(at) {
                            *k = true;
                        }
                    }
                }
            }
        }
        let mut keep = keep.into_iter();
        versions.retain(|_| keep.next().unwrap_or(false));
    }
    let limit = query.limit()?;
    let total = versions.len();
    let from = query
        .next(|n| n.parse::<usize>().ok().filter(|n| *n <= total))?
        .unwrap_or(0);
    let page: Vec<_> = versions.into_iter().skip(from).take(limit).collect();
    let next = from + page.len();
    Ok(VersionPage {
        versions: page,
        more: next < total,
        next,
    })
}

async fn object(
    State(t): State<Taxii>,
    headers: HeaderMap,
    Path((id, object_id)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, TaxiiError> {
    versions_response(&t, &headers, &id, object_id, query, false).await
}

async fn versions(
    State(t): State<Taxii>,
    headers: HeaderMap,
    Path((id, object_id)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, TaxiiError> {
    versions_response(&t, &headers, &id, object_id, query, true).await
}

/// One object's versions as the object endpoint (an envelope of the objects) or the versions
/// endpoint (their `modified` times) answers them.
async fn versions_response(
    t: &Taxii,
    headers: &HeaderMap,
    collection: &str,
    object_id: String,
    query: Vec<(String, String)>,
    versions_endpoint: bool,
) -> Result<Response, TaxiiError> {
    check(t, headers)?;
    known_collection(t, collection)?;
    let page = versions_page(t, object_id, query, versions_endpoint).await?;
    let extra = date_headers(page.versions.iter().filter_map(|(_, d)| *d));
    let mut body = if versions_endpoint {
        let versions: Vec<&Value> = page.versions.iter().map(|(o, _)| &o["modified"]).collect();
        json!({ "more": page.more, "versions": versions })
    } else {
        let objects: Vec<&Value> = page.versions.iter().map(|(o, _)| o).collect();
        json!({ "more": page.more, "objects": objects })
    };
    if page.more {
        body["next"] = json!(page.next.to_string());
    }
    Ok(taxii_json(body, extra))
}

/// [`object_versions`] and [`select_versions`] on a blocking thread (finding the object
/// hashes every stored record's id once).
async fn versions_page(
    t: &Taxii,
    object_id: String,
    query: Vec<(String, String)>,
    versions_endpoint: bool,
) -> Result<VersionPage, TaxiiError> {
    let t = t.clone();
    tokio::task::spawn_blocking(move || {
        let versions = object_versions(&t, &object_id)?;
        select_versions(versions, &query, versions_endpoint)
    })
    .await
    .map_err(|e| TaxiiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

async fn manifest(
    State(t): State<Taxii>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, TaxiiError> {
    check(&t, &headers)?;
    known_collection(&t, &id)?;
    let page = read_page(&t, query).await?;
    let extra = date_headers(page.objects.iter().map(|(_, d)| *d));
    let objects: Vec<Value> = page
        .objects
        .iter()
        .map(|(o, added)| {
            json!({
                "id": o["id"],
                "date_added": timestamp_us(*added),
                "version": o["modified"],
                "media_type": STIX_MEDIA_TYPE,
            })
        })
        .collect();
    let mut body = json!({ "more": page.more, "objects": objects });
    if page.more {
        body["next"] = json!(page.next);
    }
    Ok(taxii_json(body, extra))
}
