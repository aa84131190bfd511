//! whatsapp-rust 0.7 (crates.io, unmodified) as a scriptable test PEER for wa-emulator: JSON
//! lines out (events), JSON lines in (commands), like tests/interop/baileys/baileys-peer.mjs.
//!
//!   wa-rs-peer --url ws://127.0.0.1:PORT/ws/chat --store DIR [--media-ca PEM] [--version 2.3000.N]
//!              [--log off|error|warn|info|debug|trace]   (whatsapp-rust's log on stderr; default warn)
//!
//! stdout events (one JSON object per line):
//!   {"event":"qr","qr":"<ref>,<noise>,<identity>,<adv>,<platform>"}  (each QR the client shows)
//!   {"event":"pairing-code","code":"ABCD1234"}                     (after a pair-code command)
//!   {"event":"paired","jid":..,"lid":..}   {"event":"pair-error","error":..}
//!   {"event":"connected","jid":..,"lid":..}   (logged in and past its post-login sync)
//!   {"event":"disconnected","reason":..}   {"event":"logged-out","reason":..}
//!   {"event":"message","id":..,"chat":..,"sender":..,"sender_alt":..,"from_me":false,"group":false,
//!    "kind":"conversation","text":..,"offline":false}
//!   {"event":"undecryptable","id":..,"chat":..,"sender":..}
//!   {"event":"receipt","ids":[..],"chat":..,"sender":..,"type":..}
//!   {"event":"sent","id":..,"to":..}   {"event":"error","error":..,"cmd":..}
//!   {"event":"wa","kind":..}  every other whatsapp-rust event, by kind only (stream errors, connect
//!    failures and app-state sync failures carry their payload), so a harness can diagnose
//! stdin commands (one JSON object per line):
//!   {"cmd":"send","to":"15557654321@s.whatsapp.net","text":"hi"}   (user or group JID)
//!   {"cmd":"pair-code","phone":"15551234567"}   {"cmd":"quit"}   (EOF on stdin also quits)
//!
//! --store DIR holds whatsapp-rust's own SqliteStore (DIR/whatsapp.db), so a second run logs in
//! without pairing. The peer never reaches the internet: the chat socket goes to --url only, the
//! WhatsApp Web version is fixed (no sw.js fetch), and its HTTP client (media) trusts exactly the
//! CA certificates in --media-ca (none without it). The Noise certificate chain is checked as
//! usual except for the two XEdDSA signatures (cargo feature danger-skip-cert-chain-verify: the
//! root key is a constant in whatsapp-rust, and the emulator signs with its own root).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt as _;
use whatsapp_rust::http::UreqHttpClient;
use whatsapp_rust::pair_code::PairCodeOptions;
use whatsapp_rust::prelude::*;
use whatsapp_rust::transport::TokioWebSocketTransportFactory;
use whatsapp_rust::wacore::store::DevicePropsOverride;

/// The WhatsApp Web version the peer reports (what wa-noise's DEFAULT_APP_VERSION reports too).
const DEFAULT_VERSION: (u32, u32, u32) = (2, 3000, 1_045_649_367);

struct Args {
    url: String,
    store: PathBuf,
    media_ca: Option<PathBuf>,
    version: (u32, u32, u32),
    log: Option<log::LevelFilter>,
}

fn parse_args() -> Result<Args, String> {
    let mut url = None;
    let mut store = None;
    let mut media_ca = None;
    let mut version = DEFAULT_VERSION;
    let mut log = Some(log::LevelFilter::Warn);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => url = Some(value()?),
            "--store" => store = Some(PathBuf::from(value()?)),
            "--media-ca" => media_ca = Some(PathBuf::from(value()?)),
            "--version" => {
                let v = value()?;
                let parts: Vec<u32> = v
                    .split('.')
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("--version {v}: {e}"))?;
                let [a, b, c] = parts[..] else { return Err(format!("--version {v}: want A.B.C")) };
                version = (a, b, c);
            }
            "--log" => log = value()?.parse().map(Some).map_err(|e| format!("--log: {e}"))?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        url: url.ok_or("--url is required")?,
        store: store.ok_or("--store is required")?,
        media_ca,
        version,
        log,
    })
}

/// One JSON object per line on stdout (the stdout lock keeps lines whole across tasks).
#[derive(Clone, Copy)]
struct Out;

impl Out {
    fn emit(self, v: Value) {
        let mut line = v.to_string();
        line.push('\n');
        let mut out = std::io::stdout().lock();
        // A closed stdout means the harness is gone; nothing left to tell.
        let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
    }
}

/// whatsapp-rust logs through the `log` facade; this writes it to stderr.
struct StderrLog(log::LevelFilter);

impl log::Log for StderrLog {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= self.0
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            eprintln!("[wa-rs {} {}] {}", r.level(), r.target(), r.args());
        }
    }
    fn flush(&self) {}
}

/// ureq agent for media: trusts only the given CA certificates (PEM), no system or WebPKI roots.
fn media_agent(ca: Option<&PathBuf>) -> Result<ureq::Agent, String> {
    use ureq::tls::{PemItem, RootCerts, TlsConfig};
    let mut roots = Vec::new();
    if let Some(path) = ca {
        let pem = std::fs::read(path).map_err(|e| format!("--media-ca {}: {e}", path.display()))?;
        for item in ureq::tls::parse_pem(&pem) {
            if let PemItem::Certificate(c) =
                item.map_err(|e| format!("--media-ca {}: {e}", path.display()))?
            {
                roots.push(c);
            }
        }
        if roots.is_empty() {
            return Err(format!("--media-ca {}: no certificate", path.display()));
        }
    }
    let tls = TlsConfig::builder().root_certs(RootCerts::Specific(Arc::new(roots))).build();
    Ok(ureq::Agent::config_builder().tls_config(tls).build().new_agent())
}

fn jid_str(j: Option<Jid>) -> Value {
    j.map_or(Value::Null, |j| Value::String(j.to_string()))
}

/// The message's content kind in WhatsApp's proto field naming (`conversation`,
/// `extendedTextMessage`, `imageMessage`, ...), as baileys-peer.mjs reports it.
fn kind_of(m: &wa::Message) -> Value {
    let Ok(Value::Object(fields)) = serde_json::to_value(m.get_base_message()) else { return Value::Null };
    fields
        .iter()
        .find(|(k, v)| {
            !v.is_null() && !matches!(k.as_str(), "message_context_info" | "sender_key_distribution_message")
        })
        .map_or(Value::Null, |(k, _)| {
            let mut camel = String::new();
            let mut up = false;
            for ch in k.chars() {
                if ch == '_' {
                    up = true;
                } else if up {
                    camel.extend(ch.to_uppercase());
                    up = false;
                } else {
                    camel.push(ch);
                }
            }
            Value::String(camel)
        })
}

fn source_json(s: &whatsapp_rust::wacore::types::message::MessageSource) -> Value {
    json!({
        "chat": s.chat.to_string(),
        "sender": s.sender.to_string(),
        "sender_alt": s.sender_alt.as_ref().map(ToString::to_string),
        "from_me": s.is_from_me,
        "group": s.is_group,
    })
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Value::Object(a), Value::Object(b)) = (&mut a, b) {
        a.extend(b);
    }
    a
}

fn on_event(out: Out, event: &Event, client: &Client) {
    match event {
        Event::PairingQrCode(qr) => out.emit(json!({"event": "qr", "qr": qr.code})),
        Event::PairingCode(pc) => out.emit(json!({"event": "pairing-code", "code": pc.code})),
        Event::PairingCodeError(e) => {
            out.emit(json!({"event": "error", "cmd": "pair-code", "error": e.error}))
        }
        Event::PairSuccess(p) => {
            out.emit(json!({"event": "paired", "jid": p.id.to_string(), "lid": p.lid.to_string()}))
        }
        Event::PairError(p) => out.emit(json!({"event": "pair-error", "error": p.error})),
        Event::Connected(_) => {
            out.emit(json!({"event": "connected", "jid": jid_str(client.pn()), "lid": jid_str(client.lid())}))
        }
        Event::Disconnected(d) => out.emit(json!({"event": "disconnected", "reason": d.reason.to_string()})),
        Event::LoggedOut(l) => {
            out.emit(json!({"event": "logged-out", "reason": serde_json::to_value(l.reason).ok()}))
        }
        Event::Messages(batch) => {
            for m in batch.iter() {
                let info = &m.info;
                out.emit(merge(
                    json!({
                        "event": "message",
                        "id": info.id.to_string(),
                        "kind": kind_of(&m.message),
                        "text": m.message.text_content(),
                        "offline": info.is_offline,
                    }),
                    source_json(&info.source),
                ));
            }
        }
        Event::UndecryptableMessage(u) => out.emit(merge(
            json!({"event": "undecryptable", "id": u.info.id.to_string()}),
            source_json(&u.info.source),
        )),
        Event::Receipt(r) => out.emit(merge(
            json!({
                "event": "receipt",
                "ids": r.message_ids.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "type": serde_json::to_value(&r.r#type).ok(),
            }),
            source_json(&r.source),
        )),
        Event::StreamError(_)
        | Event::ConnectFailure(_)
        | Event::AppStateSyncFailed(_)
        | Event::ClientOutdated(_) => {
            let mut detail = serde_json::to_value(event).unwrap_or(Value::Null);
            if let Value::Object(o) = &mut detail {
                for v in o.values_mut() {
                    if let Value::Object(inner) = v {
                        inner.remove("raw");
                    }
                }
            }
            out.emit(json!({"event": "wa", "kind": format!("{:?}", event.kind()), "detail": detail}));
        }
        _ => out.emit(json!({"event": "wa", "kind": format!("{:?}", event.kind())})),
    }
}

async fn command(out: Out, client: &Arc<Client>, line: &str) -> bool {
    let c: Value = match serde_json::from_str(line) {
        Ok(c) => c,
        Err(e) => {
            out.emit(json!({"event": "error", "error": format!("bad command line: {e}")}));
            return true;
        }
    };
    let cmd = c["cmd"].as_str().unwrap_or_default().to_owned();
    let result: Result<(), String> = match cmd.as_str() {
        "quit" => return false,
        "send" => match (c["to"].as_str().map(str::parse::<Jid>), c["text"].as_str()) {
            (Some(Ok(to)), Some(text)) => {
                match client.send_message(to.clone(), wa::Message::text(text)).await {
                    Ok(r) => {
                        out.emit(json!({"event": "sent", "id": r.message_id, "to": to.to_string()}));
                        Ok(())
                    }
                    Err(e) => Err(format!("send: {e}")),
                }
            }
            (Some(Err(e)), _) => Err(format!("send: bad jid: {e}")),
            _ => Err("send needs to and text".to_owned()),
        },
        "pair-code" => match c["phone"].as_str() {
            // The code arrives as Event::PairingCode (and a failure as Event::PairingCodeError).
            Some(phone) => match client.wait_for_socket(Duration::from_secs(30)).await {
                Ok(()) => {
                    let options = PairCodeOptions { phone_number: phone.to_owned(), ..Default::default() };
                    client.pair_with_code(options).await.map(drop).map_err(|e| format!("pair-code: {e}"))
                }
                Err(e) => Err(format!("pair-code: no socket: {e}")),
            },
            None => Err("pair-code needs phone".to_owned()),
        },
        other => Err(format!("unknown cmd {other}")),
    };
    if let Err(error) = result {
        out.emit(json!({"event": "error", "cmd": cmd, "error": error}));
    }
    true
}

async fn run(args: Args) -> Result<(), String> {
    std::fs::create_dir_all(&args.store).map_err(|e| format!("--store {}: {e}", args.store.display()))?;
    let db = args.store.join("whatsapp.db");
    let backend = SqliteStore::new(&db.to_string_lossy())
        .await
        .map_err(|e| format!("opening {}: {e}", db.display()))?;
    let out = Out;
    let bot = Bot::builder()
        .with_backend(backend)
        .with_transport_factory(TokioWebSocketTransportFactory::new().with_url(args.url.clone()))
        .with_http_client(UreqHttpClient::with_agent(media_agent(args.media_ca.as_ref())?))
        .with_version(args.version)
        .with_device_props(
            DevicePropsOverride::new()
                .with_os("Linux")
                .with_platform_type(wa::device_props::PlatformType::CHROME),
        )
        .skip_history_sync()
        // In arrival order, so a harness reads events in the order whatsapp-rust produced them.
        .with_event_delivery(EventDelivery::Ordered { capacity: 10_000 })
        .on_event(move |event, client| async move { on_event(out, &event, &client) })
        .build()
        .await
        .map_err(|e| format!("building the client: {e}"))?;
    let handle = bot.spawn();
    let client = handle.client();

    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(line)) if line.trim().is_empty() => {}
            Ok(Some(line)) => {
                if !command(out, &client, &line).await {
                    break;
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    // Graceful: flushes whatsapp-rust's pending state to the store before the process ends.
    if tokio::time::timeout(Duration::from_secs(20), handle.shutdown()).await.is_err() {
        return Err("shutdown timed out".to_owned());
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("wa-rs-peer: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(level) = args.log {
        let _ = log::set_boxed_logger(Box::new(StderrLog(level)));
        log::set_max_level(level);
    }
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wa-rs-peer: {e}");
            ExitCode::FAILURE
        }
    }
}
