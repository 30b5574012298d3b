//! Single sign-on with OpenID Connect: how an organization's identity provider is
//! configured (Microsoft Entra ID or any OIDC provider), what a login in progress must
//! remember, what a completed login proves, and the `OidcClient` port that speaks the
//! protocol. The adapter lives in `adapters::oidc`.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use url::{Host, Url};

/// Where Microsoft Entra ID issues tokens. Each tenant's issuer is
/// `{ENTRA_AUTHORITY}/{tenant}/v2.0`.
pub const ENTRA_AUTHORITY: &str = "https://login.microsoftonline.com";

/// An organization's identity provider, as its administrator configured it.
///
/// The client secret is not part of it: `secret_ref` names where it is kept (a Secrets
/// Manager secret, say), so this value can be stored and shown without leaking it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum SsoProvider {
    /// Microsoft Entra ID, signing in the users of one Entra tenant only.
    Entra {
        tenant_id: EntraTenant,
        client_id: ClientId,
        secret_ref: String,
    },
    /// Any OpenID Connect provider that publishes a discovery document.
    Generic {
        issuer: IssuerUrl,
        client_id: ClientId,
        secret_ref: String,
    },
}

impl SsoProvider {
    /// The issuer its ID tokens must name, with Entra at its real address.
    pub fn issuer(&self) -> String {
        self.issuer_with_entra_authority(ENTRA_AUTHORITY)
    }

    /// The issuer with Entra served from `entra_authority` instead of
    /// [`ENTRA_AUTHORITY`]: a test provider can stand in for Entra this way.
    ///
    /// For an Entra tenant configured by its domain name this is where its discovery
    /// document is; Entra's document then names the tenant-specific issuer with the
    /// tenant's id, which is what its tokens carry.
    pub fn issuer_with_entra_authority(&self, entra_authority: &str) -> String {
        match self {
            Self::Entra { tenant_id, .. } => {
                format!("{}/{tenant_id}/v2.0", entra_authority.trim_end_matches('/'))
            }
            Self::Generic { issuer, .. } => issuer.as_str().to_owned(),
        }
    }

    pub fn client_id(&self) -> &ClientId {
        match self {
            Self::Entra { client_id, .. } | Self::Generic { client_id, .. } => client_id,
        }
    }

    /// Where the client secret is kept; the caller resolves it for
    /// [`OidcClient::complete`].
    pub fn secret_ref(&self) -> &str {
        match self {
            Self::Entra { secret_ref, .. } | Self::Generic { secret_ref, .. } => secret_ref,
        }
    }
}

/// Why a piece of SSO configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SsoConfigError {
    #[error(
        "the Entra tenant must be a tenant id (a GUID) or one of the tenant's verified domain names"
    )]
    InvalidEntraTenant,
    /// `common`, `organizations` and `consumers` let users of any tenant sign in.
    #[error(
        "the Entra tenant `{0}` is a multi-tenant endpoint; configure the organization's own tenant"
    )]
    MultiTenantEntra(String),
    #[error("the issuer is not a usable URL: {0}")]
    InvalidIssuer(String),
    #[error("the client id must be 1 to 255 printable characters")]
    InvalidClientId,
}

/// An Entra tenant: its id (a GUID, kept in lower case) or one of its verified domain
/// names (`contoso.onmicrosoft.com`, `contoso.se`, kept in lower case).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EntraTenant(String);

impl EntraTenant {
    pub fn parse(input: &str) -> Result<Self, SsoConfigError> {
        let tenant = input.trim().to_ascii_lowercase();
        if matches!(tenant.as_str(), "common" | "organizations" | "consumers") {
            return Err(SsoConfigError::MultiTenantEntra(tenant));
        }
        if is_guid(&tenant) || crate::dns::is_domain_name(&tenant) {
            Ok(Self(tenant))
        } else {
            Err(SsoConfigError::InvalidEntraTenant)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether it is the tenant id rather than a domain name. Only then is the issuer
    /// known before Entra's discovery document is read.
    pub fn is_tenant_id(&self) -> bool {
        is_guid(&self.0)
    }
}

impl TryFrom<String> for EntraTenant {
    type Error = SsoConfigError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<EntraTenant> for String {
    fn from(value: EntraTenant) -> Self {
        value.0
    }
}

impl fmt::Display for EntraTenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A GUID in the canonical hyphenated 8-4-4-4-12 form (either case).
pub fn is_guid(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// An OpenID Connect issuer URL, kept exactly as configured because ID tokens must name
/// their issuer with the very same string.
///
/// It is `https` with a host name, no query, fragment or credentials. Plain `http` is
/// accepted only for a loopback host (a provider running in a test); the adapter still
/// refuses it unless told otherwise. IP-address hosts other than loopback are refused:
/// real issuers have names, and we should not be pointed at internal addresses.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IssuerUrl(String);

impl IssuerUrl {
    pub fn parse(input: &str) -> Result<Self, SsoConfigError> {
        let text = input.trim();
        let invalid = |reason: &str| SsoConfigError::InvalidIssuer(reason.to_owned());
        let url = Url::parse(text).map_err(|error| invalid(&error.to_string()))?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("an issuer has no query or fragment"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("an issuer has no user name or password"));
        }
        let loopback = match url.host() {
            Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
            Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
            Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
            None => return Err(invalid("an issuer needs a host")),
        };
        if matches!(url.host(), Some(Host::Ipv4(_) | Host::Ipv6(_))) && !loopback {
            return Err(invalid(
                "an issuer is named by a host name, not an IP address",
            ));
        }
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => return Err(invalid("an issuer must use https")),
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether it is plain `http` (only ever on loopback).
    pub fn is_plain_http(&self) -> bool {
        self.0.starts_with("http:")
    }
}

impl TryFrom<String> for IssuerUrl {
    type Error = SsoConfigError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<IssuerUrl> for String {
    fn from(value: IssuerUrl) -> Self {
        value.0
    }
}

impl fmt::Display for IssuerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The OAuth client id our application is registered under at the provider.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClientId(String);

impl ClientId {
    pub fn parse(input: &str) -> Result<Self, SsoConfigError> {
        let id = input.trim();
        // RFC 6749 allows any printable ASCII (VSCHAR); the length bound is ours.
        if (1..=255).contains(&id.len()) && id.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            Ok(Self(id.to_owned()))
        } else {
            Err(SsoConfigError::InvalidClientId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ClientId {
    type Error = SsoConfigError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<ClientId> for String {
    fn from(value: ClientId) -> Self {
        value.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a login in progress must remember until the provider sends the user back.
///
/// The caller keeps it server-side, keyed by `state`, for a few minutes (a TTL), and
/// deletes it when the user comes back, so each can be used once. None of it may reach
/// a log: `Debug` hides the values.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingLogin {
    /// Sent in the authorization request and returned with the code; ties the answer to
    /// the browser session that asked (CSRF).
    pub state: String,
    /// Must come back inside the ID token; ties the token to this login (replay).
    pub nonce: String,
    /// The PKCE code verifier; only its S256 hash was sent to the provider.
    pub pkce_verifier: String,
}

impl fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingLogin")
            .field("state", &"[redacted]")
            .field("nonce", &"[redacted]")
            .field("pkce_verifier", &"[redacted]")
            .finish()
    }
}

/// Where to send the user's browser, and what to remember until it comes back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizationRequest {
    /// The provider's authorization endpoint with our request in the query.
    pub url: String,
    pub pending: PendingLogin,
}

/// Who the provider says signed in, from an ID token that passed every check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifiedIdentity {
    /// The token's issuer. For Entra it names the tenant by its id.
    pub issuer: String,
    /// The user's identifier at that issuer; `(issuer, subject)` identifies a user for
    /// good. (Entra's `sub` is specific to our application registration.)
    pub subject: String,
    pub email: Option<String>,
    /// Only when the provider asserts it. Entra usually does not: an email that is not
    /// verified must not be used to link the login to an existing account.
    pub email_verified: bool,
    pub name: Option<String>,
    /// The `groups` claim: group names or, with Entra, group object ids. Empty when the
    /// provider sends none (Entra also sends none when the user is in too many groups).
    pub groups: Vec<String>,
}

/// Why the provider's ID token was not accepted (OpenID Connect Core 3.1.3.7).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    #[error("the ID token is malformed: {0}")]
    Malformed(String),
    /// `none`, HMAC (which would make the client secret a signing key) or any other
    /// algorithm than the provider's RS256.
    #[error("the ID token is signed with `{0}`, which is not accepted")]
    DisallowedAlgorithm(String),
    #[error("the ID token is signed with a key the provider does not publish")]
    UnknownSigningKey,
    #[error("the ID token's signature is not valid")]
    BadSignature,
    #[error("the ID token was issued by `{found}`, not by `{expected}`")]
    WrongIssuer { expected: String, found: String },
    #[error("the ID token is not meant for this client")]
    WrongAudience,
    #[error("the ID token has several audiences but no authorized party")]
    MissingAuthorizedParty,
    #[error("the ID token was authorized for another client")]
    WrongAuthorizedParty,
    #[error("the ID token has expired")]
    Expired,
    #[error("the ID token's issue time is in the future")]
    IssuedInFuture,
    #[error("the ID token is not valid yet")]
    NotYetValid,
    #[error("the ID token does not carry this login's nonce")]
    NonceMismatch,
}

/// Why a login could not be started or completed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SsoError {
    /// Our side is set up wrongly (a plain-http issuer in production, a bad redirect
    /// URI). Not the user's fault, and not the provider's.
    #[error("the SSO configuration is not usable: {0}")]
    Config(String),
    /// Network failure, timeout or a 5xx from the provider.
    #[error("the identity provider could not be reached: {0}")]
    Unavailable(String),
    /// The discovery document or the key set is unusable: malformed, or naming another
    /// issuer than the configured one.
    #[error("the identity provider's metadata is not acceptable: {0}")]
    Metadata(String),
    /// The token endpoint refused the code exchange (`invalid_grant` for a used or
    /// expired code or a wrong PKCE verifier, `invalid_client` for a wrong secret).
    #[error("the identity provider refused the login: {error}")]
    CodeRejected {
        /// The OAuth error code.
        error: String,
        description: Option<String>,
    },
    /// The token endpoint answered with something that is not a token response.
    #[error("the identity provider's token response is malformed: {0}")]
    TokenResponse(String),
    #[error(transparent)]
    IdToken(#[from] IdTokenError),
}

/// The relying-party side of OpenID Connect's authorization-code flow with PKCE.
#[async_trait]
pub trait OidcClient: Send + Sync {
    /// Start a login: where to redirect the browser, and what to keep until it returns
    /// to `redirect_uri`.
    async fn authorization_request(
        &self,
        provider: &SsoProvider,
        redirect_uri: &str,
    ) -> Result<AuthorizationRequest, SsoError>;

    /// Finish a login: exchange the `code` the browser brought back for an ID token,
    /// and check that token. `pending` is what was kept under the returned `state`;
    /// `client_secret` is the secret `provider.secret_ref()` names; `redirect_uri` is
    /// the one the login was started with.
    async fn complete(
        &self,
        provider: &SsoProvider,
        client_secret: &str,
        redirect_uri: &str,
        code: &str,
        pending: &PendingLogin,
    ) -> Result<VerifiedIdentity, SsoError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entra(tenant: &str) -> SsoProvider {
        SsoProvider::Entra {
            tenant_id: EntraTenant::parse(tenant).unwrap(),
            client_id: ClientId::parse("11111111-2222-3333-4444-555555555555").unwrap(),
            secret_ref: "leasedesk/sso/acme".to_owned(),
        }
    }

    #[test]
    fn sso_entra_issuer_is_tenant_specific() {
        let provider = entra("9188040D-6C67-4C5B-B112-36A304B66DAD");
        assert_eq!(
            provider.issuer(),
            "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0"
        );
        assert_eq!(
            provider.issuer_with_entra_authority("http://127.0.0.1:4000/"),
            "http://127.0.0.1:4000/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0"
        );
        assert_eq!(
            entra("Contoso.onmicrosoft.com").issuer(),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0"
        );
        assert_eq!(provider.secret_ref(), "leasedesk/sso/acme");
    }

    #[test]
    fn sso_entra_tenant_is_a_guid_or_a_domain_of_one_tenant() {
        let id = EntraTenant::parse("9188040d-6c67-4c5b-b112-36a304b66dad").unwrap();
        assert!(id.is_tenant_id());
        let domain = EntraTenant::parse(" contoso.se ").unwrap();
        assert_eq!(domain.as_str(), "contoso.se");
        assert!(!domain.is_tenant_id());
        // A verified domain under an internationalized top-level domain, as punycode.
        let idn = EntraTenant::parse("xn--80ak6aa92e.xn--p1ai").unwrap();
        assert_eq!(idn.as_str(), "xn--80ak6aa92e.xn--p1ai");
        for multi in ["common", "Organizations", "consumers"] {
            assert!(matches!(
                EntraTenant::parse(multi),
                Err(SsoConfigError::MultiTenantEntra(_))
            ));
        }
        for bad in [
            "",
            "contoso",
            "9188040d6c674c5bb11236a304b66dad",
            "9188040d-6c67-4c5b-b112-36a304b66dag",
            "contoso.se/v2.0",
            "con toso.se",
            "-contoso.se",
            "contoso.123",
            "../../evil.com",
            "evil.com?x=",
            "evil.com#",
        ] {
            assert_eq!(
                EntraTenant::parse(bad),
                Err(SsoConfigError::InvalidEntraTenant),
                "{bad}"
            );
        }
    }

    #[test]
    fn sso_issuer_urls_are_https_or_loopback_http_and_kept_verbatim() {
        for good in [
            "https://accounts.google.com",
            "https://tenant.eu.auth0.com/",
            "https://idp.example.com/realms/acme",
            "http://127.0.0.1:8080/realm",
            "http://localhost:9000",
            "http://[::1]:9000",
        ] {
            assert_eq!(IssuerUrl::parse(good).unwrap().as_str(), good);
        }
        assert!(
            IssuerUrl::parse("http://127.0.0.1:1")
                .unwrap()
                .is_plain_http()
        );
        assert!(
            !IssuerUrl::parse("https://a.example")
                .unwrap()
                .is_plain_http()
        );
        for bad in [
            "idp.example.com",
            "http://idp.example.com",
            "ftp://idp.example.com",
            "https://idp.example.com/?tenant=1",
            "https://idp.example.com/#x",
            "https://user:pw@idp.example.com",
            "https://10.0.0.5/",
            "https://169.254.169.254/latest",
            "https://[fd00::1]/",
            "mailto:a@b.se",
        ] {
            assert!(
                matches!(IssuerUrl::parse(bad), Err(SsoConfigError::InvalidIssuer(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn sso_client_ids_are_printable() {
        assert_eq!(ClientId::parse(" abc-123 ").unwrap().as_str(), "abc-123");
        assert!(ClientId::parse("").is_err());
        assert!(ClientId::parse("a\nb").is_err());
        assert!(ClientId::parse(&"x".repeat(256)).is_err());
    }

    #[test]
    fn sso_provider_round_trips_and_validates_when_read() {
        let provider = SsoProvider::Generic {
            issuer: IssuerUrl::parse("https://idp.example.com").unwrap(),
            client_id: ClientId::parse("leasedesk").unwrap(),
            secret_ref: "ref".to_owned(),
        };
        let json = serde_json::to_value(&provider).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "generic", "issuer": "https://idp.example.com",
                               "clientId": "leasedesk", "secretRef": "ref"})
        );
        assert_eq!(
            serde_json::from_value::<SsoProvider>(json).unwrap(),
            provider
        );
        let entra = serde_json::json!({"kind": "entra", "tenantId": "common",
                                       "clientId": "x", "secretRef": "ref"});
        assert!(serde_json::from_value::<SsoProvider>(entra).is_err());
        let http = serde_json::json!({"kind": "generic", "issuer": "http://idp.example.com",
                                      "clientId": "x", "secretRef": "ref"});
        assert!(serde_json::from_value::<SsoProvider>(http).is_err());
    }

    #[test]
    fn sso_pending_login_debug_shows_no_values() {
        let pending = PendingLogin {
            state: "state-value".to_owned(),
            nonce: "nonce-value".to_owned(),
            pkce_verifier: "verifier-value".to_owned(),
        };
        let shown = format!("{pending:?}");
        assert!(!shown.contains("value"), "{shown}");
    }
}
