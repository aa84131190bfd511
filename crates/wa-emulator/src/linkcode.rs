//! Pairing by phone number ("link with phone number" code): the companion's
//! `link_code_companion_reg` stages and the phone's side of the exchange, with the real
//! crypto (PBKDF2-HMAC-SHA256 ×131072 + AES-256-CTR wrapping of the ephemerals, X25519,
//! HKDF for the key bundle and the new ADV secret).

use rand_core::Rng;
use wa_binary::Node;
use wa_crypto::{KeyPair, PublicKey};

use crate::world::{AccountId, ConnId, ControlError, World, WorldEvent, attr, child_bytes, server_jid};

/// A companion's pairing-code request, kept until the phone enters the code.
#[derive(Debug, Clone)]
pub(crate) struct CompanionCode {
    pub phone_number: String,
    pub wrapped_companion_ephemeral: Vec<u8>,
    pub ref_: String,
    /// Set once the phone entered a code: (code, primary ephemeral private key bytes).
    pub primary: Option<(String, [u8; 32])>,
}

const PBKDF2_ROUNDS: u32 = 2 << 16;

/// PBKDF2-HMAC-SHA256 with one 32-byte output block.
pub(crate) fn pbkdf2_sha256(password: &[u8], salt: &[u8], rounds: u32) -> [u8; 32] {
    let mut u = wa_crypto::hmac_sha256(password, &[salt, &1u32.to_be_bytes()]);
    let mut t = u;
    for _ in 1..rounds {
        u = wa_crypto::hmac_sha256(password, &[&u]);
        for (a, b) in t.iter_mut().zip(u.iter()) {
            *a ^= b;
        }
    }
    t
}

/// One AES-256 block encryption, via CBC with the block as IV over a zero block
/// (C = E(K, 0 ⊕ IV)); wa-crypto exposes CBC, not raw blocks.
fn aes_block(key: &[u8; 32], block: &[u8; 16]) -> [u8; 16] {
    let ct = wa_crypto::cbc::encrypt(key, block, &[0u8; 16]);
    let mut out = [0u8; 16];
    out.copy_from_slice(&ct[..16]);
    out
}

/// AES-256-CTR with a 128-bit big-endian counter starting at `iv` (Node's `aes-256-ctr`).
pub(crate) fn aes_ctr(key: &[u8; 32], iv: &[u8; 16], data: &[u8]) -> Vec<u8> {
    let mut counter = u128::from_be_bytes(*iv);
    let mut out = Vec::with_capacity(data.len());
    for chunk in data.chunks(16) {
        let ks = aes_block(key, &counter.to_be_bytes());
        out.extend(chunk.iter().zip(ks.iter()).map(|(a, b)| a ^ b));
        counter = counter.wrapping_add(1);
    }
    out
}

/// Unwraps `salt(32) ‖ iv(16) ‖ AES-CTR(PBKDF2(code, salt), iv, key)(32)`.
fn unwrap_ephemeral(code: &str, wrapped: &[u8]) -> Option<PublicKey> {
    if wrapped.len() != 80 {
        return None;
    }
    let key = pbkdf2_sha256(code.as_bytes(), &wrapped[..32], PBKDF2_ROUNDS);
    let iv: [u8; 16] = wrapped[32..48].try_into().ok()?;
    PublicKey::from_bytes(&aes_ctr(&key, &iv, &wrapped[48..80])).ok()
}

fn wrap_ephemeral<R: Rng + ?Sized>(code: &str, key: &PublicKey, rng: &mut R) -> Vec<u8> {
    let mut salt = [0u8; 32];
    let mut iv = [0u8; 16];
    rng.fill_bytes(&mut salt);
    rng.fill_bytes(&mut iv);
    let k = pbkdf2_sha256(code.as_bytes(), &salt, PBKDF2_ROUNDS);
    let mut out = salt.to_vec();
    out.extend_from_slice(&iv);
    out.extend(aes_ctr(&k, &iv, key.as_bytes()));
    out
}

fn normalize_code(code: &str) -> String {
    code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect()
}

impl World {
    /// `<link_code_companion_reg>` stages from a registering companion.
    pub(crate) fn on_link_code(&mut self, conn: ConnId, iq: &Node) -> Option<Node> {
        let reg_node = iq.child("link_code_companion_reg")?;
        let stage = attr(reg_node, "stage");
        let has_registration = self.conns.get(&conn).is_some_and(|c| c.registration.is_some());
        if !has_registration {
            return Some(self.iq_error(iq, 400, "bad-request"));
        }
        match stage.as_str() {
            "companion_hello" => {
                let phone = attr(reg_node, "jid");
                let phone = phone.split('@').next().unwrap_or_default().to_owned();
                let Some(wrapped) =
                    child_bytes(reg_node, "link_code_pairing_wrapped_companion_ephemeral_pub")
                else {
                    return Some(self.iq_error(iq, 400, "bad-request"));
                };
                if wrapped.len() != 80 || !self.by_pn.contains_key(&phone) {
                    return Some(self.iq_error(
                        iq,
                        if wrapped.len() != 80 { 400 } else { 404 },
                        "bad-request",
                    ));
                }
                let noise_ok = child_bytes(reg_node, "companion_server_auth_key_pub").is_some_and(|k| {
                    self.conns
                        .get(&conn)
                        .and_then(|c| c.registration.as_ref())
                        .is_some_and(|r| r.noise_key.as_bytes()[..] == k[..])
                });
                if !noise_ok {
                    return Some(self.iq_error(iq, 400, "bad-request"));
                }
                let ref_ = format!("2@{}", self.random_hex(16));
                let code_pn = phone.clone();
                let code = CompanionCode {
                    phone_number: phone,
                    wrapped_companion_ephemeral: wrapped.to_vec(),
                    ref_: ref_.clone(),
                    primary: None,
                };
                if let Some(r) = self.conns.get_mut(&conn).and_then(|c| c.registration.as_mut()) {
                    r.link_code = Some(code);
                }
                self.link_refs.insert(ref_.clone(), conn);
                self.emit(WorldEvent::PairingCodeRequested { pn: code_pn, conn });
                Some(
                    self.iq_result(iq).children([Node::new("link_code_companion_reg")
                        .children([Node::new("link_code_pairing_ref").bytes(ref_.into_bytes())])]),
                )
            }
            "companion_finish" => self.link_code_finish(conn, iq, reg_node),
            _ => Some(self.iq_error(iq, 400, "bad-request")),
        }
    }

    /// The phone of `account` enters a pairing code shown by a companion.
    pub(crate) fn enter_link_code(&mut self, account: AccountId, code: &str) -> Result<(), ControlError> {
        let pn = self.accounts[account].pn.clone();
        let code = normalize_code(code);
        let conn = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.registration
                    .as_ref()
                    .and_then(|r| r.link_code.as_ref())
                    .is_some_and(|l| l.phone_number == pn && l.primary.is_none())
            })
            .map(|(id, _)| *id)
            .max()
            .ok_or_else(|| ControlError::UnknownCode(pn.clone()))?;
        let link = self
            .conns
            .get(&conn)
            .and_then(|c| c.registration.as_ref())
            .and_then(|r| r.link_code.clone())
            .ok_or_else(|| ControlError::UnknownCode(pn.clone()))?;
        if code.len() != 8 {
            return Err(ControlError::BadCode("a pairing code has 8 characters".into()));
        }
        // Any code unwraps to *some* key; a wrong code shows up when the bundle fails to open.
        unwrap_ephemeral(&code, &link.wrapped_companion_ephemeral)
            .ok_or_else(|| ControlError::BadCode("companion ephemeral does not unwrap".into()))?;
        let primary = KeyPair::generate(&mut self.rng);
        let wrapped_primary = wrap_ephemeral(&code, &primary.public, &mut self.rng);
        let identity = self.accounts[account].phone.identity_public();
        if let Some(l) =
            self.conns.get_mut(&conn).and_then(|c| c.registration.as_mut()).and_then(|r| r.link_code.as_mut())
        {
            l.primary = Some((code, *primary.private.as_bytes()));
        }
        let id = self.next_iq_id();
        let now = self.now();
        self.send(
            conn,
            Node::new("notification")
                .attr("from", server_jid())
                .attr("type", "link_code_companion_reg")
                .attr("id", id)
                .attr("t", now)
                .children([Node::new("link_code_companion_reg").attr("stage", "primary_hello").children([
                    Node::new("link_code_pairing_ref").bytes(link.ref_.into_bytes()),
                    Node::new("link_code_pairing_wrapped_primary_ephemeral_pub").bytes(wrapped_primary),
                    Node::new("primary_identity_pub").bytes(identity.as_bytes().to_vec()),
                ])]),
        );
        Ok(())
    }

    fn link_code_finish(&mut self, conn: ConnId, iq: &Node, reg_node: &Node) -> Option<Node> {
        let Some(reg) = self.conns.get(&conn).and_then(|c| c.registration.clone()) else {
            return Some(self.iq_error(iq, 400, "bad-request"));
        };
        let Some(link) = reg.link_code.clone() else { return Some(self.iq_error(iq, 400, "bad-request")) };
        let Some((code, primary_priv)) = link.primary.clone() else {
            return Some(self.iq_error(iq, 400, "bad-request"));
        };
        let Some(&account) = self.by_pn.get(&link.phone_number) else {
            return Some(self.iq_error(iq, 404, "item-not-found"));
        };
        let result = (|| {
            let bundle = child_bytes(reg_node, "link_code_pairing_wrapped_key_bundle")?;
            let companion_identity =
                PublicKey::from_bytes(child_bytes(reg_node, "companion_identity_public")?).ok()?;
            if companion_identity != reg.keys.identity || bundle.len() < 32 + 12 + 16 {
                return None;
            }
            let companion_eph = unwrap_ephemeral(&code, &link.wrapped_companion_ephemeral)?;
            let primary = wa_crypto::PrivateKey::from_bytes(primary_priv);
            let s_eph = primary.agree(&companion_eph).ok()?;
            let key: [u8; 32] = wa_crypto::hkdf_sha256_array(
                &s_eph,
                &bundle[..32],
                b"link_code_pairing_key_bundle_encryption_key",
            );
            let nonce: [u8; 12] = bundle[32..44].try_into().ok()?;
            let plain = wa_crypto::aead::decrypt(&key, &nonce, &[], &bundle[44..]).ok()?;
            if plain.len() != 96 {
                return None;
            }
            let phone = &self.accounts[account].phone;
            if plain[..32] != companion_identity.as_bytes()[..]
                || plain[32..64] != phone.identity_public().as_bytes()[..]
            {
                return None;
            }
            let s_id = phone.agree(&companion_identity)?;
            let mut ikm = Vec::with_capacity(96);
            ikm.extend_from_slice(&s_eph);
            ikm.extend_from_slice(&s_id);
            ikm.extend_from_slice(&plain[64..96]);
            let adv: [u8; 32] = wa_crypto::hkdf_sha256_array(&ikm, &[], b"adv_secret");
            Some(adv)
        })();
        let Some(adv_secret) = result else {
            tracing::warn!(conn, "pairing-code key bundle does not open (wrong code?)");
            return Some(self.iq_error(iq, 401, "not-authorized"));
        };
        let reply = self.iq_result(iq);
        self.send(conn, reply);
        self.link_refs.remove(&link.ref_);
        self.pair(account, conn, &adv_secret);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pbkdf2_matches_rfc7914_vector() {
        let out = pbkdf2_sha256(b"passwd", b"salt", 1);
        assert_eq!(hex::encode(out), "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc");
    }

    #[test]
    fn aes_ctr_matches_nist_sp800_38a_f55() {
        let key: [u8; 32] = hex::decode("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
            .unwrap()
            .try_into()
            .unwrap();
        let iv: [u8; 16] = hex::decode("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff").unwrap().try_into().unwrap();
        let pt = hex::decode("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51").unwrap();
        assert_eq!(
            hex::encode(aes_ctr(&key, &iv, &pt)),
            "601ec313775789a5b7a7f504bbf3d228f443e3ca4d62b59aca84e990cacaf5c5"
        );
    }

    #[test]
    fn wrapped_ephemeral_round_trips_and_wrong_code_gives_another_key() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let kp = KeyPair::generate(&mut rng);
        let wrapped = wrap_ephemeral("ABCD1234", &kp.public, &mut rng);
        assert_eq!(wrapped.len(), 80);
        assert_eq!(unwrap_ephemeral("ABCD1234", &wrapped), Some(kp.public));
        assert_ne!(unwrap_ephemeral("ABCD1235", &wrapped), Some(kp.public));
        assert_eq!(unwrap_ephemeral("ABCD1234", &wrapped[..79]), None);
    }

    use rand::SeedableRng;
}
