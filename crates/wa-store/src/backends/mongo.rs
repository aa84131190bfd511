//! MongoDB backend: the official driver, one collection per table, multi-document transactions
//! (so it needs a replica set or a server that offers transactions).
//!
//! Document shape: `{_id: {d, s, k}, d, s, k, v: Binary, a: Int64, e: Int64|null}` — the
//! compound `_id` makes (device, scope, key) unique without relying on secondary unique
//! indexes; the copied fields carry the `(d, s, k)` index used by listings.

use std::collections::HashMap;

use futures::TryStreamExt;
use futures::future::{BoxFuture, FutureExt};
use mongodb::bson::{Binary, Bson, Document, doc, spec::BinarySubtype};
use mongodb::error::{
    ErrorKind, TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT, WriteFailure,
};
use mongodb::{Client, ClientSession, Collection, Database, IndexModel};

use crate::backend::{Backend, Op, Rewriter, Row, RowKey, Scan, Table};
use crate::error::{Error, Result};
use crate::{Store, StoreOptions};

/// Newest schema version this build knows.
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA_COLLECTION: &str = "wa_store_schema";
const TX_ATTEMPTS: usize = 8;

/// A MongoDB database holding any number of devices.
#[derive(Clone, Debug)]
pub struct MongoBackend {
    client: Client,
    db: Database,
}

fn coll(db: &Database, t: Table) -> Collection<Document> {
    db.collection::<Document>(t.name())
}

fn id_doc(device: &str, id: &RowKey) -> Document {
    doc! { "d": device, "s": &id.scope, "k": &id.key }
}

fn row_doc(device: &str, row: &Row) -> Document {
    doc! {
        "_id": id_doc(device, &row.id),
        "d": device,
        "s": &row.id.scope,
        "k": &row.id.key,
        "v": Binary { subtype: BinarySubtype::Generic, bytes: row.value.clone() },
        "a": row.aux,
        "e": row.expires_at.map_or(Bson::Null, Bson::Int64),
    }
}

fn bad(t: Table, reason: &str) -> Error {
    Error::Corrupt { table: t.name(), reason: format!("mongodb document: {reason}") }
}

fn row_from(t: Table, d: &Document) -> Result<Row> {
    let scope = d.get_str("s").map_err(|_| bad(t, "missing s"))?.to_owned();
    let key = d.get_str("k").map_err(|_| bad(t, "missing k"))?.to_owned();
    let value = d.get_binary_generic("v").map_err(|_| bad(t, "missing v"))?.clone();
    let aux = match d.get("a") {
        Some(Bson::Int64(a)) => *a,
        Some(Bson::Int32(a)) => i64::from(*a),
        _ => return Err(bad(t, "missing a")),
    };
    let expires_at = match d.get("e") {
        None | Some(Bson::Null) => None,
        Some(Bson::Int64(e)) => Some(*e),
        Some(Bson::Int32(e)) => Some(i64::from(*e)),
        _ => return Err(bad(t, "bad e")),
    };
    Ok(Row { id: RowKey { scope, key }, value, aux, expires_at })
}

fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
        ErrorKind::Command(c) => c.code == 11000,
        _ => false,
    }
}

fn is_namespace_exists(e: &mongodb::error::Error) -> bool {
    matches!(&*e.kind, ErrorKind::Command(c) if c.code == 48)
}

async fn apply_op(db: &Database, s: &mut ClientSession, op: &Op) -> Result<()> {
    match op {
        Op::Put { table, device, row } => {
            coll(db, *table)
                .replace_one(doc! { "_id": id_doc(device, &row.id) }, row_doc(device, row))
                .upsert(true)
                .session(&mut *s)
                .await?;
        }
        Op::Insert { table, device, row } => {
            if let Err(e) = coll(db, *table).insert_one(row_doc(device, row)).session(&mut *s).await {
                if is_duplicate_key(&e) {
                    return Err(Error::Conflict {
                        table: table.name(),
                        scope: row.id.scope.clone(),
                        key: row.id.key.clone(),
                    });
                }
                return Err(e.into());
            }
        }
        Op::Delete { table, device, id } => {
            coll(db, *table).delete_one(doc! { "_id": id_doc(device, id) }).session(&mut *s).await?;
        }
        Op::DeleteScope { table, device, scope } => {
            coll(db, *table).delete_many(doc! { "d": device, "s": scope }).session(&mut *s).await?;
        }
        Op::SetAux { table, device, id, aux, expires_at } => {
            let e = expires_at.map_or(Bson::Null, Bson::Int64);
            coll(db, *table)
                .update_one(doc! { "_id": id_doc(device, id) }, doc! { "$set": { "a": aux, "e": e } })
                .session(&mut *s)
                .await?;
        }
        Op::DeleteDevice { device } => {
            for t in Table::ALL {
                if t != Table::Meta {
                    coll(db, t).delete_many(doc! { "d": device }).session(&mut *s).await?;
                }
            }
        }
    }
    Ok(())
}

impl MongoBackend {
    /// Connects to `uri`, uses database `db_name`, and migrates it.
    /// Fails with [`Error::SchemaTooNew`] for a database written by a newer wa-store.
    pub async fn connect(uri: &str, db_name: &str) -> Result<Self> {
        let client = Client::with_uri_str(uri).await?;
        let db = client.database(db_name);
        let b = MongoBackend { client, db };
        b.migrate().await?;
        Ok(b)
    }

    /// The database in use.
    pub fn database(&self) -> &Database {
        &self.db
    }

    async fn migrate(&self) -> Result<()> {
        let schema = self.db.collection::<Document>(SCHEMA_COLLECTION);
        let found = match schema.find_one(doc! { "_id": "schema" }).await? {
            None => 0,
            Some(d) => match d.get("version") {
                Some(Bson::Int64(v)) => *v,
                Some(Bson::Int32(v)) => i64::from(*v),
                _ => return Err(bad(Table::Meta, "schema version missing")),
            },
        };
        if found > SCHEMA_VERSION {
            return Err(Error::SchemaTooNew { found, supported: SCHEMA_VERSION });
        }
        if found < 1 {
            // Migration 1. Collections must exist before transactions write to them; every
            // step is idempotent so concurrent first starts are harmless.
            for t in Table::ALL {
                if let Err(e) = self.db.create_collection(t.name()).await
                    && !is_namespace_exists(&e)
                {
                    return Err(e.into());
                }
                let c = coll(&self.db, t);
                c.create_index(IndexModel::builder().keys(doc! { "d": 1, "s": 1, "k": 1 }).build()).await?;
                c.create_index(IndexModel::builder().keys(doc! { "e": 1 }).build()).await?;
            }
        }
        if found < SCHEMA_VERSION {
            schema
                .replace_one(doc! { "_id": "schema" }, doc! { "_id": "schema", "version": SCHEMA_VERSION })
                .upsert(true)
                .await?;
            tracing::info!(version = SCHEMA_VERSION, "wa-store mongodb migrations applied");
        }
        Ok(())
    }

    /// Runs `work` in a transaction, retrying the whole of it on transient transaction errors
    /// (write conflicts between concurrent writers) as the MongoDB documentation prescribes.
    async fn in_transaction(&self, work: Work<'_>) -> Result<u64> {
        let mut session = self.client.start_session().await?;
        let mut last = None;
        for _ in 0..TX_ATTEMPTS {
            session.start_transaction().await?;
            match run_work(&self.db, &mut session, &work).await {
                Ok(v) => {
                    let mut commit = session.commit_transaction().await;
                    for _ in 0..TX_ATTEMPTS {
                        match &commit {
                            Err(e) if e.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT) => {
                                commit = session.commit_transaction().await;
                            }
                            _ => break,
                        }
                    }
                    match commit {
                        Ok(()) => return Ok(v),
                        Err(e) if e.contains_label(TRANSIENT_TRANSACTION_ERROR) => last = Some(e.into()),
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(e) => {
                    // Best effort: the server also aborts when the session ends.
                    let _ = session.abort_transaction().await;
                    match e {
                        Error::Mongo(m) if m.contains_label(TRANSIENT_TRANSACTION_ERROR) => {
                            last = Some(Error::Mongo(m))
                        }
                        other => return Err(other),
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::Worker("mongodb transaction kept conflicting".into())))
    }
}

/// What a transaction does.
enum Work<'a> {
    Ops(&'a [Op]),
    Rewrite(&'a Rewriter, &'a [Op]),
}

async fn run_work(db: &Database, s: &mut ClientSession, work: &Work<'_>) -> Result<u64> {
    match work {
        Work::Ops(ops) => {
            for op in *ops {
                apply_op(db, s, op).await?;
            }
            Ok(0)
        }
        Work::Rewrite(rewrite, then) => {
            let mut n = 0u64;
            for t in Table::ALL {
                if t == Table::Meta {
                    continue;
                }
                let c = coll(db, t);
                let mut cursor = c.find(doc! {}).session(&mut *s).await?;
                let mut docs = Vec::new();
                while let Some(d) = cursor.next(&mut *s).await {
                    docs.push(d?);
                }
                for d in docs {
                    let device = d.get_str("d").map_err(|_| bad(t, "missing d"))?.to_owned();
                    let row = row_from(t, &d)?;
                    let v = rewrite(t, &device, &row)?;
                    c.update_one(
                        doc! { "_id": id_doc(&device, &row.id) },
                        doc! { "$set": { "v": Binary { subtype: BinarySubtype::Generic, bytes: v } } },
                    )
                    .session(&mut *s)
                    .await?;
                    n += 1;
                }
            }
            for op in *then {
                apply_op(db, s, op).await?;
            }
            Ok(n)
        }
    }
}

impl Backend for MongoBackend {
    fn name(&self) -> &'static str {
        "mongodb"
    }

    fn get<'a>(
        &'a self,
        table: Table,
        device: &'a str,
        ids: &'a [RowKey],
    ) -> BoxFuture<'a, Result<Vec<Option<Row>>>> {
        async move {
            let c = coll(&self.db, table);
            if let [id] = ids {
                let d = c.find_one(doc! { "_id": id_doc(device, id) }).await?;
                return Ok(vec![d.as_ref().map(|d| row_from(table, d)).transpose()?]);
            }
            let wanted: Vec<Document> = ids.iter().map(|id| id_doc(device, id)).collect();
            let docs: Vec<Document> = c.find(doc! { "_id": { "$in": wanted } }).await?.try_collect().await?;
            let mut found: HashMap<RowKey, Row> = HashMap::with_capacity(docs.len());
            for d in &docs {
                let r = row_from(table, d)?;
                found.insert(r.id.clone(), r);
            }
            Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
        }
        .boxed()
    }

    fn scan<'a>(&'a self, table: Table, device: &'a str, scan: &'a Scan) -> BoxFuture<'a, Result<Vec<Row>>> {
        async move {
            let mut filter = doc! { "d": device };
            if let Some(s) = &scan.scope {
                filter.insert("s", s);
            }
            if let Some(a) = scan.aux_eq {
                filter.insert("a", a);
            }
            let c = coll(&self.db, table);
            let mut find = c.find(filter).sort(doc! { "s": 1, "k": 1 });
            if let Some(l) = scan.limit {
                find = find.limit(i64::from(l));
            }
            let docs: Vec<Document> = find.await?.try_collect().await?;
            let mut rows = docs.iter().map(|d| row_from(table, d)).collect::<Result<Vec<_>>>()?;
            // The server sorts strings by code point, the SQL backends by bytes; for UTF-8 the
            // two orders agree, so this is a no-op unless the server misbehaves.
            rows.sort_by(|a, b| a.id.cmp(&b.id));
            Ok(rows)
        }
        .boxed()
    }

    fn apply<'a>(&'a self, ops: &'a [Op]) -> BoxFuture<'a, Result<()>> {
        async move { self.in_transaction(Work::Ops(ops)).await.map(|_| ()) }.boxed()
    }

    fn purge_expired(&self, now: i64) -> BoxFuture<'_, Result<u64>> {
        async move {
            let mut n = 0;
            for t in Table::ALL {
                let r =
                    coll(&self.db, t).delete_many(doc! { "e": { "$ne": Bson::Null, "$lte": now } }).await?;
                n += r.deleted_count;
            }
            Ok(n)
        }
        .boxed()
    }

    fn devices(&self, table: Table) -> BoxFuture<'_, Result<Vec<String>>> {
        async move {
            let vals = coll(&self.db, table).distinct("d", doc! {}).await?;
            let mut out: Vec<String> =
                vals.into_iter().filter_map(|b| b.as_str().map(str::to_owned)).collect();
            out.sort();
            out.dedup();
            Ok(out)
        }
        .boxed()
    }

    fn rewrite_all<'a>(&'a self, rewrite: Rewriter, then: &'a [Op]) -> BoxFuture<'a, Result<u64>> {
        async move { self.in_transaction(Work::Rewrite(&rewrite, then)).await }.boxed()
    }
}

impl Store {
    /// Opens a MongoDB-backed store in database `db_name`.
    pub async fn open_mongodb(uri: &str, db_name: &str, options: StoreOptions) -> Result<Store> {
        Store::open(MongoBackend::connect(uri, db_name).await?, options).await
    }
}
