//! Socket.IO compatibility against the real npm `socket.io-client`: both ways of authenticating,
//! refused keys, tenant and channel filtering, and the seed-001 event names and payload shapes for
//! QR codes, connection updates, message status and incoming messages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/harness.rs"]
mod harness;
#[path = "common/socketio.rs"]
mod socketio;

use harness::{Running, T, call};
use serde_json::json;
use socketio::SioClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_events_auth_and_tenant_filtering_with_npm_client() {
    let srv = Running::start(21).await;
    let a = srv.addr;
    let key_a = srv.tenant("a").await;
    let key_b = srv.tenant("b").await;
    let (s, v) = call(
        a,
        "POST",
        "/api/v1/accounts",
        &key_a,
        Some(json!({ "name": "Support", "phone": "+15550001111" })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let acc = v["id"].as_str().unwrap().to_owned();

    // A key in the handshake (`auth: { apiKey }`): authenticated at once, whole tenant.
    let mut whole = SioClient::spawn(a, Some(&key_a)).await;
    whole.next("connect", |v| v["event"] == "connect").await;
    let d = whole.event("authenticated", |_| true).await;
    assert!(d["tenantId"].is_string(), "{d}");

    // A bad handshake key is refused with connect_error.
    let mut refused = SioClient::spawn(a, Some("bk_not_a_key")).await;
    let v = refused.next("connect_error", |v| v["event"] == "connect_error" || v["event"] == "connect").await;
    assert_eq!(v["event"], "connect_error", "{v}");
    assert!(v["message"].as_str().unwrap().contains("unauthorized"), "{v}");
    refused.close().await;

    // The seed's flow: connect, emit `authenticate`, then `subscribe_channel`.
    let mut chan = SioClient::spawn(a, None).await;
    chan.next("connect", |v| v["event"] == "connect").await;
    chan.emit("subscribe_channel", json!({ "channelId": acc })).await;
    let e = chan.event("error", |_| true).await;
    assert_eq!(e["code"], "unauthorized", "subscribing before authenticating: {e}");
    chan.emit("authenticate", json!({ "apiKey": "bk_wrong" })).await;
    chan.event("unauthorized", |_| true).await;
    chan.emit("authenticate", json!({ "apiKey": key_a })).await;
    chan.event("authenticated", |_| true).await;
    chan.emit("subscribe_channel", json!({ "channelId": acc })).await;
    assert_eq!(chan.event("subscribed", |_| true).await["channelId"], acc.as_str());

    // Tenant B cannot subscribe to A's account and sees none of A's events.
    let mut other = SioClient::spawn(a, None).await;
    other.next("connect", |v| v["event"] == "connect").await;
    other.emit("authenticate", json!({ "apiKey": key_b })).await;
    other.event("authenticated", |_| true).await;
    other.emit("subscribe_channel", json!({ "channelId": acc })).await;
    assert_eq!(other.event("error", |_| true).await["code"], "not_found");

    // Connect: qr_code with a PNG data URL, then (scanned) connection_update active.
    let (s, v) = call(a, "POST", &format!("/api/v1/accounts/{acc}/connect"), &key_a, None).await;
    assert_eq!(s, 202, "{v}");
    for c in [&mut whole, &mut chan] {
        let qr = c.event("qr_code", |d| d["channelId"] == acc.as_str()).await;
        assert!(qr["qrCode"].as_str().unwrap().starts_with("data:image/png;base64,"), "{qr}");
        assert!(qr["timestamp"].as_str().unwrap().ends_with('Z'), "{qr}");
        assert_eq!(qr["qr"], v["link"]["qr"], "{qr}");
    }
    let (s, v) = call(a, "POST", &format!("/api/v1/emulator/accounts/{acc}/scan"), &key_a, None).await;
    assert_eq!(s, 200, "{v}");
    for c in [&mut whole, &mut chan] {
        c.event("connection_update", |d| d["channelId"] == acc.as_str() && d["status"] == "active").await;
    }

    // A second account of tenant A: the whole-tenant socket sees it, the subscribed one must not.
    let (_, v) = call(a, "POST", "/api/v1/accounts", &key_a, Some(json!({ "name": "Sales" }))).await;
    let acc2 = v["id"].as_str().unwrap().to_owned();
    let (s, _) = call(a, "POST", &format!("/api/v1/accounts/{acc2}/connect"), &key_a, None).await;
    assert_eq!(s, 202);
    whole.event("qr_code", |d| d["channelId"] == acc2.as_str()).await;

    // Send; the phone reads it: message_status_update read, with our message id.
    let bob = srv.emu.create_account("15550002222", "Bob").unwrap();
    let (s, sent) = call(
        a,
        "POST",
        &format!("/api/v1/accounts/{acc}/messages"),
        &key_a,
        Some(json!({ "to": "+15550002222", "text": "hello Bob" })),
    )
    .await;
    assert_eq!(s, 201, "{sent}");
    let msg_id = sent["id"].as_str().unwrap().to_owned();
    let wa_id = sent["wa_message_id"].as_str().unwrap().to_owned();
    bob.wait_message(T, |m| m.id == wa_id).await.expect("Bob received it");
    bob.mark_read(std::slice::from_ref(&wa_id)).unwrap();
    for c in [&mut whole, &mut chan] {
        let st = c
            .event("message_status_update", |d| d["messageId"] == msg_id.as_str() && d["status"] == "read")
            .await;
        assert_eq!(st["channelId"], acc.as_str());
        assert_eq!(st["waMessageId"], wa_id.as_str());
    }

    // The phone replies: incoming_message in the seed's shape.
    let (_, v) = call(a, "GET", &format!("/api/v1/accounts/{acc}"), &key_a, None).await;
    let me: wa_client::Jid =
        format!("{}@s.whatsapp.net", v["phone"].as_str().unwrap().trim_start_matches('+')).parse().unwrap();
    let reply = bob.send_text(&me, "thanks!").unwrap();
    for c in [&mut whole, &mut chan] {
        let m = c.event("incoming_message", |d| d["waMessageId"] == reply.as_str()).await;
        assert_eq!(
            (m["channelId"].as_str(), m["message"].as_str(), m["type"].as_str()),
            (Some(acc.as_str()), Some("thanks!"), Some("incoming")),
            "{m}"
        );
        assert_eq!(m["from"], "15550002222@s.whatsapp.net", "{m}");
        assert!(m["messageId"].as_str().unwrap().starts_with("msg_"), "{m}");
    }
    // Everything the subscribed socket got was about its channel (acc2's QR came before the reply).
    for v in &chan.seen {
        if let Some(c) = v["data"].get("channelId").filter(|_| v["event"] != "subscribed") {
            assert_eq!(c, acc.as_str(), "channel filter leaked {v}");
        }
    }

    // Tenant B's own event arrives; nothing of tenant A's came before it.
    let (_, v) = call(a, "POST", "/api/v1/accounts", &key_b, Some(json!({ "name": "B" }))).await;
    let acc_b = v["id"].as_str().unwrap().to_owned();
    let (s, _) = call(a, "POST", &format!("/api/v1/accounts/{acc_b}/connect"), &key_b, None).await;
    assert_eq!(s, 202);
    other.event("qr_code", |d| d["channelId"] == acc_b.as_str()).await;
    for v in &other.seen {
        assert!(
            !v.to_string().contains(&acc) && !v.to_string().contains(&acc2),
            "tenant B saw tenant A's event: {v}"
        );
    }

    for c in [whole, chan, other] {
        c.close().await;
    }
    srv.stop().await;
}
