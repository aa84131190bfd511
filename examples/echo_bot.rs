//! Echo every text message back to its chat.
//!
//! ```text
//! cargo run --example echo_bot -- [--db wa.db]   # pairs by QR on first run, then logs in
//! cargo run --example echo_bot -- --emulator     # offline demo: a simulated contact says hi
//! ```

use std::time::Duration;

use wa::client::{Client, Event};
use wa::emulator::{Emulator, EmulatorConfig};
use wa::store::{DeviceId, Store};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let use_emulator = args.iter().any(|a| a == "--emulator");
    let db = args.iter().position(|a| a == "--db").and_then(|i| args.get(i + 1)).cloned();

    let emulator = if use_emulator {
        let emu = Emulator::start(EmulatorConfig::default()).await?;
        emu.create_account("15550000001", "Bot owner")?;
        emu.create_account("15550000002", "Friend")?;
        Some(emu)
    } else {
        None
    };
    let db_path = db.unwrap_or_else(|| {
        if emulator.is_some() {
            std::env::temp_dir().join(format!("wa-echo-{}.db", std::process::id())).display().to_string()
        } else {
            "wa.db".into()
        }
    });
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

    while let Some(event) = events.recv().await {
        match event {
            Event::Qr(qr) => {
                println!("{}", qr.to_terminal()?);
                if let Some(emu) = &emulator {
                    emu.phone("15550000001")?.scan(&qr.text)?;
                }
            }
            Event::Connected { jid, .. } => {
                println!("echo bot running as {jid}");
                if let Some(emu) = &emulator {
                    let friend = emu.phone("15550000002")?;
                    friend.send_text(&jid.to_non_ad(), "hi bot")?;
                }
            }
            Event::Message(m) if !m.info.from_me => {
                if let Some(text) = m.text() {
                    println!("{} says {text:?}", m.info.sender);
                    let sent = client.send_text(&m.info.chat, text).await?;
                    println!("echoed as {}", sent.id);
                    if let Some(emu) = &emulator {
                        let friend = emu.phone("15550000002")?;
                        let echo = friend.wait_message(Duration::from_secs(10), |r| r.id == sent.id).await;
                        println!("friend got the echo: {:?}", echo.and_then(|e| e.text));
                        break;
                    }
                }
            }
            Event::Disconnected { reason, reconnect_in: None } => {
                println!("stopped: {reason:?}");
                break;
            }
            _ => {}
        }
    }
    client.disconnect().await;
    Ok(())
}
