//! The `broadcaster` binary itself with `DATABASE_URL` (PostgreSQL at `WA_TEST_PG_URL`, a fresh
//! schema): `broadcaster --emulator` starts, migrates, serves; a tenant key, an account linked
//! by the simulated phone's QR scan, a send that the phone receives and reads; SIGTERM; a second
//! process with a *new, empty* data dir finds every record in PostgreSQL (the master key comes
//! from `BROADCASTER_MASTER_KEY`, as it must when the data dir is not kept). The URL's password
//! never reaches the process's output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/harness.rs"]
mod harness;
#[path = "common/testdb.rs"]
mod testdb;

const TEST_ON_POSTGRES: bool = true;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use harness::{T, call};
use serde_json::{Value, json};

const ADMIN: &str = "bc_admin_from_env_for_the_pg_binary_test";
const PASSWORD: &str = "pw-never-logged-7431";
/// The master key both processes get (a throwaway data dir cannot keep a key file).
const MASTER_KEY: &str = "9f1c3a5e7b2d4f6081a3c5e7092b4d6f8a1c3e5f7b9d2f4a6c8e0b1d3f5a7c9e";

struct Proc {
    child: Child,
    addr: SocketAddr,
    /// Every output line (stdout and stderr), read by two threads.
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Proc {
    /// Starts the binary and waits for its "listening" log line (the address it bound).
    fn start(data_dir: &std::path::Path, url: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_broadcaster"))
            .args(["--emulator", "--listen", "127.0.0.1:0", "--rate-limit-per-minute", "0", "--data-dir"])
            .arg(data_dir)
            .env("DATABASE_URL", url)
            .env("BROADCASTER_ADMIN_KEY", ADMIN)
            .env("BROADCASTER_MASTER_KEY", MASTER_KEY)
            .env("NO_COLOR", "1")
            .env_remove("BROADCASTER_CONFIG")
            .env_remove("BROADCASTER_MASTER_KEY_FILE")
            .env_remove("BROADCASTER_MASTER_KEY_PREVIOUS")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn broadcaster");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            BufReader::new(out).lines().map_while(Result::ok).for_each(|l| drop(tx.send(l)))
        });
        std::thread::spawn(move || {
            BufReader::new(err).lines().map_while(Result::ok).for_each(|l| drop(tx2.send(l)))
        });
        let mut p = Self { child, addr: "127.0.0.1:1".parse().unwrap(), lines, seen: Vec::new() };
        let line = p.wait_line("broadcaster listening", |l| l.contains("broadcaster listening"));
        let addr = line.split("addr=").nth(1).and_then(|r| r.split_whitespace().next()).unwrap();
        p.addr = addr.parse().unwrap_or_else(|_| panic!("no address in {line:?}"));
        p
    }

    fn wait_line(&mut self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + T;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let l = strip_ansi(&l);
                    self.seen.push(l.clone());
                    if f(&l) {
                        return l;
                    }
                }
                Err(e) => panic!("waiting for {what}: {e:?}; output so far:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// SIGTERM, then the exit and the rest of the output.
    fn stop(mut self) -> Vec<String> {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = Instant::now() + T;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            // Output keeps flowing while we wait for the exit.
            if let Ok(l) = self.lines.recv_timeout(Duration::from_millis(100)) {
                self.seen.push(strip_ansi(&l));
            }
            assert!(Instant::now() < deadline, "broadcaster did not exit on SIGTERM");
        };
        self.seen.extend(self.lines.try_iter().map(|l| strip_ansi(&l)));
        assert!(status.success(), "exit {status}: {}", self.seen.join("\n"));
        std::mem::take(&mut self.seen)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `WA_TEST_PG_URL` with a password in it (the loopback server trusts any), on a fresh schema.
fn url_with_password(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (auth, host) = rest.split_once('@').expect("WA_TEST_PG_URL names a user");
    let user = auth.split(':').next().unwrap();
    format!("{scheme}://{user}:{PASSWORD}@{host}")
}

/// Waits (bounded, generous) until `f` holds for `GET path`.
async fn wait_get(a: SocketAddr, path: &str, key: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let (s, v) = call(a, "GET", path, key, None).await;
        if s == 200 && f(&v) {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}: {s} {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_keeps_everything_in_postgres_across_a_restart_with_a_new_data_dir() {
    let url = url_with_password(&testdb::fresh_pg_url().await);
    let dir1 = tempfile::tempdir().unwrap();
    let p = Proc::start(dir1.path(), &url);
    let a = p.addr;

    let (s, v) = call(a, "POST", "/api/v1/tenants", ADMIN, Some(json!({ "name": "shop" }))).await;
    assert_eq!(s, 201, "{v}");
    let key = v["api_key"]["key"].as_str().unwrap().to_owned();
    let (s, v) = call(
        a,
        "POST",
        "/api/v1/accounts",
        &key,
        Some(json!({ "name": "Support", "phone": "+15550001111" })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let acc = v["id"].as_str().unwrap().to_owned();
    let (s, v) = call(a, "POST", &format!("/api/v1/accounts/{acc}/connect"), &key, None).await;
    assert_eq!((s, v["state"].as_str()), (202, Some("qr_ready")), "{v}");
    let (s, v) = call(a, "POST", &format!("/api/v1/emulator/accounts/{acc}/scan"), &key, None).await;
    assert_eq!(s, 200, "{v}");
    wait_get(a, &format!("/api/v1/accounts/{acc}"), &key, "active", |v| v["state"] == "active").await;

    let (s, v) =
        call(a, "POST", "/api/v1/emulator/phones", &key, Some(json!({ "phone": "+15550002222" }))).await;
    assert_eq!(s, 201, "{v}");
    let (s, sent) = call(
        a,
        "POST",
        &format!("/api/v1/accounts/{acc}/messages"),
        &key,
        Some(json!({ "to": "+15550002222", "text": "stored in postgres" })),
    )
    .await;
    assert_eq!(s, 201, "{sent}");
    let msg = sent["id"].as_str().unwrap().to_owned();
    let wa_id = sent["wa_message_id"].as_str().unwrap().to_owned();
    wait_get(a, "/api/v1/emulator/phones/+15550002222/inbox", &key, "the phone's inbox", |v| {
        v.as_array()
            .unwrap()
            .iter()
            .any(|m| m["wa_message_id"] == wa_id.as_str() && m["text"] == "stored in postgres")
    })
    .await;
    let (s, v) = call(
        a,
        "POST",
        "/api/v1/emulator/phones/+15550002222/read",
        &key,
        Some(json!({ "wa_message_ids": [wa_id] })),
    )
    .await;
    assert!((200..300).contains(&s), "{s} {v}");
    wait_get(a, &format!("/api/v1/accounts/{acc}/messages/{msg}"), &key, "read", |v| v["status"] == "read")
        .await;
    let first_output = p.stop();

    // A second process, a new empty data dir: everything the server owns comes from PostgreSQL.
    let dir2 = tempfile::tempdir().unwrap();
    let p = Proc::start(dir2.path(), &url);
    let a = p.addr;
    assert!(!dir2.path().join("broadcaster.sqlite3").exists(), "an SQLite database was created");
    let (s, v) = call(a, "GET", &format!("/api/v1/accounts/{acc}"), &key, None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["phone"], "+15550001111");
    let (s, v) = call(a, "GET", &format!("/api/v1/accounts/{acc}/messages/{msg}"), &key, None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((v["status"].as_str(), v["body"].as_str()), (Some("read"), Some("stored in postgres")), "{v}");
    let (s, v) = call(a, "GET", "/api/v1/tenants", ADMIN, None).await;
    assert_eq!(s, 200, "{v}");
    assert!(v.as_array().unwrap().iter().any(|t| t["name"] == "shop"), "{v}");
    let second_output = p.stop();

    for line in first_output.iter().chain(&second_output) {
        assert!(!line.contains(PASSWORD), "the DATABASE_URL password was printed: {line}");
        assert!(!line.contains(MASTER_KEY), "the master key was printed: {line}");
    }
    assert!(
        first_output.iter().any(|l| l.contains("using PostgreSQL database")),
        "no PostgreSQL log line: {}",
        first_output.join("\n")
    );
}

/// Percent-encodes a file path for a URL query value.
fn query_value(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `DATABASE_URL` with `sslmode=verify-full` and the test server's CA (`WA_TEST_PG_CA`, from
/// scripts/services/10-postgres.sh): every connection the binary opens to PostgreSQL (its own
/// database and the auth store, which shares the URL) is a TLS session, and the log says which
/// mode without printing the URL. The same URL with an unrelated CA is refused over the
/// certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reaches_postgres_over_verified_tls() {
    let ca_path = |var: &str| {
        let v = std::env::var(var).unwrap_or_default();
        assert!(
            !v.is_empty(),
            "{var} is not set: source scripts/services/10-postgres.sh (scripts/test does)"
        );
        query_value(&v)
    };
    let (ca, other_ca) = (ca_path("WA_TEST_PG_CA"), ca_path("WA_TEST_PG_OTHER_CA"));
    // A name of our own, to find this process's sessions in pg_stat_activity.
    let app = format!("bc_tls_{:016x}", rand::random::<u64>());
    let base = url_with_password(&testdb::fresh_pg_url().await);
    let url = format!("{base}&application_name={app}&sslmode=verify-full&sslrootcert={ca}");

    let dir = tempfile::tempdir().unwrap();
    let p = Proc::start(dir.path(), &url);
    let (s, v) = call(p.addr, "POST", "/api/v1/tenants", ADMIN, Some(json!({ "name": "tls shop" }))).await;
    assert_eq!(s, 201, "{v}");
    let admin = std::env::var("WA_TEST_PG_URL").unwrap();
    let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT count(*), COALESCE(bool_and(s.ssl), false) FROM pg_stat_ssl s \
             JOIN pg_stat_activity a ON a.pid = s.pid WHERE a.application_name = $1",
            &[&app],
        )
        .await
        .unwrap();
    let (sessions, all_tls): (i64, bool) = (row.get(0), row.get(1));
    assert!(sessions >= 1 && all_tls, "the binary's sessions: {sessions}, all TLS: {all_tls}");
    let output = p.stop();
    for line in &output {
        assert!(!line.contains(PASSWORD), "the DATABASE_URL password was printed: {line}");
        assert!(!line.contains(MASTER_KEY), "the master key was printed: {line}");
    }
    assert!(
        output.iter().any(|l| l.contains("using PostgreSQL database") && l.contains("sslmode=verify-full")),
        "no PostgreSQL log line naming the TLS mode: {}",
        output.join("\n")
    );

    let wrong = format!("{base}&sslmode=verify-full&sslrootcert={other_ca}");
    let e = broadcaster::db::Db::open_postgres(&wrong).await.err().expect("an unrelated CA must be refused");
    let msg = e.to_string();
    assert!(msg.contains("certificate") && !msg.contains(PASSWORD), "{msg}");
}
