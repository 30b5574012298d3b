//! The portfolio with 100,000 contracts: import time, dashboard latency and store reads,
//! the rebuild's computation with the facts stored with the contracts and without them,
//! the nightly roll that refreshes those facts, and the schedule per contract. Prints a
//! table.
//!
//! `cargo run --release -p bench --bin portfolio-bench [-- CONTRACTS]`

use anyhow::{Context, Result, bail, ensure};
use async_trait::async_trait;
use domain::access::Role;
use domain::audit::{Actor, RequestInfo};
use domain::clock::{Clock, FixedClock, SystemClock};
use domain::contracts::Contract;
use domain::ids::{TenantId, UserId};
use domain::portfolio::{PortfolioService, RecomputeReport};
use domain::store::{Query, Table};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use testkit::{HookedTable, TableHooks};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PASSWORD: &str = "Vinterljus-over-Kiruna-2026";

#[tokio::main]
async fn main() -> Result<()> {
    let contracts: usize = match std::env::args().nth(1) {
        Some(n) => n.parse().context("the number of contracts")?,
        None => 100_000,
    };
    let data = tempfile::tempdir()?;
    let running = leasedesk::Running::start(
        &leasedesk::Config::new(data.path()),
        Arc::new(SystemClock) as Arc<dyn Clock>,
    )
    .await?;
    let client = reqwest::Client::new();
    let url = running.url.clone();

    let large = Organization::sign_up(&client, &url, 1).await?;
    let small = Organization::sign_up(&client, &url, 2).await?;
    // The first dashboard creates the aggregate; from then on imports maintain it.
    large.get(&client, &url, "/portfolio").await?;
    small.get(&client, &url, "/portfolio").await?;

    let csv = register_csv(contracts);
    let started = Instant::now();
    let report = large.import(&client, &url, csv.clone()).await?;
    let import_time = started.elapsed();
    ensure!(report["created"] == contracts, "import: {report}");
    small.import(&client, &url, register_csv(10)).await?;

    let started = Instant::now();
    let again = large.import(&client, &url, csv).await?;
    let reimport_time = started.elapsed();
    ensure!(again["unchanged"] == contracts, "re-import: {again}");

    let mut latencies = Vec::new();
    for _ in 0..200 {
        let started = Instant::now();
        large.get(&client, &url, "/portfolio").await?;
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let dashboard = large.get(&client, &url, "/portfolio").await?;
    ensure!(
        dashboard["contracts"]["total"] == contracts,
        "dashboard: {}",
        dashboard["contracts"]
    );

    let started = Instant::now();
    let recompute = large.post(&client, &url, "/portfolio/recompute").await?;
    let recompute_time = started.elapsed();
    ensure!(recompute["differences"] == json!([]), "{recompute}");
    // The import stored every contract's facts for the dashboard's day.
    ensure!(
        recompute["factsReused"] == contracts && recompute["factsComputed"] == 0,
        "{recompute}"
    );

    // Store reads of one dashboard, counted on a second handle to the same database.
    let table: Arc<dyn Table> = Arc::new(adapters::embedded::SqliteTable::open(
        &data.path().join("leasedesk.sqlite3"),
    )?);
    let counting = Arc::new(HookedTable {
        inner: table.clone(),
        hooks: ReadCounter::default(),
    });
    let service = PortfolioService::new(
        counting.clone(),
        Arc::new(SystemClock),
        PortfolioService::standard_defaults(),
    );
    let reads_large = counting
        .hooks
        .reads_of(service.dashboard(&large.actor()))
        .await?;
    let reads_small = counting
        .hooks
        .reads_of(service.dashboard(&small.actor()))
        .await?;

    // The schedule of every contract, computed once each.
    let all = all_contracts(table.as_ref(), large.tenant).await?;
    let today = chrono::Utc::now().date_naive();
    let started = Instant::now();
    let mut computed = 0;
    for contract in &all {
        if let Ok(schedule) = domain::schedule::build(contract, None, Some(today)) {
            std::hint::black_box(schedule.liability_at(today));
            computed += 1;
        }
    }
    let schedule_time = started.elapsed();

    // Tomorrow, before the nightly roll: every stored fact is a day old.
    let now = chrono::Utc::now();
    let on_day = |days: i64| {
        PortfolioService::new(
            table.clone(),
            Arc::new(FixedClock::new(now + chrono::Duration::days(days))),
            PortfolioService::standard_defaults(),
        )
    };
    let stale = on_day(1).recompute(&large.actor()).await?;
    ensure!(stale.facts_computed == contracts, "{stale:?}");
    // The day after: the nightly roll rebuilds and stores the day's facts.
    let nightly = on_day(2);
    let started = Instant::now();
    let roll = nightly.roll(large.tenant).await?;
    let roll_time = started.elapsed();
    ensure!(
        roll.rebuilt && roll.facts_written == contracts && roll.facts_skipped == 0,
        "{roll:?}"
    );
    // A few times: on a busy machine one figure can be a scheduling accident.
    let mut after_roll = Vec::new();
    for _ in 0..3 {
        let report = nightly.recompute(&large.actor()).await?;
        ensure!(
            report.facts_reused == contracts && report.differences.is_empty(),
            "{report:?}"
        );
        after_roll.push(ms(&report));
    }
    after_roll.sort_by(f64::total_cmp);

    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    let percentile =
        |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!("| measure | value |");
    println!("| --- | ---: |");
    println!("| contracts | {contracts} |");
    println!(
        "| import (POST /contracts/import, Swedish CSV; a job until it succeeds) | {:.2} s |",
        import_time.as_secs_f64()
    );
    println!(
        "| import rate | {:.0} contracts/s |",
        contracts as f64 / import_time.as_secs_f64()
    );
    println!(
        "| re-import of the same file (all unchanged) | {:.2} s |",
        reimport_time.as_secs_f64()
    );
    println!(
        "| GET /portfolio p50 | {:.2} ms |",
        micros(percentile(0.50)) / 1e3
    );
    println!(
        "| GET /portfolio p99 | {:.2} ms |",
        micros(percentile(0.99)) / 1e3
    );
    println!("| store reads per dashboard, {contracts} contracts | {reads_large} |");
    println!("| store reads per dashboard, 10 contracts | {reads_small} |");
    println!(
        "| recompute: computation, facts of the day stored ({} reused, {} computed) | {:.1} ms |",
        recompute["factsReused"],
        recompute["factsComputed"],
        recompute["computationMicros"].as_f64().unwrap_or_default() / 1e3
    );
    println!(
        "| recompute: whole request (reads, lists, writes) | {:.2} s |",
        recompute_time.as_secs_f64()
    );
    println!(
        "| recompute: computation, facts a day old ({} reused, {} computed) | {:.1} ms |",
        stale.facts_reused,
        stale.facts_computed,
        ms(&stale)
    );
    println!(
        "| nightly roll of the organization: whole (rebuild, {} facts written) | {:.2} s |",
        roll.facts_written,
        roll_time.as_secs_f64()
    );
    println!(
        "| nightly roll: the rebuild's computation (facts computed) | {:.1} ms |",
        roll.compute_micros as f64 / 1e3
    );
    println!(
        "| nightly roll: storing the day's facts ({} conditional puts) | {:.2} s |",
        roll.facts_written,
        roll.write_micros as f64 / 1e6
    );
    println!(
        "| recompute after the roll: computation, 3 runs ({contracts} reused, 0 computed) | {:.1} / {:.1} / {:.1} ms |",
        after_roll[0], after_roll[1], after_roll[2]
    );
    println!(
        "| schedule + debt today per contract | {:.2} µs |",
        micros(schedule_time) / computed.max(1) as f64
    );
    if reads_large != reads_small {
        bail!("store reads differ: {reads_large} for {contracts} contracts, {reads_small} for 10");
    }
    running.stop().await?;
    Ok(())
}

fn ms(report: &RecomputeReport) -> f64 {
    report.computation_micros as f64 / 1e3
}

struct Organization {
    token: String,
    tenant: TenantId,
    user: UserId,
}

impl Organization {
    async fn sign_up(client: &reqwest::Client, url: &str, n: u32) -> Result<Self> {
        let number = organization_number(n);
        let email = format!("bench{n}@nordlysfleet.se");
        let profile: Value = client
            .post(format!("{url}/auth/signup"))
            .json(
                &json!({"organizationName": format!("Bench {n} AB"), "organizationNumber": number,
                          "name": "Anna Lind", "email": email, "password": PASSWORD}),
            )
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let login: Value = client
            .post(format!("{url}/auth/login"))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(Self {
            token: login["accessToken"].as_str().context("token")?.to_owned(),
            tenant: profile["organization"]["id"]
                .as_str()
                .context("id")?
                .parse()?,
            user: profile["user"]["id"].as_str().context("id")?.parse()?,
        })
    }

    fn actor(&self) -> Actor {
        Actor {
            tenant: self.tenant,
            user: self.user,
            role: Role::Owner,
            request: RequestInfo::default(),
        }
    }

    async fn get(&self, client: &reqwest::Client, url: &str, path: &str) -> Result<Value> {
        self.send(client.get(format!("{url}{path}"))).await
    }

    async fn post(&self, client: &reqwest::Client, url: &str, path: &str) -> Result<Value> {
        self.send(client.post(format!("{url}{path}"))).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value> {
        Ok(request
            .bearer_auth(&self.token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    async fn import(&self, client: &reqwest::Client, url: &str, csv: Vec<u8>) -> Result<Value> {
        let response = client
            .post(format!("{url}/contracts/import"))
            .bearer_auth(&self.token)
            .header("content-type", "text/csv")
            .body(csv)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        ensure!(status.is_success(), "import: {status} {body}");
        if status != reqwest::StatusCode::ACCEPTED {
            return Ok(body);
        }
        // A large file runs as a job: the import ends when the job does.
        let job = format!("/jobs/{}", body["id"].as_str().context("the job's id")?);
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let state = self.get(client, url, &job).await?;
            match state["status"].as_str() {
                Some("succeeded") => return Ok(state),
                Some("queued" | "running") => continue,
                _ => bail!("import job: {state}"),
            }
        }
    }
}

/// A valid organisationsnummer for `n` (Luhn check digit).
fn organization_number(n: u32) -> String {
    let base = format!("5569{:05}", 10_000 + n);
    let digits: Vec<u32> = base.chars().filter_map(|c| c.to_digit(10)).collect();
    let check = domain::organization::luhn_check_digit(&digits);
    format!("{}-{}{check}", &base[..6], &base[6..])
}

/// A Swedish Excel register of `n` contracts: semicolons, decimal commas, a spread of
/// lessors, cost centers, terms, frequencies, residual values, rates and terminations.
fn register_csv(n: usize) -> Vec<u8> {
    const LESSORS: [&str; 8] = [
        "Volvofinans Bank AB",
        "Nordea Finans Sverige AB",
        "Handelsbanken Finans AB",
        "SEB Leasing AB",
        "Siemens Financial Services AB",
        "BMW Financial Services",
        "Dell Financial Services",
        "Skåne Leasing AB",
    ];
    const CATEGORIES: [&str; 5] = ["vehicle", "it", "machinery", "property", "other"];
    const FREQUENCIES: [&str; 3] = ["monthly", "quarterly", "yearly"];
    let mut out = String::from(
        "Avtalsnummer;Leasegivare;Beskrivning;Kategori;Kostnadsställe;Startdatum;Slutdatum;Uppsägningsdatum;Betalning per period;Valuta;Betalningsintervall;Betalningstidpunkt;Restvärde;Ränta (%)\n",
    );
    let base = chrono::NaiveDate::from_ymd_opt(2019, 1, 1).unwrap_or_default();
    for i in 0..n {
        // A cheap deterministic spread.
        let h = (i as u64).wrapping_mul(2_654_435_761) % 1_000_003;
        let start = base + chrono::Days::new(h % 2900);
        let months = 24 + (h % 37) as u32;
        let end = start
            .checked_add_months(chrono::Months::new(months))
            .and_then(|d| d.pred_opt())
            .unwrap_or(start);
        let terminated = if h.is_multiple_of(11) {
            start
                .checked_add_months(chrono::Months::new(months / 2))
                .map(|d| d.to_string())
                .unwrap_or_default()
        } else {
            String::new()
        };
        let payment = 1_500 + (h % 40_000);
        let residual = if h.is_multiple_of(3) {
            format!("{},00", payment * 10)
        } else {
            String::new()
        };
        let rate = format!("{},{:02}", 1 + h % 7, h % 100);
        out.push_str(&format!(
            "B-{i:06};{};Objekt {i};{};{};{start};{end};{terminated};{payment},00;SEK;{};{};{residual};{rate}\n",
            LESSORS[(h % 8) as usize],
            CATEGORIES[(h % 5) as usize],
            4100 + h % 50,
            FREQUENCIES[(h % 3) as usize],
            if h.is_multiple_of(2) { "advance" } else { "arrears" },
        ));
    }
    out.into_bytes()
}

async fn all_contracts(table: &dyn Table, tenant: TenantId) -> Result<Vec<Contract>> {
    let query = Query::partition(format!("T#{tenant}"))
        .begins_with("CONTRACT#")
        .limit(1000);
    domain::store::query_all(table, query)
        .await?
        .into_iter()
        .map(|item| Ok(domain::store::from_item::<Contract>(item)?))
        .collect()
}

/// Counts the reads that reach the table.
#[derive(Default)]
struct ReadCounter(AtomicUsize);

#[async_trait]
impl TableHooks for ReadCounter {
    async fn before_read(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl ReadCounter {
    /// The reads `work` makes.
    async fn reads_of<T, E: std::fmt::Display>(
        &self,
        work: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<usize> {
        let before = self.0.load(Ordering::SeqCst);
        work.await.map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(self.0.load(Ordering::SeqCst) - before)
    }
}
