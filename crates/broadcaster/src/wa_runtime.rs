//! The production [`AccountRuntime`]: one `wa-client` [`Client`] per account, auth state in a
//! shared `wa-store` (SQLite in the data directory by default, one device id per account), and a
//! task per session that turns client events into [`SessionEvent`]s.
//!
//! The client owns reconnection (backoff, loop detection, the disconnect policy); this module
//! only reports. Shutdown stops the sessions without recording a state change, so accounts that
//! were active are resumed by [`crate::resume_sessions`] at the next start.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wa_client::{Client, DisconnectReason, Event, Jid, MediaOptions, MediaType, ReceiptKind, VersionFetcher};
use wa_proto::Message;
use wa_proto::prost_message::Message as _;
use wa_store::{DeviceId, Store};

use crate::clock::SharedClock;
use crate::config::WaVersionSetting;
use crate::metrics::Metrics;
use crate::runtime::{
    AccountRuntime, ChatChange, ChatState, DeliveryStatus, IncomingMedia, LinkMethod, MediaKind,
    MessageDetail, MessageTarget, NumberCheck, OutgoingContent, PollVoteCipher, RuntimeError, RuntimeFuture,
    SentMessage, SessionEvent, SessionEvents, SessionOptions,
};

mod groups;
mod kinds;

/// How long a pairing code is valid (WhatsApp's phone UI accepts it for about three minutes).
const PAIRING_CODE_TTL_MS: i64 = 180_000;
/// The SQLite auth store's file in the data directory.
pub const SQLITE_AUTH_FILE: &str = "wa-auth.sqlite3";
/// Received messages remembered per session so replies can quote them.
const RECENT_MESSAGES: usize = 512;

/// Where sessions connect.
#[derive(Clone)]
pub struct Upstream {
    pub url: String,
    /// `None`: WhatsApp's real root key.
    pub root_key: Option<wa_crypto::PublicKey>,
    /// An extra root certificate (PEM) trusted for media hosts (the emulator's test CA).
    pub media_ca_pem: Option<String>,
}

impl Upstream {
    /// Whether this is WhatsApp itself (its root key), not an emulator.
    pub fn is_whatsapp(&self) -> bool {
        self.root_key.is_none()
    }

    /// Real WhatsApp.
    pub fn whatsapp() -> Self {
        Self { url: wa_client::WHATSAPP_URL.to_owned(), root_key: None, media_ca_pem: None }
    }

    /// An external emulator (`--emulator-url`).
    pub fn external_emulator(ext: &crate::config::ExternalEmulator) -> Result<Self, wa_crypto::CryptoError> {
        Ok(Self {
            url: ext.url.clone(),
            root_key: Some(wa_crypto::PublicKey::from_bytes(&ext.root_key)?),
            media_ca_pem: ext.media_ca_pem.clone(),
        })
    }

    /// An in-process emulator.
    pub fn emulator(emu: &wa_emulator::EmulatorHandle) -> Self {
        Self {
            url: emu.ws_url(),
            root_key: Some(emu.root_public_key()),
            media_ca_pem: emu.media_ca_pem().map(str::to_owned),
        }
    }
}

/// Which WhatsApp Web version the sessions report: fixed, or fetched from `sw.js` (one fetcher
/// shared by every session, so they fetch once a day between them) with the built-in version
/// as fallback.
#[derive(Clone, Debug)]
pub struct WaVersion {
    fixed: Option<[u32; 3]>,
    fetcher: Option<VersionFetcher>,
}

/// Where the version in use came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaVersionSource {
    /// `--wa-version X.Y.Z`.
    Configured,
    /// Fetched from `sw.js` (by this process, or by an earlier one and kept in the auth store).
    Fetched,
    /// Built into this binary: `auto` has fetched nothing (yet, or the fetch failed, or the
    /// sessions run against an emulator without `--wa-version-url`).
    BuiltIn,
}

impl WaVersionSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Configured => "configured",
            Self::Fetched => "fetched",
            Self::BuiltIn => "built_in",
        }
    }
}

impl WaVersion {
    /// From the setting; `to_whatsapp` says whether the sessions connect to WhatsApp itself
    /// (where `auto` without a URL fetches WhatsApp's `sw.js`) or to an emulator (where it
    /// does not fetch: the emulator requires the built-in version by default).
    pub fn new(setting: &WaVersionSetting, to_whatsapp: bool) -> Result<Self, String> {
        Ok(match setting {
            WaVersionSetting::Fixed(v) => Self { fixed: Some(*v), fetcher: None },
            WaVersionSetting::Auto { url: Some(url) } => Self {
                fixed: None,
                fetcher: Some(VersionFetcher::with_url(url.clone()).map_err(|e| e.to_string())?),
            },
            WaVersionSetting::Auto { url: None } => Self::auto(to_whatsapp),
        })
    }

    /// `auto` with the default URL: WhatsApp's `sw.js` when connecting to WhatsApp, no fetch
    /// against an emulator.
    pub fn auto(to_whatsapp: bool) -> Self {
        Self { fixed: None, fetcher: to_whatsapp.then(VersionFetcher::new) }
    }

    /// The version sessions report now, and where it came from.
    pub fn in_use(&self) -> ([u32; 3], WaVersionSource) {
        if let Some(v) = self.fixed {
            return (v, WaVersionSource::Configured);
        }
        match self.fetcher.as_ref().and_then(VersionFetcher::cached) {
            Some(c) => (c.version, WaVersionSource::Fetched),
            None => (wa_client::version::DEFAULT_APP_VERSION, WaVersionSource::BuiltIn),
        }
    }

    /// Where `auto` fetches from, if it does.
    pub fn fetch_url(&self) -> Option<&str> {
        self.fetcher.as_ref().map(VersionFetcher::url)
    }

    fn apply(&self, b: wa_client::ClientBuilder) -> wa_client::ClientBuilder {
        let b = match self.fixed {
            Some(v) => b.version(v),
            None => b,
        };
        match &self.fetcher {
            Some(f) => b.fetch_version(f.clone()),
            None => b,
        }
    }

    /// What an account stopped by a 405 shows: what happened and what to do, in plain words.
    pub fn outdated_message(&self, refused: Option<[u32; 3]>) -> String {
        let what = match refused {
            Some(v) => format!(
                "WhatsApp refused WhatsApp Web version {} as outdated.",
                wa_client::version::format_app_version(v)
            ),
            None => "WhatsApp refused this server's WhatsApp Web version as outdated.".to_owned(),
        };
        let todo = match (&self.fixed, &self.fetcher) {
            (Some(_), _) => {
                "Set a current version with --wa-version (BROADCASTER_WA_VERSION, or wa_version in the \
                 config file), or set it to auto to fetch the current one, then connect the account again."
                    .to_owned()
            }
            (None, Some(f)) => format!(
                "Fetching the current version from {} did not give a newer one. Set a current version with \
                 --wa-version (BROADCASTER_WA_VERSION), or point --wa-version-url at a working mirror, then \
                 connect the account again.",
                f.url()
            ),
            (None, None) => "This server does not fetch the current version (it runs against an emulator \
                 without --wa-version-url). Set one with --wa-version, then connect the account again."
                .to_owned(),
        };
        format!("{what} {todo}")
    }
}

type Recent = Arc<Mutex<VecDeque<(String, wa_client::MessageInfo, Message)>>>;

struct Session {
    tenant_id: String,
    client: Client,
    pump: tokio::task::JoinHandle<()>,
    recent: Recent,
    catch_up: Arc<CatchUp>,
}

/// Whether a session has taken in WhatsApp's offline queue on the connection that is live now:
/// the pump saw that connection's `<ib><offline>` ([`Event::OfflineSyncCompleted`]), so every
/// stanza before it is recorded; or [`CATCH_UP_GRACE`] passed since the pump saw the login of
/// the live connection, for a server that never says so. Tied to connection numbers, not to
/// the pump's view of connects and drops, which lags behind a quick reconnect.
#[derive(Default)]
struct CatchUp {
    /// The connection whose offline queue the pump finished.
    done_on: Mutex<Option<u64>>,
    /// The connection live when the pump saw a login, and when.
    login_seen: Mutex<Option<(u64, std::time::Instant)>>,
}

/// How long after a login a session counts as caught up without `<ib><offline>`.
const CATCH_UP_GRACE: Duration = Duration::from_secs(10);

impl CatchUp {
    fn logged_in(&self, live: Option<u64>) {
        *lock(&self.login_seen) = live.map(|c| (c, std::time::Instant::now()));
    }

    fn completed(&self, connection: u64) {
        *lock(&self.done_on) = Some(connection);
    }

    fn is_caught_up(&self, live: Option<u64>) -> bool {
        let Some(live) = live else { return true };
        *lock(&self.done_on) == Some(live)
            || lock(&self.login_seen).is_some_and(|(c, at)| c == live && at.elapsed() >= CATCH_UP_GRACE)
    }
}

/// Sessions on `wa-client`.
pub struct WaRuntime {
    store: Store,
    upstream: Upstream,
    events: Arc<dyn SessionEvents>,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    version: Arc<WaVersion>,
    sessions: Mutex<HashMap<String, Session>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn failed(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Failed(e.to_string())
}

impl WaRuntime {
    pub fn new(
        store: Store,
        upstream: Upstream,
        events: Arc<dyn SessionEvents>,
        clock: SharedClock,
        metrics: Arc<Metrics>,
    ) -> Self {
        let version = WaVersion::auto(upstream.is_whatsapp());
        Self {
            store,
            upstream,
            events,
            clock,
            metrics,
            version: Arc::new(version),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Which WhatsApp Web version the sessions report (default: `auto`).
    pub fn with_version(mut self, version: Arc<WaVersion>) -> Self {
        self.version = version;
        self
    }

    /// The version policy in use.
    pub fn version(&self) -> &Arc<WaVersion> {
        &self.version
    }

    /// Opens the SQLite auth store at `path`, sealed with `key` (`None`: a store in clear, as
    /// releases before encryption at rest wrote it).
    pub async fn open_sqlite_store(
        path: &std::path::Path,
        key: Option<wa_store::EncryptionKey>,
    ) -> Result<Store, wa_store::Error> {
        Store::open_sqlite(path, wa_store::StoreOptions { key, ..Default::default() }).await
    }

    /// Opens the configured auth store (SQLite in `data_dir` ([`SQLITE_AUTH_FILE`]), PostgreSQL
    /// or MongoDB) with `key`, returning wa-store's own error so the caller can tell a wrong
    /// key or a store in clear from the rest ([`crate::secrets::unlock`] does; turn other
    /// errors into a start error with [`WaRuntime::open_error`]).
    pub async fn open_store(
        config: &crate::config::AuthStore,
        data_dir: &std::path::Path,
        key: Option<wa_store::EncryptionKey>,
    ) -> Result<Store, wa_store::Error> {
        use crate::config::AuthStore;
        let options = wa_store::StoreOptions { key, ..Default::default() };
        match config {
            AuthStore::Sqlite => Store::open_sqlite(data_dir.join(SQLITE_AUTH_FILE), options).await,
            AuthStore::Postgres { url } => Store::open_postgres(url, options).await,
            AuthStore::Mongodb { url, database } => Store::open_mongodb(url, database, options).await,
        }
    }

    /// A start error for an auth store that cannot be opened; never carries the URL (it may
    /// hold a password).
    pub fn open_error(config: &crate::config::AuthStore, e: &wa_store::Error) -> crate::ServeError {
        use crate::config::AuthStore;
        let (backend, url) = match config {
            AuthStore::Sqlite => ("sqlite", None),
            AuthStore::Postgres { url } => ("postgres", Some(url)),
            AuthStore::Mongodb { url, .. } => ("mongodb", Some(url)),
        };
        crate::ServeError::AuthStoreOpen {
            backend,
            reason: url.map_or_else(|| e.to_string(), |u| redact_url(&e.to_string(), u)),
        }
    }

    /// Where the auth store is, for messages (no URL).
    pub fn describe_store(config: &crate::config::AuthStore, data_dir: &std::path::Path) -> String {
        use crate::config::AuthStore;
        match config {
            AuthStore::Sqlite => {
                format!("the WhatsApp auth store {}", data_dir.join(SQLITE_AUTH_FILE).display())
            }
            AuthStore::Postgres { .. } => "the WhatsApp auth store in PostgreSQL (wa_* tables)".into(),
            AuthStore::Mongodb { database, .. } => {
                format!("the WhatsApp auth store in MongoDB (database {database})")
            }
        }
    }

    fn client_for(&self, account_id: &str, options: &SessionOptions) -> Result<Client, RuntimeError> {
        let id = DeviceId::new(account_id).map_err(failed)?;
        let mut b = Client::builder()
            .store(self.store.device(&id))
            .url(self.upstream.url.clone())
            .reconnect(true, Duration::from_secs(1), Duration::from_secs(60))
            // A received message stays pending in the auth store until the server's database
            // holds it (`mark_handled` in the pump); a crash in between replays it at next start.
            // Receipts likewise stay unacknowledged to WhatsApp until their status is committed
            // (`ack_receipt` in the pump); WhatsApp re-delivers them otherwise.
            .confirm_handled(true);
        if let Some(k) = self.upstream.root_key {
            b = b.root_key(k);
        }
        if let Some(pem) = &self.upstream.media_ca_pem {
            b = b.media_root_certificate(pem.clone());
        }
        // Only a name the operator set: by default the account keeps the name its owner chose,
        // and no presence is sent (the phone keeps showing notifications).
        if let Some(name) = &options.push_name {
            b = b.push_name(name.clone());
        }
        if let Some(proxy) = &options.proxy {
            b = b.proxy(proxy.expose());
        }
        self.version.apply(b).build().map_err(failed)
    }

    fn session_client(&self, tenant_id: &str, account_id: &str) -> Result<(Client, Recent), RuntimeError> {
        let s = lock(&self.sessions);
        let s = s.get(account_id).filter(|s| s.tenant_id == tenant_id).ok_or(RuntimeError::NotRunning)?;
        if !s.client.is_connected() {
            return Err(RuntimeError::NotRunning);
        }
        Ok((s.client.clone(), s.recent.clone()))
    }

    /// Sends `content` under `wa_message_id`; with `connection`, only on that connection
    /// (`wa_client::Client::send_message_with_id_on`).
    async fn send_under_id(
        &self,
        tenant_id: &str,
        account_id: &str,
        to: &str,
        wa_message_id: &str,
        content: OutgoingContent,
        connection: Option<u64>,
    ) -> Result<SentMessage, RuntimeError> {
        let (client, recent) = self.session_client(tenant_id, account_id)?;
        let jid = parse_to(to)?;
        let now_ms = self.clock.now_ms();
        let mut content = content;
        let quoted = content.quoted_id_mut().and_then(Option::take);
        let mut message = match content {
            OutgoingContent::Text { body, .. } => Message { conversation: Some(body), ..Default::default() },
            OutgoingContent::Media { kind, data, mimetype, caption, file_name, .. } => {
                let mut opts = MediaOptions::new(mimetype);
                if let Some(c) = caption {
                    opts = opts.caption(c);
                }
                if let Some(f) = file_name {
                    opts = opts.file_name(f);
                }
                if kind == MediaKind::Voice {
                    opts = opts.voice_note();
                }
                // One upload per file and account: a campaign sends the same bytes to
                // every recipient.
                let uploaded = client.upload_reusable(&data, media_type(kind)).await.map_err(send_error)?;
                uploaded.to_message(&opts, now_ms / 1000).map_err(send_error)?
            }
            OutgoingContent::Location { location, .. } => kinds::location(&location),
            OutgoingContent::Contact { card, .. } => kinds::contact(&card),
            OutgoingContent::Poll { poll, secret } => {
                wa_client::poll_message(&poll.name, &poll.options, poll.selectable_count, secret)
            }
            OutgoingContent::Reaction { target, emoji } => kinds::reaction(&target, &emoji, now_ms),
            OutgoingContent::Edit { target, text, media } => kinds::edit(&target, &text, media, now_ms),
            OutgoingContent::Revoke { target } => kinds::revoke(&target),
        };
        if let Some(q) = quoted {
            let found =
                lock(&recent).iter().find(|(id, _, _)| *id == q).map(|(_, i, m)| (i.clone(), m.clone()));
            let ctx = match found {
                Some((info, msg)) => wa_proto::ContextInfo {
                    stanza_id: Some(info.id.clone()),
                    participant: Some(info.sender.to_non_ad().to_string()),
                    quoted_message: Some(Box::new(msg)),
                    ..Default::default()
                },
                // Quoting one of our own messages (or one older than the cache): the
                // stanza id is enough for WhatsApp to link the reply.
                None => wa_proto::ContextInfo {
                    stanza_id: Some(q),
                    participant: client.jid().map(|j| j.to_non_ad().to_string()),
                    ..Default::default()
                },
            };
            kinds::set_context(&mut message, ctx);
        }
        let r = match connection {
            Some(n) => client.send_message_with_id_on(n, &jid, wa_message_id.to_owned(), message).await,
            None => client.send_message_with_id(&jid, wa_message_id.to_owned(), message).await,
        }
        .map_err(send_error)?;
        let at = i64::try_from(r.timestamp).unwrap_or(0).saturating_mul(1000);
        Ok(SentMessage::new(r.id, at).with_chat_lid(r.chat_lid.map(|l| l.to_string())))
    }

    fn take(&self, tenant_id: &str, account_id: &str) -> Option<Session> {
        let mut s = lock(&self.sessions);
        if s.get(account_id).is_some_and(|s| s.tenant_id == tenant_id) { s.remove(account_id) } else { None }
    }

    /// Stops every session without recording state changes (they resume at the next start).
    pub async fn shutdown(&self) {
        let sessions: Vec<Session> = lock(&self.sessions).drain().map(|(_, s)| s).collect();
        for s in &sessions {
            s.pump.abort();
        }
        futures::future::join_all(sessions.iter().map(|s| s.client.disconnect())).await;
    }

    /// How many sessions are running.
    pub fn session_count(&self) -> usize {
        lock(&self.sessions).len()
    }
}

fn media_kind(m: &Message) -> Option<MediaKind> {
    if m.image_message.is_some() {
        Some(MediaKind::Image)
    } else if m.video_message.is_some() {
        Some(MediaKind::Video)
    } else if let Some(a) = &m.audio_message {
        Some(if a.ptt == Some(true) { MediaKind::Voice } else { MediaKind::Audio })
    } else if m.document_message.is_some() {
        Some(MediaKind::Document)
    } else if m.sticker_message.is_some() {
        Some(MediaKind::Sticker)
    } else {
        None
    }
}

/// The media of a received message: its metadata, and as handle a `Message` holding only the
/// media part (keys, path, hashes), enough for [`Client::download`] later.
fn incoming_media(m: &Message) -> Option<IncomingMedia> {
    let mut only = Message::default();
    let (mimetype, file_name, size) = if let Some(x) = &m.image_message {
        only.image_message = Some(x.clone());
        (x.mimetype.clone(), None, x.file_length)
    } else if let Some(x) = &m.video_message {
        only.video_message = Some(x.clone());
        (x.mimetype.clone(), None, x.file_length)
    } else if let Some(x) = &m.audio_message {
        only.audio_message = Some(x.clone());
        (x.mimetype.clone(), None, x.file_length)
    } else if let Some(x) = &m.document_message {
        only.document_message = Some(x.clone());
        (x.mimetype.clone(), x.file_name.clone(), x.file_length)
    } else if let Some(x) = &m.sticker_message {
        only.sticker_message = Some(x.clone());
        (x.mimetype.clone(), None, x.file_length)
    } else {
        return None;
    };
    Some(IncomingMedia::new(mimetype, file_name, size, only.encode_to_vec()))
}

/// Text body or caption (documents carry captions too).
fn text_of(m: &wa_client::MessageEvent) -> Option<String> {
    m.text()
        .or_else(|| m.message.document_message.as_ref().and_then(|d| d.caption.as_deref()))
        .map(str::to_owned)
}

fn media_type(kind: MediaKind) -> MediaType {
    match kind {
        MediaKind::Image => MediaType::Image,
        MediaKind::Video => MediaType::Video,
        MediaKind::Audio | MediaKind::Voice => MediaType::Audio,
        MediaKind::Document => MediaType::Document,
        MediaKind::Sticker => MediaType::Sticker,
    }
}

/// A 1:1 chat keyed by the contact's phone number when known, so one contact is one chat
/// whether WhatsApp addressed the message by number or by LID; groups as they are.
/// The session event of a reach-out time-lock state (`until` in unix seconds).
fn timelock_event(active: bool, until: Option<u64>, enforcement_type: String) -> SessionEvent {
    let until_ms =
        until.filter(|_| active).map(|s| i64::try_from(s).unwrap_or(i64::MAX / 1000).saturating_mul(1000));
    SessionEvent::ReachoutTimelock { active, until_ms, enforcement_type }
}

fn chat_of(info: &wa_client::MessageInfo) -> String {
    if info.is_group {
        return info.chat.to_string();
    }
    info.chat_pn.as_ref().unwrap_or(&info.chat).to_non_ad().to_string()
}

/// The sender's phone-number JID when known, else the JID it wrote from (no device).
fn sender_of(info: &wa_client::MessageInfo) -> String {
    info.sender_pn.as_ref().unwrap_or(&info.sender).to_non_ad().to_string()
}

fn phone_of(info: &wa_client::MessageInfo) -> Option<String> {
    let pn =
        info.sender_pn.as_ref().or((info.sender.server() == wa_binary::Server::Pn).then_some(&info.sender))?;
    Some(format!("+{}", pn.user()))
}

struct Pump {
    tenant_id: String,
    account_id: String,
    events: Arc<dyn SessionEvents>,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    client: Client,
    method: LinkMethod,
    recent: Recent,
    version: Arc<WaVersion>,
    catch_up: Arc<CatchUp>,
}

impl Pump {
    async fn emit(&self, e: SessionEvent) {
        self.events.emit(&self.tenant_id, &self.account_id, e).await;
    }

    async fn mark_handled(&self, info: &wa_client::MessageInfo) {
        if let Err(e) = self.client.mark_handled(info).await {
            // Not lost: it is replayed at the next start and recorded once (ids are unique).
            tracing::warn!(account_id = %self.account_id, error = %e, "message not confirmed to the store");
        }
    }

    /// Records a receipt's status change and only then acknowledges the receipt to WhatsApp
    /// (the client is built with `confirm_handled`): a receipt not committed to the database
    /// (a crash, a failed write) stays unacknowledged and WhatsApp delivers it again on the next
    /// connection. A repeat is harmless: a status only moves forward and keeps the timestamps
    /// it already has, and an early receipt is stored once.
    async fn record_receipt(&self, r: wa_client::ReceiptEvent, now: i64) {
        let status = match r.kind {
            ReceiptKind::Delivered => Some(DeliveryStatus::Delivered),
            ReceiptKind::Read => Some(DeliveryStatus::Read),
            ReceiptKind::Played => Some(DeliveryStatus::Played),
            _ => None,
        };
        let mut recorded = true;
        if let Some(status) = status {
            // Our clock, not the receipt's whole-second stamp, so the timestamps of one
            // message stay ordered (sent_at is ours too).
            for id in &r.ids {
                let event = SessionEvent::MessageStatus { message_id: id.clone(), status, at_ms: now };
                recorded &= self.events.record(&self.tenant_id, &self.account_id, event).await;
            }
        }
        if !recorded {
            tracing::warn!(account_id = %self.account_id, "receipt not recorded; WhatsApp delivers it again");
            return;
        }
        if let Err(e) = self.client.ack_receipt(&r) {
            tracing::warn!(account_id = %self.account_id, error = %e, "receipt not acknowledged");
        }
    }

    /// Names the vote's voter (its sender) and, for a poll of ours, its creator: this account
    /// in the voter's namespace (whatsmeow and Baileys name both as the chat does).
    fn vote_parties(&self, mut v: PollVoteCipher, info: &wa_client::MessageInfo) -> Option<PollVoteCipher> {
        let voter = info.sender.to_non_ad();
        if v.creator.is_empty() {
            let own =
                if voter.server() == wa_binary::Server::Lid { self.client.lid() } else { self.client.jid() };
            v.creator = own?.to_non_ad().to_string();
        }
        v.voter = voter.to_string();
        Some(v)
    }

    /// The chat as history keys it for a JID app state names: a LID whose phone number the
    /// client knows becomes the phone-number JID (one chat per contact, as messages do).
    async fn history_chat(&self, jid: &str) -> String {
        let Ok(parsed) = jid.parse::<Jid>() else { return jid.to_owned() };
        let parsed = parsed.to_non_ad();
        if parsed.server() == wa_binary::Server::Lid
            && let Ok(Some(pn)) = self.client.alternate_jid(&parsed).await
        {
            return pn.to_string();
        }
        parsed.to_string()
    }

    /// Records what an app-state change means to the server: a chat's archive, pin, mute or
    /// read mark, a contact's saved name. Other actions (stars, labels, settings) are not kept.
    async fn record_app_state(&self, ev: &wa_client::appstate::AppStateEvent, now: i64) {
        use wa_client::appstate::{Operation, SyncAction};
        let removed = ev.operation == Operation::Remove;
        let (chat, change) = match &ev.action {
            SyncAction::Archive { chat, archived, .. } => (chat, ChatChange::Archived(*archived && !removed)),
            SyncAction::Pin { chat, pinned } => (chat, ChatChange::Pinned(*pinned && !removed)),
            SyncAction::Mute { chat, muted, end_timestamp_ms } => {
                (chat, ChatChange::Muted((*muted && !removed).then(|| end_timestamp_ms.unwrap_or(-1))))
            }
            // A removed read mark says nothing about the chat being read or not.
            SyncAction::MarkRead { chat, read, .. } if !removed => (chat, ChatChange::Read(*read)),
            SyncAction::Contact { jid, full_name, first_name, lid_jid, .. } => {
                let named = !removed;
                let event = SessionEvent::ContactName {
                    jid: self.history_chat(jid).await,
                    lid: lid_jid.clone().or_else(|| jid.ends_with("@lid").then(|| jid.clone())),
                    full_name: full_name.clone().filter(|_| named),
                    first_name: first_name.clone().filter(|_| named),
                };
                self.events.record(&self.tenant_id, &self.account_id, event).await;
                return;
            }
            SyncAction::LidContact { lid, full_name, first_name, .. } => {
                let named = !removed;
                let event = SessionEvent::ContactName {
                    jid: self.history_chat(lid).await,
                    lid: Some(lid.clone()),
                    full_name: full_name.clone().filter(|_| named),
                    first_name: first_name.clone().filter(|_| named),
                };
                self.events.record(&self.tenant_id, &self.account_id, event).await;
                return;
            }
            _ => return,
        };
        let event = SessionEvent::ChatSettingChanged {
            chat: self.history_chat(chat).await,
            wa_chat: chat.clone(),
            change,
            at_ms: ev.timestamp_ms.unwrap_or(now),
        };
        self.events.record(&self.tenant_id, &self.account_id, event).await;
    }

    /// Records the push names a history blob carries (the client stored its LID mappings
    /// first, so a LID whose number is known is recorded under the number).
    async fn record_push_names(&self, h: &wa_proto::HistorySync) {
        let mut names = Vec::with_capacity(h.pushnames.len());
        for p in &h.pushnames {
            let (Some(id), Some(name)) = (p.id.as_deref(), p.pushname.as_deref()) else { continue };
            if name.is_empty() {
                continue;
            }
            names.push((self.history_chat(id).await, name.to_owned()));
        }
        if !names.is_empty() {
            self.events.record(&self.tenant_id, &self.account_id, SessionEvent::PushNames { names }).await;
        }
    }

    async fn run(self, mut stream: wa_client::EventStream) {
        let mut pairing_requested = false;
        // Logged in once in this session: before that, a restart request is part of linking.
        let mut logged_in = false;
        while let Some(ev) = stream.recv().await {
            let now = self.clock.now_ms();
            match ev {
                Event::Qr(q) => {
                    if let LinkMethod::PairingCode { phone_digits } = &self.method
                        && !pairing_requested
                    {
                        pairing_requested = true;
                        let (client, phone) = (self.client.clone(), phone_digits.clone());
                        let (events, t, a) =
                            (self.events.clone(), self.tenant_id.clone(), self.account_id.clone());
                        tokio::spawn(async move {
                            if let Err(e) = client.pair_phone(&phone).await {
                                events
                                    .emit(
                                        &t,
                                        &a,
                                        SessionEvent::Failed { reason: format!("pairing code: {e}") },
                                    )
                                    .await;
                            }
                        });
                        continue;
                    }
                    if pairing_requested {
                        continue;
                    }
                    let expires_at_ms = now + i64::try_from(q.valid_for.as_millis()).unwrap_or(i64::MAX / 2);
                    self.emit(SessionEvent::Qr { code: q.text.clone(), expires_at_ms }).await;
                }
                Event::PairingCode { code } => {
                    self.emit(SessionEvent::PairingCode { code, expires_at_ms: now + PAIRING_CODE_TTL_MS })
                        .await;
                }
                Event::PairError { error } => {
                    tracing::warn!(account_id = %self.account_id, %error, "pairing refused");
                }
                Event::Connected { jid, .. } => {
                    logged_in = true;
                    self.catch_up.logged_in(self.client.connection_number());
                    self.emit(SessionEvent::Connected {
                        phone: Some(format!("+{}", jid.user())),
                        push_name: None,
                    })
                    .await;
                    // A lock set or lifted while we were away was announced to nobody: ask.
                    let (client, events) = (self.client.clone(), self.events.clone());
                    let (t, a) = (self.tenant_id.clone(), self.account_id.clone());
                    tokio::spawn(async move {
                        match client.reachout_timelock().await {
                            Ok(l) => {
                                events
                                    .emit(&t, &a, timelock_event(l.active, l.until, l.enforcement_type))
                                    .await
                            }
                            Err(e) => {
                                tracing::info!(account_id = %a, error = %e, "reach-out time-lock not queried")
                            }
                        }
                    });
                }
                Event::ReachoutTimelock { active, until, enforcement_type, .. } => {
                    self.emit(timelock_event(active, until, enforcement_type)).await;
                }
                Event::OfflineSyncCompleted { connection, .. } => self.catch_up.completed(connection),
                Event::Disconnected { reason, reconnect_in } => match (reason, reconnect_in) {
                    (DisconnectReason::Requested, _) => {}
                    // WhatsApp closes every new link with 515 and the client logs in again at
                    // once (whatsmeow connectionevents.go, stream error 515): not a drop to report, and
                    // `qr_ready -> reconnecting` is no transition of the account.
                    (DisconnectReason::RestartRequired, Some(_)) if !logged_in => {
                        tracing::debug!(account_id = %self.account_id, "linked; logging in");
                    }
                    (reason, Some(_)) => {
                        self.emit(SessionEvent::Reconnecting { reason: reason.to_string() }).await
                    }
                    (DisconnectReason::QrTimeout, None) => {
                        self.emit(SessionEvent::Disconnected {
                            reason: "QR code not scanned in time".into(),
                        })
                        .await;
                    }
                    (DisconnectReason::ClientOutdated { version }, None) => {
                        let message = self.version.outdated_message(version);
                        tracing::error!(account_id = %self.account_id, %message, "client outdated");
                        self.emit(SessionEvent::ClientOutdated { message }).await;
                    }
                    (reason, None) => self.emit(SessionEvent::Failed { reason: reason.to_string() }).await,
                },
                Event::LoggedOut { reason } if reason != DisconnectReason::Requested => {
                    self.emit(SessionEvent::LoggedOut { reason: reason.to_string() }).await;
                }
                Event::Message(m) => {
                    if m.info.from_me {
                        // Our own sends (from this or another companion): nothing to record.
                        self.mark_handled(&m.info).await;
                        continue;
                    }
                    {
                        let mut r = lock(&self.recent);
                        if r.len() >= RECENT_MESSAGES {
                            r.pop_front();
                        }
                        r.push_back((m.info.id.clone(), m.info.clone(), m.message.clone()));
                    }
                    let Ok(detail) = kinds::detail(&m.message) else {
                        // Protocol housekeeping: nothing to record.
                        self.mark_handled(&m.info).await;
                        continue;
                    };
                    let detail = match detail {
                        Some(MessageDetail::PollVote(v)) => match self.vote_parties(v, &m.info) {
                            Some(v) => Some(MessageDetail::PollVote(v)),
                            None => {
                                // Our own JID is not known yet: the vote cannot be opened.
                                self.mark_handled(&m.info).await;
                                continue;
                            }
                        },
                        d => d,
                    };
                    let ts = i64::try_from(m.info.timestamp).unwrap_or(0).saturating_mul(1000);
                    let event = SessionEvent::IncomingMessage {
                        message_id: m.info.id.clone(),
                        chat: chat_of(&m.info),
                        chat_lid: m.info.chat_lid.as_ref().map(ToString::to_string),
                        from: sender_of(&m.info),
                        from_lid: m.info.sender_lid.as_ref().map(|j| j.to_non_ad().to_string()),
                        from_phone: phone_of(&m.info),
                        push_name: m.info.push_name.clone(),
                        text: text_of(&m),
                        media: media_kind(&m.message),
                        timestamp_ms: if ts > 0 { ts } else { now },
                        media_info: incoming_media(&m.message).map(Box::new),
                        quoted_id: kinds::quoted_id(&m.message),
                        detail: detail.map(Box::new),
                    };
                    // Confirmed only once committed; otherwise the client replays it (next start).
                    if self.events.record(&self.tenant_id, &self.account_id, event).await {
                        self.mark_handled(&m.info).await;
                    }
                }
                Event::Receipt(r) => self.record_receipt(r, now).await,
                Event::UndecryptableMessage(_) => Metrics::inc(&self.metrics.decrypt_failures),
                Event::AppState(change) => self.record_app_state(&change, now).await,
                Event::HistorySync(h) => self.record_push_names(&h).await,
                _ => {}
            }
        }
    }
}

/// `text` without `url` or the password in it (drivers may quote either in their errors).
fn redact_url(text: &str, url: &str) -> String {
    let mut out = text.replace(url, "<auth store URL>");
    // scheme://user:password@host...
    if let Some(rest) = url.split_once("://").map(|(_, r)| r)
        && let Some((userinfo, _)) = rest.split_once('@')
        && let Some((_, password)) = userinfo.split_once(':')
        && !password.is_empty()
    {
        out = out.replace(password, "<redacted>");
    }
    out
}

fn send_error(e: wa_client::Error) -> RuntimeError {
    match e {
        wa_client::Error::NotConnected => RuntimeError::NotRunning,
        e @ wa_client::Error::Unacknowledged { .. } => RuntimeError::Unconfirmed(e.to_string()),
        wa_client::Error::NotOnWhatsApp(who) => RuntimeError::NotOnWhatsApp(who),
        wa_client::Error::ReachoutRestricted { text } => RuntimeError::ReachoutRestricted(text),
        e => failed(e),
    }
}

fn parse_to(to: &str) -> Result<Jid, RuntimeError> {
    let jid = if to.contains('@') {
        to.parse::<Jid>().map_err(|e| failed(format!("bad recipient `{to}`: {e}")))?
    } else {
        Jid::new(to, wa_binary::Server::Pn).map_err(|e| failed(format!("bad recipient `{to}`: {e}")))?
    };
    Ok(jid)
}

impl AccountRuntime for WaRuntime {
    fn caught_up(&self, tenant_id: &str, account_id: &str) -> bool {
        let s = lock(&self.sessions);
        s.get(account_id)
            .filter(|s| s.tenant_id == tenant_id)
            .is_none_or(|s| s.catch_up.is_caught_up(s.client.connection_number()))
    }

    fn connect<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        method: LinkMethod,
    ) -> RuntimeFuture<'a, ()> {
        self.connect_with(tenant_id, account_id, method, SessionOptions::default())
    }

    fn connect_with<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        method: LinkMethod,
        options: SessionOptions,
    ) -> RuntimeFuture<'a, ()> {
        Box::pin(async move {
            if let Some(old) = self.take(tenant_id, account_id) {
                old.pump.abort();
                old.client.disconnect().await;
            }
            let client = self.client_for(account_id, &options)?;
            let stream = client.events();
            let recent: Recent = Arc::default();
            let catch_up: Arc<CatchUp> = Arc::default();
            let pump = Pump {
                tenant_id: tenant_id.to_owned(),
                account_id: account_id.to_owned(),
                events: self.events.clone(),
                clock: self.clock.clone(),
                metrics: self.metrics.clone(),
                client: client.clone(),
                method,
                recent: recent.clone(),
                version: self.version.clone(),
                catch_up: catch_up.clone(),
            };
            let pump = tokio::spawn(pump.run(stream));
            client.connect().await.map_err(failed)?;
            lock(&self.sessions).insert(
                account_id.to_owned(),
                Session { tenant_id: tenant_id.to_owned(), client, pump, recent, catch_up },
            );
            Ok(())
        })
    }

    fn disconnect<'a>(&'a self, tenant_id: &'a str, account_id: &'a str) -> RuntimeFuture<'a, ()> {
        Box::pin(async move {
            let s = self.take(tenant_id, account_id).ok_or(RuntimeError::NotRunning)?;
            s.pump.abort();
            s.client.disconnect().await;
            Ok(())
        })
    }

    fn logout<'a>(&'a self, tenant_id: &'a str, account_id: &'a str) -> RuntimeFuture<'a, ()> {
        Box::pin(async move {
            let id = DeviceId::new(account_id).map_err(failed)?;
            match self.take(tenant_id, account_id) {
                Some(s) => {
                    s.pump.abort();
                    let r = if s.client.is_connected() { s.client.logout().await } else { Ok(()) };
                    s.client.disconnect().await;
                    // Forget the credentials even when the server could not be told.
                    self.store.delete_device(&id).await.map_err(failed)?;
                    r.map_err(failed)
                }
                None => {
                    self.store.delete_device(&id).await.map_err(failed)?;
                    Ok(())
                }
            }
        })
    }

    fn send<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        to: &'a str,
        content: OutgoingContent,
    ) -> RuntimeFuture<'a, SentMessage> {
        Box::pin(async move {
            let id = crate::runtime::new_wa_message_id();
            self.send_with_id(tenant_id, account_id, to, &id, content).await
        })
    }

    fn send_with_id<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        to: &'a str,
        wa_message_id: &'a str,
        content: OutgoingContent,
    ) -> RuntimeFuture<'a, SentMessage> {
        Box::pin(self.send_under_id(tenant_id, account_id, to, wa_message_id, content, None))
    }

    fn send_with_id_caught_up<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        to: &'a str,
        wa_message_id: &'a str,
        content: OutgoingContent,
    ) -> RuntimeFuture<'a, SentMessage> {
        Box::pin(async move {
            let connection = {
                let sessions = lock(&self.sessions);
                let s = sessions
                    .get(account_id)
                    .filter(|s| s.tenant_id == tenant_id)
                    .ok_or(RuntimeError::NotRunning)?;
                let live = s.client.connection_number().ok_or(RuntimeError::NotRunning)?;
                if !s.catch_up.is_caught_up(Some(live)) {
                    return Err(RuntimeError::AwaitingCatchUp);
                }
                live
            };
            self.send_under_id(tenant_id, account_id, to, wa_message_id, content, Some(connection)).await
        })
    }

    fn prepare_recipients<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        to: &'a [String],
    ) -> RuntimeFuture<'a, ()> {
        Box::pin(async move {
            let (client, _) = self.session_client(tenant_id, account_id)?;
            let jids = to.iter().map(|t| parse_to(t)).collect::<Result<Vec<_>, _>>()?;
            client.prepare_recipients(&jids).await.map_err(send_error)
        })
    }

    fn check_numbers<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        phones: &'a [String],
    ) -> RuntimeFuture<'a, Vec<NumberCheck>> {
        Box::pin(async move {
            let (client, _) = self.session_client(tenant_id, account_id)?;
            let refs: Vec<&str> = phones.iter().map(String::as_str).collect();
            let found = client.is_on_whatsapp(&refs).await.map_err(failed)?;
            Ok(found
                .into_iter()
                .map(|(phone, jid)| {
                    NumberCheck::new(phone, jid.is_some(), jid.map(|j| j.to_non_ad().to_string()))
                })
                .collect())
        })
    }

    fn forget<'a>(&'a self, tenant_id: &'a str, account_id: &'a str) -> RuntimeFuture<'a, ()> {
        Box::pin(async move {
            let id = DeviceId::new(account_id).map_err(failed)?;
            if let Some(s) = self.take(tenant_id, account_id) {
                s.pump.abort();
                s.client.disconnect().await;
            }
            self.store.delete_device(&id).await.map_err(failed)
        })
    }

    fn mark_read<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        targets: &'a [MessageTarget],
    ) -> RuntimeFuture<'a, ()> {
        Box::pin(async move {
            let (client, _) = self.session_client(tenant_id, account_id)?;
            // One receipt per chat and sender, as WhatsApp groups them.
            let mut groups: Vec<(Jid, Option<Jid>, Vec<String>)> = Vec::new();
            for t in targets {
                let key = kinds::key(t);
                let chat = parse_to(key.remote_jid.as_deref().unwrap_or(&t.chat))?;
                let sender = key.participant.as_deref().map(parse_to).transpose()?;
                match groups.iter_mut().find(|(c, s, _)| *c == chat && *s == sender) {
                    Some((_, _, ids)) => ids.push(t.id.clone()),
                    None => groups.push((chat, sender, vec![t.id.clone()])),
                }
            }
            for (chat, sender, ids) in groups {
                client.mark_read(&chat, sender.as_ref(), &ids).await.map_err(send_error)?;
            }
            Ok(())
        })
    }

    fn send_chat_state<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        to: &'a str,
        state: ChatState,
    ) -> RuntimeFuture<'a, ()> {
        Box::pin(async move {
            let (client, _) = self.session_client(tenant_id, account_id)?;
            let jid = parse_to(to)?;
            let kind = match state {
                ChatState::Typing => wa_client::ChatStateKind::Typing,
                ChatState::Recording => wa_client::ChatStateKind::Recording,
                ChatState::Paused => wa_client::ChatStateKind::Paused,
            };
            client.send_chat_state(&jid, kind).await.map_err(send_error)
        })
    }

    fn change_chat<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        chat: &'a str,
        change: ChatChange,
    ) -> RuntimeFuture<'a, ()> {
        Box::pin(async move {
            let (client, _) = self.session_client(tenant_id, account_id)?;
            let jid = parse_to(chat)?;
            let sent = match change {
                ChatChange::Archived(on) => client.archive_chat(&jid, on).await,
                ChatChange::Pinned(on) => client.pin_chat(&jid, on).await,
                ChatChange::Muted(until) => client.mute_chat(&jid, until).await,
                ChatChange::Read(read) => client.mark_chat_read(&jid, read).await,
            };
            sent.map_err(send_error)
        })
    }

    fn group<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        command: crate::runtime::GroupCommand,
    ) -> RuntimeFuture<'a, crate::runtime::GroupReply> {
        Box::pin(async move {
            let (client, _) = self.session_client(tenant_id, account_id)?;
            groups::run(&client, command).await
        })
    }

    fn download_media<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        handle: &'a [u8],
    ) -> RuntimeFuture<'a, Vec<u8>> {
        Box::pin(async move {
            let (client, _) = self.session_client(tenant_id, account_id)?;
            let m = Message::decode(handle).map_err(|e| failed(format!("stored media handle: {e}")))?;
            client.download(&m).await.map_err(failed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_setting_decides_what_is_fetched_and_reported() {
        let built_in = wa_client::version::DEFAULT_APP_VERSION;
        let fixed = WaVersion::new(&WaVersionSetting::Fixed([2, 3000, 9]), true).unwrap();
        assert_eq!(fixed.in_use(), ([2, 3000, 9], WaVersionSource::Configured));
        assert_eq!(fixed.fetch_url(), None);
        let auto = WaVersion::new(&WaVersionSetting::Auto { url: None }, true).unwrap();
        assert_eq!(auto.fetch_url(), Some(wa_client::SW_JS_URL));
        assert_eq!(auto.in_use(), (built_in, WaVersionSource::BuiltIn), "nothing fetched yet");
        let emulated = WaVersion::new(&WaVersionSetting::Auto { url: None }, false).unwrap();
        assert_eq!(emulated.fetch_url(), None, "no fetch against an emulator without a URL");
        let mirror =
            WaVersion::new(&WaVersionSetting::Auto { url: Some("http://127.0.0.1:9/sw.js".into()) }, false)
                .unwrap();
        assert_eq!(mirror.fetch_url(), Some("http://127.0.0.1:9/sw.js"));
        assert!(WaVersion::new(&WaVersionSetting::Auto { url: Some("mirror/sw.js".into()) }, true).is_err());

        // What an account stopped by a 405 says: the version, and what to do, in plain words.
        let m = fixed.outdated_message(Some([2, 3000, 9]));
        assert!(
            m.starts_with("WhatsApp refused WhatsApp Web version 2.3000.9 as outdated. Set a current"),
            "{m}"
        );
        assert!(mirror.outdated_message(None).contains("http://127.0.0.1:9/sw.js"));
        assert!(emulated.outdated_message(Some(built_in)).contains("--wa-version"));
        for m in [fixed.outdated_message(None), auto.outdated_message(Some(built_in))] {
            assert!(!m.contains('{') && !m.contains("::"), "{m}");
        }
    }

    #[test]
    fn redaction_removes_the_url_and_its_password() {
        let url = "postgres://app:s3cret@db.example:5432/wa";
        let text = format!("error connecting to {url}; password s3cret rejected");
        let out = redact_url(&text, url);
        assert!(!out.contains("s3cret") && !out.contains("db.example:5432/wa"), "{out}");
        assert_eq!(redact_url("refused", "mongodb://h:27017/"), "refused");
    }

    #[tokio::test]
    async fn unreachable_or_malformed_auth_stores_are_typed_errors_without_the_url() {
        use crate::config::AuthStore;
        let dir = tempfile::tempdir().unwrap();
        // Nothing listens on port 1 of the loopback.
        let cases = [
            ("postgres", AuthStore::Postgres { url: "postgres://app:s3cret@127.0.0.1:1/wa".into() }),
            ("postgres", AuthStore::Postgres { url: "postgres://app:s3cret@127.0.0.1:notaport/wa".into() }),
            (
                "mongodb",
                AuthStore::Mongodb {
                    url: "mongodb://app:s3cret@127.0.0.1:1/?serverSelectionTimeoutMS=200".into(),
                    database: "wa".into(),
                },
            ),
        ];
        for (want, cfg) in cases {
            let err = match WaRuntime::open_store(&cfg, dir.path(), None).await {
                Ok(_) => panic!("{want}: opened an unreachable store"),
                Err(e) => WaRuntime::open_error(&cfg, &e),
            };
            let crate::ServeError::AuthStoreOpen { backend, .. } = &err else { panic!("{err:?}") };
            assert_eq!(*backend, want);
            let text = err.to_string();
            assert!(!text.contains("s3cret") && !text.contains("127.0.0.1:1/"), "{text}");
        }
    }
}
