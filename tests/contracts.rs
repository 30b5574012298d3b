//! The contract register over HTTP: every operation, concurrency, idempotency, tenancy
//! and roles.

use domain::access::Role;
use e2e::{TestApp, contract, error_codes, etag, problem};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test]
async fn create_read_update_delete() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;

    let response = app
        .authed(&owner.token, Method::POST, "/contracts")
        .json(&contract("LC-2024-0042"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(etag(&response), "\"1\"");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    assert_eq!(location, format!("/contracts/{id}"));
    assert_eq!(created["status"], "active");
    assert_eq!(created["version"], 1);
    assert_eq!(created["interestRate"], "4.95");
    assert_eq!(
        created["payment"],
        json!({"amount": 689900, "currency": "SEK"})
    );
    assert_eq!(created["createdBy"], owner.user.to_string());

    let response = app
        .authed(&owner.token, Method::GET, &location)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(etag(&response), "\"1\"");
    let read: Value = response.json().await.unwrap();
    assert_eq!(read, created);

    // A merge patch: set one field, clear another, leave the rest.
    let response = app
        .authed(&owner.token, Method::PATCH, &location)
        .header("if-match", "\"1\"")
        .header("content-type", "application/merge-patch+json")
        .body(
            json!({"costCenter": "4200", "residualValue": null, "endDate": "2027-01-31"})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(etag(&response), "\"2\"");
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["costCenter"], "4200");
    assert!(updated.get("residualValue").is_none());
    assert_eq!(updated["endDate"], "2027-01-31");
    assert_eq!(updated["lessor"], created["lessor"]);
    assert_eq!(updated["createdAt"], created["createdAt"]);
    assert_eq!(updated["version"], 2);

    // The old version is stale now: 412, and nothing changes.
    let response = app
        .authed(&owner.token, Method::PATCH, &location)
        .header("if-match", "\"1\"")
        .json(&json!({"costCenter": "9999"}))
        .send()
        .await
        .unwrap();
    let body = problem(response, StatusCode::PRECONDITION_FAILED).await;
    assert!(body["detail"].as_str().unwrap().contains('2'));
    let response = app
        .authed(&owner.token, Method::DELETE, &location)
        .header("if-match", "\"1\"")
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::PRECONDITION_FAILED).await;
    // Without If-Match: 428.
    let response = app
        .authed(&owner.token, Method::DELETE, &location)
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::PRECONDITION_REQUIRED).await;
    let still: Value = app.get_json(&owner.token, &location).await;
    assert_eq!(still, updated);

    let response = app
        .authed(&owner.token, Method::DELETE, &location)
        .header("if-match", "\"2\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = app
        .authed(&owner.token, Method::GET, &location)
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::NOT_FOUND).await;

    // The number is free again once its contract is gone.
    app.create_contract(&owner.token, &contract("LC-2024-0042"))
        .await;
}

#[tokio::test]
async fn contract_numbers_are_unique_per_organization() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    app.create_contract(&owner.token, &contract("LC-1")).await;
    let response = app
        .authed(&owner.token, Method::POST, "/contracts")
        .json(&contract("lc-1"))
        .send()
        .await
        .unwrap();
    let body = problem(response, StatusCode::CONFLICT).await;
    assert_eq!(
        error_codes(&body),
        [("/contractNumber".into(), "already_in_use".into())]
    );

    // Renaming onto a taken number is refused too; renaming to a free one frees the old.
    let second = app.create_contract(&owner.token, &contract("LC-2")).await;
    let path = format!("/contracts/{}", second["id"].as_str().unwrap());
    let response = app
        .authed(&owner.token, Method::PATCH, &path)
        .header("if-match", "*")
        .json(&json!({"contractNumber": "LC-1"}))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::CONFLICT).await;
    let response = app
        .authed(&owner.token, Method::PATCH, &path)
        .header("if-match", "*")
        .json(&json!({"contractNumber": "LC-3"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    app.create_contract(&owner.token, &contract("LC-2")).await;

    // Another organization may use the same numbers.
    let other = app.sign_up().await;
    app.create_contract(&other.token, &contract("LC-1")).await;
}

#[tokio::test]
async fn idempotent_create() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    let send = |body: Value, key: &'static str| {
        app.authed(&owner.token, Method::POST, "/contracts")
            .header("idempotency-key", key)
            .json(&body)
            .send()
    };
    let first = send(contract("LC-7"), "key-1").await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();

    let retry = send(contract("LC-7"), "key-1").await.unwrap();
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(retry, first);

    let different = send(contract("LC-8"), "key-1").await.unwrap();
    problem(different, StatusCode::UNPROCESSABLE_ENTITY).await;

    // Exactly one contract exists.
    let list: Value = app.get_json(&owner.token, "/contracts").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    // Concurrent retries with a fresh key also create exactly one.
    let results = futures_join((0..8).map(|_| send(contract("LC-9"), "key-2")).collect()).await;
    let ids: std::collections::BTreeSet<String> = {
        let mut ids = std::collections::BTreeSet::new();
        for response in results {
            let response = response.unwrap();
            assert_eq!(response.status(), StatusCode::CREATED);
            let body: Value = response.json().await.unwrap();
            ids.insert(body["id"].as_str().unwrap().to_owned());
        }
        ids
    };
    assert_eq!(ids.len(), 1);
}

async fn futures_join<F>(futures: Vec<F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut out = Vec::new();
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

#[tokio::test]
async fn another_organizations_contract_does_not_exist() {
    let app = TestApp::spawn().await;
    let mine = app.sign_up().await;
    let theirs = app.sign_up().await;
    let created = app.create_contract(&mine.token, &contract("LC-1")).await;
    let path = format!("/contracts/{}", created["id"].as_str().unwrap());

    for (method, body) in [
        (Method::GET, None),
        (Method::PATCH, Some(json!({"notes": "mine now"}))),
        (Method::DELETE, None),
    ] {
        let mut request = app
            .authed(&theirs.token, method.clone(), &path)
            .header("if-match", "*");
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        problem(response, StatusCode::NOT_FOUND).await;
    }
    let list: Value = app.get_json(&theirs.token, "/contracts").await;
    assert_eq!(list["items"], json!([]));
    // Untouched for its owner.
    let response = app
        .authed(&mine.token, Method::GET, &path)
        .send()
        .await
        .unwrap();
    assert_eq!(etag(&response), "\"1\"");
}

#[tokio::test]
async fn roles_decide_who_may_write() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    let created = app.create_contract(&owner.token, &contract("LC-1")).await;
    let path = format!("/contracts/{}", created["id"].as_str().unwrap());

    for role in Role::ALL {
        let token = app.token_with_role(&owner, role).await;
        let may_write = role.allows(domain::access::Permission::WriteContracts);
        let read = app.authed(&token, Method::GET, &path).send().await.unwrap();
        assert_eq!(read.status(), StatusCode::OK, "{role} reads");
        let list = app
            .authed(&token, Method::GET, "/contracts")
            .send()
            .await
            .unwrap();
        assert_eq!(list.status(), StatusCode::OK, "{role} lists");

        let create = app
            .authed(&token, Method::POST, "/contracts")
            .json(&contract(&format!("LC-{role}")))
            .send()
            .await
            .unwrap();
        let patch = app
            .authed(&token, Method::PATCH, &path)
            .header("if-match", "*")
            .json(&json!({"notes": format!("by {role}")}))
            .send()
            .await
            .unwrap();
        if may_write {
            assert_eq!(create.status(), StatusCode::CREATED, "{role} creates");
            assert_eq!(patch.status(), StatusCode::OK, "{role} changes");
        } else {
            let body = problem(create, StatusCode::FORBIDDEN).await;
            assert!(body["detail"].as_str().unwrap().contains(role.as_str()));
            problem(patch, StatusCode::FORBIDDEN).await;
            let delete = app
                .authed(&token, Method::DELETE, &path)
                .header("if-match", "*")
                .send()
                .await
                .unwrap();
            problem(delete, StatusCode::FORBIDDEN).await;
        }
    }
}

fn numbers(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["contractNumber"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn list_filters_and_pages() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    // Today is 2026-11-21 in the tests.
    let mut specs = vec![
        (
            "UP-1",
            "2027-01-01",
            "2030-01-01",
            "machinery",
            "Siemens Finans",
            None,
        ),
        (
            "ACT-1",
            "2024-01-01",
            "2029-06-30",
            "vehicle",
            "Volvofinans Bank AB",
            None,
        ),
        (
            "END-1",
            "2023-01-01",
            "2027-01-15",
            "it",
            "Atea Finance",
            None,
        ),
        (
            "EXT-1",
            "2021-01-01",
            "2025-12-31",
            "vehicle",
            "volvofinans bank ab",
            None,
        ),
        (
            "TER-1",
            "2021-01-01",
            "2025-12-31",
            "property",
            "Handelsbanken Finans",
            Some("2026-01-31"),
        ),
    ];
    for i in 0..7 {
        specs.push((
            Box::leak(format!("BULK-{i}").into_boxed_str()),
            "2025-01-01",
            "2028-01-01",
            "other",
            "Nordea Finans",
            None,
        ));
    }
    for (number, start, end, category, lessor, terminated) in &specs {
        let mut body = contract(number);
        body["startDate"] = json!(start);
        body["endDate"] = json!(end);
        body["category"] = json!(category);
        body["lessor"] = json!(lessor);
        if let Some(day) = terminated {
            body["terminationDate"] = json!(day);
        }
        if number.starts_with("END") {
            body["registrationNumber"] = json!("XYZ 987");
        }
        app.create_contract(&owner.token, &body).await;
    }

    assert_eq!(
        numbers(
            &app.get_json(&owner.token, &format!("/contracts{}", "?status=upcoming"))
                .await
        ),
        ["UP-1"]
    );
    assert_eq!(
        numbers(
            &app.get_json(&owner.token, &format!("/contracts{}", "?status=ending"))
                .await
        ),
        ["END-1"]
    );
    assert_eq!(
        numbers(
            &app.get_json(&owner.token, &format!("/contracts{}", "?status=extended"))
                .await
        ),
        ["EXT-1"]
    );
    assert_eq!(
        numbers(
            &app.get_json(&owner.token, &format!("/contracts{}", "?status=terminated"))
                .await
        ),
        ["TER-1"]
    );
    assert_eq!(
        app.get_json(&owner.token, &format!("/contracts{}", "?status=active"))
            .await["items"]
            .as_array()
            .unwrap()
            .len(),
        8
    );
    assert_eq!(
        numbers(
            &app.get_json(&owner.token, &format!("/contracts{}", "?category=vehicle"))
                .await
        ),
        ["ACT-1", "EXT-1"]
    );
    assert_eq!(
        numbers(
            &app.get_json(
                &owner.token,
                "/contracts?lessor=VOLVOFINANS%20BANK%20AB&category=vehicle"
            )
            .await
        ),
        ["ACT-1", "EXT-1"]
    );
    assert_eq!(
        numbers(
            &app.get_json(
                &owner.token,
                &format!("/contracts{}", "?endsBefore=2027-01-16")
            )
            .await
        ),
        ["EXT-1", "TER-1", "END-1"],
        "ordered by end date"
    );
    assert_eq!(
        numbers(
            &app.get_json(&owner.token, &format!("/contracts{}", "?q=xyz987"))
                .await
        ),
        ["END-1"]
    );
    assert_eq!(
        numbers(
            &app.get_json(&owner.token, &format!("/contracts{}", "?q=ter-"))
                .await
        ),
        ["TER-1"]
    );
    assert!(
        numbers(
            &app.get_json(&owner.token, &format!("/contracts{}", "?q=nothing-matches"))
                .await
        )
        .is_empty()
    );

    // Pages of 5 over all 12, then over the 7 bulk ones by lessor: every item once.
    for (query, total) in [
        ("", 12),
        ("&lessor=Nordea%20Finans", 7),
        ("&endsBefore=2030-12-31", 12),
    ] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut q = format!("?limit=5{query}");
            if let Some(c) = &cursor {
                q.push_str(&format!("&cursor={c}"));
            }
            let page = app.get_json(&owner.token, &format!("/contracts{q}")).await;
            pages += 1;
            assert!(page["items"].as_array().unwrap().len() <= 5);
            seen.extend(numbers(&page));
            match page["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        assert_eq!(seen.len(), total, "{query}: {seen:?}");
        let unique: std::collections::BTreeSet<_> = seen.iter().collect();
        assert_eq!(unique.len(), total);
        assert_eq!(pages, total.div_ceil(5), "{query}: no empty last page");
    }
}

#[tokio::test]
async fn every_change_is_audited_with_before_and_after() {
    use domain::store::{Query, Table};
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    let created = app
        .create_contract(&owner.token, &contract("LC-AUDIT"))
        .await;
    let path = format!("/contracts/{}", created["id"].as_str().unwrap());
    let response = app
        .authed(&owner.token, Method::PATCH, &path)
        .header("if-match", "\"1\"")
        .header("x-request-id", "audit-me")
        .json(&json!({"costCenter": "4200"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = app
        .authed(&owner.token, Method::DELETE, &path)
        .header("if-match", "\"2\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    // A failed change leaves no trace.
    let response = app
        .authed(&owner.token, Method::POST, "/contracts")
        .json(&json!({"contractNumber": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // Read the trail straight from the store, beside the running server.
    let table = adapters::embedded::SqliteTable::open(&e2e::data_file(app.data.path())).unwrap();
    let page = table
        .query(
            Query::partition(format!("T#{}", owner.tenant))
                .begins_with("AUDIT#")
                .limit(100),
        )
        .await
        .unwrap();
    let events: Vec<&serde_json::Map<String, Value>> =
        page.items.iter().map(|item| &item.attributes).collect();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "organization.created",
            "auth.signed_in",
            "contract.created",
            "contract.updated",
            "contract.deleted"
        ]
    );
    // The sign-in aside, the changes of the contract.
    let events: Vec<_> = events
        .into_iter()
        .filter(|event| event["action"] != "auth.signed_in")
        .collect();
    let target = format!("contract:{}", created["id"].as_str().unwrap());
    for event in &events[1..] {
        assert_eq!(event["target"], target.as_str());
        assert_eq!(event["actorId"], owner.user.to_string());
        assert_eq!(event["sourceIp"], "127.0.0.1");
        assert_eq!(event["outcome"], "success");
        assert!(event["requestId"].as_str().is_some());
    }
    assert!(events[1]["before"].is_null());
    assert_eq!(events[1]["after"]["contractNumber"], "LC-AUDIT");
    assert_eq!(events[2]["requestId"], "audit-me");
    assert_eq!(events[2]["before"]["costCenter"], "4100");
    assert_eq!(events[2]["after"]["costCenter"], "4200");
    assert_eq!(events[3]["before"]["costCenter"], "4200");
    assert!(events[3]["after"].is_null());
    // No secrets in the trail.
    assert!(!serde_json::to_string(&events).unwrap().contains("argon2"));
}

#[tokio::test]
async fn the_liability_schedule_of_a_contract() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    // 36 × 6 899.00 SEK monthly in advance from 2024-03-01, residual 210 000, 4.95 %.
    let created = app
        .create_contract(&owner.token, &contract("LC-SCHED"))
        .await;
    let path = format!("/contracts/{}/schedule", created["id"].as_str().unwrap());
    let response = app
        .authed(&owner.token, Method::GET, &path)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let schedule = &body["schedule"];
    // Present value, checked by hand: 6899·(1−(1+r)^−36)/r·(1+r) + 210000·(1+r)^−36,
    // r = 0.0495/12.
    assert_eq!(schedule["initialLiability"], "412388.03");
    let rows = schedule["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 36);
    // Amounts come with exactly two decimals: compare them in öre.
    let money = |v: &Value| -> i64 { v.as_str().unwrap().replace('.', "").parse().unwrap() };
    for row in rows {
        assert_eq!(
            money(&row["opening"]) + money(&row["interest"]) - money(&row["payment"]),
            money(&row["closing"]),
            "roll-forward of {row}"
        );
    }
    assert_eq!(rows[35]["closing"], "0.00");
    assert_eq!(money(&rows[35]["residual"]), 21_000_000);
    // Today (2026-11-21) falls in the period from 2026-11-01: after its payment, with
    // 20 of its 30 days of interest accrued.
    let current = rows.iter().find(|r| r["start"] == "2026-11-01").unwrap();
    let expected = (money(&current["opening"]) - money(&current["payment"])) as f64
        + money(&current["interest"]) as f64 * 20.0 / 30.0;
    let debt_today = money(&body["debtToday"]) as f64;
    assert!(
        (debt_today - expected).abs() <= 1.0,
        "{debt_today} vs {expected}"
    );

    // A contract without any rate has no schedule; bad parameters are named.
    let mut no_rate = contract("LC-NORATE");
    no_rate.as_object_mut().unwrap().remove("interestRate");
    let created = app.create_contract(&owner.token, &no_rate).await;
    let response = app
        .authed(
            &owner.token,
            Method::GET,
            &format!("/contracts/{}/schedule", created["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let response = app
        .authed(&owner.token, Method::GET, &format!("{path}?until=soon"))
        .send()
        .await
        .unwrap();
    let body = problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(
        error_codes(&body),
        [("until".into(), "invalid_date".into())]
    );
    let other = app.sign_up().await;
    let response = app
        .authed(&other.token, Method::GET, &path)
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::NOT_FOUND).await;
}

async fn export(
    app: &TestApp,
    token: &str,
    query: &str,
    language: &str,
) -> (String, Vec<Vec<String>>) {
    let response = app
        .authed(token, Method::GET, &format!("/contracts/export{query}"))
        .header("accept-language", language)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"contracts-")
    );
    let bytes = response.bytes().await.unwrap();
    assert!(
        bytes.starts_with("\u{feff}".as_bytes()),
        "a byte-order mark for Excel"
    );
    let text = String::from_utf8(bytes[3..].to_vec()).unwrap();
    let delimiter = if language == "en" { b',' } else { b';' };
    let rows = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    (text, rows)
}

#[tokio::test]
async fn export_in_the_callers_language_is_audited() {
    use domain::store::{Query, Table};
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    let mut car = contract("LC-CAR");
    car["notes"] = json!("Winter tyres; \"premium\" service");
    let car = app.create_contract(&owner.token, &car).await;
    let mut laptop = contract("LC-IT");
    laptop["category"] = json!("it");
    laptop["description"] = json!("Laptops, 40 pcs");
    laptop.as_object_mut().unwrap().remove("residualValue");
    app.create_contract(&owner.token, &laptop).await;
    let schedule: Value = app
        .authed(
            &owner.token,
            Method::GET,
            &format!("/contracts/{}/schedule", car["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let debt = schedule["debtToday"].as_str().unwrap().to_owned();

    let (_, rows) = export(&app, &owner.token, "", "en").await;
    assert_eq!(rows.len(), 3, "a header and two contracts");
    assert_eq!(&rows[0][..3], ["Contract number", "Lessor", "Description"]);
    assert_eq!(rows[0].last().unwrap(), "Leasing debt today");
    let car_row = rows.iter().find(|r| r[0] == "LC-CAR").unwrap();
    assert_eq!(car_row[3], "vehicle");
    assert_eq!(car_row[9], "active");
    assert_eq!(car_row[10], "6899.00");
    assert_eq!(car_row[11], "SEK");
    assert_eq!(car_row[14], "210000.00");
    assert_eq!(car_row[15], "4.95");
    assert_eq!(car_row[18], debt);
    let laptop_row = rows.iter().find(|r| r[0] == "LC-IT").unwrap();
    assert_eq!(
        laptop_row[2], "Laptops, 40 pcs",
        "a comma inside a field is quoted"
    );
    assert_eq!(laptop_row[14], "", "no residual value");

    let (text, rows) = export(&app, &owner.token, "?category=vehicle", "sv-SE,sv;q=0.9").await;
    assert!(
        text.starts_with("Avtalsnummer;Leasegivare;Beskrivning;"),
        "{text}"
    );
    assert_eq!(rows.len(), 2, "only vehicles");
    assert_eq!(rows[1][10], "6899,00");
    assert_eq!(rows[1][15], "4,95");
    assert_eq!(rows[1][18], debt.replace('.', ","));

    let response = app
        .authed(&owner.token, Method::GET, "/contracts/export?limit=5")
        .send()
        .await
        .unwrap();
    let body = problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(
        error_codes(&body),
        [("limit".into(), "unknown_field".into())]
    );

    // Both exports are in the audit trail, with their filters and sizes.
    let table = adapters::embedded::SqliteTable::open(&e2e::data_file(app.data.path())).unwrap();
    let page = table
        .query(
            Query::partition(format!("T#{}", owner.tenant))
                .begins_with("AUDIT#")
                .limit(100),
        )
        .await
        .unwrap();
    let exports: Vec<&Value> = page
        .items
        .iter()
        .map(|item| &item.attributes["after"])
        .filter(|after| after.get("rows").is_some())
        .collect();
    assert_eq!(exports.len(), 2);
    assert_eq!(exports[0]["rows"], 2);
    assert_eq!(exports[1]["rows"], 1);
    assert_eq!(exports[1]["filter"]["category"], "vehicle");
}
