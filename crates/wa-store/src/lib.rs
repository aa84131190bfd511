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
//!
//! ```
//! use wa_store::{DeviceId, EncryptionKey, InboundMessage, InboundStore, ProtocolAddress};
//! use wa_store::{SessionStore, Store, StoreOptions};
//!
//! # fn main() -> Result<(), wa_store::Error> {
//! let rt = tokio::runtime::Runtime::new()?;
//! rt.block_on(async {
//!     let store = Store::memory(StoreOptions::with_key(EncryptionKey::Raw([7; 32]))).await?;
//!     let alice = store.device(&DeviceId::new("alice")?);
//!     let peer = ProtocolAddress::new("123456@lid", 0);
//!     // Decrypting a message: keep the advanced ratchet and the plaintext together.
//!     let msg = InboundMessage {
//!         chat: "123456@lid".into(),
//!         sender: "123456@lid".into(),
//!         id: "3EB0C0FFEE".into(),
//!         received_at: 1_700_000_000,
//!         payload: b"hello".to_vec(),
//!     };
//!     let mut tx = alice.transaction();
//!     tx.put_session(&peer, b"session record v2").put_inbound(&msg);
//!     tx.commit().await?;
//!     assert_eq!(alice.get_sessions(&[peer]).await?[0].as_deref(), Some(&b"session record v2"[..]));
//!     assert_eq!(alice.pending_inbound(10).await?, vec![msg]);
//!     Ok(())
//! })
//! # }
//! ```
//!
//! Tests: the PostgreSQL and MongoDB conformance, migration and crash tests need the servers
//! that `scripts/test` starts (`WA_TEST_PG_URL`, `WA_TEST_MONGO_URL`). Without them those tests
//! fail with instructions, unless `WA_STORE_SKIP_SERVER_TESTS=1` skips them explicitly.

pub mod backend;
pub mod backends;
mod codec;
mod error;
#[cfg(feature = "postgres")]
pub mod postgres_tls;
mod seal;
mod store;
mod traits;
mod types;

pub use backend::{Backend, Op, Row, RowKey, Scan, Table};
pub use error::{Error, Result};
pub use seal::{Argon2Params, EncryptionKey};
pub use store::{Clock, DeviceStore, ManualClock, Store, StoreOptions, SystemClock, Transaction};
pub use traits::{
    AppStateStore, AppVersionStore, CredentialStore, DeviceListStore, IdentityStore, InboundStore, LidStore,
    NctSaltStore, PreKeyStore, PrivacyTokenStore, SenderKeyStore, SentMessageStore, SessionStore,
    SignedPreKeyStore,
};
pub use types::{
    AppStateSyncKey, AppStateVersion, CachedAppVersion, Credentials, DeviceId, DeviceList, IdentityChange,
    InboundMessage, KeyPair, PreKey, PreKeyCounts, PreKeyState, PrivacyToken, ProtocolAddress, SentMessage,
    SignedPreKey,
};

#[cfg(feature = "memory")]
impl Store {
    /// A store over a fresh in-memory backend.
    pub async fn memory(options: StoreOptions) -> Result<Store> {
        Store::open(backends::memory::MemoryBackend::new(), options).await
    }
}
