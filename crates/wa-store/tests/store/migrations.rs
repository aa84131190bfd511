//! Forward-only migrations: a database from a newer version is refused with a clear error.

use wa_store::{Error, Store, StoreOptions};

use crate::harness;

fn assert_too_new(r: Result<Store, Error>) {
    match r {
        Err(e @ Error::SchemaTooNew { found: 999, .. }) => {
            assert!(e.to_string().contains("newer than this build supports"), "{e}");
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[tokio::test]
async fn sqlite_refuses_newer_schema() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.db");
    Store::open_sqlite(&path, StoreOptions::default()).await.expect("create");
    // Opening twice is a no-op migration.
    Store::open_sqlite(&path, StoreOptions::default()).await.expect("reopen");
    rusqlite::Connection::open(&path).expect("raw").execute_batch("PRAGMA user_version = 999").expect("bump");
    assert_too_new(Store::open_sqlite(&path, StoreOptions::default()).await);
}

#[tokio::test]
async fn sqlite_rejects_garbage_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.db");
    std::fs::write(&path, b"this is not a sqlite database, just some text padding it out".repeat(100))
        .expect("write");
    match Store::open_sqlite(&path, StoreOptions::default()).await {
        Err(Error::Sqlite(_)) => {}
        other => panic!("expected a sqlite error, got {other:?}"),
    }
}

#[tokio::test]
async fn postgres_refuses_newer_schema() {
    let Some(admin) = harness::server_url(harness::PG_VAR) else {
        return;
    };
    let url = harness::fresh_pg_database(&admin).await;
    Store::open_postgres(&url, StoreOptions::default()).await.expect("create");
    Store::open_postgres(&url, StoreOptions::default()).await.expect("reopen");
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(conn);
    client.batch_execute("INSERT INTO wa_store_schema (version) VALUES (999)").await.expect("bump");
    assert_too_new(Store::open_postgres(&url, StoreOptions::default()).await);
}

#[tokio::test]
async fn mongodb_refuses_newer_schema() {
    let Some(url) = harness::server_url(harness::MONGO_VAR) else {
        return;
    };
    let db = harness::unique_name("wa_test");
    Store::open_mongodb(&url, &db, StoreOptions::default()).await.expect("create");
    Store::open_mongodb(&url, &db, StoreOptions::default()).await.expect("reopen");
    let client = mongodb::Client::with_uri_str(&url).await.expect("client");
    client
        .database(&db)
        .collection::<mongodb::bson::Document>("wa_store_schema")
        .update_one(mongodb::bson::doc! {"_id": "schema"}, mongodb::bson::doc! {"$set": {"version": 999i64}})
        .await
        .expect("bump");
    assert_too_new(Store::open_mongodb(&url, &db, StoreOptions::default()).await);
}
