//! Access tokens and 2FA-pending tokens: short-lived HS256 JWTs that carry who the
//! caller is.
//!
//! Verification requires and checks `iss`, `aud`, `sub`, `exp`, and the token type
//! (`typ`), so one type never stands in for another: an access token names its session
//! (`sid`) and opens every route that wants a caller; a 2FA-pending token says only that
//! the password was right, and only the 2FA verification accepts it. Refresh, invite and
//! reset tokens are not JWTs at all but opaque strings of their own forms, checked
//! against the store.

use domain::access::Role;
use domain::clock::Clock;
use domain::ids::{SessionId, TenantId, UserId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The kinds of JWT we issue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TokenType {
    Access,
    /// The password was right; a second factor is still due.
    TwoFactorPending,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: UserId,
    /// The organization (tenant).
    pub tid: TenantId,
    /// The role at issue; informational only, as every request reads the role in force.
    pub role: Role,
    pub typ: TokenType,
    /// The session an access token belongs to; absent in a 2FA-pending token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<SessionId>,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

#[derive(Clone, Debug)]
pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
    pub access_ttl: chrono::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the signing secret must be at least {min} bytes")]
    WeakSecret { min: usize },
    #[error("token could not be signed: {0}")]
    Signing(String),
    #[error("token rejected: {0}")]
    Rejected(String),
}

/// A freshly issued access token.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    pub token: String,
    pub expires_in: i64,
}

pub struct AccessTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    settings: TokenSettings,
    /// Expiry is checked against this clock, not the library's, so tests can move time.
    clock: Arc<dyn Clock>,
}

/// How long a 2FA-pending token lasts: time to open the authenticator app.
const PENDING_TTL_SECONDS: i64 = 300;

/// Seconds of clock skew tolerated between issuer and verifier.
const LEEWAY_SECONDS: i64 = 30;

impl AccessTokens {
    /// HS256 wants a key at least as long as its 256-bit output.
    pub const MIN_SECRET_BYTES: usize = 32;

    pub fn new(
        secret: &[u8],
        settings: TokenSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, TokenError> {
        if secret.len() < Self::MIN_SECRET_BYTES {
            return Err(TokenError::WeakSecret {
                min: Self::MIN_SECRET_BYTES,
            });
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Presence of `exp` is required above; its value is checked in `verify`.
        validation.validate_exp = false;
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            settings,
            clock,
        })
    }

    pub fn settings(&self) -> &TokenSettings {
        &self.settings
    }

    /// An access token for `user` in `session`.
    pub fn issue(
        &self,
        user: UserId,
        tenant: TenantId,
        role: Role,
        session: SessionId,
    ) -> Result<IssuedToken, TokenError> {
        let ttl = self.settings.access_ttl.num_seconds();
        self.sign(user, tenant, role, TokenType::Access, Some(session), ttl)
    }

    /// A 2FA-pending token: the password was right, the second factor is due.
    pub fn issue_pending(
        &self,
        user: UserId,
        tenant: TenantId,
        role: Role,
    ) -> Result<IssuedToken, TokenError> {
        self.sign(
            user,
            tenant,
            role,
            TokenType::TwoFactorPending,
            None,
            PENDING_TTL_SECONDS,
        )
    }

    fn sign(
        &self,
        user: UserId,
        tenant: TenantId,
        role: Role,
        typ: TokenType,
        sid: Option<SessionId>,
        expires_in: i64,
    ) -> Result<IssuedToken, TokenError> {
        let now = self.clock.now();
        let claims = AccessClaims {
            iss: self.settings.issuer.clone(),
            aud: self.settings.audience.clone(),
            sub: user,
            tid: tenant,
            role,
            typ,
            sid,
            iat: now.timestamp(),
            exp: now.timestamp() + expires_in,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| TokenError::Signing(e.to_string()))?;
        Ok(IssuedToken { token, expires_in })
    }

    /// The claims of an access token (with its session), or why not.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let claims = self.verify_type(token, TokenType::Access)?;
        if claims.sid.is_none() {
            return Err(TokenError::Rejected("no session".into()));
        }
        Ok(claims)
    }

    /// The claims of a 2FA-pending token, or why not.
    pub fn verify_pending(&self, token: &str) -> Result<AccessClaims, TokenError> {
        self.verify_type(token, TokenType::TwoFactorPending)
    }

    fn verify_type(&self, token: &str, expected: TokenType) -> Result<AccessClaims, TokenError> {
        let data = jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation)
            .map_err(|e| TokenError::Rejected(e.to_string()))?;
        let claims = data.claims;
        if claims.typ != expected {
            return Err(TokenError::Rejected("a token of another type".into()));
        }
        let now = self.clock.now().timestamp();
        if claims.exp + LEEWAY_SECONDS <= now {
            return Err(TokenError::Rejected("expired".into()));
        }
        if claims.iat - LEEWAY_SECONDS > now {
            return Err(TokenError::Rejected("issued in the future".into()));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use domain::clock::FixedClock;

    fn clock() -> Arc<FixedClock> {
        Arc::new(FixedClock::new("2026-11-21T09:00:00Z".parse().unwrap()))
    }

    fn tokens_at(
        issuer: &str,
        audience: &str,
        secret: &[u8],
        clock: Arc<FixedClock>,
    ) -> AccessTokens {
        AccessTokens::new(
            secret,
            TokenSettings {
                issuer: issuer.into(),
                audience: audience.into(),
                access_ttl: chrono::Duration::minutes(15),
            },
            clock,
        )
        .unwrap()
    }

    fn tokens(issuer: &str, audience: &str, secret: &[u8]) -> AccessTokens {
        tokens_at(issuer, audience, secret, clock())
    }

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn round_trip() {
        let t = tokens("https://iss", "aud", SECRET);
        let (user, tenant) = (UserId::generate(), TenantId::generate());
        let session = SessionId::generate();
        let issued = t.issue(user, tenant, Role::Editor, session).unwrap();
        assert_eq!(issued.expires_in, 900);
        let claims = t.verify(&issued.token).unwrap();
        assert_eq!(
            (claims.sub, claims.tid, claims.role, claims.sid),
            (user, tenant, Role::Editor, Some(session))
        );
        assert!(t.verify_pending(&issued.token).is_err());
    }

    #[test]
    fn rejects_expired_foreign_and_tampered_tokens() {
        let time = clock();
        let t = tokens_at("https://iss", "aud", SECRET, time.clone());
        let (user, tenant) = (UserId::generate(), TenantId::generate());
        let token = t
            .issue(user, tenant, Role::Owner, SessionId::generate())
            .unwrap()
            .token;
        time.advance(chrono::Duration::minutes(15));
        assert!(t.verify(&token).is_ok(), "within the leeway");
        time.advance(chrono::Duration::seconds(30));
        assert!(t.verify(&token).is_err(), "expired");
        time.set("2026-11-21T08:00:00Z".parse().unwrap());
        assert!(t.verify(&token).is_err(), "issued in the future");
        time.set("2026-11-21T09:00:00Z".parse().unwrap());

        let now = time.now();
        for other in [
            tokens("https://other", "aud", SECRET),
            tokens("https://iss", "other", SECRET),
            tokens("https://iss", "aud", b"another-secret-another-secret-xx"),
        ] {
            let token = other
                .issue(user, tenant, Role::Owner, SessionId::generate())
                .unwrap()
                .token;
            assert!(t.verify(&token).is_err());
        }

        let good = t
            .issue(user, tenant, Role::Viewer, SessionId::generate())
            .unwrap()
            .token;
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged_claims = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            serde_json::to_vec(&serde_json::json!({
                "iss": "https://iss", "aud": "aud", "sub": user, "tid": tenant,
                "role": "owner", "typ": "access", "iat": now.timestamp(),
                "exp": now.timestamp() + 900, "jti": "x"
            }))
            .unwrap(),
        );
        parts[1] = &forged_claims;
        assert!(t.verify(&parts.join(".")).is_err());
        assert!(t.verify("not.a.token").is_err());
    }

    #[test]
    fn requires_a_token_type_and_the_standard_claims() {
        let t = tokens("https://iss", "aud", SECRET);
        let now = clock().now().timestamp();
        let sign = |claims: serde_json::Value| {
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(SECRET),
            )
            .unwrap()
        };
        let base = serde_json::json!({
            "iss": "https://iss", "aud": "aud", "sub": UserId::generate(),
            "tid": TenantId::generate(), "role": "owner", "typ": "access",
            "sid": SessionId::generate(), "iat": now, "exp": now + 900, "jti": "x"
        });
        assert!(t.verify(&sign(base.clone())).is_ok());
        for (field, replacement) in [
            ("typ", Some(serde_json::json!("refresh"))),
            ("typ", Some(serde_json::json!("twoFactorPending"))),
            ("sid", None),
            ("typ", None),
            ("exp", None),
            ("sub", None),
            ("aud", None),
            ("iss", None),
            ("tid", None),
        ] {
            let mut claims = base.clone();
            match replacement {
                Some(value) => claims[field] = value,
                None => {
                    claims.as_object_mut().unwrap().remove(field);
                }
            }
            assert!(t.verify(&sign(claims)).is_err(), "{field}");
        }
        assert!(AccessTokens::new(b"short", t.settings().clone(), clock()).is_err());
    }

    #[test]
    fn a_pending_token_is_only_a_pending_token() {
        let t = tokens("https://iss", "aud", SECRET);
        let (user, tenant) = (UserId::generate(), TenantId::generate());
        let pending = t.issue_pending(user, tenant, Role::Admin).unwrap();
        assert_eq!(pending.expires_in, PENDING_TTL_SECONDS);
        assert!(t.verify(&pending.token).is_err(), "not an access token");
        let claims = t.verify_pending(&pending.token).unwrap();
        assert_eq!(
            (claims.sub, claims.typ, claims.sid),
            (user, TokenType::TwoFactorPending, None)
        );
    }
}
