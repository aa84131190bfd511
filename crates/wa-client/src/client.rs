//! The [`Client`]: builder, lifecycle (connect, reconnect policy, stop), and the per-connection
//! stanza loop (pairing, login, keepalive, offline sync, dispatch to the messaging handlers).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand_core::CryptoRng;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};
use wa_binary::{Jid, Node};
use wa_crypto::PublicKey;
use wa_noise::ClientProfile;
use wa_proto::device_props::PlatformType;
use wa_store::{
    Clock, CredentialStore, Credentials, DeviceStore, IdentityStore, InboundStore, PreKeyStore,
    ProtocolAddress, SystemClock,
};

use crate::conn::{ConnectParams, Connection, Incoming, NodeDisplay, server_jid};
use crate::creds::{self, CredentialsExt};
use crate::error::{Error, Result};
use crate::event::{Event, EventBus, EventStream};
use crate::pair;
use crate::policy::{Action, Backoff, DisconnectReason, LoopDetector};
use crate::qr::{QrCode, qr_text};
use crate::version::{Net, VersionFetcher};

/// WhatsApp's production WebSocket endpoint.
pub const WHATSAPP_URL: &str = "wss://web.whatsapp.com/ws/chat";

/// Prekeys uploaded when the server has none.
pub const INITIAL_PRE_KEYS: u32 = 812;
/// Prekeys uploaded when the server runs low.
pub const REFILL_PRE_KEYS: u32 = 50;
/// Below this server-side count we refill.
pub const MIN_SERVER_PRE_KEYS: u32 = 5;

/// A random source for the client (keys, ids, padding, jitter).
pub type BoxRng = Box<dyn CryptoRng + Send>;

/// Settings of a [`Client`]; built by [`ClientBuilder`].
pub(crate) struct Config {
    pub url: String,
    pub root_key: PublicKey,
    pub profile: ClientProfile,
    pub device_props: wa_proto::DeviceProps,
    pub qr_platform: char,
    /// The push name the application chose; `None`: the account's own stays.
    pub push_name: Option<String>,
    /// Announce `<presence type="available">` at every login (whatsmeow: only on request).
    pub announce_available: bool,
    /// Fetch the current WhatsApp Web version instead of reporting `profile.app_version`.
    pub version_fetch: Option<VersionFetcher>,
    pub iq_timeout: Duration,
    pub handshake_timeout: Duration,
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    pub auto_reconnect: bool,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub loop_limit: usize,
    pub loop_window: Duration,
    pub first_qr_timeout: Duration,
    pub next_qr_timeout: Duration,
    pub proxy: Option<crate::proxy::Proxy>,
    pub media_timeout: Duration,
    pub media_over_http: bool,
    /// Messages stay pending in the store until the application confirms them.
    pub confirm_handled: bool,
    /// One-time prekeys uploaded when the server holds none.
    pub initial_pre_keys: u32,
    /// Set by `build`.
    pub media_tls: Option<crate::http::TlsConfig>,
}

/// Builds a [`Client`].
pub struct ClientBuilder {
    store: Option<DeviceStore>,
    config: Config,
    rng: Option<BoxRng>,
    clock: Arc<dyn Clock>,
    proxy_url: Option<String>,
    media_roots: Vec<String>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder").field("url", &self.config.url).finish_non_exhaustive()
    }
}

impl ClientBuilder {
    fn new() -> Self {
        Self {
            store: None,
            config: Config {
                url: WHATSAPP_URL.into(),
                root_key: wa_noise::WA_ROOT_KEY,
                profile: ClientProfile::default(),
                device_props: wa_noise::payload::device_props(
                    "Linux",
                    [0, 1, 0],
                    PlatformType::Chrome,
                    false,
                ),
                qr_platform: '1',
                push_name: None,
                announce_available: false,
                version_fetch: None,
                iq_timeout: Duration::from_secs(60),
                handshake_timeout: Duration::from_secs(20),
                keepalive_interval: Duration::from_secs(25),
                keepalive_timeout: Duration::from_secs(10),
                auto_reconnect: true,
                backoff_base: Duration::from_secs(1),
                backoff_max: Duration::from_secs(60),
                loop_limit: 30,
                loop_window: Duration::from_secs(60),
                first_qr_timeout: Duration::from_secs(60),
                next_qr_timeout: Duration::from_secs(20),
                proxy: None,
                media_timeout: Duration::from_secs(300),
                media_over_http: false,
                confirm_handled: false,
                initial_pre_keys: INITIAL_PRE_KEYS,
                media_tls: None,
            },
            proxy_url: None,
            media_roots: Vec::new(),
            rng: None,
            clock: Arc::new(SystemClock),
        }
    }

    /// The account's store (any wa-store backend). Required.
    pub fn store(mut self, store: DeviceStore) -> Self {
        self.store = Some(store);
        self
    }

    /// The WebSocket URL (default: WhatsApp's).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.config.url = url.into();
        self
    }

    /// The root key the server's certificate chain must lead to (default: WhatsApp's).
    pub fn root_key(mut self, key: PublicKey) -> Self {
        self.config.root_key = key;
        self
    }

    /// What the phone shows for this device: OS name (e.g. "Mac OS") and browser.
    pub fn device_name(mut self, os: &str, platform: PlatformType) -> Self {
        self.config.device_props = wa_noise::payload::device_props(os, [0, 1, 0], platform, false);
        self.config.qr_platform = match platform {
            PlatformType::Chrome => '1',
            PlatformType::Edge => '2',
            PlatformType::Firefox => '3',
            PlatformType::Ie => '4',
            PlatformType::Opera => '5',
            PlatformType::Safari => '6',
            PlatformType::Desktop => '7',
            _ => '9',
        };
        self
    }

    /// Full control over the `DeviceProps` sent at registration.
    pub fn device_props(mut self, props: wa_proto::DeviceProps) -> Self {
        self.config.device_props = props;
        self
    }

    /// The user agent and version reported to the server.
    pub fn profile(mut self, profile: ClientProfile) -> Self {
        self.config.profile = profile;
        self
    }

    /// The WhatsApp Web version to report (`userAgent.appVersion`; `buildHash` at registration
    /// follows it). Default: [`wa_noise::payload::DEFAULT_APP_VERSION`]. WhatsApp refuses
    /// versions a few weeks to ~2.5 months old with 405 ([`DisconnectReason::ClientOutdated`]);
    /// with [`ClientBuilder::fetch_version`] this is only the fallback when the fetch fails.
    pub fn version(mut self, version: [u32; 3]) -> Self {
        self.config.profile.app_version = version;
        self
    }

    /// Report the current WhatsApp Web version, fetched from `sw.js` by `fetcher` (cached 24 h
    /// in memory and in this device's store), instead of the built-in one; on a 405 fetch again
    /// and reconnect once. Share one fetcher (clones) between the clients of one process so
    /// they fetch once. Default: off (the version of [`ClientBuilder::version`] only).
    pub fn fetch_version(mut self, fetcher: VersionFetcher) -> Self {
        self.config.version_fetch = Some(fetcher);
        self
    }

    /// A push name for this account, chosen by the application: sent in the login payload and,
    /// at every login, with a `<presence type="unavailable" name=…>` (Baileys' default
    /// `markOnlineOnConnect: false`) so that WhatsApp shows it to others; `type="available"`
    /// with [`ClientBuilder::announce_available`]. It renames the account for everyone, so
    /// leave it unset to keep the name the owner chose on the phone (whatsmeow's default: no
    /// presence at all unless the application asks).
    pub fn push_name(mut self, name: impl Into<String>) -> Self {
        self.config.push_name = Some(name.into());
        self
    }

    /// Announce this device as online (`<presence type="available" name=…>`) at every login.
    /// Default `false`, as whatsmeow: an always-online companion stops the owner's phone
    /// from showing notifications, and delivery receipts say `inactive` until the application
    /// calls [`Client::set_available`]. Needs a push name.
    pub fn announce_available(mut self, announce: bool) -> Self {
        self.config.announce_available = announce;
        self
    }

    /// Randomness (tests pass a seeded generator). Default: the OS-seeded `StdRng`.
    pub fn rng(mut self, rng: BoxRng) -> Self {
        self.rng = Some(rng);
        self
    }

    /// Source of unix time (certificate validity, stored timestamps). Default: the system clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Timeout of IQ requests (default 60 s).
    pub fn iq_timeout(mut self, t: Duration) -> Self {
        self.config.iq_timeout = t;
        self
    }

    /// Keepalive ping interval and the deadline for its answer (defaults 25 s, 10 s).
    pub fn keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.config.keepalive_interval = interval;
        self.config.keepalive_timeout = timeout;
        self
    }

    /// Reconnect after transient failures (default true), backing off from `base` to `max`.
    pub fn reconnect(mut self, enabled: bool, base: Duration, max: Duration) -> Self {
        self.config.auto_reconnect = enabled;
        self.config.backoff_base = base;
        self.config.backoff_max = max;
        self
    }

    /// Reconnect-loop detection: stop (with [`DisconnectReason::ReconnectLoop`]) after
    /// `limit` connection attempts within `window` (default 30 per 60 s).
    pub fn reconnect_loop_limit(mut self, limit: usize, window: Duration) -> Self {
        self.config.loop_limit = limit;
        self.config.loop_window = window;
        self
    }

    /// Tunnels the chat connection and media transfers through an HTTP CONNECT proxy,
    /// `http://[user:password@]host:port` (checked by [`ClientBuilder::build`]).
    pub fn proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy_url = Some(url.into());
        self
    }

    /// Also trust this PEM root certificate for `https://` media hosts (besides the webpki
    /// roots), e.g. the emulator's test CA (`EmulatorHandle::media_ca_pem`).
    pub fn media_root_certificate(mut self, pem: impl Into<String>) -> Self {
        self.media_roots.push(pem.into());
        self
    }

    /// Talk plain `http://` to the media hosts named by `media_conn` (only for servers that
    /// serve media without TLS, such as the emulator with `media_tls: false`). Default: https.
    pub fn media_over_http(mut self, plain: bool) -> Self {
        self.config.media_over_http = plain;
        self
    }

    /// At-least-once delivery to the application across crashes. Every received message is
    /// stored before the server gets its receipt; by default it counts as handled as soon as
    /// it is emitted, so a crash before the application has processed the event loses it.
    /// With `true`, a message stays pending until the application calls
    /// [`Client::mark_handled`] (after it durably processed it), and the first login of the
    /// next `Client` on this store emits pending messages again (`info.offline` set); the
    /// application may then see a message twice.
    ///
    /// Receipts likewise: with `true`, an [`Event::Receipt`] is acknowledged to the server only
    /// by [`Client::ack_receipt`] (after the application recorded it); one not acknowledged
    /// before the connection ends is delivered again on the next connection. Retry receipts
    /// are still answered and acknowledged by the client. Default `false`.
    pub fn confirm_handled(mut self, confirm: bool) -> Self {
        self.config.confirm_handled = confirm;
        self
    }

    /// How many one-time prekeys to upload when the server holds none (default 812, as
    /// WhatsApp Web; whatsmeow uploads 50). At least 6, so that the next login (refill below
    /// 5) does not upload again at once.
    pub fn initial_pre_keys(mut self, n: u32) -> Self {
        self.config.initial_pre_keys = n.max(MIN_SERVER_PRE_KEYS + 1);
        self
    }

    /// Deadline of one media upload or download (default 300 s).
    pub fn media_timeout(mut self, t: Duration) -> Self {
        self.config.media_timeout = t;
        self
    }

    /// Builds the client (not connected yet; call [`Client::connect`]).
    pub fn build(mut self) -> Result<Client> {
        if let Some(url) = self.proxy_url.take() {
            self.config.proxy = Some(crate::proxy::Proxy::parse(&url)?);
        }
        self.config.media_tls = Some(crate::http::TlsConfig::new(&self.media_roots)?);
        let store =
            self.store.ok_or_else(|| Error::InvalidInput("ClientBuilder::store is required".into()))?;
        let rng: BoxRng = match self.rng {
            Some(r) => r,
            None => Box::new(rand::make_rng::<rand::rngs::StdRng>()),
        };
        let (stop_tx, _) = watch::channel(false);
        let mut config = self.config;
        config.profile.push_name = config.push_name.clone().or(config.profile.push_name);
        let version = config.profile.app_version;
        Ok(Client {
            shared: Arc::new(Shared {
                store,
                config,
                clock: self.clock,
                events: EventBus::default(),
                rng: Mutex::new(rng),
                conn: Mutex::new(None),
                creds: Mutex::new(None),
                stop: stop_tx,
                runner: Mutex::new(None),
                signal_lock: tokio::sync::Mutex::new(()),
                routing_info: Mutex::new(None),
                pair_code: Mutex::new(None),
                pairing_conn: Mutex::new(None),
                running: std::sync::atomic::AtomicBool::new(false),
                replayed: std::sync::atomic::AtomicBool::new(false),
                state: crate::send::SendState::default(),
                lids: Mutex::default(),
                media_conn: tokio::sync::Mutex::new(None),
                media_uploads: Mutex::new(crate::media::UploadCache::default()),
                version: Mutex::new(version),
                available: std::sync::atomic::AtomicBool::new(false),
                issuing: Default::default(),
                app_state: Default::default(),
            }),
        })
    }
}

/// A WhatsApp Web client for one account. Cheap to clone; all clones share the connection.
#[derive(Clone)]
pub struct Client {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("url", &self.shared.config.url).finish_non_exhaustive()
    }
}

/// A pending phone-number pairing.
pub(crate) struct PairCode {
    pub code: String,
    pub phone: String,
    pub ephemeral: wa_crypto::KeyPair,
    pub reference: Option<Vec<u8>>,
}

pub(crate) struct Shared {
    pub store: DeviceStore,
    pub config: Config,
    pub clock: Arc<dyn Clock>,
    pub events: EventBus,
    pub rng: Mutex<BoxRng>,
    /// The live, logged-in connection.
    pub conn: Mutex<Option<Connection>>,
    /// Cached credentials (the store is the source of truth).
    pub creds: Mutex<Option<Credentials>>,
    pub stop: watch::Sender<bool>,
    pub runner: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Serializes every read-modify-write of Signal state (sessions, sender keys).
    pub signal_lock: tokio::sync::Mutex<()>,
    pub routing_info: Mutex<Option<Vec<u8>>>,
    pub pair_code: Mutex<Option<PairCode>>,
    /// The registration connection while unpaired (pairing by code uses it).
    pub pairing_conn: Mutex<Option<Connection>>,
    /// A lifecycle task is running and will keep (re)connecting.
    pub running: std::sync::atomic::AtomicBool,
    /// Stored but unconfirmed messages were re-emitted (once per `Client`).
    pub replayed: std::sync::atomic::AtomicBool,
    pub state: crate::send::SendState,
    /// The cached `media_conn` (upload auth and hosts) with its expiry.
    pub media_conn: tokio::sync::Mutex<Option<crate::media::MediaConn>>,
    /// Files uploaded recently, for [`Client::upload_reusable`].
    pub media_uploads: Mutex<crate::media::UploadCache>,
    /// Phone number ↔ LID mappings seen recently (the store holds them all).
    pub lids: Mutex<crate::lid::LidCache>,
    /// The WhatsApp Web version reported on the latest connection.
    pub version: Mutex<[u32; 3]>,
    /// We announced `available` on this connection (delivery receipts then omit `inactive`).
    pub available: std::sync::atomic::AtomicBool,
    /// Contacts our privacy token is being issued to.
    pub issuing: crate::privacy_token::Issuing,
    /// App-state sync: one sync or send at a time, and the key-share wake-up.
    pub app_state: crate::appstate::SyncState,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn with_rng<T>(&self, f: impl FnOnce(&mut dyn CryptoRng) -> T) -> T {
        let mut g = lock(&self.rng);
        f(&mut **g)
    }

    pub(crate) fn random_bytes<const N: usize>(&self) -> [u8; N] {
        let mut b = [0u8; N];
        self.with_rng(|r| r.fill_bytes(&mut b));
        b
    }

    pub(crate) fn now(&self) -> i64 {
        self.clock.now()
    }

    pub(crate) fn emit(&self, e: Event) {
        self.events.emit(e);
    }

    pub(crate) fn connection(&self) -> Result<Connection> {
        lock(&self.conn).clone().filter(|c| !c.is_closed()).ok_or(Error::NotConnected)
    }

    pub(crate) fn credentials(&self) -> Result<Credentials> {
        lock(&self.creds).clone().ok_or(Error::NotLoggedIn)
    }

    /// Our own PN JID (with device) and LID, once paired.
    pub(crate) fn own_ids(&self) -> Result<(Jid, Option<Jid>)> {
        let c = self.credentials()?;
        let jid = c.own_jid()?.ok_or(Error::NotLoggedIn)?;
        Ok((jid, c.own_lid()?))
    }

    /// The push name presence carries: the application's, else the account's own if known.
    fn presence_name(&self) -> Option<String> {
        self.config
            .push_name
            .clone()
            .or_else(|| lock(&self.creds).as_ref().and_then(|c| c.push_name.clone()))
            .filter(|n| !n.trim().is_empty())
    }

    /// Sends `<presence type="available|unavailable" name=…>` on `conn` (whatsmeow
    /// `presence.go` `SendPresence`: always with the push name, which the server shows to
    /// others; `ErrNoPushName` without one).
    pub(crate) fn send_presence_on(&self, conn: &Connection, available: bool) -> Result<()> {
        let name = self.presence_name().ok_or(Error::NoPushName)?;
        let kind = if available { "available" } else { "unavailable" };
        conn.send(&Node::new("presence").attr("type", kind).attr("name", name.as_str()))?;
        // whatsmeow receipt.go: delivery receipts are `inactive` unless we announced available.
        self.available.store(available, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// The WhatsApp Web version to report on the next connection: the fetched one when
    /// fetching is on and works, else the configured one.
    async fn current_version(&self) -> [u32; 3] {
        let fallback = self.config.profile.app_version;
        let Some(fetcher) = &self.config.version_fetch else { return fallback };
        match fetcher.resolve(&self.store, self.now(), self.net()).await {
            Ok(v) => v,
            Err(e) => {
                warn!(%e, fallback = %wa_noise::payload::format_app_version(fallback),
                    "cannot fetch the current WhatsApp Web version; reporting the built-in one");
                fallback
            }
        }
    }

    pub(crate) fn net(&self) -> Net<'_> {
        Net { proxy: self.config.proxy.as_ref(), tls: self.config.media_tls.as_ref() }
    }

    pub(crate) async fn iq(&self, node: Node) -> Result<Node> {
        self.connection()?.iq(node, self.config.iq_timeout).await
    }

    async fn load_or_create_credentials(&self) -> Result<Credentials> {
        if let Some(c) = self.store.load_credentials().await? {
            *lock(&self.creds) = Some(c.clone());
            return Ok(c);
        }
        let now = self.now();
        let c = self.with_rng(|r| creds::generate(r, now));
        self.store.save_credentials(&c).await?;
        *lock(&self.creds) = Some(c.clone());
        Ok(c)
    }

    pub(crate) async fn save_credentials(&self, c: Credentials) -> Result<()> {
        self.store.save_credentials(&c).await?;
        *lock(&self.creds) = Some(c);
        Ok(())
    }
}

impl Client {
    /// Starts building a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }

    /// A new stream of every event from now on.
    pub fn events(&self) -> EventStream {
        self.shared.events.subscribe()
    }

    /// Starts the connection lifecycle in the background (pairing if the store holds no
    /// account, login otherwise); progress arrives as events. Idempotent while running.
    pub async fn connect(&self) -> Result<()> {
        let mut runner = lock(&self.shared.runner);
        if self.shared.running.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return Ok(());
        }
        self.shared.stop.send_replace(false);
        let shared = self.shared.clone();
        *runner = Some(tokio::spawn(async move { run(shared).await }));
        Ok(())
    }

    /// Closes the connection and stops reconnecting; waits until the lifecycle has ended.
    pub async fn disconnect(&self) {
        self.shared.stop.send_replace(true);
        let handle = lock(&self.shared.runner).take();
        if let Some(h) = handle {
            let _ = h.await;
        }
    }

    /// Unlinks this device on the server, deletes the local credentials and stops.
    pub async fn logout(&self) -> Result<()> {
        let (jid, _) = self.shared.own_ids()?;
        let iq = Node::new("iq").attr("xmlns", "md").attr("type", "set").attr("to", server_jid()).children([
            Node::new("remove-companion-device").attr("jid", jid).attr("reason", "user_initiated"),
        ]);
        let result = self.shared.iq(iq).await;
        self.disconnect().await;
        purge(&self.shared).await?;
        self.shared.emit(Event::LoggedOut { reason: DisconnectReason::Requested });
        result.map(|_| ())
    }

    /// Confirms that the application has durably handled a received message (only needed
    /// with [`ClientBuilder::confirm_handled`]): it is no longer emitted again after a restart.
    pub async fn mark_handled(&self, info: &crate::MessageInfo) -> Result<()> {
        self.shared
            .store
            .mark_inbound_handled(&info.chat.to_string(), &info.sender.to_string(), &info.id)
            .await?;
        Ok(())
    }

    /// Acknowledges a received receipt to the server once the application has durably
    /// recorded it (only needed with [`ClientBuilder::confirm_handled`]; without it receipts
    /// are acknowledged on arrival and this does nothing). Until then WhatsApp keeps the
    /// receipt and, if the connection ends first, delivers it again on the next one
    /// (`offline` set), so recording a receipt must tolerate a repeat.
    ///
    /// Returns `true` when the acknowledgement went out (or was not owed), `false` when the
    /// connection the receipt came on is gone: nothing is sent on a later connection, which
    /// gets the receipt again and must acknowledge that copy.
    pub fn ack_receipt(&self, receipt: &crate::ReceiptEvent) -> Result<bool> {
        let Some(ack) = &receipt.ack else { return Ok(true) };
        let conn = lock(&self.shared.conn).clone();
        match conn {
            Some(c) if c.number() == ack.connection && !c.is_closed() => match c.send(&ack.node) {
                Ok(()) => Ok(true),
                Err(Error::NotConnected) => Ok(false),
                Err(e) => Err(e),
            },
            _ => Ok(false),
        }
    }

    /// Our own phone-number JID (with device), once paired.
    pub fn jid(&self) -> Option<Jid> {
        self.shared.own_ids().ok().map(|(j, _)| j)
    }

    /// Our own LID, once known.
    pub fn lid(&self) -> Option<Jid> {
        self.shared.own_ids().ok().and_then(|(_, l)| l)
    }

    /// Whether the account's 1:1 chats are LID-addressed, as the phone said at pairing
    /// (`None` before pairing, or for a pairing that did not say). A migrated account's DMs go
    /// to LIDs; others keep phone numbers.
    pub fn lid_migrated(&self) -> Option<bool> {
        self.shared.credentials().ok().and_then(|c| c.lid_migrated)
    }

    /// The LID the store knows for a phone-number JID, or the phone number for a LID (no
    /// device), learned from messages, receipts, notifications, history and lookups.
    pub async fn alternate_jid(&self, jid: &Jid) -> Result<Option<Jid>> {
        crate::lid::alternate(&self.shared, &jid.to_non_ad()).await
    }

    /// The WhatsApp Web version reported on the latest connection (before the first, the
    /// configured one).
    pub fn version(&self) -> [u32; 3] {
        *lock(&self.shared.version)
    }

    /// Whether a logged-in connection is live.
    pub fn is_connected(&self) -> bool {
        self.shared.connection().is_ok()
    }

    /// The process-unique number of the live logged-in connection, if any (a reconnect gets a
    /// new one): tells whether an [`Event::OfflineSyncCompleted`] is about the connection that
    /// is live now.
    pub fn connection_number(&self) -> Option<u64> {
        self.shared.connection().ok().map(|c| c.number())
    }

    /// Starts pairing by phone number instead of QR: returns the 8-character code to type on
    /// the phone (also emitted as [`Event::PairingCode`]). Call after [`Client::connect`],
    /// once the first [`Event::Qr`] arrived (the registration connection is up).
    pub async fn pair_phone(&self, phone: &str) -> Result<String> {
        crate::pair_code::start(&self.shared, phone).await
    }
}

async fn purge(shared: &Shared) -> Result<()> {
    *lock(&shared.creds) = None;
    shared.store.store().delete_device(shared.store.id()).await?;
    Ok(())
}

/// The lifecycle: connect, run, classify the end, and reconnect or stop.
async fn run(shared: Arc<Shared>) {
    let cfg = &shared.config;
    let mut backoff = Backoff::new(cfg.backoff_base, cfg.backoff_max);
    let mut loops = LoopDetector::new(cfg.loop_limit, cfg.loop_window);
    let mut stop = shared.stop.subscribe();
    // A 405 triggers one version refresh per successful login, not a loop of them.
    let mut refreshed_version = false;
    loop {
        if *stop.borrow() {
            shared.running.store(false, std::sync::atomic::Ordering::Release);
            break;
        }
        if loops.record(std::time::Instant::now()) {
            shared.running.store(false, std::sync::atomic::Ordering::Release);
            shared.emit(Event::Disconnected { reason: DisconnectReason::ReconnectLoop, reconnect_in: None });
            break;
        }
        let (reason, logged_in) = connect_once(&shared, &mut stop).await;
        *lock(&shared.conn) = None;
        // Sends waiting for a server ack on the lost connection fail now (the caller may
        // re-send with the same id) instead of at their timeout.
        lock(&shared.state.acks).clear();
        if logged_in {
            backoff.reset();
            refreshed_version = false;
        }
        info!(%reason, "disconnected");
        let mut delay = match reason.action() {
            _ if *stop.borrow() => None,
            Action::ReconnectNow => Some(Duration::ZERO),
            Action::Backoff | Action::LongBackoff if cfg.auto_reconnect => {
                let unit = shared.with_rng(|r| f64::from(r.next_u32()) / f64::from(u32::MAX));
                Some(backoff.next_delay(unit, reason.action() == Action::LongBackoff))
            }
            Action::Purge => {
                if let Err(e) = purge(&shared).await {
                    warn!(%e, "purging credentials failed");
                }
                shared.emit(Event::LoggedOut { reason: reason.clone() });
                None
            }
            _ => None,
        };
        if let DisconnectReason::ClientOutdated { version: Some(refused) } = reason
            && !*stop.borrow()
            && !refreshed_version
            && let Some(fetcher) = &cfg.version_fetch
        {
            refreshed_version = true;
            match fetcher.refresh(&shared.store, shared.now(), shared.net(), refused).await {
                Ok(v) if v > refused => {
                    info!(
                        refused = %wa_noise::payload::format_app_version(refused),
                        current = %wa_noise::payload::format_app_version(v),
                        "WhatsApp Web version refused as outdated; reconnecting with the current one"
                    );
                    delay = Some(Duration::ZERO);
                }
                Ok(v) => warn!(
                    version = %wa_noise::payload::format_app_version(v),
                    "sw.js still names a version WhatsApp refuses; stopping"
                ),
                Err(e) => warn!(%e, "cannot fetch the current WhatsApp Web version after a 405; stopping"),
            }
        }
        if delay.is_none() {
            // Cleared before the final event so a `connect()` reacting to it starts afresh.
            shared.running.store(false, std::sync::atomic::Ordering::Release);
        }
        shared.emit(Event::Disconnected { reason, reconnect_in: delay });
        match delay {
            None => break,
            Some(d) if d.is_zero() => {}
            Some(d) => {
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = stop.changed() => {
                        shared.running.store(false, std::sync::atomic::Ordering::Release);
                        break;
                    }
                }
            }
        }
    }
}

/// One connection from open to close; returns why it ended and whether it logged in.
async fn connect_once(shared: &Arc<Shared>, stop: &mut watch::Receiver<bool>) -> (DisconnectReason, bool) {
    let creds = match shared.load_or_create_credentials().await {
        Ok(c) => c,
        Err(e) => return (DisconnectReason::ConnectionLost { detail: format!("store: {e}") }, false),
    };
    let version = shared.current_version().await;
    *lock(&shared.version) = version;
    shared.available.store(false, std::sync::atomic::Ordering::Release);
    let payload = match login_payload(shared, &creds, version) {
        Ok(p) => p,
        Err(e) => return (DisconnectReason::Refused { code: 0 }, log_err(e)),
    };
    let ephemeral = shared.with_rng(|r| wa_crypto::KeyPair::generate(r));
    let [a, b]: [u8; 2] = shared.random_bytes();
    let params = ConnectParams {
        url: &shared.config.url,
        root_key: shared.config.root_key,
        noise_key: creds.noise(),
        ephemeral,
        client_payload: prost::Message::encode_to_vec(&payload),
        now_unix: u64::try_from(shared.now()).unwrap_or(0),
        routing_info: lock(&shared.routing_info).clone(),
        handshake_timeout: shared.config.handshake_timeout,
        proxy: shared.config.proxy.as_ref(),
    };
    // Boxed: the WebSocket, TLS and Noise handshake state only lives while connecting.
    let (conn, rx) = match Box::pin(Connection::open(params, format!("{a}.{b}"))).await {
        Ok(x) => x,
        Err(e) => return (DisconnectReason::ConnectionLost { detail: e.to_string() }, false),
    };
    let mut session = Session::new(shared.clone(), conn.clone(), creds);
    let mut reason = session.run(rx, stop).await;
    conn.close();
    if let DisconnectReason::ClientOutdated { version: refused } = &mut reason {
        *refused = Some(version);
    }
    (reason, session.logged_in)
}

fn log_err(e: Error) -> bool {
    warn!(%e, "cannot build the login payload");
    false
}

fn login_payload(shared: &Shared, creds: &Credentials, version: [u32; 3]) -> Result<wa_proto::ClientPayload> {
    let profile = &ClientProfile { app_version: version, ..shared.config.profile.clone() };
    match creds.own_jid()? {
        Some(jid) => {
            let user: u64 = jid
                .user()
                .parse()
                .map_err(|_| Error::CorruptStore(format!("own jid user {:?}", jid.user())))?;
            Ok(profile.login(user, u32::from(jid.device())))
        }
        None => Ok(profile.registration(&creds.registration_keys(), &shared.config.device_props)),
    }
}

/// State of one connection.
pub(crate) struct Session {
    pub shared: Arc<Shared>,
    pub conn: Connection,
    creds: Credentials,
    qr_refs: VecDeque<String>,
    qr_deadline: Option<Instant>,
    pub logged_in: bool,
    ping_failures: u32,
}

enum Flow {
    Continue,
    End(DisconnectReason),
}

impl Session {
    fn new(shared: Arc<Shared>, conn: Connection, creds: Credentials) -> Self {
        Self {
            shared,
            conn,
            creds,
            qr_refs: VecDeque::new(),
            qr_deadline: None,
            logged_in: false,
            ping_failures: 0,
        }
    }

    async fn run(
        &mut self,
        mut rx: mpsc::UnboundedReceiver<Incoming>,
        stop: &mut watch::Receiver<bool>,
    ) -> DisconnectReason {
        let (ping_tx, mut ping_rx) = mpsc::unbounded_channel::<bool>();
        let interval = self.shared.config.keepalive_interval;
        let mut next_ping = Instant::now() + interval;
        loop {
            let qr_deadline = self.qr_deadline;
            let flow = tokio::select! {
                biased;
                _ = stop.changed() => Flow::End(DisconnectReason::Requested),
                incoming = rx.recv() => match incoming {
                    // Boxed: the handlers' state (decrypting, storing, answering) is
                    // several KiB, which this loop would otherwise hold for the whole
                    // life of every idle connection.
                    Some(Incoming::Node(node)) => match Box::pin(self.handle(*node)).await {
                        Ok(flow) => flow,
                        Err(e) => {
                            warn!(%e, "stanza handling failed");
                            Flow::Continue
                        }
                    },
                    Some(Incoming::Closed(detail)) => Flow::End(DisconnectReason::ConnectionLost { detail }),
                    None => Flow::End(DisconnectReason::ConnectionLost { detail: "reader ended".into() }),
                },
                _ = sleep_until_opt(qr_deadline) => self.next_qr(),
                _ = tokio::time::sleep_until(next_ping) => {
                    next_ping = Instant::now() + interval;
                    self.spawn_ping(ping_tx.clone());
                    Flow::Continue
                }
                Some(ok) = ping_rx.recv() => {
                    if ok { self.ping_failures = 0; Flow::Continue } else {
                        self.ping_failures += 1;
                        if self.ping_failures >= 2 {
                            Flow::End(DisconnectReason::ConnectionLost { detail: "keepalive timed out".into() })
                        } else { Flow::Continue }
                    }
                }
            };
            if let Flow::End(reason) = flow {
                return reason;
            }
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The Signal address of a device: `user` for phone numbers, `user_<domain>` for LID and
/// hosted servers (as libsignal-node names them), device number as is.
pub(crate) fn signal_address(jid: &Jid) -> ProtocolAddress {
    let name = match jid.server().domain_type() {
        Some(0) | None => jid.user().to_owned(),
        Some(d) => format!("{}_{d}", jid.user()),
    };
    ProtocolAddress::new(name, u32::from(jid.device()))
}

/// `<iq to=s.whatsapp.net type=result id=…/>` answering a server request.
pub(crate) fn iq_result(id: &str) -> Node {
    Node::new("iq").attr("to", server_jid()).attr("type", "result").attr("id", id)
}

impl Session {
    fn id_of(node: &Node) -> String {
        node.opt_attr_str("id").map(|s| s.into_owned()).unwrap_or_default()
    }

    async fn handle(&mut self, node: Node) -> Result<Flow> {
        match node.tag.as_str() {
            "iq" => self.handle_iq(node).await,
            "success" => {
                self.on_success(&node).await?;
                Ok(Flow::Continue)
            }
            "failure" => Ok(Flow::End(DisconnectReason::from_failure(&node))),
            "stream:error" => Ok(Flow::End(DisconnectReason::from_stream_error(&node))),
            "xmlstreamend" => {
                Ok(Flow::End(DisconnectReason::ConnectionLost { detail: "server ended the stream".into() }))
            }
            "ib" => {
                self.handle_ib(&node).await?;
                Ok(Flow::Continue)
            }
            // `appdata` is decrypted and confirmed like a message (whatsmeow `client.go`).
            "message" | "appdata" => {
                crate::recv::handle_message(&self.shared, &self.conn, node).await?;
                Ok(Flow::Continue)
            }
            "receipt" => {
                crate::recv::handle_receipt(&self.shared, &self.conn, node).await?;
                Ok(Flow::Continue)
            }
            "notification" => {
                crate::notification::handle_notification(&self.shared, &self.conn, node).await?;
                Ok(Flow::Continue)
            }
            "ack" => {
                crate::send::handle_server_ack(&self.shared, &node);
                Ok(Flow::Continue)
            }
            "presence" | "chatstate" => {
                crate::recv::handle_presence(&self.shared, &node);
                Ok(Flow::Continue)
            }
            "call" => {
                crate::call::handle_call(&self.shared, &self.conn, &node)?;
                Ok(Flow::Continue)
            }
            other => {
                debug!(tag = other, "unhandled stanza");
                Ok(Flow::Continue)
            }
        }
    }

    async fn handle_iq(&mut self, node: Node) -> Result<Flow> {
        let id = Self::id_of(&node);
        if let Some(pd) = node.child("pair-device") {
            self.conn.send(&iq_result(&id))?;
            *lock(&self.shared.pairing_conn) = Some(self.conn.clone());
            self.qr_refs = pd
                .children_by_tag("ref")
                .filter_map(|r| {
                    r.content_bytes()
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .or_else(|| r.content_str().map(str::to_owned))
                })
                .collect();
            return Ok(self.emit_qr(self.shared.config.first_qr_timeout));
        }
        if node.child("pair-success").is_some() {
            return self.on_pair_success(&node).await;
        }
        if node.opt_attr_str("xmlns").as_deref() == Some("urn:xmpp:ping") || node.child("ping").is_some() {
            self.conn.send(&iq_result(&id))?;
            return Ok(Flow::Continue);
        }
        debug!(node = %NodeDisplay(&node), "unhandled iq");
        Ok(Flow::Continue)
    }

    fn emit_qr(&mut self, valid_for: Duration) -> Flow {
        let Some(reference) = self.qr_refs.pop_front() else {
            self.qr_deadline = None;
            return Flow::End(DisconnectReason::QrTimeout);
        };
        if lock(&self.shared.pair_code).is_some() {
            // Pairing by code: keep the connection alive without showing QR codes.
            self.qr_deadline = Some(Instant::now() + valid_for);
            return Flow::Continue;
        }
        let c = &self.creds;
        let text = qr_text(
            &reference,
            &c.noise_key.public,
            &c.identity_key.public,
            &c.adv_secret_key,
            self.shared.config.qr_platform,
        );
        let expires_at = Instant::now() + valid_for;
        self.qr_deadline = Some(expires_at);
        self.shared.emit(Event::Qr(QrCode { text, valid_for, expires_at: expires_at.into_std() }));
        Flow::Continue
    }

    fn next_qr(&mut self) -> Flow {
        self.emit_qr(self.shared.config.next_qr_timeout)
    }

    async fn on_pair_success(&mut self, node: &Node) -> Result<Flow> {
        self.qr_deadline = None;
        // Code pairing replaces the ADV secret; reload what the store holds now.
        if let Some(c) = self.shared.store.load_credentials().await? {
            self.creds = c;
        }
        let identity = self.creds.identity();
        match pair::handle_pair_success(node, &identity, &self.creds.adv_secret_key) {
            Ok(p) => {
                let mut c = self.creds.clone();
                c.jid = Some(p.jid.to_string());
                c.lid = p.lid.as_ref().map(ToString::to_string);
                c.platform = Some(p.platform.clone());
                c.signed_device_identity = Some(p.signed_identity.clone());
                c.lid_migrated = p.lid_migrated;
                self.shared.save_credentials(c.clone()).await?;
                // Our own number beside our LID (whatsmeow pair.go `handlePair`).
                if let Some(lid) = &p.lid {
                    crate::lid::learn_jids(&self.shared, &[(lid, &p.jid)]).await?;
                }
                // The primary phone's identity is the account key (device 0 of our own user).
                let primary = p.lid.clone().unwrap_or_else(|| p.jid.clone()).to_non_ad();
                self.shared.store.save_identity(&signal_address(&primary), *p.account_key.as_bytes()).await?;
                self.creds = c;
                *lock(&self.shared.pair_code) = None;
                self.conn.send(&p.reply)?;
                info!(jid = %p.jid, "paired");
                self.shared.emit(Event::PairSuccess {
                    jid: p.jid,
                    lid: p.lid,
                    platform: p.platform,
                    business_name: p.business_name,
                });
                Ok(Flow::Continue)
            }
            Err(refusal) => {
                self.conn.send(&refusal.reply)?;
                self.shared.emit(Event::PairError { error: refusal.reason.clone() });
                Ok(Flow::End(DisconnectReason::Refused { code: 401 }))
            }
        }
    }

    async fn on_success(&mut self, node: &Node) -> Result<()> {
        let mut c = self.creds.clone();
        if let Some(lid) = node.opt_attr_str("lid") {
            let lid: Jid = lid.parse()?;
            let own_device = c.own_jid()?.map(|j| j.device()).unwrap_or(0);
            let lid = if lid.device() == 0 { lid.with_device(own_device)? } else { lid };
            if c.lid.as_deref() != Some(lid.to_string().as_str()) {
                c.lid = Some(lid.to_string());
                self.shared.save_credentials(c.clone()).await?;
            }
            if let Some(own) = c.own_jid()? {
                crate::lid::learn_jids(&self.shared, &[(&lid, &own)]).await?;
            }
        }
        self.creds = c;
        self.logged_in = true;
        *lock(&self.shared.conn) = Some(self.conn.clone());
        *lock(&self.shared.pairing_conn) = None;
        let shared = &self.shared;
        if let Err(e) = crate::recv::replay_pending(shared).await {
            warn!(%e, "replaying stored messages failed");
        }
        if let Err(e) = ensure_pre_keys(shared).await {
            warn!(%e, "prekey check failed");
        }
        let active = Node::new("iq")
            .attr("xmlns", "passive")
            .attr("type", "set")
            .attr("to", server_jid())
            .children([Node::new("active")]);
        if let Err(e) = shared.iq(active).await {
            warn!(%e, "setting active failed");
        }
        // whatsmeow sends no presence unless asked; Baileys (markOnlineOnConnect false) sends
        // `unavailable` with the name, which tells the server the name without going online.
        if shared.config.announce_available {
            if let Err(e) = shared.send_presence_on(&self.conn, true) {
                warn!(%e, "not announcing availability");
            }
        } else if shared.config.push_name.is_some() {
            shared.send_presence_on(&self.conn, false)?;
        }
        let (jid, lid) = shared.own_ids()?;
        info!(%jid, "logged in");
        shared.emit(Event::Connected { jid, lid });
        // Catch up with changes made while we were away (whatsmeow fetches app state on
        // connect; without the phone's keys this waits for its key share).
        crate::appstate::spawn_sync(shared.clone(), wa_appstate::Collection::ALL.to_vec(), false);
        Ok(())
    }

    async fn handle_ib(&mut self, node: &Node) -> Result<()> {
        for child in node.child_nodes() {
            match child.tag.as_str() {
                "offline" => {
                    let count = child.opt_attr_str("count").and_then(|c| c.parse().ok()).unwrap_or(0);
                    self.shared.emit(Event::OfflineSyncCompleted { count, connection: self.conn.number() });
                }
                "offline_preview" => {
                    let n = |k: &str| child.opt_attr_str(k).and_then(|v| v.parse().ok()).unwrap_or(0);
                    self.shared.emit(Event::OfflineSyncPreview(crate::event::OfflinePreview {
                        total: n("count"),
                        messages: n("message"),
                        notifications: n("notification"),
                        receipts: n("receipt"),
                        calls: n("call"),
                        appdata: n("appdata"),
                    }));
                    self.conn
                        .send(&Node::new("ib").children([Node::new("offline_batch").attr("count", "100")]))?;
                }
                "edge_routing" => {
                    if let Some(ri) = child.child("routing_info").and_then(|r| r.content_bytes()) {
                        *lock(&self.shared.routing_info) = Some(ri.to_vec());
                    }
                }
                "dirty" => {
                    // App state changed while we were away (Baileys `messages-recv.ts`
                    // `handleDirty`... and whatsmeow `handleIB` fetch it on this bit).
                    if child.opt_attr_str("type").as_deref() == Some("syncd_app_state") {
                        crate::appstate::spawn_sync(
                            self.shared.clone(),
                            wa_appstate::Collection::ALL.to_vec(),
                            false,
                        );
                    }
                    let clean = Node::new("iq")
                        .attr("xmlns", "urn:xmpp:whatsapp:dirty")
                        .attr("type", "set")
                        .attr("to", server_jid())
                        .children([Node::new("clean")
                            .attr("type", child.opt_attr_str("type").unwrap_or_default().as_ref())
                            .attr(
                                "timestamp",
                                child.opt_attr_str("timestamp").unwrap_or_default().as_ref(),
                            )]);
                    let conn = self.conn.clone();
                    let t = self.shared.config.iq_timeout;
                    tokio::spawn(async move {
                        let _ = conn.iq(clean, t).await;
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn spawn_ping(&self, report: mpsc::UnboundedSender<bool>) {
        let conn = self.conn.clone();
        let timeout = self.shared.config.keepalive_timeout;
        tokio::spawn(async move {
            let ping = Node::new("iq").attr("xmlns", "w:p").attr("type", "get").attr("to", server_jid());
            let ok = conn.iq(ping, timeout).await.is_ok();
            let _ = report.send(ok);
        });
    }
}

/// Checks the server's prekey count and uploads more when it is low.
pub(crate) async fn ensure_pre_keys(shared: &Shared) -> Result<()> {
    let q = Node::new("iq")
        .attr("xmlns", "encrypt")
        .attr("type", "get")
        .attr("to", server_jid())
        .children([Node::new("count")]);
    let reply = shared.iq(q).await?;
    let count = reply.child("count").map(|c| c.attr_u64("value")).transpose()?.unwrap_or(0);
    if count < u64::from(MIN_SERVER_PRE_KEYS) {
        let n = if count == 0 { shared.config.initial_pre_keys } else { REFILL_PRE_KEYS };
        upload_pre_keys(shared, n).await?;
    }
    Ok(())
}

fn key_id_bytes(id: u32) -> Vec<u8> {
    id.to_be_bytes()[1..].to_vec()
}

/// Uploads `n` one-time prekeys (reusing generated but not yet uploaded ones).
pub(crate) async fn upload_pre_keys(shared: &Shared, n: u32) -> Result<()> {
    let store = &shared.store;
    let mut keys = store.unuploaded_pre_keys(n).await?;
    let missing = n.saturating_sub(u32::try_from(keys.len()).unwrap_or(u32::MAX));
    if missing > 0 {
        let mut keygen = || shared.with_rng(|r| creds::to_store_pair(&wa_crypto::KeyPair::generate(r)));
        keys.extend(store.generate_pre_keys(missing, &mut keygen).await?);
    }
    let c = shared.credentials()?;
    let list = keys.iter().map(|k| {
        Node::new("key").children([
            Node::new("id").bytes(key_id_bytes(k.id)),
            Node::new("value").bytes(k.key_pair.public.to_vec()),
        ])
    });
    let spk = &c.signed_pre_key;
    let iq =
        Node::new("iq").attr("xmlns", "encrypt").attr("type", "set").attr("to", server_jid()).children([
            Node::new("registration").bytes(c.registration_id.to_be_bytes().to_vec()),
            Node::new("type").bytes(vec![5u8]),
            Node::new("identity").bytes(c.identity_key.public.to_vec()),
            Node::new("list").children(list),
            Node::new("skey").children([
                Node::new("id").bytes(key_id_bytes(spk.id)),
                Node::new("value").bytes(spk.key_pair.public.to_vec()),
                Node::new("signature").bytes(spk.signature.to_vec()),
            ]),
        ]);
    shared.iq(iq).await?;
    let ids: Vec<u32> = keys.iter().map(|k| k.id).collect();
    store.mark_pre_keys_uploaded(&ids).await?;
    info!(count = ids.len(), "uploaded prekeys");
    Ok(())
}
