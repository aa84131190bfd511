//! Groups (`w:g2`): create, list, metadata, participants, subject, description, invite
//! links, leave, and the `w:gp2` notifications members receive.
//!
//! Request shapes: whatsmeow `group.go` (`CreateGroup`, `GetJoinedGroups`, `SetGroupTopic`,
//! `GetGroupInviteLink`, `JoinGroupWithLink`, `LeaveGroup`), Baileys `src/Socket/groups.ts`
//! (`groupFetchAllParticipating`, `groupUpdateDescription`, `groupInviteCode`,
//! `groupRevokeInvite`, `groupAcceptInvite`, `groupLeave`).

use std::collections::BTreeMap;

use wa_binary::{Jid, Node, Server};

use crate::world::{
    AccountId, ConnId, ControlError, DeviceAddr, Group, GroupDescription, World, attr, server_jid,
};

impl World {
    /// Creates a group owned by `creator` with `members`, addressed by phone number.
    pub fn create_group(&mut self, creator: AccountId, subject: &str, members: &[AccountId]) -> Jid {
        self.create_group_with(creator, subject, members, false)
    }

    /// Creates a group; `lid_addressed` makes it a LID-addressed group (members named by
    /// their LIDs, as WhatsApp does for most groups now).
    pub fn create_group_with(
        &mut self,
        creator: AccountId,
        subject: &str,
        members: &[AccountId],
        lid_addressed: bool,
    ) -> Jid {
        let id = format!(
            "120363{}",
            &self
                .random_hex(6)
                .chars()
                .filter(char::is_ascii_digit)
                .chain("0000000000".chars())
                .take(12)
                .collect::<String>()
        );
        let mut participants = BTreeMap::from([(creator, true)]);
        for &m in members {
            participants.entry(m).or_insert(false);
        }
        let invite_code = self.new_invite_code();
        let group = Group {
            id: id.clone(),
            subject: subject.to_owned(),
            creator,
            creation: self.now(),
            participants,
            lid_addressed,
            description: None,
            invite_code,
            revoked_invite_codes: Vec::new(),
        };
        self.groups.insert(id.clone(), group);
        let jid = Jid::group(&id).unwrap_or_else(|_| server_jid());
        let added: Vec<AccountId> = self.groups[&id].participants.keys().copied().collect();
        self.notify_group(&id, creator, "create", &added);
        jid
    }

    /// A fresh invite code: 22 characters, as in `https://chat.whatsapp.com/<code>` links.
    fn new_invite_code(&mut self) -> String {
        self.random_hex(11)
    }

    /// A member as a `<participant>`: PN groups name the PN and give the LID beside it,
    /// LID groups the other way round.
    pub(crate) fn participant_node(&self, g: &Group, a: AccountId) -> Node {
        if g.lid_addressed {
            Node::new("participant")
                .attr("jid", self.user_jid(a, Server::Lid))
                .attr("phone_number", self.user_jid(a, Server::Pn))
        } else {
            Node::new("participant")
                .attr("jid", self.user_jid(a, Server::Pn))
                .attr("lid", self.user_jid(a, Server::Lid))
        }
    }

    pub(crate) fn group_node(&self, g: &Group) -> Node {
        let creator = self.user_jid(g.creator, g.addressing());
        let mut node = Node::new("group")
            .attr("id", g.id.as_str())
            .attr("creator", creator.clone())
            .attr("subject", g.subject.as_str())
            .attr("s_t", g.creation)
            .attr("s_o", creator)
            .attr("creation", g.creation)
            .attr("size", g.participants.len())
            .attr("addressing_mode", g.addressing_mode());
        if g.lid_addressed {
            let pn = self.user_jid(g.creator, Server::Pn);
            node = node.attr("creator_pn", pn.clone()).attr("s_o_pn", pn);
        }
        let mut children: Vec<Node> = g
            .participants
            .iter()
            .map(|(&a, &admin)| {
                let n = self.participant_node(g, a);
                // A creator who left and came back is a plain member.
                match (admin, a == g.creator) {
                    (true, true) => n.attr("type", "superadmin"),
                    (true, false) => n.attr("type", "admin"),
                    _ => n,
                }
            })
            .collect();
        // whatsmeow `parseGroupNode`: `<description id participant t><body>text</body>`.
        if let Some(d) = &g.description {
            children.push(
                Node::new("description")
                    .attr("id", d.id.as_str())
                    .attr("participant", self.user_jid(d.set_by, g.addressing()))
                    .attr("t", d.set_at)
                    .children([Node::new("body").bytes(d.body.clone().into_bytes())]),
            );
        }
        node.children(children)
    }

    /// Sends `<notification type="w:gp2">` about a change to every member's devices.
    pub(crate) fn notify_group(&mut self, gid: &str, actor: AccountId, action: &str, subjects: &[AccountId]) {
        let Some(g) = self.groups.get(gid).cloned() else { return };
        let jid = Jid::group(gid).unwrap_or_else(|_| server_jid());
        let now = self.now();
        let body = if action == "create" {
            Node::new("create").children([self.group_node(&g)])
        } else if action == "subject" {
            Node::new("subject").attr("subject", g.subject.as_str()).attr("s_t", now)
        } else if action == "description" {
            // whatsmeow `parseGroupChange`: `<description id><body>…</body>` or `<delete/>`.
            match &g.description {
                Some(d) => Node::new("description")
                    .attr("id", d.id.as_str())
                    .children([Node::new("body").bytes(d.body.clone().into_bytes())]),
                None => Node::new("description").children([Node::new("delete")]),
            }
        } else {
            Node::new(action).children(subjects.iter().map(|&a| self.participant_node(&g, a)))
        };
        let mut audience: Vec<AccountId> = g.participants.keys().copied().collect();
        audience.extend(subjects.iter().copied().filter(|a| !g.participants.contains_key(a)));
        for a in audience {
            let devices: Vec<u16> = self.accounts[a].devices.keys().copied().filter(|d| *d != 0).collect();
            for d in devices {
                let id = self.next_iq_id();
                let node = Node::new("notification")
                    .attr("from", jid.clone())
                    .attr("type", "w:gp2")
                    .attr("id", id)
                    .attr("participant", self.user_jid(actor, g.addressing()));
                let node = self.with_participant_alt(node, actor, &g).attr("t", now).children([body.clone()]);
                self.deliver(DeviceAddr { account: a, device: d }, node);
            }
        }
    }

    /// Changes membership: `action` is add, remove, promote or demote.
    pub fn group_participants(
        &mut self,
        actor: AccountId,
        gid: &str,
        action: &str,
        who: &[AccountId],
    ) -> Result<(), ControlError> {
        let g = self.groups.get_mut(gid).ok_or_else(|| ControlError::UnknownGroup(gid.to_owned()))?;
        for &a in who {
            match action {
                "add" => {
                    g.participants.entry(a).or_insert(false);
                }
                "remove" => {
                    g.participants.remove(&a);
                }
                "promote" => {
                    if let Some(v) = g.participants.get_mut(&a) {
                        *v = true;
                    }
                }
                "demote" => {
                    if let Some(v) = g.participants.get_mut(&a) {
                        *v = false;
                    }
                }
                _ => return Err(ControlError::BadJid(action.to_owned())),
            }
        }
        if action == "remove" || action == "add" {
            // Everyone must get the sender keys again (new member, or rotate after removal).
            for a in &mut self.accounts {
                a.phone_forget_group_keys(gid);
            }
        }
        self.notify_group(gid, actor, action, who);
        Ok(())
    }

    pub(crate) fn on_group_iq(&mut self, conn: ConnId, iq: &Node) -> Node {
        let Some(me) = self.conns.get(&conn).and_then(|c| c.device) else {
            return self.iq_error(iq, 401, "not-authorized");
        };
        let to = iq.attr_jid("to").ok();
        let first = iq.child_nodes().first().cloned();
        let Some(first) = first else { return self.iq_error(iq, 400, "bad-request") };
        // `g.us` itself (no user) addresses the group server: list, leave, invite codes.
        let gid = to.as_ref().filter(|j| j.is_group() && !j.user().is_empty()).map(|j| j.user().to_owned());
        match (first.tag.as_str(), gid) {
            ("create", _) => {
                let subject = attr(&first, "subject");
                let members: Vec<AccountId> = first
                    .children_by_tag("participant")
                    .filter_map(|p| p.attr_jid("jid").ok())
                    .filter_map(|j| self.account_of(&j))
                    .collect();
                let jid = self.create_group(me.account, &subject, &members);
                let g = self.groups[jid.user()].clone();
                let node = self.group_node(&g);
                self.iq_result(iq).children([node])
            }
            ("participating", None) => {
                let mine: Vec<Group> = self
                    .groups
                    .values()
                    .filter(|g| g.participants.contains_key(&me.account))
                    .cloned()
                    .collect();
                let nodes: Vec<Node> = mine.iter().map(|g| self.group_node(g)).collect();
                self.iq_result(iq).children([Node::new("groups").children(nodes)])
            }
            ("leave", None) => self.on_leave(iq, &first, me.account),
            ("invite", None) => self.on_invite_code(iq, &first, me.account),
            (_, None) => self.iq_error(iq, 400, "bad-request"),
            (tag, Some(gid)) => {
                let Some(g) = self.groups.get(&gid).cloned() else {
                    return self.iq_error(iq, 404, "item-not-found");
                };
                if !g.participants.contains_key(&me.account) {
                    return self.iq_error(iq, 403, "forbidden");
                }
                match tag {
                    "query" => {
                        let node = self.group_node(&g);
                        self.iq_result(iq).children([node])
                    }
                    "subject" => {
                        let subject = crate::world::content_bytes(&first)
                            .map(|b| String::from_utf8_lossy(b).into_owned())
                            .unwrap_or_default();
                        if let Some(g) = self.groups.get_mut(&gid) {
                            g.subject = subject;
                        }
                        self.notify_group(&gid, me.account, "subject", &[]);
                        self.iq_result(iq)
                    }
                    "add" | "remove" | "promote" | "demote" => {
                        if !g.participants.get(&me.account).copied().unwrap_or(false) {
                            return self.iq_error(iq, 403, "forbidden");
                        }
                        let who: Vec<(Jid, Option<AccountId>)> = first
                            .children_by_tag("participant")
                            .filter_map(|p| p.attr_jid("jid").ok())
                            .map(|j| {
                                let a = self.account_of(&j);
                                (j, a)
                            })
                            .collect();
                        let known: Vec<AccountId> = who.iter().filter_map(|(_, a)| *a).collect();
                        if let Err(e) = self.group_participants(me.account, &gid, tag, &known) {
                            return self.iq_error(iq, 400, &e.to_string());
                        }
                        let list = who.into_iter().map(|(j, a)| {
                            let n = Node::new("participant").attr("jid", j);
                            if a.is_some() { n } else { n.attr("error", "404") }
                        });
                        self.iq_result(iq).children([Node::new(tag).children(list)])
                    }
                    "description" => self.on_description(iq, &first, &gid, me.account),
                    "invite" => {
                        // Only admins see or reset the link: whatsmeow `GetGroupInviteLink`
                        // maps 401 to `ErrGroupInviteLinkUnauthorized`.
                        if !g.participants.get(&me.account).copied().unwrap_or(false) {
                            return self.iq_error(iq, 401, "not-authorized");
                        }
                        // `type="set"` revokes the link and answers the new one (Baileys
                        // `groupRevokeInvite` reads `<invite code>` from the answer).
                        if attr(iq, "type") == "set" {
                            let code = self.new_invite_code();
                            if let Some(g) = self.groups.get_mut(&gid) {
                                let old = std::mem::replace(&mut g.invite_code, code);
                                g.revoked_invite_codes.push(old);
                            }
                        }
                        let code = self.groups[&gid].invite_code.clone();
                        self.iq_result(iq).children([Node::new("invite").attr("code", code)])
                    }
                    _ => self.iq_error(iq, 501, "feature-not-implemented"),
                }
            }
        }
    }
}

impl World {
    /// `<leave><group id=…/>…</leave>` to `g.us` (whatsmeow `LeaveGroup`, Baileys
    /// `groupLeave`): each named group must exist (404) and hold us (403); then we are
    /// removed and the members (us included) get the `remove` notification. Nothing changes
    /// when one group is refused.
    fn on_leave(&mut self, iq: &Node, leave: &Node, me: AccountId) -> Node {
        let mut gids = Vec::new();
        for g in leave.children_by_tag("group") {
            let Ok(jid) = g.attr_jid("id") else { return self.iq_error(iq, 400, "bad-request") };
            let gid = jid.user().to_owned();
            match self.groups.get(&gid) {
                None => return self.iq_error(iq, 404, "item-not-found"),
                Some(g) if !g.participants.contains_key(&me) => return self.iq_error(iq, 403, "forbidden"),
                Some(_) => gids.push(gid),
            }
        }
        if gids.is_empty() {
            return self.iq_error(iq, 400, "bad-request");
        }
        for gid in &gids {
            // Checked above: the group exists.
            let _ = self.group_participants(me, gid, "remove", &[me]);
        }
        self.iq_result(iq)
    }

    /// `<invite code/>` to `g.us`: `type="get"` describes the group the code opens, `set`
    /// joins it (whatsmeow `GetGroupInfoFromLink` / `JoinGroupWithLink`, Baileys
    /// `groupGetInviteInfo` / `groupAcceptInvite`). A revoked code is `410 gone`, an unknown
    /// one `406 not-acceptable` (whatsmeow maps these to `ErrInviteLinkRevoked` and
    /// `ErrInviteLinkInvalid`). Joining answers `<group jid>`; members get an `add`
    /// notification. A member joining again is answered the same and changes nothing.
    fn on_invite_code(&mut self, iq: &Node, invite: &Node, me: AccountId) -> Node {
        let code = attr(invite, "code");
        let found = self.groups.values().find(|g| g.invite_code == code).map(|g| g.id.clone());
        let Some(gid) = found else {
            let revoked =
                !code.is_empty() && self.groups.values().any(|g| g.revoked_invite_codes.contains(&code));
            return if revoked {
                self.iq_error(iq, 410, "gone")
            } else {
                self.iq_error(iq, 406, "not-acceptable")
            };
        };
        let jid = Jid::group(&gid).unwrap_or_else(|_| server_jid());
        if attr(iq, "type") != "set" {
            let node = self.group_node(&self.groups[&gid]);
            return self.iq_result(iq).children([node]);
        }
        if !self.groups[&gid].participants.contains_key(&me) {
            let _ = self.group_participants(me, &gid, "add", &[me]);
        }
        self.iq_result(iq).children([Node::new("group").attr("jid", jid)])
    }

    /// `<description id prev><body>text</body></description>`, or `delete="true"` without a
    /// body (whatsmeow `SetGroupTopic`, Baileys `groupUpdateDescription`). Both clients read
    /// the current description id first and send it as `prev`; the emulator refuses a `prev`
    /// that is not the current id (absent when there is none) with `409 conflict`, the
    /// emulator's reading of why they do (the code itself is not documented). Members get
    /// a `description` notification.
    fn on_description(&mut self, iq: &Node, d: &Node, gid: &str, me: AccountId) -> Node {
        let current = self.groups[gid].description.as_ref().map(|d| d.id.clone());
        let prev = d.opt_attr_str("prev").map(|p| p.into_owned());
        if prev != current {
            return self.iq_error(iq, 409, "conflict");
        }
        let delete = attr(d, "delete") == "true";
        let body = d
            .child("body")
            .and_then(crate::world::content_bytes)
            .map(|b| String::from_utf8_lossy(b).into_owned());
        let new = match (delete, body) {
            (true, _) => None,
            (false, Some(body)) if !body.is_empty() => {
                let id = attr(d, "id");
                if id.is_empty() {
                    return self.iq_error(iq, 400, "bad-request");
                }
                Some(GroupDescription { id, body, set_by: me, set_at: self.now() })
            }
            _ => return self.iq_error(iq, 400, "bad-request"),
        };
        if let Some(g) = self.groups.get_mut(gid) {
            g.description = new;
        }
        self.notify_group(gid, me, "description", &[]);
        self.iq_result(iq)
    }
}

impl crate::world::Account {
    fn phone_forget_group_keys(&mut self, gid: &str) {
        self.phone.forget_group(&format!("{gid}@g.us"));
    }
}
