//! The portfolio dashboard's routes: the figures, their settings, and a rebuild.

use crate::ContractsState;
use api::i18n::Lang;
use api::problem::ProblemDocument;
use api::{ApiError, Caller, JsonBody};
use axum::Json;
use axum::extract::State;
use domain::portfolio::{Dashboard, PortfolioSettings, RecomputeReport, SettingsChanges};

/// The portfolio dashboard: leasing debt today, a year ago and a year ahead with the
/// monthly series, the debt-weighted average rate, counts by status, extended and ending
/// contracts, breakdowns, savings potential and tips, in the reporting currency.
///
/// Reads the same few records for 10 contracts as for 100,000: the figures are
/// maintained on every contract change. Tips come in the caller's language.
#[utoipa::path(
    get,
    path = "/portfolio",
    tag = "portfolio",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The dashboard", body = Dashboard),
        (status = 401, description = "No valid access token",
            body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn dashboard(
    State(state): State<ContractsState>,
    caller: Caller,
    lang: Lang,
) -> Result<Json<Dashboard>, ApiError> {
    let mut dashboard = state.portfolio.dashboard(&caller.actor()).await?;
    for tip in &mut dashboard.tips {
        let params: Vec<(&str, String)> = tip
            .params
            .iter()
            .map(|(name, value)| (name.as_str(), value.clone()))
            .collect();
        tip.message = api::i18n::message(lang, &format!("tip.{}", tip.code), &params);
    }
    Ok(Json(dashboard))
}

/// Rebuild the dashboard's figures from the contracts and report every figure the
/// maintained aggregate had different (owners and admins).
#[utoipa::path(
    post,
    path = "/portfolio/recompute",
    tag = "portfolio",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Rebuilt", body = RecomputeReport),
        (status = 403, description = "Not an owner or admin",
            body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn recompute(
    State(state): State<ContractsState>,
    caller: Caller,
) -> Result<Json<RecomputeReport>, ApiError> {
    Ok(Json(state.portfolio.recompute(&caller.actor()).await?))
}

/// The dashboard's settings: reporting currency and savings benchmark.
#[utoipa::path(
    get,
    path = "/portfolio/settings",
    tag = "portfolio",
    security(("bearer" = [])),
    responses((status = 200, description = "The settings", body = PortfolioSettings))
)]
pub(crate) async fn settings(
    State(state): State<ContractsState>,
    caller: Caller,
) -> Result<Json<PortfolioSettings>, ApiError> {
    caller.require(domain::access::Permission::ReadContracts)?;
    Ok(Json(state.portfolio.settings(caller.tenant).await?))
}

/// Change the settings (owners and admins); the figures are rebuilt with them.
#[utoipa::path(
    patch,
    path = "/portfolio/settings",
    tag = "portfolio",
    security(("bearer" = [])),
    request_body = SettingsChanges,
    responses(
        (status = 200, description = "The new settings", body = PortfolioSettings),
        (status = 400, description = "Invalid settings",
            body = ProblemDocument, content_type = "application/problem+json"),
        (status = 403, description = "Not an owner or admin",
            body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn update_settings(
    State(state): State<ContractsState>,
    caller: Caller,
    body: JsonBody<SettingsChanges>,
) -> Result<Json<PortfolioSettings>, ApiError> {
    Ok(Json(
        state
            .portfolio
            .update_settings(&caller.actor(), body.value)
            .await?,
    ))
}
