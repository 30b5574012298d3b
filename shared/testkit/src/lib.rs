//! Protocol peers for tests: [`OidcTestProvider`], an OpenID Connect provider on
//! loopback that speaks the real protocol (discovery, JWKS, authorization endpoint,
//! token endpoint with PKCE) and can be told to misbehave; [`DnsTestServer`], a
//! name server on loopback that answers TXT queries from a table (`dns`); and
//! [`HookedTable`], a table with hooks before the calls it passes on.
//!
//! They are test infrastructure: they panic when they cannot start, keep everything in
//! memory, and stop when dropped.

mod dns;
mod table;

pub use dns::{DnsBehaviour, DnsTestServer};
pub use table::{HookedTable, TableHooks};

use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use aws_lc_rs::{digest, hmac, rand};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::task::JoinHandle;

/// The user `/authorize` signs in, without asking anyone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestUser {
    pub sub: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub groups: Vec<String>,
}

/// A way to spoil the next ID token the token endpoint issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenFault {
    /// `aud` names another client only.
    WrongAudience,
    /// `aud` names this client and another, with no `azp`.
    ExtraAudienceWithoutAzp,
    /// `aud` names this client and another, and `azp` the other.
    WrongAuthorizedParty,
    /// `iss` is another issuer.
    WrongIssuer,
    /// `exp` ten minutes ago.
    Expired,
    /// `iat` ten minutes from now.
    IssuedInFuture,
    /// `nbf` ten minutes from now.
    NotYetValid,
    /// A nonce other than the one `/authorize` was given.
    WrongNonce,
    /// `alg: none` and no signature.
    AlgNone,
    /// HS256 with the client secret as the key: the classic algorithm confusion.
    Hs256WithClientSecret,
    /// RS256 by a key the JWKS does not have, under a `kid` it does not have either.
    UnknownKey,
    /// RS256 by a key the JWKS does not have, under the current key's `kid`.
    ForgedSignature,
}

/// How clients may authenticate at the token endpoint (RFC 6749 2.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuthMethod {
    /// HTTP Basic with the form-encoded client id and secret.
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

impl ClientAuthMethod {
    fn name(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
        }
    }
}

/// How the provider is set up.
#[derive(Clone, Debug)]
pub struct ProviderOptions {
    /// The issuer's path after `http://127.0.0.1:{port}`: empty, or like
    /// `/{tenant}/v2.0` to stand in for Entra ID.
    pub path: String,
    /// Further paths that serve the same discovery document (naming the issuer at
    /// `path`), as Entra serves its tenant's document under each of its domain names.
    pub discovery_aliases: Vec<String>,
    /// Token endpoint authentication the provider accepts and advertises.
    pub auth_methods: Vec<ClientAuthMethod>,
    /// The one registered client.
    pub client_id: String,
    pub client_secret: String,
}

impl Default for ProviderOptions {
    fn default() -> Self {
        Self {
            path: String::new(),
            discovery_aliases: Vec::new(),
            auth_methods: vec![
                ClientAuthMethod::ClientSecretBasic,
                ClientAuthMethod::ClientSecretPost,
            ],
            client_id: "leasedesk-test-client".to_owned(),
            client_secret: format!("secret~{}", random_token(24)),
        }
    }
}

/// How long a code may wait for its exchange.
const CODE_LIFETIME: Duration = Duration::from_secs(600);
/// How long the ID tokens it issues are valid.
const ID_TOKEN_LIFETIME: u64 = 300;

/// An OpenID Connect provider on `127.0.0.1`, port chosen by the system. It stops when
/// dropped.
pub struct OidcTestProvider {
    base_url: String,
    issuer: String,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

struct Shared {
    issuer: String,
    options: ProviderOptions,
    inner: Mutex<Inner>,
    jwks_fetches: AtomicUsize,
    discovery_fetches: AtomicUsize,
}

struct Inner {
    key: SigningKey,
    next_user: Option<TestUser>,
    next_fault: Option<TokenFault>,
    codes: HashMap<String, IssuedCode>,
}

/// What `/authorize` promised, for `/token` to check.
struct IssuedCode {
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    nonce: Option<String>,
    user: TestUser,
    issued: Instant,
}

struct SigningKey {
    kid: String,
    pair: KeyPair,
}

impl SigningKey {
    fn generate() -> Self {
        let pair = KeyPair::generate(KeySize::Rsa2048).expect("an RSA key can be generated");
        Self {
            kid: random_token(12),
            pair,
        }
    }

    fn jwk(&self) -> Value {
        let public = PublicKeyComponents::<Vec<u8>>::from(self.pair.public_key());
        json!({
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(&public.n),
            "e": URL_SAFE_NO_PAD.encode(&public.e),
        })
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let mut signature = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &rand::SystemRandom::new(),
                message,
                &mut signature,
            )
            .expect("RS256 signing works");
        signature
    }
}

impl OidcTestProvider {
    /// A provider with the default options, its issuer at the root of its address.
    pub async fn start() -> Self {
        Self::start_with(ProviderOptions::default()).await
    }

    pub async fn start_with(options: ProviderOptions) -> Self {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("a loopback port can be bound");
        let address = listener
            .local_addr()
            .expect("a bound socket has an address");
        let base_url = format!("http://{address}");
        let issuer = format!("{base_url}{}", options.path);
        let shared = Arc::new(Shared {
            issuer: issuer.clone(),
            inner: Mutex::new(Inner {
                key: SigningKey::generate(),
                next_user: None,
                next_fault: None,
                codes: HashMap::new(),
            }),
            jwks_fetches: AtomicUsize::new(0),
            discovery_fetches: AtomicUsize::new(0),
            options,
        });
        let path = &shared.options.path;
        let mut router = Router::new()
            .route(
                &format!("{path}/.well-known/openid-configuration"),
                get(discovery),
            )
            .route(&format!("{path}/jwks"), get(jwks))
            .route(&format!("{path}/authorize"), get(authorize))
            .route(&format!("{path}/token"), post(token));
        for alias in &shared.options.discovery_aliases {
            router = router.route(
                &format!("{alias}/.well-known/openid-configuration"),
                get(discovery),
            );
        }
        let router = router.with_state(shared.clone());
        let server = tokio::spawn(async move {
            // The task is aborted on drop; an error here only ends the test's provider.
            let _ = axum::serve(listener, router).await;
        });
        Self {
            base_url,
            issuer,
            shared,
            server,
        }
    }

    /// The issuer, exactly as its tokens name it.
    pub fn issuer(&self) -> String {
        self.issuer.clone()
    }

    /// `http://127.0.0.1:{port}`: the authority when it stands in for Entra ID.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    pub fn client_id(&self) -> &str {
        &self.shared.options.client_id
    }

    pub fn client_secret(&self) -> &str {
        &self.shared.options.client_secret
    }

    /// Who `/authorize` signs in from now on. Until this is called it answers
    /// `error=access_denied`.
    pub fn set_next_user(&self, user: TestUser) {
        self.shared.lock().next_user = Some(user);
    }

    /// Spoil the next ID token issued; the one after is sound again.
    pub fn set_next_token_fault(&self, fault: TokenFault) {
        self.shared.lock().next_fault = Some(fault);
    }

    /// Sign with a new key under a new `kid`; the JWKS drops the old key.
    pub fn rotate_key(&self) {
        let key = SigningKey::generate();
        self.shared.lock().key = key;
    }

    /// The `kid` tokens are signed under now.
    pub fn current_kid(&self) -> String {
        self.shared.lock().key.kid.clone()
    }

    /// How many times `/jwks` was fetched.
    pub fn jwks_fetches(&self) -> usize {
        self.shared.jwks_fetches.load(Ordering::SeqCst)
    }

    /// How many times a discovery document was fetched.
    pub fn discovery_fetches(&self) -> usize {
        self.shared.discovery_fetches.load(Ordering::SeqCst)
    }
}

impl Drop for OidcTestProvider {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not take the provider down with it.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

async fn discovery(State(shared): State<Arc<Shared>>) -> Json<Value> {
    shared.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    let issuer = &shared.issuer;
    let methods: Vec<&str> = shared
        .options
        .auth_methods
        .iter()
        .map(|method| method.name())
        .collect();
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "profile"],
        "token_endpoint_auth_methods_supported": methods,
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "azp",
                             "email", "email_verified", "name", "groups"],
    }))
}

async fn jwks(State(shared): State<Arc<Shared>>) -> Json<Value> {
    shared.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let key = shared.lock().key.jwk();
    Json(json!({ "keys": [key] }))
}

async fn authorize(
    State(shared): State<Arc<Shared>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let param = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
    // Without a known client and a redirect URI there is nowhere safe to send an error.
    if param("client_id") != shared.options.client_id {
        return (StatusCode::BAD_REQUEST, "unknown client_id").into_response();
    }
    let redirect_uri = param("redirect_uri");
    if !(redirect_uri.starts_with("http://") || redirect_uri.starts_with("https://")) {
        return (StatusCode::BAD_REQUEST, "missing or invalid redirect_uri").into_response();
    }
    let state = params.get("state").map(String::as_str);
    let fail = |error: &str| found(&with_query(redirect_uri, &[("error", error)], state));
    if param("response_type") != "code" {
        return fail("unsupported_response_type");
    }
    if !param("scope").split(' ').any(|scope| scope == "openid") {
        return fail("invalid_scope");
    }
    if param("code_challenge_method") != "S256" || param("code_challenge").len() != 43 {
        return fail("invalid_request");
    }
    let mut inner = shared.lock();
    let Some(user) = inner.next_user.clone() else {
        return fail("access_denied");
    };
    let code = random_token(32);
    inner.codes.insert(
        code.clone(),
        IssuedCode {
            client_id: param("client_id").to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            code_challenge: param("code_challenge").to_owned(),
            nonce: params.get("nonce").cloned(),
            user,
            issued: Instant::now(),
        },
    );
    found(&with_query(redirect_uri, &[("code", &code)], state))
}

/// A 302 to `location`, as authorization servers redirect (axum's `Redirect::to` is a
/// 303).
fn found(location: &str) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

/// `uri` with `pairs` and `state` added to its query.
fn with_query(uri: &str, pairs: &[(&str, &str)], state: Option<&str>) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.extend_pairs(pairs);
    if let Some(state) = state {
        query.append_pair("state", state);
    }
    let separator = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{separator}{}", query.finish())
}

/// An OAuth error answer (RFC 6749 5.2).
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: String) -> Response {
    let form: HashMap<String, String> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let field = |name: &str| form.get(name).map(String::as_str);
    let options = &shared.options;

    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Basic "))
        .map(basic_credentials);
    let (client_id, client_secret, method) = match (basic, field("client_secret")) {
        (Some(_), Some(_)) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "more than one client authentication method",
            );
        }
        (Some(Some((id, secret))), None) => (id, secret, ClientAuthMethod::ClientSecretBasic),
        (Some(None), None) => {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "malformed Basic credentials",
            );
        }
        (None, Some(secret)) => (
            field("client_id").unwrap_or_default().to_owned(),
            secret.to_owned(),
            ClientAuthMethod::ClientSecretPost,
        ),
        (None, None) => {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication required",
            );
        }
    };
    if !options.auth_methods.contains(&method)
        || client_id != options.client_id
        || client_secret != options.client_secret
    {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        );
    }
    if field("grant_type") != Some("authorization_code") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only authorization_code",
        );
    }

    let mut inner = shared.lock();
    // Removed on first use, whatever follows: a code is good for one attempt.
    let Some(issued) = field("code").and_then(|code| inner.codes.remove(code)) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "unknown or used code",
        );
    };
    if issued.issued.elapsed() > CODE_LIFETIME {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "expired code");
    }
    if issued.client_id != client_id {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "code issued to another client",
        );
    }
    if field("redirect_uri") != Some(issued.redirect_uri.as_str()) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "redirect_uri differs from the authorization request",
        );
    }
    let verifier = field("code_verifier").unwrap_or_default();
    if !valid_verifier(verifier) || s256(verifier) != issued.code_challenge {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "PKCE verification failed",
        );
    }
    let fault = inner.next_fault.take();
    let id_token = mint_id_token(&shared, &inner.key, &issued, fault);
    drop(inner);
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "access_token": random_token(32),
            "token_type": "Bearer",
            "expires_in": 3600,
            "scope": "openid email profile",
            "id_token": id_token,
        })),
    )
        .into_response()
}

/// The client id and secret from a Basic header's value, form-decoded as RFC 6749
/// 2.3.1 asks.
fn basic_credentials(encoded: &str) -> Option<(String, String)> {
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let form_decode = |text: &str| {
        form_urlencoded::parse(format!("x={text}").as_bytes())
            .next()
            .map(|(_, value)| value.into_owned())
    };
    Some((form_decode(id)?, form_decode(secret)?))
}

/// RFC 7636 4.1: 43 to 128 unreserved characters.
fn valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()))
}

fn mint_id_token(
    shared: &Shared,
    key: &SigningKey,
    issued: &IssuedCode,
    fault: Option<TokenFault>,
) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default();
    let user = &issued.user;
    let client_id = shared.options.client_id.as_str();
    let mut claims = json!({
        "iss": shared.issuer,
        "sub": user.sub,
        "aud": client_id,
        "iat": now,
        "exp": now + ID_TOKEN_LIFETIME,
        "auth_time": now,
        "email_verified": user.email_verified,
    });
    if let Some(nonce) = &issued.nonce {
        claims["nonce"] = json!(nonce);
    }
    if let Some(email) = &user.email {
        claims["email"] = json!(email);
    }
    if let Some(name) = &user.name {
        claims["name"] = json!(name);
    }
    if !user.groups.is_empty() {
        claims["groups"] = json!(user.groups);
    }
    match fault {
        Some(TokenFault::WrongAudience) => claims["aud"] = json!("another-client"),
        Some(TokenFault::ExtraAudienceWithoutAzp) => {
            claims["aud"] = json!([client_id, "another-client"]);
        }
        Some(TokenFault::WrongAuthorizedParty) => {
            claims["aud"] = json!([client_id, "another-client"]);
            claims["azp"] = json!("another-client");
        }
        Some(TokenFault::WrongIssuer) => claims["iss"] = json!("https://impostor.example"),
        Some(TokenFault::Expired) => {
            claims["iat"] = json!(now - 900);
            claims["exp"] = json!(now - 600);
        }
        Some(TokenFault::IssuedInFuture) => {
            claims["iat"] = json!(now + 600);
            claims["exp"] = json!(now + 900);
        }
        Some(TokenFault::NotYetValid) => claims["nbf"] = json!(now + 600),
        Some(TokenFault::WrongNonce) => claims["nonce"] = json!(random_token(32)),
        _ => {}
    }
    let rs256 = |kid: &str| json!({ "alg": "RS256", "typ": "JWT", "kid": kid });
    match fault {
        Some(TokenFault::AlgNone) => {
            let signing_input = signing_input(&json!({ "alg": "none", "typ": "JWT" }), &claims);
            format!("{signing_input}.")
        }
        Some(TokenFault::Hs256WithClientSecret) => {
            let header = json!({ "alg": "HS256", "typ": "JWT", "kid": key.kid });
            let signing_input = signing_input(&header, &claims);
            let secret = hmac::Key::new(hmac::HMAC_SHA256, shared.options.client_secret.as_bytes());
            let tag = hmac::sign(&secret, signing_input.as_bytes());
            format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag))
        }
        Some(TokenFault::UnknownKey) => {
            let stranger = SigningKey::generate();
            signed(&stranger, &rs256(&stranger.kid), &claims)
        }
        Some(TokenFault::ForgedSignature) => {
            signed(&SigningKey::generate(), &rs256(&key.kid), &claims)
        }
        _ => signed(key, &rs256(&key.kid), &claims),
    }
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

fn signed(key: &SigningKey, header: &Value, claims: &Value) -> String {
    let signing_input = signing_input(header, claims);
    let signature = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// `bytes` random bytes, base64url without padding.
fn random_token(bytes: usize) -> String {
    let mut buffer = vec![0; bytes];
    rand::fill(&mut buffer).expect("the system random source works");
    URL_SAFE_NO_PAD.encode(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let header = STANDARD.encode("my%20client:s%7Ecr%3Aet+x");
        assert_eq!(
            basic_credentials(&header),
            Some(("my client".to_owned(), "s~cr:et x".to_owned()))
        );
        assert_eq!(basic_credentials("not base64!"), None);
        assert_eq!(basic_credentials(&STANDARD.encode("no-colon")), None);
    }

    #[test]
    fn pkce_s256_matches_rfc_7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(valid_verifier(verifier));
        assert_eq!(
            s256(verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(!valid_verifier("short"));
        assert!(!valid_verifier(&"a+".repeat(30)));
    }

    #[test]
    fn redirects_keep_the_clients_query() {
        assert_eq!(
            with_query(
                "https://app.example/cb?x=1",
                &[("code", "a b")],
                Some("s/1")
            ),
            "https://app.example/cb?x=1&code=a+b&state=s%2F1"
        );
        assert_eq!(
            with_query(
                "https://app.example/cb",
                &[("error", "access_denied")],
                None
            ),
            "https://app.example/cb?error=access_denied"
        );
    }
}
