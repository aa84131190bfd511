//! Unmodified Baileys 7.0.0-rc14 against the emulator: pairing, login, messaging, groups,
//! faults. Each test starts its own emulator and its own Baileys process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Peer, TempDir, pair_by_qr};
use serde_json::json;
use wa_emulator::{Emulator, EmulatorConfig};

const ME: &str = "15551234567";
const FRIEND: &str = "15557654321";
const OTHER: &str = "15550001111";

async fn emulator() -> wa_emulator::EmulatorHandle {
    let emu = Emulator::start(EmulatorConfig { seed: Some(7), ..Default::default() }).await.unwrap();
    emu.create_account(ME, "Me").unwrap();
    emu.create_account(FRIEND, "Friend").unwrap();
    emu.create_account(OTHER, "Other").unwrap();
    emu
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_pairing_login_restart_and_text_both_ways() {
    let emu = emulator().await;
    let auth = TempDir::new("qr");
    let mut peer = pair_by_qr(&emu, ME, &auth.0).await;
    assert_eq!(emu.companions(ME).unwrap(), vec![1]);
    assert!(emu.events().iter().any(|e| matches!(e, wa_emulator::WorldEvent::Paired { device_signature_valid: true, .. })));

    // A simulated phone sends a text; Baileys decrypts it and answers.
    let friend = emu.phone(FRIEND).unwrap();
    let me_jid = format!("{ME}@s.whatsapp.net");
    let id = friend.send_text(&me_jid.parse().unwrap(), "hello from the phone").unwrap();
    let m = peer.expect("message from friend", |v| v["event"] == "message" && v["id"] == id.as_str()).await;
    assert_eq!(m["text"], "hello from the phone");
    assert_eq!(m["from"], format!("{FRIEND}@s.whatsapp.net"));

    peer.send_text(&format!("{FRIEND}@s.whatsapp.net"), "hi phone, got it").await;
    let got = friend
        .wait_message(common::T, |m| m.text.as_deref() == Some("hi phone, got it"))
        .await
        .expect("the friend's phone decrypts Baileys' reply");
    assert_eq!(got.chat, me_jid);
    // Our own phone got the DSM copy of the reply.
    let own = emu.phone(ME).unwrap();
    own.wait_message(common::T, |m| m.text.as_deref() == Some("hi phone, got it")).await.expect("own phone gets the sent copy");
    peer.quit().await;

    // Restart: the saved creds log in without pairing.
    let mut again = Peer::spawn(&emu, &auth.0, &[]).await;
    again.expect_open().await;
    assert!(!again.seen.iter().any(|v| v["event"] == "qr"), "a paired device must not get a QR again");
    again.send(json!({"cmd": "quit"})).await;
}
