//! The admin API's OpenAPI 3.1 document, served at `GET /api/v1/openapi.json` (no authentication).
//!
//! It is generated from the one route list ([`super::api_routes`]): every operation there carries its
//! `#[utoipa::path]`, so the router and the document cannot drift. The errors every operation can answer (bad
//! input, authentication, permission, an unknown id, a lock, a store that does not answer) are added here to
//! each operation, in the API's error shape ([`super::schemas::ErrorBody`]).

use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response as ApiResponse, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};

use super::schemas;

/// The document's fixed parts; the paths come from [`super::api_routes`].
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Provisio admin API",
        description = "Manage systems, transformations, plugins, jobs, the real-time log, users, \
            notifications and the audit log of a Provisio service. Authenticate with HTTP Basic (an admin or a \
            technical user) or with a bearer token from `POST /oauth2/token`. Every error is \
            `{\"error\": \"<reason>\", \"message\": \"…\"}`. This document itself needs no authentication.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(
        schemas::ErrorBody,
        // Path and query parameters refer to these; bodies bring their own schemas in.
        schemas::LockScope,
        schemas::Decision,
        schemas::ExportFormat
    )),
    tags(
        (name = "systems", description = "Source, target and proxy systems"),
        (name = "transformations", description = "A system's transformation versions"),
        (name = "jobs", description = "Runs of a source, schedules, held deletes"),
        (name = "realtime", description = "The real-time log"),
        (name = "plugins", description = "Connector plugins"),
        (name = "users", description = "Technical users and login locks"),
        (name = "notifications", description = "Subscriptions and deliveries"),
        (name = "audit", description = "The audit log"),
        (name = "service", description = "Tokens, health, readiness, metrics, this document"),
    )
)]
struct ApiDoc;

/// The fixed parts of the document, before the routes add their paths.
pub fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// A header an error answer carries, and its type.
type ErrorHeader = Option<(&'static str, Type)>;

/// The reusable error answers, by name: (status, name, description, header it carries).
const ERRORS: [(&str, &str, &str, ErrorHeader); 6] = [
    (
        "400",
        "BadRequest",
        "The request is malformed: a bad path segment, query parameter or JSON body, or a value the operation \
         refuses; the message says which",
        None,
    ),
    (
        "401",
        "Unauthorized",
        "No credentials, or wrong ones",
        Some(("WWW-Authenticate", Type::String)),
    ),
    (
        "403",
        "Forbidden",
        "The caller lacks the permission this operation needs",
        None,
    ),
    ("404", "NotFound", "No such object", None),
    (
        "429",
        "TooManyRequests",
        "The caller's name or address is locked after repeated failed logins",
        Some(("Retry-After", Type::Integer)),
    ),
    (
        "503",
        "Unavailable",
        "The database does not answer; try again shortly",
        None,
    ),
];

fn error_response(description: &str, header: Option<(&str, Type)>) -> ApiResponse {
    let mut response = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build(),
    );
    if let Some((name, kind)) = header {
        response = response.header(
            name,
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(kind))
                .build(),
        );
    }
    response.build()
}

/// Whether an operation needs no authentication (`security: [{}]`).
fn is_public(op: &Operation) -> bool {
    op.security.as_ref().is_some_and(|s| {
        s.iter()
            .any(|r| serde_json::to_value(r).is_ok_and(|v| v.as_object().is_some_and(|o| o.is_empty())))
    })
}

/// Adds the security schemes, the shared error answers and each operation's errors to the routes' document.
pub fn finish(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    components.add_security_scheme("basic", SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)));
    for (_, name, description, header) in ERRORS {
        components
            .responses
            .insert(name.to_string(), RefOr::T(error_response(description, header)));
    }
    components.responses.insert(
        "UnsupportedMediaType".into(),
        RefOr::T(error_response(
            "The body is not of the content type the operation takes",
            None,
        )),
    );
    doc.security = Some(vec![
        SecurityRequirement::new("bearer", Vec::<String>::new()),
        SecurityRequirement::new("basic", Vec::<String>::new()),
    ]);
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in operations.into_iter().flatten() {
            if is_public(op) {
                continue;
            }
            for (status, name, _, _) in ERRORS {
                op.responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| RefOr::Ref(Ref::new(format!("#/components/responses/{name}"))));
            }
            if op.request_body.is_some() {
                op.responses
                    .responses
                    .entry("415".to_string())
                    .or_insert_with(|| RefOr::Ref(Ref::new("#/components/responses/UnsupportedMediaType")));
            }
        }
    }
    doc.extensions = Some(
        ExtensionsBuilder::new()
            .add("x-provisio-version", env!("CARGO_PKG_VERSION"))
            .build(),
    );
    doc
}

/// The whole document, as served.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(|| finish(super::api_routes().into_openapi()))
}

/// `GET /api/v1/openapi.json`.
#[utoipa::path(get, path = "/openapi.json", tag = "service", security(()),
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = serde_json::Value)))]
pub async fn openapi_json() -> Result<Response, super::error::ApiError> {
    static JSON: OnceLock<String> = OnceLock::new();
    let body = match JSON.get() {
        Some(body) => body,
        None => {
            let text = document().to_pretty_json().map_err(super::error::ApiError::internal)?;
            JSON.get_or_init(|| text)
        }
    };
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body.as_str(),
    )
        .into_response())
}
