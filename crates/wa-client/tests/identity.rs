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
use wa_emulator::{AccountOptions, EmulatorHandle, Fault, WorldEvent};
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
        Event::IdentityChange { jid, pn, lid } => Some((jid.clone(), pn.clone(), lid.clone())),
        _ => None,
    })
    .await;
    // Both accounts are LID-first: the service names Bob by his LID; we know his number too.
    assert_eq!(who, (bob.lid(), Some(bob.jid()), Some(bob.lid())));
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
    let bob_lid_dev = bob.lid().with_device(bob_dev.device()).unwrap();
    let (device, added) = next_matching(&mut events, "device added", |e| match e {
        // Named by LID (both accounts are LID-first), with the phone number known beside it.
        Event::DeviceListChanged { user, pn, device, added, .. }
            if *user == bob.lid() && pn.as_ref() == Some(&bob.jid()) =>
        {
            Some((device.clone(), *added))
        }
        _ => None,
    })
    .await;
    assert_eq!((device, added), (bob_lid_dev.clone(), true));
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
        Event::DeviceListChanged { user, device, added, .. } if *user == bob.lid() => {
            Some((device.clone(), *added))
        }
        _ => None,
    })
    .await;
    assert_eq!((device, added), (bob_lid_dev, false));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phash_in_a_group_ack_sends_our_sender_key_to_a_members_new_device() {
    let emu = emulator(144).await;
    emu.create_account("15550144000", "Me").unwrap();
    emu.create_account("15550144001", "Bob").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (me, store) = client_and_store(&emu, &dir.path().join("me.db"), 6).await;
    let mut events = me.events();
    let my_jid = pair(&emu, &me, &mut events, "15550144000").await;
    let bob = emu.phone("15550144001").unwrap();
    let group = emu.create_lid_group("15550144001", "team", &["15550144000"]).unwrap();
    let stale = |id: &str| {
        emu.events().iter().any(|e| matches!(e, WorldEvent::GroupDeviceListStale { id: i, .. } if i == id))
    };

    // In step: our phash is the server's, nothing more to do.
    let first = me.send_text(&group, "hello team").await.unwrap();
    assert!(bob.wait_message(T, |m| m.id == first.id).await.expect("bob's phone").error.is_none());
    assert!(!stale(&first.id), "{:?}", emu.events());
    assert_eq!(cached_devices(&store, &bob.lid()).await, Some(vec![0]));

    // Bob links a companion and the devices notification never reaches us: our view is stale.
    let conn = emu.connection_of("15550144000", my_jid.device()).unwrap();
    emu.fault_frames(conn, Fault::DropStanzas { count: 1, only_tag: Some("notification".into()) }).unwrap();
    let (companion, _) = client_and_store(&emu, &dir.path().join("bob.db"), 7).await;
    let mut bob_events = companion.events();
    let bob_dev = pair(&emu, &companion, &mut bob_events, "15550144001").await;
    assert_eq!(cached_devices(&store, &bob.lid()).await, Some(vec![0]), "still stale");
    // The group copy of our next message is lost on its way to the new device, so a retry
    // round cannot stand in for the phash: only our reaction to it can bring the message.
    let bob_conn = emu.connection_of("15550144001", bob_dev.device()).unwrap();
    emu.fault_frames(bob_conn, Fault::DropStanzas { count: 1, only_tag: Some("message".into()) }).unwrap();

    let second = me.send_text(&group, "everyone?").await.unwrap();
    assert!(stale(&second.id), "the server saw our stale view: {:?}", emu.events());
    let wait_for = |id: String| {
        move |e: &Event| match e {
            Event::Message(m) if m.info.id == id => Some(m.clone()),
            Event::UndecryptableMessage(u) if u.info.id == id => panic!("{id} undecryptable: {}", u.error),
            _ => None,
        }
    };
    let m =
        next_matching(&mut bob_events, "that message on the new device", wait_for(second.id.clone())).await;
    assert_eq!(m.text(), Some("everyone?"));
    assert_eq!(cached_devices(&store, &bob.lid()).await, Some(vec![0, u32::from(bob_dev.device())]));

    // It holds our sender key now: the next message decrypts from the group copy alone.
    let third = me.send_text(&group, "all here").await.unwrap();
    let m = next_matching(&mut bob_events, "the next message on the new device", wait_for(third.id.clone()))
        .await;
    assert_eq!(m.text(), Some("all here"));
    assert!(!stale(&third.id));
    assert_eq!(bob.inbox().iter().filter(|x| x.id == second.id).count(), 1, "the phone got it once");
    me.disconnect().await;
    companion.disconnect().await;
}

/// Legacy (phone-number) accounts hear of a contact's devices and identity by phone number,
/// with the LID beside it; the cached list under the number follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_account_hears_of_devices_and_identities_by_phone_number() {
    let emu = emulator(145).await;
    let legacy = AccountOptions { lid_migrated: false };
    emu.create_account_with("15550145000", "Me", legacy).unwrap();
    emu.create_account_with("15550145001", "Bob", legacy).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (me, store) = client_and_store(&emu, &dir.path().join("me.db"), 8).await;
    let mut events = me.events();
    pair(&emu, &me, &mut events, "15550145000").await;
    let bob = emu.phone("15550145001").unwrap();
    me.send_text(&bob.jid(), "hi").await.unwrap();
    assert_eq!(cached_devices(&store, &bob.jid()).await, Some(vec![0]));

    let (companion, _) = client_and_store(&emu, &dir.path().join("bob.db"), 9).await;
    let mut bob_events = companion.events();
    let bob_dev = pair(&emu, &companion, &mut bob_events, "15550145001").await;
    let (device, lid) = next_matching(&mut events, "device added", |e| match e {
        Event::DeviceListChanged { user, lid, device, added: true, .. } if *user == bob.jid() => {
            Some((device.clone(), lid.clone()))
        }
        _ => None,
    })
    .await;
    assert_eq!(device, bob_dev);
    assert_eq!(lid, Some(bob.lid()), "learned from the lid attribute");
    assert_eq!(cached_devices(&store, &bob.jid()).await, Some(vec![0, u32::from(bob_dev.device())]));

    bob.reinstall().unwrap();
    let who = next_matching(&mut events, "identity change", |e| match e {
        Event::IdentityChange { jid, pn, lid } => Some((jid.clone(), pn.clone(), lid.clone())),
        _ => None,
    })
    .await;
    assert_eq!(who, (bob.jid(), Some(bob.jid()), Some(bob.lid())));
    assert_eq!(cached_devices(&store, &bob.jid()).await, None, "dropped with the sessions");
    let sent = me.send_text(&bob.jid(), "after").await.unwrap();
    let got = bob.wait_message(T, |m| m.id == sent.id).await.expect("delivered");
    assert!(got.error.is_none(), "decrypted on the first try: {:?}", got.error);
    me.disconnect().await;
    companion.disconnect().await;
}

/// A business contact with a hosted (Cloud API) device: usync lists it (`is_hosted`), our
/// 1:1 message is encrypted to it on the hosted server and it decrypts it; a group leaves it
/// out, and our group phash agrees with the server's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contacts_hosted_device_gets_our_direct_messages_and_no_group_ones() {
    let emu = emulator(146).await;
    emu.create_account("15550146000", "Me").unwrap();
    let biz = emu.create_account("15550146001", "Shop").unwrap();
    biz.add_hosted_device().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (me, store) = client_and_store(&emu, &dir.path().join("me.db"), 10).await;
    let mut events = me.events();
    pair(&emu, &me, &mut events, "15550146000").await;

    let sent = me.send_text(&biz.jid(), "order 42").await.unwrap();
    assert_eq!(
        cached_devices(&store, &biz.lid()).await,
        Some(vec![0, u32::from(wa_emulator::HOSTED_DEVICE_ID)])
    );
    let hosted = biz
        .wait_message(T, |m| m.id == sent.id && m.device == wa_emulator::HOSTED_DEVICE_ID)
        .await
        .expect("the hosted device's copy");
    assert!(hosted.error.is_none(), "{:?}", hosted.error);
    assert_eq!(hosted.text.as_deref(), Some("order 42"));
    let phone = biz.wait_message(T, |m| m.id == sent.id && m.device == 0).await.expect("the phone's copy");
    assert!(phone.error.is_none(), "{:?}", phone.error);
    assert!(
        !emu.events().iter().any(|e| matches!(e, WorldEvent::FanOutIncomplete { id, .. } if *id == sent.id)),
        "{:?}",
        emu.events()
    );

    let group = emu.create_lid_group("15550146000", "orders", &["15550146001"]).unwrap();
    let g = me.send_text(&group, "to the shop's people").await.unwrap();
    assert!(biz.wait_message(T, |m| m.id == g.id && m.device == 0).await.expect("phone").error.is_none());
    assert!(!biz.inbox().iter().any(|m| m.id == g.id && m.device == wa_emulator::HOSTED_DEVICE_ID));
    assert!(
        !emu.events().iter().any(|e| matches!(e, WorldEvent::GroupDeviceListStale { id, .. } if *id == g.id))
    );
    me.disconnect().await;
}
