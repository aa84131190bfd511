//! WhatsApp's Noise_XX_25519_AESGCM_SHA256 transport: frames, handshake, certificate chain (sans-I/O).

pub mod error;
pub mod frame;

pub use error::{CertRole, Error, ErrorKind, HandshakeStage, Result};
pub use frame::{ConnectionHeader, FrameDecoder, MAX_FRAME_LEN};
