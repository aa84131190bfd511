//! The phone-signed list of an account's valid companion key indexes (`ADVSignedKeyIndexList`),
//! which the service hands out with every usync device list of a user with companions.
//!
//! Sources: the signed bytes are `06 02 ‖ ADVKeyIndexList` signed by the account identity key
//! (WA Web `WAWebAdvSignatureConstants.ADV_PREFIX_KEY_INDEX_LIST_ACCOUNT_SIGNATURE`, as ported in
//! Auties00/Cobalt src/main/java/com/github/auties00/cobalt/device/adv/DeviceADVValidator.java
//! `verifyAndBuildResult`); the list carries `rawId`, `timestamp`, `currentIndex`, the valid
//! indexes including the phone's 0, and `accountType`, and the element's `ts` is that timestamp
//! (the `<key-index-list ts>` captured in https://github.com/tulir/whatsmeow/issues/859);
//! `accountSignatureKey` is left out, peers verify with the primary identity they hold (Cobalt,
//! same file, `decodeSignedKeyIndexBytes`). whatsapp-rust 0.7 drops a user's whole device list
//! without it (wacore src/iq/usync.rs `project_device_list_response`).

use prost::Message as _;

use crate::world::{AccountId, World};

/// Domain separation for the key index list's account signature.
pub const KEY_INDEX_LIST_SIGNATURE_PREFIX: [u8; 2] = [6, 2];

/// A signed key index list as the phone published it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyIndexList {
    /// When the phone signed it (unix seconds); the `ts` of `<key-index-list>`.
    pub timestamp: u64,
    /// The `ADVSignedKeyIndexList` protobuf.
    pub signed: Vec<u8>,
}

impl World {
    /// The phone signs a new list after its companions changed (a pairing completed, a device
    /// was removed): the phone's index 0 and every linked companion's key index.
    pub(crate) fn refresh_key_index_list(&mut self, account: AccountId) {
        let now = self.now();
        let acct = &mut self.accounts[account];
        let mut valid: Vec<u32> = std::iter::once(0)
            .chain(
                acct.devices
                    .values()
                    .filter(|d| d.id != 0 && d.signed_identity.is_some())
                    .map(|d| d.key_index),
            )
            .collect();
        valid.sort_unstable();
        valid.dedup();
        // Key indexes are handed out in device order, so the highest ever issued is the last id.
        let current = u32::from(acct.next_device_id.saturating_sub(1));
        let details = wa_proto::AdvKeyIndexList {
            raw_id: Some(acct.raw_id),
            timestamp: Some(now),
            current_index: Some(current),
            valid_indexes: valid,
            account_type: Some(wa_proto::AdvEncryptionType::E2ee as i32),
        }
        .encode_to_vec();
        let mut msg = Vec::with_capacity(2 + details.len());
        msg.extend_from_slice(&KEY_INDEX_LIST_SIGNATURE_PREFIX);
        msg.extend_from_slice(&details);
        let signature = acct.phone.sign(&msg);
        let signed = wa_proto::AdvSignedKeyIndexList {
            details: Some(details),
            account_signature: Some(signature.to_vec()),
            account_signature_key: None,
        }
        .encode_to_vec();
        acct.key_index_list = Some(KeyIndexList { timestamp: now, signed });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_list_is_signed_by_the_account_key_over_the_prefixed_details() {
        let mut w = crate::world::tests::bare_world();
        let a = w.create_account("15550001000", "A").unwrap();
        w.accounts[a].next_device_id = 4;
        for id in [1u16, 3] {
            let mut d = crate::world::tests::companion(&w, a, id);
            d.signed_identity = Some(vec![1]);
            w.accounts[a].devices.insert(id, d);
        }
        w.refresh_key_index_list(a);
        let list = w.accounts[a].key_index_list.clone().unwrap();
        let signed = wa_proto::AdvSignedKeyIndexList::decode(list.signed.as_slice()).unwrap();
        assert_eq!(signed.account_signature_key, None);
        let details = signed.details.unwrap();
        let parsed = wa_proto::AdvKeyIndexList::decode(details.as_slice()).unwrap();
        assert_eq!(parsed.valid_indexes, vec![0, 1, 3]);
        assert_eq!((parsed.current_index, parsed.raw_id), (Some(3), Some(w.accounts[a].raw_id)));
        assert_eq!(parsed.timestamp, Some(list.timestamp));
        let sig: [u8; 64] = signed.account_signature.unwrap().try_into().unwrap();
        let key = w.accounts[a].phone.identity_public();
        assert!(key.verify(&[&KEY_INDEX_LIST_SIGNATURE_PREFIX[..], &details].concat(), &sig));
        assert!(!key.verify(&details, &sig), "the prefix is part of what is signed");
    }
}
