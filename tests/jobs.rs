//! Large imports as jobs, end to end over the local runner: a big file posted inline
//! becomes a job whose progress can be watched, the presigned upload path, a file with
//! invalid rows, the same file twice, and who may see a job.

use domain::access::Role;
use e2e::{Account, TestApp, error_codes, problem};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// An English CSV of `rows` contracts numbered from `first`, about 120 bytes a row.
fn register(first: usize, rows: usize) -> Vec<u8> {
    let mut file = String::from(
        "contractNumber,lessor,description,category,startDate,endDate,payment,currency,paymentFrequency,paymentTiming,interestRate\n",
    );
    for n in first..first + rows {
        file.push_str(&format!(
            "JOB-{n:06},Volvofinans Bank AB,Volvo XC60 T6 Recharge company car {n},vehicle,2024-03-01,2027-02-28,6899.00,SEK,monthly,advance,4.95\n"
        ));
    }
    file.into_bytes()
}

async fn post_import(app: &TestApp, token: &str, body: Vec<u8>) -> reqwest::Response {
    app.authed(token, Method::POST, "/contracts/import")
        .header("content-type", "text/csv")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// A 202 with the job and its `Location`; returns the location.
async fn accepted(response: reqwest::Response) -> String {
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let job: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let location = location.expect("a Location header");
    assert_eq!(location, format!("/jobs/{}", job["id"].as_str().unwrap()));
    assert_eq!(job["kind"], "contractImport");
    location
}

/// Polls the job until it has finished; returns every state seen, the last finished.
async fn follow(app: &TestApp, token: &str, location: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut seen = Vec::new();
    loop {
        let job = app.get_json(token, location).await;
        let finished = matches!(job["status"].as_str(), Some("succeeded" | "failed"));
        seen.push(job);
        if finished {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "the job did not finish: {:?}",
            seen.last()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn counts(job: &Value) -> (u64, u64, u64) {
    (
        job["created"].as_u64().unwrap(),
        job["updated"].as_u64().unwrap(),
        job["unchanged"].as_u64().unwrap(),
    )
}

async fn contracts_total(app: &TestApp, token: &str) -> u64 {
    app.get_json(token, "/portfolio").await["contracts"]["total"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn a_large_file_posted_inline_becomes_a_job_with_progress() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    const ROWS: usize = 20_000;
    let file = register(1, ROWS);
    assert!(file.len() > contracts::INLINE_IMPORT_MAX_BYTES);

    let location = accepted(post_import(&app, &owner.token, file.clone()).await).await;
    let seen = follow(&app, &owner.token, &location).await;
    let done = seen.last().unwrap();
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["rowsTotal"], ROWS);
    assert_eq!(done["rowsDone"], ROWS);
    assert_eq!(counts(done), (ROWS as u64, 0, 0));
    assert_eq!(done["errors"], json!([]));
    assert!(done["finishedAt"].is_string() && done["startedAt"].is_string());
    // Progress: seen before the end, and it only moves forward.
    assert!(seen.len() > 1, "the job was never seen unfinished");
    assert!(
        seen[..seen.len() - 1]
            .iter()
            .all(|job| matches!(job["status"].as_str(), Some("queued" | "running"))),
        "{seen:?}"
    );
    let progress: Vec<u64> = seen
        .iter()
        .map(|job| job["rowsDone"].as_u64().unwrap())
        .collect();
    assert!(
        progress.windows(2).all(|pair| pair[0] <= pair[1]),
        "{progress:?}"
    );

    // Every contract is in the register, listed page by page.
    let mut listed = 0;
    let mut path = "/contracts?limit=200".to_owned();
    loop {
        let page = app.get_json(&owner.token, &path).await;
        listed += page["items"].as_array().unwrap().len();
        match page["nextCursor"].as_str() {
            Some(cursor) => path = format!("/contracts?limit=200&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(listed, ROWS);
    assert_eq!(contracts_total(&app, &owner.token).await, ROWS as u64);

    // The same file again: every row unchanged, no contract touched.
    let first = app.get_json(&owner.token, "/contracts?limit=1").await["items"][0].clone();
    let location = accepted(post_import(&app, &owner.token, file).await).await;
    let again = follow(&app, &owner.token, &location).await;
    let again = again.last().unwrap();
    assert_eq!(again["status"], "succeeded", "{again}");
    assert_eq!(counts(again), (0, 0, ROWS as u64));
    let path = format!("/contracts/{}", first["id"].as_str().unwrap());
    assert_eq!(
        app.get_json(&owner.token, &path).await["version"],
        first["version"]
    );
    assert_eq!(contracts_total(&app, &owner.token).await, ROWS as u64);
}

#[tokio::test]
async fn a_file_uploaded_to_the_presigned_url_is_imported_when_started() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    let created = app
        .authed(&owner.token, Method::POST, "/contracts/import/jobs")
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["job"]["status"], "awaitingUpload");
    assert_eq!(
        location,
        format!("/jobs/{}", created["job"]["id"].as_str().unwrap())
    );
    let upload = &created["upload"];
    assert_eq!(upload["method"], "PUT");
    assert!(upload["url"].as_str().unwrap().starts_with(&app.url));

    // Starting before the file is there says so, and changes nothing.
    let start = format!("{location}/start");
    let early = app
        .authed(&owner.token, Method::POST, &start)
        .send()
        .await
        .unwrap();
    let early = problem(early, StatusCode::CONFLICT).await;
    assert!(early["type"].as_str().unwrap().ends_with("/upload-missing"));
    assert_eq!(
        app.get_json(&owner.token, &location).await["status"],
        "awaitingUpload"
    );

    // The upload needs no token: the URL is the permission.
    const ROWS: usize = 3_000;
    let mut put = reqwest::Client::new().put(upload["url"].as_str().unwrap());
    for (name, value) in upload["headers"].as_object().unwrap() {
        put = put.header(name, value.as_str().unwrap());
    }
    let uploaded = put.body(register(500_000, ROWS)).send().await.unwrap();
    assert_eq!(uploaded.status(), StatusCode::OK);

    let started = app
        .authed(&owner.token, Method::POST, &start)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted(started).await, location);
    let seen = follow(&app, &owner.token, &location).await;
    let done = seen.last().unwrap();
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        (done["rowsTotal"].as_u64(), done["rowsDone"].as_u64()),
        (Some(3000), Some(3000))
    );
    assert_eq!(counts(done), (ROWS as u64, 0, 0));
    assert_eq!(contracts_total(&app, &owner.token).await, ROWS as u64);

    // Starting it again does not run it again.
    let restarted = app
        .authed(&owner.token, Method::POST, &start)
        .send()
        .await
        .unwrap();
    accepted(restarted).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.get_json(&owner.token, &location).await, *done);
    // A tampered upload URL is refused.
    let tampered = upload["url"]
        .as_str()
        .unwrap()
        .replace("signature=", "signature=x");
    let refused = reqwest::Client::new()
        .put(tampered)
        .header("content-type", "text/csv")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_file_with_invalid_rows_fails_the_job_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    let mut file = register(1, 9_000);
    file.extend_from_slice(
        b"JOB-900001,,Missing lessor,vehicle,2024-03-01,2027-02-28,6899.00,SEK,monthly,advance,4.95\n\
          JOB-000002,Volvofinans Bank AB,Number used twice,vehicle,2024-03-01,2027-02-28,1.00,SEK,monthly,advance,4.95\n",
    );
    let location = accepted(post_import(&app, &owner.token, file).await).await;
    let seen = follow(&app, &owner.token, &location).await;
    let failed = seen.last().unwrap();
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["failure"]["code"], "invalid-rows");
    assert_eq!(failed["rowsDone"], 0);
    let errors: Vec<(u64, &str, &str)> = failed["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["row"].as_u64().unwrap(),
                e["pointer"].as_str().unwrap(),
                e["code"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            (9002, "/lessor", "required"),
            (9003, "/contractNumber", "already_in_use")
        ]
    );
    assert_eq!(failed["errorsTotal"], 2);
    assert_eq!(contracts_total(&app, &owner.token).await, 0);

    // Messages in the reader's language.
    let swedish: Value = app
        .authed(&owner.token, Method::GET, &location)
        .header("accept-language", "sv-SE")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let english = failed["errors"][0]["detail"].as_str().unwrap();
    let svenska = swedish["errors"][0]["detail"].as_str().unwrap();
    assert!(
        !svenska.is_empty() && svenska != english,
        "{svenska} / {english}"
    );
    assert!(
        swedish["failure"]["detail"]
            .as_str()
            .unwrap()
            .contains("Inget importerades")
    );
}

#[tokio::test]
async fn a_job_is_its_organizations_and_needs_the_import_permission() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    let created: Value = app
        .authed(
            &owner.token,
            Method::POST,
            "/contracts/import/jobs?dryRun=true",
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(created["job"]["dryRun"], true);
    let location = format!("/jobs/{}", created["job"]["id"].as_str().unwrap());

    let other: Account = app.sign_up().await;
    for (method, path) in [
        (Method::GET, location.clone()),
        (Method::POST, format!("{location}/start")),
    ] {
        let response = app
            .authed(&other.token, method, &path)
            .send()
            .await
            .unwrap();
        problem(response, StatusCode::NOT_FOUND).await;
    }
    for path in [
        "/jobs/not-a-job",
        "/jobs/01937a3e-0000-7000-8000-000000000000",
    ] {
        let response = app
            .authed(&owner.token, Method::GET, path)
            .send()
            .await
            .unwrap();
        problem(response, StatusCode::NOT_FOUND).await;
    }

    let viewer = app.token_with_role(&owner, Role::Viewer).await;
    for (method, path) in [
        (Method::GET, location.clone()),
        (Method::POST, format!("{location}/start")),
        (Method::POST, "/contracts/import/jobs".to_owned()),
    ] {
        let response = app.authed(&viewer, method, &path).send().await.unwrap();
        problem(response, StatusCode::FORBIDDEN).await;
    }
    let editor = app.token_with_role(&owner, Role::Editor).await;
    app.get_json(&editor, &location).await;

    let response = app
        .authed(
            &owner.token,
            Method::POST,
            "/contracts/import/jobs?dryRun=maybe",
        )
        .send()
        .await
        .unwrap();
    let bad = problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(
        error_codes(&bad),
        [("dryRun".to_owned(), "invalid_choice".to_owned())]
    );
    let response = app.request(Method::GET, &location).send().await.unwrap();
    problem(response, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn a_job_cut_off_by_a_restart_completes_after_it() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    const ROWS: usize = 12_000;
    let location = accepted(post_import(&app, &owner.token, register(1, ROWS)).await).await;
    // Stop while the worker is at it (or, on a fast machine, just after).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let job = app.get_json(&owner.token, &location).await;
        if job["status"] != "queued" {
            break;
        }
        assert!(Instant::now() < deadline, "the job never started: {job}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let data = app.stop().await;

    // The file, the job and its message are on disk; the next start finishes it.
    let app = TestApp::spawn_in(data).await;
    let seen = follow(&app, &owner.token, &location).await;
    let done = seen.last().unwrap();
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["rowsDone"], ROWS);
    // A chunk written just before the stop but not yet recorded counts as unchanged.
    let (created, updated, unchanged) = counts(done);
    assert_eq!((created + unchanged, updated), (ROWS as u64, 0), "{done}");
    assert_eq!(contracts_total(&app, &owner.token).await, ROWS as u64);
}
