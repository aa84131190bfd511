//! In-memory backend for tests and examples. Same semantics as the persistent ones, no durability.

use std::collections::BTreeMap;
use std::sync::Mutex;

use futures::future::{BoxFuture, FutureExt};

use crate::backend::{Backend, Op, Rewriter, Row, RowKey, Scan, Table};
use crate::error::{Error, Result};

type Key = (Table, String, String, String);

/// A backend holding everything in a `BTreeMap`.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    rows: Mutex<BTreeMap<Key, Row>>,
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, BTreeMap<Key, Row>>> {
        self.rows.lock().map_err(|_| Error::Worker("memory backend lock poisoned".into()))
    }
}

fn k(table: Table, device: &str, id: &RowKey) -> Key {
    (table, device.to_owned(), id.scope.clone(), id.key.clone())
}

fn scope_keys(map: &BTreeMap<Key, Row>, table: Table, device: &str, scope: &str) -> Vec<Key> {
    let lo = (table, device.to_owned(), scope.to_owned(), String::new());
    map.range(lo..)
        .take_while(|((t, d, s, _), _)| *t == table && d == device && s == scope)
        .map(|(k, _)| k.clone())
        .collect()
}

fn apply_one(map: &mut BTreeMap<Key, Row>, op: &Op, undo: &mut Vec<(Key, Option<Row>)>) -> Result<()> {
    match op {
        Op::Put { table, device, row } => {
            let key = k(*table, device, &row.id);
            let prev = map.insert(key.clone(), row.clone());
            undo.push((key, prev));
        }
        Op::Insert { table, device, row } => {
            let key = k(*table, device, &row.id);
            if map.contains_key(&key) {
                return Err(Error::Conflict {
                    table: table.name(),
                    scope: row.id.scope.clone(),
                    key: row.id.key.clone(),
                });
            }
            map.insert(key.clone(), row.clone());
            undo.push((key, None));
        }
        Op::Delete { table, device, id } => {
            let key = k(*table, device, id);
            if let Some(prev) = map.remove(&key) {
                undo.push((key, Some(prev)));
            }
        }
        Op::DeleteScope { table, device, scope } => {
            for key in scope_keys(map, *table, device, scope) {
                let prev = map.remove(&key);
                undo.push((key, prev));
            }
        }
        Op::SetAux { table, device, id, aux, expires_at } => {
            let key = k(*table, device, id);
            if let Some(row) = map.get_mut(&key) {
                undo.push((key, Some(row.clone())));
                row.aux = *aux;
                row.expires_at = *expires_at;
            }
        }
        Op::DeleteDevice { device } => {
            let keys: Vec<Key> =
                map.keys().filter(|(t, d, _, _)| d == device && *t != Table::Meta).cloned().collect();
            for key in keys {
                let prev = map.remove(&key);
                undo.push((key, prev));
            }
        }
    }
    Ok(())
}

fn apply_all(map: &mut BTreeMap<Key, Row>, ops: &[Op]) -> Result<()> {
    let mut undo = Vec::new();
    for op in ops {
        if let Err(e) = apply_one(map, op, &mut undo) {
            for (key, prev) in undo.into_iter().rev() {
                match prev {
                    Some(r) => map.insert(key, r),
                    None => map.remove(&key),
                };
            }
            return Err(e);
        }
    }
    Ok(())
}

impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn get<'a>(
        &'a self,
        table: Table,
        device: &'a str,
        ids: &'a [RowKey],
    ) -> BoxFuture<'a, Result<Vec<Option<Row>>>> {
        async move {
            let map = self.lock()?;
            Ok(ids.iter().map(|id| map.get(&k(table, device, id)).cloned()).collect())
        }
        .boxed()
    }

    fn scan<'a>(&'a self, table: Table, device: &'a str, scan: &'a Scan) -> BoxFuture<'a, Result<Vec<Row>>> {
        async move {
            let map = self.lock()?;
            let lo = (table, device.to_owned(), scan.scope.clone().unwrap_or_default(), String::new());
            let limit = scan.limit.map_or(usize::MAX, |l| l as usize);
            Ok(map
                .range(lo..)
                .take_while(|((t, d, s, _), _)| {
                    *t == table && d == device && scan.scope.as_ref().is_none_or(|sc| sc == s)
                })
                .filter(|(_, r)| scan.aux_eq.is_none_or(|a| a == r.aux))
                .take(limit)
                .map(|(_, r)| r.clone())
                .collect())
        }
        .boxed()
    }

    fn apply<'a>(&'a self, ops: &'a [Op]) -> BoxFuture<'a, Result<()>> {
        async move { apply_all(&mut *self.lock()?, ops) }.boxed()
    }

    fn purge_expired(&self, now: i64) -> BoxFuture<'_, Result<u64>> {
        async move {
            let mut map = self.lock()?;
            let before = map.len();
            map.retain(|_, r| r.expires_at.is_none_or(|e| e > now));
            Ok((before - map.len()) as u64)
        }
        .boxed()
    }

    fn devices(&self, table: Table) -> BoxFuture<'_, Result<Vec<String>>> {
        async move {
            let map = self.lock()?;
            let mut out: Vec<String> = Vec::new();
            for (t, d, _, _) in map.keys() {
                if *t == table && out.last() != Some(d) {
                    out.push(d.clone());
                }
            }
            out.dedup();
            Ok(out)
        }
        .boxed()
    }

    fn rewrite_all<'a>(&'a self, rewrite: Rewriter, then: &'a [Op]) -> BoxFuture<'a, Result<u64>> {
        async move {
            let mut map = self.lock()?;
            let mut next = map.clone();
            let mut n = 0u64;
            for ((t, d, _, _), row) in next.iter_mut() {
                if *t == Table::Meta {
                    continue;
                }
                row.value = rewrite(*t, d, row)?;
                n += 1;
            }
            apply_all(&mut next, then)?;
            *map = next;
            Ok(n)
        }
        .boxed()
    }
}
