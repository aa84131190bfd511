//! Drives third-party peers as child processes over JSON lines, with timeouts on every wait:
//! `tests/interop/baileys/baileys-peer.mjs` (unmodified Baileys 7.0.0-rc14) and, in [`wa_rs`],
//! `tests/interop/whatsapp-rust` (unmodified whatsapp-rust 0.7.0). Both take the same `send` and
//! `quit` commands and report received messages as `message` events with `id` and `text`, so
//! the scenario helpers at the end serve both.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use wa_emulator::EmulatorHandle;

pub mod wa_rs;

/// Every wait on a peer event: generous, for CI's two loaded cores.
pub const T: Duration = Duration::from_secs(60);

pub fn baileys_dir() -> PathBuf {
    if let Ok(d) = std::env::var("WA_BAILEYS_DIR") {
        return PathBuf::from(d);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/baileys")
}

/// Emulator logs on stderr when `WA_EMU_LOG` is set (`error`..`trace`); Baileys' own log
/// (pino, on stderr) is enabled with `WA_PEER_LOG=<level>`.
pub fn init_tracing() {
    if let Some(level) = std::env::var("WA_EMU_LOG").ok().and_then(|l| l.parse::<tracing::Level>().ok()) {
        let _ = tracing_subscriber::fmt().with_max_level(level).with_test_writer().try_init();
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        let mut p = std::env::temp_dir();
        let n: u64 =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        p.push(format!("wa-emu-{label}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct Peer {
    child: Child,
    stdin: ChildStdin,
    events: mpsc::UnboundedReceiver<Value>,
    pub seen: Vec<Value>,
}

impl Peer {
    /// Baileys with the version the emulator accepts, got the way Baileys users get
    /// WhatsApp's: fetchLatestWaWebVersion() reading the emulator's sw.js (`--sw-js` in
    /// baileys-peer.mjs). A test passing `--wa-version` in `extra` pins that one instead.
    pub async fn spawn(emu: &EmulatorHandle, auth: &Path, extra: &[&str]) -> Peer {
        let fetch = !extra.contains(&"--wa-version");
        Self::spawn_with(emu, auth, extra, fetch).await
    }

    /// [`Peer::spawn`]; without `fetch_version` (and no `--wa-version` in `extra`) Baileys
    /// reports the version it ships.
    pub async fn spawn_with(emu: &EmulatorHandle, auth: &Path, extra: &[&str], fetch_version: bool) -> Peer {
        let dir = baileys_dir();
        assert!(
            dir.join("node_modules/@whiskeysockets/baileys").exists(),
            "Baileys is not installed in {}: run scripts/services/30-node.sh (npm ci)",
            dir.display()
        );
        let mut cmd = Command::new("node");
        cmd.current_dir(&dir)
            .arg("baileys-peer.mjs")
            .args(["--url", &emu.ws_url(), "--auth"])
            .arg(auth)
            .args(["--root-pub", &emu.root_public_key_hex()])
            .args(extra)
            .args(if fetch_version { vec!["--sw-js".to_owned(), emu.sw_js_url()] } else { Vec::new() })
            .args(std::env::var("WA_PEER_LOG").map(|l| vec!["--log".to_owned(), l]).unwrap_or_default());
        // Media goes over https to the emulator's TLS endpoint; Node trusts its test CA.
        if let Some(ca) = emu.media_ca_pem() {
            let path = auth.join("emulator-media-ca.pem");
            std::fs::write(&path, ca).unwrap();
            cmd.env("NODE_EXTRA_CA_CERTS", &path);
        }
        Peer::start(cmd)
    }

    /// Starts a peer process that speaks JSON lines on stdin/stdout (stderr is inherited).
    pub fn start(mut cmd: Command) -> Peer {
        init_tracing();
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).kill_on_drop(true);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {:?}: {e}", cmd.as_std().get_program()));
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                    Err(_) => eprintln!("[peer] {line}"),
                }
            }
        });
        Peer { child, stdin, events, seen: Vec::new() }
    }

    /// An event matching `pred` among those already seen (while waiting for something else),
    /// or else the next one that matches.
    pub async fn seen_or_expect(&mut self, what: &str, mut pred: impl FnMut(&Value) -> bool) -> Value {
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return v.clone();
        }
        self.expect(what, pred).await
    }

    /// Waits for an event matching `pred`; panics with everything seen on timeout.
    pub async fn expect(&mut self, what: &str, mut pred: impl FnMut(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + T;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(v)) => {
                    eprintln!("[peer] {}", short(&v));
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Ok(None) => panic!("peer exited while waiting for {what}; saw {:#?}", self.seen),
                Err(_) => panic!("timed out waiting for {what}; saw {:#?}", self.seen),
            }
        }
    }

    pub async fn expect_event(&mut self, event: &str) -> Value {
        self.expect(event, |v| v["event"] == event).await
    }

    pub async fn expect_open(&mut self) -> Value {
        self.expect("connection open", |v| v["event"] == "connection" && v["connection"] == "open").await
    }

    pub async fn expect_close(&mut self) -> Value {
        self.expect("connection close", |v| v["event"] == "connection" && v["connection"] == "close").await
    }

    pub async fn send(&mut self, cmd: Value) {
        let mut line = serde_json::to_vec(&cmd).unwrap();
        line.push(b'\n');
        self.stdin.write_all(&line).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    pub async fn send_text(&mut self, to: &str, text: &str) -> String {
        self.send(json!({"cmd": "send", "to": to, "text": text})).await;
        let v = self.expect("sent", |v| v["event"] == "sent" || v["event"] == "error").await;
        assert_eq!(v["event"], "sent", "send failed: {v}");
        v["id"].as_str().unwrap().to_owned()
    }

    /// Sends any Baileys message content (see `send_message` in baileys-peer.mjs), optionally
    /// quoting a message by id; returns the new message's id.
    pub async fn send_message(&mut self, to: &str, content: Value, quote: Option<&str>) -> String {
        self.send(json!({"cmd": "send_message", "to": to, "content": content, "quote": quote})).await;
        let v = self.expect("sent", |v| v["event"] == "sent" || v["event"] == "error").await;
        assert_eq!(v["event"], "sent", "send_message failed: {v}");
        v["id"].as_str().unwrap().to_owned()
    }

    /// Waits for a received (not own) message with this id.
    pub async fn expect_message(&mut self, id: &str) -> Value {
        self.expect(&format!("message {id}"), |v| {
            v["event"] == "message" && v["id"] == id && v["fromMe"] != true
        })
        .await
    }

    /// Downloads and decrypts a received message's media with Baileys' own code.
    pub async fn download(&mut self, id: &str) -> Vec<u8> {
        use base64::Engine as _;
        self.send(json!({"cmd": "download", "id": id})).await;
        let v = self
            .expect("downloaded", |v| (v["event"] == "downloaded" && v["id"] == id) || v["event"] == "error")
            .await;
        assert_eq!(v["event"], "downloaded", "download failed: {v}");
        base64::engine::general_purpose::STANDARD.decode(v["b64"].as_str().unwrap()).unwrap()
    }

    /// Waits for the process to exit by itself; returns its exit code.
    pub async fn expect_exit(&mut self) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + T;
        while let Ok(Some(v)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            eprintln!("[peer] {}", short(&v));
            self.seen.push(v);
        }
        let status =
            tokio::time::timeout_at(deadline, self.child.wait()).await.expect("peer did not exit").unwrap();
        status.code()
    }

    pub async fn quit(mut self) {
        let _ = self.send(json!({"cmd": "quit"})).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s,
    }
}

/// Pairs a fresh Baileys by QR through `phone` and waits for `open`.
pub async fn pair_by_qr(emu: &EmulatorHandle, pn: &str, auth: &Path) -> Peer {
    let mut peer = Peer::spawn(emu, auth, &[]).await;
    let qr = peer.expect_event("qr").await;
    emu.phone(pn).unwrap().scan(qr["qr"].as_str().unwrap()).unwrap();
    peer.expect_event("restart").await;
    peer.expect_open().await;
    peer
}

/// A simulated phone (`friend`) sends the peer (paired to `me`) a text, and the peer answers:
/// the friend's phone decrypts the answer, and `me`'s own phone decrypts the copy the peer sent
/// it (DSM). Returns the peer's event for the received text.
pub async fn text_both_ways(
    emu: &EmulatorHandle,
    peer: &mut Peer,
    me: &str,
    friend: &str,
    label: &str,
) -> Value {
    let friend_phone = emu.phone(friend).unwrap();
    let me_jid = format!("{me}@s.whatsapp.net");
    let text_in = format!("{label}: from the phone");
    let id = friend_phone.send_text(&me_jid.parse().unwrap(), &text_in).unwrap();
    let got = peer.expect_message(&id).await;
    assert_eq!(got["text"], text_in.as_str(), "{got}");

    let text_out = format!("{label}: from the peer");
    // Reply in the chat the peer got the text in: the friend's LID on a LID-migrated account
    // (a phone-number send would be refused with 463; see the README's third-party notes).
    let chat = got["from"].as_str().map_or_else(|| format!("{friend}@s.whatsapp.net"), str::to_owned);
    assert!(names_account(emu, friend, &chat), "{got}");
    let sent = peer.send_text(&chat, &text_out).await;
    let read = friend_phone
        .wait_message(T, |m| m.id == sent)
        .await
        .unwrap_or_else(|| panic!("{friend}'s phone never got {sent}; inbox {:#?}", friend_phone.inbox()));
    assert_eq!((read.text.as_deref(), read.error.as_deref()), (Some(text_out.as_str()), None), "{read:?}");
    assert!(names_account(emu, me, &read.chat), "{friend}'s phone files it under {}, not {me}", read.chat);
    expect_own_copy(emu, me, &sent, &text_out).await;
    got
}

/// Whether `jid` (any device) is the account of phone number `pn`, by number or by LID: which of
/// the two a 1:1 chat uses depends on the account's LID migration, not on the scenario.
pub fn names_account(emu: &EmulatorHandle, pn: &str, jid: &str) -> bool {
    let (user, server) = jid.split_once('@').unwrap_or((jid, ""));
    let user = user.split(':').next().unwrap_or(user);
    match server {
        "s.whatsapp.net" => user == pn,
        "lid" => emu.phone(pn).is_ok_and(|p| p.lid().user() == user),
        _ => false,
    }
}

/// `me`'s own phone (device 0) received and decrypted the copy of message `id` that its
/// companion sent it.
pub async fn expect_own_copy(emu: &EmulatorHandle, me: &str, id: &str, text: &str) {
    let own = emu.phone(me).unwrap();
    let copy = own.wait_message(T, |m| m.id == id).await.unwrap_or_else(|| {
        panic!("{me}'s own phone never got the sent copy of {id}; inbox {:#?}", own.inbox())
    });
    assert_eq!((copy.text.as_deref(), copy.error.as_deref()), (Some(text), None), "own copy {copy:?}");
}

/// In `group`, the phone of `from` sends a text the peer receives, then the peer sends one
/// that every phone in `members` decrypts (`me`'s own phone included). Returns the peer's event
/// for the received text.
pub async fn group_both_ways(
    emu: &EmulatorHandle,
    peer: &mut Peer,
    group: &wa_binary::Jid,
    from: &str,
    members: &[&str],
    label: &str,
) -> Value {
    let text_in = format!("{label}: from {from}'s phone");
    let id = emu.phone(from).unwrap().send_text(group, &text_in).unwrap();
    let got = peer.expect_message(&id).await;
    assert_eq!(got["text"], text_in.as_str(), "{got}");

    let text_out = format!("{label}: from the peer");
    let sent = peer.send_text(&group.to_string(), &text_out).await;
    for pn in members {
        let p = emu.phone(pn).unwrap();
        let read = p
            .wait_message(T, |m| m.id == sent)
            .await
            .unwrap_or_else(|| panic!("{pn}'s phone never got group message {sent}; inbox {:#?}", p.inbox()));
        assert_eq!(
            (read.text.as_deref(), read.error.as_deref()),
            (Some(text_out.as_str()), None),
            "{pn}: {read:?}"
        );
        assert_eq!(read.chat, group.to_string());
    }
    got
}
