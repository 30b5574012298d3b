//! The contracts function: the contract register of an organization — create, read,
//! list with filters, change with optimistic concurrency, delete, export and import
//! (large imports as jobs, run by the import worker, `handle`).

mod import;
mod import_csv;
mod jobs;
mod portfolio;
mod worker;

pub use import::MAX_IMPORT_BYTES;
pub use jobs::{INLINE_IMPORT_MAX_BYTES, ImportPorts, JobMessage};
pub use worker::{
    BatchItemFailure, ImportWorker, MAX_DELIVERIES, SqsBatchResponse, SqsEvent, SqsMessage, handle,
};

#[cfg(feature = "lambda")]
pub mod aws_env;

use api::openapi::CommonParts;
use api::problem::{InvalidValue, ProblemDocument};
use api::{ApiError, Authenticator, Caller, IfMatch, JsonBody, etag};
use axum::extract::{DefaultBodyLimit, FromRef, Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use domain::access::Permission;
use domain::blobs::Blobs;
use domain::clock::Clock;
use domain::contracts::{
    Category, Contract, ContractChanges, ContractFilter, ContractService, ContractStatus,
    IdempotencyKey, ListPosition, MoneyInput, NewContract, PaymentFrequency, PaymentTiming,
};
use domain::ids::ContractId;
use domain::input::date;
use domain::jobs::JobService;
use domain::money::Money;
use domain::portfolio::{PortfolioService, PortfolioSettings};
use domain::queue::Queue;
use domain::schedule::{LiabilitySchedule, ScheduleRow};
use domain::store::Table;
use domain::validation::FieldIssue;
use serde::Serialize;
use std::sync::Arc;
use utoipa::{IntoParams, OpenApi, ToSchema};

#[derive(Clone)]
pub struct ContractsState {
    contracts: Arc<ContractService>,
    portfolio: Arc<PortfolioService>,
    auth: Arc<Authenticator>,
    jobs: Arc<JobService>,
    /// Where large imports go; without them a large body is refused (413).
    imports: Option<ImportPorts>,
}

impl ContractsState {
    pub fn new(table: Arc<dyn Table>, auth: Arc<Authenticator>, clock: Arc<dyn Clock>) -> Self {
        Self::with_portfolio_defaults(table, auth, clock, PortfolioService::standard_defaults())
    }

    /// `defaults`: the dashboard settings of an organization that has not chosen its own.
    pub fn with_portfolio_defaults(
        table: Arc<dyn Table>,
        auth: Arc<Authenticator>,
        clock: Arc<dyn Clock>,
        defaults: PortfolioSettings,
    ) -> Self {
        Self {
            contracts: Arc::new(ContractService::new(table.clone(), clock.clone())),
            jobs: Arc::new(JobService::new(table.clone(), clock.clone())),
            portfolio: Arc::new(PortfolioService::new(table, clock, defaults)),
            auth,
            imports: None,
        }
    }

    /// Large imports as jobs: files kept in `blobs`, one message per job on `queue`
    /// for the import worker. Every deployment sets them (Lambda: S3 and SQS; the
    /// local runner: a folder and a SQLite queue).
    pub fn with_import_jobs(mut self, blobs: Arc<dyn Blobs>, queue: Arc<dyn Queue>) -> Self {
        self.imports = Some(ImportPorts { blobs, queue });
        self
    }

    /// An inline import's transactions in flight at once (see
    /// [`aws_env::IMPORT_TRANSACTIONS_IN_FLIGHT`]).
    pub fn with_import_transactions_in_flight(mut self, transactions: usize) -> Self {
        self.contracts = Arc::new(
            (*self.contracts)
                .clone()
                .with_import_transactions_in_flight(transactions),
        );
        self
    }
}

impl FromRef<ContractsState> for Arc<Authenticator> {
    fn from_ref(state: &ContractsState) -> Self {
        state.auth.clone()
    }
}

/// The dashboard settings of organizations that have not chosen their own: the
/// built-in ones, each replaced by its environment variable when set
/// (`PORTFOLIO_REPORTING_CURRENCY`, `PORTFOLIO_BENCHMARK_SERIES`,
/// `PORTFOLIO_BENCHMARK_MARGIN`).
pub fn portfolio_defaults_from_env() -> Result<PortfolioSettings, String> {
    let mut defaults = PortfolioService::standard_defaults();
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if let Some(code) = var("PORTFOLIO_REPORTING_CURRENCY") {
        defaults.reporting_currency = domain::money::Currency::parse(code.trim())
            .map_err(|_| format!("PORTFOLIO_REPORTING_CURRENCY: {code:?} is no ISO 4217 code"))?;
    }
    if let Some(series) = var("PORTFOLIO_BENCHMARK_SERIES") {
        defaults.benchmark.series = domain::rates::SeriesId::parse(series.trim())
            .map_err(|_| format!("PORTFOLIO_BENCHMARK_SERIES: {series:?} is no series id"))?;
    }
    if let Some(margin) = var("PORTFOLIO_BENCHMARK_MARGIN") {
        defaults.benchmark.margin = domain::money::AnnualRate::parse(margin.trim())
            .map_err(|_| format!("PORTFOLIO_BENCHMARK_MARGIN: {margin:?} is no rate"))?;
    }
    Ok(defaults)
}

/// The nightly roll: every organization's dashboard moved to the new day. Returns what
/// it did, for the invocation's result.
pub async fn handle_roll(
    portfolio: &PortfolioService,
    event: &serde_json::Value,
) -> Result<serde_json::Value, domain::store::StoreError> {
    tracing::info!(
        schedule = event["resources"][0].as_str().unwrap_or("-"),
        "portfolio: nightly roll"
    );
    let rolled = portfolio.roll_all().await?;
    Ok(serde_json::json!({ "rolled": rolled }))
}

/// The routes this function serves.
pub fn router(state: ContractsState) -> Router {
    let auth = state.auth.clone();
    let routes = Router::new()
        .route("/contracts", get(list).post(create))
        .route("/contracts/{id}", get(read).patch(update).delete(delete))
        .route("/contracts/export", get(export))
        .route(
            "/contracts/import",
            post(import::import).layer(DefaultBodyLimit::max(import::MAX_IMPORT_BYTES)),
        )
        .route("/contracts/import/jobs", post(jobs::create_job))
        .route("/jobs/{id}", get(jobs::get_job))
        .route("/jobs/{id}/start", post(jobs::start_job))
        .route("/contracts/{id}/schedule", get(schedule))
        .route("/portfolio", get(portfolio::dashboard))
        .route("/portfolio/recompute", post(portfolio::recompute))
        .route(
            "/portfolio/settings",
            get(portfolio::settings).patch(portfolio::update_settings),
        )
        .with_state(state);
    api::access::guard(routes, auth)
}

#[derive(OpenApi)]
#[openapi(
    paths(create, list, export, import::import, jobs::create_job, jobs::start_job, jobs::get_job,
        read, update, delete, schedule,
        portfolio::dashboard, portfolio::recompute, portfolio::settings,
        portfolio::update_settings),
    components(schemas(
        ContractSchedule, LiabilitySchedule, ScheduleRow,
        jobs::Job, jobs::JobRowProblem, jobs::JobFailureView, jobs::Upload, jobs::CreatedJob,
        domain::jobs::JobKind, domain::jobs::JobStatus, domain::jobs::JobCounts,
        Contract, NewContract, ContractChanges, ContractList, MoneyInput, Money, Category,
        ContractStatus, PaymentFrequency, PaymentTiming
    )),
    modifiers(&CommonParts),
    tags(
        (name = "contracts", description = "The contract register"),
        (name = "portfolio", description = "Leasing debt, its change, average rate and savings"),
    )
)]
struct ContractsApi;

/// The API description of this function's routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ContractsApi::openapi()
}

const IDEMPOTENCY_KEY: &str = "idempotency-key";
const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// One page of contracts.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContractList {
    pub items: Vec<Contract>,
    /// Pass as `cursor` to get the next page; absent on the last page. A page may hold
    /// fewer than `limit` items (a narrow filter over a large register) and still have
    /// a next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Query parameters of the contract list.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Describes the parameters; `list` reads them one by one to refuse unknown ones.
struct ListParams {
    /// Only contracts with this status today.
    status: Option<ContractStatus>,
    category: Option<Category>,
    /// Lessor name, compared without regard to case.
    lessor: Option<String>,
    /// Only contracts whose end date is before this day.
    #[param(value_type = Option<String>, format = Date)]
    ends_before: Option<String>,
    /// Text searched in contract number, description and registration number.
    q: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

fn with_etag(contract: &Contract, status: StatusCode) -> Response {
    (
        status,
        [(header::ETAG, etag(contract.version))],
        Json(contract),
    )
        .into_response()
}

fn contract_id(raw: &str) -> Result<ContractId, ApiError> {
    // An id that cannot exist names no contract: the same answer as a missing one.
    raw.parse().map_err(|_| ApiError::NotFound)
}

/// Create a contract.
#[utoipa::path(
    post,
    path = "/contracts",
    tag = "contracts",
    security(("bearer" = [])),
    request_body = NewContract,
    params(("Idempotency-Key" = Option<String>, Header,
        description = "Makes retries safe: a repeat with the same key returns the first response")),
    responses(
        (status = 201, description = "Created", body = Contract, headers(
            ("etag" = String, description = "The version, for If-Match"),
            ("location" = String, description = "The new contract"),
            ("idempotent-replayed" = String, description = "`true` when this answers a retry"))),
        (status = 409, description = "Contract number already in use",
            body = ProblemDocument, content_type = "application/problem+json"),
        (status = 422, description = "Idempotency key used before for a different request",
            body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
async fn create(
    State(state): State<ContractsState>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonBody<NewContract>,
) -> Result<Response, ApiError> {
    caller.require(Permission::WriteContracts)?;
    let idempotency = match headers.get(IDEMPOTENCY_KEY) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| FieldIssue::InvalidHeader)
                .and_then(|key| IdempotencyKey::parse(key, &body.raw))
                .map_err(|issue| {
                    ApiError::InvalidParameters(vec![InvalidValue::header(
                        "Idempotency-Key",
                        issue,
                    )])
                })?,
        ),
    };
    let created = state
        .contracts
        .create(&caller.actor(), body.value, idempotency)
        .await?;
    let mut response = with_etag(&created.contract, StatusCode::CREATED);
    let location = format!("/contracts/{}", created.contract.id);
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if created.replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// List contracts, filtered and paginated.
#[utoipa::path(
    get,
    path = "/contracts",
    tag = "contracts",
    security(("bearer" = [])),
    params(ListParams),
    responses(
        (status = 200, description = "One page of contracts", body = ContractList),
        (status = 400, description = "Unknown or invalid parameter",
            body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
async fn list(
    State(state): State<ContractsState>,
    caller: Caller,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<ContractList>, ApiError> {
    caller.require(Permission::ReadContracts)?;
    let (filter, limit, after) = list_parameters(params, true)?;
    let page = state
        .contracts
        .list(caller.tenant, &filter, limit, after)
        .await?;
    Ok(Json(ContractList {
        items: page.contracts,
        next_cursor: page.next.as_ref().map(api::cursor::encode),
    }))
}

/// The list's filters, and with `paging` its `limit` and `cursor`; every unknown or
/// invalid parameter is named.
fn list_parameters(
    params: Vec<(String, String)>,
    paging: bool,
) -> Result<(ContractFilter, usize, Option<ListPosition>), ApiError> {
    let mut filter = ContractFilter::default();
    let mut limit = 50;
    let mut after = None;
    let mut invalid = Vec::new();
    for (name, value) in params {
        let mut problem = |issue| invalid.push(InvalidValue::parameter(&name, issue));
        match name.as_str() {
            "status" => match ContractStatus::parse(&value) {
                Ok(status) => filter.status = Some(status),
                Err(issue) => problem(issue),
            },
            "category" => match Category::parse(&value) {
                Ok(category) => filter.category = Some(category),
                Err(issue) => problem(issue),
            },
            "lessor" => filter.lessor = Some(value),
            "endsBefore" => match date(&value) {
                Ok(day) => filter.ends_before = Some(day),
                Err(issue) => problem(issue),
            },
            "q" => filter.q = Some(value).filter(|q| !q.trim().is_empty()),
            "limit" if paging => match value.parse::<usize>() {
                Ok(n) if (1..=ContractService::MAX_PAGE).contains(&n) => limit = n,
                _ => problem(FieldIssue::InvalidInteger {
                    min: 1,
                    max: ContractService::MAX_PAGE as i64,
                }),
            },
            "cursor" if paging => match api::cursor::decode::<ListPosition>(&value) {
                Ok(position) => after = Some(position),
                Err(_) => problem(FieldIssue::InvalidCursor),
            },
            _ => problem(FieldIssue::UnknownField),
        }
    }
    if invalid.is_empty() {
        Ok((filter, limit, after))
    } else {
        Err(ApiError::InvalidParameters(invalid))
    }
}

/// One contract.
#[utoipa::path(
    get,
    path = "/contracts/{id}",
    tag = "contracts",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "Contract id")),
    responses((status = 200, description = "The contract", body = Contract,
        headers(("etag" = String, description = "The version, for If-Match"))))
)]
async fn read(
    State(state): State<ContractsState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Permission::ReadContracts)?;
    let contract = state
        .contracts
        .get(caller.tenant, contract_id(&id)?)
        .await?;
    Ok(with_etag(&contract, StatusCode::OK))
}

/// Change a contract (JSON merge patch).
#[utoipa::path(
    patch,
    path = "/contracts/{id}",
    tag = "contracts",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, format = Uuid, description = "Contract id"),
        ("If-Match" = String, Header, description = "The ETag last read, or `*`"),
    ),
    request_body(content = ContractChanges, content_type = "application/merge-patch+json"),
    responses(
        (status = 200, description = "Changed", body = Contract,
            headers(("etag" = String, description = "The new version"))),
        (status = 409, description = "Contract number already in use",
            body = ProblemDocument, content_type = "application/problem+json"),
        (status = 412, description = "The contract changed since the ETag sent",
            body = ProblemDocument, content_type = "application/problem+json"),
        (status = 428, description = "If-Match missing",
            body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
async fn update(
    State(state): State<ContractsState>,
    caller: Caller,
    Path(id): Path<String>,
    IfMatch(expected): IfMatch,
    body: JsonBody<ContractChanges>,
) -> Result<Response, ApiError> {
    caller.require(Permission::WriteContracts)?;
    let contract = state
        .contracts
        .update(&caller.actor(), contract_id(&id)?, expected, body.value)
        .await?;
    Ok(with_etag(&contract, StatusCode::OK))
}

/// Delete a contract.
#[utoipa::path(
    delete,
    path = "/contracts/{id}",
    tag = "contracts",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, format = Uuid, description = "Contract id"),
        ("If-Match" = String, Header, description = "The ETag last read, or `*`"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 412, description = "The contract changed since the ETag sent",
            body = ProblemDocument, content_type = "application/problem+json"),
        (status = 428, description = "If-Match missing",
            body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
async fn delete(
    State(state): State<ContractsState>,
    caller: Caller,
    Path(id): Path<String>,
    IfMatch(expected): IfMatch,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::WriteContracts)?;
    state
        .contracts
        .delete(&caller.actor(), contract_id(&id)?, expected)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A contract's lease liability, period by period, and its leasing debt today.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContractSchedule {
    pub contract_id: ContractId,
    /// The leasing debt today (the liability at the start of today, after today's
    /// payments), rounded to the currency's minor unit.
    #[schema(value_type = String, example = "398123.45")]
    #[serde(with = "rust_decimal::serde::str")]
    pub debt_today: rust_decimal::Decimal,
    /// Amounts rounded to the currency's minor unit; each row still adds up.
    pub schedule: LiabilitySchedule,
}

/// The liability schedule of a contract (IFRS 16 / K3 lease liability).
#[utoipa::path(
    get,
    path = "/contracts/{id}/schedule",
    tag = "contracts",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, format = Uuid, description = "Contract id"),
        ("until" = Option<String>, Query, format = Date,
            description = "For an extended contract: run the schedule to this day (default today)"),
    ),
    responses(
        (status = 200, description = "The schedule", body = ContractSchedule),
        (status = 400, description = "Invalid parameter",
            body = ProblemDocument, content_type = "application/problem+json"),
        (status = 422, description = "The contract has no interest rate to discount with",
            body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
async fn schedule(
    State(state): State<ContractsState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<ContractSchedule>, ApiError> {
    caller.require(Permission::ReadContracts)?;
    let mut until = None;
    for (name, value) in params {
        match name.as_str() {
            "until" => {
                until = Some(date(&value).map_err(|issue| {
                    ApiError::InvalidParameters(vec![InvalidValue::parameter("until", issue)])
                })?)
            }
            _ => {
                return Err(ApiError::InvalidParameters(vec![InvalidValue::parameter(
                    &name,
                    FieldIssue::UnknownField,
                )]));
            }
        }
    }
    let contract_id = contract_id(&id)?;
    let (schedule, debt_today) = state
        .contracts
        .schedule(caller.tenant, contract_id, until)
        .await?;
    let digits = schedule.currency.minor_unit_digits();
    Ok(Json(ContractSchedule {
        contract_id,
        debt_today: debt_today
            .round_dp_with_strategy(digits, rust_decimal::RoundingStrategy::MidpointAwayFromZero),
        schedule: schedule.rounded(),
    }))
}

#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Describes the parameters; `export` reads them with the list's parser.
struct ExportParams {
    status: Option<ContractStatus>,
    category: Option<Category>,
    lessor: Option<String>,
    #[param(value_type = Option<String>, format = Date)]
    ends_before: Option<String>,
    q: Option<String>,
}

/// The filtered contract list as CSV for Excel, with status and today's leasing debt.
///
/// Headers come in the caller's language (`Accept-Language`). English gets commas and
/// decimal points; the Nordic and Baltic languages get semicolons and decimal commas, as
/// Excel expects there. UTF-8 with a byte-order mark. Every export is audited.
#[utoipa::path(
    get,
    path = "/contracts/export",
    tag = "contracts",
    security(("bearer" = [])),
    params(ExportParams),
    responses(
        (status = 200, description = "The contracts", content_type = "text/csv", body = String),
        (status = 400, description = "Unknown or invalid parameter",
            body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
async fn export(
    State(state): State<ContractsState>,
    caller: Caller,
    lang: api::i18n::Lang,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    caller.require(Permission::ReadContracts)?;
    let (filter, _, _) = list_parameters(params, false)?;
    let rows = state.contracts.export(&caller.actor(), &filter).await?;
    let body = contracts_csv(&rows, lang).map_err(ApiError::internal)?;
    let today = state.contracts.today();
    let disposition = format!("attachment; filename=\"contracts-{today}.csv\"");
    let mut response = (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (
                header::CONTENT_LANGUAGE,
                HeaderValue::from_static(lang.code()),
            ),
        ],
        body,
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

pub(crate) const CSV_COLUMNS: [&str; 19] = [
    "contractNumber",
    "lessor",
    "description",
    "category",
    "registrationNumber",
    "costCenter",
    "startDate",
    "endDate",
    "terminationDate",
    "status",
    "payment",
    "currency",
    "paymentFrequency",
    "paymentTiming",
    "residualValue",
    "interestRate",
    "rateReference",
    "currentRate",
    "debtToday",
];

/// Writes the rows as CSV in `lang`'s conventions.
fn contracts_csv(
    rows: &[(Contract, Option<rust_decimal::Decimal>)],
    lang: api::i18n::Lang,
) -> Result<Vec<u8>, csv::Error> {
    let comma = lang.decimal_comma();
    let number = |value: rust_decimal::Decimal| {
        let text = value.to_string();
        if comma { text.replace('.', ",") } else { text }
    };
    let money = |amount: i64, digits: u32| number(rust_decimal::Decimal::new(amount, digits));
    // Excel opens UTF-8 correctly only with the byte-order mark.
    let mut out = "\u{feff}".as_bytes().to_vec();
    {
        let mut writer = csv::WriterBuilder::new()
            .delimiter(if comma { b';' } else { b',' })
            .from_writer(&mut out);
        writer.write_record(
            CSV_COLUMNS
                .iter()
                .map(|column| api::i18n::message(lang, &format!("csv.{column}"), &[])),
        )?;
        for (contract, debt) in rows {
            let digits = contract.payment.currency.minor_unit_digits();
            let optional = |value: Option<String>| value.unwrap_or_default();
            writer.write_record([
                contract.contract_number.clone(),
                contract.lessor.clone(),
                contract.description.clone(),
                contract.category.as_str().to_owned(),
                optional(contract.registration_number.clone()),
                optional(contract.cost_center.clone()),
                contract.start_date.to_string(),
                contract.end_date.to_string(),
                optional(contract.termination_date.map(|d| d.to_string())),
                contract.status.as_str().to_owned(),
                money(contract.payment.amount, digits),
                contract.payment.currency.code().to_owned(),
                contract.payment_frequency.as_str().to_owned(),
                contract.payment_timing.as_str().to_owned(),
                optional(contract.residual_value.map(|r| money(r.amount, digits))),
                optional(contract.interest_rate.map(|r| number(r.percent()))),
                optional(
                    contract
                        .rate_reference
                        .as_ref()
                        .map(|r| format!("{} + {}", r.series, number(r.margin.percent()))),
                ),
                optional(contract.current_rate.map(|r| number(r.percent()))),
                optional(debt.map(|d| {
                    number(d.round_dp_with_strategy(
                        digits,
                        rust_decimal::RoundingStrategy::MidpointAwayFromZero,
                    ))
                })),
            ])?;
        }
        writer.flush()?;
    }
    Ok(out)
}
