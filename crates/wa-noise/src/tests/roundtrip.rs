use bytes::BytesMut;

use super::{NOW, Pki, key, xx};
use crate::{
    ConnectionHeader, Error, FrameDecoder, Initiator, MAX_FRAME_LEN, MAX_PLAINTEXT_LEN, Responder, Transport,
};

/// Runs a whole handshake through frame decoders fed in `chunk`-byte pieces.
fn handshake(header: ConnectionHeader, payload: &[u8], chunk: usize) -> (Transport, Transport) {
    let pki = Pki::new();
    let config = pki.responder_config(pki.builder().sign(&pki.root.private, &pki.intermediate.private));
    let mut client_frames = FrameDecoder::client();
    let mut server_frames = FrameDecoder::server();
    let feed = |dec: &mut FrameDecoder, bytes: &[u8]| -> BytesMut {
        let mut got = None;
        for c in bytes.chunks(chunk) {
            dec.push(c);
            if let Some(f) = dec.next_frame().expect("well-formed") {
                assert!(got.is_none(), "one frame per message here");
                got = Some(f);
            }
        }
        got.expect("a whole frame")
    };

    let mut wire = Vec::new();
    let client = Initiator::new(pki.initiator_config(header.clone()), key("client e"))
        .write_client_hello(&mut wire)
        .expect("hello");
    let hello = feed(&mut server_frames, &wire);
    assert_eq!(server_frames.connection_header(), Some(&header));

    let server =
        xx(Responder::new(config, &header, key("server e")).read_client_hello(&hello).expect("read hello"));
    wire.clear();
    let server = server.write_server_hello(&mut wire).expect("server hello");
    let server_hello = feed(&mut client_frames, &wire);

    let client = client.read_server_hello(&server_hello, NOW).expect("server authenticated");
    assert_eq!(client.server_static(), &pki.server_static.public);
    assert_eq!(client.cert_chain().leaf.serial, 2);
    assert_eq!(client.handshake_hash(), server.handshake_hash());
    wire.clear();
    let client_transport = client.write_client_finish(payload, &mut wire).expect("finish");
    let finish = feed(&mut server_frames, &wire);
    let (server_transport, finished) = server.read_client_finish(&finish).expect("client authenticated");
    assert_eq!(finished.payload, payload);
    assert_eq!(finished.client_static, key("client static").public);
    assert_eq!(client_transport.handshake_hash(), server_transport.handshake_hash());
    assert_eq!(client_transport.keys.0, server_transport.keys.1);
    assert_eq!(client_transport.keys.1, server_transport.keys.0);
    (client_transport, server_transport)
}

fn exchange(from: &mut Transport, to: &mut Transport, plaintext: &[u8], chunk: usize) {
    let mut wire = BytesMut::new();
    from.encrypt_frame(plaintext, &mut wire).expect("encrypt");
    assert_eq!(wire.len(), 3 + plaintext.len() + 16);
    let mut dec = FrameDecoder::client();
    let mut got = None;
    for c in wire.chunks(chunk) {
        dec.push(c);
        if let Some(f) = dec.next_frame().expect("frame") {
            got = Some(to.decrypt_frame(f).expect("decrypt"));
        }
    }
    dec.finish().expect("nothing left over");
    assert!(got.expect("one frame") == plaintext, "plaintext of {} bytes survives", plaintext.len());
}

#[test]
fn handshake_then_frames_of_every_size() {
    let (mut client, mut server) = handshake(ConnectionHeader::new(), b"client payload", 7);
    let sizes = [0, 1, 64 * 1024, MAX_PLAINTEXT_LEN];
    assert_eq!(MAX_PLAINTEXT_LEN + 16, MAX_FRAME_LEN, "the largest plaintext makes a 16 MiB - 1 frame");
    for &size in &sizes {
        let plaintext: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        let chunk = if size > 1 << 20 { 1 << 20 } else { 1000 };
        exchange(&mut client, &mut server, &plaintext, chunk);
        exchange(&mut server, &mut client, &plaintext, chunk);
    }
    let (mut tx, _) = client.split();
    assert_eq!(tx.frames_sent(), sizes.len() as u64);
    let too_big = vec![0u8; MAX_PLAINTEXT_LEN + 1];
    assert!(matches!(
        tx.encrypt_frame(&too_big, &mut Vec::new()),
        Err(Error::TooLong { len, max: MAX_FRAME_LEN, .. }) if len == MAX_FRAME_LEN + 1
    ));
    assert_eq!(tx.frames_sent(), sizes.len() as u64, "a refused frame uses no nonce");
}

#[test]
fn handshake_with_routing_info_and_old_dictionary() {
    let header =
        ConnectionHeader::new().with_dict_version(2).with_routing_info(vec![8, 8, 1, 2, 3]).expect("short");
    let (mut client, mut server) = handshake(header, b"", 1);
    exchange(&mut client, &mut server, b"ping", 2);
    exchange(&mut server, &mut client, b"pong", 2);
}

#[test]
fn prologue_mismatch_fails() {
    // A responder that believes the client used dictionary 2 derives a different h.
    let pki = Pki::new();
    let config = pki.responder_config(pki.builder().sign(&pki.root.private, &pki.intermediate.private));
    let mut wire = Vec::new();
    let client = Initiator::new(pki.initiator_config(ConnectionHeader::new()), key("client e"))
        .write_client_hello(&mut wire)
        .expect("hello");
    let old = ConnectionHeader::new().with_dict_version(2);
    let server =
        xx(Responder::new(config, &old, key("server e")).read_client_hello(&wire[7..]).expect("parses"));
    let mut hello = Vec::new();
    server.write_server_hello(&mut hello).expect("server hello");
    let err = client.read_server_hello(&hello[3..], NOW).expect_err("h differs");
    assert!(matches!(err, Error::HandshakeBadTag { .. }), "{err}");
}

#[test]
fn transport_counters_are_per_direction() {
    let (mut client, mut server) = handshake(ConnectionHeader::new(), b"p", 100);
    for i in 0..5u8 {
        exchange(&mut client, &mut server, &[i; 3], 100);
    }
    exchange(&mut server, &mut client, b"first reply", 100);
    // Replaying an old frame fails: the receiver's counter moved on.
    let mut wire = BytesMut::new();
    client.encrypt_frame(b"x", &mut wire).expect("encrypt");
    let frame = wire.split_off(3);
    server.decrypt_frame(frame.clone()).expect("first time");
    assert!(matches!(server.decrypt_frame(frame), Err(Error::TransportBadTag { counter: 6 })));
}

/// A plaintext given in segments (`Buf::chain`) encrypts to exactly the frame the
/// contiguous plaintext gives, at every split point, and the counters stay in step.
#[test]
fn segmented_plaintext_gives_the_same_frame() {
    use bytes::Buf;

    use crate::FrameSender;

    let key = [9u8; 32];
    let plaintext: Vec<u8> = (0..5000u32).map(|i| (i * 31 + 7) as u8).collect();
    let mut contiguous = FrameSender::from_key(&key);
    let mut segmented = FrameSender::from_key(&key);
    for split in [0, 1, 15, 16, 17, 2500, 4999, 5000] {
        let mut want = Vec::new();
        contiguous.encrypt_frame(&plaintext, &mut want).unwrap();
        let (a, b) = plaintext.split_at(split);
        let (b, c) = b.split_at(b.len() / 2);
        let mut got = BytesMut::new();
        segmented.encrypt_frame_buf(a.chain(b).chain(c), &mut got).unwrap();
        assert_eq!(&got[..], &want[..], "split at {split}");
    }
    assert_eq!(contiguous.frames_sent(), segmented.frames_sent());
}
