//! Tables for contacts, templates and campaigns: one migration entry, appended to
//! [`crate::db`]'s list.

pub const MIGRATION: &str = r#"
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
"#;
