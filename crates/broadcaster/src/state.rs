//! Shared application state handed to every handler.

use std::sync::Arc;

use tokio::sync::Notify;

use crate::clock::SharedClock;
use crate::db::Db;
use crate::runtime::AccountRuntime;

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub clock: SharedClock,
    /// `None` until a WhatsApp runtime is wired in; connect then answers 503.
    pub runtime: Option<Arc<dyn AccountRuntime>>,
    /// Wakes the webhook worker when new outbox rows may be due.
    pub outbox_notify: Arc<Notify>,
}
