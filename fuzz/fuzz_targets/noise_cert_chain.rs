//! The certificate-chain verifier on arbitrary (decrypted) ServerHello payloads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wa_crypto::{PrivateKey, PublicKey};
use wa_noise::CertVerifier;

fuzz_target!(|data: &[u8]| {
    let root = PrivateKey::from_bytes([1; 32]).public_key();
    let server = PublicKey::from_array([3; 32]);
    let now = data.first().map_or(0, |b| u64::from(*b) << 28);
    let _ = CertVerifier::new(root).verify(data, &server, now);
    let _ = CertVerifier::default().verify(data, &server, now);
});
