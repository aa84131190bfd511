//! Pairing: checking the phone's `pair-success` (ADV HMAC, account signature), signing
//! our device identity, and the phone-number code flow's key derivations.

use prost::Message as _;
use wa_binary::{Jid, Node};
use wa_crypto::{KeyPair, PublicKey};
use wa_proto::{AdvDeviceIdentity, AdvEncryptionType, AdvSignedDeviceIdentity, AdvSignedDeviceIdentityHmac};

use crate::conn::server_jid;
use crate::error::{Error, Result};

const ACCOUNT_SIG_PREFIX: [u8; 2] = [6, 0];
const HOSTED_ACCOUNT_SIG_PREFIX: [u8; 2] = [6, 5];
const DEVICE_SIG_PREFIX: [u8; 2] = [6, 1];

/// What a verified `pair-success` yields.
#[derive(Clone, Debug)]
pub(crate) struct Paired {
    pub jid: Jid,
    pub lid: Option<Jid>,
    pub platform: String,
    pub business_name: Option<String>,
    /// ADVSignedDeviceIdentity with the account key and our device signature (stored).
    pub signed_identity: Vec<u8>,
    /// The primary phone's identity key (trusted for its device 0).
    pub account_key: PublicKey,
    /// The reply `<iq type="result"><pair-device-sign>…`.
    pub reply: Node,
    /// `ClientPairingProps.isChatDbLidMigrated` from `<client-props>`: whether the account's
    /// 1:1 chats are LID-addressed (`None` when the phone did not say).
    pub lid_migrated: Option<bool>,
}

/// Why the phone's data was refused, and the error iq to answer with.
#[derive(Debug)]
pub(crate) struct PairRefusal {
    pub reason: String,
    pub reply: Box<Node>,
}

fn refusal(id: &str, code: u16, text: &str, reason: impl Into<String>) -> PairRefusal {
    PairRefusal {
        reason: reason.into(),
        reply: Box::new(
            Node::new("iq")
                .attr("to", server_jid())
                .attr("type", "error")
                .attr("id", id)
                .children([Node::new("error").attr("code", code).attr("text", text)]),
        ),
    }
}

/// Verifies a `<iq><pair-success>` against our identity and ADV secret.
pub(crate) fn handle_pair_success(
    iq: &Node,
    identity: &KeyPair,
    adv_secret: &[u8; 32],
) -> std::result::Result<Paired, PairRefusal> {
    let id = iq.opt_attr_str("id").map(|s| s.into_owned()).unwrap_or_default();
    let malformed =
        |what: &str| refusal(&id, 500, "internal-error", format!("malformed pair-success: {what}"));
    let ps = iq.child("pair-success").ok_or_else(|| malformed("no pair-success"))?;
    let container = ps
        .child("device-identity")
        .and_then(|n| n.content_bytes())
        .ok_or_else(|| malformed("no device-identity"))?;
    let device = ps.child("device").ok_or_else(|| malformed("no device"))?;
    let jid = device.attr_jid("jid").map_err(|_| malformed("device jid"))?;
    let lid = device.attr_jid("lid").ok();
    let platform =
        ps.child("platform").and_then(|p| p.opt_attr_str("name")).map(|s| s.into_owned()).unwrap_or_default();
    let business_name = ps.child("biz").and_then(|p| p.opt_attr_str("name")).map(|s| s.into_owned());
    let lid_migrated = client_props(ps);

    let hmac_container = AdvSignedDeviceIdentityHmac::decode(container)
        .map_err(|_| malformed("ADVSignedDeviceIdentityHMAC"))?;
    let details = hmac_container.details.as_deref().ok_or_else(|| malformed("hmac details"))?;
    let given = hmac_container.hmac.as_deref().ok_or_else(|| malformed("hmac"))?;
    let hosted = hmac_container.account_type == Some(AdvEncryptionType::Hosted as i32);
    let expected = if hosted {
        wa_crypto::hmac_sha256(adv_secret, &[&HOSTED_ACCOUNT_SIG_PREFIX, details])
    } else {
        wa_crypto::hmac_sha256(adv_secret, &[details])
    };
    if !wa_crypto::ct_eq(&expected, given) {
        return Err(refusal(&id, 401, "hmac-mismatch", "ADV HMAC does not match our ADV secret"));
    }

    let mut signed =
        AdvSignedDeviceIdentity::decode(details).map_err(|_| malformed("ADVSignedDeviceIdentity"))?;
    let inner = signed.details.clone().ok_or_else(|| malformed("identity details"))?;
    let device_identity =
        AdvDeviceIdentity::decode(inner.as_slice()).map_err(|_| malformed("ADVDeviceIdentity"))?;
    let account_key_bytes =
        signed.account_signature_key.as_deref().ok_or_else(|| malformed("account key"))?;
    let account_key =
        PublicKey::from_bytes(account_key_bytes).map_err(|_| malformed("account key length"))?;
    let account_sig: [u8; 64] = signed
        .account_signature
        .as_deref()
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| malformed("account signature"))?;
    let prefix = if device_identity.device_type == Some(AdvEncryptionType::Hosted as i32) {
        HOSTED_ACCOUNT_SIG_PREFIX
    } else {
        ACCOUNT_SIG_PREFIX
    };
    let own_pub = identity.public.as_bytes();
    let msg = [&prefix[..], &inner, own_pub].concat();
    if !account_key.verify(&msg, &account_sig) {
        return Err(refusal(&id, 401, "signature-mismatch", "account signature does not verify"));
    }
    let dev_msg = [&DEVICE_SIG_PREFIX[..], &inner, own_pub, account_key.as_bytes()].concat();
    signed.device_signature = Some(identity.private.sign(&dev_msg).to_vec());
    let stored = signed.encode_to_vec();
    let mut reply_identity = signed.clone();
    reply_identity.account_signature_key = None;
    let key_index = device_identity.key_index.unwrap_or(0);
    let reply =
        Node::new("iq").attr("to", server_jid()).attr("type", "result").attr("id", id.as_str()).children([
            Node::new("pair-device-sign").children([Node::new("device-identity")
                .attr("key-index", key_index)
                .bytes(reply_identity.encode_to_vec())]),
        ]);
    Ok(Paired {
        jid,
        lid,
        platform,
        business_name,
        signed_identity: stored,
        account_key,
        reply,
        lid_migrated,
    })
}

/// `isChatDbLidMigrated` of pair-success's `<client-props>` (a `ClientPairingProps`, whatsmeow
/// pair.go `handlePairSuccess`, whatsapp-rust 0.7 wacore src/pair.rs `extract_pairing_props`).
/// Unreadable props are logged and taken as absent, as whatsmeow does: they do not decide
/// whether the phone's identity is trusted.
fn client_props(pair_success: &Node) -> Option<bool> {
    let bytes = pair_success.child("client-props")?.content_bytes()?;
    match wa_proto::ClientPairingProps::decode(bytes) {
        Ok(p) => p.is_chat_db_lid_migrated,
        Err(e) => {
            tracing::warn!(%e, "unreadable client-props in pair-success");
            None
        }
    }
}

// ---- pairing code (link with phone number) ----

const CODE_ALPHABET: &[u8; 32] = b"123456789ABCDEFGHJKLMNPQRSTVWXYZ";
const CODE_PBKDF2_ROUNDS: u32 = 2 << 16;

/// Eight characters of Crockford-like base32 from 5 random bytes.
pub(crate) fn pairing_code(random: [u8; 5]) -> String {
    let mut v: u64 = 0;
    for b in random {
        v = (v << 8) | u64::from(b);
    }
    (0..8).rev().map(|i| char::from(CODE_ALPHABET[((v >> (i * 5)) & 31) as usize])).collect()
}

fn code_key(code: &str, salt: &[u8]) -> [u8; 32] {
    let mut key = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(code.as_bytes(), salt, CODE_PBKDF2_ROUNDS, &mut key);
    key
}

fn aes_ctr(key: &[u8; 32], iv: &[u8; 16], data: &mut [u8]) {
    use ctr::cipher::{KeyIvInit, StreamCipher};
    let mut c = ctr::Ctr128BE::<aes::Aes256>::new(key.into(), iv.into());
    c.apply_keystream(data);
}

/// `salt(32) ‖ iv(16) ‖ AES-256-CTR(PBKDF2(code, salt), iv, ephemeral_pub)`.
pub(crate) fn wrap_companion_ephemeral(
    code: &str,
    salt: [u8; 32],
    iv: [u8; 16],
    ephemeral_pub: &[u8; 32],
) -> Vec<u8> {
    let key = code_key(code, &salt);
    let mut ct = *ephemeral_pub;
    aes_ctr(&key, &iv, &mut ct);
    [&salt[..], &iv, &ct].concat()
}

/// Inverse of [`wrap_companion_ephemeral`] for the primary's wrapped key.
pub(crate) fn unwrap_primary_ephemeral(code: &str, wrapped: &[u8]) -> Result<PublicKey> {
    if wrapped.len() != 80 {
        return Err(Error::Pairing(format!(
            "wrapped primary ephemeral must be 80 bytes, got {}",
            wrapped.len()
        )));
    }
    let key = code_key(code, &wrapped[..32]);
    let iv: [u8; 16] = wrapped[32..48].try_into().map_err(|_| Error::Pairing("iv".into()))?;
    let mut pk: [u8; 32] = wrapped[48..80].try_into().map_err(|_| Error::Pairing("key".into()))?;
    aes_ctr(&key, &iv, &mut pk);
    Ok(PublicKey::from_array(pk))
}

/// The companion_finish bundle and the new ADV secret.
pub(crate) struct CodeFinish {
    pub bundle: Vec<u8>,
    pub adv_secret: [u8; 32],
}

/// Derives the wrapped key bundle and the new ADV secret (protocol reference §7.4).
pub(crate) fn code_finish(
    companion_ephemeral: &KeyPair,
    primary_ephemeral: &PublicKey,
    identity: &KeyPair,
    primary_identity: &PublicKey,
    bundle_salt: [u8; 32],
    nonce: [u8; 12],
    rnd: [u8; 32],
) -> Result<CodeFinish> {
    let s_eph =
        companion_ephemeral.private.agree(primary_ephemeral).map_err(|e| Error::Pairing(e.to_string()))?;
    let bundle_key: [u8; 32] =
        wa_crypto::hkdf_sha256_array(&s_eph, &bundle_salt, b"link_code_pairing_key_bundle_encryption_key");
    let plain = [identity.public.as_bytes(), primary_identity.as_bytes(), &rnd[..]].concat();
    let ct = wa_crypto::aead::encrypt(&bundle_key, &nonce, &[], &plain);
    let bundle = [&bundle_salt[..], &nonce, &ct].concat();
    let s_id = identity.private.agree(primary_identity).map_err(|e| Error::Pairing(e.to_string()))?;
    let ikm = [&s_eph[..], &s_id, &rnd].concat();
    let adv_secret: [u8; 32] = wa_crypto::hkdf_sha256_array(&ikm, &[], b"adv_secret");
    Ok(CodeFinish { bundle, adv_secret })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(7)
    }

    /// Builds what a phone sends, to check our verification both ways.
    fn pair_success(identity: &KeyPair, adv: &[u8; 32], phone: &KeyPair, tamper_hmac: bool) -> Node {
        let inner = AdvDeviceIdentity {
            raw_id: Some(9),
            timestamp: Some(1),
            key_index: Some(3),
            ..Default::default()
        }
        .encode_to_vec();
        let msg = [&ACCOUNT_SIG_PREFIX[..], &inner, identity.public.as_bytes()].concat();
        let signed = AdvSignedDeviceIdentity {
            details: Some(inner),
            account_signature_key: Some(phone.public.as_bytes().to_vec()),
            account_signature: Some(phone.private.sign(&msg).to_vec()),
            device_signature: None,
        }
        .encode_to_vec();
        let mut hmac = wa_crypto::hmac_sha256(adv, &[&signed]).to_vec();
        if tamper_hmac {
            hmac[0] ^= 1;
        }
        let container =
            AdvSignedDeviceIdentityHmac { details: Some(signed), hmac: Some(hmac), account_type: None };
        Node::new("iq").attr("id", "p1").attr("type", "set").children([Node::new("pair-success").children([
            Node::new("device-identity").bytes(container.encode_to_vec()),
            Node::new("device").attr("jid", Jid::pn("15551234567").unwrap().with_device(12).unwrap()),
            Node::new("platform").attr("name", "android"),
        ])])
    }

    #[test]
    fn pair_success_verifies_and_signs() {
        let mut r = rng();
        let identity = KeyPair::generate(&mut r);
        let phone = KeyPair::generate(&mut r);
        let adv = [5u8; 32];
        let p = handle_pair_success(&pair_success(&identity, &adv, &phone, false), &identity, &adv).unwrap();
        assert_eq!(p.jid.device(), 12);
        assert_eq!(p.platform, "android");
        let signed = AdvSignedDeviceIdentity::decode(p.signed_identity.as_slice()).unwrap();
        let dev_msg = [
            &DEVICE_SIG_PREFIX[..],
            signed.details.as_deref().unwrap(),
            identity.public.as_bytes(),
            phone.public.as_bytes(),
        ]
        .concat();
        let sig: [u8; 64] = signed.device_signature.as_deref().unwrap().try_into().unwrap();
        assert!(identity.public.verify(&dev_msg, &sig));
        let di = p.reply.child_path(&["pair-device-sign", "device-identity"]).unwrap();
        assert_eq!(di.attr_str("key-index").unwrap(), "3");
        let sent = AdvSignedDeviceIdentity::decode(di.content_bytes().unwrap()).unwrap();
        assert!(sent.account_signature_key.is_none());
        assert!(sent.device_signature.is_some());
    }

    #[test]
    fn client_props_say_whether_the_account_is_lid_migrated() {
        let mut r = rng();
        let identity = KeyPair::generate(&mut r);
        let phone = KeyPair::generate(&mut r);
        let adv = [5u8; 32];
        let with_props = |props: Option<Vec<u8>>| {
            let mut iq = pair_success(&identity, &adv, &phone, false);
            if let (Some(bytes), wa_binary::Content::Children(c)) = (props, &mut iq.content)
                && let wa_binary::Content::Children(ps) = &mut c[0].content
            {
                ps.push(Node::new("client-props").bytes(bytes));
            }
            handle_pair_success(&iq, &identity, &adv).map(|p| p.lid_migrated).ok()
        };
        let props = |m: Option<bool>| {
            wa_proto::ClientPairingProps { is_chat_db_lid_migrated: m, ..Default::default() }.encode_to_vec()
        };
        assert_eq!(with_props(None), Some(None));
        assert_eq!(with_props(Some(props(Some(true)))), Some(Some(true)));
        assert_eq!(with_props(Some(props(Some(false)))), Some(Some(false)));
        assert_eq!(with_props(Some(props(None))), Some(None));
        // Garbage props do not refuse a pairing whose identity verifies; they say nothing.
        assert_eq!(with_props(Some(vec![0xff, 0xff, 0xff])), Some(None));
    }

    #[test]
    fn bad_hmac_and_bad_signature_are_refused() {
        let mut r = rng();
        let identity = KeyPair::generate(&mut r);
        let phone = KeyPair::generate(&mut r);
        let adv = [5u8; 32];
        let e =
            handle_pair_success(&pair_success(&identity, &adv, &phone, true), &identity, &adv).unwrap_err();
        assert_eq!(e.reply.child("error").unwrap().attr_str("text").unwrap(), "hmac-mismatch");
        let other = KeyPair::generate(&mut r);
        let e = handle_pair_success(&pair_success(&other, &adv, &phone, false), &identity, &adv).unwrap_err();
        assert_eq!(e.reply.child("error").unwrap().attr_str("text").unwrap(), "signature-mismatch");
    }

    #[test]
    fn pairing_code_is_eight_chars_of_the_alphabet() {
        let c = pairing_code([0xff, 0, 0x12, 0x34, 0x56]);
        assert_eq!(c.len(), 8);
        assert!(c.bytes().all(|b| CODE_ALPHABET.contains(&b)));
        assert_eq!(pairing_code([0; 5]), "11111111");
    }

    #[test]
    fn code_wrapping_round_trips_and_both_sides_agree_on_adv_secret() {
        let mut r = rng();
        let e_c = KeyPair::generate(&mut r);
        let wrapped = wrap_companion_ephemeral("ABCD2345", [1; 32], [2; 16], e_c.public.as_bytes());
        assert_eq!(wrapped.len(), 80);
        assert_eq!(unwrap_primary_ephemeral("ABCD2345", &wrapped).unwrap(), e_c.public);
        assert_ne!(unwrap_primary_ephemeral("ABCD2346", &wrapped).unwrap(), e_c.public);

        let e_p = KeyPair::generate(&mut r);
        let id_c = KeyPair::generate(&mut r);
        let id_p = KeyPair::generate(&mut r);
        let fin = code_finish(&e_c, &e_p.public, &id_c, &id_p.public, [3; 32], [4; 12], [6; 32]).unwrap();
        assert_eq!(fin.bundle.len(), 156);
        // The phone's side: decrypt the bundle and derive the same secret.
        let s_eph = e_p.private.agree(&e_c.public).unwrap();
        let key: [u8; 32] = wa_crypto::hkdf_sha256_array(
            &s_eph,
            &fin.bundle[..32],
            b"link_code_pairing_key_bundle_encryption_key",
        );
        let nonce: [u8; 12] = fin.bundle[32..44].try_into().unwrap();
        let plain = wa_crypto::aead::decrypt(&key, &nonce, &[], &fin.bundle[44..]).unwrap();
        let rnd = &plain[64..96];
        let s_id = id_p.private.agree(&id_c.public).unwrap();
        let adv: [u8; 32] =
            wa_crypto::hkdf_sha256_array(&[&s_eph[..], &s_id, rnd].concat(), &[], b"adv_secret");
        assert_eq!(adv, fin.adv_secret);
    }
}
