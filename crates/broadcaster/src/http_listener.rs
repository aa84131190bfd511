//! The HTTP/1.1 listener: accepts connections within [`ConnectionLimits`] and serves each with
//! hyper, so a slow or silent client cannot hold the server's connections or file descriptors.
//!
//! - A client must send each request's headers within `header_read_timeout`, the first one and
//!   each later one on a kept-alive connection alike (hyper's header timer), or it is closed.
//! - At most `max_connections` are open. When all are taken, a newcomer takes the slot of the
//!   oldest connection that has not yet sent one complete request (a half-sent request holds
//!   nothing worth keeping), so thousands of slow clients cannot keep `/healthz` or a real
//!   client waiting; only when every open connection has sent a request do newcomers wait in
//!   the listen backlog.
//! - At most `max_connections_per_ip` come from one client address; more are closed at once, so
//!   one client cannot take every slot.
//!
//! Each request carries the client's address as [`ConnectInfo`] (for per-address limits).
//! A connection upgraded to a WebSocket leaves hyper and these counts; live streams are bounded
//! by authentication instead (see [`crate::live_ws`], [`crate::live_socketio`]).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, TryAcquireError, oneshot, watch};
use tower::ServiceExt as _;

use crate::config::ConnectionLimits;

/// Open connections per client address.
#[derive(Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

/// One counted connection of an address; uncounted when dropped.
struct AddressSlot {
    table: Arc<PerAddress>,
    ip: IpAddr,
}

impl PerAddress {
    fn claim(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<AddressSlot> {
        let mut t = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let n = t.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddressSlot { table: self.clone(), ip })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut t = self.table.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = t.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                t.remove(&self.ip);
            }
        }
    }
}

/// Open connections that have not yet sent a complete request (headers), oldest first, each
/// with the sender that ends it.
#[derive(Default)]
struct Unproven(Mutex<BTreeMap<u64, oneshot::Sender<()>>>);

impl Unproven {
    fn insert(&self, id: u64, end: oneshot::Sender<()>) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(id, end);
    }

    fn remove(&self, id: u64) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
    }

    /// Ends the oldest one still open; `false` when there is none.
    fn end_oldest(&self) -> bool {
        loop {
            let oldest = self.0.lock().unwrap_or_else(PoisonError::into_inner).pop_first();
            let Some((_, end)) = oldest else { return false };
            if end.send(()).is_ok() {
                return true;
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets open connections finish
/// their requests (closing them when idle) and returns once they have.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_address = Arc::new(PerAddress::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).keep_alive(true);
    let unproven = Arc::new(Unproven::default());
    let mut next_id: u64 = 0;
    tokio::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(address_slot) = per_address.claim(remote.ip(), limits.max_connections_per_ip) else {
            tracing::debug!(client = %remote.ip(), "connection refused: too many from this address");
            continue;
        };
        let slot = match slots.clone().try_acquire_owned() {
            Ok(s) => s,
            Err(TryAcquireError::Closed) => break,
            Err(TryAcquireError::NoPermits) => {
                if unproven.end_oldest() {
                    tracing::debug!(
                        "connection limit reached: ended the oldest connection without a request"
                    );
                }
                tokio::select! {
                    s = slots.clone().acquire_owned() => match s {
                        Ok(s) => s,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let _ = tcp.set_nodelay(true);
        let id = next_id;
        next_id += 1;
        let (end_tx, end_rx) = oneshot::channel::<()>();
        unproven.insert(id, end_tx);
        let app = app.clone();
        let proven = Arc::new(AtomicBool::new(false));
        let service = {
            let (unproven, proven) = (unproven.clone(), proven.clone());
            hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                // Its headers are complete: no longer the first to go when slots run out.
                if !proven.swap(true, Ordering::Relaxed) {
                    unproven.remove(id);
                }
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(remote));
                app.clone().oneshot(req)
            })
        };
        let conn = http.serve_connection(TokioIo::new(tcp), service).with_upgrades();
        let mut stop = stop_rx.clone();
        let unproven = unproven.clone();
        let proven_here = proven.clone();
        tokio::spawn(async move {
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::trace!(error = %e, "connection ended");
                    }
                }
                // Ended for a newcomer while it had sent no complete request: dropped unanswered.
                // (Its first request may have come in the meantime: then it stays.)
                () = async {
                    if end_rx.await.is_err() || proven_here.load(Ordering::Relaxed) {
                        std::future::pending::<()>().await;
                    }
                } => {}
                () = async { let _ = stop.wait_for(|s| *s).await; } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            if !proven.load(Ordering::Relaxed) {
                unproven.remove(id);
            }
            drop((slot, address_slot));
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection returns its slot when it ends.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
    Ok(())
}
