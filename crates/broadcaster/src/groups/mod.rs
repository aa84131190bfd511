//! Groups of an account, as WhatsApp holds them: list, create, read, change members, subject
//! and description, invite links, join by link, leave.
//!
//! Nothing is stored here: every request goes to WhatsApp through the account's session, and
//! WhatsApp's refusals come back typed ([`GroupRefusal`]) and become API errors: 404 for a
//! group that does not exist, 403 for a change the account may not make (not a member, or
//! admins only), 409 for a description changed meanwhile, 422 for an invite link that is not
//! valid or was revoked.

pub mod http;

use std::sync::Arc;

use crate::error::ApiError;
use crate::runtime::{
    AccountRuntime, GroupCommand, GroupInfo, GroupRefusal, GroupReply, ParticipantAction, ParticipantOutcome,
    RuntimeError,
};
use crate::state::AppState;

/// Longest subject WhatsApp takes (whatsmeow `ReqCreateGroup`: longer names are refused 406).
pub const MAX_SUBJECT_CHARS: usize = 25;
/// Longest description accepted (WhatsApp's apps stop at 2048 characters).
pub const MAX_DESCRIPTION_CHARS: usize = 2048;
/// Most participants named in one request.
pub const MAX_PARTICIPANTS_PER_REQUEST: usize = 256;

fn runtime(st: &AppState) -> Result<Arc<dyn AccountRuntime>, ApiError> {
    st.runtime.clone().ok_or_else(|| ApiError::Unavailable("no WhatsApp runtime is configured".into()))
}

fn api_error(e: RuntimeError) -> ApiError {
    match e {
        RuntimeError::NotRunning => ApiError::Conflict {
            code: "account_not_connected",
            message: "the account's session is not running; reconnect it".into(),
        },
        RuntimeError::Group(r) => match r {
            GroupRefusal::NotFound => ApiError::NotFound("group"),
            GroupRefusal::Forbidden => {
                ApiError::Denied { code: "not_allowed_in_group", message: r.to_string() }
            }
            GroupRefusal::NotAdmin => ApiError::Denied { code: "not_group_admin", message: r.to_string() },
            GroupRefusal::InviteInvalid => ApiError::unprocessable("invalid_invite_link", r.to_string()),
            GroupRefusal::InviteRevoked => ApiError::unprocessable("invite_link_revoked", r.to_string()),
            GroupRefusal::Conflict => {
                ApiError::Conflict { code: "description_changed", message: r.to_string() }
            }
        },
        e => ApiError::Unavailable(format!("WhatsApp refused or failed: {e}")),
    }
}

/// A group JID (`…@g.us`) or its bare id, as the group's JID.
pub fn parse_group(input: &str) -> Result<String, ApiError> {
    let id = input.trim().strip_suffix("@g.us").unwrap_or(input.trim());
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.chars().all(|c| c.is_ascii_digit() || c == '-')
        && !id.starts_with('-');
    if !ok {
        return Err(ApiError::bad("invalid_group", format!("`{input}` is not a group JID (digits@g.us)")));
    }
    Ok(format!("{id}@g.us"))
}

/// People to add or change: phone numbers (any common format) or user JIDs.
fn parse_people(list: &[String]) -> Result<Vec<String>, ApiError> {
    if list.is_empty() || list.len() > MAX_PARTICIPANTS_PER_REQUEST {
        return Err(ApiError::bad(
            "invalid_participants",
            format!("name 1 to {MAX_PARTICIPANTS_PER_REQUEST} participants"),
        ));
    }
    list.iter()
        .map(|p| {
            let r = crate::messages::parse_recipient(p)?;
            if r.to.ends_with("@g.us") {
                return Err(ApiError::bad("invalid_participants", format!("`{p}` is a group, not a person")));
            }
            Ok(r.to)
        })
        .collect()
}

fn check_subject(subject: &str) -> Result<String, ApiError> {
    let s = subject.trim();
    if s.is_empty() || s.chars().count() > MAX_SUBJECT_CHARS {
        return Err(ApiError::bad(
            "invalid_subject",
            format!("subject must be 1 to {MAX_SUBJECT_CHARS} characters"),
        ));
    }
    Ok(s.to_owned())
}

async fn run(
    st: &AppState,
    tenant_id: &str,
    account_id: &str,
    command: GroupCommand,
) -> Result<GroupReply, ApiError> {
    let rt = runtime(st)?;
    crate::messages::actions::require_active(st, tenant_id, account_id).await?;
    rt.group(tenant_id, account_id, command).await.map_err(api_error)
}

fn unexpected(reply: GroupReply) -> ApiError {
    ApiError::Internal(format!("the runtime answered a group request with {reply:?}"))
}

/// The groups the account is in.
pub async fn list(st: &AppState, tenant_id: &str, account_id: &str) -> Result<Vec<GroupInfo>, ApiError> {
    match run(st, tenant_id, account_id, GroupCommand::List).await? {
        GroupReply::Groups(g) => Ok(g),
        other => Err(unexpected(other)),
    }
}

/// Creates a group with the account as its creator (admin).
pub async fn create(
    st: &AppState,
    tenant_id: &str,
    account_id: &str,
    subject: &str,
    participants: &[String],
) -> Result<GroupInfo, ApiError> {
    let command =
        GroupCommand::Create { subject: check_subject(subject)?, participants: parse_people(participants)? };
    match run(st, tenant_id, account_id, command).await? {
        GroupReply::Group(g) => Ok(g),
        other => Err(unexpected(other)),
    }
}

pub async fn info(
    st: &AppState,
    tenant_id: &str,
    account_id: &str,
    group: &str,
) -> Result<GroupInfo, ApiError> {
    let command = GroupCommand::Info { group: parse_group(group)? };
    match run(st, tenant_id, account_id, command).await? {
        GroupReply::Group(g) => Ok(g),
        other => Err(unexpected(other)),
    }
}

/// Adds, removes, promotes or demotes; the outcome per participant.
pub async fn participants(
    st: &AppState,
    tenant_id: &str,
    account_id: &str,
    group: &str,
    action: ParticipantAction,
    people: &[String],
) -> Result<Vec<ParticipantOutcome>, ApiError> {
    let command = GroupCommand::Participants {
        group: parse_group(group)?,
        action,
        participants: parse_people(people)?,
    };
    match run(st, tenant_id, account_id, command).await? {
        GroupReply::Participants(p) => Ok(p),
        other => Err(unexpected(other)),
    }
}

/// Changes the subject; the group after the change.
pub async fn set_subject(
    st: &AppState,
    tenant_id: &str,
    account_id: &str,
    group: &str,
    subject: &str,
) -> Result<GroupInfo, ApiError> {
    let command = GroupCommand::Subject { group: parse_group(group)?, subject: check_subject(subject)? };
    run(st, tenant_id, account_id, command).await?;
    info(st, tenant_id, account_id, group).await
}

/// Sets (or with `None` or an empty text, deletes) the description; the group after it.
pub async fn set_description(
    st: &AppState,
    tenant_id: &str,
    account_id: &str,
    group: &str,
    description: Option<&str>,
) -> Result<GroupInfo, ApiError> {
    let description = description.map(str::trim).filter(|d| !d.is_empty());
    if description.is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS) {
        return Err(ApiError::bad(
            "invalid_description",
            format!("description must be at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    let command =
        GroupCommand::Description { group: parse_group(group)?, description: description.map(str::to_owned) };
    run(st, tenant_id, account_id, command).await?;
    info(st, tenant_id, account_id, group).await
}

/// The invite link; `reset` revokes the current one and answers the new one.
pub async fn invite_link(
    st: &AppState,
    tenant_id: &str,
    account_id: &str,
    group: &str,
    reset: bool,
) -> Result<String, ApiError> {
    let command = GroupCommand::InviteLink { group: parse_group(group)?, reset };
    match run(st, tenant_id, account_id, command).await? {
        GroupReply::InviteLink(l) => Ok(l),
        other => Err(unexpected(other)),
    }
}

/// Joins by an invite link (or its code); the group joined.
pub async fn join(
    st: &AppState,
    tenant_id: &str,
    account_id: &str,
    link: &str,
) -> Result<GroupInfo, ApiError> {
    let code = link.trim().strip_prefix(wa_client::INVITE_LINK_PREFIX).unwrap_or(link.trim());
    if code.is_empty() || code.len() > 64 || !code.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(ApiError::bad(
            "invalid_invite_link",
            "link must be https://chat.whatsapp.com/<code> or the code alone",
        ));
    }
    let command = GroupCommand::Join { link: code.to_owned() };
    let jid = match run(st, tenant_id, account_id, command).await? {
        GroupReply::Joined(jid) => jid,
        other => return Err(unexpected(other)),
    };
    info(st, tenant_id, account_id, &jid).await
}

pub async fn leave(st: &AppState, tenant_id: &str, account_id: &str, group: &str) -> Result<(), ApiError> {
    let command = GroupCommand::Leave { group: parse_group(group)? };
    run(st, tenant_id, account_id, command).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ids_and_jids_are_accepted_and_nothing_else() {
        assert_eq!(parse_group("120363000000000001").unwrap(), "120363000000000001@g.us");
        assert_eq!(parse_group("120363000000000001@g.us").unwrap(), "120363000000000001@g.us");
        for bad in ["", "abc@g.us", "15550001111@s.whatsapp.net", "-1"] {
            assert!(parse_group(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refusals_map_to_statuses() {
        let status = |r| api_error(RuntimeError::Group(r)).code();
        assert_eq!(status(GroupRefusal::NotFound), "not_found");
        assert_eq!(status(GroupRefusal::NotAdmin), "not_group_admin");
        assert_eq!(status(GroupRefusal::Forbidden), "not_allowed_in_group");
        assert_eq!(status(GroupRefusal::InviteRevoked), "invite_link_revoked");
        assert_eq!(status(GroupRefusal::Conflict), "description_changed");
    }
}
