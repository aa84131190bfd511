//! Every fault of the control API, and what a connected, unmodified Baileys observes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Peer, TempDir, pair_by_qr};
use serde_json::Value;
use wa_emulator::{Emulator, EmulatorConfig, EmulatorHandle, Fault};

const ME: &str = "15551234567";
const FRIEND: &str = "15557654321";

async fn paired(label: &str) -> (EmulatorHandle, TempDir, Peer) {
    let emu = Emulator::start(EmulatorConfig { seed: Some(11), ..Default::default() }).await.unwrap();
    emu.create_account(ME, "Me").unwrap();
    emu.create_account(FRIEND, "Friend").unwrap();
    let auth = TempDir::new(label);
    let peer = pair_by_qr(&emu, ME, &auth.0).await;
    (emu, auth, peer)
}

fn status(v: &Value) -> Option<i64> {
    v["statusCode"].as_i64()
}

async fn close_code_after(label: &str, fault: impl FnOnce(&EmulatorHandle, u64)) -> (i64, Value) {
    let (emu, _auth, mut peer) = paired(label).await;
    let conn = emu.connection_of(ME, 1).unwrap();
    fault(&emu, conn);
    let v = peer.expect_close().await;
    let code = status(&v).expect("a status code");
    peer.quit().await;
    (code, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_is_seen_as_connection_closed_428() {
    let (code, _) = close_code_after("f-close", |emu, c| emu.fault_close(c).unwrap()).await;
    assert_eq!(code, 428);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_error_515_makes_baileys_restart_and_log_in_again() {
    let (emu, _auth, mut peer) = paired("f-515").await;
    let conn = emu.connection_of(ME, 1).unwrap();
    emu.fault_stream_error(conn, 515).unwrap();
    let v = peer.expect_close().await;
    assert_eq!(status(&v), Some(515));
    peer.expect_event("restart").await;
    peer.expect_open().await;
    let again = emu.connection_of(ME, 1).unwrap();
    assert_ne!(again, conn, "a new connection logged in");
    peer.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_440_is_connection_replaced() {
    let (code, _) = close_code_after("f-440", |emu, c| emu.fault_stream_error(c, 440).unwrap()).await;
    assert_eq!(code, 440);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_error_401_is_logged_out() {
    let (code, _) = close_code_after("f-401", |emu, c| emu.fault_stream_error(c, 401).unwrap()).await;
    assert_eq!(code, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_error_503_is_service_unavailable() {
    let (code, _) = close_code_after("f-503", |emu, c| emu.fault_stream_error(c, 503).unwrap()).await;
    assert_eq!(code, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_removing_the_device_logs_baileys_out() {
    let (code, _) =
        close_code_after("f-remove", |emu, _| emu.phone(ME).unwrap().remove_device(1).unwrap()).await;
    assert_eq!(code, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_frame_crashes_the_baileys_process() {
    let (emu, _auth, mut peer) = paired("f-corrupt").await;
    let conn = emu.connection_of(ME, 1).unwrap();
    let only = Some("message".to_owned());
    emu.fault_frames(conn, Fault::CorruptFrames { count: 1, only_tag: only }).unwrap();
    // Baileys decrypts frames in an async WebSocket listener; the AES-GCM failure becomes an
    // unhandled promise rejection, which terminates Node (no `connection: close` event).
    let me: wa_binary::Jid = format!("{ME}@s.whatsapp.net").parse().unwrap();
    let lost = emu.phone(FRIEND).unwrap().send_text(&me, "never readable").unwrap();
    let code = peer.expect_exit().await;
    assert_ne!(code, Some(0), "the peer process dies");
    assert!(!peer.seen.iter().any(|v| v["id"] == lost.as_str()));
    assert!(
        !peer
            .seen
            .iter()
            .any(|v| v["event"] == "connection" && v["connection"] == "close" && v["statusCode"] != 515)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_frames_lose_exactly_those_stanzas() {
    let (emu, _auth, mut peer) = paired("f-drop").await;
    let conn = emu.connection_of(ME, 1).unwrap();
    emu.fault_frames(conn, Fault::DropStanzas { count: 1, only_tag: Some("message".into()) }).unwrap();
    let friend = emu.phone(FRIEND).unwrap();
    let me: wa_binary::Jid = format!("{ME}@s.whatsapp.net").parse().unwrap();
    let lost = friend.send_text(&me, "dropped").unwrap();
    let kept = friend.send_text(&me, "delivered").unwrap();
    peer.expect("the second message", |v| v["event"] == "message" && v["id"] == kept.as_str()).await;
    assert!(!peer.seen.iter().any(|v| v["id"] == lost.as_str()), "the dropped stanza never arrives");
    peer.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_frames_arrive_late() {
    let (emu, _auth, mut peer) = paired("f-delay").await;
    let conn = emu.connection_of(ME, 1).unwrap();
    emu.fault_frames(conn, Fault::DelayFrames(Duration::from_millis(1500))).unwrap();
    let start = Instant::now();
    let id = emu
        .phone(FRIEND)
        .unwrap()
        .send_text(&format!("{ME}@s.whatsapp.net").parse().unwrap(), "slow")
        .unwrap();
    peer.expect("delayed message", |v| v["event"] == "message" && v["id"] == id.as_str()).await;
    assert!(start.elapsed() >= Duration::from_millis(1500), "arrived after {:?}", start.elapsed());
    peer.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_login_is_a_503_failure() {
    let (emu, auth, peer) = paired("f-refuse").await;
    peer.quit().await;
    emu.refuse_logins_for(600);
    let mut again = Peer::spawn(&emu, &auth.0, &[]).await;
    let v = again.expect_close().await;
    assert_eq!(status(&v), Some(503));
    again.quit().await;
    // Once logins are accepted again, the same creds log in.
    emu.refuse_logins_for(0);
    let mut third = Peer::spawn(&emu, &auth.0, &[]).await;
    third.expect_open().await;
    third.quit().await;
}
