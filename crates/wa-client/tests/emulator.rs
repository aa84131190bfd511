//! End-to-end against wa-emulator: pairing by QR and by code, login from the SQLite store
//! after a restart, text both ways with a simulated phone, disconnect policies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use rand::SeedableRng;
use wa_client::{Client, DisconnectReason, Event, EventStream, Jid};
use wa_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use wa_store::{DeviceId, Store};

const T: Duration = Duration::from_secs(20);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        // Info by default: nextest shows a failed test's captured output, which then tells
        // what the connection did.
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_test_writer()
        .try_init();
}

async fn emulator(seed: u64) -> EmulatorHandle {
    init_tracing();
    Emulator::start(EmulatorConfig { seed: Some(seed), ..Default::default() }).await.unwrap()
}

async fn sqlite_client(emu: &EmulatorHandle, path: &Path, seed: u64) -> Client {
    let store = Store::open_sqlite(path, Default::default()).await.unwrap();
    Client::builder()
        .store(store.device(&DeviceId::new("acct").unwrap()))
        .url(emu.ws_url())
        .root_key(emu.root_public_key())
        .push_name("wa-client test")
        .rng(Box::new(rand::rngs::StdRng::seed_from_u64(seed)))
        .reconnect(true, Duration::from_millis(50), Duration::from_millis(500))
        .build()
        .unwrap()
}

async fn next_matching<T>(events: &mut EventStream, what: &str, mut f: impl FnMut(&Event) -> Option<T>) -> T {
    tokio::time::timeout(T, async {
        loop {
            let e = events.recv().await.expect("event stream ended");
            if let Some(t) = f(&e) {
                return t;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Pairs a client by QR through the account's phone; returns our JID.
async fn pair(emu: &EmulatorHandle, client: &Client, events: &mut EventStream, pn: &str) -> Jid {
    client.connect().await.unwrap();
    let qr = next_matching(events, "a QR code", |e| match e {
        Event::Qr(q) => Some(q.clone()),
        _ => None,
    })
    .await;
    assert!(qr.text.starts_with("https://wa.me/settings/linked_devices#"));
    emu.phone(pn).unwrap().scan(&qr.text).unwrap();
    let jid = next_matching(events, "pair success", |e| match e {
        Event::PairSuccess { jid, .. } => Some(jid.clone()),
        Event::PairError { error } => panic!("pair error {error}"),
        _ => None,
    })
    .await;
    next_matching(events, "connected after 515", |e| matches!(e, Event::Connected { .. }).then_some(()))
        .await;
    jid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_by_qr_then_restart_logs_in_from_sqlite() {
    let emu = emulator(1).await;
    emu.create_account("15550001111", "Alice").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wa.db");

    let client = sqlite_client(&emu, &db, 11).await;
    let mut events = client.events();
    let jid = pair(&emu, &client, &mut events, "15550001111").await;
    assert_eq!(jid.user(), "15550001111");
    assert!(jid.device() > 0);
    assert!(emu.companions("15550001111").unwrap().contains(&jid.device()));
    client.disconnect().await;
    drop(client);

    // A new process: same database, no QR this time.
    let client = sqlite_client(&emu, &db, 12).await;
    let mut events = client.events();
    client.connect().await.unwrap();
    let got = next_matching(&mut events, "login", |e| match e {
        Event::Connected { jid, .. } => Some(jid.clone()),
        Event::Qr(_) => panic!("asked to pair again"),
        _ => None,
    })
    .await;
    assert_eq!(got, jid);
    assert_eq!(client.jid(), Some(jid));
    client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_both_ways_with_a_phone() {
    let emu = emulator(2).await;
    emu.create_account("15550002222", "Me").unwrap();
    emu.create_account("15550003333", "Bob").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = sqlite_client(&emu, &dir.path().join("wa.db"), 21).await;
    let mut events = client.events();
    let me = pair(&emu, &client, &mut events, "15550002222").await;
    let bob = emu.phone("15550003333").unwrap();

    // Phone → client.
    let id = bob.send_text(&me.to_non_ad(), "hello from bob").unwrap();
    let msg = next_matching(&mut events, "bob's message", |e| match e {
        Event::Message(m) if m.info.id == id => Some(m.clone()),
        _ => None,
    })
    .await;
    assert_eq!(msg.text(), Some("hello from bob"));
    // Both accounts are LID-migrated: the DM comes from bob's LID, his number beside it.
    assert_eq!(msg.info.sender.to_non_ad(), bob.lid());
    assert_eq!(msg.info.sender_pn.as_ref().map(Jid::to_non_ad), Some(bob.jid()));
    assert_eq!((msg.info.chat_pn.clone(), msg.info.chat_lid.clone()), (Some(bob.jid()), Some(bob.lid())));
    assert!(!msg.info.from_me);

    // Client → phone, twice (the second reuses the session: a plain `msg`).
    for text in ["hi bob", "second"] {
        let sent = client.send_text(&bob.jid(), text).await.unwrap();
        let got = bob.wait_message(T, |m| m.id == sent.id).await.expect("bob received it");
        assert_eq!(got.text.as_deref(), Some(text));
        assert!(got.error.is_none(), "{:?}", got.error);
    }
    // Our own primary phone gets the device-sent copy of what we send.
    let own_phone = emu.phone("15550002222").unwrap();
    assert!(own_phone.wait_message(T, |m| m.text.as_deref() == Some("second")).await.is_some());
    client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_errors_follow_the_policy() {
    let emu = emulator(3).await;
    emu.create_account("15550004444", "Carol").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = sqlite_client(&emu, &dir.path().join("wa.db"), 31).await;
    let mut events = client.events();
    let me = pair(&emu, &client, &mut events, "15550004444").await;

    // 503: back off and come back.
    let conn = emu.connection_of("15550004444", me.device()).unwrap();
    emu.fault_stream_error(conn, 503).unwrap();
    next_matching(&mut events, "503 disconnect", |e| match e {
        Event::Disconnected { reason: DisconnectReason::ServerError { code: 503 }, reconnect_in } => {
            assert!(reconnect_in.is_some());
            Some(())
        }
        _ => None,
    })
    .await;
    next_matching(&mut events, "reconnect", |e| matches!(e, Event::Connected { .. }).then_some(())).await;

    // A dropped socket: reconnect.
    let conn = emu.connection_of("15550004444", me.device()).unwrap();
    emu.fault_close(conn).unwrap();
    next_matching(&mut events, "reconnect after close", |e| {
        matches!(e, Event::Connected { .. }).then_some(())
    })
    .await;

    // Replaced: stop for good.
    let conn = emu.connection_of("15550004444", me.device()).unwrap();
    emu.fault_stream_error(conn, 440).unwrap();
    next_matching(&mut events, "replaced", |e| match e {
        Event::Disconnected { reason: DisconnectReason::Replaced, reconnect_in } => {
            assert!(reconnect_in.is_none());
            Some(())
        }
        _ => None,
    })
    .await;

    // Logged out from the phone: credentials purged, no reconnect.
    client.connect().await.unwrap();
    next_matching(&mut events, "login", |e| matches!(e, Event::Connected { .. }).then_some(())).await;
    emu.phone("15550004444").unwrap().remove_device(me.device()).unwrap();
    next_matching(&mut events, "logged out", |e| matches!(e, Event::LoggedOut { .. }).then_some(())).await;
    assert!(client.jid().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_by_phone_code() {
    let emu = emulator(5).await;
    emu.create_account("15550005555", "Dave").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = sqlite_client(&emu, &dir.path().join("wa.db"), 51).await;
    let mut events = client.events();
    client.connect().await.unwrap();
    next_matching(&mut events, "registration connection", |e| matches!(e, Event::Qr(_)).then_some(())).await;
    let code = client.pair_phone("+1 555 000 5555").await.unwrap();
    assert_eq!(code.len(), 8);
    emu.phone("15550005555").unwrap().enter_code(&code).unwrap();
    let jid = next_matching(&mut events, "pair success", |e| match e {
        Event::PairSuccess { jid, .. } => Some(jid.clone()),
        Event::PairError { error } => panic!("pair error {error}"),
        _ => None,
    })
    .await;
    assert_eq!(jid.user(), "15550005555");
    next_matching(&mut events, "login", |e| matches!(e, Event::Connected { .. }).then_some(())).await;
    client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_text_reaction_edit_revoke_and_queries() {
    let emu = emulator(6).await;
    emu.create_account("15550006666", "Me").unwrap();
    emu.create_account("15550007777", "Erin").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = sqlite_client(&emu, &dir.path().join("wa.db"), 61).await;
    let mut events = client.events();
    let me = pair(&emu, &client, &mut events, "15550006666").await;
    let erin = emu.phone("15550007777").unwrap();

    let found = client.is_on_whatsapp(&["15550007777", "15559999999"]).await.unwrap();
    assert_eq!(found.len(), 2);
    assert!(found.iter().any(|(n, j)| n == "15550007777" && j.is_some()));
    assert!(found.iter().any(|(n, j)| n == "15559999999" && j.is_none()));

    // 1:1 extras: reaction, edit, revoke, read receipt.
    let id = erin.send_text(&me.to_non_ad(), "react to me").unwrap();
    let msg = next_matching(&mut events, "erin's message", |e| match e {
        Event::Message(m) if m.info.id == id => Some(m.clone()),
        _ => None,
    })
    .await;
    client.mark_read(&msg.info.chat, None, std::slice::from_ref(&msg.info.id)).await.unwrap();
    let r = client.send_reaction(&msg.info, "👍").await.unwrap();
    let got = erin.wait_message(T, |m| m.id == r.id).await.unwrap();
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.kind, "reaction");
    let sent = client.send_text(&erin.jid(), "typo").await.unwrap();
    let e = client.edit_message(&erin.jid(), &sent.id, "fixed").await.unwrap();
    assert!(erin.wait_message(T, |m| m.id == e.id).await.unwrap().error.is_none());
    let rv = client.revoke_message(&erin.jid(), &sent.id).await.unwrap();
    assert!(erin.wait_message(T, |m| m.id == rv.id).await.unwrap().error.is_none());
    let reply = client.send_reply(&msg.info, &msg.message, "replying").await.unwrap();
    assert_eq!(erin.wait_message(T, |m| m.id == reply.id).await.unwrap().text.as_deref(), Some("replying"));

    // Groups: the phone writes first (sender key via SKDM), then we write (our SKDM goes to
    // every member device once, then plain skmsg).
    let group = emu.create_group("15550007777", "team", &["15550006666"]).unwrap();
    let info = client.group_info(&group).await.unwrap();
    assert_eq!(info.subject, "team");
    let gid = erin.send_text(&group, "hello team").unwrap();
    let gm = next_matching(&mut events, "group message", |e| match e {
        Event::Message(m) if m.info.id == gid => Some(m.clone()),
        _ => None,
    })
    .await;
    assert!(gm.info.is_group);
    assert_eq!(gm.text(), Some("hello team"));
    for text in ["hi team", "again"] {
        let s = client.send_text(&group, text).await.unwrap();
        let got = erin.wait_message(T, |m| m.id == s.id).await.expect("erin got the group message");
        assert_eq!(got.text.as_deref(), Some(text), "{:?}", got.error);
    }
    client.disconnect().await;
}
