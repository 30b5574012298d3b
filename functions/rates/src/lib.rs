//! The rates function: the catalogue of interest and exchange-rate series, their
//! observations, currency conversion, and the poll that keeps them current (run by a
//! schedule, or by an admin on demand).

#[cfg(feature = "lambda")]
pub mod lambda;

use api::openapi::CommonParts;
use api::problem::{InvalidValue, ProblemDocument};
use api::{ApiError, Authenticator, Caller};
use axum::extract::{FromRef, Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Days, NaiveDate, Utc};
use domain::access::Permission;
use domain::input::date;
use domain::money::{Currency, Money};
use domain::rates::{
    Conversion, Observation, PollReport, RateService, SeriesId, SeriesInfo, SeriesKind, Source,
};
use domain::validation::FieldIssue;
use serde::Serialize;
use std::sync::Arc;
use utoipa::{IntoParams, OpenApi, ToSchema};

#[derive(Clone)]
pub struct RatesState {
    rates: Arc<RateService>,
    auth: Arc<Authenticator>,
}

impl RatesState {
    pub fn new(rates: Arc<RateService>, auth: Arc<Authenticator>) -> Self {
        Self { rates, auth }
    }
}

impl FromRef<RatesState> for Arc<Authenticator> {
    fn from_ref(state: &RatesState) -> Self {
        state.auth.clone()
    }
}

/// The routes this function serves.
pub fn router(state: RatesState) -> Router {
    let auth = state.auth.clone();
    let routes = Router::new()
        .route("/rates", get(catalogue))
        .route("/rates/refresh", post(refresh))
        .route("/rates/{series}", get(observations))
        .route("/rates/{series}/latest", get(latest))
        .route("/fx/convert", get(convert))
        .with_state(state);
    api::access::guard(routes, auth)
}

#[derive(OpenApi)]
#[openapi(
    paths(catalogue, observations, latest, convert, refresh),
    components(schemas(SeriesView, SeriesList, ObservationView, SeriesObservations, LatestView, Conversion, PollView, SeriesPollView, Source)),
    modifiers(&CommonParts),
    tags((name = "rates", description = "Interest and exchange rates"))
)]
struct RatesApi;

pub fn openapi() -> utoipa::openapi::OpenApi {
    RatesApi::openapi()
}

/// A series of the catalogue.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeriesView {
    #[schema(example = "SECBREPOEFF")]
    pub id: String,
    pub source: Source,
    /// `interestRate` (annual percent) or `exchangeRate` (`quote` per one `base`).
    #[schema(example = "interestRate")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quote: Option<String>,
    pub description: String,
    /// No longer published: its last value is history, not a current rate.
    pub closed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_observation: Option<ObservationView>,
    /// Days since the last observation (open series only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staleness_days: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl SeriesView {
    fn new(info: &SeriesInfo, today: NaiveDate) -> Self {
        let (kind, base, quote) = match info.kind {
            SeriesKind::InterestRate => ("interestRate", None, None),
            SeriesKind::ExchangeRate { base, quote } => (
                "exchangeRate",
                Some(base.code().to_owned()),
                Some(quote.code().to_owned()),
            ),
        };
        Self {
            id: info.id.to_string(),
            source: info.source,
            kind,
            base,
            quote,
            description: info.description.clone(),
            closed: info.closed,
            last_observation: info.last_observation.map(ObservationView::from),
            staleness_days: info.staleness_days(today),
            last_success_at: info.last_success_at,
            last_error: info.last_error.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesList {
    pub items: Vec<SeriesView>,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct ObservationView {
    pub date: NaiveDate,
    /// Decimal string: percent for interest rates, units of `quote` for exchange rates.
    #[schema(value_type = String, example = "3.75")]
    #[serde(with = "rust_decimal::serde::str")]
    pub value: rust_decimal::Decimal,
}

impl From<Observation> for ObservationView {
    fn from(observation: Observation) -> Self {
        Self {
            date: observation.date,
            value: observation.value,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesObservations {
    pub series: SeriesView,
    pub observations: Vec<ObservationView>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LatestView {
    pub series: String,
    pub date: NaiveDate,
    #[schema(value_type = String, example = "3.75")]
    #[serde(with = "rust_decimal::serde::str")]
    pub value: rust_decimal::Decimal,
    /// True when the series is closed: then this is its last value ever, not today's.
    pub closed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staleness_days: Option<i64>,
}

/// What a poll did.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PollView {
    /// Observations stored by this poll.
    pub stored: usize,
    pub contracts_repriced: usize,
    pub series: Vec<SeriesPollView>,
    /// Sources that could not be reached; their last known values are kept.
    pub unreachable: Vec<UnreachableSource>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeriesPollView {
    pub series: String,
    pub source: Source,
    pub stored: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_observation_date: Option<NaiveDate>,
    pub closed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staleness_days: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UnreachableSource {
    pub source: Source,
    pub error: String,
}

impl From<PollReport> for PollView {
    fn from(report: PollReport) -> Self {
        Self {
            stored: report.stored(),
            contracts_repriced: report.contracts_repriced,
            series: report
                .series
                .into_iter()
                .map(|s| SeriesPollView {
                    series: s.series.to_string(),
                    source: s.source,
                    stored: s.stored,
                    last_observation_date: s.last_observation_date,
                    closed: s.closed,
                    staleness_days: s.staleness_days,
                    error: s.error,
                })
                .collect(),
            unreachable: report
                .unreachable
                .into_iter()
                .map(|(source, error)| UnreachableSource { source, error })
                .collect(),
        }
    }
}

fn series_id(raw: &str) -> Result<SeriesId, ApiError> {
    SeriesId::parse(raw).map_err(|_| ApiError::NotFound)
}

fn parameter_error(name: &str, issue: FieldIssue) -> ApiError {
    ApiError::InvalidParameters(vec![InvalidValue::parameter(name, issue)])
}

/// The catalogue: every series followed, with its source, last value and health.
#[utoipa::path(get, path = "/rates", tag = "rates", security(("bearer" = [])),
    responses((status = 200, description = "The catalogue", body = SeriesList)))]
async fn catalogue(
    State(state): State<RatesState>,
    caller: Caller,
) -> Result<Json<SeriesList>, ApiError> {
    caller.require(Permission::ReadRates)?;
    let today = state.rates.today();
    let items = state
        .rates
        .catalogue()
        .await?
        .iter()
        .map(|info| SeriesView::new(info, today))
        .collect();
    Ok(Json(SeriesList { items }))
}

#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Describes the parameters; `observations` reads them one by one.
struct RangeParams {
    /// First day (default: 30 days before `to`).
    #[param(value_type = Option<String>, format = Date)]
    from: Option<String>,
    /// Last day (default: today).
    #[param(value_type = Option<String>, format = Date)]
    to: Option<String>,
}

/// The longest range one request may ask for.
const MAX_RANGE_DAYS: i64 = 3700;

/// Observations of a series between two days.
#[utoipa::path(get, path = "/rates/{series}", tag = "rates", security(("bearer" = [])),
    params(("series" = String, Path, description = "Series id"), RangeParams),
    responses(
        (status = 200, description = "Observations, oldest first", body = SeriesObservations),
        (status = 400, description = "Invalid range", body = ProblemDocument, content_type = "application/problem+json"),
    ))]
async fn observations(
    State(state): State<RatesState>,
    caller: Caller,
    Path(series): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<SeriesObservations>, ApiError> {
    caller.require(Permission::ReadRates)?;
    let id = series_id(&series)?;
    let mut from = None;
    let mut to = None;
    let mut invalid = Vec::new();
    for (name, value) in params {
        let slot = match name.as_str() {
            "from" => &mut from,
            "to" => &mut to,
            _ => {
                invalid.push(InvalidValue::parameter(&name, FieldIssue::UnknownField));
                continue;
            }
        };
        match date(&value) {
            Ok(day) => *slot = Some(day),
            Err(issue) => invalid.push(InvalidValue::parameter(&name, issue)),
        }
    }
    if !invalid.is_empty() {
        return Err(ApiError::InvalidParameters(invalid));
    }
    let to = to.unwrap_or_else(|| state.rates.today());
    let from = from.unwrap_or_else(|| to.checked_sub_days(Days::new(30)).unwrap_or(to));
    if from > to || (to - from).num_days() > MAX_RANGE_DAYS {
        return Err(parameter_error(
            "from",
            FieldIssue::OutOfRange {
                min: format!(
                    "{}",
                    to.checked_sub_days(Days::new(MAX_RANGE_DAYS as u64))
                        .unwrap_or(to)
                ),
                max: to.to_string(),
            },
        ));
    }
    let info = state.rates.series(&id).await?;
    let observations = state.rates.observations(&id, from, to).await?;
    Ok(Json(SeriesObservations {
        series: SeriesView::new(&info, state.rates.today()),
        observations: observations
            .into_iter()
            .map(ObservationView::from)
            .collect(),
    }))
}

/// The latest value of a series.
#[utoipa::path(get, path = "/rates/{series}/latest", tag = "rates", security(("bearer" = [])),
    params(("series" = String, Path, description = "Series id")),
    responses((status = 200, description = "The latest observation", body = LatestView)))]
async fn latest(
    State(state): State<RatesState>,
    caller: Caller,
    Path(series): Path<String>,
) -> Result<Json<LatestView>, ApiError> {
    caller.require(Permission::ReadRates)?;
    let info = state.rates.series(&series_id(&series)?).await?;
    let observation = info.last_observation.ok_or(ApiError::NotFound)?;
    Ok(Json(LatestView {
        series: info.id.to_string(),
        date: observation.date,
        value: observation.value,
        closed: info.closed,
        staleness_days: info.staleness_days(state.rates.today()),
    }))
}

#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Describes the parameters; `convert` reads them one by one.
struct ConvertParams {
    /// ISO 4217 code of the amount.
    #[param(example = "EUR")]
    from: String,
    /// ISO 4217 code to convert into.
    #[param(example = "SEK")]
    to: String,
    /// Integer minor units of `from`.
    #[param(example = 10000, minimum = 0)]
    amount: i64,
    /// Use the rates of this day, or of the last day before it (default: today).
    #[param(value_type = Option<String>, format = Date)]
    date: Option<String>,
}

/// Convert an amount between currencies at the reference rates of a day.
#[utoipa::path(get, path = "/fx/convert", tag = "rates", security(("bearer" = [])),
    params(ConvertParams),
    responses(
        (status = 200, description = "The conversion and the rate and day it used", body = Conversion),
        (status = 400, description = "Invalid parameters", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 422, description = "No rate on or before that day", body = ProblemDocument, content_type = "application/problem+json"),
    ))]
async fn convert(
    State(state): State<RatesState>,
    caller: Caller,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<Conversion>, ApiError> {
    caller.require(Permission::ReadRates)?;
    let (mut from, mut to, mut amount, mut day) = (None, None, None, None);
    let mut invalid = Vec::new();
    for (name, value) in &params {
        let mut problem = |issue| invalid.push(InvalidValue::parameter(name, issue));
        match name.as_str() {
            "from" => Currency::parse(value)
                .map(|c| from = Some(c))
                .unwrap_or_else(&mut problem),
            "to" => Currency::parse(value)
                .map(|c| to = Some(c))
                .unwrap_or_else(&mut problem),
            "amount" => match value.parse::<i64>() {
                Ok(n) if n >= 0 => amount = Some(n),
                _ => problem(FieldIssue::InvalidInteger {
                    min: 0,
                    max: i64::MAX,
                }),
            },
            "date" => date(value)
                .map(|d| day = Some(d))
                .unwrap_or_else(&mut problem),
            _ => problem(FieldIssue::UnknownField),
        }
    }
    for (name, present) in [
        ("from", from.is_some()),
        ("to", to.is_some()),
        ("amount", amount.is_some()),
    ] {
        if !present
            && !invalid.iter().any(|v: &InvalidValue| {
                v.location == api::problem::Location::Parameter(name.into())
            })
        {
            invalid.push(InvalidValue::parameter(name, FieldIssue::Required));
        }
    }
    let (Some(from), Some(to), Some(amount)) = (from, to, amount) else {
        return Err(ApiError::InvalidParameters(invalid));
    };
    if !invalid.is_empty() {
        return Err(ApiError::InvalidParameters(invalid));
    }
    let amount = Money::new(amount, from).map_err(|issue| parameter_error("amount", issue))?;
    Ok(Json(state.rates.convert(amount, to, day).await?))
}

/// Poll the sources now (owners and admins).
#[utoipa::path(post, path = "/rates/refresh", tag = "rates", security(("bearer" = [])),
    params(("source" = Option<Source>, Query, description = "Only this source")),
    responses((status = 200, description = "What the poll stored", body = PollView)))]
async fn refresh(
    State(state): State<RatesState>,
    caller: Caller,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<PollView>, ApiError> {
    caller.require(Permission::RefreshRates)?;
    let mut only = None;
    for (name, value) in params {
        match (name.as_str(), Source::parse(&value)) {
            ("source", Some(source)) => only = Some(source),
            ("source", None) => {
                return Err(parameter_error(
                    "source",
                    FieldIssue::InvalidChoice {
                        allowed: &["riksbank", "ecb", "fixer"],
                    },
                ));
            }
            _ => return Err(parameter_error(&name, FieldIssue::UnknownField)),
        }
    }
    let report = poll(&state.rates, only).await?;
    Ok(Json(report.into()))
}

/// One poll, with a log line per unreachable source and per failing series. Scheduled
/// runs, the admin endpoint and the local runner all come through here.
pub async fn poll(rates: &RateService, only: Option<Source>) -> Result<PollReport, ApiError> {
    let report = rates.poll(only).await?;
    if !report.unreachable.is_empty() {
        let sources: Vec<String> = report
            .unreachable
            .iter()
            .map(|(source, error)| format!("{source}: {error}"))
            .collect();
        tracing::warn!(
            unreachable = %sources.join("; "),
            "rates: some sources could not be reached; keeping their last known values"
        );
    }
    for series in report.series.iter().filter(|s| s.error.is_some()) {
        tracing::warn!(series = %series.series, error = ?series.error, "rates: series failed");
    }
    tracing::info!(
        stored = report.stored(),
        repriced = report.contracts_repriced,
        "rates: poll finished"
    );
    Ok(report)
}

/// The scheduled poll: what the poller Lambda does with each EventBridge Scheduler
/// event (its content does not matter; every run polls every source). Returns the
/// report and the metric lines to print.
pub async fn handle_schedule(
    rates: &RateService,
    event: &serde_json::Value,
    now: DateTime<Utc>,
) -> Result<(PollView, Vec<String>), ApiError> {
    tracing::info!(
        schedule = event["resources"][0].as_str().unwrap_or("-"),
        "rates: scheduled poll"
    );
    let report = poll(rates, None).await?;
    let metrics = staleness_metrics(&report, now);
    Ok((report.into(), metrics))
}

/// CloudWatch embedded-metric-format lines, one per open series: how many days old its
/// last observation is. Alarms on `Leasedesk/Rates StalenessDays` catch a source that
/// stopped publishing.
pub fn staleness_metrics(report: &PollReport, now: DateTime<Utc>) -> Vec<String> {
    report
        .series
        .iter()
        .filter_map(|series| {
            let days = series.staleness_days?;
            Some(
                serde_json::json!({
                    "_aws": {
                        "Timestamp": now.timestamp_millis(),
                        "CloudWatchMetrics": [{
                            "Namespace": "Leasedesk/Rates",
                            "Dimensions": [["Series"]],
                            "Metrics": [{"Name": "StalenessDays", "Unit": "Count"}]
                        }]
                    },
                    "Series": series.series.to_string(),
                    "Source": series.source.as_str(),
                    "StalenessDays": days,
                })
                .to_string(),
            )
        })
        .collect()
}
