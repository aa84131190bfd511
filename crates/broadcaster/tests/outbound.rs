//! The outbound HTTP client through the API: webhooks and media URLs over HTTP and HTTPS (a local
//! receiver whose certificate a test CA signs), and the SSRF policy — loopback, private ranges,
//! the metadata address, names resolving to loopback and redirects to any of them are refused,
//! at registration and again when connecting.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/testdb.rs"]
mod testdb;
#[path = "common/tls.rs"]
mod tls;

const TEST_ON_POSTGRES: bool = false;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use broadcaster::auth::{Bootstrap, bootstrap_admin};
use broadcaster::clock::{Clock, ManualClock, SharedClock};
use broadcaster::db::{Db, params};
use broadcaster::outbound::{OutboundClient, OutboundConfig, TestLoopback};
use broadcaster::state::AppState;
use broadcaster::webhooks::{RetryPolicy, WebhookWorker};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tower::ServiceExt;

use tls::{TestCa, serve_http};

struct Harness {
    app: Router,
    state: AppState,
    db: Db,
    clock: Arc<ManualClock>,
    admin: String,
}

async fn harness(outbound: OutboundConfig) -> Harness {
    let db = testdb::open().await;
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let now = clock.now_ms();
    let admin = match db.call(move |c| bootstrap_admin(c, None, now)).await.unwrap() {
        Bootstrap::Generated(k) => k,
        other => panic!("expected a generated key, got {other:?}"),
    };
    let shared: SharedClock = clock.clone();
    let mut state = AppState::new(db.clone(), shared, None, Arc::new(Notify::new()));
    state.outbound = OutboundClient::new(&outbound).unwrap();
    Harness { app: broadcaster::app::router(state.clone(), 64 * 1024), state, db, clock, admin }
}

impl Harness {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {}", self.admin))
            .header("content-type", "application/json");
        let req = req.body(body.map_or_else(Body::empty, |b| Body::from(b.to_string()))).unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        (status, v)
    }

    async fn register_webhook(&self, url: &str) -> (StatusCode, Value) {
        self.call("POST", "/api/v1/webhooks", Some(json!({ "url": url, "events": ["connection_update"] })))
            .await
    }

    /// Saves a template whose image is fetched from `url` at save time.
    async fn media_by_url(&self, url: &str) -> (StatusCode, Value) {
        let name = format!("t{}", rand::random::<u32>());
        self.call(
            "POST",
            "/api/v1/templates",
            Some(json!({ "name": name, "body": "hello", "media": { "kind": "image", "url": url } })),
        )
        .await
    }

    /// An account, and one `connection_update` event for every webhook.
    async fn emit_event(&self) {
        let (s, v) = self.call("POST", "/api/v1/accounts", Some(json!({ "name": "a" }))).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let acc = v["id"].as_str().unwrap().to_owned();
        let now = self.clock.now_ms();
        self.db
            .call(move |c| {
                let tenant: String =
                    c.query_row("SELECT tenant_id FROM accounts WHERE id = ?1", [&acc], |r| r.get(0))?;
                Ok(broadcaster::accounts::transition(
                    c,
                    &tenant,
                    &acc,
                    broadcaster::account_state::AccountState::Connecting,
                    None,
                    now,
                ))
            })
            .await
            .unwrap()
            .unwrap();
    }

    fn worker(&self, client: OutboundClient) -> WebhookWorker {
        let policy = RetryPolicy {
            max_attempts: 3,
            base_delay_ms: 1_000,
            max_delay_ms: 10_000,
            request_timeout: Duration::from_secs(20),
        };
        WebhookWorker::new(
            self.db.clone(),
            self.clock.clone(),
            policy,
            Arc::new(Notify::new()),
            client,
            self.state.secrets.clone(),
        )
    }

    /// Every delivery of the webhook `id`.
    async fn deliveries(&self, id: &str) -> Vec<Value> {
        let (s, v) = self.call("GET", &format!("/api/v1/webhooks/{id}/deliveries"), None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v.as_array().unwrap().clone()
    }

    /// A webhook row written directly, as if registered when its host resolved elsewhere (DNS
    /// rebinding): only the connect-time check stands between it and the target.
    async fn insert_webhook(&self, url: &str) -> String {
        let (id, url) = (format!("whk_direct_{}", rand::random::<u32>()), url.to_owned());
        let i = id.clone();
        let now = self.clock.now_ms();
        let secret =
            self.state.secrets.seal(broadcaster::secrets::SecretColumn::WebhookSecret, &id, "whsec_x");
        self.db
            .call(move |c| {
                let tenant: String =
                    c.query_row("SELECT tenant_id FROM api_keys LIMIT 1", [], |r| r.get(0))?;
                c.execute(
                    "INSERT INTO webhooks (id, tenant_id, account_id, url, secret, events, enabled, created_at)
                     VALUES (?1,?2,NULL,?3,?4,'connection_update',1,?5)",
                    params![i, tenant, url, secret, now],
                )
            })
            .await
            .unwrap();
        id
    }
}

fn png() -> Bytes {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    v.extend((0..1500u32).map(|i| (i * 13 % 251) as u8));
    Bytes::from(v)
}

/// A test web site: an image, a webhook receiver, redirects; counts every request it gets.
struct Site {
    addr: SocketAddr,
    scheme: &'static str,
    hits: Arc<AtomicUsize>,
    hooks: tokio::sync::Mutex<mpsc::UnboundedReceiver<(HeaderMap, Bytes)>>,
}

#[derive(Clone)]
struct SiteState {
    hits: Arc<AtomicUsize>,
    hooks: mpsc::UnboundedSender<(HeaderMap, Bytes)>,
}

#[derive(serde::Deserialize)]
struct To {
    to: String,
}

async fn site(tls: Option<&TestCa>) -> Site {
    let hits = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::unbounded_channel();
    let state = SiteState { hits: hits.clone(), hooks: tx };
    let app = Router::new()
        .route("/img.png", axum::routing::get(|| async { ([("content-type", "image/png")], png()) }))
        .route(
            "/hook",
            axum::routing::post(|State(s): State<SiteState>, h: HeaderMap, b: Bytes| async move {
                let _ = s.hooks.send((h, b));
                StatusCode::NO_CONTENT
            }),
        )
        // 307 keeps the method and body (followed for POST); 302 only for GET.
        .route(
            "/r307",
            axum::routing::any(|Query(q): Query<To>| async move {
                (StatusCode::TEMPORARY_REDIRECT, [("location", q.to)]).into_response()
            }),
        )
        .route(
            "/r302",
            axum::routing::any(|Query(q): Query<To>| async move {
                (StatusCode::FOUND, [("location", q.to)]).into_response()
            }),
        )
        .route("/loop", axum::routing::any(|| async { (StatusCode::FOUND, [("location", "/loop")]) }))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            |State(s): State<SiteState>, req: axum::extract::Request, next: axum::middleware::Next| async move {
                s.hits.fetch_add(1, Ordering::SeqCst);
                let r: Response = next.run(req).await;
                r
            },
        ))
        .with_state(state);
    let (addr, scheme) = match tls {
        Some(ca) => (ca.serve(app).await, "https"),
        None => (serve_http(app).await, "http"),
    };
    Site { addr, scheme, hits, hooks: tokio::sync::Mutex::new(rx) }
}

impl Site {
    fn port(&self) -> u16 {
        self.addr.port()
    }
    /// `scheme://127.0.0.1:port/path`.
    fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }
    /// `scheme://localhost:port/path`.
    fn named(&self, path: &str) -> String {
        format!("{}://localhost:{}{path}", self.scheme, self.port())
    }
    /// A URL on this site that redirects (`kind`: `r307` or `r302`) to `to`.
    fn redirect(&self, kind: &str, to: &str) -> String {
        let q: String = url::form_urlencoded::Serializer::new(String::new()).append_pair("to", to).finish();
        self.url(&format!("/{kind}?{q}"))
    }
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
    async fn next_hook(&self) -> Option<(HeaderMap, Bytes)> {
        self.hooks.lock().await.try_recv().ok()
    }
}

fn config(ca: Option<&TestCa>, loopback: TestLoopback) -> OutboundConfig {
    OutboundConfig { extra_ca_pem: ca.map(|c| c.ca_pem.clone()), test_loopback: loopback, allow: vec![] }
}

fn assert_refused(s: StatusCode, v: &Value, what: &str) {
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("url_refused")),
        "{what}: {v}"
    );
}

/// A delivery that the SSRF policy stopped at connect time: still pending, the reason recorded.
fn assert_refused_at_connect(d: &[Value], what: &str) {
    assert_eq!(d.len(), 1, "{what}: {d:?}");
    assert_eq!(d[0]["status"], "pending", "{what}: {d:?}");
    let err = d[0]["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("SSRF"), "{what}: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_webhooks_to_a_receiver_with_a_test_ca_arrive_signed() {
    let ca = TestCa::generate();
    let recv = site(Some(&ca)).await;
    let h = harness(config(Some(&ca), TestLoopback::Ports(vec![recv.port()]))).await;
    // By name (the certificate's DNS name) and by address (its IP name).
    let mut hooks = Vec::new();
    for url in [recv.named("/hook"), recv.url("/hook")] {
        let (s, v) = h.register_webhook(&url).await;
        assert_eq!(s, StatusCode::CREATED, "{url}: {v}");
        hooks.push((v["id"].as_str().unwrap().to_owned(), v["secret"].as_str().unwrap().to_owned()));
    }
    h.emit_event().await;
    let worker = h.worker(h.state.outbound.clone());
    assert_eq!(worker.run_once().await.unwrap(), 2);
    let mut verified = 0;
    while let Some((headers, body)) = recv.next_hook().await {
        let ts: i64 = headers["x-broadcaster-timestamp"].to_str().unwrap().parse().unwrap();
        let sig = headers["x-broadcaster-signature"].to_str().unwrap();
        assert!(
            hooks.iter().any(|(_, secret)| broadcaster::webhooks::verify(secret, ts, &body, sig)),
            "a signature no webhook secret verifies"
        );
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (v["type"].as_str(), headers["x-broadcaster-event-id"].to_str().ok()),
            (Some("connection_update"), v["id"].as_str())
        );
        verified += 1;
    }
    assert_eq!(verified, 2);
    for (id, _) in &hooks {
        let d = h.deliveries(id).await;
        assert_eq!((d.len(), d[0]["status"].as_str()), (1, Some("delivered")), "{d:?}");
    }

    // A client that does not trust the test CA delivers nothing: the certificate is checked.
    h.emit_event().await;
    let untrusting = OutboundClient::new(&config(None, TestLoopback::Ports(vec![recv.port()]))).unwrap();
    assert_eq!(h.worker(untrusting).run_once().await.unwrap(), 2);
    assert!(recv.next_hook().await.is_none());
    for (id, _) in &hooks {
        let d = h.deliveries(id).await;
        let pending: Vec<_> = d.iter().filter(|d| d["status"] == "pending").collect();
        assert_eq!(pending.len(), 1, "{d:?}");
        let err = pending[0]["last_error"].as_str().unwrap();
        assert!(err.contains("certificate"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_by_https_url_is_fetched_and_an_untrusted_certificate_is_refused() {
    let ca = TestCa::generate();
    let files = site(Some(&ca)).await;
    let h = harness(config(Some(&ca), TestLoopback::Ports(vec![files.port()]))).await;
    for url in [files.named("/img.png"), files.url("/img.png")] {
        let (s, v) = h.media_by_url(&url).await;
        assert_eq!(s, StatusCode::CREATED, "{url}: {v}");
        assert_eq!(
            (v["media"]["size"].as_u64(), v["media"]["mimetype"].as_str()),
            (Some(png().len() as u64), Some("image/png")),
            "{v}"
        );
    }
    let untrusting = harness(config(None, TestLoopback::Ports(vec![files.port()]))).await;
    let (s, v) = untrusting.media_by_url(&files.named("/img.png")).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("media_fetch_failed")),
        "{v}"
    );
    assert!(v["error"]["message"].as_str().unwrap().contains("certificate"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_private_and_metadata_targets_are_refused_over_http_and_https() {
    let ca = TestCa::generate();
    // Real receivers on loopback that would answer: refusal is the policy, not a dead port.
    let (plain, tls) = (site(None).await, site(Some(&ca)).await);
    let h = harness(config(Some(&ca), TestLoopback::Refused)).await;
    let targets = [
        plain.url("/hook"),
        tls.url("/hook"),
        // Names resolving to loopback.
        plain.named("/hook"),
        tls.named("/hook"),
        format!("http://[::1]:{}/hook", plain.port()),
        format!("https://[::1]:{}/hook", tls.port()),
        format!("http://[::ffff:127.0.0.1]:{}/hook", plain.port()),
        // IPv4-compatible and IPv4-translated spellings of 127.0.0.1.
        format!("http://[::127.0.0.1]:{}/hook", plain.port()),
        format!("http://[::ffff:0:7f00:1]:{}/hook", plain.port()),
        format!("http://0.0.0.0:{}/hook", plain.port()),
        "http://10.0.0.1/hook".into(),
        "https://10.20.30.40/hook".into(),
        "http://172.16.5.4/hook".into(),
        "https://192.168.1.10/hook".into(),
        "http://100.64.0.1/hook".into(),
        "https://[fd00::1]/hook".into(),
        "http://[fe80::1]/hook".into(),
        "http://169.254.169.254/latest/meta-data".into(),
        "https://169.254.169.254/latest/meta-data".into(),
        "http://[::ffff:169.254.169.254]/latest/meta-data".into(),
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data".into(),
    ];
    for url in &targets {
        let (s, v) = h.register_webhook(url).await;
        assert_refused(s, &v, url);
        let (s, v) = h.media_by_url(&url.replace("/hook", "/img.png")).await;
        assert_refused(s, &v, url);
    }
    assert_eq!(h.call("GET", "/api/v1/webhooks", None).await.1, json!([]));

    // Rows that got past registration (DNS changed since) are stopped when connecting.
    let rebound = [h.insert_webhook(&plain.url("/hook")).await, h.insert_webhook(&tls.named("/hook")).await];
    h.emit_event().await;
    assert_eq!(h.worker(h.state.outbound.clone()).run_once().await.unwrap(), 2);
    for id in &rebound {
        assert_refused_at_connect(&h.deliveries(id).await, id);
    }
    assert_eq!((plain.hits(), tls.hits()), (0, 0), "nothing reached the loopback receivers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_followed_a_bounded_number_of_times_each_target_checked_again() {
    let ca = TestCa::generate();
    // The fronts are allowed (test setting, by port); the backs are loopback ports that are not.
    let (front, front_tls) = (site(None).await, site(Some(&ca)).await);
    let (back, back_tls) = (site(None).await, site(Some(&ca)).await);
    let allowed = TestLoopback::Ports(vec![front.port(), front_tls.port()]);
    let h = harness(config(Some(&ca), allowed)).await;

    for f in [&front, &front_tls] {
        // Followed within the allowed site, 307 and 302 alike.
        for kind in ["r307", "r302"] {
            let (s, v) = h.media_by_url(&f.redirect(kind, &f.url("/img.png"))).await;
            assert_eq!(s, StatusCode::CREATED, "{kind}: {v}");
        }
        // Every hop is checked again: loopback by address and by name, private, metadata.
        for to in [
            back.url("/img.png"),
            back_tls.named("/img.png"),
            format!("https://[::1]:{}/img.png", back_tls.port()),
            "http://10.0.0.1/img.png".to_owned(),
            "https://192.168.0.1/img.png".to_owned(),
            "http://169.254.169.254/latest/meta-data".to_owned(),
        ] {
            let (s, v) = h.media_by_url(&f.redirect("r302", &to)).await;
            assert_refused(s, &v, &to);
        }
        // Bounded.
        let before = f.hits();
        let (s, v) = h.media_by_url(&f.url("/loop")).await;
        assert_refused(s, &v, "loop");
        assert!(v["error"]["message"].as_str().unwrap().contains("more than 5"), "{v}");
        assert_eq!(f.hits() - before, 6, "the first request and five redirects");
    }
    // No downgrade from https to http, even to an allowed target.
    let (s, v) = h.media_by_url(&front_tls.redirect("r302", &front.url("/img.png"))).await;
    assert_refused(s, &v, "downgrade");

    // Webhooks: a 307 within the site is followed with the signed body; one to a refused
    // target is stopped at connect time.
    let (s, ok) = h.register_webhook(&front_tls.redirect("r307", &front_tls.url("/hook"))).await;
    assert_eq!(s, StatusCode::CREATED, "{ok}");
    let (s, bad) = h.register_webhook(&front.redirect("r307", &back_tls.named("/hook"))).await;
    assert_eq!(s, StatusCode::CREATED, "registration checks the first hop: {bad}");
    h.emit_event().await;
    assert_eq!(h.worker(h.state.outbound.clone()).run_once().await.unwrap(), 2);
    let (headers, body) = front_tls.next_hook().await.expect("the redirected delivery arrived");
    let ts: i64 = headers["x-broadcaster-timestamp"].to_str().unwrap().parse().unwrap();
    let secret = ok["secret"].as_str().unwrap();
    assert!(broadcaster::webhooks::verify(
        secret,
        ts,
        &body,
        headers["x-broadcaster-signature"].to_str().unwrap()
    ));
    assert_refused_at_connect(&h.deliveries(bad["id"].as_str().unwrap()).await, "redirect to loopback");
    assert_eq!((back.hits(), back_tls.hits()), (0, 0), "nothing reached the refused receivers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_allow_list_lets_a_private_receiver_in_and_nothing_else() {
    let (receiver, other) = (site(None).await, site(None).await);
    // The production policy plus the operator's range: here the receiver's own address.
    let mut outbound = config(None, TestLoopback::Refused);
    outbound.allow = vec!["127.0.0.1/32".parse().unwrap()];
    let h = harness(outbound).await;
    let (s, hook) = h.register_webhook(&receiver.url("/hook")).await;
    assert_eq!(s, StatusCode::CREATED, "{hook}");
    // The range is the address, not loopback in general, nor other private ranges.
    for url in [
        format!("http://[::1]:{}/hook", other.port()),
        "http://10.0.0.1/hook".into(),
        "http://169.254.169.254/latest/meta-data".into(),
    ] {
        let (s, v) = h.register_webhook(&url).await;
        assert_refused(s, &v, &url);
    }
    h.emit_event().await;
    assert_eq!(h.worker(h.state.outbound.clone()).run_once().await.unwrap(), 1);
    let (headers, _) = receiver.next_hook().await.expect("the allowed receiver got the delivery");
    assert!(headers.contains_key("x-broadcaster-signature"));
    assert_eq!(h.deliveries(hook["id"].as_str().unwrap()).await[0]["status"], "delivered");
    assert_eq!(other.hits(), 0);
}
