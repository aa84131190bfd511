//! The dashboard in a real browser: starts the server in emulator mode on a loopback port (temp
//! data dir, known admin key) and runs `tests/browser/walk.mjs`, which drives headless Chromium
//! (Debian's `chromium`, through npm `playwright-core`) the way a new user would: first run
//! (every page's empty state) → the API key → the first account → its QR scanned by the
//! simulated phone → a chat with a contact's phone (an image both ways with thumbnails, a
//! reaction and a quoted reply from the phone drawn on their message) → CSV file upload →
//! template edit with live preview → campaign wizard to completion with its chart → a campaign
//! paused by a reach-out time-lock (the emulator's control API) and resumed → webhook create,
//! edit, delivery log and replay → every page again at 375 px → the API docs. Every page is
//! checked at both widths for sideways spill and with axe-core (no serious or critical
//! violation); any console error, failed request or request leaving the server fails the walk.
//! It opens the dashboard and the docs at the URLs the start banner prints. Screenshots of every
//! step are kept as artefacts.
//!
//! `scripts/services/40-browser.sh` installs them (`npm ci` of `tests/browser`) and exports
//! `BROADCASTER_CHROMIUM` and `BROADCASTER_BROWSER_DIR`; without them this test fails (it never
//! skips).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use broadcaster::config::{Cli, Config};
use tokio::sync::oneshot;

/// The whole walk (with an accessibility check per page) normally takes a minute or two; CI
/// runs on two loaded cores.
const WALK_TIMEOUT: Duration = Duration::from_secs(420);

fn browser_dir() -> PathBuf {
    std::env::var_os("BROADCASTER_BROWSER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser"))
}

fn chromium() -> PathBuf {
    let path = std::env::var_os("BROADCASTER_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.is_file(),
        "no Chromium at {} (set BROADCASTER_CHROMIUM; scripts/services/40-browser.sh installs Debian's chromium)",
        path.display()
    );
    path
}

fn artifacts() -> PathBuf {
    std::env::var_os("BROADCASTER_BROWSER_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser-artifacts"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_walk_in_headless_chromium() {
    let chromium = chromium();
    let dir = browser_dir();
    assert!(
        dir.join("node_modules/playwright-core/package.json").is_file()
            && dir.join("node_modules/axe-core/axe.min.js").is_file(),
        "playwright-core and axe-core are not installed in {} (run `npm ci` there; scripts/services/40-browser.sh does)",
        dir.display()
    );
    let artifacts = artifacts();
    // Screenshots of an earlier run must not pass for this one's.
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts).unwrap();

    let data = tempfile::tempdir().unwrap();
    let mut config = Config::resolve(Cli::default()).unwrap();
    config.data_dir = data.path().to_owned();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.emulator = true;
    config.shutdown_timeout = Duration::from_secs(20);
    config.webhook.base_delay_ms = 200;
    // The test's webhook receiver listens on loopback.
    config.outbound.test_loopback = broadcaster::outbound::TestLoopback::AnyPort;
    config.webhook.max_delay_ms = 1000;
    let key = format!("bk_browser_test_{}", std::process::id());
    let (db, _) = broadcaster::open_database(&config, Some(key.clone())).await.unwrap();
    let server = broadcaster::build_server(&config, db).await.unwrap();
    // The walk time-locks the account through the emulator's control API (as WhatsApp would).
    let control_url = server.state.emulator.as_ref().expect("emulator mode").control_url();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let serve_config = config.clone();
    let task = tokio::spawn(async move {
        broadcaster::serve_with(&serve_config, server, listener, async move {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });

    // The walk opens the dashboard and the API docs where the start banner says they are.
    let banner = broadcaster::start_banner(addr, &broadcaster::AdminKeyNotice::Existing { file: None });
    let url_after = |label: &str| -> String {
        let line = banner.lines().find(|l| l.trim_start().starts_with(label)).expect(label);
        line.split_whitespace().find(|w| w.starts_with("http://")).expect("a URL").to_owned()
    };
    let (dashboard_url, docs_url) = (url_after("Dashboard:"), url_after("API docs:"));
    assert_eq!(dashboard_url, format!("http://{addr}/dashboard"), "{banner}");
    assert_eq!(docs_url, format!("http://{addr}/docs"), "{banner}");

    println!("browser artefacts (screenshots): {}", artifacts.display());
    let child = tokio::process::Command::new("node")
        .arg(dir.join("walk.mjs"))
        .current_dir(&dir)
        .env("BROADCASTER_URL", format!("http://{addr}"))
        .env("BROADCASTER_KEY", &key)
        .env("BROADCASTER_CHROMIUM", &chromium)
        .env("BROADCASTER_BROWSER_ARTIFACTS", &artifacts)
        .env("BROADCASTER_DASHBOARD_URL", &dashboard_url)
        .env("BROADCASTER_DOCS_URL", &docs_url)
        .env("BROADCASTER_EMULATOR_CONTROL", &control_url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node is installed (scripts/services/30-node.sh)");
    let out = tokio::time::timeout(WALK_TIMEOUT, child.wait_with_output())
        .await
        .expect("the browser walk finished in time")
        .unwrap();
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(60), task).await.expect("server stopped").unwrap();

    assert!(
        out.status.success(),
        "browser walk failed ({}); screenshots in {}",
        out.status,
        artifacts.display()
    );
    let shots = std::fs::read_dir(&artifacts).unwrap().filter_map(Result::ok).count();
    assert!(shots >= 10, "expected a screenshot per step, found {shots} in {}", artifacts.display());
    println!("browser artefacts (screenshots): {}", artifacts.display());
}
