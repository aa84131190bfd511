//! SQLite backend: rusqlite with the bundled library, WAL, one writer connection, a small pool of
//! reader connections, and every call on tokio's blocking pool so the async runtime never waits
//! on disk.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::backend::{Backend, Op, Rewriter, Row, RowKey, Scan, Table};
use crate::error::{Error, Result};
use crate::{Store, StoreOptions};

/// Newest schema version this build knows.
pub const SCHEMA_VERSION: i64 = 1;

/// Tables created by migration 1 (fixed forever: later tables come with later migrations).
const V1_TABLES: [&str; 16] = [
    "wa_meta",
    "wa_device",
    "wa_identities",
    "wa_sessions",
    "wa_pre_keys",
    "wa_signed_pre_keys",
    "wa_sender_keys",
    "wa_sender_key_holders",
    "wa_app_state_keys",
    "wa_app_state_versions",
    "wa_app_state_macs",
    "wa_lid_mappings",
    "wa_device_lists",
    "wa_sent_messages",
    "wa_inbound_messages",
    "wa_privacy_tokens",
];

fn migration_1(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    for t in V1_TABLES {
        tx.execute_batch(&format!(
            "CREATE TABLE {t} (
                device TEXT NOT NULL,
                scope TEXT NOT NULL,
                key TEXT NOT NULL,
                value BLOB NOT NULL,
                aux INTEGER NOT NULL DEFAULT 0,
                expires_at INTEGER,
                PRIMARY KEY (device, scope, key)
            ) WITHOUT ROWID;
            CREATE INDEX {t}_expiry ON {t} (expires_at) WHERE expires_at IS NOT NULL;"
        ))?;
    }
    Ok(())
}

type Migration = fn(&rusqlite::Transaction<'_>) -> rusqlite::Result<()>;

/// Forward-only migrations; entry `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: [Migration; SCHEMA_VERSION as usize] = [migration_1];

/// How hard commits are pushed to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=FULL`: a committed transaction survives power loss.
    #[default]
    Full,
    /// `synchronous=NORMAL`: survives process crashes; the last commits may be lost on power
    /// loss (never corrupted). Much faster on slow disks.
    Normal,
}

/// SQLite settings.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// Commit durability.
    pub durability: Durability,
    /// How long a connection waits for a lock held by another process.
    pub busy_timeout: Duration,
    /// Reader connections kept open.
    pub max_readers: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions { durability: Durability::Full, busy_timeout: Duration::from_secs(5), max_readers: 4 }
    }
}

struct Shared {
    path: PathBuf,
    options: SqliteOptions,
    /// The single writer: SQLite allows one at a time anyway; holding it here avoids
    /// busy-waiting between our own tasks.
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

/// A SQLite database file holding any number of devices.
#[derive(Clone)]
pub struct SqliteBackend {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBackend").field("path", &self.shared.path).finish_non_exhaustive()
    }
}

fn configure(conn: &Connection, o: &SqliteOptions) -> Result<()> {
    conn.busy_timeout(o.busy_timeout)?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::InvalidInput(format!(
            "sqlite refused WAL mode (got {mode}); is the file on a network share?"
        )));
    }
    let sync = match o.durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.execute_batch(&format!("PRAGMA synchronous={sync}; PRAGMA foreign_keys=ON;"))?;
    Ok(())
}

fn open_conn(path: &Path, o: &SqliteOptions) -> Result<Connection> {
    let flags =
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    configure(&conn, o)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew { found, supported: SCHEMA_VERSION });
    }
    if found < 0 {
        return Err(Error::Corrupt {
            table: "sqlite_master",
            reason: format!("negative schema version {found}"),
        });
    }
    for (i, m) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        m(&tx)?;
        tracing::info!(version = i + 1, "wa-store sqlite migration applied");
    }
    if found < SCHEMA_VERSION {
        tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
    }
    tx.commit()?;
    Ok(())
}

fn row_from(scope: String, key: String, r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Row> {
    Ok(Row {
        id: RowKey { scope, key },
        value: r.get(first)?,
        aux: r.get(first + 1)?,
        expires_at: r.get(first + 2)?,
    })
}

fn is_constraint(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

fn apply_op(tx: &rusqlite::Transaction<'_>, op: &Op) -> Result<()> {
    match op {
        Op::Put { table, device, row } => {
            let sql = format!(
                "INSERT INTO {} (device, scope, key, value, aux, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (device, scope, key) DO UPDATE SET value = excluded.value, aux = excluded.aux,
                 expires_at = excluded.expires_at",
                table.name()
            );
            tx.prepare_cached(&sql)?.execute(params![
                device,
                row.id.scope,
                row.id.key,
                row.value,
                row.aux,
                row.expires_at
            ])?;
        }
        Op::Insert { table, device, row } => {
            let sql = format!(
                "INSERT INTO {} (device, scope, key, value, aux, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                table.name()
            );
            let r = tx.prepare_cached(&sql)?.execute(params![
                device,
                row.id.scope,
                row.id.key,
                row.value,
                row.aux,
                row.expires_at
            ]);
            match r {
                Ok(_) => {}
                Err(e) if is_constraint(&e) => {
                    return Err(Error::Conflict {
                        table: table.name(),
                        scope: row.id.scope.clone(),
                        key: row.id.key.clone(),
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
        Op::Delete { table, device, id } => {
            let sql = format!("DELETE FROM {} WHERE device = ?1 AND scope = ?2 AND key = ?3", table.name());
            tx.prepare_cached(&sql)?.execute(params![device, id.scope, id.key])?;
        }
        Op::DeleteScope { table, device, scope } => {
            let sql = format!("DELETE FROM {} WHERE device = ?1 AND scope = ?2", table.name());
            tx.prepare_cached(&sql)?.execute(params![device, scope])?;
        }
        Op::SetAux { table, device, id, aux, expires_at } => {
            let sql = format!(
                "UPDATE {} SET aux = ?4, expires_at = ?5 WHERE device = ?1 AND scope = ?2 AND key = ?3",
                table.name()
            );
            tx.prepare_cached(&sql)?.execute(params![device, id.scope, id.key, aux, expires_at])?;
        }
        Op::DeleteDevice { device } => {
            for t in Table::ALL {
                if t != Table::Meta {
                    tx.prepare_cached(&format!("DELETE FROM {} WHERE device = ?1", t.name()))?
                        .execute(params![device])?;
                }
            }
        }
    }
    Ok(())
}

impl SqliteBackend {
    /// Opens (creating if needed) a database file and brings its schema up to date.
    /// Fails with [`Error::SchemaTooNew`] for a file written by a newer wa-store.
    pub async fn open(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || {
            let mut writer = open_conn(&path, &options)?;
            migrate(&mut writer)?;
            Ok(SqliteBackend {
                shared: Arc::new(Shared {
                    path,
                    options,
                    writer: Mutex::new(writer),
                    readers: Mutex::new(Vec::new()),
                }),
            })
        })
        .await
        .map_err(|e| Error::Worker(e.to_string()))?
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    async fn with_writer<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn =
                shared.writer.lock().map_err(|_| Error::Worker("sqlite writer lock poisoned".into()))?;
            f(&mut conn)
        })
        .await
        .map_err(|e| Error::Worker(e.to_string()))?
    }

    async fn with_reader<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let pooled =
                shared.readers.lock().map_err(|_| Error::Worker("sqlite reader pool poisoned".into()))?.pop();
            let conn = match pooled {
                Some(c) => c,
                None => open_conn(&shared.path, &shared.options)?,
            };
            let out = f(&conn);
            if let Ok(mut pool) = shared.readers.lock()
                && pool.len() < shared.options.max_readers
            {
                pool.push(conn);
            }
            out
        })
        .await
        .map_err(|e| Error::Worker(e.to_string()))?
    }
}

impl Backend for SqliteBackend {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn get<'a>(
        &'a self,
        table: Table,
        device: &'a str,
        ids: &'a [RowKey],
    ) -> BoxFuture<'a, Result<Vec<Option<Row>>>> {
        let device = device.to_owned();
        let ids = ids.to_vec();
        self.with_reader(move |conn| {
            let sql = format!(
                "SELECT value, aux, expires_at FROM {} WHERE device = ?1 AND scope = ?2 AND key = ?3",
                table.name()
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                let RowKey { scope, key } = id;
                let row = stmt
                    .query_row(params![device, scope, key], |r| row_from(scope.clone(), key.clone(), r, 0))
                    .optional()?;
                out.push(row);
            }
            Ok(out)
        })
        .boxed()
    }

    fn scan<'a>(&'a self, table: Table, device: &'a str, scan: &'a Scan) -> BoxFuture<'a, Result<Vec<Row>>> {
        let device = device.to_owned();
        let scan = scan.clone();
        self.with_reader(move |conn| {
            let sql = format!(
                "SELECT scope, key, value, aux, expires_at FROM {} WHERE device = ?1
                 AND (?2 IS NULL OR scope = ?2) AND (?3 IS NULL OR aux = ?3)
                 ORDER BY scope, key LIMIT ?4",
                table.name()
            );
            let limit = scan.limit.map_or(-1, i64::from);
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![device, scan.scope, scan.aux_eq, limit], |r| {
                row_from(r.get(0)?, r.get(1)?, r, 2)
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .boxed()
    }

    fn apply<'a>(&'a self, ops: &'a [Op]) -> BoxFuture<'a, Result<()>> {
        let ops = ops.to_vec();
        self.with_writer(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for op in &ops {
                apply_op(&tx, op)?; // dropping `tx` on error rolls back
            }
            tx.commit()?;
            Ok(())
        })
        .boxed()
    }

    fn purge_expired(&self, now: i64) -> BoxFuture<'_, Result<u64>> {
        self.with_writer(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut n = 0u64;
            for t in Table::ALL {
                let sql =
                    format!("DELETE FROM {} WHERE expires_at IS NOT NULL AND expires_at <= ?1", t.name());
                n += tx.prepare_cached(&sql)?.execute(params![now])? as u64;
            }
            tx.commit()?;
            Ok(n)
        })
        .boxed()
    }

    fn devices(&self, table: Table) -> BoxFuture<'_, Result<Vec<String>>> {
        self.with_reader(move |conn| {
            let sql = format!("SELECT DISTINCT device FROM {} ORDER BY device", table.name());
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .boxed()
    }

    fn rewrite_all<'a>(&'a self, rewrite: Rewriter, then: &'a [Op]) -> BoxFuture<'a, Result<u64>> {
        let then = then.to_vec();
        self.with_writer(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut n = 0u64;
            for t in Table::ALL {
                if t == Table::Meta {
                    continue;
                }
                let rows: Vec<(String, Row)> = {
                    let mut stmt = tx.prepare(&format!(
                        "SELECT device, scope, key, value, aux, expires_at FROM {}",
                        t.name()
                    ))?;
                    let it =
                        stmt.query_map([], |r| Ok((r.get(0)?, row_from(r.get(1)?, r.get(2)?, r, 3)?)))?;
                    it.collect::<rusqlite::Result<Vec<_>>>()?
                };
                let sql = format!(
                    "UPDATE {} SET value = ?4 WHERE device = ?1 AND scope = ?2 AND key = ?3",
                    t.name()
                );
                for (device, row) in rows {
                    let v = rewrite(t, &device, &row)?;
                    tx.prepare_cached(&sql)?.execute(params![device, row.id.scope, row.id.key, v])?;
                    n += 1;
                }
            }
            for op in &then {
                apply_op(&tx, op)?;
            }
            tx.commit()?;
            Ok(n)
        })
        .boxed()
    }
}

impl Store {
    /// Opens a SQLite-backed store with default SQLite settings.
    pub async fn open_sqlite(path: impl AsRef<Path>, options: StoreOptions) -> Result<Store> {
        Store::open(SqliteBackend::open(path, SqliteOptions::default()).await?, options).await
    }
}
