//! WhatsApp's `Noise_XX_25519_AESGCM_SHA256` transport, sans-I/O: the frame codec, the
//! handshake for both roles (type-state), the server certificate chain, the transport
//! cipher, and `ClientPayload` builders.
//!
//! A client connection, end to end (bytes move through your WebSocket):
//! ```text
//! let mut out = Vec::new();
//! let hs = Initiator::new(config, ephemeral).write_client_hello(&mut out)?;   // send `out`
//! let mut frames = FrameDecoder::client();
//! frames.push(ws_message); let server_hello = frames.next_frame()?.unwrap();
//! let hs = hs.read_server_hello(&server_hello, now_unix)?;
//! let mut transport = hs.write_client_finish(&payload.encode_to_vec(), &mut out)?; // send
//! transport.encrypt_frame(node_bytes, &mut out)?; transport.decrypt_frame(frame)?;
//! ```

pub mod cert;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod messages;
pub mod payload;
mod symmetric;
pub mod transport;

pub use cert::{CertChainBuilder, CertDetails, CertVerifier, VerifiedChain, WA_ROOT_KEY};
pub use error::{CertRole, Error, ErrorKind, HandshakeStage, Result};
pub use frame::{ConnectionHeader, FrameDecoder, MAX_FRAME_LEN};
pub use handshake::{
    AwaitingClientFinish, AwaitingServerHello, ClientFinished, ClientHelloReceived, Initiator, InitiatorConfig,
    Responder, ResponderConfig, ServerAuthenticated,
};
pub use payload::{ClientProfile, RegistrationKeys};
pub use symmetric::PROTOCOL_NAME;
pub use transport::{FrameReceiver, FrameSender, MAX_PLAINTEXT_LEN, Transport};

#[cfg(test)]
mod tests;
