//! Helpers shared by the end-to-end tests against wa-emulator.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use rand::SeedableRng;
use wa_client::{Client, ClientBuilder, Event, EventStream, Jid};
use wa_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use wa_store::{DeviceId, Store};

/// Generous: CI runs on two loaded cores.
pub const T: Duration = Duration::from_secs(60);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("WA_LOG"))
        .with_test_writer()
        .try_init();
}

pub async fn emulator(seed: u64) -> EmulatorHandle {
    init_tracing();
    Emulator::start(EmulatorConfig { seed: Some(seed), ..Default::default() }).await.unwrap()
}

/// A builder on a SQLite store at `path`, pointed at the emulator.
pub async fn sqlite_builder(emu: &EmulatorHandle, path: &Path, seed: u64) -> ClientBuilder {
    let store = Store::open_sqlite(path, Default::default()).await.unwrap();
    let builder = match emu.media_ca_pem() {
        Some(pem) => Client::builder().media_root_certificate(pem),
        None => Client::builder().media_over_http(true),
    };
    builder
        .store(store.device(&DeviceId::new("acct").unwrap()))
        .url(emu.ws_url())
        .root_key(emu.root_public_key())
        .push_name("wa-client test")
        .rng(Box::new(rand::rngs::StdRng::seed_from_u64(seed)))
        .reconnect(true, Duration::from_millis(50), Duration::from_millis(500))
}

pub async fn sqlite_client(emu: &EmulatorHandle, path: &Path, seed: u64) -> Client {
    sqlite_builder(emu, path, seed).await.build().unwrap()
}

pub async fn next_matching<R>(
    events: &mut EventStream,
    what: &str,
    mut f: impl FnMut(&Event) -> Option<R>,
) -> R {
    tokio::time::timeout(T, async {
        loop {
            let e = events.recv().await.expect("event stream ended");
            if let Some(r) = f(&e) {
                return r;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Pairs a client by QR through the account's phone; returns our JID once logged in.
pub async fn pair(emu: &EmulatorHandle, client: &Client, events: &mut EventStream, pn: &str) -> Jid {
    client.connect().await.unwrap();
    let qr = next_matching(events, "a QR code", |e| match e {
        Event::Qr(q) => Some(q.clone()),
        _ => None,
    })
    .await;
    emu.phone(pn).unwrap().scan(&qr.text).unwrap();
    let jid = next_matching(events, "pair success", |e| match e {
        Event::PairSuccess { jid, .. } => Some(jid.clone()),
        Event::PairError { error } => panic!("pair error {error}"),
        _ => None,
    })
    .await;
    next_matching(events, "connected after 515", |e| matches!(e, Event::Connected { .. }).then_some(()))
        .await;
    jid
}

/// A GET of a media URL with its own TLS stack (independent of wa-client's HTTP code),
/// trusting the emulator's test CA; returns status and body.
pub async fn http_get(emu: &EmulatorHandle, url: &str) -> (u16, Vec<u8>) {
    use rustls::pki_types::pem::PemObject as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("https://").expect("media over https");
    let (authority, path) = rest.split_at(rest.find('/').unwrap());
    let mut roots = rustls::RootCertStore::empty();
    let pem = emu.media_ca_pem().unwrap();
    roots.add(rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(authority).await.unwrap();
    let host = authority.rsplit_once(':').unwrap().0.to_owned();
    let name = rustls::pki_types::ServerName::try_from(host).unwrap();
    let mut s =
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(name, tcp).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    // A peer closing without close_notify is fine here: the body length is checked below.
    let _ = s.read_to_end(&mut raw).await;
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
    assert!(!head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "{head}");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = raw[head_end + 4..].to_vec();
    if let Some(len) =
        head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(str::to_owned))
    {
        assert_eq!(body.len(), len.trim().parse::<usize>().unwrap(), "truncated body");
    }
    (status, body)
}
