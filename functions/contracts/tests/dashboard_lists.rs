//! The dashboard lists keep entries only near their heads (about `LIST_KEPT` contracts
//! each, within the epoch's cuts: the savings floor, the latest end date of the extended
//! list), yet the dashboard shows the true top ten savings and the true twenty longest
//! overdue contracts through single changes, imports and deletions that drain a list, on
//! the real SQLite table.

use domain::access::Role;
use domain::audit::{Actor, RequestInfo};
use domain::clock::FixedClock;
use domain::contracts::ContractService;
use domain::ids::{ContractId, TenantId, UserId};
use domain::import::ImportRow;
use domain::keys;
use domain::portfolio::{LIST_KEPT, LIST_LENGTH, PortfolioService, TOP_SAVINGS};
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
    extended_until(number, monthly, "2025-12-31")
}

/// An extended contract that ended on `end_date`.
fn extended_until(number: &str, monthly: i64, end_date: &str) -> Value {
    json!({
        "contractNumber": number,
        "lessor": "Volvofinans Bank AB",
        "description": "Volvo XC60",
        "category": "vehicle",
        "startDate": "2019-01-01",
        "endDate": end_date,
        "payment": {"amount": monthly, "currency": "SEK"},
        "paymentFrequency": "monthly",
        "paymentTiming": "advance",
    })
}

/// Distinct end dates from 2020 to 2025 in a scrambled order, so the list's order is
/// not the order of writing.
fn end_date(n: usize) -> String {
    let day = chrono::NaiveDate::from_ymd_opt(2020, 1, 1).unwrap()
        + chrono::Days::new(((n * 7919) % 2003) as u64);
    day.to_string()
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

    /// The contract numbers of the dashboard's extended list, longest overdue first.
    async fn longest_overdue(&self) -> Vec<String> {
        let dashboard = self.portfolio.dashboard(&self.actor).await.unwrap();
        let dashboard = serde_json::to_value(dashboard).unwrap();
        dashboard["extendedContracts"]["contracts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|listed| listed["contractNumber"].as_str().unwrap().to_owned())
            .collect()
    }

    /// How many savings entries are stored, all epochs together.
    async fn savings_entries(&self) -> usize {
        self.entries("#SAV#").await
    }

    /// How many extended-list entries are stored, all epochs together.
    async fn extended_entries(&self) -> usize {
        self.entries("#EXT#").await
    }

    async fn entries(&self, list: &str) -> usize {
        let query = Query::partition(keys::tenant_partition(self.actor.tenant))
            .begins_with(keys::DASHBOARD_PREFIX)
            .limit(1000);
        query_all(self.table.as_ref(), query)
            .await
            .unwrap()
            .iter()
            .filter(|item| item.key.sk.contains(list))
            .count()
    }

    async fn import(&self, rows: &[(String, i64)]) {
        let rows: Vec<Value> = rows
            .iter()
            .map(|(number, monthly)| extended(number, *monthly))
            .collect();
        self.import_contracts(rows).await;
    }

    async fn import_contracts(&self, contracts: Vec<Value>) {
        let rows = contracts
            .into_iter()
            .enumerate()
            .map(|(n, contract)| ImportRow {
                row: n + 2,
                contract: serde_json::from_value(contract).unwrap(),
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
    let count = LIST_KEPT + 40;
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
    assert_eq!(s.savings_entries().await, LIST_KEPT);
    // A new epoch is a new version: changes counted against the old one are fenced off.
    assert_eq!(epoch_version().await, before + 1);
    assert_eq!(s.top().await, expected_top(&register));

    // Take the best away one at a time: the list holds the true top ten while enough
    // remain above the floor, and is rebuilt when too few do.
    for removed in 1..=LIST_KEPT - 5 {
        let best = expected_top(&register)[0].clone();
        s.contracts
            .delete(&s.actor, ids[&best], None)
            .await
            .unwrap();
        register.remove(&best);
        if removed % 15 == 0 || removed > LIST_KEPT - TOP_SAVINGS - 2 {
            assert_eq!(s.top().await, expected_top(&register), "after {removed}");
        }
    }
    // The last rebuild listed the 45 left: fewer than it keeps, so no floor.
    assert_eq!(s.savings_entries().await, count - (LIST_KEPT - 5));
}

#[tokio::test]
async fn an_import_lists_only_the_best_of_its_rows_and_stays_exact() {
    let s = setup();
    s.top().await;
    let count = 3 * LIST_KEPT;
    let rows: Vec<(String, i64)> = (0..count)
        .map(|n| (format!("IMP-{n}"), payment(n)))
        .collect();
    s.import(&rows).await;
    let mut register: HashMap<String, i64> = rows.iter().cloned().collect();
    assert_eq!(s.savings_entries().await, LIST_KEPT);
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

/// The true head of the extended list of `register` (number → end date): longest
/// overdue first, then by contract number (every contract here has its own end date).
fn expected_overdue(register: &HashMap<String, String>) -> Vec<String> {
    let mut ranked: Vec<(&String, &String)> = register.iter().collect();
    ranked.sort_by(|a, b| a.1.cmp(b.1));
    ranked
        .into_iter()
        .take(LIST_LENGTH)
        .map(|(number, _)| number.clone())
        .collect()
}

#[tokio::test]
async fn the_extended_list_keeps_the_longest_overdue_and_rebuilds_when_drained() {
    let s = setup();
    s.longest_overdue().await; // the aggregate exists from here on
    let mut register = HashMap::new();
    let mut ids: HashMap<String, ContractId> = HashMap::new();
    let count = LIST_KEPT + 40;
    for n in 0..count {
        let number = format!("EXT-{n}");
        let input = serde_json::from_value(extended_until(&number, 250_000, &end_date(n)));
        let created = s
            .contracts
            .create(&s.actor, input.unwrap(), None)
            .await
            .unwrap();
        ids.insert(number.clone(), created.contract.id);
        register.insert(number, end_date(n));
    }
    // Without a cut every extended contract is listed.
    assert_eq!(s.extended_entries().await, count);
    assert_eq!(s.longest_overdue().await, expected_overdue(&register));

    let report = s.portfolio.recompute(&s.actor).await.unwrap();
    assert_eq!(report.differences, []);
    assert_eq!(s.extended_entries().await, LIST_KEPT);
    assert_eq!(s.longest_overdue().await, expected_overdue(&register));

    // A contract that ended longer ago than any listed one comes in at the head.
    let oldest = "EXT-OLDEST".to_owned();
    let input = serde_json::from_value(extended_until(&oldest, 250_000, "2019-12-31"));
    let created = s
        .contracts
        .create(&s.actor, input.unwrap(), None)
        .await
        .unwrap();
    ids.insert(oldest.clone(), created.contract.id);
    register.insert(oldest.clone(), "2019-12-31".to_owned());
    assert_eq!(s.longest_overdue().await[0], oldest);

    // Take the longest overdue away one at a time: the dashboard shows the true head
    // while enough remain within the cut, and the list is rebuilt when too few do.
    for removed in 1..=LIST_KEPT - 5 {
        let first = expected_overdue(&register)[0].clone();
        s.contracts
            .delete(&s.actor, ids[&first], None)
            .await
            .unwrap();
        register.remove(&first);
        if removed % 15 == 0 || removed > LIST_KEPT - LIST_LENGTH - 2 {
            assert_eq!(
                s.longest_overdue().await,
                expected_overdue(&register),
                "after {removed}"
            );
        }
    }
    // The last rebuild listed the 46 left: fewer than it keeps, so no cut.
    assert_eq!(register.len(), count + 1 - (LIST_KEPT - 5));
    assert_eq!(s.extended_entries().await, register.len());
}

#[tokio::test]
async fn an_import_lists_only_the_longest_overdue_of_its_rows_and_stays_exact() {
    let s = setup();
    s.longest_overdue().await;
    let count = 3 * LIST_KEPT;
    let register: HashMap<String, String> = (0..count)
        .map(|n| (format!("IMP-{n}"), end_date(n)))
        .collect();
    let rows = register
        .iter()
        .map(|(number, end)| extended_until(number, 250_000, end))
        .collect();
    s.import_contracts(rows).await;
    assert_eq!(s.extended_entries().await, LIST_KEPT);
    assert_eq!(s.longest_overdue().await, expected_overdue(&register));

    // A second file moves the head's end dates to the end of the list and adds
    // contracts that ended in between: the changed ones leave the head, the new ones
    // come in where they belong, nothing else is lost.
    let mut register = register;
    let moved: Vec<(String, String)> = expected_overdue(&register)
        .into_iter()
        .enumerate()
        .map(|(n, number)| (number, format!("2026-01-{:02}", n + 1)))
        .collect();
    let added: Vec<(String, String)> = (0..10)
        .map(|n| (format!("NEW-{n}"), format!("2020-02-{:02}", n + 1)))
        .collect();
    let second: Vec<(String, String)> = moved.iter().chain(&added).cloned().collect();
    let rows = second
        .iter()
        .map(|(number, end)| extended_until(number, 250_000, end))
        .collect();
    s.import_contracts(rows).await;
    register.extend(second);
    assert_eq!(s.longest_overdue().await, expected_overdue(&register));

    let report = s.portfolio.recompute(&s.actor).await.unwrap();
    assert_eq!(report.differences, [], "{report:?}");
    assert_eq!(report.contracts, count + 10);
    assert_eq!(s.longest_overdue().await, expected_overdue(&register));
}
