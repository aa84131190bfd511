//! The SQLite backend: one `rusqlite` connection (file in the data dir, or in memory for tests).

use std::path::Path;

use rusqlite::types::{ToSqlOutput, ValueRef as SqlValueRef};

use super::value::{ToValue, Value, ValueRef};
use super::{DbError, DbResult, MIGRATIONS, Row, SCHEMA_VERSION};

/// File name of the database inside the data dir.
pub const FILE_NAME: &str = "broadcaster.sqlite3";

pub(super) struct SqliteConn {
    conn: rusqlite::Connection,
}

struct Bind<'a>(ValueRef<'a>);

impl rusqlite::ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            ValueRef::Null => SqlValueRef::Null,
            ValueRef::Integer(i) => SqlValueRef::Integer(i),
            ValueRef::Real(f) => SqlValueRef::Real(f),
            ValueRef::Text(s) => SqlValueRef::Text(s.as_bytes()),
            ValueRef::Blob(b) => SqlValueRef::Blob(b),
        }))
    }
}

fn binds<'a>(params: &'a [&'a dyn ToValue]) -> impl Iterator<Item = Bind<'a>> {
    params.iter().map(|p| Bind(p.to_value()))
}

fn read_value(v: SqlValueRef<'_>, column: usize) -> DbResult<Value> {
    Ok(match v {
        SqlValueRef::Null => Value::Null,
        SqlValueRef::Integer(i) => Value::Integer(i),
        SqlValueRef::Real(f) => Value::Real(f),
        SqlValueRef::Text(t) => Value::Text(
            String::from_utf8(t.to_vec())
                .map_err(|_| DbError::Column { column, message: "text is not valid UTF-8".into() })?,
        ),
        SqlValueRef::Blob(b) => Value::Blob(b.to_vec()),
    })
}

impl SqliteConn {
    pub(super) fn open_path(path: &Path) -> DbResult<Self> {
        Self::init(rusqlite::Connection::open(path)?)
    }

    pub(super) fn open_in_memory() -> DbResult<Self> {
        Self::init(rusqlite::Connection::open_in_memory()?)
    }

    fn init(mut conn: rusqlite::Connection) -> DbResult<Self> {
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;
             PRAGMA busy_timeout = 5000;",
        )?;
        conn.set_prepared_statement_cache_capacity(128);
        migrate(&mut conn)?;
        Ok(Self { conn })
    }

    pub(super) fn execute(&self, sql: &str, params: &[&dyn ToValue]) -> DbResult<usize> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        Ok(stmt.execute(rusqlite::params_from_iter(binds(params)))?)
    }

    /// Runs a query and returns up to `limit` rows.
    pub(super) fn query(&self, sql: &str, params: &[&dyn ToValue], limit: usize) -> DbResult<Vec<Row>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let columns = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(binds(params)))?;
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(row) = rows.next()? else { break };
            let mut values = Vec::with_capacity(columns);
            for i in 0..columns {
                values.push(read_value(row.get_ref(i)?, i)?);
            }
            out.push(Row { values });
        }
        Ok(out)
    }

    pub(super) fn execute_batch(&self, sql: &str) -> DbResult<()> {
        Ok(self.conn.execute_batch(sql)?)
    }

    #[cfg(test)]
    pub(super) fn user_version(&self) -> DbResult<i64> {
        Ok(self.conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }
}

/// Applies pending migrations; the version is SQLite's `user_version`.
fn migrate(conn: &mut rusqlite::Connection) -> DbResult<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(DbError::SchemaTooNew { found: current, supported: SCHEMA_VERSION });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "applied database migration");
    }
    Ok(())
}

/// Whether `e` is a constraint violation (unique, foreign key, check, not null).
pub(super) fn is_constraint_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
}
