//! What every route shares: the API description, problem answers for unknown routes,
//! languages, request ids, and data that survives a restart.

use e2e::{TestApp, contract, problem};
use reqwest::{Method, StatusCode};
use serde_json::Value;

#[tokio::test]
async fn the_api_description_covers_every_route_and_error() {
    let app = TestApp::spawn().await;
    let response = app
        .request(Method::GET, "/openapi.json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let doc: Value = response.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/auth/signup", &["post"][..]),
        ("/auth/login", &["post"]),
        ("/me", &["get"]),
        ("/contracts", &["get", "post"]),
        ("/contracts/{id}", &["get", "patch", "delete"]),
    ] {
        for method in methods {
            let operation = &paths[path][*method];
            assert!(operation.is_object(), "{method} {path}");
            let responses = operation["responses"].as_object().unwrap();
            assert!(responses.contains_key("500"), "{method} {path} 500");
            let secured = !path.starts_with("/auth");
            if secured {
                assert!(responses.contains_key("401"), "{method} {path} 401");
                assert!(operation["security"].is_array(), "{method} {path} security");
            }
            if *method != "get" || path.contains('{') {
                assert!(
                    responses.keys().any(|k| k.starts_with('4')),
                    "{method} {path} problems"
                );
            }
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    assert!(
                        response["content"]["application/problem+json"].is_object(),
                        "{method} {path} {status} is problem+json"
                    );
                }
            }
        }
    }
    assert!(paths["/contracts/{id}"]["patch"]["responses"]["412"].is_object());
    assert!(paths["/contracts/{id}"]["patch"]["responses"]["428"].is_object());
    assert!(paths["/contracts"]["post"]["responses"]["409"].is_object());
    assert!(paths["/contracts"]["post"]["responses"]["422"].is_object());
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for schema in [
        "Contract",
        "NewContract",
        "ContractChanges",
        "ProblemDocument",
        "SignUpRequest",
        "Profile",
    ] {
        assert!(schemas.contains_key(schema), "schema {schema}");
    }
    let required: Vec<&str> = schemas["NewContract"]["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(required.contains(&"contractNumber") && !required.contains(&"notes"));
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems_too() {
    let app = TestApp::spawn().await;
    let response = app
        .request(Method::GET, "/no/such/thing")
        .header("accept-language", "fi")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-language"], "fi");
    problem(response, StatusCode::NOT_FOUND).await;
    let response = app.request(Method::PUT, "/contracts").send().await.unwrap();
    problem(response, StatusCode::METHOD_NOT_ALLOWED).await;
}

#[tokio::test]
async fn every_language_answers() {
    let app = TestApp::spawn().await;
    let mut titles = std::collections::BTreeSet::new();
    for lang in ["en", "sv", "da", "nb", "fi", "lt", "lv", "et"] {
        let response = app
            .request(Method::GET, "/me")
            .header("accept-language", lang)
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["content-language"], lang);
        let body = problem(response, StatusCode::UNAUTHORIZED).await;
        titles.insert(body["title"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        titles.len(),
        8,
        "each language has its own words: {titles:?}"
    );
}

#[tokio::test]
async fn request_ids_travel_with_responses_and_problems() {
    let app = TestApp::spawn().await;
    let response = app
        .request(Method::GET, "/me")
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-123");
    let body = problem(response, StatusCode::UNAUTHORIZED).await;
    assert_eq!(body["requestId"], "trace-me-123");
    let response = app
        .request(Method::GET, "/openapi.json")
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("x-request-id"));
}

#[tokio::test]
async fn data_survives_a_restart() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    let created = app
        .create_contract(&owner.token, &contract("LC-KEEP"))
        .await;
    let path = format!("/contracts/{}", created["id"].as_str().unwrap());
    let data = app.stop().await;

    let app = TestApp::spawn_in(data).await;
    // The signing key survived too: the old token still works.
    let response = app
        .authed(&owner.token, Method::GET, &path)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let read: Value = response.json().await.unwrap();
    assert_eq!(read, created);
    let token = app.log_in(&owner.email, e2e::PASSWORD).await;
    let response = app.authed(&token, Method::GET, "/me").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
