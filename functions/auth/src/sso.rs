//! Single sign-on: the organization's identity provider (`/organization/sso`) and the
//! sign-in through it (`/auth/sso/start`, `/auth/sso/callback`). The rules live in
//! `domain::single_sign_on`, the protocol in the `OidcClient` port.
//!
//! The browser flow: the web app posts the organization to `/auth/sso/start`, keeps the
//! `state` of the answer in the tab's session storage and sends the browser to the
//! authorization URL. The provider sends it back to the web app's `/sso/callback`
//! page, which checks that the `state` is the one it kept and posts `code` and `state`
//! to `/auth/sso/callback` for the session's tokens.

use crate::AuthState;
use crate::sessions::tokens_response;
use api::caller::Origin;
use api::{ApiError, Caller, JsonBody};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::access::Permission;
use domain::ids::TenantId;
use domain::single_sign_on::{PENDING_LOGIN_MINUTES, SSO_METHOD, SsoConfiguration, SsoSettings};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The organization's single sign-on, and what to register at the provider.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SsoView {
    #[serde(flatten)]
    pub settings: SsoSettings,
    /// The redirect URI to register for our application at the provider.
    #[schema(example = "https://app.leasedesk.se/sso/callback")]
    pub redirect_uri: String,
}

/// The organization's single sign-on settings (the client secret is never shown).
#[utoipa::path(
    get,
    path = "/organization/sso",
    tag = "members",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The settings", body = SsoView),
        (status = 404, description = "Single sign-on is not configured",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn sso_settings(
    State(state): State<AuthState>,
    caller: Caller,
) -> Result<Json<SsoView>, ApiError> {
    caller.require(Permission::ReadMembers)?;
    let settings = state
        .sso
        .settings(&caller.actor())
        .await?
        .ok_or(ApiError::SsoNotConfigured)?;
    Ok(Json(SsoView {
        settings,
        redirect_uri: state.sso.redirect_uri().to_owned(),
    }))
}

/// Configure single sign-on through Microsoft Entra ID or any OpenID Connect provider
/// (owners and admins). The client secret goes to the secret vault.
#[utoipa::path(
    put,
    path = "/organization/sso",
    tag = "members",
    security(("bearer" = [])),
    request_body = SsoConfiguration,
    responses(
        (status = 200, description = "The settings now", body = SsoView),
        (status = 400, description = "Invalid settings",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 409, description = "\"Require SSO\" needs a sign-in through this provider first",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn configure_sso(
    State(state): State<AuthState>,
    caller: Caller,
    body: JsonBody<SsoConfiguration>,
) -> Result<Json<SsoView>, ApiError> {
    caller.require(Permission::ManageOrganization)?;
    let settings = state.sso.configure(&caller.actor(), body.value).await?;
    Ok(Json(SsoView {
        settings,
        redirect_uri: state.sso.redirect_uri().to_owned(),
    }))
}

/// Remove single sign-on and its secret (owners and admins); members sign in with
/// their passwords again.
#[utoipa::path(
    delete,
    path = "/organization/sso",
    tag = "members",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "Single sign-on is not configured",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn remove_sso(
    State(state): State<AuthState>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::ManageOrganization)?;
    state.sso.remove(&caller.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SsoStart {
    /// The organization whose identity provider signs the user in.
    pub organization: TenantId,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SsoRedirect {
    /// Send the browser here.
    pub authorization_url: String,
    /// Also in the URL's query: keep it, and check that the provider sends it back.
    pub state: String,
    /// Seconds the sign-in may take at the provider.
    #[schema(example = 600)]
    pub expires_in: i64,
}

/// Start a sign-in through the organization's identity provider.
#[utoipa::path(
    post,
    path = "/auth/sso/start",
    tag = "auth",
    request_body = SsoStart,
    responses(
        (status = 200, description = "Where to send the browser", body = SsoRedirect),
        (status = 404, description = "The organization has no single sign-on",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 502, description = "The identity provider could not be reached",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn start_sso(
    State(state): State<AuthState>,
    body: JsonBody<SsoStart>,
) -> Result<Response, ApiError> {
    let tenant = body.value.organization;
    let started = state.sso.start(tenant).await?;
    Ok((
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(SsoRedirect {
            authorization_url: started.url,
            state: started.state,
            expires_in: PENDING_LOGIN_MINUTES * 60,
        }),
    )
        .into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SsoCallback {
    /// The `state` the provider sent back; the one `POST /auth/sso/start` answered.
    pub state: String,
    /// The authorization code the provider sent back.
    pub code: String,
}

/// Finish a sign-in through the identity provider: the code and state it sent back, for
/// a session. Each state works once, for 10 minutes.
#[utoipa::path(
    post,
    path = "/auth/sso/callback",
    tag = "auth",
    request_body = SsoCallback,
    responses(
        (status = 200, description = "Signed in", body = crate::sessions::TokenResponse),
        (status = 401, description = "The provider refused the code, or its ID token failed the checks",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 403, description = "Nobody in the organization matches, and none may be created",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 410, description = "The sign-in is unknown, used or expired: start again",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 502, description = "The identity provider could not be reached",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn finish_sso(
    State(state): State<AuthState>,
    Origin(origin): Origin,
    body: JsonBody<SsoCallback>,
) -> Result<Response, ApiError> {
    let callback = body.value;
    let signed_in = state
        .sso
        .finish(&callback.state, &callback.code, &origin)
        .await?;
    let user = signed_in.user;
    // The organization's provider is its second factor: an SSO session is never
    // restricted to setting up ours.
    let issued = state
        .auth
        .sessions()
        .open(&user, SSO_METHOD, &origin)
        .await
        .map_err(crate::sessions::session_error)?;
    tracing::info!(tenant_id = %user.tenant_id, user_id = %user.id, joined = signed_in.joined,
        "signed in through the identity provider");
    tokens_response(&state, &user, issued)
}
