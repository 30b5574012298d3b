//! The rate-feed port: a public source of interest and exchange rates (Riksbanken,
//! the ECB, Fixer). Adapters live in `adapters::feeds`.

use super::{Observation, SeriesId, SeriesKind, Source};
use async_trait::async_trait;
use chrono::NaiveDate;
use std::collections::HashMap;
use std::time::Duration;

/// What the poller asks a feed for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchRequest {
    /// The last day to fetch (inclusive).
    pub today: NaiveDate,
    /// Where a series that has never been stored starts.
    pub backfill_from: NaiveDate,
    /// The last stored observation date of each series already known. A feed fetches
    /// only what comes after it (so a run after an outage backfills the gap).
    pub last_stored: HashMap<SeriesId, NaiveDate>,
}

impl FetchRequest {
    /// The first day `series` needs, or `None` when it is up to date.
    pub fn first_missing(&self, series: &SeriesId) -> Option<NaiveDate> {
        let first = match self.last_stored.get(series) {
            Some(last) => last.succ_opt()?,
            None => self.backfill_from,
        };
        (first <= self.today).then_some(first)
    }
}

/// What a feed knows about one of its series.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedSeries {
    pub id: SeriesId,
    pub kind: SeriesKind,
    /// English description from the source (or ours where the source has none).
    pub description: String,
    /// The source no longer publishes it (Riksbanken's `seriesClosed`).
    pub closed: bool,
    /// The newest date the source says it has, when it says so.
    pub observation_max_date: Option<NaiveDate>,
}

/// The outcome for one series of a fetch.
#[derive(Debug)]
pub struct SeriesFetch {
    pub series: FeedSeries,
    /// New observations in date order, or why they could not be had. Days without
    /// data (weekends, holidays, HTTP 204) are simply absent.
    pub observations: Result<Vec<Observation>, FeedError>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedError {
    /// Still rate-limited after the adapter's retries.
    #[error("rate limited by the source (retry after {retry_after:?})")]
    RateLimited { retry_after: Option<Duration> },
    /// Network failure, timeout or 5xx after retries.
    #[error("source unavailable: {0}")]
    Unavailable(String),
    /// The source answered with something we cannot read.
    #[error("malformed answer from the source: {0}")]
    Malformed(String),
    /// The source refused the request (bad key, unknown series, Fixer's
    /// `success: false`), with its own explanation.
    #[error("the source refused the request: {0}")]
    Refused(String),
}

/// One public source of rates.
#[async_trait]
pub trait RateFeed: Send + Sync + 'static {
    fn source(&self) -> Source;

    /// New observations of every series this feed provides. `Err` only when the source
    /// could not be reached at all; per-series failures are in the result.
    async fn fetch(&self, request: &FetchRequest) -> Result<Vec<SeriesFetch>, FeedError>;
}
