//! Bad input gets a problem document that says what is wrong, and changes nothing.

use e2e::{TestApp, contract, error_codes, problem};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn contract_count(app: &TestApp, token: &str) -> usize {
    let list = app.get_json(token, "/contracts?limit=200").await;
    list["items"].as_array().unwrap().len()
}

async fn post_raw(
    app: &TestApp,
    token: &str,
    content_type: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    app.authed(token, Method::POST, "/contracts")
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn malformed_bodies() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;

    let body = problem(
        post_raw(
            &app,
            &owner.token,
            "application/json",
            b"{\"contractNumber\": \"LC-1\",\n".to_vec(),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(body["type"], "https://leasedesk.se/problems/malformed-json");

    problem(
        post_raw(
            &app,
            &owner.token,
            "text/plain",
            contract("LC-1").to_string().into_bytes(),
        )
        .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;

    let mut huge = contract("LC-1");
    huge["notes"] = json!("x".repeat(70 * 1024));
    let body = problem(
        post_raw(
            &app,
            &owner.token,
            "application/json",
            huge.to_string().into_bytes(),
        )
        .await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("65536"));

    assert_eq!(contract_count(&app, &owner.token).await, 0);
}

#[tokio::test]
async fn unknown_fields_and_wrong_types_are_named() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;

    let mut body = contract("LC-1");
    body["colour"] = json!("red");
    body["payment"]["vat"] = json!(25);
    let response = app
        .authed(&owner.token, Method::POST, "/contracts")
        .json(&body)
        .send()
        .await
        .unwrap();
    let problem_body = problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(
        error_codes(&problem_body),
        [
            ("/colour".into(), "unknown_field".into()),
            ("/payment/vat".into(), "unknown_field".into())
        ]
    );

    let mut body = contract("LC-1");
    body["payment"]["amount"] = json!("6899.00");
    let response = app
        .authed(&owner.token, Method::POST, "/contracts")
        .json(&body)
        .send()
        .await
        .unwrap();
    let problem_body = problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(
        error_codes(&problem_body),
        [("/payment/amount".into(), "invalid_type".into())]
    );

    let response = app
        .authed(&owner.token, Method::POST, "/contracts")
        .json(&json!(["not", "an", "object"]))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(contract_count(&app, &owner.token).await, 0);
}

#[tokio::test]
async fn invalid_values_are_all_reported_in_the_callers_language() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    let mut body = contract("LC-1");
    body["startDate"] = json!("2027-03-01");
    body["endDate"] = json!("2027-02-28");
    body["payment"] = json!({"amount": -100, "currency": "SEK"});
    body["residualValue"] = json!({"amount": 5, "currency": "XXY"});
    body["category"] = json!("car");
    body["interestRate"] = json!("4,95");
    body.as_object_mut().unwrap().remove("lessor");
    let response = app
        .authed(&owner.token, Method::POST, "/contracts")
        .header("accept-language", "sv-SE, en;q=0.5")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-language"], "sv");
    let problem_body = problem(response, StatusCode::BAD_REQUEST).await;
    let codes = error_codes(&problem_body);
    for expected in [
        ("/lessor", "required"),
        ("/category", "invalid_choice"),
        ("/payment/amount", "negative"),
        ("/residualValue/currency", "unknown_currency"),
        ("/interestRate", "invalid_decimal"),
    ] {
        assert!(
            codes.contains(&(expected.0.into(), expected.1.into())),
            "{expected:?} in {codes:?}"
        );
    }
    assert_eq!(problem_body["title"], "Begäran innehåller ogiltiga fält");

    // With the fields fixed, the dates are checked against each other.
    let mut body = contract("LC-1");
    body["startDate"] = json!("2027-03-01");
    body["endDate"] = json!("2027-02-28");
    let response = app
        .authed(&owner.token, Method::POST, "/contracts")
        .json(&body)
        .send()
        .await
        .unwrap();
    let problem_body = problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(
        error_codes(&problem_body),
        [("/endDate".into(), "end_not_after_start".into())]
    );
    let mut body = contract("LC-1");
    body["endDate"] = json!("2027-02-30");
    let response = app
        .authed(&owner.token, Method::POST, "/contracts")
        .json(&body)
        .send()
        .await
        .unwrap();
    let problem_body = problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(
        error_codes(&problem_body),
        [("/endDate".into(), "invalid_date".into())]
    );
    assert_eq!(contract_count(&app, &owner.token).await, 0);
}

#[tokio::test]
async fn a_bad_patch_changes_nothing() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    let created = app.create_contract(&owner.token, &contract("LC-1")).await;
    let path = format!("/contracts/{}", created["id"].as_str().unwrap());
    for (patch, pointer, code) in [
        (json!({"lessor": null}), "/lessor", "not_nullable"),
        (
            json!({"endDate": "2020-01-01"}),
            "/endDate",
            "end_not_after_start",
        ),
        (
            json!({"payment": {"amount": 100, "currency": "EUR"}}),
            "/residualValue/currency",
            "currency_mismatch",
        ),
        (json!({"status": "terminated"}), "/status", "unknown_field"),
        (json!({"id": "x"}), "/id", "unknown_field"),
    ] {
        let response = app
            .authed(&owner.token, Method::PATCH, &path)
            .header("if-match", "\"1\"")
            .json(&patch)
            .send()
            .await
            .unwrap();
        let body = problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(
            error_codes(&body),
            [(pointer.into(), code.into())],
            "{patch}"
        );
    }
    let response = app
        .authed(&owner.token, Method::PATCH, &path)
        .header("if-match", "3")
        .json(&json!({"notes": "x"}))
        .send()
        .await
        .unwrap();
    let body = problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(
        error_codes(&body),
        [("If-Match".into(), "invalid_header".into())]
    );

    let now: Value = app.get_json(&owner.token, &path).await;
    assert_eq!(now, created);
}

#[tokio::test]
async fn bad_list_parameters_and_ids() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    let response = app
        .authed(
            &owner.token,
            Method::GET,
            "/contracts?limit=500&status=gone&stauts=active&cursor=%21%21&endsBefore=tomorrow",
        )
        .send()
        .await
        .unwrap();
    let body = problem(response, StatusCode::BAD_REQUEST).await;
    let mut codes = error_codes(&body);
    codes.sort();
    assert_eq!(
        codes,
        [
            ("cursor".to_owned(), "invalid_cursor".to_owned()),
            ("endsBefore".into(), "invalid_date".into()),
            ("limit".into(), "invalid_integer".into()),
            ("status".into(), "invalid_choice".into()),
            ("stauts".into(), "unknown_field".into()),
        ]
    );
    // A cursor from one kind of list is refused by another.
    for _ in 0..3 {
        app.create_contract(&owner.token, &contract(&format!("LC-{}", uuid_like())))
            .await;
    }
    let page: Value = app.get_json(&owner.token, "/contracts?limit=1").await;
    let cursor = page["nextCursor"].as_str().unwrap();
    let response = app
        .authed(
            &owner.token,
            Method::GET,
            &format!("/contracts?limit=1&endsBefore=2030-01-01&cursor={cursor}"),
        )
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::BAD_REQUEST).await;

    for id in ["not-a-uuid", "00000000-0000-0000-0000-000000000000"] {
        let response = app
            .authed(&owner.token, Method::GET, &format!("/contracts/{id}"))
            .send()
            .await
            .unwrap();
        problem(response, StatusCode::NOT_FOUND).await;
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed).to_string()
}
