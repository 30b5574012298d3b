//! Modules an organization turns on (`sso`, `documentStorage`, `signing`, `scoring`),
//! each with a 10-day free trial. The rules live in `domain::modules`; the guard in
//! `api::access` refuses the routes of an inactive module.

use crate::AuthState;
use api::{ApiError, Caller, JsonBody};
use axum::Json;
use axum::extract::{Path, State};
use domain::access::Permission;
use domain::modules::{Module, ModuleView};
use domain::validation::FieldIssue;
use serde::Deserialize;
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModuleChange {
    /// On or off. The first time on starts a 10-day free trial.
    pub active: bool,
}

/// The organization's modules and where each stands.
#[utoipa::path(
    get,
    path = "/organization/modules",
    tag = "members",
    security(("bearer" = [])),
    responses((status = 200, description = "Every module", body = [ModuleView]))
)]
pub(crate) async fn list_modules(
    State(state): State<AuthState>,
    caller: Caller,
) -> Result<Json<Vec<ModuleView>>, ApiError> {
    caller.require(Permission::ReadMembers)?;
    Ok(Json(state.modules.list(caller.tenant).await?))
}

/// Turn a module on or off (owners). Its first activation starts a 10-day free trial;
/// after the trial it is billed until turned off.
#[utoipa::path(
    put,
    path = "/organization/modules/{module}",
    tag = "members",
    security(("bearer" = [])),
    params(("module" = Module, Path, description = "`sso`, `documentStorage`, `signing` or `scoring`")),
    request_body = ModuleChange,
    responses(
        (status = 200, description = "The module now", body = ModuleView),
        (status = 400, description = "No such module",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn set_module(
    State(state): State<AuthState>,
    caller: Caller,
    Path(module): Path<String>,
    body: JsonBody<ModuleChange>,
) -> Result<Json<ModuleView>, ApiError> {
    caller.require(Permission::ManageModules)?;
    let module: Module = module.parse().map_err(|_| {
        ApiError::InvalidParameters(vec![api::problem::InvalidValue::parameter(
            "module",
            FieldIssue::InvalidChoice {
                allowed: &["sso", "documentStorage", "signing", "scoring"],
            },
        )])
    })?;
    Ok(Json(
        state
            .modules
            .set_active(&caller.actor(), module, body.value.active)
            .await?,
    ))
}
