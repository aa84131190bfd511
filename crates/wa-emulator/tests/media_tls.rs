//! The HTTPS media endpoint: its certificate verifies against the emulator's test CA (for
//! the IP address in `media_conn`), serves what the phones stored, takes uploads with the
//! `media_conn` auth token, and is refused by a client that does not trust the CA.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use wa_emulator::{Emulator, EmulatorConfig};

const T: Duration = Duration::from_secs(60);

fn connector(trust: Option<&str>) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(pem) = trust {
        roots.add(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()).unwrap();
    }
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// One HTTP/1.1 request over TLS; returns (status, body).
async fn https(
    connector: &TlsConnector,
    base: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let host = base.trim_start_matches("https://");
    let ip: std::net::SocketAddr = host.parse().unwrap();
    let tcp = TcpStream::connect(ip).await?;
    let mut tls = connector.connect(ServerName::IpAddress(ip.ip().into()), tcp).await?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await?;
    tls.write_all(body).await?;
    let mut resp = Vec::new();
    tls.read_to_end(&mut resp).await?;
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n").expect("response head");
    let head = String::from_utf8_lossy(&resp[..split]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut body = resp[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Ok((status, body))
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_over_https_with_the_test_ca() {
    let emu = Emulator::start(EmulatorConfig { seed: Some(3), ..Default::default() }).await.unwrap();
    emu.create_account("15551234567", "A").unwrap();
    let b = emu.create_account("15557654321", "B").unwrap();
    let base = emu.media_url().expect("TLS media by default").to_owned();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let ca = emu.media_ca_pem().unwrap().to_owned();

    // A phone's image: the message URL points at the HTTPS endpoint and the blob is served there.
    let id =
        b.send_image(&"15551234567@s.whatsapp.net".parse().unwrap(), b"not really a png", "image/png", None);
    id.unwrap();
    let phone_a = emu.phone("15551234567").unwrap();
    let got = phone_a.wait_message(T, |m| m.kind == "image").await.expect("phone A gets the image");
    let msg = <wa_proto::Message as prost::Message>::decode(got.message.as_slice()).unwrap();
    let img = msg.image_message.unwrap();
    assert!(img.url.as_deref().unwrap().starts_with(&base), "{:?}", img.url);
    let path = img.direct_path.clone().unwrap();

    let trusted = connector(Some(&ca));
    let (status, blob) =
        tokio::time::timeout(T, https(&trusted, &base, "GET", &path, b"")).await.unwrap().unwrap();
    assert_eq!(status, 200);
    let stored = emu.with_world(|w| w.media_blob(&path).map(<[u8]>::to_vec)).unwrap();
    assert_eq!(blob, stored);
    assert_eq!(emu.with_world(|w| w.fetch_image(&img)).unwrap(), b"not really a png");

    // Uploads need the media_conn auth token.
    let auth = emu.with_world(|w| w.media_auth().to_owned());
    let (status, _) = tokio::time::timeout(T, https(&trusted, &base, "POST", "/mms/image/tok1", b"blob"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 401);
    let (status, body) = tokio::time::timeout(
        T,
        https(&trusted, &base, "POST", &format!("/mms/image/tok1?auth={auth}"), b"blob"),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["direct_path"], "/m/image/tok1.enc");
    assert_eq!(v["url"], format!("{base}/m/image/tok1.enc"));

    // A client that does not trust the test CA refuses the certificate.
    let untrusted = connector(None);
    let err =
        tokio::time::timeout(T, https(&untrusted, &base, "GET", &path, b"")).await.unwrap().unwrap_err();
    assert!(err.to_string().contains("UnknownIssuer") || err.to_string().contains("certificate"), "{err}");
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_media_when_tls_is_off() {
    let emu = Emulator::start(EmulatorConfig { media_tls: false, ..Default::default() }).await.unwrap();
    assert!(emu.media_url().is_none() && emu.media_ca_pem().is_none());
    let base = emu.with_world(|w| w.media_base().to_owned());
    assert_eq!(base, format!("http://{}", emu.local_addr()));
    emu.shutdown().await;
}
