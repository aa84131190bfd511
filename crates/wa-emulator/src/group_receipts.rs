//! Grouped receipts: when several members of a group confirm one message together, the
//! server tells the sender in one `<receipt from=<group> type><participants key=<message id>>
//! <user jid t/>…</participants></receipt>` with no `participant` attribute (whatsmeow
//! `receipt.go` `parseReceipt`/`handleGroupedReceipt`; whatsapp-rust `receipt.rs`, after WA
//! Web's `WAWebHandleMsgReceiptParser`, which aggregates group and broadcast receipts only).

use wa_binary::{Jid, Node, Server};

use crate::world::{AccountId, ControlError, DeviceAddr, World};

impl World {
    /// Members `readers` of group `gid` confirm message `id` together (`kind`: `None` for
    /// delivery, `read`, `played`). A companion that sent it gets one grouped receipt; a phone
    /// that sent it gets one receipt per member (phones here only record plain receipts).
    /// Each reader's phone must hold the message.
    pub fn group_receipts(
        &mut self,
        gid: &str,
        id: &str,
        kind: Option<&str>,
        readers: &[AccountId],
    ) -> Result<(), ControlError> {
        let group =
            self.groups.get(gid).cloned().ok_or_else(|| ControlError::UnknownGroup(gid.to_owned()))?;
        let sender = *self.sent_by.get(id).ok_or_else(|| ControlError::UnknownMessage(id.to_owned()))?;
        for &r in readers {
            if !group.participants.contains_key(&r)
                || !self.accounts[r].phone.inbox.iter().any(|m| m.id == id)
            {
                return Err(ControlError::UnknownMessage(format!(
                    "{id} (not received by {})",
                    self.accounts[r].pn
                )));
            }
        }
        let jid = Jid::group(gid).map_err(|_| ControlError::UnknownGroup(gid.to_owned()))?;
        if sender.device == 0 {
            for &r in readers {
                let mut receipt = Node::new("receipt").attr("id", id).attr("to", jid.clone());
                if let Some(k) = kind {
                    receipt = receipt.attr("type", k);
                }
                self.route_receipt(DeviceAddr { account: r, device: 0 }, &receipt);
            }
            return Ok(());
        }
        let now = self.now();
        let users: Vec<Node> = readers
            .iter()
            .map(|&r| {
                let user = Node::new("user").attr("jid", self.user_jid(r, group.addressing())).attr("t", now);
                if group.lid_addressed {
                    user.attr("participant_pn", self.user_jid(r, Server::Pn))
                } else {
                    user
                }
            })
            .collect();
        let stanza_id = self.random_hex(10);
        let receipt = Node::new("receipt")
            .attr("from", jid)
            .attr("id", stanza_id)
            .attr("t", now)
            .opt_attr("type", kind)
            .children([Node::new("participants").attr("key", id).children(users)]);
        self.deliver(sender, receipt);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use crate::phone::InboxMessage;
    use crate::testutil::{add_companion, login, of, sent, world};
    use crate::world::{ControlError, attr};

    fn received(w: &mut crate::World, account: usize, id: &str, chat: &str) {
        w.accounts[account].phone.inbox.push(InboxMessage {
            id: id.into(),
            chat: chat.into(),
            sender: "15550001000:5@s.whatsapp.net".into(),
            device: 0,
            text: None,
            kind: "text".into(),
            t: 0,
            message: Vec::new(),
            error: None,
        });
    }

    #[test]
    fn members_confirming_together_give_the_sending_companion_one_grouped_receipt() {
        let (mut w, _) = world(4);
        let me = add_companion(&mut w, 0, 5);
        for lid in [false, true] {
            let g = w.create_group_with(0, "big", &[1, 2, 3], lid);
            let id = format!("MSG{lid}");
            w.sent_by.insert(id.clone(), me);
            for a in [1, 2, 3] {
                received(&mut w, a, &id, &g.to_string());
            }
            let (conn, mut rx) = login(&mut w, me);
            sent(&mut rx);
            w.group_receipts(g.user(), &id, Some("read"), &[1, 3]).unwrap();
            let got = sent(&mut rx);
            let r = of(&got, "receipt", Some("read"))[0];
            assert_eq!((attr(r, "from"), attr(r, "participant")), (g.to_string(), String::new()));
            let parts = r.child("participants").unwrap();
            assert_eq!(attr(parts, "key"), id);
            let users: Vec<String> = parts.children_by_tag("user").map(|u| attr(u, "jid")).collect();
            let server = if lid { wa_binary::Server::Lid } else { wa_binary::Server::Pn };
            assert_eq!(users, [1, 3].map(|a| w.user_jid(a, server).to_string()));
            assert_eq!(parts.children_by_tag("user").all(|u| u.has_attr("participant_pn")), lid);
            w.disconnect(conn);
        }
        // Member 3 never got message X.
        w.sent_by.insert("X".into(), me);
        let g = w.create_group(0, "g", &[1, 3]);
        received(&mut w, 1, "X", &g.to_string());
        assert!(matches!(
            w.group_receipts(g.user(), "X", None, &[1, 3]),
            Err(ControlError::UnknownMessage(_))
        ));
    }
}
