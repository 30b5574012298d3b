//! OpenID Connect relying party: the `domain::sso::OidcClient` port over our reqwest,
//! with the authorization-code flow, PKCE S256, and ID tokens checked as OpenID Connect
//! Core 3.1.3.7 asks.
//!
//! Built on `jsonwebtoken` (RS256 signatures through aws-lc-rs, already linked for our
//! own tokens) rather than the `openidconnect` crate. openidconnect 4.1 works over any
//! HTTP client, but it brings 63 crates we do not otherwise build, among them a second
//! crypto stack (RustCrypto `rsa` 0.9, `p256`/`p384`, `ed25519-dalek`, two generations
//! of `der`/`pkcs8`/`spki`) and `serde_with` with `jiff` and a time-zone database; it
//! has no key-set refresh on an unknown `kid`, which we would write anyway; and its
//! discovery refuses a document whose issuer differs from the URL it was fetched from,
//! which is exactly what Entra does for a tenant configured by its domain name. What
//! remains for us is small: a few HTTP calls and the claim checks below.
//!
//! Caching: each issuer's discovery document and key set are kept for a while. An ID
//! token signed under a `kid` we do not know makes us fetch the key set again (the
//! provider may have rotated its keys), but at most once per
//! `jwks_refresh_min_interval` per issuer, so a flood of tokens with made-up `kid`s
//! cannot make us hammer the provider.
//!
//! Nothing secret reaches a log line or an error text: not the client secret, the
//! code, the PKCE verifier, the nonce, nor any token.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::clock::Clock;
use domain::sso::{
    AuthorizationRequest, IdTokenError, OidcClient, PendingLogin, SsoError, SsoProvider,
    VerifiedIdentity, is_guid,
};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the relying party behaves; the defaults are for production.
#[derive(Clone, Debug)]
pub struct OidcSettings {
    /// Where Entra ID lives. Tests point it at a loopback provider.
    pub entra_authority: String,
    /// Accept plain-http issuers and endpoints on loopback (tests only).
    pub allow_http_loopback: bool,
    pub connect_timeout: Duration,
    /// For a whole request, answer included.
    pub request_timeout: Duration,
    /// Clock difference tolerated between us and the provider for `exp`, `iat`, `nbf`.
    pub clock_skew: Duration,
    /// How long a discovery document is used before it is fetched again.
    pub discovery_max_age: Duration,
    /// How long a key set is used before it is fetched again.
    pub jwks_max_age: Duration,
    /// The least time between two key-set fetches caused by unknown `kid`s.
    pub jwks_refresh_min_interval: Duration,
    /// The scopes asked for; `openid` must be among them.
    pub scope: String,
}

impl Default for OidcSettings {
    fn default() -> Self {
        Self {
            entra_authority: domain::sso::ENTRA_AUTHORITY.to_owned(),
            allow_http_loopback: false,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            clock_skew: Duration::from_secs(60),
            discovery_max_age: Duration::from_secs(3600),
            jwks_max_age: Duration::from_secs(3600),
            jwks_refresh_min_interval: Duration::from_secs(60),
            scope: "openid email profile".to_owned(),
        }
    }
}

/// Answers larger than this are refused: discovery documents and key sets are a few KiB.
const MAX_BODY_BYTES: usize = 512 * 1024;
/// How much of a provider's error text we keep.
const MAX_ERROR_TEXT: usize = 300;
/// Random bytes in state, nonce and PKCE verifier (256 bits; the verifier comes out at
/// 43 characters, the least RFC 7636 allows).
const RANDOM_BYTES: usize = 32;

/// The OpenID Connect relying party. One per process: it holds the caches.
pub struct OidcRelyingParty {
    http: reqwest::Client,
    settings: OidcSettings,
    clock: Arc<dyn Clock>,
    /// Per issuer (the configured one, which is where its discovery document is).
    issuers: Mutex<HashMap<String, Arc<IssuerCache>>>,
}

#[derive(Default)]
struct IssuerCache {
    /// The async locks make concurrent logins wait for one fetch instead of each
    /// fetching.
    discovery: tokio::sync::Mutex<Option<(Arc<ProviderMetadata>, Instant)>>,
    keys: tokio::sync::Mutex<KeySet>,
}

#[derive(Default)]
struct KeySet {
    /// Where the keys came from; a changed discovery document may name another place.
    jwks_uri: String,
    /// By `kid`; keys published without one are under `None`.
    keys: HashMap<Option<String>, DecodingKey>,
    fetched: Option<Instant>,
    /// The last fetch an unknown `kid` caused.
    last_unknown_kid_fetch: Option<Instant>,
}

/// The parts of a discovery document (OpenID Connect Discovery 3) we use.
#[derive(Debug, Deserialize)]
struct ProviderMetadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    code_challenge_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    id_token_signing_alg_values_supported: Option<Vec<String>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientAuth {
    Basic,
    Post,
}

impl OidcRelyingParty {
    pub fn new(settings: OidcSettings, clock: Arc<dyn Clock>) -> Result<Self, SsoError> {
        if !settings.scope.split(' ').any(|scope| scope == "openid") {
            return Err(SsoError::Config(
                "the scope must include `openid`".to_owned(),
            ));
        }
        check_endpoint(
            "the Entra authority",
            &settings.entra_authority,
            settings.allow_http_loopback,
        )?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("leasedesk-sso/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            // A provider's endpoints are where its metadata says; following redirects
            // would let a document send us anywhere.
            .redirect(reqwest::redirect::Policy::none())
            .https_only(!settings.allow_http_loopback)
            .build()
            .map_err(|error| SsoError::Config(describe(&error)))?;
        Ok(Self {
            http,
            settings,
            clock,
            issuers: Mutex::new(HashMap::new()),
        })
    }

    fn cache_for(&self, issuer: &str) -> Arc<IssuerCache> {
        let mut issuers = self
            .issuers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        issuers.entry(issuer.to_owned()).or_default().clone()
    }

    /// The provider's discovery document, from the cache while it is fresh.
    async fn metadata(
        &self,
        provider: &SsoProvider,
    ) -> Result<(Arc<IssuerCache>, Arc<ProviderMetadata>), SsoError> {
        let configured = provider.issuer_with_entra_authority(&self.settings.entra_authority);
        check_endpoint("the issuer", &configured, self.settings.allow_http_loopback)?;
        let cache = self.cache_for(&configured);
        let mut discovery = cache.discovery.lock().await;
        if let Some((metadata, fetched)) = discovery.as_ref()
            && fetched.elapsed() < self.settings.discovery_max_age
        {
            return Ok((cache.clone(), metadata.clone()));
        }
        // OpenID Connect Discovery 4: a trailing slash of the issuer is not doubled.
        let url = format!(
            "{}/.well-known/openid-configuration",
            configured.trim_end_matches('/')
        );
        let metadata: ProviderMetadata = self.get_json("discovery document", &url).await?;
        self.check_metadata(provider, &configured, &metadata)?;
        tracing::info!(issuer = %metadata.issuer, "OIDC discovery document loaded");
        let metadata = Arc::new(metadata);
        *discovery = Some((metadata.clone(), Instant::now()));
        drop(discovery);
        Ok((cache, metadata))
    }

    fn check_metadata(
        &self,
        provider: &SsoProvider,
        configured: &str,
        metadata: &ProviderMetadata,
    ) -> Result<(), SsoError> {
        let refuse = |reason: String| Err(SsoError::Metadata(reason));
        let issuer_ok = match provider {
            // Configured by domain name: Entra's document names the tenant by its id,
            // under the same authority. Any tenant-specific issuer there is the
            // tenant the domain belongs to; a template (`{tenantid}`) is not.
            SsoProvider::Entra { tenant_id, .. } if !tenant_id.is_tenant_id() => {
                let authority = self.settings.entra_authority.trim_end_matches('/');
                metadata
                    .issuer
                    .strip_prefix(authority)
                    .and_then(|rest| rest.strip_prefix('/'))
                    .and_then(|rest| rest.strip_suffix("/v2.0"))
                    .is_some_and(is_guid)
            }
            _ => metadata.issuer == configured,
        };
        if !issuer_ok {
            return refuse(format!(
                "the discovery document names the issuer `{}`, not `{configured}`",
                shorten(&metadata.issuer)
            ));
        }
        for (what, url) in [
            ("authorization_endpoint", &metadata.authorization_endpoint),
            ("token_endpoint", &metadata.token_endpoint),
            ("jwks_uri", &metadata.jwks_uri),
        ] {
            check_endpoint(what, url, self.settings.allow_http_loopback)
                .or_else(|error| refuse(error.to_string()))?;
        }
        if let Some(methods) = &metadata.code_challenge_methods_supported
            && !methods.iter().any(|method| method == "S256")
        {
            return refuse("the provider does not support PKCE with S256".to_owned());
        }
        if let Some(algorithms) = &metadata.id_token_signing_alg_values_supported
            && !algorithms.iter().any(|alg| alg == "RS256")
        {
            return refuse("the provider does not sign ID tokens with RS256".to_owned());
        }
        client_auth(metadata).map(|_| ())
    }

    async fn get_json<T: DeserializeOwned>(&self, what: &str, url: &str) -> Result<T, SsoError> {
        let response = self
            .http
            .get(url)
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .send()
            .await
            .map_err(|error| SsoError::Unavailable(format!("{what}: {}", describe(&error))))?;
        let status = response.status();
        let body = read_body(response).await?;
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(SsoError::Unavailable(format!("{what}: HTTP {status}")));
        }
        if !status.is_success() {
            return Err(SsoError::Metadata(format!("{what}: HTTP {status}")));
        }
        serde_json::from_slice(&body)
            .map_err(|error| SsoError::Metadata(format!("{what} is malformed: {error}")))
    }

    /// The key an ID token names, fetching the key set when it is missing or old, and
    /// again (rate-limited) when the `kid` is unknown.
    async fn signing_key(
        &self,
        cache: &IssuerCache,
        metadata: &ProviderMetadata,
        kid: Option<&str>,
    ) -> Result<DecodingKey, SsoError> {
        let mut set = cache.keys.lock().await;
        let fresh = set.jwks_uri == metadata.jwks_uri
            && set
                .fetched
                .is_some_and(|fetched| fetched.elapsed() < self.settings.jwks_max_age);
        if !fresh {
            self.load_keys(&mut set, metadata).await?;
        }
        if let Some(key) = set.find(kid)? {
            return Ok(key);
        }
        // Just loaded: asking again now would bring the same keys.
        if !fresh {
            return Err(IdTokenError::UnknownSigningKey.into());
        }
        if set
            .last_unknown_kid_fetch
            .is_some_and(|last| last.elapsed() < self.settings.jwks_refresh_min_interval)
        {
            tracing::warn!(
                issuer = %metadata.issuer,
                "ID token under an unknown key id; the key set was refreshed too recently to ask again"
            );
            return Err(IdTokenError::UnknownSigningKey.into());
        }
        // Counted before the fetch, so a failing provider is not asked more often either.
        set.last_unknown_kid_fetch = Some(Instant::now());
        tracing::info!(issuer = %metadata.issuer, "ID token under an unknown key id; refreshing the key set");
        self.load_keys(&mut set, metadata).await?;
        set.find(kid)?
            .ok_or(SsoError::IdToken(IdTokenError::UnknownSigningKey))
    }

    async fn load_keys(
        &self,
        set: &mut KeySet,
        metadata: &ProviderMetadata,
    ) -> Result<(), SsoError> {
        let document: JwkSet = self.get_json("key set", &metadata.jwks_uri).await?;
        let mut keys = HashMap::new();
        for jwk in document.keys {
            // Only RSA signing keys for RS256; encryption keys and others are not ours.
            let usable = jwk.kty == "RSA"
                && jwk
                    .key_use
                    .as_deref()
                    .is_none_or(|key_use| key_use == "sig")
                && jwk.alg.as_deref().is_none_or(|alg| alg == "RS256");
            let (true, Some(n), Some(e)) = (usable, &jwk.n, &jwk.e) else {
                continue;
            };
            match DecodingKey::from_rsa_components(n, e) {
                Ok(key) => {
                    keys.entry(jwk.kid).or_insert(key);
                }
                Err(error) => {
                    tracing::warn!(issuer = %metadata.issuer, %error, "skipping an unreadable key in the key set");
                }
            }
        }
        if keys.is_empty() {
            tracing::warn!(issuer = %metadata.issuer, "the key set has no RS256 signing key");
        }
        set.jwks_uri = metadata.jwks_uri.clone();
        set.keys = keys;
        set.fetched = Some(Instant::now());
        Ok(())
    }

    /// Exchange the code at the token endpoint (RFC 6749 4.1.3, RFC 7636 4.5); the ID
    /// token from the answer.
    async fn exchange_code(
        &self,
        metadata: &ProviderMetadata,
        client_id: &str,
        client_secret: &str,
        redirect_uri: &str,
        code: &str,
        pending: &PendingLogin,
    ) -> Result<String, SsoError> {
        let auth = client_auth(metadata)?;
        let body = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "authorization_code")
                .append_pair("code", code)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("code_verifier", &pending.pkce_verifier);
            // With Basic the header names the client; the body does not repeat it.
            if auth == ClientAuth::Post {
                form.append_pair("client_id", client_id)
                    .append_pair("client_secret", client_secret);
            }
            form.finish()
        };
        let mut request = self
            .http
            .post(&metadata.token_endpoint)
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
        if auth == ClientAuth::Basic {
            // RFC 6749 2.3.1: id and secret are form-encoded before Basic encoding.
            request = request.basic_auth(form_encode(client_id), Some(form_encode(client_secret)));
        }
        let response = request.body(body).send().await.map_err(|error| {
            SsoError::Unavailable(format!("token endpoint: {}", describe(&error)))
        })?;
        let status = response.status();
        let body = read_body(response).await?;
        let redact = |text: &str| {
            let mut text = shorten(text);
            for secret in [code, client_secret, pending.pkce_verifier.as_str()] {
                if !secret.is_empty() {
                    text = text.replace(secret, "[redacted]");
                }
            }
            text
        };
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(SsoError::Unavailable(format!(
                "token endpoint: HTTP {status}"
            )));
        }
        if !status.is_success() {
            let answer: OAuthErrorAnswer = serde_json::from_slice(&body).map_err(|_| {
                SsoError::TokenResponse(format!("HTTP {status} without an OAuth error"))
            })?;
            return Err(SsoError::CodeRejected {
                error: redact(&answer.error),
                description: answer.error_description.as_deref().map(redact),
            });
        }
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|error| {
            // serde's message may quote a value; name only what is wrong.
            SsoError::TokenResponse(format!(
                "not a token response (line {}, column {})",
                error.line(),
                error.column()
            ))
        })?;
        answer
            .id_token
            .ok_or_else(|| SsoError::TokenResponse("no id_token in the answer".to_owned()))
    }

    /// OpenID Connect Core 3.1.3.7, for a token from the token endpoint over TLS.
    async fn verify_id_token(
        &self,
        cache: &IssuerCache,
        metadata: &ProviderMetadata,
        client_id: &str,
        id_token: &str,
        pending: &PendingLogin,
    ) -> Result<VerifiedIdentity, SsoError> {
        let header = token_header(id_token)?;
        // Step 6: the algorithm the provider signs with; never `none` and never an HMAC,
        // whose key would be our client secret.
        if header.alg != "RS256" {
            return Err(IdTokenError::DisallowedAlgorithm(shorten(&header.alg)).into());
        }
        if header.crit.is_some() {
            return Err(IdTokenError::Malformed(
                "critical header extensions are not understood".to_owned(),
            )
            .into());
        }
        let key = self
            .signing_key(cache, metadata, header.kid.as_deref())
            .await?;
        let mut validation = Validation::new(Algorithm::RS256);
        // The claims are checked below, against our clock and with our errors.
        validation.required_spec_claims = HashSet::new();
        validation.validate_exp = false;
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<IdClaims>(id_token, &key, &validation)
            .map_err(|error| match error.kind() {
                ErrorKind::InvalidSignature => IdTokenError::BadSignature,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    IdTokenError::DisallowedAlgorithm(header.alg.clone())
                }
                ErrorKind::Json(error) => IdTokenError::Malformed(unreadable_claims(error)),
                _ => IdTokenError::Malformed(error.to_string()),
            })?
            .claims;
        self.check_claims(&claims, metadata, client_id, pending)?;
        Ok(VerifiedIdentity {
            issuer: claims.iss,
            subject: claims.sub,
            email: claims.email,
            email_verified: claims.email_verified.is_some_and(|verified| verified.0),
            name: claims.name,
            groups: claims.groups.unwrap_or_default(),
        })
    }

    fn check_claims(
        &self,
        claims: &IdClaims,
        metadata: &ProviderMetadata,
        client_id: &str,
        pending: &PendingLogin,
    ) -> Result<(), IdTokenError> {
        // Step 2: exactly the issuer of the discovery document.
        if claims.iss != metadata.issuer {
            return Err(IdTokenError::WrongIssuer {
                expected: metadata.issuer.clone(),
                found: shorten(&claims.iss),
            });
        }
        if claims.sub.is_empty() || claims.sub.len() > 255 {
            return Err(IdTokenError::Malformed(
                "`sub` must be 1 to 255 characters".to_owned(),
            ));
        }
        // Steps 3 to 5: meant for us, and when shared, handed to us.
        let audiences = claims.aud.as_slice();
        if !audiences.iter().any(|aud| aud == client_id) {
            return Err(IdTokenError::WrongAudience);
        }
        match &claims.azp {
            Some(azp) if azp != client_id => return Err(IdTokenError::WrongAuthorizedParty),
            None if audiences.len() > 1 => return Err(IdTokenError::MissingAuthorizedParty),
            _ => {}
        }
        // Steps 9 and 10, and `nbf` when present, allowing for clock skew.
        let now = self.clock.now().timestamp();
        let skew = i64::try_from(self.settings.clock_skew.as_secs()).unwrap_or(i64::MAX);
        if now >= claims.exp.saturating_add(skew) {
            return Err(IdTokenError::Expired);
        }
        if claims.iat > now.saturating_add(skew) {
            return Err(IdTokenError::IssuedInFuture);
        }
        if claims.nbf.is_some_and(|nbf| nbf > now.saturating_add(skew)) {
            return Err(IdTokenError::NotYetValid);
        }
        // Step 11: the nonce we sent.
        let nonce_matches = claims
            .nonce
            .as_deref()
            .is_some_and(|nonce| constant_time_eq(nonce.as_bytes(), pending.nonce.as_bytes()));
        if !nonce_matches {
            return Err(IdTokenError::NonceMismatch);
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl OidcClient for OidcRelyingParty {
    async fn authorization_request(
        &self,
        provider: &SsoProvider,
        redirect_uri: &str,
    ) -> Result<AuthorizationRequest, SsoError> {
        check_redirect_uri(redirect_uri)?;
        let (_, metadata) = self.metadata(provider).await?;
        let pending = PendingLogin {
            state: random_token()?,
            nonce: random_token()?,
            pkce_verifier: random_token()?,
        };
        let mut url = Url::parse(&metadata.authorization_endpoint)
            .map_err(|error| SsoError::Metadata(format!("authorization_endpoint: {error}")))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", provider.client_id().as_str())
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &self.settings.scope)
            .append_pair("state", &pending.state)
            .append_pair("nonce", &pending.nonce)
            .append_pair("code_challenge", &pkce_challenge(&pending.pkce_verifier))
            .append_pair("code_challenge_method", "S256");
        Ok(AuthorizationRequest {
            url: url.into(),
            pending,
        })
    }

    async fn complete(
        &self,
        provider: &SsoProvider,
        client_secret: &str,
        redirect_uri: &str,
        code: &str,
        pending: &PendingLogin,
    ) -> Result<VerifiedIdentity, SsoError> {
        check_redirect_uri(redirect_uri)?;
        let (cache, metadata) = self.metadata(provider).await?;
        let client_id = provider.client_id().as_str();
        let result = async {
            let id_token = self
                .exchange_code(
                    &metadata,
                    client_id,
                    client_secret,
                    redirect_uri,
                    code,
                    pending,
                )
                .await?;
            self.verify_id_token(&cache, &metadata, client_id, &id_token, pending)
                .await
        }
        .await;
        match &result {
            Ok(_) => tracing::info!(issuer = %metadata.issuer, "SSO login verified"),
            Err(error) => tracing::warn!(issuer = %metadata.issuer, %error, "SSO login refused"),
        }
        result
    }
}

impl KeySet {
    /// The key for `kid`; a token without one may use the only key of the set.
    fn find(&self, kid: Option<&str>) -> Result<Option<DecodingKey>, SsoError> {
        match kid {
            Some(kid) => Ok(self.keys.get(&Some(kid.to_owned())).cloned()),
            None => match self.keys.len() {
                0 => Ok(None),
                1 => Ok(self.keys.values().next().cloned()),
                _ => Err(IdTokenError::Malformed(
                    "no `kid`, and the provider has several keys".to_owned(),
                )
                .into()),
            },
        }
    }
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

/// One JSON Web Key, loosely: keys of other types are skipped, not refused.
#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    key_use: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    id_token: Option<String>,
}

#[derive(Deserialize)]
struct OAuthErrorAnswer {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// The JOSE header, read by us so that any `alg` (`none` included) gets a clear answer.
#[derive(Deserialize)]
struct TokenHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

fn token_header(token: &str) -> Result<TokenHeader, IdTokenError> {
    let malformed = |reason: &str| IdTokenError::Malformed(reason.to_owned());
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("not a signed JWT (three parts)"));
    };
    let json = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| malformed("the header is not base64url"))?;
    serde_json::from_slice(&json).map_err(|_| malformed("the header is not a JOSE header"))
}

#[derive(Deserialize)]
struct IdClaims {
    iss: String,
    sub: String,
    aud: Audience,
    #[serde(deserialize_with = "numeric_date")]
    exp: i64,
    #[serde(deserialize_with = "numeric_date")]
    iat: i64,
    #[serde(default, deserialize_with = "optional_numeric_date")]
    nbf: Option<i64>,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<Flag>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    groups: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn as_slice(&self) -> &[String] {
        match self {
            Self::One(aud) => std::slice::from_ref(aud),
            Self::Many(auds) => auds,
        }
    }
}

/// A boolean claim; some providers (Cognito among them) send `"true"` as a string.
struct Flag(bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Text(String),
        }
        Ok(Flag(match Raw::deserialize(deserializer)? {
            Raw::Bool(value) => value,
            Raw::Text(text) => text.eq_ignore_ascii_case("true"),
        }))
    }
}

/// Why the claims could not be read, without quoting any of their values.
fn unreadable_claims(error: &serde_json::Error) -> String {
    let message = error.to_string();
    if message.starts_with("missing field") {
        message
    } else {
        format!(
            "the claims are not of the expected types (column {})",
            error.column()
        )
    }
}

/// Seconds since the epoch; RFC 7519 allows fractions, which we drop.
fn numeric_date<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    number
        .as_i64()
        .or_else(|| number.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
        .ok_or_else(|| serde::de::Error::custom("not a NumericDate"))
}

fn optional_numeric_date<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    numeric_date(deserializer).map(Some)
}

/// Basic for preference (the default of RFC 6749 and of OpenID Connect Discovery when
/// the document says nothing), else the form body.
fn client_auth(metadata: &ProviderMetadata) -> Result<ClientAuth, SsoError> {
    let Some(methods) = &metadata.token_endpoint_auth_methods_supported else {
        return Ok(ClientAuth::Basic);
    };
    if methods.iter().any(|method| method == "client_secret_basic") {
        Ok(ClientAuth::Basic)
    } else if methods.iter().any(|method| method == "client_secret_post") {
        Ok(ClientAuth::Post)
    } else {
        Err(SsoError::Metadata(
            "the token endpoint accepts neither client_secret_basic nor client_secret_post"
                .to_owned(),
        ))
    }
}

/// An endpoint must be https, or http on loopback when that is allowed.
fn check_endpoint(what: &str, text: &str, allow_http_loopback: bool) -> Result<(), SsoError> {
    let refuse = |reason: &str| {
        Err(SsoError::Config(format!(
            "{what} `{}` {reason}",
            shorten(text)
        )))
    };
    let Ok(url) = Url::parse(text) else {
        return refuse("is not a URL");
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_http_loopback && is_loopback(&url) => Ok(()),
        "http" => refuse("must use https"),
        _ => refuse("must be an https URL"),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// Our callback: an absolute http(s) URL without a fragment (RFC 6749 3.1.2).
fn check_redirect_uri(redirect_uri: &str) -> Result<(), SsoError> {
    let valid = Url::parse(redirect_uri).is_ok_and(|url| {
        matches!(url.scheme(), "https" | "http") && url.fragment().is_none() && url.has_host()
    });
    if valid {
        Ok(())
    } else {
        Err(SsoError::Config(
            "the redirect URI must be an absolute http(s) URL without a fragment".to_owned(),
        ))
    }
}

/// RFC 7636 4.2: BASE64URL(SHA256(verifier)).
fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn random_token() -> Result<String, SsoError> {
    let mut bytes = [0u8; RANDOM_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|error| SsoError::Config(format!("no system randomness: {error}")))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// `text` as `application/x-www-form-urlencoded` encodes a value.
fn form_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// Text from the provider, cut to a length fit for an error message.
fn shorten(text: &str) -> String {
    text.chars()
        .take(MAX_ERROR_TEXT)
        .filter(|c| !c.is_control())
        .collect()
}

async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, SsoError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| SsoError::Unavailable(describe(&error)))?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(SsoError::Metadata(format!(
                "an answer larger than {MAX_BODY_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error with its causes, where reqwest says what actually went wrong.
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    #[test]
    fn headers_are_read_before_any_key_is_looked_up() {
        let token = format!("{}.{}.", encode(r#"{"alg":"none"}"#), encode("{}"));
        assert_eq!(token_header(&token).unwrap().alg, "none");
        let crit = format!(
            "{}.e30.sig",
            encode(r#"{"alg":"RS256","kid":"k","crit":["exp"]}"#)
        );
        let header = token_header(&crit).unwrap();
        assert_eq!(header.kid.as_deref(), Some("k"));
        assert!(header.crit.is_some());
        for bad in ["a.b", "a.b.c.d", "!!.e30.sig", "e30.e30.sig"] {
            assert!(
                matches!(token_header(bad), Err(IdTokenError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn claims_accept_the_shapes_providers_send() {
        let claims: IdClaims = serde_json::from_str(
            r#"{"iss":"i","sub":"s","aud":["a","b"],"exp":1700000000.5,"iat":1699999999,
                "email_verified":"true","groups":["g"]}"#,
        )
        .unwrap();
        assert_eq!(claims.exp, 1_700_000_000);
        assert_eq!(claims.aud.as_slice(), ["a", "b"]);
        assert!(claims.email_verified.unwrap().0);
        let single: IdClaims = serde_json::from_str(
            r#"{"iss":"i","sub":"s","aud":"a","exp":1,"iat":1,"nbf":1,"email_verified":false}"#,
        )
        .unwrap();
        assert_eq!(single.aud.as_slice(), ["a"]);
        assert_eq!(single.nbf, Some(1));
        assert!(!single.email_verified.unwrap().0);
        let missing =
            serde_json::from_str::<IdClaims>(r#"{"iss":"i","sub":"s","aud":"a","iat":1}"#)
                .err()
                .unwrap();
        assert!(unreadable_claims(&missing).starts_with("missing field `exp`"));
        let mistyped = serde_json::from_str::<IdClaims>(
            r#"{"iss":"i","sub":"s","aud":"a","exp":"secret-value","iat":1}"#,
        )
        .err()
        .unwrap();
        assert!(mistyped.to_string().contains("secret-value"));
        let text = unreadable_claims(&mistyped);
        assert!(text.starts_with("the claims are not of the expected types"));
        assert!(!text.contains("secret-value"), "{text}");
    }

    #[test]
    fn client_authentication_follows_the_discovery_document() {
        let metadata = |methods: Option<&[&str]>| ProviderMetadata {
            issuer: String::new(),
            authorization_endpoint: String::new(),
            token_endpoint: String::new(),
            jwks_uri: String::new(),
            token_endpoint_auth_methods_supported: methods
                .map(|methods| methods.iter().map(|m| (*m).to_owned()).collect()),
            code_challenge_methods_supported: None,
            id_token_signing_alg_values_supported: None,
        };
        assert_eq!(client_auth(&metadata(None)).unwrap(), ClientAuth::Basic);
        assert_eq!(
            client_auth(&metadata(Some(&[
                "client_secret_post",
                "client_secret_basic"
            ])))
            .unwrap(),
            ClientAuth::Basic
        );
        assert_eq!(
            client_auth(&metadata(Some(&["private_key_jwt", "client_secret_post"]))).unwrap(),
            ClientAuth::Post
        );
        assert!(client_auth(&metadata(Some(&["private_key_jwt"]))).is_err());
    }

    #[test]
    fn endpoints_are_https_unless_loopback_is_allowed() {
        assert!(check_endpoint("x", "https://idp.example/token", false).is_ok());
        assert!(check_endpoint("x", "http://127.0.0.1:9/token", false).is_err());
        assert!(check_endpoint("x", "http://127.0.0.1:9/token", true).is_ok());
        assert!(check_endpoint("x", "http://[::1]:9/token", true).is_ok());
        assert!(check_endpoint("x", "http://idp.example/token", true).is_err());
        assert!(check_endpoint("x", "file:///etc/passwd", true).is_err());
        assert!(check_redirect_uri("https://app.example/sso/callback").is_ok());
        assert!(check_redirect_uri("https://app.example/cb#frag").is_err());
        assert!(check_redirect_uri("/sso/callback").is_err());
    }

    #[test]
    fn form_encoding_and_comparison() {
        assert_eq!(form_encode("a b~c:d"), "a+b%7Ec%3Ad");
        assert!(constant_time_eq(b"nonce", b"nonce"));
        assert!(!constant_time_eq(b"nonce", b"nonc3"));
        assert!(!constant_time_eq(b"nonce", b"nonce!"));
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
