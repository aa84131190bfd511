//! The PostgreSQL backend (`DATABASE_URL=postgres://…`): one `tokio-postgres` connection, driven
//! from the blocking pool with [`Handle::block_on`]; reconnected when it closes. Statements are
//! prepared once per SQL text (placeholders `?N` translated to `$N`) and cached. TLS follows the
//! URL's `sslmode` / `sslrootcert` (libpq's meaning, see [`wa_store::postgres_tls`]), on the
//! first connection and on every reconnect.
//!
//! The schema is [`MIGRATIONS`], the twin of the SQLite list (same index = same version); the
//! version lives in the table `broadcaster_schema`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::error::Error as StdError;

use bytes::BytesMut;
use tokio::runtime::Handle;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, Statement};
use wa_store::postgres_tls::PgConnectConfig;

use super::value::{ToValue, Value, ValueRef};
use super::{DbError, DbResult, Row, SCHEMA_VERSION};

/// PostgreSQL twins of [`super::MIGRATIONS`]: index + 1 is the schema version after the entry.
/// PostgreSQL support arrived at version 5, so entry 1 creates that schema whole and entries 2–5
/// are empty (a PostgreSQL database never held the older shapes). From version 6 on, every
/// SQLite migration gets its translation here. Integers are BIGINT (timestamps are ms), blobs
/// BYTEA, text compares bytewise (`COLLATE "C"`, like SQLite's BINARY) so that ordering and
/// cursors match SQLite's.
pub const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE tenants (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE TABLE api_keys (
    id          TEXT COLLATE "C" PRIMARY KEY,
    tenant_id   TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name        TEXT COLLATE "C" NOT NULL,
    role        TEXT COLLATE "C" NOT NULL CHECK (role IN ('admin','manager','operator','viewer')),
    key_hash    TEXT COLLATE "C" NOT NULL UNIQUE,
    prefix      TEXT COLLATE "C" NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX api_keys_tenant ON api_keys(tenant_id);
CREATE TABLE accounts (
    id              TEXT COLLATE "C" PRIMARY KEY,
    tenant_id       TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name            TEXT COLLATE "C" NOT NULL,
    phone           TEXT COLLATE "C",
    push_name       TEXT COLLATE "C",
    state           TEXT COLLATE "C" NOT NULL,
    state_reason    TEXT COLLATE "C",
    daily_limit     BIGINT NOT NULL,
    time_zone       TEXT COLLATE "C" NOT NULL,
    last_connected_at BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    qr_code         TEXT COLLATE "C",
    qr_expires_at   BIGINT,
    pairing_code    TEXT COLLATE "C"
);
CREATE INDEX accounts_tenant ON accounts(tenant_id, created_at);
CREATE UNIQUE INDEX accounts_tenant_phone ON accounts(tenant_id, phone) WHERE phone IS NOT NULL;
CREATE TABLE account_activity (
    id          BIGSERIAL PRIMARY KEY,
    tenant_id   TEXT COLLATE "C" NOT NULL,
    account_id  TEXT COLLATE "C" NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    from_state  TEXT COLLATE "C",
    to_state    TEXT COLLATE "C" NOT NULL,
    reason      TEXT COLLATE "C",
    at          BIGINT NOT NULL
);
CREATE INDEX account_activity_account ON account_activity(tenant_id, account_id, id);
CREATE TABLE bulk_sends (
    id          TEXT COLLATE "C" PRIMARY KEY,
    tenant_id   TEXT COLLATE "C" NOT NULL,
    account_id  TEXT COLLATE "C" NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    per_minute  BIGINT NOT NULL,
    media_data  BYTEA,
    created_at  BIGINT NOT NULL
);
CREATE TABLE messages (
    id             TEXT COLLATE "C" PRIMARY KEY,
    tenant_id      TEXT COLLATE "C" NOT NULL,
    account_id     TEXT COLLATE "C" NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    direction      TEXT COLLATE "C" NOT NULL CHECK (direction IN ('outgoing','incoming')),
    chat_jid       TEXT COLLATE "C" NOT NULL,
    sender_jid     TEXT COLLATE "C",
    sender_phone   TEXT COLLATE "C",
    push_name      TEXT COLLATE "C",
    wa_message_id  TEXT COLLATE "C",
    kind           TEXT COLLATE "C" NOT NULL,
    body           TEXT COLLATE "C",
    media_mimetype TEXT COLLATE "C",
    media_file_name TEXT COLLATE "C",
    media_size     BIGINT,
    quoted_id      TEXT COLLATE "C",
    status         TEXT COLLATE "C" NOT NULL CHECK (status IN ('pending','sent','delivered','read','played','failed','received')),
    attempts       BIGINT NOT NULL DEFAULT 0,
    error          TEXT COLLATE "C",
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    sent_at        BIGINT,
    delivered_at   BIGINT,
    read_at        BIGINT,
    played_at      BIGINT,
    failed_at      BIGINT,
    media_handle   BYTEA,
    bulk_id        TEXT COLLATE "C" REFERENCES bulk_sends(id) ON DELETE CASCADE,
    due_at         BIGINT,
    reserved_wa_id TEXT COLLATE "C"
);
CREATE INDEX messages_account ON messages(tenant_id, account_id, created_at, id);
CREATE INDEX messages_chat ON messages(tenant_id, account_id, chat_jid, created_at, id);
CREATE UNIQUE INDEX messages_wa_id ON messages(account_id, direction, wa_message_id)
    WHERE wa_message_id IS NOT NULL;
CREATE INDEX messages_due ON messages(due_at) WHERE due_at IS NOT NULL;
CREATE INDEX messages_account_day ON messages(account_id, direction, created_at);
CREATE TABLE message_media (
    message_id TEXT COLLATE "C" PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
    data       BYTEA NOT NULL
);
CREATE TABLE early_receipts (
    account_id    TEXT COLLATE "C" NOT NULL,
    wa_message_id TEXT COLLATE "C" NOT NULL,
    status        TEXT COLLATE "C" NOT NULL,
    at            BIGINT NOT NULL,
    PRIMARY KEY (account_id, wa_message_id, status)
);
CREATE TABLE webhooks (
    id          TEXT COLLATE "C" PRIMARY KEY,
    tenant_id   TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    account_id  TEXT COLLATE "C" REFERENCES accounts(id) ON DELETE CASCADE,
    url         TEXT COLLATE "C" NOT NULL,
    secret      TEXT COLLATE "C" NOT NULL,
    events      TEXT COLLATE "C" NOT NULL,
    enabled     BIGINT NOT NULL DEFAULT 1,
    created_at  BIGINT NOT NULL
);
CREATE INDEX webhooks_tenant ON webhooks(tenant_id);
CREATE TABLE webhook_outbox (
    id              TEXT COLLATE "C" PRIMARY KEY,
    tenant_id       TEXT COLLATE "C" NOT NULL,
    webhook_id      TEXT COLLATE "C" NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_type      TEXT COLLATE "C" NOT NULL,
    payload         TEXT COLLATE "C" NOT NULL,
    status          TEXT COLLATE "C" NOT NULL CHECK (status IN ('pending','delivered','dead')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT COLLATE "C",
    last_status     BIGINT,
    created_at      BIGINT NOT NULL,
    delivered_at    BIGINT
);
CREATE INDEX webhook_outbox_due ON webhook_outbox(status, next_attempt_at);
CREATE INDEX webhook_outbox_tenant ON webhook_outbox(tenant_id, webhook_id, created_at);
CREATE TABLE contacts (
    id              TEXT COLLATE "C" PRIMARY KEY,
    tenant_id       TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    phone           TEXT COLLATE "C" NOT NULL,
    name            TEXT COLLATE "C",
    fields          TEXT COLLATE "C" NOT NULL DEFAULT '{}',
    opted_out_at    BIGINT,
    opt_out_reason  TEXT COLLATE "C",
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (tenant_id, phone)
);
CREATE INDEX contacts_tenant ON contacts(tenant_id, created_at, id);
CREATE TABLE contact_tags (
    tenant_id   TEXT COLLATE "C" NOT NULL,
    contact_id  TEXT COLLATE "C" NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
    tag         TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (contact_id, tag)
);
CREATE INDEX contact_tags_tag ON contact_tags(tenant_id, tag);
CREATE TABLE opt_out_settings (
    tenant_id   TEXT COLLATE "C" PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    keywords    TEXT COLLATE "C" NOT NULL
);
CREATE TABLE templates (
    id          TEXT COLLATE "C" PRIMARY KEY,
    tenant_id   TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name        TEXT COLLATE "C" NOT NULL,
    body        TEXT COLLATE "C" NOT NULL,
    variables   TEXT COLLATE "C" NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE TABLE campaigns (
    id              TEXT COLLATE "C" PRIMARY KEY,
    tenant_id       TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name            TEXT COLLATE "C" NOT NULL,
    kind            TEXT COLLATE "C" NOT NULL CHECK (kind IN ('campaign','direct')),
    template_id     TEXT COLLATE "C",
    body            TEXT COLLATE "C" NOT NULL,
    declared        TEXT COLLATE "C" NOT NULL,
    variables       TEXT COLLATE "C" NOT NULL,
    account_ids     TEXT COLLATE "C" NOT NULL,
    status          TEXT COLLATE "C" NOT NULL CHECK (status IN ('draft','scheduled','running','paused','completed','cancelled')),
    status_reason   TEXT COLLATE "C",
    rate_per_minute BIGINT NOT NULL,
    jitter_pct      BIGINT NOT NULL,
    check_numbers   BIGINT NOT NULL,
    max_attempts    BIGINT NOT NULL,
    scheduled_at    BIGINT,
    started_at      BIGINT,
    completed_at    BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX campaigns_tenant ON campaigns(tenant_id, created_at, id);
CREATE INDEX campaigns_status ON campaigns(status);
CREATE TABLE campaign_recipients (
    id              BIGSERIAL PRIMARY KEY,
    campaign_id     TEXT COLLATE "C" NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    tenant_id       TEXT COLLATE "C" NOT NULL,
    contact_id      TEXT COLLATE "C",
    phone           TEXT COLLATE "C" NOT NULL,
    variables       TEXT COLLATE "C" NOT NULL DEFAULT '{}',
    account_id      TEXT COLLATE "C",
    status          TEXT COLLATE "C" NOT NULL CHECK (status IN ('pending','sending','sent','delivered','read','failed','skipped')),
    reason          TEXT COLLATE "C",
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL DEFAULT 0,
    number_checked  BIGINT NOT NULL DEFAULT 0,
    message_id      TEXT COLLATE "C",
    sending_since   BIGINT,
    sent_at         BIGINT,
    delivered_at    BIGINT,
    read_at         BIGINT,
    failed_at       BIGINT,
    updated_at      BIGINT NOT NULL,
    UNIQUE (campaign_id, phone)
);
CREATE INDEX campaign_recipients_due ON campaign_recipients(campaign_id, status, next_attempt_at, id);
CREATE INDEX campaign_recipients_message ON campaign_recipients(message_id);
CREATE INDEX campaign_recipients_account_sent ON campaign_recipients(account_id, sent_at);
"#,
    // 2–5: folded into 1 (see above)
    "",
    "",
    "",
    "",
    // 6: template media (the twin of the SQLite entry 6)
    r#"
CREATE TABLE template_media (
    id          TEXT COLLATE "C" PRIMARY KEY,
    tenant_id   TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    mimetype    TEXT NOT NULL,
    file_name   TEXT,
    size        BIGINT NOT NULL,
    sha256      TEXT NOT NULL,
    source_url  TEXT,
    data        BYTEA NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX template_media_tenant ON template_media(tenant_id);
ALTER TABLE templates ADD COLUMN media_id TEXT COLLATE "C";
ALTER TABLE campaigns ADD COLUMN media_id TEXT COLLATE "C";
"#,
    // 7: messages point at a campaign's stored file
    r#"
ALTER TABLE messages ADD COLUMN template_media_id TEXT COLLATE "C" REFERENCES template_media(id) ON DELETE SET NULL;
CREATE INDEX messages_template_media ON messages(template_media_id) WHERE template_media_id IS NOT NULL;
"#,
    // 8: an account's push name to announce, and a stable code beside its state reason
    r#"
ALTER TABLE accounts ADD COLUMN push_name_override TEXT COLLATE "C";
ALTER TABLE accounts ADD COLUMN state_reason_code TEXT COLLATE "C";
"#,
    // 9: the LIDs beside the chat and the sender (1:1 chats stay keyed by phone number)
    r#"
ALTER TABLE messages ADD COLUMN chat_lid TEXT COLLATE "C";
ALTER TABLE messages ADD COLUMN sender_lid TEXT COLLATE "C";
CREATE INDEX messages_chat_lid ON messages(tenant_id, account_id, chat_lid, created_at, id) WHERE chat_lid IS NOT NULL;
"#,
    // 10: typed payloads, reactions, edit history, revoked flag
    r#"
ALTER TABLE messages ADD COLUMN payload TEXT COLLATE "C";
ALTER TABLE messages ADD COLUMN reactions TEXT COLLATE "C";
ALTER TABLE messages ADD COLUMN edits TEXT COLLATE "C";
ALTER TABLE messages ADD COLUMN edited_at BIGINT;
ALTER TABLE messages ADD COLUMN revoked_at BIGINT;
"#,
    // 11: sending limits (the twin of the SQLite entry 11)
    r#"
ALTER TABLE accounts ADD COLUMN new_contact_limit BIGINT NOT NULL DEFAULT 50;
ALTER TABLE accounts ADD COLUMN new_contacts_day BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN new_contacts_today BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN reachout_locked_until BIGINT;
ALTER TABLE accounts ADD COLUMN reachout_lock_type TEXT COLLATE "C";
ALTER TABLE campaigns ADD COLUMN paused_until BIGINT;
CREATE TABLE account_contacts (
    account_id        TEXT COLLATE "C" NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    chat_jid          TEXT COLLATE "C" NOT NULL,
    first_message_id  TEXT COLLATE "C",
    first_at          BIGINT NOT NULL,
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
    // 13: a per-account proxy (the twin of the SQLite entry 13)
    r#"
ALTER TABLE accounts ADD COLUMN proxy_url TEXT COLLATE "C";
ALTER TABLE accounts ADD COLUMN proxy_display TEXT COLLATE "C";
"#,
    // 14: chat settings and contact names from app state (the twin of the SQLite entry 14)
    r#"
CREATE TABLE chat_settings (
    tenant_id    TEXT COLLATE "C" NOT NULL,
    account_id   TEXT COLLATE "C" NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    chat_jid     TEXT COLLATE "C" NOT NULL,
    wa_chat      TEXT COLLATE "C" NOT NULL,
    archived     BIGINT NOT NULL DEFAULT 0,
    pinned       BIGINT NOT NULL DEFAULT 0,
    muted_until  BIGINT,
    marked_read  BIGINT,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (account_id, chat_jid)
);
CREATE TABLE contact_names (
    tenant_id    TEXT COLLATE "C" NOT NULL,
    account_id   TEXT COLLATE "C" NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    jid          TEXT COLLATE "C" NOT NULL,
    phone        TEXT COLLATE "C",
    lid          TEXT COLLATE "C",
    full_name    TEXT COLLATE "C",
    first_name   TEXT COLLATE "C",
    push_name    TEXT COLLATE "C",
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (account_id, jid)
);
CREATE INDEX contact_names_phone ON contact_names(tenant_id, phone) WHERE phone IS NOT NULL;
"#,
    // 15: hot queries on indexes (issue 19); see the SQLite twin. The usage counters are kept
    // by one trigger function for insert, update and delete.
    r#"
CREATE TABLE message_usage (
    account_id  TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    bucket      BIGINT NOT NULL,
    sent        BIGINT NOT NULL DEFAULT 0,
    received    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, bucket)
);
INSERT INTO message_usage (account_id, bucket, sent, received)
    SELECT account_id, created_at / 900000,
           SUM(CASE WHEN direction = 'outgoing' AND status != 'failed' THEN 1 ELSE 0 END),
           SUM(CASE WHEN direction = 'incoming' THEN 1 ELSE 0 END)
      FROM messages WHERE account_id IN (SELECT id FROM accounts)
     GROUP BY account_id, created_at / 900000;
CREATE FUNCTION message_usage_track() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND (OLD.direction = 'incoming' OR OLD.status != 'failed') THEN
        UPDATE message_usage
           SET sent = sent - CASE WHEN OLD.direction = 'outgoing' THEN 1 ELSE 0 END,
               received = received - CASE WHEN OLD.direction = 'incoming' THEN 1 ELSE 0 END
         WHERE account_id = OLD.account_id AND bucket = OLD.created_at / 900000;
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') AND (NEW.direction = 'incoming' OR NEW.status != 'failed') THEN
        INSERT INTO message_usage (account_id, bucket, sent, received)
        VALUES (NEW.account_id, NEW.created_at / 900000,
                CASE WHEN NEW.direction = 'outgoing' THEN 1 ELSE 0 END,
                CASE WHEN NEW.direction = 'incoming' THEN 1 ELSE 0 END)
        ON CONFLICT (account_id, bucket) DO UPDATE
           SET sent = message_usage.sent + EXCLUDED.sent, received = message_usage.received + EXCLUDED.received;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER message_usage_insert AFTER INSERT ON messages
    FOR EACH ROW EXECUTE FUNCTION message_usage_track();
CREATE TRIGGER message_usage_delete AFTER DELETE ON messages
    FOR EACH ROW WHEN (OLD.direction = 'incoming' OR OLD.status != 'failed')
    EXECUTE FUNCTION message_usage_track();
CREATE TRIGGER message_usage_update AFTER UPDATE OF status, direction, created_at, account_id ON messages
    FOR EACH ROW WHEN ((OLD.direction = 'incoming' OR OLD.status != 'failed') IS DISTINCT FROM
                       (NEW.direction = 'incoming' OR NEW.status != 'failed')
                       OR OLD.direction IS DISTINCT FROM NEW.direction OR OLD.created_at IS DISTINCT FROM NEW.created_at
                       OR OLD.account_id IS DISTINCT FROM NEW.account_id)
    EXECUTE FUNCTION message_usage_track();
CREATE INDEX campaign_recipients_claim ON campaign_recipients(campaign_id, id) WHERE status = 'pending';
CREATE INDEX campaign_recipients_claim_assigned ON campaign_recipients(campaign_id, account_id, id)
    WHERE status = 'pending';
DROP INDEX messages_due;
CREATE INDEX messages_due_queue ON messages(due_at, id) WHERE due_at IS NOT NULL;
DROP INDEX webhook_outbox_due;
CREATE INDEX webhook_outbox_pending ON webhook_outbox(next_attempt_at, id) WHERE status = 'pending';
"#,
];

/// An advisory-lock key so that two servers starting at once migrate one after the other.
const MIGRATION_LOCK: i64 = 0x6272_6f61_6463_6173; // "broadcas"

/// Statements cached per connection before the cache is reset (dynamic SQL stays bounded).
const STATEMENT_CACHE: usize = 512;

pub(super) struct PgConn {
    client: Client,
    settings: PgConnectConfig,
    handle: Handle,
    statements: RefCell<HashMap<String, Statement>>,
    /// A statement failed because the server went away: reconnect before the next use even
    /// if the connection task has not noticed the close yet.
    broken: bool,
}

/// Where the database is, for logs: host(s), database name and TLS mode, never user or password.
pub fn describe(settings: &PgConnectConfig) -> String {
    let config = settings.config();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(s) => s.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .collect();
    format!(
        "database {} on {} (sslmode={})",
        config.get_dbname().unwrap_or("(default)"),
        hosts.join(","),
        settings.ssl_mode()
    )
}

/// Parses `DATABASE_URL` (reading its `sslrootcert` file, if any); the error never repeats the
/// URL (it may hold a password).
pub fn parse_url(url: &str) -> DbResult<PgConnectConfig> {
    PgConnectConfig::parse(url).map_err(|e| DbError::Config(format!("DATABASE_URL: {e}")))
}

async fn connect(settings: &PgConnectConfig) -> DbResult<Client> {
    let (client, connection) = settings.connect().await?;
    let place = describe(settings);
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %pg_message(&e), "PostgreSQL connection to {place} closed");
        }
    });
    Ok(client)
}

impl PgConn {
    /// Connects and applies pending migrations.
    pub(super) async fn open(url: &str) -> DbResult<Self> {
        let settings = parse_url(url)?;
        let mut client = connect(&settings).await?;
        migrate(&mut client).await?;
        tracing::info!("using PostgreSQL {}", describe(&settings));
        Ok(Self {
            client,
            settings,
            handle: Handle::current(),
            statements: RefCell::new(HashMap::new()),
            broken: false,
        })
    }

    /// Reconnects if the connection closed (server restart, network); called before each use.
    pub(super) fn ensure_open(&mut self) -> DbResult<()> {
        if self.broken || self.client.is_closed() {
            tracing::warn!("PostgreSQL connection closed; reconnecting to {}", describe(&self.settings));
            self.client = self.handle.block_on(connect(&self.settings))?;
            self.statements.get_mut().clear();
            self.broken = false;
        }
        Ok(())
    }

    /// Called after a use failed with an [`is_unavailable`] error.
    pub(super) fn mark_broken(&mut self) {
        self.broken = true;
    }

    fn statement(&self, sql: &str) -> DbResult<Statement> {
        if let Some(s) = self.statements.borrow().get(sql) {
            return Ok(s.clone());
        }
        let stmt = self.handle.block_on(self.client.prepare(&translate(sql)))?;
        let mut cache = self.statements.borrow_mut();
        if cache.len() >= STATEMENT_CACHE {
            cache.clear();
        }
        cache.insert(sql.to_owned(), stmt.clone());
        Ok(stmt)
    }

    pub(super) fn execute(&self, sql: &str, params: &[&dyn ToValue]) -> DbResult<usize> {
        let stmt = self.statement(sql)?;
        let binds: Vec<Bind<'_>> = params.iter().map(|p| Bind(p.to_value())).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = binds.iter().map(|b| b as &(dyn ToSql + Sync)).collect();
        let n = self.handle.block_on(self.client.execute(&stmt, &refs))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    pub(super) fn query(&self, sql: &str, params: &[&dyn ToValue]) -> DbResult<Vec<Row>> {
        let stmt = self.statement(sql)?;
        let binds: Vec<Bind<'_>> = params.iter().map(|p| Bind(p.to_value())).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = binds.iter().map(|b| b as &(dyn ToSql + Sync)).collect();
        let rows = self.handle.block_on(self.client.query(&stmt, &refs))?;
        rows.iter().map(read_row).collect()
    }

    pub(super) fn execute_batch(&self, sql: &str) -> DbResult<()> {
        Ok(self.handle.block_on(self.client.batch_execute(sql))?)
    }

    #[cfg(test)]
    pub(super) fn schema_version(&self) -> DbResult<i64> {
        let row =
            self.handle.block_on(self.client.query_one("SELECT version FROM broadcaster_schema", &[]))?;
        Ok(row.get(0))
    }
}

async fn migrate(client: &mut Client) -> DbResult<()> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS broadcaster_schema (version BIGINT NOT NULL)").await?;
    let current: i64 = match tx.query_opt("SELECT version FROM broadcaster_schema", &[]).await? {
        Some(r) => r.get(0),
        None => {
            tx.execute("INSERT INTO broadcaster_schema (version) VALUES (0)", &[]).await?;
            0
        }
    };
    if current > SCHEMA_VERSION {
        return Err(DbError::SchemaTooNew { found: current, supported: SCHEMA_VERSION });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(current).unwrap_or(0)) {
        if !sql.is_empty() {
            tx.batch_execute(sql).await?;
        }
        let version = (i + 1) as i64;
        tx.execute("UPDATE broadcaster_schema SET version = $1", &[&version]).await?;
        tracing::info!(version, "applied database migration (PostgreSQL)");
    }
    tx.commit().await?;
    Ok(())
}

/// `?N` → `$N` outside string literals, quoted identifiers and comments (a bare `?` takes the
/// next number, as in SQLite).
pub(super) fn translate(sql: &str) -> String {
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 8);
    let mut next = 1u32;
    let mut i = 0;
    let mut start = 0;
    while i < bytes.len() {
        match bytes[i] {
            q @ (b'\'' | b'"') => {
                i += 1;
                while i < bytes.len() && bytes[i] != q {
                    i += 1;
                }
                i += 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 2;
            }
            b'?' => {
                out.push_str(&sql[start..i]);
                let digits_end = i + 1 + bytes[i + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
                out.push('$');
                if digits_end > i + 1 {
                    let n = &sql[i + 1..digits_end];
                    out.push_str(n);
                    next = n.parse::<u32>().map_or(next, |n| n.saturating_add(1)).max(next);
                } else {
                    out.push_str(&next.to_string());
                    next += 1;
                }
                i = digits_end;
                start = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(&sql[start.min(sql.len())..]);
    out
}

/// A parameter bound with the type PostgreSQL inferred for its placeholder.
#[derive(Debug)]
struct Bind<'a>(ValueRef<'a>);

type BoxError = Box<dyn StdError + Sync + Send>;

fn mismatch(what: &str, ty: &Type) -> BoxError {
    format!("cannot bind {what} to a parameter of type {ty} (add a CAST in the SQL)").into()
}

impl ToSql for Bind<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self.0 {
            ValueRef::Null => Ok(IsNull::Yes),
            ValueRef::Integer(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => {
                    i32::try_from(i).map_err(|_| mismatch(&format!("integer {i}"), ty))?.to_sql(ty, out)
                }
                Type::INT2 => {
                    i16::try_from(i).map_err(|_| mismatch(&format!("integer {i}"), ty))?.to_sql(ty, out)
                }
                Type::BOOL => (i != 0).to_sql(ty, out),
                Type::FLOAT8 => (i as f64).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => i.to_string().as_str().to_sql(ty, out),
                _ => Err(mismatch("an integer", ty)),
            },
            ValueRef::Real(f) => match *ty {
                Type::FLOAT8 => f.to_sql(ty, out),
                Type::FLOAT4 => (f as f32).to_sql(ty, out),
                _ => Err(mismatch("a real", ty)),
            },
            ValueRef::Text(s) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => s.to_sql(ty, out),
                _ => Err(mismatch("text", ty)),
            },
            ValueRef::Blob(b) => match *ty {
                Type::BYTEA => b.to_sql(ty, out),
                _ => Err(mismatch("a blob", ty)),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn read_row(row: &tokio_postgres::Row) -> DbResult<Row> {
    let mut values = Vec::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let v = match *col.type_() {
            Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(Value::Integer),
            Type::INT4 => row.try_get::<_, Option<i32>>(i)?.map(|v| Value::Integer(v.into())),
            Type::INT2 => row.try_get::<_, Option<i16>>(i)?.map(|v| Value::Integer(v.into())),
            Type::BOOL => row.try_get::<_, Option<bool>>(i)?.map(|v| Value::Integer(v.into())),
            Type::FLOAT8 => row.try_get::<_, Option<f64>>(i)?.map(Value::Real),
            Type::FLOAT4 => row.try_get::<_, Option<f32>>(i)?.map(|v| Value::Real(v.into())),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                row.try_get::<_, Option<String>>(i)?.map(Value::Text)
            }
            Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Blob),
            ref other => {
                return Err(DbError::Column {
                    column: i,
                    message: format!("PostgreSQL type {other} is not supported (CAST it in the SQL)"),
                });
            }
        };
        values.push(v.unwrap_or(Value::Null));
    }
    Ok(Row { values })
}

/// The server's message for a PostgreSQL error (tokio-postgres' Display says only "db error").
pub fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{}: {} ({})", d.severity(), d.message(), d.code().code()),
        // With the cause: "error performing TLS handshake: server certificate rejected: …".
        None => wa_store::postgres_tls::error_chain(e),
    }
}

/// SQLSTATE class 23: integrity constraint violation (unique, foreign key, check, not null).
pub(super) fn is_constraint_violation(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|d| d.code().code().starts_with("23"))
}

/// The server cannot be used right now, and a later attempt may succeed: the connection
/// closed (server restart, terminated backend, network), a connection could not be made, or
/// the server is shutting down or starting (class 08 connection exceptions, 57P0x).
pub(super) fn is_unavailable(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(d) = e.as_db_error() {
        let code = d.code().code();
        return code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03");
    }
    // No server answer at all: the socket failed (refused, reset, unreachable). A refused
    // certificate or a bad host name for TLS is a setting to fix, not an outage.
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(tls) = s.downcast_ref::<wa_store::postgres_tls::TlsConnectError>() {
            return matches!(tls, wa_store::postgres_tls::TlsConnectError::Handshake(_));
        }
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_translated_outside_literals_and_comments() {
        assert_eq!(translate("SELECT ?1, ?12 FROM t WHERE a = ?2"), "SELECT $1, $12 FROM t WHERE a = $2");
        assert_eq!(translate("SELECT '?1', \"?2\", ? -- ?3\n, ?"), "SELECT '?1', \"?2\", $1 -- ?3\n, $2");
        assert_eq!(translate("a /* ?1 */ ?1 'it''s ?' ?2"), "a /* ?1 */ $1 'it''s ?' $2");
        assert_eq!(translate("x = ?"), "x = $1");
        assert_eq!(translate("unterminated '?1"), "unterminated '?1");
    }

    #[test]
    fn there_is_a_postgres_twin_for_every_sqlite_migration() {
        assert_eq!(MIGRATIONS.len(), super::super::MIGRATIONS.len());
    }
}
