//! Handler tests: the sample API Gateway events in `events/auth/` go through the real
//! router exactly as Lambda would hand them over.

mod support;

use api::lambda::app;
use api::lambda::testing::{authenticator, send_event};
use axum::http::StatusCode;
use domain::clock::{Clock, FixedClock};
use std::sync::Arc;

fn router(data: &std::path::Path) -> axum::Router {
    let clock: Arc<dyn Clock> = Arc::new(FixedClock::new("2026-11-21T09:00:00Z".parse().unwrap()));
    let table: Arc<dyn domain::store::Table> =
        Arc::new(adapters::embedded::SqliteTable::open(&data.join("t.sqlite3")).unwrap());
    let state = support::state(
        data,
        table.clone(),
        authenticator(table, clock.clone()),
        clock,
    );
    app(api::service(auth::router(state)))
}

#[tokio::test]
async fn sign_up_log_in_and_me_events() {
    let data = tempfile::tempdir().unwrap();
    let router = router(data.path());

    let (status, _, profile) = send_event(&router, "auth/signup.json", &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{profile}");
    assert_eq!(profile["user"]["email"], "anna.lind@nordlysfleet.se");
    assert_eq!(profile["user"]["role"], "owner");

    let (status, _, token) = send_event(&router, "auth/login.json", &[]).await;
    assert_eq!(status, StatusCode::OK, "{token}");
    let access_token = token["accessToken"].as_str().unwrap();

    let (status, _, me) =
        send_event(&router, "auth/me.json", &[("accessToken", access_token)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me, profile);

    // The same sign-up again is a conflict, carrying API Gateway's request id.
    let (status, _, problem) = send_event(&router, "auth/signup.json", &[]).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        problem["requestId"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{problem}"
    );
}
