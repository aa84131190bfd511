//! `usync` queries: devices (with the phone-signed key index list), contact, LID, status.

use std::collections::HashSet;

use wa_binary::{Node, Server};

use crate::world::{DeviceAddr, World, attr, content_bytes};

/// The `mode` values clients send: whatsmeow user.go (`query`, `full`), whatsapp-rust 0.7
/// wacore src/iq/usync.rs `UsyncMode` (also `delta`), Baileys `USyncQuery` (`query`).
const MODES: [&str; 3] = ["query", "full", "delta"];
/// The `context` values clients send: whatsmeow user.go (`interactive`, `background`,
/// `message`), whatsapp-rust 0.7 `UsyncContext` (also `voip`).
const CONTEXTS: [&str; 4] = ["interactive", "background", "message", "voip"];

impl World {
    pub(crate) fn on_usync(&mut self, iq: &Node) -> Node {
        let Some(usync) = iq.child("usync") else {
            return self.iq_error(iq, 400, "bad-request");
        };
        // A query names how and why it is made; one without (or with an unknown) mode or
        // context is not one the service runs.
        if !MODES.contains(&attr(usync, "mode").as_str())
            || !CONTEXTS.contains(&attr(usync, "context").as_str())
        {
            return self.iq_error(iq, 400, "bad-request");
        }
        let wants: HashSet<String> = usync
            .child("query")
            .map(|q| q.child_nodes().iter().map(|c| c.tag.to_string()).collect())
            .unwrap_or_default();
        let mut users = Vec::new();
        for u in usync.child("list").map(|l| l.child_nodes()).unwrap_or_default() {
            let (jid_text, account) = if let Some(contact) = u.child("contact").and_then(content_bytes) {
                let digits: String =
                    String::from_utf8_lossy(contact).chars().filter(|c| c.is_ascii_digit()).collect();
                (format!("{digits}@s.whatsapp.net"), self.by_pn.get(&digits).copied())
            } else {
                let jid = u.attr_jid("jid").ok();
                (attr(u, "jid"), jid.as_ref().and_then(|j| self.account_of(j)))
            };
            let mut children = Vec::new();
            for w in &wants {
                match w.as_str() {
                    "devices" => {
                        let list: Vec<Node> = account
                            .map(|a| {
                                self.accounts[a]
                                    .devices
                                    .values()
                                    .filter(|d| {
                                        d.id == 0
                                            || d.signed_identity.is_some()
                                            || self.is_hosted_device(DeviceAddr { account: a, device: d.id })
                                    })
                                    .map(|d| {
                                        let n = Node::new("device").attr("id", d.id);
                                        if self.is_hosted_device(DeviceAddr { account: a, device: d.id }) {
                                            // whatsmeow `parseDeviceList` reads `is_hosted`.
                                            n.attr("is_hosted", "true")
                                        } else if d.id == 0 {
                                            n
                                        } else {
                                            n.attr("key-index", d.key_index)
                                        }
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        let mut devices = vec![Node::new("device-list").children(list)];
                        // Users with companions come with the phone-signed list of valid key
                        // indexes (see `keyindex`).
                        if let Some(a) = account
                            && let Some(kil) = &self.accounts[a].key_index_list
                            && self.accounts[a]
                                .devices
                                .values()
                                .any(|d| d.id != 0 && d.signed_identity.is_some())
                        {
                            devices.push(
                                Node::new("key-index-list")
                                    .attr("ts", kil.timestamp)
                                    .bytes(kil.signed.clone()),
                            );
                        }
                        children.push(Node::new("devices").children(devices));
                    }
                    "contact" => {
                        let ty = if account.is_some() { "in" } else { "out" };
                        let mut c = Node::new("contact").attr("type", ty);
                        if let Some(q) = u.child("contact").and_then(content_bytes) {
                            c = c.text(String::from_utf8_lossy(q).into_owned());
                        }
                        children.push(c);
                    }
                    "lid" => {
                        let n = Node::new("lid");
                        children.push(match account {
                            Some(a) if self.lid_in_usync => n.attr("val", self.user_jid(a, Server::Lid)),
                            _ => n,
                        });
                    }
                    "status" => children.push(Node::new("status").attr("t", "0")),
                    "disappearing_mode" => {
                        children.push(Node::new("disappearing_mode").attr("duration", "0"))
                    }
                    _ => {}
                }
            }
            let mut user = Node::new("user").attr("jid", jid_text.as_str()).children(children);
            if jid_text.is_empty() {
                user = Node::new("user").children(user.child_nodes().to_vec());
            }
            users.push(user);
        }
        let mut out = Node::new("usync");
        out.attrs = usync.attrs.clone();
        self.iq_result(iq).children([out.children([Node::new("result"), Node::new("list").children(users)])])
    }
}
