//! The `broadcaster` binary: parse configuration, open the database, serve until Ctrl-C/SIGTERM.

use std::process::ExitCode;

use broadcaster::auth::Bootstrap;
use broadcaster::config::{Cli, Config};
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::resolve(Cli::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("broadcaster: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt().with_max_level(config.log_level).init();

    let admin_key = std::env::var("BROADCASTER_ADMIN_KEY").ok().filter(|k| !k.trim().is_empty());
    let db = match broadcaster::open_database(&config, admin_key).await {
        Ok((db, boot)) => {
            if let Bootstrap::Generated(key) = boot {
                // Printed once, to the terminal only (never through the log pipeline).
                println!("\nBootstrap admin API key (shown once, store it now):\n\n    {key}\n");
            }
            db
        }
        Err(e) => {
            eprintln!("broadcaster: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("broadcaster: cannot listen on {}: {e}", config.listen);
            return ExitCode::FAILURE;
        }
    };
    match broadcaster::serve(&config, db, listener, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("broadcaster: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
