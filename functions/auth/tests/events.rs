//! Handler tests: the sample API Gateway events in `events/auth/` go through the real
//! router exactly as Lambda would hand them over.

use api::lambda::{app, request_from_event};
use axum::body::to_bytes;
use axum::http::StatusCode;
use domain::clock::{Clock, FixedClock};
use serde_json::Value;
use std::sync::Arc;
use tower::ServiceExt;

fn event(name: &str) -> String {
    let path = format!("{}/../../events/auth/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn router(data: &std::path::Path) -> axum::Router {
    let clock: Arc<dyn Clock> = Arc::new(FixedClock::new("2026-11-21T09:00:00Z".parse().unwrap()));
    let table = Arc::new(adapters::embedded::SqliteTable::open(&data.join("t.sqlite3")).unwrap());
    let tokens = Arc::new(
        api::AccessTokens::new(
            b"handler-test-secret-handler-test-secret",
            api::TokenSettings {
                issuer: "https://api.leasedesk.se".into(),
                audience: "leasedesk-api".into(),
                access_ttl: chrono::Duration::minutes(15),
            },
            clock.clone(),
        )
        .unwrap(),
    );
    app(api::service(auth::router(auth::AuthState::new(
        table, tokens, clock,
    ))))
}

async fn send(
    router: &axum::Router,
    event: &str,
    placeholders: &[(&str, &str)],
) -> (StatusCode, Value) {
    let request = request_from_event(event, placeholders).unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn sign_up_log_in_and_me_events() {
    let data = tempfile::tempdir().unwrap();
    let router = router(data.path());

    let (status, profile) = send(&router, &event("signup.json"), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{profile}");
    assert_eq!(profile["user"]["email"], "anna.lind@nordlysfleet.se");
    assert_eq!(profile["user"]["role"], "owner");

    let (status, token) = send(&router, &event("login.json"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{token}");
    let access_token = token["accessToken"].as_str().unwrap();

    let (status, me) = send(&router, &event("me.json"), &[("accessToken", access_token)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me, profile);

    // The same sign-up again is a conflict, answered in the event's language.
    let (status, problem) = send(&router, &event("signup.json"), &[]).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        problem["requestId"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{problem}"
    );
}
