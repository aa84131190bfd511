//! 1,000 messages each way between our client and a phone while the connection is cut
//! (socket close), restarted (515), refused (503) and loses receipts: every message reaches
//! the application exactly once, none is undecryptable, and every message we send reaches
//! the phone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{T, emulator, pair};
use wa_client::{Client, Event, EventStream, Jid};
use wa_emulator::{EmulatorHandle, Fault};

const TOTAL: usize = 1000;
const BATCH: usize = 50;

#[derive(Default)]
struct Seen {
    /// Message id → how many times the application saw it.
    messages: HashMap<String, usize>,
    undecryptable: Vec<String>,
    connects: usize,
}

fn collect(mut events: EventStream) -> (Arc<Mutex<Seen>>, tokio::sync::watch::Receiver<usize>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (tick_tx, tick_rx) = tokio::sync::watch::channel(0usize);
    let s = seen.clone();
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            {
                let mut s = s.lock().unwrap();
                match &e {
                    Event::Message(m) => *s.messages.entry(m.info.id.clone()).or_default() += 1,
                    Event::UndecryptableMessage(u) => s.undecryptable.push(format!("{u:?}")),
                    Event::Connected { .. } => s.connects += 1,
                    _ => continue,
                }
            }
            tick_tx.send_modify(|t| *t += 1);
        }
    });
    (seen, tick_rx)
}

/// Waits (on events, never on a timer) until `pred` holds.
async fn until(
    seen: &Mutex<Seen>,
    ticks: &mut tokio::sync::watch::Receiver<usize>,
    what: &str,
    pred: impl Fn(&Seen) -> bool,
    describe: impl Fn(&Seen) -> String,
) {
    tokio::time::timeout(T, async {
        loop {
            if pred(&seen.lock().unwrap()) {
                return;
            }
            ticks.changed().await.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}: {}", describe(&seen.lock().unwrap())));
}

/// The `i`-th fault of the rotation, against the client's current connection (skipped if
/// it is between connections, which is itself a fault in progress).
fn inject(emu: &EmulatorHandle, pn: &str, device: u16, i: usize) -> bool {
    let Ok(conn) = emu.connection_of(pn, device) else { return false };
    let r = match i % 5 {
        0 => emu.fault_close(conn),
        1 => emu.fault_stream_error(conn, 515),
        2 => emu.fault_stream_error(conn, 503),
        3 => emu.fault_frames(conn, Fault::DropStanzas { count: 3, only_tag: Some("receipt".into()) }),
        _ => emu.fault_close(conn),
    };
    r.is_ok() && i % 5 != 3
}

async fn send_until_acked(
    client: &Client,
    ticks: &mut tokio::sync::watch::Receiver<usize>,
    to: &Jid,
    id: &str,
    text: &str,
) {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let m = wa_proto::Message { conversation: Some(text.to_owned()), ..Default::default() };
        match client.send_message_with_id(to, id.to_owned(), m).await {
            Ok(_) => return,
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "could not send {id}: {e}");
                // Not connected right now: wait for the next lifecycle event, then retry
                // with the same id (the receiver drops duplicates).
                while !client.is_connected() {
                    tokio::time::timeout_at(deadline, ticks.changed())
                        .await
                        .unwrap_or_else(|_| panic!("no reconnect while sending {id}"))
                        .unwrap();
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_messages_each_way_under_faults() {
    let emu = emulator(101).await;
    emu.create_account("15550010101", "Me").unwrap();
    emu.create_account("15550010102", "Bob").unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Faults come every few dozen messages here, far faster than any real outage; the
    // reconnect-loop guard (30 a minute by default) would rightly call that a loop.
    let client = common::sqlite_builder(&emu, &dir.path().join("wa.db"), 1011)
        .await
        .reconnect_loop_limit(10_000, Duration::from_secs(60))
        .build()
        .unwrap();
    let mut events = client.events();
    let me = pair(&emu, &client, &mut events, "15550010101").await;
    drop(events);
    let (seen, mut ticks) = collect(client.events());
    let bob = emu.phone("15550010102").unwrap();
    let mut faults = 0;
    let mut cuts = 0;

    // Phone → client: every batch starts with a fault, so its messages flow while the
    // client reconnects (they wait in the server's offline queue) or loses receipts.
    // (The fault is not injected while phone messages are in flight: an abrupt close
    // makes TCP discard them, and the emulator, unlike WhatsApp, does not re-deliver
    // messages the device never acknowledged.)
    let mut sent_ids = Vec::with_capacity(TOTAL);
    for b in 0..TOTAL / BATCH {
        cuts += usize::from(inject(&emu, "15550010101", me.device(), faults));
        faults += 1;
        for i in 0..BATCH {
            sent_ids.push(bob.send_text(&me.to_non_ad(), &format!("to client {}", b * BATCH + i)).unwrap());
        }
        let want: Vec<String> = sent_ids.clone();
        until(
            &seen,
            &mut ticks,
            &format!("batch {b} at the client"),
            |s| want.iter().all(|id| s.messages.contains_key(id)),
            |s| {
                let missing: Vec<_> = want.iter().filter(|id| !s.messages.contains_key(*id)).collect();
                format!("{} missing: {missing:?}", missing.len())
            },
        )
        .await;
    }

    // Client → phone, same rotation.
    let bob_jid = bob.jid();
    let mut ours = Vec::with_capacity(TOTAL);
    for n in 0..TOTAL {
        if n % BATCH == BATCH / 2 {
            cuts += usize::from(inject(&emu, "15550010101", me.device(), faults));
            faults += 1;
        }
        let id = format!("3EB0FAULT{n:06}");
        send_until_acked(&client, &mut ticks, &bob_jid, &id, &format!("to phone {n}")).await;
        ours.push(id);
    }
    let ours_set: HashSet<&String> = ours.iter().collect();
    let inbox = tokio::time::timeout(T, async {
        loop {
            let inbox = bob.inbox();
            let got: HashSet<&String> =
                inbox.iter().map(|m| &m.id).filter(|id| ours_set.contains(id)).collect();
            if got.len() == TOTAL {
                return inbox;
            }
            bob.wait_message(Duration::from_secs(5), |m| !inbox.iter().any(|o| o.id == m.id)).await;
        }
    })
    .await
    .expect("every message reached the phone");

    client.disconnect().await;
    let s = seen.lock().unwrap();
    assert!(s.undecryptable.is_empty(), "undecryptable: {:?}", s.undecryptable);
    for id in &sent_ids {
        assert_eq!(s.messages.get(id), Some(&1), "message {id} seen {:?} times", s.messages.get(id));
    }
    let phone_errors: Vec<_> = inbox.iter().filter(|m| m.error.is_some()).collect();
    assert!(phone_errors.is_empty(), "{phone_errors:?}");
    // The faults really cut the connection many times.
    assert!(cuts >= 20, "only {cuts} connection cuts");
    assert!(s.connects >= cuts, "{} reconnects for {cuts} cuts", s.connects);
}
