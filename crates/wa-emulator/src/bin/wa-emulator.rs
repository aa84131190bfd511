//! `wa-emulator --listen 127.0.0.1:PORT [--seed N] [--account PN[:NAME]]...`: runs the
//! emulator until interrupted, printing the WebSocket URL, the root public key and the
//! control URL.

use std::net::SocketAddr;

use wa_emulator::{Emulator, EmulatorConfig};

fn usage() -> ! {
    eprintln!("usage: wa-emulator [--listen 127.0.0.1:PORT] [--seed N] [--account PN[:NAME]]...");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let mut config = EmulatorConfig::default();
    let mut accounts = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => match args.next().and_then(|v| v.parse::<SocketAddr>().ok()) {
                Some(addr) => config.listen = addr,
                None => usage(),
            },
            "--seed" => match args.next().and_then(|v| v.parse().ok()) {
                Some(s) => config.seed = Some(s),
                None => usage(),
            },
            "--account" => match args.next() {
                Some(v) => accounts.push(v),
                None => usage(),
            },
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    let emu = match Emulator::start(config).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("wa-emulator: cannot listen: {e}");
            std::process::exit(1);
        }
    };
    for a in accounts {
        let (pn, name) = a.split_once(':').unwrap_or((a.as_str(), "Emulated phone"));
        if let Err(e) = emu.create_account(pn, name) {
            eprintln!("wa-emulator: --account {a}: {e}");
            std::process::exit(2);
        }
    }
    println!("ws_url={}", emu.ws_url());
    println!("root_public_key={}", emu.root_public_key_hex());
    println!("control_url={}", emu.control_url());
    let _ = tokio::signal::ctrl_c().await;
}
