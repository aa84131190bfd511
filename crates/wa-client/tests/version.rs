//! The WhatsApp Web version against an emulator whose floor is above the version wa-noise
//! ships (as WhatsApp retires versions): the current one is fetched from a `sw.js` served on
//! 127.0.0.1 by the test (no network), a 405 triggers one refresh and a reconnect, the fetched
//! version survives a restart in the store for 24 hours, and without a working fetch the
//! client stops with `ClientOutdated` naming the refused version.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{emulator, next_matching, pair, sqlite_builder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wa_client::{DisconnectReason, Event, EventStream, VersionFetcher};
use wa_noise::payload::DEFAULT_APP_VERSION;

const PN: &str = "15550003101";

/// A version `n` releases newer than the one wa-noise ships.
fn newer(n: u32) -> [u32; 3] {
    [2, 3000, DEFAULT_APP_VERSION[2] + n]
}

/// What the `sw.js` server answers: status and body, changeable while it runs.
struct SwJs {
    url: String,
    answer: Arc<std::sync::Mutex<(u16, String)>>,
    hits: Arc<AtomicUsize>,
}

/// The shape of WhatsApp's real `sw.js`: JSON inside a JS string literal.
fn sw_js_body(v: [u32; 3]) -> String {
    format!(
        "__DEV__=0;self.__swData=JSON.parse(\"{{\\\"SiteData\\\":{{\\\"server_revision\\\":{r},\\\"client_revision\\\":{r},\\\"push_phase\\\":\\\"C3\\\"}}}}\");importScripts(\"https:\\/\\/static.whatsapp.net\\/x.js\");",
        r = v[2]
    )
}

impl SwJs {
    async fn start(v: [u32; 3]) -> SwJs {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/sw.js", listener.local_addr().unwrap());
        let answer = Arc::new(std::sync::Mutex::new((200u16, sw_js_body(v))));
        let hits = Arc::new(AtomicUsize::new(0));
        let (a, h) = (answer.clone(), hits.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let (a, h) = (a.clone(), h.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut b = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut b).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&b[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).to_string();
                    assert!(head.starts_with("GET /sw.js HTTP/1.1\r\n"), "{head}");
                    // The headers Baileys and whatsapp-rust send.
                    assert!(head.to_ascii_lowercase().contains("sec-fetch-site: none"), "{head}");
                    h.fetch_add(1, Ordering::SeqCst);
                    let (status, body) = a.lock().unwrap().clone();
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: text/javascript\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        SwJs { url, answer, hits }
    }

    fn serve(&self, status: u16, body: String) {
        *self.answer.lock().unwrap() = (status, body);
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn outdated(events: &mut EventStream) -> ([u32; 3], Option<std::time::Duration>) {
    next_matching(events, "ClientOutdated", |e| match e {
        Event::Disconnected {
            reason: DisconnectReason::ClientOutdated { version: Some(v) },
            reconnect_in,
        } => Some((*v, *reconnect_in)),
        Event::Connected { .. } => panic!("logged in with an outdated version"),
        _ => None,
    })
    .await
}

/// Built-in version below the floor, current one from sw.js: pairs and logs in with the
/// fetched one. Then WhatsApp retires that too: the cached version gets 405, the client fetches
/// again, reconnects once and logs in with the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_current_version_is_fetched_and_a_405_refreshes_it_once() {
    let emu = emulator(41).await;
    emu.set_min_client_version(newer(10));
    emu.create_account(PN, "Me").unwrap();
    let sw = SwJs::start(newer(10)).await;
    let db = tempfile::tempdir().unwrap();
    let fetcher = VersionFetcher::with_url(sw.url.clone()).unwrap();
    let client = sqlite_builder(&emu, &db.path().join("wa.db"), 41)
        .await
        .fetch_version(fetcher.clone())
        .build()
        .unwrap();
    assert_eq!(client.version(), DEFAULT_APP_VERSION, "before connecting: the built-in one");
    let mut events = client.events();
    pair(&emu, &client, &mut events, PN).await;
    assert_eq!(client.version(), newer(10));
    assert_eq!(sw.hits(), 1, "fetched once for registration and the login after 515");
    assert_eq!(fetcher.cached().map(|c| c.version), Some(newer(10)));

    emu.set_min_client_version(newer(20));
    sw.serve(200, sw_js_body(newer(20)));
    // The server drops the connection; the reconnect reports the cached version and is refused.
    emu.fault_close(emu.connection_of(PN, 1).unwrap()).unwrap();
    let (refused, again) = outdated(&mut events).await;
    assert_eq!(
        (refused, again),
        (newer(10), Some(std::time::Duration::ZERO)),
        "refresh and reconnect at once"
    );
    next_matching(&mut events, "logged in again", |e| matches!(e, Event::Connected { .. }).then_some(()))
        .await;
    assert_eq!(client.version(), newer(20));
    assert_eq!(sw.hits(), 2);
    client.disconnect().await;
}

/// Without fetching, a version below the floor stops the client with `ClientOutdated` (no
/// reconnect loop); with fetching that keeps failing (HTTP error, or sw.js naming the refused
/// version again), likewise after the one refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_working_fetch_an_outdated_version_stops_the_client() {
    let emu = emulator(42).await;
    emu.set_min_client_version(newer(1));
    emu.create_account(PN, "Me").unwrap();
    let db = tempfile::tempdir().unwrap();

    // Fetch off: the built-in version is refused at registration; the client stops.
    let client = sqlite_builder(&emu, &db.path().join("a.db"), 42).await.build().unwrap();
    let mut events = client.events();
    client.connect().await.unwrap();
    assert_eq!(outdated(&mut events).await, (DEFAULT_APP_VERSION, None));
    // The lifecycle has ended (`connect` would be a no-op while it runs): connecting again
    // makes exactly one more attempt, refused the same way.
    client.connect().await.unwrap();
    assert_eq!(outdated(&mut events).await, (DEFAULT_APP_VERSION, None));
    let refusals = emu
        .events()
        .iter()
        .filter(|e| matches!(e, wa_emulator::WorldEvent::PayloadRefused { reason: 405, .. }))
        .count();
    assert_eq!(refusals, 2, "one attempt per connect, no reconnect loop");
    client.disconnect().await;

    // sw.js answers 503: the built-in version is used, refused, the refresh fails: stop.
    let sw = SwJs::start(newer(1)).await;
    sw.serve(503, "unavailable".into());
    let client = sqlite_builder(&emu, &db.path().join("b.db"), 43)
        .await
        .fetch_version(VersionFetcher::with_url(sw.url.clone()).unwrap())
        .build()
        .unwrap();
    let mut events = client.events();
    client.connect().await.unwrap();
    assert_eq!(outdated(&mut events).await, (DEFAULT_APP_VERSION, None));
    assert_eq!(sw.hits(), 1, "a failed fetch is not retried at once");
    client.disconnect().await;

    // sw.js names the version the server refuses: one refresh, then stop.
    let sw = SwJs::start(DEFAULT_APP_VERSION).await;
    let client = sqlite_builder(&emu, &db.path().join("c.db"), 44)
        .await
        .fetch_version(VersionFetcher::with_url(sw.url.clone()).unwrap())
        .build()
        .unwrap();
    let mut events = client.events();
    client.connect().await.unwrap();
    assert_eq!(outdated(&mut events).await, (DEFAULT_APP_VERSION, None));
    assert_eq!(sw.hits(), 2, "the start and the one refresh");
    client.disconnect().await;

    // A sw.js without client_revision counts as a failed fetch.
    let sw = SwJs::start(newer(1)).await;
    sw.serve(200, "self.__swData={}".into());
    let client = sqlite_builder(&emu, &db.path().join("d.db"), 45)
        .await
        .fetch_version(VersionFetcher::with_url(sw.url.clone()).unwrap())
        .build()
        .unwrap();
    let mut events = client.events();
    client.connect().await.unwrap();
    assert_eq!(outdated(&mut events).await, (DEFAULT_APP_VERSION, None));
    client.disconnect().await;
}

/// The fetched version is kept in the device's store: a restarted client (new process, new
/// fetcher) within 24 hours reports it without fetching; after 24 hours it fetches again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_keeps_the_fetched_version_for_a_day_across_restarts() {
    let emu = emulator(43).await;
    emu.set_min_client_version(newer(5));
    emu.create_account(PN, "Me").unwrap();
    let sw = SwJs::start(newer(5)).await;
    let db = tempfile::tempdir().unwrap();
    let path = db.path().join("wa.db");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let clock = Arc::new(wa_store::ManualClock::new(now));

    let first = sqlite_builder(&emu, &path, 51)
        .await
        .clock(clock.clone())
        .fetch_version(VersionFetcher::with_url(sw.url.clone()).unwrap())
        .build()
        .unwrap();
    let mut events = first.events();
    pair(&emu, &first, &mut events, PN).await;
    first.disconnect().await;
    drop(first);
    assert_eq!(sw.hits(), 1);

    // A restart an hour later: the stored version, no fetch, logged in.
    clock.advance(3600);
    sw.serve(200, sw_js_body(newer(6)));
    let restarted = sqlite_builder(&emu, &path, 52)
        .await
        .clock(clock.clone())
        .fetch_version(VersionFetcher::with_url(sw.url.clone()).unwrap())
        .build()
        .unwrap();
    let mut events = restarted.events();
    restarted.connect().await.unwrap();
    next_matching(&mut events, "login from the store", |e| {
        matches!(e, Event::Connected { .. }).then_some(())
    })
    .await;
    assert_eq!(restarted.version(), newer(5));
    assert_eq!(sw.hits(), 1, "no second fetch within 24 h");
    restarted.disconnect().await;
    drop(restarted);

    // A day later the cache is stale: fetched again.
    clock.advance(24 * 3600);
    let later = sqlite_builder(&emu, &path, 53)
        .await
        .clock(clock.clone())
        .fetch_version(VersionFetcher::with_url(sw.url.clone()).unwrap())
        .build()
        .unwrap();
    let mut events = later.events();
    later.connect().await.unwrap();
    next_matching(&mut events, "login", |e| matches!(e, Event::Connected { .. }).then_some(())).await;
    assert_eq!(later.version(), newer(6));
    assert_eq!(sw.hits(), 2);
    later.disconnect().await;
}
