//! The savings ranking keeps entries only near the top (about `SAVINGS_KEPT` contracts,
//! above the epoch's savings floor), yet the dashboard's top ten stay the true top ten
//! through single changes, imports and deletions that drain the list, on the real SQLite
//! table.

use domain::access::Role;
use domain::audit::{Actor, RequestInfo};
use domain::clock::FixedClock;
use domain::contracts::ContractService;
use domain::ids::{ContractId, TenantId, UserId};
use domain::import::ImportRow;
use domain::keys;
use domain::portfolio::{PortfolioService, SAVINGS_KEPT, TOP_SAVINGS};
use domain::store::{Query, Table, query_all};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

struct Setup {
    table: Arc<dyn Table>,
    contracts: ContractService,
    portfolio: PortfolioService,
    actor: Actor,
    _data: tempfile::TempDir,
}

fn setup() -> Setup {
    let data = tempfile::tempdir().unwrap();
    let table: Arc<dyn Table> =
        Arc::new(adapters::embedded::SqliteTable::open(&data.path().join("t.sqlite3")).unwrap());
    let clock = Arc::new(FixedClock::new("2026-11-21T09:00:00Z".parse().unwrap()));
    Setup {
        contracts: ContractService::new(table.clone(), clock.clone()),
        portfolio: PortfolioService::new(
            table.clone(),
            clock,
            PortfolioService::standard_defaults(),
        ),
        table,
        actor: Actor {
            tenant: TenantId::generate(),
            user: UserId::generate(),
            role: Role::Owner,
            request: RequestInfo::default(),
        },
        _data: data,
    }
}

/// An extended contract (past its end date, not terminated) paying `monthly` öre a
/// month. Without market rates its savings potential is what it pays beyond its term:
/// twelve payments a year, so the ranking is known from the payments alone.
fn extended(number: &str, monthly: i64) -> Value {
    json!({
        "contractNumber": number,
        "lessor": "Volvofinans Bank AB",
        "description": "Volvo XC60",
        "category": "vehicle",
        "startDate": "2022-01-01",
        "endDate": "2025-12-31",
        "payment": {"amount": monthly, "currency": "SEK"},
        "paymentFrequency": "monthly",
        "paymentTiming": "advance",
    })
}

/// Distinct payments in a scrambled order, so the ranking is not the order of writing.
fn payment(n: usize) -> i64 {
    100_000 + ((n * 7919) % 1009) as i64 * 100
}

impl Setup {
    /// The contract numbers of the dashboard's savings ranking, best first.
    async fn top(&self) -> Vec<String> {
        let dashboard = self.portfolio.dashboard(&self.actor).await.unwrap();
        let dashboard = serde_json::to_value(dashboard).unwrap();
        dashboard["savings"]["topContracts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|candidate| {
                candidate["contract"]["contractNumber"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    /// How many savings entries are stored, all epochs together.
    async fn savings_entries(&self) -> usize {
        let query = Query::partition(keys::tenant_partition(self.actor.tenant))
            .begins_with(keys::DASHBOARD_PREFIX)
            .limit(1000);
        query_all(self.table.as_ref(), query)
            .await
            .unwrap()
            .iter()
            .filter(|item| item.key.sk.contains("#SAV#"))
            .count()
    }

    async fn import(&self, rows: &[(String, i64)]) {
        let rows = rows
            .iter()
            .enumerate()
            .map(|(n, (number, monthly))| ImportRow {
                row: n + 2,
                contract: serde_json::from_value(extended(number, *monthly)).unwrap(),
                issues: Vec::new(),
            })
            .collect();
        let report = self
            .contracts
            .import(&self.actor, rows, false)
            .await
            .unwrap();
        assert!(report.problems.is_empty(), "{report:?}");
    }
}

/// The true top ten of `register` (number → monthly payment), best first.
fn expected_top(register: &HashMap<String, i64>) -> Vec<String> {
    let mut ranked: Vec<(&String, &i64)> = register.iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(a.1));
    ranked
        .into_iter()
        .take(TOP_SAVINGS)
        .map(|(number, _)| number.clone())
        .collect()
}

#[tokio::test]
async fn a_rebuild_keeps_the_best_and_deletions_that_drain_the_list_rebuild_it() {
    let s = setup();
    s.top().await; // the aggregate exists from here on
    let mut register = HashMap::new();
    let mut ids: HashMap<String, ContractId> = HashMap::new();
    let count = SAVINGS_KEPT + 40;
    for n in 0..count {
        let number = format!("LC-{n}");
        let input = serde_json::from_value(extended(&number, payment(n))).unwrap();
        let created = s.contracts.create(&s.actor, input, None).await.unwrap();
        ids.insert(number.clone(), created.contract.id);
        register.insert(number, payment(n));
    }
    // Without a floor every contract with a potential is listed.
    assert_eq!(s.savings_entries().await, count);
    assert_eq!(s.top().await, expected_top(&register));

    let epoch_version = || async {
        let key = keys::portfolio_epoch(s.actor.tenant);
        s.table.get(&key).await.unwrap().unwrap().version
    };
    let before = epoch_version().await;
    let report = s.portfolio.recompute(&s.actor).await.unwrap();
    assert_eq!(report.differences, []);
    assert_eq!(s.savings_entries().await, SAVINGS_KEPT);
    // A new epoch is a new version: changes counted against the old one are fenced off.
    assert_eq!(epoch_version().await, before + 1);
    assert_eq!(s.top().await, expected_top(&register));

    // Take the best away one at a time: the list holds the true top ten while enough
    // remain above the floor, and is rebuilt when too few do.
    for removed in 1..=SAVINGS_KEPT - 5 {
        let best = expected_top(&register)[0].clone();
        s.contracts
            .delete(&s.actor, ids[&best], None)
            .await
            .unwrap();
        register.remove(&best);
        if removed % 15 == 0 || removed > SAVINGS_KEPT - TOP_SAVINGS - 2 {
            assert_eq!(s.top().await, expected_top(&register), "after {removed}");
        }
    }
    // The last rebuild listed the 45 left: fewer than it keeps, so no floor.
    assert_eq!(s.savings_entries().await, count - (SAVINGS_KEPT - 5));
}

#[tokio::test]
async fn an_import_lists_only_the_best_of_its_rows_and_stays_exact() {
    let s = setup();
    s.top().await;
    let count = 3 * SAVINGS_KEPT;
    let rows: Vec<(String, i64)> = (0..count)
        .map(|n| (format!("IMP-{n}"), payment(n)))
        .collect();
    s.import(&rows).await;
    let mut register: HashMap<String, i64> = rows.iter().cloned().collect();
    assert_eq!(s.savings_entries().await, SAVINGS_KEPT);
    assert_eq!(s.top().await, expected_top(&register));

    // A second file lowers the ten best to the bottom and adds contracts in between:
    // entries of the changed contracts go, the new best come in, nothing else is lost.
    let lowered: Vec<(String, i64)> = expected_top(&register)
        .into_iter()
        .map(|number| (number, 1_000))
        .collect();
    let added: Vec<(String, i64)> = (0..20)
        .map(|n| (format!("NEW-{n}"), 150_000 + n as i64))
        .collect();
    let second: Vec<(String, i64)> = lowered.iter().chain(&added).cloned().collect();
    s.import(&second).await;
    register.extend(second);
    assert_eq!(s.top().await, expected_top(&register));

    let report = s.portfolio.recompute(&s.actor).await.unwrap();
    assert_eq!(report.differences, [], "{report:?}");
    assert_eq!(report.contracts, count + 20);
    assert_eq!(s.top().await, expected_top(&register));
}
