//! `/api/v1/tenants` (platform admin) and `/api/v1/keys` (a tenant's own keys).

use crate::db::{OptionalExtension as _, params};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Permission, Principal, Role, generate_key, insert_key};
use crate::clock::new_id;
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    pub name: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedTenant {
    pub tenant: Tenant,
    /// A `manager` key for the new tenant, shown only now.
    pub api_key: CreatedKey,
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.len() > 100 {
        return Err(ApiError::bad("invalid_name", "name must be 1 to 100 characters"));
    }
    Ok(())
}

#[utoipa::path(post, path = "/api/v1/tenants", tag = "tenants", request_body = CreateTenant,
    responses((status = 201, body = CreatedTenant), (status = 403, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn create_tenant(
    State(st): State<AppState>,
    p: Principal,
    ApiJson(req): ApiJson<CreateTenant>,
) -> Result<(StatusCode, Json<CreatedTenant>), ApiError> {
    p.require_admin()?;
    check_name(&req.name)?;
    let now = st.clock.now_ms();
    let out = st
        .db
        .call(move |c| {
            let tx = c.transaction()?;
            let id = new_id("ten");
            let name = req.name.trim().to_owned();
            tx.execute(
                "INSERT INTO tenants (id, name, created_at) VALUES (?1,?2,?3)",
                params![id, name, now],
            )?;
            let key = generate_key();
            let key_id = insert_key(&tx, &id, "initial manager key", Role::Manager, now, &key)?;
            tx.commit()?;
            Ok(CreatedTenant {
                tenant: Tenant { id, name, created_at: now },
                api_key: CreatedKey {
                    id: key_id,
                    name: "initial manager key".into(),
                    role: Role::Manager,
                    prefix: key.prefix,
                    created_at: now,
                    key: key.clear,
                },
            })
        })
        .await?;
    Ok((StatusCode::CREATED, Json(out)))
}

#[utoipa::path(get, path = "/api/v1/tenants", tag = "tenants",
    responses((status = 200, body = Vec<Tenant>), (status = 403, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_tenants(State(st): State<AppState>, p: Principal) -> Result<Json<Vec<Tenant>>, ApiError> {
    p.require_admin()?;
    let rows = st
        .db
        .call(|c| {
            let mut stmt = c.prepare("SELECT id, name, created_at FROM tenants ORDER BY created_at, id")?;
            let rows = stmt
                .query_map([], |r| Ok(Tenant { id: r.get(0)?, name: r.get(1)?, created_at: r.get(2)? }))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await?;
    Ok(Json(rows))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedKey {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub prefix: String,
    pub created_at: i64,
    /// The key itself. It is shown only in this response; the server keeps only its hash.
    pub key: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// First characters of the key, to recognise it.
    pub prefix: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

#[utoipa::path(post, path = "/api/v1/keys", tag = "keys", request_body = CreateKey,
    responses((status = 201, body = CreatedKey), (status = 403, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn create_key(
    State(st): State<AppState>,
    p: Principal,
    ApiJson(req): ApiJson<CreateKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    p.require(Permission::Manage)?;
    if req.role == Role::Admin {
        p.require_admin()?;
    }
    check_name(&req.name)?;
    let now = st.clock.now_ms();
    let tenant = p.tenant_id.clone();
    let out = st
        .db
        .call(move |c| {
            let key = generate_key();
            let name = req.name.trim().to_owned();
            let id = insert_key(c, &tenant, &name, req.role, now, &key)?;
            Ok(CreatedKey { id, name, role: req.role, prefix: key.prefix, created_at: now, key: key.clear })
        })
        .await?;
    Ok((StatusCode::CREATED, Json(out)))
}

#[utoipa::path(get, path = "/api/v1/keys", tag = "keys",
    responses((status = 200, body = Vec<ApiKey>)), security(("api_key" = [])))]
pub async fn list_keys(State(st): State<AppState>, p: Principal) -> Result<Json<Vec<ApiKey>>, ApiError> {
    p.require(Permission::Manage)?;
    let tenant = p.tenant_id.clone();
    let rows = st
        .db
        .call(move |c| {
            let mut stmt = c.prepare(
                "SELECT id, name, role, prefix, created_at, revoked_at FROM api_keys WHERE tenant_id = ?1
                 ORDER BY created_at, id",
            )?;
            let rows = stmt
                .query_map(params![tenant], |r| {
                    let role: String = r.get(2)?;
                    Ok(ApiKey {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        role: Role::parse(&role)
                            .ok_or_else(|| crate::db::DbError::Corrupt(format!("api key role {role}")))?,
                        prefix: r.get(3)?,
                        created_at: r.get(4)?,
                        revoked_at: r.get(5)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await?;
    Ok(Json(rows))
}

/// Revokes a key. An `admin` key can be revoked by an admin key only, and never the last active
/// one (409 `last_admin_key`): the platform must keep a way in. Live streams (WebSocket,
/// Socket.IO) opened with the key are closed at once.
#[utoipa::path(delete, path = "/api/v1/keys/{id}", tag = "keys", params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn revoke_key(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.require(Permission::Manage)?;
    let tenant = p.tenant_id.clone();
    let now = st.clock.now_ms();
    let key_id = id.clone();
    let caller_is_admin = p.role == Role::Admin;
    let outcome = st
        .db
        .call(move |c| {
            let role: Option<String> = c
                .query_row(
                    "SELECT role FROM api_keys WHERE tenant_id = ?1 AND id = ?2 AND revoked_at IS NULL",
                    params![tenant, id],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(role) = role else { return Ok(Revoke::NotFound) };
            if role != Role::Admin.as_str() {
                c.execute(
                    "UPDATE api_keys SET revoked_at = ?3 WHERE tenant_id = ?1 AND id = ?2 AND revoked_at IS NULL",
                    params![tenant, id, now],
                )?;
                return Ok(Revoke::Done);
            }
            if !caller_is_admin {
                return Ok(Revoke::AdminOnly);
            }
            // One statement, so two revocations at once cannot both take the last two keys.
            let n = c.execute(
                "UPDATE api_keys SET revoked_at = ?3 WHERE tenant_id = ?1 AND id = ?2 AND revoked_at IS NULL
                 AND (SELECT COUNT(*) FROM api_keys WHERE role = 'admin' AND revoked_at IS NULL) > 1",
                params![tenant, id, now],
            )?;
            Ok(if n == 0 { Revoke::LastAdmin } else { Revoke::Done })
        })
        .await?;
    match outcome {
        Revoke::NotFound => Err(ApiError::NotFound("api key")),
        Revoke::AdminOnly => Err(ApiError::Forbidden("admin")),
        Revoke::LastAdmin => Err(ApiError::Conflict {
            code: "last_admin_key",
            message: "this is the last active admin key; create another admin key before revoking it".into(),
        }),
        Revoke::Done => {
            st.access.revocations.revoke(&key_id);
            Ok(StatusCode::NO_CONTENT)
        }
    }
}

enum Revoke {
    NotFound,
    AdminOnly,
    LastAdmin,
    Done,
}
