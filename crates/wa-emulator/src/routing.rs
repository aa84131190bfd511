//! Routing: client `<message>`s fanned out to devices, receipts to senders, and the
//! acknowledgements that end a delivery.

use std::collections::BTreeMap;

use wa_binary::{Jid, Node, Server};

use crate::world::{ConnId, DeviceAddr, MAX_ACKED_IDS, World, WorldEvent, attr, server_jid};

impl World {
    // ------------------------------------------------------------------ routing

    pub(crate) fn on_message(&mut self, conn: ConnId, msg: Node) {
        let Some(sender) = self.conns.get(&conn).and_then(|c| c.device) else {
            self.send(
                conn,
                Node::new("ack").attr("class", "message").attr("id", attr(&msg, "id")).attr("error", "401"),
            );
            return;
        };
        let id = attr(&msg, "id");
        let Ok(to) = msg.attr_jid("to") else {
            self.send(conn, Node::new("ack").attr("class", "message").attr("id", id).attr("error", "400"));
            return;
        };
        if matches!(to.server(), Server::Pn | Server::Lid | Server::Hosted | Server::HostedLid)
            && let Err(refusal) = self.check_dm_addressing(sender, &to, &msg)
        {
            let code = refusal.code();
            tracing::debug!(conn, %to, ?refusal, "1:1 message refused");
            self.send(
                conn,
                Node::new("ack")
                    .attr("class", "message")
                    .attr("id", id.as_str())
                    .attr("from", to)
                    .attr("error", code),
            );
            let pn = self.accounts[sender.account].pn.clone();
            self.emit(WorldEvent::MessageRefused { pn, device: sender.device, id, code });
            return;
        }
        // Reach-out limits (see `reachout`): refused like an addressing error.
        if matches!(to.server(), Server::Pn | Server::Lid | Server::Hosted | Server::HostedLid)
            && let Err(code) = self.check_reachout(sender, &to, &msg)
        {
            tracing::debug!(conn, %to, "1:1 reach-out refused");
            self.send(
                conn,
                Node::new("ack")
                    .attr("class", "message")
                    .attr("id", id.as_str())
                    .attr("from", to)
                    .attr("error", code),
            );
            let pn = self.accounts[sender.account].pn.clone();
            self.emit(WorldEvent::MessageRefused { pn, device: sender.device, id, code });
            return;
        }
        let now = self.now();
        // A stale device list on the sender's side shows as `phash` (see `fanout`).
        let phash = if to.is_group() {
            self.group_phash(sender, &to, &msg)
        } else {
            self.fanout_phash(sender, &to, &msg)
        };
        let ack = Node::new("ack")
            .attr("class", "message")
            .attr("id", id.as_str())
            .attr("from", to.clone())
            .attr("t", now)
            .opt_attr("phash", phash);
        self.send(conn, ack);
        self.route_message(sender, &to, &msg);
    }

    /// Fans a client's (or phone's) `<message>` out to every addressed device.
    pub(crate) fn route_message(&mut self, sender: DeviceAddr, to: &Jid, msg: &Node) {
        let id = attr(msg, "id");
        self.sent_by.insert(id.clone(), sender);
        let now = self.now();
        let ty = {
            let t = attr(msg, "type");
            if t.is_empty() { "text".to_owned() } else { t }
        };
        let notify = self.accounts[sender.account].push_name.clone();
        let device_identity = msg.child("device-identity").cloned();
        let mut skmsg = msg.children_by_tag("enc").next().cloned();
        let mut addressed: BTreeMap<DeviceAddr, Node> = BTreeMap::new();
        if let Some(parts) = msg.child("participants") {
            for to_node in parts.children_by_tag("to") {
                let Ok(dj) = to_node.attr_jid("jid") else { continue };
                let Some(addr) = self.device_of(&dj) else { continue };
                if let Some(enc) = to_node.child("enc") {
                    addressed.insert(addr, enc.clone());
                }
            }
        }
        // A copy for one device only (a retry answer): the `<enc>` sits directly under the
        // message, addressed by `to` (a device JID) or, in a group, by `participant`.
        let directed = if msg.child("participants").is_some() {
            None
        } else if to.is_group() {
            msg.attr_jid("participant").ok().and_then(|p| self.device_of(&p))
        } else {
            self.device_of(to)
        };
        if let Some(t) = directed
            && let Some(enc) = skmsg.take()
        {
            addressed.insert(t, enc);
        }
        let base = |from: Jid| {
            Node::new("message")
                .attr("from", from)
                .attr("id", id.as_str())
                .attr("t", now)
                .attr("type", ty.as_str())
        };
        if to.is_group() {
            let Some(group) = self.groups.get(to.user()).cloned() else { return };
            let sender_jid = self.device_jid(sender, group.addressing());
            let targets: Vec<DeviceAddr> = group
                .participants
                .keys()
                .flat_map(|&a| {
                    self.accounts[a].devices.keys().map(move |&d| DeviceAddr { account: a, device: d })
                })
                // Hosted devices take no part in groups (see `hosted`).
                .filter(|a| *a != sender && directed.is_none_or(|d| d == *a) && !self.is_hosted_device(*a))
                .collect();
            for t in targets {
                let mut children = Vec::new();
                if let Some(enc) = addressed.get(&t) {
                    children.push(enc.clone());
                }
                if let Some(sk) = &skmsg {
                    children.push(sk.clone());
                }
                if children.is_empty() {
                    continue;
                }
                if let Some(di) = &device_identity {
                    children.push(di.clone());
                }
                let node = base(to.clone()).attr("participant", sender_jid.clone());
                let node = self
                    .with_participant_alt(node, sender.account, &group)
                    .attr("notify", notify.as_str())
                    .attr("addressing_mode", group.addressing_mode())
                    .children(children);
                self.deliver(t, node);
            }
            return;
        }
        let chat = self.account_of(to);
        for (t, enc) in addressed {
            if t == sender {
                continue;
            }
            // Each device gets the DM in its own account's view of the sender (see `addressing`).
            let server = self.delivery_server(sender.account, t.account);
            let mut node = base(self.device_jid(sender, server)).attr("notify", notify.as_str());
            if t.account == sender.account {
                // A copy for the sender's own other device: the chat is the recipient.
                node = match chat {
                    Some(c) => self.with_recipient(node, sender.account, c),
                    None => node.attr("recipient", to.clone()),
                };
            } else {
                node = self.with_sender_alt(node, sender.account, server);
            }
            let mut children = vec![enc];
            if let Some(di) = &device_identity {
                children.push(di.clone());
            }
            self.deliver(t, node.children(children));
        }
        self.note_direct_message(sender, to);
    }

    pub(crate) fn on_receipt(&mut self, conn: ConnId, r: Node) {
        let Some(sender) = self.conns.get(&conn).and_then(|c| c.device) else { return };
        let id = attr(&r, "id");
        let mut ack =
            Node::new("ack").attr("class", "receipt").attr("id", id.as_str()).attr("from", server_jid());
        let ty = attr(&r, "type");
        if !ty.is_empty() {
            ack = ack.attr("type", ty.as_str());
        }
        self.send(conn, ack);
        if ty == "server-error" {
            // A media retry request is for the requester's own phone, not the message's sender.
            self.on_media_retry_receipt(sender, &r);
            return;
        }
        if ty == "hist_sync" {
            // The phone counts the history chunk delivered (see `history`).
            self.phone_history_acknowledged(sender, &id);
        }
        let mut ids = vec![id];
        if let Some(list) = r.child("list") {
            ids.extend(list.children_by_tag("item").map(|i| attr(i, "id")));
        }
        self.on_device_ack(conn, &ids);
        self.route_receipt(sender, &r);
    }

    /// A device acknowledged messages: they leave its in-flight list and count as acked.
    /// Only messages and appdata (which whatsmeow's `handleEncryptedMessage` confirms like a
    /// message): a receipt in flight to the device may carry the same id (a receipt's id is
    /// the id of the message it is about) and waits for its own `<ack class="receipt">`.
    pub(crate) fn on_device_ack(&mut self, conn: ConnId, ids: &[String]) {
        let Some(addr) = self.conns.get(&conn).and_then(|c| c.device) else { return };
        let Some(acct) = self.accounts.get_mut(addr.account) else { return };
        let pn = acct.pn.clone();
        let Some(d) = acct.devices.get_mut(&addr.device) else { return };
        let mut acked = Vec::new();
        for id in ids {
            let before = d.in_flight.len();
            d.in_flight.retain(|n| !matches!(n.tag.as_str(), "message" | "appdata") || attr(n, "id") != *id);
            if d.in_flight.len() < before {
                if d.acked.len() >= MAX_ACKED_IDS {
                    d.acked.pop_front();
                }
                d.acked.push_back(id.clone());
                acked.push(id.clone());
            }
        }
        for id in acked {
            self.emit(WorldEvent::DeviceAcked { pn: pn.clone(), device: addr.device, id });
        }
    }

    /// A device acknowledged a receipt delivered to it: `<ack class="receipt" id to
    /// [participant] [type]>` names the receipt by its id, its sender (`to` is the receipt's
    /// `from`, plus the group `participant`) and its type; ids alone would be ambiguous (the
    /// delivery and the read receipt of one message share its id). The first matching receipt
    /// in flight is done; an ack matching nothing is ignored.
    pub(crate) fn on_receipt_ack(&mut self, conn: ConnId, ack: &Node) {
        let Some(addr) = self.conns.get(&conn).and_then(|c| c.device) else { return };
        let Some(acct) = self.accounts.get_mut(addr.account) else { return };
        let pn = acct.pn.clone();
        let Some(d) = acct.devices.get_mut(&addr.device) else { return };
        let (id, from, participant, kind) =
            (attr(ack, "id"), attr(ack, "to"), attr(ack, "participant"), attr(ack, "type"));
        let pos = d.in_flight.iter().position(|n| {
            n.tag == "receipt"
                && attr(n, "id") == id
                && attr(n, "from") == from
                && attr(n, "participant") == participant
                && attr(n, "type") == kind
        });
        if let Some(pos) = pos {
            d.in_flight.remove(pos);
            self.emit(WorldEvent::ReceiptAcked { pn, device: addr.device, id, kind });
        }
    }

    /// Forwards a receipt to the device that sent the message (and the sender's phone).
    pub(crate) fn route_receipt(&mut self, from: DeviceAddr, r: &Node) {
        let mut ids = vec![attr(r, "id")];
        if let Some(list) = r.child("list") {
            ids.extend(list.children_by_tag("item").map(|i| attr(i, "id")));
        }
        let ty = attr(r, "type");
        let to_attr = r.attr_jid("to").ok();
        let group =
            to_attr.as_ref().filter(|j| j.is_group()).and_then(|g| self.groups.get(g.user()).cloned());
        let now = self.now();
        for id in ids {
            let Some(&orig) = self.sent_by.get(&id) else { continue };
            if orig == from {
                continue;
            }
            let mut node = Node::new("receipt").attr("id", id.as_str()).attr("t", now);
            match (&to_attr, &group) {
                (Some(g), Some(group)) => {
                    let participant = self.device_jid(from, group.addressing());
                    node = node.attr("from", g.clone()).attr("participant", participant);
                    node = self.with_participant_alt(node, from.account, group);
                }
                _ => {
                    // A 1:1 receipt comes from the reader as the sender's account sees it.
                    let server = self.delivery_server(from.account, orig.account);
                    node = node.attr("from", self.device_jid(from, server));
                    if from.account != orig.account {
                        node = self.with_sender_alt(node, from.account, server);
                    }
                }
            }
            if !ty.is_empty() {
                node = node.attr("type", ty.as_str());
            }
            // Between devices of one account the chat travels along (`sender` receipts).
            if from.account == orig.account
                && let Some(rcpt) = r.get_attr("recipient")
            {
                node = node.attr("recipient", rcpt.clone());
            }
            // What the receipt carries besides the id list (a retry's <retry>, <registration>
            // and <keys>) travels to the sender unchanged.
            let extra: Vec<Node> = r.child_nodes().iter().filter(|c| c.tag != "list").cloned().collect();
            if !extra.is_empty() {
                node = node.children(extra);
            }
            self.deliver(orig, node);
        }
    }
}
