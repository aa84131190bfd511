//! One client connection's wire protocol, sans-I/O: the intro, the Noise responder (XX;
//! IK resumes; XXfallback for an IK hello sealed to another server key), then encrypted
//! binary nodes. Bytes go in, events and bytes come out; the tokio shell in `server` only
//! moves them between the WebSocket and this state machine.

use std::sync::Arc;

use rand_core::CryptoRng;
use wa_binary::{Decoder, Encoder, Node, token::Dictionary};
use wa_crypto::KeyPair;
use wa_noise::{
    AwaitingClientFinish, ClientFinished, ClientHelloOutcome, FrameDecoder, Pattern, Responder,
    ResponderConfig, Transport,
};

/// What the connection produced from received bytes.
#[derive(Debug)]
pub enum SessionEvent {
    /// Bytes to write to the client (handshake messages).
    Send(Vec<u8>),
    /// The handshake completed: the client's static key and `ClientPayload` (the same
    /// whichever pattern carried them).
    Handshaken(ClientFinished),
    /// A decrypted, decoded node.
    Node(Box<Node>),
}

/// Why a connection must be dropped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// Framing, handshake or transport failure.
    #[error("noise: {0}")]
    Noise(#[from] wa_noise::Error),
    /// A decrypted frame is not a valid binary node.
    #[error("binary node: {0}")]
    Decode(#[from] wa_binary::DecodeError),
    /// A node could not be encoded.
    #[error("encode: {0}")]
    Encode(#[from] wa_binary::EncodeError),
    /// The intro names a token dictionary we do not have.
    #[error("unsupported dictionary version {0}")]
    UnsupportedDictionary(u8),
    /// A node was to be sent before the handshake finished.
    #[error("the handshake has not finished")]
    NotReady,
    /// Bytes arrived after the connection failed.
    #[error("the connection already failed")]
    Failed,
}

enum State {
    Intro,
    Finish(Box<AwaitingClientFinish>),
    Transport(Box<Transport>),
    Failed,
}

/// The server side of one connection.
pub struct ServerSession {
    responder: Arc<ResponderConfig>,
    frames: FrameDecoder,
    state: State,
    dict: &'static Dictionary,
    pattern: Option<Pattern>,
}

impl std::fmt::Debug for ServerSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Intro => "intro",
            State::Finish(_) => "awaiting-client-finish",
            State::Transport(_) => "transport",
            State::Failed => "failed",
        };
        f.debug_struct("ServerSession").field("state", &state).field("pattern", &self.pattern).finish()
    }
}

impl ServerSession {
    /// A connection that has received nothing yet.
    pub fn new(responder: Arc<ResponderConfig>) -> Self {
        Self {
            responder,
            frames: FrameDecoder::server().with_max_frame_len(8 << 20),
            state: State::Intro,
            dict: &wa_binary::token::V3,
            pattern: None,
        }
    }

    /// The Noise pattern the client's hello led to (`None` before it arrives).
    pub fn pattern(&self) -> Option<Pattern> {
        self.pattern
    }

    /// The edge routing info of the client's intro (`ED 00 01 len routing`), if it had one.
    pub fn routing_info(&self) -> Option<&[u8]> {
        self.frames.connection_header().and_then(|h| h.routing_info())
    }

    /// Whether the handshake has completed.
    pub fn is_established(&self) -> bool {
        matches!(self.state, State::Transport(_))
    }

    /// The dictionary version the client announced (3 before the intro arrives).
    pub fn dict_version(&self) -> u8 {
        self.dict.version()
    }

    /// Feeds received bytes; `rng` draws the server's ephemeral key.
    pub fn receive<R: CryptoRng + ?Sized>(
        &mut self,
        bytes: &[u8],
        rng: &mut R,
    ) -> Result<Vec<SessionEvent>, SessionError> {
        if matches!(self.state, State::Failed) {
            return Err(SessionError::Failed);
        }
        self.frames.push(bytes);
        let mut events = Vec::new();
        let result = self.drain(&mut events, rng);
        if result.is_err() {
            self.state = State::Failed;
        }
        result.map(|()| events)
    }

    fn drain<R: CryptoRng + ?Sized>(
        &mut self,
        events: &mut Vec<SessionEvent>,
        rng: &mut R,
    ) -> Result<(), SessionError> {
        while let Some(frame) = self.frames.next_frame()? {
            match std::mem::replace(&mut self.state, State::Failed) {
                State::Intro => {
                    let header = self.frames.connection_header().cloned().unwrap_or_default();
                    self.dict = Dictionary::for_version(header.dict_version())
                        .ok_or(SessionError::UnsupportedDictionary(header.dict_version()))?;
                    let responder = Responder::new(self.responder.clone(), &header, KeyPair::generate(rng));
                    let hello = responder.read_client_hello(&frame)?;
                    self.pattern = Some(hello.pattern());
                    let mut out = Vec::new();
                    match hello {
                        // XX, or XXfallback when an IK hello was sealed to another server
                        // key: WA Web and whatsapp-rust (`wacore/noise/src/handshake.rs`,
                        // `XxFallbackHandshakeState`) then send a ClientFinish as in XX.
                        ClientHelloOutcome::Full(hello) => {
                            if let Some(reason) = hello.fallback_reason() {
                                tracing::debug!(
                                    ?reason,
                                    "IK hello not decryptable: answering with XXfallback"
                                );
                            }
                            let next = hello.write_server_hello(&mut out)?;
                            events.push(SessionEvent::Send(out));
                            self.state = State::Finish(Box::new(next));
                        }
                        // IK resume (whatsapp-rust `src/handshake.rs` `run_ik_handshake`, as
                        // WA Web): the login payload came in the hello and no ClientFinish
                        // follows, so the login is handled right after the ServerHello.
                        ClientHelloOutcome::Resumed(hello) => {
                            let (transport, finished) = hello.write_server_hello(&mut out)?;
                            events.push(SessionEvent::Send(out));
                            events.push(SessionEvent::Handshaken(finished));
                            self.state = State::Transport(Box::new(transport));
                        }
                    }
                }
                State::Finish(awaiting) => {
                    let (transport, finished) = awaiting.read_client_finish(&frame)?;
                    events.push(SessionEvent::Handshaken(finished));
                    self.state = State::Transport(Box::new(transport));
                }
                State::Transport(mut transport) => {
                    let plain = transport.decrypt_frame(frame);
                    self.state = State::Transport(transport);
                    let plain = plain?;
                    let node = Decoder::new(self.dict).decode_frame(&plain)?;
                    events.push(SessionEvent::Node(Box::new(node)));
                }
                State::Failed => return Err(SessionError::Failed),
            }
        }
        Ok(())
    }

    /// Encodes and encrypts `node` as one frame (`len24 ‖ ciphertext`).
    pub fn encrypt_node(&mut self, node: &Node) -> Result<Vec<u8>, SessionError> {
        let plain = Encoder::new(self.dict).encode(node)?;
        self.encrypt_plaintext(&plain)
    }

    /// Encrypts an already encoded frame plaintext (flags byte + node).
    pub fn encrypt_plaintext(&mut self, plain: &[u8]) -> Result<Vec<u8>, SessionError> {
        let State::Transport(transport) = &mut self.state else {
            return Err(SessionError::NotReady);
        };
        let mut out = Vec::with_capacity(plain.len() + 19);
        transport.encrypt_frame(plain, &mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use prost::Message as _;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use wa_crypto::KeyPair;
    use wa_noise::{
        CertVerifier, ClientProfile, ConnectionHeader, FrameDecoder, IkInitiator, IkServerHello, Initiator,
        InitiatorConfig,
    };

    use super::*;
    use crate::clock::ManualClock;
    use crate::world::{ConnCommand, World};

    /// The whole registration path without a socket: client bytes into the session, the
    /// handshake into the world, the `pair-device` iq out of the connection's mailbox.
    #[test]
    fn registration_without_sockets() {
        let mut rng = StdRng::seed_from_u64(4);
        let clock = ManualClock::new(1_800_000_000);
        let keys = crate::ServerKeys::generate(&mut rng, 1_800_000_000);
        let root = keys.root_public_key();
        let mut session = ServerSession::new(keys.responder());
        let mut world = World::new(StdRng::seed_from_u64(5), Arc::new(clock), keys, 3);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let conn = world.connect(tx);

        let config = InitiatorConfig {
            header: ConnectionHeader::new(),
            static_key: KeyPair::generate(&mut rng),
            verifier: CertVerifier::new(root),
        };
        let mut out = Vec::new();
        let hs = Initiator::new(config, KeyPair::generate(&mut rng)).write_client_hello(&mut out).unwrap();
        // Split the first message to show the session buffers partial input.
        assert!(session.receive(&out[..5], &mut rng).unwrap().is_empty());
        let events = session.receive(&out[5..], &mut rng).unwrap();
        let [SessionEvent::Send(server_hello)] = events.as_slice() else { panic!("{events:?}") };
        let mut frames = FrameDecoder::client();
        frames.push(server_hello);
        let hs = hs.read_server_hello(&frames.next_frame().unwrap().unwrap(), 1_800_000_000).unwrap();

        let identity = KeyPair::generate(&mut rng);
        let spk = KeyPair::generate(&mut rng);
        let reg = wa_noise::RegistrationKeys {
            registration_id: 42,
            identity_key: identity.public,
            signed_pre_key_id: 1,
            signed_pre_key: spk.public,
            signed_pre_key_signature: identity.private.sign(&spk.public.to_djb()),
        };
        let props = wa_noise::payload::device_props(
            "test",
            [0, 1, 0],
            wa_proto::device_props::PlatformType::Chrome,
            false,
        );
        let payload = ClientProfile::default().registration(&reg, &props).encode_to_vec();
        let mut out = Vec::new();
        let _transport = hs.write_client_finish(&payload, &mut out).unwrap();
        let events = session.receive(&out, &mut rng).unwrap();
        let [SessionEvent::Handshaken(finished)] = events.as_slice() else { panic!("{events:?}") };
        world.on_handshake(conn, finished);
        let Ok(ConnCommand::Node(node)) = rx.try_recv() else { panic!("no node") };
        let refs = node.child("pair-device").unwrap().children_by_tag("ref").count();
        assert_eq!(refs, 3);
        assert!(session.is_established());
        // Garbage after the handshake kills the session, and it stays dead.
        assert!(session.receive(&[0, 0, 3, 1, 2, 3], &mut rng).is_err());
        assert!(matches!(session.receive(&[0], &mut rng), Err(SessionError::Failed)));
    }

    /// IK and XXfallback give the world the same `ClientFinished` XX would, and the
    /// session's transport then carries nodes both ways.
    #[test]
    fn ik_and_xxfallback_without_sockets() {
        let mut rng = StdRng::seed_from_u64(6);
        let keys = crate::ServerKeys::generate(&mut rng, 1_800_000_000);
        let (root, server_static) = (keys.root_public_key(), keys.static_public_key());
        let responder = keys.responder();
        let noise = KeyPair::generate(&mut rng);
        let config = |noise: &KeyPair| InitiatorConfig {
            header: ConnectionHeader::new(),
            static_key: noise.clone(),
            verifier: CertVerifier::new(root),
        };
        let payload = ClientProfile::default().login("15551234567".parse().unwrap(), 1).encode_to_vec();
        let expected = ClientFinished { client_static: noise.public, payload: payload.clone() };
        let server_hello = |bytes: &[u8]| {
            let mut frames = FrameDecoder::client();
            frames.push(bytes);
            frames.next_frame().unwrap().unwrap()
        };

        // IK with the right key: ServerHello and the login in one go.
        let mut session = ServerSession::new(responder.clone());
        let mut out = Vec::new();
        let hs = IkInitiator::new(config(&noise), server_static, KeyPair::generate(&mut rng))
            .write_client_hello(&payload, &mut out)
            .unwrap();
        let events = session.receive(&out, &mut rng).unwrap();
        let [SessionEvent::Send(hello), SessionEvent::Handshaken(finished)] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!(finished, &expected);
        assert_eq!(session.pattern(), Some(Pattern::Ik));
        assert!(session.is_established());
        let IkServerHello::Resumed(resumed) =
            hs.read_server_hello(&server_hello(hello), 1_800_000_000).unwrap()
        else {
            panic!("not resumed")
        };
        let mut client = resumed.transport;
        let frame = session.encrypt_node(&wa_binary::Node::new("success")).unwrap();
        let plain = client.decrypt_frame(bytes::BytesMut::from(&frame[3..])).unwrap();
        assert_eq!(wa_binary::decode_frame(&plain).unwrap().tag, "success");
        let mut up = Vec::new();
        client.encrypt_frame(&wa_binary::encode(&wa_binary::Node::new("iq")).unwrap(), &mut up).unwrap();
        let events = session.receive(&up, &mut rng).unwrap();
        assert!(matches!(events.as_slice(), [SessionEvent::Node(n)] if n.tag == "iq"), "{events:?}");

        // IK with a stale key: XXfallback, then the ClientFinish carries the same login.
        let mut session = ServerSession::new(responder);
        let mut out = Vec::new();
        let stale = KeyPair::generate(&mut rng).public;
        let hs = IkInitiator::new(config(&noise), stale, KeyPair::generate(&mut rng))
            .write_client_hello(&payload, &mut out)
            .unwrap();
        let events = session.receive(&out, &mut rng).unwrap();
        let [SessionEvent::Send(hello)] = events.as_slice() else { panic!("{events:?}") };
        assert_eq!(session.pattern(), Some(Pattern::XxFallback));
        assert!(!session.is_established());
        let IkServerHello::Fallback(hs) = hs.read_server_hello(&server_hello(hello), 1_800_000_000).unwrap()
        else {
            panic!("not a fallback")
        };
        assert_eq!(hs.server_static(), &server_static);
        let mut out = Vec::new();
        let _transport = hs.write_client_finish(&payload, &mut out).unwrap();
        let events = session.receive(&out, &mut rng).unwrap();
        let [SessionEvent::Handshaken(finished)] = events.as_slice() else { panic!("{events:?}") };
        assert_eq!(finished, &expected);
        assert!(session.is_established());
    }
}
