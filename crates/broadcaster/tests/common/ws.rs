//! The live-events WebSocket of a running server, for tests: open one with a key, wait for an
//! event.

// Shared by several test binaries; each uses a part.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt as _;
use serde_json::Value;

/// Generous: CI runs on two loaded cores.
const T: Duration = Duration::from_secs(60);

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/api/v1/events/ws` with `key` and waits for its `ready` event.
pub async fn open_ws(addr: SocketAddr, key: &str) -> Ws {
    let url = format!("ws://{addr}/api/v1/events/ws?api_key={key}");
    let (mut ws, _) = tokio::time::timeout(T, tokio_tungstenite::connect_async(url)).await.unwrap().unwrap();
    let ready = next_ws(&mut ws, "ready", |v| v["event"] == "ready").await;
    assert_eq!(ready["event"], "ready");
    ws
}

/// The next event on `ws` that `f` accepts (`what` names it in the timeout's panic).
pub async fn next_ws(ws: &mut Ws, what: &str, f: impl FnMut(&Value) -> bool) -> Value {
    next_ws_within(ws, T, what, f).await
}

/// [`next_ws`] waiting up to `within`.
pub async fn next_ws_within(
    ws: &mut Ws,
    within: Duration,
    what: &str,
    mut f: impl FnMut(&Value) -> bool,
) -> Value {
    tokio::time::timeout(within, async {
        loop {
            let msg = ws.next().await.expect("websocket open").expect("websocket frame");
            if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if f(&v) {
                    return v;
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what} on the websocket"))
}
