//! `/api/v1/contacts`: contacts with tags and custom fields, CSV import/export, and opt-out.
//!
//! A contact is identified within its tenant by its E.164 phone number; importing or creating
//! the same number again merges into the existing contact (tags are added, fields overlaid, the
//! name replaced only by a non-empty one). An incoming message equal to one of the tenant's
//! opt-out keywords (default `STOP`, `UNSUBSCRIBE`) marks the sender opted out, and campaigns
//! skip opted-out contacts ([`apply_incoming_opt_out`], [`is_opted_out`]).

pub mod csv;
pub mod names;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::db::{Conn, OptionalExtension, Row, params};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Permission, Principal};
use crate::clock::new_id;
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::phone::{E164, PhoneError};
use crate::state::AppState;

pub const DEFAULT_OPT_OUT_KEYWORDS: [&str; 2] = ["STOP", "UNSUBSCRIBE"];
/// Most rows one import may carry.
pub const MAX_IMPORT_ROWS: usize = 100_000;
const MAX_TAGS: usize = 50;
const MAX_FIELDS: usize = 50;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Contact {
    pub id: String,
    /// E.164.
    pub phone: String,
    pub name: Option<String>,
    pub tags: Vec<String>,
    /// Custom fields (`[a-z0-9_]` keys), usable in templates as `{{fields.key}}`.
    pub fields: BTreeMap<String, String>,
    pub opted_out: bool,
    pub opted_out_at: Option<i64>,
    pub opt_out_reason: Option<String>,
    /// What the tenant's linked accounts' phones call this number (their address book, the
    /// contact's push name), one entry per account that knows it.
    #[serde(default)]
    pub whatsapp_names: Vec<names::WhatsAppName>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Normalises `input` to E.164. Numbers already in international form (`+` or `00`) are taken
/// as they are. Otherwise, with `default_country` (a calling code such as `44`):
/// - a leading trunk `0` is dropped and the calling code added (`020 7946 0958` → `+44…`);
/// - digits that already start with the calling code are taken as international without the
///   `+` (spreadsheets drop it): for `1` (NANP, whose national numbers are exactly 10 digits and
///   never start with 1) any 11 digits starting with `1`; for other codes when adding the code
///   again would exceed E.164's 15 digits;
/// - anything else gets the calling code in front.
pub fn normalize_phone(input: &str, default_country: Option<&str>) -> Result<E164, PhoneError> {
    let t = input.trim();
    if t.starts_with('+') || t.starts_with("00") {
        return E164::parse(t);
    }
    match default_country {
        None => E164::parse(t),
        Some(cc) => {
            let mut digits = String::with_capacity(16);
            for c in t.chars() {
                match c {
                    '0'..='9' => digits.push(c),
                    ' ' | '-' | '.' | '(' | ')' | '\u{a0}' => {}
                    other => return Err(PhoneError::InvalidCharacter(other)),
                }
            }
            if digits.is_empty() {
                return Err(PhoneError::Empty);
            }
            if let Some(national) = digits.strip_prefix('0') {
                return E164::parse(&format!("+{cc}{national}"));
            }
            let carries_code = digits.starts_with(cc)
                && if cc == "1" { digits.len() == 11 } else { cc.len() + digits.len() > 15 };
            if carries_code {
                E164::parse(&format!("+{digits}"))
            } else {
                E164::parse(&format!("+{cc}{digits}"))
            }
        }
    }
}

/// Checks a default country calling code (`44`, `+44`) and returns its digits.
pub fn parse_country_code(cc: &str) -> Result<String, ApiError> {
    let d = cc.trim().trim_start_matches('+');
    if (1..=3).contains(&d.len()) && d.chars().all(|c| c.is_ascii_digit()) && !d.starts_with('0') {
        Ok(d.to_owned())
    } else {
        Err(ApiError::bad(
            "invalid_default_country",
            format!("`{cc}` is not a country calling code (1 to 3 digits, e.g. 44)"),
        ))
    }
}

fn check_tag(tag: &str) -> Result<String, ApiError> {
    let t = tag.trim();
    if t.is_empty() || t.chars().count() > 50 || t.contains([',', ';', '|']) {
        return Err(ApiError::bad(
            "invalid_tag",
            format!("tag `{tag}` must be 1 to 50 characters without , ; |"),
        ));
    }
    Ok(t.to_owned())
}

/// A custom field key as written in templates: lowercase ASCII letters, digits and `_`.
pub fn field_key(raw: &str) -> Option<String> {
    let mut k = String::new();
    for c in raw.trim().chars() {
        if c.is_ascii_alphanumeric() {
            k.push(c.to_ascii_lowercase());
        } else if !k.ends_with('_') {
            k.push('_');
        }
    }
    let k = k.trim_matches('_').to_owned();
    (!k.is_empty() && k.len() <= 40).then_some(k)
}

fn check_fields(fields: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if fields.len() > MAX_FIELDS {
        return Err(ApiError::bad("invalid_fields", format!("at most {MAX_FIELDS} custom fields")));
    }
    for (k, v) in fields {
        if field_key(k).as_deref() != Some(k.as_str()) {
            return Err(ApiError::bad(
                "invalid_fields",
                format!("field key `{k}` must be 1 to 40 of [a-z0-9_]"),
            ));
        }
        if v.chars().count() > 1000 {
            return Err(ApiError::bad(
                "invalid_fields",
                format!("field `{k}` is longer than 1000 characters"),
            ));
        }
    }
    Ok(())
}

fn check_name(name: &Option<String>) -> Result<Option<String>, ApiError> {
    match name.as_deref().map(str::trim) {
        Some(n) if n.chars().count() > 200 => {
            Err(ApiError::bad("invalid_name", "name is longer than 200 characters"))
        }
        Some("") | None => Ok(None),
        Some(n) => Ok(Some(n.to_owned())),
    }
}

const CONTACT_COLUMNS: &str = "id, phone, name, fields, opted_out_at, opt_out_reason, created_at, updated_at";

fn contact_from_row(r: &Row) -> crate::db::DbResult<Contact> {
    let fields: String = r.get(3)?;
    let fields = serde_json::from_str(&fields)
        .map_err(|e| crate::db::DbError::Corrupt(format!("contact fields: {e}")))?;
    let opted_out_at: Option<i64> = r.get(4)?;
    Ok(Contact {
        id: r.get(0)?,
        phone: r.get(1)?,
        name: r.get(2)?,
        tags: Vec::new(),
        fields,
        opted_out: opted_out_at.is_some(),
        opted_out_at,
        opt_out_reason: r.get(5)?,
        whatsapp_names: Vec::new(),
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
    })
}

fn tags_of(c: &Conn, contact_id: &str) -> crate::db::DbResult<Vec<String>> {
    let mut stmt = c.prepare_cached("SELECT tag FROM contact_tags WHERE contact_id = ?1 ORDER BY tag")?;
    stmt.query_map(params![contact_id], |r| r.get(0))?.collect()
}

/// Loads one contact of `tenant_id` with its tags.
pub fn load(c: &Conn, tenant_id: &str, id: &str) -> crate::db::DbResult<Option<Contact>> {
    let found = c
        .query_row(
            &format!("SELECT {CONTACT_COLUMNS} FROM contacts WHERE tenant_id = ?1 AND id = ?2"),
            params![tenant_id, id],
            contact_from_row,
        )
        .optional()?;
    found
        .map(|mut ct| {
            ct.tags = tags_of(c, &ct.id)?;
            ct.whatsapp_names = names::for_phone(c, tenant_id, &ct.phone)?;
            Ok(ct)
        })
        .transpose()
}

fn find_by_phone(c: &Conn, tenant_id: &str, phone: &str) -> crate::db::DbResult<Option<Contact>> {
    let id: Option<String> = c
        .query_row(
            "SELECT id FROM contacts WHERE tenant_id = ?1 AND phone = ?2",
            params![tenant_id, phone],
            |r| r.get(0),
        )
        .optional()?;
    match id {
        Some(id) => load(c, tenant_id, &id),
        None => Ok(None),
    }
}

/// Whether `phone` (E.164) is an opted-out contact of `tenant_id`.
pub fn is_opted_out(c: &Conn, tenant_id: &str, phone: &str) -> crate::db::DbResult<bool> {
    c.query_row(
        "SELECT EXISTS(SELECT 1 FROM contacts WHERE tenant_id = ?1 AND phone = ?2 AND opted_out_at IS NOT NULL)",
        params![tenant_id, phone],
        |r| r.get(0),
    )
}

/// What to write for one contact: the merge input shared by create, update and import.
#[derive(Debug, Default, Clone)]
struct Upsert {
    name: Option<String>,
    tags: BTreeSet<String>,
    fields: BTreeMap<String, String>,
}

/// Inserts or merges into the contact with `phone`. Returns (id, created).
fn upsert(
    c: &Conn,
    tenant_id: &str,
    phone: &str,
    u: &Upsert,
    now: i64,
) -> crate::db::DbResult<(String, bool)> {
    let existing: Option<(String, String)> = c
        .prepare_cached("SELECT id, fields FROM contacts WHERE tenant_id = ?1 AND phone = ?2")?
        .query_row(params![tenant_id, phone], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (id, created) = match existing {
        Some((id, fields)) => {
            let mut merged: BTreeMap<String, String> = serde_json::from_str(&fields).unwrap_or_default();
            merged.extend(u.fields.iter().map(|(k, v)| (k.clone(), v.clone())));
            let json =
                serde_json::to_string(&merged).map_err(|e| crate::db::DbError::Encode(e.to_string()))?;
            c.prepare_cached(
                "UPDATE contacts SET name = COALESCE(?2, name), fields = ?3, updated_at = ?4 WHERE id = ?1",
            )?
            .execute(params![id, u.name, json, now])?;
            (id, false)
        }
        None => {
            let id = new_id("ct");
            let json =
                serde_json::to_string(&u.fields).map_err(|e| crate::db::DbError::Encode(e.to_string()))?;
            c.prepare_cached(
                "INSERT INTO contacts (id, tenant_id, phone, name, fields, created_at, updated_at) VALUES (?1,?2,?3,?4,?5,?6,?6)",
            )?
            .execute(params![id, tenant_id, phone, u.name, json, now])?;
            (id, true)
        }
    };
    let mut add = c.prepare_cached(
        "INSERT INTO contact_tags (tenant_id, contact_id, tag) VALUES (?1,?2,?3) ON CONFLICT DO NOTHING",
    )?;
    for t in &u.tags {
        add.execute(params![tenant_id, id, t])?;
    }
    Ok((id, created))
}

/// Marks the sender opted out when `text` is one of the tenant's opt-out keywords (whole
/// message, case-insensitive, trailing punctuation ignored). Unknown senders become contacts so
/// later imports and CSV audiences keep honouring the opt-out. Returns whether it matched.
pub fn apply_incoming_opt_out(
    c: &Conn,
    tenant_id: &str,
    phone: &str,
    text: &str,
    now: i64,
) -> crate::db::DbResult<bool> {
    let word = text.trim().trim_end_matches(['.', '!']).trim();
    if word.is_empty() || word.len() > 40 {
        return Ok(false);
    }
    let keywords = opt_out_keywords(c, tenant_id)?;
    if !keywords.iter().any(|k| k.eq_ignore_ascii_case(word)) {
        return Ok(false);
    }
    let (id, _) = upsert(c, tenant_id, phone, &Upsert::default(), now)?;
    c.execute(
        "UPDATE contacts SET opted_out_at = COALESCE(opted_out_at, ?2), opt_out_reason = COALESCE(opt_out_reason, ?3), updated_at = ?2 WHERE id = ?1",
        params![id, now, format!("replied {}", word.to_uppercase())],
    )?;
    Ok(true)
}

pub fn opt_out_keywords(c: &Conn, tenant_id: &str) -> crate::db::DbResult<Vec<String>> {
    let stored: Option<String> = c
        .query_row("SELECT keywords FROM opt_out_settings WHERE tenant_id = ?1", params![tenant_id], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(stored
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_else(|| DEFAULT_OPT_OUT_KEYWORDS.iter().map(|s| (*s).to_owned()).collect()))
}

// ---------------------------------------------------------------------------------------------
// HTTP handlers

/// The contact routes, merged into the main router.
pub fn routes() -> axum::Router<AppState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/api/v1/contacts", post(create).get(list))
        .route("/api/v1/contacts/import", post(import).layer(crate::body_limit::max(IMPORT_BODY_LIMIT)))
        .route("/api/v1/contacts/export", get(export))
        .route("/api/v1/contacts/{id}", get(self::get).patch(update).delete(self::delete))
        .route("/api/v1/contacts/{id}/opt-out", post(opt_out))
        .route("/api/v1/contacts/{id}/opt-in", post(opt_in))
        .route("/api/v1/opt-out-keywords", get(get_keywords).put(put_keywords))
        .route("/api/v1/tags", get(tags))
}

/// Import bodies carry whole CSV files: 12 MiB holds [`MAX_IMPORT_ROWS`] rows of a phone, a
/// name, tags and a few fields; a larger body is refused (413) before it is read.
pub const IMPORT_BODY_LIMIT: usize = 12 * 1024 * 1024;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateContact {
    /// Any common format; national numbers need `default_country`.
    pub phone: String,
    pub name: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// Calling code applied to national numbers, e.g. `44`.
    pub default_country: Option<String>,
}

fn check_tags(tags: &[String]) -> Result<BTreeSet<String>, ApiError> {
    if tags.len() > MAX_TAGS {
        return Err(ApiError::bad("invalid_tag", format!("at most {MAX_TAGS} tags")));
    }
    tags.iter().map(|t| check_tag(t)).collect()
}

fn phone_error(e: PhoneError) -> ApiError {
    ApiError::bad("invalid_phone", format!("invalid phone number: {e}"))
}

#[utoipa::path(post, path = "/api/v1/contacts", tag = "contacts", request_body = CreateContact,
    responses((status = 201, body = Contact), (status = 400, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn create(
    State(st): State<AppState>,
    p: Principal,
    ApiJson(req): ApiJson<CreateContact>,
) -> Result<(StatusCode, Json<Contact>), ApiError> {
    p.require(Permission::Send)?;
    let cc = req.default_country.as_deref().map(parse_country_code).transpose()?;
    let phone = normalize_phone(&req.phone, cc.as_deref()).map_err(phone_error)?.to_string();
    let u = Upsert { name: check_name(&req.name)?, tags: check_tags(&req.tags)?, fields: req.fields };
    check_fields(&u.fields)?;
    let now = st.clock.now_ms();
    let tenant = p.tenant_id.clone();
    let out = st
        .db
        .call(move |c| {
            let tx = c.transaction()?;
            if find_by_phone(&tx, &tenant, &phone)?.is_some() {
                return Ok(None);
            }
            let (id, _) = upsert(&tx, &tenant, &phone, &u, now)?;
            let ct = load(&tx, &tenant, &id)?;
            tx.commit()?;
            Ok(ct)
        })
        .await?;
    let ct = out.ok_or(ApiError::Conflict {
        code: "contact_exists",
        message: "a contact with this phone number exists; update it instead".into(),
    })?;
    Ok((StatusCode::CREATED, Json(ct)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only contacts with this tag.
    pub tag: Option<String>,
    /// Substring of the name or phone.
    pub q: Option<String>,
    pub opted_out: Option<bool>,
    /// 1 to 500, default 100.
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ContactPage {
    pub items: Vec<Contact>,
    pub total: i64,
}

#[utoipa::path(get, path = "/api/v1/contacts", tag = "contacts", params(ListQuery),
    responses((status = 200, body = ContactPage)), security(("api_key" = [])))]
pub async fn list(
    State(st): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<ContactPage>, ApiError> {
    p.require(Permission::Read)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad("invalid_query", "limit must be between 1 and 500"));
    }
    let offset = q.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::bad("invalid_query", "offset must not be negative"));
    }
    let tenant = p.tenant_id.clone();
    let pattern = q.q.map(|s| format!("%{}%", s.replace(['%', '_'], "")));
    let page = st
        .db
        .call(move |c| {
            let filter = "FROM contacts ct WHERE ct.tenant_id = ?1
                 AND (CAST(?2 AS TEXT) IS NULL OR EXISTS(SELECT 1 FROM contact_tags t WHERE t.contact_id = ct.id AND t.tag = ?2))
                 AND (CAST(?3 AS TEXT) IS NULL OR LOWER(ct.name) LIKE LOWER(?3) OR ct.phone LIKE ?3)
                 AND (CAST(?4 AS BIGINT) IS NULL OR (CASE WHEN ct.opted_out_at IS NULL THEN 0 ELSE 1 END) = ?4)";
            let total: i64 = c.query_row(
                &format!("SELECT COUNT(*) {filter}"),
                params![tenant, q.tag, pattern, q.opted_out],
                |r| r.get(0),
            )?;
            let mut stmt = c.prepare(&format!(
                "SELECT {} {filter} ORDER BY ct.created_at, ct.id LIMIT ?5 OFFSET ?6",
                CONTACT_COLUMNS.split(", ").map(|col| format!("ct.{col}")).collect::<Vec<_>>().join(", ")
            ))?;
            let mut items = stmt
                .query_map(params![tenant, q.tag, pattern, q.opted_out, limit, offset], contact_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            for ct in &mut items {
                ct.tags = tags_of(c, &ct.id)?;
                ct.whatsapp_names = names::for_phone(c, &tenant, &ct.phone)?;
            }
            Ok(ContactPage { items, total })
        })
        .await?;
    Ok(Json(page))
}

#[utoipa::path(get, path = "/api/v1/contacts/{id}", tag = "contacts", params(("id" = String, Path)),
    responses((status = 200, body = Contact), (status = 404, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn get(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<Contact>, ApiError> {
    p.require(Permission::Read)?;
    let tenant = p.tenant_id.clone();
    st.db.call(move |c| load(c, &tenant, &id)).await?.map(Json).ok_or(ApiError::NotFound("contact"))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateContact {
    /// Empty string clears the name.
    pub name: Option<String>,
    /// Replaces the tag set when present.
    pub tags: Option<Vec<String>>,
    /// Replaces the custom fields when present.
    pub fields: Option<BTreeMap<String, String>>,
}

#[utoipa::path(patch, path = "/api/v1/contacts/{id}", tag = "contacts", params(("id" = String, Path)),
    request_body = UpdateContact,
    responses((status = 200, body = Contact), (status = 404, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn update(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateContact>,
) -> Result<Json<Contact>, ApiError> {
    p.require(Permission::Send)?;
    let name = req.name.as_ref().map(|n| check_name(&Some(n.clone()))).transpose()?;
    let tags = req.tags.as_deref().map(check_tags).transpose()?;
    if let Some(f) = &req.fields {
        check_fields(f)?;
    }
    let fields = req
        .fields
        .map(|f| serde_json::to_string(&f))
        .transpose()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let now = st.clock.now_ms();
    let tenant = p.tenant_id.clone();
    st.db
        .call(move |c| {
            let tx = c.transaction()?;
            if load(&tx, &tenant, &id)?.is_none() {
                return Ok(None);
            }
            if let Some(name) = name {
                tx.execute("UPDATE contacts SET name = ?2 WHERE id = ?1", params![id, name])?;
            }
            if let Some(fields) = fields {
                tx.execute("UPDATE contacts SET fields = ?2 WHERE id = ?1", params![id, fields])?;
            }
            if let Some(tags) = tags {
                tx.execute("DELETE FROM contact_tags WHERE contact_id = ?1", params![id])?;
                for t in tags {
                    tx.execute(
                        "INSERT INTO contact_tags (tenant_id, contact_id, tag) VALUES (?1,?2,?3)",
                        params![tenant, id, t],
                    )?;
                }
            }
            tx.execute("UPDATE contacts SET updated_at = ?2 WHERE id = ?1", params![id, now])?;
            let ct = load(&tx, &tenant, &id)?;
            tx.commit()?;
            Ok(ct)
        })
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound("contact"))
}

#[utoipa::path(delete, path = "/api/v1/contacts/{id}", tag = "contacts", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)), security(("api_key" = [])))]
pub async fn delete(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.require(Permission::Send)?;
    let tenant = p.tenant_id.clone();
    let n = st
        .db
        .call(move |c| {
            c.execute("DELETE FROM contacts WHERE tenant_id = ?1 AND id = ?2", params![tenant, id])
        })
        .await?;
    if n == 0 { Err(ApiError::NotFound("contact")) } else { Ok(StatusCode::NO_CONTENT) }
}

#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct OptOutRequest {
    pub reason: Option<String>,
}

async fn set_opt_out(
    st: AppState,
    p: Principal,
    id: String,
    out: Option<String>,
) -> Result<Json<Contact>, ApiError> {
    p.require(Permission::Send)?;
    let now = st.clock.now_ms();
    let tenant = p.tenant_id.clone();
    st.db
        .call(move |c| {
            let n = match &out {
                Some(reason) => c.execute(
                    "UPDATE contacts SET opted_out_at = COALESCE(opted_out_at, ?3), opt_out_reason = ?4, updated_at = ?3
                     WHERE tenant_id = ?1 AND id = ?2",
                    params![tenant, id, now, reason],
                )?,
                None => c.execute(
                    "UPDATE contacts SET opted_out_at = NULL, opt_out_reason = NULL, updated_at = ?3
                     WHERE tenant_id = ?1 AND id = ?2",
                    params![tenant, id, now],
                )?,
            };
            if n == 0 { Ok(None) } else { Ok(load(c, &tenant, &id)?) }
        })
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound("contact"))
}

#[utoipa::path(post, path = "/api/v1/contacts/{id}/opt-out", tag = "contacts", params(("id" = String, Path)),
    request_body(content = Option<OptOutRequest>, description = "optional reason"),
    responses((status = 200, body = Contact), (status = 404, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn opt_out(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: Option<ApiJson<OptOutRequest>>,
) -> Result<Json<Contact>, ApiError> {
    let reason = body.and_then(|ApiJson(b)| b.reason).unwrap_or_else(|| "opted out by operator".into());
    if reason.chars().count() > 200 {
        return Err(ApiError::bad("invalid_reason", "reason is longer than 200 characters"));
    }
    set_opt_out(st, p, id, Some(reason)).await
}

#[utoipa::path(post, path = "/api/v1/contacts/{id}/opt-in", tag = "contacts", params(("id" = String, Path)),
    responses((status = 200, body = Contact), (status = 404, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn opt_in(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<Contact>, ApiError> {
    set_opt_out(st, p, id, None).await
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OptOutKeywords {
    /// Whole-message keywords (case-insensitive) that opt the sender out.
    pub keywords: Vec<String>,
}

#[utoipa::path(get, path = "/api/v1/opt-out-keywords", tag = "contacts",
    responses((status = 200, body = OptOutKeywords)), security(("api_key" = [])))]
pub async fn get_keywords(
    State(st): State<AppState>,
    p: Principal,
) -> Result<Json<OptOutKeywords>, ApiError> {
    p.require(Permission::Read)?;
    let tenant = p.tenant_id.clone();
    let keywords = st.db.call(move |c| opt_out_keywords(c, &tenant)).await?;
    Ok(Json(OptOutKeywords { keywords }))
}

#[utoipa::path(put, path = "/api/v1/opt-out-keywords", tag = "contacts", request_body = OptOutKeywords,
    responses((status = 200, body = OptOutKeywords), (status = 400, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn put_keywords(
    State(st): State<AppState>,
    p: Principal,
    ApiJson(req): ApiJson<OptOutKeywords>,
) -> Result<Json<OptOutKeywords>, ApiError> {
    p.require(Permission::Manage)?;
    if req.keywords.len() > 20 {
        return Err(ApiError::bad("invalid_keywords", "at most 20 keywords"));
    }
    let mut keywords = Vec::new();
    for k in &req.keywords {
        let k = k.trim();
        if k.is_empty() || k.len() > 40 || k.contains(char::is_whitespace) {
            return Err(ApiError::bad(
                "invalid_keywords",
                format!("keyword `{k}` must be one word of 1 to 40 bytes"),
            ));
        }
        keywords.push(k.to_uppercase());
    }
    let tenant = p.tenant_id.clone();
    let json = serde_json::to_string(&keywords).map_err(|e| ApiError::Internal(e.to_string()))?;
    st.db
        .call(move |c| {
            c.execute(
                "INSERT INTO opt_out_settings (tenant_id, keywords) VALUES (?1, ?2)
                 ON CONFLICT(tenant_id) DO UPDATE SET keywords = excluded.keywords",
                params![tenant, json],
            )
        })
        .await?;
    Ok(Json(OptOutKeywords { keywords }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TagCount {
    pub tag: String,
    pub contacts: i64,
}

#[utoipa::path(get, path = "/api/v1/tags", tag = "contacts",
    responses((status = 200, body = Vec<TagCount>)), security(("api_key" = [])))]
pub async fn tags(State(st): State<AppState>, p: Principal) -> Result<Json<Vec<TagCount>>, ApiError> {
    p.require(Permission::Read)?;
    let tenant = p.tenant_id.clone();
    let rows = st
        .db
        .call(move |c| {
            let mut stmt = c.prepare(
                "SELECT tag, COUNT(*) FROM contact_tags WHERE tenant_id = ?1 GROUP BY tag ORDER BY tag",
            )?;
            let rows = stmt
                .query_map(params![tenant], |r| Ok(TagCount { tag: r.get(0)?, contacts: r.get(1)? }))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await?;
    Ok(Json(rows))
}

// ---------------------------------------------------------------------------------------------
// CSV import and export

/// Which CSV columns hold what. Unset entries are detected from common header names; every
/// other column becomes a custom field.
#[derive(Debug, Default, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportMapping {
    pub phone: Option<String>,
    pub name: Option<String>,
    /// A column of tags separated by `;` or `|`.
    pub tags: Option<String>,
    /// Columns to ignore.
    #[serde(default)]
    pub ignore: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportContacts {
    /// The CSV document, header row first.
    pub csv: String,
    pub default_country: Option<String>,
    #[serde(default)]
    pub mapping: ImportMapping,
    /// Tags added to every imported contact.
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct RowError {
    /// 1-based line in the file.
    pub line: usize,
    pub error: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImportReport {
    /// Data rows read (header excluded).
    pub rows: usize,
    /// New contacts.
    pub created: usize,
    /// Rows merged into an existing contact or an earlier row with the same number.
    pub merged: usize,
    /// Rows refused, with reasons; the other rows are imported.
    pub errors: Vec<RowError>,
}

const PHONE_HEADERS: [&str; 8] =
    ["phone", "phone_number", "phonenumber", "mobile", "number", "whatsapp", "msisdn", "tel"];
const NAME_HEADERS: [&str; 4] = ["name", "full_name", "fullname", "contact_name"];

fn find_column(
    headers: &[String],
    wanted: &Option<String>,
    defaults: &[&str],
    what: &str,
) -> Result<Option<usize>, ApiError> {
    match wanted {
        Some(w) => {
            headers.iter().position(|h| h.trim().eq_ignore_ascii_case(w.trim())).map(Some).ok_or_else(|| {
                ApiError::bad("invalid_mapping", format!("the file has no `{w}` column for the {what}"))
            })
        }
        None => Ok(headers.iter().position(|h| field_key(h).is_some_and(|k| defaults.contains(&k.as_str())))),
    }
}

/// A parsed CSV with its column roles; shared by contact import and CSV campaign audiences.
pub struct MappedCsv {
    pub records: Vec<csv::Record>,
    pub phone: usize,
    pub name: Option<usize>,
    pub tags: Option<usize>,
    /// (column, field key) for the remaining columns.
    pub fields: Vec<(usize, String)>,
    pub width: usize,
}

pub fn map_csv(text: &str, mapping: &ImportMapping) -> Result<MappedCsv, ApiError> {
    let mut records = csv::parse(text).map_err(|e| ApiError::bad("invalid_csv", e.to_string()))?;
    if records.is_empty() {
        return Err(ApiError::bad("invalid_csv", csv::CsvError::Empty.to_string()));
    }
    let header = records.remove(0).fields;
    if records.len() > MAX_IMPORT_ROWS {
        return Err(ApiError::bad("invalid_csv", format!("at most {MAX_IMPORT_ROWS} rows per import")));
    }
    let phone = find_column(&header, &mapping.phone, &PHONE_HEADERS, "phone number")?.ok_or_else(|| {
        ApiError::bad("invalid_mapping", "no phone column found; name it `phone` or set mapping.phone")
    })?;
    let name = find_column(&header, &mapping.name, &NAME_HEADERS, "name")?;
    let tags = find_column(&header, &mapping.tags, &["tags"], "tags")?;
    let mut fields = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, h) in header.iter().enumerate() {
        if Some(i) == name
            || Some(i) == tags
            || i == phone
            || mapping.ignore.iter().any(|x| x.trim().eq_ignore_ascii_case(h.trim()))
        {
            continue;
        }
        let key = field_key(h).ok_or_else(|| {
            ApiError::bad(
                "invalid_mapping",
                format!("column {} header `{h}` cannot be a field name; add it to mapping.ignore", i + 1),
            )
        })?;
        if !seen.insert(key.clone()) {
            return Err(ApiError::bad("invalid_mapping", format!("two columns map to the field `{key}`")));
        }
        fields.push((i, key));
    }
    if fields.len() > MAX_FIELDS {
        return Err(ApiError::bad("invalid_mapping", format!("at most {MAX_FIELDS} field columns")));
    }
    Ok(MappedCsv { records, phone, name, tags, fields, width: header.len() })
}

/// One valid CSV row.
pub struct CsvRow {
    pub line: usize,
    pub phone: String,
    pub name: Option<String>,
    pub tags: BTreeSet<String>,
    pub fields: BTreeMap<String, String>,
}

impl MappedCsv {
    /// Valid rows and per-row errors.
    pub fn rows(&self, default_country: Option<&str>) -> (Vec<CsvRow>, Vec<RowError>) {
        let mut ok = Vec::with_capacity(self.records.len());
        let mut errors = Vec::new();
        for rec in &self.records {
            match self.row(rec, default_country) {
                Ok(r) => ok.push(r),
                Err(error) => errors.push(RowError { line: rec.line, error }),
            }
        }
        (ok, errors)
    }

    fn row(&self, rec: &csv::Record, cc: Option<&str>) -> Result<CsvRow, String> {
        if rec.fields.len() > self.width {
            return Err(format!("row has {} fields; the header has {}", rec.fields.len(), self.width));
        }
        let get = |i: usize| rec.fields.get(i).map(|s| s.trim()).unwrap_or("");
        let phone = normalize_phone(get(self.phone), cc)
            .map_err(|e| format!("invalid phone number `{}`: {e}", get(self.phone)))?;
        let name = self.name.map(get).filter(|n| !n.is_empty()).map(str::to_owned);
        if name.as_ref().is_some_and(|n| n.chars().count() > 200) {
            return Err("name is longer than 200 characters".into());
        }
        let mut tags = BTreeSet::new();
        if let Some(i) = self.tags {
            for t in get(i).split([';', '|']).map(str::trim).filter(|t| !t.is_empty()) {
                tags.insert(check_tag(t).map_err(|e| e.to_string())?);
            }
        }
        let mut fields = BTreeMap::new();
        for (i, key) in &self.fields {
            let v = get(*i);
            if v.chars().count() > 1000 {
                return Err(format!("field `{key}` is longer than 1000 characters"));
            }
            if !v.is_empty() {
                fields.insert(key.clone(), v.to_owned());
            }
        }
        Ok(CsvRow { line: rec.line, phone: phone.to_string(), name, tags, fields })
    }
}

/// Imports rows into the tenant's contacts in one transaction.
pub fn import_rows(
    c: &mut Conn,
    tenant_id: &str,
    rows: Vec<CsvRow>,
    extra_tags: &BTreeSet<String>,
    now: i64,
) -> crate::db::DbResult<(usize, usize)> {
    let tx = c.transaction()?;
    let (mut created, mut merged) = (0, 0);
    for r in rows {
        let mut tags = r.tags;
        tags.extend(extra_tags.iter().cloned());
        let (_, new) =
            upsert(&tx, tenant_id, &r.phone, &Upsert { name: r.name, tags, fields: r.fields }, now)?;
        if new { created += 1 } else { merged += 1 }
    }
    tx.commit()?;
    Ok((created, merged))
}

/// The `multipart/form-data` form of an import (the OpenAPI schema of that body): the CSV as an
/// uploaded file, the way a browser's file picker sends it.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // only describes the form; `read_import_form` parses it field by field
pub struct MultipartImport {
    /// The CSV file, header row first, UTF-8.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    default_country: Option<String>,
    /// Tags added to every imported contact; repeat the field for several.
    tags: Vec<String>,
    /// Column holding the phone number (default: found by its header).
    mapping_phone: Option<String>,
    /// Column holding the name.
    mapping_name: Option<String>,
    /// Column of tags separated by `;` or `|`.
    mapping_tags: Option<String>,
}

/// Longest text field (not the file) of an import form.
const MAX_IMPORT_FIELD: usize = 1024;

/// Reads an import form into the JSON form's request.
async fn read_import_form(mut form: axum::extract::Multipart) -> Result<ImportContacts, ApiError> {
    let bad = |m: String| ApiError::bad("invalid_multipart", m);
    let mut req = ImportContacts {
        csv: String::new(),
        default_country: None,
        mapping: ImportMapping::default(),
        tags: Vec::new(),
    };
    let mut file = None;
    while let Some(mut field) = form.next_field().await? {
        let name = field.name().unwrap_or("").to_owned();
        let max = if name == "file" { IMPORT_BODY_LIMIT } else { MAX_IMPORT_FIELD };
        let mut buf = Vec::new();
        while let Some(chunk) = field.chunk().await? {
            if buf.len() + chunk.len() > max {
                return Err(if name == "file" {
                    ApiError::PayloadTooLarge
                } else {
                    bad(format!("form field `{name}` is too long"))
                });
            }
            buf.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(buf).map_err(|_| bad(format!("form field `{name}` is not UTF-8")))?;
        let once = |slot: &mut Option<String>, v: String| match slot.replace(v) {
            Some(_) => Err(bad(format!("form field `{name}` given twice"))),
            None => Ok(()),
        };
        match name.as_str() {
            "file" => once(&mut file, text)?,
            "tags" => req.tags.push(text),
            "default_country" => once(&mut req.default_country, text)?,
            "mapping_phone" => once(&mut req.mapping.phone, text)?,
            "mapping_name" => once(&mut req.mapping.name, text)?,
            "mapping_tags" => once(&mut req.mapping.tags, text)?,
            other => return Err(bad(format!("unknown form field `{other}`"))),
        }
    }
    req.csv = file.ok_or_else(|| bad("a `file` part is required".into()))?;
    Ok(req)
}

/// Imports contacts from a CSV document: as JSON (`csv` holds the text) or as a
/// `multipart/form-data` upload of the file (see `MultipartImport`).
#[utoipa::path(post, path = "/api/v1/contacts/import", tag = "contacts",
    request_body(content(
        (ImportContacts = "application/json"),
        (MultipartImport = "multipart/form-data"),
    )),
    responses((status = 200, body = ImportReport), (status = 400, body = crate::error::ErrorBody),
              (status = 413, body = crate::error::ErrorBody), (status = 415, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn import(
    State(st): State<AppState>,
    p: Principal,
    req: axum::extract::Request,
) -> Result<Json<ImportReport>, ApiError> {
    use axum::extract::FromRequest as _;
    p.require(Permission::Send)?;
    crate::error::check_body_headers(&req, true)?;
    let req = if crate::error::is_multipart(&req) {
        read_import_form(crate::error::multipart(req, &st).await?).await?
    } else {
        ApiJson::<ImportContacts>::from_request(req, &st).await?.0
    };
    let cc = req.default_country.as_deref().map(parse_country_code).transpose()?;
    let extra = check_tags(&req.tags)?;
    let mapped = map_csv(&req.csv, &req.mapping)?;
    let (rows, errors) = mapped.rows(cc.as_deref());
    let total = mapped.records.len();
    let now = st.clock.now_ms();
    let tenant = p.tenant_id.clone();
    let (created, merged) = st.db.call(move |c| import_rows(c, &tenant, rows, &extra, now)).await?;
    Ok(Json(ImportReport { rows: total, created, merged, errors }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    pub tag: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/contacts/export", tag = "contacts", params(ExportQuery),
    responses((status = 200, description = "CSV: phone,name,tags,opted_out, then one column per custom field", content_type = "text/csv")),
    security(("api_key" = [])))]
pub async fn export(
    State(st): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> Result<impl IntoResponse, ApiError> {
    p.require(Permission::Read)?;
    let tenant = p.tenant_id.clone();
    let body = st
        .db
        .call(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {CONTACT_COLUMNS} FROM contacts ct WHERE tenant_id = ?1
                   AND (CAST(?2 AS TEXT) IS NULL OR EXISTS(SELECT 1 FROM contact_tags t WHERE t.contact_id = ct.id AND t.tag = ?2))
                 ORDER BY created_at, id"
            ))?;
            let contacts = stmt.query_map(params![tenant, q.tag], contact_from_row)?.collect::<Result<Vec<_>, _>>()?;
            let mut tag_stmt = c.prepare("SELECT contact_id, tag FROM contact_tags WHERE tenant_id = ?1 ORDER BY tag")?;
            let mut tags: HashMap<String, Vec<String>> = HashMap::new();
            for row in tag_stmt.query_map(params![tenant], |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?)))? {
                let (id, tag) = row?;
                tags.entry(id).or_default().push(tag);
            }
            let keys: BTreeSet<&String> = contacts.iter().flat_map(|ct| ct.fields.keys()).collect();
            let mut out = String::new();
            csv::write_record(&mut out, ["phone", "name", "tags", "opted_out"].into_iter().chain(keys.iter().map(|k| k.as_str())));
            for ct in &contacts {
                let tag_list = tags.get(&ct.id).map(|t| t.join(";")).unwrap_or_default();
                let mut cols: Vec<&str> =
                    vec![&ct.phone, ct.name.as_deref().unwrap_or(""), &tag_list, if ct.opted_out { "true" } else { "false" }];
                cols.extend(keys.iter().map(|k| ct.fields.get(*k).map(String::as_str).unwrap_or("")));
                csv::write_record(&mut out, cols);
            }
            Ok(out)
        })
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"contacts.csv\""),
        ],
        body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn national_numbers_get_the_default_country() {
        assert_eq!(normalize_phone("020 7946 0958", Some("44")).unwrap().as_str(), "+442079460958");
        assert_eq!(normalize_phone("(415) 555-0123", Some("1")).unwrap().as_str(), "+14155550123");
        assert_eq!(normalize_phone("+33 6 12 34 56 78", Some("44")).unwrap().as_str(), "+33612345678");
        assert_eq!(normalize_phone("0033612345678", Some("44")).unwrap().as_str(), "+33612345678");
        assert_eq!(normalize_phone("4155550123", None), Err(PhoneError::MissingCountryCode));
        assert_eq!(normalize_phone("12", Some("44")), Err(PhoneError::BadLength(4)));
        assert_eq!(normalize_phone("abc", Some("44")), Err(PhoneError::InvalidCharacter('a')));
        assert!(parse_country_code("+44").is_ok());
        assert!(parse_country_code("044").is_err());
        assert!(parse_country_code("4444").is_err());
    }

    #[test]
    fn numbers_that_already_carry_the_country_code_keep_it() {
        // The reported case: a CSV column without the `+`.
        assert_eq!(normalize_phone("15550004444", Some("1")).unwrap().as_str(), "+15550004444");
        assert_eq!(normalize_phone("1 (555) 000-4444", Some("1")).unwrap().as_str(), "+15550004444");
        assert_eq!(normalize_phone("5550004444", Some("1")).unwrap().as_str(), "+15550004444");
        // Not NANP: only when adding the code again would be too long.
        assert_eq!(normalize_phone("447700900123", Some("44")).unwrap().as_str(), "+44447700900123");
        assert_eq!(normalize_phone("49301234567890", Some("49")).unwrap().as_str(), "+49301234567890");
        assert_eq!(normalize_phone("07700 900123", Some("44")).unwrap().as_str(), "+447700900123");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// NANP national numbers: area code and exchange start with 2-9.
        fn nanp() -> impl Strategy<Value = String> {
            ("[2-9][0-9]{2}", "[2-9][0-9]{2}", "[0-9]{4}").prop_map(|(a, e, n)| format!("{a}{e}{n}"))
        }

        /// A human way of writing `digits`: separators between some digits.
        fn formatted(digits: String) -> impl Strategy<Value = String> {
            proptest::collection::vec(prop_oneof![Just(""), Just(" "), Just("-"), Just(".")], digits.len())
                .prop_map(move |seps| digits.chars().zip(seps).map(|(d, s)| format!("{d}{s}")).collect())
        }

        proptest! {
            #[test]
            fn nanp_numbers_normalise_the_same_with_or_without_the_code(
                n in nanp().prop_flat_map(|n| (Just(n.clone()), formatted(n.clone()), formatted(format!("1{n}"))))
            ) {
                let (digits, national, with_code) = n;
                let want = format!("+1{digits}");
                for (input, cc) in [(national, "1"), (with_code.clone(), "1"), (format!("+{with_code}"), "44"), (format!("001{digits}"), "1")] {
                    let got = normalize_phone(&input, Some(cc)).unwrap().as_str().to_owned();
                    prop_assert_eq!(got, want.clone(), "{} with {}", input, cc);
                }
            }

            #[test]
            fn a_trunk_zero_is_replaced_by_the_code(cc in "[2-9][0-9]{0,2}", nsn in "[1-9][0-9]{6,10}") {
                prop_assume!(cc.len() + nsn.len() <= 15);
                let got = normalize_phone(&format!("0{nsn}"), Some(&cc)).unwrap().as_str().to_owned();
                prop_assert_eq!(got, format!("+{cc}{nsn}"));
            }

            #[test]
            fn normalising_is_idempotent_and_never_panics(input in "[0-9 +().-]{0,20}", cc in "[1-9][0-9]{0,2}") {
                if let Ok(p) = normalize_phone(&input, Some(&cc)) {
                    prop_assert!((9..=16).contains(&p.as_str().len()));
                    let again = normalize_phone(p.as_str(), Some(&cc)).unwrap().as_str().to_owned();
                    prop_assert_eq!(again, p.as_str().to_owned());
                }
            }
        }
    }

    #[test]
    fn field_keys_are_normalised() {
        assert_eq!(field_key("Order ID").as_deref(), Some("order_id"));
        assert_eq!(field_key(" City/Town ").as_deref(), Some("city_town"));
        assert_eq!(field_key("!!"), None);
    }

    #[tokio::test]
    async fn opt_out_matches_whole_keyword_only() {
        let db = crate::db::Db::open_in_memory().unwrap();
        db.call(|c| {
            c.execute("INSERT INTO tenants (id, name, created_at) VALUES ('t','t',0)", [])?;
            assert!(!apply_incoming_opt_out(c, "t", "+441111111111", "please stop sending", 1)?);
            assert!(!is_opted_out(c, "t", "+441111111111")?);
            assert!(apply_incoming_opt_out(c, "t", "+441111111111", " Stop! ", 2)?);
            assert!(is_opted_out(c, "t", "+441111111111")?);
            assert!(!is_opted_out(c, "other", "+441111111111")?);
            Ok(())
        })
        .await
        .unwrap();
    }
}
