//! The data-retention job over the local runner: an organization nobody signs in to is
//! warned (the owners' mails read from the outbox), then removed 30 days later with
//! everything it had (its single sign-on client secret included), while another
//! organization stays; and a sign-in after the warning keeps it.

use chrono::{DateTime, Days, Duration, NaiveDate, Utc};
use domain::access::Role;
use domain::keys;
use domain::store::{Index, Query, Table, query_all};
use e2e::{Account, PASSWORD, TestApp, contract, data_file};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The period less the warning: the first day an organization last active today is
/// warned.
const WARNING_AFTER_DAYS: i64 = 1826 - 30;

/// The status of a sign-in with `email`.
async fn sign_in_status(app: &TestApp, email: &str) -> StatusCode {
    app.request(Method::POST, "/auth/login")
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .status()
}

/// A large-import file uploaded through its presigned URL and left waiting (a job in
/// the organization's partition and a file in the bucket).
async fn upload_waiting_file(app: &TestApp, token: &str) {
    let created: Value = app
        .authed(token, Method::POST, "/contracts/import/jobs")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let upload = &created["upload"];
    let mut put = reqwest::Client::new().put(upload["url"].as_str().unwrap());
    for (name, value) in upload["headers"].as_object().unwrap() {
        put = put.header(name, value.as_str().unwrap());
    }
    let body = "contractNumber,lessor,startDate,endDate,payment,currency,paymentFrequency,paymentTiming\n\
                UP-1,Volvofinans Bank AB,2024-03-01,2027-02-28,6899.00,SEK,monthly,advance\n";
    assert_eq!(
        put.body(body).send().await.unwrap().status(),
        StatusCode::OK
    );
}

/// The files under `imports/<tenant>/` in the runner's blob folder.
fn files_of(app: &TestApp, account: &Account) -> Vec<std::path::PathBuf> {
    let folder = app
        .data
        .path()
        .join("blobs/objects/imports")
        .join(account.tenant.to_string());
    let mut files = Vec::new();
    let mut pending = vec![folder];
    while let Some(folder) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.map(Result::unwrap) {
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    files
}

/// Turns the single sign-on module on for `owner`'s organization and configures a
/// provider: its client secret goes into the runner's vault.
async fn configure_sso(app: &TestApp, owner: &Account, provider: &testkit::OidcTestProvider) {
    let module = app
        .authed(&owner.token, Method::PUT, "/organization/modules/sso")
        .json(&json!({"active": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(module.status(), StatusCode::OK);
    let configured = app
        .authed(&owner.token, Method::PUT, "/organization/sso")
        .json(&json!({
            "provider": {"kind": "generic", "issuer": provider.issuer(), "clientId": provider.client_id()},
            "clientSecret": provider.client_secret(),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(configured.status(), StatusCode::OK);
}

/// The single sign-on client secret of `account`'s organization in the runner's vault.
async fn sso_secret(data: &std::path::Path, account: &Account) -> Option<String> {
    use domain::secrets::SecretVault;
    adapters::embedded::FolderSecrets::open(&data.join("secrets"))
        .unwrap()
        .get(&format!("sso/{}", account.tenant))
        .await
        .unwrap()
}

fn today(app: &TestApp) -> NaiveDate {
    domain::clock::Clock::today(app.clock.as_ref())
}

#[tokio::test]
async fn an_inactive_organization_is_warned_then_removed_with_everything_it_had() {
    let provider = testkit::OidcTestProvider::start().await;
    let app = TestApp::spawn().await;

    // An organization with contracts, a waiting import file, its dashboard, single
    // sign-on and a second owner who reads Swedish.
    let owner = app.sign_up().await;
    for n in 1..=3 {
        app.create_contract(&owner.token, &contract(&format!("RET-{n}")))
            .await;
    }
    upload_waiting_file(&app, &owner.token).await;
    app.get_json(&owner.token, "/portfolio").await;
    configure_sso(&app, &owner, &provider).await;
    assert!(sso_secret(app.data.path(), &owner).await.is_some());
    let second_token = app.token_with_role(&owner, Role::Owner).await;
    let me = app
        .authed(&second_token, Method::PATCH, "/me")
        .json(&json!({"language": "sv"}))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    let me: Value = me.json().await.unwrap();
    let second_email = me["user"]["email"].as_str().unwrap().to_owned();
    let organization = &me["organization"];
    let (name, number) = (
        organization["name"].as_str().unwrap().to_owned(),
        organization["organizationNumber"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    assert_eq!(files_of(&app, &owner).len(), 1);

    // Another organization, whose owner keeps signing in.
    let other = app.sign_up().await;
    app.create_contract(&other.token, &contract("KEEP-1")).await;
    upload_waiting_file(&app, &other.token).await;
    configure_sso(&app, &other, &provider).await;

    // The day the first one is due: its owners are warned, in their languages.
    app.clock.advance(Duration::days(WARNING_AFTER_DAYS));
    app.log_in(&other.email, PASSWORD).await;
    let report = app.run_retention().await;
    assert_eq!(
        (report.warned, report.mails_sent, report.deleted),
        (1, 2, 0),
        "{report:?}"
    );
    let deletion_date = today(&app) + Days::new(30);
    let english = app.mails_to(&owner.email).await;
    let warning = english.last().expect("a warning to the owner");
    assert_eq!(
        warning.subject,
        format!("The data of {name} in Leasedesk will be deleted on {deletion_date}")
    );
    assert!(
        warning.text.contains("permanently deleted"),
        "{}",
        warning.text
    );
    let swedish = app.mails_to(&second_email).await;
    let warning = swedish.last().expect("a warning to the second owner");
    assert_eq!(
        warning.subject,
        format!("Uppgifterna för {name} i Leasedesk raderas {deletion_date}")
    );
    assert!(app.mails_to(&other.email).await.is_empty());

    // Not warned twice.
    let report = app.run_retention().await;
    assert_eq!((report.warned, report.deleted), (0, 0));
    assert_eq!(app.mails_to(&owner.email).await.len(), english.len());

    // Thirty days on, still nobody has signed in: it is removed.
    app.clock.advance(Duration::days(30));
    let other_token = app.log_in(&other.email, PASSWORD).await;
    let report = app.run_retention().await;
    assert_eq!((report.deleted, report.failed), (1, 0), "{report:?}");

    // Nobody of it can sign in, and its addresses and number are free again.
    assert_eq!(
        sign_in_status(&app, &owner.email).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        sign_in_status(&app, &second_email).await,
        StatusCode::UNAUTHORIZED
    );
    assert!(files_of(&app, &owner).is_empty(), "its files are gone");
    assert_eq!(sso_secret(app.data.path(), &owner).await, None);
    assert!(sso_secret(app.data.path(), &other).await.is_some());
    let again = app
        .request(Method::POST, "/auth/signup")
        .json(&json!({
            "organizationName": name,
            "organizationNumber": number,
            "name": "Anna Lind",
            "email": owner.email,
            "password": PASSWORD,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    let again: Value = again.json().await.unwrap();
    assert_ne!(again["organization"]["id"], json!(owner.tenant));

    // The other organization is untouched.
    let contracts = app.get_json(&other_token, "/contracts").await;
    assert_eq!(contracts["items"][0]["contractNumber"], "KEEP-1");
    assert_eq!(files_of(&app, &other).len(), 1);
    let report = app.run_retention().await;
    assert_eq!((report.deleted, report.failed), (0, 0));

    // In the store, only the retention record names it, and it names no person.
    let data = app.stop().await;
    let table = adapters::embedded::SqliteTable::open(&data_file(data.path())).unwrap();
    let everything = |partition: String| Query::partition(partition).limit(1000);
    assert!(
        query_all(&table, everything(keys::tenant_partition(owner.tenant)))
            .await
            .unwrap()
            .is_empty()
    );
    let by_end = everything(keys::contracts_by_end_partition(owner.tenant)).on_index(Index::Gsi1);
    assert!(query_all(&table, by_end).await.unwrap().is_empty());
    for registry in [
        keys::organization_registration(owner.tenant),
        keys::portfolio_registration(owner.tenant),
        keys::email_login(&second_email),
    ] {
        assert_eq!(table.get(&registry).await.unwrap(), None, "{registry:?}");
    }
    let login = table.get(&keys::email_login(&owner.email)).await.unwrap();
    assert_eq!(
        login.unwrap().attributes["tenantId"],
        again["organization"]["id"],
        "the address belongs to the new sign-up only"
    );
    let record = table
        .get(&keys::retention_record(owner.tenant))
        .await
        .unwrap()
        .expect("the retention record");
    let text = json!(record.attributes).to_string();
    for personal in [
        owner.email.as_str(),
        &second_email,
        &name,
        &number,
        "Anna Lind",
    ] {
        assert!(!text.contains(personal), "{personal} in {text}");
    }
    let attributes = &record.attributes;
    assert_eq!(attributes["tenantId"], json!(owner.tenant));
    assert_eq!(attributes["removedContracts"], 3);
    assert_eq!(attributes["removedMembers"], 2);
    assert_eq!(attributes["removedBlobs"], 1);
    assert_eq!(attributes["removedSecrets"], 1);
    assert_eq!(attributes["deletionDate"], json!(deletion_date));
    let removed_at: DateTime<Utc> =
        serde_json::from_value(attributes["removedAt"].clone()).unwrap();
    assert_eq!(removed_at.date_naive(), deletion_date);
    // The other organization's items are all still there.
    let kept = query_all(&table, everything(keys::tenant_partition(other.tenant)))
        .await
        .unwrap();
    assert!(
        kept.iter()
            .any(|item| item.key.sk.starts_with(keys::CONTRACT_PREFIX))
    );
}

#[tokio::test]
async fn a_sign_in_after_the_warning_keeps_the_organization() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    app.create_contract(&owner.token, &contract("STAY-1")).await;

    app.clock.advance(Duration::days(WARNING_AFTER_DAYS));
    assert_eq!(app.run_retention().await.warned, 1);
    assert_eq!(app.mails_to(&owner.email).await.len(), 1);

    // A week later the owner signs in: the next run clears the warning.
    app.clock.advance(Duration::days(7));
    let token = app.log_in(&owner.email, PASSWORD).await;
    let report = app.run_retention().await;
    assert_eq!((report.cleared, report.deleted), (1, 0), "{report:?}");

    // Past the announced date it is still there, and no new warning comes.
    app.clock.advance(Duration::days(30));
    let report = app.run_retention().await;
    assert_eq!((report.warned, report.deleted), (0, 0), "{report:?}");
    assert_eq!(app.mails_to(&owner.email).await.len(), 1);
    // The access token of a month ago has expired.
    drop(token);
    let token = app.log_in(&owner.email, PASSWORD).await;
    let contracts = app.get_json(&token, "/contracts").await;
    assert_eq!(contracts["items"][0]["contractNumber"], "STAY-1");
    let audit = app.get_json(&token, "/audit?action=retention.").await;
    let actions: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["retention.warning_cleared", "retention.warned"]);
}
