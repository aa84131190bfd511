//! `/api/v1/campaigns` and `/api/v1/broadcast/direct`: campaigns over the durable send queue of
//! [`engine`]. A campaign is a message (a saved template or an inline body), one or more
//! accounts, and an audience (contacts by id or tag, all contacts, phone numbers, or a CSV)
//! snapshotted into recipient rows when it is created. A direct send is a one-recipient
//! campaign, so it shares the engine's pacing, limits, retries and status tracking.

pub mod engine;
pub mod sender;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::db::{Conn, OptionalExtension, Row, params};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::{Permission, Principal};
use crate::clock::new_id;
use crate::contacts::{self, ImportMapping, RowError};
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::state::AppState;
use crate::template_media::{NewMedia, TemplateMediaInput};
use crate::templates::{self, ContactValues, Variable};
use engine::{CampaignStatus, Progress, RecipientData};

pub use engine::{CampaignSender, Engine, SendError};

/// Wakes the engine after API changes; absent when no engine runs (the API still works, the
/// queue waits).
#[derive(Clone)]
pub struct EngineWaker(pub Arc<tokio::sync::Notify>);

fn wake(w: &Option<Extension<EngineWaker>>) {
    if let Some(Extension(w)) = w {
        w.0.notify_one();
    }
}

/// The OpenAPI paths of contacts, templates and campaigns, merged into the main document.
#[derive(OpenApi)]
#[openapi(
    paths(
        contacts::create,
        contacts::list,
        contacts::get,
        contacts::update,
        contacts::delete,
        contacts::opt_out,
        contacts::opt_in,
        contacts::get_keywords,
        contacts::put_keywords,
        contacts::tags,
        contacts::import,
        contacts::export,
        templates::create,
        templates::list,
        templates::get,
        templates::replace,
        templates::delete,
        templates::preview,
        templates::put_media,
        templates::delete_media,
        create,
        list,
        get,
        recipients,
        start,
        pause,
        resume,
        cancel,
        delete,
        direct,
    ),
    components(schemas(engine::CampaignEvent, engine::CampaignProgressData, engine::CampaignStatusData))
)]
pub struct CampaignsApi;

/// Contacts, templates and campaigns routes, merged into the main router. `upload_limit` bounds
/// the requests that may carry a media file (templates, inline campaigns, direct sends).
pub fn routes(upload_limit: usize) -> axum::Router<AppState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route(
            "/api/v1/campaigns",
            // An audience CSV and an inline media file may come together.
            post(create)
                .layer(crate::body_limit::max(contacts::IMPORT_BODY_LIMIT.saturating_add(upload_limit)))
                .get(list),
        )
        .route("/api/v1/campaigns/{id}", get(self::get).delete(self::delete))
        .route("/api/v1/campaigns/{id}/recipients", get(recipients))
        .route("/api/v1/campaigns/{id}/start", post(start))
        .route("/api/v1/campaigns/{id}/pause", post(pause))
        .route("/api/v1/campaigns/{id}/resume", post(resume))
        .route("/api/v1/campaigns/{id}/cancel", post(cancel))
        .route("/api/v1/broadcast/direct", post(direct).layer(crate::body_limit::max(upload_limit)))
        .merge(contacts::routes())
        .merge(templates::routes(upload_limit))
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Campaign {
    pub id: String,
    pub name: String,
    /// `campaign` or `direct`.
    pub kind: String,
    pub template_id: Option<String>,
    pub body: String,
    pub account_ids: Vec<String>,
    pub status: CampaignStatus,
    /// Why it is paused (e.g. the account logged out), or a note such as a reached daily limit.
    pub status_reason: Option<String>,
    pub rate_per_minute: i64,
    pub jitter_pct: i64,
    pub check_numbers: bool,
    pub max_attempts: i64,
    pub scheduled_at: Option<i64>,
    pub started_at: Option<i64>,
    pub completed_at: Option<i64>,
    pub created_at: i64,
    pub progress: Progress,
    /// The media file every recipient gets (the template's, fixed when the campaign was
    /// created), if any; its caption is the personalised body.
    pub media: Option<crate::template_media::TemplateMedia>,
}

const COLUMNS: &str =
    "id, name, kind, template_id, body, account_ids, status, status_reason, rate_per_minute, jitter_pct,
    check_numbers, max_attempts, scheduled_at, started_at, completed_at, created_at";

fn from_row(r: &Row) -> crate::db::DbResult<Campaign> {
    let conv = |i: usize, e: String| crate::db::DbError::Corrupt(format!("campaign column {i}: {e}"));
    let accounts: String = r.get(5)?;
    let status: String = r.get(6)?;
    Ok(Campaign {
        id: r.get(0)?,
        name: r.get(1)?,
        kind: r.get(2)?,
        template_id: r.get(3)?,
        body: r.get(4)?,
        account_ids: serde_json::from_str(&accounts).map_err(|e| conv(5, e.to_string()))?,
        status: CampaignStatus::parse(&status).ok_or_else(|| conv(6, format!("status {status}")))?,
        status_reason: r.get(7)?,
        rate_per_minute: r.get(8)?,
        jitter_pct: r.get(9)?,
        check_numbers: r.get(10)?,
        max_attempts: r.get(11)?,
        scheduled_at: r.get(12)?,
        started_at: r.get(13)?,
        completed_at: r.get(14)?,
        created_at: r.get(15)?,
        progress: Progress::default(),
        media: None,
    })
}

/// Fills in what a campaign row does not hold: its progress counts and its media file.
fn complete(c: &Conn, camp: &mut Campaign, now: i64) -> crate::db::DbResult<()> {
    camp.progress = engine::progress(c, &camp.id, now)?;
    camp.media = crate::template_media::info_of_campaign(c, &camp.id)?;
    Ok(())
}

pub fn load(c: &Conn, tenant_id: &str, id: &str, now: i64) -> crate::db::DbResult<Option<Campaign>> {
    let found = c
        .query_row(
            &format!("SELECT {COLUMNS} FROM campaigns WHERE tenant_id = ?1 AND id = ?2"),
            params![tenant_id, id],
            from_row,
        )
        .optional()?;
    found
        .map(|mut camp| {
            complete(c, &mut camp, now)?;
            Ok(camp)
        })
        .transpose()
}

/// Who receives a campaign. Sources are combined; numbers appearing twice are sent once.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Audience {
    #[serde(default)]
    pub contact_ids: Vec<String>,
    /// Contacts having any of these tags.
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub all_contacts: bool,
    /// Phone numbers (contacts' names and fields are used when the number is a contact).
    #[serde(default)]
    pub phones: Vec<String>,
    /// A CSV with a phone column; other columns fill `name`, `fields.*` and declared variables.
    pub csv: Option<String>,
    #[serde(default)]
    pub csv_mapping: ImportMapping,
    /// Calling code for national numbers in `phones` and `csv`.
    pub default_country: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCampaign {
    pub name: String,
    /// A saved template, or…
    pub template_id: Option<String>,
    /// …an inline message body (same `{{variable}}` syntax) with its declared variables.
    pub body: Option<String>,
    #[serde(default)]
    pub variables: Vec<Variable>,
    /// With `body` only: a media file sent to every recipient with the body as its caption
    /// (checked and stored as a template's media is). A template's campaign sends the
    /// template's media.
    pub media: Option<TemplateMediaInput>,
    /// Values for declared per-send variables, shared by all recipients.
    #[serde(default)]
    pub values: BTreeMap<String, String>,
    /// Accounts to send from; recipients are spread over them.
    pub account_ids: Vec<String>,
    pub audience: Audience,
    /// Messages per minute per account, 1 to 60000; default 20.
    pub rate_per_minute: Option<i64>,
    /// Random extra delay between sends, in percent of the interval; default 25.
    pub jitter_pct: Option<i64>,
    /// Check each number is on WhatsApp before sending; default false.
    #[serde(default)]
    pub check_numbers: bool,
    /// Attempts per recipient for temporary failures; default 3.
    pub max_attempts: Option<i64>,
    /// Start at this time (ms since epoch) instead of now.
    pub scheduled_at: Option<i64>,
    /// `false` saves a draft to start later; default true.
    pub start: Option<bool>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AudienceReport {
    pub recipients: usize,
    /// Numbers given more than once.
    pub duplicates: usize,
    /// Recipients recorded as skipped because they opted out.
    pub opted_out: usize,
    /// Invalid rows or numbers (not added).
    pub errors: Vec<RowError>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedCampaign {
    pub campaign: Campaign,
    pub audience: AudienceReport,
}

struct Message {
    template_id: Option<String>,
    body: String,
    declared: Vec<Variable>,
    /// The media file sent to every recipient: the template's (already stored)…
    media_id: Option<String>,
    /// …or the inline body's, stored with the campaign.
    new_media: Option<NewMedia>,
}

fn template_error(e: templates::TemplateError) -> ApiError {
    ApiError::bad("invalid_template", e.to_string())
}

async fn resolve_message(
    st: &AppState,
    tenant: &str,
    template_id: Option<String>,
    body: Option<String>,
    variables: Vec<Variable>,
    media: Option<TemplateMediaInput>,
) -> Result<Message, ApiError> {
    let msg = match (template_id, body) {
        (Some(id), None) => {
            let (t, i) = (tenant.to_owned(), id.clone());
            let (tpl, media_id) = st
                .db
                .call(move |c| {
                    let tpl = templates::load(c, &t, &i)?;
                    let media = crate::template_media::of_template(c, &t, &i)?.map(|(id, _)| id);
                    Ok((tpl, media))
                })
                .await?;
            let tpl = tpl.ok_or(ApiError::NotFound("template"))?;
            if !variables.is_empty() {
                return Err(ApiError::bad(
                    "invalid_body",
                    "variables are declared by the template; omit them",
                ));
            }
            if media.is_some() {
                return Err(ApiError::bad(
                    "invalid_body",
                    "a template's campaign sends the template's media; omit media (or set it on the template)",
                ));
            }
            Message {
                template_id: Some(id),
                body: tpl.body,
                declared: tpl.variables,
                media_id,
                new_media: None,
            }
        }
        (None, Some(body)) => {
            // Checked before anything is written, like a template's media.
            let new_media = match media {
                Some(m) => Some(crate::template_media::from_input(st, m).await?),
                None => None,
            };
            Message { template_id: None, body, declared: variables, media_id: None, new_media }
        }
        _ => return Err(ApiError::bad("invalid_body", "give exactly one of template_id or body")),
    };
    let segs = templates::parse(&msg.body).map_err(template_error)?;
    templates::validate(&segs, &msg.declared).map_err(template_error)?;
    Ok(msg)
}

/// The highest per-account pace: 1,000 messages a second, WhatsApp's highest Business
/// throughput tier. Ordinary accounts should stay far below it (the default is 20 a minute).
pub const MAX_RATE_PER_MINUTE: i64 = 60_000;
/// Most tags one campaign audience may name.
pub const MAX_AUDIENCE_TAGS: usize = 1000;

struct Settings {
    rate: i64,
    jitter: i64,
    max_attempts: i64,
}

fn check_settings(
    rate: Option<i64>,
    jitter: Option<i64>,
    attempts: Option<i64>,
) -> Result<Settings, ApiError> {
    let rate = rate.unwrap_or(20);
    if !(1..=MAX_RATE_PER_MINUTE).contains(&rate) {
        return Err(ApiError::bad(
            "invalid_rate",
            format!("rate_per_minute must be between 1 and {MAX_RATE_PER_MINUTE}"),
        ));
    }
    let jitter = jitter.unwrap_or(25);
    if !(0..=100).contains(&jitter) {
        return Err(ApiError::bad("invalid_jitter", "jitter_pct must be between 0 and 100"));
    }
    let max_attempts = attempts.unwrap_or(3);
    if !(1..=10).contains(&max_attempts) {
        return Err(ApiError::bad("invalid_max_attempts", "max_attempts must be between 1 and 10"));
    }
    Ok(Settings { rate, jitter, max_attempts })
}

fn check_accounts(
    c: &Conn,
    tenant: &str,
    ids: &[String],
) -> Result<Result<(), ApiError>, crate::db::DbError> {
    for a in ids {
        let ok: bool = c.query_row(
            "SELECT EXISTS(SELECT 1 FROM accounts WHERE tenant_id = ?1 AND id = ?2)",
            params![tenant, a],
            |r| r.get(0),
        )?;
        if !ok {
            return Ok(Err(ApiError::NotFound("account")));
        }
    }
    Ok(Ok(()))
}

struct NewCampaign {
    kind: &'static str,
    name: String,
    msg: Message,
    values: BTreeMap<String, String>,
    accounts: Vec<String>,
    settings: Settings,
    check_numbers: bool,
    status: CampaignStatus,
    scheduled_at: Option<i64>,
}

/// A recipient before insertion.
struct Pending {
    phone: String,
    contact_id: Option<String>,
    data: RecipientData,
}

/// Inserts the campaign and its recipients in one transaction.
fn insert_campaign(
    c: &mut Conn,
    tenant: &str,
    new: NewCampaign,
    recipients: Vec<Pending>,
    mut report: AudienceReport,
    now: i64,
) -> Result<Result<CreatedCampaign, ApiError>, crate::db::DbError> {
    if let Err(e) = check_accounts(c, tenant, &new.accounts)? {
        return Ok(Err(e));
    }
    let id = new_id("cmp");
    let tx = c.transaction()?;
    let json = |v: &dyn erased::Json| v.to_json();
    tx.execute(
        "INSERT INTO campaigns (id, tenant_id, name, kind, template_id, body, declared, variables, account_ids, status,
           rate_per_minute, jitter_pct, check_numbers, max_attempts, scheduled_at, started_at, created_at, updated_at)
         VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?17)",
        params![
            id,
            tenant,
            new.name,
            new.kind,
            new.msg.template_id,
            new.msg.body,
            json(&new.msg.declared)?,
            json(&new.values)?,
            json(&new.accounts)?,
            new.status.as_str(),
            new.settings.rate,
            new.settings.jitter,
            new.check_numbers,
            new.settings.max_attempts,
            new.scheduled_at,
            (new.status == CampaignStatus::Running).then_some(now),
            now,
        ],
    )?;
    let media_id = match &new.msg.new_media {
        Some(m) => Some(crate::template_media::insert(&tx, tenant, m, now)?),
        None => new.msg.media_id.clone(),
    };
    if let Some(m) = &media_id {
        crate::template_media::set_campaign_media(&tx, &id, m)?;
    }
    {
        let mut ins = tx.prepare(
            "INSERT INTO campaign_recipients (campaign_id, tenant_id, contact_id, phone, variables, status, reason, updated_at)
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8) ON CONFLICT DO NOTHING",
        )?;
        for r in recipients {
            let opted = contacts::is_opted_out(&tx, tenant, &r.phone)?;
            let (status, reason) = if opted { ("skipped", Some("opted_out")) } else { ("pending", None) };
            let n = ins.execute(params![
                id,
                tenant,
                r.contact_id,
                r.phone,
                engine::recipient_data_json(&r.data)?,
                status,
                reason,
                now
            ])?;
            if n == 0 {
                report.duplicates += 1;
            } else {
                report.recipients += 1;
                report.opted_out += usize::from(opted);
            }
        }
    }
    let counts = engine::progress(&tx, &id, now)?;
    engine::enqueue_status_events(&tx, tenant, &id, new.status, None, &counts, now)?;
    tx.commit()?;
    let campaign =
        load(c, tenant, &id, now)?.ok_or_else(|| crate::db::DbError::Corrupt("campaign vanished".into()))?;
    Ok(Ok(CreatedCampaign { campaign, audience: report }))
}

/// JSON for TEXT columns without a generic closure per type.
mod erased {
    pub trait Json {
        fn to_json(&self) -> crate::db::DbResult<String>;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> crate::db::DbResult<String> {
            serde_json::to_string(self).map_err(|e| crate::db::DbError::Encode(e.to_string()))
        }
    }
}

fn contact_values(ct: &contacts::Contact) -> ContactValues {
    ContactValues { phone: ct.phone.clone(), name: ct.name.clone(), fields: ct.fields.clone() }
}

/// Resolves contact-based audience sources inside the database.
fn resolve_contacts(
    c: &Conn,
    tenant: &str,
    audience_ids: &[String],
    tags: &[String],
    all: bool,
    phones: Vec<(usize, String)>,
) -> crate::db::DbResult<Result<Vec<Pending>, ApiError>> {
    let mut out = Vec::new();
    for id in audience_ids {
        match contacts::load(c, tenant, id)? {
            Some(ct) => out.push(Pending {
                phone: ct.phone.clone(),
                contact_id: Some(ct.id.clone()),
                data: RecipientData { contact: contact_values(&ct), values: BTreeMap::new() },
            }),
            None => return Ok(Err(ApiError::bad("unknown_contact", format!("contact {id} does not exist")))),
        }
    }
    if all || !tags.is_empty() {
        // `?1` the tenant; with tags (and not `all`), `?2`… one per tag.
        let ids: Vec<String> = if all {
            c.query_all(
                "SELECT ct.id FROM contacts ct WHERE ct.tenant_id = ?1 ORDER BY ct.created_at, ct.id",
                params![tenant],
                |r| r.get(0),
            )?
        } else {
            let marks = (0..tags.len()).map(|i| format!("?{}", i + 2)).collect::<Vec<_>>().join(",");
            let mut values: Vec<&dyn crate::db::ToValue> = vec![&tenant];
            values.extend(tags.iter().map(|t| t as &dyn crate::db::ToValue));
            c.query_all(
                &format!(
                    "SELECT ct.id FROM contacts ct WHERE ct.tenant_id = ?1 AND EXISTS(
                       SELECT 1 FROM contact_tags t WHERE t.contact_id = ct.id AND t.tag IN ({marks}))
                     ORDER BY ct.created_at, ct.id"
                ),
                values.as_slice(),
                |r| r.get(0),
            )?
        };
        for id in ids {
            if let Some(ct) = contacts::load(c, tenant, &id)? {
                out.push(Pending {
                    phone: ct.phone.clone(),
                    contact_id: Some(ct.id.clone()),
                    data: RecipientData { contact: contact_values(&ct), values: BTreeMap::new() },
                });
            }
        }
    }
    for (_, phone) in phones {
        let ct = c
            .query_row(
                "SELECT id FROM contacts WHERE tenant_id = ?1 AND phone = ?2",
                params![tenant, phone],
                |r| r.get::<String>(0),
            )
            .optional()?
            .map(|id| contacts::load(c, tenant, &id))
            .transpose()?
            .flatten();
        out.push(match ct {
            Some(ct) => Pending {
                phone,
                contact_id: Some(ct.id.clone()),
                data: RecipientData { contact: contact_values(&ct), values: BTreeMap::new() },
            },
            None => Pending {
                phone: phone.clone(),
                contact_id: None,
                data: RecipientData {
                    contact: ContactValues { phone, ..Default::default() },
                    values: BTreeMap::new(),
                },
            },
        });
    }
    Ok(Ok(out))
}

#[utoipa::path(post, path = "/api/v1/campaigns", tag = "campaigns", request_body = CreateCampaign,
    responses((status = 201, body = CreatedCampaign), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn create(
    State(st): State<AppState>,
    p: Principal,
    waker: Option<Extension<EngineWaker>>,
    ApiJson(req): ApiJson<CreateCampaign>,
) -> Result<(StatusCode, Json<CreatedCampaign>), ApiError> {
    p.require(Permission::Send)?;
    if req.name.trim().is_empty() || req.name.chars().count() > 100 {
        return Err(ApiError::bad("invalid_name", "name must be 1 to 100 characters"));
    }
    if req.account_ids.is_empty() || req.account_ids.len() > 20 {
        return Err(ApiError::bad("invalid_accounts", "account_ids must list 1 to 20 accounts"));
    }
    let accounts: Vec<String> =
        req.account_ids.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect();
    let settings = check_settings(req.rate_per_minute, req.jitter_pct, req.max_attempts)?;
    let tenant = p.tenant_id.clone();
    let msg = resolve_message(&st, &tenant, req.template_id, req.body, req.variables, req.media).await?;
    let segs = templates::parse(&msg.body).map_err(template_error)?;
    let a = req.audience;
    // Each tag is one query parameter; far below both backends' parameter limits.
    if a.tags.len() > MAX_AUDIENCE_TAGS {
        return Err(ApiError::bad(
            "invalid_audience",
            format!("audience.tags lists at most {MAX_AUDIENCE_TAGS} tags"),
        ));
    }
    let cc = a.default_country.as_deref().map(contacts::parse_country_code).transpose()?;
    let mut errors = Vec::new();
    let mut phones = Vec::new();
    for (i, raw) in a.phones.iter().enumerate() {
        match contacts::normalize_phone(raw, cc.as_deref()) {
            Ok(p) => phones.push((i, p.to_string())),
            Err(e) => {
                errors.push(RowError { line: i + 1, error: format!("invalid phone number `{raw}`: {e}") })
            }
        }
    }
    let mut csv_rows = Vec::new();
    if let Some(text) = &a.csv {
        let mapped = contacts::map_csv(text, &a.csv_mapping)?;
        let (rows, errs) = mapped.rows(cc.as_deref());
        errors.extend(errs);
        csv_rows = rows;
    }
    // Required per-send values must come from `values` or, per recipient, a CSV column.
    let missing: Vec<String> = templates::required(&segs, &msg.declared)
        .into_iter()
        .filter(|v| !req.values.contains_key(v))
        .collect();
    if !missing.is_empty() && a.csv.is_none() {
        return Err(ApiError::bad("missing_variable", format!("values must give {}", missing.join(", "))));
    }
    let declared: BTreeSet<String> = msg.declared.iter().map(|v| v.name.clone()).collect();
    let now = st.clock.now_ms();
    let status = match (req.start.unwrap_or(true), req.scheduled_at) {
        (false, _) => CampaignStatus::Draft,
        (true, Some(t)) if t > now => CampaignStatus::Scheduled,
        (true, _) => CampaignStatus::Running,
    };
    let new = NewCampaign {
        kind: "campaign",
        name: req.name.trim().to_owned(),
        msg,
        values: req.values,
        accounts,
        settings,
        check_numbers: req.check_numbers,
        status,
        scheduled_at: req.scheduled_at,
    };
    let out = st
        .db
        .call(move |c| {
            let mut recipients =
                match resolve_contacts(c, &tenant, &a.contact_ids, &a.tags, a.all_contacts, phones)? {
                    Ok(r) => r,
                    Err(e) => return Ok(Err(e)),
                };
            for row in csv_rows {
                let mut values = BTreeMap::new();
                let mut fields = BTreeMap::new();
                for (k, v) in row.fields {
                    if declared.contains(&k) {
                        values.insert(k, v);
                    } else {
                        fields.insert(k, v);
                    }
                }
                let contact = ContactValues { phone: row.phone.clone(), name: row.name, fields };
                recipients.push(Pending {
                    phone: row.phone,
                    contact_id: None,
                    data: RecipientData { contact, values },
                });
            }
            if recipients.is_empty() {
                return Ok(Err(ApiError::bad("empty_audience", "the audience has no valid recipients")));
            }
            let report = AudienceReport { recipients: 0, duplicates: 0, opted_out: 0, errors };
            insert_campaign(c, &tenant, new, recipients, report, now)
        })
        .await??;
    publish_status(&st, &p.tenant_id, &out.campaign, now);
    wake(&waker);
    Ok((StatusCode::CREATED, Json(out)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DirectSend {
    pub account_id: String,
    pub phone: String,
    pub default_country: Option<String>,
    /// A saved template, or…
    pub template_id: Option<String>,
    /// …the message text (template syntax allowed).
    pub message: Option<String>,
    /// With `message` only: a media file sent with the text as its caption.
    pub media: Option<TemplateMediaInput>,
    #[serde(default)]
    pub values: BTreeMap<String, String>,
}

#[utoipa::path(post, path = "/api/v1/broadcast/direct", tag = "campaigns", request_body = DirectSend,
    responses((status = 201, body = CreatedCampaign), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn direct(
    State(st): State<AppState>,
    p: Principal,
    waker: Option<Extension<EngineWaker>>,
    ApiJson(req): ApiJson<DirectSend>,
) -> Result<(StatusCode, Json<CreatedCampaign>), ApiError> {
    p.require(Permission::Send)?;
    let cc = req.default_country.as_deref().map(contacts::parse_country_code).transpose()?;
    let phone = contacts::normalize_phone(&req.phone, cc.as_deref())
        .map_err(|e| ApiError::bad("invalid_phone", format!("invalid phone number: {e}")))?
        .to_string();
    let tenant = p.tenant_id.clone();
    let msg = resolve_message(&st, &tenant, req.template_id, req.message, Vec::new(), req.media).await?;
    let segs = templates::parse(&msg.body).map_err(template_error)?;
    let missing: Vec<String> = templates::required(&segs, &msg.declared)
        .into_iter()
        .filter(|v| !req.values.contains_key(v))
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::bad("missing_variable", format!("values must give {}", missing.join(", "))));
    }
    let now = st.clock.now_ms();
    let new = NewCampaign {
        kind: "direct",
        name: format!("direct to {phone}"),
        msg,
        values: req.values,
        accounts: vec![req.account_id],
        settings: Settings { rate: 600, jitter: 0, max_attempts: 3 },
        check_numbers: false,
        status: CampaignStatus::Running,
        scheduled_at: None,
    };
    let out = st
        .db
        .call(move |c| {
            let recipients = match resolve_contacts(c, &tenant, &[], &[], false, vec![(0, phone)])? {
                Ok(r) => r,
                Err(e) => return Ok(Err(e)),
            };
            let report = AudienceReport { recipients: 0, duplicates: 0, opted_out: 0, errors: Vec::new() };
            insert_campaign(c, &tenant, new, recipients, report, now)
        })
        .await??;
    publish_status(&st, &p.tenant_id, &out.campaign, now);
    wake(&waker);
    Ok((StatusCode::CREATED, Json(out)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub status: Option<CampaignStatus>,
    /// Include direct sends (default false).
    #[serde(default)]
    pub include_direct: bool,
}

#[utoipa::path(get, path = "/api/v1/campaigns", tag = "campaigns", params(ListQuery),
    responses((status = 200, body = Vec<Campaign>)), security(("api_key" = [])))]
pub async fn list(
    State(st): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<Campaign>>, ApiError> {
    p.require(Permission::Read)?;
    let tenant = p.tenant_id.clone();
    let now = st.clock.now_ms();
    let status = q.status.map(|s| s.as_str());
    let rows = st
        .db
        .call(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {COLUMNS} FROM campaigns WHERE tenant_id = ?1 AND (CAST(?2 AS TEXT) IS NULL OR status = ?2)
                   AND (?3 OR kind = 'campaign') ORDER BY created_at DESC, id LIMIT 500"
            ))?;
            let mut rows = stmt
                .query_map(params![tenant, status, q.include_direct], from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            for camp in &mut rows {
                complete(c, camp, now)?;
            }
            Ok(rows)
        })
        .await?;
    Ok(Json(rows))
}

#[utoipa::path(get, path = "/api/v1/campaigns/{id}", tag = "campaigns", params(("id" = String, Path)),
    responses((status = 200, body = Campaign), (status = 404, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn get(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<Campaign>, ApiError> {
    p.require(Permission::Read)?;
    let tenant = p.tenant_id.clone();
    let now = st.clock.now_ms();
    st.db.call(move |c| load(c, &tenant, &id, now)).await?.map(Json).ok_or(ApiError::NotFound("campaign"))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Recipient {
    pub id: i64,
    pub phone: String,
    pub contact_id: Option<String>,
    pub account_id: Option<String>,
    /// pending, sending, sent, delivered, read, failed or skipped.
    pub status: String,
    /// Failure reason, or why skipped (`opted_out`, `not_on_whatsapp`, `cancelled`).
    pub reason: Option<String>,
    pub attempts: i64,
    pub message_id: Option<String>,
    pub sent_at: Option<i64>,
    pub delivered_at: Option<i64>,
    pub read_at: Option<i64>,
    pub failed_at: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RecipientQuery {
    pub status: Option<String>,
    /// Recipients with id greater than this (cursor).
    pub after: Option<i64>,
    /// 1 to 1000, default 100.
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RecipientPage {
    pub items: Vec<Recipient>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/campaigns/{id}/recipients", tag = "campaigns",
    params(("id" = String, Path), RecipientQuery),
    responses((status = 200, body = RecipientPage), (status = 404, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn recipients(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<RecipientQuery>,
) -> Result<Json<RecipientPage>, ApiError> {
    p.require(Permission::Read)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad("invalid_query", "limit must be between 1 and 1000"));
    }
    if let Some(s) = &q.status
        && !["pending", "sending", "sent", "delivered", "read", "failed", "skipped"].contains(&s.as_str())
    {
        return Err(ApiError::bad("invalid_query", format!("unknown status `{s}`")));
    }
    let tenant = p.tenant_id.clone();
    let page = st
        .db
        .call(move |c| {
            let exists: bool = c.query_row(
                "SELECT EXISTS(SELECT 1 FROM campaigns WHERE tenant_id = ?1 AND id = ?2)",
                params![tenant, id],
                |r| r.get(0),
            )?;
            if !exists {
                return Ok(None);
            }
            let mut stmt = c.prepare(
                "SELECT id, phone, contact_id, account_id, status, reason, attempts, message_id, sent_at, delivered_at, read_at, failed_at
                 FROM campaign_recipients WHERE campaign_id = ?1 AND tenant_id = ?2 AND id > ?3 AND (CAST(?4 AS TEXT) IS NULL OR status = ?4)
                 ORDER BY id LIMIT ?5",
            )?;
            let items = stmt
                .query_map(params![id, tenant, q.after.unwrap_or(0), q.status, limit + 1], |r| {
                    Ok(Recipient {
                        id: r.get(0)?,
                        phone: r.get(1)?,
                        contact_id: r.get(2)?,
                        account_id: r.get(3)?,
                        status: r.get(4)?,
                        reason: r.get(5)?,
                        attempts: r.get(6)?,
                        message_id: r.get(7)?,
                        sent_at: r.get(8)?,
                        delivered_at: r.get(9)?,
                        read_at: r.get(10)?,
                        failed_at: r.get(11)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some(items))
        })
        .await?
        .ok_or(ApiError::NotFound("campaign"))?;
    let mut items = page;
    let next_after = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|r| r.id)
    } else {
        None
    };
    Ok(Json(RecipientPage { items, next_after }))
}

/// Moves a campaign from one of `from` to `to`.
async fn change(
    st: &AppState,
    p: &Principal,
    id: String,
    from: &'static [CampaignStatus],
    to: CampaignStatus,
    reason: Option<&'static str>,
) -> Result<Json<Campaign>, ApiError> {
    p.require(Permission::Send)?;
    let tenant = p.tenant_id.clone();
    let now = st.clock.now_ms();
    st.db
        .call(move |c| {
            let Some(camp) = load(c, &tenant, &id, now)? else {
                return Ok(Err(ApiError::NotFound("campaign")));
            };
            if !from.contains(&camp.status) {
                return Ok(Err(ApiError::Conflict {
                    code: "invalid_campaign_state",
                    message: format!("campaign is {}; cannot become {}", camp.status.as_str(), to.as_str()),
                }));
            }
            let to = if to == CampaignStatus::Running
                && camp.scheduled_at.is_some_and(|t| t > now)
                && camp.started_at.is_none()
            {
                CampaignStatus::Scheduled
            } else {
                to
            };
            engine::set_status(c, &tenant, &id, to, reason, now)?;
            Ok(load(c, &tenant, &id, now)?.ok_or(ApiError::NotFound("campaign")))
        })
        .await?
        .inspect(|camp| publish_status(st, &p.tenant_id, camp, now))
        .map(Json)
}

/// Publishes a campaign's new status and its counts on the live bus, in the order of
/// [`engine::status_before_progress`].
fn publish_status(st: &AppState, tenant_id: &str, camp: &Campaign, now: i64) {
    let progress = || {
        st.live.publish(
            tenant_id,
            None,
            "campaign_progress",
            engine::progress_json(&camp.id, &camp.progress),
            now,
        )
    };
    let status = || {
        st.live.publish(
            tenant_id,
            None,
            "campaign_status",
            engine::status_json(&camp.id, camp.status, camp.status_reason.as_deref()),
            now,
        )
    };
    if engine::status_before_progress(camp.status) {
        status();
        progress();
    } else {
        progress();
        status();
    }
}

#[utoipa::path(post, path = "/api/v1/campaigns/{id}/start", tag = "campaigns", params(("id" = String, Path)),
    responses((status = 200, body = Campaign), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn start(
    State(st): State<AppState>,
    p: Principal,
    waker: Option<Extension<EngineWaker>>,
    Path(id): Path<String>,
) -> Result<Json<Campaign>, ApiError> {
    let r = change(&st, &p, id, &[CampaignStatus::Draft], CampaignStatus::Running, None).await;
    wake(&waker);
    r
}

#[utoipa::path(post, path = "/api/v1/campaigns/{id}/pause", tag = "campaigns", params(("id" = String, Path)),
    responses((status = 200, body = Campaign), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn pause(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<Campaign>, ApiError> {
    change(
        &st,
        &p,
        id,
        &[CampaignStatus::Running, CampaignStatus::Scheduled],
        CampaignStatus::Paused,
        Some("paused by user"),
    )
    .await
}

#[utoipa::path(post, path = "/api/v1/campaigns/{id}/resume", tag = "campaigns", params(("id" = String, Path)),
    responses((status = 200, body = Campaign), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn resume(
    State(st): State<AppState>,
    p: Principal,
    waker: Option<Extension<EngineWaker>>,
    Path(id): Path<String>,
) -> Result<Json<Campaign>, ApiError> {
    let r = change(&st, &p, id, &[CampaignStatus::Paused], CampaignStatus::Running, None).await;
    wake(&waker);
    r
}

#[utoipa::path(post, path = "/api/v1/campaigns/{id}/cancel", tag = "campaigns", params(("id" = String, Path)),
    responses((status = 200, body = Campaign), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn cancel(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<Campaign>, ApiError> {
    use CampaignStatus::*;
    change(&st, &p, id, &[Draft, Scheduled, Running, Paused], Cancelled, Some("cancelled by user")).await
}

#[utoipa::path(delete, path = "/api/v1/campaigns/{id}", tag = "campaigns", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.require(Permission::Send)?;
    let tenant = p.tenant_id.clone();
    st.db
        .call(move |c| {
            let status: Option<String> = c
                .query_row(
                    "SELECT status FROM campaigns WHERE tenant_id = ?1 AND id = ?2",
                    params![tenant, id],
                    |r| r.get(0),
                )
                .optional()?;
            match status.as_deref() {
                None => Ok(Err(ApiError::NotFound("campaign"))),
                Some("running" | "scheduled") => Ok(Err(ApiError::Conflict {
                    code: "campaign_running",
                    message: "pause or cancel the campaign before deleting it".into(),
                })),
                Some(_) => {
                    c.execute("DELETE FROM campaigns WHERE tenant_id = ?1 AND id = ?2", params![tenant, id])?;
                    crate::template_media::collect_garbage(c, &tenant)?;
                    Ok(Ok(StatusCode::NO_CONTENT))
                }
            }
        })
        .await?
}
