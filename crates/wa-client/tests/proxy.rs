//! The chat socket and media transfers go through an HTTP CONNECT proxy; a refusing proxy
//! makes the connection fail with a clear reason instead of bypassing it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use common::{emulator, next_matching, pair, sqlite_builder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wa_client::{Event, MediaOptions, MediaType};

/// A minimal CONNECT proxy on loopback that records the targets it tunnelled to and the
/// `Proxy-Authorization` it saw. With `refuse`, it answers 403 to everything.
async fn start_proxy(refuse: bool) -> (String, Arc<Mutex<Vec<(String, Option<String>)>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    let Ok(b) = client.read_u8().await else { return };
                    head.push(b);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let target = head.split_whitespace().nth(1).unwrap_or_default().to_owned();
                let auth =
                    head.lines().find_map(|l| l.strip_prefix("Proxy-Authorization: ")).map(str::to_owned);
                log.lock().unwrap().push((target.clone(), auth));
                if refuse || !head.starts_with("CONNECT ") {
                    let _ = client.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n").await;
                    return;
                }
                let Ok(mut upstream) = TcpStream::connect(&target).await else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                if client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
    (format!("http://user:secret@{addr}"), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_and_media_go_through_the_proxy() {
    let emu = emulator(81).await;
    emu.create_account("15550008101", "Me").unwrap();
    emu.create_account("15550008102", "Bob").unwrap();
    let (proxy_url, seen) = start_proxy(false).await;
    let dir = tempfile::tempdir().unwrap();
    let client = sqlite_builder(&emu, &dir.path().join("wa.db"), 811).await.proxy(proxy_url).build().unwrap();
    let mut events = client.events();
    let me = pair(&emu, &client, &mut events, "15550008101").await;
    let bob = emu.phone("15550008102").unwrap();

    let sent = client.send_text(&bob.jid(), "via proxy").await.unwrap();
    assert!(bob.wait_message(common::T, |m| m.id == sent.id).await.is_some());
    let photo = vec![7u8; 5000];
    let id = bob.send_image(&me.to_non_ad(), &photo, "image/png", None).unwrap();
    let m = next_matching(&mut events, "bob's image", |e| match e {
        Event::Message(m) if m.info.id == id => Some(m.clone()),
        _ => None,
    })
    .await;
    let tunnels_before = seen.lock().unwrap().len();
    assert_eq!(client.download(&m.message).await.unwrap(), photo);
    client
        .send_media(&bob.jid(), MediaType::Sticker, &photo, &MediaOptions::new("image/webp"))
        .await
        .unwrap();

    let seen = seen.lock().unwrap().clone();
    let chat_addr = emu.local_addr().to_string();
    let media_addr = emu.media_url().unwrap().trim_start_matches("https://").to_owned();
    // Registration socket + logged-in socket, then one tunnel per media request.
    assert!(seen.len() >= tunnels_before + 2, "{seen:?}");
    assert!(seen.iter().filter(|(t, _)| *t == chat_addr).count() >= 2, "{seen:?}");
    assert!(seen.iter().filter(|(t, _)| *t == media_addr).count() >= 2, "{seen:?}");
    for (target, auth) in &seen {
        assert!(*target == chat_addr || *target == media_addr, "{target}");
        assert_eq!(auth.as_deref(), Some("Basic dXNlcjpzZWNyZXQ="));
    }
    client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_proxy_is_reported_not_bypassed() {
    let emu = emulator(82).await;
    let (proxy_url, seen) = start_proxy(true).await;
    let dir = tempfile::tempdir().unwrap();
    let client = sqlite_builder(&emu, &dir.path().join("wa.db"), 821).await.proxy(proxy_url).build().unwrap();
    let mut events = client.events();
    client.connect().await.unwrap();
    let reason = next_matching(&mut events, "a disconnect", |e| match e {
        Event::Qr(_) => panic!("connected around the proxy"),
        Event::Disconnected { reason, .. } => Some(format!("{reason:?}")),
        _ => None,
    })
    .await;
    assert!(reason.contains("403"), "{reason}");
    assert!(!seen.lock().unwrap().is_empty());
    client.disconnect().await;

    assert!(
        wa_client::Client::builder()
            .store(
                wa_store::Store::memory(Default::default())
                    .await
                    .unwrap()
                    .device(&wa_store::DeviceId::new("x").unwrap())
            )
            .proxy("socks5://nope:1")
            .build()
            .is_err()
    );
}
