//! The facts stored with each contract (its debt series for the dashboard's day), on the
//! real SQLite table: written with every contract change, refreshed by the nightly roll
//! without a new version or audit event, reused by a rebuild only for their own day.

use async_trait::async_trait;
use domain::access::Role;
use domain::audit::{Actor, RequestInfo};
use domain::clock::{Clock, FixedClock};
use domain::contracts::{Contract, ContractService};
use domain::ids::{ContractId, TenantId, UserId};
use domain::keys;
use domain::portfolio::{PortfolioService, RecomputeReport, StoredFacts};
use domain::store::{Condition, Item, Query, StoreError, Table, WriteOp, query_all};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use testkit::{HookedTable, TableHooks};

const CONTRACTS: usize = 12;

struct Setup {
    table: Arc<dyn Table>,
    clock: Arc<FixedClock>,
    contracts: ContractService,
    portfolio: PortfolioService,
    actor: Actor,
    _data: tempfile::TempDir,
}

fn setup() -> Setup {
    let data = tempfile::tempdir().unwrap();
    let table: Arc<dyn Table> =
        Arc::new(adapters::embedded::SqliteTable::open(&data.path().join("t.sqlite3")).unwrap());
    with_table(table, data)
}

fn with_table(table: Arc<dyn Table>, data: tempfile::TempDir) -> Setup {
    let clock = Arc::new(FixedClock::new("2026-11-21T09:00:00Z".parse().unwrap()));
    Setup {
        contracts: ContractService::new(table.clone(), clock.clone()),
        portfolio: PortfolioService::new(
            table.clone(),
            clock.clone(),
            PortfolioService::standard_defaults(),
        ),
        table,
        clock,
        actor: Actor {
            tenant: TenantId::generate(),
            user: UserId::generate(),
            role: Role::Owner,
            request: RequestInfo::default(),
        },
        _data: data,
    }
}

fn new_contract(n: usize) -> Value {
    let frequency = ["monthly", "quarterly", "yearly"][n % 3];
    let lessor = ["Volvofinans Bank AB", "SEB Leasing AB"][n % 2];
    let category = ["vehicle", "it", "machinery"][n % 3];
    let currency = if n.is_multiple_of(4) { "EUR" } else { "SEK" };
    let timing = if n.is_multiple_of(2) {
        "advance"
    } else {
        "arrears"
    };
    let mut body = json!({
        "contractNumber": format!("LC-{n}"),
        "lessor": lessor,
        "description": "Volvo XC60",
        "category": category,
        "costCenter": format!("41{}0", n % 4),
        "startDate": format!("20{}-03-01", 21 + n % 5),
        "endDate": format!("20{}-02-28", 24 + n % 5),
        "payment": {"amount": 100_000 + 1_000 * n, "currency": currency},
        "paymentFrequency": frequency,
        "paymentTiming": timing,
    });
    if !n.is_multiple_of(5) {
        body["interestRate"] = json!(format!("{}.{}", 2 + n % 5, n % 10));
    }
    if n.is_multiple_of(6) {
        body["terminationDate"] = json!("2025-06-30");
    }
    body
}

impl Setup {
    async fn create_all(&self) -> Vec<Contract> {
        let mut created = Vec::new();
        for n in 0..CONTRACTS {
            let input = serde_json::from_value(new_contract(n)).unwrap();
            created.push(
                self.contracts
                    .create(&self.actor, input, None)
                    .await
                    .unwrap()
                    .contract,
            );
        }
        created
    }

    async fn recompute(&self) -> RecomputeReport {
        let report = self.portfolio.recompute(&self.actor).await.unwrap();
        assert_eq!(report.differences, [], "{report:?}");
        assert_eq!(report.contracts, CONTRACTS);
        report
    }

    fn today(&self) -> chrono::NaiveDate {
        self.clock.today()
    }

    async fn next_day(&self) {
        self.clock.advance(chrono::Duration::days(1));
    }

    async fn item(&self, id: ContractId) -> Item {
        self.table
            .get(&keys::contract(self.actor.tenant, id))
            .await
            .unwrap()
            .unwrap()
    }

    async fn contract(&self, id: ContractId) -> Contract {
        self.contracts.get(self.actor.tenant, id).await.unwrap()
    }

    async fn audit_events(&self) -> usize {
        let query = Query::partition(keys::tenant_partition(self.actor.tenant))
            .begins_with(keys::AUDIT_PREFIX)
            .limit(1000);
        query_all(self.table.as_ref(), query).await.unwrap().len()
    }

    async fn change_payment(&self, contract: &Contract) -> Contract {
        let changes = serde_json::from_value(json!({"payment": {
            "amount": contract.payment.amount + 5_000,
            "currency": contract.payment.currency.code(),
        }}))
        .unwrap();
        self.contracts
            .update(&self.actor, contract.id, Some(contract.version), changes)
            .await
            .unwrap()
    }
}

/// The facts stored in a contract's item, as JSON.
fn stored_facts(item: &Item) -> Option<&Value> {
    item.attributes.get("portfolioFacts")
}

fn facts_of(contract: &Contract, day: chrono::NaiveDate) -> Value {
    serde_json::to_value(StoredFacts::of(contract, day)).unwrap()
}

#[tokio::test]
async fn a_rebuild_reuses_the_facts_of_its_day_and_computes_the_rest() {
    let s = setup();
    // Before the first dashboard there is no day to count for: no facts.
    let created = s.create_all().await;
    assert_eq!(stored_facts(&s.item(created[0].id).await), None);
    s.portfolio.dashboard(&s.actor).await.unwrap();
    let report = s.recompute().await;
    assert_eq!((report.facts_reused, report.facts_computed), (0, CONTRACTS));

    // The roll passes by the figures (of today already) but stores the facts, without a
    // new version or audit event.
    let audit = s.audit_events().await;
    assert_eq!(s.portfolio.roll_all().await.unwrap(), 0);
    for contract in &created {
        let item = s.item(contract.id).await;
        assert_eq!(item.version, contract.version);
        assert_eq!(stored_facts(&item), Some(&facts_of(contract, s.today())));
        assert_eq!(&s.contract(contract.id).await, contract);
    }
    assert_eq!(s.audit_events().await, audit);
    let report = s.recompute().await;
    assert_eq!((report.facts_reused, report.facts_computed), (CONTRACTS, 0));

    // A change stores the facts it is counted with.
    let changed = s.change_payment(&created[1]).await;
    let item = s.item(changed.id).await;
    assert_eq!(item.version, 2);
    assert_eq!(stored_facts(&item), Some(&facts_of(&changed, s.today())));
    assert_ne!(stored_facts(&item), Some(&facts_of(&created[1], s.today())));
    let report = s.recompute().await;
    assert_eq!((report.facts_reused, report.facts_computed), (CONTRACTS, 0));

    // A new day: every stored fact is stale until the roll.
    s.next_day().await;
    let report = s.recompute().await;
    assert_eq!((report.facts_reused, report.facts_computed), (0, CONTRACTS));
    assert_eq!(s.portfolio.roll_all().await.unwrap(), 0, "rebuilt already");
    let report = s.recompute().await;
    assert_eq!((report.facts_reused, report.facts_computed), (CONTRACTS, 0));
    // A second run of the roll the same day has nothing to do.
    assert_eq!(s.portfolio.roll_all().await.unwrap(), 0);
}

#[tokio::test]
async fn the_nightly_roll_moves_the_figures_and_the_facts_to_the_new_day() {
    let s = setup();
    s.portfolio.dashboard(&s.actor).await.unwrap();
    let created = s.create_all().await;
    let report = s.recompute().await;
    assert_eq!((report.facts_reused, report.facts_computed), (CONTRACTS, 0));

    s.next_day().await;
    assert_eq!(s.portfolio.roll_all().await.unwrap(), 1);
    let dashboard = s.portfolio.dashboard(&s.actor).await.unwrap();
    assert_eq!(dashboard.as_of, s.today());
    for contract in &created {
        let item = s.item(contract.id).await;
        assert_eq!(item.version, 1);
        assert_eq!(stored_facts(&item), Some(&facts_of(contract, s.today())));
    }

    // A contract changed after the roll carries the facts of its own write.
    let changed = s.change_payment(&created[2]).await;
    assert_eq!(
        stored_facts(&s.item(changed.id).await),
        Some(&facts_of(&changed, s.today()))
    );
    let report = s.recompute().await;
    assert_eq!((report.facts_reused, report.facts_computed), (CONTRACTS, 0));
    assert_eq!(s.portfolio.roll_all().await.unwrap(), 0);
}

/// A user changes a contract just before the roll stores its facts.
struct RaceTheRoll {
    raced: AtomicBool,
    race: OnceLock<(ContractService, Actor)>,
}

#[async_trait]
impl TableHooks for RaceTheRoll {
    async fn before_put(&self, item: &Item, condition: &Condition) {
        let refresh = item.attributes.contains_key("portfolioFacts")
            && matches!(condition, Condition::VersionIs(_));
        if refresh
            && !self.raced.swap(true, Ordering::SeqCst)
            && let Some((contracts, actor)) = self.race.get()
        {
            let id = item.attributes["id"].as_str().unwrap().parse().unwrap();
            let current = contracts.get(actor.tenant, id).await.unwrap();
            let changes = serde_json::from_value(json!({"notes": "changed during the roll",
                "payment": {"amount": current.payment.amount * 2,
                            "currency": current.payment.currency.code()}}))
            .unwrap();
            contracts
                .update(actor, id, Some(current.version), changes)
                .await
                .unwrap();
        }
    }
}

#[tokio::test]
async fn a_change_racing_the_roll_keeps_its_own_version_and_facts() {
    let data = tempfile::tempdir().unwrap();
    let inner: Arc<dyn Table> =
        Arc::new(adapters::embedded::SqliteTable::open(&data.path().join("t.sqlite3")).unwrap());
    let racing = Arc::new(HookedTable {
        inner: inner.clone(),
        hooks: RaceTheRoll {
            raced: AtomicBool::new(false),
            race: OnceLock::new(),
        },
    });
    let s = with_table(racing.clone(), data);
    s.portfolio.dashboard(&s.actor).await.unwrap();
    s.create_all().await;
    s.next_day().await;
    let _ = racing.hooks.race.set((
        ContractService::new(inner.clone(), s.clock.clone() as Arc<dyn Clock>),
        s.actor.clone(),
    ));

    assert_eq!(s.portfolio.roll_all().await.unwrap(), 1);
    assert!(racing.hooks.raced.load(Ordering::SeqCst));
    let all = query_all(
        inner.as_ref(),
        Query::partition(keys::tenant_partition(s.actor.tenant))
            .begins_with(keys::CONTRACT_PREFIX)
            .limit(100),
    )
    .await
    .unwrap();
    let mut changed = 0;
    for item in all {
        let contract: Contract = domain::store::from_item(item.clone()).unwrap();
        let version = item.version;
        if contract.notes.is_some() {
            // The user's change stands, with the facts of its own write.
            changed += 1;
            assert_eq!(version, 2);
        } else {
            assert_eq!(version, 1);
        }
        assert_eq!(stored_facts(&item), Some(&facts_of(&contract, s.today())));
    }
    assert_eq!(changed, 1);
    let report = s.recompute().await;
    assert_eq!((report.facts_reused, report.facts_computed), (CONTRACTS, 0));
}

/// The first transactions are cancelled without a failed condition, as DynamoDB cancels
/// one that meets another on the same item (`TransactionConflict`).
struct Conflicts {
    left: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl TableHooks for Conflicts {
    async fn before_transaction(&self, _: &[WriteOp]) -> Result<(), StoreError> {
        let conflicted = self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok();
        if conflicted {
            return Err(StoreError::TransactionCanceled { failed: Vec::new() });
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_change_that_meets_a_concurrent_transaction_is_tried_again() {
    let data = tempfile::tempdir().unwrap();
    let inner: Arc<dyn Table> =
        Arc::new(adapters::embedded::SqliteTable::open(&data.path().join("t.sqlite3")).unwrap());
    let conflicting = Arc::new(HookedTable {
        inner,
        hooks: Conflicts {
            left: std::sync::atomic::AtomicUsize::new(0),
        },
    });
    let s = with_table(conflicting.clone(), data);
    s.portfolio.dashboard(&s.actor).await.unwrap();

    // Three conflicts in a row: the fourth attempt lands, once.
    conflicting.hooks.left.store(3, Ordering::SeqCst);
    let input = serde_json::from_value(new_contract(1)).unwrap();
    let created = s.contracts.create(&s.actor, input, None).await.unwrap();
    assert_eq!(conflicting.hooks.left.load(Ordering::SeqCst), 0);
    assert_eq!(s.contract(created.contract.id).await, created.contract);
    let report = s.portfolio.recompute(&s.actor).await.unwrap();
    assert_eq!(report.differences, [], "{report:?}");
    assert_eq!(report.contracts, 1);

    // A conflict that does not clear is reported, and nothing is written.
    conflicting.hooks.left.store(usize::MAX, Ordering::SeqCst);
    let input = serde_json::from_value(new_contract(2)).unwrap();
    assert!(s.contracts.create(&s.actor, input, None).await.is_err());
    conflicting.hooks.left.store(0, Ordering::SeqCst);
    let report = s.portfolio.recompute(&s.actor).await.unwrap();
    assert_eq!(report.contracts, 1);
}
