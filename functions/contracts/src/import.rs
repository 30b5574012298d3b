//! `POST /contracts/import`: a CSV file of contracts, validated whole, then upserted by
//! contract number.

use crate::ContractsState;
use crate::import_csv::{CsvFile, read_contracts_csv};
use api::i18n::Lang;
use api::problem::{InvalidValue, Location, ProblemDocument};
use api::{ApiError, Caller};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use domain::access::Permission;
use domain::import::{ImportReport, ImportRow};
use serde::Serialize;
use utoipa::ToSchema;

/// The largest file the import takes: 200,000 rows of a typical register.
pub const MAX_IMPORT_BYTES: usize = 64 * 1024 * 1024;

/// What an import did, or with `dryRun` would do.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportResult {
    pub dry_run: bool,
    /// Data rows in the file (blank rows aside).
    pub rows: usize,
    pub created: usize,
    pub updated: usize,
    /// Rows that match their contract exactly: importing a file twice changes nothing.
    pub unchanged: usize,
    /// Every problem of every row (only a dry run answers 200 with problems).
    pub problems: Vec<RowProblem>,
    pub file: FileFormat,
}

/// One problem of one row.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RowProblem {
    /// The row as a spreadsheet numbers it: the header is row 1.
    pub row: usize,
    /// The field as a JSON pointer of `POST /contracts` (`/payment/amount`).
    pub pointer: String,
    pub code: String,
    /// The problem in the caller's language.
    pub detail: String,
}

/// How the file was read.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileFormat {
    #[schema(example = "windows-1252")]
    pub encoding: String,
    #[schema(example = ";")]
    pub delimiter: String,
    pub decimal_comma: bool,
}

/// Import contracts from a CSV file.
///
/// Takes what Excel saves in Sweden (semicolons, decimal commas, Windows-1252 or UTF-8
/// with a byte-order mark) and in English (commas, decimal points); headers in any of
/// the eight languages of the export, or the API's field names. Amounts are in major
/// units (`6 899,00`); a rate reference reads `SERIES + MARGIN`. Every row is checked
/// before anything is written: any problem and nothing is imported (422, every problem
/// listed with its row). Rows upsert by contract number, so importing the same file
/// twice changes nothing. `dryRun=true` only reports.
///
/// A file over 1 MiB (about 6,000 rows) is not imported in the request: it is stored
/// and imported by a worker as a job, and the answer is 202 with the job and
/// `Location: /jobs/{id}` (follow it with `GET /jobs/{id}`). In AWS a request body is
/// limited to 6 MB; `POST /contracts/import/jobs` takes a file of any size.
#[utoipa::path(
    post,
    path = "/contracts/import",
    tag = "contracts",
    security(("bearer" = [])),
    params(("dryRun" = Option<bool>, Query, description = "Validate and report, write nothing")),
    request_body(content = String, content_type = "text/csv",
        description = "The file, as saved by Excel or by `GET /contracts/export`"),
    responses(
        (status = 200, description = "Imported, or the dry run's report", body = ImportResult),
        (status = 202, description = "A large file: stored and queued as a job", body = crate::jobs::Job,
            headers(("location" = String, description = "The job, `/jobs/{id}`"))),
        (status = 400, description = "The file cannot be read as a contract CSV",
            body = ProblemDocument, content_type = "application/problem+json"),
        (status = 415, description = "Not a CSV file",
            body = ProblemDocument, content_type = "application/problem+json"),
        (status = 422, description = "Rows are invalid; nothing was imported",
            body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn import(
    State(state): State<ContractsState>,
    caller: Caller,
    lang: Lang,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.require(Permission::WriteContracts)?;
    if !is_csv(&headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let dry_run = crate::jobs::dry_run_parameter(params)?;
    if body.len() > crate::jobs::INLINE_IMPORT_MAX_BYTES {
        return crate::jobs::import_as_job(&state, &caller.actor(), lang, body.to_vec(), dry_run)
            .await;
    }
    let CsvFile {
        rows,
        encoding,
        delimiter,
        decimal_comma,
    } = read_contracts_csv(&body).map_err(|error| ApiError::InvalidFile {
        reason: error.to_string(),
    })?;
    let rows = rows
        .into_iter()
        .map(|row| ImportRow {
            row: row.row,
            contract: row.contract,
            issues: row.issues,
        })
        .collect();
    let report: ImportReport = state
        .contracts
        .import(&caller.actor(), rows, dry_run)
        .await?;
    if !dry_run && !report.problems.is_empty() {
        return Err(ApiError::InvalidRows(
            report
                .problems
                .into_iter()
                .map(|problem| InvalidValue {
                    location: Location::Row {
                        row: problem.row,
                        pointer: problem.pointer,
                    },
                    issue: problem.issue,
                })
                .collect(),
        ));
    }
    Ok(Json(ImportResult {
        dry_run,
        rows: report.rows,
        created: report.created,
        updated: report.updated,
        unchanged: report.unchanged,
        problems: report
            .problems
            .into_iter()
            .map(|problem| RowProblem {
                row: problem.row,
                code: problem.issue.code().to_owned(),
                detail: api::i18n::message(
                    lang,
                    &format!("field.{}", problem.issue.code()),
                    &problem.issue.params(),
                ),
                pointer: problem.pointer,
            })
            .collect(),
        file: FileFormat {
            encoding: encoding.to_owned(),
            delimiter: delimiter.to_string(),
            decimal_comma,
        },
    })
    .into_response())
}

/// CSV as browsers and tools label it (Excel on Windows says `vnd.ms-excel`).
fn is_csv(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    matches!(
        essence.as_str(),
        "text/csv" | "application/csv" | "application/vnd.ms-excel" | "text/plain"
    )
}
