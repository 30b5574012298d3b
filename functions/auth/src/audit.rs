//! The audit trail over HTTP: `GET /audit`, a page of the organization's events newest
//! first, and `GET /audit/export`, every matching event as CSV for Excel. Owners and
//! admins only; a refused caller is recorded (outcome `denied`), and so is every export.

use api::i18n::{Lang, message};
use api::openapi::CommonParts;
use api::problem::{InvalidValue, ProblemDocument, parameter_errors};
use api::{ApiError, Authenticator, Caller};
use axum::extract::{FromRef, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use domain::audit::{AuditEvent, Outcome};
use domain::audit_log::{self, AuditFilter, AuditFilterInput, AuditLog, AuditPosition};
use domain::validation::FieldIssue;
use serde::Serialize;
use std::sync::Arc;
use utoipa::{IntoParams, OpenApi, ToSchema};

#[derive(Clone)]
struct AuditState {
    log: Arc<AuditLog>,
    auth: Arc<Authenticator>,
}

impl FromRef<AuditState> for Arc<Authenticator> {
    fn from_ref(state: &AuditState) -> Self {
        state.auth.clone()
    }
}

/// The audit routes, ready to merge into the function's router.
pub(crate) fn routes(log: Arc<AuditLog>, auth: Arc<Authenticator>) -> Router {
    Router::new()
        .route("/audit", get(list))
        .route("/audit/export", get(export))
        .with_state(AuditState { log, auth })
}

#[derive(OpenApi)]
#[openapi(
    paths(list, export),
    components(schemas(AuditList, AuditEvent, Outcome)),
    modifiers(&CommonParts),
    tags((name = "audit", description = "The organization's audit trail: who did what, when, from where"))
)]
struct AuditApi;

/// The API description of the audit routes.
pub(crate) fn openapi() -> utoipa::openapi::OpenApi {
    AuditApi::openapi()
}

/// One page of the audit trail.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditList {
    /// Newest first.
    pub events: Vec<AuditEvent>,
    /// Pass as `cursor` to get the next page; absent when the selection is exhausted. A
    /// page may hold fewer than `limit` events (a narrow filter over a long trail) and
    /// still have a next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Which events: every filter given must match.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Describes the parameters; `parameters` reads them one by one to refuse unknown ones.
struct FilterParams {
    /// The user who acted (their id).
    #[param(value_type = Option<String>, format = Uuid)]
    actor: Option<String>,
    /// An action (`contract.updated`), or every action starting with a text that ends
    /// in a dot (`contract.`).
    #[param(example = "contract.")]
    action: Option<String>,
    /// The record acted on, as events name it (`contract:<id>`).
    target: Option<String>,
    /// From this time on (inclusive): RFC 3339, or a day (its midnight UTC).
    #[param(value_type = Option<String>, example = "2026-11-01")]
    from: Option<String>,
    /// Before this time (exclusive): RFC 3339, or a day (its midnight UTC).
    #[param(value_type = Option<String>, example = "2026-12-01T00:00:00Z")]
    to: Option<String>,
}

#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // As `FilterParams`.
struct PageParams {
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// The organization's audit trail, newest first, filtered and paginated.
#[utoipa::path(
    get,
    path = "/audit",
    operation_id = "listAuditEvents",
    tag = "audit",
    security(("bearer" = [])),
    params(FilterParams, PageParams),
    responses(
        (status = 200, description = "One page of events", body = AuditList),
        (status = 400, description = "Unknown or invalid parameter",
            body = ProblemDocument, content_type = "application/problem+json"),
        (status = 403, description = "Only owners and admins read the trail (the attempt is recorded)",
            body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
async fn list(
    State(state): State<AuditState>,
    caller: Caller,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    state
        .log
        .authorize(&caller.actor(), audit_log::READ)
        .await?;
    let (filter, limit, after) = parameters(params, true)?;
    let page = state
        .log
        .query(caller.tenant, &filter, after, limit)
        .await?;
    Ok((
        [(header::CACHE_CONTROL, PRIVATE)],
        Json(AuditList {
            events: page.events,
            next_cursor: page.next.as_ref().map(api::cursor::encode),
        }),
    )
        .into_response())
}

/// The trail names people and their addresses: no shared cache may keep it.
const PRIVATE: HeaderValue = HeaderValue::from_static("private, no-store");

/// The events matching the filters, newest first, as CSV for Excel.
///
/// Headers come in the caller's language (`Accept-Language`); English gets commas, the
/// Nordic and Baltic languages semicolons, as Excel expects there. UTF-8 with a
/// byte-order mark. Times are UTC; `before` and `after` are JSON. At most 100,000
/// events: narrow a larger selection with `from` and `to`. Every export is recorded in
/// the trail (action `audit.exported`, with its filters and row count).
#[utoipa::path(
    get,
    path = "/audit/export",
    operation_id = "exportAuditEvents",
    tag = "audit",
    security(("bearer" = [])),
    params(FilterParams),
    responses(
        (status = 200, description = "The events", content_type = "text/csv", body = String),
        (status = 400, description = "Unknown or invalid parameter",
            body = ProblemDocument, content_type = "application/problem+json"),
        (status = 403, description = "Only owners and admins export the trail (the attempt is recorded)",
            body = ProblemDocument, content_type = "application/problem+json"),
        (status = 422, description = "More than 100,000 events match",
            body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
async fn export(
    State(state): State<AuditState>,
    caller: Caller,
    lang: Lang,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let actor = caller.actor();
    // Refuse before looking at the parameters, as every route does.
    state.log.authorize(&actor, audit_log::EXPORTED).await?;
    let (filter, _, _) = parameters(params, false)?;
    let mut csv = AuditCsv::new(lang).map_err(ApiError::internal)?;
    state
        .log
        .export(&actor, &filter, |event| csv.row(event))
        .await?;
    let body = csv.finish()?;
    let disposition = format!("attachment; filename=\"audit-{}.csv\"", state.log.today());
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
            (header::CACHE_CONTROL, PRIVATE),
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

/// The filters, and with `paging` the `limit` and `cursor`; every unknown or invalid
/// parameter is named.
fn parameters(
    params: Vec<(String, String)>,
    paging: bool,
) -> Result<(AuditFilter, usize, Option<AuditPosition>), ApiError> {
    let mut input = AuditFilterInput::default();
    let mut limit = AuditLog::DEFAULT_PAGE;
    let mut after = None;
    let mut invalid = Vec::new();
    for (name, value) in params {
        match name.as_str() {
            "actor" => input.actor = Some(value),
            "action" => input.action = Some(value),
            "target" => input.target = Some(value),
            "from" => input.from = Some(value),
            "to" => input.to = Some(value),
            "limit" if paging => match AuditLog::page_size(&value) {
                Ok(size) => limit = size,
                Err(issue) => invalid.push(InvalidValue::parameter(&name, issue)),
            },
            "cursor" if paging => match api::cursor::decode::<AuditPosition>(&value) {
                Ok(position) => after = Some(position),
                Err(_) => invalid.push(InvalidValue::parameter(&name, FieldIssue::InvalidCursor)),
            },
            _ => invalid.push(InvalidValue::parameter(&name, FieldIssue::UnknownField)),
        }
    }
    let filter =
        AuditFilter::parse(&input).map_err(|errors| invalid.extend(parameter_errors(&errors)));
    match filter {
        Ok(filter) if invalid.is_empty() => Ok((filter, limit, after)),
        _ => Err(ApiError::InvalidParameters(invalid)),
    }
}

const CSV_COLUMNS: [&str; 11] = [
    "time",
    "actor",
    "action",
    "target",
    "outcome",
    "sourceIp",
    "userAgent",
    "requestId",
    "eventId",
    "before",
    "after",
];

/// The export's CSV, written row by row as the trail is read.
struct AuditCsv {
    writer: csv::Writer<Vec<u8>>,
    /// What the user column says when the system acted.
    system: String,
}

impl AuditCsv {
    fn new(lang: Lang) -> Result<Self, csv::Error> {
        // Excel opens UTF-8 correctly only with the byte-order mark.
        let bom = "\u{feff}".as_bytes().to_vec();
        let mut writer = csv::WriterBuilder::new()
            .delimiter(if lang.decimal_comma() { b';' } else { b',' })
            .from_writer(bom);
        writer.write_record(
            CSV_COLUMNS
                .iter()
                .map(|column| message(lang, &format!("csv.audit.{column}"), &[])),
        )?;
        Ok(Self {
            writer,
            system: message(lang, "csv.audit.system", &[]),
        })
    }

    fn row(&mut self, event: &AuditEvent) -> Result<(), csv::Error> {
        let text = |value: &Option<String>| value.as_deref().map(inert).unwrap_or_default();
        let json = |value: &Option<serde_json::Value>| {
            value
                .as_ref()
                .map(serde_json::Value::to_string)
                .unwrap_or_default()
        };
        self.writer.write_record([
            // The form Excel reads as a date and time in every locale.
            event.at.format("%Y-%m-%d %H:%M:%S").to_string(),
            event
                .actor_id
                .map(|user| user.to_string())
                .unwrap_or_else(|| self.system.clone()),
            inert(&event.action),
            inert(&event.target),
            event.outcome.as_str().to_owned(),
            text(&event.source_ip),
            text(&event.user_agent),
            text(&event.request_id),
            event.id.to_string(),
            json(&event.before),
            json(&event.after),
        ])
    }

    fn finish(self) -> Result<Vec<u8>, ApiError> {
        self.writer
            .into_inner()
            .map_err(|error| ApiError::internal(error.error()))
    }
}

/// Text a client chose (a user agent, a request id) as a spreadsheet shows it but does
/// not evaluate: a leading `=`, `+`, `-`, `@`, tab or carriage return would start a
/// formula, so such a cell gets a leading apostrophe (OWASP's CSV injection advice).
fn inert(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::access::Role;
    use domain::audit::{Actor, RequestInfo};
    use domain::ids::{TenantId, UserId};
    use serde_json::json;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn invalid(
        result: Result<(AuditFilter, usize, Option<AuditPosition>), ApiError>,
    ) -> Vec<(String, String)> {
        let Err(ApiError::InvalidParameters(values)) = result else {
            panic!("invalid parameters expected");
        };
        values
            .into_iter()
            .map(|value| match value.location {
                api::problem::Location::Parameter(name) => (name, value.issue.code().to_owned()),
                other => panic!("{other:?} is no parameter"),
            })
            .collect()
    }

    #[test]
    fn every_invalid_parameter_is_named() {
        let found = invalid(parameters(
            params(&[
                ("actor", "anna"),
                ("limit", "0"),
                ("cursor", "not-a-cursor"),
                ("page", "2"),
                ("from", "2026-11-21"),
                ("to", "2026-11-20"),
            ]),
            true,
        ));
        assert_eq!(
            found,
            [
                ("limit".to_owned(), "invalid_integer".to_owned()),
                ("cursor".to_owned(), "invalid_cursor".to_owned()),
                ("page".to_owned(), "unknown_field".to_owned()),
                ("actor".to_owned(), "invalid_id".to_owned()),
                ("to".to_owned(), "before_start".to_owned()),
            ]
        );
        // The export takes no paging.
        let found = invalid(parameters(
            params(&[("limit", "10"), ("cursor", "x")]),
            false,
        ));
        assert_eq!(
            found,
            [
                ("limit".to_owned(), "unknown_field".to_owned()),
                ("cursor".to_owned(), "unknown_field".to_owned()),
            ]
        );
        for limit in ["201", "-1", "ten"] {
            assert_eq!(
                invalid(parameters(params(&[("limit", limit)]), true)),
                [("limit".to_owned(), "invalid_integer".to_owned())]
            );
        }
    }

    #[test]
    fn parameters_and_cursors_round_trip() {
        let user = UserId::generate();
        let (filter, limit, after) = parameters(
            params(&[
                ("actor", &user.to_string()),
                ("action", "contract."),
                ("limit", "200"),
            ]),
            true,
        )
        .unwrap();
        assert_eq!(filter.actor(), Some(user));
        assert_eq!(limit, 200);
        assert_eq!(after, None);
        let (_, limit, _) = parameters(Vec::new(), true).unwrap();
        assert_eq!(limit, AuditLog::DEFAULT_PAGE);

        // A position goes out as an opaque cursor and comes back the same.
        let position: AuditPosition =
            serde_json::from_value(json!({"s": "AUDIT#2026-11-21T09:00:00.000000Z#x"})).unwrap();
        let cursor = api::cursor::encode(&position);
        assert!(!cursor.contains("AUDIT"), "opaque: {cursor}");
        let (_, _, after) = parameters(params(&[("cursor", &cursor)]), true).unwrap();
        assert_eq!(after, Some(position));
        // A contract list's cursor is not one of the trail.
        let other = api::cursor::encode(&json!({"s": "CONTRACT#1", "e": "2027-01-01#1"}));
        assert_eq!(
            invalid(parameters(params(&[("cursor", &other)]), true)),
            [("cursor".to_owned(), "invalid_cursor".to_owned())]
        );
    }

    fn event(actor: Option<&Actor>, user_agent: &str) -> AuditEvent {
        let at = "2026-11-21T09:00:00.123456Z".parse().unwrap();
        let before = Some(json!({"payment": {"amount": 689900, "currency": "SEK"}}));
        let after = Some(json!({"payment": {"amount": 700000, "currency": "SEK"}}));
        let mut event = match actor {
            Some(actor) => AuditEvent::change(
                actor,
                at,
                "contract.updated",
                "contract:1".into(),
                before,
                after,
            ),
            None => AuditEvent::system(
                TenantId::generate(),
                at,
                "contract.repriced",
                "contract:1".into(),
                before,
                after,
            ),
        };
        event.user_agent = Some(user_agent.to_owned());
        event
    }

    fn read_csv(bytes: &[u8], delimiter: u8) -> Vec<Vec<String>> {
        let text = std::str::from_utf8(bytes).unwrap();
        let text = text.strip_prefix('\u{feff}').expect("byte-order mark");
        csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(false)
            .from_reader(text.as_bytes())
            .records()
            .map(|record| record.unwrap().iter().map(str::to_owned).collect())
            .collect()
    }

    #[test]
    fn the_csv_speaks_the_callers_language_and_defuses_formulas() {
        let actor = Actor {
            tenant: TenantId::generate(),
            user: UserId::generate(),
            role: Role::Owner,
            request: RequestInfo {
                request_id: Some("-req".into()),
                source_ip: Some("198.51.100.23".into()),
                user_agent: None,
            },
        };
        let mut swedish = AuditCsv::new(Lang::Sv).unwrap();
        swedish
            .row(&event(Some(&actor), "=HYPERLINK(\"http://evil\")"))
            .unwrap();
        swedish.row(&event(None, "Leasedesk")).unwrap();
        let rows = read_csv(&swedish.finish().unwrap(), b';');
        assert_eq!(rows[0][0], "Tid (UTC)");
        assert_eq!(rows[0][1], "Användare");
        assert_eq!(rows[0].len(), CSV_COLUMNS.len());
        let first = &rows[1];
        assert_eq!(first[0], "2026-11-21 09:00:00");
        assert_eq!(first[1], actor.user.to_string());
        assert_eq!(first[2], "contract.updated");
        assert_eq!(first[4], "success");
        assert_eq!(first[5], "198.51.100.23");
        assert_eq!(first[6], "'=HYPERLINK(\"http://evil\")");
        assert_eq!(first[7], "'-req");
        let before: serde_json::Value = serde_json::from_str(&first[9]).unwrap();
        assert_eq!(before["payment"]["amount"], 689900);
        assert_eq!(rows[2][1], "Systemet");
        assert_eq!(rows[2][6], "Leasedesk");

        let mut english = AuditCsv::new(Lang::En).unwrap();
        english.row(&event(None, "curl/8")).unwrap();
        let bytes = english.finish().unwrap();
        let rows = read_csv(&bytes, b',');
        assert_eq!(rows[0][0], "Time (UTC)");
        assert_eq!(rows[0][10], "After");
        assert_eq!(rows[1][1], "System");
        assert_eq!(rows[1].len(), CSV_COLUMNS.len());
    }
}
