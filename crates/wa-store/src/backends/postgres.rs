//! PostgreSQL backend: tokio-postgres through a deadpool connection pool.
//!
//! Every batch is one `BEGIN … COMMIT` on one pooled connection; migrations run under a
//! transaction-scoped advisory lock so several processes can start at once.

use std::collections::HashMap;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, PoolError, RecyclingMethod};
use futures::future::{BoxFuture, FutureExt};

use crate::backend::{Backend, Op, Rewriter, Row, RowKey, Scan, Table};
use crate::error::{Error, Result};
use crate::postgres_tls::PgConnectConfig;
use crate::{Store, StoreOptions};

/// Newest schema version this build knows.
pub const SCHEMA_VERSION: i64 = 1;

/// Advisory lock key serialising migrations ("wa-store" in ASCII, truncated).
const MIGRATION_LOCK: i64 = 0x7761_2d73_746f_7265;

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

fn migration_1() -> String {
    let mut sql = String::new();
    for t in V1_TABLES {
        // COLLATE "C": byte order, the same order SQLite and the memory backend list rows in.
        sql.push_str(&format!(
            "CREATE TABLE {t} (
                device TEXT COLLATE \"C\" NOT NULL,
                scope TEXT COLLATE \"C\" NOT NULL,
                key TEXT COLLATE \"C\" NOT NULL,
                value BYTEA NOT NULL,
                aux BIGINT NOT NULL DEFAULT 0,
                expires_at BIGINT,
                PRIMARY KEY (device, scope, key)
            );
            CREATE INDEX {t}_expiry ON {t} (expires_at) WHERE expires_at IS NOT NULL;\n"
        ));
    }
    sql
}

/// Pool settings.
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// Maximum pooled connections.
    pub max_connections: usize,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions { max_connections: 16 }
    }
}

/// A PostgreSQL database holding any number of devices.
#[derive(Clone)]
pub struct PostgresBackend {
    pool: Pool,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend").finish_non_exhaustive()
    }
}

fn pool_err(e: impl std::fmt::Display) -> Error {
    Error::Pool(e.to_string())
}

fn row_from(r: &tokio_postgres::Row) -> Result<Row> {
    Ok(Row {
        id: RowKey { scope: r.try_get("scope")?, key: r.try_get("key")? },
        value: r.try_get("value")?,
        aux: r.try_get("aux")?,
        expires_at: r.try_get("expires_at")?,
    })
}

async fn apply_op(tx: &deadpool_postgres::Transaction<'_>, op: &Op) -> Result<()> {
    match op {
        Op::Put { table, device, row } => {
            let sql = format!(
                "INSERT INTO {} (device, scope, key, value, aux, expires_at) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (device, scope, key) DO UPDATE SET value = EXCLUDED.value, aux = EXCLUDED.aux,
                 expires_at = EXCLUDED.expires_at",
                table.name()
            );
            let st = tx.prepare_cached(&sql).await?;
            tx.execute(&st, &[device, &row.id.scope, &row.id.key, &row.value, &row.aux, &row.expires_at])
                .await?;
        }
        Op::Insert { table, device, row } => {
            let sql = format!(
                "INSERT INTO {} (device, scope, key, value, aux, expires_at) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (device, scope, key) DO NOTHING",
                table.name()
            );
            let st = tx.prepare_cached(&sql).await?;
            let n = tx
                .execute(&st, &[device, &row.id.scope, &row.id.key, &row.value, &row.aux, &row.expires_at])
                .await?;
            if n == 0 {
                return Err(Error::Conflict {
                    table: table.name(),
                    scope: row.id.scope.clone(),
                    key: row.id.key.clone(),
                });
            }
        }
        Op::Delete { table, device, id } => {
            let sql = format!("DELETE FROM {} WHERE device = $1 AND scope = $2 AND key = $3", table.name());
            let st = tx.prepare_cached(&sql).await?;
            tx.execute(&st, &[device, &id.scope, &id.key]).await?;
        }
        Op::DeleteScope { table, device, scope } => {
            let sql = format!("DELETE FROM {} WHERE device = $1 AND scope = $2", table.name());
            let st = tx.prepare_cached(&sql).await?;
            tx.execute(&st, &[device, scope]).await?;
        }
        Op::SetAux { table, device, id, aux, expires_at } => {
            let sql = format!(
                "UPDATE {} SET aux = $4, expires_at = $5 WHERE device = $1 AND scope = $2 AND key = $3",
                table.name()
            );
            let st = tx.prepare_cached(&sql).await?;
            tx.execute(&st, &[device, &id.scope, &id.key, aux, expires_at]).await?;
        }
        Op::DeleteDevice { device } => {
            for t in Table::ALL {
                if t != Table::Meta {
                    let st =
                        tx.prepare_cached(&format!("DELETE FROM {} WHERE device = $1", t.name())).await?;
                    tx.execute(&st, &[device]).await?;
                }
            }
        }
    }
    Ok(())
}

impl PostgresBackend {
    /// Connects to `url` (a libpq-style URL or key=value string, TLS by its `sslmode` and
    /// `sslrootcert`: see [`crate::postgres_tls`]) and migrates the schema.
    /// Fails with [`Error::PostgresConfig`] for an unusable URL and [`Error::SchemaTooNew`] for a
    /// database written by a newer wa-store.
    pub async fn connect(url: &str, options: PostgresOptions) -> Result<Self> {
        Self::connect_with(PgConnectConfig::parse(url)?, options).await
    }

    /// [`PostgresBackend::connect`] with settings already parsed.
    pub async fn connect_with(settings: PgConnectConfig, options: PostgresOptions) -> Result<Self> {
        let (cfg, tls) = settings.into_parts();
        let mgr = Manager::from_config(cfg, tls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(mgr).max_size(options.max_connections.max(1)).build().map_err(pool_err)?;
        let backend = PostgresBackend { pool };
        backend.migrate().await?;
        Ok(backend)
    }

    async fn client(&self) -> Result<deadpool_postgres::Client> {
        // A failed connect keeps its type (TLS and certificate errors are in its source chain).
        self.pool.get().await.map_err(|e| match e {
            PoolError::Backend(e) => Error::Postgres(e),
            other => pool_err(other),
        })
    }

    async fn migrate(&self) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS wa_store_schema (
                version BIGINT PRIMARY KEY,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )",
        )
        .await?;
        let found: i64 =
            tx.query_one("SELECT COALESCE(MAX(version), 0) FROM wa_store_schema", &[]).await?.try_get(0)?;
        if found > SCHEMA_VERSION {
            return Err(Error::SchemaTooNew { found, supported: SCHEMA_VERSION });
        }
        let migrations: [fn() -> String; SCHEMA_VERSION as usize] = [migration_1];
        for (i, m) in migrations.iter().enumerate().skip(found as usize) {
            tx.batch_execute(&m()).await?;
            let v = i as i64 + 1;
            tx.execute("INSERT INTO wa_store_schema (version) VALUES ($1)", &[&v]).await?;
            tracing::info!(version = v, "wa-store postgres migration applied");
        }
        tx.commit().await?;
        Ok(())
    }
}

impl Backend for PostgresBackend {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn get<'a>(
        &'a self,
        table: Table,
        device: &'a str,
        ids: &'a [RowKey],
    ) -> BoxFuture<'a, Result<Vec<Option<Row>>>> {
        async move {
            let client = self.client().await?;
            if let [id] = ids {
                let sql = format!(
                    "SELECT scope, key, value, aux, expires_at FROM {} WHERE device = $1 AND scope = $2 AND key = $3",
                    table.name()
                );
                let st = client.prepare_cached(&sql).await?;
                let r = client.query_opt(&st, &[&device, &id.scope, &id.key]).await?;
                return Ok(vec![r.as_ref().map(row_from).transpose()?]);
            }
            let sql = format!(
                "SELECT t.scope, t.key, t.value, t.aux, t.expires_at FROM {} t
                 JOIN unnest($2::text[], $3::text[]) AS q(scope, key) ON t.scope = q.scope AND t.key = q.key
                 WHERE t.device = $1",
                table.name()
            );
            let scopes: Vec<&str> = ids.iter().map(|i| i.scope.as_str()).collect();
            let keys: Vec<&str> = ids.iter().map(|i| i.key.as_str()).collect();
            let st = client.prepare_cached(&sql).await?;
            let rows = client.query(&st, &[&device, &scopes, &keys]).await?;
            let mut found: HashMap<RowKey, Row> = HashMap::with_capacity(rows.len());
            for r in &rows {
                let row = row_from(r)?;
                found.insert(row.id.clone(), row);
            }
            Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
        }
        .boxed()
    }

    fn scan<'a>(&'a self, table: Table, device: &'a str, scan: &'a Scan) -> BoxFuture<'a, Result<Vec<Row>>> {
        async move {
            let client = self.client().await?;
            let sql = format!(
                "SELECT scope, key, value, aux, expires_at FROM {} WHERE device = $1
                 AND ($2::text IS NULL OR scope = $2) AND ($3::bigint IS NULL OR aux = $3)
                 ORDER BY scope, key LIMIT $4",
                table.name()
            );
            let limit: Option<i64> = scan.limit.map(i64::from);
            let st = client.prepare_cached(&sql).await?;
            let rows = client.query(&st, &[&device, &scan.scope, &scan.aux_eq, &limit]).await?;
            rows.iter().map(row_from).collect()
        }
        .boxed()
    }

    fn apply<'a>(&'a self, ops: &'a [Op]) -> BoxFuture<'a, Result<()>> {
        async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            for op in ops {
                apply_op(&tx, op).await?; // dropping `tx` on error rolls back
            }
            tx.commit().await?;
            Ok(())
        }
        .boxed()
    }

    fn purge_expired(&self, now: i64) -> BoxFuture<'_, Result<u64>> {
        async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let mut n = 0;
            for t in Table::ALL {
                let sql =
                    format!("DELETE FROM {} WHERE expires_at IS NOT NULL AND expires_at <= $1", t.name());
                n += tx.execute(&sql, &[&now]).await?;
            }
            tx.commit().await?;
            Ok(n)
        }
        .boxed()
    }

    fn devices(&self, table: Table) -> BoxFuture<'_, Result<Vec<String>>> {
        async move {
            let client = self.client().await?;
            let rows = client
                .query(&format!("SELECT DISTINCT device FROM {} ORDER BY device", table.name()), &[])
                .await?;
            rows.iter().map(|r| r.try_get(0).map_err(Error::from)).collect()
        }
        .boxed()
    }

    fn rewrite_all<'a>(&'a self, rewrite: Rewriter, then: &'a [Op]) -> BoxFuture<'a, Result<u64>> {
        async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let mut n = 0u64;
            for t in Table::ALL {
                if t == Table::Meta {
                    continue;
                }
                let rows = tx
                    .query(
                        &format!(
                            "SELECT device, scope, key, value, aux, expires_at FROM {} FOR UPDATE",
                            t.name()
                        ),
                        &[],
                    )
                    .await?;
                let st = tx
                    .prepare(&format!(
                        "UPDATE {} SET value = $4 WHERE device = $1 AND scope = $2 AND key = $3",
                        t.name()
                    ))
                    .await?;
                for r in &rows {
                    let device: String = r.try_get("device")?;
                    let row = row_from(r)?;
                    let v = rewrite(t, &device, &row)?;
                    tx.execute(&st, &[&device, &row.id.scope, &row.id.key, &v]).await?;
                    n += 1;
                }
            }
            for op in then {
                apply_op(&tx, op).await?;
            }
            tx.commit().await?;
            Ok(n)
        }
        .boxed()
    }
}

impl Store {
    /// Opens a PostgreSQL-backed store with default pool settings.
    pub async fn open_postgres(url: &str, options: StoreOptions) -> Result<Store> {
        Store::open(PostgresBackend::connect(url, PostgresOptions::default()).await?, options).await
    }
}
