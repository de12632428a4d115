//! The SCIM proxy's HTTP surface: the routes, the handlers and the export, over the engine's proxy logic
//! (re-exported here, so `provisio::proxy::…` names both).

pub use provisio_engine::proxy::*;

pub mod export;
mod handlers;

pub use handlers::{PREFIXES, router, serves, unknown_endpoint};

/// A SCIM error as the HTTP answer: the engine's [`error::ScimError`] (an RFC 7644 error body) sent as it
/// is. Handlers answer `Result<_, ScimReply>`; `?` turns a `ScimError` into one.
#[derive(Debug)]
pub struct ScimReply(pub error::ScimError);

impl From<error::ScimError> for ScimReply {
    fn from(e: error::ScimError) -> Self {
        ScimReply(e)
    }
}

impl axum::response::IntoResponse for ScimReply {
    fn into_response(self) -> axum::response::Response {
        self.0.into_http().into_response()
    }
}
