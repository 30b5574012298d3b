//! Errors as RFC 9457 problem details (`application/problem+json`), localized.
//!
//! Handlers return [`ApiError`]. Its response carries the unrendered [`Problem`] as an
//! extension and an English body; the [`localize_problems`] middleware re-renders the
//! body in the caller's language and adds the request id. It also turns the router's
//! bare 404 and 405 answers into problem documents.

use crate::i18n::{Lang, message};
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::access::Role;
use domain::accounts::AccountError;
use domain::audit_log::AuditLogError;
use domain::contracts::ContractError;
use domain::jobs::JobError;
use domain::portfolio::PortfolioError;
use domain::rates::RatesError;
use domain::store::StoreError;
use domain::validation::{FieldError, FieldIssue, ValidationErrors};
use serde::Serialize;

/// Problem `type` URIs are this base plus the kind, e.g. `.../problems/not-found`.
pub const PROBLEM_BASE: &str = "https://leasedesk.se/problems/";
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Where an invalid value was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// JSON pointer into the request body.
    Body(String),
    /// A query or path parameter.
    Parameter(String),
    /// A request header.
    Header(String),
    /// A field (JSON pointer as in the JSON API) of one row of an uploaded file.
    Row { row: usize, pointer: String },
}

/// One invalid value of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidValue {
    pub location: Location,
    pub issue: FieldIssue,
}

impl InvalidValue {
    pub fn parameter(name: &str, issue: FieldIssue) -> Self {
        Self {
            location: Location::Parameter(name.to_owned()),
            issue,
        }
    }

    pub fn header(name: &str, issue: FieldIssue) -> Self {
        Self {
            location: Location::Header(name.to_owned()),
            issue,
        }
    }
}

impl From<&FieldError> for InvalidValue {
    fn from(error: &FieldError) -> Self {
        Self {
            location: Location::Body(error.pointer.clone()),
            issue: error.issue.clone(),
        }
    }
}

/// Everything that can go wrong in a request, as the client should hear it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid request fields")]
    Invalid(Vec<InvalidValue>),
    #[error("invalid parameters")]
    InvalidParameters(Vec<InvalidValue>),
    #[error("malformed JSON at line {line}, column {column}")]
    MalformedJson { line: usize, column: usize },
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("body larger than {max} bytes")]
    PayloadTooLarge { max: usize },
    #[error("missing or invalid access token")]
    Unauthorized { token_present: bool },
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("forbidden for role {0}")]
    Forbidden(Role),
    #[error("not found")]
    NotFound,
    #[error("method {0} not allowed")]
    MethodNotAllowed(String),
    #[error("contract number taken")]
    ContractNumberTaken,
    #[error("already registered")]
    AlreadyRegistered(Vec<InvalidValue>),
    #[error("version mismatch: expected {expected}, current {current}")]
    PreconditionFailed { expected: u64, current: u64 },
    #[error("If-Match required")]
    PreconditionRequired,
    #[error("idempotency key reused")]
    IdempotencyKeyReused,
    #[error("concurrent change")]
    ConcurrentChange,
    #[error("the invitation is not valid")]
    InvitationInvalid,
    #[error("the last owner")]
    LastOwner,
    #[error("the reset link is not valid")]
    ResetLinkInvalid,
    /// The organization requires a second factor the caller has not set up yet.
    #[error("a second factor is required")]
    TwoFactorRequired,
    /// Requiring a second factor of everyone needs one of the caller's own first.
    #[error("set up your own second factor first")]
    TwoFactorFirst,
    /// A second-factor code that is malformed, wrong, expired or already used.
    #[error("two-factor code not accepted")]
    TwoFactorCodeInvalid,
    #[error("two-factor login is already on")]
    TwoFactorAlreadyEnabled,
    #[error("two-factor login is not on")]
    TwoFactorNotEnabled,
    /// Too many wrong codes in a row; answered with `Retry-After`.
    #[error("two-factor codes locked for {retry_after_seconds} s")]
    TwoFactorLocked { retry_after_seconds: i64 },
    #[error("the mail could not be sent")]
    MailUnavailable,
    #[error("single sign-on is not configured")]
    SsoNotConfigured,
    /// "Require SSO" before a sign-in through the provider has worked.
    #[error("single sign-on is not verified yet")]
    SsoUnverified,
    /// The login's state is unknown, used or expired.
    #[error("the single sign-on login is not valid")]
    SsoLoginInvalid,
    /// The provider vouched for someone who is not, and may not become, a member.
    #[error("no member matches the single sign-on")]
    SsoNoAccount,
    /// The organization signs in through its identity provider only.
    #[error("single sign-on required")]
    SsoRequired,
    /// The provider refused the code, or its ID token failed our checks.
    #[error("the identity provider's answer was not accepted")]
    SsoRefused,
    /// The provider could not be reached, or its metadata is unusable.
    #[error("the identity provider is unavailable")]
    IdentityProviderUnavailable,
    /// The DNS answered, without the record that proves the domain.
    #[error("the domain's verification record was not found")]
    SsoDomainUnverified { name: String, value: String },
    /// Another organization has verified the domain.
    #[error("the domain is verified by another organization")]
    SsoDomainTaken { domain: String },
    #[error("an organization claims at most {max} domains")]
    SsoDomainLimit { max: usize },
    /// The name servers gave no answer (timeout, SERVFAIL): nothing is known.
    #[error("the DNS could not be asked")]
    DnsUnavailable,
    /// The organization has not activated the module this route belongs to.
    #[error("module {module} is not active")]
    ModuleInactive { module: String },
    #[error("too many failed sign-ins")]
    TooManyAttempts { retry_after_seconds: i64 },
    #[error("no schedule: {0}")]
    NoSchedule(String),
    #[error("no exchange rate {from}/{to} on or before {date}")]
    NoRate {
        from: String,
        to: String,
        date: String,
    },
    #[error("the file cannot be read: {reason}")]
    InvalidFile { reason: String },
    #[error("rows of the file are invalid")]
    InvalidRows(Vec<InvalidValue>),
    #[error("the file has not been uploaded")]
    UploadMissing,
    #[error("an export holds at most {max} rows")]
    ExportTooLarge { max: usize },
    #[error("service unavailable")]
    Unavailable,
    #[error("internal error")]
    Internal,
}

impl ApiError {
    /// An unexpected failure: logged here with its cause, answered as a bare 500.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        ApiError::Internal
    }

    pub fn invalid_body(errors: ValidationErrors) -> Self {
        ApiError::Invalid(errors.errors().iter().map(InvalidValue::from).collect())
    }

    fn problem(&self) -> Problem {
        use ApiError::*;
        let (status, kind) = match self {
            Invalid(_) => (StatusCode::BAD_REQUEST, "validation-error"),
            InvalidParameters(_) => (StatusCode::BAD_REQUEST, "invalid-parameter"),
            MalformedJson { .. } => (StatusCode::BAD_REQUEST, "malformed-json"),
            UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type"),
            PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large"),
            Unauthorized { .. } => (StatusCode::UNAUTHORIZED, "unauthorized"),
            InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid-credentials"),
            Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            NotFound => (StatusCode::NOT_FOUND, "not-found"),
            MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed"),
            ContractNumberTaken => (StatusCode::CONFLICT, "contract-number-taken"),
            AlreadyRegistered(_) => (StatusCode::CONFLICT, "already-registered"),
            PreconditionFailed { .. } => (StatusCode::PRECONDITION_FAILED, "precondition-failed"),
            PreconditionRequired => (StatusCode::PRECONDITION_REQUIRED, "precondition-required"),
            IdempotencyKeyReused => (StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused"),
            ConcurrentChange => (StatusCode::CONFLICT, "concurrent-change"),
            InvitationInvalid => (StatusCode::GONE, "invitation-invalid"),
            LastOwner => (StatusCode::CONFLICT, "last-owner"),
            ResetLinkInvalid => (StatusCode::GONE, "reset-link-invalid"),
            TwoFactorRequired => (StatusCode::FORBIDDEN, "two-factor-required"),
            TwoFactorFirst => (StatusCode::CONFLICT, "two-factor-first"),
            TwoFactorCodeInvalid => (StatusCode::UNAUTHORIZED, "two-factor-code-invalid"),
            TwoFactorAlreadyEnabled => (StatusCode::CONFLICT, "two-factor-already-enabled"),
            TwoFactorNotEnabled => (StatusCode::CONFLICT, "two-factor-not-enabled"),
            TwoFactorLocked { .. } => (StatusCode::TOO_MANY_REQUESTS, "two-factor-locked"),
            MailUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "mail-unavailable"),
            SsoNotConfigured => (StatusCode::NOT_FOUND, "sso-not-configured"),
            SsoUnverified => (StatusCode::CONFLICT, "sso-unverified"),
            SsoLoginInvalid => (StatusCode::GONE, "sso-login-invalid"),
            SsoNoAccount => (StatusCode::FORBIDDEN, "sso-no-account"),
            SsoRequired => (StatusCode::FORBIDDEN, "sso-required"),
            SsoRefused => (StatusCode::UNAUTHORIZED, "sso-refused"),
            IdentityProviderUnavailable => {
                (StatusCode::BAD_GATEWAY, "identity-provider-unavailable")
            }
            SsoDomainUnverified { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "sso-domain-unverified")
            }
            SsoDomainTaken { .. } => (StatusCode::CONFLICT, "sso-domain-taken"),
            SsoDomainLimit { .. } => (StatusCode::CONFLICT, "sso-domain-limit"),
            DnsUnavailable => (StatusCode::BAD_GATEWAY, "dns-unavailable"),
            ModuleInactive { .. } => (StatusCode::FORBIDDEN, "module-inactive"),
            TooManyAttempts { .. } => (StatusCode::TOO_MANY_REQUESTS, "too-many-attempts"),
            NoRate { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "no-rate"),
            NoSchedule(_) => (StatusCode::UNPROCESSABLE_ENTITY, "no-schedule"),
            InvalidFile { .. } => (StatusCode::BAD_REQUEST, "invalid-file"),
            InvalidRows(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid-rows"),
            UploadMissing => (StatusCode::CONFLICT, "upload-missing"),
            ExportTooLarge { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "export-too-large"),
            Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "service-unavailable"),
            Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal-error"),
        };
        let params = match self {
            MalformedJson { line, column } => {
                vec![("line", line.to_string()), ("column", column.to_string())]
            }
            PayloadTooLarge { max } => vec![("max", max.to_string())],
            Forbidden(role) => vec![("role", role.to_string())],
            TooManyAttempts {
                retry_after_seconds,
            } => vec![("minutes", ((retry_after_seconds + 59) / 60).to_string())],
            MethodNotAllowed(method) => vec![("method", method.clone())],
            ModuleInactive { module } => vec![("module", module.clone())],
            InvalidFile { reason } => vec![("reason", reason.clone())],
            InvalidRows(errors) => vec![("count", errors.len().to_string())],
            ExportTooLarge { max } | SsoDomainLimit { max } => vec![("max", max.to_string())],
            SsoDomainUnverified { name, value } => {
                vec![("name", name.clone()), ("value", value.clone())]
            }
            SsoDomainTaken { domain } => vec![("domain", domain.clone())],
            NoRate { from, to, date } => vec![
                ("from", from.clone()),
                ("to", to.clone()),
                ("date", date.clone()),
            ],
            PreconditionFailed { expected, current } => vec![
                ("expected", expected.to_string()),
                ("current", current.to_string()),
            ],
            _ => Vec::new(),
        };
        let errors = match self {
            Invalid(errors)
            | InvalidParameters(errors)
            | AlreadyRegistered(errors)
            | InvalidRows(errors) => errors.clone(),
            ContractNumberTaken => vec![InvalidValue {
                location: Location::Body("/contractNumber".into()),
                issue: FieldIssue::AlreadyInUse,
            }],
            _ => Vec::new(),
        };
        Problem {
            status,
            kind,
            params,
            errors,
        }
    }
}

/// A problem before rendering: kept on the response so it can be localized late.
#[derive(Clone, Debug)]
pub struct Problem {
    pub status: StatusCode,
    pub kind: &'static str,
    pub params: Vec<(&'static str, String)>,
    pub errors: Vec<InvalidValue>,
}

/// The problem document as sent (and as described in the API description).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProblemDocument {
    /// URI naming the kind of problem.
    #[schema(example = "https://leasedesk.se/problems/validation-error")]
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary in the caller's language.
    pub title: String,
    pub status: u16,
    /// What happened and what to do, in the caller's language.
    pub detail: String,
    /// The request's id, for support.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// One entry per invalid value.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemError>,
}

/// One invalid value: where it is and what is wrong with it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProblemError {
    /// JSON pointer (RFC 6901) into the request body.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "/payment/currency")]
    pub pointer: Option<String>,
    /// Name of the query or path parameter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    /// Name of the request header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// The row of an uploaded file (the header is row 1); `pointer` names the field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<usize>,
    /// Stable machine-readable code.
    #[schema(example = "unknown_currency")]
    pub code: String,
    /// The problem in the caller's language.
    pub detail: String,
}

impl Problem {
    pub fn render(&self, lang: Lang, request_id: Option<&str>) -> ProblemDocument {
        let mut params = self.params.clone();
        if let Some(id) = request_id {
            params.push(("requestId", id.to_owned()));
        } else {
            params.push(("requestId", "-".to_owned()));
        }
        ProblemDocument {
            kind: format!("{PROBLEM_BASE}{}", self.kind),
            title: message(lang, &format!("problem.{}.title", self.kind), &params),
            status: self.status.as_u16(),
            detail: message(lang, &format!("problem.{}.detail", self.kind), &params),
            request_id: request_id.map(str::to_owned),
            errors: self
                .errors
                .iter()
                .map(|error| {
                    let (pointer, parameter, header, row) = match &error.location {
                        Location::Body(p) => (Some(p.clone()), None, None, None),
                        Location::Parameter(p) => (None, Some(p.clone()), None, None),
                        Location::Header(h) => (None, None, Some(h.clone()), None),
                        Location::Row { row, pointer } => {
                            (Some(pointer.clone()), None, None, Some(*row))
                        }
                    };
                    ProblemError {
                        pointer,
                        parameter,
                        header,
                        row,
                        code: error.issue.code().to_owned(),
                        detail: message(
                            lang,
                            &format!("field.{}", error.issue.code()),
                            &error.issue.params(),
                        ),
                    }
                })
                .collect(),
        }
    }

    fn response(&self, lang: Lang, request_id: Option<&str>) -> Response {
        let body = serde_json::to_vec(&self.render(lang, request_id)).unwrap_or_default();
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = self.status;
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response.headers_mut().insert(
            header::CONTENT_LANGUAGE,
            HeaderValue::from_static(lang.code()),
        );
        response.extensions_mut().insert(self.clone());
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.problem();
        let mut response = problem.response(Lang::En, None);
        let headers = response.headers_mut();
        match &self {
            ApiError::Unauthorized { token_present } => {
                let challenge = if *token_present {
                    r#"Bearer error="invalid_token""#
                } else {
                    "Bearer"
                };
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
            }
            ApiError::Unavailable | ApiError::ConcurrentChange => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::TooManyAttempts {
                retry_after_seconds,
            } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_seconds));
            }
            ApiError::TwoFactorLocked {
                retry_after_seconds,
            } => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(*retry_after_seconds.max(&1)),
                );
            }
            _ => {}
        }
        response
    }
}

/// Renders problems in the caller's language with the request id, and gives the
/// router's own 404/405 answers a problem body.
pub async fn localize_problems(request: Request, next: Next) -> Response {
    let accept_language = request.headers().get(header::ACCEPT_LANGUAGE).cloned();
    let request_id = request.headers().get(crate::REQUEST_ID_HEADER).cloned();
    let method = request.method().clone();
    let mut response = next.run(request).await;

    let problem = match response.extensions().get::<Problem>() {
        Some(problem) => problem.clone(),
        None if response.headers().get(header::CONTENT_TYPE).is_none() => match response.status() {
            StatusCode::NOT_FOUND => ApiError::NotFound.problem(),
            StatusCode::METHOD_NOT_ALLOWED => {
                ApiError::MethodNotAllowed(method.to_string()).problem()
            }
            _ => return response,
        },
        None => return response,
    };
    let lang = match response.extensions().get::<crate::i18n::PreferredLang>() {
        Some(preferred) => preferred.0,
        None => Lang::negotiate(accept_language.as_ref().and_then(|v| v.to_str().ok())),
    };
    let request_id = request_id.as_ref().and_then(|v| v.to_str().ok());
    let rendered = problem.response(lang, request_id);
    let (parts, body) = rendered.into_parts();
    *response.body_mut() = body;
    for name in [header::CONTENT_TYPE, header::CONTENT_LANGUAGE] {
        if let Some(value) = parts.headers.get(&name) {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response.headers_mut().remove(header::CONTENT_LENGTH);
    response
        .headers_mut()
        .append(header::VARY, HeaderValue::from_static("accept-language"));
    *response.status_mut() = problem.status;
    response
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "store unavailable");
                ApiError::Unavailable
            }
            StoreError::TransactionCanceled { .. } | StoreError::ConditionFailed => {
                ApiError::ConcurrentChange
            }
            StoreError::Invalid(cause) => ApiError::internal(cause),
        }
    }
}

impl From<ContractError> for ApiError {
    fn from(error: ContractError) -> Self {
        match error {
            ContractError::Invalid(errors) => ApiError::invalid_body(errors),
            ContractError::NotFound => ApiError::NotFound,
            ContractError::VersionMismatch { expected, current } => {
                ApiError::PreconditionFailed { expected, current }
            }
            ContractError::ContractNumberTaken => ApiError::ContractNumberTaken,
            ContractError::IdempotencyKeyReused => ApiError::IdempotencyKeyReused,
            ContractError::Contention => ApiError::ConcurrentChange,
            ContractError::InvalidPosition => {
                ApiError::InvalidParameters(vec![InvalidValue::parameter(
                    "cursor",
                    FieldIssue::InvalidCursor,
                )])
            }
            ContractError::Forbidden(role) => ApiError::Forbidden(role),
            ContractError::Schedule(error) => ApiError::NoSchedule(error.to_string()),
            ContractError::Store(error) => error.into(),
        }
    }
}

impl From<JobError> for ApiError {
    fn from(error: JobError) -> Self {
        match error {
            JobError::NotFound => ApiError::NotFound,
            JobError::Contention => ApiError::ConcurrentChange,
            JobError::Store(error) => error.into(),
        }
    }
}

impl From<PortfolioError> for ApiError {
    fn from(error: PortfolioError) -> Self {
        match error {
            PortfolioError::Forbidden(role) => ApiError::Forbidden(role),
            PortfolioError::Invalid(errors) => ApiError::invalid_body(errors),
            PortfolioError::Contention => ApiError::ConcurrentChange,
            PortfolioError::Store(error) => error.into(),
        }
    }
}

impl From<RatesError> for ApiError {
    fn from(error: RatesError) -> Self {
        match error {
            RatesError::UnknownSeries => ApiError::NotFound,
            RatesError::NoRate { from, to, date } => ApiError::NoRate {
                from: from.to_string(),
                to: to.to_string(),
                date: date.to_string(),
            },
            RatesError::Overflow => ApiError::InvalidParameters(vec![InvalidValue::parameter(
                "amount",
                FieldIssue::OutOfRange {
                    min: "0".into(),
                    max: i64::MAX.to_string(),
                },
            )]),
            RatesError::Store(error) => error.into(),
        }
    }
}

impl From<domain::members::MemberError> for ApiError {
    fn from(error: domain::members::MemberError) -> Self {
        use domain::members::MemberError;
        match error {
            MemberError::Forbidden(role) => ApiError::Forbidden(role),
            MemberError::Invalid(errors) => AccountError::Invalid(errors).into(),
            MemberError::InvitationInvalid => ApiError::InvitationInvalid,
            MemberError::NotFound => ApiError::NotFound,
            MemberError::LastOwner => ApiError::LastOwner,
            MemberError::Contention => ApiError::ConcurrentChange,
            MemberError::Internal(cause) => ApiError::internal(cause),
            MemberError::Store(error) => error.into(),
        }
    }
}

impl From<domain::org_settings::SettingsError> for ApiError {
    fn from(error: domain::org_settings::SettingsError) -> Self {
        use domain::org_settings::SettingsError;
        match error {
            SettingsError::Forbidden(role) => ApiError::Forbidden(role),
            SettingsError::TwoFactorFirst => ApiError::TwoFactorFirst,
            SettingsError::NotFound => ApiError::NotFound,
            SettingsError::Contention => ApiError::ConcurrentChange,
            SettingsError::TwoFactor(error) => error.into(),
            SettingsError::Store(error) => error.into(),
        }
    }
}

impl From<domain::single_sign_on::SsoServiceError> for ApiError {
    fn from(error: domain::single_sign_on::SsoServiceError) -> Self {
        use domain::single_sign_on::SsoServiceError;
        use domain::sso::SsoError;
        match error {
            SsoServiceError::Forbidden(role) => ApiError::Forbidden(role),
            SsoServiceError::Invalid(errors) => ApiError::invalid_body(errors),
            SsoServiceError::NotConfigured => ApiError::SsoNotConfigured,
            SsoServiceError::Unverified => ApiError::SsoUnverified,
            SsoServiceError::LoginInvalid => ApiError::SsoLoginInvalid,
            SsoServiceError::NoAccount => ApiError::SsoNoAccount,
            SsoServiceError::SsoRequired => ApiError::SsoRequired,
            SsoServiceError::EmailTaken => ApiError::AlreadyRegistered(vec![InvalidValue {
                location: Location::Body("/email".into()),
                issue: FieldIssue::AlreadyInUse,
            }]),
            SsoServiceError::ModuleInactive => ApiError::ModuleInactive {
                module: domain::modules::Module::Sso.to_string(),
            },
            SsoServiceError::Contention => ApiError::ConcurrentChange,
            SsoServiceError::Provider(error) => match error {
                SsoError::CodeRejected { .. } | SsoError::IdToken(_) => {
                    tracing::warn!(%error, "sso: the provider's answer was refused");
                    ApiError::SsoRefused
                }
                SsoError::Unavailable(_) | SsoError::Metadata(_) | SsoError::TokenResponse(_) => {
                    tracing::warn!(%error, "sso: the identity provider failed");
                    ApiError::IdentityProviderUnavailable
                }
                SsoError::Config(_) => ApiError::internal(error),
            },
            SsoServiceError::Vault(error) => {
                tracing::error!(%error, "sso: the secret vault failed");
                ApiError::Unavailable
            }
            SsoServiceError::Store(error) => error.into(),
        }
    }
}

impl From<domain::sso_domains::DomainError> for ApiError {
    fn from(error: domain::sso_domains::DomainError) -> Self {
        use domain::sso_domains::DomainError;
        match error {
            DomainError::Forbidden(role) => ApiError::Forbidden(role),
            DomainError::Invalid(errors) => ApiError::invalid_body(errors),
            DomainError::NotFound => ApiError::NotFound,
            DomainError::Taken(domain) => ApiError::SsoDomainTaken {
                domain: domain.to_string(),
            },
            DomainError::TooMany { max } => ApiError::SsoDomainLimit { max },
            DomainError::RecordNotFound { name, value } => {
                ApiError::SsoDomainUnverified { name, value }
            }
            DomainError::Dns(error) => {
                tracing::warn!(%error, "sso domain: the DNS gave no answer");
                ApiError::DnsUnavailable
            }
            DomainError::Randomness(cause) => ApiError::internal(cause),
            DomainError::Contention => ApiError::ConcurrentChange,
            DomainError::Store(error) => error.into(),
        }
    }
}

impl From<domain::modules::ModuleError> for ApiError {
    fn from(error: domain::modules::ModuleError) -> Self {
        use domain::modules::ModuleError;
        match error {
            ModuleError::Forbidden(role) => ApiError::Forbidden(role),
            ModuleError::Contention => ApiError::ConcurrentChange,
            ModuleError::Store(error) => error.into(),
        }
    }
}

impl From<domain::personal_data::PersonalDataError> for ApiError {
    fn from(error: domain::personal_data::PersonalDataError) -> Self {
        use domain::personal_data::PersonalDataError;
        match error {
            // The token named a user who is gone.
            PersonalDataError::NotFound => ApiError::Unauthorized {
                token_present: true,
            },
            PersonalDataError::Audit(error) => error.into(),
            PersonalDataError::TwoFactor(error) => error.into(),
            PersonalDataError::Store(error) => error.into(),
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(error: AccountError) -> Self {
        match error {
            AccountError::Invalid(errors) => {
                let values: Vec<InvalidValue> =
                    errors.errors().iter().map(InvalidValue::from).collect();
                if values
                    .iter()
                    .all(|value| value.issue == FieldIssue::AlreadyInUse)
                {
                    ApiError::AlreadyRegistered(values)
                } else {
                    ApiError::Invalid(values)
                }
            }
            AccountError::InvalidCredentials => ApiError::InvalidCredentials,
            // The token named a user or organization that is gone.
            AccountError::NotFound => ApiError::Unauthorized {
                token_present: true,
            },
            AccountError::Contention => ApiError::ConcurrentChange,
            AccountError::Store(error) => error.into(),
            AccountError::Internal(cause) => ApiError::internal(cause),
        }
    }
}

impl From<domain::two_factor::TwoFactorError> for ApiError {
    fn from(error: domain::two_factor::TwoFactorError) -> Self {
        use domain::two_factor::TwoFactorError;
        match error {
            TwoFactorError::AlreadyEnabled => ApiError::TwoFactorAlreadyEnabled,
            TwoFactorError::NotEnabled => ApiError::TwoFactorNotEnabled,
            TwoFactorError::InvalidCode(_) => ApiError::TwoFactorCodeInvalid,
            TwoFactorError::Locked {
                retry_after_seconds,
            } => ApiError::TwoFactorLocked {
                retry_after_seconds,
            },
            // The token named a user who is gone.
            TwoFactorError::UserNotFound => ApiError::Unauthorized {
                token_present: true,
            },
            TwoFactorError::Contention => ApiError::ConcurrentChange,
            TwoFactorError::Internal(cause) => ApiError::internal(cause),
            TwoFactorError::Store(error) => error.into(),
        }
    }
}

/// Errors of fields that are query parameters (`/actor` is the parameter `actor`).
pub fn parameter_errors(errors: &ValidationErrors) -> Vec<InvalidValue> {
    errors
        .errors()
        .iter()
        .map(|error| {
            InvalidValue::parameter(error.pointer.trim_start_matches('/'), error.issue.clone())
        })
        .collect()
}

impl From<AuditLogError> for ApiError {
    fn from(error: AuditLogError) -> Self {
        match error {
            // The audit log's fields are the query parameters of its routes.
            AuditLogError::Invalid(errors) => {
                ApiError::InvalidParameters(parameter_errors(&errors))
            }
            AuditLogError::InvalidPosition => {
                ApiError::InvalidParameters(vec![InvalidValue::parameter(
                    "cursor",
                    FieldIssue::InvalidCursor,
                )])
            }
            AuditLogError::Forbidden(role) => ApiError::Forbidden(role),
            AuditLogError::ExportTooLarge { max_rows } => {
                ApiError::ExportTooLarge { max: max_rows }
            }
            AuditLogError::Output(cause) => ApiError::internal(cause),
            AuditLogError::Store(error) => error.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::validation::ValidationErrors;

    #[test]
    fn audit_log_errors_name_query_parameters_and_the_export_limit() {
        let mut errors = ValidationErrors::new();
        errors.add("/actor", FieldIssue::InvalidId);
        errors.add("/to", FieldIssue::BeforeStart);
        let problem = ApiError::from(AuditLogError::Invalid(errors)).problem();
        let document = problem.render(Lang::Sv, Some("req-1"));
        assert_eq!(document.status, 400);
        let named: Vec<(Option<&str>, &str)> = document
            .errors
            .iter()
            .map(|e| (e.parameter.as_deref(), e.code.as_str()))
            .collect();
        assert_eq!(
            named,
            [(Some("actor"), "invalid_id"), (Some("to"), "before_start")]
        );
        assert!(document.errors[0].detail.starts_with("Måste vara ett id"));

        let too_large = ApiError::from(AuditLogError::ExportTooLarge { max_rows: 100_000 });
        let document = too_large.problem().render(Lang::En, None);
        assert_eq!(document.status, 422);
        assert_eq!(document.kind, format!("{PROBLEM_BASE}export-too-large"));
        assert!(
            document.detail.contains("at most 100000 events"),
            "{}",
            document.detail
        );

        let position = ApiError::from(AuditLogError::InvalidPosition).problem();
        assert_eq!(
            position.errors[0].location,
            Location::Parameter("cursor".into())
        );
        assert!(matches!(
            ApiError::from(AuditLogError::Forbidden(Role::Viewer)),
            ApiError::Forbidden(Role::Viewer)
        ));
    }

    #[test]
    fn sso_domain_problems_name_the_record_and_are_told_apart() {
        use domain::dns::DnsError;
        use domain::sso_domains::{DomainError, DomainName};
        let name = "_leasedesk-challenge.nordlysfleet.se";
        let value = "leasedesk-domain-verification=4f0c";
        let unverified = ApiError::from(DomainError::RecordNotFound {
            name: name.into(),
            value: value.into(),
        })
        .problem();
        assert_eq!(unverified.status, StatusCode::UNPROCESSABLE_ENTITY);
        for lang in Lang::ALL {
            let document = unverified.render(lang, None);
            assert_eq!(
                document.kind,
                format!("{PROBLEM_BASE}sso-domain-unverified")
            );
            assert!(
                document.detail.contains(name) && document.detail.contains(value),
                "{}: {}",
                lang.code(),
                document.detail
            );
        }
        let taken = ApiError::from(DomainError::Taken(
            DomainName::parse("nordlysfleet.se").unwrap(),
        ))
        .problem();
        assert_eq!(taken.status, StatusCode::CONFLICT);
        assert!(
            taken
                .render(Lang::Fi, None)
                .detail
                .contains("nordlysfleet.se")
        );
        for failure in [DnsError::Timeout, DnsError::Failed("SERVFAIL".into())] {
            let unavailable = ApiError::from(DomainError::Dns(failure)).problem();
            assert_eq!(unavailable.status, StatusCode::BAD_GATEWAY);
            let document = unavailable.render(Lang::En, None);
            assert_eq!(document.kind, format!("{PROBLEM_BASE}dns-unavailable"));
            assert!(!document.detail.contains("SERVFAIL"), "no internals");
        }
        let limit = ApiError::from(DomainError::TooMany { max: 50 }).problem();
        assert!(limit.render(Lang::Sv, None).detail.contains("50"));
    }
}
