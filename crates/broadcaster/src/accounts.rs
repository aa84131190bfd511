//! `/api/v1/accounts`: create, list, get, update, delete, activity log, connect/disconnect/logout.

pub mod new_contacts;
pub mod timelock;

use crate::db::{OptionalExtension, Row, params};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::account_state::AccountState;
use crate::auth::{Permission, Principal};
use crate::clock::new_id;
use crate::db::DbError;
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::outbox;
use crate::phone::E164;
use crate::proxy::{ProxyError, ProxyUrl};
use crate::runtime::{LinkMethod, SessionEvent};
use crate::state::AppState;

pub const DEFAULT_DAILY_LIMIT: i64 = 1000;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Account {
    pub id: String,
    pub name: String,
    /// E.164, once known.
    pub phone: Option<String>,
    pub push_name: Option<String>,
    /// The name WhatsApp shows to others for this account, announced at every login. `null`
    /// (the default): nothing is announced and the name the owner chose on the phone stays.
    pub push_name_override: Option<String>,
    /// The HTTP CONNECT proxy the account connects through, its password shown as `***`
    /// (never returned); `null`: direct.
    #[schema(example = "http://user:***@proxy.example:3128")]
    pub proxy: Option<String>,
    pub state: AccountState,
    /// Why the account is in its state, in plain words.
    pub state_reason: Option<String>,
    /// A stable code for some reasons: `client_outdated` when WhatsApp refused the WhatsApp Web
    /// version as outdated (state `error`; see `--wa-version`).
    pub state_reason_code: Option<String>,
    pub daily_limit: i64,
    /// First contacts (people the account never exchanged a message with) allowed a day,
    /// counted separately within `daily_limit`; see `new_contacts` of `today`.
    pub new_contact_limit: i64,
    /// WhatsApp's reach-out time-lock, while in force: the account may not message new
    /// contacts until `until`; its campaigns are paused (`reachout_timelock`) and its bulk
    /// messages postponed until then.
    pub reachout_timelock: Option<timelock::Timelock>,
    /// IANA time zone in which the daily counters reset.
    pub time_zone: String,
    pub last_connected_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Today's counters (the day of `time_zone`); in list, get and update answers.
    pub today: Option<DailyUsage>,
    /// In list, get and update answers.
    pub health: Option<Health>,
}

/// An account's messages today, in its time zone.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DailyUsage {
    /// Outgoing messages today (pending, sent or further; not failed): what the limit counts.
    pub sent: i64,
    pub received: i64,
    pub daily_limit: i64,
    /// First contacts made today (messages to people the account never exchanged one with).
    pub new_contacts: i64,
    pub new_contact_limit: i64,
    /// `sent / daily_limit` in percent, one decimal.
    pub usage_percent: f64,
    /// Next local midnight (ms since epoch), when the counters reset.
    pub resets_at: i64,
}

/// `healthy`, `warning` or `critical`; see [`Health`] for the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Healthy,
    Warning,
    Critical,
}

/// How an account is doing, from its state, today's usage and recent send failures. The worst
/// rule that applies wins:
/// - `critical`: the state is `logged_out` or `error` (it cannot send until someone acts); or
///   the daily limit is used up (sends answer 429 until local midnight); or 5 or more sends
///   failed in the last hour.
/// - `warning`: any state other than `active` (inactive, linking, connecting, reconnecting,
///   disconnected); or 80% or more of the daily limit used; or 1 to 4 sends failed in the last
///   hour; or WhatsApp restricted a first contact (error 463) in the last hour (such failures
///   also count as failed sends, and get their own reason: the account is reaching out faster
///   than WhatsApp allows).
///   Also `warning`: WhatsApp time-locked reaching out (campaigns paused until the lock ends),
///   or today's new-contact limit is used up (first contacts wait until local midnight).
/// - `healthy`: `active`, under 80% of the daily limit, no failed send in the last hour.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: HealthStatus,
    /// Why, one sentence per rule that applies (empty when healthy).
    pub reasons: Vec<String>,
}

// The thresholds of the rules documented on [`Health`] (keep the two in step).
/// Usage from which an account is `warning`.
pub const WARNING_USAGE_PERCENT: f64 = 80.0;
/// Failed sends in the last hour from which an account is `critical`.
pub const CRITICAL_FAILURES: i64 = 5;
const HOUR_MS: i64 = 3_600_000;

/// The health rules of [`Health`].
pub fn health(
    state: AccountState,
    usage_percent: f64,
    failures_last_hour: i64,
    restricted_last_hour: i64,
) -> Health {
    health_with_limits(
        state,
        usage_percent,
        failures_last_hour,
        restricted_last_hour,
        &ReachLimits::default(),
    )
}

/// What [`health_with_limits`] weighs beside usage and failures.
#[derive(Debug, Default)]
pub struct ReachLimits {
    /// A reach-out time-lock in force until then.
    pub timelock_until: Option<i64>,
    /// Today's new-contact limit is used up (first contacts wait until this reset).
    pub new_contacts_full_until: Option<i64>,
}

/// The health rules of [`Health`], with the reach-out ones.
pub fn health_with_limits(
    state: AccountState,
    usage_percent: f64,
    failures_last_hour: i64,
    restricted_last_hour: i64,
    limits: &ReachLimits,
) -> Health {
    let mut reasons = Vec::new();
    let mut status = HealthStatus::Healthy;
    let mut raise = |s: HealthStatus, why: String| {
        if s == HealthStatus::Critical || status == HealthStatus::Healthy {
            status = s;
        }
        reasons.push(why);
    };
    match state {
        AccountState::Active => {}
        AccountState::LoggedOut | AccountState::Error => {
            raise(HealthStatus::Critical, format!("account is {}", state.as_str()))
        }
        s => raise(HealthStatus::Warning, format!("account is {}", s.as_str())),
    }
    if usage_percent >= 100.0 {
        raise(HealthStatus::Critical, "daily limit reached".into());
    } else if usage_percent >= WARNING_USAGE_PERCENT {
        raise(HealthStatus::Warning, format!("{usage_percent}% of the daily limit used"));
    }
    if failures_last_hour >= CRITICAL_FAILURES {
        raise(HealthStatus::Critical, format!("{failures_last_hour} sends failed in the last hour"));
    } else if failures_last_hour > 0 {
        raise(HealthStatus::Warning, format!("{failures_last_hour} send(s) failed in the last hour"));
    }
    if restricted_last_hour > 0 {
        raise(
            HealthStatus::Warning,
            format!(
                "WhatsApp restricted {restricted_last_hour} first contact(s) in the last hour (error 463)"
            ),
        );
    }
    if let Some(until) = limits.timelock_until {
        raise(
            HealthStatus::Warning,
            format!(
                "WhatsApp time-locked new contacts until {until}; campaigns and bulk sends are paused until then"
            ),
        );
    }
    if let Some(reset) = limits.new_contacts_full_until {
        raise(HealthStatus::Warning, format!("new-contact limit reached; first contacts wait until {reset}"));
    }
    Health { status, reasons }
}

/// Fills `today` and `health` of an account read from the database.
fn with_usage(c: &crate::db::Conn, mut a: Account, now: i64) -> crate::db::DbResult<Account> {
    let (sent, received, resets_at) = crate::messages::usage_today(c, &a.id, &a.time_zone, now)?;
    // Restricted first contacts are failed rows whose reason starts `restricted:` (see
    // `RuntimeError::ReachoutRestricted`).
    let (failures, restricted): (i64, i64) = c.query_row(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN error LIKE 'restricted:%' THEN 1 ELSE 0 END), 0)
           FROM messages WHERE account_id = ?1 AND direction = 'outgoing' AND status = 'failed'
           AND failed_at >= ?2",
        params![a.id, now - HOUR_MS],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let usage_percent =
        if a.daily_limit > 0 { (sent as f64 * 1000.0 / a.daily_limit as f64).round() / 10.0 } else { 100.0 };
    let (day_start, _) = crate::messages::day_window(now, &a.time_zone);
    let (day, count): (i64, i64) = c.query_row(
        "SELECT new_contacts_day, new_contacts_today FROM accounts WHERE id = ?1",
        params![a.id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let new_contacts = new_contacts::today(day, count, day_start);
    a.reachout_timelock = timelock::in_force(c, &a.id, now)?.map(|(until, kind)| timelock::Timelock {
        account_id: a.id.clone(),
        active: true,
        until: Some(until),
        enforcement_type: kind,
    });
    let limits = ReachLimits {
        timelock_until: a.reachout_timelock.as_ref().and_then(|l| l.until),
        new_contacts_full_until: (new_contacts >= a.new_contact_limit).then_some(resets_at),
    };
    a.health = Some(health_with_limits(a.state, usage_percent, failures, restricted, &limits));
    a.today = Some(DailyUsage {
        sent,
        received,
        daily_limit: a.daily_limit,
        new_contacts,
        new_contact_limit: a.new_contact_limit,
        usage_percent,
        resets_at,
    });
    Ok(a)
}

const ACCOUNT_COLUMNS: &str = "id, name, phone, push_name, state, state_reason, daily_limit, time_zone, last_connected_at, created_at, updated_at, push_name_override, state_reason_code, new_contact_limit, proxy_display";

fn account_from_row(r: &Row) -> crate::db::DbResult<Account> {
    let state: String = r.get(4)?;
    Ok(Account {
        id: r.get(0)?,
        name: r.get(1)?,
        phone: r.get(2)?,
        push_name: r.get(3)?,
        state: AccountState::parse(&state)
            .ok_or_else(|| crate::db::DbError::Corrupt(format!("account state {state}")))?,
        state_reason: r.get(5)?,
        daily_limit: r.get(6)?,
        time_zone: r.get(7)?,
        last_connected_at: r.get(8)?,
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
        push_name_override: r.get(11)?,
        state_reason_code: r.get(12)?,
        new_contact_limit: r.get(13)?,
        proxy: r.get(14)?,
        reachout_timelock: None,
        today: None,
        health: None,
    })
}

fn load(c: &crate::db::Conn, tenant_id: &str, id: &str) -> crate::db::DbResult<Option<Account>> {
    c.query_row(
        &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE tenant_id = ?1 AND id = ?2"),
        params![tenant_id, id],
        account_from_row,
    )
    .optional()
}

/// Why a transition was not applied.
#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    #[error("account not found")]
    NotFound,
    #[error("cannot go from {from} to {to}", from = .from.as_str(), to = .to.as_str())]
    Illegal { from: AccountState, to: AccountState },
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

/// Moves an account to `to`, recording the transition in the activity log and the outbox,
/// all in one transaction. `tenant_id` scopes every statement.
pub fn transition(
    c: &mut crate::db::Conn,
    tenant_id: &str,
    account_id: &str,
    to: AccountState,
    reason: Option<&str>,
    now: i64,
) -> Result<AccountState, TransitionError> {
    transition_with_code(c, tenant_id, account_id, to, reason, None, now)
}

/// [`transition`] with a stable reason code (`client_outdated`), kept until the next
/// transition.
pub fn transition_with_code(
    c: &mut crate::db::Conn,
    tenant_id: &str,
    account_id: &str,
    to: AccountState,
    reason: Option<&str>,
    code: Option<&str>,
    now: i64,
) -> Result<AccountState, TransitionError> {
    let tx = c.transaction()?;
    let from: String = tx
        .query_row(
            "SELECT state FROM accounts WHERE tenant_id = ?1 AND id = ?2",
            params![tenant_id, account_id],
            |r| r.get(0),
        )
        .optional()?
        .ok_or(TransitionError::NotFound)?;
    let from = AccountState::parse(&from).ok_or(TransitionError::NotFound)?;
    if !from.can_become(to) {
        return Err(TransitionError::Illegal { from, to });
    }
    tx.execute(
        "UPDATE accounts SET state = ?3, state_reason = ?4, updated_at = ?5,
           last_connected_at = CASE WHEN ?3 = 'active' THEN ?5 ELSE last_connected_at END,
           state_reason_code = ?6
         WHERE tenant_id = ?1 AND id = ?2",
        params![tenant_id, account_id, to.as_str(), reason, now, code],
    )?;
    tx.execute(
        "INSERT INTO account_activity (tenant_id, account_id, from_state, to_state, reason, at) VALUES (?1,?2,?3,?4,?5,?6)",
        params![tenant_id, account_id, from.as_str(), to.as_str(), reason, now],
    )?;
    outbox::enqueue(
        &tx,
        tenant_id,
        Some(account_id),
        "connection_update",
        serde_json::json!({
            "account_id": account_id, "from": from.as_str(), "state": to.as_str(), "reason": reason,
            "reason_code": code,
        }),
        now,
    )?;
    tx.commit()?;
    Ok(from)
}

/// `state_reason_code` of an account stopped because WhatsApp refused its WhatsApp Web version.
pub const REASON_CLIENT_OUTDATED: &str = "client_outdated";

/// Applies what a session reported: a state transition, and for `Connected` the learned phone and
/// push name. Illegal transitions are logged and dropped (a late event from an old session).
pub fn apply_session_event(
    c: &mut crate::db::Conn,
    tenant_id: &str,
    account_id: &str,
    event: &SessionEvent,
    now: i64,
) -> Result<(), TransitionError> {
    let mut code = None;
    let (to, reason) = match event {
        SessionEvent::Qr { .. } => (AccountState::QrReady, None),
        SessionEvent::PairingCode { .. } => (AccountState::PairingCodeReady, None),
        SessionEvent::Connected { phone, push_name } => {
            c.execute(
                "UPDATE accounts SET phone = COALESCE(?3, phone), push_name = COALESCE(?4, push_name)
                 WHERE tenant_id = ?1 AND id = ?2",
                params![tenant_id, account_id, phone, push_name],
            )?;
            (AccountState::Active, None)
        }
        SessionEvent::Reconnecting { reason } => (AccountState::Reconnecting, Some(reason.as_str())),
        SessionEvent::Disconnected { reason } => (AccountState::Disconnected, Some(reason.as_str())),
        SessionEvent::LoggedOut { reason } => (AccountState::LoggedOut, Some(reason.as_str())),
        SessionEvent::Failed { reason } => (AccountState::Error, Some(reason.as_str())),
        SessionEvent::ClientOutdated { message } => {
            code = Some(REASON_CLIENT_OUTDATED);
            (AccountState::Error, Some(message.as_str()))
        }
        // Message events are not connection transitions; the messages module records them.
        SessionEvent::MessageStatus { .. }
        | SessionEvent::IncomingMessage { .. }
        | SessionEvent::ReachoutTimelock { .. }
        | SessionEvent::ChatSettingChanged { .. }
        | SessionEvent::ContactName { .. }
        | SessionEvent::PushNames { .. } => return Ok(()),
    };
    match transition_with_code(c, tenant_id, account_id, to, reason, code, now) {
        Ok(_) => Ok(()),
        Err(TransitionError::Illegal { from, to }) => {
            tracing::warn!(
                account_id,
                from = from.as_str(),
                to = to.as_str(),
                "dropped out-of-order session event"
            );
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    /// A label for people, e.g. "Support line".
    pub name: String,
    /// Optional phone number (any common format; stored as E.164).
    pub phone: Option<String>,
    pub daily_limit: Option<i64>,
    /// First contacts allowed a day (people the account never exchanged a message with),
    /// 0 to 100000; default 50 (see the README, "How sending limits work").
    pub new_contact_limit: Option<i64>,
    /// IANA time zone for the daily counters (default UTC); also accepted as `timezone`.
    #[serde(alias = "timezone")]
    pub time_zone: Option<String>,
    /// The name WhatsApp shows to others for this account (1 to 25 characters), announced at
    /// every login. Omit it to keep the name the owner chose on the phone.
    pub push_name_override: Option<String>,
    /// An HTTP CONNECT proxy for the account's connections to WhatsApp,
    /// `http://[user:password@]host[:port]` (port 8080 when absent). SOCKS proxies are refused
    /// (422 `proxy_scheme_unsupported`). The password is stored, never returned nor logged.
    #[schema(example = "http://user:password@proxy.example:3128")]
    pub proxy: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAccount {
    pub name: Option<String>,
    pub daily_limit: Option<i64>,
    /// First contacts allowed a day, 0 to 100000.
    pub new_contact_limit: Option<i64>,
    /// IANA time zone name; also accepted as `timezone`.
    #[serde(alias = "timezone")]
    pub time_zone: Option<String>,
    /// A new name to announce (1 to 25 characters), or `null` to stop announcing one and leave
    /// the owner's; omitted: unchanged. Takes effect at the account's next connection.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub push_name_override: Option<Option<String>>,
    /// A new proxy (as in account creation), or `null` to connect directly; omitted: unchanged.
    /// Takes effect at the account's next connection.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, example = "http://user:password@proxy.example:3128")]
    pub proxy: Option<Option<String>>,
}

/// `Some(None)` for an explicit `null`, `Some(Some(v))` for a value; absent stays `None`
/// (with `#[serde(default)]`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// WhatsApp's profile names are at most 25 characters.
const MAX_PUSH_NAME_CHARS: usize = 25;

/// A push name to announce: trimmed, 1 to 25 characters, no control characters.
fn check_push_name(name: &str) -> Result<String, ApiError> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > MAX_PUSH_NAME_CHARS || n.chars().any(char::is_control) {
        return Err(ApiError::bad(
            "invalid_push_name",
            format!(
                "push_name_override must be 1 to {MAX_PUSH_NAME_CHARS} characters without control characters"
            ),
        ));
    }
    Ok(n.to_owned())
}

/// A proxy URL wa-client can use: 400 `invalid_proxy` when it is no proxy URL, 422
/// `proxy_scheme_unsupported` for a kind of proxy it cannot tunnel through (SOCKS).
fn check_proxy(url: &str) -> Result<ProxyUrl, ApiError> {
    ProxyUrl::parse(url).map_err(|e| match e {
        ProxyError::UnsupportedScheme(_) => {
            ApiError::unprocessable("proxy_scheme_unsupported", e.to_string())
        }
        ProxyError::Malformed(_) => ApiError::bad("invalid_proxy", e.to_string()),
    })
}

/// A proxy as stored: the URL sealed for the account's row, and the form the API shows.
fn stored_proxy(st: &AppState, account_id: &str, proxy: &ProxyUrl) -> (String, String) {
    let sealed = st.secrets.seal(crate::secrets::SecretColumn::AccountProxy, account_id, proxy.expose());
    (sealed, proxy.redacted().to_owned())
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.len() > 100 {
        return Err(ApiError::bad("invalid_name", "name must be 1 to 100 characters"));
    }
    Ok(())
}

fn check_new_contact_limit(limit: i64) -> Result<(), ApiError> {
    if !(0..=100_000).contains(&limit) {
        return Err(ApiError::bad(
            "invalid_new_contact_limit",
            "new_contact_limit must be between 0 and 100000",
        ));
    }
    Ok(())
}

fn check_limit(limit: i64) -> Result<(), ApiError> {
    if !(1..=1_000_000).contains(&limit) {
        return Err(ApiError::bad("invalid_daily_limit", "daily_limit must be between 1 and 1000000"));
    }
    Ok(())
}

/// Checks an IANA time zone name against the database bundled with jiff (independent of the
/// host's tzdata) and returns its canonical spelling (`america/new_york` → `America/New_York`).
/// POSIX TZ strings and file paths are refused.
fn check_time_zone(tz: &str) -> Result<String, ApiError> {
    let plausible = !tz.is_empty()
        && tz.len() <= 64
        && tz.chars().all(|c| c.is_ascii_alphanumeric() || "/_-+".contains(c));
    let zone = plausible.then(|| jiff::tz::TimeZone::get(tz).ok()).flatten();
    match zone {
        Some(z) => Ok(z.iana_name().unwrap_or(tz).to_owned()),
        None => Err(ApiError::bad(
            "invalid_time_zone",
            format!("`{tz}` is not an IANA time zone name (such as `UTC` or `Europe/Berlin`)"),
        )),
    }
}

/// [`E164::parse`] with the API's error (400 `invalid_phone`).
pub fn parse_phone(input: &str) -> Result<E164, ApiError> {
    Ok(E164::parse(input)?)
}

#[utoipa::path(post, path = "/api/v1/accounts", tag = "accounts", request_body = CreateAccount,
    responses((status = 201, body = Account), (status = 400, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody),
              (status = 422, description = "`proxy_scheme_unsupported`: a proxy other than HTTP CONNECT", body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn create(
    State(st): State<AppState>,
    p: Principal,
    ApiJson(req): ApiJson<CreateAccount>,
) -> Result<(StatusCode, Json<Account>), ApiError> {
    p.require(Permission::Manage)?;
    check_name(&req.name)?;
    let phone = req.phone.as_deref().map(parse_phone).transpose()?.map(|p| p.to_string());
    let limit = req.daily_limit.unwrap_or(DEFAULT_DAILY_LIMIT);
    check_limit(limit)?;
    let new_contact_limit = req.new_contact_limit.unwrap_or(new_contacts::DEFAULT_NEW_CONTACT_LIMIT);
    check_new_contact_limit(new_contact_limit)?;
    let tz = check_time_zone(req.time_zone.as_deref().unwrap_or("UTC"))?;
    let push_name = req.push_name_override.as_deref().map(check_push_name).transpose()?;
    let id = new_id("acc");
    let proxy = req.proxy.as_deref().map(check_proxy).transpose()?.map(|p| stored_proxy(&st, &id, &p));
    let (proxy_url, proxy_display) = proxy.unzip();
    let now = st.clock.now_ms();
    let tenant = p.tenant_id.clone();
    let out = st
        .db
        .call(move |c| {
            let tx = c.transaction()?;
            let r = tx.execute(
                "INSERT INTO accounts (id, tenant_id, name, phone, state, daily_limit, time_zone, created_at, updated_at,
                   push_name_override, new_contact_limit, proxy_url, proxy_display)
                 VALUES (?1,?2,?3,?4,'inactive',?5,?6,?7,?7,?8,?9,?10,?11)",
                params![
                    id,
                    tenant,
                    req.name.trim(),
                    phone,
                    limit,
                    tz,
                    now,
                    push_name,
                    new_contact_limit,
                    proxy_url,
                    proxy_display
                ],
            );
            if let Err(e) = &r
                && e.is_constraint_violation()
            {
                return Ok(None);
            }
            r?;
            tx.execute(
                "INSERT INTO account_activity (tenant_id, account_id, from_state, to_state, reason, at)
                 VALUES (?1,?2,NULL,'inactive','created',?3)",
                params![tenant, id, now],
            )?;
            tx.commit()?;
            load(c, &tenant, &id)
        })
        .await?;
    let account = out.ok_or(ApiError::Conflict {
        code: "phone_in_use",
        message: "another account of this tenant has that phone number".into(),
    })?;
    Ok((StatusCode::CREATED, Json(account)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only accounts in this state.
    pub state: Option<AccountState>,
}

#[utoipa::path(get, path = "/api/v1/accounts", tag = "accounts", params(ListQuery),
    responses((status = 200, body = Vec<Account>)), security(("api_key" = [])))]
pub async fn list(
    State(st): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<Account>>, ApiError> {
    p.require(Permission::Read)?;
    let tenant = p.tenant_id.clone();
    let state = q.state.map(|s| s.as_str());
    let now = st.clock.now_ms();
    let rows = st
        .db
        .call(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE tenant_id = ?1 AND (CAST(?2 AS TEXT) IS NULL OR state = ?2)
                 ORDER BY created_at, id"
            ))?;
            let rows =
                stmt.query_map(params![tenant, state], account_from_row)?.collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(|a| with_usage(c, a, now)).collect::<Result<Vec<_>, _>>()
        })
        .await?;
    Ok(Json(rows))
}

#[utoipa::path(get, path = "/api/v1/accounts/{id}", tag = "accounts", params(("id" = String, Path)),
    responses((status = 200, body = Account), (status = 404, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn get(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<Account>, ApiError> {
    p.require(Permission::Read)?;
    let tenant = p.tenant_id.clone();
    let now = st.clock.now_ms();
    st.db
        .call(move |c| load(c, &tenant, &id)?.map(|a| with_usage(c, a, now)).transpose())
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound("account"))
}

#[utoipa::path(patch, path = "/api/v1/accounts/{id}", tag = "accounts", params(("id" = String, Path)),
    request_body = UpdateAccount,
    responses((status = 200, body = Account), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody),
              (status = 422, description = "`proxy_scheme_unsupported`: a proxy other than HTTP CONNECT", body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn update(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateAccount>,
) -> Result<Json<Account>, ApiError> {
    p.require(Permission::Manage)?;
    if let Some(n) = &req.name {
        check_name(n)?;
    }
    if let Some(l) = req.daily_limit {
        check_limit(l)?;
    }
    if let Some(l) = req.new_contact_limit {
        check_new_contact_limit(l)?;
    }
    let time_zone = req.time_zone.as_deref().map(check_time_zone).transpose()?;
    // (set it?, the new value): an explicit null clears it.
    let push_name = match &req.push_name_override {
        None => (false, None),
        Some(None) => (true, None),
        Some(Some(n)) => (true, Some(check_push_name(n)?)),
    };
    let proxy = match &req.proxy {
        None => (false, None),
        Some(None) => (true, None),
        Some(Some(u)) => (true, Some(stored_proxy(&st, &id, &check_proxy(u)?))),
    };
    let (proxy_url, proxy_display) = proxy.1.unzip();
    let proxy_set = proxy.0;
    let now = st.clock.now_ms();
    let tenant = p.tenant_id.clone();
    st.db
        .call(move |c| {
            let n = c.execute(
                "UPDATE accounts SET name = COALESCE(?3, name), daily_limit = COALESCE(?4, daily_limit),
                   time_zone = COALESCE(?5, time_zone), updated_at = ?6,
                   push_name_override = CASE WHEN ?7 = 1 THEN CAST(?8 AS TEXT) ELSE push_name_override END,
                   new_contact_limit = COALESCE(?9, new_contact_limit),
                   proxy_url = CASE WHEN ?10 = 1 THEN CAST(?11 AS TEXT) ELSE proxy_url END,
                   proxy_display = CASE WHEN ?10 = 1 THEN CAST(?12 AS TEXT) ELSE proxy_display END
                 WHERE tenant_id = ?1 AND id = ?2",
                params![
                    tenant,
                    id,
                    req.name.as_deref().map(str::trim),
                    req.daily_limit,
                    time_zone,
                    now,
                    i64::from(push_name.0),
                    push_name.1,
                    req.new_contact_limit,
                    i64::from(proxy_set),
                    proxy_url,
                    proxy_display
                ],
            )?;
            if n == 0 {
                Ok(None)
            } else {
                Ok(load(c, &tenant, &id)?.map(|a| with_usage(c, a, now)).transpose()?)
            }
        })
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound("account"))
}

#[utoipa::path(delete, path = "/api/v1/accounts/{id}", tag = "accounts", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)), security(("api_key" = [])))]
pub async fn delete(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.require(Permission::Manage)?;
    let tenant = p.tenant_id.clone();
    let state = {
        let (tenant, id) = (tenant.clone(), id.clone());
        st.db.call(move |c| load(c, &tenant, &id)).await?.ok_or(ApiError::NotFound("account"))?.state
    };
    // A live session must be closed first so it stops writing for a deleted account.
    if !matches!(
        state,
        AccountState::Inactive | AccountState::LoggedOut | AccountState::Disconnected | AccountState::Error
    ) {
        return Err(ApiError::Conflict {
            code: "account_running",
            message: format!("account is {}; log out or disconnect it first", state.as_str()),
        });
    }
    // Forget the device's keys before the account: a failure leaves both in place.
    if let Some(rt) = &st.runtime {
        rt.forget(&tenant, &id).await.map_err(|e| {
            ApiError::Unavailable(format!("cannot delete the account's WhatsApp auth data: {e}"))
        })?;
    }
    let n = st
        .db
        .call(move |c| {
            c.execute("DELETE FROM accounts WHERE tenant_id = ?1 AND id = ?2", params![tenant, id])
        })
        .await?;
    if n == 0 { Err(ApiError::NotFound("account")) } else { Ok(StatusCode::NO_CONTENT) }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Activity {
    pub from_state: Option<AccountState>,
    pub to_state: AccountState,
    pub reason: Option<String>,
    pub at: i64,
}

#[utoipa::path(get, path = "/api/v1/accounts/{id}/activity", tag = "accounts", params(("id" = String, Path)),
    responses((status = 200, body = Vec<Activity>), (status = 404, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn activity(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<Vec<Activity>>, ApiError> {
    p.require(Permission::Read)?;
    let tenant = p.tenant_id.clone();
    st.db
        .call(move |c| {
            if load(c, &tenant, &id)?.is_none() {
                return Ok(None);
            }
            let mut stmt = c.prepare(
                "SELECT from_state, to_state, reason, at FROM account_activity
                 WHERE tenant_id = ?1 AND account_id = ?2 ORDER BY id",
            )?;
            let rows = stmt
                .query_map(params![tenant, id], |r| {
                    Ok((r.get::<Option<String>>(0)?, r.get::<String>(1)?, r.get(2)?, r.get(3)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let mut out = Vec::with_capacity(rows.len());
            for (from, to, reason, at) in rows {
                let bad = || DbError::Corrupt(format!("activity state for account {id}"));
                let from_state = match from {
                    Some(f) => Some(AccountState::parse(&f).ok_or_else(bad)?),
                    None => None,
                };
                out.push(Activity {
                    from_state,
                    to_state: AccountState::parse(&to).ok_or_else(bad)?,
                    reason,
                    at,
                });
            }
            Ok(Some(out))
        })
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound("account"))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectRequest {
    /// Link by pairing code for this number instead of by QR.
    pub pairing_phone: Option<String>,
}

/// How to link: a QR (raw text to render, a PNG data URL, expiry) or a pairing code.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LinkInfo {
    /// The QR text (render it as a QR code), when linking by QR.
    pub qr: Option<String>,
    /// The same QR as a `data:image/png;base64,…` URL.
    pub qr_png: Option<String>,
    /// The 8-character code to type on the phone, when linking by pairing code.
    pub pairing_code: Option<String>,
    /// When the QR or code expires (ms since epoch).
    pub expires_at: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConnectResponse {
    #[serde(flatten)]
    pub account: Account,
    /// Present while the account waits to be linked.
    pub link: Option<LinkInfo>,
}

fn link_info(
    qr: Option<String>,
    code: Option<String>,
    expires_at: Option<i64>,
    now: i64,
) -> Option<LinkInfo> {
    if qr.is_none() && code.is_none() {
        return None;
    }
    let qr_png = qr.as_ref().and_then(|text| {
        let q = wa_client::QrCode {
            text: text.clone(),
            valid_for: std::time::Duration::from_millis(expires_at.map_or(0, |e| (e - now).max(0)) as u64),
            expires_at: std::time::Instant::now(),
        };
        q.to_png_data_url(4).ok()
    });
    Some(LinkInfo { qr, qr_png, pairing_code: code, expires_at })
}

fn load_link(
    c: &crate::db::Conn,
    tenant_id: &str,
    id: &str,
    now: i64,
) -> crate::db::DbResult<Option<LinkInfo>> {
    type LinkRow = (Option<String>, Option<String>, Option<i64>, String);
    let row: Option<LinkRow> = c
        .query_row(
            "SELECT qr_code, pairing_code, qr_expires_at, state FROM accounts WHERE tenant_id = ?1 AND id = ?2",
            params![tenant_id, id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    Ok(row.and_then(|(qr, code, exp, state)| {
        matches!(state.as_str(), "qr_ready" | "pairing_code_ready")
            .then(|| link_info(qr, code, exp, now))
            .flatten()
    }))
}

/// How long connect waits for the first QR, pairing code or login before answering.
const CONNECT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

#[utoipa::path(post, path = "/api/v1/accounts/{id}/connect", tag = "accounts", params(("id" = String, Path)),
    request_body = Option<ConnectRequest>,
    responses((status = 202, body = ConnectResponse), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
/// Starts linking (or resuming) the account and answers with the first QR / pairing code, or the
/// account once logged in (stored credentials need no QR).
pub async fn connect(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: Option<ApiJson<ConnectRequest>>,
) -> Result<(StatusCode, Json<ConnectResponse>), ApiError> {
    p.require(Permission::Connect)?;
    let req = body.map(|ApiJson(r)| r).unwrap_or_default();
    let method = match req.pairing_phone.as_deref() {
        Some(ph) => LinkMethod::PairingCode { phone_digits: parse_phone(ph)?.digits().to_owned() },
        None => LinkMethod::Qr,
    };
    let runtime = st.runtime.clone().ok_or_else(|| {
        ApiError::Unavailable(
            "no WhatsApp runtime is configured in this build; connecting is not available".into(),
        )
    })?;
    run_transition(&st, &p.tenant_id, &id, AccountState::Connecting, Some("connect requested")).await?;
    let options = session_options(&st, &p.tenant_id, &id).await?;
    let mut live = st.live.subscribe();
    if let Err(e) = runtime.connect_with(&p.tenant_id, &id, method, options).await {
        let reason = e.to_string();
        run_transition(&st, &p.tenant_id, &id, AccountState::Error, Some(&reason)).await?;
        return Err(ApiError::Unavailable(format!("connect failed: {reason}")));
    }
    let _ = tokio::time::timeout(CONNECT_WAIT, async {
        loop {
            match live.recv().await {
                Ok(ev) if ev.account_id.as_deref() == Some(id.as_str()) => {
                    let settled = match ev.event.as_str() {
                        "qr_code" | "pairing_code" => true,
                        "connection_update" => !matches!(ev.data["state"].as_str(), Some("connecting")),
                        _ => false,
                    };
                    if settled {
                        break;
                    }
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    })
    .await;
    let tenant = p.tenant_id.clone();
    let now = st.clock.now_ms();
    let (account, link) =
        st.db.call(move |c| Ok((load(c, &tenant, &id)?, load_link(c, &tenant, &id, now)?))).await?;
    let account = account.ok_or(ApiError::NotFound("account"))?;
    Ok((StatusCode::ACCEPTED, Json(ConnectResponse { account, link })))
}

#[utoipa::path(get, path = "/api/v1/accounts/{id}/qr", tag = "accounts", params(("id" = String, Path)),
    responses((status = 200, body = LinkInfo), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
/// The current QR code (or pairing code) of an account waiting to be linked.
pub async fn qr(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<LinkInfo>, ApiError> {
    p.require(Permission::Read)?;
    let tenant = p.tenant_id.clone();
    let now = st.clock.now_ms();
    let (account, link) =
        st.db.call(move |c| Ok((load(c, &tenant, &id)?, load_link(c, &tenant, &id, now)?))).await?;
    let account = account.ok_or(ApiError::NotFound("account"))?;
    link.map(Json).ok_or_else(|| ApiError::Conflict {
        code: "no_qr",
        message: format!("account is {}; no QR or pairing code to show", account.state.as_str()),
    })
}

#[utoipa::path(post, path = "/api/v1/accounts/{id}/disconnect", tag = "accounts", params(("id" = String, Path)),
    responses((status = 200, body = Account), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn disconnect(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<Account>, ApiError> {
    p.require(Permission::Disconnect)?;
    stop(&st, &p, id, false).await
}

#[utoipa::path(post, path = "/api/v1/accounts/{id}/logout", tag = "accounts", params(("id" = String, Path)),
    responses((status = 200, body = Account), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn logout(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<Account>, ApiError> {
    p.require(Permission::Disconnect)?;
    stop(&st, &p, id, true).await
}

async fn stop(st: &AppState, p: &Principal, id: String, logout: bool) -> Result<Json<Account>, ApiError> {
    let tenant = p.tenant_id.clone();
    let acc = {
        let (tenant, id) = (tenant.clone(), id.clone());
        st.db.call(move |c| load(c, &tenant, &id)).await?.ok_or(ApiError::NotFound("account"))?
    };
    let target = if logout { AccountState::LoggedOut } else { AccountState::Disconnected };
    if !acc.state.can_become(target) {
        return Err(ApiError::Conflict {
            code: "invalid_state",
            message: format!("account is {}; cannot move to {}", acc.state.as_str(), target.as_str()),
        });
    }
    if let Some(rt) = &st.runtime {
        let r = if logout { rt.logout(&tenant, &id).await } else { rt.disconnect(&tenant, &id).await };
        match r {
            Ok(()) | Err(crate::runtime::RuntimeError::NotRunning) => {}
            Err(e) => return Err(ApiError::Unavailable(format!("runtime refused: {e}"))),
        }
    }
    let reason = if logout { "logout requested" } else { "disconnect requested" };
    run_transition(st, &tenant, &id, target, Some(reason)).await?;
    st.db.call(move |c| load(c, &tenant, &id)).await?.map(Json).ok_or(ApiError::NotFound("account"))
}

async fn run_transition(
    st: &AppState,
    tenant: &str,
    id: &str,
    to: AccountState,
    reason: Option<&str>,
) -> Result<(), ApiError> {
    let now = st.clock.now_ms();
    let (tenant, id, reason) = (tenant.to_owned(), id.to_owned(), reason.map(str::to_owned));
    let r = st.db.call(move |c| Ok(transition(c, &tenant, &id, to, reason.as_deref(), now))).await?;
    st.outbox_notify.notify_one();
    match r {
        Ok(_) => Ok(()),
        Err(TransitionError::NotFound) => Err(ApiError::NotFound("account")),
        Err(e @ TransitionError::Illegal { .. }) => {
            Err(ApiError::Conflict { code: "invalid_state", message: e.to_string() })
        }
        Err(TransitionError::Db(e)) => Err(e.into()),
    }
}

/// The server's [`SessionEvents`](crate::runtime::SessionEvents) sink: applies each event (a
/// recorded transition, a message, a receipt), then publishes it on the live bus and wakes the
/// webhook worker.
pub struct DbSessionEvents {
    pub db: crate::db::Db,
    pub clock: crate::clock::SharedClock,
    pub notify: std::sync::Arc<tokio::sync::Notify>,
    pub live: crate::live::LiveBus,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Woken when an account becomes active: its queued sends may go now.
    pub send_wake: Option<std::sync::Arc<tokio::sync::Notify>>,
    /// The campaign engine's, woken when an account's reach-out time-lock changes.
    pub campaign_wake: Option<std::sync::Arc<tokio::sync::Notify>>,
}

impl DbSessionEvents {
    /// A sink writing to `st`'s database and bus.
    pub fn new(
        db: crate::db::Db,
        clock: crate::clock::SharedClock,
        notify: std::sync::Arc<tokio::sync::Notify>,
        live: crate::live::LiveBus,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> Self {
        Self { db, clock, notify, live, metrics, send_wake: None, campaign_wake: None }
    }

    /// Wakes `wake` (the queue runner's, [`crate::bulk::run`]) whenever an account becomes
    /// active, so messages queued while it was down are sent without waiting for a retry.
    pub fn with_send_wake(mut self, wake: std::sync::Arc<tokio::sync::Notify>) -> Self {
        self.send_wake = Some(wake);
        self
    }

    /// Wakes `wake` (the campaign engine's) whenever an account's reach-out time-lock is set or
    /// lifted, so its campaigns pause or resume at once.
    pub fn with_campaign_wake(mut self, wake: std::sync::Arc<tokio::sync::Notify>) -> Self {
        self.campaign_wake = Some(wake);
        self
    }
}

/// What applying one session event produced, for the live bus.
fn applied_events(
    c: &mut crate::db::Conn,
    tenant_id: &str,
    account_id: &str,
    event: &SessionEvent,
    now: i64,
) -> Result<Vec<(&'static str, serde_json::Value)>, TransitionError> {
    use crate::messages;
    let mut out = Vec::new();
    match event {
        SessionEvent::MessageStatus { message_id, status, at_ms } => {
            if let Some(d) = messages::apply_status(c, tenant_id, account_id, message_id, *status, *at_ms)? {
                out.push(("message_status_update", d));
            }
            return Ok(out);
        }
        SessionEvent::ReachoutTimelock { active, until_ms, enforcement_type } => {
            let until = until_ms.filter(|_| *active);
            if let Some(lock) = timelock::apply(c, tenant_id, account_id, until, enforcement_type, now)? {
                out.push(("reachout_timelock", serde_json::to_value(lock).unwrap_or_default()));
            }
            return Ok(out);
        }
        SessionEvent::ChatSettingChanged { chat, wa_chat, change, at_ms } => {
            let applied =
                crate::chats::settings::apply(c, tenant_id, account_id, chat, wa_chat, *change, *at_ms, now)?;
            if let Some(s) = applied {
                out.push((crate::chats::settings::EVENT, serde_json::to_value(s).unwrap_or_default()));
            }
            return Ok(out);
        }
        SessionEvent::ContactName { jid, lid, full_name, first_name } => {
            crate::contacts::names::apply_saved_name(
                c,
                tenant_id,
                account_id,
                jid,
                lid.as_deref(),
                full_name.as_deref(),
                first_name.as_deref(),
                now,
            )?;
            return Ok(out);
        }
        SessionEvent::PushNames { names } => {
            crate::contacts::names::apply_push_names(c, tenant_id, account_id, names, now)?;
            return Ok(out);
        }
        SessionEvent::IncomingMessage {
            message_id,
            chat,
            chat_lid,
            from,
            from_lid,
            from_phone,
            push_name,
            text,
            media,
            timestamp_ms,
            media_info,
            quoted_id,
            detail,
        } => {
            let m = messages::Incoming {
                wa_id: message_id,
                chat,
                chat_lid: chat_lid.as_deref(),
                from,
                from_lid: from_lid.as_deref(),
                from_phone: from_phone.as_deref(),
                push_name: push_name.as_deref(),
                text: text.as_deref(),
                media: *media,
                timestamp_ms: *timestamp_ms,
                media_info: media_info.as_deref(),
                quoted_id: quoted_id.as_deref(),
                detail: detail.as_deref(),
            };
            // A reaction, edit or revoke updates the message it targets.
            if let Some(applied) = messages::updates::apply_incoming(c, tenant_id, account_id, &m)? {
                out.extend(applied);
                return Ok(out);
            }
            if let Some(stored) = messages::record_incoming(c, tenant_id, account_id, &m, now)? {
                out.push(("incoming_message", serde_json::to_value(stored).unwrap_or_default()));
                // Opt-out keywords (STOP…) in a direct chat mark the contact; campaigns skip it.
                if let (Some(phone), Some(text)) = (from_phone, text)
                    && !chat.ends_with("@g.us")
                {
                    let phone = format!("+{}", phone.trim_start_matches('+'));
                    crate::contacts::apply_incoming_opt_out(c, tenant_id, &phone, text, now)?;
                }
            }
            return Ok(out);
        }
        _ => {}
    }
    let before = load(c, tenant_id, account_id)?.map(|a| a.state);
    apply_session_event(c, tenant_id, account_id, event, now)?;
    let (qr, pairing) = match event {
        SessionEvent::Qr { code, expires_at_ms } => (Some((code.as_str(), *expires_at_ms)), None),
        SessionEvent::PairingCode { code, expires_at_ms } => (None, Some((code.as_str(), *expires_at_ms))),
        _ => (None, None),
    };
    let tx = c.transaction()?;
    tx.execute(
        "UPDATE accounts SET qr_code = ?3, pairing_code = ?4, qr_expires_at = ?5 WHERE tenant_id = ?1 AND id = ?2",
        params![
            tenant_id,
            account_id,
            qr.map(|q| q.0),
            pairing.map(|p| p.0),
            qr.map(|q| q.1).or(pairing.map(|p| p.1))
        ],
    )?;
    if let Some((code, exp)) = qr {
        let data = serde_json::json!({ "account_id": account_id, "qr": code, "expires_at": exp });
        outbox::enqueue(&tx, tenant_id, Some(account_id), "qr_code", data.clone(), now)?;
        out.push(("qr_code", data));
    }
    if let Some((code, exp)) = pairing {
        let data = serde_json::json!({ "account_id": account_id, "pairing_code": code, "expires_at": exp });
        outbox::enqueue(&tx, tenant_id, Some(account_id), "pairing_code", data.clone(), now)?;
        out.push(("pairing_code", data));
    }
    tx.commit()?;
    if let Some(acc) = load(c, tenant_id, account_id)?
        && Some(acc.state) != before
    {
        out.push((
            "connection_update",
            serde_json::json!({
                "account_id": account_id, "from": before.map(AccountState::as_str), "state": acc.state.as_str(),
                "reason": acc.state_reason, "reason_code": acc.state_reason_code, "phone": acc.phone,
                "push_name": acc.push_name,
            }),
        ));
    }
    Ok(out)
}

impl crate::runtime::SessionEvents for DbSessionEvents {
    fn emit<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        event: SessionEvent,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            self.record(tenant_id, account_id, event).await;
        })
    }

    /// `true` once the event's rows (and outbox entries) are committed, including when it was a
    /// duplicate of something already recorded.
    fn record<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        event: SessionEvent,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>> {
        Box::pin(async move {
            let now = self.clock.now_ms();
            let incoming = matches!(event, SessionEvent::IncomingMessage { .. });
            let connected = matches!(event, SessionEvent::Connected { .. });
            let timelock = matches!(event, SessionEvent::ReachoutTimelock { .. });
            let (t, a) = (tenant_id.to_owned(), account_id.to_owned());
            let durable = match self.db.call(move |c| Ok(applied_events(c, &t, &a, &event, now))).await {
                Ok(Ok(events)) => {
                    // Counted once: a replayed duplicate produces no event.
                    if incoming && !events.is_empty() {
                        crate::metrics::Metrics::inc(&self.metrics.messages_received);
                    }
                    for (name, data) in events {
                        self.live.publish(tenant_id, Some(account_id), name, data, now);
                    }
                    true
                }
                Ok(Err(e)) => {
                    tracing::warn!(account_id, error = %e, "session event not applied");
                    false
                }
                Err(e) => {
                    tracing::error!(account_id, error = %e, "session event not applied");
                    false
                }
            };
            self.notify.notify_one();
            if timelock {
                // Campaigns pause or resume at once, and bulk messages moved earlier by a lift
                // go when due, not at the runners' next look.
                for wake in [&self.campaign_wake, &self.send_wake].into_iter().flatten() {
                    wake.notify_one();
                }
            }
            if connected
                && durable
                && let Some(wake) = &self.send_wake
            {
                if let Err(e) = crate::bulk::account_active(&self.db, account_id, now).await {
                    tracing::warn!(account_id, error = %e, "queued sends not brought forward");
                }
                wake.notify_one();
            }
            durable
        })
    }
}

/// What the account's session starts with (its push name to announce and its proxy, if any).
pub(crate) async fn session_options(
    st: &AppState,
    tenant_id: &str,
    account_id: &str,
) -> Result<crate::runtime::SessionOptions, ApiError> {
    let (t, a) = (tenant_id.to_owned(), account_id.to_owned());
    let row: Option<(Option<String>, Option<String>)> = st
        .db
        .call(move |c| {
            c.query_row(
                "SELECT push_name_override, proxy_url FROM accounts WHERE tenant_id = ?1 AND id = ?2",
                params![t, a],
                |r| Ok((r.get::<Option<String>>(0)?, r.get::<Option<String>>(1)?)),
            )
            .optional()
        })
        .await?;
    let (push_name, proxy) = row.ok_or(ApiError::NotFound("account"))?;
    let proxy = match proxy {
        None => None,
        Some(sealed) => {
            let url = st
                .secrets
                .open(crate::secrets::SecretColumn::AccountProxy, account_id, &sealed)
                .map_err(|e| ApiError::Unavailable(format!("the account's proxy cannot be read: {e}")))?;
            Some(check_proxy(&url)?)
        }
    };
    Ok(crate::runtime::SessionOptions { push_name, proxy })
}

/// `NotFound("account")` unless `account_id` belongs to `tenant_id` (another tenant's account
/// is indistinguishable from a missing one).
pub(crate) async fn require_in_tenant(
    st: &AppState,
    tenant_id: String,
    account_id: String,
) -> Result<(), ApiError> {
    let exists = st
        .db
        .call(move |c| {
            c.query_row(
                "SELECT EXISTS (SELECT 1 FROM accounts WHERE tenant_id = ?1 AND id = ?2)",
                params![tenant_id, account_id],
                |r| r.get::<bool>(0),
            )
        })
        .await?;
    if exists { Ok(()) } else { Err(ApiError::NotFound("account")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_rules() {
        let h = |s, u, f| health(s, u, f, 0);
        let active = AccountState::Active;
        assert_eq!(h(active, 0.0, 0).status, HealthStatus::Healthy);
        assert!(h(active, 79.9, 0).reasons.is_empty());
        assert_eq!(h(active, 80.0, 0).status, HealthStatus::Warning);
        assert_eq!(h(active, 100.0, 0).status, HealthStatus::Critical);
        assert_eq!(h(active, 0.0, 1).status, HealthStatus::Warning);
        assert_eq!(h(active, 0.0, CRITICAL_FAILURES - 1).status, HealthStatus::Warning);
        assert_eq!(h(active, 0.0, CRITICAL_FAILURES).status, HealthStatus::Critical);
        for s in [AccountState::Inactive, AccountState::Reconnecting, AccountState::Disconnected] {
            assert_eq!(h(s, 0.0, 0).status, HealthStatus::Warning, "{s:?}");
        }
        for s in [AccountState::LoggedOut, AccountState::Error] {
            assert_eq!(h(s, 0.0, 0).status, HealthStatus::Critical, "{s:?}");
        }
        // The worst rule wins and every rule that applies is given as a reason, in order.
        let worst = h(AccountState::Reconnecting, 100.0, 2);
        assert_eq!(worst.status, HealthStatus::Critical);
        assert_eq!(
            worst.reasons,
            ["account is reconnecting", "daily limit reached", "2 send(s) failed in the last hour"]
        );
        // A restricted first contact warns with its own reason, beside the failure count.
        let r = health(active, 0.0, 1, 1);
        assert_eq!(r.status, HealthStatus::Warning);
        assert_eq!(
            r.reasons,
            [
                "1 send(s) failed in the last hour",
                "WhatsApp restricted 1 first contact(s) in the last hour (error 463)"
            ]
        );
        // A warning after a critical rule does not lower the status.
        assert_eq!(h(AccountState::Error, 85.0, 0).status, HealthStatus::Critical);
    }
}
