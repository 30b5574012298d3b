//! The auth function: sign-up of an organization with its owner, sign-in and sessions
//! (`sessions`), two-factor login (`two_factor`), members and invitations (`members`),
//! the caller's profile, and the organization's audit trail (`audit`); the daily
//! retention job (`retention`).

mod audit;
#[cfg(feature = "lambda")]
pub mod lambda_env;
mod members;
mod modules;
mod organization;
pub mod retention;
mod sessions;
mod sso;
mod sso_domains;
mod two_factor;

use api::caller::Origin;
use api::i18n::Lang;
use api::mail::MailTemplate;
use api::openapi::CommonParts;
use api::{ApiError, Authenticator, Caller, JsonBody};
use axum::extract::{FromRef, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use axum::{Json, Router};
use domain::access::{Permission, Role};
use domain::accounts::Email;
use domain::accounts::{AccountService, SignUpRequest, User};
use domain::audit_log::AuditLog;
use domain::clock::Clock;
use domain::dns::DnsResolver;
use domain::ids::{TenantId, UserId};
use domain::mail::{MailError, Mailer};
use domain::members::MemberService;
use domain::modules::ModuleService;
use domain::org_settings::OrganizationSettingsService;
use domain::organization::Organization;
use domain::password_reset::PasswordResets;
use domain::personal_data::PersonalDataService;
use domain::secrets::SecretVault;
use domain::single_sign_on::SingleSignOn;
use domain::sso::OidcClient;
use domain::sso_domains::SsoDomains;
use domain::store::Table;
use domain::throttle::{LoginThrottle, ThrottleLimits};
use domain::two_factor::TwoFactorService;
use serde::Serialize;
use std::sync::Arc;
use utoipa::{OpenApi, ToSchema};

#[derive(Clone)]
pub struct AuthState {
    accounts: Arc<AccountService>,
    members: Arc<MemberService>,
    two_factor: Arc<TwoFactorService>,
    auth: Arc<Authenticator>,
    mailer: Arc<dyn Mailer>,
    throttle: Arc<LoginThrottle>,
    resets: Arc<PasswordResets>,
    org_settings: Arc<OrganizationSettingsService>,
    personal_data: Arc<PersonalDataService>,
    sso: Arc<SingleSignOn>,
    domains: Arc<SsoDomains>,
    modules: Arc<ModuleService>,
    /// Where the web app lives: mailed links point there.
    app_url: Arc<str>,
    audit: Arc<AuditLog>,
}

/// What single sign-on needs from outside the domain.
pub struct SsoPorts {
    /// Where client secrets are kept (Secrets Manager in AWS).
    pub vault: Arc<dyn SecretVault>,
    /// The OpenID Connect relying party.
    pub oidc: Arc<dyn OidcClient>,
    /// Put in front of `sso/<organization>` in secret names: the stack's name and a
    /// slash in AWS, so the function's policy can allow only its own secrets.
    pub secret_prefix: String,
    /// Looks up the TXT records that prove an organization's e-mail domains.
    pub dns: Arc<dyn DnsResolver>,
}

/// Where the provider sends the browser back: the web app's page for it.
pub const SSO_CALLBACK_PAGE: &str = "sso/callback";

impl AuthState {
    pub fn new(
        table: Arc<dyn Table>,
        auth: Arc<Authenticator>,
        clock: Arc<dyn Clock>,
        mailer: Arc<dyn Mailer>,
        app_url: &str,
        sso: SsoPorts,
    ) -> Self {
        let app_url = app_url.trim_end_matches('/');
        Self {
            sso: Arc::new(SingleSignOn::new(
                table.clone(),
                clock.clone(),
                sso.vault,
                sso.oidc,
                &sso.secret_prefix,
                &format!("{app_url}/{SSO_CALLBACK_PAGE}"),
            )),
            domains: Arc::new(SsoDomains::new(table.clone(), clock.clone(), sso.dns)),
            modules: Arc::new(ModuleService::new(table.clone(), clock.clone())),
            audit: Arc::new(AuditLog::new(table.clone(), clock.clone())),
            accounts: Arc::new(AccountService::new(table.clone(), clock.clone())),
            two_factor: Arc::new(TwoFactorService::new(table.clone(), clock.clone())),
            members: Arc::new(MemberService::new(table.clone(), clock.clone())),
            auth,
            mailer,
            resets: Arc::new(PasswordResets::new(table.clone(), clock.clone())),
            personal_data: Arc::new(PersonalDataService::new(table.clone(), clock.clone())),
            org_settings: Arc::new(OrganizationSettingsService::new(
                table.clone(),
                clock.clone(),
            )),
            throttle: Arc::new(LoginThrottle::new(table, clock, ThrottleLimits::default())),
            app_url: app_url.into(),
        }
    }

    /// A link into the web app that carries a one-time `token` (in the fragment, which
    /// browsers do not send to servers or put in referrers).
    fn link(&self, path: &str, token: &str) -> String {
        format!("{}/{path}#token={token}", self.app_url)
    }

    /// Renders `template` for `to` in `lang` and hands it to the mailer.
    async fn send_mail(
        &self,
        template: MailTemplate,
        lang: Lang,
        to: Email,
    ) -> Result<(), MailError> {
        let mail = template.render(lang, to)?;
        self.mailer.send(&mail).await.map(|_| ())
    }
}

impl FromRef<AuthState> for Arc<Authenticator> {
    fn from_ref(state: &AuthState) -> Self {
        state.auth.clone()
    }
}

/// The routes this function serves.
pub fn router(state: AuthState) -> Router {
    let auth = state.auth.clone();
    let audit = audit::routes(state.audit.clone(), state.auth.clone());
    let routes = Router::new()
        .route("/auth/signup", post(sign_up))
        .route("/auth/login", post(sessions::log_in))
        .route("/auth/refresh", post(sessions::refresh_session))
        .route("/auth/logout", post(sessions::log_out))
        .route(
            "/auth/logout-everywhere",
            post(sessions::log_out_everywhere),
        )
        .route(
            "/me",
            get(me).patch(change_language).delete(members::erase_me),
        )
        .route("/me/export", get(export_personal_data))
        .route("/me/password", post(sessions::change_password))
        .route(
            "/auth/password-reset",
            post(sessions::request_password_reset),
        )
        .route(
            "/auth/password-reset/confirm",
            post(sessions::complete_password_reset),
        )
        .route(
            "/me/2fa",
            post(two_factor::begin_two_factor).delete(two_factor::disable_two_factor),
        )
        .route("/me/2fa/confirm", post(two_factor::confirm_two_factor))
        .route("/auth/2fa/verify", post(two_factor::verify_two_factor))
        .route("/members", get(members::list_members))
        .route(
            "/organization/settings",
            get(organization::organization_settings)
                .patch(organization::change_organization_settings),
        )
        .route("/organization/modules", get(modules::list_modules))
        .route("/organization/modules/{module}", put(modules::set_module))
        .route(
            "/organization/sso",
            get(sso::sso_settings)
                .put(sso::configure_sso)
                .delete(sso::remove_sso),
        )
        .route(
            "/organization/sso/domains",
            get(sso_domains::list_domains).post(sso_domains::claim_domain),
        )
        .route(
            "/organization/sso/domains/{domain}",
            delete(sso_domains::remove_domain),
        )
        .route(
            "/organization/sso/domains/{domain}/verify",
            post(sso_domains::verify_domain),
        )
        .route("/auth/sso/start", post(sso::start_sso))
        .route("/auth/sso/callback", post(sso::finish_sso))
        .route("/members/invitations", post(members::invite_member))
        .route(
            "/members/{id}",
            patch(members::change_role).delete(members::remove_member),
        )
        .route("/auth/invitations/accept", post(members::accept_invitation))
        .route("/members/{id}/erasure", post(members::erase_member))
        .with_state(state)
        .merge(audit);
    api::access::guard(routes, auth)
}

#[derive(OpenApi)]
#[openapi(
    paths(
        sign_up,
        sessions::log_in,
        sessions::refresh_session,
        sessions::log_out,
        sessions::log_out_everywhere,
        me,
        change_language,
        export_personal_data,
        sessions::change_password,
        sessions::request_password_reset,
        sessions::complete_password_reset,
        two_factor::begin_two_factor,
        two_factor::confirm_two_factor,
        two_factor::disable_two_factor,
        two_factor::verify_two_factor,
        members::list_members,
        organization::organization_settings,
        organization::change_organization_settings,
        members::invite_member,
        members::accept_invitation,
        members::change_role,
        members::remove_member,
        members::erase_member,
        members::erase_me,
        modules::list_modules,
        modules::set_module,
        sso::sso_settings,
        sso::configure_sso,
        sso::remove_sso,
        sso_domains::list_domains,
        sso_domains::claim_domain,
        sso_domains::verify_domain,
        sso_domains::remove_domain,
        sso::start_sso,
        sso::finish_sso
    ),
    components(schemas(
        SignUpRequest,
        sessions::LoginRequest,
        sessions::RefreshRequest,
        sessions::PasswordChange,
        sessions::ResetRequest,
        sessions::ResetCompletion,
        sessions::TokenResponse,
        sessions::TwoFactorChallenge,
        sessions::LoginAnswer,
        two_factor::EnrolmentView,
        two_factor::CodeRequest,
        two_factor::RecoveryCodesView,
        two_factor::VerifyRequest,
        members::InvitationRequest,
        members::RoleChange,
        organization::SettingsChange,
        modules::ModuleChange,
        domain::modules::Module,
        domain::modules::ModuleStatus,
        domain::modules::ModuleView,
        sso::SsoView,
        sso::SsoStart,
        sso::SsoRedirect,
        sso::SsoCallback,
        domain::single_sign_on::SsoConfiguration,
        domain::single_sign_on::SsoSettings,
        domain::single_sign_on::ProviderChoice,
        sso_domains::DomainClaim,
        domain::sso_domains::SsoDomain,
        domain::sso_domains::DomainStatus,
        domain::sso_domains::DnsRecord,
        domain::org_settings::OrganizationSettings,
        domain::members::Invitation,
        domain::members::Acceptance,
        Profile,
        LanguageChange,
        PersonalDataView,
        UserView,
        OrganizationView,
        Role
    )),
    modifiers(&CommonParts),
    tags(
        (name = "auth", description = "Sign-up, sign-in, sessions and the caller's profile"),
        (name = "members", description = "Who belongs to the organization, and their roles")
    )
)]
struct AuthApi;

/// The API description of this function's routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut document = AuthApi::openapi();
    document.merge(audit::openapi());
    document
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub id: UserId,
    pub name: String,
    #[schema(value_type = String, format = "email")]
    pub email: String,
    pub role: Role,
    /// The language chosen for messages and mails; absent: `Accept-Language` decides.
    #[schema(example = "sv")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
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

impl From<User> for UserView {
    fn from(user: User) -> Self {
        Self {
            id: user.id,
            name: user.name,
            email: user.email.as_str().to_owned(),
            role: user.role,
            language: user.language,
        }
    }
}

impl Profile {
    fn new(user: User, organization: Organization) -> Self {
        Self {
            user: UserView::from(user),
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

/// Everything held about the caller (GDPR art. 15 and 20), as JSON.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersonalDataView {
    pub exported_at: chrono::DateTime<chrono::Utc>,
    pub user: UserView,
    pub member_since: chrono::DateTime<chrono::Utc>,
    pub organization: OrganizationView,
    pub two_factor_enabled: bool,
    /// The sign-in sessions the store still holds, live or ended.
    pub sessions: Vec<domain::sessions::SessionSummary>,
    /// Every audit event the caller caused, newest first.
    pub activity: Vec<domain::audit::AuditEvent>,
}

/// All personal data held about the caller, as JSON: profile, organization, sessions,
/// second-factor status and activity. Secrets (password hash, tokens, TOTP secret,
/// recovery codes) are never in it. The export is audited.
#[utoipa::path(
    get,
    path = "/me/export",
    tag = "auth",
    security(("bearer" = [])),
    responses((status = 200, description = "The caller's personal data", body = PersonalDataView))
)]
async fn export_personal_data(
    State(state): State<AuthState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require(Permission::ReadProfile)?;
    let data = state.personal_data.export(&caller.actor()).await?;
    let member_since = data.user.created_at;
    let view = PersonalDataView {
        exported_at: data.exported_at,
        user: UserView::from(data.user),
        member_since,
        organization: OrganizationView {
            id: data.organization.id,
            name: data.organization.name,
            organization_number: data.organization.organization_number.to_string(),
        },
        two_factor_enabled: data.two_factor_enabled,
        sessions: data.sessions,
        activity: data.activity,
    };
    Ok((
        [
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-store"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"personal-data.json\""),
            ),
        ],
        Json(view),
    )
        .into_response())
}

#[derive(serde::Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LanguageChange {
    /// `sv`, `en`, `da`, `nb`, `fi`, `lt`, `lv` or `et`; `null` to follow each request's
    /// `Accept-Language` again.
    #[schema(example = "sv")]
    pub language: Option<String>,
}

/// Choose the language of your messages and mails.
#[utoipa::path(
    patch,
    path = "/me",
    tag = "auth",
    security(("bearer" = [])),
    request_body = LanguageChange,
    responses(
        (status = 200, description = "The caller, with the language", body = Profile),
        (status = 400, description = "Not one of the eight languages",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
    )
)]
async fn change_language(
    State(state): State<AuthState>,
    caller: Caller,
    body: JsonBody<LanguageChange>,
) -> Result<Json<Profile>, ApiError> {
    caller.require(Permission::ReadProfile)?;
    state
        .accounts
        .set_language(&caller.actor(), body.value.language.as_deref())
        .await?;
    let (user, organization) = state.accounts.profile(caller.tenant, caller.user).await?;
    Ok(Json(Profile::new(user, organization)))
}
