//! Who is calling: the verified access token and its live session, and where the
//! request came from.

use crate::problem::ApiError;
use crate::tokens::AccessTokens;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use domain::access::{Permission, Role};
use domain::audit::{Actor, RequestInfo};
use domain::ids::{SessionId, TenantId, UserId};
use domain::modules::ModuleService;
use domain::sessions::{SessionError, SessionService};
use std::sync::Arc;

/// The client's address, put on each request by whatever received it (the local
/// runner's socket, or API Gateway's request context in Lambda).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIp(pub String);

/// An authenticated caller. Tenant, user and session come only from the verified token;
/// the role is the one in force now, read with the session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub tenant: TenantId,
    pub user: UserId,
    pub session: SessionId,
    pub role: Role,
    /// The session serves only setting up a second factor (the organization requires
    /// one the member does not have yet).
    pub enrolment_only: bool,
    /// The language the member chose, if any; it wins over `Accept-Language`.
    pub language: Option<crate::i18n::Lang>,
    pub request: RequestInfo,
}

/// Turns a bearer token into a [`Caller`]: the signature, type and expiry of the access
/// token, then its session and user in the store, so a logout, a sign-out everywhere, a
/// new role or a removal counts from the very next request.
pub struct Authenticator {
    tokens: AccessTokens,
    sessions: SessionService,
    modules: ModuleService,
}

impl Authenticator {
    pub fn new(tokens: AccessTokens, sessions: SessionService, modules: ModuleService) -> Self {
        Self {
            tokens,
            sessions,
            modules,
        }
    }

    /// Which modules an organization has on; the guard checks a module's routes.
    pub fn modules(&self) -> &ModuleService {
        &self.modules
    }

    pub fn tokens(&self) -> &AccessTokens {
        &self.tokens
    }

    pub fn sessions(&self) -> &SessionService {
        &self.sessions
    }

    /// The caller of a request with these parts.
    pub async fn authenticate(&self, parts: &Parts) -> Result<Caller, ApiError> {
        let token = bearer_token(parts).ok_or(ApiError::Unauthorized {
            token_present: false,
        })?;
        let rejected = || ApiError::Unauthorized {
            token_present: true,
        };
        let claims = self.tokens.verify(token).map_err(|error| {
            tracing::debug!(%error, "access token rejected");
            rejected()
        })?;
        let session = claims.sid.ok_or_else(rejected)?;
        let state = match self.sessions.caller(claims.tid, claims.sub, session).await {
            Ok(state) => state,
            Err(SessionError::Store(error)) => return Err(error.into()),
            Err(_) => {
                tracing::debug!("access token of a session that is over");
                return Err(rejected());
            }
        };
        tracing::Span::current().record("tenant_id", tracing::field::display(claims.tid));
        Ok(Caller {
            tenant: claims.tid,
            user: claims.sub,
            session,
            role: state.role,
            enrolment_only: state.enrolment_only,
            language: state
                .language
                .as_deref()
                .and_then(crate::i18n::Lang::from_code),
            request: request_info(parts),
        })
    }
}

impl Caller {
    /// Refuses the request with 403 unless the caller's role allows `permission`.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.role.allows(permission) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(self.role))
        }
    }

    pub fn actor(&self) -> Actor {
        Actor {
            tenant: self.tenant,
            user: self.user,
            role: self.role,
            request: self.request.clone(),
        }
    }
}

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    Arc<Authenticator>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // The access guard authenticated this request already.
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let caller = Arc::<Authenticator>::from_ref(state)
            .authenticate(parts)
            .await?;
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Request id, client address and user agent, for audit events.
pub fn request_info(parts: &Parts) -> RequestInfo {
    let header_text = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(512).collect::<String>())
    };
    RequestInfo {
        request_id: header_text(crate::REQUEST_ID_HEADER),
        source_ip: parts.extensions.get::<ClientIp>().map(|ip| ip.0.clone()),
        user_agent: header_text(header::USER_AGENT.as_str()),
    }
}

/// The request's [`RequestInfo`], for routes without a caller (sign-up, login).
pub struct Origin(pub RequestInfo);

impl<S: Send + Sync> FromRequestParts<S> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Origin(request_info(parts)))
    }
}
