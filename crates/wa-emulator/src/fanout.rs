//! Whether a 1:1 `<message>` reached every device it must: each of the recipient's devices and
//! each of the sender's own other devices (their copy of what was sent). When the sender's
//! device list was stale and `<participants>` leaves one out, the server still delivers what it
//! got and answers with `phash` in the `<ack>`: the participant hash of the devices it expected
//! (whatsmeow `send.go` `SendMessage` compares it with its own `participantListHashV2` over the
//! devices it encrypted for, including the sending device, and drops its device cache on a
//! mismatch; whatsapp-rust `wacore/src/messages.rs` `participant_list_hash` hashes the same list
//! before removing its own device).

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
}
