//! Sign-in and authentication costs: login latency over HTTP (argon2id dominates: the
//! crate's defaults, OWASP's m = 19 MiB, t = 2, p = 1), and what checking a caller costs
//! on every request: the access token's signature and claims alone, and with the
//! session and member reads that make logouts and role changes immediate. Prints a table.
//!
//! `cargo run --release -p bench --bin auth-bench`

use anyhow::{Context, Result};
use api::{AccessTokens, Authenticator, TokenSettings};
use domain::accounts::AccountService;
use domain::clock::{Clock, SystemClock};
use domain::sessions::SessionService;
use domain::store::Table;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PASSWORD: &str = "Vinterljus-over-Kiruna-2026";
const LOGINS: usize = 200;
const VERIFICATIONS: usize = 100_000;

#[tokio::main]
async fn main() -> Result<()> {
    let data = tempfile::tempdir()?;
    let clock = Arc::new(SystemClock) as Arc<dyn Clock>;
    let running =
        leasedesk::Running::start(&leasedesk::Config::new(data.path()), clock.clone()).await?;
    let client = reqwest::Client::new();
    let url = running.url.clone();
    let email = "bench@nordlysfleet.se";
    client
        .post(format!("{url}/auth/signup"))
        .json(
            &json!({"organizationName": "Bench AB", "organizationNumber": "556074-3089",
                      "name": "Anna Lind", "email": email, "password": PASSWORD}),
        )
        .send()
        .await?
        .error_for_status()?;

    let mut logins = Vec::with_capacity(LOGINS);
    let mut token = String::new();
    for _ in 0..LOGINS {
        let started = Instant::now();
        let body: Value = client
            .post(format!("{url}/auth/login"))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        logins.push(started.elapsed());
        token = body["accessToken"].as_str().context("token")?.to_owned();
    }
    let mut me = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let started = Instant::now();
        client
            .get(format!("{url}/me"))
            .bearer_auth(&token)
            .send()
            .await?
            .error_for_status()?;
        me.push(started.elapsed());
    }
    running.stop().await?;

    // In-process: a table, a signed-in owner, and the same checks the guard makes.
    let table: Arc<dyn Table> = Arc::new(adapters::embedded::SqliteTable::open(
        &data.path().join("verify.sqlite3"),
    )?);
    let tokens = AccessTokens::new(
        b"bench-secret-bench-secret-bench-secret",
        TokenSettings {
            issuer: "https://api.leasedesk.se".into(),
            audience: "leasedesk-api".into(),
            access_ttl: chrono::Duration::minutes(15),
        },
        clock.clone(),
    )?;
    let auth = Authenticator::new(
        tokens,
        SessionService::new(table.clone(), clock.clone()),
        domain::modules::ModuleService::new(table.clone(), clock.clone()),
    );
    let (_, user) = AccountService::new(table, clock)
        .sign_up(
            serde_json::from_value(json!({"organizationName": "Bench AB",
                "organizationNumber": "556074-3089", "name": "Anna Lind",
                "email": email, "password": PASSWORD}))?,
            Default::default(),
        )
        .await?;
    let session = auth
        .sessions()
        .open(&user, "password", &Default::default())
        .await?;
    let access = auth
        .tokens()
        .issue(user.id, user.tenant_id, user.role, session.session)?
        .token;
    let (parts, ()) = http::Request::builder()
        .header(http::header::AUTHORIZATION, format!("Bearer {access}"))
        .body(())?
        .into_parts();

    let started = Instant::now();
    for _ in 0..VERIFICATIONS {
        std::hint::black_box(auth.tokens().verify(std::hint::black_box(&access))?);
    }
    let verify = started.elapsed() / VERIFICATIONS as u32;
    let started = Instant::now();
    for _ in 0..VERIFICATIONS / 10 {
        std::hint::black_box(
            auth.authenticate(&parts)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        );
    }
    let authenticate = started.elapsed() / (VERIFICATIONS / 10) as u32;

    println!("| measure | value |");
    println!("| --- | ---: |");
    println!(
        "| login over HTTP (argon2id m=19 MiB, t=2, p=1), {LOGINS} runs, p50 | {} |",
        ms(percentile(&mut logins, 50))
    );
    println!(
        "| login over HTTP, p99 | {} |",
        ms(percentile(&mut logins, 99))
    );
    println!(
        "| GET /me over HTTP (token + session + member + organization), p50 | {} |",
        ms(percentile(&mut me, 50))
    );
    println!(
        "| GET /me over HTTP, p99 | {} |",
        ms(percentile(&mut me, 99))
    );
    println!(
        "| access token verification (HS256 signature, claims, type), per request | {:.1} µs |",
        micros(verify)
    );
    println!(
        "| caller check (token + session and member reads, SQLite), per request | {:.1} µs |",
        micros(authenticate)
    );
    Ok(())
}

fn percentile(samples: &mut [Duration], p: usize) -> Duration {
    samples.sort();
    samples[(samples.len() * p / 100).min(samples.len() - 1)]
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}
