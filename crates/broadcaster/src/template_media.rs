//! The optional media file of a template: an image, video, audio or document sent with every
//! message made from the template, the rendered text as its caption (audio has none).
//!
//! The file comes as an upload (multipart), inline base64, or a URL fetched once with the
//! SSRF-safe fetcher; it is validated (kind against MIME type and content, size cap, file name)
//! and stored once. Media rows are immutable: a template points at one, and a campaign created
//! from the template keeps pointing at the same row even if the template changes, so a running
//! campaign always sends the file it was started with. Rows nothing points at are deleted.
//!
//! The SQL of this feature lives here, apart from the rest of the schema (migration 6).

use std::collections::HashMap;

use crate::db::{Conn, DbError, DbResult, OptionalExtension, Row, params};
use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use utoipa::ToSchema;

use crate::clock::new_id;
use crate::error::ApiError;
use crate::runtime::MediaKind;
use crate::state::AppState;

/// What a template's media file is (the file itself is not returned).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TemplateMedia {
    /// `image`, `video`, `audio` or `document`.
    pub kind: MediaKind,
    pub mimetype: String,
    /// Shown for documents.
    pub file_name: Option<String>,
    /// Bytes.
    pub size: i64,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// The URL the file was fetched from, when it was given by URL.
    pub source_url: Option<String>,
    /// Whether the template's text goes out as the media's caption (`false` for audio, which
    /// has no caption: only the file is sent).
    pub caption: bool,
}

/// A media file for a template, by URL or inline base64 (uploads use the multipart form of
/// `PUT /api/v1/templates/{id}/media`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateMediaInput {
    /// `image`, `video`, `audio` or `document`.
    pub kind: MediaKind,
    /// An `http://` URL, fetched once when the template is saved (public addresses only; size
    /// and time capped).
    pub url: Option<String>,
    /// The file, base64.
    pub data_base64: Option<String>,
    /// Default: the URL's Content-Type, else sniffed from the bytes.
    pub mimetype: Option<String>,
    /// For documents; default: the URL's last path segment.
    pub file_name: Option<String>,
}

/// The multipart/form-data form of `PUT /api/v1/templates/{id}/media` (the OpenAPI schema).
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // only describes the form; `read_upload` parses it field by field
pub struct MultipartTemplateMedia {
    /// `image`, `video`, `audio` or `document`.
    kind: MediaKind,
    /// The file (at most the server's media size limit).
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// Default: the file part's Content-Type, else sniffed from the bytes.
    mimetype: Option<String>,
    /// Default for documents: the file part's file name.
    file_name: Option<String>,
}

/// A validated file, ready to store.
#[derive(Debug, Clone)]
pub struct NewMedia {
    pub kind: MediaKind,
    pub mimetype: String,
    pub file_name: Option<String>,
    pub data: Bytes,
    pub source_url: Option<String>,
}

/// A stored file, as campaigns send it.
#[derive(Debug, Clone)]
pub struct MediaFile {
    /// The stored file's id (`template_media.id`): messages sent with it point at it instead
    /// of keeping a copy.
    pub id: String,
    pub kind: MediaKind,
    pub mimetype: String,
    pub file_name: Option<String>,
    pub data: Bytes,
}

/// Whether messages of this kind carry a caption.
pub fn has_caption(kind: MediaKind) -> bool {
    !matches!(kind, MediaKind::Audio | MediaKind::Voice)
}

fn bad(code: &'static str, msg: impl Into<String>) -> ApiError {
    ApiError::bad(code, msg)
}

/// The MIME type family a kind requires (`None`: any, for documents).
fn required_family(kind: MediaKind) -> Result<Option<&'static str>, ApiError> {
    match kind {
        MediaKind::Image => Ok(Some("image")),
        MediaKind::Video => Ok(Some("video")),
        MediaKind::Audio => Ok(Some("audio")),
        MediaKind::Document => Ok(None),
        other => Err(bad(
            "invalid_media",
            format!("template media must be image, video, audio or document, not {}", other.as_str()),
        )),
    }
}

/// 413 `media_too_large`.
fn too_large(max_bytes: usize) -> ApiError {
    ApiError::TooLarge { code: "media_too_large", message: format!("media is larger than {max_bytes} bytes") }
}

fn family(mimetype: &str) -> &str {
    mimetype.split('/').next().unwrap_or("")
}

/// Validates a file for a template: kind, size, MIME type (given, or sniffed), the type against
/// the kind and against the content, and the file name.
pub fn check(
    max_bytes: usize,
    kind: MediaKind,
    data: Bytes,
    mimetype: Option<String>,
    file_name: Option<String>,
    source_url: Option<String>,
) -> Result<NewMedia, ApiError> {
    let want = required_family(kind)?;
    if data.is_empty() {
        return Err(bad("invalid_media", "the media file is empty"));
    }
    if data.len() > max_bytes {
        return Err(too_large(max_bytes));
    }
    let sniffed = crate::outbound::fetch::sniff_mimetype(&data);
    let mimetype = match mimetype.filter(|t| !t.trim().is_empty()) {
        Some(t) => crate::messages::check_mimetype(&t)?,
        None => sniffed
            .map(str::to_owned)
            .ok_or_else(|| bad("invalid_media", "cannot tell the media type; set `mimetype`"))?,
    };
    if let Some(f) = want {
        if family(&mimetype) != f {
            return Err(bad(
                "media_type_mismatch",
                format!("{} media needs a {f}/* MIME type, not `{mimetype}`", kind.as_str()),
            ));
        }
        if let Some(s) = sniffed
            && family(s) != f
        {
            return Err(bad(
                "media_type_mismatch",
                format!("the file's content is {s}, which is not {} media", kind.as_str()),
            ));
        }
    }
    if let Some(f) = &file_name
        && (f.is_empty() || f.len() > 255 || f.chars().any(|c| c.is_control() || c == '/' || c == '\\'))
    {
        return Err(bad("invalid_media", "file_name must be 1 to 255 characters without slashes"));
    }
    Ok(NewMedia { kind, mimetype, file_name, data, source_url })
}

/// The last path segment of a URL, as a document's default file name.
fn url_file_name(url: &str) -> Option<String> {
    let path = url.split(['?', '#']).next()?;
    let last = path.rsplit('/').next()?;
    let ok = !last.is_empty()
        && last.len() <= 255
        && !path.ends_with("//")
        && last.contains('.')
        && last.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    ok.then(|| last.to_owned())
}

/// A JSON media input: fetches the URL (SSRF-safe, capped) or decodes the base64, then checks.
pub async fn from_input(st: &AppState, input: TemplateMediaInput) -> Result<NewMedia, ApiError> {
    required_family(input.kind)?;
    let max = st.limits.fetch.max_bytes;
    match (input.url, input.data_base64) {
        (Some(url), None) => {
            let fetched = crate::outbound::fetch::fetch(&st.outbound, &st.limits.fetch, &url).await?;
            let name = input
                .file_name
                .or_else(|| if input.kind == MediaKind::Document { url_file_name(&url) } else { None });
            check(max, input.kind, fetched.data, input.mimetype.or(fetched.content_type), name, Some(url))
        }
        (None, Some(b64)) => {
            // Base64 is 4/3 of the file: refuse what cannot fit before decoding.
            if b64.len() / 4 * 3 > max + 3 {
                return Err(too_large(max));
            }
            let data = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| bad("invalid_media", format!("data_base64 is not base64: {e}")))?;
            check(max, input.kind, Bytes::from(data), input.mimetype, input.file_name, None)
        }
        _ => Err(bad("invalid_media", "media needs exactly one of `url` and `data_base64`")),
    }
}

/// Reads the multipart form of `PUT /api/v1/templates/{id}/media` (see [`MultipartTemplateMedia`]).
pub async fn read_upload(st: &AppState, mut form: axum::extract::Multipart) -> Result<NewMedia, ApiError> {
    let max = st.limits.fetch.max_bytes;
    let (mut kind, mut mimetype, mut file_name) = (None, None, None);
    let mut file: Option<(Bytes, Option<String>, Option<String>)> = None;
    while let Some(mut field) = form.next_field().await? {
        let name = field.name().unwrap_or("").to_owned();
        if name == "file" {
            if file.is_some() {
                return Err(bad("invalid_multipart", "more than one `file` part"));
            }
            let part_type = field.content_type().map(str::to_owned);
            let part_name = field.file_name().map(str::to_owned);
            let mut buf = bytes::BytesMut::new();
            while let Some(chunk) = field.chunk().await? {
                if buf.len() + chunk.len() > max {
                    return Err(too_large(max));
                }
                buf.extend_from_slice(&chunk);
            }
            file = Some((buf.freeze(), part_type, part_name));
            continue;
        }
        let slot = match name.as_str() {
            "kind" => &mut kind,
            "mimetype" => &mut mimetype,
            "file_name" => &mut file_name,
            other => return Err(bad("invalid_multipart", format!("unknown form field `{other}`"))),
        };
        let mut buf = Vec::new();
        while let Some(chunk) = field.chunk().await? {
            if buf.len() + chunk.len() > 1024 {
                return Err(bad("invalid_multipart", format!("form field `{name}` is too long")));
            }
            buf.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(buf)
            .map_err(|_| bad("invalid_multipart", format!("form field `{name}` is not UTF-8")))?;
        if slot.replace(text).is_some() {
            return Err(bad("invalid_multipart", format!("form field `{name}` given twice")));
        }
    }
    let kind = kind.ok_or_else(|| bad("invalid_multipart", "form field `kind` is required"))?;
    let kind = MediaKind::parse(kind.trim()).ok_or_else(|| {
        bad("invalid_multipart", format!("`{kind}` is not a media kind (image, video, audio, document)"))
    })?;
    required_family(kind)?;
    let (data, part_type, part_name) =
        file.ok_or_else(|| bad("invalid_media", "a `file` part is required"))?;
    let part_type = part_type.filter(|t| !t.is_empty() && t != "application/octet-stream");
    let file_name = file_name.or(if kind == MediaKind::Document { part_name } else { None });
    check(max, kind, data, mimetype.or(part_type), file_name, None)
}

// ---------------------------------------------------------------------------------------------
// Storage

fn info_from_row(r: &Row, first: usize) -> DbResult<TemplateMedia> {
    let kind: String = r.get(first)?;
    let kind =
        MediaKind::parse(&kind).ok_or_else(|| DbError::Corrupt(format!("template media kind {kind}")))?;
    Ok(TemplateMedia {
        kind,
        mimetype: r.get(first + 1)?,
        file_name: r.get(first + 2)?,
        size: r.get(first + 3)?,
        sha256: r.get(first + 4)?,
        source_url: r.get(first + 5)?,
        caption: has_caption(kind),
    })
}

const INFO_COLUMNS: &str = "m.kind, m.mimetype, m.file_name, m.size, m.sha256, m.source_url";

/// Stores a file; returns its id.
pub fn insert(c: &Conn, tenant_id: &str, m: &NewMedia, now: i64) -> DbResult<String> {
    let id = new_id("med");
    let sha = hex::encode(sha2::Sha256::digest(&m.data));
    c.execute(
        "INSERT INTO template_media (id, tenant_id, kind, mimetype, file_name, size, sha256, source_url, data, created_at)
         VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)",
        params![
            id,
            tenant_id,
            m.kind.as_str(),
            m.mimetype,
            m.file_name,
            m.data.len() as i64,
            sha,
            m.source_url,
            m.data.as_ref(),
            now
        ],
    )?;
    Ok(id)
}

/// Points a template at a file (or at none). Returns how many templates changed (0: no such
/// template).
pub fn set_template_media(
    c: &Conn,
    tenant_id: &str,
    template_id: &str,
    media_id: Option<&str>,
) -> DbResult<usize> {
    c.execute(
        "UPDATE templates SET media_id = ?3 WHERE tenant_id = ?1 AND id = ?2",
        params![tenant_id, template_id, media_id],
    )
}

/// A template's file: its id and what it is.
pub fn of_template(
    c: &Conn,
    tenant_id: &str,
    template_id: &str,
) -> DbResult<Option<(String, TemplateMedia)>> {
    c.query_row(
        &format!(
            "SELECT m.id, {INFO_COLUMNS} FROM templates t JOIN template_media m ON m.id = t.media_id
             WHERE t.tenant_id = ?1 AND t.id = ?2"
        ),
        params![tenant_id, template_id],
        |r| Ok((r.get(0)?, info_from_row(r, 1)?)),
    )
    .optional()
}

/// The files of all a tenant's templates that have one, by template id.
pub fn of_templates(c: &Conn, tenant_id: &str) -> DbResult<HashMap<String, TemplateMedia>> {
    let mut stmt = c.prepare(&format!(
        "SELECT t.id, {INFO_COLUMNS} FROM templates t JOIN template_media m ON m.id = t.media_id
         WHERE t.tenant_id = ?1"
    ))?;
    let rows = stmt.query_map(params![tenant_id], |r| Ok((r.get(0)?, info_from_row(r, 1)?)))?;
    rows.collect()
}

/// Records the file a campaign sends.
pub fn set_campaign_media(c: &Conn, campaign_id: &str, media_id: &str) -> DbResult<usize> {
    c.execute("UPDATE campaigns SET media_id = ?2 WHERE id = ?1", params![campaign_id, media_id])
}

/// The file id a campaign sends, if any.
pub fn of_campaign(c: &Conn, campaign_id: &str) -> DbResult<Option<String>> {
    Ok(c.query_row("SELECT media_id FROM campaigns WHERE id = ?1", params![campaign_id], |r| {
        r.get::<Option<String>>(0)
    })
    .optional()?
    .flatten())
}

/// What a campaign's file is, if any.
pub fn info_of_campaign(c: &Conn, campaign_id: &str) -> DbResult<Option<TemplateMedia>> {
    c.query_row(
        &format!(
            "SELECT {INFO_COLUMNS} FROM campaigns cp JOIN template_media m ON m.id = cp.media_id WHERE cp.id = ?1"
        ),
        params![campaign_id],
        |r| info_from_row(r, 0),
    )
    .optional()
}

/// Loads a file to send.
pub fn load_file(c: &Conn, media_id: &str) -> DbResult<Option<MediaFile>> {
    c.query_row(
        "SELECT kind, mimetype, file_name, data FROM template_media WHERE id = ?1",
        params![media_id],
        |r| {
            let kind: String = r.get(0)?;
            let kind = MediaKind::parse(&kind)
                .ok_or_else(|| DbError::Corrupt(format!("template media kind {kind}")))?;
            Ok(MediaFile {
                id: media_id.to_owned(),
                kind,
                mimetype: r.get(1)?,
                file_name: r.get(2)?,
                data: Bytes::from(r.get::<Vec<u8>>(3)?),
            })
        },
    )
    .optional()
}

/// Deletes a tenant's files that no template and no campaign uses.
pub fn collect_garbage(c: &Conn, tenant_id: &str) -> DbResult<usize> {
    c.execute(
        "DELETE FROM template_media WHERE tenant_id = ?1
           AND id NOT IN (SELECT media_id FROM templates WHERE tenant_id = ?1 AND media_id IS NOT NULL)
           AND id NOT IN (SELECT media_id FROM campaigns WHERE tenant_id = ?1 AND media_id IS NOT NULL)
           AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.template_media_id = template_media.id)",
        params![tenant_id],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png() -> Bytes {
        let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
        v.extend([7u8; 100]);
        Bytes::from(v)
    }

    #[test]
    fn kind_type_content_and_size_are_checked() {
        let ok = check(1000, MediaKind::Image, png(), None, None, None).unwrap();
        assert_eq!(ok.mimetype, "image/png");
        let code = |r: Result<NewMedia, ApiError>| match r {
            Err(ApiError::BadRequest { code, .. }) => code,
            other => panic!("expected a 400, got {other:?}"),
        };
        assert_eq!(code(check(1000, MediaKind::Video, png(), None, None, None)), "media_type_mismatch");
        assert_eq!(
            code(check(1000, MediaKind::Image, png(), Some("video/mp4".into()), None, None)),
            "media_type_mismatch"
        );
        // Declared as JPEG but the bytes are a PDF.
        let pdf = Bytes::from_static(b"%PDF-1.4 hello");
        assert_eq!(
            code(check(1000, MediaKind::Image, pdf.clone(), Some("image/jpeg".into()), None, None)),
            "media_type_mismatch"
        );
        assert!(check(1000, MediaKind::Document, pdf, None, Some("a.pdf".into()), None).is_ok());
        assert!(matches!(
            check(10, MediaKind::Image, png(), None, None, None),
            Err(ApiError::TooLarge { code: "media_too_large", .. })
        ));
        assert_eq!(code(check(1000, MediaKind::Image, Bytes::new(), None, None, None)), "invalid_media");
        assert_eq!(code(check(1000, MediaKind::Sticker, png(), None, None, None)), "invalid_media");
        assert_eq!(
            code(check(1000, MediaKind::Document, png(), None, Some("../x".into()), None)),
            "invalid_media"
        );
        assert_eq!(
            code(check(1000, MediaKind::Document, Bytes::from_static(b"plain"), None, None, None)),
            "invalid_media"
        );
    }

    #[test]
    fn document_names_come_from_the_url() {
        assert_eq!(url_file_name("http://h/files/price-list.pdf?x=1").as_deref(), Some("price-list.pdf"));
        assert_eq!(url_file_name("http://h/files/"), None);
        assert_eq!(url_file_name("http://h/a%2Fb.pdf"), None);
    }
}
