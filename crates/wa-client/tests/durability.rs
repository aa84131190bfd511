//! Durability against wa-emulator: a peer's retry receipt is answered from the sent-message
//! store, a receiver killed with SIGKILL at random points while messages flow loses no
//! message the server counted as acknowledged by the device, and with `confirm_handled`
//! receipts are acknowledged only by the application (re-delivered until then).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use common::{T, emulator, next_matching, pair, sqlite_builder, sqlite_client};
use wa_client::{Event, ReceiptEvent, ReceiptKind};
use wa_emulator::WorldEvent;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peers_retry_receipt_is_answered_from_the_sent_message_store() {
    let emu = emulator(61).await;
    emu.create_account("15550006100", "Me").unwrap();
    emu.create_account("15550006101", "Bob").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = sqlite_client(&emu, &dir.path().join("wa.db"), 61).await;
    let mut events = client.events();
    pair(&emu, &client, &mut events, "15550006100").await;
    let bob = emu.phone("15550006101").unwrap();

    let sent = client.send_text(&bob.jid(), "please retry me").await.unwrap();
    let first = bob.wait_message(T, |m| m.id == sent.id).await.expect("bob received it");
    assert!(first.error.is_none(), "{:?}", first.error);

    // Bob's phone drops its session with us and asks again with a fresh key bundle: only a
    // new session built from that bundle (a pkmsg) decrypts now.
    bob.request_retry(&sent.id).unwrap();
    let ok = bob
        .wait_inbox(T, |inbox| inbox.iter().filter(|m| m.id == sent.id && m.error.is_none()).count() >= 2)
        .await;
    let copies: Vec<_> = bob.inbox().into_iter().filter(|m| m.id == sent.id).collect();
    assert!(ok, "no decryptable re-send after the retry receipt: {copies:#?}");
    let again = copies.last().unwrap();
    assert_eq!(again.text.as_deref(), Some("please retry me"));
    assert_eq!(again.chat, first.chat);

    // The new session works for later messages too.
    let next = client.send_text(&bob.jid(), "after the retry").await.unwrap();
    let got = bob.wait_message(T, |m| m.id == next.id).await.expect("bob received the next one");
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.text.as_deref(), Some("after the retry"));
    client.disconnect().await;
}

/// The next receipt of `kind` covering `id`.
async fn receipt_for(events: &mut wa_client::EventStream, id: &str, kind: ReceiptKind) -> ReceiptEvent {
    next_matching(events, "the receipt", |e| match e {
        Event::Receipt(r) if r.kind == kind && r.ids.iter().any(|i| i == id) => Some(r.clone()),
        _ => None,
    })
    .await
}

/// The emulator saw the device acknowledge the receipt of `kind` ("" = delivery) for `id`.
async fn receipt_acked(events: &mut tokio::sync::broadcast::Receiver<WorldEvent>, id: &str, kind: &str) {
    tokio::time::timeout(T, async {
        loop {
            match events.recv().await {
                Ok(WorldEvent::ReceiptAcked { id: i, kind: k, .. }) if i == id && k == kind => return,
                Ok(_) => {}
                Err(e) => panic!("emulator events: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the emulator never saw the {kind:?} receipt for {id} acknowledged"));
}

/// Ends the client's connection from the server side; the client reconnects by itself.
/// Returns the receipts delivered on the new connection before its offline queue was done.
async fn drop_connection(
    emu: &wa_emulator::EmulatorHandle,
    events: &mut wa_client::EventStream,
    pn: &str,
    device: u16,
) -> Vec<ReceiptEvent> {
    emu.fault_close(emu.connection_of(pn, device).unwrap()).unwrap();
    next_matching(events, "the connection lost", |e| matches!(e, Event::Disconnected { .. }).then_some(()))
        .await;
    let mut receipts = Vec::new();
    next_matching(events, "the offline queue after the reconnect", |e| match e {
        Event::Receipt(r) => {
            receipts.push(r.clone());
            None
        }
        Event::OfflineSyncCompleted { .. } => Some(()),
        _ => None,
    })
    .await;
    receipts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_confirm_handled_receipts_are_acknowledged_by_the_application_and_redelivered_until_then() {
    let emu = emulator(63).await;
    emu.create_account("15550006300", "Me").unwrap();
    emu.create_account("15550006301", "Bob").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client =
        sqlite_builder(&emu, &dir.path().join("wa.db"), 63).await.confirm_handled(true).build().unwrap();
    let mut events = client.events();
    let me = pair(&emu, &client, &mut events, "15550006300").await;
    let bob = emu.phone("15550006301").unwrap();
    let mut world = emu.subscribe();

    let sent = client.send_text(&bob.jid(), "did you get it?").await.unwrap();
    let first = receipt_for(&mut events, &sent.id, ReceiptKind::Delivered).await;
    assert!(!first.offline);
    let ack = first.ack.clone().expect("the application owes this receipt's acknowledgement");
    assert_eq!((ack.id(), ack.receipt_type()), (sent.id.as_str(), None));
    assert!(
        !emu.events().iter().any(|e| matches!(e, WorldEvent::ReceiptAcked { id, .. } if *id == sent.id)),
        "acknowledged before the application confirmed it"
    );

    // The connection ends before the application confirmed: WhatsApp delivers the receipt
    // again on the next connection, from the offline queue.
    let redelivered = drop_connection(&emu, &mut events, "15550006300", me.device()).await;
    let again = redelivered
        .into_iter()
        .find(|r| r.kind == ReceiptKind::Delivered && r.ids.contains(&sent.id))
        .expect("the unacknowledged receipt came again from the offline queue");
    assert!(again.offline, "{again:?}");
    let ack2 = again.ack.clone().expect("still owed");
    assert_ne!(ack2.connection(), ack.connection());
    // Confirming the first copy sends nothing: its connection is gone.
    assert!(!client.ack_receipt(&first).unwrap(), "an ack for a receipt of a previous connection");
    assert!(client.ack_receipt(&again).unwrap());
    receipt_acked(&mut world, &sent.id, "").await;

    // A read receipt: same message id, acknowledged separately.
    bob.mark_read(std::slice::from_ref(&sent.id)).unwrap();
    let read = receipt_for(&mut events, &sent.id, ReceiptKind::Read).await;
    assert_eq!(read.ack.as_ref().and_then(|a| a.receipt_type()), Some("read"));
    assert!(client.ack_receipt(&read).unwrap());
    receipt_acked(&mut world, &sent.id, "read").await;

    // Both acknowledged: neither is delivered again.
    let redelivered = drop_connection(&emu, &mut events, "15550006300", me.device()).await;
    assert!(
        !redelivered.iter().any(|r| r.ids.contains(&sent.id) && r.sender == again.sender),
        "acknowledged receipts were delivered again: {redelivered:?}"
    );
    client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_confirm_handled_receipts_are_acknowledged_on_arrival() {
    let emu = emulator(64).await;
    emu.create_account("15550006400", "Me").unwrap();
    emu.create_account("15550006401", "Bob").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = sqlite_client(&emu, &dir.path().join("wa.db"), 64).await;
    let mut events = client.events();
    pair(&emu, &client, &mut events, "15550006400").await;
    let mut world = emu.subscribe();
    let bob = emu.phone("15550006401").unwrap();
    let sent = client.send_text(&bob.jid(), "hello").await.unwrap();
    let r = receipt_for(&mut events, &sent.id, ReceiptKind::Delivered).await;
    assert!(r.ack.is_none(), "nothing owed: {r:?}");
    receipt_acked(&mut world, &sent.id, "").await;
    assert!(client.ack_receipt(&r).unwrap(), "a no-op");
    client.disconnect().await;
}

/// Set in the child process: the SQLite database and the log of handled messages.
const CHILD_DB: &str = "WA_DURABILITY_CHILD_DB";
const CHILD_LOG: &str = "WA_DURABILITY_CHILD_LOG";
const CHILD_URL: &str = "WA_DURABILITY_CHILD_URL";
const CHILD_ROOT: &str = "WA_DURABILITY_CHILD_ROOT";
const TEST_NAME: &str = "sigkill_at_random_points_loses_no_acknowledged_message";

/// The receiving application in the child process: every message it is handed is appended
/// to the log and fsynced, and only then confirmed to the client.
async fn child(db: &Path, log: &Path, url: String, root_hex: String) -> ! {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("WA_LOG"))
        .with_writer(std::io::stderr)
        .try_init();
    let root = wa_crypto::PublicKey::from_bytes(&hex::decode(root_hex).unwrap()).unwrap();
    let store = wa_store::Store::open_sqlite(db, Default::default()).await.unwrap();
    let client = wa_client::Client::builder()
        .store(store.device(&wa_store::DeviceId::new("acct").unwrap()))
        .url(url)
        .root_key(root)
        .push_name("durability child")
        .confirm_handled(true)
        .reconnect(true, Duration::from_millis(20), Duration::from_millis(200))
        .build()
        .unwrap();
    let mut events = client.events();
    client.connect().await.unwrap();
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    let handle = async |e: Event, file: &mut std::fs::File| match e {
        Event::Message(m) => {
            // One write(2) per line: `writeln!` on a `File` writes the id and the newline
            // separately, and a kill between the two glued two ids into one line.
            file.write_all(format!("{}\n", m.info.id).as_bytes()).unwrap();
            file.sync_data().unwrap();
            client.mark_handled(&m.info).await.unwrap();
        }
        Event::Qr(_) => panic!("the child must find a paired account in its store"),
        Event::UndecryptableMessage(u) => panic!("undecryptable: {u:?}"),
        _ => {}
    };
    // Until stdin closes (the parent's request for a clean stop; otherwise it kills us).
    let mut stdin = tokio::io::stdin();
    let mut sink = [0u8; 64];
    loop {
        tokio::select! {
            e = events.recv() => handle(e.expect("event stream ended"), &mut file).await,
            n = tokio::io::AsyncReadExt::read(&mut stdin, &mut sink) => if n.unwrap_or(0) == 0 { break },
        }
    }
    // A clean stop: no more messages arrive; handle what was already emitted.
    client.disconnect().await;
    while let Some(Some(e)) = futures::FutureExt::now_or_never(events.recv()) {
        handle(e, &mut file).await;
    }
    std::process::exit(0)
}

/// Kills the receiver (a copy of this test binary in child mode) with SIGKILL at random
/// points while a phone sends a steady stream, restarts it, and checks that every message
/// the emulator counted as acknowledged by the device reached the application's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_no_acknowledged_message() {
    if let (Ok(db), Ok(log), Ok(url), Ok(root)) = (
        std::env::var(CHILD_DB),
        std::env::var(CHILD_LOG),
        std::env::var(CHILD_URL),
        std::env::var(CHILD_ROOT),
    ) {
        child(Path::new(&db), Path::new(&log), url, root).await;
    }
    const KILLS: usize = 40;
    let started = std::time::Instant::now();
    let emu = std::sync::Arc::new(emulator(62).await);
    emu.create_account("15550006200", "Me").unwrap();
    emu.create_account("15550006201", "Bob").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wa.db");
    let log = dir.path().join("handled.log");
    let me = {
        let client = sqlite_builder(&emu, &db, 62).await.build().unwrap();
        let mut events = client.events();
        let me = pair(&emu, &client, &mut events, "15550006200").await;
        client.disconnect().await;
        me
    };
    let spawn = || {
        tokio::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads", "1"])
            .env(CHILD_DB, &db)
            .env(CHILD_LOG, &log)
            .env(CHILD_URL, emu.ws_url())
            .env(CHILD_ROOT, emu.root_public_key_hex())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };

    // Bob's phone sends numbered texts, a few at a time, for as long as the test runs.
    let sent: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let sender = {
        let (sent, to, handle) = (sent.clone(), me.to_non_ad(), emu.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            let mut n = 0u64;
            while !*stop_rx.borrow_and_update() {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop_rx.changed() => break,
                }
                let id = handle.phone("15550006201").unwrap().send_text(&to, &format!("m{n}")).unwrap();
                sent.lock().unwrap().push(id);
                n += 1;
            }
        })
    };

    // Kill points: after the device acknowledged a random number (0..20) more messages, so
    // the kill lands anywhere in receive → store → receipt → log → confirm.
    let mut rng = SplitMix(62);
    let mut acks = emu.subscribe();
    let mut acked_so_far = 0usize;
    for _ in 0..KILLS {
        let mut proc = spawn();
        let target = acked_so_far + rng.below(20) as usize;
        tokio::time::timeout(T, async {
            while acked_so_far < target {
                match acks.recv().await {
                    Ok(WorldEvent::DeviceAcked { .. }) => acked_so_far += 1,
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        acked_so_far = emu.acked_by("15550006200", me.device()).unwrap().len();
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        })
        .await
        .expect("the device kept acknowledging messages");
        proc.kill().await.unwrap();
    }
    stop_tx.send_replace(true);
    sender.await.unwrap();
    let sent = sent.lock().unwrap().clone();

    // A last run, not killed: every message sent is delivered and acknowledged (the emulator
    // re-delivers what was not acknowledged before a kill).
    let mut proc = spawn();
    let sent_set: HashSet<&String> = sent.iter().collect();
    let all_acked = tokio::time::timeout(T, async {
        loop {
            let acked: HashSet<String> =
                emu.acked_by("15550006200", me.device()).unwrap().into_iter().collect();
            if sent_set.iter().all(|id| acked.contains(*id)) {
                return;
            }
            let _ = acks.recv().await;
        }
    })
    .await;
    assert!(all_acked.is_ok(), "not every sent message was acknowledged in the end");
    // A clean stop lets the application finish what it was handed.
    drop(proc.stdin.take());
    let status = tokio::time::timeout(T, proc.wait()).await.expect("the child stops").unwrap();
    assert!(status.success(), "the last run failed: {status}");

    let acked = emu.acked_by("15550006200", me.device()).unwrap();
    let lines = std::fs::read_to_string(&log).unwrap();
    let mut handled: HashMap<&str, usize> = HashMap::new();
    for l in lines.lines() {
        *handled.entry(l).or_default() += 1;
    }
    let lost: Vec<&String> = acked.iter().filter(|id| !handled.contains_key(id.as_str())).collect();
    let duplicates: usize = handled.values().map(|n| n - 1).sum();
    let acked_unique: HashSet<&String> = acked.iter().collect();
    println!(
        "durability: {KILLS} SIGKILLs, {} messages sent, {} acknowledged by the device ({} acks), \
         {} handled by the app, {duplicates} duplicate hand-offs, {} lost, {:.1} s",
        sent.len(),
        acked_unique.len(),
        acked.len(),
        handled.len(),
        lost.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(lost.is_empty(), "acknowledged but never handed to the app: {lost:?}");
    assert!(sent.len() >= KILLS, "the stream was too short to test anything");
}

/// SplitMix64: a seeded, reproducible choice of kill points.
struct SplitMix(u64);

impl SplitMix {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}
