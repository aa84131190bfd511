//! Media crypto against Baileys' vectors (tests/vectors/media.json, or $WA_VECTORS_DIR).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use wa_client::{MediaType, decrypt_media, encrypt_media};

fn vectors() -> serde_json::Value {
    let dir = std::env::var_os("WA_VECTORS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors"));
    serde_json::from_slice(&std::fs::read(dir.join("media.json")).unwrap()).unwrap()
}

fn hex(v: &serde_json::Value, k: &str) -> Vec<u8> {
    hex::decode(v[k].as_str().unwrap_or_else(|| panic!("{k}"))).unwrap()
}

#[test]
fn encrypt_and_decrypt_match_baileys() {
    let all = vectors();
    let list = all["vectors"].as_array().unwrap();
    assert!(list.len() >= 6);
    for v in list {
        let name = v["name"].as_str().unwrap();
        let kind = MediaType::from_name(v["media_type"].as_str().unwrap()).unwrap();
        assert_eq!(kind.hkdf_info(), v["hkdf_info"].as_str().unwrap().as_bytes(), "{name}");
        let key: [u8; 32] = hex(v, "media_key_hex").try_into().unwrap();
        let plain = hex(v, "plaintext_hex");
        let enc = encrypt_media(&key, kind, &plain);
        let expected_blob = hex(v, "enc_hex");
        let mac = hex(v, "mac_hex");
        let blob_matches =
            enc.blob == expected_blob || enc.blob == [expected_blob.clone(), mac.clone()].concat();
        assert!(blob_matches, "{name}: blob differs");
        assert_eq!(&enc.blob[enc.blob.len() - 10..], mac.as_slice(), "{name}: mac");
        assert_eq!(enc.file_sha256.to_vec(), hex(v, "file_sha256_hex"), "{name}");
        assert_eq!(enc.file_enc_sha256.to_vec(), hex(v, "file_enc_sha256_hex"), "{name}");
        let back =
            decrypt_media(&key, kind, &enc.blob, Some(&enc.file_enc_sha256), Some(&enc.file_sha256)).unwrap();
        assert_eq!(back, plain, "{name}");
        // Any flipped bit is refused.
        let mut bad = enc.blob.clone();
        bad[0] ^= 1;
        assert!(decrypt_media(&key, kind, &bad, None, None).is_err(), "{name}");
        assert!(decrypt_media(&key, kind, &bad, Some(&enc.file_enc_sha256), None).is_err(), "{name}");
        let n = bad.len();
        let mut bad_mac = enc.blob.clone();
        bad_mac[n - 1] ^= 1;
        assert!(decrypt_media(&key, kind, &bad_mac, None, None).is_err(), "{name}");
    }
}
