//! Large batches through `Backend::apply`: backends may group runs of similar ops into one
//! round trip, and these cases pin that the grouping keeps the contract: a conflict names the
//! exact row and leaves nothing of the batch behind, ops apply in batch order, and grouped
//! updates touch exactly the rows they name.

use std::sync::Arc;
use std::time::Instant;

use wa_store::*;

use crate::conformance::{dev, kp, opts};
use crate::harness::Harness;

const DEV: &str = "acct";

fn row(key: &str, value: &[u8], aux: i64) -> Row {
    Row { id: RowKey::new("", key), value: value.to_vec(), aux, expires_at: None }
}

fn insert(table: Table, key: &str, aux: i64) -> Op {
    Op::Insert { table, device: DEV.into(), row: row(key, key.as_bytes(), aux) }
}

fn put(table: Table, key: &str, value: &[u8], aux: i64) -> Op {
    Op::Put { table, device: DEV.into(), row: row(key, value, aux) }
}

fn set_aux(table: Table, key: &str, aux: i64, expires_at: Option<i64>) -> Op {
    Op::SetAux { table, device: DEV.into(), id: RowKey::new("", key), aux, expires_at }
}

fn delete(table: Table, key: &str) -> Op {
    Op::Delete { table, device: DEV.into(), id: RowKey::new("", key) }
}

fn key(i: usize) -> String {
    format!("k{i:04}")
}

async fn all_rows(b: &dyn Backend, table: Table) -> Vec<Row> {
    b.scan(table, DEV, &Scan::default()).await.expect("scan")
}

async fn fresh_raw(h: &dyn Harness) -> Arc<dyn Backend> {
    // Opening a store first creates the schema the raw backend writes into.
    drop(h.open(opts(&crate::conformance::clock(), None)).await.expect("open"));
    h.raw().await
}

fn expect_conflict(r: Result<()>, table: Table, key: &str) {
    match r {
        Err(Error::Conflict { table: t, scope, key: k }) => {
            assert_eq!((t, scope.as_str(), k.as_str()), (table.name(), "", key), "conflict names the row");
        }
        other => panic!("expected a conflict on {key}, got {other:?}"),
    }
}

/// Hundreds of inserts where one collides with a stored row: the conflict names that row and
/// none of the batch (before or after it, in any table) is stored.
pub async fn insert_run_conflict(h: &dyn Harness) {
    let b = fresh_raw(h).await;
    b.apply(&[put(Table::PreKeys, &key(437), b"old", 9)]).await.expect("seed");
    let mut ops = vec![put(Table::Sessions, "before", b"s", 0)];
    ops.extend((0..900).map(|i| insert(Table::PreKeys, &key(i), 1)));
    ops.push(put(Table::Sessions, "after", b"s", 0));
    expect_conflict(b.apply(&ops).await, Table::PreKeys, &key(437));
    assert_eq!(all_rows(&*b, Table::PreKeys).await, vec![row(&key(437), b"old", 9)]);
    assert_eq!(all_rows(&*b, Table::Sessions).await, vec![]);

    // A duplicate inside the batch itself: the second occurrence is the conflict.
    let mut ops: Vec<Op> = (1000..1300).map(|i| insert(Table::PreKeys, &key(i), 1)).collect();
    ops.insert(250, insert(Table::PreKeys, &key(1003), 2));
    expect_conflict(b.apply(&ops).await, Table::PreKeys, &key(1003));
    assert_eq!(all_rows(&*b, Table::PreKeys).await.len(), 1);

    // The first and the last row of a run.
    for k in [0, 899] {
        b.apply(&[put(Table::SenderKeys, &key(k), b"x", 0)]).await.expect("seed");
        let ops: Vec<Op> = (0..900).map(|i| insert(Table::SenderKeys, &key(i), 0)).collect();
        expect_conflict(b.apply(&ops).await, Table::SenderKeys, &key(k));
        assert_eq!(all_rows(&*b, Table::SenderKeys).await.len(), 1);
        b.apply(&[delete(Table::SenderKeys, &key(k))]).await.expect("unseed");
    }

    // Without the collision the same batch goes in whole, values and aux intact.
    b.apply(&[delete(Table::PreKeys, &key(437))]).await.expect("delete");
    let ops: Vec<Op> = (0..900).map(|i| insert(Table::PreKeys, &key(i), i as i64)).collect();
    b.apply(&ops).await.expect("insert run");
    let rows = all_rows(&*b, Table::PreKeys).await;
    assert_eq!(rows.len(), 900);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r, &row(&key(i), key(i).as_bytes(), i as i64));
    }
    // The store still works after the failed batches.
    b.apply(&[insert(Table::Sessions, "later", 0)]).await.expect("insert after rollback");
}

/// SetAux over many ids moves exactly those rows, with their own aux and expiry per run, and
/// leaves values and absent ids alone.
pub async fn set_aux_runs(h: &dyn Harness) {
    let b = fresh_raw(h).await;
    let ops: Vec<Op> = (0..1200).map(|i| put(Table::PreKeys, &key(i), &[i as u8], 0)).collect();
    b.apply(&ops).await.expect("seed");
    // Every third row to aux 1, then rows 0..10 to aux 2 with an expiry; ids 5000.. do not exist.
    let mut ops: Vec<Op> = (0..1200).step_by(3).map(|i| set_aux(Table::PreKeys, &key(i), 1, None)).collect();
    ops.extend((5000..5100).map(|i| set_aux(Table::PreKeys, &key(i), 1, None)));
    ops.extend((0..10).map(|i| set_aux(Table::PreKeys, &key(i), 2, Some(77))));
    b.apply(&ops).await.expect("set aux");
    let rows = all_rows(&*b, Table::PreKeys).await;
    assert_eq!(rows.len(), 1200, "absent ids are not created");
    for (i, r) in rows.iter().enumerate() {
        let (aux, exp) = if i < 10 {
            (2, Some(77))
        } else if i % 3 == 0 {
            (1, None)
        } else {
            (0, None)
        };
        assert_eq!(r, &Row { id: RowKey::new("", key(i)), value: vec![i as u8], aux, expires_at: exp });
    }
    // Other devices' rows with the same keys are untouched.
    let other = Op::Put { table: Table::PreKeys, device: "other".into(), row: row(&key(3), b"o", 0) };
    b.apply(&[other]).await.expect("other");
    b.apply(&[set_aux(Table::PreKeys, &key(3), 5, None)]).await.expect("set aux");
    assert_eq!(
        b.get(Table::PreKeys, "other", &[RowKey::new("", key(3))]).await.expect("get")[0]
            .as_ref()
            .map(|r| r.aux),
        Some(0)
    );
}

/// Hundreds of puts over existing and new rows, some rows twice: every row ends with its last
/// put's value, aux and expiry (an expiry is cleared, not kept), other devices untouched.
pub async fn put_runs(h: &dyn Harness) {
    let b = fresh_raw(h).await;
    let t = Table::Sessions;
    let old =
        |i: usize| Row { id: RowKey::new("", key(i)), value: b"old".to_vec(), aux: 1, expires_at: Some(5) };
    let ops: Vec<Op> = (0..300).map(|i| Op::Put { table: t, device: DEV.into(), row: old(i) }).collect();
    b.apply(&ops).await.expect("seed");
    b.apply(&[Op::Put { table: t, device: "other".into(), row: old(0) }]).await.expect("other");
    let mut ops: Vec<Op> = (0..600).map(|i| put(t, &key(i), b"first", 2)).collect();
    ops.extend((0..600).step_by(7).map(|i| put(t, &key(i), b"second", 3)));
    b.apply(&ops).await.expect("puts");
    let rows = all_rows(&*b, t).await;
    assert_eq!(rows.len(), 600);
    for (i, r) in rows.iter().enumerate() {
        let want = if i % 7 == 0 { row(&key(i), b"second", 3) } else { row(&key(i), b"first", 2) };
        assert_eq!(r, &want);
    }
    assert_eq!(b.get(t, "other", &[RowKey::new("", key(0))]).await.expect("get"), vec![Some(old(0))]);
    // Many ids in one get, across scopes, with absent ones, in the order asked.
    let mut ids: Vec<RowKey> = (0..700).rev().map(|i| RowKey::new("", key(i))).collect();
    ids.push(RowKey::new("elsewhere", key(1)));
    let got = b.get(t, DEV, &ids).await.expect("get many");
    assert_eq!(got.len(), 701);
    for (id, g) in ids.iter().zip(&got) {
        assert_eq!(g.as_ref().map(|r| &r.id), (id.scope.is_empty() && id.key < key(600)).then_some(id));
    }
}

/// Ops apply in batch order even where a backend groups them.
pub async fn mixed_batch_order(h: &dyn Harness) {
    let b = fresh_raw(h).await;
    let t = Table::PreKeys;
    let ops = vec![
        insert(t, "a", 1),
        insert(t, "b", 1),
        delete(t, "a"),
        insert(t, "a", 3), // re-inserting a row deleted earlier in the batch is no conflict
        insert(t, "c", 1),
        set_aux(t, "b", 7, Some(9)),
        set_aux(t, "c", 7, Some(9)),
        put(t, "c", b"new-c", 4),    // a put after set_aux wins
        set_aux(t, "d", 7, Some(9)), // not yet there: no effect
        insert(t, "d", 1),
        put(t, "e", b"e1", 0),
        put(t, "e", b"e2", 0), // last put wins
        insert(t, "f", 1),
        Op::DeleteScope { table: t, device: DEV.into(), scope: "".into() },
        insert(t, "g", 1), // inserted after the scope was cleared
    ];
    b.apply(&ops).await.expect("mixed");
    assert_eq!(all_rows(&*b, t).await, vec![row("g", b"g", 1)]);

    let ops = vec![
        insert(t, "x", 1),
        insert(Table::Sessions, "x", 1),
        insert(t, "y", 1),
        set_aux(t, "x", 2, None),
        set_aux(Table::Sessions, "x", 3, None),
        set_aux(t, "y", 2, None),
        delete(t, "g"),
        insert(t, "g", 5),
    ];
    b.apply(&ops).await.expect("interleaved tables");
    assert_eq!(all_rows(&*b, t).await, vec![row("g", b"g", 5), row("x", b"x", 2), row("y", b"y", 2)]);
    assert_eq!(all_rows(&*b, Table::Sessions).await, vec![row("x", b"x", 3)]);

    // Insert after a put of the same row in one batch is a conflict, and rolls the put back.
    expect_conflict(b.apply(&[put(t, "z", b"z", 0), insert(t, "z", 1)]).await, t, "z");
    assert_eq!(b.get(t, DEV, &[RowKey::new("", "z")]).await.expect("get"), vec![None]);
}

/// A new device's 812 prekeys generated and marked uploaded: the batch a pairing writes. The
/// elapsed time is printed for the benchmark notes (run with `--no-capture`), never asserted.
pub async fn many_pre_keys(h: &dyn Harness) {
    let s = h.open(opts(&crate::conformance::clock(), None)).await.expect("open");
    let d = s.device(&dev("a"));
    let mut n = 0u8;
    let started = Instant::now();
    let keys = d
        .generate_pre_keys(812, &mut || {
            n = n.wrapping_add(1);
            kp(n)
        })
        .await
        .expect("gen");
    let generated = started.elapsed();
    let ids: Vec<u32> = keys.iter().map(|k| k.id).collect();
    d.mark_pre_keys_uploaded(&ids).await.expect("mark");
    let total = started.elapsed();
    eprintln!(
        "TIMING {}: generate_pre_keys(812) {:?}, + mark_pre_keys_uploaded {:?}",
        h.name(),
        generated,
        total - generated
    );
    assert_eq!(
        d.pre_key_counts().await.expect("counts"),
        PreKeyCounts { fresh: 0, uploaded: 812, consumed: 0 }
    );
    assert_eq!(d.get_pre_key(812).await.expect("get"), Some(keys[811].clone()));
}

/// Instantiates the batch cases for one backend. `$make` yields `Option<Box<dyn Harness>>`.
#[macro_export]
macro_rules! batch_suite {
    ($make:path) => {
        $crate::batch_suite!(@cases $make;
            insert_run_conflict, set_aux_runs, put_runs, mixed_batch_order, many_pre_keys);
    };
    (@cases $make:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(h) = $make().await else { return };
                $crate::batch::$case(&*h).await;
            }
        )*
    };
}
