//! Memory of idle connected clients: 1,000 accounts are paired against wa-emulator (this
//! process), then a fresh process (a copy of this test binary in child mode) logs all 1,000
//! in from one shared SQLite store and measures its own resident memory before and after.
//! The emulator lives in the parent, so the child's RSS delta is the clients' alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{T, emulator, pair};
use rand::SeedableRng;
use tokio::io::AsyncBufReadExt;
use wa_client::{Client, Event};
use wa_store::{DeviceId, Store};

const N: usize = 1000;
/// The budget per idle connected client.
const BUDGET_KIB: f64 = 200.0;
const TEST_NAME: &str = "thousand_idle_clients_fit_the_memory_budget";
const CHILD_DB: &str = "WA_IDLE_CHILD_DB";
const CHILD_URL: &str = "WA_IDLE_CHILD_URL";
const CHILD_ROOT: &str = "WA_IDLE_CHILD_ROOT";

fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn builder(store: &Store, i: usize, url: &str, root: wa_crypto::PublicKey) -> wa_client::ClientBuilder {
    Client::builder()
        .store(store.device(&DeviceId::new(format!("c{i}")).unwrap()))
        .url(url)
        .root_key(root)
        .initial_pre_keys(10)
        .reconnect(true, Duration::from_millis(50), Duration::from_millis(500))
}

/// Child mode: log every stored account in, wait until each is idle (offline sync done),
/// report RSS.
async fn child(db: &str, url: &str, root_hex: &str) -> ! {
    let root = wa_crypto::PublicKey::from_bytes(&hex::decode(root_hex).unwrap()).unwrap();
    let store = Store::open_sqlite(db, Default::default()).await.unwrap();
    let before = rss_kib("VmRSS:");
    let start = std::time::Instant::now();
    let mut clients = Vec::with_capacity(N);
    let mut streams = Vec::with_capacity(N);
    for i in 0..N {
        let client = builder(&store, i, url, root).build().unwrap();
        streams.push(client.events());
        client.connect().await.unwrap();
        clients.push(client);
    }
    for (i, events) in streams.iter_mut().enumerate() {
        tokio::time::timeout(T, async {
            loop {
                match events.recv().await.expect("event stream ended") {
                    Event::OfflineSyncCompleted { .. } => break,
                    Event::Qr(_) => panic!("client {i} was not paired"),
                    _ => {}
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("client {i} did not come online"));
    }
    let elapsed = start.elapsed();
    assert!(clients.iter().all(Client::is_connected));
    let after = rss_kib("VmRSS:");
    println!(
        "idle-clients before={before} after={after} hwm={} login_s={:.2}",
        rss_kib("VmHWM:"),
        elapsed.as_secs_f64()
    );
    std::future::pending::<()>().await;
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_idle_clients_fit_the_memory_budget() {
    if let (Ok(db), Ok(url), Ok(root)) =
        (std::env::var(CHILD_DB), std::env::var(CHILD_URL), std::env::var(CHILD_ROOT))
    {
        child(&db, &url, &root).await;
    }
    let emu = emulator(71).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wa.db");
    let started = std::time::Instant::now();
    {
        let store = Store::open_sqlite(&db, Default::default()).await.unwrap();
        for chunk in 0..N / 50 {
            let pairings = (chunk * 50..(chunk + 1) * 50).map(|i| {
                let (emu, store) = (&emu, &store);
                async move {
                    let pn = format!("1556{i:07}");
                    emu.create_account(&pn, "idle").unwrap();
                    let client = builder(store, i, &emu.ws_url(), emu.root_public_key())
                        .rng(Box::new(rand::rngs::StdRng::seed_from_u64(i as u64)))
                        .build()
                        .unwrap();
                    let mut events = client.events();
                    pair(emu, &client, &mut events, &pn).await;
                    client.disconnect().await;
                }
            });
            futures::future::join_all(pairings).await;
        }
    }
    let paired = started.elapsed();

    let mut proc = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads", "1"])
        .env(CHILD_DB, &db)
        .env(CHILD_URL, emu.ws_url())
        .env(CHILD_ROOT, emu.root_public_key_hex())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(proc.stdout.take().unwrap()).lines();
    let report = tokio::time::timeout(Duration::from_secs(300), async {
        while let Some(l) = lines.next_line().await.unwrap() {
            if let Some(r) = l.strip_prefix("idle-clients ") {
                return r.to_owned();
            }
        }
        panic!("the child ended without a report")
    })
    .await
    .expect("the child logs 1,000 clients in");
    proc.kill().await.unwrap();
    let field = |k: &str| -> f64 {
        report
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            .unwrap()
            .parse()
            .unwrap()
    };
    let (before, after) = (field("before"), field("after"));
    let per_client = (after - before) / N as f64;
    println!(
        "wa-client idle memory: {N} clients logged in from one SQLite store and idle; child RSS \
         before {before} KiB, after {after} KiB, peak {} KiB: {per_client:.1} KiB per client; \
         {N} logins in {:.1} s (pairing them first took {:.1} s)",
        field("hwm"),
        field("login_s"),
        paired.as_secs_f64()
    );
    assert!(per_client <= BUDGET_KIB, "{per_client:.1} KiB per idle client, over {BUDGET_KIB} KiB");
}
