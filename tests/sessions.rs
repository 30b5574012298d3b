//! Sessions end to end: refresh-token rotation and the reuse attack, logout, sign out
//! everywhere, a password change ending the other sessions, and token types that never
//! stand in for one another.

use e2e::{PASSWORD, TestApp, problem};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Signs in: the whole token answer.
async fn sign_in(app: &TestApp, email: &str, password: &str) -> Value {
    let response = app
        .request(Method::POST, "/auth/login")
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.unwrap()
}

async fn refresh(app: &TestApp, refresh_token: &str) -> reqwest::Response {
    app.request(Method::POST, "/auth/refresh")
        .json(&json!({ "refreshToken": refresh_token }))
        .send()
        .await
        .unwrap()
}

async fn me_status(app: &TestApp, access_token: &str) -> StatusCode {
    app.authed(access_token, Method::GET, "/me")
        .send()
        .await
        .unwrap()
        .status()
}

fn text<'a>(tokens: &'a Value, field: &str) -> &'a str {
    tokens[field].as_str().unwrap()
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_ends_the_session() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    let first = sign_in(&app, &owner.email, PASSWORD).await;

    let response = refresh(&app, text(&first, "refreshToken")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let second: Value = response.json().await.unwrap();
    assert_ne!(second["refreshToken"], first["refreshToken"]);
    assert_eq!(second["refreshExpiresAt"], first["refreshExpiresAt"]);
    assert_eq!(
        me_status(&app, text(&second, "accessToken")).await,
        StatusCode::OK
    );

    // The first refresh token again: someone else holds the chain. The session ends for
    // both, the tokens already handed out included.
    problem(
        refresh(&app, text(&first, "refreshToken")).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    problem(
        refresh(&app, text(&second, "refreshToken")).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(
        me_status(&app, text(&second, "accessToken")).await,
        StatusCode::UNAUTHORIZED
    );
    // Other sessions are not touched, and the audit log tells what happened.
    assert_eq!(me_status(&app, &owner.token).await, StatusCode::OK);
    let log = app
        .get_json(&owner.token, "/audit?action=auth.refresh_token_reused")
        .await;
    assert_eq!(log["events"][0]["outcome"], "denied", "{log}");
    // No token reaches the audit log.
    let everything = app
        .get_json(&owner.token, "/audit?limit=200")
        .await
        .to_string();
    for secret in [
        &first["refreshToken"],
        &second["refreshToken"],
        &second["accessToken"],
    ] {
        assert!(!everything.contains(secret.as_str().unwrap()));
    }
}

#[tokio::test]
async fn logout_ends_one_session_and_logout_everywhere_ends_them_all() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    let laptop = sign_in(&app, &owner.email, PASSWORD).await;
    let phone = sign_in(&app, &owner.email, PASSWORD).await;

    let response = app
        .authed(text(&laptop, "accessToken"), Method::POST, "/auth/logout")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        me_status(&app, text(&laptop, "accessToken")).await,
        StatusCode::UNAUTHORIZED
    );
    problem(
        refresh(&app, text(&laptop, "refreshToken")).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(
        me_status(&app, text(&phone, "accessToken")).await,
        StatusCode::OK
    );

    let response = app
        .authed(
            text(&phone, "accessToken"),
            Method::POST,
            "/auth/logout-everywhere",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    for access in [text(&phone, "accessToken"), owner.token.as_str()] {
        assert_eq!(me_status(&app, access).await, StatusCode::UNAUTHORIZED);
    }
    problem(
        refresh(&app, text(&phone, "refreshToken")).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    // Signing in again opens a new session.
    let again = sign_in(&app, &owner.email, PASSWORD).await;
    assert_eq!(
        me_status(&app, text(&again, "accessToken")).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_password_change_ends_the_other_sessions() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    let other = sign_in(&app, &owner.email, PASSWORD).await;
    let new_password = "Norrsken-over-Abisko-2027";

    let wrong = app
        .authed(&owner.token, Method::POST, "/me/password")
        .json(&json!({"currentPassword": "not-the-password-at-all", "newPassword": new_password}))
        .send()
        .await
        .unwrap();
    let body = problem(wrong, StatusCode::BAD_REQUEST).await;
    assert_eq!(body["errors"][0]["pointer"], "/currentPassword", "{body}");
    let weak = app
        .authed(&owner.token, Method::POST, "/me/password")
        .json(&json!({"currentPassword": PASSWORD, "newPassword": "password1234"}))
        .send()
        .await
        .unwrap();
    problem(weak, StatusCode::BAD_REQUEST).await;
    // Nothing changed so far.
    assert_eq!(
        me_status(&app, text(&other, "accessToken")).await,
        StatusCode::OK
    );

    let response = app
        .authed(&owner.token, Method::POST, "/me/password")
        .json(&json!({"currentPassword": PASSWORD, "newPassword": new_password}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let fresh: Value = response.json().await.unwrap();
    assert_eq!(
        me_status(&app, text(&fresh, "accessToken")).await,
        StatusCode::OK
    );
    for access in [owner.token.as_str(), text(&other, "accessToken")] {
        assert_eq!(me_status(&app, access).await, StatusCode::UNAUTHORIZED);
    }
    problem(
        refresh(&app, text(&other, "refreshToken")).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let old = app
        .request(Method::POST, "/auth/login")
        .json(&json!({"email": owner.email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    problem(old, StatusCode::UNAUTHORIZED).await;
    sign_in(&app, &owner.email, new_password).await;
}

#[tokio::test]
async fn a_token_of_one_type_is_never_accepted_as_another() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    let tokens = sign_in(&app, &owner.email, PASSWORD).await;
    let (access, refresh_token) = (text(&tokens, "accessToken"), text(&tokens, "refreshToken"));
    let invitee = format!("typed-{}@nordlysfleet.se", std::process::id());
    let response = app
        .authed(access, Method::POST, "/members/invitations")
        .json(&json!({"email": invitee, "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let invitation = app.invitation_token(&invitee).await;

    // Refresh and invitation tokens are not access tokens.
    for bearer in [refresh_token, invitation.as_str()] {
        assert_eq!(me_status(&app, bearer).await, StatusCode::UNAUTHORIZED);
    }
    // Access and invitation tokens are not refresh tokens.
    for presented in [access, invitation.as_str()] {
        problem(refresh(&app, presented).await, StatusCode::UNAUTHORIZED).await;
    }
    // Access and refresh tokens are not invitations.
    for presented in [access, refresh_token] {
        let response = app
            .request(Method::POST, "/auth/invitations/accept")
            .json(&json!({"token": presented, "name": "Eve", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        problem(response, StatusCode::GONE).await;
    }
    // None of that used anything up: each token still does its own job.
    assert_eq!(me_status(&app, access).await, StatusCode::OK);
    assert_eq!(refresh(&app, refresh_token).await.status(), StatusCode::OK);
    let response = app
        .request(Method::POST, "/auth/invitations/accept")
        .json(&json!({"token": invitation, "name": "Vera Viewer", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
}

async fn attempt(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    app.request(Method::POST, "/auth/login")
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

/// A problem document without what differs from one response to the next.
fn comparable(mut problem: Value) -> Value {
    if let Some(object) = problem.as_object_mut() {
        object.remove("requestId");
        object.remove("instance");
    }
    problem
}

#[tokio::test]
async fn failed_sign_ins_are_throttled_per_account_and_say_when_to_retry() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    let unknown = "nobody@nordlysfleet.se";

    // Unknown address and wrong password: the same answer.
    let wrong = problem(
        attempt(&app, &owner.email, "not-the-password").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let nobody = problem(
        attempt(&app, unknown, "not-the-password").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(comparable(wrong), comparable(nobody));

    for _ in 1..10 {
        for email in [owner.email.as_str(), unknown] {
            problem(
                attempt(&app, email, "not-the-password").await,
                StatusCode::UNAUTHORIZED,
            )
            .await;
        }
    }
    // The tenth failure used the window up: even the right password waits, and an
    // unknown address is answered exactly like a known one.
    let mut answers = Vec::new();
    for (email, password) in [(owner.email.as_str(), PASSWORD), (unknown, PASSWORD)] {
        let response = attempt(&app, email, password).await;
        let retry_after: i64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=900).contains(&retry_after), "{retry_after}");
        let body = problem(response, StatusCode::TOO_MANY_REQUESTS).await;
        assert_eq!(
            body["type"],
            "https://leasedesk.se/problems/too-many-attempts"
        );
        answers.push(comparable(body));
    }
    assert_eq!(answers[0], answers[1]);
    // Another account is not held up by this one.
    let other = app.sign_up().await;
    sign_in(&app, &other.email, PASSWORD).await;

    // The failures against the real account are in its organization's audit log, with
    // no password in them.
    let log = app
        .get_json(&owner.token, "/audit?action=auth.sign_in_failed&limit=50")
        .await;
    assert_eq!(log["events"].as_array().unwrap().len(), 10, "{log}");
    assert_eq!(log["events"][0]["outcome"], "failure");
    assert!(!log.to_string().contains("not-the-password"));

    // The next window opens the door again.
    app.clock.advance(chrono::Duration::minutes(15));
    sign_in(&app, &owner.email, PASSWORD).await;
}

#[tokio::test]
async fn one_address_failing_on_many_accounts_is_throttled() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    // The local runner sees every test request from 127.0.0.1.
    for n in 0..100 {
        let email = format!("guess{n}@nordlysfleet.se");
        problem(
            attempt(&app, &email, "Sommar2026!").await,
            StatusCode::UNAUTHORIZED,
        )
        .await;
    }
    let response = attempt(&app, &owner.email, PASSWORD).await;
    assert!(response.headers().contains_key("retry-after"));
    problem(response, StatusCode::TOO_MANY_REQUESTS).await;
}

#[tokio::test]
async fn a_password_reset_link_works_once_and_ends_every_session() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    let unknown = "nobody-here@nordlysfleet.se";
    let mut answers = Vec::new();
    for email in [owner.email.as_str(), unknown] {
        let started = std::time::Instant::now();
        let response = app
            .request(Method::POST, "/auth/password-reset")
            .header("accept-language", "fi")
            .json(&json!({ "email": email }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        answers.push((started.elapsed(), response.bytes().await.unwrap()));
    }
    // The same answer in the same time: both wait for the floor, which the known
    // address's write and mail stay well under.
    let floor = domain::password_reset::RESET_ANSWER_FLOOR;
    let (known, unknown_answer) = (&answers[0], &answers[1]);
    assert_eq!(known.1, unknown_answer.1);
    for (took, _) in &answers {
        assert!(*took >= floor, "answered after {took:?}, before the floor");
    }
    let apart = known.0.abs_diff(unknown_answer.0);
    assert!(
        apart < std::time::Duration::from_millis(150),
        "known {:?}, unknown {:?}",
        known.0,
        unknown_answer.0
    );
    assert!(app.mails_to(unknown).await.is_empty());
    let mails = app.mails_to(&owner.email).await;
    assert_eq!(mails.len(), 1);
    assert!(
        mails[0].text.contains("salasan"),
        "Finnish: {}",
        mails[0].text
    );
    let token = e2e::link_token(&mails[0].text, "#token=");

    let confirm = |password: &'static str, token: String| {
        app.request(Method::POST, "/auth/password-reset/confirm")
            .json(&json!({"token": token, "newPassword": password}))
            .send()
    };
    let weak = confirm("password1234", token.clone()).await.unwrap();
    problem(weak, StatusCode::BAD_REQUEST).await;
    let done = confirm("Midnattssol-i-Lofoten-2027", token.clone())
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::NO_CONTENT);
    // Whoever knew the old password is out, and the link is used up.
    assert_eq!(
        me_status(&app, &owner.token).await,
        StatusCode::UNAUTHORIZED
    );
    let again = confirm("Another-Long-Passphrase-2028", token)
        .await
        .unwrap();
    let body = problem(again, StatusCode::GONE).await;
    assert_eq!(
        body["type"],
        "https://leasedesk.se/problems/reset-link-invalid"
    );
    problem(
        attempt(&app, &owner.email, PASSWORD).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    sign_in(&app, &owner.email, "Midnattssol-i-Lofoten-2027").await;
}

#[tokio::test]
async fn two_refreshes_racing_with_one_token_cannot_both_win() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    let tokens = sign_in(&app, &owner.email, PASSWORD).await;
    let token = text(&tokens, "refreshToken");
    let (a, b) = tokio::join!(refresh(&app, token), refresh(&app, token));
    let mut statuses = [a.status(), b.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::UNAUTHORIZED]);
}

#[tokio::test]
async fn the_personal_data_export_holds_everything_about_the_caller_and_no_secret() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    let other = sign_in(&app, &owner.email, PASSWORD).await;
    app.create_contract(
        &owner.token,
        &json!({
            "contractNumber": "LC-GDPR", "lessor": "Volvofinans Bank AB",
            "description": "Volvo XC60", "category": "vehicle",
            "startDate": "2025-01-01", "endDate": "2027-12-31",
            "payment": {"amount": 650000, "currency": "SEK"},
            "paymentFrequency": "monthly", "paymentTiming": "advance", "interestRate": "4.5",
        }),
    )
    .await;
    // Someone else's activity is not the caller's data.
    let colleague = app
        .token_with_role(&owner, domain::access::Role::Editor)
        .await;

    let response = app
        .authed(&owner.token, Method::GET, "/me/export")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("personal-data.json")
    );
    let text = response.text().await.unwrap();
    let data: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(data["user"]["email"], owner.email.as_str());
    assert_eq!(data["organization"]["id"], owner.tenant.to_string());
    assert_eq!(data["twoFactorEnabled"], false);
    let sessions = data["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{data}");
    assert!(sessions.iter().all(|session| session["live"] == true));
    let actions: Vec<&str> = data["activity"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["action"].as_str().unwrap())
        .collect();
    for expected in [
        "organization.created",
        "auth.signed_in",
        "contract.created",
        "member.invited",
    ] {
        assert!(actions.contains(&expected), "{expected} in {actions:?}");
    }
    assert!(
        data["activity"]
            .as_array()
            .unwrap()
            .iter()
            .all(|event| event["actorId"] == owner.user.to_string())
    );
    for secret in [
        "argon2",
        "passwordHash",
        "secretHash",
        text_of(&other, "refreshToken"),
        text_of(&other, "accessToken"),
        owner.token.as_str(),
        colleague.as_str(),
    ] {
        assert!(!text.contains(secret), "{secret} in the export");
    }
    let log = app
        .get_json(&owner.token, "/audit?action=gdpr.exported")
        .await;
    assert_eq!(log["events"].as_array().unwrap().len(), 1);
}

fn text_of<'a>(tokens: &'a Value, field: &str) -> &'a str {
    tokens[field].as_str().unwrap()
}

#[tokio::test]
async fn a_chosen_language_wins_over_accept_language_for_problems_and_mails() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    let choose = |language: Value| {
        app.authed(&owner.token, Method::PATCH, "/me")
            .json(&json!({ "language": language }))
            .send()
    };
    let body = problem(choose(json!("xx")).await.unwrap(), StatusCode::BAD_REQUEST).await;
    assert_eq!(body["errors"][0]["pointer"], "/language");
    let response = choose(json!("fi")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let profile: Value = response.json().await.unwrap();
    assert_eq!(profile["user"]["language"], "fi");

    // A problem answers in Finnish, whatever the browser asks for.
    let response = app
        .authed(
            &owner.token,
            Method::GET,
            "/contracts/0190f5c2-0000-7000-8000-000000000000",
        )
        .header("accept-language", "sv")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-language"], "fi");
    problem(response, StatusCode::NOT_FOUND).await;
    // So does the password-reset mail, asked for from a Swedish browser.
    let response = app
        .request(Method::POST, "/auth/password-reset")
        .header("accept-language", "sv")
        .json(&json!({ "email": owner.email }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let mails = app.mails_to(&owner.email).await;
    assert!(
        mails[0].text.contains("salasan"),
        "Finnish: {}",
        mails[0].text
    );

    // Back to the browser's choice.
    let response = choose(Value::Null).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = app
        .authed(
            &owner.token,
            Method::GET,
            "/contracts/0190f5c2-0000-7000-8000-000000000000",
        )
        .header("accept-language", "sv")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-language"], "sv");
}
