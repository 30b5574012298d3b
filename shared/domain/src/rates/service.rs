//! The rates service: the catalogue of series, their observations, the poller that
//! keeps them current from the feeds, and currency conversion.

use super::feed::{FetchRequest, RateFeed};
use super::{Observation, SeriesId, SeriesKind, Source};
use crate::clock::Clock;
use crate::keys;
use crate::money::{Currency, Money};
use crate::store::{Condition, Item, Query, StoreError, Table, from_item, to_attributes};
use chrono::{DateTime, Days, NaiveDate, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// A series as the catalogue keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeriesInfo {
    pub id: SeriesId,
    pub source: Source,
    pub kind: SeriesKind,
    pub description: String,
    /// The source no longer publishes it; its last value is history, not today's rate.
    pub closed: bool,
    pub last_observation: Option<Observation>,
    /// When a poll last fetched it without error.
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
}

impl SeriesInfo {
    /// Days since the last observation; `None` for closed series and ones never seen.
    pub fn staleness_days(&self, today: NaiveDate) -> Option<i64> {
        if self.closed {
            return None;
        }
        self.last_observation
            .map(|observation| (today - observation.date).num_days())
    }
}

/// What one poll did to one series.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeriesPoll {
    pub series: SeriesId,
    pub source: Source,
    /// Observations stored by this poll (0 when they were all known already).
    pub stored: usize,
    pub last_observation_date: Option<NaiveDate>,
    pub closed: bool,
    pub staleness_days: Option<i64>,
    pub error: Option<String>,
}

/// What one poll did, per source and per series.
#[derive(Clone, Debug, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PollReport {
    pub series: Vec<SeriesPoll>,
    /// Sources that could not be reached at all, with the reason.
    pub unreachable: Vec<(Source, String)>,
    /// Contracts whose current rate followed a new observation.
    pub contracts_repriced: usize,
}

impl PollReport {
    pub fn stored(&self) -> usize {
        self.series.iter().map(|s| s.stored).sum()
    }
}

/// A conversion between two currencies.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Conversion {
    pub amount: Money,
    pub converted: Money,
    /// Units of the target currency for one unit of the source currency.
    #[schema(value_type = String, example = "11.2345")]
    #[serde(with = "rust_decimal::serde::str")]
    pub rate: Decimal,
    /// The day whose rates were used: the day asked for or the last one before it.
    pub rate_date: NaiveDate,
    pub source: Source,
}

#[derive(Debug, thiserror::Error)]
pub enum RatesError {
    #[error("no such series")]
    UnknownSeries,
    #[error("no exchange rate for {from}/{to} on or before {date}")]
    NoRate {
        from: Currency,
        to: Currency,
        date: NaiveDate,
    },
    #[error("the amount is too large to convert")]
    Overflow,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The sources consulted for exchange rates, in order of preference: the official
/// reference rates first.
const FX_PREFERENCE: [Source; 3] = [Source::Ecb, Source::Riksbank, Source::Fixer];

pub struct RateService {
    table: Arc<dyn Table>,
    clock: Arc<dyn Clock>,
    feeds: Vec<Arc<dyn RateFeed>>,
    backfill_days: u64,
}

impl RateService {
    /// How far back a series that was never stored is fetched.
    pub const DEFAULT_BACKFILL_DAYS: u64 = 400;

    pub fn new(
        table: Arc<dyn Table>,
        clock: Arc<dyn Clock>,
        feeds: Vec<Arc<dyn RateFeed>>,
    ) -> Self {
        Self {
            table,
            clock,
            feeds,
            backfill_days: Self::DEFAULT_BACKFILL_DAYS,
        }
    }

    pub fn with_backfill_days(mut self, days: u64) -> Self {
        self.backfill_days = days;
        self
    }

    pub fn today(&self) -> NaiveDate {
        self.clock.today()
    }

    /// Every series we follow, by id.
    pub async fn catalogue(&self) -> Result<Vec<SeriesInfo>, RatesError> {
        catalogue(self.table.as_ref()).await
    }

    pub async fn series(&self, id: &SeriesId) -> Result<SeriesInfo, RatesError> {
        series_info(self.table.as_ref(), id)
            .await?
            .ok_or(RatesError::UnknownSeries)
    }

    /// The observations of `id` from `from` to `to`, inclusive, oldest first.
    pub async fn observations(
        &self,
        id: &SeriesId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<Observation>, RatesError> {
        self.series(id).await?;
        let mut observations = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .table
                .query(
                    Query::partition(keys::rate_observations_partition(id))
                        .between(from.to_string(), to.to_string())
                        .limit(1000)
                        .start_after(after.take()),
                )
                .await?;
            for item in page.items {
                observations.push(from_item::<Observation>(item)?);
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(observations),
            }
        }
    }

    /// The last observation of `id` on or before `day`.
    pub async fn observation_on_or_before(
        &self,
        id: &SeriesId,
        day: NaiveDate,
    ) -> Result<Option<Observation>, RatesError> {
        let page = self
            .table
            .query(
                Query::partition(keys::rate_observations_partition(id))
                    .between("0000-01-01", day.to_string())
                    .backward()
                    .limit(1),
            )
            .await?;
        match page.items.into_iter().next() {
            Some(item) => Ok(Some(from_item(item)?)),
            None => Ok(None),
        }
    }

    /// Converts `amount` minor units of `from` into `to` at the rates of `day` (today by
    /// default) or the last day before it, derived through the source's base currency.
    /// The result is rounded half to even to the target's minor unit.
    pub async fn convert(
        &self,
        amount: Money,
        to: Currency,
        day: Option<NaiveDate>,
    ) -> Result<Conversion, RatesError> {
        let day = day.unwrap_or_else(|| self.today());
        let from = amount.currency;
        if from == to {
            return Ok(Conversion {
                amount,
                converted: amount,
                rate: Decimal::ONE,
                rate_date: day,
                source: Source::Ecb,
            });
        }
        let catalogue = self.catalogue().await?;
        for source in FX_PREFERENCE {
            if let Some((rate, rate_date)) =
                self.cross_rate(&catalogue, source, from, to, day).await?
            {
                let converted = convert_minor(amount.amount, from, to, rate)?;
                return Ok(Conversion {
                    amount,
                    converted: Money::new(converted, to).map_err(|_| RatesError::Overflow)?,
                    rate,
                    rate_date,
                    source,
                });
            }
        }
        Err(RatesError::NoRate {
            from,
            to,
            date: day,
        })
    }

    /// `to` per `from` from one source, both legs published on the same day.
    async fn cross_rate(
        &self,
        catalogue: &[SeriesInfo],
        source: Source,
        from: Currency,
        to: Currency,
        day: NaiveDate,
    ) -> Result<Option<(Decimal, NaiveDate)>, RatesError> {
        let mut day = day;
        // Legs published on different days are moved to the earlier of the two; a few
        // rounds settle it (holidays differ little between currencies of one source).
        for _ in 0..5 {
            let from_leg = self.pivot_value(catalogue, source, from, day).await?;
            let to_leg = self.pivot_value(catalogue, source, to, day).await?;
            let (from_value, to_value, date) = match (from_leg, to_leg) {
                (Leg::Pivot, Leg::Pivot) | (_, Leg::Missing) | (Leg::Missing, _) => {
                    return Ok(None);
                }
                (Leg::Pivot, Leg::Quoted(value, date)) => (Fraction::ONE, value, date),
                (Leg::Quoted(value, date), Leg::Pivot) => (value, Fraction::ONE, date),
                (Leg::Quoted(from_value, from_date), Leg::Quoted(to_value, to_date)) => {
                    if from_date != to_date {
                        day = from_date.min(to_date);
                        continue;
                    }
                    (from_value, to_value, from_date)
                }
            };
            return Ok(from_value.over(to_value).map(|rate| (rate, date)));
        }
        Ok(None)
    }

    /// What one unit of `currency` is worth in the pivot currency of `source` (EUR for
    /// the ECB and Fixer, SEK for Riksbanken) on or before `day`.
    async fn pivot_value(
        &self,
        catalogue: &[SeriesInfo],
        source: Source,
        currency: Currency,
        day: NaiveDate,
    ) -> Result<Leg, RatesError> {
        if currency.code() == source.pivot_currency() {
            return Ok(Leg::Pivot);
        }
        for info in catalogue.iter().filter(|s| s.source == source) {
            let SeriesKind::ExchangeRate { base, quote } = info.kind else {
                continue;
            };
            // Either "pivot per unit" (Riksbanken: SEK per EUR) or "units per pivot"
            // (ECB: SEK per EUR, seen from SEK).
            let inverted = if base == currency && quote.code() == source.pivot_currency() {
                false
            } else if quote == currency && base.code() == source.pivot_currency() {
                true
            } else {
                continue;
            };
            let Some(observation) = self.observation_on_or_before(&info.id, day).await? else {
                continue;
            };
            if observation.value.is_zero() {
                continue;
            }
            let value = if inverted {
                Fraction {
                    numerator: Decimal::ONE,
                    denominator: observation.value,
                }
            } else {
                Fraction {
                    numerator: observation.value,
                    denominator: Decimal::ONE,
                }
            };
            return Ok(Leg::Quoted(value, observation.date));
        }
        Ok(Leg::Missing)
    }

    /// Fetches what is missing from every feed (or one source), stores it, and moves
    /// the contracts priced off a series that got a new value. One failing source
    /// never stops the others.
    pub async fn poll(&self, only: Option<Source>) -> Result<PollReport, RatesError> {
        let catalogue = self.catalogue().await?;
        let today = self.today();
        let backfill_from = today
            .checked_sub_days(Days::new(self.backfill_days))
            .unwrap_or(today);
        let feeds: Vec<&Arc<dyn RateFeed>> = self
            .feeds
            .iter()
            .filter(|feed| only.is_none_or(|source| feed.source() == source))
            .collect();
        let polls = feeds.into_iter().map(|feed| {
            let known: Vec<&SeriesInfo> = catalogue
                .iter()
                .filter(|s| s.source == feed.source())
                .collect();
            self.poll_feed(feed.clone(), known, today, backfill_from)
        });
        let mut report = PollReport::default();
        for result in futures_util::future::join_all(polls).await {
            let (source_report, repriced) = result?;
            report.series.extend(source_report.series);
            report.unreachable.extend(source_report.unreachable);
            report.contracts_repriced += repriced;
        }
        report.series.sort_by(|a, b| a.series.cmp(&b.series));
        Ok(report)
    }

    async fn poll_feed(
        &self,
        feed: Arc<dyn RateFeed>,
        known: Vec<&SeriesInfo>,
        today: NaiveDate,
        backfill_from: NaiveDate,
    ) -> Result<(PollReport, usize), RatesError> {
        let source = feed.source();
        let now = self.clock.now();
        let request = FetchRequest {
            today,
            backfill_from,
            last_stored: known
                .iter()
                .filter_map(|s| s.last_observation.map(|o| (s.id.clone(), o.date)))
                .collect(),
        };
        let mut report = PollReport::default();
        let fetched = match feed.fetch(&request).await {
            Ok(fetched) => fetched,
            Err(error) => {
                // Keep the last known values; only note the failed attempt.
                for info in known {
                    let mut info = info.clone();
                    info.last_attempt_at = Some(now);
                    info.last_error = Some(error.to_string());
                    self.save_series(&info).await?;
                }
                report.unreachable.push((source, error.to_string()));
                return Ok((report, 0));
            }
        };
        let known: HashMap<&SeriesId, &SeriesInfo> =
            known.into_iter().map(|s| (&s.id, s)).collect();
        let mut repriced = 0;
        for fetch in fetched {
            let previous = known.get(&fetch.series.id).copied();
            let mut info = SeriesInfo {
                id: fetch.series.id.clone(),
                source,
                kind: fetch.series.kind,
                description: fetch.series.description.clone(),
                closed: fetch.series.closed,
                last_observation: previous.and_then(|p| p.last_observation),
                last_success_at: previous.and_then(|p| p.last_success_at),
                last_attempt_at: Some(now),
                last_error: None,
            };
            let mut stored = 0;
            match fetch.observations {
                Ok(observations) => {
                    for observation in observations {
                        if self.store_observation(&info.id, observation).await? {
                            stored += 1;
                        }
                        if info
                            .last_observation
                            .is_none_or(|last| observation.date > last.date)
                        {
                            info.last_observation = Some(observation);
                        }
                    }
                    info.last_success_at = Some(now);
                }
                Err(error) => info.last_error = Some(error.to_string()),
            }
            self.save_series(&info).await?;
            let moved = info.last_observation != previous.and_then(|p| p.last_observation);
            if let (true, Some(latest), SeriesKind::InterestRate) =
                (moved, info.last_observation, info.kind)
            {
                repriced += crate::contracts::reprice_contracts(
                    self.table.as_ref(),
                    self.clock.as_ref(),
                    &info.id,
                    latest,
                )
                .await
                .map_err(|e| match e {
                    crate::contracts::ContractError::Store(store) => RatesError::Store(store),
                    other => RatesError::Store(StoreError::Unavailable(other.to_string())),
                })?;
            }
            report.series.push(SeriesPoll {
                series: info.id.clone(),
                source,
                stored,
                last_observation_date: info.last_observation.map(|o| o.date),
                closed: info.closed,
                staleness_days: info.staleness_days(today),
                error: info.last_error.clone(),
            });
        }
        Ok((report, repriced))
    }

    /// Stores one observation unless it is known; true when it was new.
    async fn store_observation(
        &self,
        series: &SeriesId,
        observation: Observation,
    ) -> Result<bool, RatesError> {
        let item = Item::new(
            keys::rate_observation(series, observation.date),
            to_attributes(&observation)?,
        );
        match self.table.put(item, Condition::NotExists).await {
            Ok(()) => Ok(true),
            Err(StoreError::ConditionFailed) => Ok(false),
            Err(other) => Err(other.into()),
        }
    }

    async fn save_series(&self, info: &SeriesInfo) -> Result<(), RatesError> {
        let item = Item::new(keys::rate_series(&info.id), to_attributes(info)?);
        self.table.put(item, Condition::None).await?;
        Ok(())
    }
}

/// One leg of a cross rate.
enum Leg {
    /// The currency is the source's pivot.
    Pivot,
    /// Worth `numerator / denominator` pivot currency, as published on this day. Kept
    /// as a fraction so a rate published as "units per pivot" is never inverted and
    /// inverted back (11.1 would come back as 11.0999…).
    Quoted(Fraction, NaiveDate),
    Missing,
}

#[derive(Clone, Copy)]
struct Fraction {
    numerator: Decimal,
    denominator: Decimal,
}

impl Fraction {
    const ONE: Fraction = Fraction {
        numerator: Decimal::ONE,
        denominator: Decimal::ONE,
    };

    /// `self / other`, or `None` when it does not fit.
    fn over(self, other: Fraction) -> Option<Decimal> {
        self.numerator
            .checked_mul(other.denominator)?
            .checked_div(self.denominator.checked_mul(other.numerator)?)
    }
}

/// `amount` minor units of `from` in minor units of `to` at `rate`.
fn convert_minor(
    amount: i64,
    from: Currency,
    to: Currency,
    rate: Decimal,
) -> Result<i64, RatesError> {
    let major = Decimal::from(amount)
        .checked_div(Decimal::from(10i64.pow(from.minor_unit_digits())))
        .ok_or(RatesError::Overflow)?;
    let converted = major
        .checked_mul(rate)
        .and_then(|v| v.checked_mul(Decimal::from(10i64.pow(to.minor_unit_digits()))))
        .ok_or(RatesError::Overflow)?
        .round_dp_with_strategy(0, RoundingStrategy::MidpointNearestEven);
    i64::try_from(converted).map_err(|_| RatesError::Overflow)
}

/// Every series in the catalogue.
pub async fn catalogue(table: &dyn Table) -> Result<Vec<SeriesInfo>, RatesError> {
    let mut series = Vec::new();
    let mut after = None;
    loop {
        let page = table
            .query(
                Query::partition(keys::RATES_PARTITION)
                    .begins_with(keys::SERIES_PREFIX)
                    .limit(1000)
                    .start_after(after.take()),
            )
            .await?;
        for item in page.items {
            series.push(from_item(item)?);
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(series),
        }
    }
}

/// One series of the catalogue.
pub async fn series_info(
    table: &dyn Table,
    id: &SeriesId,
) -> Result<Option<SeriesInfo>, RatesError> {
    match table.get(&keys::rate_series(id)).await? {
        Some(item) => Ok(Some(from_item(item)?)),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(code: &str) -> Currency {
        Currency::parse(code).unwrap()
    }

    #[test]
    fn converts_minor_units_with_bankers_rounding() {
        // 100.00 EUR at 11.2345 SEK/EUR = 1123.45 SEK.
        assert_eq!(
            convert_minor(10_000, c("EUR"), c("SEK"), "11.2345".parse().unwrap()).unwrap(),
            112_345
        );
        // JPY has no minor unit: 1000 JPY at 0.0061 EUR/JPY = 6.10 EUR.
        assert_eq!(
            convert_minor(1000, c("JPY"), c("EUR"), "0.0061".parse().unwrap()).unwrap(),
            610
        );
        // 0.5 of a minor unit rounds to even.
        assert_eq!(
            convert_minor(1, c("EUR"), c("SEK"), "0.5".parse().unwrap()).unwrap(),
            0
        );
        assert_eq!(
            convert_minor(3, c("EUR"), c("SEK"), "0.5".parse().unwrap()).unwrap(),
            2
        );
        assert!(convert_minor(i64::MAX, c("EUR"), c("SEK"), "1000".parse().unwrap()).is_err());
    }

    #[test]
    fn staleness_is_days_since_the_last_observation_of_an_open_series() {
        let mut info = SeriesInfo {
            id: SeriesId::parse("SECBREPOEFF").unwrap(),
            source: Source::Riksbank,
            kind: SeriesKind::InterestRate,
            description: String::new(),
            closed: false,
            last_observation: Some(Observation {
                date: "2026-11-18".parse().unwrap(),
                value: Decimal::ONE,
            }),
            last_success_at: None,
            last_attempt_at: None,
            last_error: None,
        };
        let today = "2026-11-21".parse().unwrap();
        assert_eq!(info.staleness_days(today), Some(3));
        info.closed = true;
        assert_eq!(info.staleness_days(today), None);
    }
}
