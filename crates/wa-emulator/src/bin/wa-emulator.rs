//! `wa-emulator --listen 127.0.0.1:PORT [--seed N] [--account PN[:NAME]]... [--media-ca FILE]
//! [--plain-media] [--min-client-version X.Y.Z]`: runs the emulator until interrupted, printing
//! the WebSocket URL, the root public key, the control URL, the `sw.js` URL (where clients fetch
//! the current version), the HTTPS media URL and the file holding the media test CA (give it to
//! Node clients as `NODE_EXTRA_CA_CERTS`).

use std::net::SocketAddr;

use wa_emulator::{Emulator, EmulatorConfig};

fn usage() -> ! {
    eprintln!(
        "usage: wa-emulator [--listen 127.0.0.1:PORT] [--seed N] [--account PN[:NAME]]... \
         [--media-ca FILE] [--plain-media] [--min-client-version X.Y.Z]"
    );
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let mut config = EmulatorConfig::default();
    let mut accounts = Vec::new();
    let mut ca_file = None;
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
            "--media-ca" => match args.next() {
                Some(v) => ca_file = Some(std::path::PathBuf::from(v)),
                None => usage(),
            },
            "--plain-media" => config.media_tls = false,
            "--min-client-version" => match args.next().map(|v| wa_noise::payload::parse_app_version(&v)) {
                Some(Ok(v)) => config.min_client_version = v,
                Some(Err(e)) => {
                    eprintln!("wa-emulator: --min-client-version: {e}");
                    std::process::exit(2);
                }
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
    println!("sw_js_url={}", emu.sw_js_url());
    println!("min_client_version={}", wa_noise::payload::format_app_version(emu.min_client_version()));
    if let (Some(url), Some(pem)) = (emu.media_url(), emu.media_ca_pem()) {
        let path = ca_file.unwrap_or_else(|| {
            std::env::temp_dir().join(format!("wa-emulator-media-ca-{}.pem", emu.local_addr().port()))
        });
        if let Err(e) = std::fs::write(&path, pem) {
            eprintln!("wa-emulator: cannot write the media CA to {}: {e}", path.display());
            std::process::exit(1);
        }
        println!("media_url={url}");
        println!("media_ca_file={}", path.display());
    }
    let _ = tokio::signal::ctrl_c().await;
}
