//! `wa`: the WhatsApp Web multi-device protocol in Rust.
//!
//! This crate only re-exports the workspace's public crates so an application can
//! depend on one name. Each layer is usable on its own; see the README crate map.

pub use wa_binary as binary;
pub use wa_client as client;
pub use wa_crypto as crypto;
pub use wa_emulator as emulator;
pub use wa_noise as noise;
pub use wa_proto as proto;
pub use wa_signal as signal;
pub use wa_store as store;
