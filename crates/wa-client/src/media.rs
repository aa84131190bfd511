//! Media encryption as WhatsApp does it (the crypto is [`wa_crypto::media`], shared with the
//! app-state layer): HKDF-expanded media key, AES-256-CBC, a 10-byte HMAC-SHA256 tag, and
//! SHA-256 of the plaintext and of the encrypted blob. Decryption checks the blob hash, the
//! MAC, and the plaintext hash before returning anything. Transfer:
//! `media_conn` (auth token and hosts, cached for its TTL), upload over HTTP(S), download.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use wa_binary::{Jid, Node};
use wa_proto::Message;
use wa_proto::message::{AudioMessage, DocumentMessage, ImageMessage, StickerMessage, VideoMessage};

use crate::client::{Client, Shared};
use crate::conn::server_jid;
use crate::error::{Error, Result};
use crate::send::SendResult;

/// The kinds of media, each with its own key-derivation label and upload path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MediaType {
    /// Images.
    Image,
    /// Videos and GIFs.
    Video,
    /// Audio and voice notes.
    Audio,
    /// Documents.
    Document,
    /// Stickers (image keys).
    Sticker,
    /// History-sync blobs.
    History,
    /// App-state blobs.
    AppState,
}

impl MediaType {
    /// The HKDF `info` label.
    pub fn hkdf_info(self) -> &'static [u8] {
        use wa_crypto::media as m;
        match self {
            Self::Image | Self::Sticker => m::IMAGE_INFO,
            Self::Video => m::VIDEO_INFO,
            Self::Audio => m::AUDIO_INFO,
            Self::Document => m::DOCUMENT_INFO,
            Self::History => m::HISTORY_INFO,
            Self::AppState => m::APP_STATE_INFO,
        }
    }

    /// The upload path (`/mms/<type>`).
    pub fn upload_path(self) -> &'static str {
        match self {
            Self::Image | Self::Sticker => "/mms/image",
            Self::Video => "/mms/video",
            Self::Audio => "/mms/audio",
            Self::Document => "/mms/document",
            Self::History => "/mms/md-msg-hist",
            Self::AppState => "/mms/md-app-state",
        }
    }

    /// Parses the names used in vectors and `mediatype` attributes.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "image" => Self::Image,
            "video" | "gif" | "ptv" => Self::Video,
            "audio" | "ptt" => Self::Audio,
            "document" => Self::Document,
            "sticker" => Self::Sticker,
            "md-msg-hist" | "history" => Self::History,
            "md-app-state" => Self::AppState,
            _ => return None,
        })
    }
}

/// An encrypted media file, ready to upload (the crypto lives in [`wa_crypto::media`]).
pub use wa_crypto::media::EncryptedMedia;

/// Encrypts `plain` under `media_key`.
pub fn encrypt_media(media_key: &[u8; 32], kind: MediaType, plain: &[u8]) -> EncryptedMedia {
    wa_crypto::media::encrypt(media_key, kind.hkdf_info(), plain)
}

/// Verifies and decrypts a downloaded blob. `file_enc_sha256` / `file_sha256` are checked
/// when given (they come from the message).
pub fn decrypt_media(
    media_key: &[u8; 32],
    kind: MediaType,
    blob: &[u8],
    file_enc_sha256: Option<&[u8]>,
    file_sha256: Option<&[u8]>,
) -> Result<Vec<u8>> {
    wa_crypto::media::decrypt(media_key, kind.hkdf_info(), blob, file_enc_sha256, file_sha256)
        .map_err(|e| Error::Media(e.to_string()))
}

// ---------------------------------------------------------------------------------------
// Transfer: media_conn, upload, message building, download.

/// The largest media file we download (WhatsApp's own limit for documents is 2 GiB).
pub const MAX_DOWNLOAD: u64 = 2 * 1024 * 1024 * 1024;

/// Upload credentials and hosts from the server's `media_conn`, with their expiry.
#[derive(Clone, Debug)]
pub(crate) struct MediaConn {
    auth: String,
    hosts: Vec<String>,
    expires: tokio::time::Instant,
}

/// A file uploaded to the media servers: everything a media message carries about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadedMedia {
    /// Which kind of media (decides the key label and upload path).
    pub kind: MediaType,
    /// Full download URL.
    pub url: String,
    /// Path on the media hosts (`/v/t62…` on WhatsApp, `/m/…` on the emulator).
    pub direct_path: String,
    /// The random media key.
    pub media_key: [u8; 32],
    /// SHA-256 of the plaintext.
    pub file_sha256: [u8; 32],
    /// SHA-256 of the uploaded (encrypted) blob.
    pub file_enc_sha256: [u8; 32],
    /// Plaintext length.
    pub file_length: u64,
}

/// What a media message says besides the file itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MediaOptions {
    /// MIME type (e.g. `image/jpeg`, `audio/ogg; codecs=opus`). Required.
    pub mimetype: String,
    /// Caption (images, videos, documents).
    pub caption: Option<String>,
    /// File name shown for documents.
    pub file_name: Option<String>,
    /// Audio: send as a voice note (push-to-talk).
    pub voice_note: bool,
    /// Video: play as a GIF.
    pub gif: bool,
    /// Audio/video duration in seconds.
    pub seconds: Option<u32>,
    /// Image/video/sticker dimensions.
    pub width: Option<u32>,
    /// Image/video/sticker dimensions.
    pub height: Option<u32>,
}

impl MediaOptions {
    /// Options with just a MIME type.
    pub fn new(mimetype: impl Into<String>) -> Self {
        Self { mimetype: mimetype.into(), ..Default::default() }
    }

    /// Sets the caption.
    pub fn caption(mut self, caption: impl Into<String>) -> Self {
        self.caption = Some(caption.into());
        self
    }

    /// Sets the document file name.
    pub fn file_name(mut self, name: impl Into<String>) -> Self {
        self.file_name = Some(name.into());
        self
    }

    /// Marks audio as a voice note.
    pub fn voice_note(mut self) -> Self {
        self.voice_note = true;
        self
    }

    /// Marks a video as a GIF.
    pub fn gif(mut self) -> Self {
        self.gif = true;
        self
    }

    /// Sets the duration.
    pub fn seconds(mut self, s: u32) -> Self {
        self.seconds = Some(s);
        self
    }
}

impl UploadedMedia {
    /// The message that shares this file.
    pub fn to_message(&self, opts: &MediaOptions, now_unix: i64) -> Result<Message> {
        if opts.mimetype.is_empty() {
            return Err(Error::InvalidInput("media message needs a mimetype".into()));
        }
        let url = Some(self.url.clone());
        let mimetype = Some(opts.mimetype.clone());
        let sha = Some(self.file_sha256.to_vec());
        let enc = Some(self.file_enc_sha256.to_vec());
        let key = Some(self.media_key.to_vec());
        let path = Some(self.direct_path.clone());
        let len = Some(self.file_length);
        let ts = Some(now_unix);
        let mut m = Message::default();
        match self.kind {
            MediaType::Image => {
                m.image_message = Some(Box::new(ImageMessage {
                    url,
                    mimetype,
                    caption: opts.caption.clone(),
                    file_sha256: sha,
                    file_length: len,
                    height: opts.height,
                    width: opts.width,
                    media_key: key,
                    file_enc_sha256: enc,
                    direct_path: path,
                    media_key_timestamp: ts,
                    ..Default::default()
                }))
            }
            MediaType::Video => {
                m.video_message = Some(Box::new(VideoMessage {
                    url,
                    mimetype,
                    file_sha256: sha,
                    file_length: len,
                    seconds: opts.seconds,
                    media_key: key,
                    caption: opts.caption.clone(),
                    gif_playback: opts.gif.then_some(true),
                    height: opts.height,
                    width: opts.width,
                    file_enc_sha256: enc,
                    direct_path: path,
                    media_key_timestamp: ts,
                    ..Default::default()
                }))
            }
            MediaType::Audio => {
                m.audio_message = Some(Box::new(AudioMessage {
                    url,
                    mimetype,
                    file_sha256: sha,
                    file_length: len,
                    seconds: opts.seconds,
                    ptt: Some(opts.voice_note),
                    media_key: key,
                    file_enc_sha256: enc,
                    direct_path: path,
                    media_key_timestamp: ts,
                    ..Default::default()
                }))
            }
            MediaType::Document => {
                m.document_message = Some(Box::new(DocumentMessage {
                    url,
                    mimetype,
                    title: opts.file_name.clone(),
                    file_sha256: sha,
                    file_length: len,
                    media_key: key,
                    file_name: opts.file_name.clone(),
                    file_enc_sha256: enc,
                    direct_path: path,
                    media_key_timestamp: ts,
                    caption: opts.caption.clone(),
                    ..Default::default()
                }))
            }
            MediaType::Sticker => {
                m.sticker_message = Some(Box::new(StickerMessage {
                    url,
                    file_sha256: sha,
                    file_enc_sha256: enc,
                    media_key: key,
                    mimetype,
                    height: opts.height,
                    width: opts.width,
                    direct_path: path,
                    file_length: len,
                    media_key_timestamp: ts,
                    ..Default::default()
                }))
            }
            MediaType::History | MediaType::AppState => {
                return Err(Error::InvalidInput(format!("{:?} blobs are not sent as messages", self.kind)));
            }
        }
        Ok(m)
    }
}

/// Where a media message's file is and how to check it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaRef {
    /// Kind (key label).
    pub kind: MediaType,
    /// Full URL, if the message has one.
    pub url: Option<String>,
    /// Path on the media hosts, if the message has one.
    pub direct_path: Option<String>,
    /// Media key.
    pub media_key: [u8; 32],
    /// Expected SHA-256 of the encrypted blob.
    pub file_enc_sha256: Option<Vec<u8>>,
    /// Expected SHA-256 of the plaintext.
    pub file_sha256: Option<Vec<u8>>,
    /// Plaintext length as announced.
    pub file_length: Option<u64>,
}

impl MediaRef {
    /// The media a message carries (image, video, audio, document or sticker), if any.
    pub fn from_message(m: &Message) -> Result<Option<Self>> {
        type Fields<'a> = (
            MediaType,
            &'a Option<String>,
            &'a Option<String>,
            &'a Option<Vec<u8>>,
            &'a Option<Vec<u8>>,
            &'a Option<Vec<u8>>,
            Option<u64>,
        );
        let f: Fields<'_> = if let Some(x) = &m.image_message {
            (
                MediaType::Image,
                &x.url,
                &x.direct_path,
                &x.media_key,
                &x.file_enc_sha256,
                &x.file_sha256,
                x.file_length,
            )
        } else if let Some(x) = &m.video_message {
            (
                MediaType::Video,
                &x.url,
                &x.direct_path,
                &x.media_key,
                &x.file_enc_sha256,
                &x.file_sha256,
                x.file_length,
            )
        } else if let Some(x) = &m.audio_message {
            (
                MediaType::Audio,
                &x.url,
                &x.direct_path,
                &x.media_key,
                &x.file_enc_sha256,
                &x.file_sha256,
                x.file_length,
            )
        } else if let Some(x) = &m.document_message {
            (
                MediaType::Document,
                &x.url,
                &x.direct_path,
                &x.media_key,
                &x.file_enc_sha256,
                &x.file_sha256,
                x.file_length,
            )
        } else if let Some(x) = &m.sticker_message {
            (
                MediaType::Sticker,
                &x.url,
                &x.direct_path,
                &x.media_key,
                &x.file_enc_sha256,
                &x.file_sha256,
                x.file_length,
            )
        } else {
            return Ok(None);
        };
        let (kind, url, direct_path, key, enc, sha, len) = f;
        let media_key: [u8; 32] = key
            .as_deref()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| Error::Media(format!("{kind:?} message has no 32-byte media key")))?;
        if url.is_none() && direct_path.is_none() {
            return Err(Error::Media(format!("{kind:?} message has neither url nor directPath")));
        }
        Ok(Some(Self {
            kind,
            url: url.clone(),
            direct_path: direct_path.clone(),
            media_key,
            file_enc_sha256: enc.clone(),
            file_sha256: sha.clone(),
            file_length: len,
        }))
    }
}

/// Percent-encodes a query value (everything but RFC 3986 unreserved characters).
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Shared {
    /// `https` as WhatsApp uses; `http` only when the application asked for it.
    fn media_scheme(&self) -> &'static str {
        if self.config.media_over_http { "http" } else { "https" }
    }

    /// The cached media_conn, refreshed from the server when missing or expired.
    pub(crate) async fn media_conn(&self, force: bool) -> Result<MediaConn> {
        let mut cached = self.media_conn.lock().await;
        if !force
            && let Some(c) = cached.as_ref()
            && c.expires > tokio::time::Instant::now()
        {
            return Ok(c.clone());
        }
        let iq = Node::new("iq")
            .attr("xmlns", "w:m")
            .attr("type", "set")
            .attr("to", server_jid())
            .children([Node::new("media_conn")]);
        let reply = self.iq(iq).await?;
        let mc = reply
            .child("media_conn")
            .ok_or_else(|| Error::Malformed("media_conn reply without <media_conn>".into()))?;
        let auth = mc.attr_str("auth")?.into_owned();
        let ttl = mc.opt_attr_str("ttl").and_then(|t| t.parse::<u64>().ok()).unwrap_or(300);
        let hosts: Vec<String> = mc
            .children_by_tag("host")
            .filter_map(|h| h.opt_attr_str("hostname").map(|s| s.into_owned()))
            .filter(|h| !h.is_empty() && !h.contains(['/', '?', '#', '@', ' ']))
            .collect();
        if hosts.is_empty() {
            return Err(Error::Malformed("media_conn lists no usable host".into()));
        }
        let conn = MediaConn {
            auth,
            hosts,
            expires: tokio::time::Instant::now() + Duration::from_secs(ttl.clamp(10, 24 * 3600)),
        };
        *cached = Some(conn.clone());
        Ok(conn)
    }

    async fn upload_blob(&self, kind: MediaType, enc: &EncryptedMedia) -> Result<(String, String)> {
        let token = URL_SAFE_NO_PAD.encode(enc.file_enc_sha256);
        let body = Bytes::copy_from_slice(&enc.blob);
        let mut last_err = None;
        for attempt in 0..2 {
            // A refused auth token means ours expired early: fetch a fresh one once.
            let conn = self.media_conn(attempt > 0).await?;
            for host in &conn.hosts {
                let url = format!(
                    "{}://{host}{}/{token}?auth={}&token={token}",
                    self.media_scheme(),
                    kind.upload_path(),
                    query_escape(&conn.auth)
                );
                let resp = match crate::http::request(
                    "POST",
                    &url,
                    Some(body.clone()),
                    self.config.proxy.as_ref(),
                    self.config.media_tls.as_ref(),
                    self.config.media_timeout,
                    64 * 1024,
                )
                .await
                {
                    Ok(r) => r,
                    Err(e) => {
                        last_err = Some(e);
                        continue;
                    }
                };
                match resp.status {
                    200..=299 => return parse_upload_reply(&resp.body),
                    401 | 403 => {
                        last_err =
                            Some(Error::Media(format!("upload to {host} refused: HTTP {}", resp.status)));
                        break;
                    }
                    s => {
                        last_err = Some(Error::Media(format!(
                            "upload to {host} failed: HTTP {s}: {}",
                            String::from_utf8_lossy(&resp.body[..resp.body.len().min(200)])
                        )));
                    }
                }
            }
            if !matches!(&last_err, Some(Error::Media(m)) if m.contains("refused: HTTP")) {
                break;
            }
        }
        Err(last_err.unwrap_or_else(|| Error::Media("no media host to upload to".into())))
    }
}

fn parse_upload_reply(body: &[u8]) -> Result<(String, String)> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| Error::Media(format!("upload reply is not JSON: {e}")))?;
    let url = v.get("url").and_then(|u| u.as_str());
    let path = v.get("direct_path").and_then(|u| u.as_str());
    match (url, path) {
        (Some(u), Some(p)) if p.starts_with('/') => Ok((u.to_owned(), p.to_owned())),
        _ => Err(Error::Media("upload reply lacks url or direct_path".into())),
    }
}

/// How long an upload is reused by [`Client::upload_reusable`] (seconds of the client's clock).
/// WhatsApp keeps media on its hosts for weeks; a day keeps well inside that while covering a
/// long, paced broadcast.
pub const UPLOAD_REUSE_SECS: i64 = 24 * 3600;
/// Files remembered by [`Client::upload_reusable`] at most (the oldest is forgotten first).
pub const UPLOAD_REUSE_MAX: usize = 64;

/// Recent uploads by (kind, SHA-256 of the plaintext), with when they were made.
#[derive(Debug, Default)]
pub(crate) struct UploadCache {
    entries: std::collections::HashMap<(MediaType, [u8; 32]), (UploadedMedia, i64)>,
}

impl UploadCache {
    fn get(&mut self, key: &(MediaType, [u8; 32]), now: i64) -> Option<UploadedMedia> {
        self.entries.retain(|_, (_, at)| now >= *at && now - *at < UPLOAD_REUSE_SECS);
        self.entries.get(key).map(|(u, _)| u.clone())
    }

    fn put(&mut self, key: (MediaType, [u8; 32]), u: UploadedMedia, now: i64) {
        if self.entries.len() >= UPLOAD_REUSE_MAX
            && !self.entries.contains_key(&key)
            && let Some(oldest) = self.entries.iter().min_by_key(|(_, (_, at))| *at).map(|(k, _)| *k)
        {
            self.entries.remove(&oldest);
        }
        self.entries.insert(key, (u, now));
    }
}

impl Client {
    /// [`Client::upload`], reusing an earlier upload of the same file (same kind and bytes) made
    /// by this client within [`UPLOAD_REUSE_SECS`]. Sending one file to many recipients (a
    /// broadcast) then encrypts and uploads it once: every message carries the same URL, direct
    /// path, media key and hashes, which is what a WhatsApp client does when it forwards media.
    pub async fn upload_reusable(&self, data: &[u8], kind: MediaType) -> Result<UploadedMedia> {
        let key = (kind, wa_crypto::sha256(&[data]));
        let now = self.shared.now();
        if let Some(u) = crate::client::lock(&self.shared.media_uploads).get(&key, now) {
            return Ok(u);
        }
        let u = self.upload(data, kind).await?;
        crate::client::lock(&self.shared.media_uploads).put(key, u.clone(), self.shared.now());
        Ok(u)
    }

    /// Encrypts `data` under a fresh media key and uploads it; the result goes into a media
    /// message ([`UploadedMedia::to_message`]) or straight to [`Client::send_media`].
    pub async fn upload(&self, data: &[u8], kind: MediaType) -> Result<UploadedMedia> {
        let media_key: [u8; 32] = self.shared.random_bytes();
        let enc = encrypt_media(&media_key, kind, data);
        let (url, direct_path) = self.shared.upload_blob(kind, &enc).await?;
        Ok(UploadedMedia {
            kind,
            url,
            direct_path,
            media_key,
            file_sha256: enc.file_sha256,
            file_enc_sha256: enc.file_enc_sha256,
            file_length: enc.file_length,
        })
    }

    /// Uploads and sends a media file (image, video, audio or voice note, document, sticker)
    /// to a user or group.
    pub async fn send_media(
        &self,
        to: &Jid,
        kind: MediaType,
        data: &[u8],
        opts: &MediaOptions,
    ) -> Result<SendResult> {
        if matches!(kind, MediaType::History | MediaType::AppState) {
            return Err(Error::InvalidInput(format!("{kind:?} blobs are not sent as messages")));
        }
        if opts.mimetype.is_empty() {
            return Err(Error::InvalidInput("media message needs a mimetype".into()));
        }
        let uploaded = self.upload(data, kind).await?;
        let message = uploaded.to_message(opts, self.shared.now())?;
        self.send_message(to, message).await
    }

    /// Downloads, verifies (fileEncSha256, MAC, fileSha256) and decrypts the media file of
    /// a message. Errors if the message carries no media.
    pub async fn download(&self, message: &Message) -> Result<Vec<u8>> {
        let r = MediaRef::from_message(message)?
            .ok_or_else(|| Error::InvalidInput("message carries no downloadable media".into()))?;
        self.download_ref(&r).await
    }

    /// [`Client::download`] from the fields of a media message.
    pub async fn download_ref(&self, r: &MediaRef) -> Result<Vec<u8>> {
        if let Some(len) = r.file_length
            && len > MAX_DOWNLOAD
        {
            return Err(Error::Media(format!("announced size {len} exceeds the {MAX_DOWNLOAD}-byte limit")));
        }
        // The blob is the padded ciphertext plus the MAC; allow for both.
        let max_body = r.file_length.map_or(MAX_DOWNLOAD, |l| l + 16 + 10);
        let max_body = usize::try_from(max_body).unwrap_or(usize::MAX);
        let mut urls = Vec::new();
        if let Some(path) = r.direct_path.as_deref().filter(|p| p.starts_with('/'))
            && let Ok(conn) = self.shared.media_conn(false).await
        {
            for host in &conn.hosts {
                urls.push(format!("{}://{host}{path}", self.shared.media_scheme()));
            }
        }
        if let Some(u) = &r.url {
            urls.push(u.clone());
        }
        if urls.is_empty() {
            return Err(Error::Media(
                "no media host known for a directPath-only message (not connected?)".into(),
            ));
        }
        let mut last_err = None;
        for url in urls {
            match crate::http::request(
                "GET",
                &url,
                None,
                self.shared.config.proxy.as_ref(),
                self.shared.config.media_tls.as_ref(),
                self.shared.config.media_timeout,
                max_body,
            )
            .await
            {
                Ok(resp) if (200..300).contains(&resp.status) => {
                    return decrypt_media(
                        &r.media_key,
                        r.kind,
                        &resp.body,
                        r.file_enc_sha256.as_deref(),
                        r.file_sha256.as_deref(),
                    );
                }
                // The file is gone, not the host unreachable: no other host has it either
                // (whatsmeow `download.go` stops on 404 and 410 and offers a media retry).
                Ok(resp) if matches!(resp.status, 404 | 410) => {
                    return Err(Error::MediaGone { status: resp.status });
                }
                Ok(resp) => last_err = Some(Error::Media(format!("download failed: HTTP {}", resp.status))),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| Error::Media("download failed".into())))
    }
}
