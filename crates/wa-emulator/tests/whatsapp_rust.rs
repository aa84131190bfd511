//! Unmodified whatsapp-rust 0.7.0 (crates.io; `tests/interop/whatsapp-rust`, built by
//! scripts/services/60-whatsapp-rust.sh) against the default emulator: pairing by QR and by code,
//! login, 1:1 texts both ways with the own phone's sent copy (DSM), groups both ways, and a
//! restart from its SQLite store. Each test starts its own emulator and its own peer process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::wa_rs::{expect_logged_in, pair_by_qr};
use common::{Peer, T, TempDir, group_both_ways, names_account, text_both_ways};
use serde_json::Value;
use wa_emulator::{Emulator, EmulatorConfig, EmulatorHandle, WorldEvent};

const ME: &str = "15551234567";
const FRIEND: &str = "15557654321";
const OTHER: &str = "15550001111";

/// The default configuration: what the real service does, nothing relaxed.
async fn emulator() -> EmulatorHandle {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    emu.create_account(ME, "Me").unwrap();
    emu.create_account(FRIEND, "Friend").unwrap();
    emu.create_account(OTHER, "Other").unwrap();
    emu
}

fn logged_in(emu: &EmulatorHandle) -> usize {
    emu.events()
        .iter()
        .filter(|e| matches!(e, WorldEvent::LoggedIn { pn, device: 1, .. } if pn == ME))
        .count()
}

/// The `connected` event names the account's phone number and its LID.
fn assert_identity(emu: &EmulatorHandle, connected: &Value) {
    let jid = connected["jid"].as_str().unwrap_or_default();
    assert!(jid.starts_with(ME) && jid.ends_with("@s.whatsapp.net"), "{connected}");
    let lid = connected["lid"].as_str().unwrap_or_default();
    assert_eq!(lid.split([':', '@']).next(), Some(emu.phone(ME).unwrap().lid().user()), "{connected}");
}

/// A 1:1 text from FRIEND's phone: chat and sender name FRIEND, by number or (once 1:1 chats
/// are LID-addressed) by LID with the number beside it.
fn assert_from_friend(emu: &EmulatorHandle, got: &Value) {
    let (chat, sender) =
        (got["chat"].as_str().unwrap_or_default(), got["sender"].as_str().unwrap_or_default());
    assert!(names_account(emu, FRIEND, chat) && names_account(emu, FRIEND, sender), "{got}");
    if sender.ends_with("@lid") {
        assert_eq!(got["sender_alt"], format!("{FRIEND}@s.whatsapp.net"), "the number beside the LID: {got}");
    }
    assert_eq!(got["from_me"], false);
    assert_eq!(got["group"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_pairing_login_and_text_both_ways_with_own_copy() {
    let emu = emulator().await;
    let store = TempDir::new("wars-qr");
    let mut peer = pair_by_qr(&emu, ME, &store.0).await;
    assert!(
        emu.events().iter().any(|e| matches!(e, WorldEvent::Paired { device_signature_valid: true, .. })),
        "whatsapp-rust's device signature verifies"
    );
    assert_eq!(emu.companions(ME).unwrap(), vec![1]);
    let connected = peer.seen.iter().find(|v| v["event"] == "connected").unwrap().clone();
    assert_identity(&emu, &connected);
    assert!(logged_in(&emu) >= 1, "the emulator saw the login");

    let got = text_both_ways(&emu, &mut peer, ME, FRIEND, "wa-rs qr").await;
    assert_from_friend(&emu, &got);
    peer.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_code_login_and_text_both_ways() {
    let emu = emulator().await;
    let store = TempDir::new("wars-code");
    let mut peer = Peer::spawn_wa_rs(&emu, &store.0).await;
    // The socket is up once the first QR is shown; whatsapp-rust then asks for a code.
    peer.expect_event("qr").await;
    peer.send(serde_json::json!({"cmd": "pair-code", "phone": ME})).await;
    let code = peer.expect("pairing code", |v| v["event"] == "pairing-code" || v["event"] == "error").await;
    assert_eq!(code["event"], "pairing-code", "{code}");
    emu.wait_for(T, |e| matches!(e, WorldEvent::PairingCodeRequested { pn, .. } if pn == ME))
        .await
        .expect("the emulator took companion_hello");
    emu.phone(ME).unwrap().enter_code(code["code"].as_str().unwrap()).unwrap();
    peer.expect_event("paired").await;
    assert_eq!(emu.companions(ME).unwrap(), vec![1]);
    expect_logged_in(&emu, ME).await;
    let connected = peer.expect_connected().await;
    assert_identity(&emu, &connected);
    let got = text_both_ways(&emu, &mut peer, ME, FRIEND, "wa-rs code").await;
    assert_from_friend(&emu, &got);
    peer.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_both_ways_with_own_copy() {
    let emu = emulator().await;
    let store = TempDir::new("wars-grp");
    let mut peer = pair_by_qr(&emu, ME, &store.0).await;
    let group = emu.create_group(FRIEND, "wa-rs group", &[ME, OTHER]).unwrap();
    let got = group_both_ways(&emu, &mut peer, &group, FRIEND, &[FRIEND, OTHER, ME], "wa-rs group").await;
    assert_eq!(got["chat"], group.to_string());
    assert_eq!(got["sender"], format!("{FRIEND}@s.whatsapp.net"), "{got}");
    assert_eq!(got["group"], true);
    // A second sender, and a second message from the peer (its sender key is already out).
    group_both_ways(&emu, &mut peer, &group, OTHER, &[FRIEND, OTHER, ME], "wa-rs group again").await;
    peer.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lid_group_both_ways_with_own_copy() {
    let emu = emulator().await;
    let store = TempDir::new("wars-lidgrp");
    let mut peer = pair_by_qr(&emu, ME, &store.0).await;
    let group = emu.create_lid_group(FRIEND, "wa-rs LID group", &[ME, OTHER]).unwrap();
    let got = group_both_ways(&emu, &mut peer, &group, FRIEND, &[FRIEND, OTHER, ME], "wa-rs LID group").await;
    assert_eq!(got["sender"], emu.phone(FRIEND).unwrap().lid().to_string(), "named by LID: {got}");
    assert_eq!(got["sender_alt"], format!("{FRIEND}@s.whatsapp.net"), "with its number beside it: {got}");
    peer.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_from_store_logs_in_and_exchanges() {
    let emu = emulator().await;
    let store = TempDir::new("wars-restart");
    let mut peer = pair_by_qr(&emu, ME, &store.0).await;
    text_both_ways(&emu, &mut peer, ME, FRIEND, "wa-rs before restart").await;
    peer.quit().await;
    let logins_before = logged_in(&emu);

    // The same store: whatsapp-rust logs in as the paired device, without a QR.
    let earlier: Vec<_> = emu
        .events()
        .iter()
        .filter_map(|e| match e {
            WorldEvent::LoggedIn { conn, .. } => Some(*conn),
            _ => None,
        })
        .collect();
    let mut again = Peer::spawn_wa_rs(&emu, &store.0).await;
    // The login itself (by Noise IK with the cached server key), then the post-login start-up.
    emu.wait_for(
        T,
        |e| matches!(e, WorldEvent::LoggedIn { pn, device: 1, conn } if pn == ME && !earlier.contains(conn)),
    )
    .await
    .unwrap_or_else(|| panic!("the restarted peer never logged in; saw {:#?}", emu.events()));
    let connected = again.expect_connected().await;
    assert!(!again.seen.iter().any(|v| v["event"] == "qr"), "a paired device shows no QR: {:#?}", again.seen);
    assert_identity(&emu, &connected);
    assert!(logged_in(&emu) > logins_before, "device 1 logged in again");
    assert_eq!(emu.companions(ME).unwrap(), vec![1], "no new pairing");
    let got = text_both_ways(&emu, &mut again, ME, FRIEND, "wa-rs after restart").await;
    assert_from_friend(&emu, &got);
    let group = emu.create_group(FRIEND, "after restart", &[ME, OTHER]).unwrap();
    group_both_ways(&emu, &mut again, &group, OTHER, &[FRIEND, OTHER, ME], "wa-rs group after restart").await;
    again.quit().await;
}
