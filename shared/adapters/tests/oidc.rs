//! The OpenID Connect relying party against a real provider on loopback
//! (`testkit::OidcTestProvider`): the whole authorization-code flow with PKCE as a
//! browser drives it, every way an ID token must be refused, key rotation and the
//! rate-limited key-set refresh, and Entra ID's tenant-specific issuers.

use adapters::oidc::{OidcRelyingParty, OidcSettings};
use domain::clock::SystemClock;
use domain::sso::{
    AuthorizationRequest, ClientId, EntraTenant, IdTokenError, IssuerUrl, OidcClient, PendingLogin,
    SsoError, SsoProvider, VerifiedIdentity,
};
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use testkit::{ClientAuthMethod, OidcTestProvider, ProviderOptions, TestUser, TokenFault};

const REDIRECT_URI: &str = "https://app.leasedesk.test/sso/callback?org=acme";
const TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

fn settings() -> OidcSettings {
    OidcSettings {
        allow_http_loopback: true,
        ..OidcSettings::default()
    }
}

fn relying_party(settings: OidcSettings) -> OidcRelyingParty {
    captured_log();
    OidcRelyingParty::new(settings, Arc::new(SystemClock)).unwrap()
}

fn generic(idp: &OidcTestProvider) -> SsoProvider {
    SsoProvider::Generic {
        issuer: IssuerUrl::parse(&idp.issuer()).unwrap(),
        client_id: ClientId::parse(idp.client_id()).unwrap(),
        secret_ref: "leasedesk/sso/acme".to_owned(),
    }
}

fn entra(idp: &OidcTestProvider, tenant: &str) -> SsoProvider {
    SsoProvider::Entra {
        tenant_id: EntraTenant::parse(tenant).unwrap(),
        client_id: ClientId::parse(idp.client_id()).unwrap(),
        secret_ref: "leasedesk/sso/acme".to_owned(),
    }
}

fn alice() -> TestUser {
    TestUser {
        sub: "alice-0001".to_owned(),
        email: Some("alice@acme.se".to_owned()),
        email_verified: true,
        name: Some("Alice Andersson".to_owned()),
        groups: vec!["finance".to_owned(), "approvers".to_owned()],
    }
}

/// What the browser brings back to the redirect URI.
struct Callback {
    code: String,
    state: String,
}

/// Follow the authorization URL as a browser would, without following the redirect.
async fn visit(url: &str) -> Callback {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = browser.get(url).send().await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::FOUND);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let location = reqwest::Url::parse(&location).unwrap();
    assert_eq!(
        location.as_str().split('?').next(),
        REDIRECT_URI.split('?').next()
    );
    let query: HashMap<String, String> = location.query_pairs().into_owned().collect();
    assert_eq!(query.get("org").map(String::as_str), Some("acme"));
    Callback {
        code: query["code"].clone(),
        state: query["state"].clone(),
    }
}

/// A started login, the browser's trip to the provider, and the callback.
async fn start(rp: &OidcRelyingParty, sso: &SsoProvider) -> (AuthorizationRequest, Callback) {
    let request = rp.authorization_request(sso, REDIRECT_URI).await.unwrap();
    let callback = visit(&request.url).await;
    assert_eq!(callback.state, request.pending.state);
    (request, callback)
}

async fn login(
    rp: &OidcRelyingParty,
    sso: &SsoProvider,
    idp: &OidcTestProvider,
) -> Result<VerifiedIdentity, SsoError> {
    let (request, callback) = start(rp, sso).await;
    rp.complete(
        sso,
        idp.client_secret(),
        REDIRECT_URI,
        &callback.code,
        &request.pending,
    )
    .await
}

fn query_of(url: &str) -> HashMap<String, String> {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

fn s256(verifier: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier))
}

#[tokio::test]
async fn a_login_runs_the_code_flow_with_pkce_and_returns_the_identity() {
    let idp = OidcTestProvider::start().await;
    idp.set_next_user(alice());
    let rp = relying_party(settings());
    let sso = generic(&idp);

    let request = rp.authorization_request(&sso, REDIRECT_URI).await.unwrap();
    assert!(
        request
            .url
            .starts_with(&format!("{}/authorize?", idp.issuer())),
        "{}",
        request.url
    );
    let query = query_of(&request.url);
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["client_id"], idp.client_id());
    assert_eq!(query["redirect_uri"], REDIRECT_URI);
    assert!(query["scope"].split(' ').any(|scope| scope == "openid"));
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["state"], request.pending.state);
    assert_eq!(query["nonce"], request.pending.nonce);
    assert_eq!(
        query["code_challenge"],
        s256(&request.pending.pkce_verifier)
    );
    assert!(!request.url.contains(&request.pending.pkce_verifier));
    assert!(request.pending.pkce_verifier.len() >= 43);
    assert!(request.pending.state.len() >= 43 && request.pending.nonce.len() >= 43);

    let callback = visit(&request.url).await;
    assert_eq!(callback.state, request.pending.state);
    let identity = rp
        .complete(
            &sso,
            idp.client_secret(),
            REDIRECT_URI,
            &callback.code,
            &request.pending,
        )
        .await
        .unwrap();
    assert_eq!(
        identity,
        VerifiedIdentity {
            issuer: idp.issuer(),
            subject: "alice-0001".to_owned(),
            email: Some("alice@acme.se".to_owned()),
            email_verified: true,
            name: Some("Alice Andersson".to_owned()),
            groups: vec!["finance".to_owned(), "approvers".to_owned()],
        }
    );

    // Every login draws its own state, nonce and verifier.
    let other = rp.authorization_request(&sso, REDIRECT_URI).await.unwrap();
    assert_ne!(other.pending.state, request.pending.state);
    assert_ne!(other.pending.nonce, request.pending.nonce);
    assert_ne!(other.pending.pkce_verifier, request.pending.pkce_verifier);
}

#[tokio::test]
async fn discovery_and_keys_are_fetched_once_for_many_logins() {
    let idp = OidcTestProvider::start().await;
    let rp = relying_party(settings());
    let sso = generic(&idp);
    idp.set_next_user(alice());
    login(&rp, &sso, &idp).await.unwrap();
    idp.set_next_user(TestUser {
        sub: "bob-0002".to_owned(),
        email: None,
        email_verified: false,
        name: None,
        groups: vec![],
    });
    let bob = login(&rp, &sso, &idp).await.unwrap();
    assert_eq!(bob.subject, "bob-0002");
    assert_eq!(
        (bob.email, bob.email_verified, bob.name, bob.groups),
        (None, false, None, vec![])
    );
    login(&rp, &sso, &idp).await.unwrap();
    assert_eq!(idp.discovery_fetches(), 1);
    assert_eq!(idp.jwks_fetches(), 1);
}

#[tokio::test]
async fn client_secret_post_is_used_when_basic_is_not_offered() {
    let idp = OidcTestProvider::start_with(ProviderOptions {
        auth_methods: vec![ClientAuthMethod::ClientSecretPost],
        ..ProviderOptions::default()
    })
    .await;
    idp.set_next_user(alice());
    let rp = relying_party(settings());
    let identity = login(&rp, &generic(&idp), &idp).await.unwrap();
    assert_eq!(identity.subject, "alice-0001");
}

#[tokio::test]
async fn a_wrong_client_secret_is_refused_by_the_provider() {
    let idp = OidcTestProvider::start().await;
    idp.set_next_user(alice());
    let rp = relying_party(settings());
    let sso = generic(&idp);
    let (request, callback) = start(&rp, &sso).await;
    let error = rp
        .complete(
            &sso,
            "not-the-secret",
            REDIRECT_URI,
            &callback.code,
            &request.pending,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, SsoError::CodeRejected { error, .. } if error == "invalid_client"),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_replayed_code_is_refused() {
    let idp = OidcTestProvider::start().await;
    idp.set_next_user(alice());
    let rp = relying_party(settings());
    let sso = generic(&idp);
    let (request, callback) = start(&rp, &sso).await;
    let complete = || {
        rp.complete(
            &sso,
            idp.client_secret(),
            REDIRECT_URI,
            &callback.code,
            &request.pending,
        )
    };
    complete().await.unwrap();
    let error = complete().await.unwrap_err();
    assert!(
        matches!(&error, SsoError::CodeRejected { error, .. } if error == "invalid_grant"),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_wrong_pkce_verifier_is_refused() {
    let idp = OidcTestProvider::start().await;
    idp.set_next_user(alice());
    let rp = relying_party(settings());
    let sso = generic(&idp);
    let (request, callback) = start(&rp, &sso).await;
    // A well-formed verifier, but another login's.
    let other = rp.authorization_request(&sso, REDIRECT_URI).await.unwrap();
    let pending = PendingLogin {
        pkce_verifier: other.pending.pkce_verifier,
        ..request.pending.clone()
    };
    let error = rp
        .complete(
            &sso,
            idp.client_secret(),
            REDIRECT_URI,
            &callback.code,
            &pending,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, SsoError::CodeRejected { error, .. } if error == "invalid_grant"),
        "{error:?}"
    );
    // The provider spent the code on the failed attempt.
    let error = rp
        .complete(
            &sso,
            idp.client_secret(),
            REDIRECT_URI,
            &callback.code,
            &request.pending,
        )
        .await
        .unwrap_err();
    assert!(matches!(error, SsoError::CodeRejected { .. }), "{error:?}");
}

#[tokio::test]
async fn a_redirect_uri_other_than_the_logins_is_refused() {
    let idp = OidcTestProvider::start().await;
    idp.set_next_user(alice());
    let rp = relying_party(settings());
    let sso = generic(&idp);
    let (request, callback) = start(&rp, &sso).await;
    let error = rp
        .complete(
            &sso,
            idp.client_secret(),
            "https://app.leasedesk.test/elsewhere",
            &callback.code,
            &request.pending,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, SsoError::CodeRejected { error, .. } if error == "invalid_grant"),
        "{error:?}"
    );
}

/// A login whose ID token the provider spoils with `fault`. A sound login right after
/// shows the fault, not the set-up, made it fail.
async fn refused_with(fault: TokenFault) -> SsoError {
    let idp = OidcTestProvider::start().await;
    idp.set_next_user(alice());
    let rp = relying_party(settings());
    let sso = generic(&idp);
    idp.set_next_token_fault(fault);
    let (request, callback) = start(&rp, &sso).await;
    let error = rp
        .complete(
            &sso,
            idp.client_secret(),
            REDIRECT_URI,
            &callback.code,
            &request.pending,
        )
        .await
        .unwrap_err();
    for secret in [
        callback.code.as_str(),
        request.pending.nonce.as_str(),
        request.pending.pkce_verifier.as_str(),
        idp.client_secret(),
    ] {
        assert!(!error.to_string().contains(secret), "{error}");
    }
    login(&rp, &sso, &idp).await.unwrap();
    error
}

fn id_token_error(error: SsoError) -> IdTokenError {
    match error {
        SsoError::IdToken(error) => error,
        other => panic!("expected an ID token error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused() {
    let error = id_token_error(refused_with(TokenFault::WrongAudience).await);
    assert_eq!(error, IdTokenError::WrongAudience);
}

#[tokio::test]
async fn a_token_with_several_audiences_needs_us_as_authorized_party() {
    let error = id_token_error(refused_with(TokenFault::ExtraAudienceWithoutAzp).await);
    assert_eq!(error, IdTokenError::MissingAuthorizedParty);
    let error = id_token_error(refused_with(TokenFault::WrongAuthorizedParty).await);
    assert_eq!(error, IdTokenError::WrongAuthorizedParty);
}

#[tokio::test]
async fn a_token_from_another_issuer_is_refused() {
    let error = id_token_error(refused_with(TokenFault::WrongIssuer).await);
    assert!(
        matches!(&error, IdTokenError::WrongIssuer { found, .. } if found == "https://impostor.example"),
        "{error:?}"
    );
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let error = id_token_error(refused_with(TokenFault::Expired).await);
    assert_eq!(error, IdTokenError::Expired);
}

#[tokio::test]
async fn a_token_issued_in_the_future_or_not_yet_valid_is_refused() {
    let error = id_token_error(refused_with(TokenFault::IssuedInFuture).await);
    assert_eq!(error, IdTokenError::IssuedInFuture);
    let error = id_token_error(refused_with(TokenFault::NotYetValid).await);
    assert_eq!(error, IdTokenError::NotYetValid);
}

#[tokio::test]
async fn a_token_with_another_nonce_is_refused() {
    let error = id_token_error(refused_with(TokenFault::WrongNonce).await);
    assert_eq!(error, IdTokenError::NonceMismatch);
}

#[tokio::test]
async fn unsigned_and_hmac_tokens_are_refused() {
    let error = id_token_error(refused_with(TokenFault::AlgNone).await);
    assert_eq!(error, IdTokenError::DisallowedAlgorithm("none".to_owned()));
    let error = id_token_error(refused_with(TokenFault::Hs256WithClientSecret).await);
    assert_eq!(error, IdTokenError::DisallowedAlgorithm("HS256".to_owned()));
}

#[tokio::test]
async fn a_token_signed_by_an_unknown_key_is_refused() {
    let error = id_token_error(refused_with(TokenFault::UnknownKey).await);
    assert_eq!(error, IdTokenError::UnknownSigningKey);
}

#[tokio::test]
async fn a_forged_signature_under_a_known_kid_is_refused() {
    let error = id_token_error(refused_with(TokenFault::ForgedSignature).await);
    assert_eq!(error, IdTokenError::BadSignature);
}

#[tokio::test]
async fn after_key_rotation_a_login_costs_exactly_one_more_key_set_fetch() {
    let idp = OidcTestProvider::start().await;
    idp.set_next_user(alice());
    let rp = relying_party(settings());
    let sso = generic(&idp);
    login(&rp, &sso, &idp).await.unwrap();
    assert_eq!(idp.jwks_fetches(), 1);

    let old_kid = idp.current_kid();
    idp.rotate_key();
    assert_ne!(idp.current_kid(), old_kid);
    login(&rp, &sso, &idp).await.unwrap();
    assert_eq!(idp.jwks_fetches(), 2);
    login(&rp, &sso, &idp).await.unwrap();
    assert_eq!(idp.jwks_fetches(), 2);
}

#[tokio::test]
async fn unknown_kids_refresh_the_key_set_at_most_once_per_interval() {
    let idp = OidcTestProvider::start().await;
    idp.set_next_user(alice());
    let rp = relying_party(settings());
    let sso = generic(&idp);
    login(&rp, &sso, &idp).await.unwrap();
    assert_eq!(idp.jwks_fetches(), 1);

    for _ in 0..2 {
        idp.set_next_token_fault(TokenFault::UnknownKey);
        let error = login(&rp, &sso, &idp).await.unwrap_err();
        assert_eq!(error, SsoError::IdToken(IdTokenError::UnknownSigningKey));
    }
    assert_eq!(idp.jwks_fetches(), 2);
    // Known keys keep working meanwhile.
    login(&rp, &sso, &idp).await.unwrap();
    assert_eq!(idp.jwks_fetches(), 2);
}

#[tokio::test]
async fn once_the_interval_has_passed_an_unknown_kid_may_refresh_again() {
    let idp = OidcTestProvider::start().await;
    idp.set_next_user(alice());
    let rp = relying_party(OidcSettings {
        jwks_refresh_min_interval: Duration::from_millis(200),
        ..settings()
    });
    let sso = generic(&idp);
    login(&rp, &sso, &idp).await.unwrap();
    idp.set_next_token_fault(TokenFault::UnknownKey);
    login(&rp, &sso, &idp).await.unwrap_err();
    assert_eq!(idp.jwks_fetches(), 2);

    tokio::time::sleep(Duration::from_millis(300)).await;
    idp.set_next_token_fault(TokenFault::UnknownKey);
    login(&rp, &sso, &idp).await.unwrap_err();
    assert_eq!(idp.jwks_fetches(), 3);
}

#[tokio::test]
async fn entra_by_tenant_id_uses_the_tenant_specific_issuer() {
    let idp = OidcTestProvider::start_with(ProviderOptions {
        path: format!("/{TENANT}/v2.0"),
        ..ProviderOptions::default()
    })
    .await;
    let groups = vec![
        "0ba1a9b3-7f5e-4c3c-9f3b-3e0a7b3e6c11".to_owned(),
        "5d2e6e1c-2b53-4f1e-8d3f-0f1c2b3a4d55".to_owned(),
    ];
    idp.set_next_user(TestUser {
        groups: groups.clone(),
        ..alice()
    });
    let rp = relying_party(OidcSettings {
        entra_authority: idp.base_url(),
        ..settings()
    });
    let sso = entra(&idp, TENANT);
    assert_eq!(
        sso.issuer(),
        format!("https://login.microsoftonline.com/{TENANT}/v2.0")
    );
    let identity = login(&rp, &sso, &idp).await.unwrap();
    assert_eq!(identity.issuer, format!("{}/{TENANT}/v2.0", idp.base_url()));
    assert_eq!(identity.groups, groups);
}

#[tokio::test]
async fn entra_by_domain_name_accepts_the_tenant_id_issuer_entra_names() {
    let idp = OidcTestProvider::start_with(ProviderOptions {
        path: format!("/{TENANT}/v2.0"),
        discovery_aliases: vec!["/contoso.onmicrosoft.com/v2.0".to_owned()],
        ..ProviderOptions::default()
    })
    .await;
    idp.set_next_user(alice());
    let rp = relying_party(OidcSettings {
        entra_authority: idp.base_url(),
        ..settings()
    });
    let identity = login(&rp, &entra(&idp, "contoso.onmicrosoft.com"), &idp)
        .await
        .unwrap();
    assert_eq!(identity.issuer, format!("{}/{TENANT}/v2.0", idp.base_url()));
}

#[tokio::test]
async fn entra_discovery_naming_another_tenant_is_refused() {
    let other_tenant = "0f0f0f0f-1111-2222-3333-444444444444";
    let idp = OidcTestProvider::start_with(ProviderOptions {
        path: format!("/{other_tenant}/v2.0"),
        discovery_aliases: vec![format!("/{TENANT}/v2.0")],
        ..ProviderOptions::default()
    })
    .await;
    let rp = relying_party(OidcSettings {
        entra_authority: idp.base_url(),
        ..settings()
    });
    let error = rp
        .authorization_request(&entra(&idp, TENANT), REDIRECT_URI)
        .await
        .unwrap_err();
    assert!(matches!(error, SsoError::Metadata(_)), "{error:?}");
    assert_eq!(idp.discovery_fetches(), 1);
}

#[tokio::test]
async fn a_generic_issuer_must_match_the_discovery_document_exactly() {
    let idp = OidcTestProvider::start().await;
    let rp = relying_party(settings());
    let sso = SsoProvider::Generic {
        issuer: IssuerUrl::parse(&format!("{}/", idp.issuer())).unwrap(),
        client_id: ClientId::parse(idp.client_id()).unwrap(),
        secret_ref: "ref".to_owned(),
    };
    let error = rp
        .authorization_request(&sso, REDIRECT_URI)
        .await
        .unwrap_err();
    assert!(matches!(error, SsoError::Metadata(_)), "{error:?}");
    assert_eq!(idp.discovery_fetches(), 1);
}

#[tokio::test]
async fn plain_http_issuers_are_refused_in_production_settings() {
    let idp = OidcTestProvider::start().await;
    let rp = relying_party(OidcSettings::default());
    let error = rp
        .authorization_request(&generic(&idp), REDIRECT_URI)
        .await
        .unwrap_err();
    assert!(matches!(error, SsoError::Config(_)), "{error:?}");
    assert_eq!(idp.discovery_fetches(), 0);
}

#[tokio::test]
async fn an_unreachable_provider_is_unavailable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let rp = relying_party(settings());
    let sso = SsoProvider::Generic {
        issuer: IssuerUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
        client_id: ClientId::parse("leasedesk").unwrap(),
        secret_ref: "ref".to_owned(),
    };
    let error = rp
        .authorization_request(&sso, REDIRECT_URI)
        .await
        .unwrap_err();
    assert!(matches!(error, SsoError::Unavailable(_)), "{error:?}");
}

/// Every log line of this test binary. A process-wide subscriber, installed by the
/// first relying party made: a thread-local one would race the other tests for
/// tracing's callsite cache and miss lines.
#[derive(Clone, Default)]
struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn captured_log() -> &'static CapturedLog {
    static LOG: OnceLock<CapturedLog> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = CapturedLog::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        log
    })
}

#[tokio::test]
async fn no_secret_code_token_or_nonce_reaches_a_log_line() {
    let log = captured_log();
    let idp = OidcTestProvider::start().await;
    idp.set_next_user(alice());
    let rp = relying_party(settings());
    let sso = generic(&idp);
    let mut secrets = vec![idp.client_secret().to_owned()];
    for fault in [
        None,
        Some(TokenFault::UnknownKey),
        Some(TokenFault::WrongNonce),
    ] {
        if let Some(fault) = fault {
            idp.set_next_token_fault(fault);
        }
        let (request, callback) = start(&rp, &sso).await;
        let result = rp
            .complete(
                &sso,
                idp.client_secret(),
                REDIRECT_URI,
                &callback.code,
                &request.pending,
            )
            .await;
        assert_eq!(result.is_ok(), fault.is_none());
        // Replayed, so the refusal path is logged too.
        rp.complete(
            &sso,
            idp.client_secret(),
            REDIRECT_URI,
            &callback.code,
            &request.pending,
        )
        .await
        .unwrap_err();
        secrets.extend([
            callback.code,
            request.pending.nonce,
            request.pending.pkce_verifier,
            request.pending.state,
        ]);
    }

    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("SSO login verified"), "{text}");
    assert!(text.contains("SSO login refused"), "{text}");
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "a secret was logged:\n{text}"
        );
    }
    // ID tokens are JWTs: base64url of `{"` opens every one (this covers the tokens of
    // every test in this binary).
    assert!(!text.contains("eyJ"), "a token was logged:\n{text}");
}
