//! Broadcaster: a server that connects many WhatsApp accounts behind a REST API, live events,
//! webhooks and a dashboard.
//!
//! Module map: [`config`] (flags/env/TOML), [`db`] (SQLite + migrations), [`auth`] (keys, roles,
//! principal), [`account_state`] (the connection state machine), [`accounts`], [`tenants`],
//! [`webhooks`] (API + delivery worker), [`outbox`] (events written with state changes),
//! [`runtime`] (the seam to live WhatsApp sessions), [`app`] (router and OpenAPI).

pub mod access;
pub mod account_state;
pub mod accounts;
pub mod api_docs;
pub mod app;
pub mod auth;
pub mod body_limit;
pub mod bulk;
pub mod campaigns;
pub mod chats;
pub mod clock;
pub mod compat;
pub mod config;
pub mod contacts;
pub mod dashboard;
pub mod db;
pub mod emulator_api;
pub mod emulator_world;
pub mod error;
pub mod groups;
pub mod http_listener;
pub mod live;
pub mod live_socketio;
pub mod live_ws;
pub mod messages;
pub mod metrics;
pub mod open_files;
pub mod ops;
pub mod outbound;
pub mod outbox;
pub mod phone;
pub mod proxy;
pub mod ratelimit;
pub mod runtime;
pub mod secrets;
pub mod state;
pub mod template_media;
pub mod templates;
pub mod tenants;
pub mod wa_runtime;
pub mod webhooks;

#[cfg(test)]
mod query_plans;

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Notify;

use crate::account_state::AccountState;
use crate::accounts::DbSessionEvents;
use crate::auth::Bootstrap;
use crate::clock::{Clock as _, SharedClock, SystemClock};
use crate::config::Config;
use crate::db::{Db, DbError};
use crate::outbound::fetch::FetchPolicy;
use crate::runtime::{AccountRuntime, LinkMethod};
use crate::state::AppState;
use crate::state::Limits;
use crate::wa_runtime::{Upstream, WaRuntime};
use crate::webhooks::WebhookWorker;

/// Errors that stop the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir { path: std::path::PathBuf, source: std::io::Error },
    #[error("database: {0}")]
    Db(#[from] DbError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
    #[error("WhatsApp auth store: {0}")]
    AuthStore(String),
    /// `--wa-version` / `--wa-version-url` cannot be used.
    #[error("WhatsApp Web version setting: {0}")]
    WaVersion(String),
    #[error("configuration: {0}")]
    Config(String),
    /// The configured auth store could not be opened (unreachable, refused, bad URL, newer
    /// schema). `reason` never contains the URL or its password.
    #[error("cannot open the WhatsApp auth store ({backend}): {reason}")]
    AuthStoreOpen { backend: &'static str, reason: String },
    /// The master key is unusable or does not match the stored data (nothing was changed).
    #[error("{0}")]
    MasterKey(#[from] secrets::KeyError),
    /// `--emulator`'s saved world cannot be used; it is left as it is.
    #[error(
        "the in-process emulator's saved world {path} cannot be used: {source} (move the file away to start a new \
         emulator world; every account then links again)"
    )]
    EmulatorState { path: std::path::PathBuf, source: wa_emulator::StateError },
}

/// Opens the database (PostgreSQL when `config.database_url` is set, else SQLite in
/// `config.data_dir`) and ensures the bootstrap admin key exists. A newly generated key is
/// returned so the caller can print it exactly once.
pub async fn open_database(
    config: &Config,
    env_admin_key: Option<String>,
) -> Result<(Db, Bootstrap), ServeError> {
    let dir = config.data_dir.clone();
    create_private_dir(&dir).map_err(|source| ServeError::DataDir { path: dir.clone(), source })?;
    let db = match &config.database_url {
        Some(url) => Db::open_postgres(url.as_str()).await?,
        None => tokio::task::spawn_blocking(move || Db::open_in_dir(&dir))
            .await
            .map_err(|e| DbError::Join(e.to_string()))??,
    };
    let now = SystemClock.now_ms();
    let boot = db.call(move |c| auth::bootstrap_admin(c, env_admin_key.as_deref(), now)).await?;
    Ok((db, boot))
}

/// Creates the data dir owner-only (0700) and tightens an existing one that others can enter:
/// it holds the master key file and the databases.
fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
            tracing::info!(dir = %dir.display(), old_mode = format!("{:o}", mode & 0o777), "data dir set to mode 0700");
        }
    }
    Ok(())
}

/// The file in the data dir holding the bootstrap admin key, written when it is generated.
pub const ADMIN_KEY_FILE: &str = "admin-key.txt";

/// Writes a generated admin key to [`ADMIN_KEY_FILE`] in `data_dir`, readable by the owner only
/// (mode 0600 from creation, never world-readable in between). Returns the path.
pub fn write_admin_key_file(data_dir: &std::path::Path, key: &str) -> std::io::Result<std::path::PathBuf> {
    use std::io::Write as _;
    let path = data_dir.join(ADMIN_KEY_FILE);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(&path)?;
    // An older file (e.g. from a copied data dir) keeps its mode on open: set it again.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    writeln!(f, "{key}")?;
    Ok(path)
}

/// The start banner: where the dashboard and the API docs are, and the admin key (when it was
/// generated now) or where it is kept. `listen` is the bound address (an unspecified host
/// becomes `localhost`, which a browser can open).
pub fn start_banner(listen: std::net::SocketAddr, admin: &AdminKeyNotice) -> String {
    let host = match listen.ip() {
        ip if ip.is_unspecified() => "localhost".to_owned(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        ip => ip.to_string(),
    };
    let base = format!("http://{host}:{}", listen.port());
    let key = match admin {
        AdminKeyNotice::Generated { key, file: Some(f) } => {
            format!("{key}\n               (shown once here; also saved to {}, mode 0600)", f.display())
        }
        AdminKeyNotice::Generated { key, file: None } => {
            format!("{key}\n               (shown once, store it now)")
        }
        AdminKeyNotice::Existing { file: Some(f) } => {
            format!("in {} (generated at the first start)", f.display())
        }
        AdminKeyNotice::Existing { file: None } => {
            "set at the first start (BROADCASTER_ADMIN_KEY or printed then)".into()
        }
    };
    format!(
        "\nBroadcaster is running.\n\n  Dashboard:   {base}/dashboard\n  API docs:    {base}{docs} (OpenAPI 3.1: {base}/openapi.json)\n  Admin key:   {key}\n",
        docs = api_docs::DOCS_PATH
    )
}

/// The start banner's master-key line: where the key is and, when it was generated at this
/// start, the request to back it up.
pub fn master_key_banner(source: &secrets::KeySource, key_id: &str) -> String {
    match source {
        secrets::KeySource::Environment => {
            format!("  Master key:  from {} (id {key_id})\n", secrets::MASTER_KEY_VAR)
        }
        secrets::KeySource::File(f) => format!("  Master key:  {} (id {key_id})\n", f.display()),
        secrets::KeySource::Created(f) => format!(
            "  Master key:  {} (id {key_id}), GENERATED NOW: back this file up and keep it apart from\n               \
             database backups; without it the WhatsApp sessions and webhook secrets cannot be read\n",
            f.display()
        ),
    }
}

/// What the start banner says about the admin key.
#[derive(Debug, Clone)]
pub enum AdminKeyNotice {
    /// Generated at this start (shown once), and where it was saved.
    Generated { key: String, file: Option<std::path::PathBuf> },
    /// Already there (an earlier start, or `BROADCASTER_ADMIN_KEY`): the file, if it exists.
    Existing { file: Option<std::path::PathBuf> },
}

/// Everything [`serve`] runs: the state handlers see, the WhatsApp runtime and (with
/// `--emulator`) the in-process emulator.
pub struct Server {
    pub state: AppState,
    pub runtime: Arc<WaRuntime>,
    /// Where the master key came from and its id (for the start banner).
    pub master_key: (secrets::KeySource, String),
    /// Keeps `--emulator`'s world in the data directory.
    pub emulator_saver: Option<emulator_world::EmulatorSaver>,
}

/// Builds the server's state: live bus, metrics, limits, the `wa-client` runtime over the auth
/// store in the data directory, and the emulator when `config.emulator` is set.
pub async fn build_server(config: &Config, db: Db) -> Result<Server, ServeError> {
    build_server_with(config, db, None).await
}

/// [`build_server`] using an emulator the caller started (it outlives the server; tests restart
/// the server against the same emulator). `emulator` implies emulator mode.
pub async fn build_server_with(
    config: &Config,
    db: Db,
    emulator: Option<Arc<wa_emulator::EmulatorHandle>>,
) -> Result<Server, ServeError> {
    build_server_with_clock(config, db, emulator, Arc::new(SystemClock)).await
}

/// [`build_server_with`] reading time from `clock` (tests drive pacing and daily counters with a
/// [`clock::ManualClock`]).
pub async fn build_server_with_clock(
    config: &Config,
    db: Db,
    emulator: Option<Arc<wa_emulator::EmulatorHandle>>,
    clock: SharedClock,
) -> Result<Server, ServeError> {
    let notify = Arc::new(Notify::new());
    let mut state = AppState::new(db.clone(), clock.clone(), None, notify.clone());
    state.outbound = crate::outbound::OutboundClient::new(&config.outbound)
        .map_err(|e| ServeError::Config(e.to_string()))?;
    if config.outbound.test_loopback != crate::outbound::TestLoopback::Refused {
        tracing::warn!(
            allowed = ?config.outbound.test_loopback,
            "TEST SETTING {}: webhooks and media URLs may reach loopback addresses",
            crate::config::TEST_LOOPBACK_TARGETS_VAR
        );
    }
    if !config.outbound.allow.is_empty() {
        let ranges: Vec<String> = config.outbound.allow.iter().map(ToString::to_string).collect();
        tracing::warn!(
            ranges = %ranges.join(","),
            "outbound allow-list: webhooks and media URLs may reach these non-public ranges"
        );
    }
    state.access = Arc::new(crate::access::Access {
        metrics: config.metrics_access.clone(),
        auth_failures: crate::access::AddressBuckets::new(config.auth_failures_per_minute),
        ..Default::default()
    });
    state.limits = Arc::new(Limits {
        fetch: FetchPolicy { max_bytes: config.media_max_bytes, ..FetchPolicy::default() },
        requests_per_minute: config.rate_limit_per_minute,
        pending_send_max_age_ms: i64::try_from(config.pending_send_max_age.as_millis()).unwrap_or(i64::MAX),
    });
    let mut emulator_saver = None;
    let upstream = if let Some(emu) = emulator {
        let up = Upstream::emulator(&emu);
        state.emulator = Some(emu);
        up
    } else if config.emulator {
        let (emu, saver) = emulator_world::start(&config.data_dir).await?;
        emulator_saver = Some(saver);
        let up = Upstream::emulator(&emu);
        state.emulator = Some(emu);
        up
    } else if let Some(ext) = &config.external_emulator {
        tracing::info!(url = %ext.url, "connecting to an external WhatsApp emulator");
        Upstream::external_emulator(ext).map_err(|e| ServeError::AuthStore(e.to_string()))?
    } else {
        Upstream::whatsapp()
    };
    let version = Arc::new(
        wa_runtime::WaVersion::new(&config.wa_version, upstream.is_whatsapp())
            .map_err(ServeError::WaVersion)?,
    );
    match version.fetch_url() {
        Some(url) => {
            tracing::info!(%url, "WhatsApp Web version: the current one from sw.js (built-in as fallback)")
        }
        None => tracing::info!(version = ?version.in_use(), "WhatsApp Web version"),
    }
    let unlocked = secrets::unlock(&config.master_key, &config.data_dir, &config.auth_store, &db).await?;
    match &unlocked.source {
        secrets::KeySource::Created(file) => tracing::warn!(
            file = %file.display(),
            key_id = %unlocked.key_id,
            "generated the master key that encrypts WhatsApp sessions and webhook secrets: BACK UP THIS FILE \
             (without it they cannot be read); keep it apart from database backups"
        ),
        _ => tracing::info!(key_id = %unlocked.key_id, "secrets at rest sealed with the master key"),
    }
    let master_key = (unlocked.source, unlocked.key_id);
    state.secrets = unlocked.secrets;
    let store = unlocked.store;
    let sink = DbSessionEvents::new(db, clock.clone(), notify, state.live.clone(), state.metrics.clone())
        .with_send_wake(state.bulk_wake.clone())
        .with_campaign_wake(state.campaign_wake.clone());
    let runtime = Arc::new(
        WaRuntime::new(store, upstream, Arc::new(sink), clock, state.metrics.clone())
            .with_version(version.clone()),
    );
    state.wa_version = Some(version);
    state.runtime = Some(runtime.clone() as Arc<dyn AccountRuntime>);
    Ok(Server { state, runtime, master_key, emulator_saver })
}

/// Reconnects every account that was active (or reconnecting) when the server last stopped.
/// Stored credentials log in without pairing; an account whose device was unlinked meanwhile
/// ends `logged_out` through the normal event path.
pub async fn resume_sessions(st: &AppState) -> Result<usize, ServeError> {
    let Some(runtime) = st.runtime.clone() else { return Ok(0) };
    let rows: Vec<(String, String, String)> = st
        .db
        .call(|c| {
            c.prepare("SELECT tenant_id, id, state FROM accounts WHERE state IN ('active','reconnecting')")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
    let mut n = 0;
    for (tenant, id, state) in rows {
        if state == "active" {
            let now = st.clock.now_ms();
            let (t, a) = (tenant.clone(), id.clone());
            let r = st
                .db
                .call(move |c| {
                    Ok(accounts::transition(
                        c,
                        &t,
                        &a,
                        AccountState::Reconnecting,
                        Some("server restart"),
                        now,
                    ))
                })
                .await?;
            if let Err(e) = r {
                tracing::warn!(account_id = %id, error = %e, "not resumed");
                continue;
            }
        }
        let options = match accounts::session_options(st, &tenant, &id).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(account_id = %id, error = %e, "not resumed");
                continue;
            }
        };
        match runtime.connect_with(&tenant, &id, LinkMethod::Qr, options).await {
            Ok(()) => n += 1,
            Err(e) => tracing::warn!(account_id = %id, error = %e, "resume failed"),
        }
    }
    st.outbox_notify.notify_one();
    Ok(n)
}

/// Serves the API on an already-bound listener until `shutdown` resolves, then drains in-flight
/// requests, stops the webhook worker and closes every WhatsApp session (bounded by
/// `config.shutdown_timeout`). Accounts stay `active` in the database and resume at next start.
pub async fn serve(
    config: &Config,
    db: Db,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let server = build_server(config, db).await?;
    serve_with(config, server, listener, shutdown).await
}

/// [`serve`] with a prepared [`Server`].
pub async fn serve_with(
    config: &Config,
    server: Server,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let Server { state, runtime, emulator_saver, .. } = server;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Receivers may answer `incoming_message` with a reply; it goes out through the send path.
    let (reply_tx, mut reply_rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = WebhookWorker::new(
        state.db.clone(),
        state.clock.clone(),
        config.webhook.clone(),
        state.outbox_notify.clone(),
        state.outbound.clone(),
        state.secrets.clone(),
    )
    .with_auto_replies(reply_tx);
    let reply_state = state.clone();
    let reply_task = tokio::spawn(async move {
        while let Some(job) = reply_rx.recv().await {
            webhooks::send_auto_reply(&reply_state, job).await;
        }
    });
    let mut worker_rx = stop_rx.clone();
    let worker_task = tokio::spawn(worker.run(async move {
        let _ = worker_rx.wait_for(|s| *s).await;
    }));
    // Before any request is served: sends a stopped server left in hand are queued again
    // (requests from now on lease their own rows).
    match bulk::recover_interrupted(&state).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(count = n, "messages interrupted by the last stop are sent again"),
        Err(e) => tracing::error!(error = %e, "cannot queue interrupted messages again"),
    }
    let resumed = resume_sessions(&state).await?;
    if resumed > 0 {
        tracing::info!(resumed, "resumed WhatsApp sessions");
    }
    let engine = campaigns::Engine::with_options(
        state.db.clone(),
        state.clock.clone(),
        Arc::new(campaigns::sender::MessagesSender::new(state.clone())),
        campaigns::engine::EngineOptions::default()
            .live(state.live.clone())
            .wake(state.campaign_wake.clone()),
    );
    let waker = campaigns::EngineWaker(engine.waker());
    let mut engine_rx = stop_rx.clone();
    let engine_task = tokio::spawn(engine.run(async move {
        let _ = engine_rx.wait_for(|s| *s).await;
    }));
    let mut bulk_rx = stop_rx.clone();
    let bulk_task = tokio::spawn(bulk::run(state.clone(), async move {
        let _ = bulk_rx.wait_for(|s| *s).await;
    }));
    let emulator = state.emulator.clone();
    let stopping = state.stopping.clone();
    let app = app::router(state, config.max_body_bytes).layer(axum::Extension(waker));
    tracing::info!(addr = %listener.local_addr()?, "broadcaster listening");
    let server = http_listener::serve(listener, app, config.connections, async move {
        shutdown.await;
        tracing::info!("shutting down: draining requests");
        let _ = stop_tx.send(true);
    });
    let mut drain_rx = stop_rx;
    let timeout = config.shutdown_timeout;
    tokio::select! {
        r = server => r?,
        _ = async {
            let _ = drain_rx.wait_for(|s| *s).await;
            tokio::time::sleep(timeout).await;
        } => tracing::warn!("shutdown timeout reached; abandoning in-flight requests"),
    }
    // The campaign engine finishes the send in hand, then stops (before sessions close).
    match tokio::time::timeout(timeout, engine_task).await {
        Ok(_) => tracing::info!("campaign engine stopped"),
        Err(_) => tracing::warn!("campaign engine did not stop in time"),
    }
    // Bulk sends still pending stay queued in the database and resume at the next start. A send
    // that outlives the timeout is abandoned: its row stays claimed, and the next start sends it
    // again under the same WhatsApp id (bulk::recover_interrupted).
    let mut bulk_task = bulk_task;
    match tokio::time::timeout(timeout, &mut bulk_task).await {
        Ok(_) => tracing::info!("bulk sender stopped"),
        Err(_) => {
            bulk_task.abort();
            tracing::warn!("bulk sender did not stop in time; its send in hand resumes at the next start");
        }
    }
    // Sends still in hand when the sessions close stay queued (leased) for the next start.
    stopping.store(true, std::sync::atomic::Ordering::SeqCst);
    match tokio::time::timeout(timeout, runtime.shutdown()).await {
        Ok(()) => tracing::info!("WhatsApp sessions closed"),
        Err(_) => tracing::warn!("WhatsApp sessions did not close in time"),
    }
    match tokio::time::timeout(timeout, worker_task).await {
        Ok(_) => tracing::info!("webhook worker stopped"),
        Err(_) => tracing::warn!("webhook worker did not stop in time"),
    }
    // The worker is gone, so the reply channel is closed: replies already asked for go out.
    if tokio::time::timeout(timeout, reply_task).await.is_err() {
        tracing::warn!("auto-replies did not finish in time");
    }
    // After the sessions closed: what they left unacknowledged is kept as undelivered.
    if let Some(saver) = emulator_saver {
        saver.finish().await;
    }
    if let Some(emu) = emulator
        && let Ok(emu) = Arc::try_unwrap(emu)
    {
        emu.shutdown().await;
    }
    Ok(())
}

#[cfg(test)]
mod banner_tests {
    use super::*;

    #[test]
    fn the_admin_key_file_is_owner_only_and_the_banner_says_where_things_are() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_admin_key_file(dir.path(), "bk_admin_1").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "bk_admin_1\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let b = start_banner(
            "0.0.0.0:8080".parse().unwrap(),
            &AdminKeyNotice::Generated { key: "bk_admin_1".into(), file: Some(path.clone()) },
        );
        assert!(b.contains("http://localhost:8080/dashboard"), "{b}");
        assert!(b.contains("http://localhost:8080/openapi.json"), "{b}");
        assert!(b.contains("API docs:    http://localhost:8080/docs "), "{b}");
        assert!(b.contains("bk_admin_1") && b.contains(&path.display().to_string()), "{b}");
        let b = start_banner("[::1]:9000".parse().unwrap(), &AdminKeyNotice::Existing { file: Some(path) });
        assert!(b.contains("http://[::1]:9000/dashboard") && !b.contains("bk_admin_1"), "{b}");
    }
}
