//! Every message kind both ways between a broadcaster account and unmodified Baileys
//! 7.0.0-rc14 (tests/interop/baileys/baileys-peer.mjs), each linked to its own emulator account
//! by its account's simulated phone scanning the QR. One Baileys session for the whole
//! scenario (starting Baileys is slow):
//!
//! - Baileys sends a text, a reply quoting ours, a reaction to ours, an edit and a revoke of its
//!   own, a location, a contact card and a poll: each is in the broadcaster's history as it
//!   should be (the reply keeps `quoted_id`; the reaction, edit and revoke update their target
//!   instead of becoming messages) and reaches a webhook as a typed event.
//! - The broadcaster reacts, edits, deletes for everyone, marks read, replies with an image,
//!   and sends a location, a contact card and a poll through its API: Baileys receives each.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/harness.rs"]
mod harness;
#[path = "../../wa-emulator/tests/common/mod.rs"]
mod peer;

use std::net::SocketAddr;

use base64::Engine as _;
use bytes::Bytes;
use harness::{Running, T, call};
use peer::{TempDir, pair_by_qr};
use serde_json::{Value, json};
use tokio::sync::mpsc;

const BAILEYS_PN: &str = "15550009201";
const ACCOUNT_PN: &str = "15550009202";

/// Webhook deliveries (envelopes), in order.
struct Hooks {
    rx: mpsc::UnboundedReceiver<Value>,
    seen: Vec<Value>,
}

impl Hooks {
    async fn start() -> (SocketAddr, Hooks) {
        let (tx, rx) = mpsc::unbounded_channel();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |b: Bytes| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(serde_json::from_slice::<Value>(&b).unwrap());
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (addr, Hooks { rx, seen: Vec::new() })
    }

    /// The next delivery of event `kind` whose data matches `pred`.
    async fn expect(&mut self, kind: &str, mut pred: impl FnMut(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + T;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(v)) => {
                    self.seen.push(v.clone());
                    if v["type"] == kind && pred(&v["data"]) {
                        return v["data"].clone();
                    }
                }
                _ => panic!(
                    "no {kind} webhook; got {:#?}",
                    self.seen.iter().map(|v| &v["type"]).collect::<Vec<_>>()
                ),
            }
        }
    }
}

/// The account's stored message with WhatsApp id `wa_id`.
async fn stored(r: &Running, key: &str, acc: &str, wa_id: &str) -> Value {
    let (s, v) = call(r.addr, "GET", &format!("/api/v1/accounts/{acc}/messages?limit=200"), key, None).await;
    assert_eq!(s, 200, "{v}");
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["wa_message_id"] == wa_id)
        .unwrap_or_else(|| panic!("no stored message {wa_id} in {v:#}"))
        .clone()
}

async fn send(r: &Running, key: &str, acc: &str, body: Value) -> Value {
    let (s, v) = call(r.addr, "POST", &format!("/api/v1/accounts/{acc}/messages"), key, Some(body)).await;
    assert_eq!(s, 201, "{v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_kind_both_ways_with_baileys() {
    let r = Running::start(93).await;
    let key = r.tenant("kinds").await;
    let (hook_addr, mut hooks) = Hooks::start().await;
    let (s, v) = call(
        r.addr,
        "POST",
        "/api/v1/webhooks",
        &key,
        Some(json!({ "url": format!("http://{hook_addr}/hook"), "events": ["*"] })),
    )
    .await;
    assert_eq!(s, 201, "{v}");

    // Baileys, then the broadcaster account, each linked by its phone scanning the QR.
    r.emu.create_account(BAILEYS_PN, "Baileys").unwrap();
    let auth = TempDir::new("broadcaster-kinds");
    let mut peer = pair_by_qr(&r.emu, BAILEYS_PN, &auth.0).await;
    let (s, v) = call(
        r.addr,
        "POST",
        "/api/v1/accounts",
        &key,
        Some(json!({ "name": "Kinds", "phone": format!("+{ACCOUNT_PN}") })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let acc = v["id"].as_str().unwrap().to_owned();
    let (s, v) = call(r.addr, "POST", &format!("/api/v1/accounts/{acc}/connect"), &key, None).await;
    assert_eq!(s, 202, "{v}");
    let (s, v) = call(r.addr, "POST", &format!("/api/v1/emulator/accounts/{acc}/scan"), &key, None).await;
    assert_eq!(s, 200, "{v}");
    hooks.expect("connection_update", |d| d["state"] == "active").await;
    // Baileys addresses the (LID-migrated) account by its LID, as such accounts require.
    let to_account = r.emu.phone(ACCOUNT_PN).unwrap().lid().to_string();
    let baileys_pn = format!("{BAILEYS_PN}@s.whatsapp.net");
    let to_baileys = format!("+{BAILEYS_PN}");

    // Our text, then Baileys' text.
    let ours = send(&r, &key, &acc, json!({ "to": to_baileys, "text": "hello baileys" })).await;
    let (ours_id, ours_wa) =
        (ours["id"].as_str().unwrap().to_owned(), ours["wa_message_id"].as_str().unwrap().to_owned());
    let v = peer.expect_message(&ours_wa).await;
    assert_eq!(v["text"], "hello baileys", "{v}");
    let theirs_wa = peer.send_message(&to_account, json!({ "text": "hello broadcaster" }), None).await;
    let d = hooks.expect("incoming_message", |d| d["wa_message_id"] == theirs_wa.as_str()).await;
    assert_eq!((d["kind"].as_str(), d["body"].as_str()), (Some("text"), Some("hello broadcaster")), "{d}");
    assert_eq!(d["chat"], baileys_pn.as_str(), "{d}");
    let theirs_id = d["id"].as_str().unwrap().to_owned();

    // A reply quoting our text keeps the link.
    let reply_wa = peer.send_message(&to_account, json!({ "text": "baileys replies" }), Some(&ours_wa)).await;
    let d = hooks.expect("incoming_message", |d| d["wa_message_id"] == reply_wa.as_str()).await;
    assert_eq!(d["quoted_id"], ours_id.as_str(), "{d}");
    assert_eq!(d["quoted_wa_message_id"], ours_wa.as_str(), "{d}");

    // A reaction to our text updates it.
    let react_wa =
        peer.send_message(&to_account, json!({ "react": { "text": "🎉", "to": ours_wa } }), None).await;
    let d = hooks.expect("message_reaction", |d| d["wa_message_id"] == ours_wa.as_str()).await;
    assert_eq!((d["message_id"].as_str(), d["emoji"].as_str()), (Some(ours_id.as_str()), Some("🎉")), "{d}");
    assert_eq!(d["sender"], baileys_pn.as_str(), "{d}");
    let m = stored(&r, &key, &acc, &ours_wa).await;
    assert_eq!(m["reactions"].as_array().unwrap().len(), 1, "{m}");
    assert_eq!(
        (m["reactions"][0]["sender"].as_str(), m["reactions"][0]["emoji"].as_str()),
        (Some(baileys_pn.as_str()), Some("🎉"))
    );

    // Baileys edits its text: the stored message changes, its earlier text is kept.
    let edit_wa = peer
        .send_message(&to_account, json!({ "text": "hello broadcaster (edited)", "edit": theirs_wa }), None)
        .await;
    let d = hooks.expect("message_edited", |d| d["wa_message_id"] == theirs_wa.as_str()).await;
    assert_eq!(d["body"], "hello broadcaster (edited)", "{d}");
    assert_eq!(d["previous_body"], "hello broadcaster", "{d}");
    let m = stored(&r, &key, &acc, &theirs_wa).await;
    assert_eq!(m["body"], "hello broadcaster (edited)", "{m}");
    assert_eq!(m["edits"][0]["body"], "hello broadcaster", "{m}");
    assert!(m["edited_at"].is_i64(), "{m}");

    // Baileys deletes its reply for everyone: flagged, not gone.
    let revoke_wa = peer.send_message(&to_account, json!({ "delete": reply_wa }), None).await;
    let d = hooks.expect("message_revoked", |d| d["wa_message_id"] == reply_wa.as_str()).await;
    assert_eq!(d["message"]["revoked"], true, "{d}");
    let m = stored(&r, &key, &acc, &reply_wa).await;
    assert_eq!((m["revoked"].as_bool(), m["body"].as_str()), (Some(true), Some("baileys replies")), "{m}");

    // A location, a contact card and a poll arrive typed.
    let loc_wa = peer
        .send_message(
            &to_account,
            json!({ "location": { "degreesLatitude": 48.8584, "degreesLongitude": 2.2945, "name": "Eiffel Tower" } }),
            None,
        )
        .await;
    let d = hooks.expect("incoming_message", |d| d["wa_message_id"] == loc_wa.as_str()).await;
    assert_eq!(d["kind"], "location", "{d}");
    assert_eq!(
        (d["location"]["latitude"].as_f64(), d["location"]["name"].as_str()),
        (Some(48.8584), Some("Eiffel Tower"))
    );
    let vcard =
        "BEGIN:VCARD\nVERSION:3.0\nFN:Ann Example\nTEL;type=CELL;waid=15550001234:+15550001234\nEND:VCARD";
    let card_wa = peer
        .send_message(
            &to_account,
            json!({ "contacts": { "displayName": "Ann Example", "contacts": [{ "displayName": "Ann Example", "vcard": vcard }] } }),
            None,
        )
        .await;
    let d = hooks.expect("incoming_message", |d| d["wa_message_id"] == card_wa.as_str()).await;
    assert_eq!(d["kind"], "contact", "{d}");
    assert_eq!(
        (d["contact"]["display_name"].as_str(), d["contact"]["vcard"].as_str()),
        (Some("Ann Example"), Some(vcard))
    );
    let poll_wa = peer
        .send_message(
            &to_account,
            json!({ "poll": { "name": "Lunch?", "values": ["pizza", "salad"], "selectableCount": 1 } }),
            None,
        )
        .await;
    let d = hooks.expect("incoming_message", |d| d["wa_message_id"] == poll_wa.as_str()).await;
    assert_eq!(d["kind"], "poll", "{d}");
    assert_eq!(
        d["poll"],
        json!({ "name": "Lunch?", "options": ["pizza", "salad"], "selectable_count": 1 }),
        "{d}"
    );

    // The reaction, edit and revoke became no messages of their own.
    let (_, v) =
        call(r.addr, "GET", &format!("/api/v1/accounts/{acc}/messages?direction=incoming"), &key, None).await;
    let mut got: Vec<&str> =
        v["messages"].as_array().unwrap().iter().map(|m| m["wa_message_id"].as_str().unwrap()).collect();
    got.sort_unstable();
    let mut want =
        vec![theirs_wa.as_str(), reply_wa.as_str(), loc_wa.as_str(), card_wa.as_str(), poll_wa.as_str()];
    want.sort_unstable();
    assert_eq!(got, want, "reaction {react_wa}, edit {edit_wa}, revoke {revoke_wa} are not messages");

    // Now the broadcaster acts. A reaction to Baileys' text.
    let (s, m) = call(
        r.addr,
        "POST",
        &format!("/api/v1/accounts/{acc}/messages/{theirs_id}/reaction"),
        &key,
        Some(json!({ "emoji": "👍" })),
    )
    .await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(
        m["reactions"],
        json!([{ "sender": "me", "emoji": "👍", "at": m["reactions"][0]["at"] }]),
        "{m}"
    );
    let v = peer.expect("our reaction", |v| v["reaction"]["key"]["id"] == theirs_wa.as_str()).await;
    assert_eq!(v["reaction"]["text"], "👍", "{v}");
    hooks.expect("message_reaction", |d| d["sender"] == "me" && d["message_id"] == theirs_id.as_str()).await;

    // An edit of our text.
    let (s, m) = call(
        r.addr,
        "PATCH",
        &format!("/api/v1/accounts/{acc}/messages/{ours_id}"),
        &key,
        Some(json!({ "text": "hello baileys (edited)" })),
    )
    .await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(
        (m["body"].as_str(), m["edits"][0]["body"].as_str()),
        (Some("hello baileys (edited)"), Some("hello baileys"))
    );
    let v = peer
        .expect("our edit", |v| v["protocol"]["id"] == ours_wa.as_str() && v["protocol"]["type"] == 14)
        .await;
    assert_eq!(v["protocol"]["text"], "hello baileys (edited)", "{v}");
    hooks.expect("message_edited", |d| d["sender"] == "me" && d["message_id"] == ours_id.as_str()).await;
    // Only our own messages can be edited or deleted.
    let (s, v) = call(
        r.addr,
        "PATCH",
        &format!("/api/v1/accounts/{acc}/messages/{theirs_id}"),
        &key,
        Some(json!({ "text": "not mine" })),
    )
    .await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("not_own_message")), "{v}");

    // Read receipts for Baileys' text: Baileys sees it read.
    let (s, v) = call(
        r.addr,
        "POST",
        &format!("/api/v1/accounts/{acc}/messages/read"),
        &key,
        Some(json!({ "message_ids": [theirs_id] })),
    )
    .await;
    assert_eq!(s, 204, "{v}");
    peer.expect("read receipt", |v| {
        v["event"] == "receipt"
            && v["update"]["key"]["id"] == theirs_wa.as_str()
            && v["update"]["update"]["status"] == 4
    })
    .await;

    // An image replying to Baileys' text.
    let png = base64::engine::general_purpose::STANDARD.encode(b"\x89PNG\r\n\x1a\n not really a picture");
    let img = send(
        &r,
        &key,
        &acc,
        json!({ "to": to_baileys, "media": { "kind": "image", "data_base64": png, "mimetype": "image/png", "caption": "look" },
                "reply_to": theirs_id }),
    )
    .await;
    assert_eq!(img["quoted_id"], theirs_id.as_str(), "{img}");
    let v = peer.expect_message(img["wa_message_id"].as_str().unwrap()).await;
    assert_eq!(
        (v["media"]["kind"].as_str(), v["quoted"].as_str()),
        (Some("imageMessage"), Some(theirs_wa.as_str())),
        "{v}"
    );

    // A location, a contact card and a poll.
    let loc = send(
        &r,
        &key,
        &acc,
        json!({ "to": to_baileys, "location": { "latitude": 52.5163, "longitude": 13.3777, "name": "Brandenburg Gate" } }),
    )
    .await;
    assert_eq!(
        (loc["kind"].as_str(), loc["location"]["name"].as_str()),
        (Some("location"), Some("Brandenburg Gate"))
    );
    let v = peer.expect_message(loc["wa_message_id"].as_str().unwrap()).await;
    assert_eq!(
        (v["location"]["latitude"].as_f64(), v["location"]["longitude"].as_f64()),
        (Some(52.5163), Some(13.3777)),
        "{v}"
    );
    assert_eq!(v["location"]["name"], "Brandenburg Gate", "{v}");
    let card = send(
        &r,
        &key,
        &acc,
        json!({ "to": to_baileys, "contact": { "display_name": "Bob Example", "phone": "+1 555 000 5678" } }),
    )
    .await;
    let v = peer.expect_message(card["wa_message_id"].as_str().unwrap()).await;
    assert_eq!(v["contact"]["displayName"], "Bob Example", "{v}");
    assert!(v["contact"]["vcard"].as_str().unwrap().contains("waid=15550005678:+15550005678"), "{v}");
    let poll = send(
        &r,
        &key,
        &acc,
        json!({ "to": to_baileys, "poll": { "name": "Coffee?", "options": ["yes", "no", "later"], "selectable_count": 1 } }),
    )
    .await;
    let v = peer.expect_message(poll["wa_message_id"].as_str().unwrap()).await;
    assert_eq!(v["kind"], "pollCreationMessageV3", "{v}");
    assert_eq!(
        v["poll"],
        json!({ "name": "Coffee?", "options": ["yes", "no", "later"], "selectable": 1, "hasSecret": true }),
        "{v}"
    );

    // Typing, then recording: Baileys shows both.
    for (state, shown) in [("typing", "composing"), ("recording", "recording")] {
        let (s, v) = call(
            r.addr,
            "POST",
            &format!("/api/v1/accounts/{acc}/chat-state"),
            &key,
            Some(json!({ "to": to_baileys, "state": state })),
        )
        .await;
        assert_eq!(s, 204, "{v}");
        peer.expect(state, |v| {
            v["event"] == "presence"
                && v["presences"]
                    .as_object()
                    .is_some_and(|p| p.values().any(|p| p["lastKnownPresence"] == shown))
        })
        .await;
    }

    // Delete our text for everyone.
    let (s, m) =
        call(r.addr, "DELETE", &format!("/api/v1/accounts/{acc}/messages/{ours_id}"), &key, None).await;
    assert_eq!((s, m["revoked"].as_bool()), (200, Some(true)), "{m}");
    peer.expect("our revoke", |v| v["protocol"]["id"] == ours_wa.as_str() && v["protocol"]["type"] == 0)
        .await;
    hooks.expect("message_revoked", |d| d["sender"] == "me" && d["message_id"] == ours_id.as_str()).await;

    peer.quit().await;
    r.stop().await;
}
