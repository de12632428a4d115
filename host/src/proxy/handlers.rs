//! The HTTP side of the proxy: routes, authentication, content types, bodies, and SCIM answers.
//! Every failure — bad credentials included — answers an RFC 7644 error body.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, OriginalUri, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;

use super::error::ScimError;
use super::query::ListQuery;
use super::schema;
use super::{Proxy, SCIM_JSON, ScimReply};
use crate::api::AppState;
use crate::api::auth::{PeerCertificate, authenticate_at};
use crate::connector::EntityKind;
use crate::store::principals::Permission;

/// Largest request body accepted (a group with thousands of members fits).
pub const MAX_BODY: usize = 1 << 20;

/// Where the proxy answers: SAP's paths, with and without `/service`.
pub const PREFIXES: [&str; 2] = ["/ipsproxy/api/v1/scim", "/ipsproxy/service/api/v1/scim"];

/// The proxy routes under each of [`PREFIXES`], registered with their full paths: a nested router would rebuild
/// every request's URI without its prefix (docs/performance.md, "twenty-second session"). A method a path does
/// not take is SCIM's 405; a path under a prefix that no route takes is left to the service's fallback, which
/// answers SCIM's 404 there ([`unknown_endpoint`]; a catch-all route beside `{system}` is not possible).
pub fn router() -> Router<AppState> {
    PREFIXES
        .iter()
        .fold(Router::new(), |router, prefix| {
            let at = |path: &str| format!("{prefix}{path}");
            router
                .route(
                    &at("/{system}/ServiceProviderConfig"),
                    get(service_provider_config).fallback(not_allowed),
                )
                .route(&at("/{system}/Schemas"), get(schemas).fallback(not_allowed))
                .route(&at("/{system}/Schemas/{id}"), get(schema_one).fallback(not_allowed))
                .route(
                    &at("/{system}/ResourceTypes"),
                    get(resource_types).fallback(not_allowed),
                )
                .route(
                    &at("/{system}/ResourceTypes/{id}"),
                    get(resource_type_one).fallback(not_allowed),
                )
                .route(&at("/{system}/.search"), post(search_root).fallback(not_allowed))
                .route(
                    &at("/{system}/{resource}"),
                    get(list).post(create).fallback(not_allowed),
                )
                .route(&at("/{system}/{resource}/.search"), post(search).fallback(not_allowed))
                .route(
                    &at("/{system}/{resource}/{id}"),
                    get(get_one)
                        .put(replace)
                        .patch(patch)
                        .delete(delete)
                        .fallback(not_allowed),
                )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

/// Whether `path` is one of [`PREFIXES`] or under one: a path there that no route takes is SCIM's 404.
pub fn serves(path: &str) -> bool {
    PREFIXES.iter().any(|prefix| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

type Result<T> = std::result::Result<T, ScimReply>;

// The operations that call a connector are awaited boxed (`Box::pin(p.get(..))`): their futures hold the call
// and are kilobytes large, and a handler's future is moved whole through the router's layers before it runs,
// so unboxed they would be copied at every move (docs/performance.md, "twenty-first session").

async fn not_allowed() -> ScimReply {
    ScimReply(ScimError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        None,
        "this method is not supported on this endpoint",
    ))
}

/// SCIM's 404 for a path under the proxy's prefixes that names no endpoint.
pub async fn unknown_endpoint() -> ScimReply {
    ScimReply(ScimError::not_found("no such SCIM endpoint"))
}

/// A SCIM JSON answer.
fn scim(status: StatusCode, body: &Value) -> Response {
    scim_text(status, crate::json::text(body).into_bytes())
}

/// A SCIM JSON answer already written as text.
fn scim_text(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    r
}

/// A single resource: `ETag` (and `Location` on create).
fn resource(status: StatusCode, body: &Value) -> Response {
    let mut r = scim(status, body);
    with_version(&mut r, meta(body, "version").and_then(Value::as_str));
    if status == StatusCode::CREATED
        && let Some(l) = meta(body, "location").and_then(Value::as_str)
        && let Ok(l) = HeaderValue::from_str(l)
    {
        r.headers_mut().insert(header::LOCATION, l);
    }
    r
}

/// `version` (a resource's `meta.version`) as the answer's `ETag`, when there is one that a header can carry.
fn with_version(answer: &mut Response, version: Option<&str>) {
    if let Some(v) = version
        && let Ok(v) = HeaderValue::from_str(v)
    {
        answer.headers_mut().insert(header::ETAG, v);
    }
}

/// `meta.<key>` of a resource. Not `Value::pointer`: that unescapes each token into a new string, a cost on
/// every answer.
fn meta<'a>(resource: &'a Value, key: &str) -> Option<&'a Value> {
    resource.get("meta")?.get(key)
}

/// `…/scim/{systemId}` as the client wrote it, for `meta.location`.
fn base_url(headers: &HeaderMap, uri: &OriginalUri, system: &str) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.chars().all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c)))
        .unwrap_or("localhost");
    let scheme = match headers.get("x-forwarded-proto").and_then(|h| h.to_str().ok()) {
        Some("https") => "https",
        _ => "http",
    };
    let [plain, service] = PREFIXES;
    let prefix = if uri.0.path().starts_with(service) {
        service
    } else {
        plain
    };
    // Pushed piece by piece, not through `format!`: this runs for every proxied request.
    let mut base = String::with_capacity(scheme.len() + 3 + host.len() + prefix.len() + 1 + system.len());
    for piece in [scheme, "://", host, prefix, "/"] {
        base.push_str(piece);
    }
    // The system id as the path had it (axum decoded it), encoded again so it stays one segment.
    base.extend(percent_encoding::utf8_percent_encode(system, super::SEGMENT));
    base
}

/// Authenticates (Basic, a bearer token or a client certificate), requires *Access Proxy System API*,
/// applies the client's rate limit, and loads the system.
async fn open(
    state: &AppState,
    headers: &HeaderMap,
    peer: &PeerCertificate,
    uri: &OriginalUri,
    system: &str,
) -> Result<Proxy> {
    let principal = authenticate_at(state, headers, peer.0.as_ref(), peer.1)
        .await
        .map_err(|f| {
            let mut e = ScimError::new(f.status(), None, f.message());
            e.retry_after = f.retry_after();
            ScimReply(e)
        })?;
    if !principal.may(Permission::ProxyApi) {
        return Err(ScimReply(ScimError::forbidden(format!(
            "{} lacks the permission proxy-api (Access Proxy System API)",
            principal.name
        ))));
    }
    let admitted = state.proxy.admit(&principal.id)?;
    Ok(Proxy::load(state, system, base_url(headers, uri, system))
        .await?
        .admitted(admitted))
}

fn kind_of(proxy: &Proxy, resource: &str) -> Result<EntityKind> {
    let kind = match resource {
        "Users" => EntityKind::User,
        "Groups" => EntityKind::Group,
        other => return Err(ScimReply(ScimError::not_found(format!("no resource type at /{other}")))),
    };
    if !proxy.serves(kind) {
        return Err(ScimReply(ScimError::not_found(format!(
            "this system does not serve /{resource}"
        ))));
    }
    Ok(kind)
}

/// The JSON body of a write: content type checked, size capped, syntax errors located.
fn json_body(headers: &HeaderMap, body: std::result::Result<Bytes, BytesRejection>) -> Result<Value> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let mime = crate::api::error::media_type(ct);
        if !(mime == SCIM_JSON || mime == "application/json" || mime.ends_with("+json")) {
            return Err(ScimReply(ScimError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Some("invalidSyntax"),
                format!("send {SCIM_JSON} or application/json, not {mime:?}"),
            )));
        }
    }
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ScimReply(ScimError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                Some("tooMany"),
                format!("the body is larger than {MAX_BODY} bytes"),
            ))
        } else {
            ScimReply(ScimError::bad(
                "invalidSyntax",
                format!("cannot read the body: {}", e.body_text()),
            ))
        }
    })?;
    serde_json::from_slice(&body).map_err(|e| {
        ScimReply(ScimError::bad(
            "invalidSyntax",
            format!("the body is not valid JSON: {e}"),
        ))
    })
}

fn if_match(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn service_provider_config(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: PeerCertificate,
    uri: OriginalUri,
    Path(system): Path<String>,
) -> Result<Response> {
    let p = open(&state, &headers, &peer, &uri, &system).await?;
    Ok(scim(StatusCode::OK, &schema::service_provider_config(&p.base)))
}

fn list_of(items: Vec<Value>) -> Value {
    let total = items.len() as u64;
    provisio_scim::ListResponse::page(items, total, 1).into_json()
}

async fn schemas(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: PeerCertificate,
    uri: OriginalUri,
    Path(system): Path<String>,
) -> Result<Response> {
    let p = open(&state, &headers, &peer, &uri, &system).await?;
    Ok(scim(StatusCode::OK, &list_of(p.served.schema_resources(&p.base))))
}

async fn schema_one(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: PeerCertificate,
    uri: OriginalUri,
    Path((system, id)): Path<(String, String)>,
) -> Result<Response> {
    let p = open(&state, &headers, &peer, &uri, &system).await?;
    p.served
        .schema_resources(&p.base)
        .into_iter()
        .find(|s| s["id"].as_str().is_some_and(|s| s.eq_ignore_ascii_case(&id)))
        .map(|s| scim(StatusCode::OK, &s))
        .ok_or_else(|| ScimReply(ScimError::not_found(format!("no schema {id}"))))
}

async fn resource_types(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: PeerCertificate,
    uri: OriginalUri,
    Path(system): Path<String>,
) -> Result<Response> {
    let p = open(&state, &headers, &peer, &uri, &system).await?;
    Ok(scim(StatusCode::OK, &list_of(p.served.resource_types(&p.base))))
}

async fn resource_type_one(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: PeerCertificate,
    uri: OriginalUri,
    Path((system, id)): Path<(String, String)>,
) -> Result<Response> {
    let p = open(&state, &headers, &peer, &uri, &system).await?;
    p.served
        .resource_types(&p.base)
        .into_iter()
        .find(|s| s["id"].as_str().is_some_and(|s| s.eq_ignore_ascii_case(&id)))
        .map(|s| scim(StatusCode::OK, &s))
        .ok_or_else(|| ScimReply(ScimError::not_found(format!("no resource type {id}"))))
}

async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: PeerCertificate,
    uri: OriginalUri,
    Path((system, resource)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let p = open(&state, &headers, &peer, &uri, &system).await?;
    let kind = kind_of(&p, &resource)?;
    let q = ListQuery::from_query(raw.as_deref())?;
    Ok(scim_text(StatusCode::OK, Box::pin(p.list(kind, &q)).await?))
}

async fn search(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: PeerCertificate,
    uri: OriginalUri,
    Path((system, resource)): Path<(String, String)>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let p = open(&state, &headers, &peer, &uri, &system).await?;
    let kind = kind_of(&p, &resource)?;
    let q = ListQuery::from_search(&json_body(&headers, body)?)?;
    Ok(scim_text(StatusCode::OK, Box::pin(p.list(kind, &q)).await?))
}

async fn search_root(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: PeerCertificate,
    uri: OriginalUri,
    Path(system): Path<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let p = open(&state, &headers, &peer, &uri, &system).await?;
    let q = ListQuery::from_search(&json_body(&headers, body)?)?;
    Ok(scim(StatusCode::OK, &Box::pin(p.search_all(&q)).await?))
}

async fn get_one(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: PeerCertificate,
    uri: OriginalUri,
    Path((system, resource_name, id)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let p = open(&state, &headers, &peer, &uri, &system).await?;
    let kind = kind_of(&p, &resource_name)?;
    let q = ListQuery::from_query(raw.as_deref())?;
    q.projection.validate(&p.served, &[kind], &p.extra)?;
    let served = Box::pin(p.get(kind, &id)).await?;
    // If-None-Match (its list may span several field lines): the client's copy is current; a 304 carries the
    // ETag a 200 would (RFC 9110 §15.4.5).
    let tags: Vec<&str> = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !tags.is_empty() && super::none_match(&tags.join(","), &served.value) {
        let mut answer = StatusCode::NOT_MODIFIED.into_response();
        with_version(&mut answer, served.version.as_deref());
        return Ok(answer);
    }
    if q.projection.is_empty() {
        let mut answer = scim_text(StatusCode::OK, served.text.as_bytes().to_vec());
        with_version(&mut answer, served.version.as_deref());
        return Ok(answer);
    }
    let mut r = served.value.clone();
    q.projection.apply(&mut r, &p.served, kind);
    let mut answer = resource(StatusCode::OK, &r);
    // The ETag is the full resource's, whatever the projection leaves out.
    if meta(&r, "version").is_none() {
        with_version(&mut answer, served.version.as_deref());
    }
    Ok(answer)
}

async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: PeerCertificate,
    uri: OriginalUri,
    Path((system, resource_name)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let p = open(&state, &headers, &peer, &uri, &system).await?;
    let kind = kind_of(&p, &resource_name)?;
    let body = json_body(&headers, body)?;
    let q = ListQuery::from_query(raw.as_deref())?;
    let mut r = Box::pin(p.create(kind, body)).await?;
    q.projection.apply(&mut r, &p.served, kind);
    Ok(resource(StatusCode::CREATED, &r))
}

async fn replace(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: PeerCertificate,
    uri: OriginalUri,
    Path((system, resource_name, id)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let p = open(&state, &headers, &peer, &uri, &system).await?;
    let kind = kind_of(&p, &resource_name)?;
    let body = json_body(&headers, body)?;
    let q = ListQuery::from_query(raw.as_deref())?;
    let mut r = Box::pin(p.replace(kind, &id, body, if_match(&headers).as_deref())).await?;
    q.projection.apply(&mut r, &p.served, kind);
    Ok(resource(StatusCode::OK, &r))
}

async fn patch(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: PeerCertificate,
    uri: OriginalUri,
    Path((system, resource_name, id)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let p = open(&state, &headers, &peer, &uri, &system).await?;
    let kind = kind_of(&p, &resource_name)?;
    let body = json_body(&headers, body)?;
    let q = ListQuery::from_query(raw.as_deref())?;
    let mut r = Box::pin(p.patch(kind, &id, &body, if_match(&headers).as_deref())).await?;
    q.projection.apply(&mut r, &p.served, kind);
    Ok(resource(StatusCode::OK, &r))
}

async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: PeerCertificate,
    uri: OriginalUri,
    Path((system, resource_name, id)): Path<(String, String, String)>,
) -> Result<Response> {
    let p = open(&state, &headers, &peer, &uri, &system).await?;
    let kind = kind_of(&p, &resource_name)?;
    Box::pin(p.delete(kind, &id, if_match(&headers).as_deref())).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
