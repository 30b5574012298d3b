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
//!   Each list holds only its head, about the first [`LIST_KEPT`] contracts: those up to
//!   the epoch's **cut** for it ([`Cuts`]: the savings floor, the latest end date
//!   listed). A rebuild sets the cuts, an import tightens them from its own rows before
//!   writing, and a dashboard that finds a list's head short of what it shows rebuilds.
//!   Entries beyond a cut (listed under a looser one) are harmless: they are exact, rank
//!   after every entry within it, and go when their contract changes or the epoch is
//!   rebuilt.
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
//! A rebuild must not need a schedule per contract (about 5 µs each, where the whole
//! rebuild's computation has 50 ms for 100,000 contracts). So every contract item carries
//! its **facts** for the epoch's day ([`StoredFacts`]: the debt series), written by the
//! same transaction that writes the contract and counts it, and stored for the new day by
//! the nightly roll ([`PortfolioService::roll`]) without a new version. A rebuild reuses
//! facts of its own day and computes the others, and sums them typed (`Tally`) rather
//! than by counter name.
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
use futures_util::StreamExt;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Months of history and of projection in the leasing-debt series.
pub const SERIES_MONTHS: i32 = 12;
/// How many contracts each dashboard list shows.
pub const LIST_LENGTH: usize = 20;
/// How many contracts the savings ranking shows.
pub const TOP_SAVINGS: usize = 10;
/// How many contracts each dashboard list keeps at least, when there are that many: a
/// rebuild (and a large import) sets the epoch's cut for the list at the contract in
/// this place, so the list holds about this many entries rather than one per contract
/// (half of a register can be extended), and changes can drop that many from its head
/// before it runs short and the dashboard rebuilds it.
pub const LIST_KEPT: usize = 100;
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
    #[serde(flatten)]
    cuts: Cuts,
}

/// How far down each dashboard list goes (see [`LIST_KEPT`]): a list holds every
/// contract within its cut, and `None` means every contract that ranks in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Cuts {
    /// The savings list holds every contract whose yearly potential is at least this
    /// (in its own minor units).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    savings_floor: Option<i64>,
    /// The extended list holds every extended contract that ended on or before this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    extended_through: Option<NaiveDate>,
}

impl Cuts {
    /// The cuts that keep about [`LIST_KEPT`] of each list, of contracts ranked `ranks`.
    fn keeping(ranks: impl IntoIterator<Item = Rank>) -> Self {
        let mut potentials: Vec<i64> = Vec::new();
        let mut end_dates: Vec<NaiveDate> = Vec::new();
        for rank in ranks {
            match rank {
                Rank::Saving(potential) => potentials.push(potential),
                Rank::Overdue(end_date) => end_dates.push(end_date),
            }
        }
        Self {
            savings_floor: kept(&mut potentials, |a, b| b.cmp(a)),
            extended_through: kept(&mut end_dates, Ord::cmp),
        }
    }

    /// Whether a contract with this rank belongs in its list.
    fn lists(&self, rank: Rank) -> bool {
        match rank {
            Rank::Saving(potential) => {
                potential > 0 && potential >= self.savings_floor.unwrap_or(1)
            }
            Rank::Overdue(end_date) => self
                .extended_through
                .is_none_or(|through| end_date <= through),
        }
    }

    /// These cuts, tightened to `other`'s where those keep fewer: a list complete
    /// within the looser cut is complete within the tighter one.
    fn tightened(self, other: Self) -> Self {
        Self {
            savings_floor: self.savings_floor.max(other.savings_floor),
            extended_through: match (self.extended_through, other.extended_through) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        }
    }
}

/// The value at place [`LIST_KEPT`] of `values` (reordered) in list order `order`, when
/// there are more: the cut that keeps about that many listed.
fn kept<T: Copy>(values: &mut [T], order: impl FnMut(&T, &T) -> std::cmp::Ordering) -> Option<T> {
    if values.len() <= LIST_KEPT {
        return None;
    }
    let (_, kth, _) = values.select_nth_unstable_by(LIST_KEPT - 1, order);
    Some(*kth)
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

/// Points in the debt series: the epoch's day and [`SERIES_MONTHS`] months either side.
pub const SERIES_POINTS: usize = 2 * SERIES_MONTHS as usize + 1;
/// The series' point for the epoch's day itself.
const TODAY_POINT: usize = SERIES_MONTHS as usize;

/// A contract's leasing debt in minor units on each day of [`series_days`].
pub type DebtSeries = [i64; SERIES_POINTS];

/// The debt series of `contract` for the epoch's day `as_of`, each debt rounded to the
/// minor unit; `None` when the contract has no rate to discount with (or a debt too
/// large to count). The expensive part of a contract's [`Facts`]: an exact schedule.
pub fn debt_series(contract: &Contract, as_of: NaiveDate) -> Option<DebtSeries> {
    let currency = contract.payment.currency;
    let debts = schedule::debts_on(contract, &series_days(as_of)).ok()?;
    if debts.len() != SERIES_POINTS {
        return None;
    }
    let mut series = [0; SERIES_POINTS];
    for (point, debt) in series.iter_mut().zip(debts) {
        *point = schedule::to_minor_units(debt, currency)?;
    }
    Some(series)
}

/// The attribute of a contract item that holds its [`StoredFacts`].
pub(crate) const FACTS_ATTRIBUTE: &str = "portfolioFacts";
/// Changes whenever what stored facts hold or how they are computed changes, so facts
/// an older release stored are computed again instead of trusted.
const FACTS_FORMAT: u32 = 1;

/// What a contract's [`Facts`] cost a schedule to know, for one epoch day: its debt
/// series. Stored in the contract's own item by the same write that stores the contract
/// (every contract write counts its difference through [`commit_with_portfolio`], which
/// adds them), and refreshed for the new day by the nightly roll, so a rebuild needs no
/// schedule for a contract whose facts are for the epoch's day. Facts for another day or
/// another format are never used: the rebuild computes those itself.
///
/// About 250 bytes in an item of 1–3 KB.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredFacts {
    format: u32,
    as_of: NaiveDate,
    /// `null`: no rate to compute a debt with.
    debts: Option<DebtSeries>,
}

impl StoredFacts {
    pub fn of(contract: &Contract, as_of: NaiveDate) -> Self {
        Self::new(as_of, debt_series(contract, as_of))
    }

    fn new(as_of: NaiveDate, debts: Option<DebtSeries>) -> Self {
        Self {
            format: FACTS_FORMAT,
            as_of,
            debts,
        }
    }

    /// The debt series, when these facts are for `as_of` (and of this release's format).
    fn debts_for(&self, as_of: NaiveDate) -> Option<Option<DebtSeries>> {
        (self.format == FACTS_FORMAT && self.as_of == as_of).then_some(self.debts)
    }

    /// The facts as the item attribute [`FACTS_ATTRIBUTE`].
    fn attribute(&self) -> Result<serde_json::Value, StoreError> {
        serde_json::to_value(self)
            .map_err(|e| StoreError::Invalid(format!("contract facts not serializable: {e}")))
    }

    /// Adds the facts to `item`, a contract's item.
    pub(crate) fn stamp(&self, item: &mut Item) -> Result<(), StoreError> {
        item.attributes
            .insert(FACTS_ATTRIBUTE.to_owned(), self.attribute()?);
        Ok(())
    }
}

/// A contract as a rebuild reads it: with the facts stored in its item, if any.
pub(crate) struct StoredContract {
    pub contract: Contract,
    /// `None` for an item written before facts were stored (or with facts this release
    /// cannot read): the rebuild computes them.
    pub facts: Option<StoredFacts>,
}

impl StoredContract {
    pub fn from_item(mut item: Item, today: NaiveDate) -> Result<Self, StoreError> {
        let facts = item
            .attributes
            .remove(FACTS_ATTRIBUTE)
            .and_then(|value| serde_json::from_value(value).ok());
        Ok(Self {
            contract: Contract::from_item(item, today)?,
            facts,
        })
    }

    /// The debt series on `as_of` from the stored facts, when they are for that day.
    fn stored_debts(&self, as_of: NaiveDate) -> Option<Option<DebtSeries>> {
        self.facts.as_ref()?.debts_for(as_of)
    }
}

/// The contract's rate in force, in percent.
fn rate_of(contract: &Contract) -> Option<Decimal> {
    contract
        .current_rate
        .or(contract.interest_rate)
        .map(|rate| rate.percent())
}

fn yearly_payments(contract: &Contract) -> i64 {
    contract
        .payment
        .amount
        .saturating_mul(payments_per_year(contract.payment_frequency))
}

/// What one contract adds to the portfolio on one day.
#[derive(Clone, Debug)]
pub struct Facts<'a> {
    contract: &'a Contract,
    status: ContractStatus,
    /// `None` when the contract has no rate to discount with.
    debts: Option<DebtSeries>,
    rate: Option<Decimal>,
    payments_per_year: i64,
}

impl<'a> Facts<'a> {
    /// The facts computed from the contract's schedule.
    pub fn of(contract: &'a Contract, as_of: NaiveDate) -> Self {
        Self::with_debts(contract, as_of, debt_series(contract, as_of))
    }

    /// The facts with a debt series already known (stored, or computed for the write).
    fn with_debts(contract: &'a Contract, as_of: NaiveDate, debts: Option<DebtSeries>) -> Self {
        Self {
            contract,
            status: contract.status_on(as_of),
            debts,
            rate: rate_of(contract),
            payments_per_year: yearly_payments(contract),
        }
    }

    fn currency(&self) -> Currency {
        self.contract.payment.currency
    }

    fn lessor(&self) -> &'a str {
        self.contract.lessor.trim()
    }

    fn cost_center(&self) -> &'a str {
        self.contract.cost_center.as_deref().unwrap_or_default()
    }

    fn live(&self) -> bool {
        self.status != ContractStatus::Terminated
    }

    fn leasing_debt(&self) -> Option<i64> {
        self.debts.map(|debts| debts[TODAY_POINT])
    }

    fn debt_today(&self) -> i64 {
        self.leasing_debt().unwrap_or(0)
    }

    fn summary(&self) -> ContractSummary {
        ContractSummary::new(self.contract, self.status, self.leasing_debt())
    }

    /// The counters this one contract adds, by name: what a write adds or takes away.
    /// A rebuild sums many contracts with [`Tally`] instead, which must agree.
    pub fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        let k = self.currency();
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
            ("category", self.contract.category.as_str()),
            ("lessor", self.lessor()),
            ("costCenter", self.cost_center()),
        ] {
            totals.add(counter::group_count(dimension, value), 1);
            totals.add(counter::group_debt(dimension, value, k), self.debt_today());
            totals.add(
                counter::group_cost(dimension, value, k),
                self.payments_per_year,
            );
        }
        totals
    }

    /// Where the contract stands in the dashboard lists.
    fn ranks(&self, market: Option<Decimal>) -> impl Iterator<Item = Rank> {
        let extended = (self.status == ContractStatus::Extended)
            .then_some(Rank::Overdue(self.contract.end_date));
        let total = potential(
            self.status,
            self.rate,
            self.leasing_debt(),
            self.payments_per_year,
            market,
        )
        .total();
        extended
            .into_iter()
            .chain((total > 0).then_some(Rank::Saving(total)))
    }
}

/// A contract's place in a dashboard list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rank {
    /// In the extended list, by end date: longest overdue first.
    Overdue(NaiveDate),
    /// In the savings list, by the yearly potential: largest first.
    Saving(i64),
}

impl Rank {
    fn list(self) -> &'static str {
        match self {
            Rank::Overdue(_) => EXTENDED_LIST,
            Rank::Saving(_) => SAVINGS_LIST,
        }
    }

    /// The rank as the entry's sort key: a list is read in sort-key order.
    fn key(self) -> String {
        match self {
            Rank::Overdue(end_date) => end_date.to_string(),
            Rank::Saving(total) => format!("{:020}", i64::MAX - total),
        }
    }
}

const STATUSES: [ContractStatus; 5] = [
    ContractStatus::Upcoming,
    ContractStatus::Active,
    ContractStatus::Ending,
    ContractStatus::Extended,
    ContractStatus::Terminated,
];

const CATEGORIES: [Category; 5] = [
    Category::Vehicle,
    Category::It,
    Category::Machinery,
    Category::Property,
    Category::Other,
];

fn status_index(status: ContractStatus) -> usize {
    match status {
        ContractStatus::Upcoming => 0,
        ContractStatus::Active => 1,
        ContractStatus::Ending => 2,
        ContractStatus::Extended => 3,
        ContractStatus::Terminated => 4,
    }
}

fn category_index(category: Category) -> usize {
    match category {
        Category::Vehicle => 0,
        Category::It => 1,
        Category::Machinery => 2,
        Category::Property => 3,
        Category::Other => 4,
    }
}

/// The sums of many contracts' [`Facts`], kept typed (arrays by status and category,
/// maps keyed by the contracts' own lessor and cost-center strings) and named as
/// [`Totals`] once at the end: adding a contract allocates nothing unless it brings a
/// currency, rate, lessor or cost center not seen before. [`Facts::totals`] is the
/// one-contract form of the same sums.
#[derive(Default)]
struct Tally<'a> {
    status: [i64; STATUSES.len()],
    without_rate: i64,
    /// Few: a linear search beats hashing.
    currencies: Vec<CurrencySums>,
    category: [Group; CATEGORIES.len()],
    lessor: HashMap<&'a str, Group>,
    cost_center: HashMap<&'a str, Group>,
}

/// The sums in one currency.
struct CurrencySums {
    currency: Currency,
    debts: DebtSeries,
    cost: [i64; STATUSES.len()],
    /// Today's debt by rate, keyed by the rate's exact representation (the names merge
    /// equal rates written differently, `4.5` and `4.50`).
    debt_at_rate: HashMap<u128, (Decimal, i64)>,
}

/// The contracts not terminated of one category, lessor or cost center.
#[derive(Default)]
struct Group {
    count: i64,
    /// (currency, today's debt, yearly payments)
    money: Vec<(Currency, i64, i64)>,
}

impl Group {
    fn add(&mut self, currency: Currency, debt: i64, cost: i64) {
        self.count += 1;
        match self.money.iter_mut().find(|(c, _, _)| *c == currency) {
            Some((_, d, c)) => {
                *d += debt;
                *c += cost;
            }
            None => self.money.push((currency, debt, cost)),
        }
    }

    fn absorb(&mut self, other: Group) {
        self.count += other.count;
        for (currency, debt, cost) in other.money {
            match self.money.iter_mut().find(|(c, _, _)| *c == currency) {
                Some((_, d, c)) => {
                    *d += debt;
                    *c += cost;
                }
                None => self.money.push((currency, debt, cost)),
            }
        }
    }

    fn name_into(&self, totals: &mut Totals, dimension: &str, value: &str) {
        totals.add(counter::group_count(dimension, value), self.count);
        for &(currency, debt, cost) in &self.money {
            totals.add(counter::group_debt(dimension, value, currency), debt);
            totals.add(counter::group_cost(dimension, value, currency), cost);
        }
    }
}

fn sums_of(currencies: &mut Vec<CurrencySums>, currency: Currency) -> &mut CurrencySums {
    let at = match currencies.iter().position(|sums| sums.currency == currency) {
        Some(at) => at,
        None => {
            currencies.push(CurrencySums {
                currency,
                debts: [0; SERIES_POINTS],
                cost: [0; STATUSES.len()],
                debt_at_rate: HashMap::new(),
            });
            currencies.len() - 1
        }
    };
    &mut currencies[at]
}

impl<'a> Tally<'a> {
    fn add(&mut self, facts: &Facts<'a>) {
        let status = status_index(facts.status);
        self.status[status] += 1;
        let currency = facts.currency();
        let sums = sums_of(&mut self.currencies, currency);
        if let Some(debts) = &facts.debts {
            for (sum, debt) in sums.debts.iter_mut().zip(debts) {
                *sum += debt;
            }
        }
        if !facts.live() {
            return;
        }
        let debt_today = facts.debt_today();
        match (&facts.debts, facts.rate) {
            (Some(_), Some(rate)) => {
                let exact = u128::from_le_bytes(rate.serialize());
                sums.debt_at_rate.entry(exact).or_insert((rate, 0)).1 += debt_today;
            }
            (Some(_), None) => {}
            (None, _) => self.without_rate += 1,
        }
        sums.cost[status] += facts.payments_per_year;
        let cost = facts.payments_per_year;
        self.category[category_index(facts.contract.category)].add(currency, debt_today, cost);
        self.lessor
            .entry(facts.lessor())
            .or_default()
            .add(currency, debt_today, cost);
        self.cost_center
            .entry(facts.cost_center())
            .or_default()
            .add(currency, debt_today, cost);
    }

    fn absorb(&mut self, other: Tally<'a>) {
        for (sum, count) in self.status.iter_mut().zip(other.status) {
            *sum += count;
        }
        self.without_rate += other.without_rate;
        for theirs in other.currencies {
            let ours = sums_of(&mut self.currencies, theirs.currency);
            for (sum, debt) in ours.debts.iter_mut().zip(theirs.debts) {
                *sum += debt;
            }
            for (sum, cost) in ours.cost.iter_mut().zip(theirs.cost) {
                *sum += cost;
            }
            for (exact, (rate, debt)) in theirs.debt_at_rate {
                ours.debt_at_rate.entry(exact).or_insert((rate, 0)).1 += debt;
            }
        }
        for (ours, theirs) in self.category.iter_mut().zip(other.category) {
            ours.absorb(theirs);
        }
        for (value, group) in other.lessor {
            self.lessor.entry(value).or_default().absorb(group);
        }
        for (value, group) in other.cost_center {
            self.cost_center.entry(value).or_default().absorb(group);
        }
    }

    /// The sums under their counter names.
    fn into_totals(self) -> Totals {
        let mut totals = Totals::default();
        for (status, count) in STATUSES.into_iter().zip(self.status) {
            totals.add(counter::status(status), count);
        }
        totals.add(counter::WITHOUT_RATE.to_owned(), self.without_rate);
        for sums in self.currencies {
            let k = sums.currency;
            for (offset, debt) in (-SERIES_MONTHS..=SERIES_MONTHS).zip(sums.debts) {
                totals.add(counter::debt(k, offset), debt);
            }
            for (status, cost) in STATUSES.into_iter().zip(sums.cost) {
                totals.add(counter::cost(k, status), cost);
            }
            for (rate, debt) in sums.debt_at_rate.into_values() {
                totals.add(counter::debt_at_rate(k, rate), debt);
            }
        }
        for (category, group) in CATEGORIES.into_iter().zip(&self.category) {
            group.name_into(&mut totals, "category", category.as_str());
        }
        for (value, group) in &self.lessor {
            group.name_into(&mut totals, "lessor", value);
        }
        for (value, group) in &self.cost_center {
            group.name_into(&mut totals, "costCenter", value);
        }
        totals
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
    fn new(contract: &Contract, status: ContractStatus, leasing_debt: Option<i64>) -> Self {
        Self {
            id: contract.id,
            contract_number: contract.contract_number.clone(),
            lessor: contract.lessor.clone(),
            description: contract.description.clone(),
            status,
            end_date: contract.end_date,
            currency: contract.payment.currency,
            payments_per_year: yearly_payments(contract),
            leasing_debt,
            interest_rate: rate_of(contract),
        }
    }

    fn potential(&self, market: Option<Decimal>) -> Potential {
        potential(
            self.status,
            self.interest_rate,
            self.leasing_debt,
            self.payments_per_year,
            market,
        )
    }
}

/// The yearly saving at `market` percent: interest above the market on today's debt (for
/// a contract not terminated), plus the payments of an extended contract.
fn potential(
    status: ContractStatus,
    rate: Option<Decimal>,
    leasing_debt: Option<i64>,
    payments_per_year: i64,
    market: Option<Decimal>,
) -> Potential {
    let points = match (market, rate) {
        (Some(market), Some(rate)) if status != ContractStatus::Terminated => Some(rate - market),
        _ => None,
    };
    let above_market = match points {
        Some(points) if points > Decimal::ZERO => {
            whole(Decimal::from(leasing_debt.unwrap_or(0)) * points / Decimal::ONE_HUNDRED)
        }
        _ => 0,
    };
    let extension = if status == ContractStatus::Extended {
        payments_per_year
    } else {
        0
    };
    Potential {
        points,
        above_market,
        extension,
    }
}

/// One contract's change as the portfolio counts it: the contract before (`None` when
/// new) and after (`None` when deleted), and the facts already computed for the one
/// after, if any (an import computes them up front, on every core).
#[derive(Clone, Copy, Debug)]
pub struct LedgerChange<'a> {
    pub before: Option<&'a Contract>,
    pub after: Option<&'a Contract>,
    pub after_facts: Option<&'a StoredFacts>,
}

impl<'a> LedgerChange<'a> {
    pub fn created(after: &'a Contract) -> Self {
        Self::new(None, Some(after))
    }

    pub fn updated(before: &'a Contract, after: &'a Contract) -> Self {
        Self::new(Some(before), Some(after))
    }

    pub fn deleted(before: &'a Contract) -> Self {
        Self::new(Some(before), None)
    }

    pub fn new(before: Option<&'a Contract>, after: Option<&'a Contract>) -> Self {
        Self {
            before,
            after,
            after_facts: None,
        }
    }

    /// With facts computed beforehand for the contract after; used only when they are
    /// for the epoch's day.
    pub fn with_facts(mut self, facts: Option<&'a StoredFacts>) -> Self {
        self.after_facts = facts;
        self
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
        Ok(Self {
            epoch: read_epoch(table, tenant).await?,
        })
    }

    /// The writes that move the aggregate by `changes`, and the facts each contract
    /// written is counted with, to store in its item. Before the first dashboard there is
    /// no aggregate: the writes then only fence a first build running meanwhile.
    ///
    /// A contract's old list entries are always deleted, wherever the epoch's cuts
    /// stand: one listed under a looser cut may still be there. A new entry is written
    /// only within its list's cut.
    pub fn ops(
        &self,
        tenant: TenantId,
        changes: &[LedgerChange<'_>],
        totals: TotalsWrite,
    ) -> Result<LedgerWrites, StoreError> {
        let Some((epoch, version)) = &self.epoch else {
            return Ok(LedgerWrites {
                ops: vec![
                    WriteOp::Check {
                        key: keys::portfolio_epoch(tenant),
                        condition: Condition::NotExists,
                    },
                    WriteOp::Update(Update::new(keys::portfolio_totals(tenant))),
                ],
                facts: Vec::new(),
            });
        };
        // Typed sums, named once per transaction rather than once per contract.
        let mut gone = Tally::default();
        let mut come = Tally::default();
        let mut removed: BTreeMap<Key, ()> = BTreeMap::new();
        let mut added: Vec<Item> = Vec::new();
        let mut stored = Vec::new();
        for change in changes {
            if let Some(before) = change.before {
                let facts = Facts::of(before, epoch.as_of);
                gone.add(&facts);
                for rank in facts.ranks(epoch.market_rate) {
                    removed.insert(
                        keys::dashboard_entry(
                            tenant,
                            &epoch.id,
                            rank.list(),
                            &rank.key(),
                            before.id,
                        ),
                        (),
                    );
                }
            }
            if let Some(after) = change.after {
                let debts = change
                    .after_facts
                    .and_then(|facts| facts.debts_for(epoch.as_of))
                    .unwrap_or_else(|| debt_series(after, epoch.as_of));
                stored.push((after.id, StoredFacts::new(epoch.as_of, debts)));
                let facts = Facts::with_debts(after, epoch.as_of, debts);
                come.add(&facts);
                for rank in facts.ranks(epoch.market_rate) {
                    if !epoch.cuts.lists(rank) {
                        continue;
                    }
                    let key = keys::dashboard_entry(
                        tenant,
                        &epoch.id,
                        rank.list(),
                        &rank.key(),
                        after.id,
                    );
                    removed.remove(&key);
                    added.push(Item::new(key, to_attributes(&facts.summary())?));
                }
            }
        }
        let mut delta = come.into_totals();
        delta.merge(&gone.into_totals(), -1);
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
        Ok(LedgerWrites { ops, facts: stored })
    }
}

async fn read_epoch(
    table: &dyn Table,
    tenant: TenantId,
) -> Result<Option<(Epoch, u64)>, StoreError> {
    match table.get(&keys::portfolio_epoch(tenant)).await? {
        Some(item) => {
            let version = item.version;
            Ok(Some((from_item::<Epoch>(item)?, version)))
        }
        None => Ok(None),
    }
}

/// Prepares many contracts for counting (an import): tightens the epoch's [`Cuts`] to
/// those that keep [`LIST_KEPT`] of a sample of them, so the import writes list entries
/// for a few of its contracts instead of one per contract (or per extended one). The
/// contract at place [`LIST_KEPT`] of a sample never ranks before the one at that place
/// of all, so the cuts stay looser than a rebuild would set; a sample of every `n`th row
/// lists about `n` × [`LIST_KEPT`] of them. Each list still holds every contract within
/// its cut: one already written was listed under the looser cut (and its entry stays
/// until it changes or the next rebuild), and the ledger lists the new ones within it.
///
/// Returns the facts it computed, by position (the ledger reuses them; it computes the
/// others itself, beside the store's writer), and none before the first dashboard
/// (there is no day to count on). Tightening the cuts is only a saving: when a change
/// moves the epoch meanwhile, they are left as they are.
pub async fn prepare_bulk(
    table: &dyn Table,
    tenant: TenantId,
    contracts: &[&Contract],
) -> Result<Vec<Option<StoredFacts>>, StoreError> {
    let Some((mut epoch, version)) = read_epoch(table, tenant).await? else {
        return Ok(Vec::new());
    };
    let (as_of, market) = (epoch.as_of, epoch.market_rate);
    let every = contracts.len().div_ceil(CUT_SAMPLE).max(1);
    let mut facts: Vec<Option<StoredFacts>> = vec![None; contracts.len()];
    let mut ranks = Vec::new();
    for (index, contract) in contracts.iter().enumerate().step_by(every) {
        let computed = StoredFacts::of(contract, as_of);
        ranks.extend(Facts::with_debts(contract, as_of, computed.debts).ranks(market));
        facts[index] = Some(computed);
    }
    let cuts = epoch.cuts.tightened(Cuts::keeping(ranks));
    if cuts != epoch.cuts {
        epoch.cuts = cuts;
        let item = Item::new(keys::portfolio_epoch(tenant), to_attributes(&epoch)?)
            .with_version(version + 1);
        match table.put(item, Condition::VersionIs(version)).await {
            Ok(()) | Err(StoreError::ConditionFailed) => {}
            Err(other) => return Err(other),
        }
    }
    Ok(facts)
}

/// The version an item written over `current` (`None`: a new item) gets.
fn next_version(current: Option<u64>) -> u64 {
    current.map_or(1, |version| version + 1)
}

/// Contracts of an import whose facts [`prepare_bulk`] computes to set the cuts.
const CUT_SAMPLE: usize = 4_096;

/// What a [`Ledger`] adds to a contract transaction.
pub struct LedgerWrites {
    /// The aggregate's own writes.
    pub ops: Vec<WriteOp>,
    /// The facts each contract written was counted with, for its item.
    pub facts: Vec<(ContractId, StoredFacts)>,
}

impl LedgerWrites {
    /// Adds the facts to the puts of their contracts among `ops`, so each contract item
    /// carries the facts the aggregate counted it with.
    fn stamp(&self, tenant: TenantId, ops: &mut [WriteOp]) -> Result<(), StoreError> {
        for (id, facts) in &self.facts {
            let key = keys::contract(tenant, *id);
            for op in ops.iter_mut() {
                if let WriteOp::Put { item, .. } = op
                    && item.key == key
                {
                    facts.stamp(item)?;
                }
            }
        }
        Ok(())
    }
}

/// Commits `ops` with the portfolio's share of `changes`, again with a fresh ledger when
/// the aggregate moved to a new epoch in between. The puts of the changed contracts in
/// `ops` get the facts they are counted with ([`StoredFacts`]). Errors of `ops`
/// themselves come back as the store reported them.
pub async fn commit_with_portfolio(
    table: &dyn Table,
    tenant: TenantId,
    ops: Vec<WriteOp>,
    changes: &[LedgerChange<'_>],
    totals: TotalsWrite,
) -> Result<(), StoreError> {
    let own = ops.len();
    for attempt in 0..COMMIT_ATTEMPTS {
        let ledger = Ledger::load(table, tenant).await?;
        let writes = ledger.ops(tenant, changes, totals)?;
        let mut all = ops.clone();
        writes.stamp(tenant, &mut all)?;
        all.extend(writes.ops);
        match table.transact_write(all).await {
            // Only the portfolio's own conditions failed (a new epoch): count again.
            Err(StoreError::TransactionCanceled { failed })
                if !failed.is_empty() && failed.iter().all(|&index| index >= own) =>
            {
                continue;
            }
            // No condition failed: another transaction held one of the items (DynamoDB's
            // `TransactionConflict`; every change of a tenant touches its epoch) or the
            // table was throttled. Nothing was written; wait a little and try again.
            Err(StoreError::TransactionCanceled { failed }) if failed.is_empty() => {
                tokio::time::sleep(conflict_backoff(attempt)).await;
                continue;
            }
            other => return other,
        }
    }
    Err(StoreError::TransactionCanceled { failed: Vec::new() })
}

/// Attempts of one change against a moving epoch or concurrent transactions.
const COMMIT_ATTEMPTS: u32 = 8;

/// How long to wait after the `attempt`th conflict: doubling from 4 ms up to 256 ms, and
/// a random part as large again, so transactions that collided do not collide again.
fn conflict_backoff(attempt: u32) -> std::time::Duration {
    let base = 4_u64 << attempt.min(6);
    // The random bits of a version 7 UUID.
    let jitter = (uuid::Uuid::now_v7().as_u128() as u64) % (base + 1);
    std::time::Duration::from_millis(base + jitter)
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
    /// Contracts counted with the facts stored with them (for this day): no schedule.
    pub facts_reused: usize,
    /// Contracts whose facts were computed from their schedule: stored for another day
    /// (the nightly roll had not refreshed them yet), or not at all.
    pub facts_computed: usize,
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
    /// Transactions of list entries in flight at once.
    transactions_in_flight: usize,
}

impl PortfolioService {
    pub fn new(table: Arc<dyn Table>, clock: Arc<dyn Clock>, defaults: PortfolioSettings) -> Self {
        let rates = RateService::new(table.clone(), clock.clone(), Vec::new());
        Self {
            table,
            clock,
            rates,
            defaults,
            transactions_in_flight: ENTRY_TRANSACTIONS_IN_FLIGHT,
        }
    }

    /// Writes the dashboard's list entries with at most `transactions` in flight at
    /// once (at least one): for a store that takes concurrent transactions badly, such
    /// as moto's DynamoDB.
    pub fn with_transactions_in_flight(mut self, transactions: usize) -> Self {
        self.transactions_in_flight = transactions.max(1);
        self
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
    fold_pending_passes(table, tenant, usize::MAX).await
}

/// [`fold_pending`] in at most `passes` transactions (each folds up to 99): an import
/// folds as it goes without chasing the differences its own writes keep adding.
pub(crate) async fn fold_pending_passes(
    table: &dyn Table,
    tenant: TenantId,
    passes: usize,
) -> Result<(), PortfolioError> {
    let pending_prefix = keys::portfolio_pending(tenant, "").sk;
    let mut conflicts = 0;
    let mut folded_passes = 0;
    while folded_passes < passes {
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
            item: Item::new(keys::portfolio_totals(tenant), folded.to_attributes())
                .with_version(version + 1),
            condition: Condition::VersionIs(version),
        });
        match table.transact_write(ops).await {
            Ok(()) => {
                conflicts = 0;
                folded_passes += 1;
            }
            // A change to the totals, or another fold, came first: read again.
            Err(StoreError::TransactionCanceled { .. }) if conflicts < 20 => conflicts += 1,
            Err(StoreError::TransactionCanceled { .. }) => return Err(PortfolioError::Contention),
            Err(other) => return Err(other.into()),
        }
    }
    Ok(())
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
        Ok(self.rebuild_reading(tenant).await?.report)
    }

    /// [`Self::rebuild`], keeping the contracts it read and the facts it had to compute.
    async fn rebuild_reading(&self, tenant: TenantId) -> Result<Rebuilt, PortfolioError> {
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
            let Tallied {
                totals,
                mut entries,
                computed,
            } = tally(&contracts, as_of, market);
            let epoch = Epoch {
                id: uuid::Uuid::now_v7().simple().to_string(),
                as_of,
                market_rate: market,
                built_at: self.clock.now(),
                cuts: Cuts::keeping(entries.iter().map(|entry| entry.rank)),
            };
            entries.retain(|entry| epoch.cuts.lists(entry.rank));
            let computation = started.elapsed();

            let mut puts = Vec::with_capacity(entries.len());
            for entry in entries {
                let contract = &contracts[entry.contract].contract;
                let summary =
                    ContractSummary::new(contract, contract.status_on(as_of), entry.leasing_debt);
                puts.push(WriteOp::Put {
                    item: Item::new(
                        keys::dashboard_entry(
                            tenant,
                            &epoch.id,
                            entry.rank.list(),
                            &entry.rank.key(),
                            contract.id,
                        ),
                        to_attributes(&summary)?,
                    ),
                    condition: Condition::None,
                });
            }
            self.write_in_batches(puts).await?;

            let flip = vec![
                // A put under a version condition stores the next version itself: the
                // ledger's fence and the next rebuild's check rely on it moving.
                WriteOp::Put {
                    item: Item::new(keys::portfolio_epoch(tenant), to_attributes(&epoch)?)
                        .with_version(next_version(stored.epoch.as_ref().map(|(_, v)| *v))),
                    condition: match &stored.epoch {
                        Some((_, version)) => Condition::VersionIs(*version),
                        None => Condition::NotExists,
                    },
                },
                WriteOp::Put {
                    item: Item::new(keys::portfolio_totals(tenant), totals.to_attributes())
                        .with_version(next_version(stored.totals.as_ref().map(|(_, v)| *v))),
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
                    return Ok(Rebuilt {
                        report: RecomputeReport {
                            as_of,
                            previous_as_of: previous,
                            contracts: contracts.len(),
                            differences,
                            facts_reused: contracts.len() - computed.len(),
                            facts_computed: computed.len(),
                            computation_micros: duration_micros(computation),
                        },
                        contracts,
                        computed,
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

    async fn all_contracts(&self, tenant: TenantId) -> Result<Vec<StoredContract>, StoreError> {
        let today = self.clock.today();
        let query = Query::partition(keys::tenant_partition(tenant))
            .begins_with(keys::CONTRACT_PREFIX)
            .limit(1000);
        query_all(self.table.as_ref(), query)
            .await?
            .into_iter()
            .map(|item| StoredContract::from_item(item, today))
            .collect()
    }

    /// Stores `computed` facts in the items of the contracts they were computed from,
    /// each only if the contract is still the version read: a contract changed since
    /// carries the facts of its own write. The contract's version (its ETag) and audit
    /// trail stay as they are, as the facts are derived data, not a change. Puts of the
    /// item as read, a bounded number in flight (DynamoDB has no conditional batch write).
    async fn store_facts(
        &self,
        tenant: TenantId,
        contracts: &[StoredContract],
        computed: Vec<(usize, StoredFacts)>,
        report: &mut RollReport,
    ) -> Result<(), StoreError> {
        let started = Instant::now();
        let writes = computed.into_iter().filter_map(|(index, facts)| {
            let contract = &contracts.get(index)?.contract;
            Some(async move {
                let mut item = contract.item(tenant)?;
                facts.stamp(&mut item)?;
                match self
                    .table
                    .put(item, Condition::VersionIs(contract.version))
                    .await
                {
                    Ok(()) => Ok(true),
                    // Changed or deleted since it was read.
                    Err(StoreError::ConditionFailed) => Ok(false),
                    Err(other) => Err(other),
                }
            })
        });
        let mut writes = futures_util::stream::iter(writes).buffer_unordered(FACTS_IN_FLIGHT);
        while let Some(written) = writes.next().await {
            if written? {
                report.facts_written += 1;
            } else {
                report.facts_skipped += 1;
            }
        }
        report.write_micros = duration_micros(started.elapsed());
        Ok(())
    }

    /// Moves one organization's figures to today (a rebuild, unless they are of today
    /// already) and stores the day's facts in every contract whose stored ones are for
    /// another day, then notes that in its registration so the roll passes it by until
    /// the next day. What the nightly roll does for each organization.
    pub async fn roll(&self, tenant: TenantId) -> Result<RollReport, PortfolioError> {
        let today = self.clock.today();
        let stored = self.read(tenant).await?;
        let rebuild = stored.epoch.is_none_or(|(epoch, _)| epoch.as_of != today);
        let (contracts, computed, compute_micros) = if rebuild {
            let rebuilt = self.rebuild_reading(tenant).await?;
            let micros = rebuilt.report.computation_micros;
            (rebuilt.contracts, rebuilt.computed, micros)
        } else {
            let contracts = self.all_contracts(tenant).await?;
            let started = Instant::now();
            let computed: Vec<(usize, StoredFacts)> = contracts
                .iter()
                .enumerate()
                .filter(|(_, stored)| stored.stored_debts(today).is_none())
                .map(|(index, stored)| (index, StoredFacts::of(&stored.contract, today)))
                .collect();
            (contracts, computed, duration_micros(started.elapsed()))
        };
        let mut report = RollReport {
            rebuilt: rebuild,
            contracts: contracts.len(),
            facts_computed: computed.len(),
            compute_micros,
            ..RollReport::default()
        };
        self.store_facts(tenant, &contracts, computed, &mut report)
            .await?;
        let mut registration = Attributes::new();
        registration.insert(
            FACTS_DAY_ATTRIBUTE.to_owned(),
            serde_json::Value::String(today.to_string()),
        );
        self.table
            .put(
                Item::new(keys::portfolio_registration(tenant), registration),
                Condition::None,
            )
            .await?;
        Ok(report)
    }

    async fn write_in_batches(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        let mut batches = Vec::new();
        let mut ops = ops.into_iter().peekable();
        while ops.peek().is_some() {
            batches.push(ops.by_ref().take(ENTRY_BATCH).collect::<Vec<_>>());
        }
        // A few at a time: the store groups concurrent commits.
        for group in batches.chunks(self.transactions_in_flight) {
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

    /// Rebuilds every organization's aggregate that is not as of today and stores the
    /// day's facts in every contract whose stored ones are for another day (the nightly
    /// roll); returns how many aggregates were rebuilt. One failing organization does not
    /// stop the others.
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
                let facts_day = item
                    .attributes
                    .get(FACTS_DAY_ATTRIBUTE)
                    .and_then(|day| day.as_str()?.parse::<NaiveDate>().ok());
                let current = self.read(tenant).await?;
                if current.epoch.is_some_and(|(epoch, _)| epoch.as_of == today)
                    && facts_day == Some(today)
                {
                    continue;
                }
                match self.roll(tenant).await {
                    Ok(report) => {
                        rolled += usize::from(report.rebuilt);
                        tracing::info!(
                            %tenant,
                            rebuilt = report.rebuilt,
                            contracts = report.contracts,
                            facts_computed = report.facts_computed,
                            facts_written = report.facts_written,
                            facts_skipped = report.facts_skipped,
                            compute_micros = report.compute_micros,
                            write_micros = report.write_micros,
                            "portfolio rolled"
                        );
                    }
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
        let mut rebuilt = false;
        let (stored, totals, epoch, savings, extended) = loop {
            let stored = self.read(tenant).await?;
            if !rebuilt
                && stored
                    .epoch
                    .as_ref()
                    .is_none_or(|(epoch, _)| epoch.as_of != today)
            {
                // The first read of a day the nightly roll has not reached (or ever).
                self.rebuild(tenant).await?;
                rebuilt = true;
                continue;
            }
            let (Some(totals), Some((epoch, _))) = (stored.current_totals(), &stored.epoch) else {
                return Err(PortfolioError::Contention);
            };
            let epoch = epoch.clone();
            let savings = self
                .list(tenant, &epoch.id, SAVINGS_LIST, TOP_SAVINGS)
                .await?;
            let extended = self
                .list(tenant, &epoch.id, EXTENDED_LIST, LIST_LENGTH)
                .await?;
            let cuts = &epoch.cuts;
            let saving = |summary: &ContractSummary| {
                Rank::Saving(summary.potential(epoch.market_rate).total())
            };
            let overdue = |summary: &ContractSummary| Rank::Overdue(summary.end_date);
            if !rebuilt
                && (runs_short(
                    cuts.savings_floor.is_some(),
                    cuts,
                    savings.iter().map(saving),
                    TOP_SAVINGS,
                ) || runs_short(
                    cuts.extended_through.is_some(),
                    cuts,
                    extended.iter().map(overdue),
                    LIST_LENGTH,
                ))
            {
                // Changes took so many from a list's head that contracts beyond its cut
                // may belong in it now: only a rebuild knows which.
                self.rebuild(tenant).await?;
                rebuilt = true;
                continue;
            }
            break (stored, totals, epoch, savings, extended);
        };
        let settings = stored.settings.unwrap_or_else(|| self.defaults.clone());
        let market = self.market_rate(&settings.benchmark, today).await?;
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
                ending.push(Facts::of(&contract, today).summary());
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

/// Whether a list's head, read `shown` long and ranked `ranks`, holds fewer than `shown`
/// entries within its cut while the list has one (`cut`): contracts beyond the cut are
/// not listed, and one of them may belong in the head now.
fn runs_short(cut: bool, cuts: &Cuts, ranks: impl Iterator<Item = Rank>, shown: usize) -> bool {
    cut && ranks.filter(|rank| cuts.lists(*rank)).count() < shown
}

/// What a rebuild read and computed, for the roll to store.
struct Rebuilt {
    report: RecomputeReport,
    contracts: Vec<StoredContract>,
    /// Facts computed for contracts (by index) whose stored ones were missing or stale.
    computed: Vec<(usize, StoredFacts)>,
}

/// What rolling one organization to the day did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RollReport {
    /// Whether its figures were rebuilt (they were of another day).
    pub rebuilt: bool,
    pub contracts: usize,
    /// Contracts whose stored facts were missing or of another day.
    pub facts_computed: usize,
    /// Contracts that got the day's facts.
    pub facts_written: usize,
    /// Contracts changed or deleted since they were read: a change stores its own facts.
    pub facts_skipped: usize,
    /// Time computing: the rebuild's computation, or the facts alone.
    pub compute_micros: u64,
    /// Time writing the facts.
    pub write_micros: u64,
}

/// The registration attribute that says which day's facts the roll last stored.
const FACTS_DAY_ATTRIBUTE: &str = "factsAsOf";
/// Fact writes of the nightly roll in flight at once.
const FACTS_IN_FLIGHT: usize = 64;
/// Transactions of dashboard list entries in flight at once, unless the service says
/// otherwise.
const ENTRY_TRANSACTIONS_IN_FLIGHT: usize = 8;

/// A list entry to write: the contract (by index), its rank, and its debt today.
struct ListEntry {
    contract: usize,
    rank: Rank,
    leasing_debt: Option<i64>,
}

/// The sums and list entries of a set of contracts on one day.
struct Tallied {
    totals: Totals,
    entries: Vec<ListEntry>,
    /// Facts computed because the stored ones were missing or for another day.
    computed: Vec<(usize, StoredFacts)>,
}

/// The totals and list entries of `contracts` on `as_of`: from each contract's stored
/// facts when they are for `as_of`, else from its schedule. Split over two threads
/// when there are enough contracts to pay for them.
fn tally(contracts: &[StoredContract], as_of: NaiveDate, market: Option<Decimal>) -> Tallied {
    let threads = if contracts.len() < PARALLEL_FROM {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    };
    let chunk = contracts.len().div_ceil(threads).max(1);
    let parts: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = contracts
            .chunks(chunk)
            .enumerate()
            .map(|(n, part)| scope.spawn(move || tally_part(n * chunk, part, as_of, market)))
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
    let mut tally = Tally::default();
    let mut entries = Vec::new();
    let mut computed = Vec::new();
    for (part_tally, part_entries, part_computed) in parts {
        tally.absorb(part_tally);
        entries.extend(part_entries);
        computed.extend(part_computed);
    }
    Tallied {
        totals: tally.into_totals(),
        entries,
        computed,
    }
}

/// Fewer contracts are tallied on the calling thread: a thread costs more than they do.
const PARALLEL_FROM: usize = 20_000;

/// One thread's share of [`tally`]: `part` starts at index `first` of all contracts.
fn tally_part(
    first: usize,
    part: &[StoredContract],
    as_of: NaiveDate,
    market: Option<Decimal>,
) -> (Tally<'_>, Vec<ListEntry>, Vec<(usize, StoredFacts)>) {
    let mut tally = Tally::default();
    let mut entries = Vec::new();
    let mut computed = Vec::new();
    for (index, stored) in (first..).zip(part) {
        let debts = match stored.stored_debts(as_of) {
            Some(debts) => debts,
            None => {
                let debts = debt_series(&stored.contract, as_of);
                computed.push((index, StoredFacts::new(as_of, debts)));
                debts
            }
        };
        let facts = Facts::with_debts(&stored.contract, as_of, debts);
        tally.add(&facts);
        for rank in facts.ranks(market) {
            entries.push(ListEntry {
                contract: index,
                rank,
                leasing_debt: facts.leasing_debt(),
            });
        }
    }
    (tally, entries, computed)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contracts::{PaymentTiming, RateReference};
    use crate::ids::UserId;
    use crate::money::Money;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn as_of() -> NaiveDate {
        d("2026-11-21")
    }

    /// A small deterministic generator, so a failure can be replayed.
    struct Spread(u64);

    impl Spread {
        fn next(&mut self, below: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % below
        }

        fn pick<'a>(&mut self, choices: &[&'a str]) -> &'a str {
            choices[self.next(choices.len() as u64) as usize]
        }
    }

    /// A contract of every kind the dashboard tells apart: all statuses, three
    /// currencies (one without a minor unit), fixed, variable and missing rates (and the
    /// same rate written two ways), every frequency and timing, residual values, lessors
    /// that need escaping or trimming, and missing or empty cost centers.
    fn varied(spread: &mut Spread) -> Contract {
        let user = UserId::generate();
        let currency = Currency::parse(spread.pick(&["SEK", "SEK", "EUR", "JPY"])).unwrap();
        let start = d("2018-01-31") + Days::new(spread.next(3500));
        let end = start
            .checked_add_months(Months::new(6 + spread.next(60) as u32))
            .unwrap();
        let termination_date = match spread.next(6) {
            0 => Some(start + Days::new(spread.next(1500))),
            _ => None,
        };
        let rate = match spread.next(8) {
            0 => None,
            1 => Some("4.5"),
            2 => Some("4.50"),
            3 => Some("-0.25"),
            4 => Some("0"),
            _ => Some(spread.pick(&["2.95", "3.1", "5.75", "7", "11.5"])),
        }
        .map(|rate| AnnualRate::parse(rate).unwrap());
        let variable = spread.next(4) == 0;
        Contract {
            id: ContractId::generate(),
            contract_number: format!("LC-{}", spread.next(1_000_000)),
            lessor: spread
                .pick(&[
                    "Volvofinans Bank AB",
                    " Volvofinans Bank AB ",
                    "Nordea Finans | Leasing",
                    "100% Leasing AB",
                    "Skåne Leasing AB",
                ])
                .to_owned(),
            description: "Objekt".into(),
            category: CATEGORIES[spread.next(5) as usize],
            registration_number: None,
            cost_center: match spread.next(5) {
                0 => None,
                1 => Some(String::new()),
                n => Some(format!("41{n}0")),
            },
            start_date: start,
            end_date: end,
            termination_date,
            payment: Money::new(100 + spread.next(5_000_000) as i64, currency).unwrap(),
            payment_frequency: [
                PaymentFrequency::Monthly,
                PaymentFrequency::Quarterly,
                PaymentFrequency::Yearly,
            ][spread.next(3) as usize],
            payment_timing: if spread.next(2) == 0 {
                PaymentTiming::Advance
            } else {
                PaymentTiming::Arrears
            },
            residual_value: (spread.next(3) == 0)
                .then(|| Money::new(spread.next(50_000_000) as i64, currency).unwrap()),
            interest_rate: if variable { None } else { rate },
            rate_reference: (variable && rate.is_some()).then(|| RateReference {
                series: SeriesId::parse("SWESTR").unwrap(),
                margin: AnnualRate::from_percent(Decimal::ONE),
            }),
            current_rate: rate,
            current_rate_date: None,
            notes: None,
            status: ContractStatus::Active,
            version: 1,
            created_at: Default::default(),
            updated_at: Default::default(),
            created_by: user,
            updated_by: user,
        }
    }

    fn portfolio(n: usize, seed: u64) -> Vec<Contract> {
        let mut spread = Spread(seed);
        (0..n).map(|_| varied(&mut spread)).collect()
    }

    fn stored(
        contracts: &[Contract],
        facts: impl Fn(&Contract) -> Option<StoredFacts>,
    ) -> Vec<StoredContract> {
        contracts
            .iter()
            .map(|contract| StoredContract {
                contract: contract.clone(),
                facts: facts(contract),
            })
            .collect()
    }

    /// The sum of every contract's own totals, as the writes add them up.
    fn sum_of_per_contract(contracts: &[Contract], day: NaiveDate) -> Totals {
        let mut sum = Totals::default();
        for contract in contracts {
            sum.merge(&Facts::of(contract, day).totals(), 1);
        }
        sum
    }

    fn nonzero(totals: &Totals) -> BTreeMap<String, i64> {
        totals
            .0
            .iter()
            .filter(|(_, value)| **value != 0)
            .map(|(name, value)| (name.clone(), *value))
            .collect()
    }

    /// The list entries as the ledger writes them: (list, rank key, contract).
    fn ledger_entries(
        contracts: &[Contract],
        market: Option<Decimal>,
    ) -> Vec<(String, String, ContractId)> {
        let mut entries: Vec<_> = contracts
            .iter()
            .flat_map(|contract| {
                Facts::of(contract, as_of())
                    .ranks(market)
                    .map(|rank| (rank.list().to_owned(), rank.key(), contract.id))
                    .collect::<Vec<_>>()
            })
            .collect();
        entries.sort();
        entries
    }

    fn tallied_entries(
        tallied: &Tallied,
        contracts: &[StoredContract],
    ) -> Vec<(String, String, ContractId)> {
        let mut entries: Vec<_> = tallied
            .entries
            .iter()
            .map(|entry| {
                (
                    entry.rank.list().to_owned(),
                    entry.rank.key(),
                    contracts[entry.contract].contract.id,
                )
            })
            .collect();
        entries.sort();
        entries
    }

    #[test]
    fn the_typed_tally_equals_the_sum_of_per_contract_totals() {
        for seed in [1, 2, 3] {
            let contracts = portfolio(600, seed);
            let market = Some(Decimal::new(325, 2));
            let expected = sum_of_per_contract(&contracts, as_of());
            // Every kind the generator promises is there, or the test proves little.
            for name in [
                "count|upcoming",
                "count|active",
                "count|ending",
                "count|extended",
                "count|terminated",
                "count|withoutRate",
                "rate|SEK|4.5",
                "rate|EUR|-0.25",
                "debt|JPY|0",
                "lessor|Nordea Finans %7C Leasing|count",
                "lessor|100%25 Leasing AB|count",
                "costCenter||count",
            ] {
                assert!(expected.get(name) > 0, "seed {seed}: no {name}");
            }
            assert!(!expected.0.keys().any(|name| name.contains("rate|SEK|4.50")));

            let without_facts = stored(&contracts, |_| None);
            let tallied = tally(&without_facts, as_of(), market);
            assert_eq!(nonzero(&tallied.totals), nonzero(&expected), "seed {seed}");
            assert_eq!(tallied.computed.len(), contracts.len());
            assert_eq!(
                tallied_entries(&tallied, &without_facts),
                ledger_entries(&contracts, market)
            );

            // Split anywhere and merged, as the threads do: the same sums.
            let (left, right) = without_facts.split_at(217);
            let (mut sums, _, _) = tally_part(0, left, as_of(), market);
            let (right_sums, _, _) = tally_part(217, right, as_of(), market);
            sums.absorb(right_sums);
            assert_eq!(nonzero(&sums.into_totals()), nonzero(&expected));
        }
    }

    #[test]
    fn a_tally_uses_stored_facts_only_when_they_are_for_its_day() {
        let contracts = portfolio(200, 7);
        let day_before = as_of().pred_opt().unwrap();
        let expected = sum_of_per_contract(&contracts, as_of());

        // Fresh facts: all reused, nothing computed, the same figures.
        let fresh = stored(&contracts, |c| Some(StoredFacts::of(c, as_of())));
        let tallied = tally(&fresh, as_of(), None);
        assert!(tallied.computed.is_empty());
        assert_eq!(nonzero(&tallied.totals), nonzero(&expected));

        // Facts of the day before, facts missing, facts of another format: computed,
        // and returned for the roll to store.
        let mut mixed = stored(&contracts, |c| Some(StoredFacts::of(c, day_before)));
        mixed[0].facts = None;
        mixed[1].facts = Some(StoredFacts {
            format: FACTS_FORMAT + 1,
            ..StoredFacts::of(&contracts[1], as_of())
        });
        mixed[2].facts = Some(StoredFacts::of(&contracts[2], as_of()));
        let tallied = tally(&mixed, as_of(), None);
        assert_eq!(nonzero(&tallied.totals), nonzero(&expected));
        assert_eq!(tallied.computed.len(), contracts.len() - 1);
        assert!(tallied.computed.iter().all(|(index, _)| *index != 2));
        for (index, facts) in &tallied.computed {
            assert_eq!(facts, &StoredFacts::of(&contracts[*index], as_of()));
        }

        // Stored facts for the day are trusted as they are: a tally reads them, not
        // the schedule (here one debt series is made up, and it shows).
        let mut trusted = stored(&contracts, |c| Some(StoredFacts::of(c, as_of())));
        let with_debt = (0..contracts.len())
            .find(|&i| trusted[i].facts.as_ref().unwrap().debts.is_some())
            .unwrap();
        let currency = contracts[with_debt].payment.currency;
        if let Some(facts) = trusted[with_debt].facts.as_mut() {
            facts.debts = Some([1_000_000_000; SERIES_POINTS]);
        }
        let tallied = tally(&trusted, as_of(), None);
        let name = counter::debt(currency, -SERIES_MONTHS);
        let before = expected.get(&name);
        let made_up = stored(&contracts[with_debt..=with_debt], |c| {
            Some(StoredFacts::of(c, as_of()))
        })[0]
            .facts
            .as_ref()
            .unwrap()
            .debts
            .unwrap()[0];
        assert_eq!(tallied.totals.get(&name), before - made_up + 1_000_000_000);
        // ... but not for another day.
        if let Some(facts) = trusted[with_debt].facts.as_mut() {
            facts.as_of = day_before;
        }
        let tallied = tally(&trusted, as_of(), None);
        assert_eq!(tallied.totals.get(&name), before);
    }

    #[test]
    fn facts_travel_in_the_contract_item_and_old_items_still_read() {
        let tenant = TenantId::generate();
        let contracts = portfolio(50, 11);
        for contract in &contracts {
            let facts = StoredFacts::of(contract, as_of());
            let mut item = contract.item(tenant).unwrap();
            let old = item.clone();
            facts.stamp(&mut item).unwrap();
            let size = serde_json::to_string(&item.attributes[FACTS_ATTRIBUTE])
                .unwrap()
                .len();
            assert!(size < 400, "{size} bytes of facts");

            let read = StoredContract::from_item(item.clone(), as_of()).unwrap();
            assert_eq!(read.facts.as_ref(), Some(&facts));
            assert_eq!(read.contract, Contract::from_item(item, as_of()).unwrap());
            assert_eq!(
                read.contract,
                Contract::from_item(old.clone(), as_of()).unwrap()
            );

            // An item from before facts were stored, or with facts this release cannot
            // read: the contract reads, the facts are missing.
            let before = StoredContract::from_item(old.clone(), as_of()).unwrap();
            assert!(before.facts.is_none());
            let mut garbled = old;
            garbled
                .attributes
                .insert(FACTS_ATTRIBUTE.into(), serde_json::json!({"asOf": "soon"}));
            let garbled = StoredContract::from_item(garbled, as_of()).unwrap();
            assert!(garbled.facts.is_none());
            assert_eq!(garbled.contract, read.contract);
        }
    }

    #[test]
    fn the_ledger_stores_with_each_contract_the_facts_it_counts() {
        let tenant = TenantId::generate();
        let contracts = portfolio(3, 5);
        let (before, after, other) = (&contracts[0], &contracts[1], &contracts[2]);
        let ledger = Ledger {
            epoch: Some((
                Epoch {
                    id: "e1".into(),
                    as_of: as_of(),
                    market_rate: None,
                    built_at: Default::default(),
                    cuts: Cuts::default(),
                },
                3,
            )),
        };
        let writes = ledger
            .ops(
                tenant,
                &[
                    LedgerChange::updated(before, after),
                    LedgerChange::deleted(other),
                ],
                TotalsWrite::Increment,
            )
            .unwrap();
        assert_eq!(
            writes.facts,
            vec![(after.id, StoredFacts::of(after, as_of()))]
        );

        let mut ops = vec![
            WriteOp::Put {
                item: after.item(tenant).unwrap(),
                condition: Condition::VersionIs(1),
            },
            WriteOp::Put {
                item: other.item(tenant).unwrap(),
                condition: Condition::None,
            },
        ];
        writes.stamp(tenant, &mut ops).unwrap();
        let WriteOp::Put { item, .. } = &ops[0] else {
            panic!("a put");
        };
        let read = StoredContract::from_item(item.clone(), as_of()).unwrap();
        assert_eq!(read.facts, Some(StoredFacts::of(after, as_of())));
        let WriteOp::Put { item, .. } = &ops[1] else {
            panic!("a put");
        };
        assert!(!item.attributes.contains_key(FACTS_ATTRIBUTE));

        // Before the first dashboard there is no day to compute facts for.
        let none = Ledger { epoch: None }
            .ops(
                tenant,
                &[LedgerChange::created(after)],
                TotalsWrite::Increment,
            )
            .unwrap();
        assert!(none.facts.is_empty());
    }

    fn saving(contract: &Contract, market: Option<Decimal>) -> Option<i64> {
        Facts::of(contract, as_of())
            .ranks(market)
            .find_map(|rank| match rank {
                Rank::Saving(potential) => Some(potential),
                Rank::Overdue(_) => None,
            })
    }

    fn overdue(contract: &Contract) -> Option<NaiveDate> {
        Facts::of(contract, as_of())
            .ranks(None)
            .find_map(|rank| match rank {
                Rank::Overdue(end_date) => Some(end_date),
                Rank::Saving(_) => None,
            })
    }

    #[test]
    fn the_ledger_lists_each_list_within_its_cut_and_always_removes_old_entries() {
        let tenant = TenantId::generate();
        let market = Some(Decimal::ZERO);
        let contracts = portfolio(60, 13);
        let mut potentials: Vec<i64> = contracts.iter().filter_map(|c| saving(c, market)).collect();
        let mut end_dates: Vec<NaiveDate> = contracts.iter().filter_map(overdue).collect();
        assert!(potentials.len() > 20, "too few with a potential to tell");
        assert!(end_dates.len() > 10, "too few extended to tell");
        potentials.sort_unstable();
        end_dates.sort_unstable();
        let floor = potentials[potentials.len() / 2];
        let through = end_dates[end_dates.len() / 2];
        let epoch = |cuts| Ledger {
            epoch: Some((
                Epoch {
                    id: "e1".into(),
                    as_of: as_of(),
                    market_rate: market,
                    built_at: Default::default(),
                    cuts,
                },
                3,
            )),
        };
        let puts = |ledger: &Ledger, changes: &[LedgerChange], list: &str| {
            ledger
                .ops(tenant, changes, TotalsWrite::Increment)
                .unwrap()
                .ops
                .into_iter()
                .filter(|op| matches!(op, WriteOp::Put { item, .. } if item.key.sk.contains(list)))
                .count()
        };
        let created: Vec<LedgerChange> = contracts.iter().map(LedgerChange::created).collect();
        let cut = epoch(Cuts {
            savings_floor: Some(floor),
            extended_through: Some(through),
        });
        let above = contracts
            .iter()
            .filter(|c| saving(c, market).is_some_and(|p| p >= floor))
            .count();
        let through_or_before = contracts
            .iter()
            .filter(|c| overdue(c).is_some_and(|end| end <= through))
            .count();
        assert_eq!(puts(&cut, &created, "#SAV#"), above);
        assert_eq!(puts(&cut, &created, "#EXT#"), through_or_before);
        assert!(through_or_before < end_dates.len());
        let uncut = epoch(Cuts::default());
        assert_eq!(puts(&uncut, &created, "#SAV#"), potentials.len());
        assert_eq!(puts(&uncut, &created, "#EXT#"), end_dates.len());

        // A deleted contract's entries go whatever the cuts: they may have been listed
        // under looser ones.
        let low = contracts
            .iter()
            .find(|c| {
                saving(c, market).is_some_and(|p| p < floor)
                    && overdue(c).is_some_and(|end| end > through)
            })
            .unwrap();
        let deletes = |list: &str| {
            cut.ops(
                tenant,
                &[LedgerChange::deleted(low)],
                TotalsWrite::Increment,
            )
            .unwrap()
            .ops
            .into_iter()
            .filter(|op| matches!(op, WriteOp::Delete { key, .. } if key.sk.contains(list)))
            .count()
        };
        assert_eq!(deletes("#SAV#"), 1);
        assert_eq!(deletes("#EXT#"), 1);
    }

    #[test]
    fn the_ledger_uses_facts_given_for_its_day_and_computes_the_others() {
        let tenant = TenantId::generate();
        let contract = &portfolio(5, 17)
            .into_iter()
            .find(|c| debt_series(c, as_of()).is_some())
            .unwrap();
        let ledger = Ledger {
            epoch: Some((
                Epoch {
                    id: "e1".into(),
                    as_of: as_of(),
                    market_rate: None,
                    built_at: Default::default(),
                    cuts: Cuts::default(),
                },
                1,
            )),
        };
        let made_up = StoredFacts::new(as_of(), Some([7; SERIES_POINTS]));
        let writes = ledger
            .ops(
                tenant,
                &[LedgerChange::created(contract).with_facts(Some(&made_up))],
                TotalsWrite::Increment,
            )
            .unwrap();
        assert_eq!(writes.facts, vec![(contract.id, made_up)]);

        let yesterday = StoredFacts::new(as_of().pred_opt().unwrap(), Some([7; SERIES_POINTS]));
        let writes = ledger
            .ops(
                tenant,
                &[LedgerChange::created(contract).with_facts(Some(&yesterday))],
                TotalsWrite::Increment,
            )
            .unwrap();
        assert_eq!(
            writes.facts,
            vec![(contract.id, StoredFacts::of(contract, as_of()))]
        );
    }

    #[test]
    fn the_cuts_are_at_the_kept_place_of_each_list() {
        let day = |n: usize| as_of() - Days::new(n as u64);
        let few: Vec<Rank> = (1..=LIST_KEPT)
            .flat_map(|n| [Rank::Saving(n as i64), Rank::Overdue(day(n))])
            .collect();
        assert_eq!(Cuts::keeping(few), Cuts::default());
        // Largest potential first, longest overdue (earliest end) first.
        let many: Vec<Rank> = (1..=3 * LIST_KEPT)
            .flat_map(|n| [Rank::Saving(n as i64), Rank::Overdue(day(n))])
            .collect();
        let cuts = Cuts::keeping(many.iter().copied());
        assert_eq!(cuts.savings_floor, Some(2 * LIST_KEPT as i64 + 1));
        assert_eq!(cuts.extended_through, Some(day(2 * LIST_KEPT + 1)));
        assert_eq!(
            many.iter().filter(|rank| cuts.lists(**rank)).count(),
            2 * LIST_KEPT
        );
        // Ties at the cut all stay listed.
        let tied: Vec<Rank> = (0..2 * LIST_KEPT)
            .flat_map(|_| [Rank::Saving(5), Rank::Overdue(day(9))])
            .collect();
        let cuts = Cuts::keeping(tied);
        assert_eq!(cuts.savings_floor, Some(5));
        assert_eq!(cuts.extended_through, Some(day(9)));

        // Tightening keeps the higher floor and the earlier date; no cut is the loosest.
        let loose = Cuts {
            savings_floor: Some(3),
            extended_through: Some(day(2)),
        };
        let tight = Cuts {
            savings_floor: Some(7),
            extended_through: Some(day(8)),
        };
        assert_eq!(loose.tightened(tight), tight);
        assert_eq!(tight.tightened(loose), tight);
        assert_eq!(Cuts::default().tightened(loose), loose);
        assert_eq!(loose.tightened(Cuts::default()), loose);
    }
}
