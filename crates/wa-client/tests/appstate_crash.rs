//! SIGKILL during an app-state patch apply (issue 15): a client in a child process (this
//! test binary re-run in child mode) fetches large patches of the phone's `regular_high`
//! collection and is killed with SIGKILL while applying them; after every kill the store is
//! reopened and must hold exactly the state after some patch: the version, the LTHash the
//! phone had at that version, value MACs whose LTHash is that hash, and the values (the
//! mutations' effects) of that version, nothing of the next patch.
//!
//! The child's store is the real SQLite (or PostgreSQL) backend behind a pass-through that
//! prints `apply-begin <collection>` before and `apply-end <collection> <ok>` after each batch
//! that writes a collection version (the one transaction per patch). The parent kills right
//! after a begin, or a random moment later, so kills land inside the apply window; a kill
//! whose begin has no end is counted as landing in it, and at least one must have.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::process::ExitStatusExt as _;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use wa_appstate::{LtHash, MutationInput, Operation, action};
use wa_client::{Client, ClientBuilder, Event};
use wa_proto::SyncActionValue;
use wa_store::{AppStateStore as _, Backend, DeviceId, Op, Row, RowKey, Scan, Store, StoreOptions, Table};

const CHILD_TARGET: &str = "WA_APPSTATE_CRASH_TARGET";
const CHILD_DEVICE: &str = "WA_APPSTATE_CRASH_DEVICE";
const CHILD_URL: &str = "WA_APPSTATE_CRASH_URL";
const CHILD_ROOT: &str = "WA_APPSTATE_CRASH_ROOT";
const CHILD_MEDIA_CA: &str = "WA_APPSTATE_CRASH_MEDIA_CA";

const COLLECTION: &str = "regular_high";
/// Patches the phone writes after pairing, and mutations in each: large enough that storing
/// one takes a while, so kills land inside the transaction.
const PATCHES: u64 = 20;
const MUTATIONS: usize = 300;
/// Chats the mutations touch (overwritten and removed across patches).
const CHATS: usize = 1000;
/// Killed runs before the last, unkilled one.
const ROUNDS: usize = 12;

fn chat(i: usize) -> String {
    format!("1555{i:07}@s.whatsapp.net")
}

fn index_json(chat: &str) -> String {
    String::from_utf8(wa_appstate::index::encode_index(&["mute", chat])).unwrap()
}

// ---- child ---------------------------------------------------------------------------------

/// One line on stdout in one write, flushed: the parent reads it before it kills.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    out.write_all(format!("{line}\n").as_bytes()).unwrap();
    out.flush().unwrap();
}

/// The real backend, with markers around each batch that stores a collection version.
struct Marked(Arc<dyn Backend>);

impl Backend for Marked {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn get<'a>(
        &'a self,
        table: Table,
        device: &'a str,
        ids: &'a [RowKey],
    ) -> BoxFuture<'a, wa_store::Result<Vec<Option<Row>>>> {
        self.0.get(table, device, ids)
    }
    fn scan<'a>(
        &'a self,
        table: Table,
        device: &'a str,
        scan: &'a Scan,
    ) -> BoxFuture<'a, wa_store::Result<Vec<Row>>> {
        self.0.scan(table, device, scan)
    }
    fn apply<'a>(&'a self, ops: &'a [Op]) -> BoxFuture<'a, wa_store::Result<()>> {
        let collection = ops.iter().find_map(|op| match op {
            Op::Put { table: Table::AppStateVersions, row, .. } => Some(row.id.key.clone()),
            _ => None,
        });
        Box::pin(async move {
            if let Some(c) = &collection {
                say(&format!("apply-begin {c}"));
            }
            let result = self.0.apply(ops).await;
            if let Some(c) = &collection {
                say(&format!("apply-end {c} {}", result.is_ok()));
            }
            result
        })
    }
    fn purge_expired(&self, now: i64) -> BoxFuture<'_, wa_store::Result<u64>> {
        self.0.purge_expired(now)
    }
    fn devices(&self, table: Table) -> BoxFuture<'_, wa_store::Result<Vec<String>>> {
        self.0.devices(table)
    }
    fn rewrite_all<'a>(
        &'a self,
        rewrite: wa_store::backend::Rewriter,
        then: &'a [Op],
    ) -> BoxFuture<'a, wa_store::Result<u64>> {
        self.0.rewrite_all(rewrite, then)
    }
}

async fn open_backend(target: &str) -> Arc<dyn Backend> {
    match target.split_once(':') {
        Some(("sqlite", path)) => Arc::new(
            wa_store::backends::sqlite::SqliteBackend::open(path, Default::default())
                .await
                .expect("sqlite opens"),
        ),
        Some(("postgres", url)) => Arc::new(
            wa_store::backends::postgres::PostgresBackend::connect(url, Default::default())
                .await
                .expect("postgres opens"),
        ),
        _ => panic!("bad target {target}"),
    }
}

fn builder(
    store: &Store,
    device: &str,
    url: String,
    root: wa_crypto::PublicKey,
    ca: Option<String>,
) -> ClientBuilder {
    let b = match ca {
        Some(pem) => Client::builder().media_root_certificate(pem),
        None => Client::builder().media_over_http(true),
    };
    b.store(store.device(&DeviceId::new(device).unwrap())).url(url).root_key(root).push_name("crash child")
}

/// The child: logs in on the stored account and reports each synced collection, until killed.
fn child(target: &str) -> ! {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let var = |k| std::env::var(k).unwrap();
        let backend = Marked(open_backend(target).await);
        let store = Store::open(backend, StoreOptions::default()).await.unwrap();
        let root = wa_crypto::PublicKey::from_bytes(&hex::decode(var(CHILD_ROOT)).unwrap()).unwrap();
        let ca = std::env::var(CHILD_MEDIA_CA).ok();
        let client = builder(&store, &var(CHILD_DEVICE), var(CHILD_URL), root, ca).build().unwrap();
        let mut events = client.events();
        client.connect().await.unwrap();
        loop {
            match events.recv().await.expect("event stream ended") {
                Event::AppStateSynced { collection, version } => {
                    say(&format!("synced {collection} {version}"))
                }
                Event::AppStateSyncFailed { collection, error } => {
                    say(&format!("failed {collection} {error}"))
                }
                Event::Qr(_) => panic!("the child must find a paired account in its store"),
                _ => {}
            }
        }
    })
}

// ---- parent --------------------------------------------------------------------------------

/// The phone's state at one version: its LTHash and the values of every live index.
struct Expected {
    hash: [u8; 128],
    values: BTreeMap<String, SyncActionValue>,
}

/// SplitMix64: reproducible kill points.
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

/// Reopens the store after a kill and checks that it holds exactly the state of one version
/// in `floor..=ceiling`; returns that version.
async fn check(
    target: &str,
    device: &str,
    expected: &BTreeMap<u64, Expected>,
    floor: u64,
    ceiling: u64,
) -> u64 {
    let store = Store::open_arc(open_backend(target).await, StoreOptions::default())
        .await
        .expect("the store opens cleanly after a kill");
    let d = store.device(&DeviceId::new(device).unwrap());
    let stored = d.get_app_state_version(COLLECTION).await.unwrap().expect("a stored version");
    let v = stored.version;
    assert!(
        (floor..=ceiling).contains(&v),
        "stored version {v} is outside {floor}..={ceiling} (the patches begun and ended before the kill)"
    );
    let want = &expected[&v];
    assert!(stored.hash == want.hash, "the stored LTHash is not the phone's at version {v}");
    let macs = d.app_state_macs(COLLECTION).await.unwrap();
    let mut hash = LtHash::ZERO;
    for (_, value_mac) in &macs {
        hash.add(value_mac);
    }
    assert!(hash.0 == stored.hash, "the stored value MACs do not hash to the stored LTHash at version {v}");
    assert_eq!(macs.len(), want.values.len(), "MAC rows at version {v}");
    for i in 0..CHATS {
        let key = index_json(&chat(i));
        let got = d.app_state_value(COLLECTION, &key).await.unwrap();
        let got = got.map(|b| <SyncActionValue as prost::Message>::decode(b.as_slice()).unwrap());
        assert_eq!(got.as_ref(), want.values.get(&key), "value of {key} at version {v}");
    }
    v
}

fn spawn(test: &str, target: &str, device: &str, emu: &wa_emulator::EmulatorHandle) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_TARGET, target)
        .env(CHILD_DEVICE, device)
        .env(CHILD_URL, emu.ws_url())
        .env(CHILD_ROOT, emu.root_public_key_hex())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    match emu.media_ca_pem() {
        Some(pem) => cmd.env(CHILD_MEDIA_CA, pem),
        None => cmd.env_remove(CHILD_MEDIA_CA),
    };
    cmd.spawn().unwrap()
}

/// What one killed run printed.
#[derive(Default, Debug)]
struct Seen {
    begun: u64,
    ended: u64,
    /// The last marker was a begin: the kill landed between a begin and its end.
    in_apply: bool,
    /// The version a `synced regular_high` line reported, if any.
    synced: Option<u64>,
}

impl Seen {
    fn read(&mut self, line: &str) {
        if line == format!("apply-begin {COLLECTION}") {
            self.begun += 1;
            self.in_apply = true;
        } else if let Some(ok) = line.strip_prefix(&format!("apply-end {COLLECTION} ")) {
            assert_eq!(ok, "true", "a patch failed to store");
            self.ended += 1;
            self.in_apply = false;
        } else if let Some(v) = line.strip_prefix(&format!("synced {COLLECTION} ")) {
            self.synced = Some(v.parse().unwrap());
        } else if line.starts_with("failed ") {
            panic!("the child's sync failed: {line}");
        }
    }
}

fn run(test: &str, target: &str, device: &str, seed: u64) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let emu = rt.block_on(common::emulator(seed));
    let me = emu.with_world(|w| w.create_account("15550015901", "Me")).unwrap();
    let mut expected: BTreeMap<u64, Expected> = BTreeMap::new();
    let mut values: BTreeMap<String, SyncActionValue> = BTreeMap::new();
    let mut write = |inputs: Vec<MutationInput>, values: &mut BTreeMap<String, SyncActionValue>| {
        for m in &inputs {
            let key = String::from_utf8(wa_appstate::index::encode_index(&m.index)).unwrap();
            match m.operation {
                Operation::Set => values.insert(key, m.value.clone()),
                Operation::Remove => values.remove(&key),
            };
        }
        let (v, hash) = emu.with_world(|w| {
            let v = w.phone_app_state_mutation(me, &inputs).unwrap();
            (v, w.app_state_hash(me, COLLECTION).unwrap())
        });
        expected.insert(v, Expected { hash, values: values.clone() });
        v
    };
    // Written before pairing: the client starts from a snapshot at version 1.
    let first = write(vec![action::mute(&chat(0), Some(4_102_444_800_000), 1_000)], &mut values);
    assert_eq!(first, 1);
    rt.block_on(async {
        let store = Store::open_arc(open_backend(target).await, StoreOptions::default()).await.unwrap();
        let b = builder(
            &store,
            device,
            emu.ws_url(),
            emu.root_public_key(),
            emu.media_ca_pem().map(str::to_owned),
        );
        let client = b.build().unwrap();
        let mut events = client.events();
        common::pair(&emu, &client, &mut events, "15550015901").await;
        common::next_matching(&mut events, "regular_high at version 1", |e| match e {
            Event::AppStateSynced { collection, version: 1 } if collection.as_str() == COLLECTION => Some(()),
            Event::AppStateSyncFailed { collection, error } => panic!("{collection} failed: {error}"),
            _ => None,
        })
        .await;
        client.disconnect().await;
    });

    // While no client runs, the phone writes large patches: each sets many mutes (overwriting
    // earlier ones) and removes some set before.
    for p in 1..=PATCHES {
        let base = p as usize * 150;
        let mut inputs: Vec<MutationInput> = (0..MUTATIONS)
            .map(|i| {
                let ts = (p * 1_000_000 + i as u64) as i64;
                action::mute(&chat((base + i) % CHATS), Some(4_102_444_800_000 + p as i64), ts)
            })
            .collect();
        let set: Vec<String> = inputs.iter().map(|m| m.index[1].clone()).collect();
        for i in 0..40 {
            let c = chat((base + 500 + i) % CHATS);
            if values.contains_key(&index_json(&c)) && !set.contains(&c) {
                let ts = (p * 1_000_000 + 900_000 + i as u64) as i64;
                inputs.push(MutationInput { operation: Operation::Remove, ..action::mute(&c, None, ts) });
            }
        }
        write(inputs, &mut values);
    }
    let last = 1 + PATCHES;
    assert_eq!(emu.with_world(|w| w.app_state_version(me, COLLECTION)), last);

    let mut rng = SplitMix(seed);
    let mut version = 1u64;
    let (mut in_apply, mut rolled_back, mut committed_unreported) = (0usize, 0usize, 0usize);
    for round in 0..ROUNDS {
        let mut child = spawn(test, target, device, &emu);
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let wait_for = 1 + rng.below(2);
        let mut seen = Seen::default();
        while seen.begun < wait_for && seen.synced.is_none() {
            let Some(line) = lines.next() else { panic!("the child ended by itself: {:?}", child.wait()) };
            seen.read(&line.unwrap());
        }
        // A kill point inside the apply: at once, or a random moment into it (storing one of
        // these patches takes milliseconds). Busy-waiting only picks the point; what is checked
        // does not depend on where it falls.
        if rng.below(3) != 0 {
            let until = Instant::now() + Duration::from_micros(rng.below(20_000));
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        }
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "the child must die by SIGKILL: {status:?}");
        for line in lines {
            seen.read(&line.unwrap());
        }
        let (floor, ceiling) = (version + seen.ended, version + seen.begun);
        let reached = rt.block_on(check(target, device, &expected, floor, ceiling));
        if seen.in_apply {
            in_apply += 1;
            if reached == floor {
                rolled_back += 1;
            } else {
                committed_unreported += 1;
            }
        }
        println!("round {round}: {seen:?}, version {version} → {reached}");
        version = reached;
        if version == last {
            break;
        }
    }

    // A last run, not killed before it synced: it continues from the stored version to the end.
    let mut child = spawn(test, target, device, &emu);
    let mut seen = Seen::default();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while seen.synced.is_none() {
        let Some(line) = lines.next() else { panic!("the child ended by itself: {:?}", child.wait()) };
        seen.read(&line.unwrap());
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(seen.synced, Some(last));
    assert_eq!(rt.block_on(check(target, device, &expected, last, last)), last);
    // The PostgreSQL variant shares its database with other tests: leave no rows behind.
    rt.block_on(async {
        let store = Store::open_arc(open_backend(target).await, StoreOptions::default()).await.unwrap();
        store.delete_device(&DeviceId::new(device).unwrap()).await.unwrap();
    });
    println!(
        "app-state crash test ({target}): {in_apply} kills inside a patch's transaction \
         ({rolled_back} left the previous patch's state, {committed_unreported} the new one); \
         version {version} before the last run"
    );
    assert!(in_apply > 0 && rolled_back > 0, "no kill landed inside a patch apply");
}

#[test]
fn sigkill_during_a_patch_apply_leaves_one_patchs_state_sqlite() {
    if let Ok(target) = std::env::var(CHILD_TARGET) {
        child(&target);
    }
    let dir = tempfile::tempdir().unwrap();
    let target = format!("sqlite:{}", dir.path().join("wa.db").display());
    run("sigkill_during_a_patch_apply_leaves_one_patchs_state_sqlite", &target, "acct", 159);
}

#[test]
fn sigkill_during_a_patch_apply_leaves_one_patchs_state_postgres() {
    if let Ok(target) = std::env::var(CHILD_TARGET) {
        child(&target);
    }
    // As the wa-store server tests: without the server the test fails, unless skipping is
    // asked for explicitly.
    let url = match std::env::var("WA_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => url,
        _ if std::env::var("WA_STORE_SKIP_SERVER_TESTS").is_ok_and(|v| v == "1") => {
            eprintln!("SKIPPED: WA_TEST_PG_URL not set and WA_STORE_SKIP_SERVER_TESTS=1");
            return;
        }
        _ => panic!(
            "WA_TEST_PG_URL is not set. Run the suite through scripts/test (it starts the servers), \
             or set WA_STORE_SKIP_SERVER_TESTS=1 to skip the PostgreSQL tests explicitly."
        ),
    };
    // A device of its own in the shared test database.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let device = format!("crash{nanos}");
    run(
        "sigkill_during_a_patch_apply_leaves_one_patchs_state_postgres",
        &format!("postgres:{url}"),
        &device,
        160,
    );
}
