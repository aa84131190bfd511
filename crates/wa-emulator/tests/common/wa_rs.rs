//! Drives `tests/interop/whatsapp-rust` (`wa-rs-peer`: crates.io whatsapp-rust 0.7.0, unmodified)
//! as a child process over the same JSON lines as the Baileys peer.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tokio::process::Command;
use wa_emulator::{EmulatorHandle, WorldEvent};

use super::{Peer, T};

/// The peer binary: `WA_RS_PEER_BIN` (exported by scripts/services/60-whatsapp-rust.sh), else
/// where that script builds it. Missing, the test fails with the command that builds it.
pub fn wa_rs_peer_bin() -> PathBuf {
    let bin = std::env::var_os("WA_RS_PEER_BIN").map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/wa-rs-peer/debug/wa-rs-peer")
    });
    assert!(
        bin.is_file(),
        "the whatsapp-rust test peer is not built ({}): `bash scripts/services/60-whatsapp-rust.sh` \
         builds it and prints its path (export it as WA_RS_PEER_BIN); scripts/test does both",
        bin.display()
    );
    bin
}

impl Peer {
    /// Starts whatsapp-rust with its SqliteStore in `store` (kept across runs: a second spawn on
    /// the same directory logs in without pairing). It trusts exactly the emulator's media CA.
    pub async fn spawn_wa_rs(emu: &EmulatorHandle, store: &Path) -> Peer {
        let mut cmd = Command::new(wa_rs_peer_bin());
        cmd.args(["--url", &emu.ws_url(), "--store"]).arg(store);
        // whatsapp-rust picks its WhatsApp Web version from https://web.whatsapp.com/sw.js (a
        // fixed URL, `src/version.rs`, cached 24 h) unless `BotBuilder::with_version` sets it,
        // as a user without that fetch does. The peer has no internet, so it is told the current
        // version: the one this project ships, which the emulator takes as current.
        let [a, b, c] = wa_noise::payload::DEFAULT_APP_VERSION;
        cmd.args(["--version", &format!("{a}.{b}.{c}")]);
        if let Some(ca) = emu.media_ca_pem() {
            let path = store.join("emulator-media-ca.pem");
            std::fs::write(&path, ca).unwrap();
            cmd.arg("--media-ca").arg(path);
        }
        if let Ok(level) = std::env::var("WA_PEER_LOG") {
            cmd.args(["--log", &level]);
        }
        Peer::start(cmd)
    }

    /// whatsapp-rust's `Connected`: logged in and through its post-login start-up.
    pub async fn expect_connected(&mut self) -> Value {
        self.expect("connected", |v| v["event"] == "connected").await
    }
}

/// Pairs a fresh whatsapp-rust by QR through the phone of `pn`; returns once it is connected.
/// Each step is checked in order (paired, logged in, `Connected`), so a failure names the first
/// step that did not happen.
pub async fn pair_by_qr(emu: &EmulatorHandle, pn: &str, store: &Path) -> Peer {
    let mut peer = Peer::spawn_wa_rs(emu, store).await;
    let qr = peer.expect_event("qr").await;
    emu.phone(pn).unwrap().scan(qr["qr"].as_str().unwrap()).unwrap();
    peer.expect_event("paired").await;
    expect_logged_in(emu, pn).await;
    peer.expect_connected().await;
    peer
}

/// The emulator accepted a login of a companion of `pn` (the step before whatsapp-rust's
/// post-login start-up and its `Connected`).
pub async fn expect_logged_in(emu: &EmulatorHandle, pn: &str) {
    emu.wait_for(T, |e| matches!(e, WorldEvent::LoggedIn { pn: p, device, .. } if p == pn && *device != 0))
        .await
        .unwrap_or_else(|| panic!("no companion of {pn} logged in; events {:#?}", emu.events()));
}
