//! Broadcaster: a server that connects many WhatsApp accounts behind a REST API, live events,
//! webhooks and a dashboard.
//!
//! Module map: [`config`] (flags/env/TOML), [`db`] (SQLite + migrations), [`auth`] (keys, roles,
//! principal), [`account_state`] (the connection state machine), [`accounts`], [`tenants`],
//! [`webhooks`] (API + delivery worker), [`outbox`] (events written with state changes),
//! [`runtime`] (the seam to live WhatsApp sessions), [`app`] (router and OpenAPI).

pub mod account_state;
pub mod accounts;
pub mod app;
pub mod auth;
pub mod campaigns;
pub mod clock;
pub mod config;
pub mod contacts;
pub mod dashboard;
pub mod db;
pub mod error;
pub mod outbox;
pub mod phone;
pub mod runtime;
pub mod state;
pub mod templates;
pub mod tenants;
pub mod webhooks;

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Notify;

use crate::auth::Bootstrap;
use crate::clock::{Clock as _, SharedClock, SystemClock};
use crate::config::Config;
use crate::db::{Db, DbError};
use crate::state::AppState;
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
}

/// Opens the database in `config.data_dir` and ensures the bootstrap admin key exists. A newly
/// generated key is returned so the caller can print it exactly once.
pub async fn open_database(
    config: &Config,
    env_admin_key: Option<String>,
) -> Result<(Db, Bootstrap), ServeError> {
    let dir = config.data_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|source| ServeError::DataDir { path: dir.clone(), source })?;
    let db = tokio::task::spawn_blocking(move || Db::open_in_dir(&dir))
        .await
        .map_err(|e| DbError::Join(e.to_string()))??;
    let now = SystemClock.now_ms();
    let boot = db.call(move |c| auth::bootstrap_admin(c, env_admin_key.as_deref(), now)).await?;
    Ok((db, boot))
}

/// Serves the API on an already-bound listener until `shutdown` resolves, then drains in-flight
/// requests and stops the webhook worker (bounded by `config.shutdown_timeout`).
pub async fn serve(
    config: &Config,
    db: Db,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let clock: SharedClock = Arc::new(SystemClock);
    let notify = Arc::new(Notify::new());
    let state =
        AppState { db: db.clone(), clock: clock.clone(), runtime: None, outbox_notify: notify.clone() };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker = WebhookWorker::new(db, clock, config.webhook.clone(), notify);
    let mut worker_rx = stop_rx.clone();
    let worker_task = tokio::spawn(worker.run(async move {
        let _ = worker_rx.wait_for(|s| *s).await;
    }));
    let app = app::router(state, config.max_body_bytes);
    tracing::info!(addr = %listener.local_addr()?, "broadcaster listening");
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutting down: draining requests");
        let _ = stop_tx.send(true);
    });
    let mut drain_rx = stop_rx;
    let timeout = config.shutdown_timeout;
    tokio::select! {
        r = std::future::IntoFuture::into_future(server) => r?,
        _ = async {
            let _ = drain_rx.wait_for(|s| *s).await;
            tokio::time::sleep(timeout).await;
        } => tracing::warn!("shutdown timeout reached; abandoning in-flight requests"),
    }
    match tokio::time::timeout(timeout, worker_task).await {
        Ok(_) => tracing::info!("webhook worker stopped"),
        Err(_) => tracing::warn!("webhook worker did not stop in time"),
    }
    Ok(())
}
