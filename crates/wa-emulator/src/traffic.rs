//! Server-initiated traffic: the state it needs (dirty bits, media ages, issued tokens,
//! app-state versions, calls in progress), delivery of stanzas to an account's companions,
//! and the acknowledgements of the classes beyond messages and receipts (notifications and
//! calls), which are tracked and re-delivered like messages (see `world::awaits_ack`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use wa_binary::{Jid, Node};

use crate::world::{AccountId, ConnId, DeviceAddr, World, WorldEvent, attr};

/// What the server-initiated traffic remembers between stanzas.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    /// Dirty bits an account's companions have not cleaned: type → timestamp.
    pub dirty: HashMap<AccountId, BTreeMap<String, u64>>,
    /// When each media blob was stored, by direct path (unix seconds).
    pub media_stored_at: HashMap<String, u64>,
    /// Media messages phones sent themselves, by (phone's account, message id): the phone's
    /// own copy, which it re-uploads on a media retry request.
    pub phone_media: HashMap<(AccountId, String), wa_proto::Message>,
    /// Re-uploads phones made for media retries.
    pub reuploads: u64,
    /// Each account's app state: the phone's keys, the server's patches (see `appstate`).
    pub app_state: HashMap<AccountId, crate::appstate::AccountAppState>,
    /// When a phone last issued a trusted-contact token to a contact: (issuer, contact) → t.
    pub tokens_issued: HashMap<(AccountId, AccountId), u64>,
    /// Pairs of accounts that exchanged a direct message (smaller id first).
    pub chats: BTreeSet<(AccountId, AccountId)>,
    /// Calls ringing: call id → the call.
    pub calls: HashMap<String, Call>,
    /// The edge routing info last given to each device.
    pub routing_info: HashMap<DeviceAddr, Vec<u8>>,
    /// History chunks each companion has not acknowledged with `hist_sync` (see `history`).
    pub history: HashMap<DeviceAddr, Vec<crate::history::PendingHistory>>,
}

/// A call a phone placed.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub caller: AccountId,
    pub callee: AccountId,
}

impl World {
    /// The paired companions of an account (device 0, the phone, excluded).
    pub(crate) fn companions_of(&self, account: AccountId) -> Vec<DeviceAddr> {
        self.accounts[account]
            .devices
            .values()
            .filter(|d| d.id != 0 && d.signed_identity.is_some())
            .map(|d| DeviceAddr { account, device: d.id })
            .collect()
    }

    /// `<notification from type id t>children</notification>` with a fresh server id.
    pub(crate) fn notification(&mut self, ty: &str, from: Jid, children: Vec<Node>) -> Node {
        let id = self.next_iq_id();
        Node::new("notification")
            .attr("from", from)
            .attr("type", ty)
            .attr("id", id)
            .attr("t", self.now())
            .children(children)
    }

    /// Delivers one stanza to every companion of `account` (queued for offline ones).
    pub(crate) fn deliver_to_companions(&mut self, account: AccountId, node: &Node) {
        for c in self.companions_of(account) {
            self.deliver(c, node.clone());
        }
    }

    /// Accounts that see `account`'s profile changes (picture, about): members of a group
    /// with it and accounts it exchanged a direct message with, itself excluded.
    pub(crate) fn contacts_of(&self, account: AccountId) -> BTreeSet<AccountId> {
        let mut out: BTreeSet<AccountId> = self
            .groups
            .values()
            .filter(|g| g.participants.contains_key(&account))
            .flat_map(|g| g.participants.keys().copied())
            .collect();
        for &(a, b) in &self.traffic.chats {
            if a == account {
                out.insert(b);
            } else if b == account {
                out.insert(a);
            }
        }
        out.remove(&account);
        out
    }

    /// A direct message was routed from `sender` to `to`: the two accounts are now contacts,
    /// and a phone sending to a contact issues its trusted-contact token (see
    /// `notifications::issue_privacy_token`).
    pub(crate) fn note_direct_message(&mut self, sender: DeviceAddr, to: &Jid) {
        if to.is_group() {
            return;
        }
        let Some(recipient) = self.account_of(to) else { return };
        if recipient == sender.account {
            return;
        }
        let pair = (sender.account.min(recipient), sender.account.max(recipient));
        self.traffic.chats.insert(pair);
        if sender.device == 0 {
            self.issue_privacy_token(sender.account, recipient);
        }
    }

    /// A companion acknowledged a notification or call: `<ack class id to [type]>`. The first
    /// stanza of that class and id in flight to the device (and from the `to` the ack names,
    /// when it names one) is done; an ack matching nothing is ignored.
    pub(crate) fn on_stanza_ack(&mut self, conn: ConnId, ack: &Node) {
        let class = attr(ack, "class");
        if !matches!(class.as_str(), "notification" | "call") {
            return;
        }
        let Some(addr) = self.conns.get(&conn).and_then(|c| c.device) else { return };
        let Some(acct) = self.accounts.get_mut(addr.account) else { return };
        let pn = acct.pn.clone();
        let Some(d) = acct.devices.get_mut(&addr.device) else { return };
        let (id, to) = (attr(ack, "id"), attr(ack, "to"));
        let pos = d.in_flight.iter().position(|n| {
            n.tag == class.as_str() && attr(n, "id") == id && (to.is_empty() || attr(n, "from") == to)
        });
        let Some(pos) = pos else { return };
        let Some(n) = d.in_flight.remove(pos) else { return };
        let kind = if class == "call" {
            n.child_nodes().first().map(|c| c.tag.to_string()).unwrap_or_default()
        } else {
            attr(&n, "type")
        };
        self.emit(WorldEvent::StanzaAcked { pn, device: addr.device, class, id, kind });
    }

    /// Stanzas delivered to a device and not yet acknowledged (for tests and the control API):
    /// `(tag, id, type)` of each, oldest first.
    pub fn in_flight_of(&self, addr: DeviceAddr) -> Vec<(String, String, String)> {
        self.accounts
            .get(addr.account)
            .and_then(|a| a.devices.get(&addr.device))
            .map(|d| {
                d.in_flight.iter().map(|n| (n.tag.to_string(), attr(n, "id"), attr(n, "type"))).collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use wa_binary::{Jid, Node, Server};

    use crate::testutil::{ack_of, add_companion, login, of, sent, world};
    use crate::world::{WorldEvent, attr};

    #[test]
    fn notifications_and_calls_wait_for_their_ack_and_come_back_offline() {
        let (mut w, _) = world(2);
        let me = add_companion(&mut w, 0, 5);
        let (conn, mut rx) = login(&mut w, me);
        sent(&mut rx);
        w.phone_change_app_state(0, &["regular"]).unwrap();
        let to = w.user_jid(0, Server::Pn);
        w.phone_call(1, &to, false).unwrap();
        let got = sent(&mut rx);
        let note = of(&got, "notification", Some("server_sync"))[0].clone();
        let call = of(&got, "call", None)[0].clone();
        assert_eq!(w.in_flight_of(me).len(), 2);

        // An ack naming another id, or another sender, matches nothing.
        w.on_node(conn, Node::new("ack").attr("class", "notification").attr("id", "nope"));
        let mut wrong = ack_of(&note);
        wrong.set_attr("to", "15550009999@s.whatsapp.net".parse::<Jid>().unwrap());
        w.on_node(conn, wrong);
        assert_eq!(w.in_flight_of(me).len(), 2);
        w.on_node(conn, ack_of(&call));
        assert_eq!(
            w.in_flight_of(me),
            vec![("notification".into(), attr(&note, "id"), "server_sync".into())]
        );
        assert!(w.events.iter().any(|e| matches!(e,
            WorldEvent::StanzaAcked { class, kind, device: 5, .. } if class == "call" && kind == "offer")));

        // The connection ends first: the next login gets the notification again, offline.
        w.disconnect(conn);
        let (conn2, mut rx2) = login(&mut w, me);
        let again = sent(&mut rx2);
        let n = of(&again, "notification", Some("server_sync"))[0].clone();
        assert_eq!((attr(&n, "id"), attr(&n, "offline")), (attr(&note, "id"), "1".to_owned()));
        w.on_node(conn2, ack_of(&n));
        assert!(w.in_flight_of(me).is_empty());
        assert!(
            w.events.iter().any(|e| matches!(e,
            WorldEvent::StanzaAcked { class, kind, .. } if class == "notification" && kind == "server_sync"))
        );
    }
}
