//! The `broadcaster` binary as a child process against an emulator that lives in the test (so
//! it keeps its world, linked devices included, while the server process is killed and started
//! again), plus the PostgreSQL/MongoDB servers of `scripts/services/` with a fresh database per
//! test.

// Shared by several test binaries; each uses a part.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use wa_emulator::EmulatorHandle;

use super::harness::T;

/// A running `broadcaster --emulator-url …` process.
pub struct ServerProcess {
    pub addr: SocketAddr,
    child: Child,
    /// Everything the process printed on stdout so far (for failure messages).
    output: Arc<Mutex<String>>,
}

/// Removes ANSI colour sequences (`ESC [ … letter`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl ServerProcess {
    /// Starts the server on a free loopback port with data in `dir`, the bootstrap admin key
    /// `admin`, sessions against `emu`, and `env` added to its environment (auth store
    /// settings). Returns once it listens (after resuming the sessions of active accounts).
    pub async fn start(dir: &Path, emu: &EmulatorHandle, admin: &str, env: &[(&str, String)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_broadcaster"));
        cmd.arg("--data-dir")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0", "--rate-limit-per-minute", "0", "--log", "info"])
            .args(["--emulator-url", &emu.ws_url(), "--emulator-root-key", &emu.root_public_key_hex()])
            .env("BROADCASTER_ADMIN_KEY", admin)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for var in [
            "BROADCASTER_CONFIG",
            "BROADCASTER_AUTH_STORE",
            "BROADCASTER_AUTH_STORE_URL",
            "BROADCASTER_AUTH_STORE_DATABASE",
            "BROADCASTER_EMULATOR",
            "BROADCASTER_MASTER_KEY",
            "BROADCASTER_MASTER_KEY_PREVIOUS",
            "BROADCASTER_MASTER_KEY_FILE",
        ] {
            cmd.env_remove(var);
        }
        if let Some(pem) = emu.media_ca_pem() {
            let path = dir.join("emulator-media-ca.pem");
            std::fs::write(&path, pem).unwrap();
            cmd.arg("--emulator-media-ca").arg(path);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start the broadcaster binary");
        let stdout = child.stdout.take().unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let out = output.clone();
        // Reads stdout to the end (a full pipe would block the server) and reports the address
        // of the "broadcaster listening" line.
        tokio::spawn(async move {
            let mut tx = Some(tx);
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let line = strip_ansi(&line);
                if line.contains("broadcaster listening")
                    && let Some(addr) = line
                        .split(|c: char| c.is_whitespace() || c == '=')
                        .find_map(|w| w.parse::<SocketAddr>().ok())
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr);
                }
                let mut o = out.lock().unwrap();
                o.push_str(&line);
                o.push('\n');
            }
        });
        let addr = match tokio::time::timeout(T, rx).await {
            Ok(Ok(addr)) => addr,
            _ => {
                let status = child.try_wait().ok().flatten();
                panic!(
                    "the server did not report its address (exit: {status:?}); output:\n{}",
                    output.lock().unwrap()
                )
            }
        };
        Self { addr, child, output }
    }

    /// SIGKILL, as a crash or power loss: nothing is flushed or closed.
    pub async fn kill(mut self) {
        self.child.start_kill().unwrap();
        tokio::time::timeout(T, self.child.wait()).await.expect("killed in time").unwrap();
    }

    /// SIGTERM: a graceful stop; waits for the exit and asserts it was clean.
    pub async fn stop(mut self) {
        let pid = self.child.id().expect("running").to_string();
        let st = Command::new("kill").args(["-TERM", &pid]).status().await.unwrap();
        assert!(st.success(), "kill -TERM {pid}");
        let status = tokio::time::timeout(T, self.child.wait()).await.expect("stopped in time").unwrap();
        assert!(status.success(), "exit {status:?}; output:\n{}", self.output.lock().unwrap());
    }

    /// What the process printed on stdout so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }
}

/// A server URL from `scripts/services/` (`WA_TEST_PG_URL`, `WA_TEST_MONGO_URL`). Absent is a
/// failure with instructions, never a silent pass; `WA_STORE_SKIP_SERVER_TESTS=1` opts out
/// explicitly, as for wa-store's backend tests.
pub fn server_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("WA_STORE_SKIP_SERVER_TESTS").is_ok_and(|v| v == "1") => {
            eprintln!("SKIPPED: {var} not set and WA_STORE_SKIP_SERVER_TESTS=1");
            None
        }
        _ => panic!(
            "{var} is not set. Run the suite through scripts/test (it starts the servers), or \
             source scripts/services/10-postgres.sh and 20-mongo.sh, or set \
             WA_STORE_SKIP_SERVER_TESTS=1 to skip the PostgreSQL/MongoDB tests explicitly."
        ),
    }
}

/// A database name no other test uses.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{prefix}_{}_{}_{nanos}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

/// A fresh PostgreSQL database on the server at `admin_url`; returns its URL.
pub async fn fresh_postgres_database(admin_url: &str) -> String {
    let name = unique_name("bc_e2e");
    let (client, conn) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls).await.unwrap();
    let task = tokio::spawn(conn);
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    drop(client);
    let _ = task.await;
    // Rebuild the URL with the new database (the admin URL's path names another one).
    let (base, _) = admin_url.split_once('?').unwrap_or((admin_url, ""));
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    format!("{base}/{name}")
}
