//! Sign-up, login and the caller's profile over HTTP.

use e2e::{PASSWORD, TestApp, error_codes, problem};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn signup_body(number: &str, email: &str) -> Value {
    json!({
        "organizationName": "Kiruna Maskin AB",
        "organizationNumber": number,
        "name": "Erik Nilsson",
        "email": email,
        "password": PASSWORD,
    })
}

#[tokio::test]
async fn sign_up_log_in_and_see_yourself() {
    let app = TestApp::spawn().await;
    let response = app
        .request(Method::POST, "/auth/signup")
        .json(&signup_body(
            "5560743089",
            "  Erik.Nilsson@KirunaMaskin.se ",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let profile: Value = response.json().await.unwrap();
    assert_eq!(profile["user"]["role"], "owner");
    assert_eq!(profile["user"]["email"], "erik.nilsson@kirunamaskin.se");
    assert_eq!(profile["organization"]["organizationNumber"], "556074-3089");
    assert!(profile["user"].get("passwordHash").is_none());

    // The e-mail is matched without regard to case.
    let response = app
        .request(Method::POST, "/auth/login")
        .json(&json!({"email": "ERIK.NILSSON@kirunamaskin.se", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let token: Value = response.json().await.unwrap();
    assert_eq!(token["tokenType"], "Bearer");
    assert_eq!(token["expiresIn"], 900);

    let me: Value = app
        .get_json(token["accessToken"].as_str().unwrap(), "/me")
        .await;
    assert_eq!(me, profile);
}

#[tokio::test]
async fn unknown_email_and_wrong_password_answer_alike() {
    let app = TestApp::spawn().await;
    let account = app.sign_up().await;
    let mut answers = Vec::new();
    for (email, password) in [
        (account.email.as_str(), "Wrong-password-entirely-1"),
        ("nobody@nowhere.se", PASSWORD),
        ("not-an-email", PASSWORD),
    ] {
        let response = app
            .request(Method::POST, "/auth/login")
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap();
        let mut body = problem(response, StatusCode::UNAUTHORIZED).await;
        body.as_object_mut().unwrap().remove("requestId");
        answers.push(body);
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[1], answers[2]);
    assert_eq!(
        answers[0]["type"],
        "https://leasedesk.se/problems/invalid-credentials"
    );
}

#[tokio::test]
async fn sign_up_refuses_bad_numbers_weak_passwords_and_duplicates() {
    let app = TestApp::spawn().await;
    let response = app
        .request(Method::POST, "/auth/signup")
        .json(&json!({
            "organizationName": "",
            "organizationNumber": "556074-3088",
            "name": "Erik",
            "email": "erik@",
            "password": "password1234",
        }))
        .send()
        .await
        .unwrap();
    let body = problem(response, StatusCode::BAD_REQUEST).await;
    let codes = error_codes(&body);
    for expected in [
        ("/organizationName", "blank"),
        ("/organizationNumber", "invalid_organization_number"),
        ("/email", "invalid_email"),
        ("/password", "weak_password"),
    ] {
        assert!(
            codes.contains(&(expected.0.into(), expected.1.into())),
            "{expected:?} in {codes:?}"
        );
    }

    let too_short = app
        .request(Method::POST, "/auth/signup")
        .json(&json!({
            "organizationName": "Kiruna Maskin AB",
            "organizationNumber": "5560743089",
            "name": "Erik",
            "email": "erik@kiruna.se",
            "password": "Kort-1!",
        }))
        .send()
        .await
        .unwrap();
    let body = problem(too_short, StatusCode::BAD_REQUEST).await;
    assert_eq!(
        error_codes(&body),
        [("/password".into(), "too_short".into())]
    );

    let first = app
        .request(Method::POST, "/auth/signup")
        .json(&signup_body("5560743089", "erik@kiruna.se"))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let again = app
        .request(Method::POST, "/auth/signup")
        .json(&signup_body("556074-3089", "ERIK@kiruna.se"))
        .send()
        .await
        .unwrap();
    let body = problem(again, StatusCode::CONFLICT).await;
    assert_eq!(
        error_codes(&body),
        [
            ("/email".into(), "already_in_use".into()),
            ("/organizationNumber".into(), "already_in_use".into())
        ]
    );
}

#[tokio::test]
async fn long_passphrases_work_whole() {
    let app = TestApp::spawn().await;
    let passphrase = "Norrsken över Abisko i januari ".repeat(8);
    let passphrase = passphrase.trim_end();
    assert!(passphrase.chars().count() > 200);
    let response = app
        .request(Method::POST, "/auth/signup")
        .json(&json!({
            "organizationName": "Abisko Fjällturer AB",
            "organizationNumber": "5562004001",
            "name": "Sara Sjöberg",
            "email": "sara@abisko.se",
            "password": passphrase,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    app.log_in("sara@abisko.se", passphrase).await;
    // Without truncation, dropping the last character must fail.
    let response = app
        .request(Method::POST, "/auth/login")
        .json(&json!({"email": "sara@abisko.se", "password": &passphrase[..passphrase.len() - 1]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn tokens_are_required_and_checked() {
    let app = TestApp::spawn().await;
    let account = app.sign_up().await;
    let response = app.request(Method::GET, "/me").send().await.unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    problem(response, StatusCode::UNAUTHORIZED).await;

    let mut tampered = account.token.clone();
    tampered.pop();
    for bad in [tampered.as_str(), "garbage", ""] {
        let response = app
            .request(Method::GET, "/me")
            .header("authorization", format!("Bearer {bad}"))
            .send()
            .await
            .unwrap();
        problem(response, StatusCode::UNAUTHORIZED).await;
    }

    // Expired: the server's clock moves past the token's 15 minutes and the leeway.
    app.clock.advance(chrono::Duration::minutes(15));
    let response = app
        .authed(&account.token, Method::GET, "/me")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "still valid within the leeway"
    );
    app.clock.advance(chrono::Duration::seconds(31));
    let response = app
        .authed(&account.token, Method::GET, "/me")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["www-authenticate"],
        r#"Bearer error="invalid_token""#
    );
    problem(response, StatusCode::UNAUTHORIZED).await;
}
