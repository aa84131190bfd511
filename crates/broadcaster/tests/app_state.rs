//! What the account's phone says through app state, end to end against the in-process
//! emulator: the phone's address-book names and chat marks (pin, mute) made before linking
//! arrive with the first sync and show in the chats, contacts and history APIs; the phone
//! archiving a chat afterwards is a `chat_update` event (live and webhook); marking a chat read
//! (and unarchiving, unmuting) through the API reaches the phone's own collections. A chat
//! the phone marked without any messages is listed too, and the push names of the phone's
//! history reach the contacts API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/harness.rs"]
mod harness;
#[path = "common/ws.rs"]
mod ws;

use std::net::SocketAddr;
use ws::next_ws;

use bytes::Bytes;
use harness::{Running, T, call};
use serde_json::{Value, json};
use tokio::sync::mpsc;

const ME: &str = "15550191000";
const ANN: &str = "15550191001";
const BOB: &str = "15550191002";
const CAROL: &str = "15550191003";
/// 2100-01-01, in ms.
const MUTED_UNTIL: i64 = 4_102_444_800_000;

/// A webhook receiver: every POST's body, answered 200.
async fn webhook_receiver() -> (SocketAddr, mpsc::UnboundedReceiver<Value>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |b: Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(serde_json::from_slice(&b).unwrap());
                axum::http::StatusCode::OK
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (addr, rx)
}

/// The emulator's control API address.
fn control_addr(srv: &Running) -> SocketAddr {
    let url = srv.emu.control_url();
    url.trim_start_matches("http://").trim_end_matches("/control").parse().unwrap()
}

/// The phone changes its app state through the emulator's control API.
async fn phone_action(srv: &Running, body: Value) {
    let (s, v) =
        call(control_addr(srv), "POST", &format!("/control/phones/{ME}/app-state/action"), "", Some(body))
            .await;
    assert_eq!(s, 200, "{v}");
}

/// The value the phone holds at an app-state index.
fn phone_value(srv: &Running, index: &[&str]) -> Option<wa_proto::SyncActionValue> {
    srv.emu.with_world(|w| {
        let a = w.account_by_pn(ME).unwrap();
        w.app_state_value(a, index)
    })
}

fn chat_of<'a>(page: &'a Value, jid: &str) -> &'a Value {
    page["chats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["chat"] == jid)
        .unwrap_or_else(|| panic!("{jid}: {page}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_phones_names_and_chat_marks_reach_the_api_and_ours_reach_the_phone() {
    let srv = Running::start(191).await;
    let a = srv.addr;
    srv.emu.create_account(ME, "Me").unwrap();
    let ann = srv.emu.create_account(ANN, "Annie").unwrap();
    let ann_jid = format!("{ANN}@s.whatsapp.net");

    // Before linking, the phone saves Ann in its address book, pins and mutes her chat.
    phone_action(&srv, json!({ "action": "contact", "chat": ann_jid, "name": "Ann Smith" })).await;
    phone_action(&srv, json!({ "action": "mute", "chat": ann_jid, "value": true, "until_ms": MUTED_UNTIL }))
        .await;
    phone_action(&srv, json!({ "action": "pin", "chat": ann_jid, "value": true })).await;

    let key = srv.tenant("appstate").await;
    let (s, v) = call(a, "POST", "/api/v1/contacts", &key, Some(json!({ "phone": format!("+{ANN}") }))).await;
    assert_eq!(s, 201, "{v}");
    let contact = v["id"].as_str().unwrap().to_owned();
    let (hook_addr, mut hooks) = webhook_receiver().await;
    let (s, v) = call(
        a,
        "POST",
        "/api/v1/webhooks",
        &key,
        Some(json!({ "url": format!("http://{hook_addr}/hook"), "events": ["chat_update"] })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) =
        call(a, "POST", "/api/v1/accounts", &key, Some(json!({ "name": "Me", "phone": format!("+{ME}") })))
            .await;
    assert_eq!(s, 201, "{v}");
    let acc = v["id"].as_str().unwrap().to_owned();
    let url = format!("ws://{a}/api/v1/events/ws?api_key={key}");
    let (mut ws, _) = tokio::time::timeout(T, tokio_tungstenite::connect_async(url)).await.unwrap().unwrap();
    next_ws(&mut ws, "ready", |v| v["event"] == "ready").await;
    let (s, v) = call(a, "POST", &format!("/api/v1/accounts/{acc}/connect"), &key, None).await;
    assert_eq!(s, 202, "{v}");
    let (s, v) = call(a, "POST", &format!("/api/v1/emulator/accounts/{acc}/scan"), &key, None).await;
    assert_eq!(s, 200, "{v}");

    // The first sync brings the marks: a chat_update for each, in the order the collections
    // were applied, the last one with both.
    let is_ann = |v: &Value| v["event"] == "chat_update" && v["data"]["chat"] == ann_jid.as_str();
    let marked = next_ws(&mut ws, "pin and mute", |v| {
        is_ann(v) && v["data"]["pinned"] == true && v["data"]["muted_until"] == MUTED_UNTIL
    })
    .await;
    assert_eq!(
        (marked["data"]["account_id"].as_str(), marked["data"]["archived"].as_bool()),
        (Some(&*acc), Some(false))
    );

    // The phone archives the chat: an event, live and at the webhook. The sync it starts waits
    // for the first one, so the address book is recorded by then too.
    phone_action(&srv, json!({ "action": "archive", "chat": ann_jid, "value": true })).await;
    let ev = next_ws(&mut ws, "archive", |v| is_ann(v) && v["data"]["archived"] == true).await;
    assert_eq!(ev["data"]["pinned"], true, "{ev}");
    let delivered = tokio::time::timeout(T, async {
        loop {
            let p = hooks.recv().await.expect("webhook receiver open");
            if p["type"] == "chat_update" && p["data"]["archived"] == true {
                return p;
            }
        }
    })
    .await
    .expect("chat_update delivered to the webhook");
    assert_eq!(delivered["data"]["chat"], ann_jid.as_str(), "{delivered}");

    // Ann writes: her chat is listed with the phone's name for her and its marks.
    let me: wa_client::Jid = format!("{ME}@s.whatsapp.net").parse().unwrap();
    let hello = ann.send_text(&me, "hello").unwrap();
    next_ws(&mut ws, "Ann's message", |v| {
        v["event"] == "incoming_message" && v["data"]["wa_message_id"] == hello.as_str()
    })
    .await;
    let (s, page) = call(a, "GET", &format!("/api/v1/accounts/{acc}/chats"), &key, None).await;
    assert_eq!(s, 200, "{page}");
    let chat = chat_of(&page, &ann_jid);
    assert_eq!(chat["name"], "Ann Smith", "{chat}");
    assert_eq!((chat["pinned"].as_bool(), chat["archived"].as_bool()), (Some(true), Some(true)), "{chat}");
    assert_eq!(chat["muted_until"], MUTED_UNTIL, "{chat}");
    assert_eq!(chat["marked_read"], Value::Null, "{chat}");
    assert_eq!(chat["last_message"]["sender_name"], "Ann Smith", "{chat}");
    // History names the sender as the phone does; the contact lists the account's name for her.
    let (s, h) = call(a, "GET", &format!("/api/v1/accounts/{acc}/messages?chat=%2B{ANN}"), &key, None).await;
    assert_eq!(s, 200, "{h}");
    assert_eq!(h["messages"][0]["sender_name"], "Ann Smith", "{h}");
    assert_eq!(h["messages"][0]["push_name"], "Annie", "{h}");
    let (s, c) = call(a, "GET", &format!("/api/v1/contacts/{contact}"), &key, None).await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(
        c["whatsapp_names"],
        json!([{ "account_id": acc, "saved_name": "Ann Smith", "push_name": null }])
    );

    // Marked read here: the phone's collection has it, and so does the chat.
    let path = format!("/api/v1/accounts/{acc}/chats/{ann_jid}");
    let (s, v) = call(a, "PATCH", &path, &key, Some(json!({ "read": true }))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((v["marked_read"].as_bool(), v["archived"].as_bool()), (Some(true), Some(true)), "{v}");
    let read = phone_value(&srv, &["markChatAsRead", &ann_jid]).expect("the phone holds the read mark");
    assert_eq!(read.mark_chat_as_read_action.and_then(|r| r.read), Some(true));
    next_ws(&mut ws, "read", |v| is_ann(v) && v["data"]["marked_read"] == true).await;

    // Unarchived and unmuted by number; the phone sees both.
    let (s, v) = call(
        a,
        "PATCH",
        &format!("/api/v1/accounts/{acc}/chats/%2B{ANN}"),
        &key,
        Some(json!({ "archived": false, "muted": false })),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((v["archived"].as_bool(), v["muted_until"].as_i64()), (Some(false), None), "{v}");
    let archive = phone_value(&srv, &["archive", &ann_jid]).expect("the phone holds the archive mark");
    assert_eq!(archive.archive_chat_action.and_then(|x| x.archived), Some(false));
    let mute = phone_value(&srv, &["mute", &ann_jid]).expect("the phone holds the mute");
    assert_eq!(mute.mute_action.and_then(|m| m.muted), Some(false));
    let (s, v) = call(a, "GET", &path, &key, None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["archived"].as_bool(), v["pinned"].as_bool(), v["marked_read"].as_bool()),
        (Some(false), Some(true), Some(true)),
        "{v}"
    );

    // Bad requests are typed errors; nothing reaches the phone.
    for body in [json!({}), json!({ "muted_until": MUTED_UNTIL }), json!({ "muted": true, "muted_until": 1 })]
    {
        let (s, v) = call(a, "PATCH", &path, &key, Some(body)).await;
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_body")), "{v}");
    }
    let (s, v) = call(
        a,
        "PATCH",
        &format!("/api/v1/accounts/{acc}/chats/not-a-chat"),
        &key,
        Some(json!({ "read": true })),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    ws.close(None).await.ok();
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_marked_without_messages_is_listed_and_history_push_names_reach_contacts() {
    let srv = Running::start(192).await;
    let a = srv.addr;
    srv.emu.create_account(ME, "Me").unwrap();
    srv.emu.create_account(BOB, "Bobby").unwrap();
    srv.emu.create_account(CAROL, "Caroline").unwrap();
    let bob_jid = format!("{BOB}@s.whatsapp.net");
    // Before linking: the phone pins and archives Bob's chat, which has no messages; Carol
    // gave the account her privacy token, so her push name is in the phone's history.
    phone_action(&srv, json!({ "action": "pin", "chat": bob_jid, "value": true })).await;
    phone_action(&srv, json!({ "action": "archive", "chat": bob_jid, "value": true })).await;
    srv.emu.with_world(|w| {
        let (me, carol) = (w.account_by_pn(ME).unwrap(), w.account_by_pn(CAROL).unwrap());
        w.give_token(carol, me);
    });

    let key = srv.tenant("marked").await;
    let (s, v) =
        call(a, "POST", "/api/v1/contacts", &key, Some(json!({ "phone": format!("+{CAROL}") }))).await;
    assert_eq!(s, 201, "{v}");
    let carol_contact = v["id"].as_str().unwrap().to_owned();
    let (s, v) =
        call(a, "POST", "/api/v1/accounts", &key, Some(json!({ "name": "Me", "phone": format!("+{ME}") })))
            .await;
    assert_eq!(s, 201, "{v}");
    let acc = v["id"].as_str().unwrap().to_owned();
    let url = format!("ws://{a}/api/v1/events/ws?api_key={key}");
    let (mut ws, _) = tokio::time::timeout(T, tokio_tungstenite::connect_async(url)).await.unwrap().unwrap();
    next_ws(&mut ws, "ready", |v| v["event"] == "ready").await;
    let (s, v) = call(a, "POST", &format!("/api/v1/accounts/{acc}/connect"), &key, None).await;
    assert_eq!(s, 202, "{v}");
    let (s, v) = call(a, "POST", &format!("/api/v1/emulator/accounts/{acc}/scan"), &key, None).await;
    assert_eq!(s, 200, "{v}");
    next_ws(&mut ws, "Bob's marks", |v| {
        v["event"] == "chat_update"
            && v["data"]["chat"] == bob_jid.as_str()
            && v["data"]["pinned"] == true
            && v["data"]["archived"] == true
    })
    .await;

    // Listed with its marks, though no message was ever recorded in it.
    let (s, page) = call(a, "GET", &format!("/api/v1/accounts/{acc}/chats"), &key, None).await;
    assert_eq!(s, 200, "{page}");
    let chat = chat_of(&page, &bob_jid);
    assert_eq!((chat["pinned"].as_bool(), chat["archived"].as_bool()), (Some(true), Some(true)), "{chat}");
    assert_eq!((chat["message_count"].as_i64(), chat["unread_count"].as_i64()), (Some(0), Some(0)), "{chat}");
    assert_eq!(chat["last_message"], Value::Null, "{chat}");
    assert_eq!(chat["kind"], "direct", "{chat}");

    // Unpinned and unarchived: no mark left, no message, so no longer listed.
    let path = format!("/api/v1/accounts/{acc}/chats/{bob_jid}");
    let (s, v) = call(a, "PATCH", &path, &key, Some(json!({ "archived": false, "pinned": false }))).await;
    assert_eq!(s, 200, "{v}");
    let (s, page) = call(a, "GET", &format!("/api/v1/accounts/{acc}/chats"), &key, None).await;
    assert_eq!(s, 200, "{page}");
    assert!(page["chats"].as_array().unwrap().iter().all(|c| c["chat"] != bob_jid.as_str()), "{page}");

    // Carol's push name came in the history's PUSH_NAME chunk. It is recorded by a background
    // task that has no live event of its own, so the contact is read until it shows (bounded).
    let names = tokio::time::timeout(T, async {
        loop {
            let (s, c) = call(a, "GET", &format!("/api/v1/contacts/{carol_contact}"), &key, None).await;
            assert_eq!(s, 200, "{c}");
            if c["whatsapp_names"].as_array().is_some_and(|n| !n.is_empty()) {
                return c["whatsapp_names"].clone();
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("Carol's push name from history reached her contact");
    assert_eq!(names, json!([{ "account_id": acc, "saved_name": null, "push_name": "Caroline" }]));
    ws.close(None).await.ok();
    srv.stop().await;
}
