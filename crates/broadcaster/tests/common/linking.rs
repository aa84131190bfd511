//! Linking an account through the public API against an emulator whose phone scans the QR
//! through the emulator's control API (as a person would scan it from the dashboard): for tests
//! of server processes, which have no in-process emulator to call.

// Shared by several test binaries; each uses a part.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use wa_emulator::EmulatorHandle;

use super::harness::call;
use super::ws::{Ws, next_ws, next_ws_within, open_ws};

/// How long linking may take in process-level tests: it stores the device's first 812 prekeys,
/// and the MongoDB-wire test server takes tens of seconds for that on a loaded machine.
pub const LINK_T: Duration = Duration::from_secs(300);

/// A new tenant (created with `admin`) and its account `name` for `phone`, linked by the
/// emulator's phone scanning the QR read from the server's API; returns the tenant key, the
/// account id and a live-events socket that saw the account become active.
pub async fn link_via_control(
    a: SocketAddr,
    admin: &str,
    emu: &EmulatorHandle,
    phone: &str,
    name: &str,
) -> (String, String, Ws) {
    let (s, v) =
        call(a, "POST", "/api/v1/tenants", admin, Some(json!({ "name": format!("t{phone}") }))).await;
    assert_eq!(s, 201, "{v}");
    let key = v["api_key"]["key"].as_str().unwrap().to_owned();
    let (s, v) =
        call(a, "POST", "/api/v1/accounts", &key, Some(json!({ "name": name, "phone": phone }))).await;
    assert_eq!(s, 201, "{v}");
    let acc = v["id"].as_str().unwrap().to_owned();
    let mut ws = open_ws(a, &key).await;
    let (s, v) = call(a, "POST", &format!("/api/v1/accounts/{acc}/connect"), &key, None).await;
    assert_eq!(s, 202, "{v}");
    let (_, v) = call(a, "GET", &format!("/api/v1/accounts/{acc}/qr"), &key, None).await;
    if v["qr"].as_str().is_none() {
        next_ws(&mut ws, "qr_code", |v| v["event"] == "qr_code").await;
    }
    let (s, v) = call(a, "GET", &format!("/api/v1/accounts/{acc}/qr"), &key, None).await;
    assert_eq!(s, 200, "{v}");
    let qr = v["qr"].as_str().expect("a QR").to_owned();
    let digits = phone.trim_start_matches('+');
    let control = emu.local_addr();
    let (s, v) =
        call(control, "POST", "/control/accounts", "", Some(json!({ "pn": digits, "name": "Owner" }))).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) =
        call(control, "POST", &format!("/control/phones/{digits}/scan"), "", Some(json!({ "qr": qr }))).await;
    assert_eq!(s, 200, "{v}");
    let active = |v: &Value| v["event"] == "connection_update" && v["data"]["state"] == "active";
    next_ws_within(&mut ws, LINK_T, "active after the scan", active).await;
    (key, acc, ws)
}
