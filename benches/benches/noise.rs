//! wa-noise against wacore-noise 0.7 (whatsapp-rust), same inputs, same run:
//! - `noise_handshake`: a whole XX handshake, both sides, from fixed keys to two transports;
//! - `noise_transport_encrypt` / `noise_transport_decrypt`: one frame at 1 KiB and 1 MiB.
//!
//! wacore-noise has no responder and its client verifies the chain only against
//! WhatsApp's compiled-in root, so its "both sides" run is assembled from its public
//! pieces (`NoiseHandshake`, `HandshakeUtils`, waproto codec) and cannot verify our test
//! chain (it only decodes it). Ours verifies the chain (two XEdDSA verifications);
//! `noise_cert_verify` measures that part alone so the two can be compared like for like.

use std::hint::black_box;
use std::sync::Arc;

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use wa_crypto::{KeyPair, PrivateKey};
use wa_noise::{
    CertChainBuilder, CertVerifier, ClientHelloOutcome, ConnectionHeader, FrameReceiver, FrameSender,
    Initiator, InitiatorConfig, Responder, ResponderConfig,
};

const NOW: u64 = 1_750_000_000;
const PAYLOAD: &[u8] = &[0x42; 120]; // about the size of a login ClientPayload

fn key(label: &str) -> KeyPair {
    KeyPair::from_private(PrivateKey::from_bytes(wa_crypto::sha256(&[b"bench ", label.as_bytes()])))
}

struct Keys {
    client_static: KeyPair,
    client_e: KeyPair,
    server_e: KeyPair,
    root: KeyPair,
    config: Arc<ResponderConfig>,
}

impl Keys {
    fn new() -> Self {
        let root = key("root");
        let intermediate = key("intermediate");
        let server_static = key("server static");
        let chain = CertChainBuilder::new(intermediate.public, server_static.public, NOW - 1000, NOW + 1000)
            .sign(&root.private, &intermediate.private);
        Self {
            client_static: key("client static"),
            client_e: key("client e"),
            server_e: key("server e"),
            root,
            config: Arc::new(ResponderConfig { static_key: server_static, cert_chain: chain }),
        }
    }
}

/// Ours: both sides, intro and frames included; returns (client, server) transports.
fn ours(k: &Keys) -> (wa_noise::Transport, wa_noise::Transport) {
    let header = ConnectionHeader::new();
    let mut wire = Vec::with_capacity(512);
    let client = Initiator::new(
        InitiatorConfig {
            header: header.clone(),
            static_key: k.client_static.clone(),
            verifier: CertVerifier::new(k.root.public),
        },
        k.client_e.clone(),
    )
    .write_client_hello(&mut wire)
    .expect("hello");
    let ClientHelloOutcome::Full(server) = Responder::new(k.config.clone(), &header, k.server_e.clone())
        .read_client_hello(&wire[7..])
        .expect("read hello")
    else {
        unreachable!("an XX ClientHello is answered with XX")
    };
    wire.clear();
    let server = server.write_server_hello(&mut wire).expect("server hello");
    let client = client.read_server_hello(&wire[3..], NOW).expect("verified");
    let mut finish = Vec::with_capacity(256);
    let client_tx = client.write_client_finish(PAYLOAD, &mut finish).expect("finish");
    let (server_tx, _) = server.read_client_finish(&finish[3..]).expect("read finish");
    (client_tx, server_tx)
}

/// wacore-noise: both sides from its public pieces; returns the client's handshake hash
/// (checked equal to ours) and the two cipher pairs.
fn wacore(
    k: &Keys,
) -> (
    [u8; 32],
    (wacore_noise::NoiseCipher, wacore_noise::NoiseCipher),
    (wacore_noise::NoiseCipher, wacore_noise::NoiseCipher),
) {
    use wacore_noise::{HandshakeUtils, NoiseHandshake};
    use waproto::{buffa, codec, whatsapp as wa};
    const PATTERN: &str = "Noise_XX_25519_AESGCM_SHA256\0\0\0\0";
    let header = [b'W', b'A', 6, 3];
    let (ce_pub, ce_priv) = (k.client_e.public.as_bytes(), k.client_e.private.as_bytes());
    let (se_pub, se_priv) = (k.server_e.public.as_bytes(), k.server_e.private.as_bytes());
    let ss = &k.config.static_key;
    let cs = &k.client_static;

    let mut c = NoiseHandshake::new(PATTERN, &header).expect("init");
    c.authenticate(ce_pub);
    let hello = codec::handshake_message_to_vec(&HandshakeUtils::build_client_hello(ce_pub));

    let mut s = NoiseHandshake::new(PATTERN, &header).expect("init");
    let m = codec::handshake_message_decode(&hello).expect("decode");
    let ce = m.client_hello.into_option().and_then(|h| h.ephemeral).expect("ephemeral");
    s.authenticate(&ce);
    s.authenticate(se_pub);
    s.mix_shared_secret(se_priv, &ce).expect("ee");
    let st = s.encrypt(ss.public.as_bytes()).expect("s");
    s.mix_shared_secret(ss.private.as_bytes(), &ce).expect("es");
    let pl = s.encrypt(&k.config.cert_chain).expect("payload");
    let server_hello = codec::handshake_message_to_vec(&wa::HandshakeMessage {
        server_hello: buffa::MessageField::some(wa::handshake_message::ServerHello {
            ephemeral: Some(se_pub.to_vec()),
            r#static: Some(st),
            payload: Some(pl),
            ..Default::default()
        }),
        ..Default::default()
    });

    let (sep, sst, spl) = HandshakeUtils::parse_server_hello(&server_hello).expect("parse");
    c.authenticate(&sep);
    c.mix_shared_secret(ce_priv, &sep).expect("ee");
    let server_static = c.decrypt(&sst).expect("static");
    c.mix_shared_secret(ce_priv, &server_static).expect("es");
    let chain = c.decrypt(&spl).expect("chain");
    black_box(codec::cert_chain_decode(&chain).expect("chain decodes"));
    let cs_ct = c.encrypt(cs.public.as_bytes()).expect("s");
    c.mix_shared_secret(cs.private.as_bytes(), &sep).expect("se");
    let pl_ct = c.encrypt(PAYLOAD).expect("payload");
    let finish = codec::handshake_message_to_vec(&HandshakeUtils::build_client_finish(cs_ct, pl_ct));

    let m = codec::handshake_message_decode(&finish).expect("decode");
    let f = m.client_finish.into_option().expect("finish");
    let client_static = s.decrypt(f.r#static.as_deref().expect("static")).expect("static");
    s.mix_shared_secret(se_priv, &client_static).expect("se");
    let payload = s.decrypt(f.payload.as_deref().expect("payload")).expect("payload");
    black_box(payload);
    let h = *c.hash();
    (h, c.finish().expect("split"), s.finish().expect("split"))
}

fn handshake(c: &mut Criterion) {
    let k = Keys::new();
    // Same transcript on both: the final handshake hashes agree.
    let (ours_c, ours_s) = ours(&k);
    let (h, _, _) = wacore(&k);
    assert_eq!(ours_c.handshake_hash(), &h, "wacore assembly runs the same handshake");
    assert_eq!(ours_s.handshake_hash(), &h);

    let mut g = c.benchmark_group("noise_handshake");
    g.bench_function("wa-noise", |b| b.iter(|| black_box(ours(black_box(&k)))));
    g.bench_function("wacore-noise", |b| b.iter(|| black_box(wacore(black_box(&k)))));
    g.finish();

    let mut g = c.benchmark_group("noise_cert_verify");
    let verifier = CertVerifier::new(k.root.public);
    let server_static = k.config.static_key.public;
    g.bench_function("wa-noise", |b| {
        b.iter(|| {
            black_box(verifier.verify(black_box(&k.config.cert_chain), &server_static, NOW).expect("ok"))
        })
    });
    g.finish();
}

fn transport(c: &mut Criterion) {
    let key_bytes = [7u8; 32];
    for (label, size) in [("1KiB", 1024usize), ("1MiB", 1 << 20)] {
        let plaintext = vec![0xA5u8; size];

        let mut g = c.benchmark_group(format!("noise_transport_encrypt/{label}"));
        g.throughput(Throughput::Bytes(size as u64));
        if size > 4096 {
            g.sample_size(30);
        }
        let mut sender = FrameSender::from_key(&key_bytes);
        let mut out = BytesMut::with_capacity(size + 64);
        g.bench_function("wa-noise", |b| {
            b.iter(|| {
                out.clear();
                sender.encrypt_frame(black_box(&plaintext), &mut out).expect("fits");
                black_box(&out);
            })
        });
        let theirs = wacore_noise::NoiseCipher::new(&key_bytes).expect("key");
        let mut counter = 0u32;
        let mut buf: Vec<u8> = Vec::with_capacity(size + 64);
        g.bench_function("wacore-noise", |b| {
            b.iter(|| {
                buf.clear();
                buf.extend_from_slice(black_box(&plaintext));
                theirs.encrypt_in_place_with_counter(counter, &mut buf).expect("encrypt");
                counter = counter.wrapping_add(1);
                black_box(&buf);
            })
        });
        g.finish();

        // One frame under counter 0, decrypted by a fresh receiver each time (setup untimed).
        let frame = FrameSender::from_key(&key_bytes).encrypt_frame_to_vec(&plaintext).expect("fits");
        let ciphertext = frame[3..].to_vec();
        let mut g = c.benchmark_group(format!("noise_transport_decrypt/{label}"));
        g.throughput(Throughput::Bytes(size as u64));
        if size > 4096 {
            g.sample_size(30);
        }
        g.bench_function("wa-noise", |b| {
            b.iter_batched(
                || (FrameReceiver::from_key(&key_bytes), BytesMut::from(&ciphertext[..])),
                |(mut rx, ct)| black_box(rx.decrypt_frame(ct).expect("authentic")),
                BatchSize::LargeInput,
            )
        });
        g.bench_function("wacore-noise", |b| {
            b.iter_batched(
                || ciphertext.clone(),
                |mut ct| {
                    theirs.decrypt_in_place_with_counter(0, &mut ct).expect("authentic");
                    black_box(ct)
                },
                BatchSize::LargeInput,
            )
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(4));
    targets = handshake, transport
}
criterion_main!(benches);
