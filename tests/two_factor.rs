//! Two-factor login end to end: enrolment with a real authenticator's codes, a login that
//! stops at a pending token, single-use codes and recovery codes, lockout, and turning it
//! off.

use chrono::Duration;
use e2e::{Account, PASSWORD, TestApp, problem};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The code an authenticator app shows for `secret` at the test clock's time.
fn app_code(app: &TestApp, secret: &str) -> String {
    use domain::clock::Clock;
    let secret = totp_rs::Secret::try_from_base32(secret).unwrap();
    totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_secret(secret)
        .with_step_duration(30)
        .with_skew(0)
        .build_noncompliant()
        .generate(u64::try_from(app.clock.now().timestamp()).unwrap())
        .to_string()
}

/// Enrols `owner` and confirms: the secret and the recovery codes.
async fn enrol(app: &TestApp, owner: &Account) -> (String, Vec<String>) {
    let response = app
        .authed(&owner.token, Method::POST, "/me/2fa")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let enrolment: Value = response.json().await.unwrap();
    let secret = enrolment["secret"].as_str().unwrap().to_owned();
    assert!(
        enrolment["otpauthUri"]
            .as_str()
            .unwrap()
            .contains(&format!("secret={secret}"))
    );
    assert!(
        enrolment["qrCode"]
            .as_str()
            .unwrap()
            .starts_with("data:image/svg+xml;base64,")
    );

    // A wrong code does not turn it on.
    let body = problem(
        confirm(app, owner, &wrong_code(&app_code(app, &secret))).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(
        body["type"],
        "https://leasedesk.se/problems/two-factor-code-invalid"
    );
    let response = confirm(app, owner, &app_code(app, &secret)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let codes: Value = response.json().await.unwrap();
    let recovery: Vec<String> = codes["recoveryCodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|code| code.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(recovery.len(), 10);
    (secret, recovery)
}

async fn confirm(app: &TestApp, owner: &Account, code: &str) -> reqwest::Response {
    app.authed(&owner.token, Method::POST, "/me/2fa/confirm")
        .json(&json!({ "code": code }))
        .send()
        .await
        .unwrap()
}

fn wrong_code(right: &str) -> String {
    if right == "000000" {
        "111111"
    } else {
        "000000"
    }
    .to_owned()
}

/// Logs in with the password: the pending token of the two-factor challenge.
async fn pending_token(app: &TestApp, email: &str) -> String {
    let response = app
        .request(Method::POST, "/auth/login")
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["twoFactorRequired"], true, "{body}");
    assert_eq!(body["expiresIn"], 300);
    assert!(
        body.get("accessToken").is_none(),
        "no tokens before the code"
    );
    body["pendingToken"].as_str().unwrap().to_owned()
}

async fn verify(app: &TestApp, pending: &str, field: &str, code: &str) -> reqwest::Response {
    app.request(Method::POST, "/auth/2fa/verify")
        .json(&json!({ "pendingToken": pending, field: code }))
        .send()
        .await
        .unwrap()
}

async fn me_status(app: &TestApp, token: &str) -> StatusCode {
    app.authed(token, Method::GET, "/me")
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn a_login_with_two_factor_takes_a_fresh_code_once() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    let (secret, _) = enrol(&app, &owner).await;

    let pending = pending_token(&app, &owner.email).await;
    // The pending token opens nothing but the verification.
    assert_eq!(me_status(&app, &pending).await, StatusCode::UNAUTHORIZED);
    let response = app
        .authed(&pending, Method::POST, "/me/2fa")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // The confirming code was used; the next time step's code logs in.
    let used = app_code(&app, &secret);
    let body = problem(
        verify(&app, &pending, "code", &used).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(
        body["type"],
        "https://leasedesk.se/problems/two-factor-code-invalid"
    );
    app.clock.advance(Duration::seconds(30));
    let code = app_code(&app, &secret);
    let response = verify(&app, &pending, "code", &code).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let tokens: Value = response.json().await.unwrap();
    let access = tokens["accessToken"].as_str().unwrap();
    assert_eq!(me_status(&app, access).await, StatusCode::OK);

    // The same code again, even with a new pending token, is a replay.
    let again = pending_token(&app, &owner.email).await;
    problem(
        verify(&app, &again, "code", &code).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    app.clock.advance(Duration::seconds(30));
    let next = app_code(&app, &secret);
    assert_eq!(
        verify(&app, &again, "code", &next).await.status(),
        StatusCode::OK
    );

    // Garbage tokens, and access tokens, are not pending tokens.
    problem(
        verify(&app, access, "code", &next).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    problem(
        verify(&app, "not.a.token", "code", &next).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;

    // The trail tells what happened, without a secret or a code.
    let log = app
        .get_json(access, "/audit?action=auth.2fa_verified")
        .await;
    assert_eq!(log["events"][0]["after"]["method"], "totp", "{log}");
    let failed = app.get_json(access, "/audit?action=auth.2fa_failed").await;
    assert_eq!(failed["events"][0]["outcome"], "failure", "{failed}");
    let everything = app.get_json(access, "/audit?limit=200").await.to_string();
    for leaked in [secret.as_str(), used.as_str(), code.as_str(), next.as_str()] {
        assert!(!everything.contains(leaked), "{leaked} in the audit trail");
    }
    let signed_in = app.get_json(access, "/audit?action=auth.signed_in").await;
    assert_eq!(signed_in["events"][0]["after"]["method"], "totp");
}

#[tokio::test]
async fn recovery_codes_work_once_and_wrong_codes_lock() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    let (secret, recovery) = enrol(&app, &owner).await;

    let pending = pending_token(&app, &owner.email).await;
    let response = verify(&app, &pending, "recoveryCode", &recovery[0]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let tokens: Value = response.json().await.unwrap();
    let access = tokens["accessToken"].as_str().unwrap().to_owned();
    problem(
        verify(&app, &pending, "recoveryCode", &recovery[0]).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let log = app
        .get_json(&access, "/audit?action=auth.recovery_code_used")
        .await;
    assert_eq!(log["events"][0]["after"]["recoveryCodes"], 9, "{log}");

    // Neither or both kinds of code: a bad request.
    let response = app
        .request(Method::POST, "/auth/2fa/verify")
        .json(&json!({ "pendingToken": pending }))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::BAD_REQUEST).await;

    // Five wrong codes in a row (the reused recovery code was the first) lock the codes,
    // the right one included, for a while.
    app.clock.advance(Duration::seconds(30));
    let wrong = wrong_code(&app_code(&app, &secret));
    for _ in 0..4 {
        problem(
            verify(&app, &pending, "code", &wrong).await,
            StatusCode::UNAUTHORIZED,
        )
        .await;
    }
    let response = verify(&app, &pending, "code", &app_code(&app, &secret)).await;
    assert!(response.headers().contains_key("retry-after"));
    let body = problem(response, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(
        body["type"],
        "https://leasedesk.se/problems/two-factor-locked"
    );
    // In Swedish too.
    let response = app
        .request(Method::POST, "/auth/2fa/verify")
        .header("accept-language", "sv")
        .json(&json!({ "pendingToken": pending, "code": wrong }))
        .send()
        .await
        .unwrap();
    let body = problem(response, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(body["title"], "För många felaktiga koder");
}

#[tokio::test]
async fn two_factor_is_turned_off_with_a_code_and_enrolment_needs_it_off() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    let (secret, _) = enrol(&app, &owner).await;

    let response = app
        .authed(&owner.token, Method::POST, "/me/2fa")
        .send()
        .await
        .unwrap();
    let body = problem(response, StatusCode::CONFLICT).await;
    assert_eq!(
        body["type"],
        "https://leasedesk.se/problems/two-factor-already-enabled"
    );

    app.clock.advance(Duration::seconds(30));
    let disable = |code: String| {
        app.authed(&owner.token, Method::DELETE, "/me/2fa")
            .json(&json!({ "code": code }))
            .send()
    };
    let wrong = wrong_code(&app_code(&app, &secret));
    problem(disable(wrong).await.unwrap(), StatusCode::UNAUTHORIZED).await;
    let response = disable(app_code(&app, &secret)).await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let body = problem(
        disable(app_code(&app, &secret)).await.unwrap(),
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(
        body["type"],
        "https://leasedesk.se/problems/two-factor-not-enabled"
    );

    // Without two-factor login, the password alone signs in again.
    let token = app.log_in(&owner.email, PASSWORD).await;
    assert_eq!(me_status(&app, &token).await, StatusCode::OK);
    let log = app
        .get_json(&token, "/audit?action=auth.2fa_disabled")
        .await;
    assert_eq!(log["events"][0]["after"]["method"], "totp", "{log}");
}

#[tokio::test]
async fn an_organization_can_require_a_second_factor_of_every_member() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    let require = |token: String| {
        app.authed(&token, Method::PATCH, "/organization/settings")
            .json(&json!({"requireTwoFactor": true}))
            .send()
    };
    // Not without a second factor of one's own: nobody locks the organization out.
    let body = problem(
        require(owner.token.clone()).await.unwrap(),
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(
        body["type"],
        "https://leasedesk.se/problems/two-factor-first"
    );

    let viewer_email = format!("viewer-{}@nordlysfleet.se", std::process::id());
    let response = app
        .authed(&owner.token, Method::POST, "/members/invitations")
        .json(&json!({"email": viewer_email, "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let invitation = app.invitation_token(&viewer_email).await;
    let joined: Value = app
        .request(Method::POST, "/auth/invitations/accept")
        .json(&json!({"token": invitation, "name": "Vera Viewer", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let before = joined["accessToken"].as_str().unwrap().to_owned();
    assert!(joined.get("twoFactorEnrolmentRequired").is_none());

    enrol(&app, &owner).await;
    let response = require(owner.token.clone()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let settings: Value = response.json().await.unwrap();
    assert_eq!(settings["requireTwoFactor"], true);
    // The viewer, without a second factor, was signed out.
    let response = app
        .authed(&before, Method::GET, "/me")
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::UNAUTHORIZED).await;

    // Signing in again gives a session that serves only the set-up.
    let login: Value = app
        .request(Method::POST, "/auth/login")
        .json(&json!({"email": viewer_email, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(login["twoFactorEnrolmentRequired"], true, "{login}");
    let viewer = Account {
        token: login["accessToken"].as_str().unwrap().to_owned(),
        email: viewer_email.clone(),
        tenant: owner.tenant,
        user: owner.user,
    };
    let response = app
        .authed(&viewer.token, Method::GET, "/contracts")
        .send()
        .await
        .unwrap();
    let body = problem(response, StatusCode::FORBIDDEN).await;
    assert_eq!(
        body["type"],
        "https://leasedesk.se/problems/two-factor-required"
    );
    assert_eq!(
        app.get_json(&viewer.token, "/me").await["user"]["role"],
        "viewer"
    );

    // Once set up, the same session serves everything the role allows.
    enrol(&app, &viewer).await;
    app.get_json(&viewer.token, "/contracts").await;
    // And the second factor cannot be turned off while it is required.
    let response = app
        .authed(&viewer.token, Method::DELETE, "/me/2fa")
        .json(&json!({"code": "123456"}))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::FORBIDDEN).await;
    let settings = app.get_json(&viewer.token, "/organization/settings").await;
    assert_eq!(settings["requireTwoFactor"], true);
    let log = app
        .get_json(&owner.token, "/audit?action=organization.settings_changed")
        .await;
    assert_eq!(log["events"][0]["after"]["requireTwoFactor"], true, "{log}");
}
