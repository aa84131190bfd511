//! One live connection: the WebSocket, the Noise handshake driven through wa-noise's
//! sans-I/O state, a writer task, a reader task that resolves IQ responses by id, and
//! the channel of every other incoming stanza.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::Message as WsMessage;
use tracing::{debug, trace};
use wa_binary::{Jid, Node, Server};
use wa_crypto::{KeyPair, PublicKey};
use wa_noise::{
    CertVerifier, ConnectionHeader, FrameDecoder, FrameReceiver, FrameSender, Initiator, InitiatorConfig,
};

use crate::error::{Error, Result};

/// What the lifecycle needs to open a connection.
pub(crate) struct ConnectParams<'a> {
    pub url: &'a str,
    pub root_key: PublicKey,
    pub noise_key: KeyPair,
    pub ephemeral: KeyPair,
    pub client_payload: Vec<u8>,
    pub now_unix: u64,
    pub routing_info: Option<Vec<u8>>,
    pub handshake_timeout: Duration,
    pub proxy: Option<&'a crate::proxy::Proxy>,
}

/// An incoming stanza, or the end of the connection.
///
/// The node is boxed: tokio's unbounded channel allocates its slots 32 at a time, so an
/// inline `Node` (close to 300 bytes) would cost every idle connection about 9 KiB of
/// queue, while the box is one small allocation next to the many of decoding the stanza.
#[derive(Debug)]
pub(crate) enum Incoming {
    Node(Box<Node>),
    Closed(String),
}

enum Outgoing {
    /// An encoded stanza; large byte contents are referenced, not copied, and are
    /// gathered once into the encrypted frame by the writer.
    Frame(wa_binary::EncodedFrame),
    Close,
}

type Pending = Mutex<HashMap<String, oneshot::Sender<Node>>>;

/// Numbers connections across every client of the process.
static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// Handle to a live connection; cheap to clone.
#[derive(Clone)]
pub(crate) struct Connection {
    inner: Arc<Inner>,
}

struct Inner {
    out: mpsc::UnboundedSender<Outgoing>,
    pending: Arc<Pending>,
    /// Process-unique number of this connection.
    number: u64,
    id_prefix: String,
    counter: AtomicU64,
    closed: Arc<AtomicBool>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("id_prefix", &self.inner.id_prefix).finish_non_exhaustive()
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_frame(ws: &mut Ws, frames: &mut FrameDecoder) -> Result<BytesMut> {
    loop {
        if let Some(frame) = frames.next_frame()? {
            return Ok(frame);
        }
        match ws.next().await {
            Some(Ok(WsMessage::Binary(b))) => frames.push(&b),
            Some(Ok(WsMessage::Close(_))) | None => {
                return Err(Error::WebSocket("closed during handshake".into()));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(Error::WebSocket(e.to_string())),
        }
    }
}

/// WebSocket settings: tungstenite zero-fills its whole read buffer (128 KiB by default) on
/// the first read, which would make it most of an idle client's memory. WhatsApp frames are
/// small; larger ones still arrive (the buffer grows for them).
fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(0)
}

/// Bytes tungstenite reads from the socket at a time.
const WS_READ_BUFFER: usize = 4 * 1024;

type WsResult = std::result::Result<
    (Ws, tokio_tungstenite::tungstenite::handshake::client::Response),
    tokio_tungstenite::tungstenite::Error,
>;

/// The WebSocket handshake over an already open (proxied) TCP stream.
async fn ws_over(
    request: tokio_tungstenite::tungstenite::handshake::client::Request,
    tcp: tokio::net::TcpStream,
    wss: bool,
) -> WsResult {
    #[cfg(feature = "tls")]
    if wss {
        return tokio_tungstenite::client_async_tls_with_config(request, tcp, Some(ws_config()), None).await;
    }
    #[cfg(not(feature = "tls"))]
    if wss {
        return Err(tokio_tungstenite::tungstenite::Error::Url(
            tokio_tungstenite::tungstenite::error::UrlError::TlsFeatureNotEnabled,
        ));
    }
    tokio_tungstenite::client_async_with_config(
        request,
        tokio_tungstenite::MaybeTlsStream::Plain(tcp),
        Some(ws_config()),
    )
    .await
}

impl Connection {
    /// Opens the WebSocket, runs the handshake, and starts the reader and writer tasks.
    pub(crate) async fn open(
        params: ConnectParams<'_>,
        id_prefix: String,
    ) -> Result<(Connection, mpsc::UnboundedReceiver<Incoming>)> {
        let timeout = params.handshake_timeout;
        tokio::time::timeout(timeout, Self::open_inner(params, id_prefix))
            .await
            .map_err(|_| Error::Timeout { what: "connect and handshake".into(), after: timeout })?
    }

    async fn open_inner(
        params: ConnectParams<'_>,
        id_prefix: String,
    ) -> Result<(Connection, mpsc::UnboundedReceiver<Incoming>)> {
        let mut request = params
            .url
            .into_client_request()
            .map_err(|e| Error::InvalidInput(format!("url {}: {e}", params.url)))?;
        request.headers_mut().insert("Origin", HeaderValue::from_static("https://web.whatsapp.com"));
        let (mut ws, _) = match params.proxy {
            None => tokio_tungstenite::connect_async_with_config(request, Some(ws_config()), true).await,
            Some(proxy) => {
                let uri = request.uri();
                let wss = uri.scheme_str() == Some("wss");
                let host =
                    uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
                let port = uri.port_u16().unwrap_or(if wss { 443 } else { 80 });
                let tcp = proxy.tunnel(&host, port).await?;
                ws_over(request, tcp, wss).await
            }
        }
        .map_err(|e| Error::WebSocket(e.to_string()))?;

        let mut header = ConnectionHeader::new();
        if let Some(ri) = params.routing_info {
            header = header.with_routing_info(ri)?;
        }
        let config = InitiatorConfig {
            header,
            static_key: params.noise_key,
            verifier: CertVerifier::new(params.root_key),
        };
        let mut out = Vec::with_capacity(64);
        let hs = Initiator::new(config, params.ephemeral).write_client_hello(&mut out)?;
        ws.send(WsMessage::Binary(out.into())).await.map_err(|e| Error::WebSocket(e.to_string()))?;
        let mut frames = FrameDecoder::client();
        let hello = next_frame(&mut ws, &mut frames).await?;
        let hs = hs.read_server_hello(&hello, params.now_unix)?;
        let mut out = Vec::with_capacity(params.client_payload.len() + 128);
        let transport = hs.write_client_finish(&params.client_payload, &mut out)?;
        ws.send(WsMessage::Binary(out.into())).await.map_err(|e| Error::WebSocket(e.to_string()))?;
        let (sender, receiver) = transport.split();

        let (sink, stream) = ws.split();
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let pending: Arc<Pending> = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        tokio::spawn(writer(sink, sender, out_rx, in_tx.clone(), closed.clone()));
        tokio::spawn(reader(stream, frames, receiver, in_tx, pending.clone(), closed.clone()));
        let number = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
        let inner = Inner { out: out_tx, pending, number, id_prefix, counter: AtomicU64::new(1), closed };
        Ok((Connection { inner: Arc::new(inner) }, in_rx))
    }

    /// A fresh request id.
    pub(crate) fn next_id(&self) -> String {
        let n = self.inner.counter.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.inner.id_prefix)
    }

    /// This connection's process-unique number (what tells a stanza's connection apart from a
    /// later one of the same client).
    pub(crate) fn number(&self) -> u64 {
        self.inner.number
    }

    /// Whether the connection has ended.
    pub(crate) fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// Sends a stanza.
    pub(crate) fn send(&self, node: &Node) -> Result<()> {
        trace!(node = %NodeDisplay(node), "send");
        let frame = wa_binary::encode_frame(node)?;
        self.inner.out.send(Outgoing::Frame(frame)).map_err(|_| Error::NotConnected)
    }

    /// Sends an IQ (adding an id if it has none) and waits for the result; an
    /// `type="error"` reply becomes [`Error::Iq`].
    pub(crate) async fn iq(&self, mut node: Node, timeout: Duration) -> Result<Node> {
        let id = match node.opt_attr_str("id") {
            Some(id) => id.into_owned(),
            None => {
                let id = self.next_id();
                node.set_attr("id", id.as_str());
                id
            }
        };
        let what = format!(
            "iq {} {}",
            node.opt_attr_str("xmlns").unwrap_or_default(),
            node.child_nodes().first().map(|c| c.tag.as_str()).unwrap_or("")
        );
        let (tx, rx) = oneshot::channel();
        lock(&self.inner.pending).insert(id.clone(), tx);
        if let Err(e) = self.send(&node) {
            lock(&self.inner.pending).remove(&id);
            return Err(e);
        }
        let reply = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => return Err(Error::NotConnected),
            Err(_) => {
                lock(&self.inner.pending).remove(&id);
                return Err(Error::Timeout { what, after: timeout });
            }
        };
        if reply.opt_attr_str("type").as_deref() == Some("error") {
            let err = reply.child("error");
            let code = err.and_then(|e| e.opt_attr_str("code")).and_then(|c| c.parse().ok()).unwrap_or(0);
            let text = err.and_then(|e| e.opt_attr_str("text")).map(|t| t.into_owned()).unwrap_or_default();
            return Err(Error::Iq { what, code, text });
        }
        Ok(reply)
    }

    /// Closes the connection (the reader then reports `Closed`).
    pub(crate) fn close(&self) {
        let _ = self.inner.out.send(Outgoing::Close);
    }
}

fn lock(p: &Pending) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Node>>> {
    p.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What a transport frame adds to its plaintext: the 3-byte length and the 16-byte tag.
const FRAME_OVERHEAD: usize = 3 + 16;

async fn writer(
    mut sink: futures::stream::SplitSink<Ws, WsMessage>,
    mut sender: FrameSender,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    events: mpsc::UnboundedSender<Incoming>,
    closed: Arc<AtomicBool>,
) {
    let mut buf: Vec<u8> = Vec::new();
    while let Some(item) = rx.recv().await {
        match item {
            Outgoing::Frame(plain) => {
                buf.clear();
                // Room for the whole frame up front: a buffer grown while the gather or
                // the tag is appended would copy a large payload once more.
                buf.reserve(FRAME_OVERHEAD + plain.len());
                if let Err(e) = sender.encrypt_frame_buf(plain, &mut buf) {
                    let _ = events.send(Incoming::Closed(format!("encrypt: {e}")));
                    break;
                }
                // Coalesce frames queued meanwhile into one WebSocket message; a close
                // queued behind them is carried out once they are written.
                let mut close_after = false;
                let mut failed = None;
                loop {
                    match rx.try_recv() {
                        Ok(Outgoing::Frame(more)) => {
                            buf.reserve(FRAME_OVERHEAD + more.len());
                            if let Err(e) = sender.encrypt_frame_buf(more, &mut buf) {
                                failed = Some(format!("encrypt: {e}"));
                                break;
                            }
                        }
                        Ok(Outgoing::Close) => {
                            close_after = true;
                            break;
                        }
                        Err(_) => break,
                    }
                }
                if let Err(e) = sink.send(WsMessage::Binary(std::mem::take(&mut buf).into())).await {
                    let _ = events.send(Incoming::Closed(format!("write: {e}")));
                    break;
                }
                if let Some(reason) = failed {
                    let _ = events.send(Incoming::Closed(reason));
                    break;
                }
                if close_after {
                    close_by_client(&mut sink, &events).await;
                    break;
                }
            }
            Outgoing::Close => {
                close_by_client(&mut sink, &events).await;
                break;
            }
        }
    }
    closed.store(true, Ordering::Release);
}

async fn close_by_client(
    sink: &mut futures::stream::SplitSink<Ws, WsMessage>,
    events: &mpsc::UnboundedSender<Incoming>,
) {
    let _ = sink.send(WsMessage::Close(None)).await;
    let _ = sink.close().await;
    let _ = events.send(Incoming::Closed("closed by client".into()));
}

async fn reader(
    mut stream: futures::stream::SplitStream<Ws>,
    mut frames: FrameDecoder,
    mut receiver: FrameReceiver,
    events: mpsc::UnboundedSender<Incoming>,
    pending: Arc<Pending>,
    closed: Arc<AtomicBool>,
) {
    let reason = 'outer: loop {
        loop {
            match frames.next_frame() {
                Ok(Some(frame)) => {
                    let plain = match receiver.decrypt_frame(frame) {
                        Ok(p) => p,
                        Err(e) => break 'outer format!("decrypt: {e}"),
                    };
                    let node = match wa_binary::decode_frame(&plain) {
                        Ok(n) => n,
                        Err(e) => break 'outer format!("decode: {e}"),
                    };
                    trace!(node = %NodeDisplay(&node), "recv");
                    if node.tag == "iq"
                        && matches!(node.opt_attr_str("type").as_deref(), Some("result" | "error"))
                        && let Some(id) = node.opt_attr_str("id")
                        && let Some(waiter) = lock(&pending).remove(id.as_ref())
                    {
                        let _ = waiter.send(node);
                        continue;
                    }
                    if events.send(Incoming::Node(Box::new(node))).is_err() {
                        break 'outer "handler gone".into();
                    }
                }
                Ok(None) => break,
                Err(e) => break 'outer format!("frame: {e}"),
            }
        }
        match stream.next().await {
            Some(Ok(WsMessage::Binary(b))) => frames.push(&b),
            Some(Ok(WsMessage::Close(f))) => break format!("closed by server: {f:?}"),
            None => break "socket closed".into(),
            Some(Ok(_)) => {}
            Some(Err(e)) => break format!("read: {e}"),
        }
    };
    debug!(%reason, "connection reader ended");
    closed.store(true, Ordering::Release);
    // Fail every waiting IQ now rather than at its timeout.
    lock(&pending).clear();
    let _ = events.send(Incoming::Closed(reason));
}

/// `s.whatsapp.net`, the server's own JID.
pub(crate) fn server_jid() -> Jid {
    Jid::server_jid(Server::Pn)
}

/// Renders a node for traces without dumping binary payloads.
pub(crate) struct NodeDisplay<'a>(pub &'a Node);

impl std::fmt::Display for NodeDisplay<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0;
        write!(f, "<{}", n.tag)?;
        for a in &n.attrs {
            write!(f, " {}=\"{}\"", a.key, a.value)?;
        }
        match &n.content {
            wa_binary::Content::Children(c) => {
                write!(f, ">")?;
                for child in c {
                    write!(f, "{}", NodeDisplay(child))?;
                }
                write!(f, "</{}>", n.tag)
            }
            wa_binary::Content::Bytes(b) => write!(f, ">[{} bytes]</{}>", b.len(), n.tag),
            wa_binary::Content::Str(s) => write!(f, ">{s}</{}>", n.tag),
            wa_binary::Content::Jid(j) => write!(f, ">{j}</{}>", n.tag),
            wa_binary::Content::None => write!(f, "/>"),
        }
    }
}
