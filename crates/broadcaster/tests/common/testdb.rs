//! The database a test runs on. A test binary's root declares
//! `const TEST_ON_POSTGRES: bool = …;`: false runs on SQLite (in memory, or a file in a
//! temporary directory when the test reopens it), true on PostgreSQL — a fresh schema per test in
//! the server at `WA_TEST_PG_URL` (scripts/services/10-postgres.sh starts one and exports it).
//! The `*_pg` test binaries include the SQLite ones' source with `TEST_ON_POSTGRES = true`, so
//! every test body runs on both backends.

// Shared by several test binaries; each uses a part.
#![allow(dead_code)]

use broadcaster::db::Db;

/// Whether this test binary runs on PostgreSQL.
pub fn on_postgres() -> bool {
    crate::TEST_ON_POSTGRES
}

/// A `postgres://` URL to a fresh, empty schema (its own `search_path`) in the server at
/// `WA_TEST_PG_URL`.
pub async fn fresh_pg_url() -> String {
    let admin = std::env::var("WA_TEST_PG_URL").unwrap_or_default();
    assert!(
        !admin.is_empty(),
        "WA_TEST_PG_URL is not set: the PostgreSQL tests need a server (scripts/test starts one with \
         scripts/services/10-postgres.sh; for a local run source that script first)"
    );
    let schema = format!("bc_{:016x}", rand::random::<u64>());
    let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to WA_TEST_PG_URL: {e}"));
    let driver = tokio::spawn(conn);
    client.batch_execute(&format!("CREATE SCHEMA {schema}")).await.unwrap();
    drop(client);
    let _ = driver.await;
    let sep = if admin.contains('?') { '&' } else { '?' };
    format!("{admin}{sep}options=-csearch_path%3D{schema}")
}

/// On PostgreSQL, the `DATABASE_URL` of the server whose data dir is `dir`: a fresh schema the
/// first time, the same one on every restart. `None` on SQLite (the file in `dir`).
pub fn database_url_for(dir: &std::path::Path) -> Option<String> {
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::sync::Mutex;
    static URLS: Mutex<BTreeMap<PathBuf, String>> = Mutex::new(BTreeMap::new());
    if !on_postgres() {
        return None;
    }
    let mut urls = URLS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(u) = urls.get(dir) {
        return Some(u.clone());
    }
    // Called from sync code inside a runtime: create the schema on a thread of its own.
    let url = std::thread::spawn(|| {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(fresh_pg_url())
    })
    .join()
    .unwrap();
    urls.insert(dir.to_owned(), url.clone());
    Some(url)
}

/// A fresh database for one test.
pub async fn open() -> Db {
    if on_postgres() {
        Db::open_postgres(&fresh_pg_url().await).await.unwrap()
    } else {
        Db::open_in_memory().unwrap()
    }
}

/// A database a test can close and open again (restart scenarios).
pub enum Reopenable {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Reopenable {
    pub async fn new() -> Self {
        if on_postgres() {
            Self::Postgres(fresh_pg_url().await)
        } else {
            Self::Sqlite(tempfile::tempdir().unwrap())
        }
    }

    pub async fn open(&self) -> Db {
        match self {
            Self::Sqlite(dir) => Db::open_in_dir(dir.path()).unwrap(),
            Self::Postgres(url) => Db::open_postgres(url).await.unwrap(),
        }
    }

    /// `DATABASE_URL` for a server process on this database (`None`: SQLite in its data dir).
    pub fn database_url(&self) -> Option<&str> {
        match self {
            Self::Sqlite(_) => None,
            Self::Postgres(url) => Some(url),
        }
    }
}
