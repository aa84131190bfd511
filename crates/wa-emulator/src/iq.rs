//! IQs a logged-in client sends: dispatch, `encrypt` (prekeys, bundles), `media_conn`,
//! companion removal.

use wa_binary::{Jid, Node};

use crate::world::{ConnId, DeviceAddr, World, WorldEvent, attr, be_bytes, server_jid};

impl World {
    pub(crate) fn on_iq(&mut self, conn: ConnId, iq: Node) {
        let ty = attr(&iq, "type");
        if ty == "result" || ty == "error" {
            if iq.child("pair-device-sign").is_some() || ty == "error" {
                self.on_pair_reply(conn, &iq);
            }
            return;
        }
        let xmlns = attr(&iq, "xmlns");
        let first = iq.child_nodes().first().map(|c| c.tag.to_string()).unwrap_or_default();
        let logged_in = self.conns.get(&conn).and_then(|c| c.device);
        // `w:mex` queries the emulator answers (see `reachout`); other ids are unsupported.
        let mex = match (xmlns.as_str(), first.as_str(), logged_in) {
            ("w:mex", "query", Some(d)) => self.on_mex_query(d.account, &iq),
            _ => None,
        };
        let reply = match (xmlns.as_str(), first.as_str()) {
            ("md", "link_code_companion_reg") => self.on_link_code(conn, &iq),
            ("w:p", _) | ("urn:xmpp:ping", _) => Some(self.iq_result(&iq)),
            (_, _) if logged_in.is_none() => Some(self.iq_error(&iq, 401, "not-authorized")),
            ("encrypt", _) => self.on_encrypt(conn, &iq),
            ("passive", "active") => {
                let r = self.iq_result(&iq);
                self.send(conn, r);
                self.activate(conn);
                None
            }
            ("passive", "passive") => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.active = false;
                }
                Some(self.iq_result(&iq))
            }
            ("usync", "usync") => Some(self.on_usync(&iq)),
            ("w:m", "media_conn") => Some(self.media_conn(&iq)),
            ("abt", "props") | ("w", "props") => Some(
                self.iq_result(&iq).children([Node::new("props")
                    .attr("protocol", "1")
                    .attr("hash", "emu")
                    .children([Node::new("prop").attr("config_code", "1").attr("config_value", "1")])]),
            ),
            ("blocklist", _) => Some(self.iq_result(&iq).children([Node::new("list")])),
            ("privacy", "privacy") => Some(
                self.iq_result(&iq).children([Node::new("privacy").children(
                    ["last", "online", "profile", "status", "readreceipts", "groupadd"]
                        .into_iter()
                        .map(|n| Node::new("category").attr("name", n).attr("value", "all")),
                )]),
            ),
            ("privacy", "tokens") => logged_in.map(|d| self.on_issue_tokens(d.account, &iq)),
            ("w:mex", "query") if mex.is_some() => mex,
            ("urn:xmpp:whatsapp:dirty", "clean") => Some(self.on_clean(conn, &iq)),
            ("w:g2", _) => Some(self.on_group_iq(conn, &iq)),
            ("md", "remove-companion-device") => self.on_remove_companion(conn, &iq),
            ("w:sync:app:state", "sync") => logged_in.map(|d| self.on_app_state_sync(d, &iq)),
            ("w:stats", _) | ("status", _) | ("w:profile:picture", _) => Some(self.iq_result(&iq)),
            _ => {
                tracing::warn!(conn, xmlns, child = first, "unsupported iq answered with 501");
                self.emit(WorldEvent::Unsupported { conn, tag: first.clone(), xmlns: xmlns.clone() });
                Some(self.iq_error(&iq, 501, "feature-not-implemented"))
            }
        };
        if let Some(r) = reply {
            self.send(conn, r);
        }
    }

    pub(crate) fn on_encrypt(&mut self, conn: ConnId, iq: &Node) -> Option<Node> {
        let addr = self.conns.get(&conn)?.device?;
        let ty = attr(iq, "type");
        if iq.child("count").is_some() {
            let n =
                self.accounts[addr.account].devices.get(&addr.device).map_or(0, |d| d.keys.pre_keys.len());
            return Some(self.iq_result(iq).children([Node::new("count").attr("value", n)]));
        }
        if iq.child("digest").is_some() {
            let d = self.accounts[addr.account].devices.get(&addr.device)?;
            let reg = be_bytes(d.keys.registration_id, 4);
            let ids: Vec<Node> =
                d.keys.pre_keys.keys().map(|id| Node::new("id").bytes(be_bytes(*id, 3))).collect();
            let skey = &d.keys.signed_pre_key;
            let digest = Node::new("digest").children([
                Node::new("type").bytes(vec![5u8]),
                Node::new("registration").bytes(reg),
                Node::new("identity").bytes(d.keys.identity.as_bytes().to_vec()),
                Node::new("skey").children([Node::new("id").bytes(be_bytes(skey.id, 3))]),
                Node::new("list").children(ids),
            ]);
            return Some(self.iq_result(iq).children([digest]));
        }
        if let Some(key) = iq.child("key") {
            let mut users = Vec::new();
            for u in key.children_by_tag("user") {
                let Ok(jid) = u.attr_jid("jid") else { continue };
                users.push(match self.device_of(&jid) {
                    Some(addr) => self.take_bundle(addr, jid),
                    None => Node::new("user")
                        .attr("jid", jid)
                        .children([Node::new("error").attr("code", "404").attr("text", "item-not-found")]),
                });
            }
            return Some(self.iq_result(iq).children([Node::new("list").children(users)]));
        }
        if ty == "set" {
            return Some(self.on_prekey_upload(addr, iq));
        }
        Some(self.iq_error(iq, 400, "bad-request"))
    }

    /// The bundle of `addr` as a `<user>` node, consuming one one-time prekey.
    pub(crate) fn take_bundle(&mut self, addr: DeviceAddr, jid: Jid) -> Node {
        let Some(d) = self.accounts[addr.account].devices.get_mut(&addr.device) else {
            return Node::new("user").attr("jid", jid);
        };
        let pre_key = d.keys.pre_keys.pop_first();
        let k = &d.keys;
        let mut children = vec![
            Node::new("registration").bytes(be_bytes(k.registration_id, 4)),
            Node::new("type").bytes(vec![5u8]),
            Node::new("identity").bytes(k.identity.as_bytes().to_vec()),
            Node::new("skey").children([
                Node::new("id").bytes(be_bytes(k.signed_pre_key.id, 3)),
                Node::new("value").bytes(k.signed_pre_key.public.as_bytes().to_vec()),
                Node::new("signature").bytes(k.signed_pre_key.signature.to_vec()),
            ]),
        ];
        if let Some((id, key)) = pre_key {
            children.push(Node::new("key").children([
                Node::new("id").bytes(be_bytes(id, 3)),
                Node::new("value").bytes(key.as_bytes().to_vec()),
            ]));
        }
        // A companion's bundle carries its ADV identity as the companion signed it at pairing
        // (details, account and device signatures; no account key, which the fetcher already holds
        // as the primary's identity), so the fetcher can bind the fetched identity key to the
        // account. Sources: wire captures in https://github.com/oxidezap/whatsapp-rust/pull/790
        // (fields 1, 3, 4 present, 2 absent, for every contact's companion); whatsapp-rust
        // wacore/src/prekeys.rs reads it from `<user>` (or `<keys>`) and warns when it is missing;
        // whatsmeow pair.go strips AccountSignatureKey from what the companion returns.
        if addr.device != 0
            && let Some(identity) = &d.signed_identity
        {
            children.push(Node::new("device-identity").bytes(identity.clone()));
        }
        let low = d.keys.pre_keys.len() < 5 && addr.device != 0;
        if low && d.conn.is_some() {
            let n = d.keys.pre_keys.len();
            let note = self.notification("encrypt", server_jid(), vec![Node::new("count").attr("value", n)]);
            // Tracked like every notification: re-delivered if the device does not ack it.
            self.deliver(addr, note);
        }
        Node::new("user").attr("jid", jid).children(children)
    }

    pub(crate) fn media_conn(&mut self, iq: &Node) -> Node {
        let host = self.media_base.trim_start_matches("http://").trim_start_matches("https://").to_owned();
        self.iq_result(iq).children([Node::new("media_conn")
            .attr("auth", self.media_auth.as_str())
            .attr("ttl", "3600")
            .attr("auth_ttl", "21600")
            .attr("max_buckets", "12")
            .children([Node::new("host").attr("hostname", host)])])
    }

    pub(crate) fn on_remove_companion(&mut self, conn: ConnId, iq: &Node) -> Option<Node> {
        let addr = self.conns.get(&conn)?.device?;
        let r = self.iq_result(iq);
        self.send(conn, r);
        self.remove_device(addr, "user_initiated");
        None
    }

    /// Unlinks a companion: its connection gets `<stream:error code="401"><conflict type="device_removed"/>`.
    pub(crate) fn remove_device(&mut self, addr: DeviceAddr, _reason: &str) {
        if addr.device == 0 {
            return;
        }
        let Some(d) = self.accounts[addr.account].devices.remove(&addr.device) else { return };
        if d.signed_identity.is_some() {
            // The phone re-signs its key index list without it; the account's peers hear of it.
            self.device_list_changed(addr.account, crate::device_list::DeviceChange::Removed(addr.device));
        }
        if let Some(conn) = d.conn {
            let err = Node::new("stream:error")
                .attr("code", "401")
                .children([Node::new("conflict").attr("type", "device_removed")]);
            self.send_and_close(conn, err);
            if let Some(c) = self.conns.get_mut(&conn) {
                c.device = None;
            }
        }
        self.notify_own_devices(addr.account);
    }
}
