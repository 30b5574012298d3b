//! Organization-wide settings: whether every member must sign in with a second factor.
//! The rules live in `domain::org_settings`.

use crate::AuthState;
use api::{ApiError, Caller, JsonBody};
use axum::Json;
use axum::extract::State;
use domain::access::Permission;
use domain::org_settings::OrganizationSettings;
use serde::Deserialize;
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SettingsChange {
    /// Every member signs in with a second factor. Turning it on ends the sessions of
    /// members without one; their next sign-in serves only setting one up.
    pub require_two_factor: bool,
}

/// The organization's settings.
#[utoipa::path(
    get,
    path = "/organization/settings",
    tag = "members",
    security(("bearer" = [])),
    responses((status = 200, description = "The settings", body = OrganizationSettings))
)]
pub(crate) async fn organization_settings(
    State(state): State<AuthState>,
    caller: Caller,
) -> Result<Json<OrganizationSettings>, ApiError> {
    caller.require(Permission::ReadMembers)?;
    Ok(Json(state.org_settings.settings(&caller.actor()).await?))
}

/// Change the organization's settings (owners and admins).
#[utoipa::path(
    patch,
    path = "/organization/settings",
    tag = "members",
    security(("bearer" = [])),
    request_body = SettingsChange,
    responses(
        (status = 200, description = "The settings now", body = OrganizationSettings),
        (status = 409, description = "Requiring a second factor needs one of your own first",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn change_organization_settings(
    State(state): State<AuthState>,
    caller: Caller,
    body: JsonBody<SettingsChange>,
) -> Result<Json<OrganizationSettings>, ApiError> {
    caller.require(Permission::ManageOrganization)?;
    Ok(Json(
        state
            .org_settings
            .set_require_two_factor(&caller.actor(), body.value.require_two_factor)
            .await?,
    ))
}
