//! A faithful emulator of WhatsApp's servers with simulated phones, for tests and offline use.
//!
//! [`Emulator::start`] serves, on one loopback port:
//! * `/ws/chat`: the chat WebSocket (connection intro, Noise XX responder with the
//!   emulator's own certificate chain, binary nodes), enough of the service for unmodified
//!   clients (Baileys, our `wa-client`) to pair, log in and chat;
//! * `/mms/...`, `/m/...`: media upload (auth token from `media_conn`) and download;
//! * `/control/...`: a JSON API to create accounts, drive phones and inject faults.
//!
//! and, on a second port, the same media endpoints over HTTPS (what `media_conn` and media
//! URLs point at, since clients only fetch media over `https://`), with a certificate signed
//! by a test CA made at start-up ([`EmulatorHandle::media_ca_pem`]).
//!
//! Every account has a simulated primary phone that is a real Signal participant. Clients
//! are configured with [`EmulatorHandle::ws_url`] and [`EmulatorHandle::root_public_key`]
//! (and trust [`EmulatorHandle::media_ca_pem`] for media); nothing else differs from the
//! real service.
//!
//! The protocol state is sans-I/O: [`session::ServerSession`] (bytes in, events out) and
//! [`World`] (nodes in, nodes to mailboxes out); [`server`] is the tokio shell.

mod addressing;
mod appdata;
mod appstate;
mod calls;
mod clock;
mod control;
mod device_list;
mod fanout;
mod group_receipts;
mod groups;
mod history;
mod hosted;
mod ib;
mod iq;
mod keyindex;
mod keys;
mod linkcode;
mod login;
mod media;
mod mediaretry;
mod notifications;
mod pairing;
mod persist;
mod phone;
mod phone_identity;
mod polls;
mod prekey_upload;
pub mod reachout;
mod resend;
mod routing;
mod server;
pub mod session;
#[cfg(test)]
mod testutil;
mod tls;
mod traffic;
mod usync;
mod world;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use wa_binary::{Jid, Node};
use wa_crypto::PublicKey;

pub use clock::{Clock, ManualClock, SystemClock};
pub use hosted::HOSTED_DEVICE_ID;
pub use keyindex::{KEY_INDEX_LIST_SIGNATURE_PREFIX, KeyIndexList};
pub use keys::ServerKeys;
pub use login::{
    FAILURE_BAD_USER_AGENT, FAILURE_CLIENT_OUTDATED, FAILURE_GENERIC, PayloadRefusal, check_payload,
};
pub use media::{IMAGE_KEYS_INFO, decrypt_media, encrypt_media};
pub use mediaretry::{MEDIA_TTL_SECS, media_retry_key};
pub use notifications::{APP_STATE_COLLECTIONS, TC_TOKEN_BUCKET_SECS};
pub use persist::{STATE_FORMAT, StateError, WorldState};
pub use phone::{InboxMessage, PhoneReceipt};
pub use phone_identity::AdvRefusal;
pub use prekey_upload::UploadRefusal;
pub use tls::TlsSetupError;
pub use world::{
    AccountId, AccountOptions, ConnCommand, ConnId, ControlError, DeviceAddr, Fault, MAX_ACKED_IDS,
    MAX_EVENT_LOG, MAX_PRESENCE_LOG, Mailbox, PresenceRecord, World, WorldEvent,
};

use server::Shared;

/// How to run an emulator.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Where to listen (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Seed for every random choice of the server and its phones (`None`: from the OS).
    pub seed: Option<u64>,
    /// The clock (`SystemClock` unless tests inject a [`ManualClock`]).
    pub clock: Arc<dyn Clock>,
    /// How many refs a registering companion gets in `pair-device`.
    pub refs_per_pairing: usize,
    /// One-time prekeys each simulated phone generates (and publishes) when its account is
    /// created. Tests with thousands of phones that each receive a message or two lower it.
    pub phone_pre_keys: u32,
    /// Refuse WebSocket upgrades without an `Origin` header, as WhatsApp does.
    pub require_origin: bool,
    /// Answer usync `<lid/>` queries with the user's LID (as WhatsApp does; Baileys 7 only
    /// fetches prekey bundles for users whose LID it knows).
    pub lid_in_usync: bool,
    /// Serve media over HTTPS on a second port (certificate from an in-process test CA) and
    /// point `media_conn` and media URLs there. `false`: plain HTTP on the main port, for
    /// clients that cannot be given a CA.
    pub media_tls: bool,
    /// Where the HTTPS media endpoint listens (`None`: the main address's IP, any port).
    pub media_listen: Option<SocketAddr>,
    /// The oldest WhatsApp Web version (`userAgent.appVersion`, compared as a triple) the
    /// service still takes; registration and login payloads below it get
    /// `<failure reason="405">`, as WhatsApp refuses versions a few weeks to ~2.5 months old.
    /// Default: the version `wa-noise` ships ([`wa_noise::payload::DEFAULT_APP_VERSION`]).
    pub min_client_version: [u32; 3],
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            seed: None,
            clock: Arc::new(SystemClock),
            refs_per_pairing: 6,
            phone_pre_keys: 200,
            require_origin: true,
            lid_in_usync: true,
            media_tls: true,
            media_listen: None,
            min_client_version: wa_noise::payload::DEFAULT_APP_VERSION,
        }
    }
}

/// Starts emulators.
#[derive(Debug)]
pub struct Emulator;

/// Why [`Emulator::restore`] did not start.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The saved state cannot be restored.
    #[error(transparent)]
    State(#[from] StateError),
    /// The listeners could not be set up.
    #[error("emulator cannot start: {0}")]
    Start(#[from] std::io::Error),
}

impl Emulator {
    /// Binds the listener and serves in a background task of the current tokio runtime.
    pub async fn start(config: EmulatorConfig) -> std::io::Result<EmulatorHandle> {
        match Self::start_with(config, None).await {
            Ok(h) => Ok(h),
            Err(RestoreError::Start(e)) => Err(e),
            // Nothing to restore, so nothing to refuse.
            Err(RestoreError::State(e)) => Err(std::io::Error::other(e)),
        }
    }

    /// [`Emulator::start`] resuming a state an earlier emulator saved
    /// ([`EmulatorHandle::state`]): its keys, accounts, devices, queued stanzas and the rest
    /// (see [`WorldState`]). A state that does not hold together is refused.
    pub async fn restore(config: EmulatorConfig, state: WorldState) -> Result<EmulatorHandle, RestoreError> {
        Self::start_with(config, Some(state)).await
    }

    async fn start_with(
        config: EmulatorConfig,
        saved: Option<WorldState>,
    ) -> Result<EmulatorHandle, RestoreError> {
        let mut rng = match config.seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => rand::make_rng(),
        };
        let keys = match &saved {
            Some(s) => s.server_keys(config.clock.now_unix())?,
            None => ServerKeys::generate(&mut rng, config.clock.now_unix()),
        };
        let responder = keys.responder();
        let root = keys.root_public_key();
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let media = if config.media_tls {
            let tls = tls::MediaTls::generate().map_err(std::io::Error::other)?;
            let bind = config.media_listen.unwrap_or(SocketAddr::new(addr.ip(), 0));
            let tcp = tokio::net::TcpListener::bind(bind).await?;
            Some((tls::TlsListener::new(tcp, &tls)?, tls.ca_pem))
        } else {
            None
        };
        let mut world = World::new(rng, config.clock.clone(), keys, config.refs_per_pairing);
        if let Some(saved) = saved {
            saved.restore_into(&mut world)?;
        }
        world.media_base = match &media {
            Some((l, _)) => format!("https://{}", axum::serve::Listener::local_addr(l)?),
            None => format!("http://{addr}"),
        };
        world.media_auth = world.random_hex(16);
        world.lid_in_usync = config.lid_in_usync;
        world.phone_pre_keys = config.phone_pre_keys;
        world.min_client_version = config.min_client_version;
        let (event_tx, _) = tokio::sync::broadcast::channel(4096);
        world.event_tx = Some(event_tx.clone());
        let shared = Arc::new(Shared {
            world: std::sync::Mutex::new(world),
            responder,
            require_origin: config.require_origin,
            changes: std::sync::atomic::AtomicU64::new(0),
        });
        let app = server::router(shared.clone());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut media_ca_pem = None;
        let mut media_url = None;
        let media_task = media.map(|(tls_listener, ca_pem)| {
            media_ca_pem = Some(ca_pem);
            media_url = axum::serve::Listener::local_addr(&tls_listener).ok().map(|a| format!("https://{a}"));
            let app = server::media_router(shared.clone());
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                let _ = axum::serve(tls_listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await;
            })
        });
        let mut stop = stop_rx;
        let main_task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
        });
        let task = tokio::spawn(async move {
            let _ = main_task.await;
            if let Some(t) = media_task {
                let _ = t.await;
            }
        });
        Ok(EmulatorHandle {
            addr,
            root,
            shared,
            events: event_tx,
            media_ca_pem,
            media_url,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }
}

/// A running emulator.
#[derive(Debug)]
pub struct EmulatorHandle {
    addr: SocketAddr,
    root: PublicKey,
    shared: Arc<Shared>,
    events: tokio::sync::broadcast::Sender<WorldEvent>,
    media_ca_pem: Option<String>,
    media_url: Option<String>,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl EmulatorHandle {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://ADDR/ws/chat`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws/chat", self.addr)
    }

    /// The root key clients must trust instead of WhatsApp's.
    pub fn root_public_key(&self) -> PublicKey {
        self.root
    }

    /// [`Self::root_public_key`] as 64 hex digits.
    pub fn root_public_key_hex(&self) -> String {
        hex::encode(self.root.as_bytes())
    }

    /// The PEM certificate of the test CA that signed the HTTPS media endpoint's
    /// certificate (`None` with `media_tls: false`). Node clients: write it to a file and
    /// set `NODE_EXTRA_CA_CERTS` to that file.
    pub fn media_ca_pem(&self) -> Option<&str> {
        self.media_ca_pem.as_deref()
    }

    /// `https://ADDR` of the media endpoint (`None` with `media_tls: false`).
    pub fn media_url(&self) -> Option<&str> {
        self.media_url.as_deref()
    }

    /// The oldest WhatsApp Web version registrations and logins may report (see
    /// [`EmulatorConfig::min_client_version`]); clients under test must send at least this.
    pub fn min_client_version(&self) -> [u32; 3] {
        self.with_world(|w| w.min_client_version)
    }

    /// Raises (or sets) the version floor from now on, as WhatsApp does when it retires a
    /// version: connections already logged in stay, the next registration or login below it
    /// gets 405.
    pub fn set_min_client_version(&self, version: [u32; 3]) {
        self.with_world(|w| w.min_client_version = version);
    }

    /// `http://ADDR/sw.js`: the emulator's WhatsApp Web service worker, naming the floor's
    /// version as `client_revision`. Point a client's version fetch here (the way it would
    /// fetch `https://web.whatsapp.com/sw.js`) to get the version the emulator accepts.
    pub fn sw_js_url(&self) -> String {
        format!("http://{}/sw.js", self.addr)
    }

    /// Base URL of the JSON control API.
    pub fn control_url(&self) -> String {
        format!("http://{}/control", self.addr)
    }

    /// Subscribes to what happens from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<WorldEvent> {
        self.events.subscribe()
    }

    /// The events so far, oldest first (the most recent [`world::MAX_EVENT_LOG`]).
    pub fn events(&self) -> Vec<WorldEvent> {
        self.with_world(|w| w.events.iter().cloned().collect())
    }

    /// The durable state now (see [`WorldState`]), for [`Emulator::restore`] after a restart.
    /// Stanzas in flight count as undelivered: a restart ends their connections.
    pub fn state(&self) -> Result<WorldState, StateError> {
        let w = self.shared.world_unchanged();
        WorldState::capture(&w)
    }

    /// A counter that moves whenever the world may have changed: a saver compares it with the
    /// value it last saved at to skip saving an unchanged world.
    pub fn changes(&self) -> u64 {
        self.shared.changes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs `f` with the world locked (do not block inside).
    pub fn with_world<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        f(&mut self.shared.world())
    }

    /// Waits until an event matching `pred` happens (including ones already recorded).
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&WorldEvent) -> bool,
    ) -> Option<WorldEvent> {
        let mut rx = self.subscribe();
        if let Some(e) = self.with_world(|w| w.events.iter().find(|e| pred(e)).cloned()) {
            return Some(e);
        }
        tokio::time::timeout(timeout, async {
            loop {
                match rx.recv().await {
                    Ok(e) if pred(&e) => return Some(e),
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .await
        .ok()
        .flatten()
    }

    /// Creates a LID-migrated account with a simulated phone.
    pub fn create_account(&self, pn: &str, push_name: &str) -> Result<PhoneHandle<'_>, ControlError> {
        self.create_account_with(pn, push_name, AccountOptions::default())
    }

    /// Creates an account with a simulated phone (`AccountOptions { lid_migrated: false }`: a
    /// legacy account whose 1:1 chats stay on phone numbers).
    pub fn create_account_with(
        &self,
        pn: &str,
        push_name: &str,
        options: AccountOptions,
    ) -> Result<PhoneHandle<'_>, ControlError> {
        self.with_world(|w| w.create_account_with(pn, push_name, options))?;
        Ok(PhoneHandle { emu: self, pn: pn.to_owned() })
    }

    /// The phone of an existing account.
    pub fn phone(&self, pn: &str) -> Result<PhoneHandle<'_>, ControlError> {
        self.with_world(|w| w.account_by_pn(pn))?;
        Ok(PhoneHandle { emu: self, pn: pn.to_owned() })
    }

    /// Creates a group owned by `creator` (phone numbers) and returns its JID.
    pub fn create_group(&self, creator: &str, subject: &str, members: &[&str]) -> Result<Jid, ControlError> {
        self.with_world(|w| {
            let c = w.account_by_pn(creator)?;
            let m = members.iter().map(|p| w.account_by_pn(p)).collect::<Result<Vec<_>, _>>()?;
            Ok(w.create_group(c, subject, &m))
        })
    }

    /// Creates a LID-addressed group (`addressing_mode="lid"`: members named by LID).
    pub fn create_lid_group(
        &self,
        creator: &str,
        subject: &str,
        members: &[&str],
    ) -> Result<Jid, ControlError> {
        self.with_world(|w| {
            let c = w.account_by_pn(creator)?;
            let m = members.iter().map(|p| w.account_by_pn(p)).collect::<Result<Vec<_>, _>>()?;
            Ok(w.create_group_with(c, subject, &m, true))
        })
    }

    /// Adds accounts to a group on behalf of `actor`.
    pub fn add_to_group(&self, actor: &str, group: &Jid, members: &[&str]) -> Result<(), ControlError> {
        self.with_world(|w| {
            let a = w.account_by_pn(actor)?;
            let m = members.iter().map(|p| w.account_by_pn(p)).collect::<Result<Vec<_>, _>>()?;
            w.group_participants(a, group.user(), "add", &m)
        })
    }

    /// The connection a companion device is logged in on.
    pub fn connection_of(&self, pn: &str, device: u16) -> Result<ConnId, ControlError> {
        self.with_world(|w| {
            let account = w.account_by_pn(pn)?;
            w.conn_of(DeviceAddr { account, device })
                .ok_or_else(|| ControlError::DeviceOffline(format!("{pn}:{device}")))
        })
    }

    /// Ids of the messages device `device` of account `pn` acknowledged (a receipt or an
    /// `<ack class="message">` for a message delivered to it), oldest first. Unacknowledged
    /// messages are delivered again when the device next logs in.
    pub fn acked_by(&self, pn: &str, device: u16) -> Result<Vec<String>, ControlError> {
        self.with_world(|w| {
            let a = w.account_by_pn(pn)?;
            w.device_acked(a, device)
        })
    }

    /// Companion device ids of an account (paired, not removed).
    pub fn companions(&self, pn: &str) -> Result<Vec<u16>, ControlError> {
        self.with_world(|w| {
            let a = w.account_by_pn(pn)?;
            Ok(w.accounts[a]
                .devices
                .values()
                .filter(|d| d.id != 0 && d.signed_identity.is_some())
                .map(|d| d.id)
                .collect())
        })
    }

    /// Stanzas delivered to a device and not yet acknowledged, oldest first: `(tag, id,
    /// type)`. They are delivered again (with `offline`) when the device next logs in.
    pub fn in_flight(&self, pn: &str, device: u16) -> Result<Vec<(String, String, String)>, ControlError> {
        self.with_world(|w| {
            let account = w.account_by_pn(pn)?;
            Ok(w.in_flight_of(DeviceAddr { account, device }))
        })
    }

    /// Test hook: delivers `node` to device `device` of `pn` as the server delivers its own
    /// traffic (tracked until acknowledged, queued while the device is offline). For testing
    /// how a client survives stanzas the model never produces itself, malformed ones above
    /// all; it relaxes nothing the emulator checks in what clients send.
    pub fn inject_stanza(&self, pn: &str, device: u16, node: Node) -> Result<(), ControlError> {
        self.with_world(|w| {
            let account = w.account_by_pn(pn)?;
            w.deliver(DeviceAddr { account, device }, node);
            Ok(())
        })
    }

    /// Marks a dirty bit (`account_sync`, `groups`, `syncd_app_state`, …) on an account:
    /// `<ib><dirty/>` to its companions now and at each login until one cleans it.
    pub fn mark_dirty(&self, pn: &str, kind: &str) -> Result<(), ControlError> {
        self.with_world(|w| {
            let account = w.account_by_pn(pn)?;
            w.mark_dirty(account, kind);
            Ok(())
        })
    }

    /// Dirty bits of an account not yet cleaned: `(type, timestamp)`.
    pub fn dirty_bits(&self, pn: &str) -> Result<Vec<(String, u64)>, ControlError> {
        self.with_world(|w| Ok(w.dirty_bits(w.account_by_pn(pn)?)))
    }

    /// The edge routing info the server last gave a device at login.
    pub fn routing_info_of(&self, pn: &str, device: u16) -> Result<Option<Vec<u8>>, ControlError> {
        self.with_world(|w| {
            let account = w.account_by_pn(pn)?;
            Ok(w.routing_info_of(DeviceAddr { account, device }))
        })
    }

    /// Members `readers` (phone numbers) of `group` confirm message `id` together (`kind`:
    /// `None` = delivered, `read`, `played`); a companion that sent it gets one grouped
    /// receipt.
    pub fn group_receipts(
        &self,
        group: &Jid,
        id: &str,
        kind: Option<&str>,
        readers: &[&str],
    ) -> Result<(), ControlError> {
        self.with_world(|w| {
            let r = readers.iter().map(|p| w.account_by_pn(p)).collect::<Result<Vec<_>, _>>()?;
            w.group_receipts(group.user(), id, kind, &r)
        })
    }

    // ---------------------------------------------------------------- faults

    /// Closes a connection without a stream error.
    pub fn fault_close(&self, conn: ConnId) -> Result<(), ControlError> {
        self.with_world(|w| {
            if !w.conns.contains_key(&conn) {
                return Err(ControlError::UnknownConn(conn));
            }
            w.close(conn);
            Ok(())
        })
    }

    /// Sends `<stream:error>` and closes: 515 restart, 440 conflict (replaced), 401 logged
    /// out (device removed), 503 service unavailable, other codes as `code=`.
    pub fn fault_stream_error(&self, conn: ConnId, code: u16) -> Result<(), ControlError> {
        self.with_world(|w| {
            if !w.conns.contains_key(&conn) {
                return Err(ControlError::UnknownConn(conn));
            }
            w.send_and_close(conn, control::stream_error(code));
            Ok(())
        })
    }

    /// Applies a frame fault (delay, drop, corrupt) to a connection's outgoing stream.
    pub fn fault_frames(&self, conn: ConnId, fault: Fault) -> Result<(), ControlError> {
        self.with_world(|w| w.fault(conn, fault))
    }

    /// Refuses logins (`<failure reason="503">`) for the next `seconds` of emulator time.
    pub fn refuse_logins_for(&self, seconds: u64) {
        self.with_world(|w| w.policy.refuse_logins_until = w.now() + seconds);
    }

    /// Stops serving and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(true);
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(true);
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Drives one account's simulated phone.
#[derive(Debug, Clone)]
pub struct PhoneHandle<'a> {
    emu: &'a EmulatorHandle,
    pn: String,
}

impl PhoneHandle<'_> {
    /// The account's phone number.
    pub fn pn(&self) -> &str {
        &self.pn
    }

    /// `PN@s.whatsapp.net`.
    pub fn jid(&self) -> Jid {
        self.emu.with_world(|w| {
            let a = w.account_by_pn(&self.pn).unwrap_or_default();
            w.user_jid(a, wa_binary::Server::Pn)
        })
    }

    /// The account's LID JID.
    pub fn lid(&self) -> Jid {
        self.emu.with_world(|w| {
            let a = w.account_by_pn(&self.pn).unwrap_or_default();
            w.user_jid(a, wa_binary::Server::Lid)
        })
    }

    fn account(&self, w: &World) -> Result<AccountId, ControlError> {
        w.account_by_pn(&self.pn)
    }

    /// The account's identity key (the phone's; it signs ADV identities and key index lists).
    pub fn identity_key(&self) -> Result<PublicKey, ControlError> {
        self.emu.with_world(|w| self.account(w).map(|a| w.accounts[a].phone.identity_public()))
    }

    /// The key index list the phone last signed (`None` before a companion was linked).
    pub fn key_index_list(&self) -> Result<Option<KeyIndexList>, ControlError> {
        self.emu.with_world(|w| self.account(w).map(|a| w.accounts[a].key_index_list.clone()))
    }

    /// Whether the account's 1:1 chats are LID-addressed.
    pub fn lid_migrated(&self) -> Result<bool, ControlError> {
        self.emu.with_world(|w| self.account(w).map(|a| w.accounts[a].lid_migrated))
    }

    /// Moves the account's 1:1 chats to LIDs (or back to phone numbers), as the service
    /// migrates accounts over time: its DMs are LID-addressed from now on, and its companions
    /// must address theirs so.
    pub fn set_lid_migrated(&self, migrated: bool) -> Result<(), ControlError> {
        self.emu.with_world(|w| {
            let a = self.account(w)?;
            w.set_lid_migrated(a, migrated);
            Ok(())
        })
    }

    /// Scans a QR string a companion shows; pair-success goes to that companion.
    pub fn scan(&self, qr: &str) -> Result<DeviceAddr, ControlError> {
        self.emu.with_world(|w| {
            let a = self.account(w)?;
            w.scan_qr(a, qr)
        })
    }

    /// Enters a pairing code a companion shows.
    pub fn enter_code(&self, code: &str) -> Result<(), ControlError> {
        self.emu.with_world(|w| {
            let a = self.account(w)?;
            w.enter_link_code(a, code)
        })
    }

    /// Sends a text to a user or group JID; returns the message id.
    pub fn send_text(&self, to: &Jid, text: &str) -> Result<String, ControlError> {
        let m = wa_proto::Message { conversation: Some(text.to_owned()), ..Default::default() };
        self.emu.with_world(|w| {
            let a = self.account(w)?;
            w.phone_send(a, to, &m)
        })
    }

    /// Sends an image (uploaded to the emulator's media store) to a user or group.
    pub fn send_image(
        &self,
        to: &Jid,
        image: &[u8],
        mimetype: &str,
        caption: Option<&str>,
    ) -> Result<String, ControlError> {
        self.emu.with_world(|w| {
            let a = self.account(w)?;
            w.phone_send_image(a, to, image, mimetype, caption)
        })
    }

    /// The account's push name: the `notify` other users see on its messages. Set at creation
    /// and changed by a device's `<presence name=…>`.
    pub fn push_name(&self) -> String {
        self.emu.with_world(|w| self.account(w).map(|a| w.accounts[a].push_name.clone()).unwrap_or_default())
    }

    /// The `<presence>` stanzas the account's devices sent about themselves, oldest first.
    pub fn presences(&self) -> Vec<PresenceRecord> {
        self.emu.with_world(|w| {
            self.account(w).map(|a| w.accounts[a].presences.iter().cloned().collect()).unwrap_or_default()
        })
    }

    /// Messages received so far.
    pub fn inbox(&self) -> Vec<InboxMessage> {
        self.emu
            .with_world(|w| self.account(w).map(|a| w.accounts[a].phone.inbox.clone()).unwrap_or_default())
    }

    /// Receipts received so far.
    pub fn receipts(&self) -> Vec<PhoneReceipt> {
        self.emu
            .with_world(|w| self.account(w).map(|a| w.accounts[a].phone.receipts.clone()).unwrap_or_default())
    }

    /// Sends read receipts for received messages.
    pub fn mark_read(&self, ids: &[String]) -> Result<(), ControlError> {
        self.emu.with_world(|w| {
            let a = self.account(w)?;
            w.phone_mark_read(a, ids)
        })
    }

    /// Sends `played` receipts (voice notes, videos) for received messages.
    pub fn mark_played(&self, ids: &[String]) -> Result<(), ControlError> {
        self.emu.with_world(|w| {
            let a = self.account(w)?;
            w.phone_mark_played(a, ids)
        })
    }

    /// Reacts to message `id` in `chat` (received or sent by this phone); an empty emoji
    /// removes the reaction. Returns the reaction's own message id.
    pub fn react(&self, chat: &Jid, id: &str, emoji: &str) -> Result<String, ControlError> {
        self.emu.with_world(|w| {
            let a = self.account(w)?;
            w.phone_react(a, chat, id, emoji)
        })
    }

    /// Votes for `options` (by name; none retracts the vote) in the poll `poll_id` this phone
    /// received in `chat`; returns the vote's message id.
    pub fn vote(&self, chat: &Jid, poll_id: &str, options: &[&str]) -> Result<String, ControlError> {
        self.emu.with_world(|w| {
            let a = self.account(w)?;
            w.phone_vote(a, chat, poll_id, options)
        })
    }

    /// Asks the sender of received message `id` to send it again (a `retry` receipt with a
    /// fresh key bundle; the phone drops its session with the sending device first).
    pub fn request_retry(&self, id: &str) -> Result<(), ControlError> {
        self.emu.with_world(|w| {
            let a = self.account(w)?;
            w.phone_request_retry(a, id)
        })
    }

    /// Sets a new profile picture (its contacts' companions get a `picture` notification, its
    /// own an `account_sync`); returns the picture id.
    pub fn set_picture(&self) -> Result<String, ControlError> {
        self.emu.with_world(|w| {
            let a = self.account(w)?;
            w.phone_set_picture(a, false).ok_or_else(|| ControlError::UnknownAccount(self.pn.clone()))
        })
    }

    /// Removes the profile picture.
    pub fn remove_picture(&self) -> Result<(), ControlError> {
        self.emu.with_world(|w| {
            let a = self.account(w)?;
            w.phone_set_picture(a, true);
            Ok(())
        })
    }

    /// Changes the about text (its contacts' companions get a `status` notification).
    pub fn set_about(&self, text: &str) -> Result<(), ControlError> {
        self.emu.with_world(|w| {
            let a = self.account(w)?;
            w.phone_set_about(a, text);
            Ok(())
        })
    }

    /// Changes app state in `collections` (the account's companions get `server_sync`);
    /// returns each collection's new version.
    pub fn change_app_state(&self, collections: &[&str]) -> Result<Vec<(String, u64)>, ControlError> {
        self.emu.with_world(|w| {
            let a = self.account(w)?;
            w.phone_change_app_state(a, collections)
        })
    }

    /// Calls the user `to` (the callee's companions get a `<call><offer/>`); returns the call id.
    pub fn call(&self, to: &Jid, video: bool) -> Result<String, ControlError> {
        self.emu.with_world(|w| {
            let a = self.account(w)?;
            w.phone_call(a, to, video)
        })
    }

    /// Ends a ringing call this phone placed or receives (`<call><terminate/>`).
    pub fn end_call(&self, call_id: &str, reason: Option<&str>) -> Result<(), ControlError> {
        self.emu.with_world(|w| {
            let a = self.account(w)?;
            w.phone_end_call(a, call_id, reason)
        })
    }

    /// Sends a text encrypted for the recipient's phone only: the recipient's companions get
    /// an `<unavailable/>` placeholder and must ask their phone for it. Returns the id.
    pub fn send_text_to_phone_only(&self, to: &Jid, text: &str) -> Result<String, ControlError> {
        self.emu.with_world(|w| {
            let a = self.account(w)?;
            w.phone_send_to_phone_only(a, to, text)
        })
    }

    /// Sends a text as `<appdata>` to the companions of the user `to`; returns its id.
    pub fn send_appdata(&self, to: &Jid, text: &str) -> Result<String, ControlError> {
        let m = wa_proto::Message { conversation: Some(text.to_owned()), ..Default::default() };
        self.emu.with_world(|w| {
            let a = self.account(w)?;
            w.phone_send_appdata(a, to, &m)
        })
    }

    /// Unlinks a companion device (it is told `401 device_removed`).
    pub fn remove_device(&self, device: u16) -> Result<(), ControlError> {
        self.emu.with_world(|w| {
            let a = self.account(w)?;
            w.remove_device(DeviceAddr { account: a, device }, "primary_removed");
            Ok(())
        })
    }

    /// Gives the account a hosted (Cloud API) device, device 99 on the `hosted` servers; what it
    /// receives lands in [`PhoneHandle::inbox`] with `device` 99.
    pub fn add_hosted_device(&self) -> Result<(), ControlError> {
        self.emu.with_world(|w| {
            let a = self.account(w)?;
            w.add_hosted_device(a)
        })
    }

    /// Reinstalls WhatsApp on the phone: a new identity key and prekeys, its companions
    /// unlinked, its peers' companions told with `<notification type="encrypt"><identity/>`.
    pub fn reinstall(&self) -> Result<(), ControlError> {
        self.emu.with_world(|w| {
            let a = self.account(w)?;
            w.phone_reinstall(a)
        })
    }

    /// Waits until the inbox holds a message matching `pred`.
    pub async fn wait_message(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&InboxMessage) -> bool,
    ) -> Option<InboxMessage> {
        let mut found = None;
        self.wait_inbox(timeout, |inbox| {
            found = inbox.iter().find(|m| pred(m)).cloned();
            found.is_some()
        })
        .await
        .then_some(())?;
        found
    }

    /// Waits until `pred` holds for the whole inbox (oldest first); `false` on timeout.
    pub async fn wait_inbox(&self, timeout: Duration, mut pred: impl FnMut(&[InboxMessage]) -> bool) -> bool {
        let pn = self.pn.clone();
        let mut rx = self.emu.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if pred(&self.inbox()) {
                return true;
            }
            let Ok(ev) = tokio::time::timeout_at(deadline, rx.recv()).await else { return false };
            match ev {
                Ok(WorldEvent::PhoneReceived { pn: p, .. }) if p == pn => {}
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return false,
            }
        }
    }
}
