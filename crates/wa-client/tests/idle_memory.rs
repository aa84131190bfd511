//! Memory of idle connected clients: 1,000 accounts, each with its own in-memory store, pair
//! by QR through their simulated phones and log in over the real WebSocket + Noise path to
//! the in-process wa-emulator, then stay connected and idle. The process's resident memory
//! is read before the first client is built and once every client is logged in and has
//! finished its offline sync.
//!
//! The figure is an upper bound for the clients: it also holds what the emulator keeps for
//! each of them (its connection task and Noise session, the device record with its uploaded
//! prekeys) and each client's in-memory store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Instant;

use common::{next_matching, pair};
use futures::StreamExt as _;
use rand::SeedableRng;
use wa_client::{Client, Event, EventStream};
use wa_emulator::{Emulator, EmulatorConfig};
use wa_store::{DeviceId, Store};

const N: usize = 1000;
/// Pairings in flight at once.
const PARALLEL: usize = 32;
/// The budget per idle connected client.
const BUDGET_KIB: f64 = 200.0;
/// One-time prekeys each client uploads at its first login (a builder option; many idle
/// accounts do not need WhatsApp Web's 812 each).
const PRE_KEYS: u32 = 20;

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Pairs account `i`, waits until it is logged in and its offline queue is drained.
async fn bring_up(emu: &wa_emulator::EmulatorHandle, i: usize) -> Up {
    let pn = format!("1557{i:07}");
    let store = Store::memory(Default::default()).await.unwrap();
    let client = Client::builder()
        .store(store.device(&DeviceId::new("idle").unwrap()))
        .url(emu.ws_url())
        .root_key(emu.root_public_key())
        .media_over_http(true)
        .initial_pre_keys(PRE_KEYS)
        .rng(Box::new(rand::rngs::StdRng::seed_from_u64(i as u64)))
        .build()
        .unwrap();
    let mut events = client.events();
    pair(emu, &client, &mut events, &pn).await;
    next_matching(&mut events, "the end of the offline sync", |e| {
        matches!(e, Event::OfflineSyncCompleted { .. }).then_some(())
    })
    .await;
    Up { pn, client, _events: events }
}

/// A connected client, its phone number, and its event stream (kept, as an application would).
struct Up {
    pn: String,
    client: Client,
    _events: EventStream,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_idle_clients_fit_the_memory_budget() {
    common::init_tracing();
    let emu = Emulator::start(EmulatorConfig { seed: Some(71), media_tls: false, ..Default::default() })
        .await
        .unwrap();
    let started = Instant::now();
    for i in 0..N {
        emu.create_account(&format!("1557{i:07}"), "idle").unwrap();
    }
    let accounts = started.elapsed();

    let before = status_kib("VmRSS:");
    let started = Instant::now();
    let emu = &emu;
    let clients: Vec<Up> =
        futures::stream::iter(0..N).map(|i| bring_up(emu, i)).buffer_unordered(PARALLEL).collect().await;
    let up = started.elapsed();
    assert_eq!(clients.len(), N);
    for up in &clients {
        assert!(up.client.is_connected(), "{} is not connected", up.pn);
        // The server side agrees: the account's companion is online.
        emu.connection_of(&up.pn, up.client.jid().unwrap().device()).unwrap();
    }
    let after = status_kib("VmRSS:");
    let peak = status_kib("VmHWM:");
    let per_client = after.saturating_sub(before) as f64 / N as f64;
    println!(
        "wa-client idle memory: {N} clients paired, logged in and idle in this process (with the \
         emulator); RSS before {before} KiB, after {after} KiB, peak {peak} KiB: {per_client:.1} KiB \
         per client; {N} accounts created in {:.1} s, {N} pairings + logins in {:.1} s",
        accounts.as_secs_f64(),
        up.as_secs_f64()
    );
    assert!(per_client <= BUDGET_KIB, "{per_client:.1} KiB per idle client, over {BUDGET_KIB} KiB");
    drop(clients);
}
