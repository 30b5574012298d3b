//! Helpers for the end-to-end tests: a local runner on a free port over a fresh data
//! folder, and a client that speaks to it as a browser would.

use domain::access::Role;
use domain::clock::{Clock, FixedClock};
use domain::ids::{TenantId, UserId};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The day the tests' clock shows, so derived statuses are stable.
pub const TODAY: &str = "2026-11-21T09:00:00Z";
pub const PASSWORD: &str = "Vinterljus-over-Kiruna-2026";

pub struct TestApp {
    pub url: String,
    pub client: reqwest::Client,
    pub clock: Arc<FixedClock>,
    pub data: tempfile::TempDir,
    running: Option<leasedesk::Running>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        Self::spawn_in(data).await
    }

    /// Starts over an existing data folder (to test restarts).
    pub async fn spawn_in(data: tempfile::TempDir) -> Self {
        Self::spawn_with(data, Vec::new()).await
    }

    /// Starts with these rate feeds (pointed at a loopback server by the test).
    pub async fn spawn_with(
        data: tempfile::TempDir,
        feeds: Vec<Arc<dyn domain::rates::feed::RateFeed>>,
    ) -> Self {
        Self::spawn_configured(data, |config| config.with_feeds(feeds)).await
    }

    /// Starts with the configuration `configure` makes of the default one.
    pub async fn spawn_configured(
        data: tempfile::TempDir,
        configure: impl FnOnce(leasedesk::Config) -> leasedesk::Config,
    ) -> Self {
        let clock = Arc::new(FixedClock::new(TODAY.parse().expect("date")));
        let running = leasedesk::Running::start(
            &configure(leasedesk::Config::new(data.path())),
            clock.clone() as Arc<dyn Clock>,
        )
        .await
        .expect("local runner starts");
        Self {
            url: running.url.clone(),
            client: reqwest::Client::new(),
            clock,
            data,
            running: Some(running),
        }
    }

    /// Stops gracefully and returns the data folder for a restart.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(running) = self.running.take() {
            running.stop().await.expect("clean stop");
        }
        self.data
    }

    /// Runs the retention job once, as the daily schedule does, on the test's clock.
    pub async fn run_retention(&self) -> domain::retention::RetentionReport {
        self.running
            .as_ref()
            .expect("the stack is running")
            .retention
            .run()
            .await
            .expect("the retention run reads the registry")
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.url))
    }

    /// Signs up a new organization (unique numbers each call) and logs its owner in.
    pub async fn sign_up(&self) -> Account {
        let n = next();
        let organization_number = organization_number(n);
        let email = format!("owner{n}-{}@nordlysfleet.se", std::process::id());
        let response = self
            .request(Method::POST, "/auth/signup")
            .json(&json!({
                "organizationName": format!("Nordlys Fleet {n} AB"),
                "organizationNumber": organization_number,
                "name": "Anna Lind",
                "email": email,
                "password": PASSWORD,
            }))
            .send()
            .await
            .expect("sign-up sent");
        assert_eq!(response.status(), StatusCode::CREATED, "sign-up");
        let profile: Value = response.json().await.expect("profile");
        let token = self.log_in(&email, PASSWORD).await;
        Account {
            token,
            email,
            tenant: profile["organization"]["id"]
                .as_str()
                .expect("id")
                .parse()
                .expect("uuid"),
            user: profile["user"]["id"]
                .as_str()
                .expect("id")
                .parse()
                .expect("uuid"),
        }
    }

    pub async fn log_in(&self, email: &str, password: &str) -> String {
        let response = self
            .request(Method::POST, "/auth/login")
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .expect("login sent");
        assert_eq!(response.status(), StatusCode::OK, "login");
        let body: Value = response.json().await.expect("token");
        body["accessToken"].as_str().expect("token").to_owned()
    }

    /// A new member of `owner`'s organization with `role`, invited and joined through
    /// the API (the invitation read from the local outbox): their access token.
    pub async fn token_with_role(&self, owner: &Account, role: Role) -> String {
        let n = next();
        let email = format!("member{n}-{}@nordlysfleet.se", std::process::id());
        let response = self
            .authed(&owner.token, Method::POST, "/members/invitations")
            .json(&json!({"email": email, "role": role}))
            .send()
            .await
            .expect("invitation sent");
        assert_eq!(response.status(), StatusCode::CREATED, "invitation");
        let token = self.invitation_token(&email).await;
        let response = self
            .request(Method::POST, "/auth/invitations/accept")
            .json(&json!({"token": token, "name": "Erik Berg", "password": PASSWORD}))
            .send()
            .await
            .expect("acceptance sent");
        assert_eq!(response.status(), StatusCode::CREATED, "acceptance");
        let body: Value = response.json().await.expect("tokens");
        body["accessToken"].as_str().expect("token").to_owned()
    }

    /// The mails the local stack sent to `to`, oldest first.
    pub async fn mails_to(&self, to: &str) -> Vec<adapters::embedded::ReceivedMail> {
        let outbox = adapters::embedded::Outbox::open(
            &self.data.path().join("outbox"),
            domain::mail::Sender::new(
                domain::accounts::Email::parse("reader@leasedesk.localhost").expect("address"),
                None,
            )
            .expect("sender"),
        )
        .expect("outbox");
        outbox
            .messages_to(&domain::accounts::Email::parse(to).expect("address"))
            .await
            .expect("outbox read")
    }

    /// The token of the last invitation mailed to `email`, from its link.
    pub async fn invitation_token(&self, email: &str) -> String {
        let mails = self.mails_to(email).await;
        let mail = mails.last().expect("an invitation mail");
        link_token(&mail.text, "#token=")
    }

    pub fn authed(&self, token: &str, method: Method, path: &str) -> RequestBuilder {
        self.request(method, path).bearer_auth(token)
    }

    /// GETs `path` as the holder of `token`, expecting 200, and returns the JSON body.
    pub async fn get_json(&self, token: &str, path: &str) -> Value {
        let response = self
            .authed(token, Method::GET, path)
            .send()
            .await
            .expect("request sent");
        let status = response.status();
        let body: Value = response.json().await.expect("json");
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    pub async fn create_contract(&self, token: &str, body: &Value) -> Value {
        let response = self
            .authed(token, Method::POST, "/contracts")
            .json(body)
            .send()
            .await
            .expect("create sent");
        let status = response.status();
        let body: Value = response.json().await.expect("json");
        assert_eq!(status, StatusCode::CREATED, "create: {body}");
        body
    }
}

pub struct Account {
    pub token: String,
    pub email: String,
    pub tenant: TenantId,
    pub user: UserId,
}

fn next() -> usize {
    static COUNTER: AtomicUsize = AtomicUsize::new(1);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// A valid organisationsnummer (Luhn check digit) that differs for each `n`.
pub fn organization_number(n: usize) -> String {
    let base = format!(
        "556{:06}",
        (n * 7919 + std::process::id() as usize) % 1_000_000
    );
    let digits: Vec<u32> = base.chars().filter_map(|c| c.to_digit(10)).collect();
    let check = domain::organization::luhn_check_digit(&digits);
    format!("{}-{}{check}", &base[..6], &base[6..])
}

/// A complete, valid contract body.
pub fn contract(number: &str) -> Value {
    json!({
        "contractNumber": number,
        "lessor": "Volvofinans Bank AB",
        "description": "Volvo XC60 T6 Recharge, company car",
        "category": "vehicle",
        "registrationNumber": "ABC12D",
        "costCenter": "4100",
        "startDate": "2024-03-01",
        "endDate": "2027-02-28",
        "payment": {"amount": 689900, "currency": "SEK"},
        "paymentFrequency": "monthly",
        "paymentTiming": "advance",
        "residualValue": {"amount": 21000000, "currency": "SEK"},
        "interestRate": "4.95",
        "notes": "Service agreement included"
    })
}

/// The problem document of a response, checked to be problem+json with `status`.
pub async fn problem(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.expect("problem body");
    assert_eq!(body["status"], status.as_u16());
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(body["detail"].as_str().is_some_and(|t| !t.is_empty()));
    body
}

/// `(pointer, code)` of each error in a problem document.
pub fn error_codes(problem: &Value) -> Vec<(String, String)> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    let place = e["pointer"]
                        .as_str()
                        .or(e["parameter"].as_str())
                        .or(e["header"].as_str())
                        .unwrap_or_default();
                    (
                        place.to_owned(),
                        e["code"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn etag(response: &Response) -> String {
    response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("etag")
        .to_owned()
}

pub fn data_file(data: &Path) -> std::path::PathBuf {
    data.join("leasedesk.sqlite3")
}

/// The rate feeds pointed at a loopback server that speaks like Riksbanken (`/swea`,
/// `/swestr`) and the ECB (`/ecb`), retrying fast.
pub fn loopback_feeds(base: &str) -> Vec<Arc<dyn domain::rates::feed::RateFeed>> {
    adapters::feeds::build_feeds(&adapters::feeds::FeedSettings {
        riksbank_swea_url: Some(format!("{base}/swea")),
        riksbank_swestr_url: Some(format!("{base}/swestr")),
        ecb_url: Some(format!("{base}/ecb")),
        retry: Some(adapters::feeds::RetryPolicy::fast_for_tests()),
        ..Default::default()
    })
    .expect("feeds")
}

/// The ECB's euro reference rates as its XML files carry them: `(day, [(currency, rate)])`.
pub fn ecb_xml(days: &[(&str, &[(&str, &str)])]) -> String {
    let mut cubes = String::new();
    for (day, rates) in days {
        cubes.push_str(&format!("<Cube time=\"{day}\">"));
        for (currency, rate) in *rates {
            cubes.push_str(&format!("<Cube currency=\"{currency}\" rate=\"{rate}\"/>"));
        }
        cubes.push_str("</Cube>");
    }
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">
<gesmes:subject>Reference rates</gesmes:subject>
<gesmes:Sender><gesmes:name>European Central Bank</gesmes:name></gesmes:Sender>
<Cube>{cubes}</Cube>
</gesmes:Envelope>"#
    )
}

/// The token a mailed link carries after `marker`, up to the end of the link.
pub fn link_token(text: &str, marker: &str) -> String {
    let start = text.find(marker).expect("a link with a token") + marker.len();
    text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .collect()
}
