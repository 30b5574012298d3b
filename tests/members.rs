//! Members end to end: invitations by mail (read from the local outbox), roles that
//! count from the next request, the rules about owners, and every route of the access
//! matrix answered for every role as the matrix says.

use api::access::{Access, ROUTES};
use domain::access::Role;
use e2e::{PASSWORD, TestApp, problem};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn invite(app: &TestApp, token: &str, email: &str, role: &str) -> reqwest::Response {
    app.authed(token, Method::POST, "/members/invitations")
        .header("accept-language", "sv")
        .json(&json!({"email": email, "role": role}))
        .send()
        .await
        .unwrap()
}

async fn accept(app: &TestApp, token: &str) -> reqwest::Response {
    app.request(Method::POST, "/auth/invitations/accept")
        .json(&json!({"token": token, "name": "Erik Berg", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_invitation_is_mailed_in_the_inviters_language_and_works_once() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    let email = format!("erik-{}@nordlysfleet.se", std::process::id());
    let response = invite(&app, &owner.token, &email, "editor").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let invitation: Value = response.json().await.unwrap();
    assert_eq!(invitation["role"], "editor");
    assert!(
        invitation.get("token").is_none(),
        "the token only travels by mail"
    );

    let mails = app.mails_to(&email).await;
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert!(mail.subject.contains("Nordlys Fleet"), "{}", mail.subject);
    assert!(mail.text.contains("Anna Lind"), "{}", mail.text);
    assert!(mail.text.contains("inbjud"), "Swedish: {}", mail.text);
    let token = app.invitation_token(&email).await;

    let response = accept(&app, &token).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let joined: Value = response.json().await.unwrap();
    let me = app
        .get_json(joined["accessToken"].as_str().unwrap(), "/me")
        .await;
    assert_eq!(me["user"]["role"], "editor");
    assert_eq!(me["user"]["email"], email.as_str());
    assert_eq!(me["organization"]["id"], owner.tenant.to_string());

    // Used once; a forged one is the same answer.
    problem(accept(&app, &token).await, StatusCode::GONE).await;
    let forged = format!("{}x", &token[..token.len() - 1]);
    problem(accept(&app, &forged).await, StatusCode::GONE).await;
    // A bad address is named.
    let body = problem(
        invite(&app, &owner.token, "not-an-address", "viewer").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(body["errors"][0]["pointer"], "/email");

    let members = app.get_json(&owner.token, "/members").await;
    assert_eq!(members.as_array().unwrap().len(), 2, "{members}");
}

#[tokio::test]
async fn a_role_change_or_removal_counts_from_the_next_request() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    let editor = app.token_with_role(&owner, Role::Editor).await;
    let editor_id = app.get_json(&editor, "/me").await["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let contract = json!({
        "contractNumber": "LC-1", "lessor": "Volvofinans Bank AB",
        "description": "Volvo XC60", "category": "vehicle",
        "startDate": "2025-01-01", "endDate": "2027-12-31",
        "payment": {"amount": 650000, "currency": "SEK"},
        "paymentFrequency": "monthly", "paymentTiming": "advance", "interestRate": "4.5",
    });
    app.create_contract(&editor, &contract).await;

    let response = app
        .authed(
            &owner.token,
            Method::PATCH,
            &format!("/members/{editor_id}"),
        )
        .json(&json!({"role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // The same access token, the very next request: a viewer now.
    let response = app
        .authed(&editor, Method::POST, "/contracts")
        .json(&json!({"contractNumber": "LC-2"}))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::FORBIDDEN).await;
    app.get_json(&editor, "/contracts").await;

    let response = app
        .authed(
            &owner.token,
            Method::DELETE,
            &format!("/members/{editor_id}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = app
        .authed(&editor, Method::GET, "/contracts")
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::UNAUTHORIZED).await;
    // The refusal and the changes are in the audit log.
    let log = app.get_json(&owner.token, "/audit?action=member.").await;
    let actions: Vec<&str> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "member.removed",
            "member.role_changed",
            "member.joined",
            "member.invited"
        ]
    );
    let denied = app
        .get_json(&owner.token, "/audit?action=request.denied")
        .await;
    assert_eq!(
        denied["events"][0]["target"], "route:POST /contracts",
        "{denied}"
    );
    assert_eq!(denied["events"][0]["outcome"], "denied");
}

#[tokio::test]
async fn only_owners_make_owners_and_the_last_owner_stays() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    let owner_id = owner.user.to_string();
    let admin = app.token_with_role(&owner, Role::Admin).await;

    // An admin invites and manages members, but touches no owner.
    let email = format!("second-owner-{}@nordlysfleet.se", std::process::id());
    problem(
        invite(&app, &admin, &email, "owner").await,
        StatusCode::FORBIDDEN,
    )
    .await;
    let response = app
        .authed(&admin, Method::PATCH, &format!("/members/{owner_id}"))
        .json(&json!({"role": "viewer"}))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::FORBIDDEN).await;

    // The only owner can neither step down nor leave.
    for request in [
        app.authed(&owner.token, Method::PATCH, &format!("/members/{owner_id}"))
            .json(&json!({"role": "admin"})),
        app.authed(
            &owner.token,
            Method::DELETE,
            &format!("/members/{owner_id}"),
        ),
    ] {
        let body = problem(request.send().await.unwrap(), StatusCode::CONFLICT).await;
        assert_eq!(body["type"], "https://leasedesk.se/problems/last-owner");
    }
    // With a second owner, the first may step down.
    let second = app.token_with_role(&owner, Role::Owner).await;
    let response = app
        .authed(&second, Method::PATCH, &format!("/members/{owner_id}"))
        .json(&json!({"role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        app.get_json(&owner.token, "/me").await["user"]["role"],
        "admin"
    );
}

/// A request to `path` (with any `{…}` filled) that a handler refuses as invalid or
/// unknown when the guard lets it through: no route is called for real.
fn probe(app: &TestApp, token: &str, method: &str, path: &str) -> reqwest::RequestBuilder {
    let filled = path
        .replace("{id}", "0190f5c2-0000-7000-8000-000000000000")
        .replace("{series}", "NO-SUCH-SERIES")
        .replace("{module}", "scoring")
        .replace("{domain}", "unclaimed.nordlysfleet.se");
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    app.authed(token, method, &filled)
        .header("content-type", "application/json")
        .body("{\"unknownField\": true}")
}

#[tokio::test]
async fn every_route_answers_every_role_as_the_matrix_says() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    // Every module on: here the roles decide (`tests/sso.rs` checks inactive modules).
    for module in domain::modules::Module::ALL {
        let response = app
            .authed(
                &owner.token,
                Method::PUT,
                &format!("/organization/modules/{module}"),
            )
            .json(&json!({"active": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let mut checked = 0;
    for role in Role::ALL {
        let member = app.token_with_role(&owner, role).await;
        for route in ROUTES.iter().filter(|r| r.access != Access::Public) {
            // Logging out or erasing oneself ends the session the other routes need: a
            // member of its own.
            let ends_session = route.path.starts_with("/auth/logout")
                || (route.method == "DELETE" && route.path == "/me");
            let token = if ends_session {
                app.token_with_role(&owner, role).await
            } else {
                member.clone()
            };
            let response = probe(&app, &token, route.method, route.path)
                .send()
                .await
                .unwrap();
            let status = response.status();
            if route.access.allows(role) {
                assert!(
                    status != StatusCode::FORBIDDEN && status != StatusCode::UNAUTHORIZED,
                    "{role} {} {}: {status}",
                    route.method,
                    route.path
                );
            } else {
                let body = problem(response, StatusCode::FORBIDDEN).await;
                assert_eq!(body["type"], "https://leasedesk.se/problems/forbidden");
            }
            checked += 1;
        }
    }
    let guarded = ROUTES.iter().filter(|r| r.access != Access::Public).count();
    assert_eq!(checked, guarded * Role::ALL.len());
    // Without a token every guarded route is a 401.
    for route in ROUTES.iter().filter(|r| r.access != Access::Public) {
        let response = probe(&app, "", route.method, route.path)
            .header("authorization", "")
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{} {}",
            route.method,
            route.path
        );
    }
}

#[tokio::test]
async fn an_erased_member_leaves_only_a_pseudonym_in_the_audit_log() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    let editor = app.token_with_role(&owner, Role::Editor).await;
    let me = app.get_json(&editor, "/me").await;
    let (editor_id, editor_email) = (
        me["user"]["id"].as_str().unwrap().to_owned(),
        me["user"]["email"].as_str().unwrap().to_owned(),
    );
    let contract = json!({
        "contractNumber": "LC-ERASE", "lessor": "Volvofinans Bank AB",
        "description": "Volvo XC60", "category": "vehicle",
        "startDate": "2025-01-01", "endDate": "2027-12-31",
        "payment": {"amount": 650000, "currency": "SEK"},
        "paymentFrequency": "monthly", "paymentTiming": "advance", "interestRate": "4.5",
    });
    app.create_contract(&editor, &contract).await;

    // A viewer may not erase anyone else.
    let viewer = app.token_with_role(&owner, Role::Viewer).await;
    let response = app
        .authed(
            &viewer,
            Method::POST,
            &format!("/members/{editor_id}/erasure"),
        )
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::FORBIDDEN).await;

    let response = app
        .authed(
            &owner.token,
            Method::POST,
            &format!("/members/{editor_id}/erasure"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = app
        .authed(&editor, Method::GET, "/me")
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::UNAUTHORIZED).await;

    // The trail still tells what happened, by whom under a pseudonym, and nothing more.
    let trail = app.get_json(&owner.token, "/audit?limit=200").await;
    let text = trail.to_string();
    assert!(!text.contains(&editor_id), "the id is gone");
    assert!(!text.contains(&editor_email), "the address is gone");
    let created: Vec<&Value> = trail["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["action"] == "contract.created")
        .collect();
    assert_eq!(created.len(), 1);
    let pseudonym = created[0]["actorId"].as_str().unwrap();
    assert!(created[0]["sourceIp"].is_null());
    let erased = app
        .get_json(&owner.token, "/audit?action=gdpr.erased")
        .await;
    assert_eq!(
        erased["events"][0]["target"],
        format!("user:{pseudonym}"),
        "{erased}"
    );
    // The contract itself stays: it is the organization's, not the person's.
    let contracts = app.get_json(&owner.token, "/contracts").await;
    assert_eq!(
        contracts["items"].as_array().unwrap().len(),
        1,
        "{contracts}"
    );

    // Anyone may erase themselves, but the last owner may not leave this way.
    let response = app
        .authed(&viewer, Method::DELETE, "/me")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = app
        .authed(&owner.token, Method::DELETE, "/me")
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::CONFLICT).await;
}
