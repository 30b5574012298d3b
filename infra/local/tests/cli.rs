//! The `leasedesk` binary as a newcomer runs it: it prints its URL, serves, and on
//! Ctrl-C stops without losing a write it acknowledged.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(data_dir: &std::path::Path) -> Self {
        Self::start_with(data_dir, &["--no-rates-polling"], &[])
    }

    fn start_with(data_dir: &std::path::Path, args: &[&str], env: &[(&str, String)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_leasedesk"))
            .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("leasedesk starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut first_line = String::new();
        let mut reader = BufReader::new(stdout);
        reader.read_line(&mut first_line).expect("first line");
        let url = first_line
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {first_line:?}"))
            .to_owned();
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in reader.lines() {});
        Self { child, url }
    }

    fn interrupt(&mut self) {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    fn wait(mut self) -> std::process::ExitStatus {
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("leasedesk did not stop within 10 s of Ctrl-C");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Signs up an organization on the runner at `url` and returns its owner's token.
async fn sign_up_and_log_in(client: &reqwest::Client, url: &str) -> String {
    let signup = client
        .post(format!("{url}/auth/signup"))
        .json(&json!({
            "organizationName": "Kiruna Maskin AB",
            "organizationNumber": "556074-3089",
            "name": "Erik Nilsson",
            "email": "erik@kirunamaskin.se",
            "password": "Vinterljus-over-Kiruna-2026"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), 201);
    let login: Value = client
        .post(format!("{url}/auth/login"))
        .json(&json!({"email": "erik@kirunamaskin.se", "password": "Vinterljus-over-Kiruna-2026"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    login["accessToken"].as_str().unwrap().to_owned()
}

fn contract(number: usize) -> Value {
    json!({
        "contractNumber": format!("CLI-{number}"),
        "lessor": "Volvofinans Bank AB",
        "description": "Volvo XC60",
        "category": "vehicle",
        "startDate": "2024-03-01",
        "endDate": "2027-02-28",
        "payment": {"amount": 689900, "currency": "SEK"},
        "paymentFrequency": "monthly",
        "paymentTiming": "advance"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_keeps_every_acknowledged_write() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start(data.path());
    let client = reqwest::Client::new();
    let url = server.url.clone();
    let token = sign_up_and_log_in(&client, &url).await;

    // Writers keep creating contracts while Ctrl-C arrives.
    let mut writers = Vec::new();
    for writer in 0..16 {
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        writers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0.. {
                let sent = client
                    .post(format!("{url}/contracts"))
                    .bearer_auth(&token)
                    .json(&contract(writer * 100_000 + i))
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status() == 201 => {
                        let body: Value = match response.json().await {
                            Ok(body) => body,
                            Err(_) => break,
                        };
                        acknowledged.push(body["id"].as_str().unwrap().to_owned());
                    }
                    _ => break,
                }
            }
            acknowledged
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    server.interrupt();
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }
    let status = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap();
    assert!(status.success(), "clean exit: {status:?}");
    assert!(
        acknowledged.len() > 16,
        "writes happened: {}",
        acknowledged.len()
    );

    let server = Server::start(data.path());
    for id in &acknowledged {
        let response = client
            .get(format!("{}/contracts/{id}", server.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            200,
            "acknowledged contract {id} survived"
        );
    }
}

/// The loopback stand-ins for the rate sources: the ECB publishes two days, Riksbanken
/// is down.
async fn rate_sources() -> (wiremock::MockServer, Vec<(&'static str, String)>) {
    use wiremock::matchers::path_regex;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">
<Cube><Cube time="2026-11-20"><Cube currency="SEK" rate="11.1000"/></Cube><Cube time="2026-11-19"><Cube currency="SEK" rate="11.0000"/></Cube></Cube>
</gesmes:Envelope>"#;
    Mock::given(path_regex("^/ecb/.*"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(xml, "text/xml"))
        .mount(&server)
        .await;
    Mock::given(path_regex("^/(swea|swestr)/.*"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let base = server.uri();
    let env = vec![
        ("LEASEDESK_RIKSBANK_SWEA_URL", format!("{base}/swea")),
        ("LEASEDESK_RIKSBANK_SWESTR_URL", format!("{base}/swestr")),
        ("LEASEDESK_ECB_URL", format!("{base}/ecb")),
    ];
    (server, env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rates_refresh_polls_once_and_says_what_it_stored() {
    let (_server, env) = rate_sources().await;
    let data = tempfile::tempdir().unwrap();
    let run = |source: &'static str| {
        let env = env.clone();
        let data = data.path().to_owned();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_leasedesk"))
                .args(["rates", "refresh", "--source", source, "--data-dir"])
                .arg(&data)
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                .env("RUST_LOG", "error")
                .output()
                .expect("leasedesk runs")
        })
    };
    let first = run("ecb").await.unwrap();
    assert!(first.status.success(), "{first:?}");
    let printed = String::from_utf8_lossy(&first.stdout);
    assert!(printed.contains("ECB.EUR.SEK"), "{printed}");
    assert!(printed.contains("stored 2 observations"), "{printed}");
    assert!(
        !printed.contains("riksbank"),
        "only the ECB was asked: {printed}"
    );

    let second = run("ecb").await.unwrap();
    let printed = String::from_utf8_lossy(&second.stdout);
    assert!(
        printed.contains("stored 0 observations"),
        "nothing new the second time: {printed}"
    );

    let down = run("riksbank").await.unwrap();
    assert!(down.status.success());
    let printed = String::from_utf8_lossy(&down.stdout);
    assert!(printed.contains("riksbank: unreachable"), "{printed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_polls_when_the_runner_starts() {
    let (_server, env) = rate_sources().await;
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(data.path(), &["--rates-every-minutes", "60"], &env);
    let client = reqwest::Client::new();
    let url = server.url.clone();
    let token = sign_up_and_log_in(&client, &url).await;
    for _ in 0..100 {
        let latest = client
            .get(format!("{url}/rates/ECB.EUR.SEK/latest"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        if latest.status() == 200 {
            let body: Value = latest.json().await.unwrap();
            assert_eq!(body["value"], "11.1000", "as published");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the scheduler did not poll within 10 s of start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_run_warns_an_inactive_organization_once() {
    use domain::store::{Query, Table, Update};
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start(data.path());
    sign_up_and_log_in(&reqwest::Client::new(), &server.url.clone()).await;
    server.interrupt();
    let status = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap();
    assert!(status.success(), "clean exit: {status:?}");

    // Its last sign-in was six years ago, as far as the registry knows.
    {
        let table =
            adapters::embedded::SqliteTable::open(&data.path().join("leasedesk.sqlite3")).unwrap();
        let registry = table
            .query(Query::partition(domain::keys::ORGANIZATIONS_PARTITION).limit(10))
            .await
            .unwrap();
        assert_eq!(registry.items.len(), 1, "registered at sign-up");
        let long_ago = chrono::Utc::now().date_naive() - chrono::Days::new(6 * 365);
        let mut update = Update::new(registry.items[0].key.clone());
        update.set.insert("lastActiveOn".into(), json!(long_ago));
        table.update(update).await.unwrap();
    }

    let run = |args: &'static [&'static str]| {
        let data = data.path().to_owned();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_leasedesk"))
                .args(["retention", "run", "--data-dir"])
                .arg(&data)
                .args(args)
                .env("RUST_LOG", "error")
                .env_remove("RETENTION_INACTIVE_DAYS")
                .output()
                .expect("leasedesk runs")
        })
    };
    let first = run(&[]).await.unwrap();
    assert!(first.status.success(), "{first:?}");
    let printed = String::from_utf8_lossy(&first.stdout);
    assert!(
        printed.contains("retention after 1826 days: organizations 1, warned 1, mails sent 1,"),
        "{printed}"
    );
    let outbox = adapters::embedded::Outbox::open(
        &data.path().join("outbox"),
        domain::mail::Sender::new(
            domain::accounts::Email::parse("reader@leasedesk.localhost").unwrap(),
            None,
        )
        .unwrap(),
    )
    .unwrap();
    let mails = outbox
        .messages_to(&domain::accounts::Email::parse("erik@kirunamaskin.se").unwrap())
        .await
        .unwrap();
    assert_eq!(mails.len(), 1);
    assert!(
        mails[0]
            .subject
            .starts_with("The data of Kiruna Maskin AB in Leasedesk"),
        "{}",
        mails[0].subject
    );

    // Once is enough.
    let second = run(&[]).await.unwrap();
    let printed = String::from_utf8_lossy(&second.stdout);
    assert!(printed.contains("warned 0, mails sent 0"), "{printed}");

    // A period no longer than the warning is refused.
    let refused = run(&["--retention-inactive-days", "30"]).await.unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("longer than the 30-day warning"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domains_are_verified_through_the_name_server_the_environment_names() {
    let dns = testkit::DnsTestServer::start().await;
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        data.path(),
        &["--no-rates-polling", "--no-retention"],
        &[("LEASEDESK_DNS_SERVER", dns.address().to_string())],
    );
    let client = reqwest::Client::new();
    let url = server.url.clone();
    let token = sign_up_and_log_in(&client, &url).await;
    let response = client
        .put(format!("{url}/organization/modules/sso"))
        .bearer_auth(&token)
        .json(&json!({"active": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let claim: Value = client
        .post(format!("{url}/organization/sso/domains"))
        .bearer_auth(&token)
        .json(&json!({"domain": "kirunamaskin.se"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    dns.publish(
        claim["record"]["name"].as_str().unwrap(),
        claim["record"]["value"].as_str().unwrap(),
    );
    let verified: Value = client
        .post(format!(
            "{url}/organization/sso/domains/kirunamaskin.se/verify"
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(verified["status"], "verified", "{verified}");
    assert!(dns.queries() >= 1);
}
