//! Info bulletins (`<ib>`) the server sends around a login: edge routing, the offline preview,
//! dirty bits; and the client's side of them (the routing info in its next intro, `clean`).
//! Clients never acknowledge `<ib>`, so none of it waits in flight.

use rand_core::Rng;
use wa_binary::Node;

use crate::world::{AccountId, ConnId, DeviceAddr, World, WorldEvent, attr, server_jid};

impl World {
    /// Sent on activation before the offline queue: `<ib><edge_routing><routing_info>` (a
    /// `RoutingInfo` protobuf, whatsmeow `proto/waRoutingInfo`; clients keep it and send it
    /// in the `ED` pre-intro of their next connection: Baileys `socket.ts` `edge_routing` and
    /// `noise-handler.ts`, whatsapp-rust `handlers/ib.rs`), then, when anything is queued,
    /// `<ib><offline_preview count message notification receipt call appdata/>` (whatsmeow
    /// `connectionevents.go` `handleIB`, whatsapp-rust `handlers/ib.rs`).
    pub(crate) fn bulletins_before_offline(&mut self, conn: ConnId, queued: &[Node]) {
        let Some(addr) = self.conns.get(&conn).and_then(|c| c.device) else { return };
        let routing = self.routing_info();
        self.traffic.routing_info.insert(addr, routing.clone());
        self.send(
            conn,
            Node::new("ib")
                .attr("from", server_jid())
                .children([Node::new("edge_routing").children([Node::new("routing_info").bytes(routing)])]),
        );
        if queued.is_empty() {
            return;
        }
        let count = |tag: &str| queued.iter().filter(|n| n.tag == tag).count();
        let preview = Node::new("offline_preview")
            .attr("count", queued.len())
            .attr("message", count("message"))
            .attr("notification", count("notification"))
            .attr("receipt", count("receipt"))
            .attr("call", count("call"))
            .attr("appdata", count("appdata"));
        self.send(conn, Node::new("ib").attr("from", server_jid()).children([preview]));
    }

    /// Sent on activation after `<ib><offline>`: the account's dirty bits not yet cleaned.
    pub(crate) fn bulletins_after_offline(&mut self, conn: ConnId, addr: DeviceAddr) {
        let bits: Vec<(String, u64)> = self
            .traffic
            .dirty
            .get(&addr.account)
            .map(|m| m.iter().map(|(k, t)| (k.clone(), *t)).collect())
            .unwrap_or_default();
        for (kind, t) in bits {
            self.send(conn, dirty_node(&kind, t));
        }
    }

    /// Marks a dirty bit on an account (the server's state of type `kind`, such as
    /// `account_sync` or `groups`, changed): every active companion gets `<ib><dirty type
    /// timestamp/>` now, and each login gets it again until a companion cleans it
    /// (whatsmeow `connectionevents.go` `handleIB`, whatsapp-rust `handlers/ib.rs` and
    /// `wacore/src/iq/dirty.rs`).
    pub fn mark_dirty(&mut self, account: AccountId, kind: &str) {
        let t = self.now();
        self.traffic.dirty.entry(account).or_default().insert(kind.to_owned(), t);
        for c in self.companions_of(account) {
            if let Some(conn) = self.conn_of(c)
                && self.conns.get(&conn).is_some_and(|x| x.active)
            {
                self.send(conn, dirty_node(kind, t));
            }
        }
    }

    /// Dirty bits of an account not yet cleaned: type → timestamp.
    pub fn dirty_bits(&self, account: AccountId) -> Vec<(String, u64)> {
        self.traffic
            .dirty
            .get(&account)
            .map(|m| m.iter().map(|(k, t)| (k.clone(), *t)).collect())
            .unwrap_or_default()
    }

    /// `<iq xmlns="urn:xmpp:whatsapp:dirty" type="set"><clean type [timestamp]/>…</iq>`: each
    /// named bit is cleared (a `timestamp` older than the bit's leaves it set: the state
    /// changed again since). Answered with an empty result.
    pub(crate) fn on_clean(&mut self, conn: ConnId, iq: &Node) -> Node {
        if let Some(addr) = self.conns.get(&conn).and_then(|c| c.device) {
            let pn = self.accounts[addr.account].pn.clone();
            for clean in iq.children_by_tag("clean") {
                let kind = attr(clean, "type");
                let stamp = clean.opt_attr_str("timestamp").and_then(|t| t.parse::<u64>().ok());
                let bits = self.traffic.dirty.entry(addr.account).or_default();
                let current = bits.get(&kind).copied();
                if current.is_some_and(|t| stamp.is_none_or(|s| s >= t)) {
                    bits.remove(&kind);
                    self.emit(WorldEvent::DirtyCleaned { pn: pn.clone(), device: addr.device, kind });
                }
            }
        }
        self.iq_result(iq)
    }

    /// A connection's intro carried edge routing info.
    pub fn on_intro_routing(&mut self, conn: ConnId, routing_info: &[u8]) {
        self.emit(WorldEvent::RoutingInfoPresented { conn, routing_info: routing_info.to_vec() });
    }

    /// The edge routing info last given to a device.
    pub fn routing_info_of(&self, addr: DeviceAddr) -> Option<Vec<u8>> {
        self.traffic.routing_info.get(&addr).cloned()
    }
}

impl World {
    /// `RoutingInfo { regionID: [r], clusterID: [c], taskID: t }` (fields 1, 2, 3, varints
    /// below 128, so each is a tag byte and a value byte).
    fn routing_info(&mut self) -> Vec<u8> {
        let n = self.rng.next_u32();
        let (region, cluster, task) = ((n % 9 + 1) as u8, ((n >> 8) % 99 + 1) as u8, ((n >> 16) % 128) as u8);
        vec![0x08, region, 0x10, cluster, 0x18, task]
    }
}

fn dirty_node(kind: &str, t: u64) -> Node {
    Node::new("ib")
        .attr("from", server_jid())
        .children([Node::new("dirty").attr("type", kind).attr("timestamp", t)])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use crate::testutil::{add_companion, login, of, sent, world};
    use crate::world::{WorldEvent, attr};
    use wa_binary::Node;

    #[test]
    fn each_login_gets_edge_routing_and_a_preview_of_what_is_queued() {
        let (mut w, _) = world(2);
        let me = add_companion(&mut w, 0, 5);
        let (conn, mut rx) = login(&mut w, me);
        let first = sent(&mut rx);
        let ri =
            first[0].child_path(&["edge_routing", "routing_info"]).and_then(|r| r.content_bytes()).unwrap();
        assert_eq!(Some(ri.to_vec()), w.routing_info_of(me));
        assert!(first.iter().all(|n| n.child("offline_preview").is_none()), "nothing queued: no preview");

        w.disconnect(conn);
        w.phone_change_app_state(0, &["regular_low"]).unwrap();
        w.phone_send(1, &w.user_jid(0, wa_binary::Server::Pn), &Default::default()).unwrap();
        let (_, mut rx) = login(&mut w, me);
        let got = sent(&mut rx);
        let tags: Vec<String> = got
            .iter()
            .map(|n| {
                n.child_nodes().first().map_or(n.tag.to_string(), |c| {
                    if n.tag == "ib" { c.tag.to_string() } else { n.tag.to_string() }
                })
            })
            .collect();
        let preview = got.iter().find_map(|n| n.child("offline_preview")).unwrap();
        // A message, the app-state notification and the token the phone issued with it.
        assert_eq!(
            ["count", "message", "notification", "receipt", "call", "appdata"].map(|k| attr(preview, k)),
            ["3", "1", "2", "0", "0", "0"].map(String::from)
        );
        let at = |t: &str| tags.iter().position(|x| x == t).unwrap();
        assert!(at("edge_routing") < at("offline_preview") && at("offline_preview") < at("message"));
        assert!(at("message") < at("offline"));
    }

    #[test]
    fn a_dirty_bit_is_repeated_at_each_login_until_cleaned() {
        let (mut w, clock) = world(1);
        let me = add_companion(&mut w, 0, 5);
        let (conn, mut rx) = login(&mut w, me);
        sent(&mut rx);
        w.mark_dirty(0, "account_sync");
        let got = sent(&mut rx);
        let dirty = of(&got, "ib", None)[0].child("dirty").unwrap().clone();
        assert_eq!(attr(&dirty, "type"), "account_sync");
        let stamp = attr(&dirty, "timestamp");

        w.disconnect(conn);
        let (conn, mut rx) = login(&mut w, me);
        let again = sent(&mut rx);
        assert!(again.last().unwrap().child("dirty").is_some(), "after <offline>: {again:?}");

        // A clean naming an older timestamp leaves a bit set since then; the current one clears it.
        clock.advance(10);
        w.mark_dirty(0, "account_sync");
        let clean = |t: &str| {
            Node::new("iq")
                .attr("id", "c1")
                .attr("xmlns", "urn:xmpp:whatsapp:dirty")
                .attr("type", "set")
                .children([Node::new("clean").attr("type", "account_sync").attr("timestamp", t)])
        };
        w.on_node(conn, clean(&stamp));
        assert_eq!(w.dirty_bits(0).len(), 1);
        let now = w.dirty_bits(0)[0].1.to_string();
        w.on_node(conn, clean(&now));
        assert!(w.dirty_bits(0).is_empty());
        assert!(
            w.events
                .iter()
                .any(|e| matches!(e, WorldEvent::DirtyCleaned { kind, .. } if kind == "account_sync"))
        );
        w.disconnect(conn);
        let (_, mut rx) = login(&mut w, me);
        assert!(sent(&mut rx).iter().all(|n| n.child("dirty").is_none()));
    }
}
