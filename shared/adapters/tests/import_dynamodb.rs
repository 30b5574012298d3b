//! A CSV-sized import through the domain services on DynamoDB (the real SDK against
//! moto on loopback) and on SQLite: dozens of transactions of up to 100 writes, the
//! dashboard's pending differences and their fold, a recompute that must find nothing
//! to correct, and a second import that must change nothing. Both stores must end with
//! the same dashboard.

mod support;

use adapters::embedded::SqliteTable;
use domain::access::Role;
use domain::audit::{Actor, RequestInfo};
use domain::clock::FixedClock;
use domain::contracts::ContractService;
use domain::ids::{TenantId, UserId};
use domain::import::ImportRow;
use domain::portfolio::PortfolioService;
use domain::store::Table;
use serde_json::{Value, json};
use std::sync::Arc;

/// Enough rows for several transactions and pending differences. Moto copies the
/// whole table for each transaction, so more rows soon take minutes.
const ROWS: usize = 150;

fn row(n: usize) -> ImportRow {
    let lessor = [
        "Volvofinans Bank AB",
        "SEB Leasing AB",
        "Nordea Finans Sverige AB",
    ][n % 3];
    let category = ["vehicle", "it", "machinery"][n % 3];
    let frequency = ["monthly", "quarterly", "yearly"][n % 3];
    let currency = if n.is_multiple_of(4) { "EUR" } else { "SEK" };
    let timing = if n.is_multiple_of(2) {
        "advance"
    } else {
        "arrears"
    };
    let mut contract = json!({
        "contractNumber": format!("DDB-{n:05}"),
        "lessor": lessor,
        "description": format!("Objekt {n}"),
        "category": category,
        "costCenter": format!("41{}0", n % 7),
        "startDate": format!("20{}-0{}-01", 20 + n % 5, 1 + n % 9),
        "endDate": format!("20{}-12-31", 24 + n % 5),
        "payment": {"amount": 250_000 + 1_000 * n, "currency": currency},
        "paymentFrequency": frequency,
        "paymentTiming": timing,
    });
    if !n.is_multiple_of(5) {
        contract["interestRate"] = json!(format!("{}.{}", 3 + n % 4, n % 10));
    }
    if n.is_multiple_of(3) {
        contract["residualValue"] =
            json!({"amount": 1_000_000, "currency": contract["payment"]["currency"]});
    }
    if n.is_multiple_of(11) {
        contract["terminationDate"] = json!("2025-06-30");
    }
    ImportRow {
        row: n + 2,
        contract: serde_json::from_value(contract).expect("a valid contract"),
        issues: Vec::new(),
    }
}

/// The dashboard with the contracts' ids taken out (each store gives its own).
fn without_ids(mut value: Value) -> Value {
    match &mut value {
        Value::Object(map) => {
            map.remove("id");
            for (_, child) in map.iter_mut() {
                *child = without_ids(child.take());
            }
        }
        Value::Array(items) => {
            for child in items.iter_mut() {
                *child = without_ids(child.take());
            }
        }
        _ => {}
    }
    value
}

async fn import_twice(table: Arc<dyn Table>) -> Value {
    let clock = Arc::new(FixedClock::new("2026-11-21T09:00:00Z".parse().unwrap()));
    // One transaction at a time: moto copies the whole table under a transaction and
    // fails (500) when another changes it meanwhile. DynamoDB itself takes them at once.
    let contracts =
        ContractService::new(table.clone(), clock.clone()).with_import_transactions_in_flight(1);
    let portfolio = PortfolioService::new(
        table.clone(),
        clock.clone(),
        PortfolioService::standard_defaults(),
    )
    .with_transactions_in_flight(1);
    let actor = Actor {
        tenant: TenantId::generate(),
        user: UserId::generate(),
        role: Role::Owner,
        request: RequestInfo::default(),
    };
    // An open dashboard: from here on every transaction keeps it.
    portfolio.dashboard(&actor).await.unwrap();

    let rows: Vec<ImportRow> = (0..ROWS).map(row).collect();
    let report = contracts.import(&actor, rows.clone(), false).await.unwrap();
    assert_eq!(report.problems, []);
    assert_eq!((report.created, report.updated), (ROWS, 0));
    let dashboard = portfolio.dashboard(&actor).await.unwrap();
    assert_eq!(dashboard.contracts.total, ROWS as i64);

    let recompute = portfolio.recompute(&actor).await.unwrap();
    assert_eq!(recompute.differences, [], "the maintained figures drifted");
    assert_eq!(recompute.contracts, ROWS);

    let again = contracts.import(&actor, rows, false).await.unwrap();
    assert_eq!(
        (again.created, again.updated, again.unchanged),
        (0, 0, ROWS)
    );
    let after = portfolio.dashboard(&actor).await.unwrap();
    let after = serde_json::to_value(after).unwrap();
    assert_eq!(
        without_ids(serde_json::to_value(dashboard).unwrap()),
        without_ids(after.clone())
    );
    without_ids(after)
}

#[tokio::test]
async fn an_import_on_dynamodb_keeps_the_dashboard_as_on_sqlite() {
    let data = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn Table> =
        Arc::new(SqliteTable::open(&data.path().join("t.sqlite3")).unwrap());
    let dynamodb: Arc<dyn Table> = Arc::new(support::dynamo_table().await);

    let on_sqlite = import_twice(sqlite).await;
    let on_dynamodb = import_twice(dynamodb).await;
    assert_eq!(on_dynamodb, on_sqlite);
    assert_eq!(on_sqlite["contracts"]["total"], ROWS);
}
