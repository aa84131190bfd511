//! wa-store: session get+put per second, per backend.
//!
//! One iteration = load one Signal session record (1 KiB, opaque) and store its successor,
//! as the client does for every message decrypted or encrypted. PostgreSQL and MongoDB run
//! when WA_TEST_PG_URL / WA_TEST_MONGO_URL point at servers (scripts/services/*.sh start them).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wa_store::backends::sqlite::{Durability, SqliteBackend, SqliteOptions};
use wa_store::{DeviceId, EncryptionKey, ProtocolAddress, SessionStore, Store, StoreOptions};

const PEERS: u32 = 64;

fn bench_backend(c: &mut Criterion, rt: &tokio::runtime::Runtime, name: &str, store: Store) {
    let d = store.device(&DeviceId::new("bench").expect("id"));
    let addrs: Vec<ProtocolAddress> =
        (0..PEERS).map(|i| ProtocolAddress::new(format!("{i}@lid"), 0)).collect();
    let record = vec![0x5au8; 1024];
    rt.block_on(async {
        let batch: Vec<_> = addrs.iter().map(|a| (a.clone(), record.clone())).collect();
        d.put_sessions(&batch).await.expect("seed");
    });
    let mut g = c.benchmark_group("wa-store session get+put");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function(name, |b| {
        b.iter(|| {
            i = (i + 1) % addrs.len();
            let a = &addrs[i];
            rt.block_on(async {
                let mut got = d.get_sessions(std::slice::from_ref(a)).await.expect("get");
                let mut rec = got.pop().flatten().expect("present");
                rec[0] = rec[0].wrapping_add(1);
                d.put_sessions(&[(a.clone(), black_box(rec))]).await.expect("put");
            })
        })
    });
    g.finish();
}

fn store_benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    let key = || Some(EncryptionKey::Raw([7; 32]));
    let opts = |key| StoreOptions { key, ..StoreOptions::default() };

    let mem = rt.block_on(Store::memory(opts(None))).expect("memory");
    bench_backend(c, &rt, "memory", mem);
    let mem = rt.block_on(Store::memory(opts(key()))).expect("memory");
    bench_backend(c, &rt, "memory+aes", mem);

    let dir = tempfile::tempdir().expect("tempdir");
    for (label, durability, k) in [
        ("sqlite-full", Durability::Full, None),
        ("sqlite-normal", Durability::Normal, None),
        ("sqlite-normal+aes", Durability::Normal, key()),
    ] {
        let path = dir.path().join(format!("{label}.db"));
        let store = rt
            .block_on(async {
                let b = SqliteBackend::open(&path, SqliteOptions { durability, ..SqliteOptions::default() })
                    .await?;
                Store::open(b, opts(k)).await
            })
            .expect("sqlite");
        bench_backend(c, &rt, label, store);
    }

    match std::env::var("WA_TEST_PG_URL") {
        Ok(admin) => {
            let url = rt.block_on(async {
                let (client, conn) =
                    tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.expect("pg");
                tokio::spawn(conn);
                let name = format!("wa_bench_{}", std::process::id());
                // CREATE DATABASE cannot run inside a multi-statement (implicit transaction) query.
                client.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).await.expect("drop db");
                client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create db");
                let (base, _) = admin.rsplit_once('/').expect("url path");
                format!("{base}/{name}")
            });
            let store = rt.block_on(Store::open_postgres(&url, opts(None))).expect("postgres");
            bench_backend(c, &rt, "postgres", store);
        }
        Err(_) => eprintln!("WA_TEST_PG_URL not set: postgres bench skipped"),
    }
    match std::env::var("WA_TEST_MONGO_URL") {
        Ok(url) => {
            let db = format!("wa_bench_{}", std::process::id());
            let store = rt.block_on(Store::open_mongodb(&url, &db, opts(None))).expect("mongodb");
            bench_backend(c, &rt, "mongodb", store);
        }
        Err(_) => eprintln!("WA_TEST_MONGO_URL not set: mongodb bench skipped"),
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(4));
    targets = store_benches
}
criterion_main!(benches);
