//! Two-factor login over HTTP: enrolment of an authenticator app (`/me/2fa`), its
//! confirmation and removal, and the second step of a login (`/auth/2fa/verify`), which
//! alone accepts the pending token a password login hands out. See
//! `domain::two_factor` for how codes are kept single-use.

use crate::AuthState;
use crate::sessions::open_session;
use api::caller::Origin;
use api::{ApiError, Caller, JsonBody};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::access::Permission;
use domain::audit::Actor;
use domain::two_factor::SecondFactor;
use domain::validation::{FieldIssue, ValidationErrors};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What an authenticator app needs; shown once.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnrolmentView {
    /// The shared secret in base32, for typing into an app by hand.
    #[schema(example = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")]
    pub secret: String,
    /// `otpauth://totp/...`, for a link on the phone itself.
    pub otpauth_uri: String,
    /// A QR code of the URI, as a `data:image/svg+xml;base64,...` URI for an `<img src>`.
    pub qr_code: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CodeRequest {
    /// Six digits from the authenticator app (to turn it off, a recovery code also does).
    #[schema(example = "123456")]
    pub code: String,
}

/// The recovery codes: each logs in once without the app. Shown once.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryCodesView {
    #[schema(example = json!(["7k2m-x9qp-3hf4"]))]
    pub recovery_codes: Vec<String>,
}

/// The second step of a login: the pending token and one of the two kinds of code.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifyRequest {
    /// The `pendingToken` of `POST /auth/login`.
    pub pending_token: String,
    /// Six digits from the authenticator app.
    #[serde(default)]
    pub code: Option<String>,
    /// One of the recovery codes, instead of `code`; each works once.
    #[serde(default)]
    pub recovery_code: Option<String>,
}

fn no_store(body: impl Serialize) -> Response {
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(body),
    )
        .into_response()
}

/// Start setting up two-factor login: a new secret for an authenticator app. It takes
/// effect when `POST /me/2fa/confirm` sees a code of it.
#[utoipa::path(
    post,
    path = "/me/2fa",
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The secret, its link and QR code; shown once", body = EnrolmentView),
        (status = 409, description = "Two-factor login is already on: turn it off first",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn begin_two_factor(
    State(state): State<AuthState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require(Permission::ReadProfile)?;
    let enrolment = state.two_factor.begin_enrolment(&caller.actor()).await?;
    Ok(no_store(EnrolmentView {
        secret: enrolment.secret.to_base32(),
        otpauth_uri: enrolment.links.otpauth_uri,
        qr_code: enrolment.links.qr_code_data_uri,
    }))
}

/// Turn two-factor login on with a code from the app just set up. Answers the recovery
/// codes, which are shown this once.
#[utoipa::path(
    post,
    path = "/me/2fa/confirm",
    tag = "auth",
    security(("bearer" = [])),
    request_body = CodeRequest,
    responses(
        (status = 200, description = "Two-factor login is on", body = RecoveryCodesView),
        (status = 401, description = "The code is not accepted",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 409, description = "No setup was started, or two-factor login is already on",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn confirm_two_factor(
    State(state): State<AuthState>,
    caller: Caller,
    body: JsonBody<CodeRequest>,
) -> Result<Response, ApiError> {
    caller.require(Permission::ReadProfile)?;
    let recovery_codes = state
        .two_factor
        .confirm(&caller.actor(), &body.value.code)
        .await?;
    if caller.enrolment_only {
        state
            .auth
            .sessions()
            .finish_enrolment(caller.tenant, caller.session)
            .await
            .map_err(|error| ApiError::internal(error.to_string()))?;
    }
    Ok(no_store(RecoveryCodesView { recovery_codes }))
}

/// Turn two-factor login off, with a code from the app or a recovery code.
#[utoipa::path(
    delete,
    path = "/me/2fa",
    tag = "auth",
    security(("bearer" = [])),
    request_body = CodeRequest,
    responses(
        (status = 204, description = "Two-factor login is off"),
        (status = 401, description = "The code is not accepted",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 409, description = "Two-factor login is not on",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn disable_two_factor(
    State(state): State<AuthState>,
    caller: Caller,
    body: JsonBody<CodeRequest>,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::ReadProfile)?;
    if state
        .org_settings
        .requires_two_factor(caller.tenant)
        .await?
    {
        return Err(ApiError::TwoFactorRequired);
    }
    state
        .two_factor
        .disable(&caller.actor(), SecondFactor::either(&body.value.code))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The second step of a login for users with two-factor login: the pending token and a
/// code from the app (each code works once) or a recovery code (each works once).
#[utoipa::path(
    post,
    path = "/auth/2fa/verify",
    tag = "auth",
    request_body = VerifyRequest,
    responses(
        (status = 200, description = "Signed in", body = crate::sessions::TokenResponse),
        (status = 400, description = "Neither or both of `code` and `recoveryCode`",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 401, description = "The pending token or the code is not accepted",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 429, description = "Too many wrong codes in a row; see `Retry-After`",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn verify_two_factor(
    State(state): State<AuthState>,
    Origin(origin): Origin,
    body: JsonBody<VerifyRequest>,
) -> Result<Response, ApiError> {
    let request = body.value;
    let factor = match (&request.code, &request.recovery_code) {
        (Some(code), None) => SecondFactor::Totp(code),
        (None, Some(code)) => SecondFactor::RecoveryCode(code),
        _ => {
            let mut errors = ValidationErrors::new();
            errors.add("/code", FieldIssue::Required);
            return Err(ApiError::invalid_body(errors));
        }
    };
    let claims = state
        .auth
        .tokens()
        .verify_pending(&request.pending_token)
        .map_err(|error| {
            tracing::debug!(%error, "pending token rejected");
            ApiError::Unauthorized {
                token_present: true,
            }
        })?;
    let actor = Actor {
        tenant: claims.tid,
        user: claims.sub,
        role: claims.role,
        request: origin,
    };
    let method = state.two_factor.verify_login(&actor, factor).await?;
    let (user, _) = state.accounts.profile(actor.tenant, actor.user).await?;
    open_session(&state, &user, method.as_str(), &actor.request).await
}
