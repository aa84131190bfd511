//! Encryption at rest (issue 17): after an account is linked through the emulator and a webhook
//! registered, the raw SQLite files (WAL and SHM included), the PostgreSQL rows and the MongoDB
//! documents hold none of the account's private keys nor the webhook secret; a wrong master key
//! stops the start and changes no file; a store in clear as the previous release wrote it is
//! sealed at the first start with a key and the account still logs in; a rotation keeps the
//! account and its webhook working and the old key is then refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/harness.rs"]
mod harness;
#[path = "common/linking.rs"]
mod linking;
#[path = "common/process.rs"]
mod process;
#[path = "common/ws.rs"]
mod ws;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use ws::{next_ws, open_ws};

use broadcaster::config::{AuthStore, Cli, Config, DatabaseUrl};
use broadcaster::secrets::{KeyError, MASTER_KEY_FILE, MasterKey};
use broadcaster::wa_runtime::SQLITE_AUTH_FILE;
use bytes::Bytes;
use harness::{T, call};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use wa_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use wa_store::CredentialStore as _;

/// Where a test server keeps its data, and with which master key settings it starts.
#[derive(Clone)]
struct Setup {
    dir: std::path::PathBuf,
    database_url: Option<String>,
    auth_store: AuthStore,
    key: Option<MasterKey>,
    previous: Option<MasterKey>,
}

impl Setup {
    fn sqlite(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            database_url: None,
            auth_store: AuthStore::Sqlite,
            key: None,
            previous: None,
        }
    }

    fn config(&self) -> Config {
        let mut c = Config::resolve_with_env(Cli::default(), |_| None).unwrap();
        c.data_dir = self.dir.clone();
        c.database_url = self.database_url.as_deref().map(|u| DatabaseUrl::parse(u).unwrap());
        c.auth_store = self.auth_store.clone();
        c.master_key.key = self.key.clone();
        c.master_key.previous = self.previous.clone();
        c.listen = "127.0.0.1:0".parse().unwrap();
        c.emulator = true;
        c.shutdown_timeout = Duration::from_secs(20);
        c.outbound.test_loopback = broadcaster::outbound::TestLoopback::AnyPort;
        c.webhook.base_delay_ms = 50;
        c.webhook.max_delay_ms = 200;
        c
    }

    /// The master key in use: the configured one, else the data dir's key file.
    fn master_key(&self) -> MasterKey {
        self.key.clone().unwrap_or_else(|| MasterKey::read_file(&self.dir.join(MASTER_KEY_FILE)).unwrap())
    }

    /// The auth store opened through the master key.
    async fn auth_store(&self) -> wa_store::Store {
        let key = Some(self.master_key().auth_store_key());
        broadcaster::wa_runtime::WaRuntime::open_store(&self.auth_store, &self.dir, key).await.unwrap()
    }
}

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(T, self.task).await.expect("server stopped").unwrap();
    }
}

const ADMIN: &str = "bk_at_rest_admin_key_0123456789abcdef";

/// Opens the database and builds the server (the master key step runs here).
async fn build(
    setup: &Setup,
    emu: &Arc<EmulatorHandle>,
) -> Result<broadcaster::Server, broadcaster::ServeError> {
    let config = setup.config();
    let (db, _) = broadcaster::open_database(&config, Some(ADMIN.into())).await.unwrap();
    broadcaster::build_server_with(&config, db, Some(emu.clone())).await
}

async fn start(setup: &Setup, emu: &Arc<EmulatorHandle>) -> Running {
    let config = setup.config();
    let server = build(setup, emu).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        broadcaster::serve_with(&config, server, listener, async move {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Running { addr, stop: Some(tx), task }
}

type Hooks = mpsc::UnboundedReceiver<(axum::http::HeaderMap, Bytes)>;

/// A webhook receiver: every POST's headers and body, answered 200.
async fn webhook_receiver() -> (SocketAddr, Hooks) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |h: axum::http::HeaderMap, b: Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((h, b));
                axum::http::StatusCode::OK
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (addr, rx)
}

/// What a linked account with a webhook leaves: its keys and the webhook secret.
struct Linked {
    key: String,
    acc: String,
    phone: String,
    secret: String,
    hooks: Hooks,
}

/// A tenant, an account linked by the emulator's phone `phone` (QR scan) and an
/// `incoming_message` webhook with its secret.
async fn link_with_webhook(a: SocketAddr, phone: &str) -> Linked {
    let (s, v) =
        call(a, "POST", "/api/v1/tenants", ADMIN, Some(json!({ "name": format!("t{phone}") }))).await;
    assert_eq!(s, 201, "{v}");
    let key = v["api_key"]["key"].as_str().unwrap().to_owned();
    let (s, v) =
        call(a, "POST", "/api/v1/accounts", &key, Some(json!({ "name": "At rest", "phone": phone }))).await;
    assert_eq!(s, 201, "{v}");
    let acc = v["id"].as_str().unwrap().to_owned();
    let mut ws = open_ws(a, &key).await;
    let (s, v) = call(a, "POST", &format!("/api/v1/accounts/{acc}/connect"), &key, None).await;
    assert_eq!(s, 202, "{v}");
    let (s, v) = call(a, "POST", &format!("/api/v1/emulator/accounts/{acc}/scan"), &key, None).await;
    assert_eq!(s, 200, "{v}");
    next_ws(&mut ws, "active", |v| v["event"] == "connection_update" && v["data"]["state"] == "active").await;
    let (hook_addr, hooks) = webhook_receiver().await;
    let (s, v) = call(
        a,
        "POST",
        "/api/v1/webhooks",
        &key,
        Some(json!({ "url": format!("http://{hook_addr}/hook"), "events": ["incoming_message"] })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let secret = v["secret"].as_str().unwrap().to_owned();
    ws.close(None).await.ok();
    Linked { key, acc, phone: phone.trim_start_matches('+').to_owned(), secret, hooks }
}

/// The account is active (after a restart: without pairing again), sends to a friend, and the
/// friend's answer reaches the webhook signed with the secret given at registration.
async fn still_works(a: SocketAddr, emu: &EmulatorHandle, l: &mut Linked, friend_pn: &str, text: &str) {
    let mut ws = open_ws(a, &l.key).await;
    let (_, v) = call(a, "GET", &format!("/api/v1/accounts/{}", l.acc), &l.key, None).await;
    if v["state"] != "active" {
        let acc = l.acc.clone();
        next_ws(&mut ws, "active after the restart", |v| {
            assert_ne!(v["event"], "qr_code", "asked to pair again");
            v["event"] == "connection_update"
                && v["data"]["account_id"] == acc
                && v["data"]["state"] == "active"
        })
        .await;
    }
    let friend = emu.phone(friend_pn).or_else(|_| emu.create_account(friend_pn, "Friend")).unwrap();
    let path = format!("/api/v1/accounts/{}/messages", l.acc);
    let (s, v) =
        call(a, "POST", &path, &l.key, Some(json!({ "to": format!("+{friend_pn}"), "text": text }))).await;
    assert_eq!(s, 201, "{v}");
    assert!(friend.wait_message(T, |m| m.text.as_deref() == Some(text)).await.is_some(), "{text} received");
    let me: wa_client::Jid = format!("{}@s.whatsapp.net", l.phone).parse().unwrap();
    let answer = format!("re: {text}");
    friend.send_text(&me, &answer).unwrap();
    let (headers, body) = tokio::time::timeout(T, l.hooks.recv()).await.expect("webhook delivered").unwrap();
    let payload: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(payload["data"]["body"], answer.as_str(), "{payload}");
    let ts: i64 = headers["x-broadcaster-timestamp"].to_str().unwrap().parse().unwrap();
    let sig = headers["x-broadcaster-signature"].to_str().unwrap();
    assert!(broadcaster::webhooks::verify(&l.secret, ts, &body, sig), "signed with the registered secret");
    ws.close(None).await.ok();
}

/// The byte strings that must not be stored: the account's private keys (identity, Noise,
/// signed prekey, ADV secret), read from the auth store through the key, raw and in hex; the
/// webhook secret.
async fn secrets_of(store: &wa_store::Store, l: &Linked) -> Vec<(String, Vec<u8>)> {
    let device = store.device(&wa_store::DeviceId::new(&l.acc).unwrap());
    let creds = device.load_credentials().await.unwrap().expect("the linked device has credentials");
    let mut out = Vec::new();
    for (name, k) in [
        ("identity private key", creds.identity_key.private),
        ("noise private key", creds.noise_key.private),
        ("signed prekey private key", creds.signed_pre_key.key_pair.private),
        ("ADV secret key", creds.adv_secret_key),
    ] {
        out.push((name.to_owned(), k.to_vec()));
        out.push((format!("{name} (hex)"), hex::encode(k).into_bytes()));
    }
    out.push(("webhook secret".into(), l.secret.clone().into_bytes()));
    out.push(("webhook secret (hex part)".into(), l.secret.trim_start_matches("whsec_").as_bytes().to_vec()));
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every file of the data dir (SQLite databases, WAL and SHM files included) by name.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect()
}

/// Every file of the data dir by name, as its length and SHA-256 (for "unchanged" checks that
/// print readably when they fail).
fn fingerprints(dir: &Path) -> BTreeMap<String, (usize, String)> {
    use sha2::Digest as _;
    files(dir).into_iter().map(|(n, b)| (n, (b.len(), hex::encode(sha2::Sha256::digest(&b))))).collect()
}

/// The secrets found in any data dir file, as "secret in file".
fn found_in_files(dir: &Path, secrets: &[(String, Vec<u8>)]) -> Vec<String> {
    let mut found = Vec::new();
    for (file, bytes) in files(dir) {
        for (name, s) in secrets {
            if contains(&bytes, s) {
                found.push(format!("{name} in {file}"));
            }
        }
    }
    found
}

fn sqlite_files(dir: &Path) -> Vec<String> {
    files(dir).into_keys().filter(|f| f.contains(".sqlite3")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_files_wal_and_shm_included_hold_no_private_key_or_webhook_secret() {
    let emu =
        Arc::new(Emulator::start(EmulatorConfig { seed: Some(1731), ..Default::default() }).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::sqlite(dir.path());
    let srv = start(&setup, &emu).await;
    let mut l = link_with_webhook(srv.addr, "+15550173100").await;
    still_works(srv.addr, &emu, &mut l, "155501731001", "sealed").await;

    // The first start generated the key file, owner-only, in an owner-only data dir.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join(MASTER_KEY_FILE)), 0o600);
        assert_eq!(mode(dir.path()), 0o700);
    }
    // A second account behind a proxy with a password: the password is sealed too.
    let (s, v) = call(
        srv.addr,
        "POST",
        "/api/v1/accounts",
        &l.key,
        Some(json!({ "name": "Proxied", "proxy": "http://proxyuser:Pr0xyPassw0rd-at-rest@127.0.0.1:3128" })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["proxy"], "http://proxyuser:***@127.0.0.1:3128", "{v}");
    let store = setup.auth_store().await;
    assert!(store.key_id().await.is_some(), "the auth store is sealed");
    let mut secrets = secrets_of(&store, &l).await;
    secrets.push(("proxy password".into(), b"Pr0xyPassw0rd-at-rest".to_vec()));
    drop(store);
    // While the server runs, the WAL holds the latest writes.
    let names = sqlite_files(dir.path());
    assert!(names.iter().any(|f| f.ends_with("-wal")), "a WAL file to search: {names:?}");
    assert_eq!(found_in_files(dir.path(), &secrets), Vec::<String>::new());
    srv.stop().await;
    assert_eq!(found_in_files(dir.path(), &secrets), Vec::<String>::new());
}

/// Like [`link_with_webhook`] against a server process on an external emulator: the phone
/// scans the QR (read from the server's API) through the emulator's control API.
async fn link_with_webhook_via_control(a: SocketAddr, emu: &EmulatorHandle, phone: &str) -> Linked {
    let (key, acc, mut ws) = linking::link_via_control(a, ADMIN, emu, phone, "At rest").await;
    let (hook_addr, hooks) = webhook_receiver().await;
    let body = json!({ "url": format!("http://{hook_addr}/hook"), "events": ["incoming_message"] });
    let (s, v) = call(a, "POST", "/api/v1/webhooks", &key, Some(body)).await;
    assert_eq!(s, 201, "{v}");
    let secret = v["secret"].as_str().unwrap().to_owned();
    ws.close(None).await.ok();
    Linked { key, acc, phone: phone.trim_start_matches('+').to_owned(), secret, hooks }
}

/// Runs the binary on `dir` with `env` until it exits by itself; its exit code and output.
async fn run_to_exit(dir: &Path, emu: &EmulatorHandle, env: &[(&str, String)]) -> (Option<i32>, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_broadcaster"));
    cmd.arg("--data-dir").arg(dir).args(["--listen", "127.0.0.1:0"]);
    cmd.args(["--emulator-url", &emu.ws_url(), "--emulator-root-key", &emu.root_public_key_hex()]);
    cmd.env("BROADCASTER_ADMIN_KEY", ADMIN).env("NO_COLOR", "1").kill_on_drop(true);
    for var in ["BROADCASTER_MASTER_KEY", "BROADCASTER_MASTER_KEY_PREVIOUS", "BROADCASTER_MASTER_KEY_FILE"] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    // A server that starts anyway is a failure, not a hang: it is killed on drop.
    let out = tokio::time::timeout(T, cmd.output()).await.expect("the server exits by itself").unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_master_key_stops_the_start_and_leaves_every_file_byte_identical() {
    let emu =
        Arc::new(Emulator::start(EmulatorConfig { seed: Some(1732), ..Default::default() }).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let right = MasterKey::generate();
    let loopback = (broadcaster::config::TEST_LOOPBACK_TARGETS_VAR, "any".to_owned());
    let with_right = [("BROADCASTER_MASTER_KEY", right.to_hex()), loopback.clone()];
    let srv = process::ServerProcess::start(dir.path(), &emu, ADMIN, &with_right).await;
    let mut l = link_with_webhook_via_control(srv.addr, &emu, "+15550173200").await;
    srv.stop().await;
    let before = fingerprints(dir.path());
    assert!(before.contains_key(SQLITE_AUTH_FILE) && !before.contains_key(MASTER_KEY_FILE), "{before:?}");

    let wrong = MasterKey::generate();
    let (code, out) = run_to_exit(dir.path(), &emu, &[("BROADCASTER_MASTER_KEY", wrong.to_hex())]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("does not match the data in") && out.contains("nothing was changed"), "{out}");
    assert!(
        out.contains(&wrong.id()) && !out.contains(&wrong.to_hex()) && !out.contains("panicked"),
        "{out}"
    );
    assert_eq!(fingerprints(dir.path()), before, "no file changed");

    // Without any key (no variable, no key file) sealed data is refused too, and no key file is
    // made that could never open it.
    let (code, out) = run_to_exit(dir.path(), &emu, &[]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("is encrypted, but the master key file") && out.contains("does not exist"), "{out}");
    assert_eq!(fingerprints(dir.path()), before, "no file changed");

    // A malformed key is a configuration error (exit 2) that does not echo the text.
    let (code, out) = run_to_exit(dir.path(), &emu, &[("BROADCASTER_MASTER_KEY", "not-a-key".into())]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("BROADCASTER_MASTER_KEY is not a master key") && !out.contains("not-a-key"),
        "{out}"
    );
    assert_eq!(fingerprints(dir.path()), before, "no file changed");

    // The right key still opens everything.
    let srv = process::ServerProcess::start(dir.path(), &emu, ADMIN, &with_right).await;
    still_works(srv.addr, &emu, &mut l, "155501732001", "right key").await;
    srv.stop().await;
}

/// Turns the data dir of a server that ran with this branch into what the previous release left:
/// the auth store in clear (`StoreOptions::default()`: wa-store's clear record and clear rows,
/// which `rotate_key(None)` writes exactly), webhook secrets in clear, no key file.
async fn make_previous_release_data_dir(setup: &Setup, l: &Linked) {
    setup.auth_store().await.rotate_key(None).await.unwrap();
    let db = match &setup.database_url {
        Some(url) => broadcaster::db::Db::open_postgres(url).await.unwrap(),
        None => broadcaster::db::Db::open_in_dir(&setup.dir).unwrap(),
    };
    let secret = l.secret.clone();
    db.call(move |c| c.execute("UPDATE webhooks SET secret = ?1", [secret])).await.unwrap();
    drop(db);
    std::fs::remove_file(setup.dir.join(MASTER_KEY_FILE)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_in_clear_from_the_previous_release_is_sealed_at_start_and_the_account_still_logs_in() {
    let emu =
        Arc::new(Emulator::start(EmulatorConfig { seed: Some(1733), ..Default::default() }).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::sqlite(dir.path());
    let srv = start(&setup, &emu).await;
    let mut l = link_with_webhook(srv.addr, "+15550173300").await;
    srv.stop().await;
    let secrets = secrets_of(&setup.auth_store().await, &l).await;
    make_previous_release_data_dir(&setup, &l).await;
    let clear =
        wa_store::Store::open_sqlite(dir.path().join(SQLITE_AUTH_FILE), Default::default()).await.unwrap();
    assert_eq!(clear.key_id().await, None, "the previous release's store is in clear");
    drop(clear);
    // The search finds what is there: the previous release's files hold the keys and the secret.
    let found = found_in_files(dir.path(), &secrets);
    for name in
        ["identity private key in wa-auth", "noise private key in wa-auth", "webhook secret in broadcaster"]
    {
        assert!(found.iter().any(|f| f.starts_with(name)), "{name}: {found:?}");
    }

    let srv = start(&setup, &emu).await;
    assert!(dir.path().join(MASTER_KEY_FILE).exists(), "the first start with encryption made the key file");
    still_works(srv.addr, &emu, &mut l, "155501733001", "after the migration").await;
    let store = setup.auth_store().await;
    assert!(store.key_id().await.is_some(), "sealed in place");
    drop(store);
    assert_eq!(found_in_files(dir.path(), &secrets), Vec::<String>::new(), "while running");
    srv.stop().await;
    assert_eq!(found_in_files(dir.path(), &secrets), Vec::<String>::new(), "after the stop");

    // A start interrupted between the two stores (auth store sealed, webhook secret still in
    // clear) is finished by the next one.
    let db = broadcaster::db::Db::open_in_dir(dir.path()).unwrap();
    let secret = l.secret.clone();
    db.call(move |c| c.execute("UPDATE webhooks SET secret = ?1", [secret])).await.unwrap();
    drop(db);
    let srv = start(&setup, &emu).await;
    still_works(srv.addr, &emu, &mut l, "155501733001", "after the interrupted migration").await;
    srv.stop().await;
    assert_eq!(found_in_files(dir.path(), &secrets), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_sealing_and_scrubbing_a_sqlite_store_is_finished_at_the_next_start() {
    let emu =
        Arc::new(Emulator::start(EmulatorConfig { seed: Some(1737), ..Default::default() }).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::sqlite(dir.path());
    let srv = start(&setup, &emu).await;
    let mut l = link_with_webhook(srv.addr, "+15550173700").await;
    srv.stop().await;
    let secrets = secrets_of(&setup.auth_store().await, &l).await;
    make_previous_release_data_dir(&setup, &l).await;
    // What a start killed right after sealing the auth store leaves: the marker it wrote before
    // the rewrite, the key file, the store sealed, its old clear bytes still in free pages.
    let marker = dir.path().join(format!("{SQLITE_AUTH_FILE}.scrub-pending"));
    std::fs::write(&marker, b"").unwrap();
    let key = MasterKey::generate();
    key.write_new_file(&dir.path().join(MASTER_KEY_FILE)).unwrap();
    let clear =
        wa_store::Store::open_sqlite(dir.path().join(SQLITE_AUTH_FILE), Default::default()).await.unwrap();
    clear.rotate_key(Some(key.auth_store_key())).await.unwrap();
    drop(clear);
    let found = found_in_files(dir.path(), &secrets);
    assert!(found.iter().any(|f| f.starts_with("identity private key in wa-auth")), "{found:?}");

    let srv = start(&setup, &emu).await;
    assert!(!marker.exists(), "the owed scrub was done");
    still_works(srv.addr, &emu, &mut l, "155501737001", "after the interrupted scrub").await;
    srv.stop().await;
    assert_eq!(found_in_files(dir.path(), &secrets), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_the_account_and_webhook_working_and_the_old_key_then_fails() {
    let emu =
        Arc::new(Emulator::start(EmulatorConfig { seed: Some(1734), ..Default::default() }).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (MasterKey::generate(), MasterKey::generate());
    let with_old = Setup { key: Some(old.clone()), ..Setup::sqlite(dir.path()) };
    let srv = start(&with_old, &emu).await;
    let mut l = link_with_webhook(srv.addr, "+15550173400").await;
    srv.stop().await;

    // The new key alone cannot read the old data.
    let with_new = Setup { key: Some(new.clone()), ..with_old.clone() };
    // (That nothing is written then is the process-level test's part: servers run in this
    // process leave connections of the last run open, so files can still move here.)
    assert!(matches!(
        build(&with_new, &emu).await,
        Err(broadcaster::ServeError::MasterKey(KeyError::WrongKey { .. }))
    ));

    // New key with the old one as previous: everything re-sealed, the account and its webhook
    // carry on.
    let rotating = Setup { previous: Some(old.clone()), ..with_new.clone() };
    let srv = start(&rotating, &emu).await;
    still_works(srv.addr, &emu, &mut l, "155501734001", "after the rotation").await;
    srv.stop().await;
    let auth = dir.path().join(SQLITE_AUTH_FILE);
    let opened = |k: &MasterKey| {
        let options = wa_store::StoreOptions::with_key(k.auth_store_key());
        let auth = auth.clone();
        async move { wa_store::Store::open_sqlite(auth, options).await.map(drop) }
    };
    assert!(opened(&new).await.is_ok(), "the auth store is sealed with the new key");
    assert!(
        matches!(opened(&old).await, Err(wa_store::Error::WrongKey { .. })),
        "and no longer with the old one"
    );

    // The old key is now refused, and leaving the previous key set is harmless.
    let err = build(&with_old, &emu).await.err().expect("the old key is refused after the rotation");
    assert!(matches!(err, broadcaster::ServeError::MasterKey(KeyError::WrongKey { .. })), "{err:?}");
    let srv = start(&rotating, &emu).await;
    still_works(srv.addr, &emu, &mut l, "155501734001", "previous key still set").await;
    srv.stop().await;
    let srv = start(&with_new, &emu).await;
    still_works(srv.addr, &emu, &mut l, "155501734001", "new key alone").await;
    srv.stop().await;
}

/// Every row of every table in the PostgreSQL database at `url`, as text (`bytea` as `\x` hex).
async fn postgres_dump(url: &str) -> String {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    let driver = tokio::spawn(conn);
    let tables: Vec<String> = client
        .query("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        tables.iter().any(|t| t == "webhooks") && tables.iter().any(|t| t.starts_with("wa_")),
        "{tables:?}"
    );
    let mut out = String::new();
    for t in tables {
        for r in client.query(&format!("SELECT CAST(t AS TEXT) FROM \"{t}\" t"), &[]).await.unwrap() {
            out.push_str(r.get::<_, &str>(0));
            out.push('\n');
        }
    }
    drop(client);
    let _ = driver.await;
    out
}

/// Hex and text forms of the secrets (how PostgreSQL prints them), by name.
fn found_in_text(text: &str, secrets: &[(String, Vec<u8>)]) -> Vec<String> {
    secrets
        .iter()
        .filter(|(_, s)| {
            let as_text = std::str::from_utf8(s).ok().filter(|t| !t.is_empty());
            text.contains(&hex::encode(s)) || as_text.is_some_and(|t| text.contains(t))
        })
        .map(|(n, _)| n.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rows_hold_no_private_key_or_webhook_secret() {
    let Some(admin_url) = process::server_url("WA_TEST_PG_URL") else { return };
    let url = process::fresh_postgres_database(&admin_url).await;
    let emu =
        Arc::new(Emulator::start(EmulatorConfig { seed: Some(1735), ..Default::default() }).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup {
        database_url: Some(url.clone()),
        auth_store: AuthStore::Postgres { url: url.clone() },
        ..Setup::sqlite(dir.path())
    };
    let srv = start(&setup, &emu).await;
    let mut l = link_with_webhook(srv.addr, "+15550173500").await;
    still_works(srv.addr, &emu, &mut l, "155501735001", "sealed in postgres").await;
    let secrets = secrets_of(&setup.auth_store().await, &l).await;
    let dump = postgres_dump(&url).await;
    assert!(dump.contains(&l.acc), "the dump has the account's rows");
    assert_eq!(found_in_text(&dump, &secrets), Vec::<String>::new());
    srv.stop().await;

    // A database in clear from the previous release is sealed at the next start.
    make_previous_release_data_dir(&setup, &l).await;
    let found = found_in_text(&postgres_dump(&url).await, &secrets);
    assert!(
        found.iter().any(|f| f == "identity private key") && found.iter().any(|f| f == "webhook secret"),
        "{found:?}"
    );
    let srv = start(&setup, &emu).await;
    still_works(srv.addr, &emu, &mut l, "155501735001", "migrated in postgres").await;
    assert_eq!(found_in_text(&postgres_dump(&url).await, &secrets), Vec::<String>::new());
    srv.stop().await;
}

/// Raw BSON bytes of every document of every collection in MongoDB database `db`.
async fn mongodb_dump(url: &str, db: &str) -> Vec<u8> {
    use futures::TryStreamExt as _;
    let client = mongodb::Client::with_uri_str(url).await.unwrap();
    let db = client.database(db);
    let names = db.list_collection_names().await.unwrap();
    assert!(!names.is_empty(), "the auth store has collections");
    let mut out = Vec::new();
    for name in names {
        let c = db.collection::<mongodb::bson::RawDocumentBuf>(&name);
        let docs: Vec<mongodb::bson::RawDocumentBuf> =
            c.find(mongodb::bson::doc! {}).await.unwrap().try_collect().await.unwrap();
        for d in docs {
            out.extend_from_slice(d.as_bytes());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_documents_hold_no_private_key() {
    let Some(url) = process::server_url("WA_TEST_MONGO_URL") else { return };
    let database = process::unique_name("bc_at_rest");
    let emu =
        Arc::new(Emulator::start(EmulatorConfig { seed: Some(1736), ..Default::default() }).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup {
        auth_store: AuthStore::Mongodb { url: url.clone(), database: database.clone() },
        ..Setup::sqlite(dir.path())
    };
    let srv = start(&setup, &emu).await;
    let mut l = link_with_webhook(srv.addr, "+15550173600").await;
    still_works(srv.addr, &emu, &mut l, "155501736001", "sealed in mongodb").await;
    let secrets = secrets_of(&setup.auth_store().await, &l).await;
    let dump = mongodb_dump(&url, &database).await;
    assert!(contains(&dump, l.acc.as_bytes()), "the dump has the account's documents");
    let found: Vec<&String> = secrets.iter().filter(|(_, s)| contains(&dump, s)).map(|(n, _)| n).collect();
    assert_eq!(found, Vec::<&String>::new());
    assert_eq!(found_in_files(dir.path(), &secrets), Vec::<String>::new(), "nor the server's SQLite files");
    srv.stop().await;

    // A store in clear from the previous release is sealed at the next start.
    make_previous_release_data_dir(&setup, &l).await;
    assert!(contains(&mongodb_dump(&url, &database).await, &secrets[0].1), "in clear before");
    let srv = start(&setup, &emu).await;
    still_works(srv.addr, &emu, &mut l, "155501736001", "migrated in mongodb").await;
    let dump = mongodb_dump(&url, &database).await;
    let found: Vec<&String> = secrets.iter().filter(|(_, s)| contains(&dump, s)).map(|(n, _)| n).collect();
    assert_eq!(found, Vec::<&String>::new());
    srv.stop().await;
}
