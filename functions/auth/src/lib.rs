//! The auth function: sign-up of an organization with its owner, login with e-mail and
//! password for a short-lived access token, and the caller's profile; the
//! organization's audit trail (`audit`).

mod audit;

use api::caller::Origin;
use api::openapi::CommonParts;
use api::{AccessTokens, ApiError, Caller, JsonBody};
use axum::extract::{FromRef, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use domain::access::{Permission, Role};
use domain::accounts::{AccountService, SignUpRequest, User};
use domain::audit_log::AuditLog;
use domain::clock::Clock;
use domain::ids::{TenantId, UserId};
use domain::organization::Organization;
use domain::store::Table;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{OpenApi, ToSchema};

#[derive(Clone)]
pub struct AuthState {
    accounts: Arc<AccountService>,
    tokens: Arc<AccessTokens>,
    audit: Arc<AuditLog>,
}

impl AuthState {
    pub fn new(table: Arc<dyn Table>, tokens: Arc<AccessTokens>, clock: Arc<dyn Clock>) -> Self {
        Self {
            audit: Arc::new(AuditLog::new(table.clone(), clock.clone())),
            accounts: Arc::new(AccountService::new(table, clock)),
            tokens,
        }
    }
}

impl FromRef<AuthState> for Arc<AccessTokens> {
    fn from_ref(state: &AuthState) -> Self {
        state.tokens.clone()
    }
}

/// The routes this function serves.
pub fn router(state: AuthState) -> Router {
    let audit = audit::routes(state.audit.clone(), state.tokens.clone());
    Router::new()
        .route("/auth/signup", post(sign_up))
        .route("/auth/login", post(log_in))
        .route("/me", get(me))
        .with_state(state)
        .merge(audit)
}

#[derive(OpenApi)]
#[openapi(
    paths(sign_up, log_in, me),
    components(schemas(SignUpRequest, LoginRequest, TokenResponse, Profile, UserView, OrganizationView, Role)),
    modifiers(&CommonParts),
    tags((name = "auth", description = "Sign-up, login and the caller's profile"))
)]
struct AuthApi;

/// The API description of this function's routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut document = AuthApi::openapi();
    document.merge(audit::openapi());
    document
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginRequest {
    #[schema(example = "anna.lind@nordlysfleet.se")]
    pub email: String,
    #[schema(format = "password")]
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenResponse {
    /// Send as `Authorization: Bearer <accessToken>`.
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the token expires.
    #[schema(example = 900)]
    pub expires_in: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub id: UserId,
    pub name: String,
    #[schema(value_type = String, format = "email")]
    pub email: String,
    pub role: Role,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationView {
    pub id: TenantId,
    pub name: String,
    #[schema(example = "556074-3089")]
    pub organization_number: String,
}

/// The caller and their organization.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub user: UserView,
    pub organization: OrganizationView,
}

impl Profile {
    fn new(user: User, organization: Organization) -> Self {
        Self {
            user: UserView {
                id: user.id,
                name: user.name,
                email: user.email.as_str().to_owned(),
                role: user.role,
            },
            organization: OrganizationView {
                id: organization.id,
                name: organization.name,
                organization_number: organization.organization_number.to_string(),
            },
        }
    }
}

/// Sign up an organization and its first user, who becomes its owner.
#[utoipa::path(
    post,
    path = "/auth/signup",
    tag = "auth",
    request_body = SignUpRequest,
    responses(
        (status = 201, description = "Organization and owner created", body = Profile,
            headers(("location" = String, description = "Where the profile is served"))),
        (status = 409, description = "E-mail or organization number already registered",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
    )
)]
async fn sign_up(
    State(state): State<AuthState>,
    Origin(origin): Origin,
    body: JsonBody<SignUpRequest>,
) -> Result<Response, ApiError> {
    let (organization, user) = state.accounts.sign_up(body.value, origin).await?;
    tracing::info!(tenant_id = %organization.id, user_id = %user.id, "organization signed up");
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, HeaderValue::from_static("/me"))],
        Json(Profile::new(user, organization)),
    )
        .into_response())
}

/// Exchange e-mail and password for an access token.
#[utoipa::path(
    post,
    path = "/auth/login",
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = TokenResponse),
        (status = 401, description = "Unknown e-mail or wrong password (the same answer for both)",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
    )
)]
async fn log_in(
    State(state): State<AuthState>,
    body: JsonBody<LoginRequest>,
) -> Result<Response, ApiError> {
    let user = state
        .accounts
        .log_in(&body.value.email, &body.value.password)
        .await?;
    let issued = state
        .tokens
        .issue(user.id, user.tenant_id, user.role)
        .map_err(ApiError::internal)?;
    Ok((
        // Tokens must not be cached by anything between us and the client (RFC 6749 §5.1).
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(TokenResponse {
            access_token: issued.token,
            token_type: "Bearer",
            expires_in: issued.expires_in,
        }),
    )
        .into_response())
}

/// The caller and their organization.
#[utoipa::path(
    get,
    path = "/me",
    tag = "auth",
    security(("bearer" = [])),
    responses((status = 200, description = "The caller", body = Profile))
)]
async fn me(State(state): State<AuthState>, caller: Caller) -> Result<Json<Profile>, ApiError> {
    caller.require(Permission::ReadProfile)?;
    let (user, organization) = state.accounts.profile(caller.tenant, caller.user).await?;
    Ok(Json(Profile::new(user, organization)))
}
