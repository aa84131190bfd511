//! Crash test: a child process runs store transactions and is killed with SIGKILL at random
//! points (≥ 200 times per backend); after every kill the store must open cleanly and hold
//! either all or none of each transaction, and every commit the child reported as done.
//!
//! The child is this same test executable re-run on the same test with `WA_STORE_CRASH_CHILD`
//! set. Kill points are chosen by events (after a random number of reported commits, or right
//! after spawn so some kills land in start-up and migrations), never by sleeping.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};

use wa_store::*;

const CHILD_VAR: &str = "WA_STORE_CRASH_CHILD";
const KILLS_VAR: &str = "WA_STORE_CRASH_KILLS";
const DEVICE: &str = "crash";
const CHAT: &str = "chat@s.whatsapp.net";
const KEY: [u8; 32] = [0x42; 32];

fn kills() -> usize {
    std::env::var(KILLS_VAR).ok().and_then(|v| v.parse().ok()).unwrap_or(200)
}

fn peer() -> ProtocolAddress {
    ProtocolAddress::new("peer@lid", 0)
}

fn record(i: u64) -> Vec<u8> {
    let mut r = i.to_be_bytes().to_vec();
    r.extend_from_slice(&[0xab; 200]);
    r
}

fn inbound(i: u64) -> InboundMessage {
    InboundMessage {
        chat: CHAT.into(),
        sender: "peer@lid".into(),
        id: format!("in{i:010}"),
        received_at: i as i64,
        payload: record(i),
    }
}

fn options() -> StoreOptions {
    StoreOptions::with_key(EncryptionKey::Raw(KEY))
}

async fn open(target: &str) -> Result<Store> {
    match target.split_once(':') {
        Some(("sqlite", path)) => Store::open_sqlite(path, options()).await,
        Some(("postgres", url)) => Store::open_postgres(url, options()).await,
        _ => panic!("bad crash target {target}"),
    }
}

async fn counter(d: &DeviceStore) -> u64 {
    match d.get_sessions(&[peer()]).await.expect("read session")[0].as_deref() {
        None => 0,
        Some(r) => u64::from_be_bytes(r[..8].try_into().expect("record counter")),
    }
}

/// The child: commit transactions forever, reporting each one; exits when its stdout closes.
fn child(target: &str) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let store = open(target).await.expect("child open");
        let d = store.device(&DeviceId::new(DEVICE).expect("id"));
        let start = counter(&d).await;
        let mut out = std::io::stdout();
        writeln!(out, "opened {start}").expect("stdout");
        out.flush().expect("flush");
        for i in start + 1.. {
            let mut tx = d.transaction();
            tx.put_session(&peer(), &record(i))
                .put_sent_message(CHAT, &format!("out{i:010}"), &record(i), 1 << 40)
                .put_inbound(&inbound(i))
                .put_app_state_version("regular", &AppStateVersion { version: i, hash: [i as u8; 128] });
            tx.commit().await.expect("commit");
            if writeln!(out, "committed {i}").and_then(|()| out.flush()).is_err() {
                return; // parent is gone
            }
        }
    });
}

/// xorshift64*: reproducible kill points from a printed seed, no extra dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn spawn(test: &str, target: &str) -> Child {
    let exe = std::env::current_exe().expect("current exe");
    Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, target)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child")
}

/// Checks the all-or-nothing invariant at the boundary and returns the committed count.
async fn check(target: &str, reported: u64) -> u64 {
    let store = open(target).await.expect("store must open cleanly after a kill");
    let d = store.device(&DeviceId::new(DEVICE).expect("id"));
    let n = counter(&d).await;
    assert!(n >= reported, "commit {reported} was reported done but the store only has {n}");
    assert!(n <= reported + 1, "store has {n}, more than one transaction beyond the reported {reported}");
    if n > 0 {
        assert!(
            d.get_sent_message(CHAT, &format!("out{n:010}")).await.expect("sent").is_some(),
            "sent {n} missing"
        );
        let v = d.get_app_state_version("regular").await.expect("version").expect("version present");
        assert_eq!(v.version, n, "app-state version disagrees with the session record");
    }
    assert!(
        d.get_sent_message(CHAT, &format!("out{:010}", n + 1)).await.expect("sent").is_none(),
        "half transaction"
    );
    n
}

async fn full_check(target: &str, n: u64) {
    let store = open(target).await.expect("open");
    let d = store.device(&DeviceId::new(DEVICE).expect("id"));
    let pending = d.pending_inbound(u32::MAX).await.expect("pending");
    let ids: Vec<String> = pending.iter().map(|m| m.id.clone()).collect();
    let want: Vec<String> = (1..=n).map(|i| inbound(i).id).collect();
    assert_eq!(ids, want, "inbound messages must be exactly 1..={n}");
    for i in 1..=n {
        assert!(
            d.get_sent_message(CHAT, &format!("out{i:010}")).await.expect("sent").is_some(),
            "sent {i} missing"
        );
    }
}

fn run(test: &str, target: &str) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    eprintln!("crash test {test}: seed {seed}");
    let mut rng = Rng(seed);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut reported = 0u64;
    let mut stats = (0usize, 0usize); // (killed during start-up, killed mid-stream)
    let total = kills();
    for _ in 0..total {
        let mut child = spawn(test, target);
        // Held until the child is reaped: closing it early would let the child exit by itself.
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let wait_for = rng.next() % 24;
        if wait_for == 0 {
            stats.0 += 1;
        } else {
            stats.1 += 1;
            let mut seen = 0;
            for line in (&mut stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(i) = line.strip_prefix("committed ") {
                    reported = i.parse().expect("counter");
                    seen += 1;
                    if seen >= wait_for {
                        break;
                    }
                }
            }
        }
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("wait");
        assert_eq!(status.signal(), Some(9), "the child must die by SIGKILL, not exit: {status:?}");
        // The child kept running between our last read and the kill: drain what it reported.
        for line in stdout.lines() {
            let Ok(line) = line else { break };
            if let Some(i) = line.strip_prefix("committed ") {
                reported = i.parse().expect("counter");
            }
        }
        reported = rt.block_on(check(target, reported));
    }
    rt.block_on(full_check(target, reported));
    eprintln!(
        "crash test {test}: {total} kills ({} at start-up), {reported} transactions committed",
        stats.0
    );
    assert!(reported > total as u64, "too few transactions ran to be meaningful: {reported}");
}

#[test]
fn crash_sqlite() {
    if let Ok(t) = std::env::var(CHILD_VAR) {
        return child(&t);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let target = format!("sqlite:{}", dir.path().join("crash.db").display());
    run("crash::crash_sqlite", &target);
}

#[test]
fn crash_postgres() {
    if let Ok(t) = std::env::var(CHILD_VAR) {
        return child(&t);
    }
    let Some(admin) = crate::harness::server_url(crate::harness::PG_VAR) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let url = rt.block_on(crate::harness::fresh_pg_database(&admin));
    drop(rt);
    run("crash::crash_postgres", &format!("postgres:{url}"));
}
