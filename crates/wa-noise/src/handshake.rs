//! The XX handshake as a type-state machine, one type per step, for both roles.
//!
//! ```text
//! Initiator ──write_client_hello──▶ AwaitingServerHello ──read_server_hello──▶
//!     ServerAuthenticated ──write_client_finish──▶ Transport
//! Responder ──read_client_hello──▶ ClientHelloReceived ──write_server_hello──▶
//!     AwaitingClientFinish ──read_client_finish──▶ (Transport, ClientFinished)
//! ```
//! Sans-I/O: `write_*` append wire bytes to a buffer (the client's first write includes
//! the connection intro), `read_*` take one frame payload as [`crate::FrameDecoder`]
//! returns it. Ephemeral keys and the time are passed in, so transcripts replay exactly.
//!
//! Where WhatsApp departs from the Noise spec: the empty ClientHello payload is not
//! hashed; the prologue is only `WA 06 <dict>`; nonces are `00×8 ‖ u32be(n)` with one
//! counter shared by both directions during the handshake.

use std::sync::Arc;

use prost::Message as _;
use wa_crypto::{KeyPair, PrivateKey, PublicKey};

use crate::cert::{CertVerifier, VerifiedChain};
use crate::error::{Error, HandshakeStage, Result};
use crate::frame::{ConnectionHeader, encode_frame_into};
use crate::messages;
use crate::symmetric::{Secret, SymmetricState};
use crate::transport::Transport;

fn dh(ours: &PrivateKey, theirs: &PublicKey, stage: HandshakeStage) -> Result<Secret> {
    ours.agree(theirs).map(Secret).map_err(|_| Error::WeakKey { stage })
}

fn to_array(bytes: &[u8], stage: HandshakeStage, field: &'static str) -> Result<[u8; 32]> {
    bytes.try_into().map_err(|_| Error::BadLength { stage, field, expected: 32, got: bytes.len() })
}

// ------------------------------------------------------------------------ initiator

/// What a client needs to connect.
#[derive(Debug)]
pub struct InitiatorConfig {
    /// The intro to send (dictionary byte, optional routing info); its 4-byte header is
    /// the prologue.
    pub header: ConnectionHeader,
    /// The device's long-lived Noise static key pair ("noise key").
    pub static_key: KeyPair,
    /// The root the server's certificate chain must lead to.
    pub verifier: CertVerifier,
}

/// A client before anything was sent.
#[derive(Debug)]
pub struct Initiator {
    config: InitiatorConfig,
    ephemeral: KeyPair,
}

impl Initiator {
    /// A client that will use `ephemeral` (fresh per connection) for this handshake.
    pub fn new(config: InitiatorConfig, ephemeral: KeyPair) -> Self {
        Self { config, ephemeral }
    }

    /// Appends the connection intro and the `ClientHello` frame: the first WebSocket message.
    pub fn write_client_hello(self, out: &mut Vec<u8>) -> Result<AwaitingServerHello> {
        let mut sym = SymmetricState::new(&self.config.header.prologue());
        sym.mix_hash(self.ephemeral.public.as_bytes());
        // WhatsApp does not MixHash the (empty) ClientHello payload.
        self.config.header.encode_into(out);
        encode_frame_into(&messages::client_hello(&self.ephemeral.public), out)?;
        Ok(AwaitingServerHello { sym, config: self.config, ephemeral: self.ephemeral })
    }
}

/// A client that sent its `ClientHello`.
#[derive(Debug)]
pub struct AwaitingServerHello {
    sym: SymmetricState,
    config: InitiatorConfig,
    ephemeral: KeyPair,
}

impl AwaitingServerHello {
    /// The handshake hash so far.
    pub fn handshake_hash(&self) -> &[u8; 32] {
        &self.sym.h
    }

    /// Processes the server's reply (one frame payload) and verifies its certificate
    /// chain at time `now` (unix seconds).
    pub fn read_server_hello(mut self, message: &[u8], now: u64) -> Result<ServerAuthenticated> {
        const STAGE: HandshakeStage = HandshakeStage::ServerHello;
        let parts = messages::parse_server_hello(message)?;
        let sym = &mut self.sym;
        sym.mix_hash(parts.ephemeral.as_bytes());
        sym.mix_key(&dh(&self.ephemeral.private, &parts.ephemeral, STAGE)?);
        let server_static = sym.decrypt_and_hash(&parts.static_ciphertext, STAGE)?;
        let server_static = PublicKey::from_array(to_array(&server_static, STAGE, "serverHello.static")?);
        sym.mix_key(&dh(&self.ephemeral.private, &server_static, STAGE)?);
        let chain = sym.decrypt_and_hash(&parts.payload_ciphertext, STAGE)?;
        let chain = self.config.verifier.verify(&chain, &server_static, now)?;
        // se: computed now so that a low-order server ephemeral fails here, not later.
        let se = dh(&self.config.static_key.private, &parts.ephemeral, STAGE)?;
        Ok(ServerAuthenticated {
            sym: self.sym,
            static_key: self.config.static_key,
            server_static,
            chain,
            se,
        })
    }
}

/// A client that authenticated the server and can finish.
#[derive(Debug)]
pub struct ServerAuthenticated {
    sym: SymmetricState,
    static_key: KeyPair,
    server_static: PublicKey,
    chain: VerifiedChain,
    se: Secret,
}

impl ServerAuthenticated {
    /// The handshake hash so far.
    pub fn handshake_hash(&self) -> &[u8; 32] {
        &self.sym.h
    }

    /// The server's static key (equal to the leaf certificate's key).
    pub fn server_static(&self) -> &PublicKey {
        &self.server_static
    }

    /// The verified certificate chain.
    pub fn cert_chain(&self) -> &VerifiedChain {
        &self.chain
    }

    /// Appends the `ClientFinish` frame carrying our static key and the serialized
    /// `ClientPayload`, and returns the transport.
    pub fn write_client_finish(mut self, client_payload: &[u8], out: &mut Vec<u8>) -> Result<Transport> {
        let static_ct = self.sym.encrypt_and_hash(self.static_key.public.as_bytes());
        self.sym.mix_key(&self.se);
        let payload_ct = self.sym.encrypt_and_hash(client_payload);
        encode_frame_into(&messages::client_finish(static_ct, payload_ct), out)?;
        let (write, read) = self.sym.split();
        Ok(Transport::new(&write.0, &read.0, self.sym.h))
    }
}

// ------------------------------------------------------------------------ responder

/// What a server (the emulator) needs: its static key and a chain certifying it.
#[derive(Debug)]
pub struct ResponderConfig {
    /// The server's static key pair (the leaf certificate's key).
    pub static_key: KeyPair,
    /// A serialized `CertChain`, e.g. from [`crate::CertChainBuilder::sign`].
    pub cert_chain: Vec<u8>,
}

/// A server connection that has read the client's intro, before its `ClientHello`.
#[derive(Debug)]
pub struct Responder {
    config: Arc<ResponderConfig>,
    sym: SymmetricState,
    ephemeral: KeyPair,
}

impl Responder {
    /// A server side for a client that sent `header` (from
    /// [`crate::FrameDecoder::connection_header`]), using `ephemeral` for this handshake.
    pub fn new(config: Arc<ResponderConfig>, header: &ConnectionHeader, ephemeral: KeyPair) -> Self {
        Self { config, sym: SymmetricState::new(&header.prologue()), ephemeral }
    }

    /// Processes the client's first frame payload.
    pub fn read_client_hello(mut self, message: &[u8]) -> Result<ClientHelloReceived> {
        const STAGE: HandshakeStage = HandshakeStage::ClientHello;
        let client_ephemeral = messages::parse_client_hello(message)?;
        self.sym.mix_hash(client_ephemeral.as_bytes());
        let ee = dh(&self.ephemeral.private, &client_ephemeral, STAGE)?;
        let es = dh(&self.config.static_key.private, &client_ephemeral, STAGE)?;
        Ok(ClientHelloReceived { inner: self, client_ephemeral, ee, es })
    }
}

/// A server that read the `ClientHello` and can answer.
#[derive(Debug)]
pub struct ClientHelloReceived {
    inner: Responder,
    client_ephemeral: PublicKey,
    ee: Secret,
    es: Secret,
}

impl ClientHelloReceived {
    /// The client's ephemeral key.
    pub fn client_ephemeral(&self) -> &PublicKey {
        &self.client_ephemeral
    }

    /// Appends the `ServerHello` frame (ephemeral, encrypted static, encrypted chain).
    pub fn write_server_hello(self, out: &mut Vec<u8>) -> Result<AwaitingClientFinish> {
        let Responder { config, mut sym, ephemeral } = self.inner;
        sym.mix_hash(ephemeral.public.as_bytes());
        sym.mix_key(&self.ee);
        let static_ct = sym.encrypt_and_hash(config.static_key.public.as_bytes());
        sym.mix_key(&self.es);
        let payload_ct = sym.encrypt_and_hash(&config.cert_chain);
        encode_frame_into(&messages::server_hello(&ephemeral.public, static_ct, payload_ct), out)?;
        Ok(AwaitingClientFinish { sym, ephemeral })
    }
}

/// A server waiting for the `ClientFinish`.
#[derive(Debug)]
pub struct AwaitingClientFinish {
    sym: SymmetricState,
    ephemeral: KeyPair,
}

/// What the client proved and sent in its `ClientFinish`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientFinished {
    /// The client's static ("noise") key, authenticated by the handshake.
    pub client_static: PublicKey,
    /// The serialized `ClientPayload`.
    pub payload: Vec<u8>,
}

impl ClientFinished {
    /// Decodes [`Self::payload`].
    pub fn client_payload(&self) -> Result<wa_proto::ClientPayload> {
        wa_proto::ClientPayload::decode(self.payload.as_slice()).map_err(|source| Error::Protobuf {
            stage: HandshakeStage::ClientFinish,
            what: "ClientPayload",
            source,
        })
    }
}

impl AwaitingClientFinish {
    /// The handshake hash so far.
    pub fn handshake_hash(&self) -> &[u8; 32] {
        &self.sym.h
    }

    /// Processes the client's `ClientFinish` frame payload; the server's transport reads
    /// with the client's write key and writes with its read key.
    pub fn read_client_finish(mut self, message: &[u8]) -> Result<(Transport, ClientFinished)> {
        const STAGE: HandshakeStage = HandshakeStage::ClientFinish;
        let parts = messages::parse_client_finish(message)?;
        let client_static = self.sym.decrypt_and_hash(&parts.static_ciphertext, STAGE)?;
        let client_static = PublicKey::from_array(to_array(&client_static, STAGE, "clientFinish.static")?);
        self.sym.mix_key(&dh(&self.ephemeral.private, &client_static, STAGE)?);
        let payload = self.sym.decrypt_and_hash(&parts.payload_ciphertext, STAGE)?;
        let (client_write, client_read) = self.sym.split();
        Ok((
            Transport::new(&client_read.0, &client_write.0, self.sym.h),
            ClientFinished { client_static, payload },
        ))
    }
}
