//! Parts of the API description every function shares: the bearer security scheme,
//! the problem document, and the problem responses each kind of operation can give.

use crate::problem::{PROBLEM_JSON, ProblemDocument};
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, ResponseBuilder};
use utoipa::{Modify, PartialSchema, ToSchema};

pub const BEARER: &str = "bearer";

/// Adds the shared components and, to every operation, the problem responses that its
/// method, parameters and security make possible. Operations list their specific
/// problems (409, 412, 422, 428...) themselves.
pub struct CommonParts;

impl Modify for CommonParts {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("Access token from POST /auth/login"))
                    .build(),
            ),
        );
        components.schemas.insert(
            ProblemDocument::name().into_owned(),
            ProblemDocument::schema(),
        );
        let mut nested = Vec::new();
        <ProblemDocument as ToSchema>::schemas(&mut nested);
        for (name, schema) in nested {
            components.schemas.insert(name, schema);
        }

        for (path, item) in openapi.paths.paths.iter_mut() {
            let has_id = path.contains('{');
            let methods = [
                (HttpMethod::Get, item.get.as_mut()),
                (HttpMethod::Post, item.post.as_mut()),
                (HttpMethod::Patch, item.patch.as_mut()),
                (HttpMethod::Delete, item.delete.as_mut()),
                (HttpMethod::Put, item.put.as_mut()),
            ];
            for (method, operation) in methods {
                if let Some(operation) = operation {
                    add_problems(operation, &method, has_id);
                }
            }
        }
    }
}

fn add_problems(operation: &mut Operation, method: &HttpMethod, has_id: bool) {
    let secured = operation
        .security
        .as_ref()
        .is_some_and(|requirements| !requirements.is_empty());
    let with_body = matches!(
        method,
        HttpMethod::Post | HttpMethod::Patch | HttpMethod::Put
    );
    let writes = !matches!(method, HttpMethod::Get);
    let mut problems: Vec<(&str, &str)> = vec![
        ("500", "Unexpected failure; quote the request id"),
        ("503", "Temporarily unavailable; retry"),
    ];
    if with_body {
        problems.push((
            "400",
            "Invalid request: malformed JSON, unknown fields, invalid values",
        ));
        problems.push(("413", "Request body too large"));
        problems.push(("415", "Request body not sent as application/json"));
    }
    if secured {
        problems.push(("401", "Missing, expired or invalid access token"));
        if writes {
            problems.push(("403", "The caller's role does not allow this"));
        }
    }
    if has_id {
        problems.push(("404", "No such record in the caller's organization"));
    }
    for (status, description) in problems {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| problem_response(description).into());
    }
}

/// A problem+json response for the API description.
pub fn problem_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ProblemDocument::name())))
                .build(),
        )
        .build()
}
