//! `<iq xmlns="encrypt" type="set">`: a device publishing one-time prekeys and its signed
//! prekey (`<registration><type><identity><list><skey>`, WA Web's `WAWebUploadPreKeysJob`,
//! whatsmeow `prekeys.go` `uploadPreKeys`, Baileys `Utils/signal.ts` `getNextPreKeysNode`), or
//! rotating only the signed prekey (`<rotate><skey>`, whatsapp-rust `wacore/src/iq/prekeys.rs`).
//!
//! The service only keeps keys that belong to the paired device: the registration id and
//! identity must be the ones it registered with at pairing, and the signed prekey's signature
//! must verify with that identity. Refusals are all-or-nothing and use the codes WA Web
//! treats as deterministic rejections of a key (whatsapp-rust `src/features/rotate_key.rs`:
//! 406 for a bad key, 409 for a failed validation); a missing part is a 400.

use wa_binary::Node;
use wa_crypto::PublicKey;

use crate::world::{DeviceAddr, SignedPreKeyPub, World, be_int, child_bytes};

/// Why an upload was refused, and the `<error code text>` the server answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UploadRefusal {
    /// A required part is absent.
    #[error("missing <{0}>")]
    Missing(&'static str),
    /// A key or id has the wrong shape (`<type>` other than 5, a key not 32 bytes, an id not
    /// 3 bytes, a signature not 64 bytes).
    #[error("malformed {0}")]
    BadKey(&'static str),
    /// The registration id is not the one the device paired with.
    #[error("registration id {got} is not the paired device's ({want})")]
    Registration {
        /// Uploaded.
        got: u32,
        /// Registered at pairing.
        want: u32,
    },
    /// The identity key is not the one the device paired with.
    #[error("identity key is not the paired device's")]
    Identity,
    /// The signed prekey's signature does not verify with the device's identity key.
    #[error("signed prekey signature does not verify")]
    Signature,
}

impl UploadRefusal {
    /// The error code and text of the `<iq type="error">` answer.
    pub fn code(&self) -> (u16, &'static str) {
        match self {
            Self::Missing(_) => (400, "bad-request"),
            Self::BadKey(_) => (406, "not-acceptable"),
            Self::Registration { .. } | Self::Identity | Self::Signature => (409, "conflict"),
        }
    }
}

/// A checked upload.
#[derive(Debug)]
struct Upload {
    pre_keys: Vec<(u32, PublicKey)>,
    signed: Option<SignedPreKeyPub>,
}

fn id24(b: &[u8], what: &'static str) -> Result<u32, UploadRefusal> {
    if b.len() != 3 {
        return Err(UploadRefusal::BadKey(what));
    }
    be_int(b).ok_or(UploadRefusal::BadKey(what))
}

fn key(b: &[u8], what: &'static str) -> Result<PublicKey, UploadRefusal> {
    PublicKey::from_bytes(b).map_err(|_| UploadRefusal::BadKey(what))
}

fn parse_skey(s: &Node) -> Result<SignedPreKeyPub, UploadRefusal> {
    let id = id24(child_bytes(s, "id").ok_or(UploadRefusal::Missing("skey/id"))?, "signed prekey id")?;
    let public = key(child_bytes(s, "value").ok_or(UploadRefusal::Missing("skey/value"))?, "signed prekey")?;
    let signature: [u8; 64] = child_bytes(s, "signature")
        .ok_or(UploadRefusal::Missing("skey/signature"))?
        .try_into()
        .map_err(|_| UploadRefusal::BadKey("signed prekey signature"))?;
    Ok(SignedPreKeyPub { id, public, signature })
}

/// Checks an upload against the paired device's registration id and identity key.
fn check(iq: &Node, registration_id: u32, identity: &PublicKey) -> Result<Upload, UploadRefusal> {
    let skey_node = iq.child("skey").or_else(|| iq.child("rotate").and_then(|r| r.child("skey")));
    let rotation_only = iq.child("rotate").is_some() && iq.child("list").is_none();
    if !rotation_only {
        let reg = child_bytes(iq, "registration").ok_or(UploadRefusal::Missing("registration"))?;
        if reg.len() != 4 {
            return Err(UploadRefusal::BadKey("registration id"));
        }
        let got = be_int(reg).ok_or(UploadRefusal::BadKey("registration id"))?;
        if got != registration_id {
            return Err(UploadRefusal::Registration { got, want: registration_id });
        }
        if child_bytes(iq, "type").ok_or(UploadRefusal::Missing("type"))? != [5u8] {
            return Err(UploadRefusal::BadKey("key type"));
        }
        let ident = key(child_bytes(iq, "identity").ok_or(UploadRefusal::Missing("identity"))?, "identity")?;
        if ident != *identity {
            return Err(UploadRefusal::Identity);
        }
    }
    let mut pre_keys = Vec::new();
    if let Some(list) = iq.child("list") {
        for k in list.children_by_tag("key") {
            let id = id24(child_bytes(k, "id").ok_or(UploadRefusal::Missing("key/id"))?, "prekey id")?;
            let v = key(child_bytes(k, "value").ok_or(UploadRefusal::Missing("key/value"))?, "prekey")?;
            pre_keys.push((id, v));
        }
    }
    let signed = match skey_node {
        Some(s) => {
            let spk = parse_skey(s)?;
            let msg = [&[5u8][..], spk.public.as_bytes()].concat();
            if !identity.verify(&msg, &spk.signature) {
                return Err(UploadRefusal::Signature);
            }
            Some(spk)
        }
        None => return Err(UploadRefusal::Missing("skey")),
    };
    Ok(Upload { pre_keys, signed })
}

impl World {
    /// Stores a device's checked upload, or answers with the refusal.
    pub(crate) fn on_prekey_upload(&mut self, addr: DeviceAddr, iq: &Node) -> Node {
        let Some(d) = self.accounts[addr.account].devices.get(&addr.device) else {
            return self.iq_error(iq, 404, "item-not-found");
        };
        match check(iq, d.keys.registration_id, &d.keys.identity) {
            Ok(upload) => {
                if let Some(d) = self.accounts[addr.account].devices.get_mut(&addr.device) {
                    d.keys.pre_keys.extend(upload.pre_keys);
                    if let Some(spk) = upload.signed {
                        d.keys.signed_pre_key = spk;
                    }
                }
                self.iq_result(iq)
            }
            Err(e) => {
                tracing::warn!(?addr, error = %e, "prekey upload refused");
                let (code, text) = e.code();
                self.iq_error(iq, code, text)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use rand::SeedableRng;
    use wa_crypto::KeyPair;

    use super::*;
    use crate::world::be_bytes;

    struct Dev {
        identity: KeyPair,
        registration_id: u32,
    }

    fn upload(d: &Dev, spk: &KeyPair, sig: [u8; 64]) -> Node {
        Node::new("iq").attr("xmlns", "encrypt").attr("type", "set").children([
            Node::new("registration").bytes(be_bytes(d.registration_id, 4)),
            Node::new("type").bytes(vec![5u8]),
            Node::new("identity").bytes(d.identity.public.as_bytes().to_vec()),
            Node::new("list").children([Node::new("key").children([
                Node::new("id").bytes(be_bytes(7, 3)),
                Node::new("value").bytes(spk.public.as_bytes().to_vec()),
            ])]),
            Node::new("skey").children([
                Node::new("id").bytes(be_bytes(1, 3)),
                Node::new("value").bytes(spk.public.as_bytes().to_vec()),
                Node::new("signature").bytes(sig.to_vec()),
            ]),
        ])
    }

    #[test]
    fn an_upload_must_be_the_paired_devices_and_signed() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let d = Dev { identity: KeyPair::generate(&mut rng), registration_id: 4242 };
        let spk = KeyPair::generate(&mut rng);
        let sig = d.identity.private.sign(&[&[5u8][..], spk.public.as_bytes()].concat());
        let good = upload(&d, &spk, sig);
        let ok = check(&good, 4242, &d.identity.public).unwrap();
        assert_eq!(ok.pre_keys.len(), 1);
        assert_eq!(ok.signed.unwrap().id, 1);

        assert_eq!(
            check(&good, 4243, &d.identity.public).unwrap_err(),
            UploadRefusal::Registration { got: 4242, want: 4243 }
        );
        let other = KeyPair::generate(&mut rng);
        assert_eq!(check(&good, 4242, &other.public).unwrap_err(), UploadRefusal::Identity);
        // Signed by another key than the identity.
        let forged = upload(&d, &spk, other.private.sign(&[&[5u8][..], spk.public.as_bytes()].concat()));
        let e = check(&forged, 4242, &d.identity.public).unwrap_err();
        assert_eq!((e.clone(), e.code()), (UploadRefusal::Signature, (409, "conflict")));
        // Malformed keys and missing parts.
        let mut bad = good.clone();
        if let wa_binary::Content::Children(c) = &mut bad.content {
            c[3] = Node::new("list").children([Node::new("key")
                .children([Node::new("id").bytes(be_bytes(7, 3)), Node::new("value").bytes(vec![1u8; 31])])]);
        }
        let e = check(&bad, 4242, &d.identity.public).unwrap_err();
        assert_eq!((e.clone(), e.code().0), (UploadRefusal::BadKey("prekey"), 406));
        let mut no_reg = good.clone();
        if let wa_binary::Content::Children(c) = &mut no_reg.content {
            c.remove(0);
        }
        assert_eq!(check(&no_reg, 4242, &d.identity.public).unwrap_err().code().0, 400);
        // A rotation carries only the signed prekey, checked the same way.
        let rotate =
            Node::new("iq").children([Node::new("rotate").children([good.child("skey").unwrap().clone()])]);
        assert!(check(&rotate, 4242, &d.identity.public).unwrap().pre_keys.is_empty());
        let rotate_forged =
            Node::new("iq").children([Node::new("rotate").children([forged.child("skey").unwrap().clone()])]);
        assert_eq!(check(&rotate_forged, 4242, &d.identity.public).unwrap_err(), UploadRefusal::Signature);
    }

    #[test]
    fn a_refused_upload_stores_nothing() {
        let mut w = crate::world::tests::bare_world();
        let a = w.create_account("15550001000", "A").unwrap();
        let addr = DeviceAddr { account: a, device: 0 };
        let before = w.accounts[a].devices[&0].keys.pre_keys.len();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let stranger = Dev { identity: KeyPair::generate(&mut rng), registration_id: 1 };
        let spk = KeyPair::generate(&mut rng);
        let sig = stranger.identity.private.sign(&[&[5u8][..], spk.public.as_bytes()].concat());
        let reply = w.on_prekey_upload(addr, &upload(&stranger, &spk, sig).attr("id", "x"));
        assert_eq!(reply.opt_attr_str("type").as_deref(), Some("error"));
        assert_eq!(reply.child("error").unwrap().opt_attr_str("code").as_deref(), Some("409"));
        assert_eq!(w.accounts[a].devices[&0].keys.pre_keys.len(), before);
    }
}
