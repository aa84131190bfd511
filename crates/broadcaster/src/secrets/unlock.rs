//! The start's key step: find the master key (creating the key file at the first start), check
//! it against everything already sealed, then bring every store under it: a store in clear
//! (written before encryption at rest) is sealed, data sealed with
//! `BROADCASTER_MASTER_KEY_PREVIOUS` is re-sealed. Each store changes in one transaction, so a
//! crash leaves it wholly old or wholly new and the next start finishes the job. Everything is
//! checked before anything is written: a wrong key changes nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wa_store::Store;

use super::master_key::{MasterKey, MasterKeyError, MasterKeySettings};
use super::sealed::{SecretBox, SecretColumn, Stored, classify};
use crate::config::AuthStore;
use crate::db::{Db, DbError, params};
use crate::wa_runtime::WaRuntime;

/// The start cannot go on with the configured master key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error(transparent)]
    Key(#[from] MasterKeyError),
    /// Data is sealed with a key that is neither the master key nor the previous one.
    #[error(
        "the master key (id {configured}) does not match the data in {what}; nothing was changed. \
         Start with the key it was sealed with; to rotate, set the new key as the master key and \
         the old one in BROADCASTER_MASTER_KEY_PREVIOUS"
    )]
    WrongKey { what: String, configured: String },
    /// Sealed data exists but the default key file is gone.
    #[error(
        "the data in {what} is encrypted, but the master key file {} does not exist and \
         BROADCASTER_MASTER_KEY is not set; restore the key file from your backup (a new key \
         cannot read the data)",
        file.display()
    )]
    KeyFileMissing { what: String, file: PathBuf },
}

/// Where the master key in use came from (the start banner says it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `BROADCASTER_MASTER_KEY`.
    Environment,
    /// A key file that already existed.
    File(PathBuf),
    /// A key file generated at this start: it must be backed up.
    Created(PathBuf),
}

/// The outcome of [`unlock`].
pub struct Unlocked {
    /// The auth store, sealed with the master key.
    pub store: Store,
    /// Seals and opens the server database's secret columns.
    pub secrets: Arc<SecretBox>,
    pub key_id: String,
    pub source: KeySource,
}

/// Every secret column: how to list its rows as (id, stored value), and how to write one.
const COLUMNS: [(SecretColumn, &str, &str); 2] = [
    (
        SecretColumn::WebhookSecret,
        "SELECT id, secret FROM webhooks",
        "UPDATE webhooks SET secret = ?1 WHERE id = ?2",
    ),
    (
        SecretColumn::AccountProxy,
        "SELECT id, proxy_url FROM accounts WHERE proxy_url IS NOT NULL",
        "UPDATE accounts SET proxy_url = ?1 WHERE id = ?2",
    ),
];

/// The stored values of every secret column, as (id, stored value).
async fn server_secrets(db: &Db) -> Result<Vec<(String, String)>, DbError> {
    db.call(|c| {
        let mut all = Vec::new();
        for (_, select, _) in COLUMNS {
            all.extend(c.query_all(select, [], |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?)))?);
        }
        Ok(all)
    })
    .await
}

const SERVER_DB: &str = "the server database (webhooks.secret, accounts.proxy_url)";

/// Runs the key step; see the module docs. `data_dir` holds the default key file and the
/// SQLite auth store.
pub async fn unlock(
    settings: &MasterKeySettings,
    data_dir: &Path,
    auth: &AuthStore,
    db: &Db,
) -> Result<Unlocked, crate::ServeError> {
    let open =
        |key: Option<&MasterKey>| WaRuntime::open_store(auth, data_dir, key.map(MasterKey::auth_store_key));
    let open_error = |e: wa_store::Error| WaRuntime::open_error(auth, &e);
    let store_name = || WaRuntime::describe_store(auth, data_dir);
    let rows = server_secrets(db).await?;

    let file = settings.file_in(data_dir);
    let (key, source) = match &settings.key {
        Some(k) => (k.clone(), KeySource::Environment),
        None if file.exists() => {
            (MasterKey::read_file(&file).map_err(KeyError::from)?, KeySource::File(file))
        }
        None => {
            // First start with encryption: nothing may be sealed yet, or the key file was lost
            // and a new key would lock the data away for good.
            if rows.iter().any(|(_, s)| classify(s) != Stored::Clear) {
                return Err(KeyError::KeyFileMissing { what: SERVER_DB.into(), file }.into());
            }
            match open(None).await {
                Ok(_) => {}
                Err(wa_store::Error::KeyRequired { .. }) => {
                    return Err(KeyError::KeyFileMissing { what: store_name(), file }.into());
                }
                Err(e) => return Err(open_error(e)),
            }
            let k = MasterKey::generate();
            k.write_new_file(&file).map_err(KeyError::from)?;
            (k, KeySource::Created(file))
        }
    };
    let previous = settings.previous.as_ref().filter(|p| **p != key);
    let boxes = (SecretBox::new(&key), previous.map(SecretBox::new));
    let configured = key.id();
    let wrong = |what: String| KeyError::WrongKey { what, configured: configured.clone() };

    // Checks first (reads only).
    for (_, stored) in &rows {
        if let Stored::Sealed { key_id } = classify(stored)
            && key_id != boxes.0.key_id()
            && boxes.1.as_ref().is_none_or(|p| key_id != p.key_id())
        {
            return Err(wrong(SERVER_DB.into()).into());
        }
    }
    enum Auth {
        Ready(Store),
        Clear,
        Previous(Store),
    }
    let auth_state = match open(Some(&key)).await {
        Ok(s) => Auth::Ready(s),
        Err(wa_store::Error::NotEncrypted) => Auth::Clear,
        Err(wa_store::Error::WrongKey { .. }) => match previous {
            None => return Err(wrong(store_name()).into()),
            Some(p) => match open(Some(p)).await {
                Ok(s) => Auth::Previous(s),
                Err(wa_store::Error::WrongKey { .. }) => return Err(wrong(store_name()).into()),
                Err(e) => return Err(open_error(e)),
            },
        },
        Err(e) => return Err(open_error(e)),
    };

    // Then the writes, one transaction per store. On SQLite a marker file owes the scrub from
    // before the rewrite until after it, so a crash in between is scrubbed at the next start.
    let auth_file =
        matches!(auth, AuthStore::Sqlite).then(|| data_dir.join(crate::wa_runtime::SQLITE_AUTH_FILE));
    let store = match auth_state {
        Auth::Ready(s) => match &auth_file {
            Some(f) if scrub_owed(f) => {
                drop(s);
                scrub_sqlite_file(f).await?;
                open(Some(&key)).await.map_err(open_error)?
            }
            _ => s,
        },
        Auth::Clear | Auth::Previous(_) => {
            let s = match auth_state {
                Auth::Previous(s) => s,
                _ => open(None).await.map_err(open_error)?,
            };
            // A store just made (first start) has nothing to migrate: no notice then.
            let devices = s.devices().await.map_err(open_error)?.len();
            if let Some(f) = &auth_file {
                owe_scrub(f)?;
            }
            s.rotate_key(Some(key.auth_store_key())).await.map_err(open_error)?;
            if devices > 0 {
                tracing::warn!(store = %store_name(), devices, "auth store sealed with the master key (it was in clear or under the previous key)");
            }
            match &auth_file {
                Some(f) => {
                    drop(s);
                    scrub_sqlite_file(f).await?;
                    open(Some(&key)).await.map_err(open_error)?
                }
                None => s,
            }
        }
    };
    let server_file =
        (db.backend() == crate::db::Backend::Sqlite).then(|| data_dir.join(crate::db::SQLITE_FILE));
    let must_reseal = rows.iter().any(|(_, s)| classify(s) != Stored::Sealed { key_id: boxes.0.key_id() });
    if let Some(f) = server_file.as_ref().filter(|_| must_reseal) {
        owe_scrub(f)?;
    }
    let resealed = reseal_server_secrets(db, boxes.0.clone(), boxes.1).await?;
    if resealed > 0 {
        tracing::warn!(rows = resealed, "webhook secrets and proxy URLs sealed with the master key");
    }
    if let Some(f) = server_file.filter(|f| scrub_owed(f)) {
        db.call(|c| c.execute_batch(SCRUB_SQL)).await?;
        scrub_paid(&f)?;
    }
    Ok(Unlocked { store, secrets: Arc::new(boxes.0), key_id: configured, source })
}

/// Rewrites a SQLite database and empties its WAL. Rows rewritten sealed leave their old bytes
/// (in clear, or under the old key) in freed pages, cell gaps and old WAL frames until SQLite
/// reuses the space; VACUUM writes every page anew and the TRUNCATE checkpoint cuts the WAL to
/// nothing.
const SCRUB_SQL: &str = "VACUUM; PRAGMA wal_checkpoint(TRUNCATE);";

/// [`SCRUB_SQL`] on a SQLite file no one else holds open; then the marker goes.
async fn scrub_sqlite_file(path: &Path) -> Result<(), crate::ServeError> {
    let p = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let c = rusqlite::Connection::open(&p)?;
        c.execute_batch(SCRUB_SQL)?;
        Ok::<_, DbError>(())
    })
    .await
    .map_err(|e| DbError::Join(e.to_string()))??;
    Ok(scrub_paid(path)?)
}

/// The marker next to a SQLite file saying its scrub is owed.
fn scrub_marker(db_file: &Path) -> PathBuf {
    let mut name = db_file.as_os_str().to_owned();
    name.push(".scrub-pending");
    PathBuf::from(name)
}

fn scrub_owed(db_file: &Path) -> bool {
    scrub_marker(db_file).exists()
}

/// Creates the marker durably (file and directory synced) before the rewrite it covers.
fn owe_scrub(db_file: &Path) -> std::io::Result<()> {
    let marker = scrub_marker(db_file);
    std::fs::File::create(&marker)?.sync_all()?;
    #[cfg(unix)]
    if let Some(dir) = marker.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn scrub_paid(db_file: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(scrub_marker(db_file)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Seals every secret column's value in clear and re-seals those under `previous`, in one
/// transaction; returns how many rows changed.
async fn reseal_server_secrets(
    db: &Db,
    current: SecretBox,
    previous: Option<SecretBox>,
) -> Result<usize, DbError> {
    db.call(move |c| {
        let tx = c.transaction()?;
        let mut changed = 0;
        for (col, select, update) in COLUMNS {
            let rows: Vec<(String, String)> =
                tx.query_all(select, [], |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?)))?;
            for (id, stored) in rows {
                let plain = match (classify(&stored), &previous) {
                    (Stored::Clear, _) => stored,
                    (Stored::Sealed { key_id }, _) if key_id == current.key_id() => continue,
                    (Stored::Sealed { .. }, Some(p)) => {
                        p.open(col, &id, &stored).map_err(|e| DbError::Corrupt(e.to_string()))?
                    }
                    (Stored::Sealed { .. }, None) => {
                        return Err(DbError::Corrupt(format!(
                            "{} of {id}: sealed with another master key",
                            col.name()
                        )));
                    }
                };
                tx.execute(update, params![current.seal(col, &id, &plain), id])?;
                changed += 1;
            }
        }
        tx.commit()?;
        Ok(changed)
    })
    .await
}
