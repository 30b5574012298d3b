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

#[tokio::test]
async fn the_schedule_event_runs_the_retention_job() {
    let data = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock::new("2026-11-21T09:00:00Z".parse().unwrap()));
    let table: Arc<dyn domain::store::Table> =
        Arc::new(adapters::embedded::SqliteTable::open(&data.path().join("t.sqlite3")).unwrap());
    let state = support::state(
        data.path(),
        table.clone(),
        authenticator(table.clone(), clock.clone()),
        clock.clone(),
    );
    // The same outbox folder the state mails into.
    let outbox = Arc::new(
        adapters::embedded::Outbox::open(
            &data.path().join("outbox"),
            domain::mail::Sender::new(
                domain::accounts::Email::parse("no-reply@leasedesk.se").unwrap(),
                None,
            )
            .unwrap(),
        )
        .unwrap(),
    );
    let router = app(api::service(auth::router(state)));
    let (status, _, profile) = send_event(&router, "auth/signup.json", &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{profile}");
    let blobs = Arc::new(
        adapters::embedded::FolderBlobs::open(&data.path().join("blobs"), "http://127.0.0.1:9")
            .unwrap(),
    );
    let vault =
        Arc::new(adapters::embedded::FolderSecrets::open(&data.path().join("secrets")).unwrap());
    let retention = domain::retention::RetentionService::new(
        table,
        clock.clone(),
        blobs,
        vault,
        outbox.clone(),
        Arc::new(api::mail::RetentionWarnings),
        domain::retention::RetentionPolicy::default(),
    );

    // The run of the day the event names: 1796 days after the sign-up.
    let event: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/../../events/auth/retention.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    clock.set(event["time"].as_str().unwrap().parse().unwrap());
    let report = auth::retention::handle_schedule(&retention, &event)
        .await
        .unwrap();
    assert_eq!(
        (report.organizations, report.warned, report.mails_sent),
        (1, 1, 1)
    );
    let mails = outbox
        .messages_to(&domain::accounts::Email::parse("anna.lind@nordlysfleet.se").unwrap())
        .await
        .unwrap();
    assert_eq!(
        mails.last().unwrap().subject,
        "The data of Nordlys Fleet AB in Leasedesk will be deleted on 2031-11-21"
    );
    // The same event again (a retry) warns nobody twice.
    let again = auth::retention::handle_schedule(&retention, &event)
        .await
        .unwrap();
    assert_eq!((again.warned, again.failed), (0, 0));
}
