//! Configuration: command-line flags, `BROADCASTER_*` environment variables and an optional TOML
//! file. Precedence: flag > environment > file > built-in default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

use crate::webhooks::RetryPolicy;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// Broadcaster: connect many WhatsApp accounts behind a REST API, live events and webhooks.
#[derive(Debug, Default, Parser)]
#[command(
    name = "broadcaster",
    version,
    after_help = "Secrets are read from the environment only, never from flags:\n  \
        BROADCASTER_ADMIN_KEY  bootstrap admin API key; if unset and no admin key exists yet, one is\n                         \
        generated and printed once at first start.\n  \
        DATABASE_URL           postgres://user:password@host:port/db to keep the server's own database\n                         \
        in PostgreSQL instead of the embedded SQLite file in the data dir.\n\n\
        Log levels: error, warn, info, debug, trace."
)]
pub struct Cli {
    /// TOML configuration file (keys: listen, data_dir, max_body_bytes, shutdown_timeout_secs,
    /// webhook_max_attempts, webhook_base_delay_ms, webhook_max_delay_ms, webhook_timeout_secs, log,
    /// emulator, rate_limit_per_minute, media_max_bytes).
    #[arg(long, short = 'c', env = "BROADCASTER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "BROADCASTER_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Directory for the embedded SQLite database and the WhatsApp auth store [default: ./data].
    #[arg(long, env = "BROADCASTER_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Largest accepted request body in bytes [default: 1048576].
    #[arg(long, env = "BROADCASTER_MAX_BODY_BYTES", value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Seconds to let in-flight requests and deliveries finish on shutdown [default: 10].
    #[arg(long, env = "BROADCASTER_SHUTDOWN_TIMEOUT_SECS", value_name = "SECS")]
    pub shutdown_timeout_secs: Option<u64>,
    /// Webhook delivery attempts before a delivery is dead-lettered [default: 8].
    #[arg(long, env = "BROADCASTER_WEBHOOK_MAX_ATTEMPTS", value_name = "N")]
    pub webhook_max_attempts: Option<u32>,
    /// First webhook retry delay in milliseconds; doubles per attempt [default: 5000].
    #[arg(long, env = "BROADCASTER_WEBHOOK_BASE_DELAY_MS", value_name = "MS")]
    pub webhook_base_delay_ms: Option<i64>,
    /// Longest webhook retry delay in milliseconds [default: 3600000].
    #[arg(long, env = "BROADCASTER_WEBHOOK_MAX_DELAY_MS", value_name = "MS")]
    pub webhook_max_delay_ms: Option<i64>,
    /// Per-request webhook timeout in seconds [default: 10].
    #[arg(long, env = "BROADCASTER_WEBHOOK_TIMEOUT_SECS", value_name = "SECS")]
    pub webhook_timeout_secs: Option<u64>,
    /// Log level: error, warn, info, debug or trace [default: info].
    #[arg(long, env = "BROADCASTER_LOG", value_name = "LEVEL")]
    pub log: Option<String>,
    /// Run against an in-process WhatsApp emulator instead of WhatsApp (offline demo and tests);
    /// enables the `/api/v1/emulator/...` endpoints that play the phone's part.
    #[arg(long, env = "BROADCASTER_EMULATOR")]
    pub emulator: bool,
    /// Requests per minute per API key; 0 disables the limit [default: 600].
    #[arg(long, env = "BROADCASTER_RATE_LIMIT_PER_MINUTE", value_name = "N")]
    pub rate_limit_per_minute: Option<u32>,
    /// Largest media file fetched by URL or uploaded, in bytes [default: 16777216].
    #[arg(long, env = "BROADCASTER_MEDIA_MAX_BYTES", value_name = "BYTES")]
    pub media_max_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    max_body_bytes: Option<usize>,
    shutdown_timeout_secs: Option<u64>,
    webhook_max_attempts: Option<u32>,
    webhook_base_delay_ms: Option<i64>,
    webhook_max_delay_ms: Option<i64>,
    webhook_timeout_secs: Option<u64>,
    log: Option<String>,
    emulator: Option<bool>,
    rate_limit_per_minute: Option<u32>,
    media_max_bytes: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {source}")]
    Parse { path: PathBuf, source: Box<toml::de::Error> },
    #[error("invalid setting `{0}`: {1}")]
    Invalid(&'static str, String),
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub max_body_bytes: usize,
    pub shutdown_timeout: Duration,
    pub webhook: RetryPolicy,
    pub log_level: tracing::Level,
    pub emulator: bool,
    pub rate_limit_per_minute: u32,
    pub media_max_bytes: usize,
    /// `DATABASE_URL`: the server's database in PostgreSQL instead of SQLite in `data_dir`.
    /// Environment only (it holds a password); never logged.
    pub database_url: Option<DatabaseUrl>,
}

/// A PostgreSQL URL (validated); its `Debug` hides it, as it may hold a password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<Self, ConfigError> {
        crate::db::postgres::parse_url(url)
            .map_err(|e| ConfigError::Invalid("DATABASE_URL", e.to_string()))?;
        Ok(Self(url.to_owned()))
    }

    /// `DATABASE_URL` from the environment; unset or blank is `None`.
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        match std::env::var("DATABASE_URL") {
            Ok(url) if !url.trim().is_empty() => Self::parse(url.trim()).map(Some),
            _ => Ok(None),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseUrl(<redacted>)")
    }
}

impl Config {
    pub fn resolve(cli: Cli) -> Result<Self, ConfigError> {
        let file = match &cli.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let defaults = RetryPolicy::default();
        let listen = match cli.listen.or(file.listen) {
            Some(a) => a,
            None => {
                DEFAULT_LISTEN.parse().map_err(|_| ConfigError::Invalid("listen", DEFAULT_LISTEN.into()))?
            }
        };
        let webhook = RetryPolicy {
            max_attempts: cli
                .webhook_max_attempts
                .or(file.webhook_max_attempts)
                .unwrap_or(defaults.max_attempts),
            base_delay_ms: cli
                .webhook_base_delay_ms
                .or(file.webhook_base_delay_ms)
                .unwrap_or(defaults.base_delay_ms),
            max_delay_ms: cli
                .webhook_max_delay_ms
                .or(file.webhook_max_delay_ms)
                .unwrap_or(defaults.max_delay_ms),
            request_timeout: cli
                .webhook_timeout_secs
                .or(file.webhook_timeout_secs)
                .map(Duration::from_secs)
                .unwrap_or(defaults.request_timeout),
        };
        if webhook.max_attempts == 0 {
            return Err(ConfigError::Invalid("webhook_max_attempts", "must be at least 1".into()));
        }
        if webhook.base_delay_ms < 1 || webhook.max_delay_ms < webhook.base_delay_ms {
            return Err(ConfigError::Invalid(
                "webhook_base_delay_ms",
                "must be at least 1 and not above webhook_max_delay_ms".into(),
            ));
        }
        let max_body_bytes = cli.max_body_bytes.or(file.max_body_bytes).unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes < 1024 {
            return Err(ConfigError::Invalid("max_body_bytes", "must be at least 1024".into()));
        }
        let media_max_bytes = cli.media_max_bytes.or(file.media_max_bytes).unwrap_or(16 * 1024 * 1024);
        if media_max_bytes < 1024 {
            return Err(ConfigError::Invalid("media_max_bytes", "must be at least 1024".into()));
        }
        Ok(Self {
            database_url: DatabaseUrl::from_env()?,
            emulator: cli.emulator || file.emulator.unwrap_or(false),
            rate_limit_per_minute: cli.rate_limit_per_minute.or(file.rate_limit_per_minute).unwrap_or(600),
            media_max_bytes,
            listen,
            data_dir: cli.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("data")),
            max_body_bytes,
            shutdown_timeout: Duration::from_secs(
                cli.shutdown_timeout_secs.or(file.shutdown_timeout_secs).unwrap_or(10),
            ),
            webhook,
            log_level: match cli.log.or(file.log) {
                None => tracing::Level::INFO,
                Some(l) => l.parse().map_err(|_| {
                    ConfigError::Invalid(
                        "log",
                        format!("`{l}` is not one of error, warn, info, debug, trace"),
                    )
                })?,
            },
        })
    }
}

fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.into(), source: Box::new(source) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_is_validated_and_never_shown() {
        let u = DatabaseUrl::parse("postgres://bc:s3cret@db.internal:5432/broadcaster").unwrap();
        assert!(!format!("{u:?}").contains("s3cret"));
        let e = DatabaseUrl::parse("postgres://bc:s3cret@db:notaport/x").unwrap_err();
        assert!(e.to_string().contains("DATABASE_URL"), "{e}");
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }

    #[test]
    fn defaults_apply_without_input() {
        let c = Config::resolve(Cli::default()).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.data_dir, PathBuf::from("data"));
        assert_eq!(c.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    }

    #[test]
    fn flags_beat_file_and_file_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\ndata_dir = \"/tmp/x\"\nwebhook_max_attempts = 3\n",
        )
        .unwrap();
        let cli = Cli {
            config: Some(path.clone()),
            listen: Some("127.0.0.1:9100".parse().unwrap()),
            ..Cli::default()
        };
        let c = Config::resolve(cli).unwrap();
        assert_eq!(c.listen.port(), 9100);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.webhook.max_attempts, 3);
    }

    #[test]
    fn unknown_file_keys_and_bad_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.toml");
        std::fs::write(&path, "listn = \"127.0.0.1:9000\"\n").unwrap();
        let err = Config::resolve(Cli { config: Some(path), ..Cli::default() }).unwrap_err();
        assert!(err.to_string().contains("listn"), "{err}");
        let err = Config::resolve(Cli { webhook_max_attempts: Some(0), ..Cli::default() }).unwrap_err();
        assert!(matches!(err, ConfigError::Invalid("webhook_max_attempts", _)));
    }

    #[test]
    fn help_documents_every_setting() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        for needle in
            ["--listen", "--data-dir", "--config", "BROADCASTER_ADMIN_KEY", "--webhook-max-attempts"]
        {
            assert!(help.contains(needle), "help lacks {needle}");
        }
    }
}
