//! HTTP plumbing every Leasedesk function shares: problem+json errors in eight
//! languages, strict JSON bodies, access tokens and the caller, conditional requests,
//! cursors, the API description's common parts, tracing, the Lambda entry point, and
//! the mails users receive, in the same eight languages.

pub mod access;
pub mod caller;
pub mod conditional;
pub mod cursor;
pub mod i18n;
pub mod json;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod mail;
pub mod openapi;
pub mod problem;
pub mod telemetry;
pub mod tokens;

pub use caller::{Authenticator, Caller, ClientIp, Origin};
pub use conditional::{IfMatch, etag};
pub use json::JsonBody;
pub use problem::ApiError;
pub use tokens::{AccessTokens, TokenSettings};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Wraps a function's routes in the behaviour every route shares: a request id on each
/// request and response, a tracing span with request and tenant id, localized problem
/// documents, and the body size limit. Lambda and the local runner both serve this.
pub fn service(routes: Router) -> Router {
    routes
        .layer(DefaultBodyLimit::max(json::MAX_JSON_BODY))
        .layer(middleware::from_fn(problem::localize_problems))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

fn request_span(request: &Request) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
        .unwrap_or("-");
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        method = %request.method(),
        route,
        request_id,
        tenant_id = tracing::field::Empty,
    )
}
