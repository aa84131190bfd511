//! The crate's error type.

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when storing or loading auth state.
///
/// Policy refusals (a newer schema, a wrong key) are distinct from damage (a row that fails
/// authentication or does not parse) so callers can tell "configure me differently" from
/// "this database was tampered with or corrupted".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database was written by a newer wa-store; migrations are forward-only.
    #[error(
        "database schema version {found} is newer than this build supports (up to {supported}); \
         upgrade wa-store to open it"
    )]
    SchemaTooNew {
        /// Version recorded in the database.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
    /// The database is encrypted and no key was supplied.
    #[error("database is encrypted at rest (key id {key_id}); open it with its key")]
    KeyRequired {
        /// Id of the key the database is sealed with.
        key_id: String,
    },
    /// The supplied key is not the one the database is sealed with.
    #[error(
        "wrong encryption key: database is sealed with key id {expected}, the supplied key has id {supplied}"
    )]
    WrongKey {
        /// Key id recorded in the database.
        expected: String,
        /// Key id of the supplied key.
        supplied: String,
    },
    /// A key was supplied but the database stores values in clear.
    #[error("database was created without encryption; use Store::rotate_key to encrypt it")]
    NotEncrypted,
    /// A sealed row did not authenticate: tampered, swapped from another row, or truncated.
    #[error(
        "row {table}/{scope}/{key} of device {device:?} failed authentication \
         (tampered, moved from another row, or corrupted)"
    )]
    Integrity {
        /// Table name.
        table: &'static str,
        /// Device the row belongs to.
        device: String,
        /// Row scope.
        scope: String,
        /// Row key.
        key: String,
    },
    /// A stored value does not parse.
    #[error("malformed stored value in {table}: {reason}")]
    Corrupt {
        /// Table name.
        table: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// An insert found the row already present (e.g. a duplicate inbound message id).
    #[error("row {table}/{scope}/{key} already exists")]
    Conflict {
        /// Table name.
        table: &'static str,
        /// Row scope.
        scope: String,
        /// Row key.
        key: String,
    },
    /// The caller passed something the store cannot accept.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Deriving a key from a passphrase failed.
    #[error("key derivation failed: {0}")]
    KeyDerivation(String),
    /// The operating system's random number generator failed.
    #[error("random number generator failed: {0}")]
    Random(String),
    /// SQLite reported an error.
    #[cfg(feature = "sqlite")]
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL reported an error.
    #[cfg(feature = "postgres")]
    #[error("postgres: {}", crate::postgres_tls::error_chain(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// The PostgreSQL connection string (or its TLS settings) cannot be used.
    #[cfg(feature = "postgres")]
    #[error("postgres settings: {0}")]
    PostgresConfig(#[from] crate::postgres_tls::PgConfigError),
    /// The PostgreSQL connection pool failed.
    #[cfg(feature = "postgres")]
    #[error("postgres pool: {0}")]
    Pool(String),
    /// MongoDB reported an error.
    #[cfg(feature = "mongodb")]
    #[error("mongodb: {0}")]
    Mongo(Box<mongodb::error::Error>),
    /// A blocking worker task panicked or was cancelled.
    #[error("storage worker failed: {0}")]
    Worker(String),
    /// Filesystem error.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

#[cfg(feature = "mongodb")]
impl From<mongodb::error::Error> for Error {
    fn from(e: mongodb::error::Error) -> Self {
        Error::Mongo(Box::new(e))
    }
}
