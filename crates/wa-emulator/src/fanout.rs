//! Whether a 1:1 `<message>` reached every device it must: each of the recipient's devices and
//! each of the sender's own other devices (their copy of what was sent). When the sender's
//! device list was stale and `<participants>` leaves one out, the server still delivers what it
//! got and answers with `phash` in the `<ack>`: the participant hash of the devices it expected
//! (whatsmeow `send.go` `SendMessage` compares it with its own `participantListHashV2` over the
//! devices it encrypted for, including the sending device, and drops its device cache on a
//! mismatch; whatsapp-rust `wacore/src/messages.rs` `participant_list_hash` hashes the same list
//! before removing its own device).
//!
//! A group `<message>` names only the devices that get the sender key distribution in its
//! `<participants>` (a client remembers who holds its key), so the service cannot tell a stale
//! device list from them. The sender says what it saw instead: the group stanza's own `phash`
//! attribute is the participant hash of every group member's device, its own devices and the
//! sending device included, hosted devices left out (whatsmeow `send.go` `sendGroup` sets
//! `node.Attrs["phash"]` over `prepareMessageNode`'s device list, which drops `@hosted` devices in
//! groups). When it differs from the hash of the devices the service knows, the ack carries the
//! service's `phash` and whatsmeow's `SendMessage` drops its group cache. A group message without
//! the attribute (Baileys `messages-send.ts` never sets it for groups) is not checked.

use std::collections::BTreeSet;

use wa_binary::{Jid, Node, Server};

use crate::device_list::participant_hash;
use crate::world::{DeviceAddr, World, WorldEvent};

impl World {
    /// The `phash` for the ack of `msg` from `sender` to user `to`, when its `<participants>`
    /// miss a device; `None` when complete (or not a fanned-out 1:1 message: retries addressed
    /// to one device, groups, unknown users).
    pub(crate) fn fanout_phash(&mut self, sender: DeviceAddr, to: &Jid, msg: &Node) -> Option<String> {
        if to.is_group() || to.device() != 0 {
            return None;
        }
        let parts = msg.child("participants")?;
        let recipient = self.account_of(to)?;
        let server = if to.server() == Server::Lid { Server::Lid } else { Server::Pn };
        let mut expected: BTreeSet<DeviceAddr> = self.linked_devices(recipient).into_iter().collect();
        expected.extend(self.linked_devices(sender.account));
        let addressed: BTreeSet<DeviceAddr> = parts
            .children_by_tag("to")
            .filter_map(|t| t.attr_jid("jid").ok())
            .filter_map(|j| self.device_of(&j))
            .collect();
        let missing: Vec<DeviceAddr> =
            expected.iter().copied().filter(|d| *d != sender && !addressed.contains(d)).collect();
        if missing.is_empty() {
            return None;
        }
        let jids: Vec<Jid> = expected.iter().map(|&d| self.device_jid(d, server)).collect();
        let missing_jids = missing.iter().map(|&d| self.device_jid(d, server).to_string()).collect();
        let acct = &self.accounts[sender.account];
        self.emit(WorldEvent::FanOutIncomplete {
            pn: acct.pn.clone(),
            device: sender.device,
            id: msg.opt_attr_str("id").map(|s| s.into_owned()).unwrap_or_default(),
            missing: missing_jids,
        });
        Some(participant_hash(&jids))
    }
}

impl World {
    /// The `phash` for the ack of group message `msg` from `sender`, when the hash it carries
    /// differs from the hash of the group members' devices; `None` when it matches, when it
    /// carries none, or for a copy to one device (a retry answer names a `participant`).
    pub(crate) fn group_phash(&mut self, sender: DeviceAddr, to: &Jid, msg: &Node) -> Option<String> {
        if !to.is_group() || msg.get_attr("participant").is_some() {
            return None;
        }
        let theirs = msg.opt_attr_str("phash")?.into_owned();
        let group = self.groups.get(to.user())?;
        let server = group.addressing();
        let members: Vec<usize> = group.participants.keys().copied().collect();
        let jids: Vec<Jid> = members
            .into_iter()
            .flat_map(|a| self.linked_devices(a))
            .filter(|d| !self.is_hosted_device(*d))
            .map(|d| self.device_jid(d, server))
            .collect();
        let expected = participant_hash(&jids);
        if expected == theirs {
            return None;
        }
        let acct = &self.accounts[sender.account];
        self.emit(WorldEvent::GroupDeviceListStale {
            pn: acct.pn.clone(),
            device: sender.device,
            id: msg.opt_attr_str("id").map(|s| s.into_owned()).unwrap_or_default(),
            group: to.to_string(),
        });
        Some(expected)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::world::tests::{bare_world, companion};

    fn to(jid: Jid) -> Node {
        Node::new("to").attr("jid", jid).children([Node::new("enc").attr("type", "msg").bytes(vec![1])])
    }

    #[test]
    fn a_message_missing_a_recipient_or_own_device_is_acked_with_the_expected_phash() {
        let mut w = bare_world();
        let me = w.create_account("15550001000", "Me").unwrap();
        let bob = w.create_account("15550001001", "Bob").unwrap();
        for (a, dev) in [(me, 1u16), (me, 2), (bob, 3)] {
            let mut d = companion(&w, a, dev);
            d.signed_identity = Some(vec![1]);
            w.accounts[a].devices.insert(dev, d);
        }
        let sender = DeviceAddr { account: me, device: 1 };
        let pns = [w.accounts[me].pn.clone(), w.accounts[bob].pn.clone()];
        let j = |a: usize, d: u16| {
            let user = Jid::pn(&pns[usize::from(a == bob)]).unwrap();
            if d == 0 { user } else { user.with_device(d).unwrap() }
        };
        let bob_user = w.user_jid(bob, Server::Pn);
        let all = vec![j(bob, 0), j(bob, 3), j(me, 0), j(me, 2)];
        let msg = |targets: &[Jid]| {
            Node::new("message").attr("id", "M1").children([
                Node::new("participants").children(targets.iter().cloned().map(to).collect::<Vec<_>>())
            ])
        };
        assert_eq!(w.fanout_phash(sender, &bob_user, &msg(&all)), None, "complete");
        // Bob's companion left out: the ack names the list the server expected, sender included.
        let expected = participant_hash(&[j(me, 0), j(me, 1), j(me, 2), j(bob, 0), j(bob, 3)]);
        assert_eq!(w.fanout_phash(sender, &bob_user, &msg(&all[..3])), Some(expected.clone()));
        assert!(w.events.iter().any(|e| matches!(e,
            WorldEvent::FanOutIncomplete { missing, device: 1, .. } if *missing == vec![j(me, 2).to_string()])));
        // Our own other device left out counts the same.
        assert_eq!(
            w.fanout_phash(sender, &bob_user, &msg(&[j(bob, 0), j(bob, 3), j(me, 0)])),
            Some(expected)
        );
        // A retry to one device and a group message are not fan-outs.
        assert_eq!(w.fanout_phash(sender, &j(bob, 3), &msg(&all[1..2])), None);
        let single = Node::new("message").children([Node::new("enc").bytes(vec![1])]);
        assert_eq!(w.fanout_phash(sender, &bob_user, &single), None);
    }

    #[test]
    fn a_group_message_with_a_stale_phash_is_acked_with_the_services() {
        let mut w = bare_world();
        let me = w.create_account("15550001000", "Me").unwrap();
        let bob = w.create_account("15550001001", "Bob").unwrap();
        for (a, dev) in [(me, 1u16), (bob, 3)] {
            let mut d = companion(&w, a, dev);
            d.signed_identity = Some(vec![1]);
            w.accounts[a].devices.insert(dev, d);
        }
        let group = w.create_group_with(me, "g", &[bob], true);
        let sender = DeviceAddr { account: me, device: 1 };
        let all = {
            let lid = |a: usize, d: u16| w.device_jid(DeviceAddr { account: a, device: d }, Server::Lid);
            [lid(me, 0), lid(me, 1), lid(bob, 0), lid(bob, 3)]
        };
        let msg = |phash: Option<String>| Node::new("message").attr("id", "G1").opt_attr("phash", phash);
        // The sender's view is the service's (order does not matter): nothing to say.
        let mine = participant_hash(&[all[3].clone(), all[0].clone(), all[2].clone(), all[1].clone()]);
        assert_eq!(w.group_phash(sender, &group, &msg(Some(mine))), None);
        // Bob's companion unknown to the sender: the ack names the service's hash.
        let stale = participant_hash(&all[..3]);
        assert_eq!(w.group_phash(sender, &group, &msg(Some(stale.clone()))), Some(participant_hash(&all)));
        assert!(w.events.iter().any(|e| matches!(e,
            WorldEvent::GroupDeviceListStale { id, device: 1, group: g, .. } if id == "G1" && *g == group.to_string())));
        // The PN form of the same devices is another list: a LID group hashes LIDs.
        let pn_hash = {
            let pn = |a: usize, d: u16| w.device_jid(DeviceAddr { account: a, device: d }, Server::Pn);
            participant_hash(&[pn(me, 0), pn(me, 1), pn(bob, 0), pn(bob, 3)])
        };
        assert!(w.group_phash(sender, &group, &msg(Some(pn_hash))).is_some());
        // No phash (Baileys), or a copy for one device: not checked.
        assert_eq!(w.group_phash(sender, &group, &msg(None)), None);
        let directed = msg(Some(stale)).attr("participant", all[3].clone());
        assert_eq!(w.group_phash(sender, &group, &directed), None);
    }
}
