//! API keys, roles and the request principal.
//!
//! A key is 32 random bytes shown once as `bk_<64 hex>`; only its SHA-256 is stored. With 256
//! bits of entropy a plain hash is enough (no password-stretching needed) and lookups are an
//! index probe on the hash.

use crate::db::{OptionalExtension, params};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::clock::new_id;
use crate::error::ApiError;
use crate::state::AppState;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    Connect,
    Read,
    Send,
    Disconnect,
    /// Manage the tenant's keys, webhooks and accounts.
    Manage,
}

impl Permission {
    pub fn name(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Read => "read",
            Self::Send => "send",
            Self::Disconnect => "disconnect",
            Self::Manage => "manage",
        }
    }
}

/// A key's role: a fixed set of permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, plus managing tenants (the platform operator).
    Admin,
    /// Everything within its tenant.
    Manager,
    /// Connect, read, send and disconnect accounts; no key or webhook management.
    Operator,
    /// Read only.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Manager => "manager",
            Self::Operator => "operator",
            Self::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "admin" => Self::Admin,
            "manager" => Self::Manager,
            "operator" => Self::Operator,
            "viewer" => Self::Viewer,
            _ => return None,
        })
    }

    pub fn allows(self, p: Permission) -> bool {
        match self {
            Self::Admin | Self::Manager => true,
            Self::Operator => !matches!(p, Permission::Manage),
            Self::Viewer => matches!(p, Permission::Read),
        }
    }
}

/// A freshly generated key: the clear text (shown once) and its hash (stored).
pub struct GeneratedKey {
    pub clear: String,
    pub hash: String,
    pub prefix: String,
}

pub fn generate_key() -> GeneratedKey {
    let bytes: [u8; 32] = rand::random();
    let clear = format!("bk_{}", hex::encode(bytes));
    GeneratedKey { hash: hash_key(&clear), prefix: clear[..10].to_owned(), clear }
}

pub fn hash_key(clear: &str) -> String {
    hex::encode(Sha256::digest(clear.as_bytes()))
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant_id: String,
    pub key_id: String,
    pub role: Role,
}

impl Principal {
    pub fn require(&self, p: Permission) -> Result<(), ApiError> {
        if self.role.allows(p) { Ok(()) } else { Err(ApiError::Forbidden(p.name())) }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.role == Role::Admin { Ok(()) } else { Err(ApiError::Forbidden("admin")) }
    }
}

fn presented_key(parts: &Parts) -> Option<&str> {
    if let Some(v) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        let v = v.to_str().ok()?;
        let (scheme, token) = v.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then_some(token.trim());
    }
    parts.headers.get("x-api-key")?.to_str().ok().map(str::trim)
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let key = presented_key(parts).ok_or(ApiError::Unauthorized)?;
        authenticate_from(state, key, crate::access::client_ip(parts)).await
    }
}

/// [`authenticate`] for a request from `client`: a client with too many failed authentications
/// gets 429 `auth_throttled` (with `Retry-After`) before its key is looked at, and an unknown key
/// counts as a failure (see [`crate::access::AddressBuckets`]).
pub async fn authenticate_from(
    state: &AppState,
    key: &str,
    client: Option<std::net::IpAddr>,
) -> Result<Principal, ApiError> {
    let throttle = &state.access.auth_failures;
    if let Some(ip) = client {
        throttle.check(ip, state.clock.now_ms()).map_err(|secs| throttle.auth_error(secs))?;
    }
    let r = authenticate(state, key).await;
    if let (Some(ip), Err(ApiError::Unauthorized)) = (client, &r) {
        throttle.take(ip, state.clock.now_ms());
    }
    r
}

/// The principal of a clear-text API key (checked by hash), after the per-key rate limit.
pub async fn authenticate(state: &AppState, key: &str) -> Result<Principal, ApiError> {
    {
        let hash = hash_key(key);
        let found = state
            .db
            .call(move |c| {
                c.query_row(
                    "SELECT k.id, k.tenant_id, k.role FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
                     WHERE k.key_hash = ?1 AND k.revoked_at IS NULL",
                    params![hash],
                    |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?, r.get::<String>(2)?)),
                )
                .optional()
            })
            .await?;
        let (key_id, tenant_id, role) = found.ok_or(ApiError::Unauthorized)?;
        let role =
            Role::parse(&role).ok_or_else(|| ApiError::Internal(format!("key {key_id} has bad role")))?;
        if let Err(retry_after_secs) =
            state.rate.check(&key_id, state.limits.requests_per_minute, state.clock.now_ms())
        {
            crate::metrics::Metrics::inc(&state.metrics.rate_limited);
            return Err(ApiError::RateLimited {
                code: "rate_limited",
                message: format!(
                    "this API key is limited to {} requests per minute; retry in {retry_after_secs} s",
                    state.limits.requests_per_minute
                ),
                retry_after_secs,
                reset_at: None,
            });
        }
        Ok(Principal { tenant_id, key_id, role })
    }
}

/// The key a request presents in `Authorization: Bearer` or `X-API-Key`.
pub fn request_key(parts: &Parts) -> Option<&str> {
    presented_key(parts)
}

/// Inserts a key for `tenant_id`; returns its id and the clear text to show once.
pub fn insert_key(
    c: &crate::db::Conn,
    tenant_id: &str,
    name: &str,
    role: Role,
    now: i64,
    key: &GeneratedKey,
) -> crate::db::DbResult<String> {
    let id = new_id("key");
    c.execute(
        "INSERT INTO api_keys (id, tenant_id, name, role, key_hash, prefix, created_at) VALUES (?1,?2,?3,?4,?5,?6,?7)",
        params![id, tenant_id, name, role.as_str(), key.hash, key.prefix, now],
    )?;
    Ok(id)
}

/// Outcome of [`bootstrap_admin`].
#[derive(Debug, PartialEq, Eq)]
pub enum Bootstrap {
    /// An admin key already existed; nothing was done.
    Existing,
    /// The key given by the operator (env) was registered.
    FromEnv,
    /// A key was generated; the caller prints it once.
    Generated(String),
}

/// Ensures a default tenant and an admin key exist. An env-provided key is registered (by hash)
/// if it is not already known; otherwise a key is generated only when no admin key exists.
pub fn bootstrap_admin(
    c: &mut crate::db::Conn,
    env_key: Option<&str>,
    now: i64,
) -> Result<Bootstrap, crate::db::DbError> {
    let tx = c.transaction()?;
    let tenant: Option<String> = tx
        .query_row("SELECT id FROM tenants ORDER BY created_at, id LIMIT 1", [], |r| r.get(0))
        .optional()?;
    let tenant = match tenant {
        Some(t) => t,
        None => {
            let id = new_id("ten");
            tx.execute(
                "INSERT INTO tenants (id, name, created_at) VALUES (?1,'default',?2)",
                params![id, now],
            )?;
            id
        }
    };
    let outcome = if let Some(clear) = env_key {
        let hash = hash_key(clear);
        let known: bool =
            tx.query_row("SELECT EXISTS(SELECT 1 FROM api_keys WHERE key_hash = ?1)", params![hash], |r| {
                r.get(0)
            })?;
        if !known {
            let prefix: String = clear.chars().take(10).collect();
            let key = GeneratedKey { clear: String::new(), hash, prefix };
            insert_key(&tx, &tenant, "bootstrap admin (env)", Role::Admin, now, &key)?;
        }
        Bootstrap::FromEnv
    } else {
        let any_admin: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM api_keys WHERE role = 'admin' AND revoked_at IS NULL)",
            [],
            |r| r.get(0),
        )?;
        if any_admin {
            Bootstrap::Existing
        } else {
            let key = generate_key();
            insert_key(&tx, &tenant, "bootstrap admin", Role::Admin, now, &key)?;
            Bootstrap::Generated(key.clear)
        }
    };
    tx.commit()?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_grant_expected_permissions() {
        assert!(Role::Viewer.allows(Permission::Read));
        assert!(!Role::Viewer.allows(Permission::Send));
        assert!(Role::Operator.allows(Permission::Disconnect));
        assert!(!Role::Operator.allows(Permission::Manage));
        assert!(Role::Manager.allows(Permission::Manage));
    }

    #[test]
    fn keys_are_random_and_hash_is_not_the_key() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a.clear, b.clear);
        assert_eq!(a.clear.len(), 67);
        assert_eq!(a.hash, hash_key(&a.clear));
        assert!(!a.hash.contains(&a.clear[3..]));
    }
}
