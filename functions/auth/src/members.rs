//! The organization's members: the list, invitations by e-mail, accepting one, role
//! changes and removal. The rules live in `domain::members`.

use crate::sessions::open_session;
use crate::{AuthState, UserView};
use api::caller::Origin;
use api::i18n::Lang;
use api::mail::MailTemplate;
use api::{ApiError, Caller, JsonBody};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::access::{Permission, Role};
use domain::ids::UserId;
use domain::members::{Acceptance, Invitation};
use serde::Deserialize;
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InvitationRequest {
    #[schema(example = "erik.berg@nordlysfleet.se", format = "email")]
    pub email: String,
    pub role: Role,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleChange {
    pub role: Role,
}

/// The members of the caller's organization.
#[utoipa::path(
    get,
    path = "/members",
    tag = "members",
    security(("bearer" = [])),
    responses((status = 200, description = "Every member", body = [UserView]))
)]
pub(crate) async fn list_members(
    State(state): State<AuthState>,
    caller: Caller,
) -> Result<Json<Vec<UserView>>, ApiError> {
    caller.require(Permission::ReadMembers)?;
    let members = state.members.list(&caller.actor()).await?;
    Ok(Json(members.into_iter().map(UserView::from).collect()))
}

/// Invite someone by e-mail to join with a role. The mail, in the inviter's language,
/// carries a link that works once, for seven days.
#[utoipa::path(
    post,
    path = "/members/invitations",
    tag = "members",
    security(("bearer" = [])),
    request_body = InvitationRequest,
    responses(
        (status = 201, description = "Invited; the mail is on its way", body = Invitation),
        (status = 503, description = "The mail could not be sent; no invitation was kept",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn invite_member(
    State(state): State<AuthState>,
    caller: Caller,
    lang: Lang,
    body: JsonBody<InvitationRequest>,
) -> Result<Response, ApiError> {
    caller.require(Permission::ManageMembers)?;
    let actor = caller.actor();
    let invited = state
        .members
        .invite(&actor, &body.value.email, body.value.role)
        .await?;
    let (inviter, organization) = state.accounts.profile(caller.tenant, caller.user).await?;
    let mail = MailTemplate::Invite {
        organization_name: organization.name,
        inviter_name: inviter.name,
        link: state.link("invitations/accept", &invited.token),
        expires_at: invited.invitation.expires_at,
    };
    let sent = state
        .send_mail(mail, lang, invited.invitation.email.clone())
        .await;
    if let Err(error) = sent {
        tracing::warn!(%error, "invitation mail not sent; invitation withdrawn");
        state
            .members
            .withdraw(caller.tenant, invited.invitation.id)
            .await?;
        return Err(ApiError::MailUnavailable);
    }
    Ok((StatusCode::CREATED, Json(invited.invitation)).into_response())
}

/// Accept an invitation: choose a name and a password, and be signed in.
#[utoipa::path(
    post,
    path = "/auth/invitations/accept",
    tag = "members",
    request_body = Acceptance,
    responses(
        (status = 201, description = "Joined and signed in", body = crate::sessions::TokenResponse),
        (status = 410, description = "Unknown, expired or used invitation",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn accept_invitation(
    State(state): State<AuthState>,
    Origin(origin): Origin,
    body: JsonBody<Acceptance>,
) -> Result<Response, ApiError> {
    let user = state.members.accept(body.value, &origin).await?;
    let mut response = open_session(&state, &user, "invitation", &origin).await?;
    *response.status_mut() = StatusCode::CREATED;
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/me"));
    Ok(response)
}

/// Give a member another role; it counts from their next request. Only owners make or
/// unmake owners, and the last owner stays one.
#[utoipa::path(
    patch,
    path = "/members/{id}",
    tag = "members",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The member's user id")),
    request_body = RoleChange,
    responses(
        (status = 200, description = "The member with the new role", body = UserView),
        (status = 409, description = "The last owner cannot stop being one",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn change_role(
    State(state): State<AuthState>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonBody<RoleChange>,
) -> Result<Json<UserView>, ApiError> {
    caller.require(Permission::ManageMembers)?;
    let member = parse_member(&id)?;
    let user = state
        .members
        .change_role(&caller.actor(), member, body.value.role)
        .await?;
    Ok(Json(UserView::from(user)))
}

/// Remove a member: their sessions end at once.
#[utoipa::path(
    delete,
    path = "/members/{id}",
    tag = "members",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The member's user id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 409, description = "The last owner cannot be removed",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn remove_member(
    State(state): State<AuthState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::ManageMembers)?;
    let member = parse_member(&id)?;
    state.members.remove(&caller.actor(), member).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A malformed id names no member: 404, like another organization's member.
fn parse_member(id: &str) -> Result<UserId, ApiError> {
    id.parse().map_err(|_| ApiError::NotFound)
}

/// Erase a member: their account, sessions and second factor go, and the audit log keeps
/// their events under a pseudonym without their personal data (GDPR art. 17).
#[utoipa::path(
    post,
    path = "/members/{id}/erasure",
    tag = "members",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The member's user id")),
    responses(
        (status = 204, description = "Erased"),
        (status = 409, description = "The last owner cannot be erased",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn erase_member(
    State(state): State<AuthState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::ManageMembers)?;
    let member = parse_member(&id)?;
    state.members.erase(&caller.actor(), member).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Erase your own account: the same as an erasure by an admin. The last owner cannot
/// leave this way.
#[utoipa::path(
    delete,
    path = "/me",
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Erased; every session has ended"),
        (status = 409, description = "The last owner cannot be erased",
            body = api::problem::ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn erase_me(
    State(state): State<AuthState>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::ReadProfile)?;
    state.members.erase(&caller.actor(), caller.user).await?;
    Ok(StatusCode::NO_CONTENT)
}
