//! Pair this device by QR code and print our own JID.
//!
//! ```text
//! cargo run --example pair_qr -- [--db wa.db]      # real WhatsApp: scan the QR with your phone
//! cargo run --example pair_qr -- --emulator        # offline: an in-process emulator and phone
//! ```
//! With `--emulator` an emulator starts on a loopback port and a simulated phone scans the QR,
//! so the whole flow (QR, pair-success, 515 restart, login) runs in seconds without a network.

use std::time::Duration;

use wa::client::{Client, Event};
use wa::emulator::{Emulator, EmulatorConfig};
use wa::store::{DeviceId, Store};

const DEMO_PHONE: &str = "15550000001";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let use_emulator = args.iter().any(|a| a == "--emulator");
    let db = args.iter().position(|a| a == "--db").and_then(|i| args.get(i + 1)).cloned();

    let emulator = if use_emulator {
        let emu = Emulator::start(EmulatorConfig::default()).await?;
        emu.create_account(DEMO_PHONE, "Demo phone")?;
        println!("emulator listening on {}", emu.ws_url());
        Some(emu)
    } else {
        None
    };
    let tmp = std::env::temp_dir().join(format!("wa-pair-qr-{}.db", std::process::id()));
    let db_path = match (&db, &emulator) {
        (Some(p), _) => std::path::PathBuf::from(p),
        (None, Some(_)) => tmp.clone(),
        (None, None) => std::path::PathBuf::from("wa.db"),
    };
    let store = Store::open_sqlite(&db_path, Default::default()).await?;
    // No push name: the account keeps the name its owner chose on the phone.
    let mut builder = Client::builder().store(store.device(&DeviceId::new("default")?));
    match &emulator {
        Some(emu) => builder = builder.url(emu.ws_url()).root_key(emu.root_public_key()),
        // WhatsApp refuses a stale WhatsApp Web version with 405: report the current one.
        None => builder = builder.fetch_version(wa::client::VersionFetcher::new()),
    }
    let client = builder.build()?;
    let mut events = client.events();
    client.connect().await?;

    let outcome =
        tokio::time::timeout(Duration::from_secs(if emulator.is_some() { 30 } else { 300 }), async {
            while let Some(event) = events.recv().await {
                match event {
                    Event::Qr(qr) => {
                        println!("Scan this QR code with WhatsApp (Linked devices → Link a device):");
                        println!("{}", qr.to_terminal()?);
                        if let Some(emu) = &emulator {
                            emu.phone(DEMO_PHONE)?.scan(&qr.text)?;
                            println!("(the emulator's phone scanned it)");
                        }
                    }
                    Event::PairSuccess { jid, platform, .. } => {
                        println!("paired with a {platform} phone as {jid}")
                    }
                    Event::PairError { error } => return Err(format!("pairing refused: {error}").into()),
                    Event::Connected { jid, lid } => {
                        println!(
                            "logged in as {jid}{}",
                            lid.map(|l| format!(" (LID {l})")).unwrap_or_default()
                        );
                        return Ok(());
                    }
                    Event::Disconnected { reason, reconnect_in: None } => {
                        return Err(format!("stopped: {reason:?}").into());
                    }
                    _ => {}
                }
            }
            Err::<(), Box<dyn std::error::Error>>("client stopped".into())
        })
        .await;
    client.disconnect().await;
    if emulator.is_some() && db.is_none() {
        let _ = std::fs::remove_file(&tmp);
    }
    match outcome {
        Ok(r) => r,
        Err(_) => Err("timed out".into()),
    }
}
