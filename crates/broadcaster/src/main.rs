//! The `broadcaster` binary: parse configuration, open the database, serve until Ctrl-C/SIGTERM.

use std::process::ExitCode;

use broadcaster::AdminKeyNotice;
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
    // Each session holds a socket: the soft limit a shell hands down (often 1,024) is far
    // below what thousands of accounts need.
    match broadcaster::open_files::raise_to_hard() {
        Ok(l) => tracing::info!(
            before = l.before,
            soft = l.soft,
            hard = l.hard,
            "open-file limit raised to the hard limit"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit; keeping the inherited one"),
    }

    let admin_key = std::env::var("BROADCASTER_ADMIN_KEY").ok().filter(|k| !k.trim().is_empty());
    let (db, admin_notice) = match broadcaster::open_database(&config, admin_key).await {
        Ok((db, boot)) => {
            let notice = match boot {
                Bootstrap::Generated(key) => {
                    let file = match broadcaster::write_admin_key_file(&config.data_dir, &key) {
                        Ok(p) => Some(p),
                        Err(e) => {
                            eprintln!("broadcaster: cannot save the admin key in the data dir: {e}");
                            None
                        }
                    };
                    AdminKeyNotice::Generated { key, file }
                }
                _ => {
                    let f = config.data_dir.join(broadcaster::ADMIN_KEY_FILE);
                    AdminKeyNotice::Existing { file: f.exists().then_some(f) }
                }
            };
            (db, notice)
        }
        Err(e) => {
            eprintln!("broadcaster: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The master key step runs before the port opens: a wrong key stops the start here.
    let server = match broadcaster::build_server(&config, db).await {
        Ok(s) => s,
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
    // To the terminal only (never through the log pipeline): the key is a secret.
    if let Ok(addr) = listener.local_addr() {
        let (source, id) = &server.master_key;
        println!(
            "{}{}",
            broadcaster::start_banner(addr, &admin_notice),
            broadcaster::master_key_banner(source, id)
        );
    }
    match broadcaster::serve_with(&config, server, listener, shutdown_signal()).await {
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
