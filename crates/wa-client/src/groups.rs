//! Group queries (`xmlns="w:g2"`): create, list the groups we are in, metadata, participants,
//! subject, description, invite links, join by link, leave.
//!
//! Shapes follow whatsmeow `group.go` and Baileys `src/Socket/groups.ts`; the server's error
//! codes become [`GroupError`]s as whatsmeow maps them (`ErrGroupNotFound` for 404,
//! `ErrNotInGroup` for 403, `ErrGroupInviteLinkUnauthorized` for 401 on invite links,
//! `ErrInviteLinkRevoked` for 410, `ErrInviteLinkInvalid` for 406).

use wa_binary::{Jid, Node, Server};

use crate::client::Client;
use crate::error::{Error, Result};

/// The prefix of an invite link; the code follows it.
pub const INVITE_LINK_PREFIX: &str = "https://chat.whatsapp.com/";

/// Why the server refused a group request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// No such group (404).
    #[error("group not found")]
    NotFound,
    /// We are not a participant, or the change is for admins only (403).
    #[error("not allowed in this group: not a participant, or admins only")]
    Forbidden,
    /// Only admins may do this (401, e.g. seeing or resetting the invite link).
    #[error("only group admins may do this")]
    NotAdmin,
    /// The invite code opens no group (406).
    #[error("invite link is not valid")]
    InviteInvalid,
    /// The invite code was revoked (410).
    #[error("invite link was revoked")]
    InviteRevoked,
    /// The description changed since we read it (409); read it again and retry.
    #[error("the group description changed meanwhile")]
    Conflict,
}

/// A group member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupParticipant {
    /// As the group names it: a phone-number JID, or a LID in LID-addressed groups.
    pub jid: Jid,
    /// The phone-number JID, when the group gives it.
    pub phone_number: Option<Jid>,
    /// The LID, when the group gives it.
    pub lid: Option<Jid>,
    /// An admin (the creator is one too).
    pub admin: bool,
    /// The creator (`superadmin`).
    pub super_admin: bool,
}

/// A group's description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDescription {
    /// The text.
    pub text: String,
    /// Its id: the next change names it as the previous one.
    pub id: String,
    /// Who set it.
    pub set_by: Option<Jid>,
    /// When (unix seconds).
    pub set_at: u64,
}

/// Group metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupInfo {
    /// The group JID.
    pub jid: Jid,
    /// Subject.
    pub subject: String,
    /// The creator, when the server says.
    pub creator: Option<Jid>,
    /// Creation time (unix seconds).
    pub created_at: u64,
    /// The description, when one is set.
    pub description: Option<GroupDescription>,
    /// Members are named by LID (`addressing_mode="lid"`).
    pub lid_addressed: bool,
    /// Participants.
    pub participants: Vec<GroupParticipant>,
}

impl GroupInfo {
    /// Whether `user` (any device, either namespace) is an admin.
    pub fn is_admin(&self, user: &Jid) -> bool {
        self.participants.iter().any(|p| {
            p.admin
                && [Some(&p.jid), p.phone_number.as_ref(), p.lid.as_ref()]
                    .into_iter()
                    .flatten()
                    .any(|j| j.user() == user.user() && j.server() == user.server())
        })
    }
}

/// What [`Client::update_group_participants`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParticipantAction {
    /// Add members.
    Add,
    /// Remove members.
    Remove,
    /// Make admins.
    Promote,
    /// Take admin away.
    Demote,
}

impl ParticipantAction {
    /// The request's tag.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "add",
            Self::Remove => "remove",
            Self::Promote => "promote",
            Self::Demote => "demote",
        }
    }
}

/// The outcome of a participant change for one JID: `error` is the server's code for that
/// JID (e.g. 404 not on WhatsApp, 403 privacy settings), `None` when it applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParticipantChange {
    /// The participant, as the answer names it.
    pub jid: Jid,
    /// The server's code for this participant, when refused.
    pub error: Option<u16>,
}

fn group_iq(to: Jid, kind: &str, child: Node) -> Node {
    Node::new("iq").attr("xmlns", "w:g2").attr("type", kind).attr("to", to).children([child])
}

fn group_server() -> Jid {
    Jid::server_jid(Server::Group)
}

/// The server's refusal as a [`GroupError`] where it is one.
fn group_error(e: Error) -> Error {
    match e {
        Error::Iq { code, .. } => match code {
            404 => Error::Group(GroupError::NotFound),
            403 => Error::Group(GroupError::Forbidden),
            401 => Error::Group(GroupError::NotAdmin),
            406 => Error::Group(GroupError::InviteInvalid),
            410 => Error::Group(GroupError::InviteRevoked),
            409 => Error::Group(GroupError::Conflict),
            _ => e,
        },
        e => e,
    }
}

fn missing(what: &str) -> Error {
    Error::Malformed(format!("group answer without <{what}>"))
}

/// The code of an invite link (or the code itself).
pub fn invite_code(link: &str) -> &str {
    link.trim().strip_prefix(INVITE_LINK_PREFIX).unwrap_or(link.trim())
}

fn parse_participant(p: &Node) -> Option<GroupParticipant> {
    let jid = p.attr_jid("jid").ok()?;
    let kind = p.opt_attr_str("type");
    let (phone_number, lid) = if jid.server() == Server::Lid {
        (p.attr_jid("phone_number").ok(), Some(jid.clone()))
    } else {
        (Some(jid.clone()), p.attr_jid("lid").ok())
    };
    Some(GroupParticipant {
        admin: matches!(kind.as_deref(), Some("admin" | "superadmin")),
        super_admin: kind.as_deref() == Some("superadmin"),
        jid,
        phone_number,
        lid,
    })
}

pub(crate) fn parse_group(g: &Node) -> Result<GroupInfo> {
    let id = g.attr_str("id")?;
    let jid = if id.contains('@') { id.parse()? } else { Jid::group(&id)? };
    let description = g.child("description").and_then(|d| {
        let body = d.child("body")?;
        let text = body
            .content_str()
            .map(str::to_owned)
            .or_else(|| body.content_bytes().map(|b| String::from_utf8_lossy(b).into_owned()))?;
        Some(GroupDescription {
            text,
            id: d.opt_attr_str("id").map(|s| s.into_owned()).unwrap_or_default(),
            set_by: d.attr_jid("participant").ok(),
            set_at: d.attr_u64("t").unwrap_or(0),
        })
    });
    Ok(GroupInfo {
        jid,
        subject: g.opt_attr_str("subject").map(|s| s.into_owned()).unwrap_or_default(),
        creator: g.attr_jid("creator").ok(),
        created_at: g.attr_u64("creation").unwrap_or(0),
        description,
        lid_addressed: g.opt_attr_str("addressing_mode").as_deref() == Some("lid"),
        participants: g.children_by_tag("participant").filter_map(parse_participant).collect(),
    })
}

impl Client {
    /// Creates a group with us as its creator and `participants` as members.
    pub async fn create_group(&self, subject: &str, participants: &[Jid]) -> Result<GroupInfo> {
        let own = self.jid().map(|j| j.user().to_owned()).unwrap_or_default();
        // WhatsApp Web leaves the `3EB0` prefix off the create key (whatsmeow `CreateGroup`).
        let key = crate::send::new_message_id(&self.shared, &own);
        let create = Node::new("create")
            .attr("subject", subject)
            .attr("key", key.trim_start_matches("3EB0"))
            .children(participants.iter().map(|p| Node::new("participant").attr("jid", p.to_non_ad())));
        let reply = self.shared.iq(group_iq(group_server(), "set", create)).await.map_err(group_error)?;
        parse_group(reply.child("group").ok_or_else(|| missing("group"))?)
    }

    /// The groups we are in, with participants and descriptions (whatsmeow
    /// `GetJoinedGroups`, Baileys `groupFetchAllParticipating`).
    pub async fn joined_groups(&self) -> Result<Vec<GroupInfo>> {
        let q = Node::new("participating").children([Node::new("participants"), Node::new("description")]);
        let reply = self.shared.iq(group_iq(group_server(), "get", q)).await.map_err(group_error)?;
        let groups = reply.child("groups").ok_or_else(|| missing("groups"))?;
        groups.children_by_tag("group").map(parse_group).collect()
    }

    /// Group metadata.
    pub async fn group_info(&self, group: &Jid) -> Result<GroupInfo> {
        let q = Node::new("query").attr("request", "interactive");
        let reply = self.shared.iq(group_iq(group.clone(), "get", q)).await.map_err(group_error)?;
        parse_group(reply.child("group").ok_or_else(|| missing("group"))?)
    }

    /// Adds, removes, promotes or demotes participants; the outcome per participant.
    pub async fn update_group_participants(
        &self,
        group: &Jid,
        action: ParticipantAction,
        participants: &[Jid],
    ) -> Result<Vec<ParticipantChange>> {
        if participants.is_empty() {
            return Err(Error::InvalidInput("no participants named".into()));
        }
        let tag = action.as_str();
        let change = Node::new(tag)
            .children(participants.iter().map(|p| Node::new("participant").attr("jid", p.to_non_ad())));
        let reply = self.shared.iq(group_iq(group.clone(), "set", change)).await.map_err(group_error)?;
        let list = reply.child(tag).ok_or_else(|| missing(tag))?;
        Ok(list
            .children_by_tag("participant")
            .filter_map(|p| {
                Some(ParticipantChange {
                    jid: p.attr_jid("jid").ok()?,
                    error: p.opt_attr_str("error").and_then(|e| e.parse().ok()),
                })
            })
            .collect())
    }

    /// Changes a group's subject.
    pub async fn set_group_subject(&self, group: &Jid, subject: &str) -> Result<()> {
        let node = Node::new("subject").bytes(subject.as_bytes().to_vec());
        self.shared.iq(group_iq(group.clone(), "set", node)).await.map_err(group_error)?;
        Ok(())
    }

    /// Sets the group's description, or deletes it (`None` or empty). Reads the current one
    /// first: the change names it as `prev` (whatsmeow `SetGroupTopic`, Baileys
    /// `groupUpdateDescription`).
    pub async fn set_group_description(&self, group: &Jid, description: Option<&str>) -> Result<()> {
        let prev = self.group_info(group).await?.description.map(|d| d.id).filter(|id| !id.is_empty());
        let own = self.jid().map(|j| j.user().to_owned()).unwrap_or_default();
        let id = crate::send::new_message_id(&self.shared, &own);
        let node = match description.filter(|d| !d.is_empty()) {
            Some(text) => Node::new("description")
                .attr("id", id)
                .children([Node::new("body").bytes(text.as_bytes().to_vec())]),
            None => Node::new("description").attr("id", id).attr("delete", "true"),
        };
        let node = match prev {
            Some(p) => node.attr("prev", p),
            None => node,
        };
        self.shared.iq(group_iq(group.clone(), "set", node)).await.map_err(group_error)?;
        Ok(())
    }

    /// The group's invite link; `reset` revokes the current one and answers a new one. Admins
    /// only ([`GroupError::NotAdmin`]).
    pub async fn group_invite_link(&self, group: &Jid, reset: bool) -> Result<String> {
        let kind = if reset { "set" } else { "get" };
        let reply =
            self.shared.iq(group_iq(group.clone(), kind, Node::new("invite"))).await.map_err(group_error)?;
        let code = reply
            .child("invite")
            .and_then(|i| i.opt_attr_str("code"))
            .filter(|c| !c.is_empty())
            .ok_or_else(|| missing("invite code"))?;
        Ok(format!("{INVITE_LINK_PREFIX}{code}"))
    }

    /// What group an invite link (or bare code) opens, without joining.
    pub async fn group_info_from_link(&self, link: &str) -> Result<GroupInfo> {
        let node = Node::new("invite").attr("code", invite_code(link));
        let reply = self.shared.iq(group_iq(group_server(), "get", node)).await.map_err(group_error)?;
        parse_group(reply.child("group").ok_or_else(|| missing("group"))?)
    }

    /// Joins the group an invite link (or bare code) opens; its JID.
    pub async fn join_group_with_link(&self, link: &str) -> Result<Jid> {
        let node = Node::new("invite").attr("code", invite_code(link));
        let reply = self.shared.iq(group_iq(group_server(), "set", node)).await.map_err(group_error)?;
        Ok(reply.child("group").ok_or_else(|| missing("group"))?.attr_jid("jid")?)
    }

    /// Leaves the group.
    pub async fn leave_group(&self, group: &Jid) -> Result<()> {
        let node = Node::new("leave").children([Node::new("group").attr("id", group.to_non_ad())]);
        self.shared.iq(group_iq(group_server(), "set", node)).await.map_err(group_error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invite_codes_come_from_links_or_stand_alone() {
        assert_eq!(invite_code("https://chat.whatsapp.com/AbC123"), "AbC123");
        assert_eq!(invite_code(" AbC123 "), "AbC123");
    }

    #[test]
    fn server_codes_become_group_errors() {
        let iq = |code| Error::Iq { what: "w:g2".into(), code, text: String::new() };
        assert!(matches!(group_error(iq(404)), Error::Group(GroupError::NotFound)));
        assert!(matches!(group_error(iq(403)), Error::Group(GroupError::Forbidden)));
        assert!(matches!(group_error(iq(401)), Error::Group(GroupError::NotAdmin)));
        assert!(matches!(group_error(iq(410)), Error::Group(GroupError::InviteRevoked)));
        assert!(matches!(group_error(iq(500)), Error::Iq { code: 500, .. }));
    }

    #[test]
    fn a_lid_group_names_phone_numbers_beside_lids() {
        let g = Node::new("group")
            .attr("id", "120363000000000001")
            .attr("subject", "team")
            .attr("creation", 1700u64)
            .attr("addressing_mode", "lid")
            .children([
                Node::new("participant")
                    .attr("jid", "100000000000001@lid".parse::<Jid>().unwrap())
                    .attr("phone_number", "15550001111@s.whatsapp.net".parse::<Jid>().unwrap())
                    .attr("type", "superadmin"),
                Node::new("description")
                    .attr("id", "D1")
                    .attr("t", 1800u64)
                    .children([Node::new("body").bytes(b"rules".to_vec())]),
            ]);
        let info = parse_group(&g).unwrap();
        assert!(info.lid_addressed);
        assert_eq!(
            info.description.as_ref().map(|d| (d.text.as_str(), d.id.as_str())),
            Some(("rules", "D1"))
        );
        let p = &info.participants[0];
        assert!(p.admin && p.super_admin);
        assert_eq!(p.phone_number.as_ref().map(|j| j.user().to_owned()).as_deref(), Some("15550001111"));
        assert!(info.is_admin(&"15550001111@s.whatsapp.net".parse().unwrap()));
    }
}
