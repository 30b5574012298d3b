//! The portfolio dashboard: what an organization owes on its leases and how that moves,
//! its average rate, statuses, extended and ending contracts, breakdowns, savings
//! potential and tips, read in a constant number of store reads however many contracts
//! there are.
//!
//! # How the figures are kept
//!
//! Everything on the dashboard depends on the day, so the aggregate is kept *as of* one
//! day, its **epoch** (`PORTFOLIO`): the day, an id, and the market rate of that day.
//!
//! - **Totals** (`PORTFOLIO#TOTALS`) are integer counters in minor units, each the sum
//!   over contracts of what the contract adds on the epoch's day ([`Facts`]): counts by
//!   status, the leasing debt on the day and on the same day of each of the 12 months
//!   before and after it, the debt at each interest rate, yearly payments by status, and
//!   per category, lessor and cost center. Each contract's debt is rounded to its
//!   currency's minor unit before it is added, so the total is the sum of the debts the
//!   export shows.
//! - **Lists** (`DASH#<epoch>#EXT#…`, `DASH#<epoch>#SAV#…`) hold one small entry per
//!   extended contract (longest overdue first) and per contract with a savings potential
//!   (largest first, at the epoch's market rate), so a dashboard reads only their heads.
//!
//! Every contract change adds its own difference in the same transaction: an atomic
//! increment of the totals, so concurrent writers do not contend, and puts and deletes
//! of its list entries, guarded by a check that the epoch has not moved meanwhile.
//! [`PortfolioService::rebuild`] recomputes all of it from the contracts for a new day
//! (nightly, or on the first read of a day the nightly roll has not reached yet) and for
//! `POST /portfolio/recompute`, under a fresh epoch id; it commits only if no contract
//! changed while it read, which every change proves by bumping the totals' version.
//!
//! An import writes thousands of contracts. Its transactions each put their difference
//! as a **pending** item (`PORTFOLIO#PENDING#<id>`) instead of updating the totals, and
//! bump `PORTFOLIO#SEQUENCE`, which a rebuild checks; the import folds the pending items
//! into the totals every few hundred transactions and at its end. A dashboard adds any
//! pending items it finds (they come with the same query), so its figures never lag.
//!
//! Past and projected values use each contract's current terms: a contract repriced last
//! month shows its new rate in the history too.

use crate::access::{Permission, Role};
use crate::audit::{Actor, AuditEvent};
use crate::clock::Clock;
use crate::contracts::{Category, Contract, ContractStatus, PaymentFrequency};
use crate::ids::{ContractId, TenantId};
use crate::input::Field;
use crate::keys;
use crate::money::{AnnualRate, Currency, Money};
use crate::rates::{RateService, RatesError, SeriesId, Source};
use crate::schedule;
use crate::store::{
    Attributes, Condition, Index, Item, Key, MAX_TRANSACTION_OPS, Query, StoreError, Table, Update,
    WriteOp, from_item, query_all, to_attributes,
};
use crate::validation::{FieldIssue, ValidationErrors};
use chrono::{DateTime, Days, Months, NaiveDate, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Months of history and of projection in the leasing-debt series.
pub const SERIES_MONTHS: i32 = 12;
/// How many contracts each dashboard list shows.
pub const LIST_LENGTH: usize = 20;
/// How many contracts the savings ranking shows.
pub const TOP_SAVINGS: usize = 10;
/// A contract paying at least this many points above market earns a tip.
const TIP_POINTS_ABOVE_MARKET: Decimal = Decimal::ONE;
/// Lists are written this many entries to a transaction.
const ENTRY_BATCH: usize = 100;

const EXTENDED_LIST: &str = "EXT";
const SAVINGS_LIST: &str = "SAV";

/// The organization's choices for its dashboard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortfolioSettings {
    /// Every total is converted into this currency.
    #[schema(value_type = String, example = "SEK")]
    pub reporting_currency: Currency,
    /// What "the market" costs, for the savings potential.
    pub benchmark: Benchmark,
}

/// The market rate a contract is compared with: a reference series plus a margin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Benchmark {
    #[schema(value_type = String, example = "SEDP3MSTIBORDELAYC")]
    pub series: SeriesId,
    /// Percentage points over the series, as a decimal string.
    #[schema(value_type = String, example = "1.5")]
    pub margin: AnnualRate,
}

/// Changes to the settings; an absent field stays as it is.
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct SettingsChanges {
    #[schema(value_type = Option<String>, example = "SEK")]
    pub reporting_currency: Field<String>,
    #[schema(value_type = Option<String>, example = "SEDP3MSTIBORDELAYC")]
    pub benchmark_series: Field<String>,
    #[schema(value_type = Option<String>, example = "1.5")]
    pub benchmark_margin: Field<String>,
}

/// The aggregate's day.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Epoch {
    id: String,
    as_of: NaiveDate,
    /// The benchmark's value on `as_of` plus its margin; orders the savings list.
    #[serde(default, with = "rust_decimal::serde::str_option")]
    market_rate: Option<Decimal>,
    built_at: DateTime<Utc>,
}

/// Integer counters by name; see [`counter`] for the names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals(BTreeMap<String, i64>);

impl Totals {
    fn add(&mut self, name: String, value: i64) {
        if value != 0 {
            *self.0.entry(name).or_default() += value;
        }
    }

    fn merge(&mut self, other: &Totals, sign: i64) {
        for (name, value) in &other.0 {
            // Most names are there already: no new key to allocate.
            match self.0.get_mut(name) {
                Some(total) => *total += value * sign,
                None => self.add(name.clone(), value * sign),
            }
        }
    }

    fn get(&self, name: &str) -> i64 {
        self.0.get(name).copied().unwrap_or(0)
    }

    fn from_attributes(attributes: &Attributes) -> Self {
        Self(
            attributes
                .iter()
                .filter_map(|(name, value)| Some((name.clone(), value.as_i64()?)))
                .filter(|(_, value)| *value != 0)
                .collect(),
        )
    }

    fn to_attributes(&self) -> Attributes {
        self.0
            .iter()
            .map(|(name, value)| (name.clone(), serde_json::Value::from(*value)))
            .collect()
    }
}

/// Counter names. `|` separates the parts; a free-text part (lessor, cost center) has
/// `%` and `|` escaped so the name splits back unambiguously.
mod counter {
    use super::*;

    pub fn status(status: ContractStatus) -> String {
        format!("count|{}", status.as_str())
    }

    pub const WITHOUT_RATE: &str = "count|withoutRate";

    /// Debt on the day `offset` months from the epoch's day.
    pub fn debt(currency: Currency, offset: i32) -> String {
        format!("debt|{currency}|{offset}")
    }

    /// Today's debt of the contracts at `rate` percent.
    pub fn debt_at_rate(currency: Currency, rate: Decimal) -> String {
        format!("rate|{currency}|{}", rate.normalize())
    }

    /// Yearly payments of the contracts in `status`.
    pub fn cost(currency: Currency, status: ContractStatus) -> String {
        format!("cost|{currency}|{}", status.as_str())
    }

    pub fn group_count(dimension: &str, value: &str) -> String {
        format!("{dimension}|{}|count", escape(value))
    }

    pub fn group_debt(dimension: &str, value: &str, currency: Currency) -> String {
        format!("{dimension}|{}|debt|{currency}", escape(value))
    }

    pub fn group_cost(dimension: &str, value: &str, currency: Currency) -> String {
        format!("{dimension}|{}|cost|{currency}", escape(value))
    }

    fn escape(value: &str) -> String {
        value.replace('%', "%25").replace('|', "%7C")
    }

    pub fn unescape(value: &str) -> String {
        value.replace("%7C", "|").replace("%25", "%")
    }
}

/// The days of the debt series: the epoch's day shifted by −12 … +12 months.
pub fn series_days(as_of: NaiveDate) -> Vec<NaiveDate> {
    (-SERIES_MONTHS..=SERIES_MONTHS)
        .map(|offset| shift_months(as_of, offset))
        .collect()
}

fn shift_months(day: NaiveDate, offset: i32) -> NaiveDate {
    let months = Months::new(offset.unsigned_abs());
    let shifted = if offset < 0 {
        day.checked_sub_months(months)
    } else {
        day.checked_add_months(months)
    };
    shifted.unwrap_or(day)
}

fn payments_per_year(frequency: PaymentFrequency) -> i64 {
    match frequency {
        PaymentFrequency::Monthly => 12,
        PaymentFrequency::Quarterly => 4,
        PaymentFrequency::Yearly => 1,
    }
}

/// What one contract adds to the portfolio on one day.
#[derive(Clone, Debug)]
pub struct Facts {
    contract: ContractId,
    status: ContractStatus,
    currency: Currency,
    /// Debt in minor units on each day of [`series_days`]; `None` when the contract has
    /// no rate to discount with.
    debts: Option<Vec<i64>>,
    rate: Option<Decimal>,
    payments_per_year: i64,
    category: Category,
    lessor: String,
    cost_center: String,
    summary: ContractSummary,
}

impl Facts {
    pub fn of(contract: &Contract, as_of: NaiveDate) -> Self {
        let currency = contract.payment.currency;
        let days = series_days(as_of);
        let debts = schedule::debts_on(contract, &days).ok().and_then(|debts| {
            debts
                .into_iter()
                .map(|debt| schedule::to_minor_units(debt, currency))
                .collect::<Option<Vec<i64>>>()
        });
        let status = contract.status_on(as_of);
        let payments_per_year = contract
            .payment
            .amount
            .saturating_mul(payments_per_year(contract.payment_frequency));
        let debt_today = debts.as_ref().map(|d| d[SERIES_MONTHS as usize]);
        let rate = contract
            .current_rate
            .or(contract.interest_rate)
            .map(|rate| rate.percent());
        let summary = ContractSummary {
            id: contract.id,
            contract_number: contract.contract_number.clone(),
            lessor: contract.lessor.clone(),
            description: contract.description.clone(),
            status,
            end_date: contract.end_date,
            currency,
            payments_per_year,
            leasing_debt: debt_today,
            interest_rate: rate,
        };
        Self {
            contract: contract.id,
            status,
            currency,
            debts,
            rate,
            payments_per_year,
            category: contract.category,
            lessor: contract.lessor.trim().to_owned(),
            cost_center: contract.cost_center.clone().unwrap_or_default(),
            summary,
        }
    }

    fn live(&self) -> bool {
        self.status != ContractStatus::Terminated
    }

    fn debt_today(&self) -> i64 {
        self.summary.leasing_debt.unwrap_or(0)
    }

    pub fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        let k = self.currency;
        totals.add(counter::status(self.status), 1);
        // A contract terminated since still counts in the debt of the months before.
        if let Some(debts) = &self.debts {
            for (offset, debt) in (-SERIES_MONTHS..=SERIES_MONTHS).zip(debts) {
                totals.add(counter::debt(k, offset), *debt);
            }
        }
        if !self.live() {
            return totals;
        }
        match (&self.debts, self.rate) {
            (Some(_), Some(rate)) => {
                totals.add(counter::debt_at_rate(k, rate), self.debt_today());
            }
            (Some(_), None) => {}
            (None, _) => totals.add(counter::WITHOUT_RATE.to_owned(), 1),
        }
        totals.add(counter::cost(k, self.status), self.payments_per_year);
        for (dimension, value) in [
            ("category", self.category.as_str().to_owned()),
            ("lessor", self.lessor.clone()),
            ("costCenter", self.cost_center.clone()),
        ] {
            totals.add(counter::group_count(dimension, &value), 1);
            totals.add(counter::group_debt(dimension, &value, k), self.debt_today());
            totals.add(
                counter::group_cost(dimension, &value, k),
                self.payments_per_year,
            );
        }
        totals
    }

    /// The contract's entries in the dashboard lists: `(list, rank)`.
    fn entries(&self, market: Option<Decimal>) -> Vec<(&'static str, String)> {
        let mut entries = Vec::new();
        if self.status == ContractStatus::Extended {
            entries.push((EXTENDED_LIST, self.summary.end_date.to_string()));
        }
        let total = self.summary.potential(market).total();
        if total > 0 {
            // Largest first in sort-key order.
            entries.push((SAVINGS_LIST, format!("{:020}", i64::MAX - total)));
        }
        entries
    }
}

/// What a contract could save a year, in its own minor units.
struct Potential {
    /// Its rate minus the market's, in percentage points (when both are known).
    points: Option<Decimal>,
    /// Interest above the market on today's debt.
    above_market: i64,
    /// The payments of an extended contract.
    extension: i64,
}

/// `value` rounded to whole minor units, half away from zero.
fn whole(value: Decimal) -> i64 {
    i64::try_from(value.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero))
        .unwrap_or(i64::MAX)
}

/// A yearly amount per month, rounded to whole minor units.
fn per_month(yearly: i64) -> i64 {
    whole(Decimal::from(yearly) / Decimal::from(12))
}

impl Potential {
    fn total(&self) -> i64 {
        self.above_market.saturating_add(self.extension)
    }
}

/// A contract as the dashboard lists it; amounts in its own currency.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContractSummary {
    id: ContractId,
    contract_number: String,
    lessor: String,
    description: String,
    status: ContractStatus,
    end_date: NaiveDate,
    currency: Currency,
    payments_per_year: i64,
    leasing_debt: Option<i64>,
    #[serde(default, with = "rust_decimal::serde::str_option")]
    interest_rate: Option<Decimal>,
}

/// How a transaction moves the totals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TotalsWrite {
    /// Atomic increments of the totals: for a change or two, however many writers.
    Increment,
    /// A pending difference of its own, folded in later by
    /// [`PortfolioService::fold_pending`]: for an import's many batches, so none rewrites
    /// the totals or meets the limit of counters one update may carry.
    Pending,
}

impl ContractSummary {
    /// The yearly saving at `market` percent: interest above the market on today's
    /// debt (for a contract not terminated), plus the payments of an extended contract.
    fn potential(&self, market: Option<Decimal>) -> Potential {
        let points = match (market, self.interest_rate) {
            (Some(market), Some(rate)) if self.status != ContractStatus::Terminated => {
                Some(rate - market)
            }
            _ => None,
        };
        let above_market = match points {
            Some(points) if points > Decimal::ZERO => {
                whole(Decimal::from(self.leasing_debt.unwrap_or(0)) * points / Decimal::ONE_HUNDRED)
            }
            _ => 0,
        };
        let extension = if self.status == ContractStatus::Extended {
            self.payments_per_year
        } else {
            0
        };
        Potential {
            points,
            above_market,
            extension,
        }
    }
}

/// The portfolio's share of contract changes: prepared before a contract transaction
/// and added to it.
pub struct Ledger {
    epoch: Option<(Epoch, u64)>,
}

impl Ledger {
    /// Reads the epoch the changes will be counted in.
    pub async fn load(table: &dyn Table, tenant: TenantId) -> Result<Self, StoreError> {
        let epoch = match table.get(&keys::portfolio_epoch(tenant)).await? {
            Some(item) => {
                let version = item.version;
                Some((from_item::<Epoch>(item)?, version))
            }
            None => None,
        };
        Ok(Self { epoch })
    }

    /// The writes that move the aggregate by `changes` (each a contract before and after;
    /// `None` for one that did not or no longer exists). Before the first dashboard there
    /// is no aggregate: the writes then only fence a first build running meanwhile.
    pub fn ops(
        &self,
        tenant: TenantId,
        changes: &[(Option<&Contract>, Option<&Contract>)],
        totals: TotalsWrite,
    ) -> Result<Vec<WriteOp>, StoreError> {
        let Some((epoch, version)) = &self.epoch else {
            return Ok(vec![
                WriteOp::Check {
                    key: keys::portfolio_epoch(tenant),
                    condition: Condition::NotExists,
                },
                WriteOp::Update(Update::new(keys::portfolio_totals(tenant))),
            ]);
        };
        let mut delta = Totals::default();
        let mut removed: BTreeMap<Key, ()> = BTreeMap::new();
        let mut added: Vec<Item> = Vec::new();
        for (before, after) in changes {
            if let Some(before) = before {
                let facts = Facts::of(before, epoch.as_of);
                delta.merge(&facts.totals(), -1);
                for (list, rank) in facts.entries(epoch.market_rate) {
                    removed.insert(
                        keys::dashboard_entry(tenant, &epoch.id, list, &rank, facts.contract),
                        (),
                    );
                }
            }
            if let Some(after) = after {
                let facts = Facts::of(after, epoch.as_of);
                delta.merge(&facts.totals(), 1);
                for (list, rank) in facts.entries(epoch.market_rate) {
                    let key = keys::dashboard_entry(tenant, &epoch.id, list, &rank, facts.contract);
                    removed.remove(&key);
                    added.push(Item::new(key, to_attributes(&facts.summary)?));
                }
            }
        }
        let mut ops = vec![WriteOp::Check {
            key: keys::portfolio_epoch(tenant),
            condition: Condition::VersionIs(*version),
        }];
        match totals {
            TotalsWrite::Increment => {
                let mut update = Update::new(keys::portfolio_totals(tenant));
                update.increment = delta.0.into_iter().collect();
                ops.push(WriteOp::Update(update));
            }
            TotalsWrite::Pending => {
                let id = uuid::Uuid::now_v7().simple().to_string();
                ops.push(WriteOp::Put {
                    item: Item::new(keys::portfolio_pending(tenant, &id), delta.to_attributes()),
                    condition: Condition::NotExists,
                });
                ops.push(WriteOp::Update(Update::new(keys::portfolio_sequence(
                    tenant,
                ))));
            }
        }
        ops.extend(removed.into_keys().map(|key| WriteOp::Delete {
            key,
            condition: Condition::None,
        }));
        ops.extend(added.into_iter().map(|item| WriteOp::Put {
            item,
            condition: Condition::None,
        }));
        Ok(ops)
    }
}

/// Commits `ops` with the portfolio's share of `changes`, again with a fresh ledger when
/// the aggregate moved to a new epoch in between. Errors of `ops` themselves come back
/// as the store reported them.
pub async fn commit_with_portfolio(
    table: &dyn Table,
    tenant: TenantId,
    ops: Vec<WriteOp>,
    changes: &[(Option<&Contract>, Option<&Contract>)],
    totals: TotalsWrite,
) -> Result<(), StoreError> {
    let own = ops.len();
    for _ in 0..5 {
        let ledger = Ledger::load(table, tenant).await?;
        let mut all = ops.clone();
        all.extend(ledger.ops(tenant, changes, totals)?);
        match table.transact_write(all).await {
            Err(StoreError::TransactionCanceled { failed })
                if !failed.is_empty() && failed.iter().all(|&index| index >= own) =>
            {
                continue;
            }
            other => return other,
        }
    }
    Err(StoreError::TransactionCanceled { failed: Vec::new() })
}

#[derive(Debug, thiserror::Error)]
pub enum PortfolioError {
    #[error("the role {0} may not do this")]
    Forbidden(Role),
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
    #[error("the portfolio kept changing while it was rebuilt")]
    Contention,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<RatesError> for PortfolioError {
    fn from(error: RatesError) -> Self {
        match error {
            RatesError::Store(store) => PortfolioError::Store(store),
            other => PortfolioError::Store(StoreError::Unavailable(other.to_string())),
        }
    }
}

/// What a rebuild found.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecomputeReport {
    pub as_of: NaiveDate,
    /// The day the replaced aggregate was as of; differences are reported only when it
    /// is the same day.
    pub previous_as_of: Option<NaiveDate>,
    pub contracts: usize,
    /// Counters whose maintained value differed from the recomputed one.
    pub differences: Vec<Difference>,
    /// Time spent computing the figures, store reads and writes aside.
    pub computation_micros: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Difference {
    pub counter: String,
    pub maintained: i64,
    pub recomputed: i64,
}

/// The aggregate as stored.
struct Stored {
    epoch: Option<(Epoch, u64)>,
    totals: Option<(Totals, u64)>,
    settings: Option<PortfolioSettings>,
    /// Differences imports wrote and have not folded into the totals yet.
    pending: Vec<(Key, Totals)>,
    sequence: Option<u64>,
}

impl Stored {
    /// The totals with every pending difference added: the figures as they are.
    fn current_totals(&self) -> Option<Totals> {
        let (totals, _) = self.totals.as_ref()?;
        let mut current = totals.clone();
        for (_, pending) in &self.pending {
            current.merge(pending, 1);
        }
        Some(current)
    }
}

pub struct PortfolioService {
    table: Arc<dyn Table>,
    clock: Arc<dyn Clock>,
    rates: RateService,
    defaults: PortfolioSettings,
}

impl PortfolioService {
    pub fn new(table: Arc<dyn Table>, clock: Arc<dyn Clock>, defaults: PortfolioSettings) -> Self {
        let rates = RateService::new(table.clone(), clock.clone(), Vec::new());
        Self {
            table,
            clock,
            rates,
            defaults,
        }
    }

    /// The built-in defaults: SEK, and the delayed 3-month STIBOR plus 1.5 points.
    pub fn standard_defaults() -> PortfolioSettings {
        PortfolioSettings {
            reporting_currency: Currency::parse("SEK").unwrap_or_else(|_| unreachable!()),
            benchmark: Benchmark {
                series: SeriesId::parse("SEDP3MSTIBORDELAYC").unwrap_or_else(|_| unreachable!()),
                margin: AnnualRate::from_percent(Decimal::new(15, 1)),
            },
        }
    }

    async fn read(&self, tenant: TenantId) -> Result<Stored, StoreError> {
        read_stored(self.table.as_ref(), tenant).await
    }

    /// Folds the differences imports left pending into the totals.
    pub async fn fold_pending(&self, tenant: TenantId) -> Result<(), PortfolioError> {
        fold_pending(self.table.as_ref(), tenant).await
    }
}

/// The aggregate as stored: epoch, totals, settings and pending differences.
async fn read_stored(table: &dyn Table, tenant: TenantId) -> Result<Stored, StoreError> {
    // One page unless an import is writing right now.
    let query = Query::partition(keys::tenant_partition(tenant))
        .begins_with(keys::PORTFOLIO_PREFIX)
        .limit(100);
    let mut stored = Stored {
        epoch: None,
        totals: None,
        settings: None,
        pending: Vec::new(),
        sequence: None,
    };
    for item in query_all(table, query).await? {
        let version = item.version;
        if item.key == keys::portfolio_epoch(tenant) {
            stored.epoch = Some((from_item(item)?, version));
        } else if item.key == keys::portfolio_totals(tenant) {
            stored.totals = Some((Totals::from_attributes(&item.attributes), version));
        } else if item.key == keys::portfolio_settings(tenant) {
            stored.settings = Some(from_item(item)?);
        } else if item.key == keys::portfolio_sequence(tenant) {
            stored.sequence = Some(version);
        } else {
            let totals = Totals::from_attributes(&item.attributes);
            stored.pending.push((item.key, totals));
        }
    }
    Ok(stored)
}

/// Folds the differences imports left pending into the totals, a transaction at a
/// time; a racing change makes it read again.
pub async fn fold_pending(table: &dyn Table, tenant: TenantId) -> Result<(), PortfolioError> {
    let pending_prefix = keys::portfolio_pending(tenant, "").sk;
    let mut conflicts = 0;
    loop {
        let page = table
            .query(
                Query::partition(keys::tenant_partition(tenant))
                    .begins_with(pending_prefix.clone())
                    .limit(MAX_TRANSACTION_OPS - 1),
            )
            .await?;
        if page.items.is_empty() {
            return Ok(());
        }
        let Some(item) = table.get(&keys::portfolio_totals(tenant)).await? else {
            return Err(PortfolioError::Contention);
        };
        let version = item.version;
        let mut folded = Totals::from_attributes(&item.attributes);
        let mut ops = Vec::with_capacity(page.items.len() + 1);
        for pending in page.items {
            folded.merge(&Totals::from_attributes(&pending.attributes), 1);
            ops.push(WriteOp::Delete {
                key: pending.key,
                condition: Condition::Exists,
            });
        }
        ops.push(WriteOp::Put {
            item: Item::new(keys::portfolio_totals(tenant), folded.to_attributes()),
            condition: Condition::VersionIs(version),
        });
        match table.transact_write(ops).await {
            Ok(()) => conflicts = 0,
            // A change to the totals, or another fold, came first: read again.
            Err(StoreError::TransactionCanceled { .. }) if conflicts < 20 => conflicts += 1,
            Err(StoreError::TransactionCanceled { .. }) => return Err(PortfolioError::Contention),
            Err(other) => return Err(other.into()),
        }
    }
}

impl PortfolioService {
    pub async fn settings(&self, tenant: TenantId) -> Result<PortfolioSettings, PortfolioError> {
        Ok(self
            .read(tenant)
            .await?
            .settings
            .unwrap_or_else(|| self.defaults.clone()))
    }

    /// Changes the settings (owners and admins) and rebuilds the figures with them.
    pub async fn update_settings(
        &self,
        actor: &Actor,
        changes: SettingsChanges,
    ) -> Result<PortfolioSettings, PortfolioError> {
        require(actor, Permission::AdministerPortfolio)?;
        let current = self.settings(actor.tenant).await?;
        let mut errors = ValidationErrors::new();
        let e = &mut errors;
        let reporting_currency = changes.reporting_currency.patch_required(
            e,
            "/reportingCurrency",
            current.reporting_currency,
            |code| Currency::parse(&code),
        );
        let series = changes.benchmark_series.patch_required(
            e,
            "/benchmarkSeries",
            current.benchmark.series.clone(),
            |text| SeriesId::parse(&text),
        );
        let margin = changes.benchmark_margin.patch_required(
            e,
            "/benchmarkMargin",
            current.benchmark.margin,
            |text| AnnualRate::parse(&text),
        );
        if let Some(series) = &series {
            let known = crate::rates::service::series_info(self.table.as_ref(), series).await?;
            if !known.is_some_and(|info| info.kind == crate::rates::SeriesKind::InterestRate) {
                errors.add("/benchmarkSeries", FieldIssue::UnknownSeries);
            }
        }
        let (Some(reporting_currency), Some(series), Some(margin)) =
            (reporting_currency, series, margin)
        else {
            return Err(errors.into());
        };
        if !errors.is_empty() {
            return Err(errors.into());
        }
        let settings = PortfolioSettings {
            reporting_currency,
            benchmark: Benchmark { series, margin },
        };
        let audit = AuditEvent::change(
            actor,
            self.clock.now(),
            "portfolio.settings.updated",
            format!("organization:{}", actor.tenant),
            serde_json::to_value(&current).ok(),
            serde_json::to_value(&settings).ok(),
        );
        self.table
            .transact_write(vec![
                WriteOp::Put {
                    item: Item::new(
                        keys::portfolio_settings(actor.tenant),
                        to_attributes(&settings)?,
                    ),
                    condition: Condition::None,
                },
                audit.write_op(),
            ])
            .await?;
        // The savings ranking depends on the benchmark.
        self.rebuild(actor.tenant).await?;
        Ok(settings)
    }

    /// Rebuilds the aggregate from the contracts (owners and admins) and reports where
    /// the maintained figures differed. Audited.
    pub async fn recompute(&self, actor: &Actor) -> Result<RecomputeReport, PortfolioError> {
        require(actor, Permission::AdministerPortfolio)?;
        let report = self.rebuild(actor.tenant).await?;
        let audit = AuditEvent::change(
            actor,
            self.clock.now(),
            "portfolio.recomputed",
            format!("organization:{}", actor.tenant),
            None,
            Some(serde_json::json!({
                "asOf": report.as_of,
                "contracts": report.contracts,
                "differences": report.differences.len(),
            })),
        );
        self.table.transact_write(vec![audit.write_op()]).await?;
        Ok(report)
    }

    /// The market rate on `day`: the benchmark's last value on or before it plus the margin.
    async fn market_rate(
        &self,
        benchmark: &Benchmark,
        day: NaiveDate,
    ) -> Result<Option<(Decimal, Decimal, NaiveDate)>, PortfolioError> {
        let observation = self
            .rates
            .observation_on_or_before(&benchmark.series, day)
            .await?;
        Ok(observation.map(|observation| {
            (
                observation.value + benchmark.margin.percent(),
                observation.value,
                observation.date,
            )
        }))
    }

    /// Recomputes the aggregate as of today from every contract, under a new epoch.
    pub async fn rebuild(&self, tenant: TenantId) -> Result<RecomputeReport, PortfolioError> {
        for _ in 0..5 {
            let stored = self.read(tenant).await?;
            if stored.pending.len() > MAX_TRANSACTION_OPS - 4 {
                self.fold_pending(tenant).await?;
                continue;
            }
            let settings = stored
                .settings
                .clone()
                .unwrap_or_else(|| self.defaults.clone());
            let as_of = self.clock.today();
            let market = self
                .market_rate(&settings.benchmark, as_of)
                .await?
                .map(|(rate, _, _)| rate);
            let contracts = self.all_contracts(tenant).await?;

            let started = Instant::now();
            let (totals, entries) = tally(&contracts, as_of, market);
            let computation = started.elapsed();

            let epoch = Epoch {
                id: uuid::Uuid::now_v7().simple().to_string(),
                as_of,
                market_rate: market,
                built_at: self.clock.now(),
            };
            let mut puts = Vec::with_capacity(entries.len());
            for (list, rank, contract, summary) in entries {
                puts.push(WriteOp::Put {
                    item: Item::new(
                        keys::dashboard_entry(tenant, &epoch.id, list, &rank, contract),
                        to_attributes(&summary)?,
                    ),
                    condition: Condition::None,
                });
            }
            self.write_in_batches(puts).await?;

            let flip = vec![
                WriteOp::Put {
                    item: Item::new(keys::portfolio_epoch(tenant), to_attributes(&epoch)?),
                    condition: match &stored.epoch {
                        Some((_, version)) => Condition::VersionIs(*version),
                        None => Condition::NotExists,
                    },
                },
                WriteOp::Put {
                    item: Item::new(keys::portfolio_totals(tenant), totals.to_attributes()),
                    condition: match &stored.totals {
                        Some((_, version)) => Condition::VersionIs(*version),
                        None => Condition::NotExists,
                    },
                },
                WriteOp::Put {
                    item: Item::new(keys::portfolio_registration(tenant), Attributes::new()),
                    condition: Condition::None,
                },
                // No import transaction may have landed since the read.
                WriteOp::Check {
                    key: keys::portfolio_sequence(tenant),
                    condition: match stored.sequence {
                        Some(version) => Condition::VersionIs(version),
                        None => Condition::NotExists,
                    },
                },
            ];
            let mut flip = flip;
            flip.extend(stored.pending.iter().map(|(key, _)| WriteOp::Delete {
                key: key.clone(),
                condition: Condition::Exists,
            }));
            match self.table.transact_write(flip).await {
                Ok(()) => {
                    self.remove_other_epochs(tenant, &epoch.id).await?;
                    let previous = stored.epoch.as_ref().map(|(epoch, _)| epoch.as_of);
                    let differences = match (stored.current_totals(), previous) {
                        (Some(maintained), Some(day)) if day == as_of => {
                            differences(&maintained, &totals)
                        }
                        _ => Vec::new(),
                    };
                    return Ok(RecomputeReport {
                        as_of,
                        previous_as_of: previous,
                        contracts: contracts.len(),
                        differences,
                        computation_micros: duration_micros(computation),
                    });
                }
                // A contract changed while we read: start over.
                Err(StoreError::TransactionCanceled { .. }) => {
                    self.remove_other_epochs(
                        tenant,
                        &self
                            .read(tenant)
                            .await?
                            .epoch
                            .map(|(epoch, _)| epoch.id)
                            .unwrap_or_default(),
                    )
                    .await?;
                    continue;
                }
                Err(other) => return Err(other.into()),
            }
        }
        Err(PortfolioError::Contention)
    }

    async fn all_contracts(&self, tenant: TenantId) -> Result<Vec<Contract>, StoreError> {
        let today = self.clock.today();
        let query = Query::partition(keys::tenant_partition(tenant))
            .begins_with(keys::CONTRACT_PREFIX)
            .limit(1000);
        query_all(self.table.as_ref(), query)
            .await?
            .into_iter()
            .map(|item| Contract::from_item(item, today))
            .collect()
    }

    async fn write_in_batches(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        let mut batches = Vec::new();
        let mut ops = ops.into_iter().peekable();
        while ops.peek().is_some() {
            batches.push(ops.by_ref().take(ENTRY_BATCH).collect::<Vec<_>>());
        }
        // A few at a time: the store groups concurrent commits.
        for group in batches.chunks(8) {
            let results = futures_util::future::join_all(
                group
                    .iter()
                    .map(|batch| self.table.transact_write(batch.clone())),
            )
            .await;
            for result in results {
                result?;
            }
        }
        Ok(())
    }

    /// Deletes list entries of every epoch but `keep`.
    async fn remove_other_epochs(&self, tenant: TenantId, keep: &str) -> Result<(), StoreError> {
        let keep_prefix = format!("{}{keep}#", keys::DASHBOARD_PREFIX);
        let query = Query::partition(keys::tenant_partition(tenant))
            .begins_with(keys::DASHBOARD_PREFIX)
            .limit(1000);
        let deletes = query_all(self.table.as_ref(), query)
            .await?
            .into_iter()
            .filter(|item| !item.key.sk.starts_with(&keep_prefix))
            .map(|item| WriteOp::Delete {
                key: item.key,
                condition: Condition::None,
            })
            .collect();
        self.write_in_batches(deletes).await
    }

    /// Rebuilds every organization's aggregate that is not as of today (the nightly
    /// roll); returns how many were rebuilt. One failing organization does not stop the
    /// others.
    pub async fn roll_all(&self) -> Result<usize, StoreError> {
        let today = self.clock.today();
        let mut rolled = 0;
        let mut after = None;
        loop {
            let page = self
                .table
                .query(
                    Query::partition(keys::PORTFOLIOS_PARTITION)
                        .limit(100)
                        .start_after(after.take()),
                )
                .await?;
            for item in page.items {
                let Some(tenant) = item
                    .key
                    .sk
                    .strip_prefix("T#")
                    .and_then(|id| id.parse::<TenantId>().ok())
                else {
                    continue;
                };
                let current = self.read(tenant).await?;
                if current.epoch.is_some_and(|(epoch, _)| epoch.as_of == today) {
                    continue;
                }
                match self.rebuild(tenant).await {
                    Ok(_) => rolled += 1,
                    Err(error) => {
                        tracing::warn!(%tenant, %error, "could not roll the portfolio");
                    }
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(rolled),
            }
        }
    }

    /// The dashboard, in the organization's reporting currency.
    pub async fn dashboard(&self, actor: &Actor) -> Result<Dashboard, PortfolioError> {
        require(actor, Permission::ReadContracts)?;
        let tenant = actor.tenant;
        let today = self.clock.today();
        let mut stored = self.read(tenant).await?;
        if stored
            .epoch
            .as_ref()
            .is_none_or(|(epoch, _)| epoch.as_of != today)
        {
            // The first read of a day the nightly roll has not reached (or ever).
            self.rebuild(tenant).await?;
            stored = self.read(tenant).await?;
        }
        let (Some(totals), Some((epoch, _))) = (stored.current_totals(), stored.epoch) else {
            return Err(PortfolioError::Contention);
        };
        let settings = stored.settings.unwrap_or_else(|| self.defaults.clone());
        let market = self.market_rate(&settings.benchmark, today).await?;
        let extended = self
            .list(tenant, &epoch.id, EXTENDED_LIST, LIST_LENGTH)
            .await?;
        let savings = self
            .list(tenant, &epoch.id, SAVINGS_LIST, TOP_SAVINGS)
            .await?;
        let ending = self.ending_soon(tenant, today).await?;
        let fx = self.exchange_rates(&totals, &settings, today).await?;
        Ok(Dashboard::assemble(DashboardInputs {
            as_of: epoch.as_of,
            settings: &settings,
            totals: &totals,
            market,
            fx: &fx,
            extended,
            ending,
            savings,
        }))
    }

    async fn list(
        &self,
        tenant: TenantId,
        epoch: &str,
        list: &str,
        limit: usize,
    ) -> Result<Vec<ContractSummary>, StoreError> {
        let page = self
            .table
            .query(
                Query::partition(keys::tenant_partition(tenant))
                    .begins_with(keys::dashboard_list_prefix(epoch, list))
                    .limit(limit),
            )
            .await?;
        page.items.into_iter().map(from_item).collect()
    }

    /// The first contracts by end date that end within the ending window.
    async fn ending_soon(
        &self,
        tenant: TenantId,
        today: NaiveDate,
    ) -> Result<Vec<ContractSummary>, StoreError> {
        let last = today + Days::new(ContractStatus::ENDING_WINDOW_DAYS);
        let (low, high) = keys::end_date_range(today, last);
        // Contracts terminated early also sit in this range; read a margin of them.
        let page = self
            .table
            .query(
                Query::partition(keys::contracts_by_end_partition(tenant))
                    .on_index(Index::Gsi1)
                    .between(low, high)
                    .limit(LIST_LENGTH * 3),
            )
            .await?;
        let mut ending = Vec::new();
        for item in page.items {
            let mut contract: Contract = from_item(item)?;
            contract.status = contract.status_on(today);
            if contract.status == ContractStatus::Ending && ending.len() < LIST_LENGTH {
                ending.push(Facts::of(&contract, today).summary);
            }
        }
        Ok(ending)
    }

    /// The rate into the reporting currency of every currency the totals hold.
    async fn exchange_rates(
        &self,
        totals: &Totals,
        settings: &PortfolioSettings,
        today: NaiveDate,
    ) -> Result<BTreeMap<Currency, Option<ExchangeRateUsed>>, PortfolioError> {
        let mut currencies: Vec<Currency> = totals
            .0
            .keys()
            .filter_map(|name| {
                let mut parts = name.split('|');
                match (parts.next(), parts.next()) {
                    (Some("debt" | "cost" | "rate"), Some(code)) => Currency::parse(code).ok(),
                    _ => None,
                }
            })
            .collect();
        currencies.sort_by_key(|c| c.code());
        currencies.dedup();
        let mut rates = BTreeMap::new();
        for currency in currencies {
            let used = if currency == settings.reporting_currency {
                Some(ExchangeRateUsed {
                    currency,
                    rate: Decimal::ONE,
                    rate_date: today,
                    source: None,
                })
            } else {
                let one = Money::new(10_i64.pow(currency.minor_unit_digits()), currency)
                    .map_err(|_| StoreError::Invalid("a unit of money".into()))?;
                match self
                    .rates
                    .convert(one, settings.reporting_currency, Some(today))
                    .await
                {
                    Ok(conversion) => Some(ExchangeRateUsed {
                        currency,
                        rate: conversion.rate,
                        rate_date: conversion.rate_date,
                        source: Some(conversion.source),
                    }),
                    Err(RatesError::NoRate { .. }) => None,
                    Err(other) => return Err(other.into()),
                }
            };
            rates.insert(currency, used);
        }
        Ok(rates)
    }
}

/// A list entry to write: list, rank, contract, what the list shows.
type Entry = (&'static str, String, ContractId, ContractSummary);

/// The totals and list entries of `contracts` on `as_of`, computed on every core.
fn tally(
    contracts: &[Contract],
    as_of: NaiveDate,
    market: Option<Decimal>,
) -> (Totals, Vec<Entry>) {
    let tally_part = |part: &[Contract]| {
        let mut totals = Totals::default();
        let mut entries = Vec::new();
        for contract in part {
            let facts = Facts::of(contract, as_of);
            totals.merge(&facts.totals(), 1);
            for (list, rank) in facts.entries(market) {
                entries.push((list, rank, facts.contract, facts.summary.clone()));
            }
        }
        (totals, entries)
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = contracts.len().div_ceil(threads).max(1);
    let parts: Vec<(Totals, Vec<Entry>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = contracts
            .chunks(chunk)
            .map(|part| scope.spawn(move || tally_part(part)))
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut totals = Totals::default();
    let mut entries = Vec::new();
    for (part_totals, part_entries) in parts {
        totals.merge(&part_totals, 1);
        entries.extend(part_entries);
    }
    (totals, entries)
}

fn require(actor: &Actor, permission: Permission) -> Result<(), PortfolioError> {
    if actor.role.allows(permission) {
        Ok(())
    } else {
        Err(PortfolioError::Forbidden(actor.role))
    }
}

fn duration_micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

fn differences(maintained: &Totals, recomputed: &Totals) -> Vec<Difference> {
    let names: std::collections::BTreeSet<&String> =
        maintained.0.keys().chain(recomputed.0.keys()).collect();
    names
        .into_iter()
        .filter_map(|name| {
            let (m, r) = (maintained.get(name), recomputed.get(name));
            (m != r).then(|| Difference {
                counter: name.clone(),
                maintained: m,
                recomputed: r,
            })
        })
        .collect()
}

/// An amount of money that may be negative (a change), in minor units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Amount {
    pub amount: i64,
    #[schema(value_type = String, example = "SEK")]
    pub currency: Currency,
}

/// A rate the dashboard converted with.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExchangeRateUsed {
    #[schema(value_type = String, example = "EUR")]
    pub currency: Currency,
    /// Units of the reporting currency per unit of `currency`.
    #[schema(value_type = String, example = "11.2345")]
    #[serde(with = "rust_decimal::serde::str")]
    pub rate: Decimal,
    pub rate_date: NaiveDate,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

struct DashboardInputs<'a> {
    as_of: NaiveDate,
    settings: &'a PortfolioSettings,
    totals: &'a Totals,
    /// (market rate, reference value, reference date) today.
    market: Option<(Decimal, Decimal, NaiveDate)>,
    fx: &'a BTreeMap<Currency, Option<ExchangeRateUsed>>,
    extended: Vec<ContractSummary>,
    ending: Vec<ContractSummary>,
    savings: Vec<ContractSummary>,
}

/// Converts per-currency sums into the reporting currency.
struct Converter<'a> {
    to: Currency,
    fx: &'a BTreeMap<Currency, Option<ExchangeRateUsed>>,
}

impl Converter<'_> {
    /// `amount` minor units of `from` in minor units of the reporting currency, unrounded;
    /// `None` when there is no rate.
    fn exact(&self, amount: Decimal, from: Currency) -> Option<Decimal> {
        let rate = self.fx.get(&from)?.as_ref()?.rate;
        let digits = i64::from(self.to.minor_unit_digits()) - i64::from(from.minor_unit_digits());
        let scale = Decimal::from(10_i64.pow(digits.unsigned_abs() as u32));
        let value = amount * rate;
        Some(if digits >= 0 {
            value * scale
        } else {
            value / scale
        })
    }

    fn amount(&self, value: Decimal) -> Amount {
        Amount {
            amount: whole(value),
            currency: self.to,
        }
    }

    /// Sums the counters `name(currency)` over every currency, converted.
    fn sum(&self, totals: &Totals, name: impl Fn(Currency) -> String) -> Amount {
        let value = self
            .fx
            .keys()
            .filter_map(|&currency| {
                self.exact(Decimal::from(totals.get(&name(currency))), currency)
            })
            .sum();
        self.amount(value)
    }
}

/// The dashboard.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Dashboard {
    /// The day the figures are for.
    pub as_of: NaiveDate,
    #[schema(value_type = String, example = "SEK")]
    pub reporting_currency: Currency,
    pub leasing_debt: DebtOverview,
    /// Debt-weighted average interest rate in percent ("snittränta"), two decimals.
    #[schema(value_type = Option<String>, example = "4.87")]
    #[serde(with = "rust_decimal::serde::str_option")]
    pub average_interest_rate: Option<Decimal>,
    pub contracts: ContractCounts,
    /// What the contracts not terminated cost per month.
    pub monthly_cost: Amount,
    pub extended_contracts: ContractList,
    pub ending_contracts: ContractList,
    pub breakdowns: Breakdowns,
    pub savings: Savings,
    pub tips: Vec<Tip>,
    /// The rates used to convert each currency; a currency without one is left out of
    /// the totals and named in `tips`.
    pub exchange_rates: Vec<ExchangeRateUsed>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DebtOverview {
    pub today: Amount,
    pub twelve_months_ago: Amount,
    pub in_twelve_months: Amount,
    pub change_past_twelve_months: Amount,
    pub change_next_twelve_months: Amount,
    /// The debt on the same day of each month from 12 months back to 12 ahead.
    pub monthly: Vec<DebtPoint>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DebtPoint {
    pub date: NaiveDate,
    pub debt: Amount,
    /// After today: what the debt will be if nothing changes.
    pub projected: bool,
}

#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContractCounts {
    pub total: i64,
    pub upcoming: i64,
    pub active: i64,
    pub ending: i64,
    pub extended: i64,
    pub terminated: i64,
    /// Not terminated, but without a rate to compute a debt with.
    pub without_rate: i64,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContractList {
    pub count: i64,
    pub monthly_cost: Amount,
    /// The first of them: extended ones longest overdue first, ending ones soonest first.
    pub contracts: Vec<ListedContract>,
}

/// A contract in a dashboard list; amounts in its own currency.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListedContract {
    pub id: ContractId,
    pub contract_number: String,
    pub lessor: String,
    pub description: String,
    pub status: ContractStatus,
    pub end_date: NaiveDate,
    pub monthly_cost: Amount,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leasing_debt: Option<Amount>,
    #[schema(value_type = Option<String>, example = "4.95")]
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "rust_decimal::serde::str_option"
    )]
    pub interest_rate: Option<Decimal>,
}

impl ListedContract {
    fn from_summary(summary: &ContractSummary) -> Self {
        Self {
            id: summary.id,
            contract_number: summary.contract_number.clone(),
            lessor: summary.lessor.clone(),
            description: summary.description.clone(),
            status: summary.status,
            end_date: summary.end_date,
            monthly_cost: Amount {
                amount: per_month(summary.payments_per_year),
                currency: summary.currency,
            },
            leasing_debt: summary.leasing_debt.map(|amount| Amount {
                amount,
                currency: summary.currency,
            }),
            interest_rate: summary.interest_rate,
        }
    }
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Breakdowns {
    pub category: Vec<Breakdown>,
    pub lessor: Vec<Breakdown>,
    pub cost_center: Vec<Breakdown>,
}

/// The contracts not terminated that share one category, lessor or cost center.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Breakdown {
    /// The category, lessor or cost center; empty for contracts without a cost center.
    pub key: String,
    pub contracts: i64,
    pub leasing_debt: Amount,
    pub monthly_cost: Amount,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Savings {
    pub per_year: Amount,
    pub interest_above_market_per_year: Amount,
    pub extended_beyond_term_per_year: Amount,
    /// The benchmark's reference value today plus its margin; `null` when the reference
    /// has no value yet (then only extended contracts count).
    #[schema(value_type = Option<String>, example = "4.25")]
    #[serde(with = "rust_decimal::serde::str_option")]
    pub market_rate: Option<Decimal>,
    pub benchmark: BenchmarkUsed,
    pub formula: String,
    pub top_contracts: Vec<SavingsCandidate>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BenchmarkUsed {
    #[schema(value_type = String)]
    pub series: SeriesId,
    #[schema(value_type = String, example = "1.5")]
    pub margin: AnnualRate,
    #[schema(value_type = Option<String>)]
    #[serde(with = "rust_decimal::serde::str_option")]
    pub reference_rate: Option<Decimal>,
    pub reference_date: Option<NaiveDate>,
}

/// A contract and what it could save a year, in its own currency.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SavingsCandidate {
    pub contract: ListedContract,
    pub potential_per_year: Amount,
    pub interest_above_market_per_year: Amount,
    pub extension_cost_per_year: Amount,
    /// Interest rate minus the market rate, percentage points.
    #[schema(value_type = Option<String>, example = "2.1")]
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "rust_decimal::serde::str_option"
    )]
    pub points_above_market: Option<Decimal>,
}

/// A concrete suggestion drawn from the figures. `code` selects the message; `params`
/// fill it.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tip {
    pub code: String,
    /// The tip in the caller's language; filled in by the HTTP layer.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    pub params: BTreeMap<String, String>,
    /// The contract numbers it is about.
    pub contracts: Vec<String>,
}

pub const SAVINGS_FORMULA: &str = "savings per year = Σ over contracts of leasing debt today × \
max(0, interest rate − (benchmark reference rate + benchmark margin)) / 100 \
+ Σ over extended contracts of their payments per year";

impl Dashboard {
    fn assemble(inputs: DashboardInputs<'_>) -> Dashboard {
        let DashboardInputs {
            as_of,
            settings,
            totals,
            market,
            fx,
            extended,
            ending,
            savings,
        } = inputs;
        let reporting = settings.reporting_currency;
        let convert = Converter { to: reporting, fx };
        let count = |status: ContractStatus| totals.get(&counter::status(status));

        let monthly: Vec<DebtPoint> = series_days(as_of)
            .into_iter()
            .zip(-SERIES_MONTHS..=SERIES_MONTHS)
            .map(|(date, offset)| DebtPoint {
                date,
                debt: convert.sum(totals, |k| counter::debt(k, offset)),
                projected: offset > 0,
            })
            .collect();
        let debt_at = |offset: i32| monthly[(offset + SERIES_MONTHS) as usize].debt;
        let (today, ago, ahead) = (debt_at(0), debt_at(-SERIES_MONTHS), debt_at(SERIES_MONTHS));

        // The debt-weighted average rate and the interest above market, from the debt
        // at each rate.
        let market_rate = market.map(|(rate, _, _)| rate);
        let mut weighted = Decimal::ZERO;
        let mut weights = Decimal::ZERO;
        let mut above_market = Decimal::ZERO;
        for (name, debt) in &totals.0 {
            let mut parts = name.splitn(3, '|');
            let (Some("rate"), Some(code), Some(rate)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let (Ok(currency), Ok(rate)) = (Currency::parse(code), rate.parse::<Decimal>()) else {
                continue;
            };
            let Some(debt) = convert.exact(Decimal::from(*debt), currency) else {
                continue;
            };
            weighted += debt * rate;
            weights += debt;
            if let Some(market) = market_rate
                && rate > market
            {
                above_market += debt * (rate - market) / Decimal::ONE_HUNDRED;
            }
        }
        let average_interest_rate = (weights > Decimal::ZERO).then(|| {
            (weighted / weights).round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
        });

        let yearly = |status: ContractStatus| convert.sum(totals, |k| counter::cost(k, status));
        let monthly_of = |amount: Amount| Amount {
            amount: per_month(amount.amount),
            currency: amount.currency,
        };
        let live_yearly = [
            ContractStatus::Upcoming,
            ContractStatus::Active,
            ContractStatus::Ending,
            ContractStatus::Extended,
        ]
        .into_iter()
        .map(|status| yearly(status).amount)
        .sum::<i64>();
        let extended_yearly = yearly(ContractStatus::Extended);
        let interest_above = convert.amount(above_market);

        let counts = ContractCounts {
            total: [
                ContractStatus::Upcoming,
                ContractStatus::Active,
                ContractStatus::Ending,
                ContractStatus::Extended,
                ContractStatus::Terminated,
            ]
            .into_iter()
            .map(count)
            .sum(),
            upcoming: count(ContractStatus::Upcoming),
            active: count(ContractStatus::Active),
            ending: count(ContractStatus::Ending),
            extended: count(ContractStatus::Extended),
            terminated: count(ContractStatus::Terminated),
            without_rate: totals.get(counter::WITHOUT_RATE),
        };

        let candidates: Vec<SavingsCandidate> = savings
            .iter()
            .map(|summary| savings_candidate(summary, market_rate))
            .filter(|candidate| candidate.potential_per_year.amount > 0)
            .collect();
        let missing_rates: Vec<Currency> = fx
            .iter()
            .filter(|(_, used)| used.is_none())
            .map(|(currency, _)| *currency)
            .collect();

        let mut dashboard = Dashboard {
            as_of,
            reporting_currency: reporting,
            leasing_debt: DebtOverview {
                today,
                twelve_months_ago: ago,
                in_twelve_months: ahead,
                change_past_twelve_months: Amount {
                    amount: today.amount - ago.amount,
                    currency: reporting,
                },
                change_next_twelve_months: Amount {
                    amount: ahead.amount - today.amount,
                    currency: reporting,
                },
                monthly,
            },
            average_interest_rate,
            contracts: counts,
            monthly_cost: monthly_of(Amount {
                amount: live_yearly,
                currency: reporting,
            }),
            extended_contracts: ContractList {
                count: count(ContractStatus::Extended),
                monthly_cost: monthly_of(extended_yearly),
                contracts: extended.iter().map(ListedContract::from_summary).collect(),
            },
            ending_contracts: ContractList {
                count: count(ContractStatus::Ending),
                monthly_cost: monthly_of(yearly(ContractStatus::Ending)),
                contracts: ending.iter().map(ListedContract::from_summary).collect(),
            },
            breakdowns: Breakdowns {
                category: breakdown(totals, "category", &convert),
                lessor: breakdown(totals, "lessor", &convert),
                cost_center: breakdown(totals, "costCenter", &convert),
            },
            savings: Savings {
                per_year: Amount {
                    amount: interest_above.amount + extended_yearly.amount,
                    currency: reporting,
                },
                interest_above_market_per_year: interest_above,
                extended_beyond_term_per_year: extended_yearly,
                market_rate,
                benchmark: BenchmarkUsed {
                    series: settings.benchmark.series.clone(),
                    margin: settings.benchmark.margin,
                    reference_rate: market.map(|(_, value, _)| value),
                    reference_date: market.map(|(_, _, date)| date),
                },
                formula: SAVINGS_FORMULA.to_owned(),
                top_contracts: candidates,
            },
            tips: Vec::new(),
            exchange_rates: fx.values().flatten().cloned().collect(),
        };
        dashboard.tips = tips(&dashboard, &missing_rates);
        dashboard
    }
}

fn savings_candidate(summary: &ContractSummary, market: Option<Decimal>) -> SavingsCandidate {
    let potential = summary.potential(market);
    let money = |amount: i64| Amount {
        amount,
        currency: summary.currency,
    };
    SavingsCandidate {
        contract: ListedContract::from_summary(summary),
        potential_per_year: money(potential.total()),
        interest_above_market_per_year: money(potential.above_market),
        extension_cost_per_year: money(potential.extension),
        points_above_market: potential.points,
    }
}

fn breakdown(totals: &Totals, dimension: &str, convert: &Converter<'_>) -> Vec<Breakdown> {
    let prefix = format!("{dimension}|");
    let mut keys: Vec<String> = totals
        .0
        .keys()
        .filter_map(|name| name.strip_prefix(&prefix)?.strip_suffix("|count"))
        .map(str::to_owned)
        .collect();
    keys.dedup();
    let mut rows: Vec<Breakdown> = keys
        .into_iter()
        .filter_map(|escaped| {
            let key = counter::unescape(&escaped);
            let contracts = totals.get(&counter::group_count(dimension, &key));
            (contracts > 0).then(|| Breakdown {
                leasing_debt: convert.sum(totals, |k| counter::group_debt(dimension, &key, k)),
                monthly_cost: {
                    let yearly = convert.sum(totals, |k| counter::group_cost(dimension, &key, k));
                    Amount {
                        amount: per_month(yearly.amount),
                        currency: yearly.currency,
                    }
                },
                key,
                contracts,
            })
        })
        .collect();
    rows.sort_by(|a, b| {
        b.leasing_debt
            .amount
            .cmp(&a.leasing_debt.amount)
            .then(b.contracts.cmp(&a.contracts))
            .then(a.key.cmp(&b.key))
    });
    rows
}

fn money_text(amount: Amount) -> String {
    let value = Decimal::new(amount.amount, amount.currency.minor_unit_digits());
    format!("{value} {}", amount.currency)
}

fn tips(dashboard: &Dashboard, missing_rates: &[Currency]) -> Vec<Tip> {
    let mut tips = Vec::new();
    let numbers = |contracts: &[ListedContract]| -> Vec<String> {
        contracts
            .iter()
            .map(|c| c.contract_number.clone())
            .collect()
    };
    let extended = &dashboard.extended_contracts;
    if extended.count > 0 {
        tips.push(Tip {
            message: String::new(),
            code: "extended-contracts".into(),
            params: BTreeMap::from([
                ("count".into(), extended.count.to_string()),
                ("monthlyCost".into(), money_text(extended.monthly_cost)),
            ]),
            contracts: numbers(&extended.contracts),
        });
    }
    for candidate in &dashboard.savings.top_contracts {
        let Some(points) = candidate.points_above_market else {
            continue;
        };
        if points >= TIP_POINTS_ABOVE_MARKET && candidate.interest_above_market_per_year.amount > 0
        {
            tips.push(Tip {
                message: String::new(),
                code: "above-market".into(),
                params: BTreeMap::from([
                    (
                        "contract".into(),
                        candidate.contract.contract_number.clone(),
                    ),
                    (
                        "points".into(),
                        points
                            .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
                            .normalize()
                            .to_string(),
                    ),
                    (
                        "perYear".into(),
                        money_text(candidate.interest_above_market_per_year),
                    ),
                ]),
                contracts: vec![candidate.contract.contract_number.clone()],
            });
        }
    }
    let ending = &dashboard.ending_contracts;
    if ending.count > 0 {
        tips.push(Tip {
            message: String::new(),
            code: "ending-soon".into(),
            params: BTreeMap::from([
                ("count".into(), ending.count.to_string()),
                (
                    "days".into(),
                    ContractStatus::ENDING_WINDOW_DAYS.to_string(),
                ),
            ]),
            contracts: numbers(&ending.contracts),
        });
    }
    if dashboard.contracts.without_rate > 0 {
        tips.push(Tip {
            message: String::new(),
            code: "without-rate".into(),
            params: BTreeMap::from([(
                "count".into(),
                dashboard.contracts.without_rate.to_string(),
            )]),
            contracts: Vec::new(),
        });
    }
    for currency in missing_rates {
        tips.push(Tip {
            message: String::new(),
            code: "missing-exchange-rate".into(),
            params: BTreeMap::from([
                ("currency".into(), currency.to_string()),
                (
                    "reportingCurrency".into(),
                    dashboard.reporting_currency.to_string(),
                ),
            ]),
            contracts: Vec::new(),
        });
    }
    tips
}
