//! End to end through the HTTP API only, against an in-process wa-emulator: create account →
//! connect → the simulated phone scans the QR → active → send text → the phone receives it →
//! status reaches read → the phone replies → the reply is in history, on the WebSocket, on a
//! Socket.IO client (npm `socket.io-client`) and at a webhook receiver with a valid signature →
//! restart the server → active again without pairing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/harness.rs"]
mod harness;
#[path = "common/linking.rs"]
mod linking;
#[path = "common/process.rs"]
mod process;
#[path = "common/socketio.rs"]
mod socketio;
#[path = "common/testdb.rs"]
mod testdb;
#[path = "common/tls.rs"]
mod tls;
#[path = "common/ws.rs"]
mod ws;

/// SQLite here; `e2e_pg.rs` runs these tests with `DATABASE_URL` on PostgreSQL.
#[allow(dead_code)]
const TEST_ON_POSTGRES: bool = false;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use ws::{Ws, next_ws, open_ws};

use broadcaster::auth::Bootstrap;
use broadcaster::config::{Cli, Config};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use wa_emulator::{Emulator, EmulatorConfig, EmulatorHandle};

use harness::{call, form, form_type};

/// Generous: CI runs on two loaded cores.
const T: Duration = Duration::from_secs(60);

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(T, self.task).await.expect("server stopped").unwrap();
    }
}

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config::resolve(Cli::default()).unwrap();
    c.data_dir = dir.to_owned();
    c.database_url =
        testdb::database_url_for(dir).map(|u| broadcaster::config::DatabaseUrl::parse(&u).unwrap());
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.emulator = true;
    c.shutdown_timeout = Duration::from_secs(20);
    // The tests' webhook receivers listen on loopback.
    c.outbound.test_loopback = broadcaster::outbound::TestLoopback::AnyPort;
    c.webhook.base_delay_ms = 50;
    c.webhook.max_delay_ms = 200;
    c
}

async fn start(
    dir: &std::path::Path,
    emu: &Arc<EmulatorHandle>,
    admin: Option<String>,
) -> (Running, Option<String>) {
    start_with(dir, emu, admin, |_| {}).await
}

async fn start_with(
    dir: &std::path::Path,
    emu: &Arc<EmulatorHandle>,
    admin: Option<String>,
    tweak: impl FnOnce(&mut Config),
) -> (Running, Option<String>) {
    let mut config = config(dir);
    tweak(&mut config);
    let (db, boot) = broadcaster::open_database(&config, admin).await.unwrap();
    let key = match boot {
        Bootstrap::Generated(k) => Some(k),
        _ => None,
    };
    let server = broadcaster::build_server_with(&config, db, Some(emu.clone())).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        broadcaster::serve_with(&config, server, listener, async move {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    (Running { addr, stop: Some(tx), task }, key)
}

/// A webhook receiver: every POST's headers and body, answered 200.
async fn webhook_receiver() -> (SocketAddr, mpsc::UnboundedReceiver<(axum::http::HeaderMap, Bytes)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |h: axum::http::HeaderMap, b: Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((h, b));
                axum::http::StatusCode::OK
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_send_read_reply_webhook_and_resume_after_restart() {
    let emu =
        Arc::new(Emulator::start(EmulatorConfig { seed: Some(7), ..Default::default() }).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let (srv, admin) = start(dir.path(), &emu, None).await;
    let admin = admin.expect("a generated admin key");
    let a = srv.addr;

    // A tenant with its own manager key.
    let (s, v) = call(a, "POST", "/api/v1/tenants", &admin, Some(json!({ "name": "shop" }))).await;
    assert_eq!(s, 201, "{v}");
    let key = v["api_key"]["key"].as_str().unwrap().to_owned();

    let (hook_addr, mut hooks) = webhook_receiver().await;
    let (s, v) = call(
        a,
        "POST",
        "/api/v1/webhooks",
        &key,
        Some(json!({ "url": format!("http://{hook_addr}/hook"), "events": ["incoming_message"] })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let secret = v["secret"].as_str().unwrap().to_owned();

    let (s, v) = call(
        a,
        "POST",
        "/api/v1/accounts",
        &key,
        Some(json!({ "name": "Support", "phone": "+1 555 000 1111" })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let acc = v["id"].as_str().unwrap().to_owned();
    let mut ws = open_ws(a, &key).await;
    // A front-end written for the seed's Socket.IO server: authenticate, subscribe to the channel.
    let mut sio = socketio::SioClient::spawn(a, None).await;
    sio.next("connect", |v| v["event"] == "connect").await;
    sio.emit("authenticate", json!({ "apiKey": key })).await;
    sio.event("authenticated", |_| true).await;
    sio.emit("subscribe_channel", json!({ "channelId": acc })).await;
    sio.event("subscribed", |d| d["channelId"] == acc.as_str()).await;

    // Connect: the answer carries the QR (text and PNG).
    let (s, v) = call(a, "POST", &format!("/api/v1/accounts/{acc}/connect"), &key, None).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["state"], "qr_ready", "{v}");
    let qr = v["link"]["qr"].as_str().unwrap().to_owned();
    assert!(v["link"]["qr_png"].as_str().unwrap().starts_with("data:image/png;base64,"));
    let (s, v) = call(a, "GET", &format!("/api/v1/accounts/{acc}/qr"), &key, None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["qr"], qr.as_str());

    // The simulated phone scans it (the emulator-only endpoint the offline demo uses).
    let (s, v) = call(a, "POST", &format!("/api/v1/emulator/accounts/{acc}/scan"), &key, None).await;
    assert_eq!(s, 200, "{v}");
    next_ws(&mut ws, "active", |v| v["event"] == "connection_update" && v["data"]["state"] == "active").await;
    let (_, v) = call(a, "GET", &format!("/api/v1/accounts/{acc}"), &key, None).await;
    assert_eq!(v["state"], "active");
    assert_eq!(v["phone"], "+15550001111");

    // Is-on-WhatsApp.
    let bob = emu.create_account("15550002222", "Bob").unwrap();
    let (s, v) = call(
        a,
        "POST",
        &format!("/api/v1/accounts/{acc}/check-numbers"),
        &key,
        Some(json!({ "phones": ["+15550002222", "+15550009999", "+1 555 CALL NOW"] })),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v[0]["on_whatsapp"], true, "{v}");
    assert_eq!(v[1]["on_whatsapp"], false, "{v}");
    // One entry that is no phone number answers for itself; the others are still checked.
    assert_eq!(
        (v[2]["input"].as_str(), v[2]["phone"].as_str(), v[2]["error"]["code"].as_str()),
        (Some("+1 555 CALL NOW"), None, Some("invalid_phone")),
        "{v}"
    );
    assert!(v[0]["error"].is_null() && v[0]["phone"] == "+15550002222", "{v}");

    // A number without WhatsApp: 422, and no failed row is kept (a repeat piles nothing up).
    for _ in 0..2 {
        let (s, v) = call(
            a,
            "POST",
            &format!("/api/v1/accounts/{acc}/messages"),
            &key,
            Some(json!({ "to": "+15550009999", "text": "anyone there?" })),
        )
        .await;
        assert_eq!((s, v["error"]["code"].as_str()), (422, Some("not_on_whatsapp")), "{v}");
    }
    let (_, page) = call(a, "GET", &format!("/api/v1/accounts/{acc}/messages"), &key, None).await;
    assert_eq!(page["messages"], json!([]), "{page}");

    // Send a text; Bob's phone receives it.
    let (s, sent) = call(
        a,
        "POST",
        &format!("/api/v1/accounts/{acc}/messages"),
        &key,
        Some(json!({ "to": "+1 555 000 2222", "text": "hello Bob" })),
    )
    .await;
    assert_eq!(s, 201, "{sent}");
    // Bob's delivery receipt may already be recorded when the send's outcome is.
    assert!(matches!(sent["status"].as_str(), Some("sent" | "delivered")), "{sent}");
    let msg_id = sent["id"].as_str().unwrap().to_owned();
    let wa_id = sent["wa_message_id"].as_str().unwrap().to_owned();
    let got = bob.wait_message(T, |m| m.id == wa_id).await.expect("Bob received the message");
    assert_eq!(got.text.as_deref(), Some("hello Bob"));

    // Bob reads it: the status reaches read.
    bob.mark_read(std::slice::from_ref(&wa_id)).unwrap();
    next_ws(&mut ws, "read status", |v| {
        v["event"] == "message_status_update"
            && v["data"]["message_id"] == msg_id.as_str()
            && v["data"]["status"] == "read"
    })
    .await;
    let (_, v) = call(a, "GET", &format!("/api/v1/accounts/{acc}/messages/{msg_id}"), &key, None).await;
    assert_eq!(v["status"], "read", "{v}");
    assert!(v["read_at"].is_i64() && v["delivered_at"].is_i64(), "{v}");

    // Bob replies: on the WebSocket, in history, and at the webhook with a valid signature.
    let me: wa_client::Jid = "15550001111@s.whatsapp.net".parse().unwrap();
    let reply_id = bob.send_text(&me, "thanks!").unwrap();
    let ev = next_ws(&mut ws, "incoming reply", |v| {
        v["event"] == "incoming_message" && v["data"]["wa_message_id"] == reply_id.as_str()
    })
    .await;
    assert_eq!(ev["data"]["body"], "thanks!");
    assert_eq!(ev["data"]["sender_phone"], "+15550002222");
    let m = sio.event("incoming_message", |d| d["waMessageId"] == reply_id.as_str()).await;
    assert_eq!(
        (m["channelId"].as_str(), m["message"].as_str(), m["from"].as_str(), m["type"].as_str()),
        (Some(acc.as_str()), Some("thanks!"), Some("15550002222@s.whatsapp.net"), Some("incoming")),
        "{m}"
    );
    sio.close().await;
    let (s, page) =
        call(a, "GET", &format!("/api/v1/accounts/{acc}/messages?chat=%2B15550002222"), &key, None).await;
    assert_eq!(s, 200, "{page}");
    let msgs = page["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2, "{page}");
    assert_eq!(msgs[0]["direction"], "incoming");
    assert_eq!(msgs[0]["body"], "thanks!");
    assert_eq!(msgs[1]["id"], msg_id.as_str());
    let (headers, body) = tokio::time::timeout(T, hooks.recv()).await.expect("webhook delivered").unwrap();
    let ts: i64 = headers["x-broadcaster-timestamp"].to_str().unwrap().parse().unwrap();
    let sig = headers["x-broadcaster-signature"].to_str().unwrap();
    assert!(broadcaster::webhooks::verify(&secret, ts, &body, sig), "bad webhook signature");
    let payload: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(payload["type"], "incoming_message");
    assert_eq!(payload["data"]["body"], "thanks!");
    assert!(payload["id"].as_str().unwrap().starts_with("evt_"));

    // Reply to Bob's message, quoting it.
    let (s, v) = call(
        a,
        "POST",
        &format!("/api/v1/accounts/{acc}/messages"),
        &key,
        Some(json!({ "to": "+15550002222", "text": "you're welcome", "reply_to": msgs[0]["id"] })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let wa2 = v["wa_message_id"].as_str().unwrap().to_owned();
    assert!(bob.wait_message(T, |m| m.id == wa2).await.is_some());
    drop(ws);

    // Restart: the account comes back active without pairing.
    srv.stop().await;
    let (srv, _) = start(dir.path(), &emu, None).await;
    let a = srv.addr;
    let mut ws = open_ws(a, &key).await;
    let (_, v) = call(a, "GET", &format!("/api/v1/accounts/{acc}"), &key, None).await;
    if v["state"] != "active" {
        next_ws(&mut ws, "active after restart", |v| {
            assert_ne!(v["event"], "qr_code", "asked to pair again");
            v["event"] == "connection_update" && v["data"]["state"] == "active"
        })
        .await;
    }
    let (s, v) = call(
        a,
        "POST",
        &format!("/api/v1/accounts/{acc}/messages"),
        &key,
        Some(json!({ "to": "+15550002222", "text": "still here" })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let wa3 = v["wa_message_id"].as_str().unwrap().to_owned();
    assert!(bob.wait_message(T, |m| m.id == wa3).await.is_some());
    let (s, text) = call_text(a, "/metrics", &admin).await;
    assert_eq!(s, 200);
    assert!(text.contains("broadcaster_sessions{state=\"active\"} 1"), "{text}");
    ws.close(None).await.ok();
    srv.stop().await;
}

async fn call_text(addr: SocketAddr, path: &str, key: &str) -> (u16, String) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let req = hyper::Request::get(format!("http://{addr}{path}"))
        .header("authorization", format!("Bearer {key}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(T, client.request(req)).await.unwrap().unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_aliases_pairing_code_isolation_and_bad_input() {
    let emu =
        Arc::new(Emulator::start(EmulatorConfig { seed: Some(8), ..Default::default() }).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let (srv, admin) = start(dir.path(), &emu, None).await;
    let admin = admin.unwrap();
    let a = srv.addr;
    let (_, v) = call(a, "POST", "/api/v1/tenants", &admin, Some(json!({ "name": "a" }))).await;
    let key = v["api_key"]["key"].as_str().unwrap().to_owned();
    let (_, v) = call(a, "POST", "/api/v1/tenants", &admin, Some(json!({ "name": "b" }))).await;
    let other = v["api_key"]["key"].as_str().unwrap().to_owned();
    let mut ws = open_ws(a, &key).await;

    // Seed routes: start-session answers with a QR image; the phone scans; send-message works.
    let (s, v) = call(
        a,
        "POST",
        "/api/v1/whatsapp/start-session",
        &key,
        Some(json!({ "phoneNumber": "+15550003333" })),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "waiting_for_scan");
    assert!(v["qrCode"].as_str().unwrap().starts_with("data:image/png;base64,"));
    let acc = v["accountId"].as_str().unwrap().to_owned();
    let (_, v) = call(a, "GET", &format!("/api/v1/whatsapp/sessions/{acc}/qr"), &key, None).await;
    assert!(v["qrCode"].as_str().unwrap().starts_with("data:image/png"), "{v}");
    let (s, v) = call(a, "POST", &format!("/api/v1/emulator/accounts/{acc}/scan"), &key, None).await;
    assert_eq!(s, 200, "{v}");
    next_ws(&mut ws, "active", |v| v["event"] == "connection_update" && v["data"]["state"] == "active").await;
    let (_, v) = call(a, "GET", "/api/v1/whatsapp/sessions", &key, None).await;
    assert_eq!(v[0]["accountId"], acc.as_str());
    assert_eq!(v[0]["status"], "connected");
    let carol = emu.create_account("15550004444", "Carol").unwrap();
    let (s, v) = call(
        a,
        "POST",
        "/api/v1/whatsapp/send-message",
        &key,
        Some(
            json!({ "accountId": acc, "phoneNumber": "+15550004444", "message": "Hello from Broadcaster!" }),
        ),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["success"], true);
    let wa = v["waMessageId"].as_str().unwrap().to_owned();
    assert!(carol.wait_message(T, |m| m.id == wa).await.is_some());
    let mid = v["messageId"].as_str().unwrap().to_owned();

    // Bad input: clear 4xx JSON errors, nothing sent.
    let send = format!("/api/v1/accounts/{acc}/messages");
    for (body, code) in [
        (json!({ "to": "12345", "text": "x" }), "invalid_phone"),
        (json!({ "to": "x@evil.com", "text": "x" }), "invalid_recipient"),
        (json!({ "to": "+15550004444" }), "invalid_body"),
        (json!({ "to": "+15550004444", "text": "   " }), "invalid_text"),
        (json!({ "to": "+15550004444", "text": "x", "bogus": 1 }), "invalid_body"),
        (json!({ "to": "+15550004444", "text": "x", "reply_to": "msg_nope" }), "unknown_reply_target"),
        (
            // Loopback is open to this harness's receivers (test setting); private ranges never are.
            json!({ "to": "+15550004444", "media": { "kind": "image", "url": "http://10.0.0.1:9/a.png" } }),
            "url_refused",
        ),
        (
            json!({ "to": "+15550004444", "media": { "kind": "image", "url": "http://169.254.169.254/x" } }),
            "url_refused",
        ),
        (json!({ "to": "+15550004444", "media": { "kind": "image", "data_base64": "!!" } }), "invalid_media"),
        (json!({ "to": "+15550004444", "media": { "kind": "gif", "data_base64": "AA==" } }), "invalid_body"),
    ] {
        let (s, v) = call(a, "POST", &send, &key, Some(body.clone())).await;
        assert_eq!(s, if code == "url_refused" { 422 } else { 400 }, "{body} -> {v}");
        assert_eq!(v["error"]["code"], code, "{body} -> {v}");
    }
    let (s, v) = call(a, "GET", &format!("{send}?cursor=zz"), &key, None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_cursor")));
    let (s, v) = call(
        a,
        "POST",
        &format!("/api/v1/accounts/{acc}/check-numbers"),
        &key,
        Some(json!({ "phones": [] })),
    )
    .await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_phones")));

    // Another tenant sees none of it.
    for (m, path, body) in [
        ("GET", format!("/api/v1/accounts/{acc}/messages"), None),
        ("POST", send.clone(), Some(json!({ "to": "+15550004444", "text": "x" }))),
        ("GET", format!("/api/v1/accounts/{acc}/messages/{mid}"), None),
        ("GET", format!("/api/v1/accounts/{acc}/messages/{mid}/media"), None),
        (
            "POST",
            format!("/api/v1/accounts/{acc}/check-numbers"),
            Some(json!({ "phones": ["+15550004444"] })),
        ),
        ("GET", format!("/api/v1/accounts/{acc}/qr"), None),
        ("POST", format!("/api/v1/emulator/accounts/{acc}/scan"), None),
        ("GET", format!("/api/v1/whatsapp/sessions/{acc}"), None),
        ("GET", format!("/api/v1/whatsapp/sessions/{acc}/qr"), None),
        ("DELETE", format!("/api/v1/whatsapp/sessions/{acc}"), None),
        (
            "POST",
            "/api/v1/whatsapp/send-message".to_owned(),
            Some(json!({ "accountId": acc, "phoneNumber": "+15550004444", "message": "x" })),
        ),
    ] {
        let (s, v) = call(a, m, &path, &other, body).await;
        assert_eq!(s, 404, "{m} {path} -> {v}");
    }
    let (_, v) = call(a, "GET", "/api/v1/whatsapp/sessions", &other, None).await;
    assert_eq!(v, json!([]));
    let url = format!("ws://{a}/api/v1/events/ws?api_key={other}&account_id={acc}");
    assert!(tokio_tungstenite::connect_async(url).await.is_err(), "other tenant's account stream opened");

    // Pairing by code: the API shows the code, the phone (an existing WhatsApp user) types it.
    let (s, v) =
        call(a, "POST", "/api/v1/emulator/phones", &key, Some(json!({ "phone": "+15550005555" }))).await;
    assert_eq!(s, 201, "{v}");
    let (_, v) =
        call(a, "POST", "/api/v1/accounts", &key, Some(json!({ "name": "Sales", "phone": "+15550005555" })))
            .await;
    let acc2 = v["id"].as_str().unwrap().to_owned();
    let (s, v) = call(
        a,
        "POST",
        &format!("/api/v1/accounts/{acc2}/connect"),
        &key,
        Some(json!({ "pairing_phone": "+15550005555" })),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["state"], "pairing_code_ready", "{v}");
    assert_eq!(v["link"]["pairing_code"].as_str().unwrap().len(), 8, "{v}");
    let (s, v) = call(a, "POST", &format!("/api/v1/emulator/accounts/{acc2}/enter-code"), &key, None).await;
    assert_eq!(s, 200, "{v}");
    next_ws(&mut ws, "second account active", |v| {
        v["event"] == "connection_update"
            && v["account_id"] == acc2.as_str()
            && v["data"]["state"] == "active"
    })
    .await;

    // The seed's DELETE logs the first account out.
    let (s, v) = call(a, "DELETE", &format!("/api/v1/whatsapp/sessions/{acc}"), &key, None).await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = call(a, "GET", &format!("/api/v1/accounts/{acc}"), &key, None).await;
    assert_eq!(v["state"], "logged_out");
    let (s, v) = call(a, "POST", &send, &key, Some(json!({ "to": "+15550004444", "text": "x" }))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("account_not_active")));
    srv.stop().await;
}

/// A request with a raw body; the raw answer.
async fn call_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, axum::http::HeaderMap, Bytes) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("authorization", format!("Bearer {key}"));
    if let Some(t) = content_type {
        req = req.header("content-type", t);
    }
    let resp = tokio::time::timeout(T, client.request(req.body(Full::new(Bytes::from(body))).unwrap()))
        .await
        .unwrap()
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, bytes)
}

/// A tenant key and an account linked by the emulator's phone `phone`, active.
async fn linked_account(a: SocketAddr, admin: &str, phone: &str) -> (String, String, Ws) {
    let (s, v) =
        call(a, "POST", "/api/v1/tenants", admin, Some(json!({ "name": format!("t{phone}") }))).await;
    assert_eq!(s, 201, "{v}");
    let key = v["api_key"]["key"].as_str().unwrap().to_owned();
    let (s, v) =
        call(a, "POST", "/api/v1/accounts", &key, Some(json!({ "name": "Media", "phone": phone }))).await;
    assert_eq!(s, 201, "{v}");
    let acc = v["id"].as_str().unwrap().to_owned();
    let mut ws = open_ws(a, &key).await;
    let (s, v) = call(a, "POST", &format!("/api/v1/accounts/{acc}/connect"), &key, None).await;
    assert_eq!(s, 202, "{v}");
    let (s, v) = call(a, "POST", &format!("/api/v1/emulator/accounts/{acc}/scan"), &key, None).await;
    assert_eq!(s, 200, "{v}");
    next_ws(&mut ws, "active", |v| v["event"] == "connection_update" && v["data"]["state"] == "active").await;
    (key, acc, ws)
}

fn decode_message(m: &wa_emulator::InboxMessage) -> wa_proto::Message {
    use wa_proto::prost_message::Message as _;
    wa_proto::Message::decode(m.message.as_slice()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_by_https_url_reaches_the_phone() {
    // A file server on HTTPS whose certificate a test CA signs, trusted as the extra CA.
    let ca = tls::TestCa::generate();
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend((0..2500u32).map(|i| (i * 11 % 251) as u8));
    let served = Bytes::from(png.clone());
    let files = ca
        .serve(axum::Router::new().route(
            "/shop/banner.png",
            axum::routing::get(move || {
                let b = served.clone();
                async move { ([("content-type", "image/png")], b) }
            }),
        ))
        .await;
    let emu =
        Arc::new(Emulator::start(EmulatorConfig { seed: Some(19), ..Default::default() }).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let pem = ca.ca_pem.clone();
    let (srv, admin) = start_with(dir.path(), &emu, None, move |c| c.outbound.extra_ca_pem = Some(pem)).await;
    let a = srv.addr;
    let (key, acc, _ws) = linked_account(a, &admin.unwrap(), "+15550006161").await;
    let erin = emu.create_account("15550006262", "Erin").unwrap();
    let url = format!("https://localhost:{}/shop/banner.png", files.port());
    let (s, v) = call(
        a,
        "POST",
        &format!("/api/v1/accounts/{acc}/messages"),
        &key,
        Some(json!({ "to": "+15550006262", "media": { "kind": "image", "url": url, "caption": "new in" } })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        (v["kind"].as_str(), v["media"]["mimetype"].as_str()),
        (Some("image"), Some("image/png")),
        "{v}"
    );
    let wa = v["wa_message_id"].as_str().unwrap().to_owned();
    let got = erin.wait_message(T, |m| m.id == wa).await.expect("Erin received the image");
    let image = decode_message(&got).image_message.expect("an image message");
    assert_eq!(image.caption.as_deref(), Some("new in"));
    assert_eq!(emu.with_world(|w| w.fetch_image(&image)).expect("the phone decrypts the image"), png);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_by_base64_and_upload_reaches_the_phone_and_incoming_media_downloads() {
    let emu =
        Arc::new(Emulator::start(EmulatorConfig { seed: Some(9), ..Default::default() }).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let (srv, admin) = start_with(dir.path(), &emu, None, |c| c.media_max_bytes = 64 * 1024).await;
    let admin = admin.unwrap();
    let a = srv.addr;
    let (key, acc, mut ws) = linked_account(a, &admin, "+15550006666").await;
    let dave = emu.create_account("15550007777", "Dave").unwrap();
    let send = format!("/api/v1/accounts/{acc}/messages");

    // An image as base64: Dave's phone downloads and decrypts exactly these bytes.
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend((0..3000u32).map(|i| (i * 7 % 251) as u8));
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &png);
    let (s, v) = call(
        a,
        "POST",
        &send,
        &key,
        Some(json!({ "to": "+15550007777", "media": { "kind": "image", "data_base64": b64, "caption": "a chart" } })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!((v["kind"].as_str(), v["status"].as_str()), (Some("image"), Some("sent")), "{v}");
    assert_eq!(v["media"]["mimetype"], "image/png", "{v}");
    assert_eq!(v["media"]["size"], png.len(), "{v}");
    let img_id = v["id"].as_str().unwrap().to_owned();
    let wa = v["wa_message_id"].as_str().unwrap().to_owned();
    let got = dave.wait_message(T, |m| m.id == wa).await.expect("Dave received the image");
    let msg = decode_message(&got);
    let image = msg.image_message.as_ref().expect("an image message");
    assert_eq!(image.caption.as_deref(), Some("a chart"));
    assert_eq!(image.mimetype.as_deref(), Some("image/png"));
    let plain = emu.with_world(|w| w.fetch_image(image)).expect("the phone decrypts the image");
    assert_eq!(plain, png);
    let (s, h, body) = call_raw(a, "GET", &format!("{send}/{img_id}/media"), &key, None, vec![]).await;
    assert_eq!(s, 200);
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(body.as_ref(), png.as_slice());

    // Its caption edited: history has the new caption (the old one in the edits), and Dave's
    // phone gets an edit carrying an image message with it.
    let (s, v) =
        call(a, "PATCH", &format!("{send}/{img_id}"), &key, Some(json!({ "text": "a better chart" }))).await;
    assert_eq!((s, v["body"].as_str()), (200, Some("a better chart")), "{v}");
    assert_eq!(v["edits"][0]["body"], "a chart", "{v}");
    let edit = dave
        .wait_message(T, |m| {
            decode_message(m)
                .protocol_message
                .is_some_and(|p| p.key.as_ref().and_then(|k| k.id.as_deref()) == Some(wa.as_str()))
        })
        .await
        .expect("Dave received the caption edit");
    let edited = decode_message(&edit).protocol_message.unwrap().edited_message.unwrap();
    assert_eq!(edited.image_message.and_then(|i| i.caption).as_deref(), Some("a better chart"));

    // A document as a multipart upload: type and file name from the part.
    let pdf = b"%PDF-1.4 a small document".repeat(40);
    let (s, _, body) = call_raw(
        a,
        "POST",
        &send,
        &key,
        Some(&form_type()),
        form(
            &[("to", "+1 555 000 7777"), ("kind", "document"), ("caption", "the invoice")],
            Some(("invoice.pdf", "application/pdf", &pdf)),
        ),
    )
    .await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["media"]["file_name"], "invoice.pdf", "{v}");
    let wa = v["wa_message_id"].as_str().unwrap().to_owned();
    let got = dave.wait_message(T, |m| m.id == wa).await.expect("Dave received the document");
    let msg = decode_message(&got);
    let doc = msg.document_message.as_ref().expect("a document message");
    assert_eq!(doc.file_name.as_deref(), Some("invoice.pdf"));
    assert_eq!(doc.mimetype.as_deref(), Some("application/pdf"));
    let blob =
        emu.with_world(|w| w.media_blob(doc.direct_path.as_deref().unwrap()).map(<[u8]>::to_vec)).unwrap();
    let media_key: [u8; 32] = doc.media_key.as_deref().unwrap().try_into().unwrap();
    let plain = wa_emulator::decrypt_media(&blob, &media_key, b"WhatsApp Document Keys").expect("MAC ok");
    assert_eq!(plain, pdf);

    // Upload limits and malformed forms: clear 4xx.
    let big = vec![0u8; 64 * 1024 + 1];
    for (body, status, code) in [
        (
            form(&[("to", "+15550007777"), ("kind", "image")], Some(("a.png", "image/png", &big))),
            413,
            "media_too_large",
        ),
        (form(&[("to", "+15550007777"), ("kind", "image")], None), 400, "invalid_multipart"),
        (
            form(&[("to", "+15550007777"), ("kind", "gif")], Some(("a.png", "image/png", &png))),
            400,
            "invalid_multipart",
        ),
        (form(&[("to", "12"), ("kind", "image")], Some(("a.png", "image/png", &png))), 400, "invalid_phone"),
        (form(&[("to", "+15550007777"), ("kind", "image"), ("x", "1")], None), 400, "invalid_multipart"),
    ] {
        let (s, _, b) = call_raw(a, "POST", &send, &key, Some(&form_type()), body).await;
        let v: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
        assert_eq!((s, v["error"]["code"].as_str()), (status, Some(code)), "{v}");
    }

    // Dave sends a photo: recorded with its metadata, downloadable (fetched and decrypted).
    let me: wa_client::Jid = "15550006666@s.whatsapp.net".parse().unwrap();
    let photo: Vec<u8> = [&[0xffu8, 0xd8, 0xff, 0xe0][..], &[42u8; 5000][..]].concat();
    let wa_in = dave.send_image(&me, &photo, "image/jpeg", Some("look")).unwrap();
    let ev = next_ws(&mut ws, "incoming image", |v| {
        v["event"] == "incoming_message" && v["data"]["wa_message_id"] == wa_in.as_str()
    })
    .await;
    assert_eq!(ev["data"]["kind"], "image", "{ev}");
    assert_eq!(ev["data"]["body"], "look", "{ev}");
    assert_eq!(ev["data"]["media"]["mimetype"], "image/jpeg", "{ev}");
    assert_eq!(ev["data"]["media"]["size"], photo.len(), "{ev}");
    assert_eq!(ev["data"]["media"]["downloadable"], true, "{ev}");
    let in_id = ev["data"]["id"].as_str().unwrap().to_owned();
    let (s, h, body) = call_raw(a, "GET", &format!("{send}/{in_id}/media"), &key, None, vec![]).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(h["content-type"], "image/jpeg");
    assert_eq!(body.as_ref(), photo.as_slice());

    // Another tenant cannot download it.
    let (_, v) = call(a, "POST", "/api/v1/tenants", &admin, Some(json!({ "name": "other" }))).await;
    let other = v["api_key"]["key"].as_str().unwrap().to_owned();
    let (s, _, _) = call_raw(a, "GET", &format!("{send}/{in_id}/media"), &other, None, vec![]).await;
    assert_eq!(s, 404);
    // A text message has no media.
    let (s, v) = call(a, "POST", &send, &key, Some(json!({ "to": "+15550007777", "text": "hi" }))).await;
    assert_eq!(s, 201, "{v}");
    let (s, _, _) =
        call_raw(a, "GET", &format!("{send}/{}/media", v["id"].as_str().unwrap()), &key, None, vec![]).await;
    assert_eq!(s, 404);
    ws.close(None).await.ok();
    srv.stop().await;
}

/// 2026-11-21 10:00:00 UTC.
const T0: i64 = 1_795_255_200_000;

async fn start_clocked(
    dir: &std::path::Path,
    emu: &Arc<EmulatorHandle>,
    clock: Arc<broadcaster::clock::ManualClock>,
) -> (Running, String, broadcaster::state::AppState) {
    let (srv, key, state) = start_clocked_with(dir, emu, clock, |_| {}).await;
    (srv, key.expect("a fresh database generates the admin key"), state)
}

/// A server on `dir` reading time from `clock`; the admin key when the database is new.
async fn start_clocked_with(
    dir: &std::path::Path,
    emu: &Arc<EmulatorHandle>,
    clock: broadcaster::clock::SharedClock,
    tweak: impl FnOnce(&mut Config),
) -> (Running, Option<String>, broadcaster::state::AppState) {
    let mut config = config(dir);
    tweak(&mut config);
    let (db, boot) = broadcaster::open_database(&config, None).await.unwrap();
    let key = match boot {
        Bootstrap::Generated(k) => Some(k),
        _ => None,
    };
    let server = broadcaster::build_server_with_clock(&config, db, Some(emu.clone()), clock).await.unwrap();
    let state = server.state.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        broadcaster::serve_with(&config, server, listener, async move {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    (Running { addr, stop: Some(tx), task }, key, state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_send_is_paced_by_the_clock_tracked_and_within_the_daily_limit() {
    let emu =
        Arc::new(Emulator::start(EmulatorConfig { seed: Some(10), ..Default::default() }).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(broadcaster::clock::ManualClock::new(T0));
    let (srv, admin, state) = start_clocked(dir.path(), &emu, clock.clone()).await;
    let a = srv.addr;
    let (key, acc, mut ws) = linked_account(a, &admin, "+15550008888").await;
    let (s, v) =
        call(a, "PATCH", &format!("/api/v1/accounts/{acc}"), &key, Some(json!({ "daily_limit": 3 }))).await;
    assert_eq!(s, 200, "{v}");
    let bob = emu.create_account("15550008001", "Bob").unwrap();
    let carol = emu.create_account("15550008002", "Carol").unwrap();
    let bulk = format!("/api/v1/accounts/{acc}/messages/bulk");

    // Bad input.
    for (body, code) in [
        (json!({ "recipients": [], "text": "x" }), "invalid_recipients"),
        (json!({ "recipients": ["+15550008001", "+1 555 000 8001"], "text": "x" }), "duplicate_recipient"),
        (json!({ "recipients": ["+15550008001"], "text": "x", "per_minute": 0 }), "invalid_pace"),
        (json!({ "recipients": ["12"], "text": "x" }), "invalid_phone"),
        (json!({ "recipients": ["+15550008001"] }), "invalid_body"),
    ] {
        let (s, v) = call(a, "POST", &bulk, &key, Some(body.clone())).await;
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some(code)), "{body} -> {v}");
    }
    // More than the daily limit allows: refused whole.
    let four = json!({ "recipients": ["+15550008001", "+15550008002", "+15550008003", "+15550008004"], "text": "x" });
    let (s, v) = call(a, "POST", &bulk, &key, Some(four)).await;
    assert_eq!((s, v["error"]["code"].as_str()), (429, Some("daily_limit_reached")), "{v}");

    // Two recipients at two per minute: ids at once; the first goes now, the second 30 s later.
    let (s, v) = call(
        a,
        "POST",
        &bulk,
        &key,
        Some(json!({ "recipients": ["+15550008001", "15550008002@s.whatsapp.net"], "text": "promo", "per_minute": 2 })),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    let items = v["messages"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["scheduled_at"], T0, "{v}");
    assert_eq!(items[1]["scheduled_at"], T0 + 30_000, "{v}");
    let (m1, m2) = (items[0]["message_id"].as_str().unwrap(), items[1]["message_id"].as_str().unwrap());
    next_ws(&mut ws, "first bulk message sent", |v| v["event"] == "message_sent" && v["data"]["id"] == m1)
        .await;
    assert!(bob.wait_message(T, |m| m.text.as_deref() == Some("promo")).await.is_some());
    let (_, v) = call(a, "GET", &format!("/api/v1/accounts/{acc}/messages/{m2}"), &key, None).await;
    assert_eq!(v["status"], "pending", "the second waits for its time: {v}");
    assert_eq!(v["attempts"], 0, "{v}");

    // A single send meanwhile counts too: 3 of 3 used (two bulk + this one).
    let send = format!("/api/v1/accounts/{acc}/messages");
    let (s, v) = call(a, "POST", &send, &key, Some(json!({ "to": "+15550008001", "text": "single" }))).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) =
        call(a, "POST", &bulk, &key, Some(json!({ "recipients": ["+15550008001"], "text": "x" }))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (429, Some("daily_limit_reached")), "{v}");

    // 30 s later the second goes out.
    clock.advance_ms(30_000);
    state.bulk_wake.notify_one();
    next_ws(&mut ws, "second bulk message sent", |v| v["event"] == "message_sent" && v["data"]["id"] == m2)
        .await;
    let got = carol.wait_message(T, |m| m.text.as_deref() == Some("promo")).await;
    assert!(got.is_some(), "Carol received the bulk message");
    let (_, v) = call(a, "GET", &format!("/api/v1/accounts/{acc}/messages/{m2}"), &key, None).await;
    // Carol's delivery receipt may be recorded already (it never moves the status back).
    assert!(matches!(v["status"].as_str(), Some("sent" | "delivered")), "{v}");
    assert_eq!(v["attempts"].as_i64(), Some(1), "{v}");
    assert_eq!(v["sent_at"], T0 + 30_000, "{v}");

    // Another tenant cannot bulk-send from this account.
    let (_, v) = call(a, "POST", "/api/v1/tenants", &admin, Some(json!({ "name": "other" }))).await;
    let other = v["api_key"]["key"].as_str().unwrap().to_owned();
    let (s, _) =
        call(a, "POST", &bulk, &other, Some(json!({ "recipients": ["+15550008001"], "text": "x" }))).await;
    assert_eq!(s, 404);
    ws.close(None).await.ok();
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_answer_with_a_reply_is_sent_back_on_the_same_chat() {
    let emu =
        Arc::new(Emulator::start(EmulatorConfig { seed: Some(11), ..Default::default() }).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let (srv, admin) = start(dir.path(), &emu, None).await;
    let a = srv.addr;
    let admin = admin.unwrap();
    let (key, acc, mut ws) = linked_account(a, &admin, "+15550009000").await;
    // A chat agent: answers every incoming message with a reply quoting it.
    let app = axum::Router::new().route(
        "/agent",
        axum::routing::post(|b: Bytes| async move {
            let v: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
            let text = format!("auto: {}", v["data"]["body"].as_str().unwrap_or(""));
            axum::Json(json!({ "reply": { "text": text, "quote": true } }))
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let (s, v) = call(
        a,
        "POST",
        "/api/v1/webhooks",
        &key,
        Some(json!({ "url": format!("http://{hook_addr}/agent"), "events": ["incoming_message"] })),
    )
    .await;
    assert_eq!(s, 201, "{v}");

    let erin = emu.create_account("15550009001", "Erin").unwrap();
    let me: wa_client::Jid = "15550009000@s.whatsapp.net".parse().unwrap();
    let asked = erin.send_text(&me, "opening hours?").unwrap();
    let got = erin
        .wait_message(T, |m| m.text.as_deref() == Some("auto: opening hours?"))
        .await
        .expect("Erin received the auto-reply");
    // It quotes her message.
    let msg = decode_message(&got);
    let ctx = msg.extended_text_message.as_ref().and_then(|t| t.context_info.as_ref()).expect("a reply");
    assert_eq!(ctx.stanza_id.as_deref(), Some(asked.as_str()));
    // Recorded like any send: in history, quoting our id of the incoming message.
    let ev = next_ws(&mut ws, "auto-reply sent", |v| {
        v["event"] == "message_sent" && v["data"]["body"] == "auto: opening hours?"
    })
    .await;
    assert_eq!(ev["data"]["chat"], "15550009001@s.whatsapp.net", "{ev}");
    let (_, page) =
        call(a, "GET", &format!("/api/v1/accounts/{acc}/messages?chat=%2B15550009001"), &key, None).await;
    let msgs = page["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2, "{page}");
    let incoming = msgs.iter().find(|m| m["direction"] == "incoming").expect("the question");
    let outgoing = msgs.iter().find(|m| m["direction"] == "outgoing").expect("the auto-reply");
    assert_eq!(outgoing["quoted_id"], incoming["id"], "{page}");
    ws.close(None).await.ok();
    srv.stop().await;
}

/// A WebSocket on `key`, once `acc` is active (after a restart it resumes without pairing).
async fn wait_active(a: SocketAddr, key: &str, acc: &str) -> Ws {
    let mut ws = open_ws(a, key).await;
    let (_, v) = call(a, "GET", &format!("/api/v1/accounts/{acc}"), key, None).await;
    if v["state"] != "active" {
        next_ws(&mut ws, "active after restart", |v| {
            assert_ne!(v["event"], "qr_code", "asked to pair again");
            v["event"] == "connection_update"
                && v["data"]["account_id"] == acc
                && v["data"]["state"] == "active"
        })
        .await;
    }
    ws
}

const HOUR: i64 = 3_600_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_counters_reset_at_local_midnight_health_and_delete_purges_auth() {
    use broadcaster::clock::Clock as _;
    let emu =
        Arc::new(Emulator::start(EmulatorConfig { seed: Some(12), ..Default::default() }).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(broadcaster::clock::ManualClock::new(T0));
    let (srv, admin, _state) = start_clocked(dir.path(), &emu, clock.clone()).await;
    let a = srv.addr;
    let (key, acc, mut ws) = linked_account(a, &admin, "+15550009500").await;
    let path = format!("/api/v1/accounts/{acc}");
    for tz in ["Mars/Olympus_Mons", "../etc/passwd", "EST5EDT,M3.2.0,M11.1.0", "", "UTC+3"] {
        let (s, v) = call(a, "PATCH", &path, &key, Some(json!({ "time_zone": tz }))).await;
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_time_zone")), "{tz}: {v}");
    }
    let (s, v) =
        call(a, "POST", "/api/v1/accounts", &key, Some(json!({ "name": "x", "time_zone": "Nowhere/City" })))
            .await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_time_zone")), "{v}");
    // New York: 10:00 UTC is 05:00 local; the counters reset at 05:00 UTC tomorrow. Names are
    // stored in their canonical spelling.
    let (s, v) =
        call(a, "PATCH", &path, &key, Some(json!({ "time_zone": "america/new_york", "daily_limit": 4 })))
            .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["time_zone"], "America/New_York", "{v}");
    assert_eq!(v["today"]["resets_at"], T0 + 19 * HOUR, "{v}");
    let fred = emu.create_account("15550009501", "Fred").unwrap();
    let send = format!("{path}/messages");
    let text = |t: &str| Some(json!({ "to": "+15550009501", "text": t }));
    for t in ["one", "two"] {
        let (s, v) = call(a, "POST", &send, &key, text(t)).await;
        assert_eq!(s, 201, "{v}");
    }
    let me: wa_client::Jid = "15550009500@s.whatsapp.net".parse().unwrap();
    let wa_in = fred.send_text(&me, "hello").unwrap();
    next_ws(&mut ws, "incoming", |v| {
        v["event"] == "incoming_message" && v["data"]["wa_message_id"] == wa_in.as_str()
    })
    .await;
    let (_, list) = call(a, "GET", "/api/v1/accounts", &key, None).await;
    let v = &list[0];
    assert_eq!(v["today"]["sent"], 2, "{v}");
    assert_eq!(v["today"]["received"], 1, "{v}");
    assert_eq!(v["today"]["daily_limit"], 4, "{v}");
    assert_eq!(v["today"]["usage_percent"], 50.0, "{v}");
    assert_eq!(v["today"]["resets_at"], T0 + 19 * HOUR, "{v}");
    assert_eq!(v["health"]["status"], "healthy", "{v}");
    assert_eq!(v["health"]["reasons"], json!([]), "{v}");

    // 75%: healthy; 100%: critical, and sending answers 429 until local midnight.
    let (s, _) = call(a, "POST", &send, &key, text("three")).await;
    assert_eq!(s, 201);
    let (_, v) = call(a, "GET", &path, &key, None).await;
    assert_eq!(
        (v["today"]["usage_percent"].as_f64(), v["health"]["status"].as_str()),
        (Some(75.0), Some("healthy"))
    );
    // Lowering the limit to what was sent: 100%, critical.
    let (s, v) = call(a, "PATCH", &path, &key, Some(json!({ "daily_limit": 3 }))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["today"]["usage_percent"], 100.0, "{v}");
    assert_eq!(v["health"]["status"], "critical", "{v}");
    let (s, v) = call(a, "PATCH", &path, &key, Some(json!({ "daily_limit": 4 }))).await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = call(a, "POST", &send, &key, text("four")).await;
    assert_eq!(s, 201);
    let (_, v) = call(a, "GET", &path, &key, None).await;
    assert_eq!(v["health"]["status"], "critical", "{v}");
    assert_eq!(v["health"]["reasons"][0], "daily limit reached", "{v}");
    let (s, v) = call(a, "POST", &send, &key, text("five")).await;
    assert_eq!((s, v["error"]["code"].as_str()), (429, Some("daily_limit_reached")), "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains(&(T0 + 19 * HOUR).to_string()), "{v}");
    // 4 of 5 is 80%: warning.
    let (s, v) = call(a, "PATCH", &path, &key, Some(json!({ "daily_limit": 5 }))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["today"]["usage_percent"].as_f64(), v["health"]["status"].as_str()),
        (Some(80.0), Some("warning"))
    );
    let (s, v) = call(a, "PATCH", &path, &key, Some(json!({ "daily_limit": 4 }))).await;
    assert_eq!(s, 200, "{v}");

    // One minute before local midnight: still used up. At midnight: reset.
    clock.advance_ms(19 * HOUR - 60_000);
    let (s, _) = call(a, "POST", &send, &key, text("five")).await;
    assert_eq!(s, 429);
    clock.advance_ms(60_000);
    let (_, v) = call(a, "GET", &path, &key, None).await;
    assert_eq!((v["today"]["sent"].as_i64(), v["today"]["received"].as_i64()), (Some(0), Some(0)), "{v}");
    assert_eq!(v["today"]["resets_at"], T0 + 43 * HOUR, "{v}");
    assert_eq!(v["health"]["status"], "healthy", "{v}");
    let (s, v) = call(a, "POST", &send, &key, text("a new day")).await;
    assert_eq!(s, 201, "{v}");

    // A DST day: 2027-03-14 has 23 hours in New York (02:00 EST jumps to 03:00 EDT), so the
    // counters reset 23 hours after that day's midnight (05:00 UTC), at 04:00 UTC.
    let dst_midnight = 1_805_000_400_000; // 2027-03-14 00:00 EST
    clock.advance_ms(dst_midnight + HOUR / 2 - clock.now_ms());
    let (s, v) = call(a, "PATCH", &path, &key, Some(json!({ "daily_limit": 1 }))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["today"]["resets_at"], dst_midnight + 23 * HOUR, "{v}");
    assert_eq!(v["today"]["sent"], 0, "{v}");
    let (s, _) = call(a, "POST", &send, &key, text("spring")).await;
    assert_eq!(s, 201);
    let (s, v) = call(a, "POST", &send, &key, text("forward")).await;
    assert_eq!(s, 429, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains(&(dst_midnight + 23 * HOUR).to_string()), "{v}");
    clock.advance_ms(dst_midnight + 23 * HOUR - 1 - clock.now_ms());
    let (s, _) = call(a, "POST", &send, &key, text("forward")).await;
    assert_eq!(s, 429, "still 2027-03-14 in New York");
    clock.advance_ms(1);
    let (s, v) = call(a, "POST", &send, &key, text("forward")).await;
    assert_eq!(s, 201, "{v}");

    // Disconnected (and within the limit): warning. Deleted: the auth store forgets the device.
    let (s, v) = call(a, "PATCH", &path, &key, Some(json!({ "daily_limit": 100 }))).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = call(a, "POST", &format!("{path}/disconnect"), &key, None).await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = call(a, "GET", &path, &key, None).await;
    assert_eq!(v["health"]["status"], "warning", "{v}");
    assert_eq!(v["health"]["reasons"][0], "account is disconnected", "{v}");
    let store = wa_store::Store::open_sqlite(
        dir.path().join(broadcaster::wa_runtime::SQLITE_AUTH_FILE),
        wa_store::StoreOptions::with_key(data_dir_key(dir.path()).auth_store_key()),
    )
    .await
    .unwrap();
    let has = |ids: Vec<wa_store::DeviceId>| ids.iter().any(|d| d.as_str() == acc);
    assert!(has(store.devices().await.unwrap()), "the linked device has auth data");
    let (s, v) = call(a, "DELETE", &path, &key, None).await;
    assert_eq!(s, 204, "{v}");
    assert!(!has(store.devices().await.unwrap()), "auth data purged with the account");
    let (s, _) = call(a, "GET", &path, &key, None).await;
    assert_eq!(s, 404);
    ws.close(None).await.ok();
    srv.stop().await;
}

/// Waits until message `id` satisfies `pred` (checked now, then after each event about it on
/// `ws`, which must have been opened before this call); returns the message.
async fn wait_message_state(
    a: SocketAddr,
    key: &str,
    acc: &str,
    ws: &mut Ws,
    id: &str,
    mut pred: impl FnMut(&Value) -> bool,
) -> Value {
    loop {
        let (s, v) = call(a, "GET", &format!("/api/v1/accounts/{acc}/messages/{id}"), key, None).await;
        assert_eq!(s, 200, "{v}");
        if pred(&v) {
            return v;
        }
        next_ws(ws, "an event about the message", |e| e["data"]["id"] == id || e["data"]["message_id"] == id)
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_message_interrupted_by_a_restart_is_resent_under_the_same_id() {
    let emu =
        Arc::new(Emulator::start(EmulatorConfig { seed: Some(13), ..Default::default() }).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(broadcaster::clock::ManualClock::new(T0));
    // A short shutdown timeout: the send in hand (its server ack withheld) outlives it.
    let short = |c: &mut Config| c.shutdown_timeout = Duration::from_secs(2);
    let (srv, admin, _state) = start_clocked_with(dir.path(), &emu, clock.clone(), short).await;
    let a = srv.addr;
    let (key, acc, ws) = linked_account(a, &admin.unwrap(), "+15550009700").await;
    let bob = emu.create_account("15550009701", "Bob").unwrap();
    let carol = emu.create_account("15550009702", "Carol").unwrap();
    // From now on the emulator withholds its acks from our session: the first bulk message
    // reaches Bob's phone, but the send call never completes.
    let device = *emu.companions("15550009700").unwrap().last().expect("a linked companion");
    let conn = emu.connection_of("15550009700", device).unwrap();
    emu.fault_frames(conn, wa_emulator::Fault::DropStanzas { count: u32::MAX, only_tag: Some("ack".into()) })
        .unwrap();
    let (s, v) = call(
        a,
        "POST",
        &format!("/api/v1/accounts/{acc}/messages/bulk"),
        &key,
        Some(json!({ "recipients": ["+15550009701", "+15550009702"], "text": "sale", "per_minute": 1 })),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    let m1 = v["messages"][0]["message_id"].as_str().unwrap().to_owned();
    let m2 = v["messages"][1]["message_id"].as_str().unwrap().to_owned();
    let first =
        bob.wait_message(T, |m| m.text.as_deref() == Some("sale")).await.expect("Bob got the first send");
    // The send waits for its ack; Bob's receipt (it names the id) may have settled the row.
    let (_, v) = call(a, "GET", &format!("/api/v1/accounts/{acc}/messages/{m1}"), &key, None).await;
    assert!(matches!(v["status"].as_str(), Some("pending" | "sent" | "delivered")), "{v}");
    assert_eq!(v["attempts"].as_i64(), Some(1), "{v}");

    // Stop while that send hangs: it is abandoned, claimed and unrecorded, as after a crash.
    drop(ws);
    srv.stop().await;
    let (srv, _, state) = start_clocked_with(dir.path(), &emu, clock.clone(), |_| {}).await;
    let a = srv.addr;
    let mut ws = wait_active(a, &key, &acc).await;
    // The runner may have looked before the session was up (then the message waits a few
    // seconds): move the clock past that, and to Carol's turn (one per minute).
    clock.advance_ms(60_000);
    state.bulk_wake.notify_one();
    // Bob's delivery receipt names the reserved id: it settles the row (before the stop, or
    // when the server redelivers it after the restart), else the runner resends under that id.
    let v = wait_message_state(a, &key, &acc, &mut ws, &m1, |v| v["status"] != "pending").await;
    assert!(matches!(v["status"].as_str(), Some("sent" | "delivered" | "read")), "{v}");
    assert_eq!(v["wa_message_id"].as_str(), Some(first.id.as_str()), "settled under the first id: {v}");
    let v = wait_message_state(a, &key, &acc, &mut ws, &m2, |v| v["status"] != "pending").await;
    assert!(matches!(v["status"].as_str(), Some("sent" | "delivered" | "read")), "{v}");
    assert!(carol.wait_message(T, |m| m.text.as_deref() == Some("sale")).await.is_some());
    assert_one_id(&bob, "sale");
    ws.close(None).await.ok();
    srv.stop().await;
}

/// Runs `acc`'s session (the server stopped) with the server's runtime over the auth store in
/// `dir` and a [`CrashBeforeWrite`] sink; returns once it is connected.
async fn session_that_crashes_before_writing(
    dir: &std::path::Path,
    emu: &EmulatorHandle,
    acc: &str,
) -> (broadcaster::wa_runtime::WaRuntime, mpsc::UnboundedReceiver<String>) {
    use broadcaster::runtime::AccountRuntime as _;
    let store = broadcaster::wa_runtime::WaRuntime::open_sqlite_store(
        &dir.join(broadcaster::wa_runtime::SQLITE_AUTH_FILE),
        Some(data_dir_key(dir).auth_store_key()),
    )
    .await
    .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let rt = broadcaster::wa_runtime::WaRuntime::new(
        store,
        broadcaster::wa_runtime::Upstream::emulator(emu),
        Arc::new(CrashBeforeWrite(tx)),
        Arc::new(broadcaster::clock::SystemClock),
        Arc::new(broadcaster::metrics::Metrics::default()),
    );
    rt.connect("t", acc, broadcaster::runtime::LinkMethod::Qr).await.unwrap();
    assert_eq!(next(&mut rx).await, "connected");
    (rt, rx)
}

/// A session sink standing in for a server killed between the client's receipt of a message
/// (or of a receipt) and the database write: it writes nothing and reports incoming messages
/// and status changes as not recorded.
struct CrashBeforeWrite(mpsc::UnboundedSender<String>);

impl broadcaster::runtime::SessionEvents for CrashBeforeWrite {
    fn emit<'a>(
        &'a self,
        t: &'a str,
        a: &'a str,
        event: broadcaster::runtime::SessionEvent,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            self.record(t, a, event).await;
        })
    }

    fn record<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        event: broadcaster::runtime::SessionEvent,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>> {
        Box::pin(async move {
            match event {
                broadcaster::runtime::SessionEvent::IncomingMessage { message_id, .. } => {
                    let _ = self.0.send(message_id);
                    false
                }
                broadcaster::runtime::SessionEvent::MessageStatus { message_id, status, .. } => {
                    let _ = self.0.send(format!("{} {message_id}", status.as_str()));
                    false
                }
                broadcaster::runtime::SessionEvent::Connected { .. } => {
                    let _ = self.0.send("connected".into());
                    true
                }
                _ => true,
            }
        })
    }
}

async fn next(rx: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(T, rx.recv()).await.expect("session event in time").expect("sink open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_message_survives_a_crash_between_receipt_and_the_database_write() {
    let emu =
        Arc::new(Emulator::start(EmulatorConfig { seed: Some(14), ..Default::default() }).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let (srv, admin) = start(dir.path(), &emu, None).await;
    let (key, acc, ws) = linked_account(srv.addr, &admin.unwrap(), "+15550009800").await;
    let device = *emu.companions("15550009800").unwrap().last().expect("a linked companion");
    drop(ws);
    srv.stop().await;

    // The account's session, run by the server's runtime over the same auth store, with a sink
    // that never gets to write.
    let (rt, mut rx) = session_that_crashes_before_writing(dir.path(), &emu, &acc).await;
    let dave = emu.create_account("15550009801", "Dave").unwrap();
    let me: wa_client::Jid = "15550009800@s.whatsapp.net".parse().unwrap();
    let wa_id = dave.send_text(&me, "are you there?").unwrap();
    assert_eq!(next(&mut rx).await, wa_id);
    // WhatsApp has the device's acknowledgement: it will not deliver the message again.
    let acked = emu
        .wait_for(T, |e| matches!(e, wa_emulator::WorldEvent::DeviceAcked { id, device: d, .. } if *id == wa_id && *d == device))
        .await;
    assert!(acked.is_some(), "the device acknowledged the message");
    rt.shutdown().await;
    drop(rt);

    // The next start replays it from the auth store into the database, once.
    let (srv, _) = start(dir.path(), &emu, None).await;
    let a = srv.addr;
    let mut ws = wait_active(a, &key, &acc).await;
    let history = format!("/api/v1/accounts/{acc}/messages?chat=%2B15550009801");
    let (_, page) = call(a, "GET", &history, &key, None).await;
    if page["messages"].as_array().unwrap().is_empty() {
        next_ws(&mut ws, "the replayed message", |v| {
            v["event"] == "incoming_message" && v["data"]["wa_message_id"] == wa_id.as_str()
        })
        .await;
    }
    let (_, page) = call(a, "GET", &history, &key, None).await;
    let msgs = page["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 1, "{page}");
    assert_eq!(msgs[0]["wa_message_id"], wa_id.as_str(), "{page}");
    assert_eq!(msgs[0]["body"], "are you there?", "{page}");
    ws.close(None).await.ok();
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_receipt_survives_a_crash_between_the_client_and_the_database_write() {
    let emu =
        Arc::new(Emulator::start(EmulatorConfig { seed: Some(15), ..Default::default() }).await.unwrap());
    let erin = emu.create_account("15550009901", "Erin").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (srv, admin) = start(dir.path(), &emu, None).await;
    let a = srv.addr;
    let (key, acc, mut ws) = linked_account(a, &admin.unwrap(), "+15550009900").await;
    let (s, sent) = call(
        a,
        "POST",
        &format!("/api/v1/accounts/{acc}/messages"),
        &key,
        Some(json!({ "to": "+15550009901", "text": "read me" })),
    )
    .await;
    assert_eq!(s, 201, "{sent}");
    let msg_id = sent["id"].as_str().unwrap().to_owned();
    let wa_id = sent["wa_message_id"].as_str().unwrap().to_owned();
    let delivered = wait_message_state(a, &key, &acc, &mut ws, &msg_id, |v| v["status"] == "delivered").await;
    let delivered_at = delivered["delivered_at"].as_i64().expect("delivered_at set");
    // The delivery receipt is acknowledged right after it is recorded: stopping before the ack
    // went out would have WhatsApp deliver it again (a race, not what this test is about).
    let acked = emu
        .wait_for(T, |e| matches!(e, wa_emulator::WorldEvent::ReceiptAcked { id, .. } if *id == wa_id))
        .await;
    assert!(acked.is_some(), "the delivery receipt acknowledged");
    drop(ws);
    srv.stop().await;

    // The account's session with a sink that never gets to write: Erin reads the message meanwhile.
    let (rt, mut rx) = session_that_crashes_before_writing(dir.path(), &emu, &acc).await;
    erin.mark_read(std::slice::from_ref(&wa_id)).unwrap();
    assert_eq!(next(&mut rx).await, format!("read {wa_id}"));
    rt.shutdown().await;
    drop(rt);

    // WhatsApp still holds the unacknowledged receipt and delivers it again at the next
    // start; the status reaches read and keeps the delivery time it had.
    let (srv, _) = start(dir.path(), &emu, None).await;
    let a = srv.addr;
    let mut ws = wait_active(a, &key, &acc).await;
    let read = wait_message_state(a, &key, &acc, &mut ws, &msg_id, |v| v["status"] == "read").await;
    assert_eq!(read["delivered_at"].as_i64(), Some(delivered_at), "{read}");
    assert!(read["read_at"].as_i64().is_some_and(|r| r >= delivered_at), "{read}");
    // Recorded, then acknowledged to WhatsApp.
    let acked = emu
        .wait_for(T, |e| {
            matches!(e, wa_emulator::WorldEvent::ReceiptAcked { id, kind, .. } if *id == wa_id && kind == "read")
        })
        .await;
    assert!(acked.is_some(), "the server acknowledged the read receipt once recorded");
    ws.close(None).await.ok();
    srv.stop().await;
}

/// The bootstrap admin key of the process-level tests.
const PROCESS_ADMIN: &str = "bc-e2e-process-admin-key-0123456789";

/// Like [`linked_account`] against a server process on an external emulator: the phone scans
/// the QR (read from the server's API) through the emulator's control API.
async fn linked_account_via_control(
    a: SocketAddr,
    emu: &EmulatorHandle,
    phone: &str,
) -> (String, String, Ws) {
    linking::link_via_control(a, PROCESS_ADMIN, emu, phone, "Process").await
}

/// The master key the server generated in its data dir `dir` at its first start.
fn data_dir_key(dir: &std::path::Path) -> broadcaster::secrets::MasterKey {
    broadcaster::secrets::MasterKey::read_file(&dir.join(broadcaster::secrets::MASTER_KEY_FILE)).unwrap()
}

/// Process level, with the auth store in `env`: link by QR, send, stop the process, check the
/// device is in that store (and no SQLite auth file was made), start the process again: the
/// account is active without pairing and sends. Returns the account (device) id and the master
/// key the server generated.
async fn auth_store_survives_a_process_restart(
    seed: u64,
    phone: &str,
    env: &[(&str, String)],
) -> (String, broadcaster::secrets::MasterKey) {
    let emu =
        Arc::new(Emulator::start(EmulatorConfig { seed: Some(seed), ..Default::default() }).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let srv = process::ServerProcess::start(dir.path(), &emu, PROCESS_ADMIN, env).await;
    let a = srv.addr;
    let (key, acc, ws) = linked_account_via_control(a, &emu, phone).await;
    let friend_pn = format!("{}1", phone.trim_start_matches('+'));
    let friend = emu.create_account(&friend_pn, "Friend").unwrap();
    let send = |a, text: &'static str| {
        let (key, acc, to) = (key.clone(), acc.clone(), format!("+{friend_pn}"));
        async move {
            let path = format!("/api/v1/accounts/{acc}/messages");
            let (s, v) = call(a, "POST", &path, &key, Some(json!({ "to": to, "text": text }))).await;
            assert_eq!(s, 201, "{v}");
        }
    };
    send(a, "before restart").await;
    assert!(friend.wait_message(T, |m| m.text.as_deref() == Some("before restart")).await.is_some());
    drop(ws);
    let out = srv.output();
    srv.stop().await;
    for (_, url) in env.iter().filter(|(k, _)| *k == "BROADCASTER_AUTH_STORE_URL") {
        assert!(!out.contains(url.as_str()), "the auth store URL is not logged:\n{out}");
    }
    assert!(!dir.path().join(broadcaster::wa_runtime::SQLITE_AUTH_FILE).exists(), "no SQLite auth store");

    let srv = process::ServerProcess::start(dir.path(), &emu, PROCESS_ADMIN, env).await;
    let a = srv.addr;
    let ws = wait_active(a, &key, &acc).await;
    send(a, "after restart").await;
    assert!(friend.wait_message(T, |m| m.text.as_deref() == Some("after restart")).await.is_some());
    drop(ws);
    srv.stop().await;
    (acc, data_dir_key(dir.path()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_auth_store_keeps_the_device_across_a_process_restart() {
    let Some(admin_url) = process::server_url("WA_TEST_PG_URL") else { return };
    let url = process::fresh_postgres_database(&admin_url).await;
    let env =
        [("BROADCASTER_AUTH_STORE", "postgres".to_owned()), ("BROADCASTER_AUTH_STORE_URL", url.clone())];
    let (acc, key) = auth_store_survives_a_process_restart(21, "+15550011100", &env).await;
    let store = wa_store::Store::open_postgres(&url, wa_store::StoreOptions::with_key(key.auth_store_key()))
        .await
        .unwrap();
    assert!(store.devices().await.unwrap().iter().any(|d| d.as_str() == acc), "the device is in PostgreSQL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_auth_store_keeps_the_device_across_a_process_restart() {
    let Some(url) = process::server_url("WA_TEST_MONGO_URL") else { return };
    let database = process::unique_name("bc_e2e");
    let env = [
        ("BROADCASTER_AUTH_STORE", "mongodb".to_owned()),
        ("BROADCASTER_AUTH_STORE_URL", url.clone()),
        ("BROADCASTER_AUTH_STORE_DATABASE", database.clone()),
    ];
    let (acc, key) = auth_store_survives_a_process_restart(22, "+15550011200", &env).await;
    let options = wa_store::StoreOptions::with_key(key.auth_store_key());
    let store = wa_store::Store::open_mongodb(&url, &database, options).await.unwrap();
    assert!(store.devices().await.unwrap().iter().any(|d| d.as_str() == acc), "the device is in MongoDB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_store_misconfiguration_stops_the_start_with_a_clear_error() {
    async fn run(env: &[(&str, &str)]) -> (Option<i32>, String) {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_broadcaster"));
        cmd.arg("--data-dir").arg(dir.path()).args(["--listen", "127.0.0.1:0"]).kill_on_drop(true);
        cmd.env_remove("BROADCASTER_AUTH_STORE_URL")
            .env_remove("BROADCASTER_AUTH_STORE")
            .env("NO_COLOR", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        // A server that starts anyway is a failure, not a hang: it is killed on drop.
        let out = tokio::time::timeout(T, cmd.output()).await.expect("the server exits by itself").unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    }
    let (code, out) = run(&[("BROADCASTER_AUTH_STORE", "postgres")]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("BROADCASTER_AUTH_STORE_URL must be set"), "{out}");
    let (code, out) = run(&[
        ("BROADCASTER_AUTH_STORE", "postgres"),
        ("BROADCASTER_AUTH_STORE_URL", "postgres://app:s3cret@127.0.0.1:1/wa"),
    ])
    .await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("cannot open the WhatsApp auth store (postgres)"), "{out}");
    assert!(!out.contains("s3cret") && !out.contains("panicked"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_send_interrupted_by_a_crash_is_sent_once_under_its_id_after_restart() {
    let emu =
        Arc::new(Emulator::start(EmulatorConfig { seed: Some(23), ..Default::default() }).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let srv = process::ServerProcess::start(dir.path(), &emu, PROCESS_ADMIN, &[]).await;
    let a = srv.addr;
    let (key, acc, ws) = linked_account_via_control(a, &emu, "+15550011300").await;
    let bob = emu.create_account("15550011301", "Bob").unwrap();
    // From now on the emulator withholds its acks from our session: the message reaches Bob's
    // phone, but the server's send never completes. That is the injection point: the row is
    // committed (`pending`, its WhatsApp id reserved) and the send is in hand.
    let device = *emu.companions("15550011300").unwrap().last().expect("a linked companion");
    let conn = emu.connection_of("15550011300", device).unwrap();
    emu.fault_frames(conn, wa_emulator::Fault::DropStanzas { count: u32::MAX, only_tag: Some("ack".into()) })
        .unwrap();
    let request = {
        let (key, acc) = (key.clone(), acc.clone());
        // Never answered: the process dies first.
        tokio::spawn(async move {
            let path = format!("/api/v1/accounts/{acc}/messages");
            let body = json!({ "to": "+15550011301", "text": "one copy please" });
            call(a, "POST", &path, &key, Some(body)).await
        })
    };
    let first = bob
        .wait_message(T, |m| m.text.as_deref() == Some("one copy please"))
        .await
        .expect("Bob got the first attempt");
    drop(ws);
    srv.kill().await;
    request.abort();

    let srv = process::ServerProcess::start(dir.path(), &emu, PROCESS_ADMIN, &[]).await;
    let a = srv.addr;
    let mut ws = wait_active(a, &key, &acc).await;
    let history = format!("/api/v1/accounts/{acc}/messages?chat=%2B15550011301");
    let (s, page) = call(a, "GET", &history, &key, None).await;
    assert_eq!(s, 200, "{page}");
    let msgs = page["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 1, "one row for the request: {page}");
    let id = msgs[0]["id"].as_str().unwrap().to_owned();
    // Settled by Bob's receipt (it names the reserved id) or resent under that id.
    let v = wait_message_state(a, &key, &acc, &mut ws, &id, |v| v["status"] != "pending").await;
    assert!(matches!(v["status"].as_str(), Some("sent" | "delivered" | "read")), "{v}");
    assert_eq!(v["wa_message_id"].as_str(), Some(first.id.as_str()), "under the reserved id: {v}");
    assert_one_id(&bob, "one copy please");
    ws.close(None).await.ok();
    srv.stop().await;
}

/// Links an account, withholds the emulator's acks from its session and asks for a single send
/// to `to_pn` that reaches the phone but never completes; then stops the server (the request is
/// abandoned at the short shutdown timeout, as in a crash). Returns the key and the account.
async fn single_send_left_pending(
    dir: &std::path::Path,
    emu: &Arc<EmulatorHandle>,
    clock: &Arc<broadcaster::clock::ManualClock>,
    phone: &str,
    to_pn: &str,
    text: &'static str,
) -> (String, String) {
    let short = |c: &mut Config| c.shutdown_timeout = Duration::from_secs(2);
    let (srv, admin, _) = start_clocked_with(dir, emu, clock.clone(), short).await;
    let a = srv.addr;
    let (key, acc, ws) = linked_account(a, &admin.unwrap(), phone).await;
    let to = emu.create_account(to_pn, "Recipient").unwrap();
    let digits = phone.trim_start_matches('+');
    let device = *emu.companions(digits).unwrap().last().expect("a linked companion");
    let conn = emu.connection_of(digits, device).unwrap();
    emu.fault_frames(conn, wa_emulator::Fault::DropStanzas { count: u32::MAX, only_tag: Some("ack".into()) })
        .unwrap();
    let request = {
        let (key, acc, to) = (key.clone(), acc.clone(), format!("+{to_pn}"));
        tokio::spawn(async move {
            let path = format!("/api/v1/accounts/{acc}/messages");
            call(a, "POST", &path, &key, Some(json!({ "to": to, "text": text }))).await
        })
    };
    to.wait_message(T, |m| m.text.as_deref() == Some(text)).await.expect("the first attempt arrived");
    drop(ws);
    srv.stop().await;
    request.abort();
    (key, acc)
}

/// The only message of `acc` in the chat with `+to_pn`.
async fn only_message(a: SocketAddr, key: &str, acc: &str, to_pn: &str) -> String {
    let (s, page) =
        call(a, "GET", &format!("/api/v1/accounts/{acc}/messages?chat=%2B{to_pn}"), key, None).await;
    assert_eq!(s, 200, "{page}");
    let msgs = page["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 1, "{page}");
    msgs[0]["id"].as_str().unwrap().to_owned()
}

/// The phone's copies of `text` carry one message id (a resend goes under the first id, and
/// WhatsApp clients keep one copy per id): one or two copies, never two ids.
fn assert_one_id(phone: &wa_emulator::PhoneHandle<'_>, text: &str) {
    let ids: Vec<String> =
        phone.inbox().into_iter().filter(|m| m.text.as_deref() == Some(text)).map(|m| m.id).collect();
    let distinct: std::collections::HashSet<&String> = ids.iter().collect();
    assert!(!ids.is_empty() && ids.len() <= 2 && distinct.len() == 1, "{text}: {ids:?}");
}

/// An interrupted single send older than the allowed age is not sent again at the next start
/// (it would arrive late); the first attempt did reach the phone, so its receipt settles the
/// row as delivered rather than leaving it `failed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_single_send_older_than_the_max_age_is_not_sent_late_and_its_receipt_settles_it() {
    let emu =
        Arc::new(Emulator::start(EmulatorConfig { seed: Some(24), ..Default::default() }).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(broadcaster::clock::ManualClock::new(T0));
    let (key, acc) =
        single_send_left_pending(dir.path(), &emu, &clock, "+15550011400", "15550011401", "stale").await;
    // The server stays down longer than the allowed age (one hour by default).
    clock.advance_ms(2 * HOUR);
    let (srv, _, _) = start_clocked_with(dir.path(), &emu, clock.clone(), |_| {}).await;
    let a = srv.addr;
    let mut ws = wait_active(a, &key, &acc).await;
    let id = only_message(a, &key, &acc, "15550011401").await;
    let v = wait_message_state(a, &key, &acc, &mut ws, &id, |v| {
        matches!(v["status"].as_str(), Some("delivered" | "read"))
    })
    .await;
    assert_eq!(v["error"], Value::Null, "{v}");
    assert_eq!(v["attempts"], 1, "not sent again: {v}");
    ws.close(None).await.ok();
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_with_a_media_template_sends_one_upload_with_personal_captions() {
    let emu =
        Arc::new(Emulator::start(EmulatorConfig { seed: Some(12), ..Default::default() }).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let (srv, admin) = start(dir.path(), &emu, None).await;
    let admin = admin.unwrap();
    let a = srv.addr;
    let (key, acc, mut ws) = linked_account(a, &admin, "+15550008000").await;
    let people = [("15550008001", "Ann Lee"), ("15550008002", "Ben Ode"), ("15550008003", "Cat Roy")];
    let phones: Vec<_> = people.iter().map(|(pn, name)| emu.create_account(pn, name).unwrap()).collect();
    let mut contact_ids = Vec::new();
    for (pn, name) in people {
        let (s, v) = call(
            a,
            "POST",
            "/api/v1/contacts",
            &key,
            Some(json!({ "phone": format!("+{pn}"), "name": name })),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        contact_ids.push(v["id"].clone());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend((0..20_000u32).map(|i| (i * 13 % 251) as u8));
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &png);
    let (s, tpl) = call(
        a,
        "POST",
        "/api/v1/templates",
        &key,
        Some(json!({ "name": "promo", "body": "Hi {{first_name|there}}, your code is {{code}}",
            "variables": [{ "name": "code" }], "media": { "kind": "image", "data_base64": b64 } })),
    )
    .await;
    assert_eq!(s, 201, "{tpl}");
    let (s, v) = call(
        a,
        "POST",
        "/api/v1/campaigns",
        &key,
        Some(json!({ "name": "media", "template_id": tpl["id"], "values": { "code": "X1" }, "account_ids": [acc],
            "audience": { "contact_ids": contact_ids }, "rate_per_minute": 600, "jitter_pct": 0 })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let cid = v["campaign"]["id"].as_str().unwrap().to_owned();
    next_ws(&mut ws, "the campaign completes", |v| {
        v["event"] == "campaign_status"
            && v["data"]["campaign_id"] == cid.as_str()
            && v["data"]["status"] == "completed"
    })
    .await;
    let mut paths = std::collections::BTreeSet::new();
    for (phone, (_, name)) in phones.iter().zip(people) {
        let got =
            phone.wait_message(T, |m| decode_message(m).image_message.is_some()).await.expect("an image");
        let msg = decode_message(&got);
        let image = msg.image_message.as_ref().unwrap();
        let first = name.split(' ').next().unwrap();
        assert_eq!(image.caption.as_deref(), Some(format!("Hi {first}, your code is X1").as_str()));
        assert_eq!(image.mimetype.as_deref(), Some("image/png"));
        let plain = emu.with_world(|w| w.fetch_image(image)).expect("the phone decrypts the image");
        assert_eq!(plain, png);
        paths.insert(image.direct_path.clone().unwrap());
    }
    assert_eq!(paths.len(), 1, "the file was uploaded once for the whole campaign: {paths:?}");
    // History: each recipient's message points at the campaign's one stored file (no copy per
    // recipient) and downloads as the original bytes.
    let (s, page) = call(a, "GET", &format!("/api/v1/accounts/{acc}/messages?limit=50"), &key, None).await;
    assert_eq!(s, 200, "{page}");
    let images: Vec<&Value> =
        page["messages"].as_array().unwrap().iter().filter(|m| m["kind"] == "image").collect();
    assert_eq!(images.len(), 3, "{page}");
    for m in images {
        let mid = m["id"].as_str().unwrap();
        let path = format!("/api/v1/accounts/{acc}/messages/{mid}/media");
        let (s, h, body) = call_raw(a, "GET", &path, &key, None, vec![]).await;
        assert_eq!(s, 200);
        assert_eq!(h["content-type"], "image/png");
        assert_eq!(body.as_ref(), png.as_slice());
    }
    let (s, v) = call(a, "GET", &format!("/api/v1/campaigns/{cid}"), &key, None).await;
    assert_eq!(s, 200);
    assert_eq!(v["progress"]["total"], 3, "{v}");
    assert_eq!(v["progress"]["pending"], 0, "{v}");
    assert_eq!(v["progress"]["failed"], 0, "{v}");
    // The campaign shows the file it sends, as the template does, in get and in list.
    assert_eq!(v["media"]["kind"], "image", "{v}");
    assert_eq!(v["media"]["mimetype"], "image/png", "{v}");
    assert_eq!(v["media"]["size"], png.len(), "{v}");
    assert_eq!(v["media"], tpl["media"], "{v}");
    let (s, list) = call(a, "GET", "/api/v1/campaigns", &key, None).await;
    assert_eq!(s, 200, "{list}");
    let listed = list.as_array().unwrap().iter().find(|c| c["id"] == cid.as_str()).expect("listed");
    assert_eq!(listed["media"], tpl["media"], "{listed}");

    // The direct ("send direct") mode uses the same engine and the same upload.
    let (s, v) = call(
        a,
        "POST",
        "/api/v1/broadcast/direct",
        &key,
        Some(json!({ "account_id": acc, "phone": "+15550008001", "template_id": tpl["id"], "values": { "code": "Z9" } })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let got = phones[0]
        .wait_message(T, |m| {
            decode_message(m).image_message.and_then(|i| i.caption).as_deref()
                == Some("Hi Ann, your code is Z9")
        })
        .await
        .expect("the direct send arrives");
    let msg = decode_message(&got);
    assert_eq!(msg.image_message.unwrap().direct_path.as_deref(), paths.iter().next().map(String::as_str));
    ws.close(None).await.ok();
    srv.stop().await;
}

/// A contact migrates to LID addressing mid-conversation (its phone switches from its number to
/// its LID): still one chat, keyed by the number, with the LID beside it in history, live events
/// and webhooks; sends by number keep working on the LID-migrated account; the history of the
/// chat is the same asked by number or by LID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_seen_by_number_then_by_lid_is_one_chat() {
    let emu =
        Arc::new(Emulator::start(EmulatorConfig { seed: Some(17), ..Default::default() }).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let (srv, admin) = start(dir.path(), &emu, None).await;
    let a = srv.addr;
    let (key, acc, mut ws) = linked_account(a, &admin.unwrap(), "+15550007100").await;
    let (hook_addr, mut hooks) = webhook_receiver().await;
    let (s, v) = call(
        a,
        "POST",
        "/api/v1/webhooks",
        &key,
        Some(json!({ "url": format!("http://{hook_addr}/hook"), "events": ["incoming_message"] })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let dana = emu
        .create_account_with("15550007101", "Dana", wa_emulator::AccountOptions { lid_migrated: false })
        .unwrap();
    let (dana_pn, dana_lid) = (dana.jid().to_string(), dana.lid().to_string());
    let me: wa_client::Jid = "15550007100@s.whatsapp.net".parse().unwrap();

    // By number, before Dana migrates: nothing tells us her LID yet.
    let first = dana.send_text(&me, "by number").unwrap();
    let ev = next_ws(&mut ws, "first", |v| {
        v["event"] == "incoming_message" && v["data"]["wa_message_id"] == first.as_str()
    })
    .await;
    assert_eq!(
        (ev["data"]["chat"].as_str(), ev["data"]["chat_pn"].as_str()),
        (Some(&*dana_pn), Some(&*dana_pn))
    );
    assert_eq!(ev["data"]["chat_lid"], Value::Null, "{ev}");

    // Dana migrates: her DMs come from her LID with her number beside it.
    dana.set_lid_migrated(true).unwrap();
    let second = dana.send_text(&me, "by LID").unwrap();
    let ev = next_ws(&mut ws, "second", |v| {
        v["event"] == "incoming_message" && v["data"]["wa_message_id"] == second.as_str()
    })
    .await;
    let d = &ev["data"];
    assert_eq!((d["chat"].as_str(), d["chat_pn"].as_str()), (Some(&*dana_pn), Some(&*dana_pn)), "{ev}");
    assert_eq!(
        (d["chat_lid"].as_str(), d["sender_lid"].as_str()),
        (Some(&*dana_lid), Some(&*dana_lid)),
        "{ev}"
    );
    assert_eq!((d["sender"].as_str(), d["sender_pn"].as_str()), (Some(&*dana_pn), Some(&*dana_pn)), "{ev}");
    assert_eq!(d["sender_phone"], "+15550007101");
    // The webhooks carry the same names: the LID beside the number once it is known.
    for (want, lid) in [(&first, None), (&second, Some(dana_lid.as_str()))] {
        let (_, body) = tokio::time::timeout(T, hooks.recv()).await.expect("webhook delivered").unwrap();
        let payload: Value = serde_json::from_slice(&body).unwrap();
        let d = &payload["data"];
        assert_eq!(d["wa_message_id"], want.as_str(), "{payload}");
        assert_eq!(
            (d["chat"].as_str(), d["chat_pn"].as_str()),
            (Some(&*dana_pn), Some(&*dana_pn)),
            "{payload}"
        );
        assert_eq!((d["chat_lid"].as_str(), d["sender_lid"].as_str()), (lid, lid), "{payload}");
        assert_eq!(d["sender_pn"], dana_pn.as_str(), "{payload}");
    }

    // Sending by number works on the LID-migrated account, and records the LID beside it.
    let (s, v) = call(
        a,
        "POST",
        &format!("/api/v1/accounts/{acc}/messages"),
        &key,
        Some(json!({ "to": "+15550007101", "text": "welcome back" })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let wa_id = v["wa_message_id"].as_str().unwrap().to_owned();
    let got = dana.wait_message(T, |m| m.id == wa_id).await.expect("Dana received the reply");
    assert!(got.error.is_none() && got.sender.ends_with("@lid"), "{got:?}");
    assert_eq!((v["chat"].as_str(), v["chat_lid"].as_str()), (Some(&*dana_pn), Some(&*dana_lid)), "{v}");
    assert!(dana.receipts().iter().all(|r| r.kind != "retry"), "{:?}", dana.receipts());

    // One chat: three messages, by number or by LID.
    for chat in ["%2B15550007101", dana_lid.as_str()] {
        let (s, page) =
            call(a, "GET", &format!("/api/v1/accounts/{acc}/messages?chat={chat}"), &key, None).await;
        assert_eq!(s, 200, "{page}");
        let ids: Vec<&str> =
            page["messages"].as_array().unwrap().iter().filter_map(|m| m["wa_message_id"].as_str()).collect();
        assert_eq!(ids, vec![wa_id.as_str(), second.as_str(), first.as_str()], "{chat}: {page}");
        // The history carries both names, the LID from when it was known.
        let names: Vec<(&str, Option<&str>)> = page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["chat_pn"].as_str().unwrap_or_default(), m["chat_lid"].as_str()))
            .collect();
        let lid = Some(dana_lid.as_str());
        assert_eq!(names, vec![(&*dana_pn, lid), (&*dana_pn, lid), (&*dana_pn, None)], "{chat}: {page}");
    }
    ws.close(None).await.ok();
    srv.stop().await;
}

/// Waits for the emulator to record `count` presences of `pn`'s devices; returns them as
/// (type, name).
async fn presences_of(emu: &EmulatorHandle, pn: &str, count: usize) -> Vec<(String, Option<String>)> {
    let phone = emu.phone(pn).unwrap();
    let mut sub = emu.subscribe();
    tokio::time::timeout(T, async {
        while phone.presences().len() < count {
            let _ = sub.recv().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("fewer than {count} presences: {:?}", phone.presences()));
    phone.presences().into_iter().map(|p| (p.kind, p.name)).collect()
}

/// A linked account keeps the name its owner chose (no rename, and no `available` presence,
/// which would keep the owner's phone from showing notifications); a push name set through the
/// API is announced at the next connection, exactly that name and `unavailable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_keep_the_owners_name_unless_a_push_name_is_set() {
    let emu =
        Arc::new(Emulator::start(EmulatorConfig { seed: Some(71), ..Default::default() }).await.unwrap());
    let owner = emu.create_account("15550007001", "Owner's own name").unwrap();
    let bob = emu.create_account("15550007002", "Bob").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (srv, admin) = start(dir.path(), &emu, None).await;
    let a = srv.addr;
    let (key, acc, mut ws) = linked_account(a, &admin.unwrap(), "+15550007001").await;
    let (_, v) = call(a, "GET", &format!("/api/v1/accounts/{acc}"), &key, None).await;
    assert_eq!(v["push_name_override"], Value::Null, "{v}");
    // A send after login: the server has handled everything the login sent before it.
    let (s, v) = call(
        a,
        "POST",
        &format!("/api/v1/accounts/{acc}/messages"),
        &key,
        Some(json!({ "to": "+15550007002", "text": "hi" })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let wa_id = v["wa_message_id"].as_str().unwrap().to_owned();
    bob.wait_message(T, |m| m.id == wa_id).await.expect("Bob got it");
    assert_eq!(owner.presences(), vec![], "no presence from a broadcaster account by default");
    assert_eq!(owner.push_name(), "Owner's own name");

    // Validation: 1 to 25 characters, no control characters; unknown values refused.
    let path = format!("/api/v1/accounts/{acc}");
    for bad in [json!(""), json!("   "), json!("x".repeat(26)), json!("a\u{7}b"), json!(5)] {
        let (s, v) = call(a, "PATCH", &path, &key, Some(json!({ "push_name_override": bad }))).await;
        assert_eq!(s, 400, "{bad}: {v}");
    }
    let (s, v) = call(a, "PATCH", &path, &key, Some(json!({ "push_name_override": " Shop ÷ 24 " }))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["push_name_override"], "Shop ÷ 24");
    // Another field alone leaves it as it is.
    let (_, v) = call(a, "PATCH", &path, &key, Some(json!({ "daily_limit": 50 }))).await;
    assert_eq!(v["push_name_override"], "Shop ÷ 24");

    // It applies from the next connection.
    let (s, v) = call(a, "POST", &format!("/api/v1/accounts/{acc}/disconnect"), &key, None).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = call(a, "POST", &format!("/api/v1/accounts/{acc}/connect"), &key, None).await;
    assert_eq!(s, 202, "{v}");
    next_ws(&mut ws, "active", |v| {
        v["event"] == "connection_update"
            && v["data"]["account_id"] == acc.as_str()
            && v["data"]["state"] == "active"
    })
    .await;
    assert_eq!(
        presences_of(&emu, "15550007001", 1).await,
        vec![("unavailable".to_owned(), Some("Shop ÷ 24".to_owned()))]
    );
    assert_eq!(owner.push_name(), "Shop ÷ 24");

    // null clears it; a new account can be created with one.
    let (s, v) = call(a, "PATCH", &path, &key, Some(json!({ "push_name_override": null }))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["push_name_override"], Value::Null);
    let (s, v) = call(
        a,
        "POST",
        "/api/v1/accounts",
        &key,
        Some(json!({ "name": "Second", "push_name_override": "Desk" })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["push_name_override"], "Desk");
    let (s, v) =
        call(a, "POST", "/api/v1/accounts", &key, Some(json!({ "name": "Third", "push_name_override": "" })))
            .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["code"], "invalid_push_name", "{v}");
    ws.close(None).await.ok();
    srv.stop().await;
}

/// What `auto` fetches: a `sw.js`-shaped file on 127.0.0.1, its revision changeable.
async fn sw_js_server(revision: Arc<std::sync::atomic::AtomicU32>) -> String {
    let app = axum::Router::new().route(
        "/sw.js",
        axum::routing::get(move || {
            let r = revision.load(std::sync::atomic::Ordering::SeqCst);
            async move { format!("self.__swData=JSON.parse(\"{{\\\"client_revision\\\":{r}}}\");") }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}/sw.js")
}

/// The emulator's floor is above the version built in (as WhatsApp retires versions): with
/// `auto` and nothing to fetch from the account stops with `client_outdated` and plain words;
/// `/readyz` and `/metrics` name the version in use. With `--wa-version-url` (a local sw.js) the
/// current version is fetched and the account links; a fixed `--wa-version` is used as is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outdated_version_stops_the_account_as_client_outdated_and_auto_fetches_the_current_one() {
    let built_in = wa_client::version::DEFAULT_APP_VERSION;
    let current = [built_in[0], built_in[1], built_in[2] + 3];
    let emu = Arc::new(
        Emulator::start(EmulatorConfig { seed: Some(72), min_client_version: current, ..Default::default() })
            .await
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let (srv, admin) = start(dir.path(), &emu, None).await;
    let admin = admin.unwrap();
    let a = srv.addr;
    let (_, v) = call(a, "GET", "/readyz", "", None).await;
    assert_eq!(v["wa_version"], wa_client::version::format_app_version(built_in), "{v}");
    assert_eq!(v["wa_version_source"], "built_in", "{v}");
    let (s, text) = call_text(a, "/metrics", &admin).await;
    assert_eq!(s, 200);
    let info = format!(
        "broadcaster_wa_version_info{{version=\"{}\",source=\"built_in\"}} 1",
        wa_client::version::format_app_version(built_in)
    );
    assert!(text.contains(&info), "{text}");

    let (s, v) = call(a, "POST", "/api/v1/tenants", &admin, Some(json!({ "name": "old" }))).await;
    assert_eq!(s, 201, "{v}");
    let key = v["api_key"]["key"].as_str().unwrap().to_owned();
    let (_, v) =
        call(a, "POST", "/api/v1/accounts", &key, Some(json!({ "name": "Old", "phone": "+15550007101" })))
            .await;
    let acc = v["id"].as_str().unwrap().to_owned();
    let (s, v) = call(a, "POST", &format!("/api/v1/accounts/{acc}/connect"), &key, None).await;
    assert_eq!(s, 202, "{v}");
    let mut ws = open_ws(a, &key).await;
    let (_, v) = call(a, "GET", &format!("/api/v1/accounts/{acc}"), &key, None).await;
    if v["state"] != "error" {
        next_ws(&mut ws, "error", |v| v["event"] == "connection_update" && v["data"]["state"] == "error")
            .await;
    }
    let (_, v) = call(a, "GET", &format!("/api/v1/accounts/{acc}"), &key, None).await;
    assert_eq!(
        (v["state"].as_str(), v["state_reason_code"].as_str()),
        (Some("error"), Some("client_outdated")),
        "{v}"
    );
    let reason = v["state_reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!(
            "WhatsApp refused WhatsApp Web version {} as outdated.",
            wa_client::version::format_app_version(built_in)
        )),
        "{reason}"
    );
    assert!(reason.contains("--wa-version"), "{reason}");
    assert!(!reason.contains('{') && !reason.contains("ClientOutdated"), "plain words: {reason}");
    let (_, log) = call(a, "GET", &format!("/api/v1/accounts/{acc}/activity"), &key, None).await;
    assert_eq!(log.as_array().unwrap().last().unwrap()["reason"], reason, "{log}");
    ws.close(None).await.ok();
    srv.stop().await;

    // auto from a sw.js mirror: the current version is fetched and the account links.
    let revision = Arc::new(std::sync::atomic::AtomicU32::new(current[2]));
    let url = sw_js_server(revision.clone()).await;
    let (srv, _) = start_with(dir.path(), &emu, Some(admin.clone()), |c| {
        c.wa_version = broadcaster::config::WaVersionSetting::Auto { url: Some(url.clone()) };
    })
    .await;
    let a = srv.addr;
    let mut ws = open_ws(a, &key).await;
    let (s, v) = call(a, "POST", &format!("/api/v1/accounts/{acc}/connect"), &key, None).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["state_reason_code"], Value::Null, "a new transition clears the code: {v}");
    let (s, v) = call(a, "POST", &format!("/api/v1/emulator/accounts/{acc}/scan"), &key, None).await;
    assert_eq!(s, 200, "{v}");
    next_ws(&mut ws, "active", |v| v["event"] == "connection_update" && v["data"]["state"] == "active").await;
    let (_, v) = call(a, "GET", "/readyz", "", None).await;
    assert_eq!(
        (v["wa_version"].as_str(), v["wa_version_source"].as_str()),
        (Some(wa_client::version::format_app_version(current).as_str()), Some("fetched")),
        "{v}"
    );
    ws.close(None).await.ok();
    srv.stop().await;

    // A fixed version is reported as configured and used as is.
    let (srv, _) = start_with(dir.path(), &emu, Some(admin), |c| {
        c.wa_version = broadcaster::config::WaVersionSetting::Fixed(current);
    })
    .await;
    let a = srv.addr;
    let (_, v) = call(a, "GET", "/readyz", "", None).await;
    assert_eq!(v["wa_version_source"], "configured", "{v}");
    wait_active(a, &key, &acc).await.close(None).await.ok();
    srv.stop().await;
}

/// What the server logs at WARN and above, captured in memory.
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

/// Linking by QR logs no warning (the restart WhatsApp asks for after pairing is part of
/// linking, not an out-of-order reconnect).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linking_by_qr_logs_no_warning() {
    let logs = LogCapture::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let emu =
        Arc::new(Emulator::start(EmulatorConfig { seed: Some(23), ..Default::default() }).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let (srv, admin) = start(dir.path(), &emu, None).await;
    let (key, acc, _ws) = linked_account(srv.addr, &admin.unwrap(), "+15550007171").await;
    let (_, v) = call(srv.addr, "GET", &format!("/api/v1/accounts/{acc}/activity"), &key, None).await;
    srv.stop().await;
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    // The test configuration's own notice (loopback targets allowed) and the first start's
    // request to back up the master key it generated aside.
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("WARN") && !l.contains("TEST SETTING") && !l.contains("BACK UP THIS FILE"))
        .collect();
    assert!(warnings.is_empty(), "warnings while linking: {warnings:#?}\nactivity: {v}");
}

/// A first contact WhatsApp refuses (463, the account is restricted): the send answers 422
/// `reachout_restricted` once, the message is kept as failed with the reason, and the emulator
/// saw exactly one attempt (nothing retried it, neither wa-client nor broadcaster).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restricted_first_contact_fails_once_as_restricted_and_is_not_retried() {
    let emu =
        Arc::new(Emulator::start(EmulatorConfig { seed: Some(463), ..Default::default() }).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let (srv, admin) = start(dir.path(), &emu, None).await;
    let a = srv.addr;
    let (key, acc, _ws) = linked_account(a, &admin.unwrap(), "+15550046300").await;
    emu.create_account("15550046301", "Fay").unwrap();
    let me = emu.with_world(|w| w.account_by_pn("15550046300")).unwrap();
    emu.with_world(|w| w.set_reachout_restricted(me, true));

    let (s, v) = call(
        a,
        "POST",
        &format!("/api/v1/accounts/{acc}/messages"),
        &key,
        Some(json!({ "to": "+15550046301", "text": "hello" })),
    )
    .await;
    assert_eq!((s, v["error"]["code"].as_str()), (422, Some("reachout_restricted")), "{v}");

    let id = only_message(a, &key, &acc, "15550046301").await;
    let (s, m) = call(a, "GET", &format!("/api/v1/accounts/{acc}/messages/{id}"), &key, None).await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(m["status"].as_str(), Some("failed"), "{m}");
    assert!(m["error"].as_str().is_some_and(|r| r.starts_with("restricted:")), "{m}");

    let attempts: Vec<bool> = emu
        .events()
        .into_iter()
        .filter_map(|e| match e {
            wa_emulator::WorldEvent::ReachOut { pn, refused, .. } if pn == "15550046300" => Some(refused),
            _ => None,
        })
        .collect();
    assert_eq!(attempts, [true], "exactly one attempt, refused");

    // The account's health names it.
    let (s, v) = call(a, "GET", &format!("/api/v1/accounts/{acc}"), &key, None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["health"]["status"].as_str(), Some("warning"), "{v}");
    assert!(
        v["health"]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().is_some_and(|r| r.contains("restricted 1 first contact"))),
        "{v}"
    );
    srv.stop().await;
}

/// One clock for the server and the emulator (WhatsApp), moved by the test: a reach-out
/// time-lock ends for both at the same instant.
#[derive(Debug)]
struct WorldClock(std::sync::atomic::AtomicI64);

impl WorldClock {
    fn starting_now() -> Arc<Self> {
        use broadcaster::clock::Clock as _;
        Arc::new(Self(std::sync::atomic::AtomicI64::new(broadcaster::clock::SystemClock.now_ms())))
    }
    fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl broadcaster::clock::Clock for WorldClock {
    fn now_ms(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl wa_emulator::Clock for WorldClock {
    fn now_unix(&self) -> u64 {
        (self.0.load(std::sync::atomic::Ordering::SeqCst) / 1000) as u64
    }
}

/// `POST /control/phones/{pn}/reachout` on the emulator's control API.
async fn reachout_control(emu: &EmulatorHandle, pn: &str, body: Value) -> Value {
    let url = emu.control_url();
    let addr: SocketAddr = url.trim_start_matches("http://").trim_end_matches("/control").parse().unwrap();
    let (s, v) = call(addr, "POST", &format!("/control/phones/{pn}/reachout"), "", Some(body)).await;
    assert_eq!(s, 200, "{v}");
    v
}

/// The emulator's reach-out attempts by `pn`: (recipient, refused).
fn reach_outs(emu: &EmulatorHandle, pn: &str) -> Vec<(String, bool)> {
    emu.events()
        .into_iter()
        .filter_map(|e| match e {
            wa_emulator::WorldEvent::ReachOut { pn: from, to, refused, .. } if from == pn => {
                Some((to, refused))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reachout_timelock_pauses_the_campaign_until_it_ends_or_is_lifted() {
    let clock = WorldClock::starting_now();
    let emu = Arc::new(
        Emulator::start(EmulatorConfig { seed: Some(465), clock: clock.clone(), ..Default::default() })
            .await
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let (srv, admin, state) = start_clocked_with(dir.path(), &emu, clock.clone(), |_| {}).await;
    let a = srv.addr;
    let (key, acc, mut ws) = linked_account(a, &admin.unwrap(), "+15550046500").await;
    let (s, v) = call(
        a,
        "POST",
        "/api/v1/webhooks",
        &key,
        Some(json!({ "url": "http://127.0.0.1:9/hook", "events": ["reachout_timelock"] })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let recipients = ["+15550046501", "+15550046502"];
    for r in recipients {
        emu.create_account(r.trim_start_matches('+'), "Customer").unwrap();
    }
    use broadcaster::clock::Clock as _;
    let now_s = clock.now_ms() / 1000;

    // WhatsApp time-locks the account's first contacts for an hour.
    let until_s = now_s + 3600;
    reachout_control(
        &emu,
        "15550046500",
        json!({ "timelock": { "until": until_s, "enforcement_type": "RESTRICT_ALL_COMPANIONS" } }),
    )
    .await;
    let ev = next_ws(&mut ws, "reachout_timelock", |v| v["event"] == "reachout_timelock").await;
    assert_eq!(ev["data"]["active"], true, "{ev}");
    assert_eq!(ev["data"]["until"], until_s * 1000, "{ev}");
    assert_eq!(ev["data"]["enforcement_type"], "RESTRICT_ALL_COMPANIONS", "{ev}");
    let (_, v) = call(a, "GET", &format!("/api/v1/accounts/{acc}"), &key, None).await;
    assert_eq!(v["reachout_timelock"]["until"], until_s * 1000, "{v}");
    assert_eq!(v["health"]["status"], "warning", "{v}");
    assert!(
        v["health"]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().contains("time-locked")),
        "{v}"
    );

    // A campaign started meanwhile pauses with the reason and the lock's end, sending nothing.
    let (s, v) = call(
        a,
        "POST",
        "/api/v1/campaigns",
        &key,
        Some(json!({ "name": "locked", "body": "hello", "account_ids": [acc],
            "audience": { "phones": recipients }, "rate_per_minute": 60, "jitter_pct": 0 })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["campaign"]["check_numbers"], true, "numbers are checked by default: {v}");
    let cid = v["campaign"]["id"].as_str().unwrap().to_owned();
    let is_status = |st: &'static str, reason: Option<&'static str>| {
        let cid = cid.clone();
        move |v: &Value| {
            v["event"] == "campaign_status"
                && v["data"]["campaign_id"] == cid.as_str()
                && v["data"]["status"] == st
                && reason.is_none_or(|r| v["data"]["reason"] == r)
        }
    };
    let ev = next_ws(&mut ws, "paused for the lock", is_status("paused", Some("reachout_timelock"))).await;
    assert_eq!(ev["data"]["until"], until_s * 1000, "{ev}");
    let (_, c) = call(a, "GET", &format!("/api/v1/campaigns/{cid}"), &key, None).await;
    assert_eq!(
        (c["status"].as_str(), c["status_reason"].as_str()),
        (Some("paused"), Some("reachout_timelock"))
    );
    assert_eq!(c["paused_until"], until_s * 1000, "{c}");
    assert!(reach_outs(&emu, "15550046500").is_empty(), "nothing reached out while locked");
    // A bulk send accepted meanwhile starts when the lock ends.
    emu.create_account("15550046503", "Bulk").unwrap();
    let (s, v) = call(
        a,
        "POST",
        &format!("/api/v1/accounts/{acc}/messages/bulk"),
        &key,
        Some(json!({ "recipients": ["+15550046503"], "text": "bulk hello", "per_minute": 60 })),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    assert!(v["messages"][0]["scheduled_at"].as_i64().unwrap() >= until_s * 1000, "{v}");
    // The campaign's first contacts, apart from the bulk message's.
    let campaign_reach_outs =
        || reach_outs(&emu, "15550046500").into_iter().filter(|r| r.0 != "15550046503").collect::<Vec<_>>();

    // The lock's end (one clock for the server and WhatsApp): the campaign resumes by itself
    // and sends its first message.
    clock.advance_ms(3600 * 1000 + 1000);
    next_ws(&mut ws, "resumed at the lock's end", is_status("running", None)).await;
    // (Progress events wait for a clock second; the message's own event does not.)
    next_ws(&mut ws, "first message", |v| {
        v["event"] == "message_sent" && v["data"]["chat"] == "15550046501@s.whatsapp.net"
    })
    .await;
    assert_eq!(campaign_reach_outs(), [("15550046501".to_owned(), false)]);

    // A second lock, lifted early by WhatsApp's notification: the campaign resumes at once,
    // without the clock moving to the lock's end.
    let now_s = clock.now_ms() / 1000;
    reachout_control(&emu, "15550046500", json!({ "timelock": { "until": now_s + 7200 } })).await;
    let ev = next_ws(&mut ws, "paused again", is_status("paused", Some("reachout_timelock"))).await;
    assert_eq!(ev["data"]["until"], (now_s + 7200) * 1000, "{ev}");
    reachout_control(&emu, "15550046500", json!({ "lift_timelock": true })).await;
    let ev =
        next_ws(&mut ws, "lift", |v| v["event"] == "reachout_timelock" && v["data"]["active"] == false).await;
    assert_eq!(ev["data"]["until"], Value::Null, "{ev}");
    next_ws(&mut ws, "resumed after the lift", is_status("running", None)).await;
    // The pace (one a second) lets the second message go one clock second later.
    clock.advance_ms(1000);
    next_ws(&mut ws, "completed", is_status("completed", None)).await;
    assert_eq!(campaign_reach_outs(), [("15550046501".to_owned(), false), ("15550046502".to_owned(), false)]);
    // The bulk message goes out too, the lock being over (its runner looks every few seconds).
    tokio::time::timeout(T, async {
        while !reach_outs(&emu, "15550046500").contains(&("15550046503".to_owned(), false)) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the bulk message was sent after the lock");
    let (_, v) = call(a, "GET", &format!("/api/v1/accounts/{acc}"), &key, None).await;
    assert_eq!(v["reachout_timelock"], Value::Null, "{v}");
    // Webhooks got every change: set, set again, lifted (a lock that ran out needs no notice).
    let hooks: i64 = state
        .db
        .call(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM webhook_outbox WHERE event_type = 'reachout_timelock'",
                [],
                |r| r.get(0),
            )
        })
        .await
        .unwrap();
    assert!(hooks >= 3, "{hooks} reachout_timelock webhook events");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_recipients_with_200_new_contacts_a_day_send_200_and_hold_the_rest() {
    let emu = Arc::new(
        Emulator::start(EmulatorConfig { seed: Some(466), phone_pre_keys: 10, ..Default::default() })
            .await
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let (srv, admin) = start(dir.path(), &emu, None).await;
    let a = srv.addr;
    let (key, acc, mut ws) = linked_account(a, &admin.unwrap(), "+15550046600").await;
    let phones: Vec<String> = (0..1000).map(|i| format!("+1555100{i:04}")).collect();
    for p in &phones {
        emu.create_account(p.trim_start_matches('+'), "Customer").unwrap();
    }
    // WhatsApp lets this account reach 195 new people; the account allows itself 200 a day.
    reachout_control(&emu, "15550046600", json!({ "limits": { "new_contacts": 195, "window_secs": 86400 } }))
        .await;
    let (s, v) = call(
        a,
        "PATCH",
        &format!("/api/v1/accounts/{acc}"),
        &key,
        Some(json!({ "daily_limit": 100000, "new_contact_limit": 200 })),
    )
    .await;
    assert_eq!((s, v["new_contact_limit"].as_i64()), (200, Some(200)), "{v}");

    let (s, v) = call(
        a,
        "POST",
        "/api/v1/campaigns",
        &key,
        Some(json!({ "name": "thousand", "body": "hello", "account_ids": [acc],
            "audience": { "phones": phones }, "rate_per_minute": 60000, "jitter_pct": 0 })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let cid = v["campaign"]["id"].as_str().unwrap().to_owned();
    let done = |p: &Value| {
        ["sent", "delivered", "read", "failed"].iter().map(|k| p[k].as_i64().unwrap()).sum::<i64>()
    };
    next_ws(&mut ws, "200 first contacts out, 800 held", |v| {
        v["event"] == "campaign_progress"
            && v["data"]["campaign_id"] == cid.as_str()
            && done(&v["data"]["progress"]) == 200
            && v["data"]["progress"]["held_new_contacts"] == 800
    })
    .await;

    let (_, account) = call(a, "GET", &format!("/api/v1/accounts/{acc}"), &key, None).await;
    assert_eq!(account["today"]["new_contacts"], 200, "{account}");
    let reset = account["today"]["resets_at"].as_i64().unwrap();
    let (_, c) = call(a, "GET", &format!("/api/v1/campaigns/{cid}"), &key, None).await;
    assert_eq!(c["status"], "running", "held, not paused or failed: {c}");
    assert_eq!(c["status_reason"], format!("new-contact limit reached; first contacts resume at {reset}"));
    assert_eq!(c["progress"]["failed"], 5, "{c}");
    let mut items = Vec::new();
    let mut after = 0;
    loop {
        let (_, page) = call(
            a,
            "GET",
            &format!("/api/v1/campaigns/{cid}/recipients?limit=1000&after={after}"),
            &key,
            None,
        )
        .await;
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_after"].as_i64() {
            Some(n) => after = n,
            None => break,
        }
    }
    let held: Vec<&Value> = items.iter().filter(|r| r["status"] == "pending").collect();
    assert_eq!(held.len(), 800);
    assert!(
        held.iter()
            .all(|r| r["reason"] == "new_contact_limit" && r["held_until"] == reset && r["attempts"] == 0),
        "{:?}",
        held.first()
    );
    // The five WhatsApp refused (463) failed once as restricted; nobody was tried twice.
    let failed: Vec<&Value> = items.iter().filter(|r| r["status"] == "failed").collect();
    assert!(
        failed.iter().all(|r| r["attempts"] == 1 && r["reason"].as_str().unwrap().starts_with("restricted:")),
        "{failed:?}"
    );
    let attempts = reach_outs(&emu, "15550046600");
    assert_eq!(attempts.len(), 200, "200 first contacts, none repeated");
    assert_eq!(attempts.iter().filter(|(_, refused)| *refused).count(), 5);
    let distinct: std::collections::HashSet<&String> = attempts.iter().map(|(to, _)| to).collect();
    assert_eq!(distinct.len(), 200);
    srv.stop().await;
}

/// Issue 17's fault-path accounting: 1,000 single sends to 50 phones while the emulator drops
/// acks, closes the connection, and ends the stream with 515 and 503, over and over. A send whose
/// ack never came is answered 202 and stays `pending` (never `failed`); a receipt settles it, or
/// it goes again under its id, but only on a connection that has read WhatsApp's offline queue.
/// At the end no row is `failed` or `pending`, each phone got each of its 20 messages exactly
/// once, under the row's WhatsApp id, and every row's timestamps are in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sends_under_dropped_acks_closes_515_and_503_reach_each_phone_once() {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    const PHONES: usize = 50;
    const PER_PHONE: usize = 20;
    const WORKERS: usize = 8;
    const FAULT_EVERY: usize = 40;

    let emu =
        Arc::new(Emulator::start(EmulatorConfig { seed: Some(31), ..Default::default() }).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(broadcaster::clock::ManualClock::new(T0));
    // The per-key request rate refills with the server's (manual) clock: lift it.
    let unlimited = |c: &mut Config| c.rate_limit_per_minute = 1_000_000;
    let (srv, admin, state) = start_clocked_with(dir.path(), &emu, clock.clone(), unlimited).await;
    let a = srv.addr;
    let (key, acc, ws) = linked_account(a, &admin.unwrap(), "+15550012000").await;
    // Generous enough for 1,000 sends in one day.
    let (s, v) = call(
        a,
        "PATCH",
        &format!("/api/v1/accounts/{acc}"),
        &key,
        Some(json!({ "daily_limit": 5000, "new_contact_limit": 1000 })),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let phones: Vec<_> = (0..PHONES)
        .map(|i| {
            let pn = format!("1555001{:04}", 2100 + i);
            (pn.clone(), emu.create_account(&pn, &format!("P{i}")).unwrap())
        })
        .collect();

    // Every `connection_update` to active bumps a generation: a worker refused with 409 (nothing
    // went out) waits for the session to come back before asking again.
    let (active_tx, active_rx) = tokio::sync::watch::channel(0u64);
    let events = Arc::new(tokio::sync::Notify::new());
    let reader = {
        let (acc, events) = (acc.clone(), events.clone());
        let mut ws = ws;
        tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                let tokio_tungstenite::tungstenite::Message::Text(t) = msg else { continue };
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["event"] == "connection_update"
                    && v["data"]["account_id"] == acc
                    && v["data"]["state"] == "active"
                {
                    active_tx.send_modify(|g| *g += 1);
                }
                events.notify_waiters();
            }
        })
    };

    let queue: Vec<(usize, usize)> = (0..PER_PHONE).flat_map(|k| (0..PHONES).map(move |p| (p, k))).collect();
    let queue = Arc::new(std::sync::Mutex::new(queue.into_iter()));
    let answered = Arc::new(AtomicUsize::new(0));
    let progress = Arc::new(tokio::sync::Notify::new());
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (queue, answered, progress, key, acc) =
            (queue.clone(), answered.clone(), progress.clone(), key.clone(), acc.clone());
        let pns: Vec<String> = phones.iter().map(|(pn, _)| pn.clone()).collect();
        let mut active = active_rx.clone();
        workers.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            loop {
                let next = queue.lock().unwrap().next();
                let Some((p, k)) = next else { break };
                let body = json!({ "to": format!("+{}", pns[p]), "text": format!("m{k} to {p}") });
                let path = format!("/api/v1/accounts/{acc}/messages");
                let mut refusals = 0;
                let v = loop {
                    let generation = *active.borrow_and_update();
                    let (s, v) = call(a, "POST", &path, &key, Some(body.clone())).await;
                    match s {
                        201 | 202 => break v,
                        // Refused before anything went out: safe to repeat once the session
                        // is back (or a moment later, if it never left `active` in the store).
                        409 => {
                            refusals += 1;
                            assert!(refusals < 200, "refused over and over: {v}");
                            let _ = tokio::time::timeout(
                                Duration::from_secs(2),
                                active.wait_for(|g| *g > generation),
                            )
                            .await;
                        }
                        _ => panic!("send answered {s}: {v}"),
                    }
                };
                assert_ne!(v["status"], "failed", "{v}");
                sent.push((p, k, v["id"].as_str().unwrap().to_owned(), v["status"] == "pending", refusals));
                answered.fetch_add(1, Ordering::SeqCst);
                progress.notify_waiters();
            }
            sent
        }));
    }

    // The faults, one every FAULT_EVERY answered sends, each on the session's connection of the
    // moment: withheld acks (those sends hang until the next fault ends the connection), then a
    // plain close, a 515 restart, a 503.
    let total = PHONES * PER_PHONE;
    let mut injected = 0;
    let mut round = 0;
    while answered.load(Ordering::SeqCst) < total {
        let wait = progress.notified();
        if answered.load(Ordering::SeqCst) >= (round + 1) * FAULT_EVERY {
            round += 1;
            let device = *emu.companions("15550012000").unwrap().last().expect("a linked companion");
            if let Ok(conn) = emu.connection_of("15550012000", device) {
                let r = match round % 6 {
                    1 | 3 | 5 => emu.fault_frames(
                        conn,
                        wa_emulator::Fault::DropStanzas { count: 3, only_tag: Some("ack".into()) },
                    ),
                    2 => emu.fault_close(conn),
                    4 => emu.fault_stream_error(conn, 515),
                    _ => emu.fault_stream_error(conn, 503),
                };
                if r.is_ok() {
                    injected += 1;
                }
            }
            continue;
        }
        if workers.iter().all(|w| w.is_finished()) {
            break;
        }
        let _ = tokio::time::timeout(T, wait).await;
    }
    let mut rows: HashMap<String, (usize, usize)> = HashMap::new();
    let (mut unconfirmed, mut refused) = (0, 0);
    for w in workers {
        for (p, k, id, pending, refusals) in w.await.unwrap() {
            rows.insert(id, (p, k));
            unconfirmed += usize::from(pending);
            refused += refusals;
        }
    }
    assert_eq!(rows.len(), total);
    eprintln!(
        "faults injected: {injected}; answered 202 (unconfirmed): {unconfirmed}; refused 409: {refused}"
    );
    assert!(injected >= 12, "faults injected: {injected}");
    // The faults did cut sends short after they went out.
    assert!(unconfirmed > 0, "no send was left unconfirmed");

    // Unconfirmed sends fall due after a few seconds of the server's clock: move it until no row
    // is pending.
    let list = |cursor: Option<String>| {
        let key = key.clone();
        let acc = acc.clone();
        async move {
            let mut path = format!("/api/v1/accounts/{acc}/messages?direction=outgoing&limit=200");
            if let Some(c) = cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let (s, v) = call(a, "GET", &path, &key, None).await;
            assert_eq!(s, 200, "{v}");
            v
        }
    };
    let all_rows = || async {
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let page = list(cursor).await;
            out.extend(page["messages"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return out,
            }
        }
    };
    let settled = tokio::time::timeout(linking::LINK_T, async {
        loop {
            let got = all_rows().await;
            let pending = got.iter().filter(|m| m["status"] == "pending").count();
            if pending == 0 {
                return got;
            }
            let wait = events.notified();
            clock.advance_ms(5_000);
            state.bulk_wake.notify_one();
            let _ = tokio::time::timeout(Duration::from_secs(1), wait).await;
        }
    })
    .await
    .expect("every send settles");
    assert_eq!(settled.len(), total, "one row per request");
    for m in &settled {
        let status = m["status"].as_str().unwrap();
        assert!(matches!(status, "sent" | "delivered" | "read"), "{m}");
        let (sent, delivered, read) =
            (m["sent_at"].as_i64(), m["delivered_at"].as_i64(), m["read_at"].as_i64());
        assert!(sent.is_some(), "{m}");
        if let Some(d) = delivered {
            assert!(sent.unwrap() <= d, "delivered before sent: {m}");
        }
        if let (Some(d), Some(r)) = (delivered, read) {
            assert!(d <= r, "read before delivered: {m}");
        }
    }

    // Each phone got each of its messages once (its inbox logs every delivery, repeats under
    // one id included), under the row's WhatsApp id.
    let wa_ids: HashMap<String, String> = settled
        .iter()
        .map(|m| (m["id"].as_str().unwrap().to_owned(), m["wa_message_id"].as_str().unwrap().to_owned()))
        .collect();
    for (id, (p, k)) in &rows {
        let (_, phone) = &phones[*p];
        let text = format!("m{k} to {p}");
        let want = &wa_ids[id];
        assert!(
            phone.wait_inbox(T, |inbox| inbox.iter().any(|m| m.text.as_deref() == Some(text.as_str()))).await,
            "{text} never arrived"
        );
        let copies: Vec<String> = phone
            .inbox()
            .into_iter()
            .filter(|m| m.text.as_deref() == Some(text.as_str()))
            .map(|m| m.id)
            .collect();
        assert_eq!(copies, std::slice::from_ref(want), "{text}: one delivery under the row's id");
    }
    reader.abort();
    srv.stop().await;
}
