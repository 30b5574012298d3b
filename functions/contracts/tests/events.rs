//! Handler tests: the sample API Gateway events in `events/contracts/` go through the
//! real router exactly as Lambda would hand them over.

use api::lambda::app;
use api::lambda::testing::{send_event, tokens};
use axum::http::StatusCode;
use domain::access::Role;
use domain::clock::{Clock, FixedClock};
use domain::ids::{TenantId, UserId};
use serde_json::Value;
use std::sync::Arc;

struct Harness {
    router: axum::Router,
    token: String,
    _data: tempfile::TempDir,
}

fn harness() -> Harness {
    let data = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(FixedClock::new("2026-11-21T09:00:00Z".parse().unwrap()));
    let table =
        Arc::new(adapters::embedded::SqliteTable::open(&data.path().join("t.sqlite3")).unwrap());
    let tokens = tokens(clock.clone());
    let token = tokens
        .issue(UserId::generate(), TenantId::generate(), Role::Editor)
        .unwrap()
        .token;
    let state = contracts::ContractsState::new(table, tokens, clock);
    Harness {
        router: app(api::service(contracts::router(state))),
        token,
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
    let harness = harness();

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
