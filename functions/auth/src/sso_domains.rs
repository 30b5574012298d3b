//! The domains an organization proves it controls, so that single sign-on may create
//! members from their addresses (`/organization/sso/domains`). The rules and the
//! record scheme live in `domain::sso_domains`; the DNS look-up in its resolver port.

use crate::AuthState;
use api::{ApiError, Caller, JsonBody};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use domain::access::Permission;
use domain::sso_domains::SsoDomain;
use serde::Deserialize;
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DomainClaim {
    /// The e-mail domain, such as `nordlysfleet.se` (internationalized names are kept
    /// in their ASCII form).
    #[schema(example = "nordlysfleet.se")]
    pub domain: String,
}

/// The domains the organization has claimed for single sign-on, verified or not, and
/// the TXT record each needs.
#[utoipa::path(
    get,
    path = "/organization/sso/domains",
    tag = "members",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The claimed domains, by name", body = [SsoDomain]),
    )
)]
pub(crate) async fn list_domains(
    State(state): State<AuthState>,
    caller: Caller,
) -> Result<Json<Vec<SsoDomain>>, ApiError> {
    caller.require(Permission::ReadMembers)?;
    Ok(Json(state.domains.list(&caller.actor()).await?))
}

/// Claim an e-mail domain (owners and admins): the answer names the TXT record to
/// publish in the domain's DNS before verifying it. Claiming a domain already claimed
/// answers that claim (200) with its token unchanged.
#[utoipa::path(
    post,
    path = "/organization/sso/domains",
    tag = "members",
    security(("bearer" = [])),
    request_body = DomainClaim,
    responses(
        (status = 201, description = "Claimed: publish the record, then verify", body = SsoDomain),
        (status = 200, description = "Already claimed", body = SsoDomain),
        (status = 400, description = "Not a domain name",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 409, description = "Verified by another organization (`sso-domain-taken`), or the organization claims the most domains it may (`sso-domain-limit`)",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn claim_domain(
    State(state): State<AuthState>,
    caller: Caller,
    body: JsonBody<DomainClaim>,
) -> Result<Response, ApiError> {
    caller.require(Permission::ManageOrganization)?;
    let (claim, new) = state
        .domains
        .claim(&caller.actor(), &body.value.domain)
        .await?;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(claim)).into_response())
}

/// Verify a claimed domain (owners and admins): its TXT record is looked up now. Once
/// verified, the domain may be listed in `autoCreateDomains`, and no other
/// organization can verify it.
#[utoipa::path(
    post,
    path = "/organization/sso/domains/{domain}/verify",
    tag = "members",
    security(("bearer" = [])),
    params(("domain" = String, Path, description = "The claimed domain", example = "nordlysfleet.se")),
    responses(
        (status = 200, description = "Verified", body = SsoDomain),
        (status = 404, description = "The organization has not claimed this domain",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 409, description = "Verified by another organization",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 422, description = "The record was not found; the problem says which record was expected",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 502, description = "The DNS gave no answer (timeout, SERVFAIL); nothing changed",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn verify_domain(
    State(state): State<AuthState>,
    caller: Caller,
    Path(domain): Path<String>,
) -> Result<Json<SsoDomain>, ApiError> {
    caller.require(Permission::ManageOrganization)?;
    Ok(Json(state.domains.verify(&caller.actor(), &domain).await?))
}

/// Give up a claimed domain (owners and admins). A verified domain is free for other
/// organizations again, and leaves `autoCreateDomains`: its addresses no longer become
/// members.
#[utoipa::path(
    delete,
    path = "/organization/sso/domains/{domain}",
    tag = "members",
    security(("bearer" = [])),
    params(("domain" = String, Path, description = "The claimed domain", example = "nordlysfleet.se")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "The organization has not claimed this domain",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn remove_domain(
    State(state): State<AuthState>,
    caller: Caller,
    Path(domain): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::ManageOrganization)?;
    state.domains.remove(&caller.actor(), &domain).await?;
    Ok(StatusCode::NO_CONTENT)
}
