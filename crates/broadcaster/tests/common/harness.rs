//! A broadcaster server in-process (emulator mode, temporary data directory, loopback port) and a
//! small HTTP client, for tests that drive the public API.

// Shared by several test binaries; each uses a part.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use broadcaster::auth::Bootstrap;
use broadcaster::config::{Cli, Config};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use tokio::sync::oneshot;
use wa_emulator::{Emulator, EmulatorConfig, EmulatorHandle};

/// Generous: CI runs on two loaded cores.
pub const T: Duration = Duration::from_secs(60);

pub struct Running {
    pub addr: SocketAddr,
    /// The bootstrap admin key.
    pub admin: String,
    pub emu: Arc<EmulatorHandle>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Running {
    pub async fn start(seed: u64) -> Self {
        Self::start_with(seed, |_| {}).await
    }

    /// [`Running::start`] with `configure` applied to the configuration last.
    pub async fn start_with(seed: u64, configure: impl FnOnce(&mut Config)) -> Self {
        let emu = Arc::new(
            Emulator::start(EmulatorConfig { seed: Some(seed), ..Default::default() }).await.unwrap(),
        );
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::resolve(Cli::default()).unwrap();
        config.data_dir = dir.path().to_owned();
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.emulator = true;
        config.shutdown_timeout = Duration::from_secs(20);
        // The tests' webhook receivers and media servers listen on loopback.
        config.outbound.test_loopback = broadcaster::outbound::TestLoopback::AnyPort;
        // Fuzzers and event tests send bursts; the limiter has its own tests.
        config.rate_limit_per_minute = 0;
        configure(&mut config);
        let (db, boot) = broadcaster::open_database(&config, None).await.unwrap();
        let Bootstrap::Generated(admin) = boot else { panic!("a fresh database generates the admin key") };
        let server = broadcaster::build_server_with(&config, db, Some(emu.clone())).await.unwrap();
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
        Self { addr, admin, emu, stop: Some(tx), task, _dir: dir }
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(T, &mut self.task).await.expect("server stopped").unwrap();
    }

    /// A new tenant; returns its manager key.
    pub async fn tenant(&self, name: &str) -> String {
        let (s, v) = call(
            self.addr,
            "POST",
            "/api/v1/tenants",
            &self.admin,
            Some(serde_json::json!({ "name": name })),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        v["api_key"]["key"].as_str().unwrap().to_owned()
    }
}

pub async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("authorization", format!("Bearer {key}"));
    let body = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Full::new(Bytes::from(b.to_string()))
        }
        None => Full::new(Bytes::new()),
    };
    let resp = tokio::time::timeout(T, client.request(req.body(body).unwrap())).await.unwrap().unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v =
        if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
    (status, v)
}

/// The boundary of [`form`] bodies.
pub const FORM_BOUNDARY: &str = "broadcaster-test-boundary";

/// The `Content-Type` of a [`form`] body.
pub fn form_type() -> String {
    format!("multipart/form-data; boundary={FORM_BOUNDARY}")
}

/// A multipart/form-data body: text fields, then an optional file part (name, type, bytes).
pub fn form(fields: &[(&str, &str)], file: Option<(&str, &str, &[u8])>) -> Vec<u8> {
    let mut b = Vec::new();
    for (k, v) in fields {
        b.extend_from_slice(
            format!("--{FORM_BOUNDARY}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    if let Some((name, ctype, data)) = file {
        b.extend_from_slice(
            format!(
                "--{FORM_BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: {ctype}\r\n\r\n"
            )
            .as_bytes(),
        );
        b.extend_from_slice(data);
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(format!("--{FORM_BOUNDARY}--\r\n").as_bytes());
    b
}
