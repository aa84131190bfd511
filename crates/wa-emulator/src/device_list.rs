//! A user's device list as others see it: the participant hash (`phash`, `device_hash`) over
//! it, and the `<notification type="devices">` its contacts' companions (`traffic::contacts_of`)
//! get when a companion is linked or removed.
//!
//! Sources: the hash is whatsmeow's `participantListHashV2` (`send.go`): `2:` and the unpadded
//! standard base64 of the first six bytes of SHA-256 over the sorted `user.agent:device@server`
//! strings (whatsapp-rust `wacore/src/messages.rs` `participant_list_hash` hashes the same
//! strings, in standard base64 like WA Web's `WABase64.encodeB64`). The notification's shape is WA Web's `WAWebHandleDeviceNotification` as ported in
//! whatsapp-rust `wacore/src/stanza/devices.rs` (one `<add>`/`<remove>` per notification, a
//! single `<device jid key-index>`, a required `<key-index-list ts>` carrying the new signed list
//! on add and only its timestamp on remove) plus the `device_hash` attribute whatsmeow
//! (`notification.go` `handleDeviceNotification`) compares with its updated cache.

use wa_binary::{Jid, Node, Server};

use crate::world::{AccountId, DeviceAddr, World};

/// whatsmeow's `participantListHashV2` over device JIDs (see `notifications`).
pub(crate) use crate::notifications::device_list_hash as participant_hash;

/// A change of one user's device list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DeviceChange {
    /// A companion was linked (device id, key index).
    Added(u16, u32),
    /// A companion was unlinked (device id).
    Removed(u16),
}

impl World {
    /// The devices others must encrypt to for `account`: the phone, every linked companion and
    /// its hosted device (see `hosted`).
    pub(crate) fn linked_devices(&self, account: AccountId) -> Vec<DeviceAddr> {
        self.accounts[account]
            .devices
            .values()
            .filter(|d| {
                d.id == 0
                    || d.signed_identity.is_some()
                    || self.is_hosted_device(DeviceAddr { account, device: d.id })
            })
            .map(|d| DeviceAddr { account, device: d.id })
            .collect()
    }

    /// A companion of `account` was linked or removed: the phone signs a new key index list,
    /// and every companion of the account's peers gets `<notification type="devices">`, naming
    /// the account as that peer's chats do (see `addressing`): by LID between migrated
    /// accounts, its devices and `device_hash` on the LID server too (the live stanza
    /// whatsapp-rust `wacore/src/stanza/devices.rs` documents: `from="…@lid"`, `<device
    /// jid="…:75@lid">`); otherwise by phone number with the LID in `lid` (whatsmeow
    /// `handleDeviceNotification` learns the mapping from it).
    pub(crate) fn device_list_changed(&mut self, account: AccountId, change: DeviceChange) {
        self.refresh_key_index_list(account);
        let pn_note = self.device_notification(account, change, Server::Pn);
        let lid_note = self.device_notification(account, change, Server::Lid);
        for peer in self.contacts_of(account) {
            let note = if self.delivery_server(account, peer) == Server::Lid { &lid_note } else { &pn_note };
            self.deliver_to_companions(peer, note);
        }
    }

    /// The `devices` notification about `change` with `account` named on `server`.
    fn device_notification(&mut self, account: AccountId, change: DeviceChange, server: Server) -> Node {
        let user = self.user_jid(account, server);
        let jids: Vec<Jid> =
            self.linked_devices(account).into_iter().map(|d| self.device_jid(d, server)).collect();
        let device_hash = participant_hash(&jids);
        let (ts, signed) = self.accounts[account]
            .key_index_list
            .as_ref()
            .map(|k| (k.timestamp, k.signed.clone()))
            .unwrap_or((self.now(), Vec::new()));
        let child = match change {
            DeviceChange::Added(device, key_index) => {
                let jid = self.device_jid(DeviceAddr { account, device }, server);
                Node::new("add").attr("device_hash", device_hash).children([
                    Node::new("device").attr("jid", jid).attr("key-index", key_index),
                    Node::new("key-index-list").attr("ts", ts).bytes(signed),
                ])
            }
            DeviceChange::Removed(device) => {
                let jid = self.device_jid(DeviceAddr { account, device }, server);
                Node::new("remove").attr("device_hash", device_hash).children([
                    Node::new("device").attr("jid", jid),
                    Node::new("key-index-list").attr("ts", ts),
                ])
            }
        };
        let mut note = self.notification("devices", user, vec![child]);
        if server == Server::Pn {
            note.set_attr("lid", self.user_jid(account, Server::Lid));
        }
        note
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD_NO_PAD;

    use super::*;
    use crate::world::AccountOptions;
    use crate::world::tests::{bare_world, companion};

    #[test]
    fn participant_hash_is_whatsmeows_v2() {
        // The strings hashed are "<user>.0:<device>@<server>", sorted and concatenated.
        let a: Jid = "15550001000@s.whatsapp.net".parse().unwrap();
        let b: Jid = "15550001000:3@s.whatsapp.net".parse().unwrap();
        let h = participant_hash(&[b.clone(), a.clone()]);
        let expected = wa_crypto::sha256(&[b"15550001000.0:0@s.whatsapp.net15550001000.0:3@s.whatsapp.net"]);
        assert_eq!(h, format!("2:{}", STANDARD_NO_PAD.encode(&expected[..6])));
        assert_eq!(h, participant_hash(&[a, b]), "order does not matter");
        assert_eq!(h.len(), 10, "2: and eight base64 characters");
    }

    #[test]
    fn linking_and_removing_a_companion_notifies_the_peers_companions_with_the_signed_list() {
        let mut w = bare_world();
        let alice = w.create_account("15550001000", "Alice").unwrap();
        let bob = w.create_account("15550001001", "Bob").unwrap();
        let carol = w.create_account("15550001002", "Carol").unwrap();
        // Bob has a linked companion (device 2); Alice and Bob have chatted; Carol is a stranger.
        let mut d = companion(&w, bob, 2);
        d.signed_identity = Some(vec![1]);
        w.accounts[bob].devices.insert(2, d);
        let mut d = companion(&w, carol, 1);
        d.signed_identity = Some(vec![1]);
        w.accounts[carol].devices.insert(1, d);
        w.traffic.chats.insert((alice, bob));
        // Dave, a legacy (phone-number) account, has chatted with Alice too.
        let dave =
            w.create_account_with("15550001003", "Dave", AccountOptions { lid_migrated: false }).unwrap();
        let mut d = companion(&w, dave, 1);
        d.signed_identity = Some(vec![1]);
        w.accounts[dave].devices.insert(1, d);
        w.traffic.chats.insert((alice, dave));
        // Alice links device 4.
        let mut d = companion(&w, alice, 4);
        d.signed_identity = Some(vec![1]);
        w.accounts[alice].devices.insert(4, d);
        w.accounts[alice].next_device_id = 5;
        w.device_list_changed(alice, DeviceChange::Added(4, 4));
        let bob_queue: Vec<Node> = w.accounts[bob].devices[&2].offline.iter().cloned().collect();
        assert_eq!(bob_queue.len(), 1);
        assert!(w.accounts[carol].devices[&1].offline.is_empty(), "strangers hear nothing");
        let n = &bob_queue[0];
        assert_eq!(n.opt_attr_str("type").as_deref(), Some("devices"));
        // Bob's account is migrated like Alice's: she is named by her LID throughout.
        assert_eq!(n.attr_jid("from").unwrap(), w.user_jid(alice, Server::Lid));
        assert!(n.get_attr("lid").is_none());
        let add = n.child("add").unwrap();
        let jids =
            vec![w.user_jid(alice, Server::Lid), w.user_jid(alice, Server::Lid).with_device(4).unwrap()];
        // Dave's is not: by phone number, the LID beside it.
        let legacy = w.accounts[dave].devices[&1].offline.back().cloned().unwrap();
        assert_eq!(legacy.attr_jid("from").unwrap(), w.user_jid(alice, Server::Pn));
        assert_eq!(legacy.attr_jid("lid").unwrap(), w.user_jid(alice, Server::Lid));
        let pn_jids = [w.user_jid(alice, Server::Pn), w.user_jid(alice, Server::Pn).with_device(4).unwrap()];
        let legacy_add = legacy.child("add").unwrap();
        assert_eq!(legacy_add.child("device").unwrap().attr_jid("jid").unwrap(), pn_jids[1]);
        assert_eq!(legacy_add.opt_attr_str("device_hash").unwrap(), participant_hash(&pn_jids));
        assert_eq!(add.opt_attr_str("device_hash").unwrap(), participant_hash(&jids));
        let dev = add.child("device").unwrap();
        assert_eq!(dev.attr_jid("jid").unwrap(), jids[1]);
        assert_eq!(dev.opt_attr_str("key-index").as_deref(), Some("4"));
        let kil = add.child("key-index-list").unwrap();
        let list = w.accounts[alice].key_index_list.clone().unwrap();
        assert_eq!(kil.content_bytes(), Some(list.signed.as_slice()));
        assert_eq!(kil.attr_u64("ts").unwrap(), list.timestamp);
        let signed = wa_proto::AdvSignedKeyIndexList::decode(list.signed.as_slice()).unwrap();
        let details = wa_proto::AdvKeyIndexList::decode(signed.details.unwrap().as_slice()).unwrap();
        assert_eq!(details.valid_indexes, vec![0, 4]);

        // Removal: the list without it, only its timestamp on the wire.
        w.accounts[alice].devices.remove(&4);
        w.device_list_changed(alice, DeviceChange::Removed(4));
        let n = w.accounts[bob].devices[&2].offline.back().cloned().unwrap();
        let rm = n.child("remove").unwrap();
        assert_eq!(rm.child("device").unwrap().attr_jid("jid").unwrap(), jids[1]);
        assert!(rm.child("key-index-list").unwrap().content_bytes().is_none_or(<[u8]>::is_empty));
        assert_eq!(rm.opt_attr_str("device_hash").unwrap(), participant_hash(&jids[..1]));
        let list = w.accounts[alice].key_index_list.clone().unwrap();
        let signed = wa_proto::AdvSignedKeyIndexList::decode(list.signed.as_slice()).unwrap();
        let details = wa_proto::AdvKeyIndexList::decode(signed.details.unwrap().as_slice()).unwrap();
        assert_eq!(details.valid_indexes, vec![0]);
    }

    use prost::Message as _;
}
