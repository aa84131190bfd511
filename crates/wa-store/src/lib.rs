//! Auth state storage for WhatsApp multi-device accounts.
//!
//! * Domain traits ([`SessionStore`], [`PreKeyStore`], [`SenderKeyStore`], …) describe what the
//!   client needs; [`DeviceStore`] implements all of them for one account of a [`Store`].
//! * A [`Store`] holds any number of accounts (keyed by [`DeviceId`]) over one [`Backend`]:
//!   SQLite (default), PostgreSQL, MongoDB or in-memory, each behind its cargo feature, all
//!   checked by one conformance suite.
//! * [`Transaction`] commits several writes (say, an advanced session and the decrypted
//!   message) atomically.
//! * With a key in [`StoreOptions`], every value is sealed with AES-256-GCM bound to its device,
//!   table and row, under a raw key or an Argon2id-derived one; [`Store::rotate_key`] re-seals.
//!
//! Signal records are opaque bytes owned by the signal layer; keys are raw 32-byte arrays and
//! JIDs are strings, so this crate depends on no protocol crate.

pub mod backend;
pub mod backends;
mod codec;
mod error;
mod seal;
mod store;
mod traits;
mod types;

pub use backend::{Backend, Op, Row, RowKey, Scan, Table};
pub use error::{Error, Result};
pub use seal::{Argon2Params, EncryptionKey};
pub use store::{Clock, DeviceStore, ManualClock, Store, StoreOptions, SystemClock, Transaction};
pub use traits::{
    AppStateStore, CredentialStore, DeviceListStore, IdentityStore, InboundStore, LidStore,
    PreKeyStore, PrivacyTokenStore, SenderKeyStore, SentMessageStore, SessionStore,
    SignedPreKeyStore,
};
pub use types::{
    AppStateSyncKey, AppStateVersion, Credentials, DeviceId, DeviceList, IdentityChange,
    InboundMessage, KeyPair, PreKey, PreKeyCounts, PreKeyState, PrivacyToken, ProtocolAddress,
    SentMessage, SignedPreKey,
};

#[cfg(feature = "memory")]
impl Store {
    /// A store over a fresh in-memory backend.
    pub async fn memory(options: StoreOptions) -> Result<Store> {
        Store::open(backends::memory::MemoryBackend::new(), options).await
    }
}
