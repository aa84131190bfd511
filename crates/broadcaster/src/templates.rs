//! `/api/v1/templates`: message templates such as `Hi {{name|there}}, your code is {{code}}`.
//!
//! A placeholder is `{{variable}}` or `{{variable|fallback}}`. Variables are contact values
//! (`phone`, `name`, `first_name`, `fields.<key>`) or per-send variables the template declares.
//! Saving checks every placeholder: unknown variables are refused, and contact values that can
//! be empty (everything but `phone`) must carry a fallback. A declared variable without a
//! fallback is required when sending.

use std::collections::BTreeMap;

use crate::db::{Conn, OptionalExtension, Row, params};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Permission, Principal};
use crate::clock::new_id;
use crate::contacts::{self, field_key};
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;
use crate::template_media::{self, NewMedia, TemplateMedia, TemplateMediaInput};

pub const MAX_BODY_CHARS: usize = 4096;
/// Longest rendered text: WhatsApp's own limit on a text message. A body of placeholders
/// repeating one large value would otherwise multiply the request many times over.
pub const MAX_RENDERED_CHARS: usize = 65_536;
/// The rendered text's byte bound while it grows (4 bytes per character at most).
const MAX_RENDERED_BYTES: usize = MAX_RENDERED_CHARS * 4;

/// Why a template body is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    #[error("`{{{{` at character {0} is never closed with `}}}}`")]
    Unclosed(usize),
    #[error("empty placeholder at character {0}")]
    Empty(usize),
    #[error("`{0}` is not a variable name (letters, digits, `_`; contact fields as `fields.key`)")]
    BadName(String),
    #[error(
        "unknown variable `{0}`: use phone, name, first_name, fields.<key>, or declare it in `variables`"
    )]
    Unknown(String),
    #[error("contact value `{0}` can be empty; give it a fallback, e.g. {{{{{0}|there}}}}")]
    MissingFallback(String),
    #[error("template body must be 1 to {MAX_BODY_CHARS} characters")]
    Length,
    #[error("variable `{0}` is declared twice or is not a valid name")]
    BadDeclaration(String),
}

/// Why a message could not be rendered for one recipient.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    #[error("missing value for variable `{0}`")]
    Missing(String),
    #[error("the rendered text is longer than {MAX_RENDERED_CHARS} characters (WhatsApp's limit)")]
    TooLong,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Text(String),
    Var { name: String, fallback: Option<String> },
}

/// A per-send variable a template declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    pub name: String,
    /// Used when a send gives no value; without one the value is required.
    pub fallback: Option<String>,
}

const BUILTIN: [&str; 3] = ["phone", "name", "first_name"];

/// Splits a body into text and placeholders.
pub fn parse(body: &str) -> Result<Vec<Segment>, TemplateError> {
    if body.trim().is_empty() || body.chars().count() > MAX_BODY_CHARS {
        return Err(TemplateError::Length);
    }
    let mut out = Vec::new();
    let mut rest = body;
    let mut offset = 0;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            out.push(Segment::Text(rest[..start].to_owned()));
        }
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or(TemplateError::Unclosed(offset + start))?;
        let inner = &after[..end];
        let (name, fallback) = match inner.split_once('|') {
            Some((n, f)) => (n.trim(), Some(f.trim().to_owned())),
            None => (inner.trim(), None),
        };
        if name.is_empty() {
            return Err(TemplateError::Empty(offset + start));
        }
        if !valid_name(name) {
            return Err(TemplateError::BadName(name.to_owned()));
        }
        out.push(Segment::Var { name: name.to_owned(), fallback });
        let consumed = start + 2 + end + 2;
        offset += consumed;
        rest = &rest[consumed..];
    }
    if !rest.is_empty() {
        out.push(Segment::Text(rest.to_owned()));
    }
    Ok(out)
}

fn valid_name(name: &str) -> bool {
    match name.strip_prefix("fields.") {
        Some(k) => field_key(k).as_deref() == Some(k),
        None => {
            !name.is_empty()
                && name.len() <= 40
                && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        }
    }
}

/// Checks placeholders against the declared variables (save-time validation).
pub fn validate(segments: &[Segment], declared: &[Variable]) -> Result<(), TemplateError> {
    let mut seen = std::collections::BTreeSet::new();
    for v in declared {
        if !valid_name(&v.name)
            || v.name.starts_with("fields.")
            || BUILTIN.contains(&v.name.as_str())
            || !seen.insert(&v.name)
        {
            return Err(TemplateError::BadDeclaration(v.name.clone()));
        }
    }
    for s in segments {
        let Segment::Var { name, fallback } = s else { continue };
        if name == "phone" || declared.iter().any(|v| &v.name == name) {
            continue;
        }
        if name == "name" || name == "first_name" || name.starts_with("fields.") {
            if fallback.is_none() {
                return Err(TemplateError::MissingFallback(name.clone()));
            }
            continue;
        }
        return Err(TemplateError::Unknown(name.clone()));
    }
    Ok(())
}

/// The contact values a message is rendered with.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContactValues {
    pub phone: String,
    pub name: Option<String>,
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

/// Renders for one recipient. Per-send `values` fill declared variables.
pub fn render(
    segments: &[Segment],
    declared: &[Variable],
    contact: &ContactValues,
    values: &BTreeMap<String, String>,
) -> Result<String, RenderError> {
    let mut out = String::new();
    for s in segments {
        match s {
            Segment::Text(t) => push_bounded(&mut out, t)?,
            Segment::Var { name, fallback } => {
                let non_empty =
                    |v: Option<&String>| v.map(|s| s.trim()).filter(|s| !s.is_empty()).map(str::to_owned);
                let value = match name.as_str() {
                    "phone" => Some(contact.phone.clone()),
                    "name" => non_empty(contact.name.as_ref()),
                    "first_name" => non_empty(contact.name.as_ref())
                        .and_then(|n| n.split_whitespace().next().map(str::to_owned)),
                    n => match n.strip_prefix("fields.") {
                        Some(k) => non_empty(contact.fields.get(k)),
                        None => non_empty(values.get(n)),
                    },
                };
                let value = value
                    .or_else(|| fallback.clone())
                    .or_else(|| declared.iter().find(|v| &v.name == name).and_then(|v| v.fallback.clone()))
                    .ok_or_else(|| RenderError::Missing(name.clone()))?;
                push_bounded(&mut out, &value)?;
            }
        }
    }
    if out.len() > MAX_RENDERED_CHARS && out.chars().count() > MAX_RENDERED_CHARS {
        return Err(RenderError::TooLong);
    }
    Ok(out)
}

/// Appends `s`, refusing before the text outgrows [`MAX_RENDERED_BYTES`] (so memory stays
/// bounded whatever the values).
fn push_bounded(out: &mut String, s: &str) -> Result<(), RenderError> {
    if out.len() + s.len() > MAX_RENDERED_BYTES {
        return Err(RenderError::TooLong);
    }
    out.push_str(s);
    Ok(())
}

/// Per-send variables that have no fallback and so must be given.
pub fn required(segments: &[Segment], declared: &[Variable]) -> Vec<String> {
    let mut req: Vec<String> = declared
        .iter()
        .filter(|v| v.fallback.is_none())
        .filter(|v| {
            segments.iter().any(|s| matches!(s, Segment::Var { name, fallback: None } if name == &v.name))
        })
        .map(|v| v.name.clone())
        .collect();
    req.dedup();
    req
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// The template routes, merged into the main router. `upload_limit` bounds the bodies that may
/// carry a media file (inline base64 or an upload).
pub fn routes(upload_limit: usize) -> axum::Router<AppState> {
    use axum::routing::{get, post, put};
    axum::Router::new()
        .route("/api/v1/templates", post(create).layer(crate::body_limit::max(upload_limit)).get(list))
        .route("/api/v1/templates/preview", post(preview))
        .route(
            "/api/v1/templates/{id}",
            get(self::get).put(replace).layer(crate::body_limit::max(upload_limit)).delete(self::delete),
        )
        .route(
            "/api/v1/templates/{id}/media",
            put(put_media).layer(crate::body_limit::max(upload_limit)).delete(delete_media),
        )
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Template {
    pub id: String,
    pub name: String,
    pub body: String,
    pub variables: Vec<Variable>,
    /// The media file sent with the text as caption, if any.
    #[serde(default)]
    pub media: Option<TemplateMedia>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaveTemplate {
    pub name: String,
    pub body: String,
    #[serde(default)]
    pub variables: Vec<Variable>,
    /// A media file to send with the text as caption (image, video, document) or alone (audio).
    /// On `PUT`, absent keeps the template's current file; `DELETE /api/v1/templates/{id}/media`
    /// removes it.
    pub media: Option<TemplateMediaInput>,
}

fn template_error(e: TemplateError) -> ApiError {
    let code = match e {
        TemplateError::Unknown(_) => "unknown_variable",
        TemplateError::MissingFallback(_) => "missing_fallback",
        _ => "invalid_template",
    };
    ApiError::bad(code, e.to_string())
}

fn check(req: &SaveTemplate) -> Result<(), ApiError> {
    if req.name.trim().is_empty() || req.name.chars().count() > 100 {
        return Err(ApiError::bad("invalid_name", "name must be 1 to 100 characters"));
    }
    if req.variables.len() > 50 {
        return Err(ApiError::bad("invalid_template", "at most 50 variables"));
    }
    let segs = parse(&req.body).map_err(template_error)?;
    validate(&segs, &req.variables).map_err(template_error)
}

fn template_from_row(r: &Row) -> crate::db::DbResult<Template> {
    let vars: String = r.get(3)?;
    Ok(Template {
        id: r.get(0)?,
        name: r.get(1)?,
        body: r.get(2)?,
        variables: serde_json::from_str(&vars)
            .map_err(|e| crate::db::DbError::Corrupt(format!("template variables: {e}")))?,
        media: None,
        created_at: r.get(4)?,
        updated_at: r.get(5)?,
    })
}

pub fn load(c: &Conn, tenant_id: &str, id: &str) -> crate::db::DbResult<Option<Template>> {
    let t = c
        .query_row(
            "SELECT id, name, body, variables, created_at, updated_at FROM templates WHERE tenant_id = ?1 AND id = ?2",
            params![tenant_id, id],
            template_from_row,
        )
        .optional()?;
    t.map(|mut t| {
        t.media = template_media::of_template(c, tenant_id, id)?.map(|(_, m)| m);
        Ok(t)
    })
    .transpose()
}

/// Fetches or decodes the media of a save request (before touching the database).
async fn new_media(st: &AppState, input: Option<TemplateMediaInput>) -> Result<Option<NewMedia>, ApiError> {
    match input {
        Some(m) => Ok(Some(template_media::from_input(st, m).await?)),
        None => Ok(None),
    }
}

/// Stores `media` and points the template at it, dropping the file it replaces.
fn attach_media(c: &Conn, tenant: &str, id: &str, media: &NewMedia, now: i64) -> crate::db::DbResult<()> {
    let mid = template_media::insert(c, tenant, media, now)?;
    template_media::set_template_media(c, tenant, id, Some(&mid))?;
    template_media::collect_garbage(c, tenant)?;
    Ok(())
}

fn is_unique_violation(r: &crate::db::DbResult<usize>) -> bool {
    matches!(r, Err(e) if e.is_constraint_violation())
}

fn name_taken() -> ApiError {
    ApiError::Conflict { code: "template_name_taken", message: "a template with this name exists".into() }
}

#[utoipa::path(post, path = "/api/v1/templates", tag = "templates", request_body = SaveTemplate,
    responses((status = 201, body = Template), (status = 400, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn create(
    State(st): State<AppState>,
    p: Principal,
    ApiJson(mut req): ApiJson<SaveTemplate>,
) -> Result<(StatusCode, Json<Template>), ApiError> {
    p.require(Permission::Send)?;
    check(&req)?;
    let media = new_media(&st, req.media.take()).await?;
    let now = st.clock.now_ms();
    let tenant = p.tenant_id.clone();
    let vars = serde_json::to_string(&req.variables).map_err(|e| ApiError::Internal(e.to_string()))?;
    let t = st
        .db
        .call(move |c| {
            let id = new_id("tpl");
            let tx = c.transaction()?;
            let r = tx.execute(
                "INSERT INTO templates (id, tenant_id, name, body, variables, created_at, updated_at) VALUES (?1,?2,?3,?4,?5,?6,?6)",
                params![id, tenant, req.name.trim(), req.body, vars, now],
            );
            if is_unique_violation(&r) {
                return Ok(None);
            }
            r?;
            if let Some(m) = &media {
                attach_media(&tx, &tenant, &id, m, now)?;
            }
            tx.commit()?;
            load(c, &tenant, &id)
        })
        .await?
        .ok_or_else(name_taken)?;
    Ok((StatusCode::CREATED, Json(t)))
}

#[utoipa::path(get, path = "/api/v1/templates", tag = "templates",
    responses((status = 200, body = Vec<Template>)), security(("api_key" = [])))]
pub async fn list(State(st): State<AppState>, p: Principal) -> Result<Json<Vec<Template>>, ApiError> {
    p.require(Permission::Read)?;
    let tenant = p.tenant_id.clone();
    let rows = st
        .db
        .call(move |c| {
            let mut stmt = c.prepare(
                "SELECT id, name, body, variables, created_at, updated_at FROM templates WHERE tenant_id = ?1 ORDER BY name, id",
            )?;
            let mut rows =
                stmt.query_map(params![tenant], template_from_row)?.collect::<Result<Vec<_>, _>>()?;
            let mut media = template_media::of_templates(c, &tenant)?;
            for t in &mut rows {
                t.media = media.remove(&t.id);
            }
            Ok(rows)
        })
        .await?;
    Ok(Json(rows))
}

#[utoipa::path(get, path = "/api/v1/templates/{id}", tag = "templates", params(("id" = String, Path)),
    responses((status = 200, body = Template), (status = 404, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn get(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<Template>, ApiError> {
    p.require(Permission::Read)?;
    let tenant = p.tenant_id.clone();
    st.db.call(move |c| load(c, &tenant, &id)).await?.map(Json).ok_or(ApiError::NotFound("template"))
}

#[utoipa::path(put, path = "/api/v1/templates/{id}", tag = "templates", params(("id" = String, Path)),
    request_body = SaveTemplate,
    responses((status = 200, body = Template), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn replace(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    ApiJson(mut req): ApiJson<SaveTemplate>,
) -> Result<Json<Template>, ApiError> {
    p.require(Permission::Send)?;
    check(&req)?;
    let media = new_media(&st, req.media.take()).await?;
    let now = st.clock.now_ms();
    let tenant = p.tenant_id.clone();
    let vars = serde_json::to_string(&req.variables).map_err(|e| ApiError::Internal(e.to_string()))?;
    let out = st
        .db
        .call(move |c| {
            let tx = c.transaction()?;
            let r = tx.execute(
                "UPDATE templates SET name = ?3, body = ?4, variables = ?5, updated_at = ?6 WHERE tenant_id = ?1 AND id = ?2",
                params![tenant, id, req.name.trim(), req.body, vars, now],
            );
            if is_unique_violation(&r) {
                return Ok(Err(name_taken()));
            }
            if r? == 0 {
                return Ok(Err(ApiError::NotFound("template")));
            }
            if let Some(m) = &media {
                attach_media(&tx, &tenant, &id, m, now)?;
            }
            tx.commit()?;
            Ok(load(c, &tenant, &id)?.ok_or(ApiError::NotFound("template")))
        })
        .await??;
    Ok(Json(out))
}

#[utoipa::path(delete, path = "/api/v1/templates/{id}", tag = "templates", params(("id" = String, Path)),
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
            let n =
                c.execute("DELETE FROM templates WHERE tenant_id = ?1 AND id = ?2", params![tenant, id])?;
            template_media::collect_garbage(c, &tenant)?;
            Ok(n)
        })
        .await?;
    if n == 0 { Err(ApiError::NotFound("template")) } else { Ok(StatusCode::NO_CONTENT) }
}

/// Sets a template's media file: a `multipart/form-data` upload (see `MultipartTemplateMedia`)
/// or, as JSON, a URL (fetched now) or inline base64. Validated like a save: kind against MIME
/// type and content, size cap. Campaigns already created keep the file they started with.
#[utoipa::path(put, path = "/api/v1/templates/{id}/media", tag = "templates", params(("id" = String, Path)),
    request_body(content(
        (TemplateMediaInput = "application/json"),
        (template_media::MultipartTemplateMedia = "multipart/form-data"),
    )),
    responses((status = 200, body = Template), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 413, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn put_media(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    req: axum::extract::Request,
) -> Result<Json<Template>, ApiError> {
    use axum::extract::FromRequest as _;
    p.require(Permission::Send)?;
    crate::error::check_body_headers(&req, true)?;
    // Nothing is fetched or read for a template that does not exist.
    let (t, i) = (p.tenant_id.clone(), id.clone());
    if st.db.call(move |c| load(c, &t, &i)).await?.is_none() {
        return Err(ApiError::NotFound("template"));
    }
    let multipart = crate::error::is_multipart(&req);
    let media = if multipart {
        let form = crate::error::multipart(req, &st).await?;
        template_media::read_upload(&st, form).await?
    } else {
        let ApiJson(input) = ApiJson::<TemplateMediaInput>::from_request(req, &st).await?;
        template_media::from_input(&st, input).await?
    };
    let now = st.clock.now_ms();
    let tenant = p.tenant_id.clone();
    st.db
        .call(move |c| {
            let tx = c.transaction()?;
            if load(&tx, &tenant, &id)?.is_none() {
                return Ok(Err(ApiError::NotFound("template")));
            }
            attach_media(&tx, &tenant, &id, &media, now)?;
            tx.execute(
                "UPDATE templates SET updated_at = ?3 WHERE tenant_id = ?1 AND id = ?2",
                params![tenant, id, now],
            )?;
            tx.commit()?;
            Ok(load(c, &tenant, &id)?.ok_or(ApiError::NotFound("template")))
        })
        .await?
        .map(Json)
}

/// Removes a template's media file (its messages become text only).
#[utoipa::path(delete, path = "/api/v1/templates/{id}/media", tag = "templates", params(("id" = String, Path)),
    responses((status = 200, body = Template), (status = 404, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete_media(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<Template>, ApiError> {
    p.require(Permission::Send)?;
    let now = st.clock.now_ms();
    let tenant = p.tenant_id.clone();
    st.db
        .call(move |c| {
            let tx = c.transaction()?;
            if template_media::set_template_media(&tx, &tenant, &id, None)? == 0 {
                return Ok(Err(ApiError::NotFound("template")));
            }
            template_media::collect_garbage(&tx, &tenant)?;
            tx.execute(
                "UPDATE templates SET updated_at = ?3 WHERE tenant_id = ?1 AND id = ?2",
                params![tenant, id, now],
            )?;
            tx.commit()?;
            Ok(load(c, &tenant, &id)?.ok_or(ApiError::NotFound("template")))
        })
        .await?
        .map(Json)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// A saved template, or…
    pub template_id: Option<String>,
    /// …an unsaved body with its declared variables.
    pub body: Option<String>,
    #[serde(default)]
    pub variables: Vec<Variable>,
    /// Render with this contact's values (default: a sample contact).
    pub contact_id: Option<String>,
    /// Per-send values.
    #[serde(default)]
    pub values: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Preview {
    /// The rendered text (the caption when the template has media that takes one).
    pub text: String,
    /// Per-send variables a send must provide.
    pub required: Vec<String>,
    /// The saved template's media file, sent with the text.
    #[serde(default)]
    pub media: Option<TemplateMedia>,
}

#[utoipa::path(post, path = "/api/v1/templates/preview", tag = "templates", request_body = PreviewRequest,
    responses((status = 200, body = Preview), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody),
              (status = 422, description = "`rendered_too_long`: the text would exceed 65,536 characters",
               body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn preview(
    State(st): State<AppState>,
    p: Principal,
    ApiJson(req): ApiJson<PreviewRequest>,
) -> Result<Json<Preview>, ApiError> {
    p.require(Permission::Read)?;
    let tenant = p.tenant_id.clone();
    let (tpl_id, contact_id) = (req.template_id.clone(), req.contact_id.clone());
    let (tpl, contact) = st
        .db
        .call(move |c| {
            let t = tpl_id.map(|id| load(c, &tenant, &id)).transpose()?.flatten();
            let ct = contact_id.map(|id| contacts::load(c, &tenant, &id)).transpose()?.flatten();
            Ok((t, ct))
        })
        .await?;
    let mut media = None;
    let (body, declared) = match (req.template_id.is_some(), tpl, req.body) {
        (true, Some(t), None) => {
            media = t.media;
            (t.body, t.variables)
        }
        (true, None, None) => return Err(ApiError::NotFound("template")),
        (false, _, Some(body)) => (body, req.variables),
        _ => return Err(ApiError::bad("invalid_body", "give exactly one of template_id or body")),
    };
    let segs = parse(&body).map_err(template_error)?;
    validate(&segs, &declared).map_err(template_error)?;
    let values = match (req.contact_id.is_some(), contact) {
        (true, None) => return Err(ApiError::NotFound("contact")),
        (_, Some(ct)) => ContactValues { phone: ct.phone, name: ct.name, fields: ct.fields },
        (false, None) => ContactValues {
            phone: "+15550100000".into(),
            name: Some("Alex Sample".into()),
            fields: BTreeMap::new(),
        },
    };
    let text = render(&segs, &declared, &values, &req.values).map_err(|e| match e {
        RenderError::Missing(_) => ApiError::bad("missing_variable", e.to_string()),
        RenderError::TooLong => ApiError::unprocessable("rendered_too_long", e.to_string()),
    })?;
    Ok(Json(Preview { text, required: required(&segs, &declared), media }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_is_bounded_whatever_the_values() {
        let body = "{{x}}".repeat(800);
        let segs = parse(&body).unwrap();
        let declared = [Variable { name: "x".into(), fallback: None }];
        let big = BTreeMap::from([("x".to_owned(), "a".repeat(1_000_000))]);
        let c = ContactValues::default();
        assert_eq!(render(&segs, &declared, &c, &big), Err(RenderError::TooLong));
        let fits = BTreeMap::from([("x".to_owned(), "a".repeat(MAX_RENDERED_CHARS / 800))]);
        assert!(render(&segs, &declared, &c, &fits).is_ok());
        // Characters, not bytes, are the limit: four-byte characters fit as many.
        let wide = BTreeMap::from([("x".to_owned(), "\u{1F600}".repeat(MAX_RENDERED_CHARS / 800))]);
        assert!(render(&segs, &declared, &c, &wide).is_ok());
        let one_more = BTreeMap::from([("x".to_owned(), "a".repeat(MAX_RENDERED_CHARS / 800 + 1))]);
        assert_eq!(render(&segs, &declared, &c, &one_more), Err(RenderError::TooLong));
    }

    fn var(name: &str, fallback: Option<&str>) -> Variable {
        Variable { name: name.into(), fallback: fallback.map(Into::into) }
    }

    #[test]
    fn parses_and_renders_with_fallbacks() {
        let segs = parse(
            "Hi {{ first_name | there }}, code {{code}} for {{fields.city|your city}} ({{phone}}){{sig}}",
        )
        .unwrap();
        let declared = [var("code", None), var("sig", Some(" - Shop"))];
        validate(&segs, &declared).unwrap();
        let mut ct =
            ContactValues { phone: "+441".into(), name: Some("Ann Lee".into()), fields: BTreeMap::new() };
        let mut vals = BTreeMap::from([("code".to_owned(), "1234".to_owned())]);
        assert_eq!(
            render(&segs, &declared, &ct, &vals).unwrap(),
            "Hi Ann, code 1234 for your city (+441) - Shop"
        );
        ct.name = None;
        ct.fields.insert("city".into(), "Leeds".into());
        vals.insert("sig".into(), "!".into());
        assert_eq!(render(&segs, &declared, &ct, &vals).unwrap(), "Hi there, code 1234 for Leeds (+441)!");
        vals.remove("code");
        assert_eq!(render(&segs, &declared, &ct, &vals), Err(RenderError::Missing("code".into())));
        assert_eq!(required(&segs, &declared), vec!["code".to_owned()]);
    }

    #[test]
    fn save_time_validation_names_the_problem() {
        let v = |b: &str| parse(b).and_then(|s| validate(&s, &[var("code", None)]));
        assert_eq!(v("Hi {{name}}"), Err(TemplateError::MissingFallback("name".into())));
        assert_eq!(v("Hi {{fields.city}}"), Err(TemplateError::MissingFallback("fields.city".into())));
        assert_eq!(v("Hi {{coupon}}"), Err(TemplateError::Unknown("coupon".into())));
        assert_eq!(v("Hi {{code"), Err(TemplateError::Unclosed(3)));
        assert_eq!(v("Hi {{ }}"), Err(TemplateError::Empty(3)));
        assert_eq!(v("Hi {{Bad-Name}}"), Err(TemplateError::BadName("Bad-Name".into())));
        assert_eq!(v("   "), Err(TemplateError::Length));
        assert!(v("Plain text with } and { braces").is_ok());
        let dup = parse("x").and_then(|s| validate(&s, &[var("a", None), var("a", None)]));
        assert_eq!(dup, Err(TemplateError::BadDeclaration("a".into())));
        let builtin = parse("x").and_then(|s| validate(&s, &[var("name", None)]));
        assert_eq!(builtin, Err(TemplateError::BadDeclaration("name".into())));
    }
}
