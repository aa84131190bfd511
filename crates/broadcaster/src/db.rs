//! The server's own SQLite database (tenants, keys, accounts, messages, webhooks, outbox).
//!
//! WhatsApp auth state lives in `wa-store`; this database holds only what the server owns.
//! SQLite calls are blocking, so every call runs on the blocking pool via [`Db::call`] and the
//! async runtime is never blocked.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

/// Errors from the database layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database schema version {found} is newer than this binary supports ({supported})")]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("database worker failed: {0}")]
    Join(String),
    #[error("database lock poisoned")]
    Poisoned,
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// Versioned migrations; index + 1 is the `user_version` after applying the entry.
/// Never edit an applied migration; append a new one.
const MIGRATIONS: &[&str] = &[
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
    crate::campaigns::schema::MIGRATION,
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
    // 6: template media (issue 8)
    crate::template_media::MIGRATION,
];

/// Schema version this binary writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
}

impl Db {
    /// Opens (creating if needed) `dir/broadcaster.sqlite3` and applies pending migrations.
    pub fn open_in_dir(dir: &Path) -> Result<Self, DbError> {
        Self::from_connection(Connection::open(dir.join("broadcaster.sqlite3"))?)
    }

    /// An in-memory database (tests).
    pub fn open_in_memory() -> Result<Self, DbError> {
        Self::from_connection(Connection::open_in_memory()?)
    }

    fn from_connection(mut conn: Connection) -> Result<Self, DbError> {
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;
             PRAGMA busy_timeout = 5000;",
        )?;
        migrate(&mut conn)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    /// Runs `f` with the connection on the blocking pool.
    pub async fn call<F, R>(&self, f: F) -> Result<R, DbError>
    where
        F: FnOnce(&mut Connection) -> Result<R, DbError> + Send + 'static,
        R: Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(|_| DbError::Poisoned)?;
            f(&mut guard)
        })
        .await
        .map_err(|e| DbError::Join(e.to_string()))?
    }
}

fn migrate(conn: &mut Connection) -> Result<(), DbError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(DbError::SchemaTooNew { found: current, supported: SCHEMA_VERSION });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "applied database migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_reopen_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        drop(Db::open_in_dir(dir.path()).unwrap());
        let db = Db::open_in_dir(dir.path()).unwrap();
        let v: i64 = db.conn.lock().unwrap().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("broadcaster.sqlite3")).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        assert!(matches!(Db::open_in_dir(dir.path()), Err(DbError::SchemaTooNew { found: 99, .. })));
    }
}
