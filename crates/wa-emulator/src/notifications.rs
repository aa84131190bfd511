//! Notifications about accounts that the server sends when something changes elsewhere:
//! the own device list (`account_sync`), app-state collections (`server_sync`), a contact's
//! picture and about text (`picture`, `status`), and trusted-contact tokens a contact's phone
//! issues (`privacy_token`). Each is tracked until acknowledged (`world::awaits_ack`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use rand_core::Rng;
use wa_binary::{Jid, Node, Server};

use crate::world::{AccountId, DeviceAddr, World};

/// Length of a trusted-contact bucket: a phone issues its token to a contact again once per
/// bucket (whatsmeow `tctoken.go` `tcTokenBucketDuration`, the AB prop `tctoken_duration`).
pub const TC_TOKEN_BUCKET_SECS: u64 = 604_800;

/// The app-state collections (whatsmeow `appstate/keys.go` `AllPatchNames`).
pub const APP_STATE_COLLECTIONS: [&str; 5] =
    ["critical_block", "critical_unblock_low", "regular_high", "regular", "regular_low"];

/// whatsmeow's `participantListHashV2` (`send.go`): `2:` and the unpadded base64 of the first
/// six bytes of SHA-256 over the sorted `user.agent:device@server` strings.
pub(crate) fn device_list_hash(devices: &[Jid]) -> String {
    let mut ad: Vec<String> =
        devices.iter().map(|j| format!("{}.0:{}@{}", j.user(), j.device(), j.server().as_str())).collect();
    ad.sort();
    let hash = wa_crypto::sha256(&[ad.concat().as_bytes()]);
    format!("2:{}", STANDARD_NO_PAD.encode(&hash[..6]))
}

impl World {
    /// The account's device list changed (a companion was linked or removed): every companion
    /// gets `<notification type="account_sync" from=<own user>><devices dhash><device jid
    /// [key-index]/>…</devices></notification>` (whatsmeow `notification.go`
    /// `handleAccountSyncNotification`/`handleOwnDevicesNotification`, whatsapp-rust
    /// `handlers/notification/device.rs` `handle_account_sync_devices`).
    pub(crate) fn notify_own_devices(&mut self, account: AccountId) {
        let mut devices = vec![DeviceAddr { account, device: 0 }];
        devices.extend(self.companions_of(account));
        let jids: Vec<Jid> = devices.iter().map(|&d| self.device_jid(d, Server::Pn)).collect();
        let dhash = device_list_hash(&jids);
        let children = devices.iter().zip(&jids).map(|(d, j)| {
            let n = Node::new("device").attr("jid", j.clone());
            match self.accounts[account].devices.get(&d.device) {
                Some(dev) if d.device != 0 => n.attr("key-index", dev.key_index),
                _ => n,
            }
        });
        let list = Node::new("devices").attr("dhash", dhash).children(children.collect::<Vec<_>>());
        let own = self.user_jid(account, Server::Pn);
        let note = self.notification("account_sync", own, vec![list]);
        self.deliver_to_companions(account, &note);
    }

    /// The account's phone set (`Some` returns the new picture id) or removed its profile
    /// picture. Its contacts' companions get `<notification type="picture" from=<user>><set
    /// jid id author/></notification>` or `<delete jid author/>` (whatsmeow `notification.go`
    /// `handlePictureNotification`, Baileys `messages-recv.ts` `picture`); its own companions
    /// get `<notification type="account_sync"><picture/></notification>` (whatsmeow
    /// `handleAccountSyncNotification`).
    pub fn phone_set_picture(&mut self, account: AccountId, remove: bool) -> Option<String> {
        let user = self.user_jid(account, Server::Pn);
        let id = (!remove).then(|| (self.rng.next_u64() % 9_000_000_000 + 1_000_000_000).to_string());
        let child = match &id {
            Some(pid) => Node::new("set").attr("jid", user.clone()).attr("id", pid.as_str()),
            None => Node::new("delete").attr("jid", user.clone()),
        };
        let note = self.notification("picture", user.clone(), vec![child.attr("author", user.clone())]);
        for contact in self.contacts_of(account) {
            self.deliver_to_companions(contact, &note);
        }
        let own = self.notification("account_sync", user, vec![Node::new("picture")]);
        self.deliver_to_companions(account, &own);
        id
    }

    /// The account's phone changed its about text: its contacts' companions get
    /// `<notification type="status" from=<user>><set>text</set></notification>` (whatsmeow
    /// `notification.go` `handleStatusNotification`).
    pub fn phone_set_about(&mut self, account: AccountId, text: &str) {
        let user = self.user_jid(account, Server::Pn);
        let note = self.notification("status", user, vec![Node::new("set").bytes(text.as_bytes().to_vec())]);
        for contact in self.contacts_of(account) {
            self.deliver_to_companions(contact, &note);
        }
    }

    /// `issuer`'s phone sent `contact` a direct message: once per [`TC_TOKEN_BUCKET_SECS`]
    /// bucket it issues its trusted-contact token to the contact (whatsmeow `tctoken.go`
    /// `shouldSendNewTCToken`, issued with `<iq xmlns="privacy"><tokens>`), and the server
    /// hands it to the contact's companions as `<notification type="privacy_token"
    /// from=<issuer> sender_lid=<issuer's LID>><tokens><token type="trusted_contact"
    /// t>bytes</token></tokens></notification>` (whatsmeow `notification.go`
    /// `handlePrivacyTokenNotification`, whatsapp-rust `notification/privacy_business.rs`).
    pub(crate) fn issue_privacy_token(&mut self, issuer: AccountId, contact: AccountId) {
        let now = self.now();
        let last = self.traffic.tokens_issued.get(&(issuer, contact)).copied();
        if last.is_some_and(|t| t / TC_TOKEN_BUCKET_SECS >= now / TC_TOKEN_BUCKET_SECS) {
            return;
        }
        self.traffic.tokens_issued.insert((issuer, contact), now);
        self.give_token(issuer, contact);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::testutil::{add_companion, login, of, sent, world};
    use crate::world::{ControlError, attr};

    #[test]
    fn removing_a_companion_tells_the_others_the_new_device_list() {
        let (mut w, _) = world(1);
        let me = add_companion(&mut w, 0, 5);
        add_companion(&mut w, 0, 6);
        let (_, mut rx) = login(&mut w, me);
        sent(&mut rx);
        w.remove_device(DeviceAddr { account: 0, device: 6 }, "primary_removed");
        let got = sent(&mut rx);
        let note = of(&got, "notification", Some("account_sync"))[0];
        assert_eq!(attr(note, "from"), "15550001000@s.whatsapp.net");
        let devices = note.child("devices").unwrap();
        let listed: Vec<(String, String)> =
            devices.children_by_tag("device").map(|d| (attr(d, "jid"), attr(d, "key-index"))).collect();
        assert_eq!(
            listed,
            [("15550001000@s.whatsapp.net", ""), ("15550001000:5@s.whatsapp.net", "5")]
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        let phone = Jid::pn("15550001000").unwrap();
        assert_eq!(attr(devices, "dhash"), device_list_hash(&[phone.clone(), phone.with_device(5).unwrap()]));
    }

    #[test]
    fn app_state_changes_name_each_collection_with_its_new_version() {
        let (mut w, _) = world(1);
        let me = add_companion(&mut w, 0, 5);
        let (_, mut rx) = login(&mut w, me);
        sent(&mut rx);
        w.phone_change_app_state(0, &["regular"]).unwrap();
        let v = w.phone_change_app_state(0, &["regular", "critical_block"]).unwrap();
        assert_eq!(v, vec![("regular".to_owned(), 2), ("critical_block".to_owned(), 1)]);
        let got = sent(&mut rx);
        let last = of(&got, "notification", Some("server_sync"))[1];
        let cols: Vec<(String, String)> =
            last.children_by_tag("collection").map(|c| (attr(c, "name"), attr(c, "version"))).collect();
        assert_eq!(
            cols,
            [("regular", "2"), ("critical_block", "1")].map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        assert_eq!(
            w.phone_change_app_state(0, &["contacts"]),
            Err(ControlError::UnknownCollection("contacts".into()))
        );
    }

    #[test]
    fn profile_changes_reach_contacts_and_own_companions_only() {
        let (mut w, _) = world(3);
        let (mine, contact, stranger) =
            (add_companion(&mut w, 0, 5), add_companion(&mut w, 1, 5), add_companion(&mut w, 2, 5));
        let (_, mut rx_mine) = login(&mut w, mine);
        let (_, mut rx_contact) = login(&mut w, contact);
        let (_, mut rx_stranger) = login(&mut w, stranger);
        // Accounts 0 and 1 exchanged a message; 2 never talked to 0.
        let to = w.user_jid(1, Server::Pn);
        w.phone_send(0, &to, &Default::default()).unwrap();
        for rx in [&mut rx_mine, &mut rx_contact, &mut rx_stranger] {
            sent(rx);
        }
        let pid = w.phone_set_picture(0, false).unwrap();
        w.phone_set_about(0, "at the gym");
        w.phone_set_picture(0, true);
        let got = sent(&mut rx_contact);
        let pics = of(&got, "notification", Some("picture"));
        let set = pics[0].child("set").unwrap();
        assert_eq!((attr(set, "jid"), attr(set, "id")), ("15550001000@s.whatsapp.net".to_owned(), pid));
        assert!(pics[1].child("delete").is_some());
        let status = of(&got, "notification", Some("status"))[0];
        assert_eq!(status.child("set").and_then(|s| s.content_bytes()), Some(&b"at the gym"[..]));
        assert!(sent(&mut rx_stranger).is_empty());
        let own = sent(&mut rx_mine);
        assert_eq!(of(&own, "notification", Some("account_sync")).len(), 2);
        assert!(of(&own, "notification", Some("account_sync"))[0].child("picture").is_some());
    }

    #[test]
    fn a_phone_gives_its_token_to_a_contact_once_per_bucket() {
        let (mut w, clock) = world(2);
        let me = add_companion(&mut w, 0, 5);
        let (_, mut rx) = login(&mut w, me);
        sent(&mut rx);
        let to = w.user_jid(0, Server::Pn);
        w.phone_send(1, &to, &Default::default()).unwrap();
        w.phone_send(1, &to, &Default::default()).unwrap();
        let got = sent(&mut rx);
        let tokens = of(&got, "notification", Some("privacy_token"));
        assert_eq!(tokens.len(), 1, "one token per bucket");
        assert_eq!(attr(tokens[0], "from"), "15550001001@s.whatsapp.net");
        assert_eq!(attr(tokens[0], "sender_lid"), w.user_jid(1, Server::Lid).to_string());
        let token = tokens[0].child_path(&["tokens", "token"]).unwrap();
        assert_eq!(attr(token, "type"), "trusted_contact");
        assert_eq!(token.content_bytes().map(<[u8]>::len), Some(24));
        clock.advance(TC_TOKEN_BUCKET_SECS);
        w.phone_send(1, &to, &Default::default()).unwrap();
        assert_eq!(of(&sent(&mut rx), "notification", Some("privacy_token")).len(), 1, "a new bucket");
    }

    #[test]
    fn device_list_hash_matches_whatsmeow() {
        // Expected value computed outside Rust (Python hashlib/base64) from whatsmeow's
        // definition: sorted ADString()s, SHA-256, first 6 bytes, RawStdEncoding.
        let phone = Jid::pn("15551234567").unwrap();
        let jids = [phone.clone().with_device(3).unwrap(), phone];
        assert_eq!(device_list_hash(&jids), "2:hREyzbmN");
    }
}
