//! Per-backend harnesses: a fresh database per test, raw access for the encryption tests.

use std::sync::Arc;

use futures::future::BoxFuture;
use wa_store::{Backend, Error, Row, RowKey, Scan, Store, StoreOptions, Table};

/// Opt-out for developers without the servers: `WA_STORE_SKIP_SERVER_TESTS=1`.
pub const SKIP_VAR: &str = "WA_STORE_SKIP_SERVER_TESTS";
pub const PG_VAR: &str = "WA_TEST_PG_URL";
pub const MONGO_VAR: &str = "WA_TEST_MONGO_URL";

/// A fresh database of one backend.
pub trait Harness: Send + Sync {
    /// Backend name.
    fn name(&self) -> &'static str;
    /// Opens (or reopens) a store on this database.
    fn open(&self, opts: StoreOptions) -> BoxFuture<'_, Result<Store, Error>>;
    /// A raw backend on the same database (no store, no encryption) — an attacker's view.
    fn raw(&self) -> BoxFuture<'_, Arc<dyn Backend>>;
    /// Every byte the database holds for our tables, as the server or file stores it.
    fn dump(&self) -> BoxFuture<'_, Vec<u8>>;
    /// True if the data survives dropping every handle (false for memory).
    fn persistent(&self) -> bool;
}

/// Server URL from the environment, or `None` when the developer opted out.
/// Absent without opt-out is a failure: a backend test must never pass without running.
pub fn server_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            if std::env::var(SKIP_VAR).is_ok_and(|v| v == "1") {
                eprintln!("SKIPPED: {var} not set and {SKIP_VAR}=1");
                None
            } else {
                panic!(
                    "{var} is not set. Run the suite through scripts/test (it starts the servers), \
                     or set {SKIP_VAR}=1 to skip the PostgreSQL/MongoDB backend tests explicitly."
                )
            }
        }
    }
}

pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst), nanos)
}

/// Concatenates every row of every table through a raw backend.
pub async fn dump_via_backend(b: &dyn Backend) -> Vec<u8> {
    let mut out = Vec::new();
    for t in Table::ALL {
        for d in b.devices(t).await.expect("devices") {
            for r in b.scan(t, &d, &Scan::default()).await.expect("scan") {
                out.extend_from_slice(r.id.scope.as_bytes());
                out.extend_from_slice(r.id.key.as_bytes());
                out.extend_from_slice(&r.value);
            }
        }
    }
    out
}

/// Swaps the stored values of two rows, as an attacker with write access could.
pub async fn swap_rows(b: &dyn Backend, table: Table, device: &str, a: RowKey, c: RowKey) {
    let rows = b.get(table, device, &[a.clone(), c.clone()]).await.expect("get");
    let (Some(ra), Some(rc)) = (rows[0].clone(), rows[1].clone()) else { panic!("rows to swap must exist") };
    let ops = [
        wa_store::Op::Put { table, device: device.into(), row: Row { id: a, ..rc.clone() } },
        wa_store::Op::Put { table, device: device.into(), row: Row { id: c, ..ra } },
    ];
    b.apply(&ops).await.expect("swap");
}

// ---- memory --------------------------------------------------------------------------------

pub struct MemoryHarness(Arc<wa_store::backends::memory::MemoryBackend>);

impl Harness for MemoryHarness {
    fn name(&self) -> &'static str {
        "memory"
    }
    fn open(&self, opts: StoreOptions) -> BoxFuture<'_, Result<Store, Error>> {
        Box::pin(async move { Store::open_arc(self.0.clone(), opts).await })
    }
    fn raw(&self) -> BoxFuture<'_, Arc<dyn Backend>> {
        Box::pin(async move { self.0.clone() as Arc<dyn Backend> })
    }
    fn dump(&self) -> BoxFuture<'_, Vec<u8>> {
        Box::pin(async move { dump_via_backend(&*self.0).await })
    }
    fn persistent(&self) -> bool {
        false
    }
}

pub async fn memory() -> Option<Box<dyn Harness>> {
    Some(Box::new(MemoryHarness(Arc::new(wa_store::backends::memory::MemoryBackend::new()))))
}

// ---- sqlite --------------------------------------------------------------------------------

pub struct SqliteHarness {
    pub dir: tempfile::TempDir,
}

impl SqliteHarness {
    pub fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("store.db")
    }
}

impl Harness for SqliteHarness {
    fn name(&self) -> &'static str {
        "sqlite"
    }
    fn open(&self, opts: StoreOptions) -> BoxFuture<'_, Result<Store, Error>> {
        Box::pin(async move { Store::open_sqlite(self.path(), opts).await })
    }
    fn raw(&self) -> BoxFuture<'_, Arc<dyn Backend>> {
        Box::pin(async move {
            let b = wa_store::backends::sqlite::SqliteBackend::open(self.path(), Default::default())
                .await
                .expect("raw sqlite");
            Arc::new(b) as Arc<dyn Backend>
        })
    }
    fn dump(&self) -> BoxFuture<'_, Vec<u8>> {
        Box::pin(async move {
            // The database file and its WAL: committed data may live in either.
            let mut out = std::fs::read(self.path()).expect("read db file");
            let wal = self.dir.path().join("store.db-wal");
            if let Ok(w) = std::fs::read(wal) {
                out.extend_from_slice(&w);
            }
            out
        })
    }
    fn persistent(&self) -> bool {
        true
    }
}

pub async fn sqlite() -> Option<Box<dyn Harness>> {
    Some(Box::new(SqliteHarness { dir: tempfile::tempdir().expect("tempdir") }))
}

// ---- postgres ------------------------------------------------------------------------------

pub struct PgHarness {
    pub url: String,
}

/// Creates a fresh database on the test server and returns its URL.
pub async fn fresh_pg_database(admin_url: &str) -> String {
    let (client, conn) =
        tokio_postgres::connect(admin_url, tokio_postgres::NoTls).await.expect("connect admin");
    tokio::spawn(conn);
    let name = unique_name("wa_test");
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create database");
    // Replace the database name in the URL's path.
    let (base, _) = admin_url.rsplit_once('/').expect("url has a database path");
    let query = admin_url.split_once('?').map(|(_, q)| format!("?{q}")).unwrap_or_default();
    format!("{base}/{name}{query}")
}

impl Harness for PgHarness {
    fn name(&self) -> &'static str {
        "postgres"
    }
    fn open(&self, opts: StoreOptions) -> BoxFuture<'_, Result<Store, Error>> {
        Box::pin(async move { Store::open_postgres(&self.url, opts).await })
    }
    fn raw(&self) -> BoxFuture<'_, Arc<dyn Backend>> {
        Box::pin(async move {
            let b = wa_store::backends::postgres::PostgresBackend::connect(&self.url, Default::default())
                .await
                .expect("raw pg");
            Arc::new(b) as Arc<dyn Backend>
        })
    }
    fn dump(&self) -> BoxFuture<'_, Vec<u8>> {
        Box::pin(async move {
            let (client, conn) =
                tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await.expect("connect");
            tokio::spawn(conn);
            let mut out = Vec::new();
            for t in Table::ALL {
                // Every column of every row, as the server returns it.
                for r in client
                    .query(
                        &format!("SELECT device, scope, key, value, aux, expires_at FROM {}", t.name()),
                        &[],
                    )
                    .await
                    .expect("select")
                {
                    for i in 0..3 {
                        out.extend_from_slice(r.get::<_, String>(i).as_bytes());
                    }
                    out.extend_from_slice(&r.get::<_, Vec<u8>>(3));
                }
            }
            out
        })
    }
    fn persistent(&self) -> bool {
        true
    }
}

pub async fn postgres() -> Option<Box<dyn Harness>> {
    let admin = server_url(PG_VAR)?;
    Some(Box::new(PgHarness { url: fresh_pg_database(&admin).await }))
}

// ---- mongodb -------------------------------------------------------------------------------

pub struct MongoHarness {
    pub url: String,
    pub db: String,
}

impl Harness for MongoHarness {
    fn name(&self) -> &'static str {
        "mongodb"
    }
    fn open(&self, opts: StoreOptions) -> BoxFuture<'_, Result<Store, Error>> {
        Box::pin(async move { Store::open_mongodb(&self.url, &self.db, opts).await })
    }
    fn raw(&self) -> BoxFuture<'_, Arc<dyn Backend>> {
        Box::pin(async move {
            let b = wa_store::backends::mongo::MongoBackend::connect(&self.url, &self.db)
                .await
                .expect("raw mongo");
            Arc::new(b) as Arc<dyn Backend>
        })
    }
    fn dump(&self) -> BoxFuture<'_, Vec<u8>> {
        Box::pin(async move {
            use futures::TryStreamExt;
            let client = mongodb::Client::with_uri_str(&self.url).await.expect("client");
            let db = client.database(&self.db);
            let mut out = Vec::new();
            for t in Table::ALL {
                // Raw BSON bytes of each document, exactly as the server sends them.
                let c = db.collection::<mongodb::bson::RawDocumentBuf>(t.name());
                let docs: Vec<mongodb::bson::RawDocumentBuf> =
                    c.find(mongodb::bson::doc! {}).await.expect("find").try_collect().await.expect("docs");
                for d in docs {
                    out.extend_from_slice(d.as_bytes());
                }
            }
            out
        })
    }
    fn persistent(&self) -> bool {
        true
    }
}

pub async fn mongodb() -> Option<Box<dyn Harness>> {
    let url = server_url(MONGO_VAR)?;
    Some(Box::new(MongoHarness { url, db: unique_name("wa_test") }))
}
