//! IK resume and its XXfallback answer, both roles: round trips, the fallback on a wrong
//! cached server key, every kind of tampering, and random input into every read step.

use bytes::BytesMut;
use proptest::prelude::*;
use prost::Message as _;
use wa_crypto::{KeyPair, PublicKey};

use super::{NOW, Pki, key};
use crate::messages::{self, IkCiphertexts};
use crate::symmetric::SymmetricState;
use crate::{
    ClientFinished, ClientHelloOutcome, ConnectionHeader, Error, ErrorKind, FallbackReason, FrameDecoder,
    HandshakeStage, IK_PROTOCOL_NAME, IkInitiator, IkServerHello, Initiator, PROTOCOL_NAME, Pattern,
    Responder, Transport, XX_FALLBACK_PROTOCOL_NAME,
};

const PAYLOAD: &[u8] = b"login ClientPayload";

/// A low-order Curve25519 point (u = 1): every DH with it is zero.
const LOW_ORDER: PublicKey = PublicKey::from_array({
    let mut u = [0u8; 32];
    u[0] = 1;
    u
});

fn ik_client(pki: &Pki, header: &ConnectionHeader, cached: PublicKey) -> IkInitiator {
    IkInitiator::new(pki.initiator_config(header.clone()), cached, key("client e"))
}

fn responder(pki: &Pki, header: &ConnectionHeader) -> Responder {
    // Signing the chain once keeps the thousands of tampered runs cheap.
    static CONFIG: std::sync::OnceLock<std::sync::Arc<crate::ResponderConfig>> = std::sync::OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        pki.responder_config(pki.builder().sign(&pki.root.private, &pki.intermediate.private))
    });
    assert_eq!(config.static_key, pki.server_static, "one test PKI");
    Responder::new(config.clone(), header, key("server e"))
}

/// One whole frame payload out of `wire`.
fn frame(dec: &mut FrameDecoder, wire: &[u8]) -> BytesMut {
    dec.push(wire);
    let f = dec.next_frame().expect("well-formed").expect("a whole frame");
    dec.finish().expect("nothing left over");
    f
}

/// Both transports work in both directions with fresh counters.
fn exchange(client: &mut Transport, server: &mut Transport) {
    let one_way = |from: &mut Transport, to: &mut Transport, text: &[u8]| {
        let mut wire = Vec::new();
        from.encrypt_frame(text, &mut wire).expect("encrypt");
        assert_eq!(&to.decrypt_frame(BytesMut::from(&wire[3..])).expect("decrypt")[..], text);
    };
    one_way(client, server, b"<iq/>");
    one_way(server, client, b"<success/>");
}

#[test]
fn protocol_names_initialize_as_noise_says() {
    // Names of at most 32 bytes are used as is, longer ones hashed (Noise §5.2).
    let plain = |name: &[u8]| SymmetricState::with_protocol_name(name, b"").h;
    assert_eq!(plain(PROTOCOL_NAME), wa_crypto::sha256(&[PROTOCOL_NAME, b""]));
    assert_eq!(plain(IK_PROTOCOL_NAME), wa_crypto::sha256(&[IK_PROTOCOL_NAME, b""]));
    let hashed = wa_crypto::sha256(&[XX_FALLBACK_PROTOCOL_NAME]);
    assert_eq!(plain(XX_FALLBACK_PROTOCOL_NAME), wa_crypto::sha256(&[&hashed, b""]));
    assert_eq!(SymmetricState::with_protocol_name(XX_FALLBACK_PROTOCOL_NAME, b"").ck, hashed);
    // WhatsApp's XX and IK names are the unpadded names plus four zero bytes.
    assert_eq!(plain(b"Noise_IK_25519_AESGCM_SHA256"), plain(IK_PROTOCOL_NAME));
    assert_eq!(Pattern::XxFallback.protocol_name(), b"Noise_XXfallback_25519_AESGCM_SHA256");
}

#[test]
fn ik_round_trip_with_every_intro() {
    let routed = ConnectionHeader::new().with_routing_info(vec![8, 8, 1, 2, 3]).expect("short");
    for header in [ConnectionHeader::new(), routed, ConnectionHeader::new().with_dict_version(2)] {
        let pki = Pki::new();
        let mut wire = Vec::new();
        let client = ik_client(&pki, &header, pki.server_static.public)
            .write_client_hello(PAYLOAD, &mut wire)
            .expect("hello");
        // The first WebSocket message: the intro, then one frame.
        let mut server_frames = FrameDecoder::server();
        let hello = frame(&mut server_frames, &wire);
        assert_eq!(server_frames.connection_header(), Some(&header));
        let parts = messages::parse_client_hello(&hello).expect("parses");
        let sealed = parts.resume.expect("IK fields");
        assert_eq!(sealed.static_ciphertext.len(), 48);
        assert_eq!(sealed.payload_ciphertext.len(), PAYLOAD.len() + 16);

        let outcome = responder(&pki, &header).read_client_hello(&hello).expect("read hello");
        assert_eq!(outcome.pattern(), Pattern::Ik);
        let ClientHelloOutcome::Resumed(server) = outcome else { panic!("IK not accepted") };
        assert_eq!(server.handshake_hash(), client.handshake_hash());
        assert_eq!(server.client_ephemeral(), &key("client e").public);
        let genuine =
            ClientFinished { client_static: key("client static").public, payload: PAYLOAD.to_vec() };
        assert_eq!(server.client(), &genuine);
        wire.clear();
        let (mut server_tx, finished) = server.write_server_hello(&mut wire).expect("server hello");
        assert_eq!(finished, genuine);

        let server_hello = frame(&mut FrameDecoder::client(), &wire);
        let hello_msg = wa_proto::HandshakeMessage::decode(&server_hello[..]).expect("decodes");
        assert!(
            hello_msg.server_hello.as_ref().is_some_and(|h| h.r#static.is_none()),
            "no static when accepting"
        );
        let IkServerHello::Resumed(resumed) = client.read_server_hello(&server_hello, NOW).expect("resumed")
        else {
            panic!("fallback instead of IK")
        };
        let mut client_tx = resumed.transport;
        assert_eq!(resumed.payload, pki.builder().sign(&pki.root.private, &pki.intermediate.private));
        assert_eq!(client_tx.handshake_hash(), server_tx.handshake_hash());
        assert_eq!(client_tx.keys, (server_tx.keys.1, server_tx.keys.0));
        exchange(&mut client_tx, &mut server_tx);
    }
}

/// An IK attempt with the cached server key `cached` and the client key pair
/// `static_key`, answered by the real server and finished by XXfallback; returns why the
/// server fell back and what it read from the ClientFinish.
fn fallback(
    pki: &Pki,
    cached: PublicKey,
    static_key: KeyPair,
) -> Result<(FallbackReason, ClientFinished), Error> {
    let header = ConnectionHeader::new();
    let mut config = pki.initiator_config(header.clone());
    config.static_key = static_key;
    let mut wire = Vec::new();
    let client = IkInitiator::new(config, cached, key("client e")).write_client_hello(PAYLOAD, &mut wire)?;
    let hello = frame(&mut FrameDecoder::server(), &wire);
    let outcome = responder(pki, &header).read_client_hello(&hello)?;
    assert_eq!(outcome.pattern(), Pattern::XxFallback);
    let ClientHelloOutcome::Full(server) = outcome else { panic!("accepted IK with a wrong key") };
    let reason = server.fallback_reason().expect("a fallback says why");
    wire.clear();
    let server = server.write_server_hello(&mut wire)?;
    let IkServerHello::Fallback(client) = client.read_server_hello(&wire[3..], NOW)? else {
        panic!("the client resumed although the server fell back")
    };
    assert_eq!(client.server_static(), &pki.server_static.public, "the fresh key to cache");
    assert_eq!(client.handshake_hash(), server.handshake_hash());
    wire.clear();
    let mut client_tx = client.write_client_finish(PAYLOAD, &mut wire)?;
    let (mut server_tx, finished) = server.read_client_finish(&wire[3..])?;
    assert_eq!(client_tx.handshake_hash(), server_tx.handshake_hash());
    exchange(&mut client_tx, &mut server_tx);
    Ok((reason, finished))
}

#[test]
fn wrong_cached_server_static_falls_back_to_xx() {
    let pki = Pki::new();
    let (reason, finished) =
        fallback(&pki, key("rotated server static").public, key("client static")).expect("ok");
    assert_eq!(reason, FallbackReason::UnknownServerStatic);
    assert_eq!(
        finished,
        ClientFinished { client_static: key("client static").public, payload: PAYLOAD.to_vec() }
    );
}

#[test]
fn xxfallback_is_not_xx() {
    // The same keys through XX give another transcript: the protocol name is in it.
    let pki = Pki::new();
    let header = ConnectionHeader::new();
    let mut wire = Vec::new();
    let xx_client = Initiator::new(pki.initiator_config(header.clone()), key("client e"))
        .write_client_hello(&mut wire)
        .expect("hi");
    let hello = frame(&mut FrameDecoder::server(), &wire);
    let ClientHelloOutcome::Full(xx_server) =
        responder(&pki, &header).read_client_hello(&hello).expect("read")
    else {
        panic!("XX hello")
    };
    assert_eq!(xx_server.pattern(), Pattern::Xx);
    assert_eq!(xx_server.fallback_reason(), None);
    wire.clear();
    let xx_server = xx_server.write_server_hello(&mut wire).expect("server hello");

    let mut ik_wire = Vec::new();
    let ik =
        ik_client(&pki, &header, key("stale").public).write_client_hello(PAYLOAD, &mut ik_wire).expect("hi");
    let ik_hello = frame(&mut FrameDecoder::server(), &ik_wire);
    let ClientHelloOutcome::Full(fb_server) =
        responder(&pki, &header).read_client_hello(&ik_hello).expect("read")
    else {
        panic!("fallback")
    };
    let mut fb_wire = Vec::new();
    let fb_server = fb_server.write_server_hello(&mut fb_wire).expect("server hello");
    assert_ne!(fb_server.handshake_hash(), xx_server.handshake_hash());
    // Same ephemeral keys, same shape, different ciphertexts.
    assert_eq!(fb_wire.len(), wire.len());
    assert_ne!(fb_wire, wire);
    // Neither client accepts the other pattern's answer.
    let err = xx_client.read_server_hello(&fb_wire[3..], NOW).expect_err("XX client, XXfallback answer");
    assert!(matches!(err, Error::HandshakeBadTag { stage: HandshakeStage::ServerHello }), "{err}");
    let err = ik.read_server_hello(&wire[3..], NOW).expect_err("IK client, plain XX answer");
    assert!(matches!(err, Error::HandshakeBadTag { stage: HandshakeStage::ServerHello }), "{err}");
}

#[test]
fn a_client_without_its_static_private_key_is_refused() {
    // It names "client static" but holds another private key: the server cannot open the
    // payload (ss), falls back, and the ClientFinish does not authenticate (se).
    let pki = Pki::new();
    let impostor = KeyPair { private: key("impostor").private, public: key("client static").public };
    let err = fallback(&pki, pki.server_static.public, impostor).expect_err("refused");
    assert!(matches!(err, Error::HandshakeBadTag { stage: HandshakeStage::ClientFinish }), "{err}");

    let mut wire = Vec::new();
    let mut config = pki.initiator_config(ConnectionHeader::new());
    config.static_key = KeyPair { private: key("impostor").private, public: key("client static").public };
    IkInitiator::new(config, pki.server_static.public, key("client e"))
        .write_client_hello(PAYLOAD, &mut wire)
        .expect("hello");
    let outcome = responder(&pki, &ConnectionHeader::new()).read_client_hello(&wire[7..]).expect("read");
    let ClientHelloOutcome::Full(hello) = outcome else { panic!("accepted an impostor") };
    assert_eq!(hello.fallback_reason(), Some(FallbackReason::PayloadUndecryptable));
}

#[test]
fn low_order_keys_are_refused() {
    let pki = Pki::new();
    let header = ConnectionHeader::new();
    // Our own cache holds a low-order "server key".
    let err =
        ik_client(&pki, &header, LOW_ORDER).write_client_hello(PAYLOAD, &mut Vec::new()).expect_err("weak");
    assert!(matches!(err, Error::WeakKey { stage: HandshakeStage::ClientHello }), "{err}");

    // A client ephemeral of low order in an IK hello.
    let sealed = messages::ik_client_hello(&LOW_ORDER, vec![0; 48], vec![0; 16]);
    let err = responder(&pki, &header).read_client_hello(&sealed).expect_err("weak");
    assert!(matches!(err, Error::WeakKey { stage: HandshakeStage::ClientHello }), "{err}");

    // A low-order client static, sealed properly under our key.
    let mut config = pki.initiator_config(header.clone());
    config.static_key = KeyPair { private: key("client static").private, public: LOW_ORDER };
    let mut wire = Vec::new();
    IkInitiator::new(config, pki.server_static.public, key("client e"))
        .write_client_hello(PAYLOAD, &mut wire)
        .expect("hello");
    let err = responder(&pki, &header).read_client_hello(&wire[7..]).expect_err("weak");
    assert!(matches!(err, Error::WeakKey { stage: HandshakeStage::ClientHello }), "{err}");
    assert_eq!(err.kind(), ErrorKind::Crypto);

    // A low-order server ephemeral in an accepting ServerHello.
    let mut wire = Vec::new();
    let client = ik_client(&pki, &header, pki.server_static.public)
        .write_client_hello(PAYLOAD, &mut wire)
        .expect("hi");
    let err =
        client.read_server_hello(&messages::ik_server_hello(&LOW_ORDER, vec![0; 40]), NOW).expect_err("weak");
    assert!(matches!(err, Error::WeakKey { stage: HandshakeStage::ServerHello }), "{err}");
}

#[test]
fn malformed_ik_messages_are_typed_errors() {
    let pki = Pki::new();
    let header = ConnectionHeader::new();
    let e = key("client e").public;
    let hello = |s: Option<usize>, p: Option<usize>| {
        wa_proto::HandshakeMessage {
            client_hello: Some(wa_proto::handshake_message::ClientHello {
                ephemeral: Some(e.as_bytes().to_vec()),
                r#static: s.map(|n| vec![7; n]),
                payload: p.map(|n| vec![7; n]),
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec()
    };
    let read = |m: Vec<u8>| responder(&pki, &header).read_client_hello(&m).map(|o| o.pattern());
    // (static length, payload length, the field blamed, its length if present)
    let cases = [
        (Some(48), None, "clientHello.payload", None),
        (None, Some(40), "clientHello.static", None),
        (Some(47), Some(40), "clientHello.static", Some(47)),
        (Some(49), Some(40), "clientHello.static", Some(49)),
        (Some(48), Some(15), "clientHello.payload", Some(15)),
    ];
    for (s, p, field, len) in cases {
        let err = read(hello(s, p)).expect_err("malformed");
        let blamed = match (&err, len) {
            (Error::MissingField { field: f, .. }, None) => *f == field,
            (Error::BadLength { field: f, got, .. }, Some(n)) => *f == field && *got == n,
            _ => false,
        };
        assert!(blamed, "{s:?}/{p:?}: {err:?}");
        assert_eq!(err.kind(), ErrorKind::Malformed);
    }
    // Well-formed but sealed to nobody: answered with XXfallback, not refused.
    assert_eq!(read(hello(Some(48), Some(16))).expect("falls back"), Pattern::XxFallback);
    assert_eq!(read(hello(None, None)).expect("XX"), Pattern::Xx);

    // The accepting ServerHello without its payload or ephemeral.
    let server_hello = |eph: bool, payload: bool| {
        wa_proto::HandshakeMessage {
            server_hello: Some(wa_proto::handshake_message::ServerHello {
                ephemeral: eph.then(|| key("server e").public.as_bytes().to_vec()),
                payload: payload.then(|| vec![1; 32]),
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec()
    };
    for (eph, payload, field) in [
        (true, false, "serverHello.payload"),
        (false, true, "serverHello.ephemeral"),
        (false, false, "serverHello.ephemeral"),
    ] {
        let client = ik_client(&pki, &header, pki.server_static.public)
            .write_client_hello(PAYLOAD, &mut Vec::new())
            .expect("hello");
        let err = client.read_server_hello(&server_hello(eph, payload), NOW).expect_err("malformed");
        assert!(matches!(&err, Error::MissingField { field: f, .. } if *f == field), "{err:?}");
    }
    // A fallback ServerHello whose static is the wrong size.
    let client = ik_client(&pki, &header, pki.server_static.public)
        .write_client_hello(PAYLOAD, &mut Vec::new())
        .expect("hi");
    let bad = messages::server_hello(&key("server e").public, vec![0; 47], vec![0; 16]);
    let err = client.read_server_hello(&bad, NOW).expect_err("malformed");
    assert!(matches!(err, Error::BadLength { field: "serverHello.static", .. }), "{err:?}");
}

// ------------------------------------------------------------------------ tampering

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    /// The IK ClientHello.
    Hello,
    /// The ServerHello (accepting, or XXfallback's).
    ServerHello,
    /// XXfallback's ClientFinish.
    Finish,
}

#[derive(Debug)]
struct Done {
    pattern: Pattern,
    client: Transport,
    server: Transport,
    finished: ClientFinished,
}

/// An IK attempt (with the right cached key, or a stale one) whose message at `step` is
/// altered by `tamper`; returns the first error, or what completed.
fn run(right_key: bool, step: Step, tamper: &dyn Fn(&[u8]) -> Vec<u8>) -> Result<Done, Error> {
    let pki = Pki::new();
    let header = ConnectionHeader::new();
    let maybe = |s: Step, m: &[u8]| if s == step { tamper(m) } else { m.to_vec() };
    let cached = if right_key { pki.server_static.public } else { key("stale").public };
    let mut wire = Vec::new();
    let client = ik_client(&pki, &header, cached).write_client_hello(PAYLOAD, &mut wire)?;
    let hello = maybe(Step::Hello, &wire[7..]);
    let outcome = responder(&pki, &header).read_client_hello(&hello)?;
    wire.clear();
    let pattern = outcome.pattern();
    let server = match outcome {
        ClientHelloOutcome::Resumed(server) => {
            let (server_tx, finished) = server.write_server_hello(&mut wire)?;
            Err((server_tx, finished))
        }
        ClientHelloOutcome::Full(server) => Ok(server.write_server_hello(&mut wire)?),
    };
    let server_hello = maybe(Step::ServerHello, &wire[3..]);
    match (client.read_server_hello(&server_hello, NOW)?, server) {
        (IkServerHello::Resumed(r), Err((server, finished))) => {
            Ok(Done { pattern, client: r.transport, server, finished })
        }
        (IkServerHello::Fallback(client), Ok(server)) => {
            wire.clear();
            let client_tx = client.write_client_finish(PAYLOAD, &mut wire)?;
            let finish = maybe(Step::Finish, &wire[3..]);
            let (server_tx, finished) = server.read_client_finish(&finish)?;
            Ok(Done { pattern, client: client_tx, server: server_tx, finished })
        }
        (IkServerHello::Resumed(_), Ok(_)) => panic!("client resumed, server fell back"),
        (IkServerHello::Fallback(_), Err(_)) => panic!("client fell back, server resumed"),
    }
}

fn flip(bytes: &[u8], bit: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[bit / 8] ^= 1 << (bit % 8);
    out
}

fn steps(right_key: bool) -> &'static [Step] {
    if right_key {
        &[Step::Hello, Step::ServerHello]
    } else {
        &[Step::Hello, Step::ServerHello, Step::Finish]
    }
}

/// A tampered run that completed anyway is acceptable only as a complete, genuine
/// XXfallback after an altered IK hello: the IK ciphertexts are not in its transcript.
fn check_completed(step: Step, what: &str, done: Done) {
    assert_eq!(step, Step::Hello, "{what}: tampering with {step:?} went unnoticed");
    assert_eq!(done.pattern, Pattern::XxFallback, "{what}: altered IK hello accepted as IK");
    let genuine = ClientFinished { client_static: key("client static").public, payload: PAYLOAD.to_vec() };
    assert_eq!(done.finished, genuine, "{what}");
    let (mut client, mut server) = (done.client, done.server);
    exchange(&mut client, &mut server);
}

#[test]
fn untampered_runs_complete_with_the_expected_pattern() {
    let done = run(true, Step::Hello, &|m: &[u8]| m.to_vec()).expect("IK");
    assert_eq!(done.pattern, Pattern::Ik);
    let done = run(false, Step::Hello, &|m: &[u8]| m.to_vec()).expect("fallback");
    assert_eq!(done.pattern, Pattern::XxFallback);
    let (mut c, mut s) = (done.client, done.server);
    exchange(&mut c, &mut s);
}

/// Flips every bit of the message at `step`, one at a time.
fn flips(right_key: bool, step: Step) {
    let len = std::cell::Cell::new(0);
    run(right_key, step, &|m: &[u8]| {
        len.set(m.len());
        m.to_vec()
    })
    .expect("untampered run completes");
    let mut kinds = std::collections::BTreeMap::new();
    for bit in 0..len.get() * 8 {
        let what = format!("right_key={right_key} {step:?} bit {bit}");
        match run(right_key, step, &|m: &[u8]| flip(m, bit)) {
            Ok(done) => {
                check_completed(step, &what, done);
                *kinds.entry("fallback").or_insert(0) += 1;
            }
            Err(e) => {
                assert_ne!(e.kind(), ErrorKind::Local, "{what}: {e}");
                *kinds.entry(if e.kind() == ErrorKind::Crypto { "crypto" } else { "other" }).or_insert(0) +=
                    1;
            }
        }
    }
    // Bits in keys and ciphertexts fail authentication (or, in the IK hello, make the
    // server fall back); bits in the protobuf structure fail parsing.
    assert!(kinds.contains_key("crypto"), "{kinds:?}");
    assert!(kinds.contains_key("other"), "{kinds:?}");
    if step == Step::Hello {
        assert!(kinds.contains_key("fallback"), "{kinds:?}");
    }
}

#[test]
fn every_flipped_bit_in_an_accepted_ik_hello() {
    flips(true, Step::Hello);
}

#[test]
fn every_flipped_bit_in_an_accepting_server_hello() {
    flips(true, Step::ServerHello);
}

#[test]
fn every_flipped_bit_in_an_ik_hello_that_falls_back() {
    flips(false, Step::Hello);
}

#[test]
fn every_flipped_bit_in_a_fallback_server_hello() {
    flips(false, Step::ServerHello);
}

#[test]
fn every_flipped_bit_in_a_fallback_client_finish() {
    flips(false, Step::Finish);
}

#[test]
fn truncated_and_extended_messages_fail_or_fall_back_cleanly() {
    for right_key in [true, false] {
        for &step in steps(right_key) {
            let len = std::cell::Cell::new(0);
            run(right_key, step, &|m: &[u8]| {
                len.set(m.len());
                m.to_vec()
            })
            .expect("untampered");
            for cut in 0..len.get() {
                let what = format!("right_key={right_key} {step:?} cut at {cut}");
                if let Ok(done) = run(right_key, step, &|m: &[u8]| m[..cut].to_vec()) {
                    check_completed(step, &what, done);
                }
            }
            let outcome = run(right_key, step, &|m: &[u8]| [m, &[0x00]].concat());
            assert!(outcome.is_err(), "right_key={right_key} {step:?} with a trailing zero byte");
        }
    }
}

// ------------------------------------------------------------------------ random input

/// The states before each read step, built from fixed keys.
struct States {
    pki: Pki,
}

impl States {
    fn responder(&self) -> Responder {
        responder(&self.pki, &ConnectionHeader::new())
    }

    fn ik_client(&self, cached: PublicKey) -> crate::AwaitingIkServerHello {
        ik_client(&self.pki, &ConnectionHeader::new(), cached)
            .write_client_hello(PAYLOAD, &mut Vec::new())
            .expect("hello")
    }

    fn xx_client(&self) -> crate::AwaitingServerHello {
        Initiator::new(self.pki.initiator_config(ConnectionHeader::new()), key("client e"))
            .write_client_hello(&mut Vec::new())
            .expect("hello")
    }

    /// A server waiting for a ClientFinish after XX (`ik = false`) or XXfallback.
    fn awaiting_finish(&self, ik: bool) -> crate::AwaitingClientFinish {
        let mut wire = Vec::new();
        if ik {
            ik_client(&self.pki, &ConnectionHeader::new(), key("stale").public)
                .write_client_hello(PAYLOAD, &mut wire)
                .expect("hello");
        } else {
            Initiator::new(self.pki.initiator_config(ConnectionHeader::new()), key("client e"))
                .write_client_hello(&mut wire)
                .expect("hello");
        }
        let ClientHelloOutcome::Full(server) = self.responder().read_client_hello(&wire[7..]).expect("read")
        else {
            panic!("not a full handshake")
        };
        server.write_server_hello(&mut Vec::new()).expect("server hello")
    }
}

fn ik_hello_bytes(e: &[u8], s: Vec<u8>, p: Vec<u8>) -> Vec<u8> {
    wa_proto::HandshakeMessage {
        client_hello: Some(wa_proto::handshake_message::ClientHello {
            ephemeral: Some(e.to_vec()),
            r#static: Some(s),
            payload: Some(p),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Random bytes into every read step: typed errors, never a panic; no random bytes
    /// ever authenticate.
    #[test]
    fn random_bytes_into_every_read_step(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        let st = States { pki: Pki::new() };
        match st.responder().read_client_hello(&data) {
            Ok(outcome) => prop_assert_ne!(outcome.pattern(), Pattern::Ik),
            Err(e) => prop_assert_ne!(e.kind(), ErrorKind::Local),
        }
        prop_assert!(st.xx_client().read_server_hello(&data, NOW).is_err());
        prop_assert!(st.ik_client(st.pki.server_static.public).read_server_hello(&data, NOW).is_err());
        prop_assert!(st.ik_client(key("stale").public).read_server_hello(&data, NOW).is_err());
        prop_assert!(st.awaiting_finish(false).read_client_finish(&data).is_err());
        prop_assert!(st.awaiting_finish(true).read_client_finish(&data).is_err());
    }

    /// Well-formed IK hellos with random contents are never accepted: XXfallback, or a
    /// typed refusal of a low-order ephemeral.
    #[test]
    fn random_ik_hellos_fall_back(
        e in any::<[u8; 32]>(),
        s in proptest::collection::vec(any::<u8>(), 48..=48),
        p in proptest::collection::vec(any::<u8>(), 16..200),
    ) {
        let st = States { pki: Pki::new() };
        match st.responder().read_client_hello(&ik_hello_bytes(&e, s, p)) {
            Ok(ClientHelloOutcome::Full(hello)) => {
                prop_assert_eq!(hello.fallback_reason(), Some(FallbackReason::UnknownServerStatic));
            }
            Ok(ClientHelloOutcome::Resumed(_)) => prop_assert!(false, "random IK hello accepted"),
            Err(err) => prop_assert!(matches!(err, Error::WeakKey { .. }), "{}", err),
        }
    }

    /// Genuine messages with random bytes overwritten: typed errors or a clean fallback.
    #[test]
    fn edited_messages_fail_or_fall_back_cleanly(
        right_key in any::<bool>(),
        step in 0usize..3,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let step = steps(right_key)[step % steps(right_key).len()];
        let changed = std::cell::Cell::new(false);
        let edit = |m: &[u8]| {
            let mut out = m.to_vec();
            for (i, b) in &edits {
                let at = i.index(out.len());
                out[at] = *b;
            }
            changed.set(out != m);
            out
        };
        match run(right_key, step, &edit) {
            // Every edit wrote the byte that was already there.
            Ok(done) if !changed.get() => {
                prop_assert_eq!(done.pattern, if right_key { Pattern::Ik } else { Pattern::XxFallback });
            }
            Ok(done) => check_completed(step, "edited", done),
            Err(e) => prop_assert_ne!(e.kind(), ErrorKind::Local),
        }
    }
}

#[test]
fn ik_ciphertexts_parse_into_their_own_struct() {
    let sealed = IkCiphertexts { static_ciphertext: vec![1; 48], payload_ciphertext: vec![2; 16] };
    let bytes = messages::ik_client_hello(
        &key("e").public,
        sealed.static_ciphertext.clone(),
        sealed.payload_ciphertext.clone(),
    );
    let parts = messages::parse_client_hello(&bytes).expect("parses");
    assert_eq!(parts.ephemeral, key("e").public);
    assert_eq!(parts.resume, Some(sealed));
}
