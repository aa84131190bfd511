//! Hosted (Cloud API) devices: a business account's messages handled by Meta's servers. The
//! device has its own Signal identity and prekeys, is listed by usync with
//! `is_hosted="true"`, and is addressed on the `hosted` / `hosted.lid` servers (whatsmeow
//! `user.go` `parseDeviceList`, `types/jid.go` `HostedServer`/`HostedLIDServer`). It takes part
//! in 1:1 chats only: groups leave it out (whatsmeow `send.go` `prepareMessageNode`, whatsapp-rust
//! `wacore/src/send.rs` `prepare_group_stanza`). Its id is 99, the only one Baileys
//! (`Signal/libsignal.ts` `jidToSignalProtocolAddress`) accepts on a hosted server.

use std::collections::VecDeque;

use crate::phone::Phone;
use crate::world::{Account, AccountId, ControlError, Device, DeviceAddr, World};

/// The device id of a hosted device.
pub const HOSTED_DEVICE_ID: u16 = 99;

impl World {
    /// Whether `d` is a hosted device (the account has one, and this is it).
    pub(crate) fn is_hosted_device(&self, d: DeviceAddr) -> bool {
        d.device == HOSTED_DEVICE_ID && self.accounts.get(d.account).is_some_and(|a| a.hosted.is_some())
    }

    /// Gives `account` a hosted device (a no-op when it has one). The emulator decrypts what
    /// it receives like the phone's messages, into the phone's inbox with `device` 99.
    pub fn add_hosted_device(&mut self, account: AccountId) -> Result<(), ControlError> {
        let acct =
            self.accounts.get(account).ok_or_else(|| ControlError::UnknownAccount(account.to_string()))?;
        if acct.hosted.is_some() {
            return Ok(());
        }
        if acct.devices.contains_key(&HOSTED_DEVICE_ID) {
            return Err(ControlError::Signal("device 99 is a companion of this account".into()));
        }
        let World { accounts, rng, phone_pre_keys, .. } = self;
        let hosted = Phone::generate(rng, *phone_pre_keys);
        let device = Device {
            id: HOSTED_DEVICE_ID,
            noise_key: None,
            keys: hosted.published_keys(),
            key_index: 0,
            conn: None,
            offline: VecDeque::new(),
            in_flight: VecDeque::new(),
            acked: VecDeque::new(),
            platform: "hosted".into(),
            signed_identity: None,
        };
        let acct = &mut accounts[account];
        acct.devices.insert(HOSTED_DEVICE_ID, device);
        acct.hosted = Some(hosted);
        Ok(())
    }
}

impl Account {
    /// The Signal state of a simulated device: the hosted device's for device 99 when the
    /// account has one, the phone's otherwise.
    pub(crate) fn endpoint(&self, device: u16) -> &Phone {
        match &self.hosted {
            Some(h) if device == HOSTED_DEVICE_ID => h,
            _ => &self.phone,
        }
    }

    /// [`Account::endpoint`], mutable.
    pub(crate) fn endpoint_mut(&mut self, device: u16) -> &mut Phone {
        match &mut self.hosted {
            Some(h) if device == HOSTED_DEVICE_ID => h,
            _ => &mut self.phone,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use wa_binary::{Node, Server};

    use super::*;
    use crate::device_list::participant_hash;
    use crate::world::attr;
    use crate::world::tests::bare_world;

    #[test]
    fn a_hosted_device_is_listed_reached_one_to_one_and_left_out_of_groups() {
        let mut w = bare_world();
        let me = w.create_account("15550001000", "Me").unwrap();
        let shop = w.create_account("15550001001", "Shop").unwrap();
        w.add_hosted_device(shop).unwrap();
        let hosted = DeviceAddr { account: shop, device: HOSTED_DEVICE_ID };
        assert!(w.is_hosted_device(hosted));
        assert!(!w.is_hosted_device(DeviceAddr { account: me, device: HOSTED_DEVICE_ID }));
        // Named on the hosted servers, and found again from those names.
        let lid_jid = w.device_jid(hosted, Server::Lid);
        let pn_jid = w.device_jid(hosted, Server::Pn);
        assert_eq!(lid_jid.to_string(), format!("{}:99@hosted.lid", w.accounts[shop].lid));
        assert_eq!(pn_jid.to_string(), "15550001001:99@hosted");
        assert_eq!(w.device_of(&lid_jid), Some(hosted));
        assert_eq!(w.device_of(&pn_jid), Some(hosted));
        assert_eq!(w.linked_devices(shop), vec![DeviceAddr { account: shop, device: 0 }, hosted]);

        // usync lists it, marked hosted, without a key index.
        let iq = Node::new("iq").attr("id", "q1").attr("type", "get").attr("xmlns", "usync").children([
            Node::new("usync").attr("mode", "query").attr("context", "message").children([
                Node::new("query").children([Node::new("devices").attr("version", "2")]),
                Node::new("list").children([Node::new("user").attr("jid", w.user_jid(shop, Server::Lid))]),
            ]),
        ]);
        let reply = w.on_usync(&iq);
        let list =
            reply.child_path(&["usync", "list", "user", "devices", "device-list"]).expect("a device list");
        let devices: Vec<(String, String, String)> = list
            .children_by_tag("device")
            .map(|d| (attr(d, "id"), attr(d, "is_hosted"), attr(d, "key-index")))
            .collect();
        assert_eq!(
            devices,
            [("0", "", ""), ("99", "true", "")].map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()))
        );

        // A group's hash leaves it out.
        let group = w.create_group_with(me, "g", &[shop], true);
        let sender = DeviceAddr { account: me, device: 0 };
        let members = [w.user_jid(me, Server::Lid), w.user_jid(shop, Server::Lid)];
        let msg = Node::new("message").attr("id", "G1").attr("phash", participant_hash(&members));
        assert_eq!(w.group_phash(sender, &group, &msg), None);
        // And a group message never reaches it, while a 1:1 one does (undecryptable here: the
        // bytes are no Signal message, but it arrived).
        let sk = Node::new("message")
            .attr("id", "G1")
            .attr("to", group.clone())
            .children([Node::new("enc").attr("v", "2").attr("type", "skmsg").bytes(vec![1, 2, 3])]);
        w.route_message(sender, &group, &sk);
        assert!(!w.accounts[shop].phone.inbox.iter().any(|m| m.device == HOSTED_DEVICE_ID));
        let dm = Node::new("message").attr("id", "D1").children([Node::new("participants").children([
            Node::new("to")
                .attr("jid", lid_jid.clone())
                .children([Node::new("enc").attr("v", "2").attr("type", "msg").bytes(vec![1, 2, 3])]),
        ])]);
        let shop_lid = w.user_jid(shop, Server::Lid);
        w.route_message(sender, &shop_lid, &dm);
        let got: Vec<_> =
            w.accounts[shop].phone.inbox.iter().filter(|m| m.device == HOSTED_DEVICE_ID).collect();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].id, "D1");
        assert!(got[0].error.is_some(), "garbage does not decrypt");
    }
}
