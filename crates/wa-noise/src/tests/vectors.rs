//! Replays tests/vectors/noise_handshake.json (Baileys 7.0.0-rc14 as the client, a
//! node:crypto responder), or the file in `$WA_VECTORS_DIR`.

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use prost::Message as _;
use serde_json::Value;
use wa_crypto::{KeyPair, PrivateKey, PublicKey};

use crate::cert::CertDetails;
use crate::frame::encode_frame_into;
use crate::payload::{ClientProfile, RegistrationKeys, device_props};
use crate::symmetric::{Secret, SymmetricState};
use crate::{
    CertChainBuilder, CertVerifier, ConnectionHeader, FrameDecoder, HandshakeStage, Initiator,
    InitiatorConfig, Responder, ResponderConfig,
};

fn vectors_dir() -> PathBuf {
    match std::env::var_os("WA_VECTORS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors"),
    }
}

fn transcripts() -> Vec<Value> {
    let path = vectors_dir().join("noise_handshake.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc: Value = serde_json::from_str(&text).expect("json");
    let list = doc["transcripts"].as_array().expect("transcripts").clone();
    assert!(!list.is_empty());
    list
}

fn hx(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap_or_else(|| panic!("hex string expected, got {v}"))).expect("hex")
}

fn hx32(v: &Value) -> [u8; 32] {
    hx(v).try_into().expect("32 bytes")
}

fn b64(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(v.as_str().expect("b64 string")).expect("base64")
}

fn keypair(v: &Value) -> KeyPair {
    let kp = KeyPair::from_private(PrivateKey::from_bytes(hx32(&v["priv_hex"])));
    assert_eq!(kp.public.as_bytes(), &hx32(&v["pub_hex"]), "public key of {v}");
    kp
}

fn header_of(t: &Value) -> ConnectionHeader {
    let header = ConnectionHeader::new();
    match t["routing_info_hex"].is_null() {
        true => header,
        false => header.with_routing_info(hx(&t["routing_info_hex"])).expect("short"),
    }
}

fn now_of(t: &Value) -> u64 {
    let leaf = &t["certificate_chain"]["leaf"]["details"];
    let (a, b) = (leaf["not_before"].as_u64().expect("u64"), leaf["not_after"].as_u64().expect("u64"));
    a + (b - a) / 2
}

/// Every recorded symmetric-state step, replayed on our SymmetricState: h, ck, k and
/// every AEAD output.
#[test]
fn symmetric_state_steps() {
    for t in transcripts() {
        let name = t["name"].as_str().expect("name");
        let steps = t["symmetric_state_steps"].as_array().expect("steps");
        let mut sym: Option<SymmetricState> = None;
        for s in steps {
            let op = s["op"].as_str().expect("op");
            match op {
                "InitializeSymmetric" => {
                    assert_eq!(hx(&s["data_hex"]), crate::PROTOCOL_NAME.to_vec());
                }
                "MixHash" if sym.is_none() => sym = Some(SymmetricState::new(&hx(&s["data_hex"]))),
                "MixHash" => sym.as_mut().expect("init").mix_hash(&hx(&s["data_hex"])),
                "MixKey" => sym.as_mut().expect("init").mix_key(&Secret(hx32(&s["dh_hex"]))),
                "EncryptAndHash" => {
                    let st = sym.as_mut().expect("init");
                    assert_eq!(st.h.to_vec(), hx(&s["aad_hex"]), "{name} step {}: aad", s["step"]);
                    let ct = st.encrypt_and_hash(&hx(&s["plaintext_hex"]));
                    assert_eq!(ct, hx(&s["ciphertext_hex"]), "{name} step {}: ciphertext", s["step"]);
                }
                "Split" => {
                    let (w, r) = sym.as_ref().expect("init").split();
                    assert_eq!(w.0, hx32(&s["client_write_key_hex"]), "{name}: client write key");
                    assert_eq!(r.0, hx32(&s["client_read_key_hex"]), "{name}: client read key");
                }
                other => panic!("{name}: unknown op {other}"),
            }
            if let Some(st) = &sym {
                assert_eq!(st.h, hx32(&s["h_hex"]), "{name} step {} ({op}): h", s["step"]);
                assert_eq!(st.ck, hx32(&s["ck_hex"]), "{name} step {} ({op}): ck", s["step"]);
                if !s["k_hex"].is_null() {
                    assert_eq!(st.k, hx32(&s["k_hex"]), "{name} step {} ({op}): k", s["step"]);
                }
            }
        }
    }
}

/// Our CertChainBuilder re-signs the recorded chain byte for byte (deterministic XEdDSA).
#[test]
fn certificate_chain_rebuilds() {
    for t in transcripts() {
        let k = &t["keys"];
        let cc = &t["certificate_chain"];
        let root = keypair(&k["certificate_root"]);
        let intermediate = keypair(&k["certificate_intermediate"]);
        let server = keypair(&k["server_static"]);
        let details = |c: &Value, key: PublicKey| CertDetails {
            serial: c["serial"].as_u64().expect("serial") as u32,
            issuer_serial: c["issuer_serial"].as_u64().expect("issuer") as u32,
            key,
            not_before: c["not_before"].as_u64().expect("nb"),
            not_after: c["not_after"].as_u64().expect("na"),
        };
        let mut builder = CertChainBuilder::new(intermediate.public, server.public, 0, 0);
        builder.intermediate = details(&cc["intermediate"]["details"], intermediate.public);
        builder.leaf = details(&cc["leaf"]["details"], server.public);
        assert_eq!(builder.intermediate.encode(), hx(&cc["intermediate"]["details_hex"]));
        assert_eq!(builder.leaf.encode(), hx(&cc["leaf"]["details_hex"]));
        assert_eq!(builder.sign(&root.private, &intermediate.private), hx(&cc["cert_chain_hex"]));
        let verified = CertVerifier::new(root.public)
            .verify(&hx(&cc["cert_chain_hex"]), &server.public, now_of(&t))
            .expect("recorded chain verifies");
        assert_eq!(verified.leaf, builder.leaf);
        // And the default verifier (WhatsApp's root) refuses it.
        assert!(matches!(
            CertVerifier::default().verify(&hx(&cc["cert_chain_hex"]), &server.public, now_of(&t)),
            Err(crate::Error::UntrustedRoot)
        ));
    }
}

/// Both roles against the recorded bytes: our initiator writes the recorded ClientHello
/// and ClientFinish, our responder the recorded ServerHello; each reads the other
/// side's recorded message; hashes, split keys and transport frames match.
#[test]
fn transcripts_replay() {
    for t in transcripts() {
        let name = t["name"].as_str().expect("name");
        let k = &t["keys"];
        let header = header_of(&t);
        let root = keypair(&k["certificate_root"]);

        // --- ClientHello: the first WebSocket message, intro included.
        let mut wire = Vec::new();
        let client = Initiator::new(
            InitiatorConfig {
                header: header.clone(),
                static_key: keypair(&k["client_static"]),
                verifier: CertVerifier::new(root.public),
            },
            keypair(&k["client_ephemeral"]),
        )
        .write_client_hello(&mut wire)
        .expect("hello");
        assert_eq!(wire, hx(&t["client_hello"]["ws_message_hex"]), "{name}: first WS message");
        assert_eq!(hex::encode(client.handshake_hash()), t["handshake_hash"]["after_client_hello_hex"]);
        assert_eq!(header.encoded_len(), hx(&t["intro_hex"]).len());
        assert_eq!(header.prologue().to_vec(), hx(&t["prologue_hex"]));

        // --- The responder parses the recorded intro + ClientHello and answers.
        let mut server_frames = FrameDecoder::server();
        server_frames.push(&hx(&t["client_hello"]["ws_message_hex"]));
        let hello = server_frames.next_frame().expect("ok").expect("frame");
        assert_eq!(hello.to_vec(), hx(&t["client_hello"]["handshake_message_hex"]));
        let parsed_header = server_frames.connection_header().expect("intro parsed").clone();
        assert_eq!(parsed_header, header, "{name}: intro");
        let config = Arc::new(ResponderConfig {
            static_key: keypair(&k["server_static"]),
            cert_chain: hx(&t["certificate_chain"]["cert_chain_hex"]),
        });
        let server = super::xx(
            Responder::new(config, &parsed_header, keypair(&k["server_ephemeral"]))
                .read_client_hello(&hello)
                .expect("read hello"),
        );
        let mut server_hello = Vec::new();
        let server = server.write_server_hello(&mut server_hello).expect("server hello");
        assert_eq!(server_hello, hx(&t["server_hello"]["frame_hex"]), "{name}: ServerHello frame");
        assert_eq!(hex::encode(server.handshake_hash()), t["handshake_hash"]["after_server_hello_hex"]);

        // --- The initiator reads the recorded ServerHello and writes ClientFinish.
        let client = client
            .read_server_hello(&hx(&t["server_hello"]["handshake_message_hex"]), now_of(&t))
            .expect("server authenticated");
        assert_eq!(client.server_static(), &keypair(&k["server_static"]).public);
        assert_eq!(hex::encode(client.handshake_hash()), t["handshake_hash"]["after_server_hello_hex"]);
        let payload = hx(&t["client_finish"]["client_payload_hex"]);
        let mut finish = Vec::new();
        let mut client_tx = client.write_client_finish(&payload, &mut finish).expect("finish");
        assert_eq!(finish, hx(&t["client_finish"]["frame_hex"]), "{name}: ClientFinish frame");
        assert_eq!(hex::encode(client_tx.handshake_hash()), t["handshake_hash"]["after_client_finish_hex"]);

        // --- The responder reads the recorded ClientFinish.
        let (mut server_tx, finished) = server
            .read_client_finish(&hx(&t["client_finish"]["handshake_message_hex"]))
            .expect("client authenticated");
        assert_eq!(finished.payload, payload);
        assert_eq!(finished.client_static, keypair(&k["client_static"]).public);
        finished.client_payload().expect("payload decodes");
        assert_eq!(hex::encode(server_tx.handshake_hash()), t["handshake_hash"]["after_client_finish_hex"]);

        // --- Split keys.
        let w = hx32(&t["split"]["client_write_key_hex"]);
        let r = hx32(&t["split"]["client_read_key_hex"]);
        assert_eq!(client_tx.keys, (w, r), "{name}: client split");
        assert_eq!(server_tx.keys, (r, w), "{name}: server split");

        // --- Transport frames, in recorded order; each side encrypts what it sent and
        // decrypts what it received.
        for f in t["transport"].as_array().expect("transport") {
            let plaintext = hx(&f["plaintext_hex"]);
            let frame = hx(&f["frame_hex"]);
            let (sender, receiver) = match f["dir"].as_str().expect("dir") {
                "client->server" => (&mut client_tx, &mut server_tx),
                "server->client" => (&mut server_tx, &mut client_tx),
                other => panic!("direction {other}"),
            };
            let mut out = Vec::new();
            sender.encrypt_frame(&plaintext, &mut out).expect("encrypt");
            assert_eq!(out, frame, "{name} transport #{}", f["seq"]);
            let mut dec = FrameDecoder::client();
            dec.push(&frame);
            let payload = dec.next_frame().expect("ok").expect("frame");
            assert_eq!(payload.to_vec(), hx(&f["ciphertext_hex"]));
            assert_eq!(receiver.decrypt_frame(payload).expect("decrypt").to_vec(), plaintext);
        }
    }
}

/// Our ClientPayload builders produce exactly the bytes Baileys sent.
#[test]
fn client_payload_builders_match_baileys() {
    for t in transcripts() {
        let name = t["name"].as_str().expect("name");
        let recorded = hx(&t["client_finish"]["client_payload_hex"]);
        let view = &t["client_finish"]["client_payload_view"];
        let version = &view["userAgent"]["appVersion"];
        let profile = ClientProfile {
            app_version: [
                version["primary"].as_u64().expect("v") as u32,
                version["secondary"].as_u64().expect("v") as u32,
                version["tertiary"].as_u64().expect("v") as u32,
            ],
            ..ClientProfile::default()
        };
        let built = match t["kind"].as_str().expect("kind") {
            "registration" => {
                let d = &view["devicePairingData"];
                let be = |v: &Value| b64(v).iter().fold(0u32, |acc, b| acc << 8 | u32::from(*b));
                let keys = RegistrationKeys {
                    registration_id: be(&d["eRegid"]),
                    identity_key: PublicKey::from_bytes(&b64(&d["eIdent"])).expect("32"),
                    signed_pre_key_id: be(&d["eSkeyId"]),
                    signed_pre_key: PublicKey::from_bytes(&b64(&d["eSkeyVal"])).expect("32"),
                    signed_pre_key_signature: b64(&d["eSkeySig"]).try_into().expect("64"),
                };
                // The identity key signed the prekey (05-prefixed), as a real client must.
                assert!(
                    keys.identity_key.verify(&keys.signed_pre_key.to_djb(), &keys.signed_pre_key_signature)
                );
                let p = &t["client_finish"]["device_props_view"];
                let v = &p["version"];
                let props = device_props(
                    p["os"].as_str().expect("os"),
                    [
                        v["primary"].as_u64().expect("v") as u32,
                        v["secondary"].as_u64().expect("v") as u32,
                        v["tertiary"].as_u64().expect("v") as u32,
                    ],
                    wa_proto::device_props::PlatformType::Chrome,
                    p["requireFullSync"].as_bool().expect("bool"),
                );
                assert_eq!(props.encode_to_vec(), b64(&d["deviceProps"]), "{name}: DeviceProps");
                profile.registration(&keys, &props)
            }
            "login" => {
                let account = &t["account"];
                let username: u64 = account["username"].as_str().expect("username").parse().expect("digits");
                profile.login(username, account["device"].as_u64().expect("device") as u32)
            }
            other => panic!("kind {other}"),
        };
        assert_eq!(hex::encode(built.encode_to_vec()), hex::encode(&recorded), "{name}: ClientPayload bytes");
    }
}

/// Framing of the recorded handshake messages.
#[test]
fn recorded_frames() {
    for t in transcripts() {
        for (msg, frame) in [
            (&t["client_hello"]["handshake_message_hex"], &t["client_hello"]["frame_hex"]),
            (&t["server_hello"]["handshake_message_hex"], &t["server_hello"]["frame_hex"]),
            (&t["client_finish"]["handshake_message_hex"], &t["client_finish"]["frame_hex"]),
        ] {
            let mut out = Vec::new();
            encode_frame_into(&hx(msg), &mut out).expect("small");
            assert_eq!(out, hx(frame));
        }
        let parts = crate::messages::parse_server_hello(&hx(&t["server_hello"]["handshake_message_hex"]))
            .expect("parses");
        assert_eq!(parts.static_ciphertext, hx(&t["server_hello"]["static_ciphertext_hex"]));
        assert!(matches!(
            crate::messages::parse_client_hello(&hx(&t["server_hello"]["handshake_message_hex"])),
            Err(crate::Error::UnexpectedMessage { expected: HandshakeStage::ClientHello })
        ));
    }
}
