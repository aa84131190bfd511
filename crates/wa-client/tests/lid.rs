//! LID first: a LID-migrated account (the emulator's default, as most accounts are today) is
//! told so at pairing and must address DMs by LID; a legacy one keeps phone numbers; a contact
//! seen first by number and then by LID keeps one Signal session, with no retry receipt.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{T, emulator, next_matching, pair, sqlite_client};
use wa_client::{Event, EventStream, Jid, MessageEvent, ReceiptEvent, ReceiptKind};
use wa_emulator::{AccountOptions, EmulatorHandle, WorldEvent};
use wa_store::{CredentialStore, DeviceId, ProtocolAddress, SessionStore, Store};

const ME: &str = "15550007001";
const FRIEND: &str = "15550007002";

async fn message(events: &mut EventStream, id: &str) -> MessageEvent {
    let m = next_matching(events, &format!("message {id}"), |e| match e {
        Event::Message(m) if m.info.id == id => Some(m.clone()),
        Event::UndecryptableMessage(u) => panic!("undecryptable {:?}: {}", u.info, u.error),
        _ => None,
    })
    .await;
    (*m).clone()
}

async fn delivery(events: &mut EventStream, id: &str) -> ReceiptEvent {
    next_matching(events, &format!("receipt for {id}"), |e| match e {
        Event::Receipt(r) if r.kind == ReceiptKind::Delivered && r.ids.iter().any(|i| i == id) => {
            Some(r.clone())
        }
        _ => None,
    })
    .await
}

fn refusals(emu: &EmulatorHandle) -> Vec<(String, u16)> {
    emu.events()
        .into_iter()
        .filter_map(|e| match e {
            WorldEvent::MessageRefused { id, code, .. } => Some((id, code)),
            _ => None,
        })
        .collect()
}

/// The store's view of a contact's sessions: (by phone number, by LID) for its device 0.
async fn sessions(db: &std::path::Path, pn: &Jid, lid: &Jid) -> (bool, bool) {
    let store = Store::open_sqlite(db, Default::default()).await.unwrap();
    let d = store.device(&DeviceId::new("acct").unwrap());
    let got = d
        .get_sessions(&[
            ProtocolAddress::new(pn.user(), 0),
            ProtocolAddress::new(format!("{}_1", lid.user()), 0),
        ])
        .await
        .unwrap();
    (got[0].is_some(), got[1].is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migrated_account_learns_it_at_pairing_and_sends_dms_to_lids() {
    let emu = emulator(71).await;
    emu.create_account(ME, "Me").unwrap();
    let friend = emu.create_account(FRIEND, "Friend").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wa.db");
    let client = sqlite_client(&emu, &db, 711).await;
    let mut events = client.events();
    let me = pair(&emu, &client, &mut events, ME).await;

    // pair-success <client-props>: stored with the credentials.
    assert_eq!(client.lid_migrated(), Some(true));
    let store = Store::open_sqlite(&db, Default::default()).await.unwrap();
    let stored = store.device(&DeviceId::new("acct").unwrap()).load_credentials().await.unwrap().unwrap();
    assert_eq!(stored.lid_migrated, Some(true));
    // <success lid> is device-qualified, like pair-success's.
    assert_eq!(client.lid().unwrap(), emu.phone(ME).unwrap().lid().with_device(me.device()).unwrap());

    // Sent by phone number: resolved to the LID and delivered; nothing refused.
    let sent = client.send_text(&friend.jid(), "hello by number").await.unwrap();
    assert_eq!((sent.chat_pn.clone(), sent.chat_lid.clone()), (Some(friend.jid()), Some(friend.lid())));
    let got = friend.wait_message(T, |m| m.id == sent.id).await.expect("the friend's phone gets it");
    assert!(got.error.is_none(), "{:?}", got.error);
    assert!(got.sender.ends_with("@lid"), "from our LID: {}", got.sender);
    let r = delivery(&mut events, &sent.id).await;
    assert_eq!(r.chat, friend.lid());
    assert_eq!((r.chat_pn, r.chat_lid), (Some(friend.jid()), Some(friend.lid())));
    assert_eq!(r.sender_pn.map(|j| j.to_non_ad()), Some(friend.jid()));
    // Our own phone's copy is addressed by LID too.
    let own = emu.phone(ME).unwrap();
    own.wait_message(T, |m| m.id == sent.id).await.expect("own phone gets the sent copy");
    assert!(refusals(&emu).is_empty(), "{:?}", refusals(&emu));

    // Incoming: the chat is the friend's LID with the number beside it.
    let id = friend.send_text(&me.to_non_ad(), "hi back").unwrap();
    let m = message(&mut events, &id).await;
    assert_eq!(m.info.chat, friend.lid());
    assert_eq!((m.info.chat_pn.clone(), m.info.chat_lid.clone()), (Some(friend.jid()), Some(friend.lid())));
    assert_eq!(m.info.sender_pn.map(|j| j.to_non_ad()), Some(friend.jid()));
    assert_eq!(client.alternate_jid(&friend.jid()).await.unwrap(), Some(friend.lid()));
    client.disconnect().await;
}

/// The contact migrates mid-conversation: its phone switches from phone-number to LID
/// addressing. Our one session with it moves to the LID address and keeps decrypting: no
/// retry receipt, one session in the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_seen_by_number_then_by_lid_keeps_one_session() {
    let emu = emulator(72).await;
    emu.create_account(ME, "Me").unwrap();
    let friend = emu.create_account_with(FRIEND, "Friend", AccountOptions { lid_migrated: false }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wa.db");
    let client = sqlite_client(&emu, &db, 721).await;
    let mut events = client.events();
    let me = pair(&emu, &client, &mut events, ME).await;
    let (friend_pn, friend_lid) = (friend.jid(), friend.lid());

    // Not migrated yet: its DMs come by number, and nothing tells us its LID.
    let first = friend.send_text(&me.to_non_ad(), "by number").unwrap();
    let m = message(&mut events, &first).await;
    assert_eq!(m.info.chat, friend_pn);
    assert_eq!(m.info.chat_lid, None);
    let second = friend.send_text(&me.to_non_ad(), "by number again").unwrap();
    message(&mut events, &second).await;
    assert_eq!(sessions(&db, &friend_pn, &friend_lid).await, (true, false), "a session by number");

    // The contact migrates: the next DMs come from its LID with `sender_pn`.
    friend.set_lid_migrated(true).unwrap();
    let third = friend.send_text(&me.to_non_ad(), "by LID now").unwrap();
    let m = message(&mut events, &third).await;
    assert_eq!(m.text(), Some("by LID now"));
    assert_eq!(m.info.chat, friend_lid);
    assert_eq!(m.info.chat_pn, Some(friend_pn.clone()));
    assert_eq!(sessions(&db, &friend_pn, &friend_lid).await, (false, true), "one session, by LID");

    // Both ways on that session; neither side asked for a retry.
    let sent = client.send_text(&friend_pn, "answer").await.unwrap();
    let got = friend.wait_message(T, |m| m.id == sent.id).await.unwrap();
    assert!(got.error.is_none(), "{:?}", got.error);
    let fourth = friend.send_text(&me.to_non_ad(), "and again").unwrap();
    message(&mut events, &fourth).await;
    assert!(friend.receipts().iter().all(|r| r.kind != "retry"), "{:?}", friend.receipts());
    assert!(
        friend.inbox().iter().all(|m| m.error.is_none()),
        "the friend's phone decrypted everything: {:?}",
        friend.inbox()
    );
    assert_eq!(sessions(&db, &friend_pn, &friend_lid).await, (false, true));
    client.disconnect().await;
}

/// A legacy account keeps 1:1 chats on phone numbers, also when it knows a contact's LID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_account_keeps_phone_numbers() {
    let emu = emulator(73).await;
    emu.create_account_with(ME, "Me", AccountOptions { lid_migrated: false }).unwrap();
    let friend = emu.create_account(FRIEND, "Friend").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = sqlite_client(&emu, &dir.path().join("wa.db"), 731).await;
    let mut events = client.events();
    let me = pair(&emu, &client, &mut events, ME).await;
    assert_eq!(client.lid_migrated(), Some(false));

    // The migrated friend's DM reaches a legacy account by number, its LID beside it.
    let id = friend.send_text(&me.to_non_ad(), "hello legacy").unwrap();
    let m = message(&mut events, &id).await;
    assert_eq!(m.info.chat, friend.jid());
    assert_eq!(m.info.chat_lid, Some(friend.lid()));

    // By number, and by LID (mapped back to the number): both delivered, nothing refused.
    for to in [friend.jid(), friend.lid()] {
        let sent = client.send_text(&to, "reply").await.unwrap();
        let got = friend.wait_message(T, |m| m.id == sent.id).await.unwrap();
        assert!(got.error.is_none() && got.sender.ends_with("@s.whatsapp.net"), "{got:?}");
    }
    assert!(refusals(&emu).is_empty(), "{:?}", refusals(&emu));
    client.disconnect().await;
}

/// Group notifications name members with their other name beside them (`phone_number` in
/// LID-addressed groups, `lid` in phone-number ones); the client learns both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_notifications_teach_lids() {
    let emu = emulator(74).await;
    emu.create_account(ME, "Me").unwrap();
    let friend = emu.create_account(FRIEND, "Friend").unwrap();
    let other = emu.create_account("15550007003", "Other").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = sqlite_client(&emu, &dir.path().join("wa.db"), 741).await;
    let mut events = client.events();
    pair(&emu, &client, &mut events, ME).await;
    assert_eq!(client.alternate_jid(&other.jid()).await.unwrap(), None);

    let lid_group = emu.create_lid_group(FRIEND, "by LID", &[ME, "15550007003"]).unwrap();
    next_matching(&mut events, "the LID group's creation", |e| match e {
        Event::GroupUpdate(g) if g.group == lid_group => Some(()),
        _ => None,
    })
    .await;
    assert_eq!(client.alternate_jid(&other.jid()).await.unwrap(), Some(other.lid()));
    assert_eq!(client.alternate_jid(&friend.lid()).await.unwrap(), Some(friend.jid()));

    let third = emu.create_account("15550007004", "Third").unwrap();
    let pn_group = emu.create_group(FRIEND, "by number", &[ME, "15550007004"]).unwrap();
    next_matching(&mut events, "the PN group's creation", |e| match e {
        Event::GroupUpdate(g) if g.group == pn_group => Some(()),
        _ => None,
    })
    .await;
    assert_eq!(client.alternate_jid(&third.jid()).await.unwrap(), Some(third.lid()));
    client.disconnect().await;
}
