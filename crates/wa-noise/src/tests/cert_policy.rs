//! Certificate-chain policy: each defect maps to its own error, both through the
//! verifier and through a whole handshake.

use super::{NOT_AFTER, NOT_BEFORE, NOW, Pki, key, xx};
use crate::{
    CertChainBuilder, CertRole, CertVerifier, ConnectionHeader, Error, ErrorKind, Initiator, Responder,
    WA_ROOT_KEY,
};

/// Runs the handshake against a server presenting `chain`; returns the client's verdict.
fn client_verdict(pki: &Pki, chain: Vec<u8>) -> Result<(), Error> {
    let header = ConnectionHeader::new();
    let mut wire = Vec::new();
    let client = Initiator::new(pki.initiator_config(header.clone()), key("client e"))
        .write_client_hello(&mut wire)
        .expect("hello");
    let server = xx(Responder::new(pki.responder_config(chain), &header, key("server e"))
        .read_client_hello(&wire[7..])
        .expect("read hello"));
    wire.clear();
    server.write_server_hello(&mut wire).expect("server hello");
    client.read_server_hello(&wire[3..], NOW).map(|_| ())
}

fn check(pki: &Pki, chain: Vec<u8>, expect: impl Fn(&Error) -> bool, kind: ErrorKind) {
    let direct = CertVerifier::new(pki.root.public).verify(&chain, &pki.server_static.public, NOW);
    let err = direct.expect_err("verifier refuses");
    assert!(expect(&err), "verifier: {err:?}");
    assert_eq!(err.kind(), kind, "{err}");
    let err = client_verdict(pki, chain).expect_err("handshake refuses");
    assert!(expect(&err), "handshake: {err:?}");
}

#[test]
fn good_chain_passes() {
    let pki = Pki::new();
    let chain = pki.builder().sign(&pki.root.private, &pki.intermediate.private);
    let v = CertVerifier::new(pki.root.public).verify(&chain, &pki.server_static.public, NOW).expect("valid");
    assert_eq!((v.intermediate.serial, v.intermediate.issuer_serial, v.leaf.issuer_serial), (1, 0, 1));
    client_verdict(&pki, chain.clone()).expect("handshake");
    // Validity bounds are inclusive.
    for now in [NOT_BEFORE, NOT_AFTER] {
        CertVerifier::new(pki.root.public).verify(&chain, &pki.server_static.public, now).expect("in window");
    }
}

#[test]
fn default_root_is_whatsapps() {
    assert_eq!(
        hex::encode(CertVerifier::default().root().as_bytes()),
        "142375574d0a587166aae71ebe516437c4a28b73e3695c6ce1f7f9545da8ee6b"
    );
    assert_eq!(CertVerifier::default().root(), &WA_ROOT_KEY);
    let pki = Pki::new();
    let chain = pki.builder().sign(&pki.root.private, &pki.intermediate.private);
    let err =
        CertVerifier::default().verify(&chain, &pki.server_static.public, NOW).expect_err("not WA-signed");
    assert!(matches!(err, Error::UntrustedRoot));
}

#[test]
fn chain_signed_by_another_root() {
    let pki = Pki::new();
    let chain = pki.builder().sign(&key("another root").private, &pki.intermediate.private);
    check(&pki, chain, |e| matches!(e, Error::UntrustedRoot), ErrorKind::Policy);
}

#[test]
fn wrong_issuer_serials() {
    let pki = Pki::new();
    let mut b = pki.builder();
    b.intermediate.issuer_serial = 7;
    check(
        &pki,
        b.sign(&pki.root.private, &pki.intermediate.private),
        |e| matches!(e, Error::IssuerSerialMismatch { cert: CertRole::Intermediate, expected: 0, got: 7 }),
        ErrorKind::Policy,
    );
    let mut b = pki.builder();
    b.leaf.issuer_serial = 9;
    check(
        &pki,
        b.sign(&pki.root.private, &pki.intermediate.private),
        |e| matches!(e, Error::IssuerSerialMismatch { cert: CertRole::Leaf, expected: 1, got: 9 }),
        ErrorKind::Policy,
    );
}

#[test]
fn leaf_key_is_not_the_server_static() {
    let pki = Pki::new();
    let b = CertChainBuilder::new(
        pki.intermediate.public,
        key("some other server").public,
        NOT_BEFORE,
        NOT_AFTER,
    );
    check(
        &pki,
        b.sign(&pki.root.private, &pki.intermediate.private),
        |e| matches!(e, Error::LeafKeyMismatch),
        ErrorKind::Policy,
    );
}

#[test]
fn expired_and_not_yet_valid() {
    let pki = Pki::new();
    let mut b = pki.builder();
    b.leaf.not_after = NOW - 1;
    check(
        &pki,
        b.sign(&pki.root.private, &pki.intermediate.private),
        |e| matches!(e, Error::CertExpired { cert: CertRole::Leaf, now: NOW, .. }),
        ErrorKind::Policy,
    );
    let mut b = pki.builder();
    b.intermediate.not_after = NOW - 1;
    check(
        &pki,
        b.sign(&pki.root.private, &pki.intermediate.private),
        |e| matches!(e, Error::CertExpired { cert: CertRole::Intermediate, .. }),
        ErrorKind::Policy,
    );
    let mut b = pki.builder();
    b.leaf.not_before = NOW + 1;
    check(
        &pki,
        b.sign(&pki.root.private, &pki.intermediate.private),
        |e| matches!(e, Error::CertNotYetValid { cert: CertRole::Leaf, .. }),
        ErrorKind::Policy,
    );
}

#[test]
fn leaf_signed_by_another_key_is_a_crypto_failure() {
    let pki = Pki::new();
    let chain = pki.builder().sign(&pki.root.private, &key("not the intermediate").private);
    check(&pki, chain, |e| matches!(e, Error::BadSignature { cert: CertRole::Leaf }), ErrorKind::Crypto);
}

#[test]
fn malformed_chains() {
    use prost::Message as _;
    let pki = Pki::new();
    let good = wa_proto::CertChain::decode(
        pki.builder().sign(&pki.root.private, &pki.intermediate.private).as_slice(),
    )
    .expect("decodes");
    let mut no_leaf = good.clone();
    no_leaf.leaf = None;
    let mut short_sig = good.clone();
    if let Some(c) = short_sig.intermediate.as_mut() {
        c.signature = Some(vec![0; 63]);
    }
    for (chain, role) in [(no_leaf, CertRole::Leaf), (short_sig, CertRole::Intermediate)] {
        check(
            &pki,
            chain.encode_to_vec(),
            |e| matches!(e, Error::MalformedCertificate { cert, .. } if *cert == role),
            ErrorKind::Malformed,
        );
    }
    check(&pki, vec![0xFF, 0xFF], |e| matches!(e, Error::Protobuf { .. }), ErrorKind::Malformed);
}
