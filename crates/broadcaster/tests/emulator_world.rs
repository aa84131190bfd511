//! `--emulator` keeps its world in the data directory: an account linked through the in-process
//! emulator's simulated phone is still linked after the server restarts on the same data
//! directory, and sends and receives through the emulator; a saved world that cannot be used
//! stops the start with a clear error and is left as it was.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/harness.rs"]
mod harness;
#[path = "common/ws.rs"]
mod ws;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use ws::{Ws, next_ws};

use broadcaster::auth::Bootstrap;
use broadcaster::config::{Cli, Config};
use serde_json::json;
use tokio::sync::oneshot;
use wa_emulator::EmulatorHandle;

use harness::{T, call};

struct Running {
    addr: SocketAddr,
    emu: Arc<EmulatorHandle>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        // The test's handle on the emulator goes first, so the server shuts its emulator down.
        drop(self.emu);
        let _ = self.stop.send(());
        tokio::time::timeout(T, self.task).await.expect("server stopped").unwrap();
    }
}

fn config(dir: &Path) -> Config {
    let mut c = Config::resolve(Cli::default()).unwrap();
    c.data_dir = dir.to_owned();
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.emulator = true;
    c.shutdown_timeout = Duration::from_secs(20);
    c.rate_limit_per_minute = 0;
    c
}

/// Serves with the in-process emulator of `--emulator` (what `build_server` starts from the data
/// directory); returns the generated admin key on the first start.
async fn start(dir: &Path) -> Result<(Running, Option<String>), broadcaster::ServeError> {
    let config = config(dir);
    let (db, boot) = broadcaster::open_database(&config, None).await?;
    let server = broadcaster::build_server(&config, db).await?;
    let emu = server.state.emulator.clone().expect("--emulator runs one in-process");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        broadcaster::serve_with(&config, server, listener, async move {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    let key = match boot {
        Bootstrap::Generated(k) => Some(k),
        _ => None,
    };
    Ok((Running { addr, emu, stop, task }, key))
}

/// A WebSocket on the live events, once the account is active (never asked to pair again).
async fn wait_active(a: SocketAddr, key: &str, acc: &str) -> Ws {
    let url = format!("ws://{a}/api/v1/events/ws?api_key={key}");
    let (mut ws, _) = tokio::time::timeout(T, tokio_tungstenite::connect_async(url)).await.unwrap().unwrap();
    next_ws(&mut ws, "ready", |v| v["event"] == "ready").await;
    let (_, v) = call(a, "GET", &format!("/api/v1/accounts/{acc}"), key, None).await;
    if v["state"] != "active" {
        next_ws(&mut ws, "active", |v| {
            assert_ne!(v["event"], "qr_code", "asked to pair again");
            assert_ne!(v["data"]["state"], "logged_out", "logged out: {v}");
            v["event"] == "connection_update"
                && v["data"]["account_id"] == acc
                && v["data"]["state"] == "active"
        })
        .await;
    }
    ws
}

/// The account sends `text` to Bob through the API and Bob's simulated phone receives it; Bob
/// answers and the answer reaches the account.
async fn exchange(srv: &Running, key: &str, acc: &str, ws: &mut Ws, text: &str) {
    let a = srv.addr;
    let (s, v) = call(
        a,
        "POST",
        &format!("/api/v1/accounts/{acc}/messages"),
        key,
        Some(json!({ "to": "+15550002222", "text": text })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let wa_id = v["wa_message_id"].as_str().unwrap().to_owned();
    let bob = srv.emu.phone("15550002222").unwrap();
    let got = bob.wait_message(T, |m| m.id == wa_id).await.expect("Bob received the message");
    assert_eq!(got.text.as_deref(), Some(text));
    let (s, v) = call(
        a,
        "POST",
        "/api/v1/emulator/phones/+15550002222/send",
        key,
        Some(json!({ "to": "+15550001111", "text": format!("re: {text}") })),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let reply = v["wa_message_id"].as_str().unwrap().to_owned();
    let ev = next_ws(ws, "Bob's answer", |v| {
        v["event"] == "incoming_message" && v["data"]["wa_message_id"] == reply.as_str()
    })
    .await;
    assert_eq!(ev["data"]["body"], format!("re: {text}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_linked_through_the_emulator_is_still_linked_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, admin) = start(dir.path()).await.unwrap();
    let admin = admin.expect("a generated admin key");
    let a = srv.addr;
    let (s, v) = call(a, "POST", "/api/v1/tenants", &admin, Some(json!({ "name": "shop" }))).await;
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
    let mut ws = wait_active(a, &key, &acc).await;
    let (s, v) = call(
        a,
        "POST",
        "/api/v1/emulator/phones",
        &key,
        Some(json!({ "phone": "+15550002222", "push_name": "Bob" })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    exchange(&srv, &key, &acc, &mut ws, "before the restart").await;
    let companions = srv.emu.companions("15550001111").unwrap();
    drop(ws);
    srv.stop().await;
    let file = broadcaster::emulator_world::world_file(dir.path());
    assert!(file.exists(), "the world is saved in the data directory");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(file.parent().unwrap()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "the phones' keys are the owner's only");
    }

    // Same data directory: the emulator finds its devices, the account logs in without pairing.
    let (srv, _) = start(dir.path()).await.unwrap();
    assert_eq!(srv.emu.companions("15550001111").unwrap(), companions, "the linked device is still there");
    let mut ws = wait_active(srv.addr, &key, &acc).await;
    exchange(&srv, &key, &acc, &mut ws, "after the restart").await;
    let (_, v) = call(srv.addr, "GET", &format!("/api/v1/accounts/{acc}"), &key, None).await;
    assert_eq!(v["state"], "active", "{v}");
    drop(ws);
    srv.stop().await;

    // A world file that cannot be used stops the start with a clear error, and stays as it was.
    let mut broken = std::fs::read(&file).unwrap();
    broken.truncate(broken.len() / 2);
    std::fs::write(&file, &broken).unwrap();
    let err = match start(dir.path()).await {
        Ok(_) => panic!("started on a broken emulator world"),
        Err(e) => e,
    };
    assert!(matches!(err, broadcaster::ServeError::EmulatorState { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("world.json") && text.contains("move the file away"), "{text}");
    assert_eq!(std::fs::read(&file).unwrap(), broken, "the broken file is kept for the operator");
}
