//! The server's own database (tenants, keys, accounts, messages, webhooks, outbox, contacts,
//! templates, campaigns): embedded SQLite in the data dir by default, PostgreSQL when
//! `DATABASE_URL` is set. WhatsApp auth state lives in `wa-store`; this database holds only what
//! the server owns.
//!
//! Database calls are blocking, so every call runs on the blocking pool via [`Db::call`] and the
//! async runtime is never blocked. Call sites see one backend-neutral [`Conn`]; each query is one
//! SQL text that both backends run.
//!
//! # Writing queries (and converting rusqlite code)
//!
//! [`Conn`] is shaped like `rusqlite::Connection`, so rusqlite code converts mechanically:
//!
//! | rusqlite                                   | here                                            |
//! |--------------------------------------------|-------------------------------------------------|
//! | `use rusqlite::{params, OptionalExtension}`| `use crate::db::{params, OptionalExtension}`    |
//! | `&rusqlite::Connection`, `Transaction<'_>` | `&Conn` (a [`Transaction`] derefs to `Conn`)    |
//! | `rusqlite::Result<T>` / `rusqlite::Error`  | [`DbResult<T>`] / [`DbError`]                   |
//! | `Row<'_>`, `r.get::<T>(i)`              | [`Row`], `r.get::<T>(i)` (or inferred `r.get(i)`)|
//! | `c.execute`, `query_row(..).optional()`    | same names; or [`Conn::query_opt`]              |
//! | `c.prepare(sql)?.query_map(p, f)?`         | same, or [`Conn::query_all`]                    |
//! | `let tx = c.transaction()?; …; tx.commit()`| same (dropped without commit = rolled back)     |
//! | `SqliteFailure(ConstraintViolation)`       | [`DbError::is_constraint_violation`]            |
//! | `ToSqlConversionFailure(e)` (serde etc.)   | [`DbError::Encode`]; bad stored data: [`DbError::Corrupt`] |
//!
//! SQL must run on SQLite and PostgreSQL alike:
//! - placeholders `?1`…`?N` (translated to `$N` for PostgreSQL);
//! - `INSERT … ON CONFLICT DO NOTHING`, not `INSERT OR IGNORE`/`OR REPLACE`;
//! - `CAST(SUM(x) AS BIGINT)` (PostgreSQL's SUM of bigint is numeric, which rows cannot hold);
//! - a parameter whose type PostgreSQL cannot infer gets a cast: `CAST(?1 AS TEXT) IS NULL`;
//!   one compared with an integer literal only (`?1 = 1`) is bound as a 4-byte int, so cast
//!   timestamps in arithmetic: `CAST(?1 AS BIGINT) - 1000`;
//! - no SQLite-only functions (`MAX(a, b)` → `CASE`, `json_each`, `IFNULL` → `COALESCE`,
//!   `GROUP_CONCAT`, `strftime`); `LIKE` is case-sensitive on PostgreSQL (use `LOWER(..)` on both
//!   sides); a subquery in `FROM` needs an alias;
//! - integers are 64-bit (`BIGINT` in the PostgreSQL schema), booleans are stored as 0/1
//!   integers; every migration in [`MIGRATIONS`] needs its PostgreSQL twin in
//!   `postgres::MIGRATIONS` (same index).

use std::cell::Cell;
use std::path::Path;
use std::sync::{Arc, Mutex};

pub mod postgres;
mod sqlite;
mod value;

pub use sqlite::FILE_NAME as SQLITE_FILE;
pub use value::{FromValue, FromValueError, ToValue, Value, ValueRef};

/// Result of a database operation.
pub type DbResult<T> = Result<T, DbError>;

/// Errors from the database layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgres: {}", postgres::pg_message(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// The database settings are unusable (e.g. a malformed `DATABASE_URL`).
    #[error("{0}")]
    Config(String),
    #[error("database schema version {found} is newer than this binary supports ({supported})")]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("database worker failed: {0}")]
    Join(String),
    #[error("database lock poisoned")]
    Poisoned,
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A query that must return a row returned none.
    #[error("query returned no rows")]
    NoRows,
    /// A column value could not be read as the requested type.
    #[error("column {column}: {message}")]
    Column { column: usize, message: String },
    /// A value could not be encoded for storage (e.g. JSON serialisation failed).
    #[error("cannot encode value: {0}")]
    Encode(String),
}

impl DbError {
    /// A unique, foreign-key, check or not-null constraint refused the write (the API maps the
    /// cases it expects to 409).
    pub fn is_constraint_violation(&self) -> bool {
        match self {
            Self::Sqlite(e) => sqlite::is_constraint_violation(e),
            Self::Postgres(e) => postgres::is_constraint_violation(e),
            _ => false,
        }
    }

    /// The database server is unreachable or its connection dropped: the request may be
    /// retried (the API answers 503), and the next use reconnects.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Postgres(e) => postgres::is_unavailable(e),
            _ => false,
        }
    }
}

/// `rusqlite::OptionalExtension` for [`DbResult`]: [`DbError::NoRows`] becomes `Ok(None)`.
pub trait OptionalExtension<T> {
    fn optional(self) -> DbResult<Option<T>>;
}

impl<T> OptionalExtension<T> for DbResult<T> {
    fn optional(self) -> DbResult<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(DbError::NoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Query parameters: `params![a, b]`, `[]`, `[a, b]` (one type), or a `&[&dyn ToValue]` built at
/// run time.
pub trait Params {
    fn with_values<R>(&self, f: impl FnOnce(&[&dyn ToValue]) -> R) -> R;
}

impl Params for &[&dyn ToValue] {
    fn with_values<R>(&self, f: impl FnOnce(&[&dyn ToValue]) -> R) -> R {
        f(self)
    }
}

impl Params for [&dyn ToValue; 0] {
    fn with_values<R>(&self, f: impl FnOnce(&[&dyn ToValue]) -> R) -> R {
        f(&[])
    }
}

macro_rules! array_params {
    ($($n:literal)*) => {$(
        impl<T: ToValue> Params for [T; $n] {
            fn with_values<R>(&self, f: impl FnOnce(&[&dyn ToValue]) -> R) -> R {
                let refs: [&dyn ToValue; $n] = std::array::from_fn(|i| &self[i] as &dyn ToValue);
                f(&refs)
            }
        }
    )*};
}
array_params!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16);

/// Query parameters, like `rusqlite::params!`: `params![id, name, now]`.
#[doc(hidden)]
#[macro_export]
macro_rules! __db_params {
    () => {
        &[] as &[&dyn $crate::db::ToValue]
    };
    ($($p:expr),+ $(,)?) => {
        &[$(&$p as &dyn $crate::db::ToValue),+] as &[&dyn $crate::db::ToValue]
    };
}
pub use crate::__db_params as params;

/// One result row, read with typed getters: `row.get::<i64>(0)?`.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    values: Vec<Value>,
}

impl Row {
    /// Column `index` (0-based) as `T`; a type mismatch is [`DbError::Column`].
    pub fn get<T: FromValue>(&self, index: usize) -> DbResult<T> {
        let v = self.values.get(index).ok_or_else(|| DbError::Column {
            column: index,
            message: format!("no such column (the row has {})", self.values.len()),
        })?;
        T::from_value(v).map_err(|e| DbError::Column { column: index, message: e.0 })
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Which database a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

// One per process: the size difference between the variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Inner {
    Sqlite(sqlite::SqliteConn),
    Postgres(postgres::PgConn),
}

/// A connection (on the blocking pool, inside [`Db::call`]). Statements are cached per SQL text.
pub struct Conn {
    inner: Inner,
    /// Open transactions (nested ones are savepoints).
    depth: Cell<u32>,
}

impl Conn {
    fn new(inner: Inner) -> Self {
        Self { inner, depth: Cell::new(0) }
    }

    /// Before each [`Db::call`]: no transaction is open, and a closed PostgreSQL connection is
    /// replaced.
    fn ensure_ready(&mut self) -> DbResult<()> {
        self.depth.set(0);
        match &mut self.inner {
            Inner::Sqlite(_) => Ok(()),
            Inner::Postgres(c) => c.ensure_open(),
        }
    }

    /// A use failed: if the server went away, reconnect before the next one.
    fn after_error(&mut self, e: &DbError) {
        if let Inner::Postgres(c) = &mut self.inner
            && e.is_unavailable()
        {
            c.mark_broken();
        }
    }

    pub fn backend(&self) -> Backend {
        match self.inner {
            Inner::Sqlite(_) => Backend::Sqlite,
            Inner::Postgres(_) => Backend::Postgres,
        }
    }

    fn rows(&self, sql: &str, params: &[&dyn ToValue], limit: usize) -> DbResult<Vec<Row>> {
        match &self.inner {
            Inner::Sqlite(c) => c.query(sql, params, limit),
            Inner::Postgres(c) => c.query(sql, params),
        }
    }

    /// Runs one statement; returns the number of rows changed.
    pub fn execute<P: Params>(&self, sql: &str, params: P) -> DbResult<usize> {
        match &self.inner {
            Inner::Sqlite(c) => params.with_values(|p| c.execute(sql, p)),
            Inner::Postgres(c) => params.with_values(|p| c.execute(sql, p)),
        }
    }

    /// Runs statements without parameters (`;`-separated).
    pub fn execute_batch(&self, sql: &str) -> DbResult<()> {
        match &self.inner {
            Inner::Sqlite(c) => c.execute_batch(sql),
            Inner::Postgres(c) => c.execute_batch(sql),
        }
    }

    /// The first row mapped by `f`, or [`DbError::NoRows`].
    pub fn query_row<T, P, F>(&self, sql: &str, params: P, f: F) -> DbResult<T>
    where
        P: Params,
        F: FnOnce(&Row) -> DbResult<T>,
    {
        self.query_opt(sql, params, f)?.ok_or(DbError::NoRows)
    }

    /// The first row mapped by `f`, or `None`.
    pub fn query_opt<T, P, F>(&self, sql: &str, params: P, f: F) -> DbResult<Option<T>>
    where
        P: Params,
        F: FnOnce(&Row) -> DbResult<T>,
    {
        params.with_values(|p| self.rows(sql, p, 1))?.first().map(f).transpose()
    }

    /// Every row mapped by `f`.
    pub fn query_all<T, P, F>(&self, sql: &str, params: P, f: F) -> DbResult<Vec<T>>
    where
        P: Params,
        F: FnMut(&Row) -> DbResult<T>,
    {
        params.with_values(|p| self.rows(sql, p, usize::MAX))?.iter().map(f).collect()
    }

    /// A statement to run (rusqlite's shape; the SQL is cached by the backend either way).
    pub fn prepare(&self, sql: &str) -> DbResult<Statement<'_>> {
        Ok(Statement { conn: self, sql: sql.to_owned() })
    }

    /// Same as [`Conn::prepare`] (every statement is cached).
    pub fn prepare_cached(&self, sql: &str) -> DbResult<Statement<'_>> {
        self.prepare(sql)
    }

    /// Begins a transaction (a savepoint inside another one). Commit with
    /// [`Transaction::commit`]; dropping it uncommitted rolls it back.
    pub fn transaction(&self) -> DbResult<Transaction<'_>> {
        let d = self.depth.get();
        if d == 0 {
            self.execute_batch("BEGIN")?;
        } else {
            self.execute_batch(&format!("SAVEPOINT sp{d}"))?;
        }
        self.depth.set(d + 1);
        Ok(Transaction { conn: self, open: true })
    }

    fn end_transaction(&self, commit: bool) -> DbResult<()> {
        let d = self.depth.get().saturating_sub(1);
        self.depth.set(d);
        let sql = match (d, commit) {
            (0, true) => "COMMIT".to_owned(),
            (0, false) => "ROLLBACK".to_owned(),
            (_, true) => format!("RELEASE sp{d}"),
            (_, false) => format!("ROLLBACK TO sp{d}; RELEASE sp{d}"),
        };
        let r = self.execute_batch(&sql);
        if r.is_err() && commit && d == 0 {
            // A failed COMMIT can leave the transaction open (SQLite): never leave it so.
            let _ = self.execute_batch("ROLLBACK");
        }
        r
    }
}

/// A prepared statement in rusqlite's shape (`query_map`, `execute`, `query_row`).
pub struct Statement<'c> {
    conn: &'c Conn,
    sql: String,
}

impl Statement<'_> {
    /// Every row mapped by `f`, as an iterator of results (collect it).
    pub fn query_map<T, P, F>(&mut self, params: P, mut f: F) -> DbResult<std::vec::IntoIter<DbResult<T>>>
    where
        P: Params,
        F: FnMut(&Row) -> DbResult<T>,
    {
        let rows = params.with_values(|p| self.conn.rows(&self.sql, p, usize::MAX))?;
        Ok(rows.iter().map(&mut f).collect::<Vec<_>>().into_iter())
    }

    pub fn execute<P: Params>(&mut self, params: P) -> DbResult<usize> {
        self.conn.execute(&self.sql, params)
    }

    pub fn query_row<T, P, F>(&mut self, params: P, f: F) -> DbResult<T>
    where
        P: Params,
        F: FnOnce(&Row) -> DbResult<T>,
    {
        self.conn.query_row(&self.sql, params, f)
    }
}

/// An open transaction; derefs to [`Conn`] for queries. Rolled back when dropped uncommitted.
pub struct Transaction<'c> {
    conn: &'c Conn,
    open: bool,
}

impl Transaction<'_> {
    pub fn commit(mut self) -> DbResult<()> {
        self.open = false;
        self.conn.end_transaction(true)
    }

    pub fn rollback(mut self) -> DbResult<()> {
        self.open = false;
        self.conn.end_transaction(false)
    }
}

impl std::ops::Deref for Transaction<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if self.open {
            // Nothing to report to: the caller is already returning an error (or panicking).
            let _ = self.conn.end_transaction(false);
        }
    }
}

/// Versioned migrations; index + 1 is the `user_version` after applying the entry.
/// Never edit an applied migration; append a new one.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: core schema
    r#"
CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('admin','manager','operator','viewer')),
    key_hash    TEXT NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX api_keys_tenant ON api_keys(tenant_id);
CREATE TABLE accounts (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    phone           TEXT,
    push_name       TEXT,
    state           TEXT NOT NULL,
    state_reason    TEXT,
    daily_limit     INTEGER NOT NULL,
    time_zone       TEXT NOT NULL,
    last_connected_at INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX accounts_tenant ON accounts(tenant_id, created_at);
CREATE UNIQUE INDEX accounts_tenant_phone ON accounts(tenant_id, phone) WHERE phone IS NOT NULL;
CREATE TABLE account_activity (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   TEXT NOT NULL,
    account_id  TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    from_state  TEXT,
    to_state    TEXT NOT NULL,
    reason      TEXT,
    at          INTEGER NOT NULL
);
CREATE INDEX account_activity_account ON account_activity(tenant_id, account_id, id);
CREATE TABLE messages (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    account_id    TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    direction     TEXT NOT NULL CHECK (direction IN ('outgoing','incoming')),
    chat_jid      TEXT NOT NULL,
    wa_message_id TEXT,
    kind          TEXT NOT NULL,
    body          TEXT,
    status        TEXT NOT NULL CHECK (status IN ('pending','sent','delivered','read','failed','received')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    error         TEXT,
    created_at    INTEGER NOT NULL,
    sent_at       INTEGER,
    delivered_at  INTEGER,
    read_at       INTEGER,
    failed_at     INTEGER
);
CREATE INDEX messages_account ON messages(tenant_id, account_id, created_at, id);
CREATE INDEX messages_chat ON messages(tenant_id, account_id, chat_jid, created_at, id);
CREATE TABLE webhooks (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    account_id  TEXT REFERENCES accounts(id) ON DELETE CASCADE,
    url         TEXT NOT NULL,
    secret      TEXT NOT NULL,
    events      TEXT NOT NULL,
    enabled     INTEGER NOT NULL DEFAULT 1,
    created_at  INTEGER NOT NULL
);
CREATE INDEX webhooks_tenant ON webhooks(tenant_id);
CREATE TABLE webhook_outbox (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    webhook_id      TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_type      TEXT NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending','delivered','dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    last_status     INTEGER,
    created_at      INTEGER NOT NULL,
    delivered_at    INTEGER
);
CREATE INDEX webhook_outbox_due ON webhook_outbox(status, next_attempt_at);
CREATE INDEX webhook_outbox_tenant ON webhook_outbox(tenant_id, webhook_id, created_at);
"#,
    // 2: messages with media metadata, replies, per-status timestamps; early receipts; current QR
    r#"
ALTER TABLE accounts ADD COLUMN qr_code TEXT;
ALTER TABLE accounts ADD COLUMN qr_expires_at INTEGER;
ALTER TABLE accounts ADD COLUMN pairing_code TEXT;
DROP TABLE messages;
CREATE TABLE messages (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL,
    account_id     TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    direction      TEXT NOT NULL CHECK (direction IN ('outgoing','incoming')),
    chat_jid       TEXT NOT NULL,
    sender_jid     TEXT,
    sender_phone   TEXT,
    push_name      TEXT,
    wa_message_id  TEXT,
    kind           TEXT NOT NULL,
    body           TEXT,
    media_mimetype TEXT,
    media_file_name TEXT,
    media_size     INTEGER,
    quoted_id      TEXT,
    status         TEXT NOT NULL CHECK (status IN ('pending','sent','delivered','read','played','failed','received')),
    attempts       INTEGER NOT NULL DEFAULT 0,
    error          TEXT,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    sent_at        INTEGER,
    delivered_at   INTEGER,
    read_at        INTEGER,
    played_at      INTEGER,
    failed_at      INTEGER
);
CREATE INDEX messages_account ON messages(tenant_id, account_id, created_at, id);
CREATE INDEX messages_chat ON messages(tenant_id, account_id, chat_jid, created_at, id);
CREATE UNIQUE INDEX messages_wa_id ON messages(account_id, direction, wa_message_id)
    WHERE wa_message_id IS NOT NULL;
CREATE TABLE message_media (
    message_id TEXT PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
    data       BLOB NOT NULL
);
-- Receipts that arrive before the send call recorded the WhatsApp id (a fast recipient).
CREATE TABLE early_receipts (
    account_id    TEXT NOT NULL,
    wa_message_id TEXT NOT NULL,
    status        TEXT NOT NULL,
    at            INTEGER NOT NULL,
    PRIMARY KEY (account_id, wa_message_id, status)
);
"#,
    // 3: contacts, templates, campaigns (issue 8)
    r#"
CREATE TABLE contacts (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    phone           TEXT NOT NULL,
    name            TEXT,
    fields          TEXT NOT NULL DEFAULT '{}',
    opted_out_at    INTEGER,
    opt_out_reason  TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (tenant_id, phone)
);
CREATE INDEX contacts_tenant ON contacts(tenant_id, created_at, id);
CREATE TABLE contact_tags (
    tenant_id   TEXT NOT NULL,
    contact_id  TEXT NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
    tag         TEXT NOT NULL,
    PRIMARY KEY (contact_id, tag)
);
CREATE INDEX contact_tags_tag ON contact_tags(tenant_id, tag);
CREATE TABLE opt_out_settings (
    tenant_id   TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    keywords    TEXT NOT NULL
);
CREATE TABLE templates (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    body        TEXT NOT NULL,
    variables   TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE TABLE campaigns (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('campaign','direct')),
    template_id     TEXT,
    body            TEXT NOT NULL,
    declared        TEXT NOT NULL,
    variables       TEXT NOT NULL,
    account_ids     TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('draft','scheduled','running','paused','completed','cancelled')),
    status_reason   TEXT,
    rate_per_minute INTEGER NOT NULL,
    jitter_pct      INTEGER NOT NULL,
    check_numbers   INTEGER NOT NULL,
    max_attempts    INTEGER NOT NULL,
    scheduled_at    INTEGER,
    started_at      INTEGER,
    completed_at    INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX campaigns_tenant ON campaigns(tenant_id, created_at, id);
CREATE INDEX campaigns_status ON campaigns(status);
CREATE TABLE campaign_recipients (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    campaign_id     TEXT NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    tenant_id       TEXT NOT NULL,
    contact_id      TEXT,
    phone           TEXT NOT NULL,
    variables       TEXT NOT NULL DEFAULT '{}',
    account_id      TEXT,
    status          TEXT NOT NULL CHECK (status IN ('pending','sending','sent','delivered','read','failed','skipped')),
    reason          TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    number_checked  INTEGER NOT NULL DEFAULT 0,
    message_id      TEXT,
    sending_since   INTEGER,
    sent_at         INTEGER,
    delivered_at    INTEGER,
    read_at         INTEGER,
    failed_at       INTEGER,
    updated_at      INTEGER NOT NULL,
    UNIQUE (campaign_id, phone)
);
CREATE INDEX campaign_recipients_due ON campaign_recipients(campaign_id, status, next_attempt_at, id);
CREATE INDEX campaign_recipients_message ON campaign_recipients(message_id);
CREATE INDEX campaign_recipients_account_sent ON campaign_recipients(account_id, sent_at);
"#,
    // 4: incoming media (the runtime's handle to fetch and decrypt the file on demand);
    // bulk sends (paced: each pending row waits for its `due_at`)
    r#"
ALTER TABLE messages ADD COLUMN media_handle BLOB;
CREATE TABLE bulk_sends (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    account_id  TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    per_minute  INTEGER NOT NULL,
    media_data  BLOB,
    created_at  INTEGER NOT NULL
);
ALTER TABLE messages ADD COLUMN bulk_id TEXT REFERENCES bulk_sends(id) ON DELETE CASCADE;
ALTER TABLE messages ADD COLUMN due_at INTEGER;
CREATE INDEX messages_due ON messages(due_at) WHERE due_at IS NOT NULL;
"#,
    // 5: the WhatsApp id chosen (and stored) before a send, so that a retry after a crash reuses
    // it; an index for the daily counters (per account and direction, by time)
    r#"
ALTER TABLE messages ADD COLUMN reserved_wa_id TEXT;
CREATE INDEX messages_account_day ON messages(account_id, direction, created_at);
"#,
    // 6: template media files, and which media a template and a campaign use (issue 8)
    r#"
CREATE TABLE template_media (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    mimetype    TEXT NOT NULL,
    file_name   TEXT,
    size        INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    source_url  TEXT,
    data        BLOB NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX template_media_tenant ON template_media(tenant_id);
ALTER TABLE templates ADD COLUMN media_id TEXT;
ALTER TABLE campaigns ADD COLUMN media_id TEXT;
"#,
    // 7: a campaign's messages point at its stored file instead of copying it per recipient
    r#"
ALTER TABLE messages ADD COLUMN template_media_id TEXT REFERENCES template_media(id) ON DELETE SET NULL;
CREATE INDEX messages_template_media ON messages(template_media_id) WHERE template_media_id IS NOT NULL;
"#,
    // 8: the push name an operator chose to announce for an account (none: the owner's stays),
    // and a stable code beside the state reason (`client_outdated`)
    r#"
ALTER TABLE accounts ADD COLUMN push_name_override TEXT;
ALTER TABLE accounts ADD COLUMN state_reason_code TEXT;
"#,
    // 9: the LIDs beside the chat and the sender (1:1 chats stay keyed by phone number, so a
    // contact seen by number and by LID is one chat)
    r#"
ALTER TABLE messages ADD COLUMN chat_lid TEXT;
ALTER TABLE messages ADD COLUMN sender_lid TEXT;
CREATE INDEX messages_chat_lid ON messages(tenant_id, account_id, chat_lid, created_at, id) WHERE chat_lid IS NOT NULL;
"#,
    // 10: every message kind (issue 18): a typed payload (location, contact card, poll as JSON);
    // reactions (JSON array of {sender, emoji, at}, one per sender), the edit history (JSON
    // array of {body, at}, previous texts) and the revoked flag on the message they target
    r#"
ALTER TABLE messages ADD COLUMN payload TEXT;
ALTER TABLE messages ADD COLUMN reactions TEXT;
ALTER TABLE messages ADD COLUMN edits TEXT;
ALTER TABLE messages ADD COLUMN edited_at INTEGER;
ALTER TABLE messages ADD COLUMN revoked_at INTEGER;
"#,
    // 11: sending limits (issue 16): new contacts a day, the contacts an account knows, the
    // reach-out time-lock and a campaign's pause for it. Existing chats count as known (anyone
    // who wrote to the account, anyone it reached).
    r#"
ALTER TABLE accounts ADD COLUMN new_contact_limit INTEGER NOT NULL DEFAULT 50;
ALTER TABLE accounts ADD COLUMN new_contacts_day INTEGER NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN new_contacts_today INTEGER NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN reachout_locked_until INTEGER;
ALTER TABLE accounts ADD COLUMN reachout_lock_type TEXT;
ALTER TABLE campaigns ADD COLUMN paused_until INTEGER;
CREATE TABLE account_contacts (
    account_id        TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    chat_jid          TEXT NOT NULL,
    first_message_id  TEXT,
    first_at          INTEGER NOT NULL,
    PRIMARY KEY (account_id, chat_jid)
);
INSERT INTO account_contacts (account_id, chat_jid, first_message_id, first_at)
    SELECT account_id, chat_jid, NULL, MIN(created_at) FROM messages
     WHERE chat_jid NOT LIKE '%@g.us' AND account_id IN (SELECT id FROM accounts)
       AND (direction = 'incoming' OR status IN ('sent','delivered','read','played'))
     GROUP BY account_id, chat_jid;
"#,
    // 12: a receipt for a message not recorded as sent (its send unconfirmed, still in hand,
    // or failed as expired) finds the row by its reserved WhatsApp id
    // (`messages::settle_by_receipt`).
    r#"
CREATE INDEX messages_unsettled_reserved ON messages(account_id, reserved_wa_id)
    WHERE wa_message_id IS NULL AND reserved_wa_id IS NOT NULL;
"#,
    // 13: a per-account proxy (issue 18): the URL with its credentials, sealed with the master
    // key (`secrets`), and the form the API shows (password as `***`).
    r#"
ALTER TABLE accounts ADD COLUMN proxy_url TEXT;
ALTER TABLE accounts ADD COLUMN proxy_display TEXT;
"#,
    // 14: what the account's phone says through app state (issue 15): each chat's archive,
    // pin, mute and read marks (`wa_chat`: the chat as app state names it), and contacts'
    // names (the phone's address book, push names from history sync)
    r#"
CREATE TABLE chat_settings (
    tenant_id    TEXT NOT NULL,
    account_id   TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    chat_jid     TEXT NOT NULL,
    wa_chat      TEXT NOT NULL,
    archived     INTEGER NOT NULL DEFAULT 0,
    pinned       INTEGER NOT NULL DEFAULT 0,
    muted_until  INTEGER,
    marked_read  INTEGER,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (account_id, chat_jid)
);
CREATE TABLE contact_names (
    tenant_id    TEXT NOT NULL,
    account_id   TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    jid          TEXT NOT NULL,
    phone        TEXT,
    lid          TEXT,
    full_name    TEXT,
    first_name   TEXT,
    push_name    TEXT,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (account_id, jid)
);
CREATE INDEX contact_names_phone ON contact_names(tenant_id, phone) WHERE phone IS NOT NULL;
"#,
    // 15: hot queries on indexes, work independent of table size (issue 19).
    // - Daily usage as counters: `message_usage` holds, per account and UTC quarter hour of
    //   `created_at` (`messages::USAGE_BUCKET_MS`), the outgoing messages that count against the
    //   daily limit (all but `failed`) and the incoming ones; a local day is a whole number of
    //   quarter hours in every zone in use, so a day's usage is a sum of at most ~100 rows.
    //   Triggers keep it in the same transaction as every insert, status change and delete,
    //   whichever code path writes the row (retries, failures, settles, restarts). Backfilled.
    // - Campaign claims walk pending recipients in id order (partial indexes: pending rows only).
    // - The bulk/single-send queue and the webhook queue walk their due rows in order.
    r#"
CREATE TABLE message_usage (
    account_id  TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    bucket      INTEGER NOT NULL,
    sent        INTEGER NOT NULL DEFAULT 0,
    received    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, bucket)
);
INSERT INTO message_usage (account_id, bucket, sent, received)
    SELECT account_id, created_at / 900000,
           SUM(CASE WHEN direction = 'outgoing' AND status != 'failed' THEN 1 ELSE 0 END),
           SUM(CASE WHEN direction = 'incoming' THEN 1 ELSE 0 END)
      FROM messages WHERE account_id IN (SELECT id FROM accounts)
     GROUP BY account_id, created_at / 900000;
CREATE TRIGGER message_usage_insert AFTER INSERT ON messages
    WHEN NEW.direction = 'incoming' OR NEW.status != 'failed'
BEGIN
    INSERT INTO message_usage (account_id, bucket, sent, received)
    VALUES (NEW.account_id, NEW.created_at / 900000,
            CASE WHEN NEW.direction = 'outgoing' THEN 1 ELSE 0 END,
            CASE WHEN NEW.direction = 'incoming' THEN 1 ELSE 0 END)
    ON CONFLICT (account_id, bucket) DO UPDATE
       SET sent = sent + excluded.sent, received = received + excluded.received;
END;
CREATE TRIGGER message_usage_delete AFTER DELETE ON messages
    WHEN OLD.direction = 'incoming' OR OLD.status != 'failed'
BEGIN
    UPDATE message_usage
       SET sent = sent - CASE WHEN OLD.direction = 'outgoing' THEN 1 ELSE 0 END,
           received = received - CASE WHEN OLD.direction = 'incoming' THEN 1 ELSE 0 END
     WHERE account_id = OLD.account_id AND bucket = OLD.created_at / 900000;
END;
CREATE TRIGGER message_usage_update AFTER UPDATE OF status, direction, created_at, account_id ON messages
    WHEN (OLD.direction = 'incoming' OR OLD.status != 'failed') != (NEW.direction = 'incoming' OR NEW.status != 'failed')
      OR OLD.direction != NEW.direction OR OLD.created_at != NEW.created_at OR OLD.account_id != NEW.account_id
BEGIN
    UPDATE message_usage
       SET sent = sent - CASE WHEN OLD.direction = 'outgoing' AND OLD.status != 'failed' THEN 1 ELSE 0 END,
           received = received - CASE WHEN OLD.direction = 'incoming' THEN 1 ELSE 0 END
     WHERE account_id = OLD.account_id AND bucket = OLD.created_at / 900000;
    INSERT INTO message_usage (account_id, bucket, sent, received)
    VALUES (NEW.account_id, NEW.created_at / 900000,
            CASE WHEN NEW.direction = 'outgoing' AND NEW.status != 'failed' THEN 1 ELSE 0 END,
            CASE WHEN NEW.direction = 'incoming' THEN 1 ELSE 0 END)
    ON CONFLICT (account_id, bucket) DO UPDATE
       SET sent = sent + excluded.sent, received = received + excluded.received;
END;
CREATE INDEX campaign_recipients_claim ON campaign_recipients(campaign_id, id) WHERE status = 'pending';
CREATE INDEX campaign_recipients_claim_assigned ON campaign_recipients(campaign_id, account_id, id)
    WHERE status = 'pending';
DROP INDEX messages_due;
CREATE INDEX messages_due_queue ON messages(due_at, id) WHERE due_at IS NOT NULL;
DROP INDEX webhook_outbox_due;
CREATE INDEX webhook_outbox_pending ON webhook_outbox(next_attempt_at, id) WHERE status = 'pending';
"#,
];

/// Schema version this binary writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Conn>>,
    backend: Backend,
}

impl Db {
    /// Opens (creating if needed) `dir/broadcaster.sqlite3` and applies pending migrations.
    pub fn open_in_dir(dir: &Path) -> Result<Self, DbError> {
        Ok(Self::new(Inner::Sqlite(sqlite::SqliteConn::open_path(&dir.join(sqlite::FILE_NAME))?)))
    }

    /// An in-memory SQLite database (tests).
    pub fn open_in_memory() -> Result<Self, DbError> {
        Ok(Self::new(Inner::Sqlite(sqlite::SqliteConn::open_in_memory()?)))
    }

    /// Connects to PostgreSQL (`postgres://user:password@host:port/db`) and applies pending
    /// migrations. Must run inside a tokio runtime (the connection is driven by it). The URL is
    /// never logged; only host and database name are.
    pub async fn open_postgres(url: &str) -> Result<Self, DbError> {
        Ok(Self::new(Inner::Postgres(postgres::PgConn::open(url).await?)))
    }

    fn new(inner: Inner) -> Self {
        let conn = Conn::new(inner);
        let backend = conn.backend();
        Self { conn: Arc::new(Mutex::new(conn)), backend }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Runs `f` with the connection on the blocking pool.
    pub async fn call<F, R>(&self, f: F) -> Result<R, DbError>
    where
        F: FnOnce(&mut Conn) -> Result<R, DbError> + Send + 'static,
        R: Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(|_| DbError::Poisoned)?;
            guard.ensure_ready()?;
            let out = f(&mut guard);
            if let Err(e) = &out {
                guard.after_error(e);
            }
            out
        })
        .await
        .map_err(|e| DbError::Join(e.to_string()))?
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    async fn version(db: &Db) -> i64 {
        db.call(|c| match &c.inner {
            Inner::Sqlite(s) => s.user_version(),
            Inner::Postgres(p) => p.schema_version(),
        })
        .await
        .unwrap()
    }

    /// A fresh schema in the PostgreSQL server at `WA_TEST_PG_URL` (scripts/services/10-postgres.sh).
    pub(crate) async fn pg_url() -> String {
        let admin = std::env::var("WA_TEST_PG_URL").unwrap_or_default();
        assert!(
            !admin.is_empty(),
            "WA_TEST_PG_URL is not set: source scripts/services/10-postgres.sh (scripts/test does)"
        );
        let schema = format!("bc_{:016x}", rand::random::<u64>());
        let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.unwrap();
        let driver = tokio::spawn(conn);
        client.batch_execute(&format!("CREATE SCHEMA {schema}")).await.unwrap();
        drop(client);
        let _ = driver.await;
        let sep = if admin.contains('?') { '&' } else { '?' };
        format!("{admin}{sep}options=-csearch_path%3D{schema}")
    }

    #[tokio::test]
    async fn migrations_apply_once_and_reopen_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        drop(Db::open_in_dir(dir.path()).unwrap());
        let db = Db::open_in_dir(dir.path()).unwrap();
        assert_eq!(version(&db).await, SCHEMA_VERSION);
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let conn = rusqlite::Connection::open(dir.path().join(sqlite::FILE_NAME)).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        assert!(matches!(Db::open_in_dir(dir.path()), Err(DbError::SchemaTooNew { found: 99, .. })));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_migrations_apply_once_reopen_and_a_newer_schema_is_refused() {
        let url = pg_url().await;
        drop(Db::open_postgres(&url).await.unwrap());
        let db = Db::open_postgres(&url).await.unwrap();
        assert_eq!(db.backend(), Backend::Postgres);
        assert_eq!(version(&db).await, SCHEMA_VERSION);
        db.call(|c| c.execute_batch("UPDATE broadcaster_schema SET version = 99")).await.unwrap();
        drop(db);
        assert!(matches!(Db::open_postgres(&url).await, Err(DbError::SchemaTooNew { found: 99, .. })));
    }

    /// `sslmode=verify-full` with the test server's CA (scripts/services/10-postgres.sh): the
    /// session is TLS, and so is the one `ensure_open` makes after the server drops the first.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_over_verified_tls_reconnects_over_tls() {
        let ca = std::env::var("WA_TEST_PG_CA").unwrap_or_default();
        assert!(!ca.is_empty(), "WA_TEST_PG_CA is not set: source scripts/services/10-postgres.sh");
        let ca = url_escape(&ca);
        let db = Db::open_postgres(&format!("{}&sslmode=verify-full&sslrootcert={ca}", pg_url().await))
            .await
            .unwrap();
        let session = || {
            db.call(|c| {
                c.query_row(
                    "SELECT CASE WHEN ssl THEN 1 ELSE 0 END::bigint, pid::bigint FROM pg_stat_ssl \
                     WHERE pid = pg_backend_pid()",
                    [],
                    |r| Ok((r.get::<i64>(0)? == 1, r.get::<i64>(1)?)),
                )
            })
        };
        let (tls, pid) = session().await.unwrap();
        assert!(tls, "the first session is not TLS");

        let admin = std::env::var("WA_TEST_PG_URL").unwrap();
        let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let pid32 = i32::try_from(pid).unwrap();
        // With a timeout the call returns once the backend has exited (PostgreSQL 14+).
        client.execute("SELECT pg_terminate_backend($1, $2)", &[&pid32, &60_000i64]).await.unwrap();
        // At most the first use after the close fails, as unavailable; the next reconnects.
        let (tls, new_pid) = match session().await {
            Ok(s) => s,
            Err(e) => {
                assert!(e.is_unavailable(), "{e}");
                session().await.unwrap()
            }
        };
        assert_ne!(new_pid, pid, "a new session");
        assert!(tls, "the reconnected session {new_pid} is not TLS");
        // A certificate the settings refuse is a setting to fix, not an outage (no 503).
        let other = std::env::var("WA_TEST_PG_OTHER_CA").unwrap_or_default();
        assert!(!other.is_empty(), "WA_TEST_PG_OTHER_CA is not set: source scripts/services/10-postgres.sh");
        let url = format!("{}&sslmode=verify-full&sslrootcert={}", pg_url().await, url_escape(&other));
        let e = Db::open_postgres(&url).await.err().unwrap();
        assert!(e.to_string().contains("certificate"), "{e}");
        assert!(!e.is_unavailable(), "{e}");
    }

    fn url_escape(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bad_url_or_an_unreachable_server_is_a_clear_error_without_the_password() {
        let e = Db::open_postgres("postgres://bc:s3cret@127.0.0.1:notaport/x").await.err().unwrap();
        assert!(matches!(e, DbError::Config(_)) && !e.to_string().contains("s3cret"), "{e}");
        // Port 1 on loopback: nothing listens there.
        let e = Db::open_postgres("postgres://bc:s3cret@127.0.0.1:1/x").await.err().unwrap();
        assert!(matches!(e, DbError::Postgres(_)) && !e.to_string().contains("s3cret"), "{e}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_postgres_connection_fails_one_use_as_unavailable_then_reconnects() {
        let url = pg_url().await;
        let db = Db::open_postgres(&url).await.unwrap();
        db.call(|c| c.execute_batch("CREATE TABLE kept (v BIGINT); INSERT INTO kept VALUES (7)"))
            .await
            .unwrap();
        let kept = || db.call(|c| c.query_row("SELECT v FROM kept", [], |r| r.get::<i64>(0)));
        assert_eq!(kept().await.unwrap(), 7);
        let pid =
            db.call(|c| c.query_row("SELECT CAST(pg_backend_pid() AS BIGINT)", [], |r| r.get::<i64>(0)));
        let pid = i32::try_from(pid.await.unwrap()).unwrap();
        // The server ends our session (as a restart or a DBA would).
        let admin = std::env::var("WA_TEST_PG_URL").unwrap();
        let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.unwrap();
        let driver = tokio::spawn(conn);
        // With a timeout the call returns once the backend has exited (PostgreSQL 14+).
        let ended: bool = client
            .query_one("SELECT pg_terminate_backend($1, $2)", &[&pid, &60_000i64])
            .await
            .unwrap()
            .get(0);
        assert!(ended);
        drop(client);
        let _ = driver.await;
        // At most the first use after the close fails, and it says the database is unavailable
        // (`is_unavailable`, which the API's error mapping turns into a 503, not a 500); the
        // next one reconnects and finds the data.
        let first = kept().await;
        if let Err(e) = &first {
            assert!(matches!(e, DbError::Postgres(_)), "{e:?}");
            assert!(e.is_unavailable(), "{e}");
        }
        assert_eq!(kept().await.unwrap(), 7);
        let new_pid =
            db.call(|c| c.query_row("SELECT CAST(pg_backend_pid() AS BIGINT)", [], |r| r.get::<i64>(0)));
        assert_ne!(new_pid.await.unwrap(), i64::from(pid), "a new session");
        // A server that is gone altogether is unavailable too, not an internal error.
        let e = Db::open_postgres("postgres://bc@127.0.0.1:1/x").await.err().unwrap();
        assert!(e.is_unavailable(), "{e}");
    }

    /// The same semantics on both backends: commit, rollback on drop, savepoints, constraint
    /// errors, no-rows, and value types.
    async fn conn_semantics(db: Db) {
        db.call(|c| {
            c.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY, v BIGINT, b BYTEA, f DOUBLE PRECISION)")?;
            let tx = c.transaction()?;
            tx.execute("INSERT INTO t (k, v) VALUES (?1, ?2)", params!["a", 1])?;
            {
                let inner = tx.transaction()?;
                inner.execute("INSERT INTO t (k, v) VALUES (?1, ?2)", params!["b", 2])?;
                // dropped: rolled back to the savepoint
            }
            tx.commit()?;
            {
                let tx = c.transaction()?;
                tx.execute("INSERT INTO t (k, v) VALUES (?1, ?2)", params!["c", 3])?;
            }
            let keys = c.query_all("SELECT k FROM t ORDER BY k", [], |r| r.get::<String>(0))?;
            assert_eq!(keys, ["a"]);
            let dup = c.execute("INSERT INTO t (k, v) VALUES (?1, ?2)", params!["a", 9]).unwrap_err();
            assert!(dup.is_constraint_violation(), "{dup}");
            // A failed statement inside a transaction, then rollback: the connection stays usable.
            {
                let tx = c.transaction()?;
                assert!(tx.execute("INSERT INTO t (k, v) VALUES (?1, ?2)", params!["a", 9]).is_err());
            }
            let none = c.query_row("SELECT v FROM t WHERE k = 'z'", [], |r| r.get::<i64>(0));
            assert!(matches!(none, Err(DbError::NoRows)));
            assert_eq!(c.query_opt("SELECT v FROM t WHERE k = ?1", ["a"], |r| r.get::<i64>(0))?, Some(1));
            let blob = vec![0u8, 255, 7];
            let big = i64::MAX - 1;
            c.execute(
                "INSERT INTO t (k, v, b, f) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                params!["x", big, blob, 1.5],
            )?;
            c.execute("INSERT INTO t (k, v) VALUES (?1, ?2) ON CONFLICT DO NOTHING", params!["x", 0])?;
            let row = c.query_row(
                "SELECT v, b, f, v > ?2, CAST(?1 AS TEXT) IS NULL, COUNT(*) OVER () FROM t WHERE k = ?1",
                params!["x", 0],
                |r| {
                    Ok((
                        r.get::<i64>(0)?,
                        r.get::<Vec<u8>>(1)?,
                        r.get::<f64>(2)?,
                        r.get::<bool>(3)?,
                        r.get::<bool>(4)?,
                        r.get::<i64>(5)?,
                    ))
                },
            )?;
            assert_eq!(row, (big, blob, 1.5, true, false, 1));
            let absent: Option<Vec<u8>> = c.query_row("SELECT b FROM t WHERE k = 'a'", [], |r| r.get(0))?;
            assert_eq!(absent, None);
            let n = c.execute("UPDATE t SET v = v + 1 WHERE k IN (?1, ?2)", params!["a", "x"])?;
            assert_eq!(n, 2);
            Ok(())
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn sqlite_connection_semantics() {
        conn_semantics(Db::open_in_memory().unwrap()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_connection_semantics() {
        conn_semantics(Db::open_postgres(&pg_url().await).await.unwrap()).await;
    }
}
