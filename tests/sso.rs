//! Single sign-on and modules end to end: the local runner against an OpenID Connect
//! provider the test starts on loopback (real discovery document, JWKS, PKCE and signed
//! ID tokens), driven the way the web app drives it; the organization's e-mail domains
//! proved by TXT records on a name server the test also starts on loopback.

use domain::access::Role;
use e2e::{Account, PASSWORD, TestApp, error_codes, problem};
use reqwest::{Method, StatusCode, Url};
use serde_json::{Value, json};
use testkit::{
    DnsBehaviour, DnsTestServer, OidcTestProvider, ProviderOptions, TestUser, TokenFault,
};

fn user(sub: &str, email: &str, verified: bool, groups: &[&str]) -> TestUser {
    TestUser {
        sub: sub.to_owned(),
        email: Some(email.to_owned()),
        email_verified: verified,
        name: Some("Sara Nyström".to_owned()),
        groups: groups.iter().map(|group| (*group).to_owned()).collect(),
    }
}

async fn set_module(app: &TestApp, token: &str, module: &str, active: bool) -> Value {
    let response = app
        .authed(
            token,
            Method::PUT,
            &format!("/organization/modules/{module}"),
        )
        .json(&json!({ "active": active }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "module {module}");
    response.json().await.unwrap()
}

fn generic(provider: &OidcTestProvider) -> Value {
    json!({"kind": "generic", "issuer": provider.issuer(), "clientId": provider.client_id()})
}

/// The owner turns the module on and configures the provider.
async fn configure(app: &TestApp, owner: &Account, body: Value) -> Value {
    set_module(app, &owner.token, "sso", true).await;
    let response = app
        .authed(&owner.token, Method::PUT, "/organization/sso")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "configure");
    response.json().await.unwrap()
}

/// The runner, asking `dns` for the records that prove domains (quickly giving up on
/// a name server that does not answer).
async fn spawn_with_dns(dns: &DnsTestServer) -> TestApp {
    let server = dns.address();
    TestApp::spawn_configured(tempfile::tempdir().unwrap(), move |config| {
        config
            .with_dns_server(server)
            .with_dns_settings(adapters::dns::DnsSettings {
                timeout: std::time::Duration::from_millis(300),
                attempts: 1,
            })
    })
    .await
}

async fn claim_domain(app: &TestApp, token: &str, domain: &str) -> reqwest::Response {
    app.authed(token, Method::POST, "/organization/sso/domains")
        .json(&json!({ "domain": domain }))
        .send()
        .await
        .unwrap()
}

async fn verify_domain(app: &TestApp, token: &str, domain: &str) -> reqwest::Response {
    app.authed(
        token,
        Method::POST,
        &format!("/organization/sso/domains/{domain}/verify"),
    )
    .send()
    .await
    .unwrap()
}

/// The owner turns the module on, claims `domain`, publishes its record and verifies
/// it.
async fn prove_domain(app: &TestApp, dns: &DnsTestServer, owner: &Account, domain: &str) {
    set_module(app, &owner.token, "sso", true).await;
    let response = claim_domain(app, &owner.token, domain).await;
    assert_eq!(response.status(), StatusCode::CREATED, "claim");
    let claim: Value = response.json().await.unwrap();
    dns.publish(
        claim["record"]["name"].as_str().unwrap(),
        claim["record"]["value"].as_str().unwrap(),
    );
    let response = verify_domain(app, &owner.token, domain).await;
    assert_eq!(response.status(), StatusCode::OK, "verify");
}

/// `POST /auth/sso/start` for `organization`.
async fn start(app: &TestApp, organization: Value) -> reqwest::Response {
    app.request(Method::POST, "/auth/sso/start")
        .json(&json!({ "organization": organization }))
        .send()
        .await
        .unwrap()
}

/// What came back from the provider to the web app's callback page.
struct Returned {
    state: String,
    code: String,
}

/// Starts a sign-in for `organization` and follows the browser to the provider, which
/// signs in whoever it was told to; returns what the provider sent back.
async fn through_provider(app: &TestApp, organization: &str) -> Returned {
    let response = start(app, json!(organization)).await;
    assert_eq!(response.status(), StatusCode::OK, "start");
    let started: Value = response.json().await.unwrap();
    assert_eq!(started["expiresIn"], 600);
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let at_provider = browser
        .get(started["authorizationUrl"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(at_provider.status(), StatusCode::FOUND);
    let back = Url::parse(at_provider.headers()["location"].to_str().unwrap()).unwrap();
    // Back at the web app's page, which checks the state it kept.
    assert_eq!(
        format!("{}{}", back.origin().ascii_serialization(), back.path()),
        format!("{}/sso/callback", app.url)
    );
    let param = |name: &str| {
        back.query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    };
    assert_eq!(param("state").as_deref(), started["state"].as_str());
    Returned {
        state: param("state").unwrap(),
        code: param("code").expect("the provider sent a code"),
    }
}

async fn callback(app: &TestApp, returned: &Returned) -> reqwest::Response {
    app.request(Method::POST, "/auth/sso/callback")
        .json(&json!({ "state": returned.state, "code": returned.code }))
        .send()
        .await
        .unwrap()
}

/// A whole sign-in; answers the access token.
async fn sign_in(app: &TestApp, organization: &str) -> String {
    let returned = through_provider(app, organization).await;
    let response = callback(app, &returned).await;
    assert_eq!(response.status(), StatusCode::OK, "callback");
    let tokens: Value = response.json().await.unwrap();
    assert!(
        tokens["refreshToken"]
            .as_str()
            .unwrap()
            .starts_with("ldr1.")
    );
    tokens["accessToken"].as_str().unwrap().to_owned()
}

async fn me(app: &TestApp, token: &str) -> Value {
    app.get_json(token, "/me").await
}

async fn audit_actions(app: &TestApp, owner: &Account, action: &str) -> Vec<Value> {
    app.get_json(&owner.token, &format!("/audit?action={action}"))
        .await["events"]
        .as_array()
        .unwrap()
        .clone()
}

/// The organization's whole audit trail as its CSV export.
async fn audit_trail(app: &TestApp, owner: &Account) -> String {
    app.authed(&owner.token, Method::GET, "/audit/export")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn modules_start_with_a_ten_day_trial_and_gate_their_routes() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    let admin = app.token_with_role(&owner, Role::Admin).await;

    let modules = app.get_json(&admin, "/organization/modules").await;
    let names: Vec<&str> = modules
        .as_array()
        .unwrap()
        .iter()
        .map(|module| module["module"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sso", "documentStorage", "signing", "scoring"]);
    assert!(
        modules
            .as_array()
            .unwrap()
            .iter()
            .all(|module| module["status"] == "inactive")
    );

    // An inactive module's routes answer 403 module-inactive, whoever asks.
    for token in [&owner.token, &admin] {
        let response = app
            .authed(token, Method::GET, "/organization/sso")
            .send()
            .await
            .unwrap();
        let problem = problem(response, StatusCode::FORBIDDEN).await;
        assert_eq!(
            problem["type"],
            "https://leasedesk.se/problems/module-inactive"
        );
        assert!(problem["detail"].as_str().unwrap().contains("sso"));
    }
    let response = start(&app, json!(owner.tenant)).await;
    problem(response, StatusCode::FORBIDDEN).await;

    // Only owners turn modules on.
    let response = app
        .authed(&admin, Method::PUT, "/organization/modules/sso")
        .json(&json!({ "active": true }))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::FORBIDDEN).await;
    let response = app
        .authed(&owner.token, Method::PUT, "/organization/modules/billing")
        .json(&json!({ "active": true }))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::BAD_REQUEST).await;

    let on = set_module(&app, &owner.token, "sso", true).await;
    assert_eq!(on["status"], "trial");
    assert_eq!(on["activeSince"], "2026-11-21T09:00:00Z");
    assert_eq!(on["trialEndsAt"], "2026-12-01T09:00:00Z");
    assert_eq!(on["billedFrom"], "2026-12-01T09:00:00Z");
    // On now: the settings route answers (nothing configured yet).
    let response = app
        .authed(&admin, Method::GET, "/organization/sso")
        .send()
        .await
        .unwrap();
    let problem_doc = problem(response, StatusCode::NOT_FOUND).await;
    assert_eq!(
        problem_doc["type"],
        "https://leasedesk.se/problems/sso-not-configured"
    );

    // Off and on again inside the trial: still the first trial, not a new one.
    app.clock.advance(chrono::Duration::days(3));
    let owner_token = app.log_in(&owner.email, PASSWORD).await;
    assert_eq!(
        set_module(&app, &owner_token, "sso", false).await["status"],
        "inactive"
    );
    let again = set_module(&app, &owner_token, "sso", true).await;
    assert_eq!(again["status"], "trial");
    assert_eq!(again["trialEndsAt"], "2026-12-01T09:00:00Z");
    // After the trial it stays on, billed.
    app.clock.advance(chrono::Duration::days(8));
    let owner = Account {
        token: app.log_in(&owner.email, PASSWORD).await,
        ..owner
    };
    let modules = app.get_json(&owner.token, "/organization/modules").await;
    assert_eq!(modules[0]["status"], "active");
    assert_eq!(modules[0]["billedFrom"], "2026-12-01T09:00:00Z");
    assert_eq!(modules[1]["status"], "inactive");

    let changes = audit_actions(&app, &owner, "module.").await;
    assert_eq!(changes.len(), 3, "activated, deactivated, activated");
}

#[tokio::test]
async fn sso_signs_in_creates_matches_by_subject_and_maps_groups() {
    let provider = OidcTestProvider::start().await;
    let dns = DnsTestServer::start().await;
    let app = spawn_with_dns(&dns).await;
    let owner = app.sign_up().await;
    prove_domain(&app, &dns, &owner, "nordlysfleet.se").await;
    let settings = configure(
        &app,
        &owner,
        json!({
            "provider": generic(&provider),
            "clientSecret": provider.client_secret(),
            "autoCreateDomains": ["Nordlysfleet.se"],
            "groupRoles": {"g-fleet-editors": "editor", "g-finance-admins": "admin"},
        }),
    )
    .await;
    assert_eq!(settings["redirectUri"], format!("{}/sso/callback", app.url));
    assert_eq!(settings["autoCreateDomains"], json!(["nordlysfleet.se"]));
    assert_eq!(settings["defaultRole"], "viewer");
    assert_eq!(settings["verifiedAt"], Value::Null);
    let shown = app.get_json(&owner.token, "/organization/sso").await;
    assert!(!shown.to_string().contains(provider.client_secret()));
    assert!(shown.get("secretRef").is_none());

    // A verified address in an auto-create domain becomes a member at first sign-in,
    // with the role of its groups.
    provider.set_next_user(user(
        "sub-sara",
        "sara.nystrom@nordlysfleet.se",
        true,
        &["g-fleet-editors", "g-other"],
    ));
    let token = sign_in(&app, &owner.tenant.to_string()).await;
    let profile = me(&app, &token).await;
    assert_eq!(profile["user"]["email"], "sara.nystrom@nordlysfleet.se");
    assert_eq!(profile["user"]["name"], "Sara Nyström");
    assert_eq!(profile["user"]["role"], "editor");
    assert_eq!(profile["organization"]["id"], owner.tenant.to_string());
    let sara = profile["user"]["id"].clone();

    // Matched by provider and subject, whatever the address says now; the groups decide
    // the role again.
    provider.set_next_user(user(
        "sub-sara",
        "sara.n@elsewhere.example",
        false,
        &["g-finance-admins"],
    ));
    let token = sign_in(&app, &owner.tenant.to_string()).await;
    let profile = me(&app, &token).await;
    assert_eq!(profile["user"]["id"], sara);
    assert_eq!(profile["user"]["role"], "admin");
    // Groups that map to nothing leave the role alone.
    provider.set_next_user(user("sub-sara", "x@y.se", false, &["g-unmapped"]));
    let token = sign_in(&app, &owner.tenant.to_string()).await;
    assert_eq!(me(&app, &token).await["user"]["role"], "admin");

    // The member has no password to sign in with.
    let response = app
        .request(Method::POST, "/auth/login")
        .json(&json!({"email": "sara.nystrom@nordlysfleet.se", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::UNAUTHORIZED).await;

    // The owner signs in through the provider with their own verified address: linked
    // to their account, and still owner whatever the groups say.
    provider.set_next_user(user("sub-anna", &owner.email, true, &["g-fleet-editors"]));
    let token = sign_in(&app, &owner.tenant.to_string()).await;
    let profile = me(&app, &token).await;
    assert_eq!(profile["user"]["id"], owner.user.to_string());
    assert_eq!(profile["user"]["role"], "owner");

    // A state works once.
    provider.set_next_user(user("sub-sara", "x@y.se", false, &[]));
    let returned = through_provider(&app, &owner.tenant.to_string()).await;
    assert_eq!(callback(&app, &returned).await.status(), StatusCode::OK);
    let again = problem(callback(&app, &returned).await, StatusCode::GONE).await;
    assert_eq!(
        again["type"],
        "https://leasedesk.se/problems/sso-login-invalid"
    );
    // And for ten minutes.
    let returned = through_provider(&app, &owner.tenant.to_string()).await;
    app.clock.advance(chrono::Duration::minutes(11));
    problem(callback(&app, &returned).await, StatusCode::GONE).await;
    // A made-up state is no better.
    let made_up = Returned {
        state: "made-up".to_owned(),
        code: returned.code.clone(),
    };
    problem(callback(&app, &made_up).await, StatusCode::GONE).await;

    let joined = audit_actions(&app, &owner, "member.joined").await;
    assert_eq!(joined.len(), 1);
    assert_eq!(joined[0]["after"]["method"], "sso");
    let signed_in = audit_actions(&app, &owner, "auth.signed_in").await;
    assert!(
        signed_in
            .iter()
            .filter(|event| event["after"]["method"] == "sso")
            .count()
            >= 5
    );
    let trail = audit_trail(&app, &owner).await;
    assert!(!trail.contains(provider.client_secret()));
    assert!(!trail.contains(&returned.code));
    assert!(!trail.contains(&returned.state));
}

#[tokio::test]
async fn sso_refuses_strangers_bad_tokens_and_other_organizations_accounts() {
    let provider = OidcTestProvider::start().await;
    let dns = DnsTestServer::start().await;
    let app = spawn_with_dns(&dns).await;
    let owner = app.sign_up().await;
    let other = app.sign_up().await;
    prove_domain(&app, &dns, &owner, "nordlysfleet.se").await;
    configure(
        &app,
        &owner,
        json!({"provider": generic(&provider), "clientSecret": provider.client_secret(),
               "autoCreateDomains": ["nordlysfleet.se"]}),
    )
    .await;
    let organization = owner.tenant.to_string();

    // An address the provider does not vouch for is matched to nobody.
    provider.set_next_user(user("sub-1", "eve@nordlysfleet.se", false, &[]));
    let returned = through_provider(&app, &organization).await;
    let refused = problem(callback(&app, &returned).await, StatusCode::FORBIDDEN).await;
    assert_eq!(
        refused["type"],
        "https://leasedesk.se/problems/sso-no-account"
    );
    // Nor is a verified address outside the auto-create domains.
    provider.set_next_user(user("sub-2", "eve@elsewhere.example", true, &[]));
    let returned = through_provider(&app, &organization).await;
    problem(callback(&app, &returned).await, StatusCode::FORBIDDEN).await;
    // An account of another organization is not taken over.
    provider.set_next_user(user("sub-3", &other.email, true, &[]));
    let returned = through_provider(&app, &organization).await;
    problem(callback(&app, &returned).await, StatusCode::CONFLICT).await;

    // A spoiled ID token is refused after the code exchange.
    for fault in [
        TokenFault::WrongAudience,
        TokenFault::WrongNonce,
        TokenFault::ForgedSignature,
    ] {
        provider.set_next_user(user("sub-4", "ok@nordlysfleet.se", true, &[]));
        provider.set_next_token_fault(fault);
        let returned = through_provider(&app, &organization).await;
        let refused = problem(callback(&app, &returned).await, StatusCode::UNAUTHORIZED).await;
        assert_eq!(
            refused["type"], "https://leasedesk.se/problems/sso-refused",
            "{fault:?}"
        );
    }
    // A code the provider never issued.
    provider.set_next_user(user("sub-4", "ok@nordlysfleet.se", true, &[]));
    let mut returned = through_provider(&app, &organization).await;
    returned.code = "not-a-code".to_owned();
    problem(callback(&app, &returned).await, StatusCode::UNAUTHORIZED).await;

    let failures = audit_actions(&app, &owner, "auth.sign_in_failed").await;
    let reasons: Vec<&str> = failures
        .iter()
        .map(|event| event["after"]["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons
            .iter()
            .filter(|reason| **reason == "no_matching_member")
            .count(),
        2
    );
    assert_eq!(
        reasons
            .iter()
            .filter(|reason| **reason == "id_token_rejected")
            .count(),
        3
    );
    assert!(reasons.contains(&"code_rejected"));

    // Organizations without single sign-on, and unknown ones.
    let response = start(&app, json!(other.tenant)).await;
    problem(response, StatusCode::FORBIDDEN).await;
    set_module(&app, &other.token, "sso", true).await;
    let response = start(&app, json!(other.tenant)).await;
    problem(response, StatusCode::NOT_FOUND).await;
    let response = start(&app, json!("not-an-id")).await;
    problem(response, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn sso_accepts_an_invitation_to_the_verified_address() {
    let provider = OidcTestProvider::start().await;
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    configure(
        &app,
        &owner,
        json!({"provider": generic(&provider), "clientSecret": provider.client_secret()}),
    )
    .await;
    let response = app
        .authed(&owner.token, Method::POST, "/members/invitations")
        .json(&json!({"email": "revisor@byra.example", "role": "auditor"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);

    provider.set_next_user(user("sub-rev", "Revisor@Byra.example", true, &[]));
    let token = sign_in(&app, &owner.tenant.to_string()).await;
    let profile = me(&app, &token).await;
    assert_eq!(profile["user"]["role"], "auditor");
    assert_eq!(profile["user"]["email"], "revisor@byra.example");
    // The invitation is used up.
    let link = app.invitation_token("revisor@byra.example").await;
    let response = app
        .request(Method::POST, "/auth/invitations/accept")
        .json(&json!({"token": link, "name": "R", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::GONE).await;
}

#[tokio::test]
async fn require_sso_turns_password_sign_in_off_once_sso_has_worked() {
    let provider = OidcTestProvider::start().await;
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    let editor = app.token_with_role(&owner, Role::Editor).await;
    let configuration = json!({"provider": generic(&provider),
                               "clientSecret": provider.client_secret(), "requireSso": true});
    set_module(&app, &owner.token, "sso", true).await;
    // Not before a sign-in through the provider has worked.
    let response = app
        .authed(&owner.token, Method::PUT, "/organization/sso")
        .json(&configuration)
        .send()
        .await
        .unwrap();
    let refused = problem(response, StatusCode::CONFLICT).await;
    assert_eq!(
        refused["type"],
        "https://leasedesk.se/problems/sso-unverified"
    );

    let mut body = configuration.clone();
    body["requireSso"] = json!(false);
    configure(&app, &owner, body).await;
    provider.set_next_user(user("sub-anna", &owner.email, true, &[]));
    let sso_token = sign_in(&app, &owner.tenant.to_string()).await;
    let shown = app.get_json(&sso_token, "/organization/sso").await;
    assert!(shown["verifiedAt"].is_string());

    // Now it can be required; the secret stays as stored when left out.
    let response = app
        .authed(&sso_token, Method::PUT, "/organization/sso")
        .json(&json!({"provider": generic(&provider), "requireSso": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // The sessions opened with a password are over; the SSO one goes on.
    for token in [&owner.token, &editor] {
        let response = app.authed(token, Method::GET, "/me").send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(me(&app, &sso_token).await["user"]["role"], "owner");
    // A right password gets told to use single sign-on; a wrong one learns nothing new.
    let response = app
        .request(Method::POST, "/auth/login")
        .json(&json!({"email": owner.email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let required = problem(response, StatusCode::FORBIDDEN).await;
    assert_eq!(
        required["type"],
        "https://leasedesk.se/problems/sso-required"
    );
    let response = app
        .request(Method::POST, "/auth/login")
        .json(&json!({"email": owner.email, "password": "wrong-password-entirely"}))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::UNAUTHORIZED).await;
    provider.set_next_user(user("sub-anna", &owner.email, true, &[]));
    sign_in(&app, &owner.tenant.to_string()).await;

    // With the module off nobody could sign in through the provider: passwords work.
    set_module(&app, &sso_token, "sso", false).await;
    app.log_in(&owner.email, PASSWORD).await;

    // Removing single sign-on removes its secret from the vault.
    set_module(&app, &sso_token, "sso", true).await;
    let secrets = app.data.path().join("secrets");
    assert_eq!(std::fs::read_dir(&secrets).unwrap().count(), 1);
    let response = app
        .authed(&sso_token, Method::DELETE, "/organization/sso")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(std::fs::read_dir(&secrets).unwrap().count(), 0);
    app.log_in(&owner.email, PASSWORD).await;
}

#[tokio::test]
async fn sso_through_entra_uses_the_customers_tenant() {
    let tenant_id = "9188040d-6c67-4c5b-b112-36a304b66dad";
    let provider = OidcTestProvider::start_with(ProviderOptions {
        path: format!("/{tenant_id}/v2.0"),
        discovery_aliases: vec!["/nordlysfleet.onmicrosoft.com/v2.0".to_owned()],
        ..ProviderOptions::default()
    })
    .await;
    let authority = provider.base_url();
    let app = TestApp::spawn_configured(tempfile::tempdir().unwrap(), move |config| {
        config.with_entra_authority(authority)
    })
    .await;
    let owner = app.sign_up().await;
    for tenant in [tenant_id, "nordlysfleet.onmicrosoft.com"] {
        configure(
            &app,
            &owner,
            json!({"provider": {"kind": "entra", "tenantId": tenant,
                                "clientId": provider.client_id()},
                   "clientSecret": provider.client_secret()}),
        )
        .await;
        provider.set_next_user(user("entra-oid-anna", &owner.email, true, &[]));
        let token = sign_in(&app, &owner.tenant.to_string()).await;
        assert_eq!(me(&app, &token).await["user"]["id"], owner.user.to_string());
    }
    // The multi-tenant endpoints would let any Entra tenant's users in.
    let response = app
        .authed(&owner.token, Method::PUT, "/organization/sso")
        .json(&json!({"provider": {"kind": "entra", "tenantId": "common",
                                   "clientId": provider.client_id()},
                      "clientSecret": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn sso_domains_are_proved_by_a_dns_record_before_members_are_created_from_them() {
    let provider = OidcTestProvider::start().await;
    let dns = DnsTestServer::start().await;
    let app = spawn_with_dns(&dns).await;
    let owner = app.sign_up().await;
    let organization = owner.tenant.to_string();
    let with_domains = |domains: Value| {
        json!({"provider": generic(&provider), "clientSecret": provider.client_secret(),
               "autoCreateDomains": domains})
    };
    configure(&app, &owner, with_domains(json!([]))).await;

    // A domain nobody proved is refused by name, in the caller's language.
    let response = app
        .authed(&owner.token, Method::PUT, "/organization/sso")
        .header("accept-language", "sv")
        .json(&with_domains(json!(["nordlysfleet.se"])))
        .send()
        .await
        .unwrap();
    let refused = problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(
        error_codes(&refused),
        [(
            "/autoCreateDomains/0".to_owned(),
            "domain_unverified".to_owned()
        )]
    );
    assert!(
        refused["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("inte verifierad"),
        "{refused}"
    );

    // The claim names the record to publish; claiming again answers the same one.
    let response = claim_domain(&app, &owner.token, "Nordlysfleet.SE").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let claim: Value = response.json().await.unwrap();
    assert_eq!(claim["domain"], "nordlysfleet.se");
    assert_eq!(claim["status"], "pending");
    assert_eq!(claim["verifiedAt"], Value::Null);
    assert_eq!(claim["record"]["type"], "TXT");
    assert_eq!(
        claim["record"]["name"],
        "_leasedesk-challenge.nordlysfleet.se"
    );
    let value = claim["record"]["value"].as_str().unwrap().to_owned();
    let token = value
        .strip_prefix("leasedesk-domain-verification=")
        .expect("the scheme's prefix");
    assert_eq!(token.len(), 64);
    let response = claim_domain(&app, &owner.token, "nordlysfleet.se").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap(), claim);
    let listed = app
        .get_json(&owner.token, "/organization/sso/domains")
        .await;
    assert_eq!(listed, json!([claim]));
    let bad = problem(
        claim_domain(&app, &owner.token, "localhost").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(
        error_codes(&bad),
        [("/domain".to_owned(), "invalid_domain".to_owned())]
    );

    // Before the record is published: not verified, and the answer says what to publish.
    let response = app
        .authed(
            &owner.token,
            Method::POST,
            "/organization/sso/domains/nordlysfleet.se/verify",
        )
        .header("accept-language", "sv")
        .send()
        .await
        .unwrap();
    let unverified = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(
        unverified["type"],
        "https://leasedesk.se/problems/sso-domain-unverified"
    );
    assert_eq!(unverified["title"], "Domänen kunde inte verifieras");
    let detail = unverified["detail"].as_str().unwrap();
    assert!(
        detail.contains("_leasedesk-challenge.nordlysfleet.se"),
        "{detail}"
    );
    assert!(detail.contains(&value), "{detail}");
    // A record with another value is no better.
    dns.publish(
        "_leasedesk-challenge.nordlysfleet.se",
        "leasedesk-domain-verification=someone-elses",
    );
    problem(
        verify_domain(&app, &owner.token, "nordlysfleet.se").await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;

    // Nobody at the domain becomes a member meanwhile.
    provider.set_next_user(user("sub-sara", "sara.nystrom@nordlysfleet.se", true, &[]));
    let returned = through_provider(&app, &organization).await;
    problem(callback(&app, &returned).await, StatusCode::FORBIDDEN).await;

    // Published: verified.
    dns.publish("_leasedesk-challenge.nordlysfleet.se", &value);
    app.clock.advance(chrono::Duration::minutes(5));
    let response = verify_domain(&app, &owner.token, "nordlysfleet.se").await;
    assert_eq!(response.status(), StatusCode::OK);
    let verified: Value = response.json().await.unwrap();
    assert_eq!(verified["status"], "verified");
    assert_eq!(verified["verifiedAt"], "2026-11-21T09:05:00Z");
    assert_eq!(verified["record"], claim["record"]);

    // Now it may create members, and does.
    configure(&app, &owner, with_domains(json!(["nordlysfleet.se"]))).await;
    provider.set_next_user(user("sub-sara", "sara.nystrom@nordlysfleet.se", true, &[]));
    let sara = sign_in(&app, &organization).await;
    let profile = me(&app, &sara).await;
    assert_eq!(profile["user"]["email"], "sara.nystrom@nordlysfleet.se");
    assert_eq!(profile["user"]["role"], "viewer");

    // Owners and admins manage domains; the others read them.
    let viewer = app.token_with_role(&owner, Role::Viewer).await;
    problem(
        claim_domain(&app, &viewer, "annanfirma.se").await,
        StatusCode::FORBIDDEN,
    )
    .await;
    problem(
        verify_domain(&app, &viewer, "nordlysfleet.se").await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert_eq!(
        app.get_json(&viewer, "/organization/sso/domains").await[0]["status"],
        "verified"
    );

    // Another organization cannot claim it, nor verify a claim made before.
    let other = app.sign_up().await;
    set_module(&app, &other.token, "sso", true).await;
    let taken = problem(
        claim_domain(&app, &other.token, "nordlysfleet.se").await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(
        taken["type"],
        "https://leasedesk.se/problems/sso-domain-taken"
    );
    assert!(
        taken["detail"]
            .as_str()
            .unwrap()
            .contains("nordlysfleet.se")
    );

    let actions: Vec<String> = audit_actions(&app, &owner, "sso.")
        .await
        .iter()
        .map(|event| event["action"].as_str().unwrap().to_owned())
        .filter(|action| action.starts_with("sso.domain"))
        .collect();
    assert_eq!(
        actions,
        [
            "sso.domain_verified",
            "sso.domain_verification_failed",
            "sso.domain_verification_failed",
            "sso.domain_claimed",
        ]
    );
    let trail = audit_trail(&app, &owner).await;
    assert!(!trail.contains(token), "the token stays out of the trail");

    // Given up: it leaves the auto-create domains, creates nobody, and is free.
    let response = app
        .authed(
            &owner.token,
            Method::DELETE,
            "/organization/sso/domains/nordlysfleet.se",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let settings = app.get_json(&owner.token, "/organization/sso").await;
    assert_eq!(settings["autoCreateDomains"], json!([]));
    provider.set_next_user(user("sub-erik", "erik.berg@nordlysfleet.se", true, &[]));
    let returned = through_provider(&app, &organization).await;
    problem(callback(&app, &returned).await, StatusCode::FORBIDDEN).await;
    let response = claim_domain(&app, &other.token, "nordlysfleet.se").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let other_claim: Value = response.json().await.unwrap();
    assert_ne!(other_claim["record"]["value"], claim["record"]["value"]);

    // A name server that fails or stays silent is not a failed check: 502, nothing
    // changes, and the check works once it answers again.
    dns.publish(
        "_leasedesk-challenge.nordlysfleet.se",
        other_claim["record"]["value"].as_str().unwrap(),
    );
    for behaviour in [DnsBehaviour::ServerFailure, DnsBehaviour::Silent] {
        dns.set_behaviour(behaviour);
        let unavailable = problem(
            verify_domain(&app, &other.token, "nordlysfleet.se").await,
            StatusCode::BAD_GATEWAY,
        )
        .await;
        assert_eq!(
            unavailable["type"], "https://leasedesk.se/problems/dns-unavailable",
            "{behaviour:?}"
        );
    }
    assert_eq!(
        app.get_json(&other.token, "/organization/sso/domains")
            .await[0]["status"],
        "pending"
    );
    dns.set_behaviour(DnsBehaviour::Answer);
    let response = verify_domain(&app, &other.token, "nordlysfleet.se").await;
    assert_eq!(response.status(), StatusCode::OK);
    // An unclaimed domain is not found.
    problem(
        verify_domain(&app, &owner.token, "nordlysfleet.se").await,
        StatusCode::NOT_FOUND,
    )
    .await;
}
