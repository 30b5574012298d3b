//! Handler tests: the sample events in `events/rates/` — the scheduler's and API
//! Gateway's — go through the real handlers, with the rate sources on loopback.

use api::lambda::app;
use api::lambda::testing::{authenticator, owner_token, send_event};
use axum::http::StatusCode;
use domain::clock::{Clock, FixedClock};

use domain::rates::RateService;
use serde_json::{Value, json};
use std::sync::Arc;
use wiremock::matchers::path_regex;
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn sources() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(path_regex("^/swea/Series$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"seriesId": "SECBREPOEFF", "midDescription": "Riksbank policy rate",
             "observationMaxDate": "2026-11-20", "seriesClosed": false}
        ])))
        .mount(&server)
        .await;
    Mock::given(path_regex("^/swea/Observations/SECBREPOEFF/.*"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            r#"[{"date":"2026-11-19","value":1.75},{"date":"2026-11-20","value":1.75}]"#,
            "application/json",
        ))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path_regex("^/(swea/Observations|swestr)/.*"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    Mock::given(path_regex("^/ecb/.*"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            r#"<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref"><Cube><Cube time="2026-11-20"><Cube currency="SEK" rate="11.1000"/></Cube></Cube></gesmes:Envelope>"#,
            "text/xml",
        ))
        .mount(&server)
        .await;
    server
}

struct Harness {
    service: Arc<RateService>,
    router: axum::Router,
    token: String,
    _data: tempfile::TempDir,
}

async fn harness(server: &MockServer) -> Harness {
    let data = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(FixedClock::new("2026-11-21T09:00:00Z".parse().unwrap()));
    let table =
        Arc::new(adapters::embedded::SqliteTable::open(&data.path().join("t.sqlite3")).unwrap());
    let base = server.uri();
    let feeds = adapters::feeds::build_feeds(&adapters::feeds::FeedSettings {
        riksbank_swea_url: Some(format!("{base}/swea")),
        riksbank_swestr_url: Some(format!("{base}/swestr")),
        ecb_url: Some(format!("{base}/ecb")),
        retry: Some(adapters::feeds::RetryPolicy::fast_for_tests()),
        ..Default::default()
    })
    .unwrap();
    let table: Arc<dyn domain::store::Table> = table;
    let service = Arc::new(RateService::new(table.clone(), clock.clone(), feeds));
    let auth = authenticator(table.clone(), clock.clone());
    let (token, _) = owner_token(&auth, table, clock).await;
    let router = app(api::service(rates::router(rates::RatesState::new(
        service.clone(),
        auth,
    ))));
    Harness {
        service,
        router,
        token,
        _data: data,
    }
}

async fn send(harness: &Harness, name: &str) -> (StatusCode, Value) {
    let (status, _, body) = send_event(
        &harness.router,
        &format!("rates/{name}"),
        &[("accessToken", &harness.token)],
    )
    .await;
    (status, body)
}

#[tokio::test]
async fn the_schedule_event_polls_and_emits_staleness_metrics() {
    let server = sources().await;
    let harness = harness(&server).await;
    let file = format!(
        "{}/../../events/rates/schedule.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let schedule: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let now = "2026-11-21T10:30:00Z".parse().unwrap();
    let (report, metrics) = rates::handle_schedule(&harness.service, &schedule, now)
        .await
        .unwrap();
    assert_eq!(report.stored, 3, "two policy-rate days and one ECB day");
    let policy: Value = metrics
        .iter()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .find(|m| m["Series"] == "SECBREPOEFF")
        .expect("a metric for the policy rate");
    assert_eq!(policy["StalenessDays"], 1);
    assert_eq!(
        policy["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "Leasedesk/Rates"
    );
    assert_eq!(policy["_aws"]["Timestamp"], 1_795_257_000_000_i64);
}

#[tokio::test]
async fn every_rates_event() {
    let server = sources().await;
    let harness = harness(&server).await;

    let (status, report) = send(&harness, "refresh.json").await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        report["stored"], 1,
        "the event asks for the ECB only: {report}"
    );

    let (status, _) = send(&harness, "latest.json").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "Riksbanken not polled yet");
    rates::poll(&harness.service, None).await.unwrap();

    let (status, catalogue) = send(&harness, "catalogue.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        catalogue["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == "SECBREPOEFF")
    );

    let (status, series) = send(&harness, "observations.json").await;
    assert_eq!(status, StatusCode::OK, "{series}");
    assert_eq!(series["observations"].as_array().unwrap().len(), 2);

    let (status, latest) = send(&harness, "latest.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(latest["value"], "1.75");

    let (status, conversion) = send(&harness, "convert.json").await;
    assert_eq!(status, StatusCode::OK, "{conversion}");
    assert_eq!(
        conversion["converted"],
        json!({"amount": 111000, "currency": "SEK"})
    );
}
