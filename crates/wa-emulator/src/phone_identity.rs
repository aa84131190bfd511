//! Identities of phones and companions as peers see them: a phone reinstalling WhatsApp (new
//! identity key, its companions unlinked, its contacts told with `<notification type="encrypt">
//! <identity/>`), and the ADV identity a companion's `pkmsg` must carry, which a receiving
//! phone verifies before it accepts the new session.

use prost::Message as _;
use wa_binary::Server;
use wa_crypto::PublicKey;

use crate::keyindex::KEY_INDEX_LIST_SIGNATURE_PREFIX;
use crate::world::{AccountId, ControlError, DeviceAddr, World, WorldEvent};

/// `ADVSignedDeviceIdentity.accountSignature` domain separation: E2EE accounts, hosted ones
/// (whatsmeow `pair.go` `AdvAccountSignaturePrefix`, `AdvHostedAccountSignaturePrefix`).
const ACCOUNT_SIGNATURE_PREFIX: [u8; 2] = [6, 0];
const HOSTED_ACCOUNT_SIGNATURE_PREFIX: [u8; 2] = [6, 5];
/// `deviceSignature` domain separation (whatsmeow `pair.go` `AdvDeviceSignaturePrefix`,
/// `AdvHostedDeviceSignaturePrefix`).
const DEVICE_SIGNATURE_PREFIX: [u8; 2] = [6, 1];
const HOSTED_DEVICE_SIGNATURE_PREFIX: [u8; 2] = [6, 6];

/// Why a receiving phone refuses a companion's `<device-identity>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdvRefusal {
    /// A `pkmsg` from a companion without `<device-identity>`.
    #[error("a companion's pkmsg without <device-identity>")]
    Missing,
    /// The bytes are not an `ADVSignedDeviceIdentity` with details and both signatures.
    #[error("malformed ADVSignedDeviceIdentity: {0}")]
    Malformed(&'static str),
    /// The account signature does not verify with the account's identity key.
    #[error("the account signature does not verify")]
    AccountSignature,
    /// The identity names another account key than the sender account's.
    #[error("the account signature key is not the account's identity key")]
    AccountKey,
    /// The device signature does not verify with the sending device's identity key.
    #[error("the device signature does not verify")]
    DeviceSignature,
    /// The identity was issued for another account (`rawId`).
    #[error("raw id {0} is not the account's")]
    RawId(u32),
    /// The key index is not in the account's current signed key index list.
    #[error("key index {0} is not in the account's key index list")]
    KeyIndex(u32),
}

impl World {
    /// WhatsApp is reinstalled on `account`'s phone (or moved to a new phone): a new identity
    /// key, registration id and prekeys. Its companions are unlinked, since their ADV identities
    /// are signed by the old key (WhatsApp Help Center, "About linked devices": registering on
    /// a phone again logs out every linked device); other phones drop their sessions with it;
    /// and every companion of its peers gets `<notification type="encrypt" from=<user>>
    /// <identity/></notification>`, the stanza whatsmeow (`notification.go`
    /// `handleEncryptNotification`) and Baileys (`Utils/identity-change-handler.ts`) handle by
    /// discarding or re-fetching the user's sessions.
    pub fn phone_reinstall(&mut self, account: AccountId) -> Result<(), ControlError> {
        let pn = self
            .accounts
            .get(account)
            .ok_or_else(|| ControlError::UnknownAccount(account.to_string()))?
            .pn
            .clone();
        let companions: Vec<u16> =
            self.accounts[account].devices.keys().copied().filter(|&d| d != 0).collect();
        for device in companions {
            self.remove_device(DeviceAddr { account, device }, "reinstall");
        }
        {
            let World { accounts, rng, phone_pre_keys, .. } = self;
            let acct = &mut accounts[account];
            acct.phone.reinstall(rng, *phone_pre_keys);
            if let Some(d) = acct.devices.get_mut(&0) {
                d.keys = acct.phone.published_keys();
            }
        }
        for (i, a) in self.accounts.iter_mut().enumerate() {
            if i != account {
                a.phone.forget_account(account);
            }
        }
        // Each peer hears of it under the name its chats use for the account (see
        // `addressing`): the LID between migrated accounts, else the phone number with the LID
        // beside it (whatsapp-rust `handlers/notification.rs` `handle_identity_change` takes
        // `from` as it comes and reads an optional `lid`; whatsmeow drops by `from.User`).
        for peer in self.contacts_of(account) {
            let server = self.delivery_server(account, peer);
            let user = self.user_jid(account, server);
            let mut note = self.notification("encrypt", user, vec![wa_binary::Node::new("identity")]);
            if server == Server::Pn {
                note.set_attr("lid", self.user_jid(account, Server::Lid));
            }
            self.deliver_to_companions(peer, &note);
        }
        self.emit(WorldEvent::PhoneReinstalled { pn });
        Ok(())
    }

    /// Verifies the `<device-identity>` of a `pkmsg` from companion `sender` whose Signal
    /// identity key is `device_key`: the account signature (`06 00`, hosted `06 05`, over
    /// details ‖ device key) by the account's identity key, the device signature (`06 01`,
    /// hosted `06 06`, over details ‖ device key ‖ account key) by the device key, the raw id,
    /// and the key index present in the account's current phone-signed key index list. The
    /// prefixes are whatsmeow's (`pair.go`); the checks are those a recipient makes before
    /// trusting a companion (Auties00/Cobalt `DeviceADVValidator.java`, after WA Web's
    /// `WAWebAdvSignatureApi`).
    pub(crate) fn verify_device_identity(
        &self,
        sender: DeviceAddr,
        bytes: Option<&[u8]>,
        device_key: &PublicKey,
    ) -> Result<(), AdvRefusal> {
        let bytes = bytes.ok_or(AdvRefusal::Missing)?;
        let signed = wa_proto::AdvSignedDeviceIdentity::decode(bytes)
            .map_err(|_| AdvRefusal::Malformed("protobuf"))?;
        let details_bytes = signed.details.as_deref().ok_or(AdvRefusal::Malformed("no details"))?;
        let details = wa_proto::AdvDeviceIdentity::decode(details_bytes)
            .map_err(|_| AdvRefusal::Malformed("details"))?;
        let account_sig: [u8; 64] = signed
            .account_signature
            .as_deref()
            .and_then(|s| s.try_into().ok())
            .ok_or(AdvRefusal::Malformed("account signature"))?;
        let device_sig: [u8; 64] = signed
            .device_signature
            .as_deref()
            .and_then(|s| s.try_into().ok())
            .ok_or(AdvRefusal::Malformed("device signature"))?;
        let acct = &self.accounts[sender.account];
        let account_key = acct.phone.identity_public();
        if let Some(k) = signed.account_signature_key.as_deref()
            && k != account_key.as_bytes()
        {
            return Err(AdvRefusal::AccountKey);
        }
        let hosted = details.account_type == Some(wa_proto::AdvEncryptionType::Hosted as i32);
        let (acc_prefix, dev_prefix) = if hosted {
            (HOSTED_ACCOUNT_SIGNATURE_PREFIX, HOSTED_DEVICE_SIGNATURE_PREFIX)
        } else {
            (ACCOUNT_SIGNATURE_PREFIX, DEVICE_SIGNATURE_PREFIX)
        };
        let msg = [&acc_prefix[..], details_bytes, device_key.as_bytes()].concat();
        if !account_key.verify(&msg, &account_sig) {
            return Err(AdvRefusal::AccountSignature);
        }
        let msg = [&dev_prefix[..], details_bytes, device_key.as_bytes(), account_key.as_bytes()].concat();
        if !device_key.verify(&msg, &device_sig) {
            return Err(AdvRefusal::DeviceSignature);
        }
        let raw_id = details.raw_id.unwrap_or(0);
        if raw_id != acct.raw_id {
            return Err(AdvRefusal::RawId(raw_id));
        }
        let key_index = details.key_index.unwrap_or(0);
        if !self.key_index_listed(sender.account, key_index) {
            return Err(AdvRefusal::KeyIndex(key_index));
        }
        Ok(())
    }

    /// Whether `key_index` is a valid index of the account's current signed list (the list's
    /// own signature checked, as a peer receiving it would).
    fn key_index_listed(&self, account: AccountId, key_index: u32) -> bool {
        let acct = &self.accounts[account];
        let Some(list) = &acct.key_index_list else { return false };
        let Ok(signed) = wa_proto::AdvSignedKeyIndexList::decode(list.signed.as_slice()) else {
            return false;
        };
        let (Some(details), Some(sig)) = (signed.details.as_deref(), signed.account_signature.as_deref())
        else {
            return false;
        };
        let Ok(sig) = <[u8; 64]>::try_from(sig) else { return false };
        let msg = [&KEY_INDEX_LIST_SIGNATURE_PREFIX[..], details].concat();
        if !acct.phone.identity_public().verify(&msg, &sig) {
            return false;
        }
        wa_proto::AdvKeyIndexList::decode(details).is_ok_and(|l| l.valid_indexes.contains(&key_index))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use rand::SeedableRng;

    use super::*;
    use crate::world::tests::{bare_world, companion};

    /// An ADV identity for `device` of `account` as pairing makes it, signed by the phone and
    /// by the companion key `kp`.
    fn adv(w: &World, account: AccountId, key_index: u32, kp: &wa_crypto::KeyPair) -> Vec<u8> {
        let acct = &w.accounts[account];
        let details = wa_proto::AdvDeviceIdentity {
            raw_id: Some(acct.raw_id),
            timestamp: Some(1),
            key_index: Some(key_index),
            account_type: None,
            device_type: None,
        }
        .encode_to_vec();
        let account_key = acct.phone.identity_public();
        let account_signature =
            acct.phone.sign(&[&ACCOUNT_SIGNATURE_PREFIX[..], &details, kp.public.as_bytes()].concat());
        let device_signature = kp.private.sign(
            &[&DEVICE_SIGNATURE_PREFIX[..], &details, kp.public.as_bytes(), account_key.as_bytes()].concat(),
        );
        wa_proto::AdvSignedDeviceIdentity {
            details: Some(details),
            account_signature_key: Some(account_key.as_bytes().to_vec()),
            account_signature: Some(account_signature.to_vec()),
            device_signature: Some(device_signature.to_vec()),
        }
        .encode_to_vec()
    }

    #[test]
    fn a_companions_adv_identity_is_checked_against_the_account_key_and_key_index_list() {
        let mut w = bare_world();
        let a = w.create_account("15550001000", "A").unwrap();
        let other = w.create_account("15550001001", "B").unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let kp = wa_crypto::KeyPair::generate(&mut rng);
        let mut d = companion(&w, a, 2);
        d.signed_identity = Some(vec![1]);
        w.accounts[a].devices.insert(2, d);
        w.accounts[a].next_device_id = 3;
        let sender = DeviceAddr { account: a, device: 2 };
        let good = adv(&w, a, 2, &kp);
        // No key index list yet: nothing is listed.
        assert_eq!(w.verify_device_identity(sender, Some(&good), &kp.public), Err(AdvRefusal::KeyIndex(2)));
        w.refresh_key_index_list(a);
        assert_eq!(w.verify_device_identity(sender, Some(&good), &kp.public), Ok(()));
        assert_eq!(w.verify_device_identity(sender, None, &kp.public), Err(AdvRefusal::Missing));
        assert!(matches!(
            w.verify_device_identity(sender, Some(b"\xff\xff"), &kp.public),
            Err(AdvRefusal::Malformed(_))
        ));
        // Another device key than the one signed.
        let stranger = wa_crypto::KeyPair::generate(&mut rng);
        assert_eq!(
            w.verify_device_identity(sender, Some(&good), &stranger.public),
            Err(AdvRefusal::AccountSignature)
        );
        // Signed by another account's phone.
        let forged = adv(&w, other, 2, &kp);
        assert_eq!(w.verify_device_identity(sender, Some(&forged), &kp.public), Err(AdvRefusal::AccountKey));
        // A key index the phone never listed (e.g. a removed device's).
        let unlisted = adv(&w, a, 7, &kp);
        assert_eq!(
            w.verify_device_identity(sender, Some(&unlisted), &kp.public),
            Err(AdvRefusal::KeyIndex(7))
        );
        // A device signature by someone else.
        let mut tampered = wa_proto::AdvSignedDeviceIdentity::decode(good.as_slice()).unwrap();
        tampered.device_signature = Some(vec![0; 64]);
        assert_eq!(
            w.verify_device_identity(sender, Some(&tampered.encode_to_vec()), &kp.public),
            Err(AdvRefusal::DeviceSignature)
        );
    }

    #[test]
    fn a_reinstalled_phone_has_a_new_identity_no_companions_and_its_peers_are_told() {
        let mut w = bare_world();
        let a = w.create_account("15550001000", "A").unwrap();
        let b = w.create_account("15550001001", "B").unwrap();
        let c = w.create_account("15550001002", "C").unwrap();
        for (acct, dev) in [(a, 1u16), (b, 3), (c, 1)] {
            let mut d = companion(&w, acct, dev);
            d.signed_identity = Some(vec![1]);
            w.accounts[acct].devices.insert(dev, d);
        }
        w.traffic.chats.insert((a, b));
        let before = w.accounts[a].phone.identity_public();
        let reg_before = w.accounts[a].devices[&0].keys.registration_id;
        w.phone_reinstall(a).unwrap();
        let after = w.accounts[a].phone.identity_public();
        assert_ne!(before, after);
        let keys = &w.accounts[a].devices[&0].keys;
        assert_eq!(keys.identity, after, "the published bundle is the new identity's");
        assert_ne!(keys.registration_id, reg_before);
        assert!(!w.accounts[a].devices.contains_key(&1), "companions are unlinked");
        let queue: Vec<_> = w.accounts[b].devices[&3].offline.iter().cloned().collect();
        let note = queue
            .iter()
            .find(|n| n.opt_attr_str("type").as_deref() == Some("encrypt"))
            .expect("the peer's companion is told");
        assert!(note.child("identity").is_some());
        // Both migrated (the default): the peer is told by LID.
        assert_eq!(note.attr_jid("from").unwrap(), w.user_jid(a, Server::Lid));
        assert!(note.get_attr("lid").is_none());
        assert!(
            queue.iter().any(|n| n.opt_attr_str("type").as_deref() == Some("devices")),
            "and the unlinked companion is announced"
        );
        assert!(w.accounts[c].devices[&1].offline.is_empty(), "strangers hear nothing");
        assert!(
            w.events.iter().any(|e| matches!(e, WorldEvent::PhoneReinstalled { pn } if pn == "15550001000"))
        );
        assert_eq!(w.phone_reinstall(99), Err(ControlError::UnknownAccount("99".into())));
    }
}
