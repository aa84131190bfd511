//! Contacts' keys and devices changing under us, against wa-emulator's default (strict) mode:
//! a phone reinstalling WhatsApp (`encrypt` notification with `<identity>`), companions
//! linked and removed (`devices` notifications), and a stale device list corrected from the
//! server's `phash`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use rand::SeedableRng;
use wa_client::{Client, Event, Jid};
use wa_emulator::{EmulatorHandle, Fault, WorldEvent};
use wa_store::{DeviceId, DeviceListStore, DeviceStore, Store};

use common::{T, emulator, next_matching, pair};

/// A client on a SQLite store at `path`, and a handle on that store to look inside.
async fn client_and_store(emu: &EmulatorHandle, path: &Path, seed: u64) -> (Client, DeviceStore) {
    let store = Store::open_sqlite(path, Default::default()).await.unwrap();
    let device = store.device(&DeviceId::new("acct").unwrap());
    let client = Client::builder()
        .store(device.clone())
        .url(emu.ws_url())
        .root_key(emu.root_public_key())
        .media_over_http(true)
        .rng(Box::new(rand::rngs::StdRng::seed_from_u64(seed)))
        .reconnect(true, Duration::from_millis(50), Duration::from_millis(500))
        .build()
        .unwrap();
    (client, device)
}

/// Device ids the store caches for `user` (sorted), if any.
async fn cached_devices(store: &DeviceStore, user: &Jid) -> Option<Vec<u32>> {
    let mut d = store.get_device_list(&user.to_string()).await.unwrap()?.devices;
    d.sort_unstable();
    Some(d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_reinstalls_and_our_next_message_is_decrypted_on_the_first_try() {
    let emu = emulator(141).await;
    emu.create_account("15550141000", "Me").unwrap();
    emu.create_account("15550141001", "Bob").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (client, store) = client_and_store(&emu, &dir.path().join("wa.db"), 1).await;
    let mut events = client.events();
    pair(&emu, &client, &mut events, "15550141000").await;
    let bob = emu.phone("15550141001").unwrap();

    let first = client.send_text(&bob.jid(), "before").await.unwrap();
    let got = bob.wait_message(T, |m| m.id == first.id).await.expect("delivered");
    assert!(got.error.is_none(), "{:?}", got.error);
    // The account is LID-migrated (the emulator's default): Bob's session lives under his LID.
    let bob_phone = wa_store::ProtocolAddress::new(format!("{}_1", bob.lid().user()), 0);
    assert!(
        wa_store::SessionStore::get_sessions(&store, std::slice::from_ref(&bob_phone)).await.unwrap()[0]
            .is_some()
    );

    bob.reinstall().unwrap();
    let who = next_matching(&mut events, "identity change", |e| match e {
        Event::IdentityChange { jid } => Some(jid.clone()),
        _ => None,
    })
    .await;
    assert_eq!(who, bob.jid());
    // The dead session and the old identity key are gone.
    assert!(
        wa_store::SessionStore::get_sessions(&store, std::slice::from_ref(&bob_phone)).await.unwrap()[0]
            .is_none()
    );
    assert_eq!(wa_store::IdentityStore::get_identity(&store, &bob_phone).await.unwrap(), None);

    let second = client.send_text(&bob.jid(), "after").await.unwrap();
    let got = bob.wait_message(T, |m| m.id == second.id).await.expect("delivered");
    assert!(got.error.is_none(), "decrypted on the first try: {:?}", got.error);
    assert_eq!(got.text.as_deref(), Some("after"));
    assert_eq!(bob.inbox().iter().filter(|m| m.id == second.id).count(), 1, "no second attempt needed");
    assert!(bob.receipts().iter().all(|r| r.kind != "retry"));
    client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_notifications_keep_the_cached_list_current() {
    let emu = emulator(142).await;
    emu.create_account("15550142000", "Me").unwrap();
    emu.create_account("15550142001", "Bob").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (me, store) = client_and_store(&emu, &dir.path().join("me.db"), 2).await;
    let mut events = me.events();
    pair(&emu, &me, &mut events, "15550142000").await;
    let bob = emu.phone("15550142001").unwrap();
    me.send_text(&bob.jid(), "hi").await.unwrap();
    assert_eq!(cached_devices(&store, &bob.lid()).await, Some(vec![0]));

    // Bob links a companion: we hear of it and add it to the cached list.
    let (companion, _) = client_and_store(&emu, &dir.path().join("bob.db"), 3).await;
    let mut bob_events = companion.events();
    let bob_dev = pair(&emu, &companion, &mut bob_events, "15550142001").await;
    let (device, added) = next_matching(&mut events, "device added", |e| match e {
        Event::DeviceListChanged { user, device, added } if *user == bob.jid() => {
            Some((device.clone(), *added))
        }
        _ => None,
    })
    .await;
    assert_eq!((device, added), (bob_dev.clone(), true));
    assert_eq!(cached_devices(&store, &bob.lid()).await, Some(vec![0, u32::from(bob_dev.device())]));

    // So the next message reaches it without asking usync again, and the fan-out is complete.
    let sent = me.send_text(&bob.jid(), "to both").await.unwrap();
    next_matching(&mut bob_events, "the companion's copy", |e| match e {
        Event::Message(m) if m.info.id == sent.id => Some(()),
        _ => None,
    })
    .await;
    assert!(
        !emu.events().iter().any(|e| matches!(e, WorldEvent::FanOutIncomplete { id, .. } if *id == sent.id))
    );

    // Bob's phone unlinks it: gone from the cache too.
    bob.remove_device(bob_dev.device()).unwrap();
    let (device, added) = next_matching(&mut events, "device removed", |e| match e {
        Event::DeviceListChanged { user, device, added } if *user == bob.jid() => {
            Some((device.clone(), *added))
        }
        _ => None,
    })
    .await;
    assert_eq!((device, added), (bob_dev, false));
    assert_eq!(cached_devices(&store, &bob.lid()).await, Some(vec![0]));
    me.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phash_in_the_ack_sends_the_message_to_the_devices_we_missed() {
    let emu = emulator(143).await;
    emu.create_account("15550143000", "Me").unwrap();
    emu.create_account("15550143001", "Bob").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (me, store) = client_and_store(&emu, &dir.path().join("me.db"), 4).await;
    let mut events = me.events();
    let my_jid = pair(&emu, &me, &mut events, "15550143000").await;
    let bob = emu.phone("15550143001").unwrap();
    me.send_text(&bob.jid(), "hi").await.unwrap();
    assert_eq!(cached_devices(&store, &bob.lid()).await, Some(vec![0]));

    // The devices notification about Bob's new companion never reaches us: our list is stale.
    let conn = emu.connection_of("15550143000", my_jid.device()).unwrap();
    emu.fault_frames(conn, Fault::DropStanzas { count: 1, only_tag: Some("notification".into()) }).unwrap();
    let (companion, _) = client_and_store(&emu, &dir.path().join("bob.db"), 5).await;
    let mut bob_events = companion.events();
    let bob_dev = pair(&emu, &companion, &mut bob_events, "15550143001").await;
    assert_eq!(cached_devices(&store, &bob.lid()).await, Some(vec![0]), "still stale");

    let sent = me.send_text(&bob.jid(), "everyone?").await.unwrap();
    // On a LID-migrated account (the default) the message names Bob's devices by LID.
    let bob_lid_dev = format!("{}:{}@lid", bob.lid().user(), bob_dev.device());
    // The server noticed the missing device and said so with phash; we sent it its copy.
    assert!(
        emu.events().iter().any(|e| matches!(e,
        WorldEvent::FanOutIncomplete { id, missing, .. } if *id == sent.id
            && (*missing == vec![bob_dev.to_string()] || *missing == vec![bob_lid_dev.clone()]))),
        "{:?}",
        emu.events()
    );
    let m = next_matching(&mut bob_events, "the missed companion's copy", |e| match e {
        Event::Message(m) if m.info.id == sent.id => Some(m.clone()),
        _ => None,
    })
    .await;
    assert_eq!(m.text(), Some("everyone?"));
    assert_eq!(cached_devices(&store, &bob.lid()).await, Some(vec![0, u32::from(bob_dev.device())]));
    // The phone got it once, from the first stanza.
    assert_eq!(bob.inbox().iter().filter(|x| x.id == sent.id).count(), 1);
    me.disconnect().await;
}
