//! Traffic the service sends on its own, end to end against wa-emulator: every notification
//! type, `<ib>` child, call and appdata is acknowledged (the emulator's ack tracking proves it)
//! and applied (an event or stored state); an unacknowledged notification comes back at the
//! next login; grouped receipts are attributed per member; an unavailable message is asked
//! of the phone and delivered; expired media comes back through a media retry; the
//! `hist_sync` receipt goes out even when the history download fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{T, init_tracing, next_matching, pair, sqlite_builder};
use wa_client::{Client, Error, Event, EventStream, MediaType, ReceiptKind};
use wa_emulator::{Emulator, EmulatorConfig, EmulatorHandle, Fault, ManualClock, WorldEvent};
use wa_proto::message::{HistorySyncNotification, ProtocolMessage, protocol_message};
use wa_store::{DeviceId, DeviceStore, PrivacyTokenStore, Store};

const ME: &str = "15550007000";
const BOB: &str = "15550007001";

async fn emulator(seed: u64) -> EmulatorHandle {
    init_tracing();
    Emulator::start(EmulatorConfig { seed: Some(seed), phone_pre_keys: 40, ..Default::default() })
        .await
        .unwrap()
}

/// A client on a SQLite store at `path`, and a handle on that store to read what it kept.
async fn client_and_store(emu: &EmulatorHandle, path: &Path, seed: u64) -> (Client, DeviceStore) {
    let client = sqlite_builder(emu, path, seed).await.build().unwrap();
    let store = Store::open_sqlite(path, Default::default()).await.unwrap();
    (client, store.device(&DeviceId::new("acct").unwrap()))
}

/// Waits until the emulator saw device `device` of `pn` acknowledge a `class` stanza of `kind`.
async fn acked(emu: &EmulatorHandle, pn: &str, device: u16, class: &str, kind: &str) {
    let seen = emu
        .wait_for(T, |e| {
            matches!(e, WorldEvent::StanzaAcked { pn: p, device: d, class: c, kind: k, .. }
                if p == pn && *d == device && c == class && k == kind)
        })
        .await;
    assert!(seen.is_some(), "{pn}:{device} never acknowledged {class} {kind}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_notification_call_and_appdata_is_acked_and_applied() {
    let emu = emulator(301).await;
    emu.create_account(ME, "Me").unwrap();
    emu.create_account(BOB, "Bob").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (client, store) = client_and_store(&emu, &dir.path().join("wa.db"), 3011).await;
    let mut events = client.events();
    let me = pair(&emu, &client, &mut events, ME).await;
    let dev = me.device();
    let (phone, bob) = (emu.phone(ME).unwrap(), emu.phone(BOB).unwrap());

    // The pairing queued the new device list for us: applied to the cache, acknowledged.
    let devices = next_matching(&mut events, "own devices", |e| match e {
        Event::OwnDevicesChanged { devices } => Some(devices.clone()),
        _ => None,
    })
    .await;
    assert_eq!(devices, vec![phone.jid(), me.clone()]);
    acked(&emu, ME, dev, "notification", "account_sync").await;

    // Bob's phone messages us, and gives us its trusted-contact token with it: stored.
    let id = bob.send_text(&me.to_non_ad(), "hi").unwrap();
    next_matching(&mut events, "bob's text", |e| {
        matches!(e, Event::Message(m) if m.info.id == id).then_some(())
    })
    .await;
    let (from, stored_as) = next_matching(&mut events, "bob's token", |e| match e {
        Event::PrivacyToken { from, stored_as, .. } => Some((from.clone(), stored_as.clone())),
        _ => None,
    })
    .await;
    assert_eq!((from, stored_as.clone()), (bob.jid(), bob.lid()));
    let token = store.get_privacy_token(&stored_as.to_string()).await.unwrap().expect("stored");
    assert_eq!(token.token.len(), 24);
    acked(&emu, ME, dev, "notification", "privacy_token").await;

    // Our phone changes app state.
    phone.change_app_state(&["regular_high", "regular"]).unwrap();
    let cols = next_matching(&mut events, "app state", |e| match e {
        Event::AppStateChanged { collections } => Some(collections.clone()),
        _ => None,
    })
    .await;
    let cols: Vec<(String, u64)> = cols.into_iter().map(|c| (c.name, c.version)).collect();
    assert_eq!(cols, vec![("regular_high".into(), 1), ("regular".into(), 1)]);
    acked(&emu, ME, dev, "notification", "server_sync").await;

    // Bob (a contact now) changes his picture and about text.
    let pid = bob.set_picture().unwrap();
    let pic = next_matching(&mut events, "picture", |e| match e {
        Event::Picture(p) => Some(p.clone()),
        _ => None,
    })
    .await;
    assert_eq!((pic.jid, pic.picture_id, pic.removed), (bob.jid(), Some(pid), false));
    acked(&emu, ME, dev, "notification", "picture").await;
    bob.set_about("on a train").unwrap();
    let about = next_matching(&mut events, "about", |e| match e {
        Event::AboutChanged { jid, text, .. } => Some((jid.clone(), text.clone())),
        _ => None,
    })
    .await;
    assert_eq!(about, (bob.jid(), "on a train".to_owned()));
    acked(&emu, ME, dev, "notification", "status").await;

    // Bob calls, then hangs up.
    let call_id = bob.call(&me.to_non_ad(), true).unwrap();
    let offer = next_matching(&mut events, "call offer", |e| match e {
        Event::CallOffer(c) => Some(c.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        (offer.call_id.as_str(), offer.video, offer.from.clone()),
        (call_id.as_str(), true, bob.jid())
    );
    acked(&emu, ME, dev, "call", "offer").await;
    bob.end_call(&call_id, None).unwrap();
    let end = next_matching(&mut events, "call end", |e| match e {
        Event::CallTerminated(c) => Some(c.clone()),
        _ => None,
    })
    .await;
    assert_eq!(end.call_id, call_id);
    acked(&emu, ME, dev, "call", "terminate").await;

    // Appdata: decrypted like a message and confirmed with a receipt.
    let app = bob.send_appdata(&me.to_non_ad(), "app data").unwrap();
    let m = next_matching(&mut events, "appdata", |e| match e {
        Event::Message(m) if m.info.id == app => Some(m.clone()),
        _ => None,
    })
    .await;
    assert_eq!(m.text(), Some("app data"));
    let confirmed = emu
        .wait_for(
            T,
            |e| matches!(e, WorldEvent::DeviceAcked { id, device, .. } if *id == app && *device == dev),
        )
        .await;
    assert!(confirmed.is_some(), "appdata never confirmed");

    // A dirty bit: cleaned.
    emu.mark_dirty(ME, "groups").unwrap();
    let cleaned = emu.wait_for(
        T,
        |e| matches!(e, WorldEvent::DirtyCleaned { kind, device, .. } if kind == "groups" && *device == dev),
    );
    assert!(cleaned.await.is_some(), "dirty bit never cleaned");
    assert!(emu.dirty_bits(ME).unwrap().is_empty());

    // Every stanza above was acknowledged before its event, so nothing waits any more.
    assert_eq!(emu.in_flight(ME, dev).unwrap(), vec![]);
    client.disconnect().await;
}

/// The next event of `events` that is either a disconnection or matches `f`.
async fn before_disconnect<R>(
    events: &mut EventStream,
    what: &str,
    mut f: impl FnMut(&Event) -> Option<R>,
) -> Option<R> {
    next_matching(events, what, |e| match e {
        Event::Disconnected { .. } => Some(None),
        e => f(e).map(Some),
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_traffic_is_previewed_routed_and_an_unacked_notification_comes_back() {
    let emu = emulator(302).await;
    emu.create_account(ME, "Me").unwrap();
    emu.create_account(BOB, "Bob").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (client, _) = client_and_store(&emu, &dir.path().join("wa.db"), 3021).await;
    let mut events = client.events();
    let me = pair(&emu, &client, &mut events, ME).await;
    let dev = me.device();
    let (phone, bob) = (emu.phone(ME).unwrap(), emu.phone(BOB).unwrap());
    // The first login's queue: the device list the pairing left, the phone's app-state keys
    // and its three history chunks (peer messages: bootstrap, push names, recent).
    next_matching(&mut events, "first offline sync", |e| {
        matches!(e, Event::OfflineSyncCompleted { count: 5, .. }).then_some(())
    })
    .await;
    acked(&emu, ME, dev, "notification", "account_sync").await;
    let routing = emu.routing_info_of(ME, dev).unwrap().expect("edge routing at login");

    // Offline: a message (and the token that comes with it), a notification, a call.
    client.disconnect().await;
    let id = bob.send_text(&me.to_non_ad(), "while you were away").unwrap();
    phone.change_app_state(&["regular_low"]).unwrap();
    let call = bob.call(&me.to_non_ad(), false).unwrap();
    bob.end_call(&call, Some("timeout")).unwrap();
    client.connect().await.unwrap();
    let preview = next_matching(&mut events, "offline preview", |e| match e {
        Event::OfflineSyncPreview(p) => Some(p.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        (preview.total, preview.messages, preview.notifications, preview.calls, preview.receipts),
        (5, 1, 2, 2, 0)
    );
    let presented = emu.wait_for(
        T,
        |e| matches!(e, WorldEvent::RoutingInfoPresented { routing_info, .. } if *routing_info == routing),
    );
    assert!(presented.await.is_some(), "the next connection's intro carries the routing info");
    let m = next_matching(&mut events, "the queued message", |e| match e {
        Event::Message(m) if m.info.id == id => Some(m.clone()),
        _ => None,
    })
    .await;
    assert!(m.info.offline);
    let end = next_matching(&mut events, "the queued call end", |e| match e {
        Event::CallTerminated(c) => Some(c.clone()),
        _ => None,
    })
    .await;
    assert!(end.offline && end.reason.as_deref() == Some("timeout"));
    next_matching(&mut events, "offline done", |e| {
        matches!(e, Event::OfflineSyncCompleted { count: 5, .. }).then_some(())
    })
    .await;
    acked(&emu, ME, dev, "call", "terminate").await;

    // A notification the client never sees (dropped on the wire) stays unacknowledged, and the
    // connection ends: the next login delivers it again, and then it is acknowledged.
    let conn = emu.connection_of(ME, dev).unwrap();
    emu.fault_frames(conn, Fault::DropStanzas { count: 1, only_tag: Some("notification".into()) }).unwrap();
    phone.change_app_state(&["critical_block"]).unwrap();
    let waiting = emu.in_flight(ME, dev).unwrap();
    let dropped = waiting
        .iter()
        .find(|(tag, _, ty)| tag == "notification" && ty == "server_sync")
        .map(|(_, id, _)| id.clone())
        .unwrap_or_else(|| panic!("not in flight: {waiting:?}"));
    emu.fault_close(conn).unwrap();
    let early = before_disconnect(&mut events, "the connection to end", |e| match e {
        Event::AppStateChanged { collections } if collections[0].name == "critical_block" => Some(()),
        _ => None,
    })
    .await;
    assert!(early.is_none(), "the dropped notification arrived on the first connection");
    let cols = next_matching(&mut events, "the notification again", |e| match e {
        Event::AppStateChanged { collections } => Some(collections.clone()),
        _ => None,
    })
    .await;
    assert_eq!((cols[0].name.as_str(), cols[0].version), ("critical_block", 1));
    let again = emu.wait_for(
        T,
        |e| matches!(e, WorldEvent::StanzaAcked { id, device, .. } if *id == dropped && *device == dev),
    );
    assert!(again.await.is_some(), "the re-delivered notification was not acknowledged");
    let waiting = emu.in_flight(ME, dev).unwrap();
    assert!(!waiting.iter().any(|(tag, ..)| tag == "notification"), "{waiting:?}");
    client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_receipts_are_attributed_to_each_member() {
    let emu = emulator(303).await;
    let members = ["15550007001", "15550007002", "15550007003"];
    emu.create_account(ME, "Me").unwrap();
    for m in members {
        emu.create_account(m, "Member").unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let (client, _) = client_and_store(&emu, &dir.path().join("wa.db"), 3031).await;
    let mut events = client.events();
    let me = pair(&emu, &client, &mut events, ME).await;
    for lid in [false, true] {
        let group = if lid {
            emu.create_lid_group(ME, "big", &members).unwrap()
        } else {
            emu.create_group(ME, "big", &members).unwrap()
        };
        let sent = client.send_text(&group, "hello all").await.unwrap();
        for m in members {
            let got = emu.phone(m).unwrap().wait_message(T, |x| x.id == sent.id).await;
            assert!(got.is_some_and(|g| g.error.is_none()), "{m} did not get it");
        }
        let mut world = emu.subscribe();
        emu.group_receipts(&group, &sent.id, Some("read"), &[members[0], members[2]]).unwrap();
        let mut readers = Vec::new();
        while readers.len() < 2 {
            let r = next_matching(&mut events, "a read receipt", |e| match e {
                Event::Receipt(r) if r.ids == [sent.id.clone()] && r.kind == ReceiptKind::Read => {
                    Some(r.clone())
                }
                _ => None,
            })
            .await;
            assert_eq!(r.chat, group);
            readers.push(r.sender.clone());
        }
        let want: Vec<_> = [members[0], members[2]]
            .iter()
            .map(|p| {
                let phone = emu.phone(p).unwrap();
                if lid { phone.lid() } else { phone.jid() }
            })
            .collect();
        assert_eq!(readers, want);
        // Acknowledged once, as one stanza (this group's: the subscription started just before).
        let acked = tokio::time::timeout(T, async {
            loop {
                match world.recv().await {
                    Ok(WorldEvent::ReceiptAcked { kind, device, .. })
                        if kind == "read" && device == me.device() =>
                    {
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => panic!("event stream: {e}"),
                }
            }
        });
        assert!(acked.await.is_ok(), "the grouped receipt was not acknowledged");
    }
    client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_message_is_asked_of_the_phone_and_delivered() {
    let emu = emulator(304).await;
    emu.create_account(ME, "Me").unwrap();
    emu.create_account(BOB, "Bob").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (client, _) = client_and_store(&emu, &dir.path().join("wa.db"), 3041).await;
    let mut events = client.events();
    let me = pair(&emu, &client, &mut events, ME).await;
    let bob = emu.phone(BOB).unwrap();

    let id = bob.send_text_to_phone_only(&me.to_non_ad(), "phone only").unwrap();
    let placeholder = next_matching(&mut events, "the placeholder", |e| match e {
        Event::MessageUnavailable(u) if u.info.id == id => Some(u.clone()),
        Event::Message(m) if m.info.id == id => panic!("content before the request"),
        _ => None,
    })
    .await;
    assert_eq!(placeholder.info.sender, bob.jid());
    let resent = next_matching(&mut events, "the resent message", |e| match e {
        Event::Message(m) if m.info.id == id => Some(m.clone()),
        _ => None,
    })
    .await;
    assert_eq!(resent.text(), Some("phone only"));
    assert!(resent.unavailable_request_id.is_some());
    assert_eq!(
        (resent.info.chat.clone(), resent.info.sender.clone(), resent.info.from_me),
        (bob.jid(), bob.jid(), false)
    );
    // The placeholder was acknowledged, and the phone served the request.
    assert!(emu.acked_by(ME, me.device()).unwrap().contains(&id));
    let served = emu
        .wait_for(T, |e| matches!(e, WorldEvent::PlaceholderResent { id: i, found: true, .. } if *i == id));
    assert!(served.await.is_some());
    client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_media_comes_back_through_a_media_retry() {
    init_tracing();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let clock = ManualClock::new(now);
    let emu = Emulator::start(EmulatorConfig {
        seed: Some(305),
        clock: Arc::new(clock.clone()),
        phone_pre_keys: 40,
        ..Default::default()
    })
    .await
    .unwrap();
    emu.create_account(ME, "Me").unwrap();
    emu.create_account(BOB, "Bob").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (client, _) = client_and_store(&emu, &dir.path().join("wa.db"), 3051).await;
    let mut events = client.events();
    let me = pair(&emu, &client, &mut events, ME).await;
    let image = b"\x89PNG pretend pixels".repeat(40);
    let id = emu.phone(BOB).unwrap().send_image(&me.to_non_ad(), &image, "image/png", Some("old")).unwrap();
    let m = next_matching(&mut events, "the image", |e| match e {
        Event::Message(m) if m.info.id == id => Some(m.clone()),
        _ => None,
    })
    .await;
    assert_eq!(client.download(&m.message).await.unwrap(), image);

    clock.advance(wa_emulator::MEDIA_TTL_SECS);
    assert!(matches!(client.download(&m.message).await, Err(Error::MediaGone { status: 410 })));
    let got = client.download_with_retry(&m.info, &m.message).await.unwrap();
    assert_eq!(got, image);
    let answered = emu.wait_for(T, |e| matches!(e, WorldEvent::MediaRetryAnswered { id: i, result, .. } if *i == id && result == "success"));
    assert!(answered.await.is_some());
    acked(&emu, ME, me.device(), "notification", "mediaretry").await;
    client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hist_sync_receipt_is_sent_even_when_the_download_fails() {
    let emu = emulator(306).await;
    let own = emu.with_world(|w| w.create_account(ME, "Me")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (client, _) = client_and_store(&emu, &dir.path().join("wa.db"), 3061).await;
    let mut events = client.events();
    let me = pair(&emu, &client, &mut events, ME).await;
    // A notification naming a blob that is not on the media hosts: the download gets 404.
    let up = client.upload(b"irrelevant", MediaType::History).await.unwrap();
    let n = HistorySyncNotification {
        file_sha256: Some(up.file_sha256.to_vec()),
        file_length: Some(up.file_length),
        media_key: Some(up.media_key.to_vec()),
        file_enc_sha256: Some(up.file_enc_sha256.to_vec()),
        direct_path: Some("/m/md-msg-hist/not-there.enc".into()),
        sync_type: Some(wa_proto::message::HistorySyncType::Recent as i32),
        ..Default::default()
    };
    let message = wa_proto::Message {
        protocol_message: Some(Box::new(ProtocolMessage {
            r#type: Some(protocol_message::Type::HistorySyncNotification as i32),
            history_sync_notification: Some(n),
            ..Default::default()
        })),
        ..Default::default()
    };
    // From our own phone: a device-sent copy to ourselves.
    let id = emu.with_world(|w| w.phone_send(own, &me.to_non_ad(), &message)).unwrap();
    let receipt = emu
        .wait_for(T, |e| matches!(e, WorldEvent::PhoneReceipt { pn, id: i, kind } if pn == ME && *i == id && kind == "hist_sync"))
        .await;
    assert!(receipt.is_some(), "no hist_sync receipt reached the phone");
    let phone = emu.phone(ME).unwrap();
    let to_own_user = phone.receipts().into_iter().find(|r| r.id == id && r.kind == "hist_sync").unwrap();
    // Our own user, by number or (LID-migrated, the default) by LID.
    let own_lid = phone.lid();
    let user = to_own_user.from.split(['@', ':']).next();
    assert!(user == Some(ME) || user == Some(own_lid.user()), "{}", to_own_user.from);
    client.disconnect().await;
}

/// Stanzas a buggy or newer service could send: every one is acknowledged, none becomes an
/// event, and the connection carries on (the message after them arrives).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_traffic_is_acknowledged_and_survived() {
    use wa_binary::Node;
    let emu = emulator(306).await;
    emu.create_account(ME, "Me").unwrap();
    emu.create_account(BOB, "Bob").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (client, _) = client_and_store(&emu, &dir.path().join("wa.db"), 3061).await;
    let mut events = client.events();
    let me = pair(&emu, &client, &mut events, ME).await;
    let dev = me.device();
    // The pairing's own device list, well formed, applied first.
    next_matching(&mut events, "own devices", |e| matches!(e, Event::OwnDevicesChanged { .. }).then_some(()))
        .await;
    let bob = emu.phone(BOB).unwrap();
    let own = me.to_non_ad();
    let note = |id: &str, ty: &str, from: wa_binary::Jid| {
        Node::new("notification").attr("id", id).attr("type", ty).attr("from", from).attr("t", "not a time")
    };
    let call = |id: &str| Node::new("call").attr("id", id).attr("from", bob.jid()).attr("t", "1");
    let bad = vec![
        // Our device list with no usable device and a hash matching nothing.
        note("N1", "account_sync", own.clone()).children([Node::new("devices")
            .attr("dhash", "2:AAAAAAAA")
            .children([
                Node::new("device").attr("jid", "not a jid"),
                Node::new("device").attr("jid", bob.jid()),
            ])]),
        // Someone else's account_sync.
        note("N2", "account_sync", bob.jid()).children([Node::new("picture")]),
        note("N3", "server_sync", own.clone()).children([
            Node::new("collection").attr("name", "regular").attr("version", "-1"),
            Node::new("collection").attr("version", "3"),
        ]),
        note("N4", "picture", bob.jid()).children([Node::new("unknown")]),
        note("N5", "status", bob.jid()),
        note("N6", "privacy_token", bob.jid()),
        note("N7", "privacy_token", bob.jid()).children([Node::new("tokens").children([
            Node::new("token").attr("type", "trusted_contact").bytes(Vec::new()),
            Node::new("token").attr("type", "something_else").bytes(vec![1, 2, 3]),
        ])]),
        note("N8", "mediaretry", own.clone()),
        note("N9", "mediaretry", own.clone()).children([
            Node::new("encrypt").children([Node::new("enc_p").bytes(vec![0; 40])]),
            Node::new("rmr").attr("jid", bob.jid()).attr("from_me", "false"),
        ]),
        note("N10", "a_type_from_the_future", own.clone()).children([Node::new("thing")]),
        call("C1").children([Node::new("offer").attr("call-creator", bob.jid())]),
        call("C2").children([Node::new("terminate").attr("call-id", "X").attr("call-creator", "not a jid")]),
        call("C3"),
        call("C4").children([Node::new("relaylatency").attr("call-id", "X")]),
    ];
    let ids: Vec<String> = bad.iter().map(|n| n.attr_str("id").unwrap().into_owned()).collect();
    for n in bad {
        emu.inject_stanza(ME, dev, n).unwrap();
    }
    // A group receipt naming no member cannot be attributed: refused, but acknowledged.
    let group = emu.create_group(ME, "g", &[BOB]).unwrap();
    emu.inject_stanza(
        ME,
        dev,
        Node::new("receipt").attr("id", "R1").attr("from", group).attr("type", "read"),
    )
    .unwrap();

    let after = bob.send_text(&me.to_non_ad(), "still there?").unwrap();
    let mut applied = Vec::new();
    next_matching(&mut events, "the message after the bad stanzas", |e| match e {
        Event::Message(m) if m.info.id == after => Some(()),
        Event::Disconnected { .. }
        | Event::CallOffer(_)
        | Event::CallTerminated(_)
        | Event::MediaRetry(_)
        | Event::PrivacyToken { .. }
        | Event::OwnDevicesChanged { .. }
        | Event::AboutChanged { .. }
        | Event::Picture(_)
        | Event::AppStateChanged { .. }
        | Event::Receipt(_) => {
            applied.push(format!("{e:?}"));
            None
        }
        _ => None,
    })
    .await;
    assert!(applied.is_empty(), "malformed stanzas became events: {applied:#?}");
    for id in &ids {
        let seen = emu
            .wait_for(
                T,
                |e| matches!(e, WorldEvent::StanzaAcked { id: i, device, .. } if i == id && *device == dev),
            )
            .await;
        assert!(seen.is_some(), "{id} was not acknowledged");
    }
    let receipt = emu
        .wait_for(
            T,
            |e| matches!(e, WorldEvent::ReceiptAcked { id, device, .. } if id == "R1" && *device == dev),
        )
        .await;
    assert!(receipt.is_some(), "the unattributable receipt was not acknowledged");
    assert!(client.is_connected());
    client.disconnect().await;
}
