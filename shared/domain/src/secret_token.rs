//! The opaque tokens we hand out (refresh tokens, invitation and password-reset links):
//! `<prefix>.<tenant>.<id>.<secret>`, where the prefix names the kind, tenant and id find
//! the record, and the secret (256 random bits, base64url) proves possession. Only the
//! secret's SHA-256 is stored: the secret is random, so a slow password hash would add
//! nothing. A token of one kind never parses as another.

use crate::ids::TenantId;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

const SECRET_BYTES: usize = 32;
/// Characters of a secret in base64url without padding.
const SECRET_CHARS: usize = 43;

/// A token's parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SecretToken {
    pub tenant: TenantId,
    pub id: String,
    pub secret: String,
}

impl SecretToken {
    /// A fresh secret for a record `id` of `tenant`.
    pub fn generate(tenant: TenantId, id: String) -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; SECRET_BYTES];
        getrandom::fill(&mut bytes)?;
        Ok(Self {
            tenant,
            id,
            secret: URL_SAFE_NO_PAD.encode(bytes),
        })
    }

    /// The parts of a token of the kind `prefix`; `None` for anything else.
    pub fn parse(prefix: &str, token: &str) -> Option<Self> {
        let mut parts = token.trim().split('.');
        let (kind, tenant, id, secret) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if kind != prefix || parts.next().is_some() || secret.len() != SECRET_CHARS {
            return None;
        }
        Some(Self {
            tenant: tenant.parse().ok()?,
            id: id.to_owned(),
            secret: secret.to_owned(),
        })
    }

    /// The token as handed out.
    pub fn format(&self, prefix: &str) -> String {
        format!("{prefix}.{}.{}.{}", self.tenant, self.id, self.secret)
    }

    /// What is stored of the secret.
    pub fn hash(&self) -> String {
        hash_secret(&self.secret)
    }

    /// Whether the secret is the one `stored` is the hash of, compared without an early
    /// exit.
    pub fn matches(&self, stored: &str) -> bool {
        same_hash(&self.hash(), stored)
    }
}

pub(crate) fn hash_secret(secret: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(secret.as_bytes()))
}

/// Compares two hashes without an early exit.
pub(crate) fn same_hash(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_only_as_their_own_kind() {
        let token = SecretToken::generate(TenantId::generate(), "abc".into()).unwrap();
        let text = token.format("ldi1");
        assert_eq!(SecretToken::parse("ldi1", &text), Some(token.clone()));
        assert_eq!(SecretToken::parse("ldr1", &text), None);
        assert_eq!(SecretToken::parse("ldi1", &format!("{text}.x")), None);
        assert_eq!(SecretToken::parse("ldi1", &text[..text.len() - 1]), None);
        // An access token (a JWT) has three parts, never four.
        assert_eq!(
            SecretToken::parse("ldi1", "eyJhbGciOiJIUzI1NiJ9.e30.c2ln"),
            None
        );
        assert!(token.matches(&token.hash()));
        let other = SecretToken::generate(token.tenant, "abc".into()).unwrap();
        assert_ne!(other.secret, token.secret);
        assert!(!other.matches(&token.hash()));
    }
}
