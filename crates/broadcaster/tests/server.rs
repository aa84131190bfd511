//! HTTP-level tests: auth, validation, tenant isolation on every endpoint, the account state
//! machine through the runtime seam, and webhook delivery with retries and dead letters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/testdb.rs"]
mod testdb;

/// SQLite here; `server_pg.rs` runs these tests on PostgreSQL (see `common/testdb.rs`).
#[allow(dead_code)]
const TEST_ON_POSTGRES: bool = false;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use broadcaster::accounts::DbSessionEvents;
use broadcaster::auth::{Bootstrap, bootstrap_admin};
use broadcaster::clock::{Clock, ManualClock, SharedClock};
use broadcaster::db::Db;
use broadcaster::runtime::{
    AccountRuntime, DeliveryStatus, LinkMethod, NumberCheck, OutgoingContent, RuntimeFuture, SentMessage,
    SessionEvent, SessionEvents,
};
use broadcaster::state::AppState;
use broadcaster::webhooks::{RetryPolicy, WebhookWorker};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tower::ServiceExt;

const MAX_BODY: usize = 64 * 1024;

struct Harness {
    app: Router,
    db: Db,
    clock: Arc<ManualClock>,
    notify: Arc<Notify>,
    admin: String,
    /// The state's webhook-secret box (the worker opens what the API sealed).
    secrets: Arc<broadcaster::secrets::SecretBox>,
}

async fn harness_with(runtime: impl FnOnce(DbSessionEvents) -> Option<Arc<dyn AccountRuntime>>) -> Harness {
    harness_limited(runtime, 0).await
}

async fn harness_limited(
    runtime: impl FnOnce(DbSessionEvents) -> Option<Arc<dyn AccountRuntime>>,
    requests_per_minute: u32,
) -> Harness {
    harness_full(runtime, requests_per_minute, None).await
}

/// With an emulator: the `/api/v1/emulator` endpoints are served.
async fn harness_full(
    runtime: impl FnOnce(DbSessionEvents) -> Option<Arc<dyn AccountRuntime>>,
    requests_per_minute: u32,
    emulator: Option<Arc<wa_emulator::EmulatorHandle>>,
) -> Harness {
    let db = testdb::open().await;
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let now = clock.now_ms();
    let admin = match db.call(move |c| bootstrap_admin(c, None, now)).await.unwrap() {
        Bootstrap::Generated(k) => k,
        other => panic!("expected a generated key, got {other:?}"),
    };
    let notify = Arc::new(Notify::new());
    let shared: SharedClock = clock.clone();
    let mut state = AppState::new(db.clone(), shared.clone(), None, notify.clone());
    let events =
        DbSessionEvents::new(db.clone(), shared, notify.clone(), state.live.clone(), state.metrics.clone());
    state.runtime = runtime(events);
    state.limits = Arc::new(broadcaster::state::Limits { requests_per_minute, ..Default::default() });
    state.emulator = emulator;
    state.outbound = loopback_client();
    let secrets = state.secrets.clone();
    Harness { app: broadcaster::app::router(state, MAX_BODY), db, clock, notify, admin, secrets }
}

async fn harness() -> Harness {
    harness_with(|_| None).await
}

impl Harness {
    async fn raw(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<String>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let req = match body {
            Some(b) => req.header("content-type", "application/json").body(Body::from(b)).unwrap(),
            None => req.body(Body::empty()).unwrap(),
        };
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        (status, v)
    }

    async fn call(&self, method: &str, path: &str, key: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.raw(method, path, Some(key), body.map(|b| b.to_string())).await
    }

    /// A new tenant; returns its manager key.
    async fn tenant(&self, name: &str) -> String {
        let (s, v) = self.call("POST", "/api/v1/tenants", &self.admin, Some(json!({ "name": name }))).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["api_key"]["key"].as_str().unwrap().to_owned()
    }

    async fn account(&self, key: &str, name: &str) -> String {
        let (s, v) = self.call("POST", "/api/v1/accounts", key, Some(json!({ "name": name }))).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_str().unwrap().to_owned()
    }
}

fn assert_error(status: StatusCode, body: &Value, want: StatusCode, code: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

#[tokio::test]
async fn health_and_openapi_are_public() {
    let h = harness().await;
    assert_eq!(h.raw("GET", "/healthz", None, None).await.0, StatusCode::OK);
    assert_eq!(h.raw("GET", "/readyz", None, None).await.0, StatusCode::OK);
    let (s, doc) = h.raw("GET", "/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    for path in
        ["/api/v1/accounts", "/api/v1/accounts/{id}", "/api/v1/webhooks", "/api/v1/keys", "/api/v1/tenants"]
    {
        assert!(doc["paths"].get(path).is_some(), "openapi lacks {path}");
    }
    // Every message kind (issue 18): actions on a message and their events.
    for (path, method) in [
        ("/api/v1/accounts/{id}/messages/{message_id}/reaction", "post"),
        ("/api/v1/accounts/{id}/messages/{message_id}", "patch"),
        ("/api/v1/accounts/{id}/messages/{message_id}", "delete"),
        ("/api/v1/accounts/{id}/messages/read", "post"),
        ("/api/v1/accounts/{id}/chat-state", "post"),
    ] {
        assert!(doc["paths"][path].get(method).is_some(), "openapi lacks {method} {path}");
    }
    for schema in ["MessageUpdateEvent", "Location", "ContactCard", "Poll", "Reaction"] {
        assert!(doc["components"]["schemas"].get(schema).is_some(), "openapi lacks {schema}");
    }
}

#[tokio::test]
async fn requests_without_a_valid_key_are_refused() {
    let h = harness().await;
    let (s, v) = h.raw("GET", "/api/v1/accounts", None, None).await;
    assert_error(s, &v, StatusCode::UNAUTHORIZED, "unauthorized");
    let (s, v) = h.raw("GET", "/api/v1/accounts", Some("bk_nope"), None).await;
    assert_error(s, &v, StatusCode::UNAUTHORIZED, "unauthorized");
    // X-API-Key works as well as Bearer.
    let req = Request::get("/api/v1/accounts").header("x-api-key", &h.admin).body(Body::empty()).unwrap();
    assert_eq!(h.app.clone().oneshot(req).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn keys_are_stored_hashed_shown_once_and_revocable() {
    let h = harness().await;
    let mgr = h.tenant("acme").await;
    let (s, v) = h.call("POST", "/api/v1/keys", &mgr, Some(json!({ "name": "bot", "role": "viewer" }))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let viewer = v["key"].as_str().unwrap().to_owned();
    let viewer_id = v["id"].as_str().unwrap().to_owned();
    // Nothing in the database contains a clear key.
    let (a, b) = (h.admin.clone(), viewer.clone());
    let leaked: i64 =
        h.db.call(move |c| {
            c.query_row(
                "SELECT COUNT(*) FROM api_keys WHERE key_hash IN (?1, ?2) OR name LIKE '%' || ?1 || '%'",
                [&a, &b],
                |r| r.get(0),
            )
        })
        .await
        .unwrap();
    assert_eq!(leaked, 0);
    let (_, list) = h.call("GET", "/api/v1/keys", &mgr, None).await;
    assert!(list.as_array().unwrap().iter().all(|k| k.get("key").is_none() && k.get("key_hash").is_none()));
    // Viewer may read but not manage or create accounts.
    assert_eq!(h.call("GET", "/api/v1/accounts", &viewer, None).await.0, StatusCode::OK);
    let (s, v) = h.call("POST", "/api/v1/accounts", &viewer, Some(json!({ "name": "x" }))).await;
    assert_error(s, &v, StatusCode::FORBIDDEN, "forbidden");
    // A manager cannot mint admin keys or tenants.
    let (s, v) = h.call("POST", "/api/v1/keys", &mgr, Some(json!({ "name": "x", "role": "admin" }))).await;
    assert_error(s, &v, StatusCode::FORBIDDEN, "forbidden");
    let (s, v) = h.call("POST", "/api/v1/tenants", &mgr, Some(json!({ "name": "evil" }))).await;
    assert_error(s, &v, StatusCode::FORBIDDEN, "forbidden");
    // Revoked keys stop working.
    assert_eq!(
        h.call("DELETE", &format!("/api/v1/keys/{viewer_id}"), &mgr, None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(h.call("GET", "/api/v1/accounts", &viewer, None).await.0, StatusCode::UNAUTHORIZED);
}

/// On both databases: the last active admin key stays, and only admins revoke admin keys.
#[tokio::test]
async fn the_last_admin_key_cannot_be_revoked_and_managers_cannot_revoke_admin_keys() {
    let h = harness().await;
    let (_, keys) = h.call("GET", "/api/v1/keys", &h.admin, None).await;
    let first = keys.as_array().unwrap().iter().find(|k| k["role"] == "admin").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, v) = h.call("DELETE", &format!("/api/v1/keys/{first}"), &h.admin, None).await;
    assert_error(s, &v, StatusCode::CONFLICT, "last_admin_key");
    let (s, mgr) =
        h.call("POST", "/api/v1/keys", &h.admin, Some(json!({ "name": "m", "role": "manager" }))).await;
    assert_eq!(s, StatusCode::CREATED, "{mgr}");
    let (s, v) = h.call("DELETE", &format!("/api/v1/keys/{first}"), mgr["key"].as_str().unwrap(), None).await;
    assert_error(s, &v, StatusCode::FORBIDDEN, "forbidden");
    let (s, second) =
        h.call("POST", "/api/v1/keys", &h.admin, Some(json!({ "name": "a2", "role": "admin" }))).await;
    assert_eq!(s, StatusCode::CREATED, "{second}");
    let second_key = second["key"].as_str().unwrap();
    assert_eq!(
        h.call("DELETE", &format!("/api/v1/keys/{first}"), second_key, None).await.0,
        StatusCode::NO_CONTENT
    );
    let (s, v) =
        h.call("DELETE", &format!("/api/v1/keys/{}", second["id"].as_str().unwrap()), second_key, None).await;
    assert_error(s, &v, StatusCode::CONFLICT, "last_admin_key");
}

#[tokio::test]
async fn bad_input_gets_clear_4xx_json_errors() {
    let h = harness().await;
    let k = h.admin.clone();
    let (s, v) = h.raw("POST", "/api/v1/accounts", Some(&k), Some("{\"name\":".into())).await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "malformed_json");
    let (s, v) = h.call("POST", "/api/v1/accounts", &k, Some(json!({ "name": "a", "colour": "red" }))).await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "invalid_body");
    assert!(v["error"]["message"].as_str().unwrap().contains("colour"), "{v}");
    let (s, v) = h.call("POST", "/api/v1/accounts", &k, Some(json!({ "name": "a", "phone": "12345" }))).await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "invalid_phone");
    let (s, v) = h.call("POST", "/api/v1/accounts", &k, Some(json!({ "name": "" }))).await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "invalid_name");
    let (s, v) = h.call("POST", "/api/v1/accounts", &k, Some(json!({ "name": "a", "daily_limit": 0 }))).await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "invalid_daily_limit");
    let (s, v) =
        h.call("POST", "/api/v1/accounts", &k, Some(json!({ "name": "a", "time_zone": "Mars" }))).await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "invalid_time_zone");
    let big = json!({ "name": "a".repeat(MAX_BODY + 1) }).to_string();
    let (s, v) = h.raw("POST", "/api/v1/accounts", Some(&k), Some(big)).await;
    assert_error(s, &v, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let req = Request::post("/api/v1/accounts")
        .header("authorization", format!("Bearer {k}"))
        .body(Body::from("{\"name\":\"a\"}"))
        .unwrap();
    let resp = h.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (s, v) =
        h.call("POST", "/api/v1/webhooks", &k, Some(json!({ "url": "ftp://x", "events": ["*"] }))).await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "invalid_url");
    let (s, v) =
        h.call("POST", "/api/v1/webhooks", &k, Some(json!({ "url": "http://x/", "events": ["nope"] }))).await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "invalid_events");
    let (s, v) = h.call("GET", "/api/v1/nothing", &k, None).await;
    assert_error(s, &v, StatusCode::NOT_FOUND, "not_found");
    let (s, v) = h.call("GET", "/api/v1/accounts?state=flying", &k, None).await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "invalid_query");
}

#[tokio::test]
async fn phone_is_normalised_to_e164_and_unique_per_tenant() {
    let h = harness().await;
    let k = h.admin.clone();
    let (s, v) = h
        .call("POST", "/api/v1/accounts", &k, Some(json!({ "name": "a", "phone": "+1 (415) 555-0123" })))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["phone"], "+14155550123");
    assert_eq!(v["state"], "inactive");
    let (s, v) =
        h.call("POST", "/api/v1/accounts", &k, Some(json!({ "name": "b", "phone": "0014155550123" }))).await;
    assert_error(s, &v, StatusCode::CONFLICT, "phone_in_use");
    // Another tenant may register the same number.
    let other = h.tenant("other").await;
    let (s, _) = h
        .call("POST", "/api/v1/accounts", &other, Some(json!({ "name": "b", "phone": "+14155550123" })))
        .await;
    assert_eq!(s, StatusCode::CREATED);
}

/// Every endpoint of the API document that names a resource, with tenant B's key on tenant A's
/// resources: 404 (not 403: existence is not revealed), and A's data unchanged. The document is
/// checked against the list, so a new endpoint without a case here fails this test.
#[tokio::test]
async fn tenant_isolation_on_every_endpoint() {
    let emu = Arc::new(wa_emulator::Emulator::start(wa_emulator::EmulatorConfig::default()).await.unwrap());
    let h = harness_full(
        |events| {
            Some(Arc::new(ScriptedRuntime { events, calls: Mutex::new(Vec::new()) })
                as Arc<dyn AccountRuntime>)
        },
        0,
        Some(emu),
    )
    .await;
    let a = h.tenant("a").await;
    let b = h.tenant("b").await;
    let acc_a = h.account(&a, "a-line").await;
    let acc_b = h.account(&b, "b-line").await;
    let (s, hook) = h
        .call("POST", "/api/v1/webhooks", &a, Some(json!({ "url": "http://127.0.0.1:9/h", "events": ["*"] })))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{hook}");
    let hook_a = hook["id"].as_str().unwrap().to_owned();
    let (_, keys) = h.call("GET", "/api/v1/keys", &a, None).await;
    let key_a = keys[0]["id"].as_str().unwrap().to_owned();
    // A's account is linked and has sent a media message, a bulk send, and deliveries.
    let (s, v) = h.call("POST", &format!("/api/v1/accounts/{acc_a}/connect"), &a, None).await;
    assert_eq!((s, v["state"].as_str()), (StatusCode::ACCEPTED, Some("active")), "{v}");
    let (s, _) = h.call("POST", &format!("/api/v1/accounts/{acc_b}/connect"), &b, None).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let png = base64::engine::general_purpose::STANDARD.encode(b"\x89PNG\r\n\x1a\n0000");
    let media = json!({ "kind": "image", "data_base64": png, "mimetype": "image/png" });
    let (s, v) = h
        .call(
            "POST",
            &format!("/api/v1/accounts/{acc_a}/messages"),
            &a,
            Some(json!({ "to": "+14155550100", "media": media })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let msg_a = v["id"].as_str().unwrap().to_owned();
    let req = Request::builder()
        .uri(format!("/api/v1/accounts/{acc_a}/messages/{msg_a}/media"))
        .header("authorization", format!("Bearer {a}"))
        .body(Body::empty())
        .unwrap();
    let s = h.app.clone().oneshot(req).await.unwrap().status();
    assert_eq!(s, StatusCode::OK, "A downloads its media");
    let (s, v) = h
        .call(
            "POST",
            &format!("/api/v1/accounts/{acc_a}/messages/bulk"),
            &a,
            Some(json!({ "recipients": ["+14155550101"], "text": "x" })),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let (_, dels) = h.call("GET", &format!("/api/v1/webhooks/{hook_a}/deliveries"), &a, None).await;
    let del_a = dels[0]["id"].as_str().unwrap().to_owned();

    // B sees none of A's resources in lists...
    let (_, list) = h.call("GET", "/api/v1/accounts", &b, None).await;
    assert!(list.as_array().unwrap().iter().all(|x| x["id"] != acc_a.as_str()), "{list}");
    let (_, list) = h.call("GET", "/api/v1/webhooks", &b, None).await;
    assert_eq!(list, json!([]));
    let (_, list) = h.call("GET", "/api/v1/keys", &b, None).await;
    assert!(list.as_array().unwrap().iter().all(|k| k["id"] != key_a.as_str()));
    let (_, list) = h.call("GET", "/api/v1/whatsapp/sessions", &b, None).await;
    assert!(list.as_array().unwrap().iter().all(|x| x["accountId"] != acc_a.as_str()), "{list}");
    let (_, page) = h.call("GET", &format!("/api/v1/accounts/{acc_b}/messages"), &b, None).await;
    assert_eq!(page["messages"], json!([]), "{page}");
    // ...its start-session for A's number makes B's own account...
    let (s, v) = h
        .call("POST", "/api/v1/whatsapp/start-session", &b, Some(json!({ "phoneNumber": "+14155550199" })))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_ne!(v["accountId"], acc_a.as_str());
    // ...and every endpoint naming one of A's resources answers 404. `{id}` is the resource
    // of the path's collection; a message of A is also asked for through B's own account.
    let cases: Vec<(&str, &str, Option<Value>)> = vec![
        ("GET", "/api/v1/accounts/{id}", None),
        ("PATCH", "/api/v1/accounts/{id}", Some(json!({ "name": "pwned" }))),
        ("DELETE", "/api/v1/accounts/{id}", None),
        ("GET", "/api/v1/accounts/{id}/activity", None),
        ("POST", "/api/v1/accounts/{id}/connect", None),
        ("POST", "/api/v1/accounts/{id}/disconnect", None),
        ("POST", "/api/v1/accounts/{id}/logout", None),
        ("GET", "/api/v1/accounts/{id}/qr", None),
        ("POST", "/api/v1/accounts/{id}/messages", Some(json!({ "to": "+14155550100", "text": "x" }))),
        ("GET", "/api/v1/accounts/{id}/messages", None),
        (
            "POST",
            "/api/v1/accounts/{id}/messages/bulk",
            Some(json!({ "recipients": ["+14155550100"], "text": "x" })),
        ),
        ("GET", "/api/v1/accounts/{id}/messages/{message_id}", None),
        ("GET", "/api/v1/accounts/{id}/messages/{message_id}/media", None),
        ("POST", "/api/v1/accounts/{id}/messages/{message_id}/reaction", Some(json!({ "emoji": "👍" }))),
        ("PATCH", "/api/v1/accounts/{id}/messages/{message_id}", Some(json!({ "text": "pwned" }))),
        ("DELETE", "/api/v1/accounts/{id}/messages/{message_id}", None),
        ("POST", "/api/v1/accounts/{id}/messages/read", Some(json!({ "message_ids": [msg_a] }))),
        (
            "POST",
            "/api/v1/accounts/{id}/chat-state",
            Some(json!({ "to": "+14155550100", "state": "typing" })),
        ),
        ("POST", "/api/v1/accounts/{id}/check-numbers", Some(json!({ "phones": ["+14155550100"] }))),
        ("GET", "/api/v1/accounts/{id}/chats", None),
        ("GET", "/api/v1/accounts/{id}/chats/{chat}", None),
        ("PATCH", "/api/v1/accounts/{id}/chats/{chat}", Some(json!({ "read": true }))),
        ("GET", "/api/v1/accounts/{id}/groups", None),
        (
            "POST",
            "/api/v1/accounts/{id}/groups",
            Some(json!({ "subject": "pwned", "participants": ["+14155550100"] })),
        ),
        (
            "POST",
            "/api/v1/accounts/{id}/groups/join",
            Some(json!({ "link": "https://chat.whatsapp.com/AbCdEf123" })),
        ),
        ("GET", "/api/v1/accounts/{id}/groups/{group}", None),
        ("PUT", "/api/v1/accounts/{id}/groups/{group}/description", Some(json!({ "description": "pwned" }))),
        ("PUT", "/api/v1/accounts/{id}/groups/{group}/subject", Some(json!({ "subject": "pwned" }))),
        ("GET", "/api/v1/accounts/{id}/groups/{group}/invite-link", None),
        ("POST", "/api/v1/accounts/{id}/groups/{group}/invite-link/revoke", None),
        ("POST", "/api/v1/accounts/{id}/groups/{group}/leave", None),
        (
            "POST",
            "/api/v1/accounts/{id}/groups/{group}/participants",
            Some(json!({ "action": "add", "participants": ["+14155550100"] })),
        ),
        ("DELETE", "/api/v1/keys/{id}", None),
        ("PATCH", "/api/v1/webhooks/{id}", Some(json!({ "enabled": false }))),
        ("DELETE", "/api/v1/webhooks/{id}", None),
        ("GET", "/api/v1/webhooks/{id}/deliveries", None),
        ("POST", "/api/v1/webhooks/deliveries/{id}/replay", None),
        ("GET", "/api/v1/whatsapp/sessions/{account_id}", None),
        ("GET", "/api/v1/whatsapp/sessions/{account_id}/qr", None),
        ("DELETE", "/api/v1/whatsapp/sessions/{account_id}", None),
        ("POST", "/api/v1/emulator/accounts/{id}/scan", None),
        ("POST", "/api/v1/emulator/accounts/{id}/enter-code", None),
    ];
    let fill = |template: &str, account: &str| {
        let id = if template.starts_with("/api/v1/keys/") {
            key_a.as_str()
        } else if template.starts_with("/api/v1/webhooks/deliveries/") {
            del_a.as_str()
        } else if template.starts_with("/api/v1/webhooks/") {
            hook_a.as_str()
        } else {
            account
        };
        template
            .replace("{id}", id)
            .replace("{account_id}", account)
            .replace("{message_id}", &msg_a)
            .replace("{group}", "120363000000000001@g.us")
            .replace("{chat}", "%2B14155550100")
    };
    for (m, template, body) in &cases {
        let path = fill(template, &acc_a);
        let (s, v) = h.call(m, &path, &b, body.clone()).await;
        assert_error(s, &v, StatusCode::NOT_FOUND, "not_found");
        if template.contains("{message_id}") {
            let path = fill(template, &acc_b);
            let (s, v) = h.call(m, &path, &b, body.clone()).await;
            assert_error(s, &v, StatusCode::NOT_FOUND, "not_found");
        }
    }
    // Resources named in the body: a send through A's account, a webhook bound to it.
    let seed_send = json!({ "accountId": acc_a, "phoneNumber": "+14155550100", "message": "x" });
    let (s, v) = h.call("POST", "/api/v1/whatsapp/send-message", &b, Some(seed_send)).await;
    assert_error(s, &v, StatusCode::NOT_FOUND, "not_found");
    let (s, v) = h
        .call(
            "POST",
            "/api/v1/webhooks",
            &b,
            Some(json!({ "url": "https://93.184.216.34/hook", "events": ["*"], "account_id": acc_a })),
        )
        .await;
    assert_error(s, &v, StatusCode::NOT_FOUND, "not_found");

    // The list covers every endpoint of the API document with a path parameter. Not tenant
    // resources: the emulator's phones (test fixtures of `--emulator`). The campaigns API
    // (contacts, templates, campaigns) has its own isolation tests in tests/campaigns.rs.
    let (_, doc) = h.raw("GET", "/openapi.json", None, None).await;
    let campaigns = <broadcaster::campaigns::CampaignsApi as utoipa::OpenApi>::openapi();
    let mut missing = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.contains('{')
            || path.starts_with("/api/v1/emulator/phones/")
            || campaigns.paths.paths.contains_key(path)
        {
            continue;
        }
        let methods = ["get", "put", "post", "patch", "delete"];
        for method in item.as_object().unwrap().keys().filter(|k| methods.contains(&k.as_str())) {
            let m = method.to_uppercase();
            if !cases.iter().any(|(cm, ct, _)| *cm == m && ct == path) {
                missing.push(format!("{m} {path}"));
            }
        }
    }
    assert!(missing.is_empty(), "endpoints without a tenant-isolation case: {missing:?}");

    // A's resources are untouched.
    let (s, v) = h.call("GET", &format!("/api/v1/accounts/{acc_a}"), &a, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!((v["name"].as_str(), v["state"].as_str()), (Some("a-line"), Some("active")), "{v}");
    assert_eq!(h.call("GET", "/api/v1/keys", &a, None).await.1.as_array().unwrap().len(), 1);
    assert_eq!(h.call("GET", "/api/v1/webhooks", &a, None).await.1.as_array().unwrap().len(), 1);
    let (_, page) = h.call("GET", &format!("/api/v1/accounts/{acc_a}/messages"), &a, None).await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 2, "the media message and the bulk one: {page}");
}

/// A test double for the WhatsApp runtime: links at once by emitting QR then Connected.
struct ScriptedRuntime {
    events: DbSessionEvents,
    calls: Mutex<Vec<String>>,
}

impl AccountRuntime for ScriptedRuntime {
    fn connect<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        method: LinkMethod,
    ) -> RuntimeFuture<'a, ()> {
        Box::pin(async move {
            self.calls.lock().unwrap().push(format!("connect {method:?}"));
            let first = match method {
                LinkMethod::Qr => SessionEvent::Qr { code: "2@abc".into(), expires_at_ms: 0 },
                LinkMethod::PairingCode { .. } => {
                    SessionEvent::PairingCode { code: "ABCD1234".into(), expires_at_ms: 0 }
                }
            };
            self.events.emit(tenant_id, account_id, first).await;
            let connected = SessionEvent::Connected {
                phone: Some("+14155550199".into()),
                push_name: Some("Shop".into()),
            };
            self.events.emit(tenant_id, account_id, connected).await;
            Ok(())
        })
    }
    fn disconnect<'a>(&'a self, _: &'a str, _: &'a str) -> RuntimeFuture<'a, ()> {
        Box::pin(async move {
            self.calls.lock().unwrap().push("disconnect".into());
            Ok(())
        })
    }
    fn logout<'a>(&'a self, _: &'a str, _: &'a str) -> RuntimeFuture<'a, ()> {
        Box::pin(async move {
            self.calls.lock().unwrap().push("logout".into());
            Ok(())
        })
    }
    fn send<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        to: &'a str,
        content: OutgoingContent,
    ) -> RuntimeFuture<'a, SentMessage> {
        Box::pin(async move {
            let mut calls = self.calls.lock().unwrap();
            calls.push(format!("send {to} {content:?}"));
            Ok(SentMessage::new(format!("3EB0{:016X}", calls.len()), 1_700_000_000_000))
        })
    }
    fn check_numbers<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        phones: &'a [String],
    ) -> RuntimeFuture<'a, Vec<NumberCheck>> {
        Box::pin(async move {
            // Scripted: numbers ending in an even digit are on WhatsApp.
            Ok(phones
                .iter()
                .map(|p| {
                    let on = p.ends_with(['0', '2', '4', '6', '8']);
                    NumberCheck::new(p.clone(), on, on.then(|| format!("{p}@s.whatsapp.net")))
                })
                .collect())
        })
    }
}

#[tokio::test]
async fn connect_without_runtime_is_503_and_state_unchanged() {
    let h = harness().await;
    let acc = h.account(&h.admin, "a").await;
    let (s, v) = h.call("POST", &format!("/api/v1/accounts/{acc}/connect"), &h.admin, None).await;
    assert_error(s, &v, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    let (_, v) = h.call("GET", &format!("/api/v1/accounts/{acc}"), &h.admin, None).await;
    assert_eq!(v["state"], "inactive");
}

#[tokio::test]
async fn state_machine_transitions_are_recorded_through_the_runtime_seam() {
    let h = harness_with(|events| {
        Some(Arc::new(ScriptedRuntime { events, calls: Mutex::new(Vec::new()) }) as Arc<dyn AccountRuntime>)
    })
    .await;
    let k = h.admin.clone();
    let acc = h.account(&k, "a").await;
    let (s, v) = h.call("POST", &format!("/api/v1/accounts/{acc}/connect"), &k, Some(json!({}))).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["state"], "active");
    assert_eq!(v["phone"], "+14155550199");
    assert_eq!(v["push_name"], "Shop");
    assert!(v["last_connected_at"].is_i64());
    // Illegal: connecting an active account.
    let (s, v) = h.call("POST", &format!("/api/v1/accounts/{acc}/connect"), &k, None).await;
    assert_error(s, &v, StatusCode::CONFLICT, "invalid_state");
    // Cannot delete while running.
    let (s, v) = h.call("DELETE", &format!("/api/v1/accounts/{acc}"), &k, None).await;
    assert_error(s, &v, StatusCode::CONFLICT, "account_running");
    let (s, v) = h.call("POST", &format!("/api/v1/accounts/{acc}/logout"), &k, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "logged_out");
    let (s, v) = h.call("POST", &format!("/api/v1/accounts/{acc}/logout"), &k, None).await;
    assert_error(s, &v, StatusCode::CONFLICT, "invalid_state");
    // Pairing code path after logout.
    let (s, v) = h
        .call(
            "POST",
            &format!("/api/v1/accounts/{acc}/connect"),
            &k,
            Some(json!({ "pairing_phone": "+1 415 555 0199" })),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let (_, log) = h.call("GET", &format!("/api/v1/accounts/{acc}/activity"), &k, None).await;
    let states: Vec<&str> = log.as_array().unwrap().iter().map(|e| e["to_state"].as_str().unwrap()).collect();
    assert_eq!(
        states,
        [
            "inactive",
            "connecting",
            "qr_ready",
            "active",
            "logged_out",
            "connecting",
            "pairing_code_ready",
            "active"
        ]
    );
    assert_eq!(log[1]["from_state"], "inactive");
    let (s, v) = h.call("POST", &format!("/api/v1/accounts/{acc}/disconnect"), &k, None).await;
    assert_eq!((s, v["state"].as_str()), (StatusCode::OK, Some("disconnected")));
    assert_eq!(
        h.call("DELETE", &format!("/api/v1/accounts/{acc}"), &k, None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(h.call("GET", &format!("/api/v1/accounts/{acc}"), &k, None).await.0, StatusCode::NOT_FOUND);
}

// ------------------------------------------------------------------ webhooks

#[derive(Default)]
struct Receiver {
    down: AtomicBool,
    hits: AtomicUsize,
    delivered: Mutex<Vec<(String, Value)>>,
    secret: Mutex<String>,
    arrived: Notify,
}

async fn receive(
    axum::extract::State(r): axum::extract::State<Arc<Receiver>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    r.hits.fetch_add(1, Ordering::SeqCst);
    if r.down.load(Ordering::SeqCst) {
        r.arrived.notify_one();
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let ts: i64 = headers["x-broadcaster-timestamp"].to_str().unwrap().parse().unwrap();
    let sig = headers["x-broadcaster-signature"].to_str().unwrap();
    let secret = r.secret.lock().unwrap().clone();
    assert!(broadcaster::webhooks::verify(&secret, ts, &body, sig), "bad signature");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(headers["x-broadcaster-event-id"].to_str().unwrap(), v["id"].as_str().unwrap());
    r.delivered.lock().unwrap().push((v["id"].as_str().unwrap().to_owned(), v));
    r.arrived.notify_one();
    StatusCode::NO_CONTENT
}

async fn start_receiver() -> (Arc<Receiver>, String) {
    let r = Arc::new(Receiver::default());
    let app = Router::new().route("/hook", axum::routing::post(receive)).with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (r, url)
}

async fn emit_transitions(h: &Harness, key: &str, acc: &str, n: usize) {
    // Each connect/disconnect pair through the API enqueues connection_update events.
    let tenant = {
        let (db, acc) = (h.db.clone(), acc.to_owned());
        db.call(move |c| {
            c.query_row("SELECT tenant_id FROM accounts WHERE id = ?1", [&acc], |r| r.get::<String>(0))
        })
        .await
        .unwrap()
    };
    let _ = key;
    use broadcaster::account_state::AccountState::*;
    for i in 0..n {
        let to = if i % 2 == 0 { Connecting } else { Disconnected };
        let (t, a, now) = (tenant.clone(), acc.to_owned(), h.clock.now_ms());
        h.db.call(move |c| Ok(broadcaster::accounts::transition(c, &t, &a, to, None, now)))
            .await
            .unwrap()
            .unwrap();
    }
}

fn worker(h: &Harness, max_attempts: u32) -> WebhookWorker {
    let policy = RetryPolicy {
        max_attempts,
        base_delay_ms: 1_000,
        max_delay_ms: 60_000,
        request_timeout: Duration::from_secs(5),
    };
    WebhookWorker::new(
        h.db.clone(),
        h.clock.clone(),
        policy,
        h.notify.clone(),
        loopback_client(),
        h.secrets.clone(),
    )
}

/// The tests' receivers listen on loopback, which the production SSRF policy refuses.
fn loopback_client() -> broadcaster::outbound::OutboundClient {
    use broadcaster::outbound::{OutboundClient, OutboundConfig, TestLoopback};
    OutboundClient::new(&OutboundConfig { test_loopback: TestLoopback::AnyPort, ..Default::default() })
        .unwrap()
}

async fn deliveries(h: &Harness, key: &str, hook: &str) -> Vec<Value> {
    let (s, v) = h.call("GET", &format!("/api/v1/webhooks/{hook}/deliveries"), key, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array().unwrap().clone()
}

/// A webhook is edited in place (URL, events, on/off) and keeps its secret; a disabled one gets
/// no new deliveries; bad edits are refused and change nothing.
#[tokio::test]
async fn webhooks_are_edited_in_place() {
    let h = harness().await;
    let k = h.admin.clone();
    let (_rx, url) = start_receiver().await;
    let (s, hook) =
        h.call("POST", "/api/v1/webhooks", &k, Some(json!({ "url": url, "events": ["qr_code"] }))).await;
    assert_eq!(s, StatusCode::CREATED, "{hook}");
    let id = hook["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/webhooks/{id}");

    let (s, v) = h.call("PATCH", &path, &k, Some(json!({ "events": ["connection_update"] }))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["events"].clone(), v["url"].clone(), v["enabled"].clone()),
        (json!(["connection_update"]), json!(url), json!(true))
    );
    assert!(v.get("secret").is_none(), "the secret is shown only at creation: {v}");
    let acc = h.account(&k, "a").await;
    // connecting, then disconnected
    emit_transitions(&h, &k, &acc, 2).await;
    assert_eq!(deliveries(&h, &k, &id).await.len(), 2, "the new events are delivered");

    let (s, v) = h.call("PATCH", &path, &k, Some(json!({ "enabled": false }))).await;
    assert_eq!((s, v["enabled"].clone()), (StatusCode::OK, json!(false)), "{v}");
    emit_transitions(&h, &k, &acc, 1).await;
    assert_eq!(deliveries(&h, &k, &id).await.len(), 2, "nothing is queued for a disabled webhook");

    for (body, status, code) in [
        (json!({ "events": [] }), StatusCode::BAD_REQUEST, "invalid_events"),
        (json!({ "events": ["nope"] }), StatusCode::BAD_REQUEST, "invalid_events"),
        (json!({ "url": "not a url" }), StatusCode::BAD_REQUEST, "invalid_url"),
        (json!({ "secret": "x" }), StatusCode::BAD_REQUEST, "invalid_body"),
    ] {
        let (s, v) = h.call("PATCH", &path, &k, Some(body)).await;
        assert_error(s, &v, status, code);
    }
    let (s, v) = h.call("PATCH", "/api/v1/webhooks/whk_missing", &k, Some(json!({ "enabled": true }))).await;
    assert_error(s, &v, StatusCode::NOT_FOUND, "not_found");
    let (_, list) = h.call("GET", "/api/v1/webhooks", &k, None).await;
    assert_eq!(list[0]["events"], json!(["connection_update"]), "{list}");
    assert_eq!(list[0]["enabled"], json!(false), "{list}");
}

#[tokio::test]
async fn webhooks_survive_a_receiver_outage_without_loss_or_duplicates() {
    let h = harness().await;
    let k = h.admin.clone();
    let (rx, url) = start_receiver().await;
    let (s, hook) = h
        .call("POST", "/api/v1/webhooks", &k, Some(json!({ "url": url, "events": ["connection_update"] })))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{hook}");
    *rx.secret.lock().unwrap() = hook["secret"].as_str().unwrap().to_owned();
    let hook_id = hook["id"].as_str().unwrap().to_owned();
    let acc = h.account(&k, "a").await;
    emit_transitions(&h, &k, &acc, 4).await;
    let w = worker(&h, 10);

    rx.down.store(true, Ordering::SeqCst);
    // Three passes while down: each attempts all 4, then waits for its backoff (driven clock).
    for pass in 1..=3 {
        assert_eq!(w.run_once().await.unwrap(), 4, "pass {pass}");
        // Nothing is due until the clock moves past the backoff.
        assert_eq!(w.run_once().await.unwrap(), 0);
        let next = w.next_due().await.unwrap().unwrap();
        assert!(next > h.clock.now_ms());
        h.clock.advance_ms(next - h.clock.now_ms() + 60_000);
    }
    assert_eq!(rx.hits.load(Ordering::SeqCst), 12);
    let ds = deliveries(&h, &k, &hook_id).await;
    assert!(
        ds.iter().all(|d| d["status"] == "pending" && d["attempts"] == 3 && d["last_status"] == 503),
        "{ds:?}"
    );

    rx.down.store(false, Ordering::SeqCst);
    assert_eq!(w.run_once().await.unwrap(), 4);
    h.clock.advance_ms(24 * 3_600_000);
    assert_eq!(w.run_once().await.unwrap(), 0, "delivered rows are never sent again");
    let got = rx.delivered.lock().unwrap().clone();
    assert_eq!(got.len(), 4);
    let mut ids: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "each event exactly once");
    assert!(got.iter().all(|(_, v)| v["type"] == "connection_update" && v["account_id"] == acc.as_str()));
    let ds = deliveries(&h, &k, &hook_id).await;
    assert!(ds.iter().all(|d| d["status"] == "delivered" && d["attempts"] == 4), "{ds:?}");
}

#[tokio::test]
async fn dead_letters_are_listed_and_replayable_with_the_same_idempotency_key() {
    let h = harness().await;
    let k = h.admin.clone();
    let (rx, url) = start_receiver().await;
    let (_, hook) =
        h.call("POST", "/api/v1/webhooks", &k, Some(json!({ "url": url, "events": ["*"] }))).await;
    *rx.secret.lock().unwrap() = hook["secret"].as_str().unwrap().to_owned();
    let hook_id = hook["id"].as_str().unwrap().to_owned();
    let acc = h.account(&k, "a").await;
    emit_transitions(&h, &k, &acc, 1).await;
    let w = worker(&h, 3);
    rx.down.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        assert_eq!(w.run_once().await.unwrap(), 1);
        h.clock.advance_ms(3_600_000);
    }
    assert_eq!(w.run_once().await.unwrap(), 0, "dead letters are not retried");
    let (s, dead) =
        h.call("GET", &format!("/api/v1/webhooks/{hook_id}/deliveries?status=dead"), &k, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(dead.as_array().unwrap().len(), 1, "{dead}");
    let del_id = dead[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(dead[0]["attempts"], 3);

    rx.down.store(false, Ordering::SeqCst);
    let (s, _) = h.call("POST", &format!("/api/v1/webhooks/deliveries/{del_id}/replay"), &k, None).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(w.run_once().await.unwrap(), 1);
    let got = rx.delivered.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, del_id, "idempotency key is the event id, stable across replays");
}

#[tokio::test]
async fn the_background_worker_wakes_on_new_events() {
    let h = harness().await;
    let k = h.admin.clone();
    let (rx, url) = start_receiver().await;
    let (_, hook) =
        h.call("POST", "/api/v1/webhooks", &k, Some(json!({ "url": url, "events": ["*"] }))).await;
    *rx.secret.lock().unwrap() = hook["secret"].as_str().unwrap().to_owned();
    let acc = h.account(&k, "a").await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(worker(&h, 3).run(async move {
        let _ = stop_rx.await;
    }));
    let arrived = rx.arrived.notified();
    emit_transitions(&h, &k, &acc, 1).await;
    h.notify.notify_one();
    tokio::time::timeout(Duration::from_secs(20), arrived).await.expect("delivery within timeout");
    assert_eq!(rx.delivered.lock().unwrap().len(), 1);
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(20), task).await.expect("worker stops").unwrap();
}

fn scripted(events: DbSessionEvents) -> Option<Arc<dyn AccountRuntime>> {
    Some(Arc::new(ScriptedRuntime { events, calls: Mutex::new(Vec::new()) }) as Arc<dyn AccountRuntime>)
}

#[tokio::test]
async fn daily_limit_answers_429_with_reset_and_resets_next_day() {
    let h = harness_with(scripted).await;
    let k = h.admin.clone();
    let (s, v) = h.call("POST", "/api/v1/accounts", &k, Some(json!({ "name": "a", "daily_limit": 2 }))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let acc = v["id"].as_str().unwrap().to_owned();
    let (s, _) = h.call("POST", &format!("/api/v1/accounts/{acc}/connect"), &k, None).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let send = format!("/api/v1/accounts/{acc}/messages");
    for _ in 0..2 {
        let (s, v) = h.call("POST", &send, &k, Some(json!({ "to": "+14155550100", "text": "hi" }))).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(v["status"], "sent");
    }
    let req = Request::post(&send)
        .header("authorization", format!("Bearer {k}"))
        .header("content-type", "application/json")
        .body(Body::from(json!({ "to": "+14155550100", "text": "hi" }).to_string()))
        .unwrap();
    let resp = h.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry), "{retry}");
    let body: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["error"]["code"], "daily_limit_reached");
    // History holds both sent messages, newest first, paginated by cursor.
    let (_, p1) = h.call("GET", &format!("{send}?limit=1"), &k, None).await;
    assert_eq!(p1["messages"].as_array().unwrap().len(), 1);
    let cursor = p1["next_cursor"].as_str().unwrap();
    let (_, p2) = h.call("GET", &format!("{send}?limit=1&cursor={cursor}"), &k, None).await;
    assert_eq!(p2["messages"].as_array().unwrap().len(), 1);
    assert_ne!(p1["messages"][0]["id"], p2["messages"][0]["id"]);
    assert!(p2["next_cursor"].is_null());
    // The next day the counter starts again.
    h.clock.advance_ms(86_400_000);
    let (s, v) = h.call("POST", &send, &k, Some(json!({ "to": "+14155550100", "text": "hi" }))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}

#[tokio::test]
async fn per_key_rate_limit_answers_429_with_retry_after() {
    let h = harness_limited(|_| None, 3).await;
    for _ in 0..3 {
        assert_eq!(h.call("GET", "/api/v1/accounts", &h.admin, None).await.0, StatusCode::OK);
    }
    let req = Request::get("/api/v1/accounts").header("authorization", format!("Bearer {}", h.admin));
    let resp = h.app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "20");
    // A minute later the bucket is full again.
    h.clock.advance_ms(60_000);
    assert_eq!(h.call("GET", "/api/v1/accounts", &h.admin, None).await.0, StatusCode::OK);
}

#[tokio::test]
async fn receipts_move_status_forward_only_even_before_the_send_is_recorded() {
    let h = harness_with(scripted).await;
    let k = h.admin.clone();
    let acc = h.account(&k, "a").await;
    h.call("POST", &format!("/api/v1/accounts/{acc}/connect"), &k, None).await;
    let tenant: String = {
        let a = acc.clone();
        h.db.call(move |c| c.query_row("SELECT tenant_id FROM accounts WHERE id = ?1", [a], |r| r.get(0)))
            .await
            .unwrap()
    };
    // The scripted runtime numbers its ids; a receipt for the next id arrives first.
    let early = format!("3EB0{:016X}", 2);
    let events = DbSessionEvents::new(
        h.db.clone(),
        h.clock.clone(),
        h.notify.clone(),
        broadcaster::live::LiveBus::new(),
        Arc::new(broadcaster::metrics::Metrics::default()),
    );
    let at = h.clock.now_ms();
    let ev = SessionEvent::MessageStatus {
        message_id: early.clone(),
        status: DeliveryStatus::Delivered,
        at_ms: at,
    };
    events.emit(&tenant, &acc, ev).await;
    let (s, v) = h
        .call(
            "POST",
            &format!("/api/v1/accounts/{acc}/messages"),
            &k,
            Some(json!({ "to": "+14155550100", "text": "x" })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["wa_message_id"], early.as_str());
    assert_eq!(v["status"], "delivered", "the early receipt applied: {v}");
    for (st, want) in [
        (DeliveryStatus::Read, "read"),
        (DeliveryStatus::Delivered, "read"),
        (DeliveryStatus::Played, "played"),
    ] {
        events
            .emit(
                &tenant,
                &acc,
                SessionEvent::MessageStatus { message_id: early.clone(), status: st, at_ms: at },
            )
            .await;
        let (_, m) = h
            .call("GET", &format!("/api/v1/accounts/{acc}/messages/{}", v["id"].as_str().unwrap()), &k, None)
            .await;
        assert_eq!(m["status"], want);
    }
}

#[tokio::test]
async fn the_root_redirects_to_the_dashboard() {
    let h = harness().await;
    let resp = h.app.clone().oneshot(Request::get("/").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(resp.headers()["location"], "/dashboard");
    let resp = h.app.clone().oneshot(Request::get("/dashboard").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

/// Every operation the OpenAPI document lists with a body: 415 for a body that is not JSON (or
/// no content type), and 413 for a body declared larger than the route's limit, answered without
/// reading it (the body here never yields a byte: a server that waited for it would hang).
#[tokio::test]
async fn every_endpoint_with_a_body_answers_415_and_413_without_reading_an_oversized_body() {
    let h = harness().await;
    let (_, doc) = h.raw("GET", "/openapi.json", None, None).await;
    let mut checked = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["post", "put", "patch"] {
            if item.get(method).and_then(|op| op.get("requestBody")).is_none() {
                continue;
            }
            let uri = path.replace(['{', '}'], "");
            let m = method.to_ascii_uppercase();
            // A body the endpoint may go without (`required: false`) is absent without a type.
            let required = item[method]["requestBody"]["required"] == true;
            for content_type in [Some("text/plain"), None].into_iter().filter(|t| t.is_some() || required) {
                let mut req = Request::builder()
                    .method(m.as_str())
                    .uri(&uri)
                    .header("authorization", format!("Bearer {}", h.admin));
                if let Some(t) = content_type {
                    req = req.header("content-type", t);
                }
                let resp = h.app.clone().oneshot(req.body(Body::from("x")).unwrap()).await.unwrap();
                assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{m} {path} {content_type:?}");
            }
            let never = futures::stream::pending::<Result<bytes::Bytes, std::io::Error>>();
            let req = Request::builder()
                .method(m.as_str())
                .uri(&uri)
                .header("authorization", format!("Bearer {}", h.admin))
                .header("content-type", "application/json")
                .header("content-length", (1u64 << 30).to_string())
                .body(Body::from_stream(never))
                .unwrap();
            let resp = tokio::time::timeout(Duration::from_secs(10), h.app.clone().oneshot(req))
                .await
                .unwrap_or_else(|_| panic!("{m} {path} waited for an oversized body"))
                .unwrap();
            let status = resp.status();
            let v: Value =
                serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
            assert_error(status, &v, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
            let documented = &doc["paths"][path][method]["responses"];
            assert!(documented.get("413").is_some() && documented.get("415").is_some(), "{m} {path}");
            checked.push(format!("{m} {path}"));
        }
    }
    assert!(checked.iter().any(|c| c == "POST /api/v1/contacts/import"), "{checked:?}");
    assert!(checked.len() > 20, "{checked:?}");
}

/// Swagger UI is served from the binary at `/docs`, pointed at the server's own document.
#[tokio::test]
async fn docs_serve_swagger_ui_for_the_servers_openapi() {
    let h = harness().await;
    let get = |path: &'static str| {
        let app = h.app.clone();
        async move {
            let resp = app.oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
            let status = resp.status();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let (s, _) = get("/docs").await;
    assert!(s.is_redirection(), "{s}");
    let (s, page) = get("/docs/").await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("swagger-ui") && !page.contains("cdn"), "{page}");
    let (s, init) = get("/docs/swagger-initializer.js").await;
    assert_eq!(s, StatusCode::OK);
    assert!(init.contains("/openapi.json") && !init.contains("petstore"), "{init}");
    let (s, js) = get("/docs/swagger-ui-bundle.js").await;
    assert_eq!(s, StatusCode::OK);
    assert!(js.len() > 100_000, "the bundle is served from the binary");
}

/// Chats: newest activity first, the last message, and unread = incoming since the account's
/// last message in the chat.
#[tokio::test]
async fn chats_list_the_last_message_and_unread_counts() {
    let h = harness_with(scripted).await;
    let k = h.admin.clone();
    let acc = h.account(&k, "a").await;
    h.call("POST", &format!("/api/v1/accounts/{acc}/connect"), &k, None).await;
    let tenant: String = {
        let a = acc.clone();
        h.db.call(move |c| c.query_row("SELECT tenant_id FROM accounts WHERE id = ?1", [a], |r| r.get(0)))
            .await
            .unwrap()
    };
    let events = DbSessionEvents::new(
        h.db.clone(),
        h.clock.clone(),
        h.notify.clone(),
        broadcaster::live::LiveBus::new(),
        Arc::new(broadcaster::metrics::Metrics::default()),
    );
    let incoming = |n: u32, from: &str, text: &str| SessionEvent::IncomingMessage {
        message_id: format!("IN{n}"),
        chat: format!("{from}@s.whatsapp.net"),
        chat_lid: None,
        from: format!("{from}@s.whatsapp.net"),
        from_lid: None,
        from_phone: Some(format!("+{from}")),
        push_name: None,
        text: Some(text.into()),
        media: None,
        timestamp_ms: 1_700_000_000_000,
        media_info: None,
        quoted_id: None,
        detail: None,
    };
    let (bob, carol) = ("14155550101", "14155550102");
    for (n, from, text) in [(1, bob, "hi"), (2, bob, "are you there?"), (3, carol, "hello")] {
        h.clock.advance_ms(1_000);
        events.emit(&tenant, &acc, incoming(n, from, text)).await;
    }
    h.clock.advance_ms(1_000);
    let (s, v) = h
        .call(
            "POST",
            &format!("/api/v1/accounts/{acc}/messages"),
            &k,
            Some(json!({ "to": format!("+{bob}"), "text": "yes" })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    h.clock.advance_ms(1_000);
    events.emit(&tenant, &acc, incoming(4, bob, "great")).await;

    let (s, v) = h.call("GET", &format!("/api/v1/accounts/{acc}/chats"), &k, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let chats = v["chats"].as_array().unwrap();
    let summary: Vec<(&str, i64, i64, &str)> = chats
        .iter()
        .map(|c| {
            (
                c["chat"].as_str().unwrap(),
                c["unread_count"].as_i64().unwrap(),
                c["message_count"].as_i64().unwrap(),
                c["last_message"]["body"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [("14155550101@s.whatsapp.net", 1, 4, "great"), ("14155550102@s.whatsapp.net", 1, 1, "hello")],
        "{v}"
    );
    assert_eq!(chats[0]["kind"], "direct");
    assert!(v["next_cursor"].is_null(), "{v}");
    // Pages of one follow the same order.
    let (_, p1) = h.call("GET", &format!("/api/v1/accounts/{acc}/chats?limit=1"), &k, None).await;
    assert_eq!(p1["chats"][0]["chat"], "14155550101@s.whatsapp.net", "{p1}");
    let cursor = p1["next_cursor"].as_str().unwrap();
    let (_, p2) =
        h.call("GET", &format!("/api/v1/accounts/{acc}/chats?limit=1&cursor={cursor}"), &k, None).await;
    assert_eq!(p2["chats"][0]["chat"], "14155550102@s.whatsapp.net", "{p2}");
    assert!(p2["next_cursor"].is_null(), "{p2}");
    let (s, v) = h.call("GET", &format!("/api/v1/accounts/{acc}/chats?cursor=zz"), &k, None).await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "invalid_cursor");
}
