//! The handshakes as type-state machines, one type per step: XX for both roles, IK
//! (resuming with the server's static key known in advance) for both roles, and the
//! XXfallback a server answers an IK attempt with when it cannot decrypt it.
//!
//! ```text
//! XX       Initiator ──write_client_hello──▶ AwaitingServerHello ──read_server_hello──▶
//!              ServerAuthenticated ──write_client_finish──▶ Transport
//! IK       IkInitiator ──write_client_hello──▶ AwaitingIkServerHello ──read_server_hello──▶
//!              IkServerHello::Resumed(Resumed)            (transport ready, no third message)
//!            | IkServerHello::Fallback(ServerAuthenticated) ──write_client_finish──▶ Transport
//! server   Responder ──read_client_hello──▶
//!              ClientHelloOutcome::Full(ClientHelloReceived)       (XX, or XXfallback)
//!                  ──write_server_hello──▶ AwaitingClientFinish
//!                  ──read_client_finish──▶ (Transport, ClientFinished)
//!            | ClientHelloOutcome::Resumed(IkClientAuthenticated)  (IK)
//!                  ──write_server_hello──▶ (Transport, ClientFinished)
//! ```
//! Sans-I/O: `write_*` append wire bytes to a buffer (the client's first write includes
//! the connection intro), `read_*` take one frame payload as [`crate::FrameDecoder`]
//! returns it. Ephemeral keys and the time are passed in, so transcripts replay exactly.
//!
//! Where WhatsApp departs from the Noise spec, in every pattern: the prologue is only
//! `WA 06 <dict>` (never the `ED` routing pre-intro); nonces are `00×8 ‖ u32be(n)` with
//! one counter shared by both directions during the handshake, reset by every MixKey;
//! the transport keys are HKDF(salt = ck, ikm = empty), the client writing with the first
//! half. XX: the empty ClientHello payload is not hashed.
//!
//! IK and XXfallback, as WA Web's `WAWebOpenChatSocket` and whatsapp-rust 0.7
//! (`wacore/noise/src/handshake.rs`: `IkHandshakeState`, `XxFallbackHandshakeState`;
//! `src/handshake.rs`: `run_ik_handshake`) run them:
//! * IK ClientHello `{ephemeral, static, payload}`: name `Noise_IK_25519_AESGCM_SHA256`
//!   padded to 32 bytes; MixHash(prologue), MixHash(server static) (the pre-message),
//!   MixHash(e), MixKey(DH(e, S)), `static` = EncryptAndHash(s), MixKey(DH(s, S)),
//!   `payload` = EncryptAndHash(ClientPayload). The login payload travels here.
//! * The accepting ServerHello `{ephemeral, payload}` has no `static`: MixHash(e'),
//!   MixKey(DH(e, e')), MixKey(DH(s, e')), `payload` = EncryptAndHash(certificate chain)
//!   (WA Web calls it `certificateCiphertext`, decrypts it and ignores it). Then Split;
//!   there is no ClientFinish.
//! * A ServerHello that has `static` means XXfallback: both sides restart with
//!   `Noise_XXfallback_25519_AESGCM_SHA256` (36 bytes, so hashed), MixHash(prologue),
//!   MixHash(the client's ephemeral from the IK hello), then exactly XX's ServerHello and
//!   ClientFinish (the client sends its static and ClientPayload again). The IK
//!   ciphertexts are not part of that transcript.
//! * The server falls back when it cannot decrypt the IK hello (Noise §10.2: the client
//!   used a server static that is not ours, e.g. a rotated or wrong cached key). A
//!   malformed hello is an error, not a fallback.
//!
//! # Should our client resume with IK?
//!
//! No, not now: [`Initiator`] (XX) stays the connect path, and [`IkInitiator`] exists for
//! tests of the emulator and for interop checks. WA Web and whatsapp-rust resume with IK;
//! whatsmeow (`socket/constants.go` `NoiseStartPattern`, `handshake.go`), our primary
//! reference, and Baileys (`src/Defaults/index.ts` `NOISE_MODE`,
//! `src/Utils/noise-handler.ts`) use XX for every connect, logins included, and the
//! service accepts that. IK would save one round trip per connect (rare: a connection
//! lives for hours) at the cost of persisting the server's static key and its validity in
//! the store, an invalidation policy (whatsapp-rust needed one: one IK failure per
//! process, then XX), and a login payload sealed only by static-key DH outputs (no
//! forward secrecy against a later server-key compromise, and the first message can be
//! replayed). Revisit if WhatsApp is seen to treat XX logins differently.

use std::sync::Arc;

use prost::Message as _;
use wa_crypto::{KeyPair, PrivateKey, PublicKey};

use crate::cert::{CertVerifier, VerifiedChain};
use crate::error::{Error, HandshakeStage, Result};
use crate::frame::{ConnectionHeader, encode_frame_into};
use crate::messages::{self, IkServerHelloParts, ServerHelloParts};
use crate::symmetric::{IK_PROTOCOL_NAME, PROTOCOL_NAME, Secret, SymmetricState, XX_FALLBACK_PROTOCOL_NAME};
use crate::transport::Transport;

fn dh(ours: &PrivateKey, theirs: &PublicKey, stage: HandshakeStage) -> Result<Secret> {
    ours.agree(theirs).map(Secret).map_err(|_| Error::WeakKey { stage })
}

fn to_array(bytes: &[u8], stage: HandshakeStage, field: &'static str) -> Result<[u8; 32]> {
    bytes.try_into().map_err(|_| Error::BadLength { stage, field, expected: 32, got: bytes.len() })
}

/// A Noise handshake pattern WhatsApp uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Pattern {
    /// `Noise_XX_25519_AESGCM_SHA256`: first connect, pairing, and (whatsmeow, Baileys,
    /// our client) every login.
    Xx,
    /// `Noise_IK_25519_AESGCM_SHA256`: a login resumed with the cached server static key.
    Ik,
    /// `Noise_XXfallback_25519_AESGCM_SHA256`: the server's answer to an IK hello it
    /// could not decrypt.
    XxFallback,
}

impl Pattern {
    /// The protocol name that initializes the symmetric state.
    pub fn protocol_name(self) -> &'static [u8] {
        match self {
            Self::Xx => PROTOCOL_NAME,
            Self::Ik => IK_PROTOCOL_NAME,
            Self::XxFallback => XX_FALLBACK_PROTOCOL_NAME,
        }
    }
}

impl core::fmt::Display for Pattern {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Xx => "XX",
            Self::Ik => "IK",
            Self::XxFallback => "XXfallback",
        })
    }
}

/// Why a server answered an IK `ClientHello` with XXfallback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FallbackReason {
    /// `clientHello.static` did not authenticate: the client sealed it to another server
    /// static key than ours (a stale, rotated or wrong cache), or it was altered.
    UnknownServerStatic,
    /// The static key decrypted but the payload did not: the sender does not hold the
    /// private half of the static key it named, or the payload was altered.
    PayloadUndecryptable,
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
    pub fn read_server_hello(self, message: &[u8], now: u64) -> Result<ServerAuthenticated> {
        let parts = messages::parse_server_hello(message)?;
        authenticate_server(self.sym, self.config, &self.ephemeral, parts, now)
    }
}

/// XX's `<- e, ee, s, es` on the client side, shared by XX and XXfallback: once the
/// client's ephemeral key is in the transcript the two are identical.
fn authenticate_server(
    mut sym: SymmetricState,
    config: InitiatorConfig,
    ephemeral: &KeyPair,
    parts: ServerHelloParts,
    now: u64,
) -> Result<ServerAuthenticated> {
    const STAGE: HandshakeStage = HandshakeStage::ServerHello;
    sym.mix_hash(parts.ephemeral.as_bytes());
    sym.mix_key(&dh(&ephemeral.private, &parts.ephemeral, STAGE)?);
    let server_static = sym.decrypt_and_hash(&parts.static_ciphertext, STAGE)?;
    let server_static = PublicKey::from_array(to_array(&server_static, STAGE, "serverHello.static")?);
    sym.mix_key(&dh(&ephemeral.private, &server_static, STAGE)?);
    let chain = sym.decrypt_and_hash(&parts.payload_ciphertext, STAGE)?;
    let chain = config.verifier.verify(&chain, &server_static, now)?;
    // se: computed now so that a low-order server ephemeral fails here, not later.
    let se = dh(&config.static_key.private, &parts.ephemeral, STAGE)?;
    Ok(ServerAuthenticated { sym, static_key: config.static_key, server_static, chain, se })
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

    /// The server's static key (equal to the leaf certificate's key); what an IK client
    /// caches for its next connect.
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

// ------------------------------------------------------------------------ IK initiator

/// A client resuming with IK: it knows the server's static key from an earlier handshake
/// ([`ServerAuthenticated::server_static`]) and sends its own static key and the
/// `ClientPayload` in the first message. See the module docs for why our client does not
/// use this to connect; tests and interop checks do.
#[derive(Debug)]
pub struct IkInitiator {
    config: InitiatorConfig,
    server_static: PublicKey,
    ephemeral: KeyPair,
}

impl IkInitiator {
    /// A client that believes the server's static key is `server_static` and will use
    /// `ephemeral` (fresh per connection). `config.verifier` checks the chain should the
    /// server answer with XXfallback.
    pub fn new(config: InitiatorConfig, server_static: PublicKey, ephemeral: KeyPair) -> Self {
        Self { config, server_static, ephemeral }
    }

    /// Appends the connection intro and the IK `ClientHello` frame sealing our static key
    /// and `client_payload`. Fails with [`Error::WeakKey`] if the cached server key is a
    /// low-order point.
    pub fn write_client_hello(
        self,
        client_payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<AwaitingIkServerHello> {
        const STAGE: HandshakeStage = HandshakeStage::ClientHello;
        let prologue = self.config.header.prologue();
        let mut sym = SymmetricState::with_protocol_name(IK_PROTOCOL_NAME, &prologue);
        sym.mix_hash(self.server_static.as_bytes());
        sym.mix_hash(self.ephemeral.public.as_bytes());
        sym.mix_key(&dh(&self.ephemeral.private, &self.server_static, STAGE)?);
        let static_ct = sym.encrypt_and_hash(self.config.static_key.public.as_bytes());
        sym.mix_key(&dh(&self.config.static_key.private, &self.server_static, STAGE)?);
        let payload_ct = sym.encrypt_and_hash(client_payload);
        self.config.header.encode_into(out);
        encode_frame_into(&messages::ik_client_hello(&self.ephemeral.public, static_ct, payload_ct), out)?;
        Ok(AwaitingIkServerHello { sym, config: self.config, ephemeral: self.ephemeral })
    }
}

/// An IK client that sent its `ClientHello`.
#[derive(Debug)]
pub struct AwaitingIkServerHello {
    sym: SymmetricState,
    config: InitiatorConfig,
    ephemeral: KeyPair,
}

/// How the server answered an IK `ClientHello`.
// Matched once and taken apart at once: boxing a variant would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum IkServerHello {
    /// It accepted: the transport is ready and no further handshake message is sent.
    Resumed(Resumed),
    /// It answered with XXfallback; its chain is verified. Finish with
    /// [`ServerAuthenticated::write_client_finish`], sending the `ClientPayload` again.
    Fallback(ServerAuthenticated),
}

/// An IK handshake the server accepted.
#[derive(Debug)]
pub struct Resumed {
    /// Both directions.
    pub transport: Transport,
    /// The decrypted `serverHello.payload` (the server's certificate chain). Not
    /// verified, as WA Web and whatsapp-rust do not: the AEAD already proved the server
    /// holds the static key the client cached after verifying it.
    pub payload: Vec<u8>,
}

impl AwaitingIkServerHello {
    /// The handshake hash so far.
    pub fn handshake_hash(&self) -> &[u8; 32] {
        &self.sym.h
    }

    /// Processes the server's reply. An XXfallback answer is authenticated like XX's
    /// ServerHello, with the certificate chain verified at `now` (unix seconds).
    pub fn read_server_hello(mut self, message: &[u8], now: u64) -> Result<IkServerHello> {
        const STAGE: HandshakeStage = HandshakeStage::ServerHello;
        match messages::parse_ik_server_hello(message)? {
            IkServerHelloParts::Fallback(parts) => {
                let prologue = self.config.header.prologue();
                let mut sym = SymmetricState::with_protocol_name(XX_FALLBACK_PROTOCOL_NAME, &prologue);
                // The ephemeral already sent in the IK hello is XXfallback's pre-message.
                sym.mix_hash(self.ephemeral.public.as_bytes());
                authenticate_server(sym, self.config, &self.ephemeral, parts, now)
                    .map(IkServerHello::Fallback)
            }
            IkServerHelloParts::Accepted { ephemeral, payload_ciphertext } => {
                let sym = &mut self.sym;
                sym.mix_hash(ephemeral.as_bytes());
                sym.mix_key(&dh(&self.ephemeral.private, &ephemeral, STAGE)?);
                sym.mix_key(&dh(&self.config.static_key.private, &ephemeral, STAGE)?);
                let payload = sym.decrypt_and_hash(&payload_ciphertext, STAGE)?;
                let (write, read) = sym.split();
                let transport = Transport::new(&write.0, &read.0, sym.h);
                Ok(IkServerHello::Resumed(Resumed { transport, payload }))
            }
        }
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
    prologue: [u8; 4],
    ephemeral: KeyPair,
}

/// What the `ClientHello` asked for.
#[derive(Debug)]
pub enum ClientHelloOutcome {
    /// XX, or XXfallback for an IK hello we could not decrypt: send the ServerHello,
    /// then read the ClientFinish.
    Full(ClientHelloReceived),
    /// IK that decrypted: the client is authenticated and its `ClientPayload` read; the
    /// ServerHello completes the handshake.
    Resumed(IkClientAuthenticated),
}

impl ClientHelloOutcome {
    /// The pattern the handshake continues with.
    pub fn pattern(&self) -> Pattern {
        match self {
            Self::Full(hello) => hello.pattern(),
            Self::Resumed(_) => Pattern::Ik,
        }
    }
}

impl Responder {
    /// A server side for a client that sent `header` (from
    /// [`crate::FrameDecoder::connection_header`]), using `ephemeral` for this handshake.
    pub fn new(config: Arc<ResponderConfig>, header: &ConnectionHeader, ephemeral: KeyPair) -> Self {
        Self { config, prologue: header.prologue(), ephemeral }
    }

    /// Processes the client's first frame payload: an XX hello (ephemeral key only) or an
    /// IK hello (also a sealed static key and payload). An IK hello that does not decrypt
    /// under our static key is answered with XXfallback; one that is malformed, or names
    /// a low-order key, is an error.
    pub fn read_client_hello(self, message: &[u8]) -> Result<ClientHelloOutcome> {
        const STAGE: HandshakeStage = HandshakeStage::ClientHello;
        let hello = messages::parse_client_hello(message)?;
        let client_ephemeral = hello.ephemeral;
        // es and ee are needed by every pattern; computing them first also refuses a
        // low-order client ephemeral before anything else.
        let es = dh(&self.config.static_key.private, &client_ephemeral, STAGE)?;
        let ee = dh(&self.ephemeral.private, &client_ephemeral, STAGE)?;
        let (pattern, fallback) = match hello.resume {
            None => (Pattern::Xx, None),
            Some(sealed) => {
                let mut sym = SymmetricState::with_protocol_name(IK_PROTOCOL_NAME, &self.prologue);
                sym.mix_hash(self.config.static_key.public.as_bytes());
                sym.mix_hash(client_ephemeral.as_bytes());
                sym.mix_key(&es);
                match self.try_ik(sym, &sealed) {
                    Ok((sym, client_static, payload)) => {
                        let se = dh(&self.ephemeral.private, &client_static, STAGE)?;
                        return Ok(ClientHelloOutcome::Resumed(IkClientAuthenticated {
                            config: self.config,
                            sym,
                            ephemeral: self.ephemeral,
                            client_ephemeral,
                            ee,
                            se,
                            finished: ClientFinished { client_static, payload },
                        }));
                    }
                    Err(IkRefusal::Fallback(reason)) => (Pattern::XxFallback, Some(reason)),
                    Err(IkRefusal::Error(e)) => return Err(e),
                }
            }
        };
        let mut sym = SymmetricState::with_protocol_name(pattern.protocol_name(), &self.prologue);
        sym.mix_hash(client_ephemeral.as_bytes());
        Ok(ClientHelloOutcome::Full(ClientHelloReceived {
            config: self.config,
            sym,
            ephemeral: self.ephemeral,
            client_ephemeral,
            ee,
            es,
            fallback,
        }))
    }

    /// IK's `s, ss, payload` after `e, es`: an AEAD failure means fall back, anything else
    /// that fails is an error.
    fn try_ik(
        &self,
        mut sym: SymmetricState,
        sealed: &messages::IkCiphertexts,
    ) -> core::result::Result<(SymmetricState, PublicKey, Vec<u8>), IkRefusal> {
        const STAGE: HandshakeStage = HandshakeStage::ClientHello;
        let client_static = sym
            .decrypt_and_hash(&sealed.static_ciphertext, STAGE)
            .map_err(|_| IkRefusal::Fallback(FallbackReason::UnknownServerStatic))?;
        // 48-byte ciphertext (checked by the parser), so 32 bytes of plaintext.
        let client_static = PublicKey::from_array(to_array(&client_static, STAGE, "clientHello.static")?);
        // A low-order static that decrypted under our key was sent on purpose: refuse.
        sym.mix_key(&dh(&self.config.static_key.private, &client_static, STAGE)?);
        let payload = sym
            .decrypt_and_hash(&sealed.payload_ciphertext, STAGE)
            .map_err(|_| IkRefusal::Fallback(FallbackReason::PayloadUndecryptable))?;
        Ok((sym, client_static, payload))
    }
}

enum IkRefusal {
    Fallback(FallbackReason),
    Error(Error),
}

impl From<Error> for IkRefusal {
    fn from(e: Error) -> Self {
        Self::Error(e)
    }
}

/// A server that read an XX `ClientHello`, or an IK one it answers with XXfallback.
#[derive(Debug)]
pub struct ClientHelloReceived {
    config: Arc<ResponderConfig>,
    sym: SymmetricState,
    ephemeral: KeyPair,
    client_ephemeral: PublicKey,
    ee: Secret,
    es: Secret,
    fallback: Option<FallbackReason>,
}

impl ClientHelloReceived {
    /// The client's ephemeral key.
    pub fn client_ephemeral(&self) -> &PublicKey {
        &self.client_ephemeral
    }

    /// [`Pattern::Xx`] or [`Pattern::XxFallback`].
    pub fn pattern(&self) -> Pattern {
        match self.fallback {
            None => Pattern::Xx,
            Some(_) => Pattern::XxFallback,
        }
    }

    /// Why the IK hello was answered with XXfallback (`None` for XX).
    pub fn fallback_reason(&self) -> Option<FallbackReason> {
        self.fallback
    }

    /// Appends the `ServerHello` frame (ephemeral, encrypted static, encrypted chain);
    /// XXfallback's has the same shape as XX's.
    pub fn write_server_hello(self, out: &mut Vec<u8>) -> Result<AwaitingClientFinish> {
        let Self { config, mut sym, ephemeral, ee, es, .. } = self;
        sym.mix_hash(ephemeral.public.as_bytes());
        sym.mix_key(&ee);
        let static_ct = sym.encrypt_and_hash(config.static_key.public.as_bytes());
        sym.mix_key(&es);
        let payload_ct = sym.encrypt_and_hash(&config.cert_chain);
        encode_frame_into(&messages::server_hello(&ephemeral.public, static_ct, payload_ct), out)?;
        Ok(AwaitingClientFinish { sym, ephemeral })
    }
}

/// A server that accepted an IK `ClientHello`: the client proved its static key and
/// sent its `ClientPayload`.
#[derive(Debug)]
pub struct IkClientAuthenticated {
    config: Arc<ResponderConfig>,
    sym: SymmetricState,
    ephemeral: KeyPair,
    client_ephemeral: PublicKey,
    ee: Secret,
    se: Secret,
    finished: ClientFinished,
}

impl IkClientAuthenticated {
    /// The handshake hash so far.
    pub fn handshake_hash(&self) -> &[u8; 32] {
        &self.sym.h
    }

    /// The client's ephemeral key.
    pub fn client_ephemeral(&self) -> &PublicKey {
        &self.client_ephemeral
    }

    /// The client's static key and `ClientPayload`, already authenticated.
    pub fn client(&self) -> &ClientFinished {
        &self.finished
    }

    /// Appends the accepting `ServerHello` frame (ephemeral and the encrypted certificate
    /// chain, no static) and returns the transport; no further handshake message follows.
    pub fn write_server_hello(self, out: &mut Vec<u8>) -> Result<(Transport, ClientFinished)> {
        let Self { config, mut sym, ephemeral, ee, se, finished, .. } = self;
        sym.mix_hash(ephemeral.public.as_bytes());
        sym.mix_key(&ee);
        sym.mix_key(&se);
        let payload_ct = sym.encrypt_and_hash(&config.cert_chain);
        encode_frame_into(&messages::ik_server_hello(&ephemeral.public, payload_ct), out)?;
        let (client_write, client_read) = sym.split();
        Ok((Transport::new(&client_read.0, &client_write.0, sym.h), finished))
    }
}

/// A server waiting for the `ClientFinish` (XX or XXfallback).
#[derive(Debug)]
pub struct AwaitingClientFinish {
    sym: SymmetricState,
    ephemeral: KeyPair,
}

/// What the client proved and sent: in its `ClientFinish` (XX, XXfallback) or in its
/// `ClientHello` (IK).
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
