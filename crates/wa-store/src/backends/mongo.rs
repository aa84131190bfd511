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
        ErrorKind::InsertMany(m) => m.write_errors.iter().flatten().any(|w| w.code == 11000),
        _ => false,
    }
}

fn is_namespace_exists(e: &mongodb::error::Error) -> bool {
    matches!(&*e.kind, ErrorKind::Command(c) if c.code == 48)
}

/// Filter for one row. It names the copied `(d, s, k)` fields rather than the compound `_id`:
/// both identify the row (they are written together), and the `(d, s, k)` index serves this
/// on every server, while some MongoDB-compatible servers scan the whole collection for an
/// equality on a sub-document `_id`.
fn row_filter(device: &str, id: &RowKey) -> Document {
    doc! { "d": device, "s": &id.scope, "k": &id.key }
}

/// Most keys one `$in` lists: the server matches each candidate against the whole list, so
/// very long lists cost more than the round trips they save.
const IN_CHUNK: usize = 100;

/// Filters covering `ids` (any devices and scopes), each a `(d, s, k: {$in: [...]})` over at
/// most [`IN_CHUNK`] keys.
fn in_filters<'a>(ids: impl IntoIterator<Item = (&'a str, &'a RowKey)>) -> Vec<Document> {
    let mut groups: Vec<((&str, &str), Vec<&str>)> = Vec::new();
    let mut at: HashMap<(&str, &str), usize> = HashMap::new();
    for (device, id) in ids {
        let g = *at.entry((device, id.scope.as_str())).or_insert_with(|| {
            groups.push(((device, id.scope.as_str()), Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push(id.key.as_str());
    }
    let mut out = Vec::new();
    for ((device, scope), keys) in groups {
        for chunk in keys.chunks(IN_CHUNK) {
            out.push(doc! { "d": device, "s": scope, "k": { "$in": chunk } });
        }
    }
    out
}

/// Why a batch step failed.
enum StepError {
    /// A store error; the transaction is aborted with it.
    Store(Error),
    /// A grouped insert hit a duplicate but the server did not say which document: the
    /// transaction is retried one op per command so the conflict names the right row.
    UnplacedDuplicate,
}

impl<E: Into<Error>> From<E> for StepError {
    fn from(e: E) -> Self {
        StepError::Store(e.into())
    }
}

/// Runs of consecutive ops that go to the server as one command (or one per chunk).
enum Step<'a> {
    One(&'a Op),
    /// `Op::Insert`s into one table: one ordered `insert_many`.
    Inserts(Table, &'a [Op]),
    /// `Op::Put`s into one table: `delete_many` of their rows, then one `insert_many`.
    Puts(Table, &'a [Op]),
    /// `Op::SetAux`s of one table with the same aux and expiry: one `update_many` per chunk.
    SetAux(Table, i64, Option<i64>, &'a [Op]),
}

/// Splits a batch into steps, keeping op order: only adjacent ops of the same kind join, and
/// within a run the ops commute (distinct inserts; puts where the last write of a row wins;
/// set-aux ops that all write the same values).
fn steps(ops: &[Op]) -> Vec<Step<'_>> {
    #[derive(PartialEq)]
    enum Kind {
        Insert(Table),
        Put(Table),
        SetAux(Table, i64, Option<i64>),
        Other,
    }
    fn kind(op: &Op) -> Kind {
        match op {
            Op::Insert { table, .. } => Kind::Insert(*table),
            Op::Put { table, .. } => Kind::Put(*table),
            Op::SetAux { table, aux, expires_at, .. } => Kind::SetAux(*table, *aux, *expires_at),
            _ => Kind::Other,
        }
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < ops.len() {
        let k = kind(&ops[i]);
        let mut j = i + 1;
        if k != Kind::Other {
            while j < ops.len() && kind(&ops[j]) == k {
                j += 1;
            }
        }
        let run = &ops[i..j];
        out.push(match k {
            _ if run.len() == 1 => Step::One(&ops[i]),
            Kind::Insert(t) => Step::Inserts(t, run),
            Kind::Put(t) => Step::Puts(t, run),
            Kind::SetAux(t, a, e) => Step::SetAux(t, a, e, run),
            Kind::Other => Step::One(&ops[i]),
        });
        i = j;
    }
    out
}

fn conflict(table: Table, row: &Row) -> Error {
    Error::Conflict { table: table.name(), scope: row.id.scope.clone(), key: row.id.key.clone() }
}

/// Device and row of a put or insert.
fn written(op: &Op) -> Option<(&str, &Row)> {
    match op {
        Op::Put { device, row, .. } | Op::Insert { device, row, .. } => Some((device.as_str(), row)),
        _ => None,
    }
}

async fn apply_step(
    db: &Database,
    s: &mut ClientSession,
    step: &Step<'_>,
) -> std::result::Result<(), StepError> {
    match step {
        Step::One(op) => apply_op(db, s, op).await?,
        Step::Inserts(table, run) => {
            let rows: Vec<(&str, &Row)> = run.iter().filter_map(written).collect();
            let docs = rows.iter().map(|(d, r)| row_doc(d, r));
            if let Err(e) = coll(db, *table).insert_many(docs).ordered(true).session(&mut *s).await {
                if !is_duplicate_key(&e) {
                    return Err(e.into());
                }
                // Ordered: the server stopped at the first failing document, so the first
                // write error is the conflict (the transaction is aborted by our caller).
                let at = match &*e.kind {
                    ErrorKind::InsertMany(m) => {
                        m.write_errors.as_ref().and_then(|w| w.first()).filter(|w| w.code == 11000)
                    }
                    _ => None,
                };
                return match at.and_then(|w| rows.get(w.index)) {
                    Some((_, row)) => Err(StepError::Store(conflict(*table, row))),
                    None => Err(StepError::UnplacedDuplicate),
                };
            }
        }
        Step::Puts(table, run) => {
            // Insert-or-replace as delete-then-insert inside the transaction; the last put of
            // a row wins, as it would applied one by one.
            let rows: Vec<(&str, &Row)> = run.iter().filter_map(written).collect();
            let mut last: HashMap<(&str, &RowKey), usize> = HashMap::with_capacity(rows.len());
            for (i, (d, r)) in rows.iter().enumerate() {
                last.insert((*d, &r.id), i);
            }
            let kept: Vec<(&str, &Row)> = rows
                .iter()
                .enumerate()
                .filter(|(i, (d, r))| last.get(&(*d, &r.id)) == Some(i))
                .map(|(_, dr)| *dr)
                .collect();
            let c = coll(db, *table);
            for f in in_filters(kept.iter().map(|(d, r)| (*d, &r.id))) {
                c.delete_many(f).session(&mut *s).await?;
            }
            let docs = kept.iter().map(|(d, r)| row_doc(d, r));
            c.insert_many(docs).ordered(true).session(&mut *s).await?;
        }
        Step::SetAux(table, aux, expires_at, run) => {
            let e = expires_at.map_or(Bson::Null, Bson::Int64);
            let ids = run.iter().filter_map(|op| match op {
                Op::SetAux { device, id, .. } => Some((device.as_str(), id)),
                _ => None,
            });
            let c = coll(db, *table);
            for f in in_filters(ids) {
                c.update_many(f, doc! { "$set": { "a": aux, "e": e.clone() } }).session(&mut *s).await?;
            }
        }
    }
    Ok(())
}

async fn apply_op(db: &Database, s: &mut ClientSession, op: &Op) -> Result<()> {
    match op {
        Op::Put { table, device, row } => {
            coll(db, *table)
                .replace_one(row_filter(device, &row.id), row_doc(device, row))
                .upsert(true)
                .session(&mut *s)
                .await?;
        }
        Op::Insert { table, device, row } => {
            if let Err(e) = coll(db, *table).insert_one(row_doc(device, row)).session(&mut *s).await {
                if is_duplicate_key(&e) {
                    return Err(conflict(*table, row));
                }
                return Err(e.into());
            }
        }
        Op::Delete { table, device, id } => {
            coll(db, *table).delete_one(row_filter(device, id)).session(&mut *s).await?;
        }
        Op::DeleteScope { table, device, scope } => {
            coll(db, *table).delete_many(doc! { "d": device, "s": scope }).session(&mut *s).await?;
        }
        Op::SetAux { table, device, id, aux, expires_at } => {
            let e = expires_at.map_or(Bson::Null, Bson::Int64);
            coll(db, *table)
                .update_one(row_filter(device, id), doc! { "$set": { "a": aux, "e": e } })
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

/// Applies `ops` in order: grouped into steps, or one command per op when `grouped` is off.
async fn apply_ops(
    db: &Database,
    s: &mut ClientSession,
    ops: &[Op],
    grouped: bool,
) -> std::result::Result<(), StepError> {
    if grouped {
        for step in steps(ops) {
            apply_step(db, s, &step).await?;
        }
    } else {
        for op in ops {
            apply_op(db, s, op).await?;
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
        let mut grouped = true;
        for _ in 0..TX_ATTEMPTS {
            session.start_transaction().await?;
            match run_work(&self.db, &mut session, &work, grouped).await {
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
                        StepError::UnplacedDuplicate => {
                            tracing::debug!(
                                "mongodb: duplicate key without its index; retrying the batch op by op"
                            );
                            grouped = false
                        }
                        StepError::Store(Error::Mongo(m))
                            if m.contains_label(TRANSIENT_TRANSACTION_ERROR) =>
                        {
                            last = Some(Error::Mongo(m))
                        }
                        StepError::Store(other) => return Err(other),
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

async fn run_work(
    db: &Database,
    s: &mut ClientSession,
    work: &Work<'_>,
    grouped: bool,
) -> std::result::Result<u64, StepError> {
    match work {
        Work::Ops(ops) => {
            apply_ops(db, s, ops, grouped).await?;
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
                        row_filter(&device, &row.id),
                        doc! { "$set": { "v": Binary { subtype: BinarySubtype::Generic, bytes: v } } },
                    )
                    .session(&mut *s)
                    .await?;
                    n += 1;
                }
            }
            apply_ops(db, s, then, grouped).await?;
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
                let d = c.find_one(row_filter(device, id)).await?;
                return Ok(vec![d.as_ref().map(|d| row_from(table, d)).transpose()?]);
            }
            let mut found: HashMap<RowKey, Row> = HashMap::with_capacity(ids.len());
            for f in in_filters(ids.iter().map(|id| (device, id))) {
                let docs: Vec<Document> = c.find(f).await?.try_collect().await?;
                for d in &docs {
                    let r = row_from(table, d)?;
                    found.insert(r.id.clone(), r);
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str) -> Row {
        Row { id: RowKey::new("", key), value: vec![1], aux: 0, expires_at: None }
    }

    fn shape(ops: &[Op]) -> Vec<(char, usize)> {
        steps(ops)
            .iter()
            .map(|s| match s {
                Step::One(_) => ('1', 1),
                Step::Inserts(_, r) => ('i', r.len()),
                Step::Puts(_, r) => ('p', r.len()),
                Step::SetAux(_, _, _, r) => ('a', r.len()),
            })
            .collect()
    }

    #[test]
    fn only_adjacent_ops_of_one_kind_table_and_values_group() {
        let d = || "dev".to_owned();
        let ins = |t, k: &str| Op::Insert { table: t, device: d(), row: row(k) };
        let put = |t, k: &str| Op::Put { table: t, device: d(), row: row(k) };
        let aux = |a, e, k: &str| Op::SetAux {
            table: Table::PreKeys,
            device: d(),
            id: RowKey::new("", k),
            aux: a,
            expires_at: e,
        };
        let del = |k: &str| Op::Delete { table: Table::PreKeys, device: d(), id: RowKey::new("", k) };
        let ops = vec![
            ins(Table::PreKeys, "a"),
            ins(Table::PreKeys, "b"),
            ins(Table::Sessions, "c"),
            del("a"),
            ins(Table::PreKeys, "a"),
            aux(1, None, "a"),
            aux(1, None, "b"),
            aux(1, Some(5), "c"),
            aux(2, Some(5), "d"),
            aux(2, Some(5), "e"),
            put(Table::Sessions, "x"),
            put(Table::Sessions, "x"),
            put(Table::PreKeys, "x"),
            Op::DeleteDevice { device: d() },
            Op::DeleteDevice { device: d() },
        ];
        assert_eq!(
            shape(&ops),
            vec![
                ('i', 2),
                ('1', 1),
                ('1', 1),
                ('1', 1),
                ('a', 2),
                ('1', 1),
                ('a', 2),
                ('p', 2),
                ('1', 1),
                ('1', 1),
                ('1', 1)
            ]
        );
    }

    #[test]
    fn in_filters_split_by_device_scope_and_chunk() {
        let ids: Vec<(&str, RowKey)> = (0..250)
            .map(|i| ("d1", RowKey::new("s", format!("{i}"))))
            .chain([("d2", RowKey::new("s", "0")), ("d1", RowKey::new("t", "0"))])
            .collect();
        let f = in_filters(ids.iter().map(|(d, id)| (*d, id)));
        let sizes: Vec<(String, String, usize)> = f
            .iter()
            .map(|f| {
                let n = f.get_document("k").and_then(|k| k.get_array("$in")).map(Vec::len).unwrap_or(0);
                (f.get_str("d").unwrap_or("").to_owned(), f.get_str("s").unwrap_or("").to_owned(), n)
            })
            .collect();
        let want = |d: &str, s: &str, n| (d.to_owned(), s.to_owned(), n);
        assert_eq!(
            sizes,
            vec![
                want("d1", "s", IN_CHUNK),
                want("d1", "s", IN_CHUNK),
                want("d1", "s", 50),
                want("d2", "s", 1),
                want("d1", "t", 1)
            ]
        );
    }
}
