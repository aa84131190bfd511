//! Presence and push name as whatsmeow defaults them: no `<presence>` at login unless the
//! application sets a push name (then `unavailable` with that name, Baileys' default, so
//! others see it without the device going online) or asks to announce availability;
//! delivery receipts are `inactive` unless we announced `available` (whatsmeow `receipt.go`).
//! The emulator records every presence and applies its name to the account.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{T, emulator, next_matching, pair};
use rand::SeedableRng;
use wa_client::{Client, ClientBuilder, Event, EventStream};
use wa_emulator::EmulatorHandle;
use wa_store::{DeviceId, Store};

const ME: &str = "15550004101";
const FRIEND: &str = "15550004102";

/// Like `common::sqlite_builder`, without a push name.
async fn builder(emu: &EmulatorHandle, path: &std::path::Path, seed: u64) -> ClientBuilder {
    let store = Store::open_sqlite(path, Default::default()).await.unwrap();
    Client::builder()
        .media_root_certificate(emu.media_ca_pem().unwrap())
        .store(store.device(&DeviceId::new("acct").unwrap()))
        .url(emu.ws_url())
        .root_key(emu.root_public_key())
        .rng(Box::new(rand::rngs::StdRng::seed_from_u64(seed)))
        .reconnect(true, Duration::from_millis(50), Duration::from_millis(500))
}

/// Waits until the emulator has handled `count` presences of our account.
async fn presences(emu: &EmulatorHandle, count: usize) -> Vec<(String, Option<String>)> {
    let phone = emu.phone(ME).unwrap();
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

/// The friend's phone sends us a text; returns the receipt type our client answered with, as
/// the phone recorded it (`delivery` for a plain delivery receipt).
async fn receipt_kind_for_a_message(
    emu: &EmulatorHandle,
    events: &mut EventStream,
    me: &wa_client::Jid,
) -> String {
    let friend = emu.phone(FRIEND).unwrap();
    // Both accounts are LID-migrated (the emulator's default): the receipt may name our device
    // by its LID.
    let my_lid = format!("{}:{}@lid", emu.phone(ME).unwrap().lid().user(), me.device());
    let mut sub = emu.subscribe();
    let id = friend.send_text(&me.to_non_ad(), "ping").unwrap();
    next_matching(events, "the text", |e| match e {
        Event::Message(m) if m.info.id == id => Some(()),
        _ => None,
    })
    .await;
    let deadline = tokio::time::Instant::now() + T;
    loop {
        // The account's phone answers too; ours is the one from our device.
        let receipts = friend.receipts();
        if let Some(r) =
            receipts.iter().find(|r| r.id == id && (r.from == me.to_string() || r.from == my_lid))
        {
            return r.kind.clone();
        }
        if tokio::time::timeout_at(deadline, sub.recv()).await.is_err() {
            panic!("no receipt from {me} for {id}: {receipts:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_no_presence_is_sent_and_the_name_stays() {
    let emu = emulator(61).await;
    emu.create_account(ME, "Owner's name").unwrap();
    emu.create_account(FRIEND, "Friend").unwrap();
    let db = tempfile::tempdir().unwrap();
    let client = builder(&emu, &db.path().join("wa.db"), 61).await.build().unwrap();
    let mut events = client.events();
    let me = pair(&emu, &client, &mut events, ME).await;
    assert_eq!(receipt_kind_for_a_message(&emu, &mut events, &me).await, "inactive");
    let phone = emu.phone(ME).unwrap();
    assert_eq!(phone.presences(), vec![], "whatsmeow's default: no presence at login");
    assert_eq!(phone.push_name(), "Owner's name");
    // Announcing needs a name, and none is known.
    assert!(matches!(client.set_available(true).await, Err(wa_client::Error::NoPushName)));
    client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_push_name_is_announced_unavailable_and_shown_to_others() {
    let emu = emulator(62).await;
    emu.create_account(ME, "Owner's name").unwrap();
    emu.create_account(FRIEND, "Friend").unwrap();
    let db = tempfile::tempdir().unwrap();
    let client = builder(&emu, &db.path().join("me.db"), 62).await.push_name("Shop").build().unwrap();
    let mut events = client.events();
    let me = pair(&emu, &client, &mut events, ME).await;
    let phone = emu.phone(ME).unwrap();
    // The registration connection does not log in; the login after 515 sends one presence.
    assert_eq!(presences(&emu, 1).await, vec![("unavailable".to_owned(), Some("Shop".to_owned()))]);
    assert_eq!(phone.push_name(), "Shop");
    assert_eq!(receipt_kind_for_a_message(&emu, &mut events, &me).await, "inactive");

    // Another account's companion sees the name on our messages (`notify`).
    let other_db = tempfile::tempdir().unwrap();
    let friend = builder(&emu, &other_db.path().join("friend.db"), 63).await.build().unwrap();
    let mut friend_events = friend.events();
    let friend_jid = pair(&emu, &friend, &mut friend_events, FRIEND).await;
    let sent = client.send_text(&friend_jid.to_non_ad(), "from the shop").await.unwrap();
    let got = next_matching(&mut friend_events, "our text at the friend's companion", |e| match e {
        Event::Message(m) if m.info.id == sent.id => Some(m.clone()),
        _ => None,
    })
    .await;
    assert_eq!(got.info.push_name.as_deref(), Some("Shop"));
    friend.disconnect().await;
    client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announcing_availability_is_opt_in_and_changes_delivery_receipts() {
    let emu = emulator(64).await;
    emu.create_account(ME, "Owner's name").unwrap();
    emu.create_account(FRIEND, "Friend").unwrap();
    let db = tempfile::tempdir().unwrap();
    let client = builder(&emu, &db.path().join("wa.db"), 64)
        .await
        .push_name("Desk")
        .announce_available(true)
        .build()
        .unwrap();
    let mut events = client.events();
    let me = pair(&emu, &client, &mut events, ME).await;
    assert_eq!(presences(&emu, 1).await, vec![("available".to_owned(), Some("Desk".to_owned()))]);
    assert_eq!(receipt_kind_for_a_message(&emu, &mut events, &me).await, "delivery");

    // The application goes unavailable: receipts are inactive again.
    client.set_available(false).await.unwrap();
    assert_eq!(presences(&emu, 2).await[1], ("unavailable".to_owned(), Some("Desk".to_owned())));
    assert_eq!(receipt_kind_for_a_message(&emu, &mut events, &me).await, "inactive");
    client.disconnect().await;
}
