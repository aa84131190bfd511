//! Typed sync actions, decoded from a mutation's index and `SyncActionValue`, and builders
//! for the mutations a client sends itself (mark read, archive, pin, mute, labels).
//!
//! The index names and their collections follow Baileys' `chatModificationToAppPatch`
//! (and whatsmeow's `appstate/keys.go` for the ones Baileys only decodes). Dispatch is on the
//! index name, the way WhatsApp keys its records; a record whose value lacks the action its
//! index names, or whose index is too short, decodes to [`Action::Malformed`] rather than
//! failing the patch, since its MACs (and so the collection state) are fine.

use wa_proto::MessageKey;
use wa_proto::sync_action_value as sav;
use wa_proto::{SyncActionValue, sync_action_value::SyncActionMessageRange};

use crate::mutation::{MutationInput, Operation};
use crate::state::Collection;

/// A message named by an index: chat, message id, sent by us, and the group participant
/// (`None` where the index has `"0"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRef {
    /// The chat JID.
    pub chat: String,
    /// The message id.
    pub id: String,
    /// Whether we sent it.
    pub from_me: bool,
    /// The sender in a group, if the index names one.
    pub participant: Option<String>,
}

impl MessageRef {
    /// Reads `[chat, id, fromMe, participant]` (the last two optional).
    fn from_index(parts: &[String]) -> Option<Self> {
        let [chat, id, rest @ ..] = parts else { return None };
        Some(MessageRef {
            chat: chat.clone(),
            id: id.clone(),
            from_me: rest.first().is_some_and(|f| f == "1"),
            participant: rest.get(1).filter(|p| p.as_str() != "0").cloned(),
        })
    }
}

/// What one mutation means.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Action {
    /// Contact name (and LID) from the address book; index `contact`.
    Contact {
        /// The contact's JID (the index).
        jid: String,
        /// Full name.
        full_name: Option<String>,
        /// First name.
        first_name: Option<String>,
        /// The contact's LID.
        lid_jid: Option<String>,
        /// The contact's phone-number JID, when the index is a LID.
        pn_jid: Option<String>,
        /// Username.
        username: Option<String>,
        /// Saved on the phone's address book.
        save_on_primary_addressbook: Option<bool>,
    },
    /// A contact known by LID only; index `lid_contact`.
    LidContact {
        /// The LID (the index).
        lid: String,
        /// Full name.
        full_name: Option<String>,
        /// First name.
        first_name: Option<String>,
        /// Username.
        username: Option<String>,
    },
    /// Our own push name; index `setting_pushName`.
    PushName {
        /// The name.
        name: Option<String>,
    },
    /// The app locale; index `setting_locale`.
    Locale {
        /// E.g. `pt_BR`.
        locale: Option<String>,
    },
    /// Whether new messages unarchive a chat; index `setting_unarchiveChats`.
    UnarchiveChatsSetting {
        /// The setting.
        unarchive_chats: bool,
    },
    /// The link-preview privacy setting; index `setting_disableLinkPreviews`.
    DisableLinkPreviews {
        /// Whether previews are disabled.
        disabled: bool,
    },
    /// Chat archived or unarchived; index `archive`.
    Archive {
        /// The chat.
        chat: String,
        /// Archived.
        archived: bool,
        /// The last messages the phone had seen.
        range: Option<SyncActionMessageRange>,
    },
    /// Chat pinned or unpinned; index `pin_v1`.
    Pin {
        /// The chat.
        chat: String,
        /// Pinned.
        pinned: bool,
    },
    /// Chat muted until a time, or unmuted; index `mute`.
    Mute {
        /// The chat.
        chat: String,
        /// Muted.
        muted: bool,
        /// End of the mute, ms since the epoch, as sent.
        end_timestamp_ms: Option<i64>,
    },
    /// Chat marked read or unread; index `markChatAsRead`.
    MarkRead {
        /// The chat.
        chat: String,
        /// Read (false: marked unread).
        read: bool,
        /// The last messages the phone had seen.
        range: Option<SyncActionMessageRange>,
    },
    /// Message starred or unstarred; index `star`.
    Star {
        /// The message.
        message: MessageRef,
        /// Starred.
        starred: bool,
    },
    /// Chat deleted; index `deleteChat`.
    DeleteChat {
        /// The chat.
        chat: String,
        /// The last messages the phone had seen.
        range: Option<SyncActionMessageRange>,
    },
    /// Message deleted for me; index `deleteMessageForMe`.
    DeleteMessageForMe {
        /// The message.
        message: MessageRef,
        /// Delete its media too.
        delete_media: bool,
        /// The message's timestamp (s).
        message_timestamp: Option<i64>,
    },
    /// Chat cleared; index `clearChat`.
    ClearChat {
        /// The chat.
        chat: String,
        /// Starred messages are cleared too (index part `"1"`; `"0"` keeps them).
        delete_starred: bool,
        /// Media is deleted too.
        delete_media: bool,
        /// The last messages the phone had seen.
        range: Option<SyncActionMessageRange>,
    },
    /// Label created, edited or deleted; index `label_edit`.
    LabelEdit {
        /// The label id (the index).
        label_id: String,
        /// Name.
        name: Option<String>,
        /// Colour number.
        color: Option<i32>,
        /// WhatsApp's predefined label this one is.
        predefined_id: Option<i32>,
        /// Deleted.
        deleted: bool,
    },
    /// Label added to or removed from a chat; index `label_jid`.
    LabelChat {
        /// The label id.
        label_id: String,
        /// The chat.
        chat: String,
        /// Added (false: removed).
        labeled: bool,
    },
    /// Label added to or removed from a message; index `label_message`.
    LabelMessage {
        /// The label id.
        label_id: String,
        /// The message.
        message: MessageRef,
        /// Added (false: removed).
        labeled: bool,
    },
    /// A quick reply; index `quick_reply` with its id (a timestamp string).
    QuickReply {
        /// Its id (the index).
        id: String,
        /// The shortcut (`/thx`).
        shortcut: Option<String>,
        /// The text.
        message: Option<String>,
        /// Search keywords.
        keywords: Vec<String>,
        /// Use count.
        count: Option<i32>,
        /// Deleted.
        deleted: bool,
    },
    /// Chat locked or unlocked; index `lock`.
    Lock {
        /// The chat.
        chat: String,
        /// Locked.
        locked: bool,
    },
    /// The phone number of a LID chat; index `pnForLidChat`.
    PnForLidChat {
        /// The LID (the index).
        lid: String,
        /// Its phone-number JID.
        pn: Option<String>,
    },
    /// The NCT salt; index `nct_salt_sync` (whatsmeow's schema; Baileys has no field for it).
    NctSalt {
        /// The salt.
        salt: Option<Vec<u8>>,
    },
    /// An index name this crate does not interpret (the value is still in the mutation).
    Unknown {
        /// The index name (`index[0]`), if any.
        name: Option<String>,
    },
    /// A known index name whose index or value does not have the expected shape.
    Malformed {
        /// The index name.
        name: String,
        /// What is missing.
        reason: &'static str,
    },
}

impl Action {
    /// Interprets an index and value.
    pub fn decode(index: &[String], value: Option<&SyncActionValue>) -> Action {
        let Some((name, rest)) = index.split_first() else {
            return Action::Unknown { name: None };
        };
        let bad = |reason| Action::Malformed { name: name.clone(), reason };
        let empty = SyncActionValue::default();
        let v = value.unwrap_or(&empty);
        let first = || rest.first().cloned();
        macro_rules! need {
            ($e:expr, $why:literal) => {
                match $e {
                    Some(x) => x,
                    None => return bad($why),
                }
            };
        }
        match name.as_str() {
            "contact" => {
                let jid = need!(first(), "index has no JID");
                let a = need!(v.contact_action.as_ref(), "value has no contactAction");
                Action::Contact {
                    jid,
                    full_name: a.full_name.clone(),
                    first_name: a.first_name.clone(),
                    lid_jid: a.lid_jid.clone(),
                    pn_jid: a.pn_jid.clone(),
                    username: a.username.clone(),
                    save_on_primary_addressbook: a.save_on_primary_addressbook,
                }
            }
            "lid_contact" => {
                let lid = need!(first(), "index has no LID");
                let a = need!(v.lid_contact_action.as_ref(), "value has no lidContactAction");
                Action::LidContact {
                    lid,
                    full_name: a.full_name.clone(),
                    first_name: a.first_name.clone(),
                    username: a.username.clone(),
                }
            }
            "setting_pushName" => {
                let a = need!(v.push_name_setting.as_ref(), "value has no pushNameSetting");
                Action::PushName { name: a.name.clone() }
            }
            "setting_locale" => {
                let a = need!(v.locale_setting.as_ref(), "value has no localeSetting");
                Action::Locale { locale: a.locale.clone() }
            }
            "setting_unarchiveChats" => {
                let a = need!(v.unarchive_chats_setting.as_ref(), "value has no unarchiveChatsSetting");
                Action::UnarchiveChatsSetting { unarchive_chats: a.unarchive_chats.unwrap_or(false) }
            }
            "setting_disableLinkPreviews" => {
                let a = need!(
                    v.privacy_setting_disable_link_previews_action.as_ref(),
                    "value has no privacySettingDisableLinkPreviewsAction"
                );
                Action::DisableLinkPreviews { disabled: a.is_previews_disabled.unwrap_or(false) }
            }
            "archive" => {
                let chat = need!(first(), "index has no chat");
                let a = need!(v.archive_chat_action.as_ref(), "value has no archiveChatAction");
                Action::Archive {
                    chat,
                    archived: a.archived.unwrap_or(false),
                    range: a.message_range.clone(),
                }
            }
            "pin_v1" => {
                let chat = need!(first(), "index has no chat");
                let a = need!(v.pin_action.as_ref(), "value has no pinAction");
                Action::Pin { chat, pinned: a.pinned.unwrap_or(false) }
            }
            "mute" => {
                let chat = need!(first(), "index has no chat");
                let a = need!(v.mute_action.as_ref(), "value has no muteAction");
                Action::Mute { chat, muted: a.muted.unwrap_or(false), end_timestamp_ms: a.mute_end_timestamp }
            }
            "markChatAsRead" => {
                let chat = need!(first(), "index has no chat");
                let a = need!(v.mark_chat_as_read_action.as_ref(), "value has no markChatAsReadAction");
                Action::MarkRead { chat, read: a.read.unwrap_or(false), range: a.message_range.clone() }
            }
            "star" => {
                let message = need!(MessageRef::from_index(rest), "index has no chat and message id");
                let a = need!(v.star_action.as_ref(), "value has no starAction");
                Action::Star { message, starred: a.starred.unwrap_or(false) }
            }
            "deleteChat" => {
                let chat = need!(first(), "index has no chat");
                let a = need!(v.delete_chat_action.as_ref(), "value has no deleteChatAction");
                Action::DeleteChat { chat, range: a.message_range.clone() }
            }
            "deleteMessageForMe" => {
                let message = need!(MessageRef::from_index(rest), "index has no chat and message id");
                let a =
                    need!(v.delete_message_for_me_action.as_ref(), "value has no deleteMessageForMeAction");
                Action::DeleteMessageForMe {
                    message,
                    delete_media: a.delete_media.unwrap_or(false),
                    message_timestamp: a.message_timestamp,
                }
            }
            "clearChat" => {
                let chat = need!(first(), "index has no chat");
                let a = need!(v.clear_chat_action.as_ref(), "value has no clearChatAction");
                Action::ClearChat {
                    chat,
                    delete_starred: rest.get(1).is_some_and(|s| s == "1"),
                    delete_media: rest.get(2).is_some_and(|s| s == "1"),
                    range: a.message_range.clone(),
                }
            }
            "label_edit" => {
                let label_id = need!(first(), "index has no label id");
                let a = need!(v.label_edit_action.as_ref(), "value has no labelEditAction");
                Action::LabelEdit {
                    label_id,
                    name: a.name.clone(),
                    color: a.color,
                    predefined_id: a.predefined_id,
                    deleted: a.deleted.unwrap_or(false),
                }
            }
            "label_jid" => {
                let [label_id, chat, ..] = rest else { return bad("index has no label id and chat") };
                let a = need!(v.label_association_action.as_ref(), "value has no labelAssociationAction");
                Action::LabelChat {
                    label_id: label_id.clone(),
                    chat: chat.clone(),
                    labeled: a.labeled.unwrap_or(false),
                }
            }
            "label_message" => {
                let Some((label_id, msg)) = rest.split_first() else { return bad("index has no label id") };
                let message = need!(MessageRef::from_index(msg), "index has no chat and message id");
                let a = need!(v.label_association_action.as_ref(), "value has no labelAssociationAction");
                Action::LabelMessage {
                    label_id: label_id.clone(),
                    message,
                    labeled: a.labeled.unwrap_or(false),
                }
            }
            "quick_reply" => {
                let id = need!(first(), "index has no quick-reply id");
                let a = need!(v.quick_reply_action.as_ref(), "value has no quickReplyAction");
                Action::QuickReply {
                    id,
                    shortcut: a.shortcut.clone(),
                    message: a.message.clone(),
                    keywords: a.keywords.clone(),
                    count: a.count,
                    deleted: a.deleted.unwrap_or(false),
                }
            }
            "lock" => {
                let chat = need!(first(), "index has no chat");
                let a = need!(v.lock_chat_action.as_ref(), "value has no lockChatAction");
                Action::Lock { chat, locked: a.locked.unwrap_or(false) }
            }
            "pnForLidChat" => {
                let lid = need!(first(), "index has no LID");
                let a = need!(v.pn_for_lid_chat_action.as_ref(), "value has no pnForLidChatAction");
                Action::PnForLidChat { lid, pn: a.pn_jid.clone() }
            }
            "nct_salt_sync" => {
                let a = need!(v.nct_salt_sync_action.as_ref(), "value has no nctSaltSyncAction");
                Action::NctSalt { salt: a.salt.clone() }
            }
            _ => Action::Unknown { name: Some(name.clone()) },
        }
    }
}

/// A message a range names: its key and timestamp (s), as for Baileys' `lastMessages`.
#[derive(Debug, Clone, PartialEq)]
pub struct LastMessage {
    /// The message key.
    pub key: MessageKey,
    /// Its timestamp in seconds.
    pub timestamp: i64,
}

/// The range WhatsApp Web attaches: the last message's timestamp and every key (the
/// per-message timestamp is not a field of the range, so it is not sent).
fn message_range(last: &[LastMessage]) -> SyncActionMessageRange {
    SyncActionMessageRange {
        last_message_timestamp: last.last().map(|m| m.timestamp),
        last_system_message_timestamp: None,
        messages: last
            .iter()
            .map(|m| sav::SyncActionMessage { key: Some(m.key.clone()), timestamp: None })
            .collect(),
    }
}

fn input(
    collection: Collection,
    index: Vec<String>,
    api_version: i32,
    timestamp_ms: i64,
    value: SyncActionValue,
) -> MutationInput {
    MutationInput {
        collection,
        operation: Operation::Set,
        index,
        value: SyncActionValue { timestamp: Some(timestamp_ms), ..value },
        api_version,
    }
}

/// Marks a chat read (`read`) or unread, naming the last messages seen.
pub fn mark_read(chat: &str, read: bool, last: &[LastMessage], timestamp_ms: i64) -> MutationInput {
    input(
        Collection::RegularLow,
        vec!["markChatAsRead".into(), chat.into()],
        3,
        timestamp_ms,
        SyncActionValue {
            mark_chat_as_read_action: Some(sav::MarkChatAsReadAction {
                read: Some(read),
                message_range: Some(message_range(last)),
            }),
            ..Default::default()
        },
    )
}

/// Archives or unarchives a chat, naming the last messages seen.
pub fn archive(chat: &str, archived: bool, last: &[LastMessage], timestamp_ms: i64) -> MutationInput {
    input(
        Collection::RegularLow,
        vec!["archive".into(), chat.into()],
        3,
        timestamp_ms,
        SyncActionValue {
            archive_chat_action: Some(sav::ArchiveChatAction {
                archived: Some(archived),
                message_range: Some(message_range(last)),
            }),
            ..Default::default()
        },
    )
}

/// Pins or unpins a chat.
pub fn pin(chat: &str, pinned: bool, timestamp_ms: i64) -> MutationInput {
    input(
        Collection::RegularLow,
        vec!["pin_v1".into(), chat.into()],
        5,
        timestamp_ms,
        SyncActionValue { pin_action: Some(sav::PinAction { pinned: Some(pinned) }), ..Default::default() },
    )
}

/// Mutes a chat until `until_ms` (ms since the epoch), or unmutes it with `None`.
pub fn mute(chat: &str, until_ms: Option<i64>, timestamp_ms: i64) -> MutationInput {
    input(
        Collection::RegularHigh,
        vec!["mute".into(), chat.into()],
        2,
        timestamp_ms,
        SyncActionValue {
            mute_action: Some(sav::MuteAction {
                muted: Some(until_ms.is_some()),
                mute_end_timestamp: until_ms,
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}

/// Creates, edits or deletes a label.
pub fn label_edit(
    label_id: &str,
    name: &str,
    color: i32,
    predefined_id: Option<i32>,
    deleted: bool,
    timestamp_ms: i64,
) -> MutationInput {
    input(
        Collection::Regular,
        vec!["label_edit".into(), label_id.into()],
        3,
        timestamp_ms,
        SyncActionValue {
            label_edit_action: Some(sav::LabelEditAction {
                name: Some(name.into()),
                color: Some(color),
                predefined_id,
                deleted: Some(deleted),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}

/// Adds a label to a chat (`labeled`) or removes it.
pub fn label_chat(label_id: &str, chat: &str, labeled: bool, timestamp_ms: i64) -> MutationInput {
    input(
        Collection::Regular,
        vec!["label_jid".into(), label_id.into(), chat.into()],
        3,
        timestamp_ms,
        SyncActionValue {
            label_association_action: Some(sav::LabelAssociationAction { labeled: Some(labeled) }),
            ..Default::default()
        },
    )
}

/// Adds a label to a message (`labeled`) or removes it. The index ends in `"0","0"` (fromMe,
/// participant) whatever the message, as Baileys writes it.
pub fn label_message(
    label_id: &str,
    chat: &str,
    message_id: &str,
    labeled: bool,
    timestamp_ms: i64,
) -> MutationInput {
    input(
        Collection::Regular,
        vec!["label_message".into(), label_id.into(), chat.into(), message_id.into(), "0".into(), "0".into()],
        3,
        timestamp_ms,
        SyncActionValue {
            label_association_action: Some(sav::LabelAssociationAction { labeled: Some(labeled) }),
            ..Default::default()
        },
    )
}

/// Names a contact in the address book (what the phone writes when a contact is saved).
pub fn contact(jid: &str, full_name: &str, first_name: Option<&str>, timestamp_ms: i64) -> MutationInput {
    input(
        Collection::CriticalUnblockLow,
        vec!["contact".into(), jid.into()],
        2,
        timestamp_ms,
        SyncActionValue {
            contact_action: Some(sav::ContactAction {
                full_name: Some(full_name.into()),
                first_name: first_name.map(str::to_owned),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}

/// Sets our own push name.
pub fn push_name(name: &str, timestamp_ms: i64) -> MutationInput {
    input(
        Collection::CriticalBlock,
        vec!["setting_pushName".into()],
        1,
        timestamp_ms,
        SyncActionValue {
            push_name_setting: Some(sav::PushNameSetting { name: Some(name.into()) }),
            ..Default::default()
        },
    )
}

/// Stars or unstars a message.
pub fn star(message: &MessageRef, starred: bool, timestamp_ms: i64) -> MutationInput {
    input(
        Collection::RegularHigh,
        vec![
            "star".into(),
            message.chat.clone(),
            message.id.clone(),
            if message.from_me { "1" } else { "0" }.into(),
            message.participant.clone().unwrap_or_else(|| "0".into()),
        ],
        2,
        timestamp_ms,
        SyncActionValue {
            star_action: Some(sav::StarAction { starred: Some(starred) }),
            ..Default::default()
        },
    )
}
