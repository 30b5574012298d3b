//! The API description: one OpenAPI 3.1 document generated from every function's
//! routes and types, served at `GET /openapi.json`.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::Arc;
use utoipa::openapi::{InfoBuilder, OpenApi};

/// The whole API: every function's paths and schemas.
pub fn openapi() -> OpenApi {
    let mut document = auth::openapi();
    document.merge(contracts::openapi());
    document.merge(rates::openapi());
    document.info = InfoBuilder::new()
        .title("Leasedesk API")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Contract register and leasing analytics for companies that lease and lend. \
             JSON with camelCase fields; money as integer minor units with an ISO 4217 \
             currency; errors as RFC 9457 problem details, localized by Accept-Language \
             (sv, en, da, nb, fi, lt, lv, et).",
        ))
        .build();
    document
}

/// Serves the document, rendered once.
pub fn router() -> Router {
    let body: Arc<str> = serde_json::to_string(&openapi())
        .unwrap_or_else(|_| "{}".to_owned())
        .into();
    Router::new().route(
        "/openapi.json",
        get(move || {
            let body = body.clone();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    )],
                    body.to_string(),
                )
                    .into_response()
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_with_every_route() {
        let document = serde_json::to_value(openapi()).unwrap();
        assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
        assert_eq!(document["info"]["title"], "Leasedesk API");
        // Every operation described is a route of the access matrix, and every route of
        // the matrix is described: the two lists cannot drift apart.
        let mut described = std::collections::BTreeSet::new();
        for (path, item) in document["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                described.insert((method.to_uppercase(), path.clone()));
            }
        }
        let guarded: std::collections::BTreeSet<(String, String)> = api::access::ROUTES
            .iter()
            .map(|route| (route.method.to_owned(), route.path.to_owned()))
            .collect();
        assert_eq!(described, guarded);
        // Operation ids name operations across the whole document, so they must differ.
        let mut ids = std::collections::BTreeSet::new();
        for item in document["paths"].as_object().unwrap().values() {
            for operation in item.as_object().unwrap().values() {
                if let Some(id) = operation["operationId"].as_str() {
                    assert!(ids.insert(id.to_owned()), "operationId {id} twice");
                }
            }
        }
    }

    #[test]
    fn the_sam_template_routes_every_route_of_the_matrix() {
        // API Gateway only forwards the routes the template names: a route missing there
        // works locally and answers 404 in AWS.
        let template = include_str!("../../../template.yaml");
        let lines: Vec<&str> = template.lines().map(str::trim).collect();
        let routed: std::collections::BTreeSet<(String, String)> = lines
            .windows(2)
            .filter_map(|pair| {
                let method = pair[0].strip_prefix("Method: ")?;
                let path = pair[1].strip_prefix("Path: ")?;
                Some((method.to_owned(), path.to_owned()))
            })
            .collect();
        for route in api::access::ROUTES {
            assert!(
                routed.contains(&(route.method.to_owned(), route.path.to_owned())),
                "template.yaml routes no {} {}",
                route.method,
                route.path
            );
        }
    }
}
