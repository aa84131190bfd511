//! The npm `socket.io-client` as a test peer: `tests/interop/socketio/client.mjs` run by node,
//! reporting what it receives as JSON lines and emitting what it is told.
//!
//! The client's directory comes from `WA_SOCKETIO_CLIENT_DIR` (set by
//! `scripts/services/31-socketio-client.sh`), else the project's own copy; a missing
//! `node_modules` is a test failure, never a skip.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Generous: CI runs on two loaded cores.
const T: Duration = Duration::from_secs(60);

pub fn client_dir() -> PathBuf {
    let dir = std::env::var_os("WA_SOCKETIO_CLIENT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/socketio"));
    assert!(
        dir.join("node_modules/socket.io-client/package.json").is_file(),
        "socket.io-client is not installed in {} (run scripts/test, or `npm ci` there)",
        dir.display()
    );
    dir
}

pub struct SioClient {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
    /// Every line received so far, in order.
    pub seen: Vec<Value>,
}

impl SioClient {
    /// Starts a client against `http://{addr}`, with `key` as handshake `auth.apiKey` if given.
    pub async fn spawn(addr: std::net::SocketAddr, key: Option<&str>) -> Self {
        let dir = client_dir();
        let mut cmd = Command::new("node");
        cmd.arg(dir.join("client.mjs")).arg(format!("http://{addr}"));
        if let Some(k) = key {
            cmd.arg(k);
        }
        let mut child = cmd
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs (install node.js: scripts/services/30-node.sh)");
        let stdin = child.stdin.take();
        let lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        Self { child, stdin, lines, seen: Vec::new() }
    }

    /// Emits `event` with `data` from the client.
    pub async fn emit(&mut self, event: &str, data: Value) {
        let mut line = json!({ "emit": event, "data": data }).to_string();
        line.push('\n');
        let stdin = self.stdin.as_mut().expect("client stdin open");
        stdin.write_all(line.as_bytes()).await.expect("write to the client");
        stdin.flush().await.expect("flush to the client");
    }

    /// The next line the client reports that satisfies `f` (earlier ones are kept in `seen`).
    pub async fn next(&mut self, what: &str, mut f: impl FnMut(&Value) -> bool) -> Value {
        let found = tokio::time::timeout(T, async {
            loop {
                let line = self.lines.next_line().await.expect("client stdout").unwrap_or_else(|| {
                    panic!("socket.io client exited while waiting for {what}; saw {:?}", self.seen)
                });
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("client printed a non-JSON line {line:?}: {e}"));
                self.seen.push(v.clone());
                if f(&v) {
                    return v;
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("timed out waiting for {what} on socket.io; saw {:?}", self.seen))
    }

    /// The next occurrence of `event` whose data satisfies `f`.
    pub async fn event(&mut self, event: &str, mut f: impl FnMut(&Value) -> bool) -> Value {
        let v = self.next(event, |v| v["event"] == event && f(&v["data"])).await;
        v["data"].clone()
    }

    /// Closes stdin (the client disconnects and exits) and waits for the process.
    pub async fn close(mut self) {
        drop(self.stdin.take());
        let status = tokio::time::timeout(T, self.child.wait()).await.expect("client exits").expect("wait");
        assert!(status.success(), "socket.io client exited with {status}");
    }
}
