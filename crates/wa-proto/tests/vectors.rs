//! The ClientPayload, DeviceProps and handshake protobufs recorded from Baileys decode with
//! our schema and re-encode to the same bytes (so every field Baileys sets is in our schema
//! with the right number and type).
#![allow(clippy::unwrap_used)] // integration test: helpers outside #[test] fns

use std::path::PathBuf;

use wa_proto::prost_message::Message as _;
use wa_proto::{ClientPayload, DeviceProps, HandshakeMessage};

fn vectors_dir() -> PathBuf {
    std::env::var_os("WA_VECTORS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors"))
}

fn hex_field(v: &serde_json::Value, path: &[&str]) -> Vec<u8> {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    hex::decode(cur.as_str().unwrap_or_else(|| panic!("missing {path:?}"))).unwrap()
}

#[test]
fn baileys_handshake_protobufs_roundtrip() {
    let text = std::fs::read_to_string(vectors_dir().join("noise_handshake.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let transcripts = v["transcripts"].as_array().unwrap();
    assert!(!transcripts.is_empty());
    for t in transcripts {
        let name = t["name"].as_str().unwrap();
        for msg in ["client_hello", "server_hello", "client_finish"] {
            let bytes = hex_field(t, &[msg, "handshake_message_hex"]);
            let decoded = HandshakeMessage::decode(bytes.as_slice()).unwrap();
            assert_eq!(decoded.encode_to_vec(), bytes, "{name} {msg} re-encodes identically");
        }
        let payload_bytes = hex_field(t, &["client_finish", "client_payload_hex"]);
        let payload = ClientPayload::decode(payload_bytes.as_slice()).unwrap();
        assert_eq!(payload.encode_to_vec(), payload_bytes, "{name}: ClientPayload re-encodes identically");
        let view = &t["client_finish"]["client_payload_view"];
        assert_eq!(payload.passive, view["passive"].as_bool(), "{name} passive");
        let ua = payload.user_agent.as_ref().unwrap();
        assert_eq!(ua.platform, Some(wa_proto::client_payload::user_agent::Platform::Web as i32));
        assert_eq!(ua.app_version.as_ref().unwrap().tertiary, Some(1043857760));
        if t["kind"] == "registration" {
            let reg = payload.device_pairing_data.as_ref().unwrap();
            assert_eq!(reg.e_keytype.as_deref(), Some(&[5u8][..]));
            assert_eq!(reg.e_ident.as_ref().map(Vec::len), Some(32));
            assert_eq!(reg.e_skey_sig.as_ref().map(Vec::len), Some(64));
            let props = DeviceProps::decode(reg.device_props.as_deref().unwrap()).unwrap();
            assert_eq!(props.encode_to_vec(), reg.device_props.clone().unwrap(), "{name}: DeviceProps");
            assert_eq!(props.os.as_deref(), Some("Mac OS"));
        } else {
            assert_eq!(payload.username, view["username"].as_str().map(|u| u.parse::<u64>().unwrap()));
            assert_eq!(payload.device, view["device"].as_u64().map(|d| d as u32));
            assert_eq!(payload.pull, Some(true));
        }
    }
}
