//! What the application reads back from the synced app state.

use prost::Message as _;
use wa_appstate::Collection;
use wa_binary::Jid;
use wa_proto::SyncActionValue;
use wa_store::AppStateStore;

use super::store::index_key;
use crate::client::Client;
use crate::error::{Error, Result};

/// A chat's settings as the account's app state has them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChatSettings {
    /// Archived.
    pub archived: bool,
    /// Pinned.
    pub pinned: bool,
    /// Muted until (ms since the epoch; `-1` is WhatsApp's "always"), if muted.
    pub muted_until: Option<i64>,
    /// Marked read (`Some(true)`) or unread (`Some(false)`) by a device, if ever.
    pub marked_read: Option<bool>,
}

impl Client {
    /// The value stored at an app-state index of a collection, if live.
    pub async fn app_state_value(
        &self,
        collection: Collection,
        index: &[&str],
    ) -> Result<Option<SyncActionValue>> {
        let Some(bytes) = self.shared.store.app_state_value(collection.as_str(), &index_key(index)).await?
        else {
            return Ok(None);
        };
        SyncActionValue::decode(bytes.as_slice()).map(Some).map_err(|_| {
            Error::CorruptStore(format!("{collection}: a stored app-state value does not decode"))
        })
    }

    /// A chat's archive, pin, mute and read marks.
    pub async fn chat_settings(&self, chat: &Jid) -> Result<ChatSettings> {
        let chat = chat.to_non_ad().to_string();
        let low = Collection::RegularLow;
        let archived = self.app_state_value(low, &["archive", &chat]).await?;
        let pinned = self.app_state_value(low, &["pin_v1", &chat]).await?;
        let read = self.app_state_value(low, &["markChatAsRead", &chat]).await?;
        let mute = self.app_state_value(Collection::RegularHigh, &["mute", &chat]).await?;
        Ok(ChatSettings {
            archived: archived.and_then(|v| v.archive_chat_action?.archived).unwrap_or(false),
            pinned: pinned.and_then(|v| v.pin_action?.pinned).unwrap_or(false),
            muted_until: mute
                .and_then(|v| v.mute_action)
                .filter(|m| m.muted == Some(true))
                .map(|m| m.mute_end_timestamp.unwrap_or(-1)),
            marked_read: read.and_then(|v| v.mark_chat_as_read_action?.read),
        })
    }

    /// A contact's name from the phone's address book (full name, else first name).
    pub async fn contact_name(&self, jid: &Jid) -> Result<Option<String>> {
        let jid = jid.to_non_ad().to_string();
        let v = self.app_state_value(Collection::CriticalUnblockLow, &["contact", &jid]).await?;
        Ok(v.and_then(|v| v.contact_action).and_then(|a| a.full_name.or(a.first_name)))
    }
}
