//! WhatsApp's Noise transport, sans-I/O: the frame codec, the handshakes for both roles
//! (type-state: `Noise_XX_25519_AESGCM_SHA256`, and the `Noise_IK_…` resume with its
//! `Noise_XXfallback_…` answer, see [`handshake`]), the server certificate chain, the
//! transport cipher, and `ClientPayload` builders.
//!
//! Both roles, end to end (in real use the bytes travel over a WebSocket and the client's
//! verifier is [`CertVerifier::default`], i.e. WhatsApp's root key):
//! ```
//! use std::sync::Arc;
//! use wa_crypto::{KeyPair, PrivateKey};
//! use wa_noise::*;
//!
//! let key = |n: u8| KeyPair::from_private(PrivateKey::from_bytes([n; 32]));
//! let (root, intermediate, server_static) = (key(1), key(2), key(3));
//! let chain = CertChainBuilder::new(intermediate.public, server_static.public, 0, 2_000_000_000)
//!     .sign(&root.private, &intermediate.private);
//! let server_config = Arc::new(ResponderConfig { static_key: server_static, cert_chain: chain });
//! let client_config = InitiatorConfig {
//!     header: ConnectionHeader::new(),
//!     static_key: key(4),
//!     verifier: CertVerifier::new(root.public), // a test root, passed explicitly
//! };
//!
//! // Client: intro + ClientHello.
//! let mut to_server = Vec::new();
//! let client = Initiator::new(client_config, key(5)).write_client_hello(&mut to_server)?;
//! // Server: parse the intro and the first frame, answer.
//! let mut server_frames = FrameDecoder::server();
//! server_frames.push(&to_server);
//! let hello = server_frames.next_frame()?.expect("a whole frame");
//! let header = server_frames.connection_header().expect("intro parsed").clone();
//! let mut to_client = Vec::new();
//! let ClientHelloOutcome::Full(server) = Responder::new(server_config, &header, key(6))
//!     .read_client_hello(&hello)?
//! else {
//!     unreachable!("an XX ClientHello is answered with XX")
//! };
//! let server = server.write_server_hello(&mut to_client)?;
//! // Client: verify the server, send ClientFinish with the ClientPayload.
//! let mut client_frames = FrameDecoder::client();
//! client_frames.push(&to_client);
//! let server_hello = client_frames.next_frame()?.expect("a whole frame");
//! let client = client.read_server_hello(&server_hello, 1_750_000_000)?;
//! to_server.clear();
//! let mut client_tx = client.write_client_finish(b"ClientPayload bytes", &mut to_server)?;
//! server_frames.push(&to_server);
//! let finish = server_frames.next_frame()?.expect("a whole frame");
//! let (mut server_tx, finished) = server.read_client_finish(&finish)?;
//! assert_eq!(finished.payload, b"ClientPayload bytes");
//!
//! // Transport: one encrypted binary node per frame.
//! to_server.clear();
//! client_tx.encrypt_frame(b"node", &mut to_server)?;
//! server_frames.push(&to_server);
//! let frame = server_frames.next_frame()?.expect("a whole frame");
//! assert_eq!(&server_tx.decrypt_frame(frame)?[..], b"node");
//! # Ok::<(), wa_noise::Error>(())
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
    AwaitingClientFinish, AwaitingIkServerHello, AwaitingServerHello, ClientFinished, ClientHelloOutcome,
    ClientHelloReceived, FallbackReason, IkClientAuthenticated, IkInitiator, IkServerHello, Initiator,
    InitiatorConfig, Pattern, Responder, ResponderConfig, Resumed, ServerAuthenticated,
};
pub use payload::{ClientProfile, RegistrationKeys};
pub use symmetric::{IK_PROTOCOL_NAME, PROTOCOL_NAME, XX_FALLBACK_PROTOCOL_NAME};
pub use transport::{FrameReceiver, FrameSender, MAX_PLAINTEXT_LEN, Transport};

#[cfg(test)]
mod tests;
