//! Group requests through wa-client, and its group types as the server's.

use wa_client::{Client, GroupError, Jid};

use crate::runtime::{
    GroupCommand, GroupInfo, GroupMember, GroupRefusal, GroupReply, GroupRole, ParticipantAction,
    ParticipantOutcome, RuntimeError,
};

fn refusal(e: wa_client::Error) -> RuntimeError {
    let r = match e {
        wa_client::Error::Group(g) => match g {
            GroupError::NotFound => GroupRefusal::NotFound,
            GroupError::Forbidden => GroupRefusal::Forbidden,
            GroupError::NotAdmin => GroupRefusal::NotAdmin,
            GroupError::InviteInvalid => GroupRefusal::InviteInvalid,
            GroupError::InviteRevoked => GroupRefusal::InviteRevoked,
            GroupError::Conflict => GroupRefusal::Conflict,
            other => return RuntimeError::Failed(other.to_string()),
        },
        e => return super::send_error(e),
    };
    RuntimeError::Group(r)
}

fn group_jid(group: &str) -> Result<Jid, RuntimeError> {
    let jid = if group.contains('@') { group.parse::<Jid>().ok() } else { Jid::group(group).ok() };
    jid.filter(Jid::is_group).ok_or_else(|| RuntimeError::Failed(format!("`{group}` is not a group JID")))
}

fn info(g: wa_client::GroupInfo) -> GroupInfo {
    GroupInfo {
        jid: g.jid.to_string(),
        subject: g.subject,
        description: g.description.map(|d| d.text),
        creator: g.creator.map(|c| c.to_non_ad().to_string()),
        created_at: i64::try_from(g.created_at).unwrap_or(0).saturating_mul(1000),
        addressing_mode: if g.lid_addressed { "lid" } else { "pn" }.to_owned(),
        participants: g
            .participants
            .into_iter()
            .map(|p| GroupMember {
                jid: p.jid.to_string(),
                phone: p.phone_number.map(|j| format!("+{}", j.user())),
                lid: p.lid.map(|j| j.to_string()),
                role: match (p.super_admin, p.admin) {
                    (true, _) => GroupRole::Superadmin,
                    (false, true) => GroupRole::Admin,
                    _ => GroupRole::Member,
                },
            })
            .collect(),
    }
}

fn people(list: &[String]) -> Result<Vec<Jid>, RuntimeError> {
    list.iter().map(|p| super::parse_to(p)).collect()
}

pub(super) async fn run(client: &Client, command: GroupCommand) -> Result<GroupReply, RuntimeError> {
    Ok(match command {
        GroupCommand::List => {
            GroupReply::Groups(client.joined_groups().await.map_err(refusal)?.into_iter().map(info).collect())
        }
        GroupCommand::Create { subject, participants } => {
            let g = client.create_group(&subject, &people(&participants)?).await.map_err(refusal)?;
            GroupReply::Group(info(g))
        }
        GroupCommand::Info { group } => {
            GroupReply::Group(info(client.group_info(&group_jid(&group)?).await.map_err(refusal)?))
        }
        GroupCommand::Participants { group, action, participants } => {
            let action = match action {
                ParticipantAction::Add => wa_client::ParticipantAction::Add,
                ParticipantAction::Remove => wa_client::ParticipantAction::Remove,
                ParticipantAction::Promote => wa_client::ParticipantAction::Promote,
                ParticipantAction::Demote => wa_client::ParticipantAction::Demote,
            };
            let changes = client
                .update_group_participants(&group_jid(&group)?, action, &people(&participants)?)
                .await
                .map_err(refusal)?;
            GroupReply::Participants(
                changes
                    .into_iter()
                    .map(|c| ParticipantOutcome {
                        jid: c.jid.to_string(),
                        status: match c.error {
                            None => "ok".to_owned(),
                            Some(404) => "not_on_whatsapp".to_owned(),
                            Some(403) => "refused_by_privacy_settings".to_owned(),
                            Some(409) => "already_member".to_owned(),
                            Some(_) => "refused".to_owned(),
                        },
                        error_code: c.error,
                    })
                    .collect(),
            )
        }
        GroupCommand::Subject { group, subject } => {
            client.set_group_subject(&group_jid(&group)?, &subject).await.map_err(refusal)?;
            GroupReply::Done
        }
        GroupCommand::Description { group, description } => {
            client
                .set_group_description(&group_jid(&group)?, description.as_deref())
                .await
                .map_err(refusal)?;
            GroupReply::Done
        }
        GroupCommand::InviteLink { group, reset } => GroupReply::InviteLink(
            client.group_invite_link(&group_jid(&group)?, reset).await.map_err(refusal)?,
        ),
        GroupCommand::Join { link } => {
            GroupReply::Joined(client.join_group_with_link(&link).await.map_err(refusal)?.to_string())
        }
        GroupCommand::Leave { group } => {
            client.leave_group(&group_jid(&group)?).await.map_err(refusal)?;
            GroupReply::Done
        }
    })
}
