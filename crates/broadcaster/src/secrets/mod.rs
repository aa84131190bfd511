//! Encryption at rest: the master key ([`master_key`]), the server database's secret columns
//! ([`sealed`]) and the start's key check and migrations ([`unlock`]). The WhatsApp auth store
//! seals its own values (wa-store) under a key derived from the master key.

pub mod master_key;
pub mod sealed;
pub mod unlock;

pub use master_key::{
    MASTER_KEY_FILE, MASTER_KEY_VAR, MasterKey, MasterKeyError, MasterKeySettings, PREVIOUS_MASTER_KEY_VAR,
};
pub use sealed::{SecretBox, SecretColumn, SecretError};
pub use unlock::{KeyError, KeySource, Unlocked, unlock};
