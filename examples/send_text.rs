//! Send one text message from an already paired account (see `pair_qr`).
//!
//! ```text
//! cargo run --example send_text -- --db wa.db 15551234567 "hello"
//! ```

use std::time::Duration;

use wa::client::{Client, Event, Jid};
use wa::store::{DeviceId, Store};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let db = match args.iter().position(|a| a == "--db") {
        Some(i) if i + 1 < args.len() => {
            let p = args.remove(i + 1);
            args.remove(i);
            p
        }
        _ => "wa.db".into(),
    };
    let (Some(to), Some(text)) = (args.first(), args.get(1)) else {
        return Err("usage: send_text [--db FILE] <phone number or JID> <text>".into());
    };
    let to: Jid = if to.contains('@') { to.parse()? } else { Jid::pn(to)? };
    let store = Store::open_sqlite(&db, Default::default()).await?;
    let client = Client::builder().store(store.device(&DeviceId::new("default")?)).build()?;
    let mut events = client.events();
    client.connect().await?;
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(e) = events.recv().await {
            match e {
                Event::Connected { .. } => return Ok(()),
                Event::Qr(_) => return Err("this account is not paired; run the pair_qr example first"),
                Event::Disconnected { reconnect_in: None, .. } => return Err("could not log in"),
                _ => {}
            }
        }
        Err("client stopped")
    })
    .await
    .map_err(|_| "timed out logging in")??;
    let sent = client.send_text(&to, text).await?;
    println!("sent {} at {}", sent.id, sent.timestamp);
    client.disconnect().await;
    Ok(())
}
