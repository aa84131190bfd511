//! The storage engine contract every backend implements.
//!
//! Each domain lives in its own table (SQL) or collection (MongoDB) with the same shape:
//! `(device, scope, key) -> (value, aux, expires_at)`. The domain traits in [`crate::traits`]
//! encode their data into that shape once, and encryption happens above this layer, so a
//! backend only ever sees sealed bytes and stays small: what differs between SQLite, PostgreSQL
//! and MongoDB is how they run a batch atomically, not what they store.

use futures::future::BoxFuture;

use crate::error::Result;

/// One table per domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Table {
    /// Store-level metadata (device `""`): encryption parameters and key check.
    Meta,
    /// Device credentials and counters.
    Device,
    /// Peers' identity keys.
    Identities,
    /// Signal sessions (opaque records).
    Sessions,
    /// One-time prekeys.
    PreKeys,
    /// Signed prekeys.
    SignedPreKeys,
    /// Sender keys (opaque records), scope = group.
    SenderKeys,
    /// Devices that already hold our sender key, scope = group.
    SenderKeyHolders,
    /// App-state sync keys.
    AppStateKeys,
    /// App-state collection versions.
    AppStateVersions,
    /// App-state mutation MACs, scope = collection.
    AppStateMacs,
    /// LID <-> phone-number mappings, scope = direction.
    LidMappings,
    /// Cached device lists.
    DeviceLists,
    /// Sent messages kept for retry receipts, scope = chat.
    SentMessages,
    /// Decrypted, not yet handled inbound messages, scope = chat.
    InboundMessages,
    /// Privacy tokens.
    PrivacyTokens,
}

impl Table {
    /// Every table, in schema order.
    pub const ALL: [Table; 16] = [
        Table::Meta,
        Table::Device,
        Table::Identities,
        Table::Sessions,
        Table::PreKeys,
        Table::SignedPreKeys,
        Table::SenderKeys,
        Table::SenderKeyHolders,
        Table::AppStateKeys,
        Table::AppStateVersions,
        Table::AppStateMacs,
        Table::LidMappings,
        Table::DeviceLists,
        Table::SentMessages,
        Table::InboundMessages,
        Table::PrivacyTokens,
    ];

    /// The table (or collection) name in the database.
    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "wa_meta",
            Table::Device => "wa_device",
            Table::Identities => "wa_identities",
            Table::Sessions => "wa_sessions",
            Table::PreKeys => "wa_pre_keys",
            Table::SignedPreKeys => "wa_signed_pre_keys",
            Table::SenderKeys => "wa_sender_keys",
            Table::SenderKeyHolders => "wa_sender_key_holders",
            Table::AppStateKeys => "wa_app_state_keys",
            Table::AppStateVersions => "wa_app_state_versions",
            Table::AppStateMacs => "wa_app_state_macs",
            Table::LidMappings => "wa_lid_mappings",
            Table::DeviceLists => "wa_device_lists",
            Table::SentMessages => "wa_sent_messages",
            Table::InboundMessages => "wa_inbound_messages",
            Table::PrivacyTokens => "wa_privacy_tokens",
        }
    }
}

/// Address of a row within one device's table.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RowKey {
    /// Grouping (group JID, collection, chat…); `""` when the table has none.
    pub scope: String,
    /// Key within the scope.
    pub key: String,
}

impl RowKey {
    /// Builds a key.
    pub fn new(scope: impl Into<String>, key: impl Into<String>) -> Self {
        RowKey { scope: scope.into(), key: key.into() }
    }
}

/// A stored row. `value` is sealed when the store has a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// Scope and key.
    pub id: RowKey,
    /// Value bytes as stored.
    pub value: Vec<u8>,
    /// Small per-table integer (prekey state, receive time…), stored in clear for queries.
    pub aux: i64,
    /// Expiry, unix seconds; `None` never expires.
    pub expires_at: Option<i64>,
}

/// A filtered listing of one device's table, ordered by (scope, key).
#[derive(Clone, Debug, Default)]
pub struct Scan {
    /// Only rows of this scope.
    pub scope: Option<String>,
    /// Only rows whose `aux` equals this.
    pub aux_eq: Option<i64>,
    /// At most this many rows.
    pub limit: Option<u32>,
}

/// One write in an atomic batch.
#[derive(Clone, Debug)]
pub enum Op {
    /// Insert or replace.
    Put {
        /// Table.
        table: Table,
        /// Device.
        device: String,
        /// The row.
        row: Row,
    },
    /// Insert; the whole batch fails with [`crate::Error::Conflict`] if the row exists.
    Insert {
        /// Table.
        table: Table,
        /// Device.
        device: String,
        /// The row.
        row: Row,
    },
    /// Delete one row (absent is fine).
    Delete {
        /// Table.
        table: Table,
        /// Device.
        device: String,
        /// Row.
        id: RowKey,
    },
    /// Delete every row of a scope.
    DeleteScope {
        /// Table.
        table: Table,
        /// Device.
        device: String,
        /// Scope.
        scope: String,
    },
    /// Change `aux` and `expires_at` of a row without touching its value (absent is fine).
    SetAux {
        /// Table.
        table: Table,
        /// Device.
        device: String,
        /// Row.
        id: RowKey,
        /// New aux.
        aux: i64,
        /// New expiry.
        expires_at: Option<i64>,
    },
    /// Delete every row of a device in every table.
    DeleteDevice {
        /// Device.
        device: String,
    },
}

/// Rewrites a row's value during key rotation: `(table, device, row) -> new value`.
pub type Rewriter = Box<dyn Fn(Table, &str, &Row) -> Result<Vec<u8>> + Send + Sync>;

/// A storage engine. Methods return boxed futures so a `Store` can hold `Arc<dyn Backend>`.
///
/// Contract (checked by the conformance suite): `apply` is atomic and durable on return;
/// rows are isolated per device; `get` returns rows regardless of expiry (the store filters).
pub trait Backend: Send + Sync + 'static {
    /// Short backend name for logs and errors.
    fn name(&self) -> &'static str;

    /// Fetches rows by key, in the order asked; `None` where absent.
    fn get<'a>(
        &'a self,
        table: Table,
        device: &'a str,
        ids: &'a [RowKey],
    ) -> BoxFuture<'a, Result<Vec<Option<Row>>>>;

    /// Lists rows of one device's table.
    fn scan<'a>(&'a self, table: Table, device: &'a str, scan: &'a Scan) -> BoxFuture<'a, Result<Vec<Row>>>;

    /// Applies a batch atomically: all of it or none of it.
    fn apply<'a>(&'a self, ops: &'a [Op]) -> BoxFuture<'a, Result<()>>;

    /// Deletes rows of every device whose expiry is at or before `now`; returns how many.
    fn purge_expired(&self, now: i64) -> BoxFuture<'_, Result<u64>>;

    /// Devices that have a row in `table`.
    fn devices(&self, table: Table) -> BoxFuture<'_, Result<Vec<String>>>;

    /// In one transaction: replaces the value of every row of every table except
    /// [`Table::Meta`] with `rewrite(row)`, then applies `then`.
    fn rewrite_all<'a>(&'a self, rewrite: Rewriter, then: &'a [Op]) -> BoxFuture<'a, Result<u64>>;
}
