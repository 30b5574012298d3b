//! Who is calling: the verified access token, and where the request came from.

use crate::problem::ApiError;
use crate::tokens::AccessTokens;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use domain::access::{Permission, Role};
use domain::audit::{Actor, RequestInfo};
use domain::ids::{TenantId, UserId};
use std::sync::Arc;

/// The client's address, put on each request by whatever received it (the local
/// runner's socket, or API Gateway's request context in Lambda).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIp(pub String);

/// An authenticated caller. Tenant and user come only from the verified token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub tenant: TenantId,
    pub user: UserId,
    pub role: Role,
    pub request: RequestInfo,
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
    Arc<AccessTokens>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let tokens = Arc::<AccessTokens>::from_ref(state);
        let token = bearer_token(parts).ok_or(ApiError::Unauthorized {
            token_present: false,
        })?;
        let claims = tokens.verify(token).map_err(|error| {
            tracing::debug!(%error, "access token rejected");
            ApiError::Unauthorized {
                token_present: true,
            }
        })?;
        tracing::Span::current().record("tenant_id", tracing::field::display(claims.tid));
        Ok(Caller {
            tenant: claims.tid,
            user: claims.sub,
            role: claims.role,
            request: request_info(parts),
        })
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
