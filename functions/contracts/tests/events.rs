//! Handler tests: the sample API Gateway events in `events/contracts/` go through the
//! real router exactly as Lambda would hand them over.

use api::lambda::app;
use api::lambda::testing::{authenticator, owner_token, send_event};
use axum::http::StatusCode;
use domain::clock::FixedClock;

use domain::portfolio::PortfolioService;
use domain::store::Table;
use serde_json::Value;
use std::sync::Arc;

struct Harness {
    router: axum::Router,
    token: String,
    clock: Arc<FixedClock>,
    table: Arc<dyn Table>,
    _data: tempfile::TempDir,
}

async fn harness() -> Harness {
    let data = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock::new("2026-11-21T09:00:00Z".parse().unwrap()));
    let table: Arc<dyn Table> =
        Arc::new(adapters::embedded::SqliteTable::open(&data.path().join("t.sqlite3")).unwrap());
    let auth = authenticator(table.clone(), clock.clone());
    let (token, _) = owner_token(&auth, table.clone(), clock.clone()).await;
    let state = contracts::ContractsState::new(table.clone(), auth, clock.clone());
    Harness {
        router: app(api::service(contracts::router(state))),
        token,
        clock,
        table,
        _data: data,
    }
}

async fn send(
    harness: &Harness,
    event: &str,
    placeholders: &[(&str, &str)],
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let mut all = vec![("accessToken", harness.token.as_str())];
    all.extend_from_slice(placeholders);
    send_event(&harness.router, &format!("contracts/{event}"), &all).await
}

#[tokio::test]
async fn every_contract_event() {
    let harness = harness().await;

    let (status, headers, created) = send(&harness, "create.json", &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(headers["etag"], "\"1\"");
    assert_eq!(created["contractNumber"], "LC-2024-0042");
    let id = created["id"].as_str().unwrap().to_owned();

    // Lambda retries and client retries replay the first answer.
    let (status, headers, replayed) = send(&harness, "create.json", &[]).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(replayed, created);

    let (status, _, list) = send(&harness, "list.json", &[]).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["items"][0]["id"], id.as_str());

    let (status, headers, read) = send(&harness, "get.json", &[("contractId", &id)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read, created);
    assert_eq!(headers["etag"], "\"1\"");

    let (status, _, updated) = send(
        &harness,
        "update.json",
        &[("contractId", &id), ("version", "1")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["costCenter"], "4200");
    assert_eq!(updated["version"], 2);

    let (status, _, problem) = send(
        &harness,
        "delete.json",
        &[("contractId", &id), ("version", "1")],
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{problem}");
    let (status, _, _) = send(
        &harness,
        "delete.json",
        &[("contractId", &id), ("version", "2")],
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = send(&harness, "get.json", &[("contractId", &id)]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_import_the_dashboard_and_the_nightly_roll() {
    let harness = harness().await;

    // The dashboard before any contract: empty, and registered for the nightly roll.
    let (status, _, dashboard) = send(&harness, "portfolio.json", &[]).await;
    assert_eq!(status, StatusCode::OK, "{dashboard}");
    assert_eq!(dashboard["contracts"]["total"], 0);

    // Swedish Excel bytes, base64-encoded by API Gateway.
    let (status, _, report) = send(&harness, "import.json", &[]).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["created"], 2);
    assert_eq!(report["file"]["encoding"], "windows-1252");

    let (status, _, dashboard) = send(&harness, "portfolio.json", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(dashboard["asOf"], "2026-11-21");
    assert_eq!(dashboard["contracts"]["active"], 2);
    assert!(
        dashboard["leasingDebt"]["today"]["amount"]
            .as_i64()
            .unwrap()
            > 0
    );

    let (status, _, recomputed) = send(&harness, "portfolio-recompute.json", &[]).await;
    assert_eq!(status, StatusCode::OK, "{recomputed}");
    assert_eq!(recomputed["differences"], serde_json::json!([]));
    assert_eq!(recomputed["contracts"], 2);

    // After midnight the scheduled roll moves the figures to the new day.
    harness.clock.set("2026-11-22T00:05:00Z".parse().unwrap());
    let event: Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/../../events/contracts/portfolio-roll.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    let portfolio = PortfolioService::new(
        harness.table.clone(),
        harness.clock.clone(),
        PortfolioService::standard_defaults(),
    );
    let result = contracts::handle_roll(&portfolio, &event).await.unwrap();
    assert_eq!(result, serde_json::json!({"rolled": 1}));
    let again = contracts::handle_roll(&portfolio, &event).await.unwrap();
    assert_eq!(
        again,
        serde_json::json!({"rolled": 0}),
        "already as of today"
    );
}
