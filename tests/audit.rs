//! The audit trail over HTTP: `GET /audit` with each filter and across pages, the CSV
//! export in Swedish and English (itself recorded), and who may read it.

use chrono::{DateTime, Duration, Utc};
use domain::access::Role;
use e2e::{Account, TestApp, contract, error_codes, problem};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// `?name=value&...`, each part percent-encoded.
fn query_string(pairs: &[(&str, &str)]) -> String {
    let encode = |text: &str| -> String {
        text.bytes()
            .map(|byte| match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    char::from(byte).to_string()
                }
                _ => format!("%{byte:02X}"),
            })
            .collect()
    };
    let parts: Vec<String> = pairs
        .iter()
        .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// `GET /audit` with these parameters, as the holder of `token`; expects 200.
async fn audit(app: &TestApp, token: &str, query: &[(&str, &str)]) -> Value {
    let response = app
        .authed(
            token,
            Method::GET,
            &format!("/audit{}", query_string(query)),
        )
        .send()
        .await
        .expect("request sent");
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    assert_eq!(status, StatusCode::OK, "GET /audit {query:?}: {body}");
    body
}

fn events(page: &Value) -> &Vec<Value> {
    page["events"].as_array().expect("events")
}

fn actions(page: &Value) -> Vec<&str> {
    events(page)
        .iter()
        .map(|event| event["action"].as_str().expect("action"))
        .collect()
}

fn at(event: &Value) -> DateTime<Utc> {
    event["at"].as_str().expect("at").parse().expect("a time")
}

/// Every event of a selection, page after page of `limit`; and the number of pages.
async fn every_page(
    app: &TestApp,
    token: &str,
    query: &[(&str, &str)],
    limit: usize,
) -> (Vec<Value>, usize) {
    let limit = limit.to_string();
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut parameters = query.to_vec();
        parameters.push(("limit", &limit));
        if let Some(cursor) = &cursor {
            parameters.push(("cursor", cursor));
        }
        let page = audit(app, token, &parameters).await;
        pages += 1;
        assert!(events(&page).len() <= limit.parse().unwrap());
        all.extend(events(&page).iter().cloned());
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return (all, pages),
        }
        assert!(pages < 100, "the pages end");
    }
}

async fn change(app: &TestApp, token: &str, id: &str, version: u64, changes: Value) {
    let response = app
        .authed(token, Method::PATCH, &format!("/contracts/{id}"))
        .header("if-match", format!("\"{version}\""))
        .json(&changes)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "change {id}");
}

async fn export_contracts(app: &TestApp, token: &str) {
    let response = app
        .authed(token, Method::GET, "/contracts/export")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "contracts export");
}

/// The owner's organization after a morning of work, a minute between steps from
/// 09:00 UTC: sign-up; contract A by the owner; B by an editor; A changed by the
/// editor; C by the owner; the contracts exported; B changed by the owner.
struct Morning {
    app: TestApp,
    owner: Account,
    editor_token: String,
    editor: String,
    a: String,
    b: String,
}

async fn morning() -> Morning {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    let editor_token = app.token_with_role(&owner, Role::Editor).await;
    let minute = || app.clock.advance(Duration::minutes(1));
    minute();
    let a = app.create_contract(&owner.token, &contract("LC-A")).await;
    minute();
    let b = app.create_contract(&editor_token, &contract("LC-B")).await;
    minute();
    let a = a["id"].as_str().unwrap().to_owned();
    change(&app, &editor_token, &a, 1, json!({"costCenter": "4200"})).await;
    minute();
    app.create_contract(&owner.token, &contract("LC-C")).await;
    minute();
    export_contracts(&app, &owner.token).await;
    minute();
    let b_id = b["id"].as_str().unwrap().to_owned();
    change(&app, &owner.token, &b_id, 1, json!({"notes": "Checked"})).await;
    Morning {
        editor: b["createdBy"].as_str().unwrap().to_owned(),
        app,
        owner,
        editor_token,
        a,
        b: b_id,
    }
}

#[tokio::test]
async fn the_trail_comes_newest_first_and_each_filter_narrows_it() {
    let Morning {
        app,
        owner,
        editor,
        a,
        b,
        ..
    } = morning().await;
    let everything = audit(&app, &owner.token, &[]).await;
    assert_eq!(
        actions(&everything),
        [
            "contract.updated",
            "contracts.exported",
            "contract.created",
            "contract.updated",
            "contract.created",
            "contract.created",
            // 09:00: the editor joins and signs in; the owner signed up and in.
            "auth.signed_in",
            "member.joined",
            "member.invited",
            "auth.signed_in",
            "organization.created",
        ]
    );
    assert!(everything.get("nextCursor").is_none());
    let times: Vec<DateTime<Utc>> = events(&everything).iter().map(at).collect();
    assert!(times.windows(2).all(|pair| pair[0] >= pair[1]), "{times:?}");
    for event in events(&everything) {
        assert_eq!(event["tenantId"], owner.tenant.to_string());
        assert_eq!(event["outcome"], "success");
        assert_eq!(event["sourceIp"], "127.0.0.1");
    }
    let first = &events(&everything)[0];
    assert_eq!(first["target"], format!("contract:{b}"));
    assert_eq!(first["actorId"], owner.user.to_string());
    assert_eq!(first["after"]["notes"], "Checked");

    let by_editor = audit(&app, &owner.token, &[("actor", &editor)]).await;
    assert_eq!(
        actions(&by_editor),
        [
            "contract.updated",
            "contract.created",
            "auth.signed_in",
            "member.joined"
        ]
    );
    assert_eq!(events(&by_editor)[0]["target"], format!("contract:{a}"));
    assert_eq!(events(&by_editor)[0]["before"]["costCenter"], "4100");
    assert_eq!(events(&by_editor)[0]["after"]["costCenter"], "4200");
    let by_owner = audit(&app, &owner.token, &[("actor", &owner.user.to_string())]).await;
    // Sign-up, sign-in, the editor's invitation, and four changes and the export.
    assert_eq!(events(&by_owner).len(), 7);

    // A prefix ends in a dot: `contract.` is not `contracts.`.
    let contract_events = audit(&app, &owner.token, &[("action", "contract.")]).await;
    assert_eq!(
        actions(&contract_events),
        [
            "contract.updated",
            "contract.created",
            "contract.updated",
            "contract.created",
            "contract.created"
        ]
    );
    let created = audit(&app, &owner.token, &[("action", "contract.created")]).await;
    assert_eq!(events(&created).len(), 3);
    let exported = audit(&app, &owner.token, &[("action", "contracts.exported")]).await;
    assert_eq!(events(&exported).len(), 1);
    assert_eq!(events(&exported)[0]["after"]["rows"], 3);
    assert!(
        events(&audit(&app, &owner.token, &[("action", "contract")]).await).is_empty(),
        "an exact action"
    );

    let about_a = audit(&app, &owner.token, &[("target", &format!("contract:{a}"))]).await;
    assert_eq!(actions(&about_a), ["contract.updated", "contract.created"]);

    // From is inclusive, to exclusive; offsets count as the instant they name.
    let window = audit(
        &app,
        &owner.token,
        &[
            ("from", "2026-11-21T09:02:00Z"),
            ("to", "2026-11-21T09:05:00Z"),
        ],
    )
    .await;
    assert_eq!(
        actions(&window),
        ["contract.created", "contract.updated", "contract.created"]
    );
    let since = audit(&app, &owner.token, &[("from", "2026-11-21T10:04:00+01:00")]).await;
    assert_eq!(
        actions(&since),
        ["contract.updated", "contracts.exported", "contract.created"]
    );
    let before_nine = audit(&app, &owner.token, &[("to", "2026-11-21T09:00:00Z")]).await;
    assert!(events(&before_nine).is_empty());
    let that_day = audit(
        &app,
        &owner.token,
        &[("from", "2026-11-21"), ("to", "2026-11-22")],
    )
    .await;
    assert_eq!(events(&that_day).len(), 11);

    let combined = audit(
        &app,
        &owner.token,
        &[
            ("actor", &owner.user.to_string()),
            ("action", "contract."),
            ("from", "2026-11-21T09:03:00Z"),
        ],
    )
    .await;
    assert_eq!(actions(&combined), ["contract.updated", "contract.created"]);

    // Another organization sees only its own sign-up and sign-in.
    let other = app.sign_up().await;
    let theirs = audit(&app, &other.token, &[]).await;
    assert_eq!(actions(&theirs), ["auth.signed_in", "organization.created"]);
    let probe = audit(&app, &other.token, &[("target", &format!("contract:{a}"))]).await;
    assert!(events(&probe).is_empty());
}

#[tokio::test]
async fn small_pages_cover_the_trail_once_newest_first() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    // Thirteen contracts, three at each instant, so pages also split equal times.
    for n in 0..13 {
        if n % 3 == 0 {
            app.clock.advance(Duration::seconds(1));
        }
        app.create_contract(&owner.token, &contract(&format!("LC-{n:02}")))
            .await;
    }
    let whole = audit(&app, &owner.token, &[("limit", "200")]).await;
    let whole = events(&whole).clone();
    // And the sign-up with its first sign-in.
    assert_eq!(whole.len(), 15);
    let ids = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .map(|event| event["id"].as_str().unwrap().to_owned())
            .collect()
    };
    for (limit, pages) in [(4, 4), (1, 15), (7, 3), (15, 1)] {
        let (paged, seen) = every_page(&app, &owner.token, &[], limit).await;
        assert_eq!(ids(&paged), ids(&whole), "limit {limit}");
        assert_eq!(seen, pages, "limit {limit}");
    }
    let unique: BTreeSet<String> = ids(&whole).into_iter().collect();
    assert_eq!(unique.len(), 15);
    let times: Vec<DateTime<Utc>> = whole.iter().map(at).collect();
    assert!(times.windows(2).all(|pair| pair[0] >= pair[1]));
    // Newest first: the last contract's creation leads, the sign-up closes.
    assert_eq!(whole[0]["after"]["contractNumber"], "LC-12");
    assert_eq!(whole[13]["action"], "auth.signed_in");
    assert_eq!(whole[14]["action"], "organization.created");

    // Filters and time windows page the same way.
    let created = [("action", "contract.created")];
    let (paged, _) = every_page(&app, &owner.token, &created, 3).await;
    assert_eq!(ids(&paged), ids(&whole[..13]));
    let window = [
        ("from", "2026-11-21T09:00:02Z"),
        ("to", "2026-11-21T09:00:04Z"),
    ];
    let (paged, pages) = every_page(&app, &owner.token, &window, 2).await;
    let numbers: Vec<&str> = paged
        .iter()
        .map(|event| event["after"]["contractNumber"].as_str().unwrap())
        .collect();
    assert_eq!(
        numbers,
        ["LC-08", "LC-07", "LC-06", "LC-05", "LC-04", "LC-03"]
    );
    assert_eq!(pages, 3);

    // A cursor continues only the selection it came from.
    let first = audit(&app, &owner.token, &[("limit", "2")]).await;
    let cursor = first["nextCursor"].as_str().unwrap();
    let elsewhere = app
        .authed(
            &owner.token,
            Method::GET,
            &format!(
                "/audit{}",
                query_string(&[("cursor", cursor), ("to", "2026-11-21T09:00:01Z")])
            ),
        )
        .send()
        .await
        .unwrap();
    let body = problem(elsewhere, StatusCode::BAD_REQUEST).await;
    assert_eq!(
        error_codes(&body),
        [("cursor".to_owned(), "invalid_cursor".to_owned())]
    );
}

/// The rows of a CSV export, after checking its headers and byte-order mark.
async fn export(
    app: &TestApp,
    token: &str,
    query: &[(&str, &str)],
    language: &str,
) -> Vec<Vec<String>> {
    let response = app
        .authed(
            token,
            Method::GET,
            &format!("/audit/export{}", query_string(query)),
        )
        .header("accept-language", language)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"audit-2026-11-21.csv\""
    );
    assert_eq!(headers["cache-control"], "private, no-store");
    let bytes = response.bytes().await.unwrap();
    let text = std::str::from_utf8(&bytes).unwrap();
    let text = text
        .strip_prefix('\u{feff}')
        .expect("a byte-order mark for Excel");
    let delimiter = if language == "en" { b',' } else { b';' };
    let rows: Vec<Vec<String>> = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .from_reader(text.as_bytes())
        .records()
        .map(|record| record.unwrap().iter().map(str::to_owned).collect())
        .collect();
    assert!(rows.iter().all(|row| row.len() == 11), "{text}");
    rows
}

#[tokio::test]
async fn the_export_speaks_swedish_and_english_and_is_recorded() {
    let Morning { app, owner, a, .. } = morning().await;
    app.clock.advance(Duration::minutes(1));
    let swedish = export(&app, &owner.token, &[], "sv-SE,sv;q=0.9").await;
    assert_eq!(
        swedish[0],
        [
            "Tid (UTC)",
            "Användare",
            "Åtgärd",
            "Objekt",
            "Utfall",
            "IP-adress",
            "Webbläsare eller klient",
            "Anrops-id",
            "Händelse-id",
            "Före",
            "Efter"
        ]
    );
    // The eleven events of the morning (the seven changes, two sign-ins, the editor's
    // invitation and joining), newest first; the export is not in itself.
    assert_eq!(swedish.len(), 12);
    let newest = &swedish[1];
    assert_eq!(newest[0], "2026-11-21 09:06:00");
    assert_eq!(newest[1], owner.user.to_string());
    assert_eq!(newest[2], "contract.updated");
    assert_eq!(newest[4], "success");
    assert_eq!(newest[5], "127.0.0.1");
    let after: Value = serde_json::from_str(&newest[10]).unwrap();
    assert_eq!(after["notes"], "Checked");
    assert_eq!(swedish[11][2], "organization.created");
    assert_eq!(swedish[11][0], "2026-11-21 09:00:00");

    app.clock.advance(Duration::minutes(1));
    let english = export(
        &app,
        &owner.token,
        &[("target", &format!("contract:{a}"))],
        "en",
    )
    .await;
    assert_eq!(english[0][0], "Time (UTC)");
    assert_eq!(english[0][9], "Before");
    let actions: Vec<&str> = english[1..].iter().map(|row| row[2].as_str()).collect();
    assert_eq!(actions, ["contract.updated", "contract.created"]);
    assert_eq!(english[2][9], "", "a creation has no before");

    // Both exports are in the trail now, the English one first.
    let exports = audit(&app, &owner.token, &[("action", "audit.exported")]).await;
    let exports = events(&exports);
    assert_eq!(exports.len(), 2);
    assert_eq!(exports[0]["at"], "2026-11-21T09:08:00Z");
    assert_eq!(exports[0]["after"]["rows"], 2);
    assert_eq!(
        exports[0]["after"]["filter"]["target"],
        format!("contract:{a}")
    );
    assert_eq!(exports[1]["after"]["rows"], 11);
    assert!(exports[1]["after"]["filter"]["target"].is_null());
    for event in exports {
        assert_eq!(event["actorId"], owner.user.to_string());
        assert_eq!(event["outcome"], "success");
        assert_eq!(event["target"], format!("organization:{}", owner.tenant));
    }
    // And a later export holds the earlier ones.
    let again = export(&app, &owner.token, &[("action", "audit.")], "da").await;
    assert_eq!(again[0][0], "Tidspunkt (UTC)");
    assert_eq!(again.len(), 3);

    // The export takes the filters, not paging, and checks them as the list does.
    let response = app
        .authed(
            &owner.token,
            Method::GET,
            &format!(
                "/audit/export{}",
                query_string(&[("limit", "5"), ("from", "2026-11-22"), ("to", "2026-11-21")])
            ),
        )
        .send()
        .await
        .unwrap();
    let body = problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(
        error_codes(&body),
        [
            ("limit".to_owned(), "unknown_field".to_owned()),
            ("to".to_owned(), "before_start".to_owned()),
        ]
    );
}

#[tokio::test]
async fn invalid_parameters_are_named() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    let response = app
        .authed(
            &owner.token,
            Method::GET,
            &format!(
                "/audit{}",
                query_string(&[
                    ("actor", "anna"),
                    ("action", " "),
                    ("from", "igår"),
                    ("limit", "0"),
                    ("cursor", "!!"),
                    ("sort", "oldest"),
                ])
            ),
        )
        .header("accept-language", "sv")
        .send()
        .await
        .unwrap();
    let body = problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(
        body["type"],
        "https://leasedesk.se/problems/invalid-parameter"
    );
    let mut codes = error_codes(&body);
    codes.sort();
    assert_eq!(
        codes,
        [
            ("action".to_owned(), "blank".to_owned()),
            ("actor".to_owned(), "invalid_id".to_owned()),
            ("cursor".to_owned(), "invalid_cursor".to_owned()),
            ("from".to_owned(), "invalid_instant".to_owned()),
            ("limit".to_owned(), "invalid_integer".to_owned()),
            ("sort".to_owned(), "unknown_field".to_owned()),
        ]
    );
    let from = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|error| error["parameter"] == "from")
        .unwrap();
    assert!(
        from["detail"]
            .as_str()
            .unwrap()
            .starts_with("Måste vara ett datum"),
        "{from}"
    );
    for limit in ["201", "1.5"] {
        let response = app
            .authed(
                &owner.token,
                Method::GET,
                &format!("/audit{}", query_string(&[("limit", limit)])),
            )
            .send()
            .await
            .unwrap();
        let body = problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(
            error_codes(&body),
            [("limit".to_owned(), "invalid_integer".to_owned())]
        );
    }
}

#[tokio::test]
async fn only_owners_and_admins_read_the_trail_and_refusals_are_recorded() {
    let Morning {
        app,
        owner,
        editor_token,
        ..
    } = morning().await;
    let viewer_token = app.token_with_role(&owner, Role::Viewer).await;
    for (role, token) in [("editor", &editor_token), ("viewer", &viewer_token)] {
        for path in ["/audit", "/audit/export?action=contract."] {
            let response = app
                .authed(token, Method::GET, path)
                .header("accept-language", "en")
                .send()
                .await
                .unwrap();
            let body = problem(response, StatusCode::FORBIDDEN).await;
            assert_eq!(body["type"], "https://leasedesk.se/problems/forbidden");
            assert_eq!(
                body["detail"],
                format!("Your role ({role}) does not allow this."),
                "{path}"
            );
        }
    }
    // Refused before the parameters are looked at, as on every route.
    let response = app
        .authed(&viewer_token, Method::GET, "/audit?limit=0")
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::FORBIDDEN).await;

    for role in [Role::Owner, Role::Admin] {
        let token = app.token_with_role(&owner, role).await;
        let page = audit(&app, &token, &[("action", "contract.created")]).await;
        assert_eq!(events(&page).len(), 3, "{role}");
    }

    // Every refusal is in the trail, as `denied`, with who tried and what.
    let refusals = audit(&app, &owner.token, &[("action", "request.denied")]).await;
    let seen: Vec<(&str, &str)> = events(&refusals)
        .iter()
        .map(|event| {
            (
                event["target"].as_str().unwrap(),
                event["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("route:GET /audit", "denied"),
            ("route:GET /audit/export", "denied"),
            ("route:GET /audit", "denied"),
            ("route:GET /audit/export", "denied"),
            ("route:GET /audit", "denied"),
        ]
    );
    let actors: Vec<&str> = events(&refusals)
        .iter()
        .map(|event| event["actorId"].as_str().unwrap())
        .collect();
    // Newest first: the viewer's three attempts, then the editor's two.
    let (viewer, editor) = (actors[0], actors[4]);
    assert_eq!(actors, [viewer, viewer, viewer, editor, editor]);
    assert_ne!(viewer, editor);
    assert!(!actors.contains(&owner.user.to_string().as_str()));

    // Without a token: 401, nothing recorded.
    for path in ["/audit", "/audit/export"] {
        let response = app.request(Method::GET, path).send().await.unwrap();
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        problem(response, StatusCode::UNAUTHORIZED).await;
    }
    let after = audit(&app, &owner.token, &[("action", "request.denied")]).await;
    assert_eq!(events(&after).len(), 5);
}
