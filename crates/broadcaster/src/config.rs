//! Configuration: command-line flags, `BROADCASTER_*` environment variables and an optional TOML
//! file. Precedence: flag > environment > file > built-in default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

use crate::webhooks::retry::RetryPolicy;

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
        in PostgreSQL instead of the embedded SQLite file in the data dir.\n  \
        BROADCASTER_AUTH_STORE_URL  connection URL of the WhatsApp auth store when --auth-store is\n                         \
        postgres (postgres://user:pass@host/db) or mongodb (mongodb://host:27017/).\n  \
        BROADCASTER_METRICS_TOKEN  a token that may read /metrics (Authorization: Bearer), for a\n                         \
        Prometheus scraper that should hold no API key.\n  \
        BROADCASTER_MASTER_KEY  the master key sealing WhatsApp sessions and webhook secrets at rest:\n                         \
        32 bytes as 64 hex digits or base64 (openssl rand -hex 32); if unset, the key file\n                         \
        (--master-key-file, default DATA_DIR/master-key) is used or created.\n  \
        BROADCASTER_MASTER_KEY_PREVIOUS  the key being rotated away from: what it sealed is re-sealed\n                         \
        with the master key at start.\n\n\
        Test only (never set in production): BROADCASTER_TEST_LOOPBACK_TARGETS=any|PORT[,PORT…] lets\n\
        webhooks and media URLs reach 127.0.0.1/::1 on those ports, which the SSRF policy refuses\n\
        otherwise; private ranges and the metadata address stay refused.\n\n\
        Log levels: error, warn, info, debug, trace."
)]
pub struct Cli {
    /// TOML configuration file (keys: listen, data_dir, max_body_bytes, shutdown_timeout_secs,
    /// webhook_max_attempts, webhook_base_delay_ms, webhook_max_delay_ms, webhook_timeout_secs, log,
    /// emulator, rate_limit_per_minute, media_max_bytes, auth_store, auth_store_database,
    /// emulator_url, emulator_root_key, emulator_media_ca, pending_send_max_age_secs, wa_version,
    /// wa_version_url, outbound_ca_file, outbound_allow, metrics_public, header_read_timeout_secs,
    /// max_connections, max_connections_per_ip, auth_failures_per_minute, master_key_file).
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
    /// enables the `/api/v1/emulator/...` endpoints that play the phone's part. Its world is
    /// kept in `<data dir>/emulator/`, so a restart finds the linked accounts.
    #[arg(long, env = "BROADCASTER_EMULATOR")]
    pub emulator: bool,
    /// Requests per minute per API key; 0 disables the limit [default: 600].
    #[arg(long, env = "BROADCASTER_RATE_LIMIT_PER_MINUTE", value_name = "N")]
    pub rate_limit_per_minute: Option<u32>,
    /// Largest media file fetched by URL or uploaded, in bytes [default: 16777216].
    #[arg(long, env = "BROADCASTER_MEDIA_MAX_BYTES", value_name = "BYTES")]
    pub media_max_bytes: Option<usize>,
    /// Where the WhatsApp auth state (device keys, Signal sessions, pending messages) lives:
    /// sqlite (the file wa-auth.sqlite3 in the data directory), postgres or mongodb (both at
    /// the URL in the environment variable BROADCASTER_AUTH_STORE_URL) [default: postgres at DATABASE_URL when that is set, else sqlite].
    #[arg(long, env = "BROADCASTER_AUTH_STORE", value_name = "KIND")]
    pub auth_store: Option<AuthStoreKind>,
    /// MongoDB database of the auth store (with --auth-store mongodb) [default: broadcaster].
    #[arg(long, env = "BROADCASTER_AUTH_STORE_DATABASE", value_name = "NAME")]
    pub auth_store_database: Option<String>,
    /// Run against an external `wa-emulator` instead of WhatsApp: its WebSocket URL (the
    /// `ws_url=` line it prints). Needs --emulator-root-key; excludes --emulator. The phones are
    /// driven through the emulator's own control API (the `/api/v1/emulator/...` endpoints are
    /// off in this mode).
    #[arg(long, env = "BROADCASTER_EMULATOR_URL", value_name = "URL")]
    pub emulator_url: Option<String>,
    /// The external emulator's root public key, 64 hex digits (the `root_public_key=` line).
    #[arg(long, env = "BROADCASTER_EMULATOR_ROOT_KEY", value_name = "HEX")]
    pub emulator_root_key: Option<String>,
    /// PEM file of the external emulator's media test CA (the `media_ca_file=` line), trusted for
    /// media hosts in addition to the system roots.
    #[arg(long, env = "BROADCASTER_EMULATOR_MEDIA_CA", value_name = "FILE")]
    pub emulator_media_ca: Option<PathBuf>,
    /// A single send (REST API, auto-reply) interrupted by a stop or crash is sent again at the
    /// next start under the same WhatsApp id; one still unsent this many seconds after it was
    /// requested fails with the reason `expired` instead [default: 3600].
    #[arg(long, env = "BROADCASTER_PENDING_SEND_MAX_AGE_SECS", value_name = "SECS")]
    pub pending_send_max_age_secs: Option<u64>,
    /// The WhatsApp Web version the accounts report: `auto` fetches the current one from
    /// WhatsApp Web's sw.js (once a day, kept across restarts; the version built into this
    /// binary when the fetch fails), or a fixed version such as 2.3000.1045649367. WhatsApp
    /// refuses versions older than a few weeks to ~2.5 months; an account refused that way shows
    /// the reason `client_outdated` [default: auto].
    #[arg(long, env = "BROADCASTER_WA_VERSION", value_name = "X.Y.Z|auto")]
    pub wa_version: Option<String>,
    /// Where `auto` fetches sw.js from: a mirror, or a test server [default: https://web.whatsapp.com/sw.js,
    /// or none against an emulator (the built-in version, which the emulator requires by default)].
    #[arg(long, env = "BROADCASTER_WA_VERSION_URL", value_name = "URL")]
    pub wa_version_url: Option<String>,
    /// PEM file of extra root certificates trusted for https:// webhook and media URLs, besides
    /// the Mozilla roots (e.g. your company's internal CA).
    #[arg(long, env = "BROADCASTER_OUTBOUND_CA_FILE", value_name = "FILE")]
    pub outbound_ca_file: Option<PathBuf>,
    /// Non-public address ranges webhooks and media URLs may reach anyway, e.g. an internal
    /// webhook receiver: `10.0.0.0/8,fd00::/8,192.168.1.5`. Everything not public is refused
    /// otherwise (loopback, private, link-local, CGNAT, the cloud metadata address) [default: none].
    #[arg(long, env = "BROADCASTER_OUTBOUND_ALLOW", value_name = "CIDR,…", value_delimiter = ',')]
    pub outbound_allow: Vec<String>,
    /// Serve `/metrics` to anyone who can reach the listen address. Without it `/metrics` needs
    /// an admin key or the token in BROADCASTER_METRICS_TOKEN (its counts span every tenant).
    #[arg(long, env = "BROADCASTER_METRICS_PUBLIC")]
    pub metrics_public: bool,
    /// Seconds a client has to send a request's headers; a connection that sends them slower
    /// (or stays silent) is closed [default: 10].
    #[arg(long, env = "BROADCASTER_HEADER_READ_TIMEOUT_SECS", value_name = "SECS")]
    pub header_read_timeout_secs: Option<u64>,
    /// Open client connections at most; more wait in the listen backlog [default: 1024].
    #[arg(long, env = "BROADCASTER_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Open connections at most per client address; more are closed at once [default: 256].
    #[arg(long, env = "BROADCASTER_MAX_CONNECTIONS_PER_IP", value_name = "N")]
    pub max_connections_per_ip: Option<usize>,
    /// Failed authentications (unknown or revoked keys) per client address and minute before it
    /// gets 429 with Retry-After; 0 disables the throttle [default: 30].
    #[arg(long, env = "BROADCASTER_AUTH_FAILURES_PER_MINUTE", value_name = "N")]
    pub auth_failures_per_minute: Option<u32>,
    /// The master key file (64 hex digits), used when BROADCASTER_MASTER_KEY is not set; created
    /// with a new random key when missing and nothing is encrypted yet [default: DATA_DIR/master-key].
    #[arg(long, env = "BROADCASTER_MASTER_KEY_FILE", value_name = "FILE")]
    pub master_key_file: Option<PathBuf>,
}

/// Which WhatsApp Web version the accounts report (`--wa-version`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaVersionSetting {
    /// Fetch the current one from `sw.js` at `url` (`None`: WhatsApp's own when connecting to
    /// WhatsApp; no fetch against an emulator), falling back to the built-in version.
    Auto { url: Option<String> },
    /// Always this one.
    Fixed([u32; 3]),
}

impl Default for WaVersionSetting {
    fn default() -> Self {
        Self::Auto { url: None }
    }
}

/// The environment variable of the test-only loopback allowance (see
/// [`crate::outbound::TestLoopback`]): `any` or a comma-separated list of ports. Read from the
/// environment only, never from flags or the file, so it cannot end up in a deployment's config
/// by copy and paste, and never from the API.
pub const TEST_LOOPBACK_TARGETS_VAR: &str = "BROADCASTER_TEST_LOOPBACK_TARGETS";

/// An external emulator to connect to (`--emulator-url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalEmulator {
    /// Its WebSocket URL.
    pub url: String,
    /// Its root public key (32 bytes).
    pub root_key: [u8; 32],
    /// Its media test CA (PEM), if given.
    pub media_ca_pem: Option<String>,
}

/// Default of `pending_send_max_age_secs`.
pub const DEFAULT_PENDING_SEND_MAX_AGE_SECS: u64 = 3600;

/// The backend of the WhatsApp auth store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthStoreKind {
    #[default]
    Sqlite,
    Postgres,
    Mongodb,
}

/// The environment variable with the auth store's URL (a secret: never a flag or file key).
pub const AUTH_STORE_URL_VAR: &str = "BROADCASTER_AUTH_STORE_URL";
/// The MongoDB database used when none is configured.
pub const DEFAULT_AUTH_STORE_DATABASE: &str = "broadcaster";

/// The resolved auth store. `Debug` never shows the URL (it may hold a password).
#[derive(Clone, PartialEq, Eq)]
pub enum AuthStore {
    /// `wa-auth.sqlite3` in the data directory.
    Sqlite,
    Postgres {
        url: String,
    },
    Mongodb {
        url: String,
        database: String,
    },
}

impl std::fmt::Debug for AuthStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite => f.write_str("Sqlite"),
            Self::Postgres { .. } => f.write_str("Postgres { url: <redacted> }"),
            Self::Mongodb { database, .. } => {
                write!(f, "Mongodb {{ url: <redacted>, database: {database:?} }}")
            }
        }
    }
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
    auth_store: Option<AuthStoreKind>,
    auth_store_database: Option<String>,
    emulator_url: Option<String>,
    emulator_root_key: Option<String>,
    emulator_media_ca: Option<PathBuf>,
    pending_send_max_age_secs: Option<u64>,
    wa_version: Option<String>,
    wa_version_url: Option<String>,
    outbound_ca_file: Option<PathBuf>,
    outbound_allow: Option<Vec<String>>,
    metrics_public: Option<bool>,
    header_read_timeout_secs: Option<u64>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    auth_failures_per_minute: Option<u32>,
    master_key_file: Option<PathBuf>,
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
    pub auth_store: AuthStore,
    /// `--emulator-url`: connect to this emulator instead of WhatsApp.
    pub external_emulator: Option<ExternalEmulator>,
    /// How long an interrupted single send may still be sent again.
    pub pending_send_max_age: Duration,
    /// The WhatsApp Web version the accounts report.
    pub wa_version: WaVersionSetting,
    /// `DATABASE_URL`: the server's database in PostgreSQL instead of SQLite in `data_dir`.
    /// Environment only (it holds a password); never logged.
    pub database_url: Option<DatabaseUrl>,
    /// The outbound HTTP client: extra CA, and the test-only loopback allowance.
    pub outbound: crate::outbound::OutboundConfig,
    /// Who may read `/metrics`.
    pub metrics_access: crate::access::MetricsAccess,
    /// Connection limits of the listener.
    pub connections: ConnectionLimits,
    /// Failed authentications per client address and minute (0: unlimited).
    pub auth_failures_per_minute: u32,
    /// The master key encrypting secrets at rest (`BROADCASTER_MASTER_KEY`, `--master-key-file`,
    /// `BROADCASTER_MASTER_KEY_PREVIOUS`).
    pub master_key: crate::secrets::MasterKeySettings,
}

/// How many connections the server holds and how long a client may take to send headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_connections_per_ip: 256,
        }
    }
}

/// The environment variable of the `/metrics` scrape token (a secret: never a flag or file key).
pub const METRICS_TOKEN_VAR: &str = "BROADCASTER_METRICS_TOKEN";

/// A PostgreSQL URL (validated); its `Debug` hides it, as it may hold a password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<Self, ConfigError> {
        crate::db::postgres::parse_url(url)
            .map_err(|e| ConfigError::Invalid("DATABASE_URL", e.to_string()))?;
        Ok(Self(url.to_owned()))
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
    /// Flags and their environment variables, the file, defaults; the auth store URL from
    /// [`AUTH_STORE_URL_VAR`].
    pub fn resolve(cli: Cli) -> Result<Self, ConfigError> {
        Self::resolve_with_env(cli, |name| std::env::var(name).ok())
    }

    /// [`Config::resolve`] reading secrets through `env` (tests pass their own).
    pub fn resolve_with_env(cli: Cli, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
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
        let database_url = match env("DATABASE_URL") {
            Some(url) if !url.trim().is_empty() => Some(DatabaseUrl::parse(url.trim())?),
            _ => None,
        };
        let auth_store_url = env(AUTH_STORE_URL_VAR).filter(|u| !u.trim().is_empty());
        let auth_store = match (cli.auth_store.or(file.auth_store), &database_url, &auth_store_url) {
            // With DATABASE_URL everything lives in that one PostgreSQL database unless told
            // otherwise (the auth store's tables are all named `wa_*`, the server's never are).
            (None | Some(AuthStoreKind::Postgres), Some(db), None) => {
                AuthStore::Postgres { url: db.as_str().to_owned() }
            }
            (kind, _, _) => resolve_auth_store(
                kind.unwrap_or_default(),
                cli.auth_store_database.or(file.auth_store_database),
                auth_store_url,
            )?,
        };
        let emulator = cli.emulator || file.emulator.unwrap_or(false);
        let emulator_url = cli.emulator_url.or(file.emulator_url).filter(|u| !u.trim().is_empty());
        // The conflict is the problem to report, whatever else is missing for --emulator-url.
        if emulator && emulator_url.is_some() {
            return Err(ConfigError::Invalid(
                "emulator_url",
                "choose either --emulator (in-process) or --emulator-url (external), not both".into(),
            ));
        }
        let external_emulator = resolve_external_emulator(
            emulator_url,
            cli.emulator_root_key.or(file.emulator_root_key),
            cli.emulator_media_ca.or(file.emulator_media_ca),
        )?;
        let extra_ca_pem = match cli.outbound_ca_file.or(file.outbound_ca_file) {
            None => None,
            Some(path) => {
                let pem = std::fs::read_to_string(&path)
                    .map_err(|source| ConfigError::Read { path: path.clone(), source })?;
                Some(pem)
            }
        };
        let allow = if cli.outbound_allow.is_empty() {
            file.outbound_allow.unwrap_or_default()
        } else {
            cli.outbound_allow
        };
        let allow = allow
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().map_err(|e: crate::outbound::guard::IpNetError| e.to_string()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConfigError::Invalid("outbound_allow", e))?;
        let outbound = crate::outbound::OutboundConfig {
            extra_ca_pem,
            test_loopback: parse_test_loopback(env(TEST_LOOPBACK_TARGETS_VAR).as_deref())?,
            allow,
        };
        // A CA file that does not parse stops the start here, not at the first webhook.
        crate::outbound::OutboundClient::new(&outbound)
            .map_err(|e| ConfigError::Invalid("outbound_ca_file", e.to_string()))?;
        let pending_send_max_age_secs = cli
            .pending_send_max_age_secs
            .or(file.pending_send_max_age_secs)
            .unwrap_or(DEFAULT_PENDING_SEND_MAX_AGE_SECS);
        if pending_send_max_age_secs == 0 || pending_send_max_age_secs > 30 * 86_400 {
            return Err(ConfigError::Invalid(
                "pending_send_max_age_secs",
                "must be between 1 and 2592000 (30 days)".into(),
            ));
        }
        let wa_version = resolve_wa_version(
            cli.wa_version.or(file.wa_version),
            cli.wa_version_url.or(file.wa_version_url),
        )?;
        let metrics_access = match env(METRICS_TOKEN_VAR)
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
        {
            _ if cli.metrics_public || file.metrics_public.unwrap_or(false) => {
                crate::access::MetricsAccess::Public
            }
            Some(t) if t.len() < 16 => {
                return Err(ConfigError::Invalid(METRICS_TOKEN_VAR, "must be at least 16 characters".into()));
            }
            Some(t) => crate::access::MetricsAccess::AdminKeyOrToken(t),
            None => crate::access::MetricsAccess::AdminKey,
        };
        let defaults = ConnectionLimits::default();
        let connections = ConnectionLimits {
            header_read_timeout: cli
                .header_read_timeout_secs
                .or(file.header_read_timeout_secs)
                .map_or(defaults.header_read_timeout, Duration::from_secs),
            max_connections: cli.max_connections.or(file.max_connections).unwrap_or(defaults.max_connections),
            max_connections_per_ip: cli
                .max_connections_per_ip
                .or(file.max_connections_per_ip)
                .unwrap_or(defaults.max_connections_per_ip),
        };
        if connections.header_read_timeout.is_zero() {
            return Err(ConfigError::Invalid("header_read_timeout_secs", "must be at least 1".into()));
        }
        if !(1..=1_000_000).contains(&connections.max_connections) || connections.max_connections_per_ip == 0
        {
            return Err(ConfigError::Invalid(
                "max_connections",
                "max_connections must be 1 to 1000000 and max_connections_per_ip at least 1".into(),
            ));
        }
        let master_key =
            crate::secrets::MasterKeySettings::from_env(&env, cli.master_key_file.or(file.master_key_file))
                .map_err(|e| ConfigError::Invalid("master_key", e.to_string()))?;
        Ok(Self {
            master_key,
            metrics_access,
            connections,
            auth_failures_per_minute: cli
                .auth_failures_per_minute
                .or(file.auth_failures_per_minute)
                .unwrap_or(crate::access::DEFAULT_AUTH_FAILURES_PER_MINUTE),
            wa_version,
            outbound,
            database_url,
            auth_store,
            external_emulator,
            pending_send_max_age: Duration::from_secs(pending_send_max_age_secs),
            emulator,
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

fn resolve_auth_store(
    kind: AuthStoreKind,
    database: Option<String>,
    url: Option<String>,
) -> Result<AuthStore, ConfigError> {
    let need_url = |scheme: &[&str]| -> Result<String, ConfigError> {
        let url = url.clone().ok_or_else(|| {
            ConfigError::Invalid(
                "auth_store",
                format!("{AUTH_STORE_URL_VAR} must be set for this auth store"),
            )
        })?;
        if !scheme.iter().any(|s| url.starts_with(s)) {
            return Err(ConfigError::Invalid(
                "auth_store",
                format!("{AUTH_STORE_URL_VAR} must start with {}", scheme.join(" or ")),
            ));
        }
        Ok(url)
    };
    Ok(match kind {
        AuthStoreKind::Sqlite => {
            if url.is_some() {
                return Err(ConfigError::Invalid(
                    "auth_store",
                    format!(
                        "{AUTH_STORE_URL_VAR} is set but the auth store is sqlite; choose postgres or mongodb"
                    ),
                ));
            }
            AuthStore::Sqlite
        }
        AuthStoreKind::Postgres => AuthStore::Postgres { url: need_url(&["postgres://", "postgresql://"])? },
        AuthStoreKind::Mongodb => {
            let database = database.unwrap_or_else(|| DEFAULT_AUTH_STORE_DATABASE.to_owned());
            let valid = !database.is_empty()
                && database.len() <= 63
                && database.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid {
                return Err(ConfigError::Invalid(
                    "auth_store_database",
                    "1 to 63 letters, digits, `_` or `-`".into(),
                ));
            }
            AuthStore::Mongodb { url: need_url(&["mongodb://", "mongodb+srv://"])?, database }
        }
    })
}

fn resolve_wa_version(version: Option<String>, url: Option<String>) -> Result<WaVersionSetting, ConfigError> {
    let url = url.map(|u| u.trim().to_owned()).filter(|u| !u.is_empty());
    if let Some(u) = &url
        && !(u.starts_with("https://") || u.starts_with("http://"))
    {
        return Err(ConfigError::Invalid(
            "wa_version_url",
            format!("`{u}` must start with https:// or http://"),
        ));
    }
    let version = version.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    match version.as_deref() {
        None => Ok(WaVersionSetting::Auto { url }),
        Some(v) if v.eq_ignore_ascii_case("auto") => Ok(WaVersionSetting::Auto { url }),
        Some(v) => {
            let fixed = wa_client::version::parse_app_version(v).map_err(|_| {
                ConfigError::Invalid(
                    "wa_version",
                    format!(
                        "`{v}` is neither `auto` nor a version of three numbers such as 2.3000.1045649367"
                    ),
                )
            })?;
            if url.is_some() {
                return Err(ConfigError::Invalid(
                    "wa_version_url",
                    "only applies with wa_version = auto (a fixed version is never fetched)".into(),
                ));
            }
            Ok(WaVersionSetting::Fixed(fixed))
        }
    }
}

fn resolve_external_emulator(
    url: Option<String>,
    root_key: Option<String>,
    media_ca: Option<PathBuf>,
) -> Result<Option<ExternalEmulator>, ConfigError> {
    let Some(url) = url.filter(|u| !u.trim().is_empty()) else {
        if root_key.is_some() || media_ca.is_some() {
            return Err(ConfigError::Invalid(
                "emulator_root_key",
                "--emulator-root-key and --emulator-media-ca need --emulator-url".into(),
            ));
        }
        return Ok(None);
    };
    if !(url.starts_with("ws://") || url.starts_with("wss://")) {
        return Err(ConfigError::Invalid("emulator_url", "must start with ws:// or wss://".into()));
    }
    let key = root_key.ok_or_else(|| {
        ConfigError::Invalid(
            "emulator_root_key",
            "--emulator-url needs the emulator's root public key".into(),
        )
    })?;
    let root_key =
        hex::decode(key.trim()).ok().and_then(|b| <[u8; 32]>::try_from(b).ok()).ok_or_else(|| {
            ConfigError::Invalid("emulator_root_key", "must be 64 hex digits (32 bytes)".into())
        })?;
    let media_ca_pem = match media_ca {
        None => None,
        Some(path) => Some(
            std::fs::read_to_string(&path)
                .map_err(|source| ConfigError::Read { path: path.clone(), source })?,
        ),
    };
    Ok(Some(ExternalEmulator { url, root_key, media_ca_pem }))
}

/// `any`, or ports separated by commas; empty or unset refuses loopback (the default).
fn parse_test_loopback(v: Option<&str>) -> Result<crate::outbound::TestLoopback, ConfigError> {
    use crate::outbound::TestLoopback;
    let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) else { return Ok(TestLoopback::Refused) };
    if v.eq_ignore_ascii_case("any") {
        return Ok(TestLoopback::AnyPort);
    }
    v.split(',')
        .map(|p| p.trim().parse::<u16>().ok().filter(|p| *p != 0))
        .collect::<Option<Vec<u16>>>()
        .map(TestLoopback::Ports)
        .ok_or_else(|| {
            ConfigError::Invalid(TEST_LOOPBACK_TARGETS_VAR, "`any` or ports separated by commas".into())
        })
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
    fn auth_store_is_chosen_by_flag_or_file_with_the_url_from_the_environment() {
        let none = |_: &str| None;
        let url = |u: &'static str| move |k: &str| (k == AUTH_STORE_URL_VAR).then(|| u.to_owned());
        assert_eq!(Config::resolve_with_env(Cli::default(), none).unwrap().auth_store, AuthStore::Sqlite);
        let cli = || Cli { auth_store: Some(AuthStoreKind::Mongodb), ..Cli::default() };
        let c = Config::resolve_with_env(cli(), url("mongodb://127.0.0.1:27017/")).unwrap();
        assert_eq!(
            c.auth_store,
            AuthStore::Mongodb { url: "mongodb://127.0.0.1:27017/".into(), database: "broadcaster".into() }
        );
        assert!(!format!("{c:?}").contains("27017"), "the URL is not in Debug output");
        // Missing or mismatched URL, bad database name: clear errors.
        let err = Config::resolve_with_env(cli(), none).unwrap_err();
        assert!(err.to_string().contains(AUTH_STORE_URL_VAR), "{err}");
        let err = Config::resolve_with_env(cli(), url("postgres://x/y")).unwrap_err();
        assert!(err.to_string().contains("mongodb://"), "{err}");
        let bad_db = Cli { auth_store_database: Some("a.b".into()), ..cli() };
        assert!(Config::resolve_with_env(bad_db, url("mongodb://h/")).is_err());
        let err = Config::resolve_with_env(Cli::default(), url("mongodb://h/")).unwrap_err();
        assert!(err.to_string().contains("sqlite"), "{err}");
        // From the file.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.toml");
        std::fs::write(&path, "auth_store = \"postgres\"\n").unwrap();
        let c =
            Config::resolve_with_env(Cli { config: Some(path), ..Cli::default() }, url("postgres://u@h/db"))
                .unwrap();
        assert_eq!(c.auth_store, AuthStore::Postgres { url: "postgres://u@h/db".into() });
    }

    #[test]
    fn auth_store_follows_database_url_unless_chosen() {
        let env = |auth: Option<&'static str>| {
            move |k: &str| match k {
                "DATABASE_URL" => Some("postgres://bc:pw@db/bc".to_owned()),
                AUTH_STORE_URL_VAR => auth.map(str::to_owned),
                _ => None,
            }
        };
        let c = Config::resolve_with_env(Cli::default(), env(None)).unwrap();
        assert_eq!(c.auth_store, AuthStore::Postgres { url: "postgres://bc:pw@db/bc".into() });
        assert!(c.database_url.is_some());
        let pg = Cli { auth_store: Some(AuthStoreKind::Postgres), ..Cli::default() };
        let c = Config::resolve_with_env(pg, env(None)).unwrap();
        assert_eq!(c.auth_store, AuthStore::Postgres { url: "postgres://bc:pw@db/bc".into() });
        let sqlite = Cli { auth_store: Some(AuthStoreKind::Sqlite), ..Cli::default() };
        assert_eq!(Config::resolve_with_env(sqlite, env(None)).unwrap().auth_store, AuthStore::Sqlite);
        let mongo = Cli { auth_store: Some(AuthStoreKind::Mongodb), ..Cli::default() };
        let c = Config::resolve_with_env(mongo, env(Some("mongodb://m:27017/"))).unwrap();
        assert!(matches!(c.auth_store, AuthStore::Mongodb { .. }));
        let bad = |k: &str| (k == "DATABASE_URL").then(|| "mysql://x/y".to_owned());
        let err = Config::resolve_with_env(Cli::default(), bad).unwrap_err();
        assert!(err.to_string().contains("DATABASE_URL"), "{err}");
    }

    #[test]
    fn external_emulator_and_pending_send_age_are_validated() {
        let key = "ab".repeat(32);
        let cli = |url: Option<&str>, k: Option<&str>| Cli {
            emulator_url: url.map(str::to_owned),
            emulator_root_key: k.map(str::to_owned),
            ..Cli::default()
        };
        let c =
            Config::resolve_with_env(cli(Some("ws://127.0.0.1:1/ws/chat"), Some(&key)), |_| None).unwrap();
        let ext = c.external_emulator.unwrap();
        assert_eq!((ext.url.as_str(), ext.root_key), ("ws://127.0.0.1:1/ws/chat", [0xab; 32]));
        assert_eq!(c.pending_send_max_age, Duration::from_secs(DEFAULT_PENDING_SEND_MAX_AGE_SECS));
        for (url, k, field) in [
            (Some("ws://h/ws/chat"), None, "emulator_root_key"),
            (Some("ws://h/ws/chat"), Some("abcd"), "emulator_root_key"),
            (Some("http://h/"), Some(key.as_str()), "emulator_url"),
            (None, Some(key.as_str()), "emulator_root_key"),
        ] {
            let err = Config::resolve_with_env(cli(url, k), |_| None).unwrap_err();
            assert!(matches!(err, ConfigError::Invalid(f, _) if f == field), "{url:?} {k:?}: {err}");
        }
        let both = Cli { emulator: true, ..cli(Some("ws://h/ws/chat"), Some(&key)) };
        assert!(Config::resolve_with_env(both, |_| None).is_err());
        // Both modes named: that is the problem reported, even when the URL's key is missing.
        for k in [None, Some(key.as_str())] {
            let both = Cli { emulator: true, ..cli(Some("ws://h/ws/chat"), k) };
            let err = Config::resolve_with_env(both, |_| None).unwrap_err();
            assert!(matches!(err, ConfigError::Invalid("emulator_url", _)), "{err}");
            assert!(err.to_string().contains("not both"), "{err}");
        }
        let zero = Cli { pending_send_max_age_secs: Some(0), ..Cli::default() };
        assert!(matches!(
            Config::resolve_with_env(zero, |_| None),
            Err(ConfigError::Invalid("pending_send_max_age_secs", _))
        ));
    }

    #[test]
    fn wa_version_is_auto_or_a_version_and_validated() {
        let cli = |v: Option<&str>, u: Option<&str>| Cli {
            wa_version: v.map(str::to_owned),
            wa_version_url: u.map(str::to_owned),
            ..Cli::default()
        };
        let resolve = |c: Cli| Config::resolve_with_env(c, |_| None).map(|c| c.wa_version);
        assert_eq!(resolve(cli(None, None)).unwrap(), WaVersionSetting::Auto { url: None });
        assert_eq!(resolve(cli(Some("AUTO"), None)).unwrap(), WaVersionSetting::Auto { url: None });
        assert_eq!(
            resolve(cli(Some(" 2.3000.1045649367 "), None)).unwrap(),
            WaVersionSetting::Fixed([2, 3000, 1_045_649_367])
        );
        assert_eq!(
            resolve(cli(Some("auto"), Some("http://127.0.0.1:9/sw.js"))).unwrap(),
            WaVersionSetting::Auto { url: Some("http://127.0.0.1:9/sw.js".into()) }
        );
        for (v, u, field, needle) in [
            (Some("2.3000"), None, "wa_version", "neither `auto` nor a version"),
            (Some("latest"), None, "wa_version", "2.3000.1045649367"),
            (Some("2.3000.x"), None, "wa_version", "neither"),
            (None, Some("ftp://mirror/sw.js"), "wa_version_url", "https://"),
            (Some("2.3000.1"), Some("https://mirror/sw.js"), "wa_version_url", "only applies"),
        ] {
            let err = resolve(cli(v, u)).unwrap_err();
            assert!(matches!(&err, ConfigError::Invalid(f, _) if *f == field), "{v:?} {u:?}: {err}");
            assert!(err.to_string().contains(needle), "{err}");
        }
        // From the file too.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.toml");
        std::fs::write(&path, "wa_version = \"2.3000.7\"\n").unwrap();
        let c = Config::resolve_with_env(Cli { config: Some(path), ..Cli::default() }, |_| None).unwrap();
        assert_eq!(c.wa_version, WaVersionSetting::Fixed([2, 3000, 7]));
    }

    #[test]
    fn the_master_key_comes_from_the_environment_or_a_key_file_and_a_bad_one_is_refused() {
        let hex = "ab".repeat(32);
        let env = |vars: Vec<(&'static str, String)>| {
            move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
        };
        let c = Config::resolve_with_env(Cli::default(), env(vec![])).unwrap();
        assert!(c.master_key.key.is_none() && c.master_key.previous.is_none());
        assert_eq!(c.master_key.file_in(std::path::Path::new("/d")), PathBuf::from("/d/master-key"));
        let vars = vec![
            ("BROADCASTER_MASTER_KEY", hex.clone()),
            ("BROADCASTER_MASTER_KEY_PREVIOUS", "cd".repeat(32)),
        ];
        let cli = Cli { master_key_file: Some("/keys/k".into()), ..Cli::default() };
        let c = Config::resolve_with_env(cli, env(vars)).unwrap();
        assert_eq!(c.master_key.key.as_ref().map(|k| k.to_hex()), Some(hex.clone()));
        assert_eq!(c.master_key.previous.as_ref().map(|k| k.to_hex()), Some("cd".repeat(32)));
        assert_eq!(c.master_key.file_in(std::path::Path::new("/d")), PathBuf::from("/keys/k"));
        assert!(!format!("{c:?}").contains(&hex), "Debug never shows the key");
        let err = Config::resolve_with_env(
            Cli::default(),
            env(vec![("BROADCASTER_MASTER_KEY_PREVIOUS", "oops".into())]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("BROADCASTER_MASTER_KEY_PREVIOUS is not a master key"), "{err}");
    }

    #[test]
    fn the_test_loopback_allowance_comes_from_the_environment_only() {
        use crate::outbound::TestLoopback;
        assert_eq!(
            Config::resolve_with_env(Cli::default(), |_| None).unwrap().outbound.test_loopback,
            TestLoopback::Refused
        );
        let env = |v: &'static str| move |k: &str| (k == TEST_LOOPBACK_TARGETS_VAR).then(|| v.to_owned());
        let c = Config::resolve_with_env(Cli::default(), env("8080, 9000")).unwrap();
        assert_eq!(c.outbound.test_loopback, TestLoopback::Ports(vec![8080, 9000]));
        assert_eq!(
            Config::resolve_with_env(Cli::default(), env("ANY")).unwrap().outbound.test_loopback,
            TestLoopback::AnyPort
        );
        for bad in ["yes", "0", "80,x"] {
            assert!(Config::resolve_with_env(Cli::default(), env(bad)).is_err(), "{bad}");
        }
        // No file key: a copied config file cannot turn it on.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.toml");
        std::fs::write(&path, "test_loopback_targets = \"any\"\n").unwrap();
        assert!(Config::resolve_with_env(Cli { config: Some(path), ..Cli::default() }, |_| None).is_err());
    }

    #[test]
    fn the_outbound_allow_list_comes_from_flags_or_the_file_and_must_parse() {
        let c = Config::resolve_with_env(Cli::default(), |_| None).unwrap();
        assert!(c.outbound.allow.is_empty(), "nothing private is allowed by default");
        let cli = Cli { outbound_allow: vec!["10.0.0.0/8".into(), " fd00::/8".into()], ..Cli::default() };
        let c = Config::resolve_with_env(cli, |_| None).unwrap();
        assert_eq!(
            c.outbound.allow.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["10.0.0.0/8", "fd00::/8"]
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.toml");
        std::fs::write(&path, "outbound_allow = [\"192.168.1.5\"]\n").unwrap();
        let c = Config::resolve_with_env(Cli { config: Some(path), ..Cli::default() }, |_| None).unwrap();
        assert_eq!(c.outbound.allow.len(), 1);
        for bad in ["0.0.0.0/0", "intranet"] {
            let cli = Cli { outbound_allow: vec![bad.into()], ..Cli::default() };
            let err = Config::resolve_with_env(cli, |_| None).unwrap_err();
            assert!(matches!(err, ConfigError::Invalid("outbound_allow", _)), "{bad}: {err}");
        }
    }

    #[test]
    fn a_bad_outbound_ca_file_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let err = Config::resolve_with_env(Cli { outbound_ca_file: Some(path), ..Cli::default() }, |_| None)
            .unwrap_err();
        assert!(matches!(err, ConfigError::Invalid("outbound_ca_file", _)), "{err}");
        let missing = Cli { outbound_ca_file: Some(dir.path().join("nope.pem")), ..Cli::default() };
        assert!(matches!(Config::resolve_with_env(missing, |_| None), Err(ConfigError::Read { .. })));
    }

    #[test]
    fn help_documents_every_setting() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        for needle in [
            "--listen",
            "--data-dir",
            "--config",
            "BROADCASTER_ADMIN_KEY",
            "--webhook-max-attempts",
            "--auth-store",
            "BROADCASTER_AUTH_STORE_URL",
            "mongodb",
            "--emulator-url",
            "--pending-send-max-age-secs",
            "--wa-version",
            "BROADCASTER_WA_VERSION",
            "--wa-version-url",
            "--outbound-ca-file",
            "BROADCASTER_TEST_LOOPBACK_TARGETS",
            "--outbound-allow",
            "--metrics-public",
            "BROADCASTER_METRICS_TOKEN",
            "--header-read-timeout-secs",
            "--max-connections",
            "--max-connections-per-ip",
            "--auth-failures-per-minute",
        ] {
            assert!(help.contains(needle), "help lacks {needle}");
        }
    }
}
