//! Signing in and staying signed in: login for an access token and a refresh token,
//! refresh (rotating), logout, sign out everywhere, and a password change that ends the
//! other sessions. See `domain::sessions` for how sessions are kept.

use crate::AuthState;
use api::caller::Origin;
use api::i18n::Lang;
use api::mail::MailTemplate;
use api::{ApiError, Caller, JsonBody};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use domain::access::Permission;
use domain::accounts::{AccountError, User};
use domain::audit::RequestInfo;
use domain::password_reset::{RESET_ANSWER_FLOOR, ResetError};
use domain::sessions::{Issued, SessionError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginRequest {
    #[schema(example = "anna.lind@nordlysfleet.se")]
    pub email: String,
    #[schema(format = "password")]
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefreshRequest {
    /// The refresh token of the last sign-in or refresh; each is good for one use.
    pub refresh_token: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordChange {
    #[schema(format = "password")]
    pub current_password: String,
    /// 12 to 256 characters; common and easily guessed passwords are refused.
    #[schema(min_length = 12, max_length = 256, format = "password")]
    pub new_password: String,
}

/// A signed-in session's tokens.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenResponse {
    /// Send as `Authorization: Bearer <accessToken>`.
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    #[schema(example = 900)]
    pub expires_in: i64,
    /// For `POST /auth/refresh` when the access token expires. Single use: each refresh
    /// returns the next one, and using one twice ends the session.
    pub refresh_token: String,
    /// When the session ends however often it is refreshed.
    pub refresh_expires_at: DateTime<Utc>,
    /// The organization requires a second factor and you have none yet: this session
    /// serves only `GET /me`, `POST /me/2fa`, `POST /me/2fa/confirm` and signing out
    /// until the set-up is confirmed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub two_factor_enrolment_required: bool,
}

/// The answer to a correct password of a user with two-factor login: no session yet,
/// only a token for `POST /auth/2fa/verify`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TwoFactorChallenge {
    /// Always `true`: send a code to `POST /auth/2fa/verify`.
    pub two_factor_required: bool,
    /// Accepted only by `POST /auth/2fa/verify`; refused as a bearer token everywhere.
    pub pending_token: String,
    /// Seconds until the pending token expires.
    #[schema(example = 300)]
    pub expires_in: i64,
}

/// What a login answers: tokens, or a two-factor challenge. Only the API description
/// uses it; the handler builds each answer directly.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum LoginAnswer {
    Tokens(TokenResponse),
    TwoFactor(TwoFactorChallenge),
}

/// The tokens of `user`'s session `issued`, not to be cached (RFC 6749 §5.1).
pub(crate) fn tokens_response(
    state: &AuthState,
    user: &User,
    issued: Issued,
) -> Result<Response, ApiError> {
    let access = state
        .auth
        .tokens()
        .issue(user.id, user.tenant_id, user.role, issued.session)
        .map_err(ApiError::internal)?;
    Ok((
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(TokenResponse {
            access_token: access.token,
            token_type: "Bearer",
            expires_in: access.expires_in,
            refresh_token: issued.refresh_token,
            refresh_expires_at: issued.expires_at,
            two_factor_enrolment_required: issued.enrolment_only,
        }),
    )
        .into_response())
}

/// Opens a session for `user` and answers with its tokens. When the organization
/// requires a second factor the user has not set up, the session serves only that.
pub(crate) async fn open_session(
    state: &AuthState,
    user: &User,
    method: &str,
    request: &RequestInfo,
) -> Result<Response, ApiError> {
    refuse_when_sso_required(state, user).await?;
    let sessions = state.auth.sessions();
    let enrolment_only = state
        .org_settings
        .requires_two_factor(user.tenant_id)
        .await?
        && !state.two_factor.is_enabled(user.tenant_id, user.id).await?;
    let issued = if enrolment_only {
        sessions.open_for_enrolment(user, method, request).await
    } else {
        sessions.open(user, method, request).await
    }
    .map_err(session_error)?;
    tokens_response(state, user, issued)
}

/// An organization that requires single sign-on opens no session any other way
/// (password, second factor after a password, invitation, password change).
async fn refuse_when_sso_required(state: &AuthState, user: &User) -> Result<(), ApiError> {
    if state.sso.requires_sso(user.tenant_id).await? {
        Err(ApiError::SsoRequired)
    } else {
        Ok(())
    }
}

pub(crate) fn session_error(error: SessionError) -> ApiError {
    match error {
        SessionError::Invalid | SessionError::Reused => ApiError::Unauthorized {
            token_present: true,
        },
        SessionError::Store(store) => store.into(),
        SessionError::Randomness(reason) => ApiError::internal(reason),
    }
}

/// Exchange e-mail and password for an access token and a refresh token.
#[utoipa::path(
    post,
    path = "/auth/login",
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in; or, for a user with two-factor login, a \
            challenge whose pending token goes to `POST /auth/2fa/verify`", body = LoginAnswer),
        (status = 401, description = "Unknown e-mail or wrong password (the same answer for both)",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 403, description = "The organization signs in through its identity provider only (`sso-required`)",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed sign-ins for this account or from this address; `Retry-After` says when to try again",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn log_in(
    State(state): State<AuthState>,
    Origin(origin): Origin,
    body: JsonBody<LoginRequest>,
) -> Result<Response, ApiError> {
    let (email, address) = (&body.value.email, origin.source_ip.as_deref());
    if let Err(throttled) = state.throttle.check(email, address).await? {
        return Err(ApiError::TooManyAttempts {
            retry_after_seconds: throttled.retry_after_seconds,
        });
    }
    let user = match state
        .accounts
        .log_in(email, &body.value.password, &origin)
        .await
    {
        Ok(user) => user,
        Err(AccountError::InvalidCredentials) => {
            state.throttle.record_failure(email, address).await?;
            return Err(ApiError::InvalidCredentials);
        }
        Err(other) => return Err(other.into()),
    };
    // Only after the password is right: the answer tells nothing to who does not know it.
    refuse_when_sso_required(&state, &user).await?;
    if state.two_factor.is_enabled(user.tenant_id, user.id).await? {
        let pending = state
            .auth
            .tokens()
            .issue_pending(user.id, user.tenant_id, user.role)
            .map_err(ApiError::internal)?;
        return Ok((
            [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
            Json(TwoFactorChallenge {
                two_factor_required: true,
                pending_token: pending.token,
                expires_in: pending.expires_in,
            }),
        )
            .into_response());
    }
    if state
        .org_settings
        .requires_two_factor(user.tenant_id)
        .await?
    {
        let issued = state
            .auth
            .sessions()
            .open_for_enrolment(&user, "password", &origin)
            .await
            .map_err(session_error)?;
        return tokens_response(&state, &user, issued);
    }
    open_session(&state, &user, "password", &origin).await
}

/// Trade a refresh token for new tokens. The refresh token is used up; presenting it
/// again ends the whole session.
#[utoipa::path(
    post,
    path = "/auth/refresh",
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "The session's next tokens", body = TokenResponse),
        (status = 401, description = "Not a valid refresh token, or the session is over",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn refresh_session(
    State(state): State<AuthState>,
    Origin(origin): Origin,
    body: JsonBody<RefreshRequest>,
) -> Result<Response, ApiError> {
    let refreshed = state
        .auth
        .sessions()
        .refresh(&body.value.refresh_token, &origin)
        .await
        .map_err(session_error)?;
    tokens_response(&state, &refreshed.user, refreshed.issued)
}

/// End the caller's session: its access and refresh tokens stop working at once.
#[utoipa::path(
    post,
    path = "/auth/logout",
    tag = "auth",
    security(("bearer" = [])),
    responses((status = 204, description = "Signed out"))
)]
pub(crate) async fn log_out(
    State(state): State<AuthState>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::ReadProfile)?;
    state
        .auth
        .sessions()
        .end(&caller.actor(), caller.session)
        .await
        .map_err(session_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// End every session of the caller, on every device, this one included.
#[utoipa::path(
    post,
    path = "/auth/logout-everywhere",
    tag = "auth",
    security(("bearer" = [])),
    responses((status = 204, description = "Signed out everywhere"))
)]
pub(crate) async fn log_out_everywhere(
    State(state): State<AuthState>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::ReadProfile)?;
    state
        .auth
        .sessions()
        .end_all(&caller.actor())
        .await
        .map_err(session_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Change the caller's password. Every other session ends; the answer carries the
/// tokens of a fresh session for this device.
#[utoipa::path(
    post,
    path = "/me/password",
    tag = "auth",
    security(("bearer" = [])),
    request_body = PasswordChange,
    responses(
        (status = 200, description = "Changed; a new session for this device", body = TokenResponse),
        (status = 422, description = "The current password is wrong, or the new one is weak",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn change_password(
    State(state): State<AuthState>,
    caller: Caller,
    body: JsonBody<PasswordChange>,
) -> Result<Response, ApiError> {
    caller.require(Permission::ReadProfile)?;
    let actor = caller.actor();
    state
        .accounts
        .change_password(
            &actor,
            &body.value.current_password,
            &body.value.new_password,
        )
        .await?;
    let (user, _) = state.accounts.profile(caller.tenant, caller.user).await?;
    open_session(&state, &user, "passwordChange", &caller.request).await
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResetRequest {
    #[schema(example = "anna.lind@nordlysfleet.se", format = "email")]
    pub email: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResetCompletion {
    /// The token from the reset link.
    pub token: String,
    #[schema(min_length = 12, max_length = 256, format = "password")]
    pub new_password: String,
}

/// Ask for a password-reset link by e-mail. The answer is the same whether or not the
/// address has an account, in status, body and time (see [`RESET_ANSWER_FLOOR`]).
#[utoipa::path(
    post,
    path = "/auth/password-reset",
    tag = "auth",
    request_body = ResetRequest,
    responses((status = 202, description = "If the address has an account, a link is on its way"))
)]
pub(crate) async fn request_password_reset(
    State(state): State<AuthState>,
    Origin(origin): Origin,
    lang: Lang,
    body: JsonBody<ResetRequest>,
) -> Result<StatusCode, ApiError> {
    let answer_at = tokio::time::Instant::now() + RESET_ANSWER_FLOOR;
    let issued = state
        .resets
        .request(&body.value.email, &origin)
        .await
        .map_err(reset_error)?;
    if let Some(issued) = issued {
        // In the language the user chose, else the one of the request.
        let lang = issued
            .user
            .language
            .as_deref()
            .and_then(Lang::from_code)
            .unwrap_or(lang);
        let mail = MailTemplate::PasswordReset {
            link: state.link("password-reset", &issued.token),
            expires_at: issued.expires_at,
        };
        if let Err(error) = state.send_mail(mail, lang, issued.user.email.clone()).await {
            // The link is useless unmailed; it expires by itself. The answer stays the
            // same, so it tells nobody whether the address has an account.
            tracing::warn!(%error, "password-reset mail not sent");
        }
    }
    tokio::time::sleep_until(answer_at).await;
    Ok(StatusCode::ACCEPTED)
}

/// Choose a new password through the reset link. Every session of the account ends.
#[utoipa::path(
    post,
    path = "/auth/password-reset/confirm",
    tag = "auth",
    request_body = ResetCompletion,
    responses(
        (status = 204, description = "The new password is set; sign in with it"),
        (status = 410, description = "Unknown, expired or used link",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn complete_password_reset(
    State(state): State<AuthState>,
    Origin(origin): Origin,
    body: JsonBody<ResetCompletion>,
) -> Result<StatusCode, ApiError> {
    state
        .resets
        .complete(&body.value.token, &body.value.new_password, &origin)
        .await
        .map_err(reset_error)?;
    Ok(StatusCode::NO_CONTENT)
}

fn reset_error(error: ResetError) -> ApiError {
    match error {
        ResetError::LinkInvalid => ApiError::ResetLinkInvalid,
        ResetError::Invalid(errors) => ApiError::invalid_body(errors),
        ResetError::Internal(cause) => ApiError::internal(cause),
        ResetError::Store(error) => error.into(),
    }
}
