//! A per-account proxy: an account created with an HTTP CONNECT proxy reaches the emulator
//! through it (the proxy sees the CONNECT with the account's credentials) and links, sends and
//! receives; a proxy nobody answers on leaves the account with a clear error naming the proxy;
//! SOCKS and malformed URLs are refused; the password never appears in an API answer nor in
//! the logs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/harness.rs"]
mod harness;
#[path = "common/ws.rs"]
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use ws::{next_ws, open_ws};

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use harness::{Running, T, call};

const PASSWORD: &str = "s3cr3t-Pr0xy-pw";

/// What the server logs (everything from DEBUG up), in memory.
#[derive(Clone, Default)]
struct LogCapture(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A tiny HTTP CONNECT proxy on loopback: each tunnel's request head goes to the channel, then
/// the bytes are relayed both ways.
async fn connect_proxy() -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                    let Ok(b) = client.read_u8().await else { return };
                    head.push(b);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let target = head.split_whitespace().nth(1).unwrap_or_default().to_owned();
                let _ = tx.send(head);
                let Ok(mut upstream) = tokio::net::TcpStream::connect(&target).await else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                if client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
    (addr, rx)
}

/// [`call`], checking the answer never holds the password.
async fn api(srv: &Running, method: &str, path: &str, key: &str, body: Option<Value>) -> (u16, Value) {
    let (s, v) = call(srv.addr, method, path, key, body).await;
    assert!(!v.to_string().contains(PASSWORD), "the proxy password in an answer to {method} {path}: {v}");
    (s, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_connects_through_its_proxy_and_its_password_never_shows() {
    let logs = LogCapture::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let srv = Running::start(1818).await;
    let key = srv.tenant("shop").await;
    let (proxy, mut tunnels) = connect_proxy().await;
    let proxy_url = format!("http://alice:{PASSWORD}@{proxy}");

    let (s, v) = api(
        &srv,
        "POST",
        "/api/v1/accounts",
        &key,
        Some(json!({ "name": "Behind a proxy", "phone": "+15550001818", "proxy": proxy_url })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["proxy"], format!("http://alice:***@{proxy}"), "{v}");
    let acc = v["id"].as_str().unwrap().to_owned();
    let (_, list) = api(&srv, "GET", "/api/v1/accounts", &key, None).await;
    assert_eq!(list[0]["proxy"], format!("http://alice:***@{proxy}"), "{list}");

    // Connecting goes through the proxy, with the account's credentials.
    let mut ws = open_ws(srv.addr, &key).await;
    let (s, v) = api(&srv, "POST", &format!("/api/v1/accounts/{acc}/connect"), &key, None).await;
    assert_eq!((s, v["state"].as_str()), (202, Some("qr_ready")), "{v}");
    let head = tokio::time::timeout(T, tunnels.recv()).await.expect("the proxy saw a tunnel").unwrap();
    let emulator = srv.emu.local_addr();
    assert!(head.starts_with(&format!("CONNECT {emulator} HTTP/1.1\r\n")), "{head}");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("alice:{PASSWORD}"));
    assert!(head.contains(&format!("Proxy-Authorization: Basic {basic}\r\n")), "{head}");
    let (s, v) = api(&srv, "POST", &format!("/api/v1/emulator/accounts/{acc}/scan"), &key, None).await;
    assert_eq!(s, 200, "{v}");
    next_ws(&mut ws, "active", |v| {
        v["event"] == "connection_update"
            && v["data"]["account_id"] == acc.as_str()
            && v["data"]["state"] == "active"
    })
    .await;
    let bob = srv.emu.create_account("15550002818", "Bob").unwrap();
    let (s, v) = api(
        &srv,
        "POST",
        &format!("/api/v1/accounts/{acc}/messages"),
        &key,
        Some(json!({ "to": "+15550002818", "text": "via the proxy" })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let wa_id = v["wa_message_id"].as_str().unwrap().to_owned();
    assert!(bob.wait_message(T, |m| m.id == wa_id).await.is_some(), "Bob received it");
    let me: wa_client::Jid = "15550001818@s.whatsapp.net".parse().unwrap();
    let reply = bob.send_text(&me, "got it").unwrap();
    next_ws(&mut ws, "Bob's answer", |v| {
        v["event"] == "incoming_message" && v["data"]["wa_message_id"] == reply.as_str()
    })
    .await;

    // What wa-client cannot tunnel through is refused, without repeating the URL.
    let patch = |proxy: Value| Some(json!({ "proxy": proxy }));
    let path = format!("/api/v1/accounts/{acc}");
    let (s, v) =
        api(&srv, "PATCH", &path, &key, patch(json!(format!("socks5://alice:{PASSWORD}@{proxy}")))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (422, Some("proxy_scheme_unsupported")), "{v}");
    let (s, v) =
        api(&srv, "PATCH", &path, &key, patch(json!(format!("http://alice:{PASSWORD}@{proxy}/x")))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_proxy")), "{v}");
    let (_, v) = api(&srv, "GET", &path, &key, None).await;
    assert_eq!(v["proxy"], format!("http://alice:***@{proxy}"), "unchanged: {v}");

    // A proxy nobody answers on: the next connection fails with an error naming it.
    let dead = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let (s, v) =
        api(&srv, "PATCH", &path, &key, patch(json!(format!("http://alice:{PASSWORD}@{dead}")))).await;
    assert_eq!((s, v["proxy"].as_str()), (200, Some(format!("http://alice:***@{dead}").as_str())), "{v}");
    let (s, v) = api(&srv, "POST", &format!("/api/v1/accounts/{acc}/disconnect"), &key, None).await;
    assert!(s < 300, "{s} {v}");
    let (s, v) = api(&srv, "POST", &format!("/api/v1/accounts/{acc}/connect"), &key, None).await;
    assert!(s == 202 || s == 503, "{s} {v}");
    let ev = next_ws(&mut ws, "the proxy error", |v| {
        v["event"] == "connection_update"
            && v["data"]["account_id"] == acc.as_str()
            && v["data"]["reason"].as_str().is_some_and(|r| r.contains(&dead.to_string()))
    })
    .await;
    let reason = ev["data"]["reason"].as_str().unwrap();
    assert!(reason.contains("proxy"), "{reason}");
    let (_, v) = api(&srv, "GET", &path, &key, None).await;
    assert!(v["state_reason"].as_str().is_some_and(|r| r.contains("proxy")), "{v}");
    assert!(matches!(v["state"].as_str(), Some("reconnecting" | "error")), "{v}");

    // Back to direct.
    let (s, v) = api(&srv, "PATCH", &path, &key, patch(Value::Null)).await;
    assert_eq!((s, &v["proxy"]), (200, &Value::Null), "{v}");
    drop(ws);
    srv.stop().await;

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains(&dead.to_string()), "the logs name the failing proxy");
    assert!(!text.contains(PASSWORD), "the proxy password in the logs");
    assert!(!text.contains(&basic), "the proxy credentials in the logs");
}
