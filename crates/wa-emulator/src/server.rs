//! The tokio shell: an axum server with the chat WebSocket (`/ws/chat`), media upload and
//! download (`/mms/...`), WhatsApp Web's service worker (`/sw.js`, which names the current
//! version), and the JSON control API (`/control/...`). Each WebSocket gets a
//! task that moves bytes between the socket and its [`ServerSession`], and drains the
//! connection's mailbox, applying injected faults to outgoing frames.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use futures::{SinkExt, StreamExt};
use wa_noise::ResponderConfig;

use crate::mediaretry::MediaFetch;
use crate::session::{ServerSession, SessionEvent};
use crate::world::{ConnCommand, Fault, World};

/// State shared by every task of one emulator.
#[derive(Debug)]
pub(crate) struct Shared {
    pub world: Mutex<World>,
    pub responder: Arc<ResponderConfig>,
    pub require_origin: bool,
    /// Bumped each time the world is locked for a change (see `EmulatorHandle::changes`).
    pub changes: std::sync::atomic::AtomicU64,
}

impl Shared {
    /// The world, locked for whatever the caller does (counted as a change).
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.changes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.world_unchanged()
    }

    /// The world, locked by a caller that only reads it (not counted as a change).
    pub fn world_unchanged(&self) -> MutexGuard<'_, World> {
        // A panic while holding the lock is a bug in the emulator; keep serving anyway.
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/ws/chat", any(ws_handler))
        .route("/mms/{kind}/{token}", post(media_upload))
        .route("/m/{kind}/{file}", get(media_download))
        .route("/sw.js", get(sw_js))
        .layer(DefaultBodyLimit::max(MAX_MEDIA_BYTES))
        .merge(crate::control::routes())
        .with_state(shared)
}

/// `GET /sw.js`, the emulator's `https://web.whatsapp.com/sw.js`: WhatsApp Web's service worker,
/// from which Baileys (`fetchLatestWaWebVersion`), whatsapp-rust (`src/version.rs`) and
/// wa-client (`VersionFetcher`) read the current version as `2.3000.<client_revision>`. The
/// revision is the floor's (`EmulatorHandle::min_client_version`), so a client that fetches it is
/// accepted, as one fetching the live file is by WhatsApp; it follows
/// `set_min_client_version`. The shape is the live file's: JSON inside a JS string literal
/// (`self.__swData=JSON.parse("{\"client_revision\":…}")`), which all three parse.
async fn sw_js(State(shared): State<Arc<Shared>>) -> Response {
    let [_, _, revision] = shared.world().min_client_version;
    let body = format!(
        r#"self.__swData=JSON.parse("{{\"SiteData\":{{\"server_revision\":{revision},\"client_revision\":{revision}}}}}");"#
    );
    ([(axum::http::header::CONTENT_TYPE, "text/javascript; charset=utf-8")], body).into_response()
}

/// The largest media upload accepted (axum's default body limit is 2 MiB; WhatsApp allows
/// documents of up to 2 GB, which an in-memory emulator does not need).
const MAX_MEDIA_BYTES: usize = 64 << 20;

/// The media endpoints alone, for the HTTPS listener.
pub(crate) fn media_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/mms/{kind}/{token}", post(media_upload))
        .route("/m/{kind}/{file}", get(media_download))
        .layer(DefaultBodyLimit::max(MAX_MEDIA_BYTES))
        .with_state(shared)
}

async fn ws_handler(State(shared): State<Arc<Shared>>, headers: HeaderMap, ws: WebSocketUpgrade) -> Response {
    if shared.require_origin && !headers.contains_key("origin") {
        return (StatusCode::FORBIDDEN, "the Origin header is required").into_response();
    }
    // tungstenite's default 128 KiB read buffer per socket dominates idle memory; frames
    // are small, so start small (it still grows for large messages).
    ws.max_message_size(32 << 20)
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .on_upgrade(move |socket| run_connection(socket, shared))
}

#[derive(Default)]
struct Faults {
    delay: Option<Duration>,
    drop: (u32, Option<String>),
    corrupt: (u32, Option<String>),
}

/// Consumes one use of a counted fault if it applies to a stanza with `tag`.
fn take(fault: &mut (u32, Option<String>), tag: &str) -> bool {
    if fault.0 > 0 && fault.1.as_deref().is_none_or(|t| t == tag) {
        fault.0 -= 1;
        return true;
    }
    false
}

async fn run_connection(socket: WebSocket, shared: Arc<Shared>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let conn = shared.world().connect(tx);
    let mut session = ServerSession::new(shared.responder.clone());
    let (mut sink, mut stream) = socket.split();
    let mut faults = Faults::default();
    loop {
        tokio::select! {
            incoming = stream.next() => {
                let data = match incoming {
                    Some(Ok(WsMessage::Binary(b))) => b,
                    Some(Ok(WsMessage::Text(t))) => Bytes::from(t.as_str().as_bytes().to_vec()),
                    Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
                    Some(Ok(WsMessage::Close(_))) => {
                        // Completes the client-initiated close handshake (sends our Close).
                        let _ = sink.close().await;
                        break;
                    }
                    None | Some(Err(_)) => break,
                };
                let events = {
                    let mut w = shared.world();
                    session.receive(&data, &mut w.rng)
                };
                let events = match events {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::info!(conn, error = %e, "dropping connection");
                        break;
                    }
                };
                let mut failed = false;
                for ev in events {
                    match ev {
                        SessionEvent::Send(bytes) => {
                            if sink.send(WsMessage::Binary(bytes.into())).await.is_err() {
                                failed = true;
                            }
                        }
                        SessionEvent::Handshaken(finished) => {
                            tracing::debug!(conn, pattern = ?session.pattern(), "noise handshake done");
                            let mut w = shared.world();
                            if let Some(ri) = session.routing_info() {
                                w.on_intro_routing(conn, ri);
                            }
                            w.on_handshake(conn, &finished)
                        }
                        SessionEvent::Node(node) => shared.world().on_node(conn, *node),
                    }
                }
                if failed {
                    break;
                }
            }
            cmd = rx.recv() => {
                match cmd {
                    Some(ConnCommand::Node(node)) => {
                        if take(&mut faults.drop, &node.tag) {
                            tracing::debug!(conn, tag = %node.tag, "fault: dropping stanza");
                            continue;
                        }
                        let mut frame = match session.encrypt_node(&node) {
                            Ok(f) => f,
                            Err(e) => {
                                tracing::warn!(conn, error = %e, "cannot send node");
                                continue;
                            }
                        };
                        if take(&mut faults.corrupt, &node.tag)
                            && let Some(last) = frame.last_mut()
                        {
                            *last ^= 0x5A;
                        }
                        if let Some(d) = faults.delay {
                            tokio::time::sleep(d).await;
                        }
                        if sink.send(WsMessage::Binary(frame.into())).await.is_err() {
                            break;
                        }
                    }
                    Some(ConnCommand::Fault(f)) => match f {
                        Fault::DelayFrames(d) => faults.delay = (!d.is_zero()).then_some(d),
                        Fault::DropStanzas { count, only_tag } => faults.drop = (count, only_tag),
                        Fault::CorruptFrames { count, only_tag } => faults.corrupt = (count, only_tag),
                    },
                    Some(ConnCommand::Close) | None => {
                        let _ = sink.close().await;
                        shared.world().disconnect(conn);
                        drain_until_closed(&mut stream).await;
                        return;
                    }
                }
            }
        }
    }
    shared.world().disconnect(conn);
}

/// How long a closing connection waits for the client's half of the close handshake.
const CLOSE_GRACE: Duration = Duration::from_secs(30);

/// The server's half of a graceful close: after our Close frame, keep reading (and
/// discarding) until the client's Close frame or end of stream. Dropping a socket while
/// the client's bytes sit unread in the kernel makes it answer with a TCP RST, and an RST
/// throws away whatever the client had not yet read, such as the `<stream:error>` sent just
/// before the close. Under load, Baileys then saw a bare close (428) instead of the 515
/// after pairing, because its post-pairing telemetry and acks were still in flight.
async fn drain_until_closed(stream: &mut futures::stream::SplitStream<WebSocket>) {
    let drain = async {
        while let Some(Ok(msg)) = stream.next().await {
            if matches!(msg, WsMessage::Close(_)) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, drain).await;
}

#[derive(serde::Deserialize)]
struct UploadQuery {
    auth: Option<String>,
}

async fn media_upload(
    State(shared): State<Arc<Shared>>,
    Path((kind, token)): Path<(String, String)>,
    Query(q): Query<UploadQuery>,
    body: Bytes,
) -> Response {
    let mut w = shared.world();
    if q.auth.as_deref() != Some(w.media_auth.as_str()) {
        return (StatusCode::UNAUTHORIZED, "bad or missing media auth token").into_response();
    }
    let (direct_path, url) = w.store_media(&kind, &token, body.to_vec());
    axum::Json(serde_json::json!({ "url": url, "direct_path": direct_path })).into_response()
}

async fn media_download(
    State(shared): State<Arc<Shared>>,
    Path((kind, file)): Path<(String, String)>,
) -> Response {
    let w = shared.world();
    match w.media_download(&format!("/m/{kind}/{file}")) {
        MediaFetch::Found(blob) => (StatusCode::OK, blob).into_response(),
        MediaFetch::Expired => (StatusCode::GONE, "media expired").into_response(),
        MediaFetch::Missing => (StatusCode::NOT_FOUND, "no such media").into_response(),
    }
}
