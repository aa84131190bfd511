//! Shared test helpers: vector loading and deterministic RNGs.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::path::PathBuf;

use rand_core::{TryCryptoRng, TryRng};
use wa_signal::{KeyPair, PrivateKey};

/// The vectors directory: `WA_VECTORS_DIR`, or the project's own copy.
pub fn vectors_dir() -> PathBuf {
    match std::env::var_os("WA_VECTORS_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors"),
    }
}

pub fn load(name: &str) -> serde_json::Value {
    let path = vectors_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

pub fn hex(v: &serde_json::Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

pub fn arr32(v: &serde_json::Value) -> [u8; 32] {
    hex(v).try_into().unwrap()
}

pub fn key_pair(priv_hex: &serde_json::Value) -> KeyPair {
    KeyPair::from_private(PrivateKey::from_bytes(arr32(priv_hex)))
}

/// An RNG that hands out recorded private keys, 32 bytes per request, in order.
/// Any other request size is a test bug and panics.
pub struct ScriptedKeys(pub VecDeque<[u8; 32]>);

impl TryRng for ScriptedKeys {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        panic!("scripted RNG: unexpected next_u32")
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        panic!("scripted RNG: unexpected next_u64")
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        assert_eq!(dst.len(), 32, "scripted RNG only serves 32-byte private keys");
        dst.copy_from_slice(&self.0.pop_front().expect("scripted RNG ran out of recorded keys"));
        Ok(())
    }
}
impl TryCryptoRng for ScriptedKeys {}

/// A small deterministic RNG for property tests (SplitMix64; not for production use).
pub struct TestRng(pub u64);

impl TryRng for TestRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.try_next_u64()? as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Ok(z ^ (z >> 31))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(8) {
            let v = self.try_next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        Ok(())
    }
}
impl TryCryptoRng for TestRng {}
