//! The store: a backend, an optional sealing key, a clock; and per-device handles.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::RwLock;

use crate::backend::{Backend, Op, Row, RowKey, Scan, Table};
use crate::error::{Error, Result};
use crate::seal::{self, EncryptionKey, EncryptionMeta, Sealer};
use crate::types::DeviceId;

/// Source of "now" in unix seconds; tests drive it explicitly.
pub trait Clock: Send + Sync + 'static {
    /// Current time, unix seconds.
    fn now(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
    }
}

/// A clock moved by hand.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock reading `t`.
    pub fn new(t: i64) -> Self {
        ManualClock(AtomicI64::new(t))
    }
    /// Sets the time.
    pub fn set(&self, t: i64) {
        self.0.store(t, Ordering::SeqCst);
    }
    /// Moves the time forward by `secs`.
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl<C: Clock> Clock for Arc<C> {
    fn now(&self) -> i64 {
        (**self).now()
    }
}

/// Options for [`Store::open`].
#[derive(Clone)]
pub struct StoreOptions {
    /// Encrypt every value at rest under this key.
    pub key: Option<EncryptionKey>,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// How long a consumed one-time prekey stays readable (seconds), so a message re-sent
    /// after a retry receipt still decrypts.
    pub pre_key_grace_secs: i64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { key: None, clock: Arc::new(SystemClock), pre_key_grace_secs: 24 * 3600 }
    }
}

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field("key", &self.key)
            .field("pre_key_grace_secs", &self.pre_key_grace_secs)
            .finish_non_exhaustive()
    }
}

impl StoreOptions {
    /// Default options with an encryption key.
    pub fn with_key(key: EncryptionKey) -> Self {
        StoreOptions { key: Some(key), ..Default::default() }
    }
}

pub(crate) struct Inner {
    pub(crate) backend: Arc<dyn Backend>,
    /// Held shared by every read and write, exclusively by `rotate_key`, so no row is sealed
    /// under a key that a concurrent rotation is replacing.
    pub(crate) sealer: RwLock<Option<Arc<Sealer>>>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) pre_key_grace_secs: i64,
}

/// A database of auth state for any number of devices. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("backend", &self.inner.backend.name()).finish_non_exhaustive()
    }
}

const META_ENCRYPTION: &str = "encryption";

fn meta_id() -> RowKey {
    RowKey::new("", META_ENCRYPTION)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Worker(e.to_string()))?
}

impl Store {
    /// Opens a store over a migrated backend, checking or recording its encryption settings.
    pub async fn open(backend: impl Backend, options: StoreOptions) -> Result<Store> {
        Self::open_arc(Arc::new(backend), options).await
    }

    /// Like [`Store::open`] for a shared backend.
    pub async fn open_arc(backend: Arc<dyn Backend>, options: StoreOptions) -> Result<Store> {
        let sealer = Self::check_encryption(&*backend, options.key.clone()).await?;
        Ok(Store {
            inner: Arc::new(Inner {
                backend,
                sealer: RwLock::new(sealer),
                clock: options.clock,
                pre_key_grace_secs: options.pre_key_grace_secs,
            }),
        })
    }

    async fn read_meta(backend: &dyn Backend) -> Result<Option<EncryptionMeta>> {
        let ids = [meta_id()];
        let rows = backend.get(Table::Meta, "", &ids).await?;
        match rows.into_iter().next().flatten() {
            None => Ok(None),
            Some(r) => Ok(Some(EncryptionMeta::decode(&r.value)?)),
        }
    }

    async fn check_encryption(
        backend: &dyn Backend,
        key: Option<EncryptionKey>,
    ) -> Result<Option<Arc<Sealer>>> {
        // Two attempts: a concurrent first open may insert the meta row between our read and
        // our insert; then we read theirs.
        for _ in 0..2 {
            match (Self::read_meta(backend).await?, key.clone()) {
                (None, key) => {
                    let sealer = match key {
                        None => None,
                        Some(k) => Some(Arc::new(blocking(move || Sealer::create(&k)).await?)),
                    };
                    let meta = match &sealer {
                        None => EncryptionMeta::None,
                        Some(s) => s.meta()?,
                    };
                    let row = Row { id: meta_id(), value: meta.encode(), aux: 0, expires_at: None };
                    match backend
                        .apply(&[Op::Insert { table: Table::Meta, device: String::new(), row }])
                        .await
                    {
                        Ok(()) => return Ok(sealer),
                        Err(Error::Conflict { .. }) => continue,
                        Err(e) => return Err(e),
                    }
                }
                (Some(EncryptionMeta::None), None) => return Ok(None),
                (Some(EncryptionMeta::None), Some(_)) => return Err(Error::NotEncrypted),
                (Some(EncryptionMeta::Aes256Gcm { key_id, .. }), None) => {
                    return Err(Error::KeyRequired { key_id: seal::key_id_hex(&key_id) });
                }
                (Some(EncryptionMeta::Aes256Gcm { key_id, kdf, check }), Some(k)) => {
                    let sealer = blocking(move || Sealer::for_existing(&k, &kdf)).await?;
                    if sealer.key_id() != key_id {
                        return Err(Error::WrongKey {
                            expected: seal::key_id_hex(&key_id),
                            supplied: seal::key_id_hex(&sealer.key_id()),
                        });
                    }
                    sealer.verify_check(&check)?;
                    return Ok(Some(Arc::new(sealer)));
                }
            }
        }
        Err(Error::Corrupt {
            table: Table::Meta.name(),
            reason: "encryption record vanished while opening".into(),
        })
    }

    /// The handle for one device (account).
    pub fn device(&self, id: &DeviceId) -> DeviceStore {
        DeviceStore { store: self.clone(), device: id.clone() }
    }

    /// Name of the backend.
    pub fn backend_name(&self) -> &'static str {
        self.inner.backend.name()
    }

    /// Hex id of the key values are sealed with, or `None` when unencrypted.
    pub async fn key_id(&self) -> Option<String> {
        self.inner.sealer.read().await.as_ref().map(|s| seal::key_id_hex(&s.key_id()))
    }

    /// Devices that have stored anything in their device table (credentials or counters).
    pub async fn devices(&self) -> Result<Vec<DeviceId>> {
        let ids = self.inner.backend.devices(Table::Device).await?;
        ids.into_iter().map(DeviceId::new).collect()
    }

    /// Removes every row of a device, atomically.
    pub async fn delete_device(&self, id: &DeviceId) -> Result<()> {
        let _guard = self.inner.sealer.read().await;
        self.inner.backend.apply(&[Op::DeleteDevice { device: id.as_str().to_owned() }]).await
    }

    /// Deletes expired device lists, sent messages and consumed prekeys past their grace.
    pub async fn purge_expired(&self) -> Result<u64> {
        self.inner.backend.purge_expired(self.inner.clock.now()).await
    }

    /// Re-seals every value under `new` (or stores everything in clear with `None`) in one
    /// transaction. Other processes holding the database open must reopen with the new key.
    pub async fn rotate_key(&self, new: Option<EncryptionKey>) -> Result<()> {
        let mut guard = self.inner.sealer.write().await;
        let old = guard.clone();
        let new_sealer = match new {
            None => None,
            Some(k) => Some(Arc::new(blocking(move || Sealer::create(&k)).await?)),
        };
        let meta = match &new_sealer {
            None => EncryptionMeta::None,
            Some(s) => s.meta()?,
        };
        let (o, n) = (old.clone(), new_sealer.clone());
        let rewrite: crate::backend::Rewriter = Box::new(move |table, device, row| {
            let plain = open_value(o.as_deref(), device, table, &row.id, &row.value)?;
            seal_value(n.as_deref(), device, table, &row.id, &plain)
        });
        let then = [Op::Put {
            table: Table::Meta,
            device: String::new(),
            row: Row { id: meta_id(), value: meta.encode(), aux: 0, expires_at: None },
        }];
        let n = self.inner.backend.rewrite_all(rewrite, &then).await?;
        tracing::info!(rows = n, backend = self.inner.backend.name(), "wa-store key rotated");
        *guard = new_sealer;
        Ok(())
    }
}

pub(crate) fn seal_value(
    s: Option<&Sealer>,
    device: &str,
    table: Table,
    id: &RowKey,
    plain: &[u8],
) -> Result<Vec<u8>> {
    match s {
        None => Ok(seal::clear(plain)),
        Some(s) => s.seal(device, table, &id.scope, &id.key, plain),
    }
}

pub(crate) fn open_value(
    s: Option<&Sealer>,
    device: &str,
    table: Table,
    id: &RowKey,
    stored: &[u8],
) -> Result<Vec<u8>> {
    match s {
        None => seal::unclear(table, stored),
        Some(s) => s.open(device, table, &id.scope, &id.key, stored),
    }
}

/// A row with its value opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PlainRow {
    pub(crate) id: RowKey,
    pub(crate) value: Vec<u8>,
    pub(crate) aux: i64,
    pub(crate) expires_at: Option<i64>,
}

/// One account's view of the store. Implements every domain trait. Cheap to clone.
#[derive(Clone)]
pub struct DeviceStore {
    pub(crate) store: Store,
    pub(crate) device: DeviceId,
}

impl std::fmt::Debug for DeviceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceStore").field("device", &self.device).finish_non_exhaustive()
    }
}

impl DeviceStore {
    /// The device this handle is for.
    pub fn id(&self) -> &DeviceId {
        &self.device
    }

    /// The store this handle belongs to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn now(&self) -> i64 {
        self.store.inner.clock.now()
    }

    pub(crate) fn grace(&self) -> i64 {
        self.store.inner.pre_key_grace_secs
    }

    /// Starts a unit of work: writes are buffered and committed atomically by
    /// [`Transaction::commit`]; dropping it without committing discards them.
    pub fn transaction(&self) -> Transaction {
        Transaction { device: self.clone(), ops: Vec::new() }
    }

    pub(crate) async fn get_rows(&self, table: Table, ids: &[RowKey]) -> Result<Vec<Option<PlainRow>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let inner = &self.store.inner;
        let guard = inner.sealer.read().await;
        let rows = inner.backend.get(table, self.device.as_str(), ids).await?;
        let now = self.now();
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(match row {
                Some(r) if r.expires_at.is_none_or(|e| e > now) => {
                    Some(self.open_row(guard.as_deref(), table, r)?)
                }
                _ => None,
            });
        }
        Ok(out)
    }

    pub(crate) async fn get_row(&self, table: Table, id: RowKey) -> Result<Option<PlainRow>> {
        let ids = [id];
        Ok(self.get_rows(table, &ids).await?.into_iter().next().flatten())
    }

    pub(crate) async fn scan_rows(&self, table: Table, scan: Scan) -> Result<Vec<PlainRow>> {
        let inner = &self.store.inner;
        let guard = inner.sealer.read().await;
        let rows = inner.backend.scan(table, self.device.as_str(), &scan).await?;
        let now = self.now();
        rows.into_iter()
            .filter(|r| r.expires_at.is_none_or(|e| e > now))
            .map(|r| self.open_row(guard.as_deref(), table, r))
            .collect()
    }

    fn open_row(&self, s: Option<&Sealer>, table: Table, r: Row) -> Result<PlainRow> {
        let value = open_value(s, self.device.as_str(), table, &r.id, &r.value)?;
        Ok(PlainRow { id: r.id, value, aux: r.aux, expires_at: r.expires_at })
    }

    pub(crate) async fn write(&self, f: impl FnOnce(&mut Transaction)) -> Result<()> {
        let mut tx = self.transaction();
        f(&mut tx);
        tx.commit().await
    }
}

#[derive(Debug)]
pub(crate) enum Pending {
    Put { table: Table, id: RowKey, value: Vec<u8>, aux: i64, expires_at: Option<i64>, insert: bool },
    Delete { table: Table, id: RowKey },
    DeleteScope { table: Table, scope: String },
    SetAux { table: Table, id: RowKey, aux: i64, expires_at: Option<i64> },
}

/// A unit of work over one device: its writes commit together or not at all.
///
/// Typical use is decrypting a message: the advanced session record, the consumed prekey and
/// the decrypted message are committed in one transaction, so a crash can never leave a
/// ratchet that moved without the message being kept, or the other way round. Reads made
/// while building a transaction see committed state.
#[must_use = "a transaction does nothing until committed"]
pub struct Transaction {
    pub(crate) device: DeviceStore,
    pub(crate) ops: Vec<Pending>,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("device", &self.device.device)
            .field("ops", &self.ops.len())
            .finish()
    }
}

impl Transaction {
    /// Number of buffered writes.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The device this transaction writes to.
    pub fn device(&self) -> &DeviceStore {
        &self.device
    }

    pub(crate) fn put(
        &mut self,
        table: Table,
        id: RowKey,
        value: Vec<u8>,
        aux: i64,
        expires_at: Option<i64>,
    ) {
        self.ops.push(Pending::Put { table, id, value, aux, expires_at, insert: false });
    }

    pub(crate) fn insert(
        &mut self,
        table: Table,
        id: RowKey,
        value: Vec<u8>,
        aux: i64,
        expires_at: Option<i64>,
    ) {
        self.ops.push(Pending::Put { table, id, value, aux, expires_at, insert: true });
    }

    pub(crate) fn delete(&mut self, table: Table, id: RowKey) {
        self.ops.push(Pending::Delete { table, id });
    }

    pub(crate) fn delete_scope(&mut self, table: Table, scope: String) {
        self.ops.push(Pending::DeleteScope { table, scope });
    }

    pub(crate) fn set_aux(&mut self, table: Table, id: RowKey, aux: i64, expires_at: Option<i64>) {
        self.ops.push(Pending::SetAux { table, id, aux, expires_at });
    }

    /// Seals and commits every buffered write atomically.
    pub async fn commit(self) -> Result<()> {
        if self.ops.is_empty() {
            return Ok(());
        }
        let inner = &self.device.store.inner;
        let guard = inner.sealer.read().await;
        let dev = self.device.device.as_str();
        let mut ops = Vec::with_capacity(self.ops.len());
        for p in self.ops {
            ops.push(match p {
                Pending::Put { table, id, value, aux, expires_at, insert } => {
                    let value = seal_value(guard.as_deref(), dev, table, &id, &value)?;
                    let row = Row { id, value, aux, expires_at };
                    let device = dev.to_owned();
                    if insert { Op::Insert { table, device, row } } else { Op::Put { table, device, row } }
                }
                Pending::Delete { table, id } => Op::Delete { table, device: dev.to_owned(), id },
                Pending::DeleteScope { table, scope } => {
                    Op::DeleteScope { table, device: dev.to_owned(), scope }
                }
                Pending::SetAux { table, id, aux, expires_at } => {
                    Op::SetAux { table, device: dev.to_owned(), id, aux, expires_at }
                }
            });
        }
        inner.backend.apply(&ops).await
    }
}
