//! A flipped bit anywhere in any handshake message or transport frame ends in a typed
//! error (never a panic, never a completed handshake).

use bytes::BytesMut;

use super::{NOW, Pki, key, xx};
use crate::{ConnectionHeader, Error, ErrorKind, FrameDecoder, Initiator, Responder, Transport};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    ClientHello,
    ServerHello,
    ClientFinish,
}

fn flip(bytes: &[u8], bit: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[bit / 8] ^= 1 << (bit % 8);
    out
}

/// The handshake with the frame payload of `target` altered by `tamper`; returns the
/// first error, or the two transports if it (wrongly) completed.
fn run(target: Target, tamper: &dyn Fn(&[u8]) -> Vec<u8>) -> Result<(Transport, Transport), Error> {
    let pki = Pki::new();
    let config = pki.responder_config(pki.builder().sign(&pki.root.private, &pki.intermediate.private));
    let header = ConnectionHeader::new();
    let maybe = |t: Target, msg: &[u8]| if t == target { tamper(msg) } else { msg.to_vec() };

    let mut wire = Vec::new();
    let client = Initiator::new(pki.initiator_config(header.clone()), key("client e"))
        .write_client_hello(&mut wire)?;
    let hello = maybe(Target::ClientHello, &wire[7..]);
    let server = xx(Responder::new(config, &header, key("server e")).read_client_hello(&hello)?);
    wire.clear();
    let server = server.write_server_hello(&mut wire)?;
    let server_hello = maybe(Target::ServerHello, &wire[3..]);
    let client = client.read_server_hello(&server_hello, NOW)?;
    wire.clear();
    let client_tx = client.write_client_finish(b"payload", &mut wire)?;
    let finish = maybe(Target::ClientFinish, &wire[3..]);
    let (server_tx, _) = server.read_client_finish(&finish)?;
    Ok((client_tx, server_tx))
}

/// The length of `target`'s untampered frame payload (and a check that the untampered
/// handshake completes).
fn message_len(target: Target) -> usize {
    let captured = std::cell::Cell::new(0);
    run(target, &|m: &[u8]| {
        captured.set(m.len());
        m.to_vec()
    })
    .expect("untampered handshake completes");
    captured.get()
}

#[test]
fn every_flipped_bit_in_every_handshake_message_fails() {
    for target in [Target::ClientHello, Target::ServerHello, Target::ClientFinish] {
        let len = message_len(target);
        assert!(len > 30, "{target:?} is {len} bytes");
        let mut kinds = std::collections::BTreeMap::new();
        for bit in 0..len * 8 {
            match run(target, &|m: &[u8]| flip(m, bit)) {
                Ok(_) => panic!("{target:?}: flipping bit {bit} went unnoticed"),
                Err(e) => *kinds.entry(format!("{:?}", e.kind())).or_insert(0) += 1,
            }
        }
        // Bits in the keys and ciphertexts fail authentication; bits in the protobuf
        // structure fail parsing.
        assert!(kinds.contains_key("Crypto"), "{target:?}: {kinds:?}");
        assert!(kinds.contains_key("Malformed"), "{target:?}: {kinds:?}");
    }
}

#[test]
fn truncated_and_extended_handshake_messages_fail() {
    for target in [Target::ClientHello, Target::ServerHello, Target::ClientFinish] {
        let len = message_len(target);
        for cut in 0..len {
            assert!(run(target, &|m: &[u8]| m[..cut].to_vec()).is_err(), "{target:?} cut at {cut}");
        }
        let err = run(target, &|m: &[u8]| [m, &[0x00]].concat()).err();
        assert!(err.is_some(), "{target:?} with a trailing zero byte");
    }
}

#[test]
fn every_flipped_bit_in_a_transport_frame_fails() {
    let (mut client, server) = run(Target::ClientHello, &|m: &[u8]| m.to_vec()).expect("handshake");
    let plaintext = b"<iq id='1' type='get' xmlns='w:p'><ping/></iq>";
    let mut wire = Vec::new();
    client.encrypt_frame(plaintext, &mut wire).expect("encrypt");
    let (_, mut rx) = server.split();
    for bit in 0..wire.len() * 8 {
        let tampered = flip(&wire, bit);
        let mut dec = FrameDecoder::client();
        dec.push(&tampered);
        let outcome = match dec.next_frame() {
            Err(e) => Err(e),
            Ok(None) => dec.finish().map(|()| BytesMut::new()),
            Ok(Some(frame)) => match dec.finish() {
                Err(e) => Err(e),
                Ok(()) => rx.decrypt_frame(frame),
            },
        };
        let err = outcome.expect_err("tampering detected");
        assert!(matches!(err.kind(), ErrorKind::Malformed | ErrorKind::Crypto), "bit {bit}: {err}");
        if bit >= 24 {
            assert!(matches!(err, Error::TransportBadTag { counter: 0 }), "bit {bit}: {err}");
        }
    }
    // The receiver did not advance on failures: the genuine frame still decrypts.
    let frame = BytesMut::from(&wire[3..]);
    assert_eq!(&rx.decrypt_frame(frame).expect("genuine")[..], plaintext);
    // And the other direction is untouched.
    let mut back = Vec::new();
    let (mut server_tx, _) =
        run(Target::ClientHello, &|m: &[u8]| m.to_vec()).map(|(c, s)| (s, c)).expect("hs");
    server_tx.encrypt_frame(b"pong", &mut back).expect("encrypt");
    assert_eq!(&client.decrypt_frame(BytesMut::from(&back[3..])).expect("pong")[..], b"pong");
}
