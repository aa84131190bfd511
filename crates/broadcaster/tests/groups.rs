//! The groups API end to end against the in-process emulator: list, create, read, change
//! members, subject and description, invite links (get, revoke, join), leave, and WhatsApp's
//! refusals as typed API errors (404 unknown group, 403 admins only or not a member, 422 a
//! revoked link).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/harness.rs"]
mod harness;
#[path = "common/ws.rs"]
mod ws;

use harness::{Running, T, call};
use serde_json::{Value, json};
use ws::next_ws;

const ME: &str = "15550183000";
const ERIN: &str = "15550183001";
const FRANK: &str = "15550183002";

/// A tenant key and an active account linked by the emulator's phone `ME`.
async fn linked(srv: &Running) -> (String, String) {
    let a = srv.addr;
    let key = srv.tenant("groups").await;
    let (s, v) = call(
        a,
        "POST",
        "/api/v1/accounts",
        &key,
        Some(json!({ "name": "Groups", "phone": format!("+{ME}") })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let acc = v["id"].as_str().unwrap().to_owned();
    let url = format!("ws://{a}/api/v1/events/ws?api_key={key}");
    let (mut ws, _) = tokio::time::timeout(T, tokio_tungstenite::connect_async(url)).await.unwrap().unwrap();
    next_ws(&mut ws, "ready", |v| v["event"] == "ready").await;
    let (s, v) = call(a, "POST", &format!("/api/v1/accounts/{acc}/connect"), &key, None).await;
    assert_eq!(s, 202, "{v}");
    let (s, v) = call(a, "POST", &format!("/api/v1/emulator/accounts/{acc}/scan"), &key, None).await;
    assert_eq!(s, 200, "{v}");
    next_ws(&mut ws, "active", |v| v["event"] == "connection_update" && v["data"]["state"] == "active").await;
    (key, acc)
}

fn role_of(group: &Value, phone: &str) -> Option<String> {
    group["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phone"] == format!("+{phone}"))
        .map(|p| p["role"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_api_end_to_end_with_typed_refusals() {
    let srv = Running::start(183).await;
    let a = srv.addr;
    for (n, name) in [(ERIN, "Erin"), (FRANK, "Frank")] {
        srv.emu.create_account(n, name).unwrap();
    }
    let (key, acc) = linked(&srv).await;
    let base = format!("/api/v1/accounts/{acc}/groups");

    let (s, v) = call(a, "GET", &base, &key, None).await;
    assert_eq!((s, v["groups"].as_array().map(Vec::len)), (200, Some(0)), "{v}");

    // Create: we are the creator, Erin a member.
    let (s, g) = call(
        a,
        "POST",
        &base,
        &key,
        Some(json!({ "subject": "launch", "participants": [format!("+{ERIN}")] })),
    )
    .await;
    assert_eq!(s, 201, "{g}");
    let jid = g["jid"].as_str().unwrap().to_owned();
    assert!(jid.ends_with("@g.us"), "{g}");
    assert_eq!(g["subject"], "launch");
    assert_eq!(role_of(&g, ME).as_deref(), Some("superadmin"), "{g}");
    assert_eq!(role_of(&g, ERIN).as_deref(), Some("member"), "{g}");
    let (s, v) = call(a, "GET", &base, &key, None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["groups"][0]["jid"], jid.as_str(), "{v}");

    // Subject and description, each answered with the group after the change.
    let (s, v) =
        call(a, "PUT", &format!("{base}/{jid}/subject"), &key, Some(json!({ "subject": "launch day" })))
            .await;
    assert_eq!((s, v["subject"].as_str()), (200, Some("launch day")), "{v}");
    let (s, v) = call(
        a,
        "PUT",
        &format!("{base}/{jid}/description"),
        &key,
        Some(json!({ "description": "weekly sync" })),
    )
    .await;
    assert_eq!((s, v["description"].as_str()), (200, Some("weekly sync")), "{v}");
    let (s, v) = call(
        a,
        "PUT",
        &format!("{base}/{jid}/description"),
        &key,
        Some(json!({ "description": "daily sync" })),
    )
    .await;
    assert_eq!((s, v["description"].as_str()), (200, Some("daily sync")), "{v}");
    let (s, v) = call(a, "GET", &format!("{base}/{jid}"), &key, None).await;
    assert_eq!((s, v["description"].as_str()), (200, Some("daily sync")), "{v}");
    let (s, v) = call(a, "PUT", &format!("{base}/{jid}/subject"), &key, Some(json!({ "subject": "" }))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_subject")), "{v}");

    // Participants: answered one by one; a number without WhatsApp does not fail the other.
    let (s, v) = call(
        a,
        "POST",
        &format!("{base}/{jid}/participants"),
        &key,
        Some(json!({ "action": "add", "participants": [format!("+{FRANK}"), "+15559990000"] })),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let statuses: Vec<&str> =
        v["results"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["ok", "not_on_whatsapp"], "{v}");
    let (s, v) = call(
        a,
        "POST",
        &format!("{base}/{jid}/participants"),
        &key,
        Some(json!({ "action": "promote", "participants": [format!("+{FRANK}")] })),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (_, g) = call(a, "GET", &format!("{base}/{jid}"), &key, None).await;
    assert_eq!(role_of(&g, FRANK).as_deref(), Some("admin"), "{g}");
    let (s, v) = call(
        a,
        "POST",
        &format!("{base}/{jid}/participants"),
        &key,
        Some(json!({ "action": "remove", "participants": [format!("{ERIN}@s.whatsapp.net")] })),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (_, g) = call(a, "GET", &format!("{base}/{jid}"), &key, None).await;
    assert_eq!(role_of(&g, ERIN), None, "{g}");

    // Invite link: stable until revoked.
    let (s, v) = call(a, "GET", &format!("{base}/{jid}/invite-link"), &key, None).await;
    assert_eq!(s, 200, "{v}");
    let first = v["link"].as_str().unwrap().to_owned();
    assert!(first.starts_with("https://chat.whatsapp.com/"), "{v}");
    let (s, v) = call(a, "POST", &format!("{base}/{jid}/invite-link/revoke"), &key, None).await;
    assert_eq!(s, 200, "{v}");
    let second = v["link"].as_str().unwrap().to_owned();
    assert_ne!(first, second);

    // Leave; then the group is closed to us (403) and only the current link lets us back.
    let (s, v) = call(a, "POST", &format!("{base}/{jid}/leave"), &key, None).await;
    assert_eq!(s, 204, "{v}");
    let (s, v) = call(a, "GET", &format!("{base}/{jid}"), &key, None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("not_allowed_in_group")), "{v}");
    let (s, v) = call(a, "POST", &format!("{base}/join"), &key, Some(json!({ "link": first }))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (422, Some("invite_link_revoked")), "{v}");
    let (s, v) = call(a, "POST", &format!("{base}/join"), &key, Some(json!({ "link": "not a link!" }))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_invite_link")), "{v}");
    let (s, v) = call(a, "POST", &format!("{base}/join"), &key, Some(json!({ "link": second }))).await;
    assert_eq!((s, v["jid"].as_str()), (200, Some(jid.as_str())), "{v}");
    assert_eq!(role_of(&v, ME).as_deref(), Some("member"), "{v}");

    // Back as a member, not an admin: admin-only requests are refused as such.
    let (s, v) = call(a, "GET", &format!("{base}/{jid}/invite-link"), &key, None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("not_group_admin")), "{v}");
    let (s, v) = call(
        a,
        "POST",
        &format!("{base}/{jid}/participants"),
        &key,
        Some(json!({ "action": "remove", "participants": [format!("+{FRANK}")] })),
    )
    .await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("not_allowed_in_group")), "{v}");

    // A group WhatsApp does not know: 404; not a group JID: 400.
    let (s, v) = call(a, "GET", &format!("{base}/120363999999999999@g.us"), &key, None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")), "{v}");
    let (s, v) = call(a, "GET", &format!("{base}/{ERIN}@s.whatsapp.net"), &key, None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_group")), "{v}");

    // Documented.
    let (s, doc) = call(a, "GET", "/openapi.json", &key, None).await;
    assert_eq!(s, 200);
    for path in [
        "/api/v1/accounts/{id}/groups",
        "/api/v1/accounts/{id}/groups/{group}/participants",
        "/api/v1/accounts/{id}/groups/{group}/invite-link/revoke",
        "/api/v1/accounts/{id}/groups/join",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
    srv.stop().await;
}
