//! Contacts, templates and campaigns: the HTTP API and the campaign engine, driven step by step
//! with a manual clock and a scripted sender (no sleeps).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/harness.rs"]
mod harness;
#[path = "common/testdb.rs"]
mod testdb;

/// SQLite here; `campaigns_pg.rs` runs these tests on PostgreSQL (see `common/testdb.rs`).
#[allow(dead_code)]
const TEST_ON_POSTGRES: bool = false;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use broadcaster::auth::{Bootstrap, bootstrap_admin};
use broadcaster::campaigns::engine::{CampaignEvent, CampaignMessage, SendFuture};
use broadcaster::campaigns::{CampaignSender, Engine, SendError};
use broadcaster::clock::{Clock, ManualClock, SharedClock};
use broadcaster::db::Db;
use broadcaster::state::AppState;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tower::ServiceExt;

const T0: i64 = 1_700_000_000_000;

struct Harness {
    app: Router,
    state: AppState,
    db: Db,
    clock: Arc<ManualClock>,
    admin: String,
}

async fn harness_on(db: Db) -> Harness {
    let clock = Arc::new(ManualClock::new(T0));
    let admin = match db.call(move |c| bootstrap_admin(c, None, T0)).await.unwrap() {
        Bootstrap::Generated(k) => k,
        other => panic!("expected a generated key, got {other:?}"),
    };
    let shared: SharedClock = clock.clone();
    let mut state = AppState::new(db.clone(), shared, None, Arc::new(Notify::new()));
    // The tests' webhook receivers and media servers listen on loopback.
    state.outbound = loopback_client(true);
    Harness { app: broadcaster::app::router(state.clone(), 64 * 1024), state, db, clock, admin }
}

async fn harness() -> Harness {
    harness_on(testdb::open().await).await
}

/// An outbound client that may reach loopback (the test receivers), or the production policy.
fn loopback_client(allow_loopback: bool) -> broadcaster::outbound::OutboundClient {
    use broadcaster::outbound::{OutboundClient, OutboundConfig, TestLoopback};
    let test_loopback = if allow_loopback { TestLoopback::AnyPort } else { TestLoopback::Refused };
    OutboundClient::new(&OutboundConfig { test_loopback, ..Default::default() }).unwrap()
}

/// [`harness`] with a media size cap and, with `allow_loopback`, URL fetches from loopback.
async fn harness_with_media(max_bytes: usize, allow_loopback: bool) -> Harness {
    let mut h = harness().await;
    h.state.outbound = loopback_client(allow_loopback);
    h.state.limits = Arc::new(broadcaster::state::Limits {
        fetch: broadcaster::outbound::fetch::FetchPolicy {
            max_bytes,
            ..broadcaster::outbound::fetch::FetchPolicy::default()
        },
        ..broadcaster::state::Limits::default()
    });
    h.app = broadcaster::app::router(h.state.clone(), 64 * 1024);
    h
}

impl Harness {
    async fn call(&self, method: &str, path: &str, key: &str, body: Option<Value>) -> (StatusCode, Value) {
        let req =
            Request::builder().method(method).uri(path).header("authorization", format!("Bearer {key}"));
        let req = match body {
            Some(b) => {
                req.header("content-type", "application/json").body(Body::from(b.to_string())).unwrap()
            }
            None => req.body(Body::empty()).unwrap(),
        };
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, v)
    }

    async fn ok(&self, method: &str, path: &str, key: &str, body: Option<Value>) -> Value {
        let (s, v) = self.call(method, path, key, body).await;
        assert!(s.is_success(), "{method} {path}: {s} {v}");
        v
    }

    async fn tenant(&self, name: &str) -> String {
        let v = self.ok("POST", "/api/v1/tenants", &self.admin.clone(), Some(json!({ "name": name }))).await;
        v["api_key"]["key"].as_str().unwrap().to_owned()
    }

    /// An account marked active (as a connected session would leave it).
    async fn active_account(&self, key: &str, name: &str) -> String {
        let v = self.ok("POST", "/api/v1/accounts", key, Some(json!({ "name": name }))).await;
        let id = v["id"].as_str().unwrap().to_owned();
        let i = id.clone();
        self.db
            .call(move |c| c.execute("UPDATE accounts SET state = 'active' WHERE id = ?1", [i]))
            .await
            .unwrap();
        id
    }

    async fn set_account_state(&self, id: &str, state: &str, reason: Option<&str>) {
        let (id, state, reason) = (id.to_owned(), state.to_owned(), reason.map(str::to_owned));
        self.db
            .call(move |c| {
                c.execute(
                    "UPDATE accounts SET state = ?2, state_reason = ?3 WHERE id = ?1",
                    broadcaster::db::params![id, state, reason],
                )
            })
            .await
            .unwrap();
    }
}

fn assert_error(status: StatusCode, body: &Value, want: StatusCode, code: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
}

// ---------------------------------------------------------------------------------------------
// A scripted sender: records every message "delivered to the phone", can refuse, fail
// temporarily, or hang (to simulate a crash mid-send).

#[derive(Default)]
struct Script {
    /// (account, phone, text, message id, clock ms)
    log: Vec<(String, String, String, String, i64)>,
    not_on_whatsapp: HashSet<String>,
    /// phone -> transient failures still to return
    transient: HashMap<String, usize>,
    rejected: HashSet<String>,
    unavailable: HashSet<String>,
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Hang {
    Never,
    /// The Nth send (1-based) reaches the phone, then never returns.
    AfterSend(usize),
    /// The Nth send never reaches the phone and never returns.
    BeforeSend(usize),
}

/// (phone, kind, mimetype, file bytes, caption text) of a media message.
type SentMedia = (String, String, String, bytes::Bytes, String);

struct ScriptedSender {
    clock: Arc<ManualClock>,
    /// Each media message sent.
    media: Mutex<Vec<SentMedia>>,
    script: Mutex<Script>,
    sends: AtomicUsize,
    hang: Mutex<Hang>,
    hung: Notify,
}

impl ScriptedSender {
    fn new(clock: Arc<ManualClock>) -> Arc<Self> {
        Arc::new(Self {
            clock,
            media: Mutex::default(),
            script: Mutex::default(),
            sends: AtomicUsize::new(0),
            hang: Mutex::new(Hang::Never),
            hung: Notify::new(),
        })
    }
    fn log(&self) -> Vec<(String, String, String, String, i64)> {
        self.script.lock().unwrap().log.clone()
    }
}

impl CampaignSender for ScriptedSender {
    fn send<'a>(
        &'a self,
        _: &'a str,
        account: &'a str,
        phone: &'a str,
        message: &'a CampaignMessage,
    ) -> SendFuture<'a, String> {
        let text = message.text.as_str();
        Box::pin(async move {
            let n = self.sends.fetch_add(1, Ordering::SeqCst) + 1;
            let hang = *self.hang.lock().unwrap();
            if hang == Hang::BeforeSend(n) {
                self.hung.notify_one();
                std::future::pending::<()>().await;
            }
            let id = {
                let mut s = self.script.lock().unwrap();
                if s.unavailable.contains(account) {
                    return Err(SendError::AccountUnavailable("not connected".into()));
                }
                if s.rejected.contains(phone) {
                    return Err(SendError::Rejected("recipient refused".into()));
                }
                if let Some(left) = s.transient.get_mut(phone)
                    && *left > 0
                {
                    *left -= 1;
                    return Err(SendError::Transient("server timeout".into()));
                }
                let id = format!("msg{n}");
                if let Some(m) = &message.media {
                    self.media.lock().unwrap().push((
                        phone.into(),
                        m.kind.as_str().into(),
                        m.mimetype.clone(),
                        m.data.clone(),
                        text.into(),
                    ));
                }
                s.log.push((account.into(), phone.into(), text.into(), id.clone(), self.clock.now_ms()));
                id
            };
            if hang == Hang::AfterSend(n) {
                self.hung.notify_one();
                std::future::pending::<()>().await;
            }
            Ok(id)
        })
    }

    fn check_numbers<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        phones: &'a [String],
    ) -> SendFuture<'a, Vec<(String, bool)>> {
        Box::pin(async move {
            let s = self.script.lock().unwrap();
            Ok(phones.iter().map(|p| (p.clone(), !s.not_on_whatsapp.contains(p))).collect())
        })
    }

    fn find_sent<'a>(
        &'a self,
        _: &'a str,
        account: &'a str,
        phone: &'a str,
        since: i64,
        _wa_message_id: &'a str,
    ) -> SendFuture<'a, Option<String>> {
        Box::pin(async move {
            let s = self.script.lock().unwrap();
            Ok(s.log
                .iter()
                .find(|(a, p, _, _, at)| a == account && p == phone && *at >= since)
                .map(|e| e.3.clone()))
        })
    }
}

/// Ticks, advancing the clock to each next wake-up, until `done` or `max_ticks`.
async fn drive(engine: &Engine, clock: &ManualClock, max_ticks: usize, mut done: impl FnMut() -> bool) {
    for _ in 0..max_ticks {
        let next = engine.tick().await.unwrap();
        if done() {
            return;
        }
        step_clock(clock, next);
    }
    panic!("not done after {max_ticks} ticks");
}

/// Moves the clock to the engine's next due time (at least 1 ms, at most an hour).
fn step_clock(clock: &ManualClock, next: Option<i64>) {
    let now = clock.now_ms();
    clock.advance_ms(next.map_or(1_000, |t| (t - now).clamp(1, 3_600_000)));
}

/// [`drive`] until the campaign's status in the database is `completed` (read between ticks,
/// on this runtime: the PostgreSQL connection is driven by it).
async fn drive_until_complete(engine: &Engine, h: &Harness, cid: &str, max_ticks: usize) {
    for _ in 0..max_ticks {
        let next = engine.tick().await.unwrap();
        let id = cid.to_owned();
        let status: String =
            h.db.call(move |c| c.query_row("SELECT status FROM campaigns WHERE id = ?1", [id], |r| r.get(0)))
                .await
                .unwrap();
        if status == "completed" {
            return;
        }
        step_clock(&h.clock, next);
    }
    panic!("campaign {cid} not completed after {max_ticks} ticks");
}

async fn campaign(h: &Harness, key: &str, id: &str) -> Value {
    h.ok("GET", &format!("/api/v1/campaigns/{id}"), key, None).await
}

async fn all_recipients(h: &Harness, key: &str, id: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let v = h
            .ok("GET", &format!("/api/v1/campaigns/{id}/recipients?limit=1000&after={after}"), key, None)
            .await;
        out.extend(v["items"].as_array().unwrap().iter().cloned());
        match v["next_after"].as_i64() {
            Some(a) => after = a,
            None => return out,
        }
    }
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn contacts_crud_tags_fields_and_isolation() {
    let h = harness().await;
    let a = h.tenant("a").await;
    let b = h.tenant("b").await;
    let (s, v) = h
        .call(
            "POST",
            "/api/v1/contacts",
            &a,
            Some(json!({ "phone": "020 7946 0958", "default_country": "44", "name": "Ann Lee",
            "tags": ["vip", "uk"], "fields": { "city": "London" } })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["phone"], "+442079460958");
    assert_eq!(v["tags"], json!(["uk", "vip"]));
    let id = v["id"].as_str().unwrap().to_owned();
    let (s, v) = h.call("POST", "/api/v1/contacts", &a, Some(json!({ "phone": "+44 20 7946 0958" }))).await;
    assert_error(s, &v, StatusCode::CONFLICT, "contact_exists");
    let (s, v) = h.call("POST", "/api/v1/contacts", &a, Some(json!({ "phone": "7946 0958" }))).await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "invalid_phone");
    let (s, v) = h
        .call(
            "POST",
            "/api/v1/contacts",
            &a,
            Some(json!({ "phone": "+447700900123", "fields": { "Bad Key": "x" } })),
        )
        .await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "invalid_fields");
    let (s, v) = h
        .call("POST", "/api/v1/contacts", &a, Some(json!({ "phone": "+447700900123", "tags": ["a,b"] })))
        .await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "invalid_tag");

    let v = h
        .ok(
            "PATCH",
            &format!("/api/v1/contacts/{id}"),
            &a,
            Some(json!({ "tags": ["gold"], "fields": { "city": "Leeds" } })),
        )
        .await;
    assert_eq!(v["tags"], json!(["gold"]));
    assert_eq!(v["fields"]["city"], "Leeds");
    assert_eq!(v["name"], "Ann Lee");
    h.ok("POST", "/api/v1/contacts", &a, Some(json!({ "phone": "+447700900123", "tags": ["gold"] }))).await;
    h.ok("POST", "/api/v1/contacts", &a, Some(json!({ "phone": "+447700900124" }))).await;
    let v = h.ok("GET", "/api/v1/contacts?tag=gold", &a, None).await;
    assert_eq!(v["total"], 2);
    let v = h.ok("GET", "/api/v1/contacts?q=Ann", &a, None).await;
    assert_eq!(v["total"], 1);
    let v = h.ok("GET", "/api/v1/tags", &a, None).await;
    assert_eq!(v, json!([{ "tag": "gold", "contacts": 2 }]));
    let v = h.ok("POST", &format!("/api/v1/contacts/{id}/opt-out"), &a, None).await;
    assert_eq!(v["opted_out"], true);
    let v = h.ok("GET", "/api/v1/contacts?opted_out=true", &a, None).await;
    assert_eq!(v["total"], 1);
    let v = h.ok("POST", &format!("/api/v1/contacts/{id}/opt-in"), &a, None).await;
    assert_eq!(v["opted_out"], false);

    // Tenant B sees and touches nothing of A's.
    assert_eq!(h.ok("GET", "/api/v1/contacts", &b, None).await["total"], 0);
    for (m, p, body) in [
        ("GET", format!("/api/v1/contacts/{id}"), None),
        ("PATCH", format!("/api/v1/contacts/{id}"), Some(json!({ "name": "x" }))),
        ("POST", format!("/api/v1/contacts/{id}/opt-out"), None),
        ("DELETE", format!("/api/v1/contacts/{id}"), None),
    ] {
        let (s, v) = h.call(m, &p, &b, body).await;
        assert_error(s, &v, StatusCode::NOT_FOUND, "not_found");
    }
    let (s, v) = h.call("GET", "/api/v1/contacts/export", &b, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v.as_str().unwrap().lines().count(), 1, "only the header: {v}");
    assert_eq!(h.call("DELETE", &format!("/api/v1/contacts/{id}"), &a, None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(h.call("GET", &format!("/api/v1/contacts/{id}"), &a, None).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn csv_import_maps_headers_reports_rows_merges_duplicates_and_exports() {
    let h = harness().await;
    let a = h.tenant("a").await;
    h.ok(
        "POST",
        "/api/v1/contacts",
        &a,
        Some(json!({ "phone": "+447700900001", "name": "Existing", "tags": ["old"] })),
    )
    .await;
    let csv = "Mobile,Full Name,Groups,Order ID,Notes\r\n\
               07700 900001,,new,A1,\r\n\
               07700900002,\"Lee, Bo\",new;vip,A2,hello\r\n\
               not-a-number,Bad,,,\r\n\
               +33 6 12 34 56 78,Jean,,A3,\r\n\
               07700900002,Bo Lee,late,,\r\n\
               1,2,3,4,5,6\r\n";
    let v = h
        .ok(
            "POST",
            "/api/v1/contacts/import",
            &a,
            Some(json!({ "csv": csv, "default_country": "44",
            "mapping": { "phone": "Mobile", "name": "Full Name", "tags": "Groups" }, "tags": ["import1"] })),
        )
        .await;
    assert_eq!(v["rows"], 6, "{v}");
    assert_eq!(v["created"], 2, "{v}");
    assert_eq!(v["merged"], 2, "{v}");
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{v}");
    assert_eq!(errors[0]["line"], 4);
    assert!(errors[0]["error"].as_str().unwrap().contains("not-a-number"), "{v}");
    assert_eq!(errors[1]["line"], 7);

    let page = h.ok("GET", "/api/v1/contacts?limit=10", &a, None).await;
    assert_eq!(page["total"], 3);
    let by_phone: HashMap<String, Value> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["phone"].as_str().unwrap().to_owned(), c.clone()))
        .collect();
    let existing = &by_phone["+447700900001"];
    assert_eq!(existing["name"], "Existing", "an empty name never overwrites");
    assert_eq!(existing["tags"], json!(["import1", "new", "old"]));
    assert_eq!(existing["fields"]["order_id"], "A1");
    let bo = &by_phone["+447700900002"];
    assert_eq!(bo["name"], "Bo Lee", "the later row wins");
    assert_eq!(bo["tags"], json!(["import1", "late", "new", "vip"]));
    assert_eq!(bo["fields"], json!({ "order_id": "A2", "notes": "hello" }));
    assert!(by_phone.contains_key("+33612345678"));

    // Auto-detected headers; a file without a phone column is refused as a whole.
    let v = h
        .ok("POST", "/api/v1/contacts/import", &a, Some(json!({ "csv": "name,phone\nZed,+15550100999\n" })))
        .await;
    assert_eq!(v["created"], 1);
    let (s, v) =
        h.call("POST", "/api/v1/contacts/import", &a, Some(json!({ "csv": "name,city\nZed,x\n" }))).await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "invalid_mapping");
    let (s, v) =
        h.call("POST", "/api/v1/contacts/import", &a, Some(json!({ "csv": "phone\n\"+1555" }))).await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "invalid_csv");

    let (s, v) = h.call("GET", "/api/v1/contacts/export?tag=vip", &a, None).await;
    assert_eq!(s, StatusCode::OK);
    let text = v.as_str().unwrap();
    assert_eq!(
        text,
        "phone,name,tags,opted_out,notes,order_id\r\n+447700900002,Bo Lee,import1;late;new;vip,false,hello,A2\r\n"
    );
}

/// The dashboard's file picker sends the CSV as a `multipart/form-data` upload: the same import
/// (tags repeated, default country, column mapping), and a bad form is a 400, not a panic.
#[tokio::test]
async fn csv_import_takes_the_file_as_an_upload() {
    let h = harness().await;
    let a = h.tenant("a").await;
    let csv = "Mobile,Who\n07700 900001,Ann\nnot-a-number,Bad\n";
    let (ctype, body) = form(
        &[
            ("tags", "launch"),
            ("tags", "uk"),
            ("default_country", "44"),
            ("mapping_phone", "Mobile"),
            ("mapping_name", "Who"),
        ],
        Some(("people.csv", "text/csv", csv.as_bytes())),
    );
    let (s, v) = h.call_raw("POST", "/api/v1/contacts/import", &a, &ctype, body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!((v["rows"].as_u64(), v["created"].as_u64()), (Some(2), Some(1)), "{v}");
    assert_eq!(v["errors"][0]["line"], 3, "{v}");
    let page = h.ok("GET", "/api/v1/contacts?tag=uk", &a, None).await;
    assert_eq!(page["items"][0]["phone"], "+447700900001", "{page}");
    assert_eq!(page["items"][0]["name"], "Ann", "{page}");
    assert_eq!(page["items"][0]["tags"], json!(["launch", "uk"]), "{page}");

    for (fields, file, code) in [
        (vec![("tags", "x")], None, "invalid_multipart"),
        (
            vec![("colour", "red")],
            Some(("a.csv", "text/csv", &b"phone\n+15550100001\n"[..])),
            "invalid_multipart",
        ),
        (
            vec![("default_country", "44"), ("default_country", "1")],
            Some(("a.csv", "text/csv", &b"phone\n"[..])),
            "invalid_multipart",
        ),
        (vec![], Some(("a.csv", "text/csv", &b"phone\n\xff\xfe\n"[..])), "invalid_multipart"),
    ] {
        let (ctype, body) = form(&fields, file);
        let (s, v) = h.call_raw("POST", "/api/v1/contacts/import", &a, &ctype, body).await;
        assert_error(s, &v, StatusCode::BAD_REQUEST, code);
    }
    let all = h.ok("GET", "/api/v1/contacts", &a, None).await;
    assert_eq!(all["total"], 1, "refused forms store nothing: {all}");
}

#[tokio::test]
async fn stop_keyword_opts_out_and_keywords_are_configurable() {
    let h = harness().await;
    let a = h.tenant("a").await;
    let tenant: String =
        h.db.call(|c| c.query_row("SELECT id FROM tenants WHERE name = 'a'", [], |r| r.get(0)))
            .await
            .unwrap();
    let t = tenant.clone();
    let matched =
        h.db.call(move |c| broadcaster::contacts::apply_incoming_opt_out(c, &t, "+447700900009", "stop", T0))
            .await
            .unwrap();
    assert!(matched);
    let v = h.ok("GET", "/api/v1/contacts?opted_out=true", &a, None).await;
    assert_eq!(v["items"][0]["phone"], "+447700900009");
    assert_eq!(v["items"][0]["opt_out_reason"], "replied STOP");

    let (s, v) =
        h.call("PUT", "/api/v1/opt-out-keywords", &a, Some(json!({ "keywords": ["two words"] }))).await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "invalid_keywords");
    let v = h.ok("PUT", "/api/v1/opt-out-keywords", &a, Some(json!({ "keywords": ["baja", "Parar"] }))).await;
    assert_eq!(v["keywords"], json!(["BAJA", "PARAR"]));
    let t = tenant.clone();
    let (stop, baja) =
        h.db.call(move |c| {
            Ok((
                broadcaster::contacts::apply_incoming_opt_out(c, &t, "+447700900010", "STOP", T0)?,
                broadcaster::contacts::apply_incoming_opt_out(c, &t, "+447700900011", "Baja.", T0)?,
            ))
        })
        .await
        .unwrap();
    assert!(!stop && baja);
}

#[tokio::test]
async fn templates_validate_at_save_time_and_preview() {
    let h = harness().await;
    let a = h.tenant("a").await;
    let b = h.tenant("b").await;
    let (s, v) =
        h.call("POST", "/api/v1/templates", &a, Some(json!({ "name": "t", "body": "Hi {{name}}" }))).await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "missing_fallback");
    let (s, v) =
        h.call("POST", "/api/v1/templates", &a, Some(json!({ "name": "t", "body": "Hi {{coupon}}" }))).await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "unknown_variable");
    let (s, v) =
        h.call("POST", "/api/v1/templates", &a, Some(json!({ "name": "t", "body": "Hi {{name" }))).await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "invalid_template");
    let v = h
        .ok(
            "POST",
            "/api/v1/templates",
            &a,
            Some(json!({ "name": "welcome", "body": "Hi {{first_name|there}}, your code is {{code}}{{sig}}",
            "variables": [{ "name": "code" }, { "name": "sig", "fallback": "." }] })),
        )
        .await;
    let id = v["id"].as_str().unwrap().to_owned();
    let (s, v) =
        h.call("POST", "/api/v1/templates", &a, Some(json!({ "name": "welcome", "body": "x" }))).await;
    assert_error(s, &v, StatusCode::CONFLICT, "template_name_taken");

    let ct = h
        .ok("POST", "/api/v1/contacts", &a, Some(json!({ "phone": "+447700900001", "name": "Ann Lee" })))
        .await;
    let v = h
        .ok(
            "POST",
            "/api/v1/templates/preview",
            &a,
            Some(json!({ "template_id": id, "contact_id": ct["id"], "values": { "code": "1234" } })),
        )
        .await;
    assert_eq!(v["text"], "Hi Ann, your code is 1234.");
    assert_eq!(v["required"], json!(["code"]));
    let (s, v) = h.call("POST", "/api/v1/templates/preview", &a, Some(json!({ "template_id": id }))).await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "missing_variable");
    let v =
        h.ok("POST", "/api/v1/templates/preview", &a, Some(json!({ "body": "Yo {{name|friend}}" }))).await;
    assert_eq!(v["text"], "Yo Alex Sample");

    let (s, _) = h.call("GET", &format!("/api/v1/templates/{id}"), &b, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = h
        .call(
            "POST",
            "/api/v1/templates/preview",
            &b,
            Some(json!({ "template_id": id, "values": { "code": "1" } })),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let v = h
        .ok(
            "PUT",
            &format!("/api/v1/templates/{id}"),
            &a,
            Some(json!({ "name": "welcome2", "body": "Bye {{phone}}" })),
        )
        .await;
    assert_eq!(v["body"], "Bye {{phone}}");
    assert_eq!(h.ok("GET", "/api/v1/templates", &a, None).await.as_array().unwrap().len(), 1);
    assert_eq!(
        h.call("DELETE", &format!("/api/v1/templates/{id}"), &a, None).await.0,
        StatusCode::NO_CONTENT
    );
}

/// The issue's headline scenario: 5,000 contacts from CSV (2% invalid rows, 1% opted out, 1% not
/// on WhatsApp) over two accounts, with two crashes mid-campaign (one after a message reached
/// the phone but before it was recorded, one before it was sent). Every valid recipient gets
/// exactly one message and ends with the exact expected status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_recipients_two_accounts_survive_crashes_exactly_once() {
    let store = testdb::Reopenable::new().await;
    let h = harness_on(store.open().await).await;
    let key = h.tenant("a").await;
    let acc1 = h.active_account(&key, "one").await;
    let acc2 = h.active_account(&key, "two").await;
    h.ok("PATCH", &format!("/api/v1/accounts/{acc1}"), &key, Some(json!({ "daily_limit": 100000 }))).await;
    h.ok("PATCH", &format!("/api/v1/accounts/{acc2}"), &key, Some(json!({ "daily_limit": 100000 }))).await;

    let mut csv = String::from("phone,name,city\n");
    let mut valid = Vec::new();
    for i in 0..5000 {
        if i % 50 == 7 {
            csv.push_str(&format!("bad-{i},Broken,Nowhere\n"));
        } else {
            let phone = format!("+4477009{i:05}");
            csv.push_str(&format!("077009{i:05},Person {i},City{}\n", i % 7));
            valid.push(phone);
        }
    }
    let v = h
        .ok(
            "POST",
            "/api/v1/contacts/import",
            &key,
            Some(json!({ "csv": csv, "default_country": "44", "tags": ["bulk"] })),
        )
        .await;
    assert_eq!((v["rows"].as_u64(), v["created"].as_u64()), (Some(5000), Some(4900)), "{}", v["created"]);
    assert_eq!(v["errors"].as_array().unwrap().len(), 100);

    let page = h.ok("GET", "/api/v1/contacts?tag=bulk&limit=500", &key, None).await;
    let ids: Vec<String> =
        page["items"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_owned()).collect();
    let opted: HashSet<String> = valid.iter().step_by(98).cloned().collect();
    assert_eq!(opted.len(), 50);
    for p in &opted {
        let id = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| &c["phone"] == p)
            .map(|c| c["id"].as_str().unwrap().to_owned());
        match id {
            Some(id) => {
                h.ok("POST", &format!("/api/v1/contacts/{id}/opt-out"), &key, None).await;
            }
            None => {
                let tenant: String =
                    h.db.call(|c| c.query_row("SELECT id FROM tenants WHERE name = 'a'", [], |r| r.get(0)))
                        .await
                        .unwrap();
                let p = p.clone();
                h.db.call(move |c| broadcaster::contacts::apply_incoming_opt_out(c, &tenant, &p, "STOP", T0))
                    .await
                    .unwrap();
            }
        }
    }
    assert!(!ids.is_empty());
    let not_on: HashSet<String> = valid.iter().skip(49).step_by(98).cloned().collect();
    assert_eq!(not_on.len(), 50);
    assert!(opted.is_disjoint(&not_on));

    let mut sender = ScriptedSender::new(h.clock.clone());
    sender.script.lock().unwrap().not_on_whatsapp = not_on.clone();
    *sender.hang.lock().unwrap() = Hang::AfterSend(1500);

    let v = h
        .ok("POST", "/api/v1/campaigns", &key, Some(json!({ "name": "big", "body": "Hi {{first_name|there}} from {{fields.city|town}}",
            "account_ids": [acc1, acc2], "audience": { "tags": ["bulk"] }, "rate_per_minute": 600, "jitter_pct": 10,
            "check_numbers": true })))
        .await;
    assert_eq!(v["audience"]["recipients"], 4900);
    assert_eq!(v["audience"]["opted_out"], 50);
    let cid = v["campaign"]["id"].as_str().unwrap().to_owned();

    // Run 1: until the sender hangs after delivering send #1500 ("kill -9").
    let mut db = h.db.clone();
    for crash in [Hang::AfterSend(1500), Hang::BeforeSend(3000)] {
        *sender.hang.lock().unwrap() = crash;
        let engine = Engine::new(db.clone(), h.clock.clone(), sender.clone());
        loop {
            tokio::select! {
                r = engine.tick() => {
                    let next = r.unwrap();
                    let now = h.clock.now_ms();
                    h.clock.advance_ms(next.map_or(100, |t| (t - now).clamp(1, 60_000)));
                }
                _ = sender.hung.notified() => break,
            }
        }
        drop(engine);
        // Restart: a fresh database handle on the same file and a fresh engine.
        drop(db);
        db = store.open().await;
        let fresh = ScriptedSender::new(h.clock.clone());
        {
            let old = std::mem::take(&mut *sender.script.lock().unwrap());
            *fresh.script.lock().unwrap() = old;
        }
        fresh.sends.store(sender.sends.load(Ordering::SeqCst), Ordering::SeqCst);
        sender = fresh;
    }
    let engine = Engine::new(db.clone(), h.clock.clone(), sender.clone());
    let mut events = engine.subscribe();
    let status = |db: &Db| {
        let (db, cid) = (db.clone(), cid.clone());
        async move {
            db.call(move |c| {
                c.query_row("SELECT status FROM campaigns WHERE id = ?1", [cid], |r| r.get::<String>(0))
            })
            .await
            .unwrap()
        }
    };
    for _ in 0..20_000 {
        let next = engine.tick().await.unwrap();
        if status(&db).await == "completed" {
            break;
        }
        let now = h.clock.now_ms();
        h.clock.advance_ms(next.map_or(100, |t| (t - now).clamp(1, 60_000)));
    }
    assert_eq!(status(&db).await, "completed");
    let mut saw_progress = false;
    loop {
        match events.try_recv() {
            Ok(e) => saw_progress |= matches!(e, CampaignEvent::Progress { .. }),
            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => continue,
            Err(_) => break,
        }
    }
    assert!(saw_progress);

    // Exactly once per expected recipient, from both accounts.
    let log = sender.log();
    let mut per_phone: HashMap<&str, usize> = HashMap::new();
    for (_, p, _, _, _) in &log {
        *per_phone.entry(p.as_str()).or_default() += 1;
    }
    assert!(per_phone.values().all(|n| *n == 1), "someone was messaged twice");
    let expected: HashSet<&str> =
        valid.iter().filter(|p| !opted.contains(*p) && !not_on.contains(*p)).map(String::as_str).collect();
    assert_eq!(per_phone.keys().copied().collect::<HashSet<_>>(), expected);
    assert_eq!(log.len(), 4800);
    let by_acc = log.iter().filter(|e| e.0 == acc1).count();
    assert!(by_acc > 2000 && by_acc < 2800, "{by_acc}");
    let e = log.iter().find(|e| e.1 == "+447700900012").unwrap();
    assert_eq!(e.2, "Hi Person from City5");

    let h2 = Harness {
        app: h.app.clone(),
        state: h.state.clone(),
        db: db.clone(),
        clock: h.clock.clone(),
        admin: h.admin.clone(),
    };
    let c = campaign(&h2, &key, &cid).await;
    let p = &c["progress"];
    assert_eq!(
        (
            p["total"].as_i64(),
            p["sent"].as_i64(),
            p["skipped_opted_out"].as_i64(),
            p["skipped_not_on_whatsapp"].as_i64(),
            p["failed"].as_i64(),
            p["pending"].as_i64(),
            p["percent"].as_i64()
        ),
        (Some(4900), Some(4800), Some(50), Some(50), Some(0), Some(0), Some(100)),
        "{p}"
    );
    let rows = all_recipients(&h2, &key, &cid).await;
    let sent_ids: HashMap<&str, &str> = log.iter().map(|e| (e.1.as_str(), e.3.as_str())).collect();
    for r in &rows {
        let phone = r["phone"].as_str().unwrap();
        let want = if opted.contains(phone) {
            ("skipped", Some("opted_out"))
        } else if not_on.contains(phone) {
            ("skipped", Some("not_on_whatsapp"))
        } else {
            ("sent", None)
        };
        assert_eq!((r["status"].as_str().unwrap(), r["reason"].as_str()), want, "{r}");
        if want.0 == "sent" {
            assert_eq!(r["message_id"].as_str(), Some(sent_ids[phone]), "{r}");
            assert_eq!(r["attempts"], 1, "{r}");
        }
    }
}

#[tokio::test]
async fn pacing_holds_the_rate_and_the_daily_limit_resumes_next_day() {
    let h = harness().await;
    let key = h.tenant("a").await;
    let acc = h.active_account(&key, "one").await;
    h.ok("PATCH", &format!("/api/v1/accounts/{acc}"), &key, Some(json!({ "daily_limit": 40 }))).await;
    let phones: Vec<String> = (0..60).map(|i| format!("+4477009{i:05}")).collect();
    let v = h
        .ok(
            "POST",
            "/api/v1/campaigns",
            &key,
            Some(json!({ "name": "paced", "body": "hello", "account_ids": [acc],
            "audience": { "phones": phones }, "rate_per_minute": 30, "jitter_pct": 20 })),
        )
        .await;
    let cid = v["campaign"]["id"].as_str().unwrap().to_owned();
    let sender = ScriptedSender::new(h.clock.clone());
    let engine = Engine::new(h.db.clone(), h.clock.clone(), sender.clone());
    // Drive in small fixed steps so the engine, not the test, decides when to send.
    while sender.log().len() < 40 {
        engine.tick().await.unwrap();
        h.clock.advance_ms(100);
        assert!(h.clock.now_ms() < T0 + 3_600_000, "stalled");
    }
    let times: Vec<i64> = sender.log().iter().map(|e| e.4).collect();
    for w in times.windows(2) {
        let gap = w[1] - w[0];
        assert!((2000..=2500).contains(&gap), "gap {gap} ms outside 60000/30 .. +20% jitter (+1 step)");
    }
    for (i, t) in times.iter().enumerate() {
        let in_minute = times[i..].iter().take_while(|u| **u < t + 60_000).count();
        assert!(in_minute <= 30, "{in_minute} sends within a minute");
    }
    // The daily limit (40) holds for the rest of the day…
    let day_end = T0 - T0.rem_euclid(86_400_000) + 86_400_000;
    for _ in 0..50 {
        engine.tick().await.unwrap();
        h.clock.advance_ms(60_000);
        if h.clock.now_ms() >= day_end - 60_000 {
            break;
        }
    }
    assert_eq!(sender.log().len(), 40);
    let c = campaign(&h, &key, &cid).await;
    assert_eq!(c["status"], "running");
    assert!(c["status_reason"].as_str().unwrap().starts_with("daily limit reached"), "{c}");
    // …and sending resumes after the reset.
    let now = h.clock.now_ms();
    h.clock.advance_ms(day_end - now);
    drive(&engine, &h.clock, 10_000, || sender.log().len() == 60).await;
    assert!(sender.log()[40].4 >= day_end);
    engine.tick().await.unwrap();
    let c = campaign(&h, &key, &cid).await;
    assert_eq!(c["status"], "completed", "{c}");
    assert_eq!(c["status_reason"], Value::Null);
    assert_eq!(c["media"], Value::Null, "a text campaign sends no file: {c}");
}

/// The pauses a seeded engine leaves between the sends of a 30-a-minute campaign with
/// `jitter_pct` 25, driven to each send's due time exactly.
async fn jittered_gaps(seed: u64) -> Vec<i64> {
    let h = harness().await;
    let key = h.tenant("a").await;
    let acc = h.active_account(&key, "one").await;
    let phones: Vec<String> = (0..25).map(|i| format!("+4477009{i:05}")).collect();
    let v = h
        .ok(
            "POST",
            "/api/v1/campaigns",
            &key,
            Some(json!({ "name": "jittered", "body": "hello", "account_ids": [acc],
            "audience": { "phones": phones }, "rate_per_minute": 30, "jitter_pct": 25 })),
        )
        .await;
    let cid = v["campaign"]["id"].as_str().unwrap().to_owned();
    let sender = ScriptedSender::new(h.clock.clone());
    let engine = Engine::with_options(
        h.db.clone(),
        h.clock.clone(),
        sender.clone(),
        broadcaster::campaigns::engine::EngineOptions::default().jitter_seed(seed),
    );
    drive_until_complete(&engine, &h, &cid, 1_000).await;
    let times: Vec<i64> = sender.log().iter().map(|e| e.4).collect();
    assert_eq!(times.len(), 25);
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

#[tokio::test]
async fn pacing_is_jittered_within_its_documented_bounds() {
    let gaps = jittered_gaps(16).await;
    // 60000 / 30 = 2000 ms, stretched by up to 25%: 2000 to 2500 ms, never faster than the rate.
    assert!(gaps.iter().all(|g| (2000..=2500).contains(g)), "{gaps:?}");
    let distinct: HashSet<i64> = gaps.iter().copied().collect();
    assert!(distinct.len() > gaps.len() / 2, "pauses vary, not one fixed interval: {gaps:?}");
    // The seed decides them: the same seed, the same pauses; another, others.
    assert_eq!(jittered_gaps(16).await, gaps);
    assert_ne!(jittered_gaps(17).await, gaps);
}

#[tokio::test]
async fn retries_failures_opt_out_midway_and_delivery_statuses() {
    let h = harness().await;
    let key = h.tenant("a").await;
    let acc = h.active_account(&key, "one").await;
    let (ok, flaky, dead, refused, stopper) =
        ("+447700900001", "+447700900002", "+447700900003", "+447700900004", "+447700900005");
    let sender = ScriptedSender::new(h.clock.clone());
    {
        let mut s = sender.script.lock().unwrap();
        s.transient.insert(flaky.into(), 2);
        s.transient.insert(dead.into(), 99);
        s.rejected.insert(refused.into());
    }
    let v = h
        .ok("POST", "/api/v1/campaigns", &key, Some(json!({ "name": "r", "body": "code {{code}}", "variables": [{ "name": "code" }],
            "values": { "code": "42" }, "account_ids": [acc], "max_attempts": 3,
            "audience": { "phones": [ok, flaky, dead, refused, stopper, "nonsense"] }, "rate_per_minute": 60, "jitter_pct": 0 })))
        .await;
    assert_eq!(v["audience"]["recipients"], 5);
    assert_eq!(v["audience"]["errors"][0]["line"], 6);
    let cid = v["campaign"]["id"].as_str().unwrap().to_owned();
    let engine = Engine::new(h.db.clone(), h.clock.clone(), sender.clone());
    engine.tick().await.unwrap(); // sends to `ok`
    // The last recipient replies STOP before its turn.
    let tenant: String =
        h.db.call(|c| c.query_row("SELECT id FROM tenants WHERE name = 'a'", [], |r| r.get(0)))
            .await
            .unwrap();
    h.db.call(move |c| broadcaster::contacts::apply_incoming_opt_out(c, &tenant, stopper, "STOP", T0))
        .await
        .unwrap();
    drive_until_complete(&engine, &h, &cid, 1_000).await;

    let rows = all_recipients(&h, &key, &cid).await;
    let get = |p: &str| rows.iter().find(|r| r["phone"] == p).unwrap().clone();
    assert_eq!((get(ok)["status"].clone(), get(ok)["attempts"].clone()), (json!("sent"), json!(1)));
    assert_eq!((get(flaky)["status"].clone(), get(flaky)["attempts"].clone()), (json!("sent"), json!(3)));
    assert_eq!(get(dead)["status"], "failed");
    assert_eq!(get(dead)["attempts"], 3);
    assert_eq!(get(dead)["reason"], "server timeout (after 3 attempts)");
    assert_eq!(
        (get(refused)["status"].clone(), get(refused)["reason"].clone()),
        (json!("failed"), json!("recipient refused"))
    );
    assert_eq!(
        (get(stopper)["status"].clone(), get(stopper)["reason"].clone()),
        (json!("skipped"), json!("opted_out"))
    );
    assert_eq!(sender.log()[0].2, "code 42");

    // Delivery and read receipts recorded in `messages` reach the recipients.
    let sent_ok = get(ok)["message_id"].as_str().unwrap().to_owned();
    let sent_flaky = get(flaky)["message_id"].as_str().unwrap().to_owned();
    let acc2 = acc.clone();
    h.db.call(move |c| {
        for (id, status) in [(sent_ok, "read"), (sent_flaky, "delivered")] {
            c.execute(
                "INSERT INTO messages (id, tenant_id, account_id, direction, chat_jid, kind, status, created_at, updated_at, delivered_at, read_at)
                 SELECT ?1, tenant_id, id, 'outgoing', 'x@s.whatsapp.net', 'text', ?2, 1, 1, 5, CASE WHEN ?2 = 'read' THEN 6 END
                 FROM accounts WHERE id = ?3",
                broadcaster::db::params![id, status, acc2],
            )?;
        }
        Ok(())
    })
    .await
    .unwrap();
    h.clock.advance_ms(10_000);
    engine.tick().await.unwrap();
    let c = campaign(&h, &key, &cid).await;
    let p = &c["progress"];
    assert_eq!(
        (p["read"].as_i64(), p["delivered"].as_i64(), p["failed"].as_i64(), p["skipped_opted_out"].as_i64()),
        (Some(1), Some(1), Some(2), Some(1)),
        "{p}"
    );
    assert_eq!(get(ok)["status"], "sent", "snapshot taken before the sync");
    let rows = all_recipients(&h, &key, &cid).await;
    let r = rows.iter().find(|r| r["phone"] == ok).unwrap();
    assert_eq!((r["delivered_at"].as_i64(), r["read_at"].as_i64()), (Some(5), Some(6)));
}

#[tokio::test]
async fn logout_auto_pauses_with_reason_and_pause_resume_cancel_work() {
    let h = harness().await;
    let key = h.tenant("a").await;
    let other = h.tenant("b").await;
    let acc = h.active_account(&key, "Support line").await;
    let phones: Vec<String> = (0..10).map(|i| format!("+4477009{i:05}")).collect();
    let v = h
        .ok(
            "POST",
            "/api/v1/campaigns",
            &key,
            Some(json!({ "name": "c", "body": "hi", "account_ids": [acc],
            "audience": { "phones": phones }, "rate_per_minute": 60, "jitter_pct": 0 })),
        )
        .await;
    let cid = v["campaign"]["id"].as_str().unwrap().to_owned();
    let sender = ScriptedSender::new(h.clock.clone());
    let engine = Engine::new(h.db.clone(), h.clock.clone(), sender.clone());
    let mut events = engine.subscribe();
    drive(&engine, &h.clock, 100, || sender.log().len() == 3).await;

    h.set_account_state(&acc, "logged_out", Some("device removed from the phone")).await;
    h.clock.advance_ms(5_000);
    engine.tick().await.unwrap();
    let c = campaign(&h, &key, &cid).await;
    assert_eq!(c["status"], "paused");
    assert_eq!(c["status_reason"], "account Support line logged out: device removed from the phone");
    let paused_event = std::iter::from_fn(|| events.try_recv().ok()).any(|e| {
        matches!(
            e,
            CampaignEvent::Status { status: broadcaster::campaigns::engine::CampaignStatus::Paused, .. }
        )
    });
    assert!(paused_event);
    for _ in 0..5 {
        h.clock.advance_ms(5_000);
        engine.tick().await.unwrap();
    }
    assert_eq!(sender.log().len(), 3);

    // Reconnected: resume by hand; then pause, resume, cancel.
    h.set_account_state(&acc, "active", None).await;
    let (s, v) = h.call("POST", &format!("/api/v1/campaigns/{cid}/resume"), &other, None).await;
    assert_error(s, &v, StatusCode::NOT_FOUND, "not_found");
    h.ok("POST", &format!("/api/v1/campaigns/{cid}/resume"), &key, None).await;
    drive(&engine, &h.clock, 100, || sender.log().len() == 5).await;
    let v = h.ok("POST", &format!("/api/v1/campaigns/{cid}/pause"), &key, None).await;
    assert_eq!(v["status"], "paused");
    let (s, v) = h.call("POST", &format!("/api/v1/campaigns/{cid}/pause"), &key, None).await;
    assert_error(s, &v, StatusCode::CONFLICT, "invalid_campaign_state");
    for _ in 0..5 {
        h.clock.advance_ms(5_000);
        engine.tick().await.unwrap();
    }
    assert_eq!(sender.log().len(), 5);
    let (s, v) = h.call("DELETE", &format!("/api/v1/campaigns/{cid}"), &key, Some(json!({}))).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "a paused campaign may be deleted? {v}");
    // (Deleted; make another to cancel.)
    let v = h
        .ok(
            "POST",
            "/api/v1/campaigns",
            &key,
            Some(json!({ "name": "c2", "body": "hi", "account_ids": [acc],
            "audience": { "phones": ["+447700900001", "+447700900002"] }, "start": false })),
        )
        .await;
    let cid = v["campaign"]["id"].as_str().unwrap().to_owned();
    assert_eq!(v["campaign"]["status"], "draft");
    engine.tick().await.unwrap();
    assert_eq!(sender.log().len(), 5, "drafts do not send");
    let v = h.ok("POST", &format!("/api/v1/campaigns/{cid}/cancel"), &key, None).await;
    assert_eq!(v["status"], "cancelled");
    assert_eq!(v["progress"]["skipped_cancelled"], 2);
    assert_eq!(v["progress"]["percent"], 100);
    assert_eq!(h.ok("GET", "/api/v1/campaigns", &other, None).await, json!([]));
}

#[tokio::test]
async fn direct_send_and_scheduled_campaigns_use_the_engine() {
    let h = harness().await;
    let key = h.tenant("a").await;
    let acc = h.active_account(&key, "one").await;
    let tpl = h
        .ok("POST", "/api/v1/templates", &key, Some(json!({ "name": "otp", "body": "Code {{code}} for {{name|you}}", "variables": [{ "name": "code" }] })))
        .await;
    h.ok("POST", "/api/v1/contacts", &key, Some(json!({ "phone": "+447700900001", "name": "Ann" }))).await;
    let (s, v) = h
        .call(
            "POST",
            "/api/v1/broadcast/direct",
            &key,
            Some(json!({ "account_id": acc, "phone": "+447700900001", "template_id": tpl["id"] })),
        )
        .await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "missing_variable");
    let (s, v) = h
        .call(
            "POST",
            "/api/v1/broadcast/direct",
            &key,
            Some(json!({ "account_id": "acc_nope", "phone": "+447700900001", "message": "x" })),
        )
        .await;
    assert_error(s, &v, StatusCode::NOT_FOUND, "not_found");
    let v = h
        .ok(
            "POST",
            "/api/v1/broadcast/direct",
            &key,
            Some(json!({ "account_id": acc, "phone": "07700 900001", "default_country": "44",
            "template_id": tpl["id"], "values": { "code": "999" } })),
        )
        .await;
    let direct = v["campaign"]["id"].as_str().unwrap().to_owned();
    let sched = h
        .ok(
            "POST",
            "/api/v1/campaigns",
            &key,
            Some(json!({ "name": "later", "body": "later", "account_ids": [acc],
            "audience": { "phones": ["+447700900002"] }, "scheduled_at": T0 + 3_600_000 })),
        )
        .await;
    assert_eq!(sched["campaign"]["status"], "scheduled");
    let sender = ScriptedSender::new(h.clock.clone());
    let engine = Engine::new(h.db.clone(), h.clock.clone(), sender.clone());
    let next = engine.tick().await.unwrap();
    assert_eq!(sender.log().len(), 1);
    assert_eq!(sender.log()[0].2, "Code 999 for Ann");
    engine.tick().await.unwrap();
    assert_eq!(campaign(&h, &key, &direct).await["status"], "completed");
    assert!(next.is_some());
    // Nothing before the scheduled time; the engine's next wake-up leads there.
    drive(&engine, &h.clock, 100, || sender.log().len() == 2).await;
    assert!(sender.log()[1].4 >= T0 + 3_600_000);
    let list = h.ok("GET", "/api/v1/campaigns?include_direct=true", &key, None).await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(h.ok("GET", "/api/v1/campaigns", &key, None).await.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn campaign_input_is_validated() {
    let h = harness().await;
    let key = h.tenant("a").await;
    let acc = h.active_account(&key, "one").await;
    let base = json!({ "name": "c", "body": "hi", "account_ids": [acc], "audience": { "phones": ["+447700900001"] } });
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    for (body, code) in [
        (with("rate_per_minute", json!(0)), "invalid_rate"),
        (with("jitter_pct", json!(101)), "invalid_jitter"),
        (with("max_attempts", json!(11)), "invalid_max_attempts"),
        (with("account_ids", json!([])), "invalid_accounts"),
        (with("body", json!("Hi {{name}}")), "invalid_template"),
        (with("audience", json!({ "phones": ["nope"] })), "empty_audience"),
        (with("audience", json!({ "contact_ids": ["ct_missing"] })), "unknown_contact"),
        (with("template_id", json!("tpl_x")), "invalid_body"),
        (
            json!({ "name": "c", "body": "{{code}}", "variables": [{ "name": "code" }], "account_ids": [acc],
                 "audience": { "phones": ["+447700900001"] } }),
            "missing_variable",
        ),
    ] {
        let (s, v) = h.call("POST", "/api/v1/campaigns", &key, Some(body.clone())).await;
        assert_error(s, &v, StatusCode::BAD_REQUEST, code);
    }
    let (s, v) =
        h.call("POST", "/api/v1/campaigns", &key, Some(with("account_ids", json!(["acc_other"])))).await;
    assert_error(s, &v, StatusCode::NOT_FOUND, "not_found");
    let (s, v) = h.call("POST", "/api/v1/campaigns", &key, Some(with("unknown", json!(1)))).await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "invalid_body");
    let (s, v) = h.call("GET", "/api/v1/campaigns/cmp_x/recipients?status=weird", &key, None).await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "invalid_query");
    let doc = h.ok("GET", "/openapi.json", &key, None).await;
    for p in [
        "/api/v1/contacts",
        "/api/v1/contacts/import",
        "/api/v1/templates/preview",
        "/api/v1/campaigns/{id}/recipients",
        "/api/v1/broadcast/direct",
    ] {
        assert!(doc["paths"].get(p).is_some(), "openapi lacks {p}");
    }
    assert!(doc["paths"].get("/api/v1/accounts").is_some());
}

#[tokio::test]
async fn dashboard_is_served_without_a_key() {
    let h = harness().await;
    let resp = h
        .app
        .clone()
        .oneshot(Request::builder().uri("/dashboard").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(resp.headers().contains_key("content-security-policy"));
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(std::str::from_utf8(&body).unwrap().contains("/dashboard/assets/app.js"));
    // The campaigns page is a module of its own, served without a key too.
    let resp = h
        .app
        .clone()
        .oneshot(Request::builder().uri("/dashboard/assets/campaigns.js").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(std::str::from_utf8(&body).unwrap().contains("/api/v1/campaigns"));
}

// ---------------------------------------------------------------------------------------------
// The real path: the server with the WhatsApp runtime over the in-process emulator, killed and
// restarted mid-campaign.

/// A broadcaster server on its own tokio runtime (own thread), so the test can kill it like
/// `kill -9`: dropping the runtime drops every task wherever it was, mid-send included.
struct Process {
    addr: std::net::SocketAddr,
    /// The bootstrap admin key, on the first start.
    admin: Option<String>,
    /// The live bus, subscribed before the server started serving.
    events: tokio::sync::broadcast::Receiver<broadcaster::live::LiveEvent>,
    kill: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Process {
    /// `database_url`: PostgreSQL (`DATABASE_URL`); `None`: SQLite in `dir`.
    async fn start(
        dir: std::path::PathBuf,
        database_url: Option<String>,
        emu: Arc<wa_emulator::EmulatorHandle>,
    ) -> Self {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (kill_tx, kill_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt =
                tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let mut config =
                    broadcaster::config::Config::resolve(broadcaster::config::Cli::default()).unwrap();
                config.data_dir = dir;
                config.database_url =
                    database_url.map(|u| broadcaster::config::DatabaseUrl::parse(&u).unwrap());
                config.listen = "127.0.0.1:0".parse().unwrap();
                config.emulator = true;
                config.rate_limit_per_minute = 0;
                let (db, boot) = broadcaster::open_database(&config, None).await.unwrap();
                let admin = match boot {
                    Bootstrap::Generated(k) => Some(k),
                    _ => None,
                };
                let server = broadcaster::build_server_with(&config, db, Some(emu)).await.unwrap();
                let events = server.state.live.subscribe();
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                tokio::spawn(async move {
                    let _ = broadcaster::serve_with(&config, server, listener, std::future::pending()).await;
                });
                let _ = ready_tx.send((addr, admin, events));
                let _ = kill_rx.await;
            });
            rt.shutdown_background();
        });
        let (addr, admin, events) = tokio::time::timeout(harness::T, ready_rx).await.unwrap().unwrap();
        Self { addr, admin, events, kill: Some(kill_tx), thread: Some(thread) }
    }

    /// Kills the server: no graceful shutdown, no draining, sessions dropped mid-flight.
    async fn kill(mut self) {
        let _ = self.kill.take().unwrap().send(());
        let t = self.thread.take().unwrap();
        tokio::task::spawn_blocking(move || t.join().unwrap()).await.unwrap();
    }

    async fn ok(&self, method: &str, path: &str, key: &str, body: Option<Value>) -> Value {
        let (s, v) = harness::call(self.addr, method, path, key, body).await;
        assert!((200..300).contains(&s), "{method} {path}: {s} {v}");
        v
    }

    /// Waits until the campaign (as the API reports it) satisfies `done`. The pushed
    /// `campaign_progress` / `campaign_status` and `message_status_update` events are the
    /// wake-ups (those already queued are taken together, one look at the API for them all);
    /// the API is the truth, so an event missed by a lagging receiver cannot hide the end. The
    /// bound is generous: thousands of real sends on two loaded cores.
    async fn wait_campaign(&mut self, key: &str, cid: &str, what: &str, done: impl Fn(&Value) -> bool) {
        use tokio::sync::broadcast::error::{RecvError, TryRecvError};
        let path = format!("/api/v1/campaigns/{cid}");
        let mut last = self.ok("GET", &path, key, None).await;
        let wakes = |e: &broadcaster::live::LiveEvent| {
            (e.event.starts_with("campaign_") && e.data["campaign_id"] == cid)
                || e.event == "message_status_update"
        };
        let found = tokio::time::timeout(LONG, async {
            while !done(&last) {
                match self.events.recv().await {
                    Ok(e) if wakes(&e) => {}
                    Ok(_) => continue,
                    Err(RecvError::Lagged(_)) => {}
                    Err(e) => panic!("live bus closed: {e}"),
                }
                loop {
                    match self.events.try_recv() {
                        Ok(_) | Err(TryRecvError::Lagged(_)) => {}
                        Err(TryRecvError::Empty) => break,
                        Err(e) => panic!("live bus closed: {e}"),
                    }
                }
                last = self.ok("GET", &path, key, None).await;
            }
        })
        .await;
        if found.is_err() {
            panic!("timed out waiting for {what}; campaign now {last}");
        }
    }

    /// The next live event satisfying `f` (lagging behind is fine: the events wanted are
    /// the latest ones).
    async fn event(&mut self, what: &str, mut f: impl FnMut(&broadcaster::live::LiveEvent) -> bool) -> Value {
        let found = tokio::time::timeout(LONG, async {
            loop {
                match self.events.recv().await {
                    Ok(e) if f(&e) => return e.data,
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(e) => panic!("live bus closed: {e}"),
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    }
}

/// Bound for the waits of the real-path campaign (a step there takes tens of seconds).
const LONG: std::time::Duration = std::time::Duration::from_secs(300);

/// Issue #8's headline scenario on the real path: 5,000 contacts imported from CSV (2% invalid
/// rows reported), 1% opted out by replying STOP from their phones, 1% not on WhatsApp, sent by
/// the WhatsApp runtime over two accounts paired by scanning QRs in the emulator; the server is
/// killed mid-campaign and restarted on the same data directory. Every recipient ends with the
/// exact expected status, and the emulator's phones show that each reachable, opted-in
/// recipient received exactly one message (the right text) and nobody else got one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_real_sends_over_the_emulator_survive_a_kill() {
    let started = std::time::Instant::now();
    let emu = Arc::new(
        wa_emulator::Emulator::start(wa_emulator::EmulatorConfig {
            seed: Some(8),
            phone_pre_keys: 10,
            ..Default::default()
        })
        .await
        .unwrap(),
    );
    let senders = ["15550000001", "15550000002"];
    for s in senders {
        emu.create_account(s, "Shop").unwrap();
    }
    // 5,000 rows: every 50th invalid (2%); of the valid ones 1% opt out, 1% have no WhatsApp.
    let mut csv = String::from("phone,name,city\n");
    let mut valid = Vec::new();
    for i in 0..5000 {
        if i % 50 == 7 {
            csv.push_str(&format!("bad-{i},Broken,Nowhere\n"));
        } else {
            csv.push_str(&format!("077009{i:05},Person {i},City{}\n", i % 7));
            valid.push((format!("+4477009{i:05}"), format!("Hi Person from City{}", i % 7)));
        }
    }
    let opted: HashSet<String> = valid.iter().step_by(98).map(|v| v.0.clone()).collect();
    let not_on: HashSet<String> = valid.iter().skip(49).step_by(98).map(|v| v.0.clone()).collect();
    assert_eq!((opted.len(), not_on.len()), (50, 50));
    for (phone, _) in valid.iter().filter(|v| !not_on.contains(&v.0)) {
        emu.create_account(phone.trim_start_matches('+'), "Customer").unwrap();
    }
    eprintln!("emulator with {} phones ready after {:?}", valid.len() - 50 + 2, started.elapsed());

    let dir = tempfile::tempdir().unwrap();
    let db_url = if testdb::on_postgres() { Some(testdb::fresh_pg_url().await) } else { None };
    let mut server = Process::start(dir.path().to_owned(), db_url.clone(), emu.clone()).await;
    let admin = server.admin.clone().unwrap();
    let key = server.ok("POST", "/api/v1/tenants", &admin, Some(json!({ "name": "shop" }))).await["api_key"]
        ["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut accounts = Vec::new();
    for s in senders {
        let v = server
            .ok(
                "POST",
                "/api/v1/accounts",
                &key,
                Some(json!({ "name": format!("line {s}"), "phone": format!("+{s}") })),
            )
            .await;
        let acc = v["id"].as_str().unwrap().to_owned();
        server
            .ok(
                "PATCH",
                &format!("/api/v1/accounts/{acc}"),
                &key,
                Some(json!({ "daily_limit": 100000, "new_contact_limit": 100000 })),
            )
            .await;
        let v = server.ok("POST", &format!("/api/v1/accounts/{acc}/connect"), &key, None).await;
        assert_eq!(v["state"], "qr_ready", "{v}");
        // The simulated phone scans the QR.
        server.ok("POST", &format!("/api/v1/emulator/accounts/{acc}/scan"), &key, None).await;
        let a = acc.clone();
        server
            .event("account active", |e| {
                e.event == "connection_update"
                    && e.account_id.as_deref() == Some(a.as_str())
                    && e.data["state"] == "active"
            })
            .await;
        accounts.push(acc);
    }

    let v = server
        .ok(
            "POST",
            "/api/v1/contacts/import",
            &key,
            Some(json!({ "csv": csv, "default_country": "44", "tags": ["bulk"] })),
        )
        .await;
    assert_eq!((v["rows"].as_u64(), v["created"].as_u64()), (Some(5000), Some(4900)));
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 100);
    assert!(errors.iter().all(|e| e["error"].as_str().unwrap().contains("bad-")), "{v}");

    // 1% reply STOP from their phones to the first line: the real incoming opt-out path.
    let line1 = wa_binary::Jid::new(senders[0], wa_binary::Server::Pn).unwrap();
    for p in &opted {
        emu.phone(p.trim_start_matches('+')).unwrap().send_text(&line1, "STOP").unwrap();
    }
    let mut stops = 0;
    server
        .event("50 STOP replies", |e| {
            stops += usize::from(e.event == "incoming_message" && e.data["body"] == "STOP");
            stops == 50
        })
        .await;
    let v = server.ok("GET", "/api/v1/contacts?opted_out=true&limit=100", &key, None).await;
    assert_eq!(v["total"], 50, "{v}");

    let tpl = server
        .ok(
            "POST",
            "/api/v1/templates",
            &key,
            Some(json!({ "name": "hello", "body": "Hi {{first_name|there}} from {{fields.city|town}}" })),
        )
        .await;
    let v = server
        .ok(
            "POST",
            "/api/v1/campaigns",
            &key,
            Some(json!({ "name": "big", "template_id": tpl["id"], "account_ids": accounts,
                "audience": { "tags": ["bulk"] }, "rate_per_minute": 60000, "jitter_pct": 0, "check_numbers": true })),
        )
        .await;
    assert_eq!(v["audience"]["recipients"], 4900);
    assert_eq!(v["audience"]["opted_out"], 50);
    let cid = v["campaign"]["id"].as_str().unwrap().to_owned();
    let campaign_started = std::time::Instant::now();

    // Kill the server once about a third went out.
    let c = cid.clone();
    server
        .event("a third sent", |e| {
            e.event == "campaign_progress" && e.data["campaign_id"] == c.as_str() && {
                let p = &e.data["progress"];
                p["sent"].as_i64().unwrap() + p["delivered"].as_i64().unwrap() + p["read"].as_i64().unwrap()
                    >= 1600
            }
        })
        .await;
    server.kill().await;
    let before_restart = campaign_started.elapsed();

    // Restart on the same data directory: the sessions resume without pairing and the
    // campaign continues where it stopped.
    let mut server = Process::start(dir.path().to_owned(), db_url.clone(), emu.clone()).await;
    assert!(server.admin.is_none());
    server.wait_campaign(&key, &cid, "campaign completed", |v| v["status"] == "completed").await;
    let sending = campaign_started.elapsed();
    eprintln!("campaign: {before_restart:?} before the kill, completed {sending:?} after start");
    // Every reachable recipient was messaged and their phones' delivery receipts all count,
    // also those that reached the killed server before it recorded them: the server
    // acknowledges a receipt to WhatsApp only once committed, so WhatsApp delivered the rest
    // again after the restart.
    let delivered = |v: &Value| {
        let p = &v["progress"];
        p["delivered"].as_i64().unwrap_or(0) + p["read"].as_i64().unwrap_or(0)
    };
    server.wait_campaign(&key, &cid, "every message delivered", |v| delivered(v) == 4800).await;
    let v = server.ok("GET", &format!("/api/v1/campaigns/{cid}"), &key, None).await;
    let p = &v["progress"];
    eprintln!(
        "campaign: {before_restart:?} before the kill, completed {sending:?} after start; {} delivered, {} sent \
         when checked; test total {:?}",
        p["delivered"],
        p["sent"],
        started.elapsed()
    );
    assert_eq!(v["status"], "completed", "{v}");
    assert_eq!((delivered(&v), p["sent"].as_i64()), (4800, Some(0)), "{p}");
    assert_eq!(
        (
            p["total"].as_i64(),
            p["skipped_opted_out"].as_i64(),
            p["skipped_not_on_whatsapp"].as_i64(),
            p["failed"].as_i64(),
            p["pending"].as_i64(),
        ),
        (Some(4900), Some(50), Some(50), Some(0), Some(0)),
        "{p}"
    );
    let mut rows = Vec::new();
    let mut after = 0;
    loop {
        let v = server
            .ok("GET", &format!("/api/v1/campaigns/{cid}/recipients?limit=1000&after={after}"), &key, None)
            .await;
        rows.extend(v["items"].as_array().unwrap().iter().cloned());
        match v["next_after"].as_i64() {
            Some(a) => after = a,
            None => break,
        }
    }
    assert_eq!(rows.len(), 4900);
    let mut per_account: HashMap<String, usize> = HashMap::new();
    for r in &rows {
        let phone = r["phone"].as_str().unwrap();
        let want = if opted.contains(phone) {
            ("skipped", Some("opted_out"))
        } else if not_on.contains(phone) {
            ("skipped", Some("not_on_whatsapp"))
        } else {
            *per_account.entry(r["account_id"].as_str().unwrap().to_owned()).or_default() += 1;
            assert!(matches!(r["status"].as_str(), Some("delivered" | "read")), "{r}");
            assert_eq!(r["reason"].as_str(), None, "{r}");
            continue;
        };
        assert_eq!((r["status"].as_str().unwrap(), r["reason"].as_str()), want, "{r}");
    }
    assert!(per_account.values().all(|n| *n > 1000), "both lines sent: {per_account:?}");

    // What the phones got: one message each for the reachable, opted-in recipients, the right
    // text, from one of the two lines; nothing for anyone else.
    let lines: HashSet<String> =
        senders.iter().map(|s| wa_binary::Jid::new(s, wa_binary::Server::Pn).unwrap().to_string()).collect();
    for (phone, text) in valid.iter().filter(|v| !not_on.contains(&v.0)) {
        let inbox = emu.phone(phone.trim_start_matches('+')).unwrap().inbox();
        if opted.contains(phone) {
            assert!(inbox.is_empty(), "{phone} opted out but got {inbox:?}");
            continue;
        }
        // One message: a send repeated after the kill arrives under the same id, which a
        // phone shows once.
        let ids: HashSet<&str> = inbox.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids.len(), 1, "{phone} got {inbox:?}");
        for m in &inbox {
            assert!(m.error.is_none() && lines.contains(&m.chat), "{m:?}");
            assert_eq!(m.text.as_deref(), Some(text.as_str()), "{m:?}");
        }
    }
    server.kill().await;
}

// ---------------------------------------------------------------------------------------------
// Live campaign events: order on the WebSocket, the same events signed at a webhook.

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_frame(ws: &mut Ws) -> Value {
    use futures::StreamExt as _;
    tokio::time::timeout(harness::T, async {
        loop {
            let msg = ws.next().await.expect("websocket open").expect("websocket frame");
            if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
                return serde_json::from_str::<Value>(t.as_str()).unwrap();
            }
        }
    })
    .await
    .expect("a websocket frame in time")
}

/// Counts that can only grow (recipients past `pending` only move forward).
fn done_counts(p: &Value) -> [i64; 4] {
    let n = |k: &str| p[k].as_i64().unwrap();
    [
        n("sent") + n("delivered") + n("read"),
        n("failed"),
        n("skipped_opted_out") + n("skipped_not_on_whatsapp") + n("skipped_cancelled"),
        n("total") - n("pending"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_events_are_ordered_on_the_websocket_and_signed_at_webhooks() {
    let h = harness().await;
    let key = h.tenant("events").await;
    let acc = h.active_account(&key, "one").await;
    // The API (WebSocket endpoint included) on a loopback port.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = h.app.clone();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    // A webhook receiver.
    let (hook_tx, mut hook_rx) =
        tokio::sync::mpsc::unbounded_channel::<(axum::http::HeaderMap, bytes::Bytes)>();
    let hook_app = Router::new().route(
        "/hook",
        axum::routing::post(move |hd: axum::http::HeaderMap, b: bytes::Bytes| {
            let tx = hook_tx.clone();
            async move {
                let _ = tx.send((hd, b));
                StatusCode::OK
            }
        }),
    );
    let hook_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = hook_listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(hook_listener, hook_app).await.unwrap() });
    let hook = h
        .ok(
            "POST",
            "/api/v1/webhooks",
            &key,
            Some(json!({ "url": format!("http://{hook_addr}/hook"),
            "events": ["campaign_status", "campaign_progress"] })),
        )
        .await;
    let secret = hook["secret"].as_str().unwrap().to_owned();
    let url = format!("ws://{addr}/api/v1/events/ws?api_key={key}");
    let (mut ws, _) =
        tokio::time::timeout(harness::T, tokio_tungstenite::connect_async(url)).await.unwrap().unwrap();
    assert_eq!(next_frame(&mut ws).await["event"], "ready");

    // Seven recipients: one refused, one not on WhatsApp, five sent.
    let phones: Vec<String> = (0..7).map(|i| format!("+4477009100{i:02}")).collect();
    let sender = ScriptedSender::new(h.clock.clone());
    {
        let mut s = sender.script.lock().unwrap();
        s.rejected.insert(phones[2].clone());
        s.not_on_whatsapp.insert(phones[5].clone());
    }
    let v = h
        .ok(
            "POST",
            "/api/v1/campaigns",
            &key,
            Some(json!({ "name": "ev", "body": "Hi {{name|there}}",
            "account_ids": [acc], "audience": { "phones": phones }, "check_numbers": true,
            "rate_per_minute": 60, "jitter_pct": 0 })),
        )
        .await;
    let cid = v["campaign"]["id"].as_str().unwrap().to_owned();
    let engine = Engine::with_live(h.db.clone(), h.clock.clone(), sender.clone(), Some(h.state.live.clone()));
    drive_until_complete(&engine, &h, &cid, 1_000).await;
    let fin = campaign(&h, &key, &cid).await;
    assert_eq!(fin["status"], "completed", "{fin}");
    // Nothing of this campaign may follow `completed`: a marker published after another tick
    // closes the stream under test.
    h.clock.advance_ms(5_000);
    engine.tick().await.unwrap();
    let tenant: String =
        h.db.call(|c| c.query_row("SELECT id FROM tenants WHERE name = 'events'", [], |r| r.get(0)))
            .await
            .unwrap();
    h.state.live.publish(&tenant, None, "test_marker", json!({}), h.clock.now_ms());
    let mut events = Vec::new();
    loop {
        let f = next_frame(&mut ws).await;
        if f["event"] == "test_marker" {
            break;
        }
        if f["data"]["campaign_id"] == cid.as_str() {
            events.push(f);
        }
    }
    let names: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert!(names.len() >= 4, "{names:?}");
    assert_eq!(
        (names[0], events[0]["data"]["status"].as_str()),
        ("campaign_status", Some("running")),
        "{names:?}"
    );
    let last = events.last().unwrap();
    assert_eq!(
        (last["event"].as_str(), last["data"]["status"].as_str()),
        (Some("campaign_status"), Some("completed"))
    );
    assert_eq!(names.iter().filter(|n| **n == "campaign_status").count(), 2, "{names:?}");
    let progress: Vec<&Value> =
        events.iter().filter(|e| e["event"] == "campaign_progress").map(|e| &e["data"]["progress"]).collect();
    let mut prev = [0i64; 4];
    let mut prev_pending = i64::MAX;
    for p in &progress {
        let n = |k: &str| p[k].as_i64().unwrap();
        let sum = n("pending")
            + n("sent")
            + n("delivered")
            + n("read")
            + n("failed")
            + n("skipped_opted_out")
            + n("skipped_not_on_whatsapp")
            + n("skipped_cancelled");
        assert_eq!((n("total"), sum), (7, 7), "{p}");
        let now = done_counts(p);
        assert!(now.iter().zip(prev).all(|(a, b)| *a >= b), "counts went backwards: {prev:?} -> {now:?}");
        assert!(n("pending") <= prev_pending, "{p}");
        prev = now;
        prev_pending = n("pending");
    }
    // The last counts are the API's final counts (the rate window aside: time moved on since).
    let strip = |p: &Value| {
        let mut p = p.clone();
        p.as_object_mut().unwrap().remove("sent_last_minute");
        p
    };
    assert_eq!(names[names.len() - 2], "campaign_progress");
    assert_eq!(strip(progress.last().unwrap()), strip(&fin["progress"]));
    let p = &fin["progress"];
    assert_eq!(
        (
            p["sent"].as_i64(),
            p["failed"].as_i64(),
            p["skipped_not_on_whatsapp"].as_i64(),
            p["percent"].as_i64()
        ),
        (Some(5), Some(1), Some(1), Some(100)),
        "{p}"
    );

    // The webhook gets the same events, each signed.
    let worker = broadcaster::webhooks::WebhookWorker::new(
        h.db.clone(),
        h.clock.clone(),
        broadcaster::webhooks::RetryPolicy::default(),
        Arc::new(Notify::new()),
        h.state.outbound.clone(),
        h.state.secrets.clone(),
    );
    // A delivery is answered before `run_once` returns, so the receiver already has it.
    let attempted = worker.run_once().await.unwrap();
    let mut got: Vec<(String, Value)> = Vec::new();
    while let Ok((hd, body)) = hook_rx.try_recv() {
        let ts: i64 = hd["x-broadcaster-timestamp"].to_str().unwrap().parse().unwrap();
        let sig = hd["x-broadcaster-signature"].to_str().unwrap();
        assert!(broadcaster::webhooks::verify(&secret, ts, &body, sig), "bad signature");
        let v: Value = serde_json::from_slice(&body).unwrap();
        got.push((v["type"].as_str().unwrap().to_owned(), v["data"].clone()));
    }
    assert_eq!((attempted, got.len()), (events.len(), events.len()));
    let key_of = |t: &str, d: &Value| format!("{t} {d}");
    let mut want: Vec<String> =
        events.iter().map(|e| key_of(e["event"].as_str().unwrap(), &e["data"])).collect();
    let mut have: Vec<String> = got.iter().map(|(t, d)| key_of(t, d)).collect();
    want.sort();
    have.sort();
    assert_eq!(have, want);
    // And nothing more is queued for it.
    assert_eq!(worker.run_once().await.unwrap(), 0);
}

// ---------------------------------------------------------------------------------------------
// Template media

fn png(len: usize) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    v.extend((0..len.saturating_sub(8)).map(|i| (i * 31 % 251) as u8));
    v
}

fn b64(data: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, data)
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(data))
}

async fn media_rows(h: &Harness) -> i64 {
    h.db.call(|c| c.query_row("SELECT COUNT(*) FROM template_media", [], |r| r.get(0))).await.unwrap()
}

impl Harness {
    /// A request with a raw body and content type.
    async fn call_raw(
        &self,
        method: &str,
        path: &str,
        key: &str,
        ctype: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", ctype)
            .body(Body::from(body))
            .unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
}

/// The status of a media error: 413 for size, 422 for a URL the SSRF policy refuses, else 400.
fn media_status(code: &str) -> StatusCode {
    match code {
        "media_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "url_refused" => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// A multipart body with its content type.
fn form(fields: &[(&str, &str)], file: Option<(&str, &str, &[u8])>) -> (String, Vec<u8>) {
    (harness::form_type(), harness::form(fields, file))
}

#[tokio::test]
async fn template_media_is_validated_stored_previewed_and_sent_by_campaigns() {
    let h = harness_with_media(4096, false).await;
    let key = h.tenant("a").await;
    let other = h.tenant("b").await;
    let img = png(600);
    let tpl = |name: &str, media: Value| json!({ "name": name, "body": "Hi {{name|there}}, {{code}}", "variables": [{ "name": "code" }], "media": media });

    // Refused at save time, with what is wrong.
    for (media, code) in [
        (json!({ "kind": "video", "data_base64": b64(&img) }), "media_type_mismatch"),
        (
            json!({ "kind": "image", "data_base64": b64(&img), "mimetype": "audio/ogg" }),
            "media_type_mismatch",
        ),
        (
            json!({ "kind": "image", "data_base64": b64(b"%PDF-1.4 no image"), "mimetype": "image/jpeg" }),
            "media_type_mismatch",
        ),
        (json!({ "kind": "image", "data_base64": b64(&img), "mimetype": "not a type" }), "invalid_media"),
        (json!({ "kind": "image", "data_base64": b64(&png(5000)) }), "media_too_large"),
        (json!({ "kind": "image" }), "invalid_media"),
        (json!({ "kind": "image", "data_base64": "***" }), "invalid_media"),
        (json!({ "kind": "sticker", "data_base64": b64(&img) }), "invalid_media"),
        (json!({ "kind": "image", "url": "http://127.0.0.1:9/a.png" }), "url_refused"),
        (json!({ "kind": "image", "url": "http://169.254.169.254/latest/meta-data" }), "url_refused"),
        (json!({ "kind": "image", "url": "http://[::1]/a.png" }), "url_refused"),
        (json!({ "kind": "document", "url": "file:///etc/passwd" }), "url_refused"),
    ] {
        let (s, v) = h.call("POST", "/api/v1/templates", &key, Some(tpl("bad", media.clone()))).await;
        assert_error(s, &v, media_status(code), code);
    }
    assert_eq!(media_rows(&h).await, 0);
    assert_eq!(h.ok("GET", "/api/v1/templates", &key, None).await, json!([]));

    // Stored once with its metadata; shown by get, list and preview.
    let t = h
        .ok(
            "POST",
            "/api/v1/templates",
            &key,
            Some(tpl("promo", json!({ "kind": "image", "data_base64": b64(&img) }))),
        )
        .await;
    let id = t["id"].as_str().unwrap().to_owned();
    let want = json!({ "kind": "image", "mimetype": "image/png", "file_name": null, "size": 600,
        "sha256": sha256_hex(&img), "source_url": null, "caption": true });
    assert_eq!(t["media"], want);
    assert_eq!(h.ok("GET", &format!("/api/v1/templates/{id}"), &key, None).await["media"], want);
    assert_eq!(h.ok("GET", "/api/v1/templates", &key, None).await[0]["media"], want);
    let p = h
        .ok(
            "POST",
            "/api/v1/templates/preview",
            &key,
            Some(json!({ "template_id": id, "values": { "code": "7" } })),
        )
        .await;
    assert_eq!((p["text"].as_str(), &p["media"]), (Some("Hi Alex Sample, 7"), &want));
    let (s, _) = h.call("GET", &format!("/api/v1/templates/{id}"), &other, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // A PUT without `media` keeps the file; an upload replaces it (multipart), old file dropped.
    let t = h
        .ok("PUT", &format!("/api/v1/templates/{id}"), &key, Some(json!({ "name": "promo", "body": "Hello {{name|you}} {{code}}", "variables": [{ "name": "code" }] })))
        .await;
    assert_eq!(t["media"], want);
    let (ctype, body) = form(&[("kind", "image")], None);
    let (s, v) = h.call_raw("PUT", &format!("/api/v1/templates/{id}/media"), &key, &ctype, body).await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "invalid_media");
    let (ctype, body) = form(&[("kind", "video")], Some(("a.png", "image/png", &img)));
    let (s, v) = h.call_raw("PUT", &format!("/api/v1/templates/{id}/media"), &key, &ctype, body).await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "media_type_mismatch");
    let (ctype, body) = form(&[("kind", "image")], Some(("big.png", "image/png", &png(4097))));
    let (s, v) = h.call_raw("PUT", &format!("/api/v1/templates/{id}/media"), &key, &ctype, body).await;
    assert_error(s, &v, StatusCode::PAYLOAD_TOO_LARGE, "media_too_large");
    let pdf = b"%PDF-1.4 the price list".repeat(20);
    let (ctype, body) = form(&[("kind", "document")], Some(("prices.pdf", "application/pdf", &pdf)));
    let (s, v) = h.call_raw("PUT", &format!("/api/v1/templates/{id}/media"), &key, &ctype, body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["media"]["kind"].as_str(), v["media"]["file_name"].as_str(), v["media"]["mimetype"].as_str()),
        (Some("document"), Some("prices.pdf"), Some("application/pdf"))
    );
    assert_eq!(media_rows(&h).await, 1, "the replaced file is deleted");
    let (s, _) = h
        .call_raw(
            "PUT",
            &format!("/api/v1/templates/{id}/media"),
            &other,
            &ctype,
            form(&[("kind", "document")], Some(("p.pdf", "application/pdf", &pdf))).1,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Audio has no caption: the preview says the text is not sent with it.
    let ogg = [&b"OggS"[..], &[1u8; 300][..]].concat();
    let a = h
        .ok(
            "POST",
            "/api/v1/templates",
            &key,
            Some(json!({ "name": "voice", "body": "x",
        "media": { "kind": "audio", "data_base64": b64(&ogg) } })),
        )
        .await;
    assert_eq!(
        (a["media"]["mimetype"].as_str(), a["media"]["caption"].as_bool()),
        (Some("audio/ogg"), Some(false))
    );
    let aid = a["id"].as_str().unwrap().to_owned();
    let v = h.ok("DELETE", &format!("/api/v1/templates/{aid}/media"), &key, None).await;
    assert_eq!(v["media"], Value::Null);
    assert_eq!(media_rows(&h).await, 1);

    // A campaign sends the file with each recipient's caption; it keeps the file it started
    // with when the template's file changes later.
    let acc = h.active_account(&key, "one").await;
    h.ok("POST", "/api/v1/contacts", &key, Some(json!({ "phone": "+447700900001", "name": "Ann Lee" })))
        .await;
    let v = h
        .ok("POST", "/api/v1/campaigns", &key, Some(json!({ "name": "m", "template_id": id, "values": { "code": "42" },
            "account_ids": [acc], "audience": { "phones": ["+447700900001", "+447700900002"] }, "rate_per_minute": 600 })))
        .await;
    let cid = v["campaign"]["id"].as_str().unwrap().to_owned();
    let v = h
        .ok(
            "PUT",
            &format!("/api/v1/templates/{id}/media"),
            &key,
            Some(json!({ "kind": "image", "data_base64": b64(&img) })),
        )
        .await;
    assert_eq!(v["media"]["kind"], "image");
    assert_eq!(media_rows(&h).await, 2, "the campaign's file is kept while the campaign exists");
    let direct = h
        .ok(
            "POST",
            "/api/v1/broadcast/direct",
            &key,
            Some(json!({ "account_id": acc, "phone": "+447700900003",
            "template_id": id, "values": { "code": "9" } })),
        )
        .await;
    let sender = ScriptedSender::new(h.clock.clone());
    let engine = Engine::new(h.db.clone(), h.clock.clone(), sender.clone());
    drive(&engine, &h.clock, 200, || sender.log().len() == 3).await;
    let mut sent = sender.media.lock().unwrap().clone();
    sent.sort_by(|a, b| a.0.cmp(&b.0));
    let summary: Vec<(&str, &str, &str, usize, &str)> = sent
        .iter()
        .map(|(p, k, m, d, t)| (p.as_str(), k.as_str(), m.as_str(), d.len(), t.as_str()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("+447700900001", "document", "application/pdf", pdf.len(), "Hello Ann Lee 42"),
            ("+447700900002", "document", "application/pdf", pdf.len(), "Hello you 42"),
            ("+447700900003", "image", "image/png", img.len(), "Hello you 9"),
        ]
    );
    assert_eq!(sent[0].3.as_ref(), pdf.as_slice());
    assert_eq!(sent[2].3.as_ref(), img.as_slice());
    drive_until_complete(&engine, &h, &cid, 50).await;
    let _ = direct;
    // Deleting the template and the campaign drops files nobody uses.
    h.ok("DELETE", &format!("/api/v1/campaigns/{cid}"), &key, None).await;
    assert_eq!(media_rows(&h).await, 1);
}

#[tokio::test]
async fn inline_campaigns_and_direct_sends_carry_their_own_media() {
    let h = harness_with_media(4096, false).await;
    let key = h.tenant("a").await;
    let acc = h.active_account(&key, "one").await;
    let img = png(700);
    let inline = |media: Value| {
        json!({ "name": "inline", "body": "Hi {{name|there}}", "account_ids": [acc],
            "audience": { "phones": ["+447700900011", "+447700900012"] }, "rate_per_minute": 600, "media": media })
    };
    // Checked like a template's media, before anything is written.
    for (media, code) in [
        (json!({ "kind": "video", "data_base64": b64(&img) }), "media_type_mismatch"),
        (json!({ "kind": "image", "data_base64": b64(&png(5000)) }), "media_too_large"),
        (json!({ "kind": "image", "url": "http://127.0.0.1:9/a.png" }), "url_refused"),
    ] {
        let (s, v) = h.call("POST", "/api/v1/campaigns", &key, Some(inline(media))).await;
        assert_error(s, &v, media_status(code), code);
    }
    assert_eq!(media_rows(&h).await, 0);
    assert_eq!(h.ok("GET", "/api/v1/campaigns", &key, None).await, json!([]));
    // A template's campaign sends the template's file: a second one is refused.
    let t = h.ok("POST", "/api/v1/templates", &key, Some(json!({ "name": "t", "body": "Hello" }))).await;
    let (s, v) = h
        .call(
            "POST",
            "/api/v1/campaigns",
            &key,
            Some(json!({ "name": "x", "template_id": t["id"], "account_ids": [acc],
                "audience": { "phones": ["+447700900011"] }, "media": { "kind": "image", "data_base64": b64(&img) } })),
        )
        .await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "invalid_body");

    let v = h
        .ok(
            "POST",
            "/api/v1/campaigns",
            &key,
            Some(inline(json!({ "kind": "image", "data_base64": b64(&img) }))),
        )
        .await;
    let cid = v["campaign"]["id"].as_str().unwrap().to_owned();
    let want = json!({ "kind": "image", "mimetype": "image/png", "file_name": null, "size": 700,
        "sha256": sha256_hex(&img), "source_url": null, "caption": true });
    assert_eq!(v["campaign"]["media"], want);
    assert_eq!(campaign(&h, &key, &cid).await["media"], want);
    let pdf = b"%PDF-1.4 the menu".repeat(10);
    let d = h
        .ok(
            "POST",
            "/api/v1/broadcast/direct",
            &key,
            Some(json!({ "account_id": acc, "phone": "+447700900013", "message": "Our menu",
                "media": { "kind": "document", "data_base64": b64(&pdf), "file_name": "menu.pdf" } })),
        )
        .await;
    assert_eq!(d["campaign"]["media"]["file_name"], "menu.pdf");
    assert_eq!(media_rows(&h).await, 2);

    let sender = ScriptedSender::new(h.clock.clone());
    let engine = Engine::new(h.db.clone(), h.clock.clone(), sender.clone());
    drive(&engine, &h.clock, 200, || sender.log().len() == 3).await;
    let mut sent = sender.media.lock().unwrap().clone();
    sent.sort_by(|a, b| a.0.cmp(&b.0));
    let summary: Vec<(&str, &str, &str, &[u8], &str)> = sent
        .iter()
        .map(|(p, k, m, d, t)| (p.as_str(), k.as_str(), m.as_str(), d.as_ref(), t.as_str()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("+447700900011", "image", "image/png", img.as_slice(), "Hi there"),
            ("+447700900012", "image", "image/png", img.as_slice(), "Hi there"),
            ("+447700900013", "document", "application/pdf", pdf.as_slice(), "Our menu"),
        ]
    );
    drive_until_complete(&engine, &h, &cid, 50).await;
    // The file lives as long as its campaign (this scripted sender writes no history rows that
    // could still point at it).
    let direct_id = d["campaign"]["id"].as_str().unwrap().to_owned();
    drive_until_complete(&engine, &h, &direct_id, 50).await;
    h.ok("DELETE", &format!("/api/v1/campaigns/{cid}"), &key, None).await;
    assert_eq!(media_rows(&h).await, 1, "the direct send's file is still used");
    h.ok("DELETE", &format!("/api/v1/campaigns/{direct_id}"), &key, None).await;
    assert_eq!(media_rows(&h).await, 0);
}

#[tokio::test]
async fn template_media_by_url_is_fetched_once_at_save_time() {
    let h = harness_with_media(64 * 1024, true).await;
    let key = h.tenant("a").await;
    let img = png(2000);
    let fetches = Arc::new(AtomicUsize::new(0));
    let (served, count) = (img.clone(), fetches.clone());
    let app = Router::new()
        .route(
            "/files/banner.png",
            axum::routing::get(move || {
                let (data, count) = (served.clone(), count.clone());
                async move {
                    count.fetch_add(1, Ordering::SeqCst);
                    ([("content-type", "image/png")], data)
                }
            }),
        )
        .route(
            "/files/big.png",
            axum::routing::get(|| async { ([("content-type", "image/png")], png(70_000)) }),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let url = format!("http://{addr}/files/banner.png");
    let t = h
        .ok(
            "POST",
            "/api/v1/templates",
            &key,
            Some(json!({ "name": "u", "body": "hello",
            "media": { "kind": "image", "url": url } })),
        )
        .await;
    assert_eq!(t["media"]["source_url"], url.as_str());
    assert_eq!(
        (t["media"]["size"].as_u64(), t["media"]["sha256"].as_str()),
        (Some(2000), Some(sha256_hex(&img).as_str()))
    );
    let (s, v) = h
        .call(
            "POST",
            "/api/v1/templates",
            &key,
            Some(json!({ "name": "v", "body": "hello",
            "media": { "kind": "video", "url": url } })),
        )
        .await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "media_type_mismatch");
    let (s, v) = h
        .call(
            "POST",
            "/api/v1/templates",
            &key,
            Some(json!({ "name": "w", "body": "hello",
            "media": { "kind": "image", "url": format!("http://{addr}/files/big.png") } })),
        )
        .await;
    assert_error(s, &v, StatusCode::PAYLOAD_TOO_LARGE, "media_too_large");
    let (s, v) = h
        .call(
            "POST",
            "/api/v1/templates",
            &key,
            Some(json!({ "name": "x", "body": "hello",
            "media": { "kind": "image", "url": format!("http://{addr}/files/missing.png") } })),
        )
        .await;
    assert_error(s, &v, StatusCode::UNPROCESSABLE_ENTITY, "media_fetch_failed");
    // Previews and campaigns use the stored copy; the URL is not fetched again.
    h.ok("POST", "/api/v1/templates/preview", &key, Some(json!({ "template_id": t["id"] }))).await;
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

/// A receipt synced in the tick that completes the campaign: its counts go out once, before
/// `completed`, and no `campaign_progress` follows a second later.
#[tokio::test]
async fn no_progress_event_follows_completed_when_a_receipt_lands_in_the_last_tick() {
    use broadcaster::campaigns::engine::CampaignStatus;
    let h = harness().await;
    let key = h.tenant("late").await;
    let acc = h.active_account(&key, "Line").await;
    let v = h
        .ok(
            "POST",
            "/api/v1/campaigns",
            &key,
            Some(json!({ "name": "one", "body": "hi", "account_ids": [acc],
            "audience": { "phones": ["+447700900111"] }, "rate_per_minute": 60, "jitter_pct": 0 })),
        )
        .await;
    let cid = v["campaign"]["id"].as_str().unwrap().to_owned();
    let sender = ScriptedSender::new(h.clock.clone());
    let engine = Engine::new(h.db.clone(), h.clock.clone(), sender.clone());
    let mut events = engine.subscribe();
    drive(&engine, &h.clock, 100, || sender.log().len() == 1).await;
    // The phone's delivery receipt is recorded before the next tick.
    let (msg, acc2) = (sender.log()[0].3.clone(), acc.clone());
    h.db.call(move |c| {
        c.execute(
            "INSERT INTO messages (id, tenant_id, account_id, direction, chat_jid, kind, status, created_at, updated_at, delivered_at)
             SELECT ?1, tenant_id, id, 'outgoing', 'x@s.whatsapp.net', 'text', 'delivered', 1, 1, 5 FROM accounts WHERE id = ?2",
            broadcaster::db::params![msg, acc2],
        )
    })
    .await
    .unwrap();
    h.clock.advance_ms(10_000);
    engine.tick().await.unwrap();
    assert_eq!(campaign(&h, &key, &cid).await["status"], "completed");
    for _ in 0..3 {
        h.clock.advance_ms(1_000);
        engine.tick().await.unwrap();
    }
    let seen: Vec<CampaignEvent> = std::iter::from_fn(|| events.try_recv().ok()).collect();
    let done = seen
        .iter()
        .position(|e| matches!(e, CampaignEvent::Status { status: CampaignStatus::Completed, .. }))
        .expect("completed was published");
    assert_eq!(done, seen.len() - 1, "events after completed: {:?}", &seen[done..]);
    let CampaignEvent::Progress { progress, .. } = &seen[done - 1] else {
        panic!("counts before completed: {:?}", &seen[done - 1])
    };
    assert_eq!((progress.delivered, progress.pending), (1, 0), "{progress:?}");
}
