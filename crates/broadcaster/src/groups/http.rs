//! `/api/v1/accounts/{id}/groups…`: parse, authorize, call [`super`], answer.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Permission, Principal};
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::runtime::{GroupInfo, ParticipantAction, ParticipantOutcome};
use crate::state::AppState;

/// The groups the account is in.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GroupList {
    pub groups: Vec<GroupInfo>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    /// 1 to 25 characters.
    pub subject: String,
    /// Phone numbers (any common format) or user JIDs; the account joins as creator.
    pub participants: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeParticipants {
    pub action: ParticipantAction,
    /// Phone numbers (any common format) or user JIDs, 1 to 256.
    pub participants: Vec<String>,
}

/// Per participant: `ok`, or why WhatsApp refused that one.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ParticipantResults {
    pub results: Vec<ParticipantOutcome>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetSubject {
    /// 1 to 25 characters.
    pub subject: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetDescription {
    /// Up to 2048 characters; `null` or empty deletes it.
    pub description: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InviteLink {
    /// `https://chat.whatsapp.com/<code>`.
    pub link: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinGroup {
    /// `https://chat.whatsapp.com/<code>`, or the code alone.
    pub link: String,
}

/// The groups the account is in, as WhatsApp lists them (with members and descriptions).
#[utoipa::path(get, path = "/api/v1/accounts/{id}/groups", tag = "groups",
    params(("id" = String, Path)),
    responses((status = 200, body = GroupList), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<GroupList>, ApiError> {
    p.require(Permission::Read)?;
    Ok(Json(GroupList { groups: super::list(&st, &p.tenant_id, &id).await? }))
}

/// Creates a group; the account is its creator and admin. Numbers WhatsApp refuses to add are
/// left out (read the answer's participants).
#[utoipa::path(post, path = "/api/v1/accounts/{id}/groups", tag = "groups",
    params(("id" = String, Path)), request_body = CreateGroup,
    responses((status = 201, body = GroupInfo), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CreateGroup>,
) -> Result<(StatusCode, Json<GroupInfo>), ApiError> {
    p.require(Permission::Send)?;
    let g = super::create(&st, &p.tenant_id, &id, &req.subject, &req.participants).await?;
    Ok((StatusCode::CREATED, Json(g)))
}

/// A group's subject, description and members. 404 when WhatsApp knows no such group, 403
/// when the account is not in it.
#[utoipa::path(get, path = "/api/v1/accounts/{id}/groups/{group}", tag = "groups",
    params(("id" = String, Path), ("group" = String, Path, description = "group JID (…@g.us) or its id")),
    responses((status = 200, body = GroupInfo), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn info(
    State(st): State<AppState>,
    p: Principal,
    Path((id, group)): Path<(String, String)>,
) -> Result<Json<GroupInfo>, ApiError> {
    p.require(Permission::Read)?;
    Ok(Json(super::info(&st, &p.tenant_id, &id, &group).await?))
}

/// Adds, removes, promotes or demotes members (admins only: 403 `not_allowed_in_group`
/// otherwise). Answers per participant; one refused participant does not fail the others.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/groups/{group}/participants", tag = "groups",
    params(("id" = String, Path), ("group" = String, Path, description = "group JID (…@g.us) or its id")),
    request_body = ChangeParticipants,
    responses((status = 200, body = ParticipantResults), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn participants(
    State(st): State<AppState>,
    p: Principal,
    Path((id, group)): Path<(String, String)>,
    ApiJson(req): ApiJson<ChangeParticipants>,
) -> Result<Json<ParticipantResults>, ApiError> {
    p.require(Permission::Send)?;
    let results = super::participants(&st, &p.tenant_id, &id, &group, req.action, &req.participants).await?;
    Ok(Json(ParticipantResults { results }))
}

/// Changes the subject; answers the group after the change.
#[utoipa::path(put, path = "/api/v1/accounts/{id}/groups/{group}/subject", tag = "groups",
    params(("id" = String, Path), ("group" = String, Path, description = "group JID (…@g.us) or its id")),
    request_body = SetSubject,
    responses((status = 200, body = GroupInfo), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn subject(
    State(st): State<AppState>,
    p: Principal,
    Path((id, group)): Path<(String, String)>,
    ApiJson(req): ApiJson<SetSubject>,
) -> Result<Json<GroupInfo>, ApiError> {
    p.require(Permission::Send)?;
    Ok(Json(super::set_subject(&st, &p.tenant_id, &id, &group, &req.subject).await?))
}

/// Sets or deletes the description; answers the group after the change. 409
/// `description_changed` when someone changed it at the same time.
#[utoipa::path(put, path = "/api/v1/accounts/{id}/groups/{group}/description", tag = "groups",
    params(("id" = String, Path), ("group" = String, Path, description = "group JID (…@g.us) or its id")),
    request_body = SetDescription,
    responses((status = 200, body = GroupInfo), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn description(
    State(st): State<AppState>,
    p: Principal,
    Path((id, group)): Path<(String, String)>,
    ApiJson(req): ApiJson<SetDescription>,
) -> Result<Json<GroupInfo>, ApiError> {
    p.require(Permission::Send)?;
    Ok(Json(super::set_description(&st, &p.tenant_id, &id, &group, req.description.as_deref()).await?))
}

/// The group's invite link (admins only: 403 `not_group_admin` otherwise).
#[utoipa::path(get, path = "/api/v1/accounts/{id}/groups/{group}/invite-link", tag = "groups",
    params(("id" = String, Path), ("group" = String, Path, description = "group JID (…@g.us) or its id")),
    responses((status = 200, body = InviteLink), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn invite_link(
    State(st): State<AppState>,
    p: Principal,
    Path((id, group)): Path<(String, String)>,
) -> Result<Json<InviteLink>, ApiError> {
    p.require(Permission::Read)?;
    Ok(Json(InviteLink { link: super::invite_link(&st, &p.tenant_id, &id, &group, false).await? }))
}

/// Revokes the invite link and answers the new one (admins only); the old link no longer
/// opens the group.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/groups/{group}/invite-link/revoke", tag = "groups",
    params(("id" = String, Path), ("group" = String, Path, description = "group JID (…@g.us) or its id")),
    responses((status = 200, body = InviteLink), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn revoke_invite_link(
    State(st): State<AppState>,
    p: Principal,
    Path((id, group)): Path<(String, String)>,
) -> Result<Json<InviteLink>, ApiError> {
    p.require(Permission::Send)?;
    Ok(Json(InviteLink { link: super::invite_link(&st, &p.tenant_id, &id, &group, true).await? }))
}

/// Joins a group by its invite link; answers the group. 422 `invalid_invite_link` or
/// `invite_link_revoked` when WhatsApp refuses the link.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/groups/join", tag = "groups",
    params(("id" = String, Path)), request_body = JoinGroup,
    responses((status = 200, body = GroupInfo), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn join(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<JoinGroup>,
) -> Result<Json<GroupInfo>, ApiError> {
    p.require(Permission::Send)?;
    Ok(Json(super::join(&st, &p.tenant_id, &id, &req.link).await?))
}

/// Leaves the group.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/groups/{group}/leave", tag = "groups",
    params(("id" = String, Path), ("group" = String, Path, description = "group JID (…@g.us) or its id")),
    responses((status = 204, description = "left"), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn leave(
    State(st): State<AppState>,
    p: Principal,
    Path((id, group)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    p.require(Permission::Send)?;
    super::leave(&st, &p.tenant_id, &id, &group).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub fn routes() -> axum::Router<AppState> {
    use axum::routing::{get, post, put};
    axum::Router::new()
        .route("/api/v1/accounts/{id}/groups", get(list).post(create))
        .route("/api/v1/accounts/{id}/groups/join", post(join))
        .route("/api/v1/accounts/{id}/groups/{group}", get(info))
        .route("/api/v1/accounts/{id}/groups/{group}/participants", post(participants))
        .route("/api/v1/accounts/{id}/groups/{group}/subject", put(subject))
        .route("/api/v1/accounts/{id}/groups/{group}/description", put(description))
        .route("/api/v1/accounts/{id}/groups/{group}/invite-link", get(invite_link))
        .route("/api/v1/accounts/{id}/groups/{group}/invite-link/revoke", post(revoke_invite_link))
        .route("/api/v1/accounts/{id}/groups/{group}/leave", post(leave))
}

/// The groups API's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    list,
    create,
    info,
    participants,
    subject,
    description,
    invite_link,
    revoke_invite_link,
    join,
    leave
))]
pub struct GroupsApi;
