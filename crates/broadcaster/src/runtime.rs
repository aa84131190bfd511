//! The seam between the server and a WhatsApp connection.
//!
//! [`AccountRuntime`] is what the server asks of a live session: start connecting (by QR or
//! pairing code), disconnect, log out. Implementations report what happens through
//! [`SessionEvent`]s, which [`crate::accounts::apply_session_event`] turns into recorded state
//! transitions and outbox events. The production implementation wraps `wa-client`; until that
//! lands, the binary runs with no runtime and connect requests answer 503.

use std::future::Future;
use std::pin::Pin;

/// How to link a new device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkMethod {
    Qr,
    /// Pairing code for this E.164 number (digits only, no `+`).
    PairingCode {
        phone_digits: String,
    },
}

/// Something a session reports about its connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// A QR to show; `expires_at_ms` when it rotates.
    Qr {
        code: String,
        expires_at_ms: i64,
    },
    PairingCode {
        code: String,
        expires_at_ms: i64,
    },
    /// Logged in (or resumed); `phone` is E.164 when known.
    Connected {
        phone: Option<String>,
        push_name: Option<String>,
    },
    /// The transport dropped; the runtime will retry.
    Reconnecting {
        reason: String,
    },
    Disconnected {
        reason: String,
    },
    /// The device was unlinked (from the phone or by us).
    LoggedOut {
        reason: String,
    },
    Failed {
        reason: String,
    },
}

/// Errors a runtime returns for a command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    #[error("account is not running")]
    NotRunning,
    #[error("{0}")]
    Failed(String),
}

pub type RuntimeFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, RuntimeError>> + Send + 'a>>;

/// Sink for a session's events: the server's side of the seam.
/// Runtimes await each `emit`, so events are applied in order and a slow database slows the
/// session down instead of queueing without bound.
pub trait SessionEvents: Send + Sync + 'static {
    fn emit<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        event: SessionEvent,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

/// Drives live WhatsApp sessions, one per account.
pub trait AccountRuntime: Send + Sync + 'static {
    /// Starts (or resumes, when stored credentials exist) the session of `account_id`.
    fn connect<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        method: LinkMethod,
    ) -> RuntimeFuture<'a, ()>;
    /// Closes the connection, keeping credentials.
    fn disconnect<'a>(&'a self, tenant_id: &'a str, account_id: &'a str) -> RuntimeFuture<'a, ()>;
    /// Unlinks the device and forgets its credentials.
    fn logout<'a>(&'a self, tenant_id: &'a str, account_id: &'a str) -> RuntimeFuture<'a, ()>;
}
