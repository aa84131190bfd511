//! Tables and columns of issue 16's sending limits: an account's new-contact counter and the
//! contacts it knows ([`super::new_contacts`]), its reach-out time-lock ([`super::timelock`])
//! and the end of a campaign's pause for it. One migration entry in each of [`crate::db`]'s
//! lists.

/// SQLite. Existing chats count as known (anyone who wrote to the account, anyone it reached).
pub const MIGRATION_SQLITE: &str = r#"
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
"#;

/// The PostgreSQL twin of [`MIGRATION_SQLITE`].
pub const MIGRATION_POSTGRES: &str = r#"
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
"#;
