//! Handler tests of the audit routes: the sample API Gateway events `events/auth/audit.json`
//! and `events/auth/audit-export.json` go through the real router as Lambda would hand
//! them over.

mod support;

use api::lambda::app;
use api::lambda::testing::{authenticator, member_token, send_event};
use axum::http::StatusCode;
use domain::access::Role;
use domain::clock::{Clock, FixedClock};
use domain::store::Table;
use std::sync::Arc;

#[tokio::test]
async fn the_trail_and_its_export_from_api_gateway_events() {
    let data = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(FixedClock::new("2026-11-21T09:00:00Z".parse().unwrap()));
    let table: Arc<dyn Table> =
        Arc::new(adapters::embedded::SqliteTable::open(&data.path().join("t.sqlite3")).unwrap());
    let auth = authenticator(table.clone(), clock.clone());
    let state = support::state(data.path(), table.clone(), auth.clone(), clock.clone());
    let router = app(api::service(auth::router(state)));

    let (status, _, profile) = send_event(&router, "auth/signup.json", &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{profile}");
    let (status, _, token) = send_event(&router, "auth/login.json", &[]).await;
    assert_eq!(status, StatusCode::OK, "{token}");
    let owner = token["accessToken"].as_str().unwrap();

    // `?action=organization.&from=2026-11-01&limit=20`: the sign-up, with where it came from.
    let (status, headers, page) =
        send_event(&router, "auth/audit.json", &[("accessToken", owner)]).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(headers["cache-control"], "private, no-store");
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{page}");
    assert_eq!(events[0]["action"], "organization.created");
    assert_eq!(events[0]["outcome"], "success");
    assert_eq!(events[0]["actorId"], profile["user"]["id"]);
    assert_eq!(events[0]["sourceIp"], "198.51.100.23");
    assert!(page.get("nextCursor").is_none());

    // `?from=2026-11-01&to=2026-12-01` in Swedish: a CSV download.
    let (status, headers, _) =
        send_event(&router, "auth/audit-export.json", &[("accessToken", owner)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    assert_eq!(headers["content-language"], "sv");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"audit-2026-11-21.csv\""
    );

    // A viewer of the same organization is refused, in Swedish, with the request id.
    let tenant = profile["organization"]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let owner_id = profile["user"]["id"].as_str().unwrap().parse().unwrap();
    let viewer = member_token(&auth, table, clock, (tenant, owner_id), Role::Viewer).await;
    for event in ["auth/audit.json", "auth/audit-export.json"] {
        let (status, _, problem) = send_event(&router, event, &[("accessToken", &viewer)]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{event}");
        assert_eq!(problem["type"], "https://leasedesk.se/problems/forbidden");
        assert_eq!(problem["title"], "Inte tillåtet");
    }
}
