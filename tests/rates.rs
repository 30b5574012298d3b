//! Rates end to end: a poll through the local runner against a loopback server that
//! speaks like Riksbanken and the ECB fills the series; the API serves them; a
//! variable-rate contract follows a new observation.

use domain::access::Role;
use e2e::{TestApp, contract, ecb_xml, error_codes, loopback_feeds, problem};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// What the sources publish up to 2026-11-20.
async fn publish_up_to_friday(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/swea/Series"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"seriesId": "SECBREPOEFF", "shortDescription": "Policy rate", "midDescription": "Riksbank policy rate",
             "observationMinDate": "1994-06-01", "observationMaxDate": "2026-11-20", "seriesClosed": false},
            {"seriesId": "SEDP3MSTIBORDELAYC", "shortDescription": "STIBOR 3M", "midDescription": "STIBOR 3 months (delayed)",
             "observationMinDate": "1987-01-02", "observationMaxDate": "2021-06-30", "seriesClosed": true},
            {"seriesId": "SEKNOKPMI", "shortDescription": "NOK", "midDescription": "SEK per NOK",
             "observationMinDate": "1993-01-04", "observationMaxDate": "2026-11-20", "seriesClosed": false}
        ])))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex("^/swea/Observations/SECBREPOEFF/.*"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            r#"[{"date":"2026-11-19","value":1.75},{"date":"2026-11-20","value":1.75}]"#,
            "application/json",
        ))
        .with_priority(1)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex("^/swea/Observations/SEKNOKPMI/.*"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            r#"[{"date":"2026-11-20","value":1.0123}]"#,
            "application/json",
        ))
        .with_priority(1)
        .mount(server)
        .await;
    // Every other series: no data for the range asked.
    Mock::given(method("GET"))
        .and(path_regex("^/swea/Observations/.*"))
        .respond_with(ResponseTemplate::new(204))
        .with_priority(5)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/swestr/all/SWESTR"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            r#"[{"rate":1.652,"date":"2026-11-20","pctl12_5":1.6,"pctl87_5":1.7,"volume":50000,"alternativeCalculation":false,"publicationTime":"2026-11-21T11:00:00Z","republication":false}]"#,
            "application/json",
        ))
        .mount(server)
        .await;
    let xml = ecb_xml(&[
        ("2026-11-20", &[("SEK", "11.1000"), ("USD", "1.0500")]),
        ("2026-11-19", &[("SEK", "11.0000"), ("USD", "1.0400")]),
    ]);
    Mock::given(method("GET"))
        .and(path_regex("^/ecb/eurofxref-.*"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(xml, "text/xml"))
        .mount(server)
        .await;
}

async fn refresh(app: &TestApp, token: &str) -> Value {
    let response = app
        .authed(token, Method::POST, "/rates/refresh")
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn a_poll_fills_the_series_and_the_api_serves_them() {
    let server = MockServer::start().await;
    publish_up_to_friday(&server).await;
    let app =
        TestApp::spawn_with(tempfile::tempdir().unwrap(), loopback_feeds(&server.uri())).await;
    let owner = app.sign_up().await;

    let report = refresh(&app, &owner.token).await;
    assert!(report["stored"].as_u64().unwrap() >= 7, "{report}");
    assert_eq!(report["unreachable"], json!([]));
    // A second poll finds nothing new: storing is idempotent.
    let again = refresh(&app, &owner.token).await;
    assert_eq!(again["stored"], 0, "{again}");

    let catalogue = app.get_json(&owner.token, "/rates").await;
    let by_id = |id: &str| {
        catalogue["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("{id} in {catalogue}"))
            .clone()
    };
    let policy = by_id("SECBREPOEFF");
    assert_eq!(policy["source"], "riksbank");
    assert_eq!(policy["closed"], false);
    assert_eq!(
        policy["lastObservation"],
        json!({"date": "2026-11-20", "value": "1.75"})
    );
    assert_eq!(policy["stalenessDays"], 1);
    let stibor = by_id("SEDP3MSTIBORDELAYC");
    assert_eq!(stibor["closed"], true, "a closed series says so");
    assert!(stibor.get("stalenessDays").is_none());
    let eur_sek = by_id("ECB.EUR.SEK");
    assert_eq!(eur_sek["kind"], "exchangeRate");
    assert_eq!(eur_sek["base"], "EUR");
    assert_eq!(eur_sek["quote"], "SEK");

    let series = app
        .get_json(
            &owner.token,
            "/rates/SECBREPOEFF?from=2026-11-01&to=2026-11-21",
        )
        .await;
    assert_eq!(
        series["observations"],
        json!([{"date": "2026-11-19", "value": "1.75"}, {"date": "2026-11-20", "value": "1.75"}])
    );
    let latest = app.get_json(&owner.token, "/rates/SWESTR/latest").await;
    assert_eq!(latest["value"], "1.652");
    assert_eq!(latest["date"], "2026-11-20");

    // 100.00 EUR on Saturday uses Friday's rate.
    let conversion = app
        .get_json(
            &owner.token,
            "/fx/convert?from=EUR&to=SEK&amount=10000&date=2026-11-21",
        )
        .await;
    assert_eq!(
        conversion["converted"],
        json!({"amount": 111000, "currency": "SEK"})
    );
    assert_eq!(conversion["rateDate"], "2026-11-20");
    assert_eq!(conversion["source"], "ecb");
    // A cross rate through the euro: 100.00 USD = 100 * 11.10 / 1.05 SEK on the 19th... 20th.
    let cross = app
        .get_json(&owner.token, "/fx/convert?from=USD&to=SEK&amount=10000")
        .await;
    assert_eq!(cross["converted"]["amount"], 105714); // 1057.142857 SEK, rounded
    let earlier = app
        .get_json(
            &owner.token,
            "/fx/convert?from=SEK&to=USD&amount=110000&date=2026-11-19",
        )
        .await;
    assert_eq!(earlier["converted"]["amount"], 10400); // 1100 SEK / 11.00 * 1.04
    assert_eq!(earlier["rateDate"], "2026-11-19");

    let response = app
        .authed(
            &owner.token,
            Method::GET,
            "/fx/convert?from=EUR&to=SEK&amount=100&date=2020-01-01",
        )
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let response = app
        .authed(
            &owner.token,
            Method::GET,
            "/fx/convert?from=EUR&to=XXQ&amount=-1",
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
            ("amount".to_owned(), "invalid_integer".to_owned()),
            ("to".into(), "unknown_currency".into())
        ]
    );
    let response = app
        .authed(&owner.token, Method::GET, "/rates/NOSUCHSERIES/latest")
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::NOT_FOUND).await;

    // Only owners and admins poll on demand; every role reads.
    let viewer = app.token_with_role(&owner, Role::Viewer).await;
    let response = app
        .authed(&viewer, Method::POST, "/rates/refresh")
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::FORBIDDEN).await;
    app.get_json(&viewer, "/rates").await;
}

#[tokio::test]
async fn a_variable_rate_contract_follows_its_reference() {
    let server = MockServer::start().await;
    publish_up_to_friday(&server).await;
    let app =
        TestApp::spawn_with(tempfile::tempdir().unwrap(), loopback_feeds(&server.uri())).await;
    let owner = app.sign_up().await;
    refresh(&app, &owner.token).await;

    let mut body = contract("VAR-1");
    body.as_object_mut().unwrap().remove("interestRate");
    body["rateReference"] = json!({"series": "SWESTR", "margin": "1.85"});
    let created = app.create_contract(&owner.token, &body).await;
    assert_eq!(
        created["rateReference"],
        json!({"series": "SWESTR", "margin": "1.85"})
    );
    assert_eq!(created["currentRate"], "3.502");
    assert_eq!(created["currentRateDate"], "2026-11-20");
    let contract_path = format!("/contracts/{}", created["id"].as_str().unwrap());

    // A fixed-rate contract is not touched by the reference moving.
    let fixed = app.create_contract(&owner.token, &contract("FIX-1")).await;
    assert_eq!(fixed["currentRate"], "4.95");

    // Monday's SWESTR arrives.
    server.reset().await;
    publish_up_to_friday(&server).await;
    Mock::given(method("GET"))
        .and(path("/swestr/all/SWESTR"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            r#"[{"rate":1.702,"date":"2026-11-21","volume":48000,"republication":false}]"#,
            "application/json",
        ))
        .with_priority(1)
        .mount(&server)
        .await;
    let report = refresh(&app, &owner.token).await;
    assert_eq!(report["contractsRepriced"], 1, "{report}");

    let moved = app.get_json(&owner.token, &contract_path).await;
    assert_eq!(moved["currentRate"], "3.552");
    assert_eq!(moved["currentRateDate"], "2026-11-21");
    assert_eq!(moved["version"], 2);
    let fixed_now = app
        .get_json(
            &owner.token,
            &format!("/contracts/{}", fixed["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(fixed_now["version"], 1);

    // Switching to a fixed rate takes the contract off the reference.
    let response = app
        .authed(&owner.token, Method::PATCH, &contract_path)
        .header("if-match", "\"2\"")
        .json(&json!({"rateReference": null, "interestRate": "3.9"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let fixed_again: Value = response.json().await.unwrap();
    assert_eq!(fixed_again["currentRate"], "3.9");
    assert!(fixed_again.get("currentRateDate").is_none());
}

#[tokio::test]
async fn bad_rate_references_are_refused() {
    let server = MockServer::start().await;
    publish_up_to_friday(&server).await;
    let app =
        TestApp::spawn_with(tempfile::tempdir().unwrap(), loopback_feeds(&server.uri())).await;
    let owner = app.sign_up().await;
    refresh(&app, &owner.token).await;
    for (reference, keep_fixed, pointer, code) in [
        (
            json!({"series": "NOPE", "margin": "1"}),
            false,
            "/rateReference/series",
            "unknown_series",
        ),
        (
            json!({"series": "ECB.EUR.SEK", "margin": "1"}),
            false,
            "/rateReference/series",
            "unknown_series",
        ),
        (
            json!({"series": "SWESTR", "margin": "one"}),
            false,
            "/rateReference/margin",
            "invalid_decimal",
        ),
        (
            json!({"series": "SWESTR", "margin": "1"}),
            true,
            "/rateReference",
            "rate_conflict",
        ),
    ] {
        let mut body = contract("BAD-REF");
        if !keep_fixed {
            body.as_object_mut().unwrap().remove("interestRate");
        }
        body["rateReference"] = reference.clone();
        let response = app
            .authed(&owner.token, Method::POST, "/contracts")
            .json(&body)
            .send()
            .await
            .unwrap();
        let problem_body = problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(
            error_codes(&problem_body),
            [(pointer.into(), code.into())],
            "{reference}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_source_keeps_the_last_values_and_others_go_on() {
    let server = MockServer::start().await;
    publish_up_to_friday(&server).await;
    let data = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(data, loopback_feeds(&server.uri())).await;
    let owner = app.sign_up().await;
    refresh(&app, &owner.token).await;
    let data = app.stop().await;

    // Riksbanken is down (5xx every time); the ECB still answers.
    server.reset().await;
    Mock::given(path_regex("^/(swea|swestr)/.*"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    publish_up_to_friday(&server).await;
    let app = TestApp::spawn_with(data, loopback_feeds(&server.uri())).await;
    let token = app.log_in(&owner.email, e2e::PASSWORD).await;
    let report = refresh(&app, &token).await;
    assert_eq!(report["unreachable"][0]["source"], "riksbank", "{report}");
    let latest = app.get_json(&token, "/rates/SECBREPOEFF/latest").await;
    assert_eq!(latest["value"], "1.75", "last known value kept");
    let catalogue = app.get_json(&token, "/rates").await;
    let policy = catalogue["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "SECBREPOEFF")
        .unwrap()
        .clone();
    assert!(policy["lastError"].as_str().is_some(), "{policy}");
    assert!(
        catalogue["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == "ECB.EUR.SEK")
    );
}
