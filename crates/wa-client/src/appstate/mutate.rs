//! Our own app-state changes: mark a chat read, archive, pin, mute, label (whatsmeow `appstate.go`
//! `sendAppState`, Baileys `chats.ts` `appPatch`).
//!
//! The collection is first brought up to date, the patch is encoded on the stored state
//! (version `v + 1`) under the newest key and sent as `<collection name version=v
//! return_snapshot="false"><patch/>`. The server refuses a patch on a stale version with
//! `type="error"` (409): then the collection is fetched and the patch encoded again, once
//! (whatsmeow retries once after a fetch). Once accepted, the collection is fetched, which
//! brings our own patch back as the next version and applies it like any other.

use std::sync::Arc;

use wa_appstate::MutationInput;
use wa_appstate::action as build;
use wa_binary::{Jid, Node};

use super::store::{load_state, newest_key};
use super::sync::sync_locked;
use crate::client::{Client, Shared};
use crate::error::{Error, Result};

impl Client {
    /// Marks a chat read (`read`) or unread on every device of the account.
    pub async fn mark_chat_read(&self, chat: &Jid, read: bool) -> Result<()> {
        let m = build::mark_read(&chat.to_non_ad().to_string(), read, &[], self.now_ms());
        self.send_app_state(m).await
    }

    /// Archives (`archived`) or unarchives a chat.
    pub async fn archive_chat(&self, chat: &Jid, archived: bool) -> Result<()> {
        let m = build::archive(&chat.to_non_ad().to_string(), archived, &[], self.now_ms());
        self.send_app_state(m).await
    }

    /// Pins (`pinned`) or unpins a chat.
    pub async fn pin_chat(&self, chat: &Jid, pinned: bool) -> Result<()> {
        let m = build::pin(&chat.to_non_ad().to_string(), pinned, self.now_ms());
        self.send_app_state(m).await
    }

    /// Mutes a chat until `until_ms` (ms since the epoch), or unmutes it with `None`.
    pub async fn mute_chat(&self, chat: &Jid, until_ms: Option<i64>) -> Result<()> {
        let m = build::mute(&chat.to_non_ad().to_string(), until_ms, self.now_ms());
        self.send_app_state(m).await
    }

    /// Adds a label (by id, as `label_edit` created it) to a chat (`labeled`) or removes it.
    pub async fn label_chat(&self, label_id: &str, chat: &Jid, labeled: bool) -> Result<()> {
        let m = build::label_chat(label_id, &chat.to_non_ad().to_string(), labeled, self.now_ms());
        self.send_app_state(m).await
    }

    /// Sends one app-state mutation (see the builders in `wa_appstate::action`).
    pub async fn send_app_state(&self, mutation: MutationInput) -> Result<()> {
        send(&self.shared, mutation).await
    }

    /// Fetches every collection now (from snapshots if `full`); failures are reported per
    /// collection as [`crate::Event::AppStateSyncFailed`].
    pub async fn sync_app_state(&self, full: bool) -> Result<()> {
        super::sync::sync(&self.shared, &wa_appstate::Collection::ALL, full).await
    }

    fn now_ms(&self) -> i64 {
        self.shared.now().saturating_mul(1000)
    }
}

async fn send(shared: &Arc<Shared>, mutation: MutationInput) -> Result<()> {
    let c = mutation.collection;
    let _guard = shared.app_state.lock.lock().await;
    sync_locked(shared, &[c], false).await?;
    let mut retried = false;
    loop {
        let state = load_state(shared, c).await?;
        let (key_id, ring) = newest_key(shared).await?.ok_or_else(|| {
            Error::InvalidInput("no app-state keys yet: the phone shares them after pairing".into())
        })?;
        let iv: [u8; 16] = shared.random_bytes();
        let encoded = wa_appstate::encode_patch(&state, &[(mutation.clone(), iv)], &key_id, &ring)?;
        let iq = Node::new("iq")
            .attr("xmlns", "w:sync:app:state")
            .attr("type", "set")
            .attr("to", crate::conn::server_jid())
            .children([Node::new("sync").children([Node::new("collection")
                .attr("name", c.as_str())
                .attr("version", state.version)
                .attr("return_snapshot", "false")
                .children([Node::new("patch").bytes(encoded.bytes)])])]);
        let response = shared.iq(iq).await?;
        let answer = response.child("sync").and_then(|s| s.children_by_tag("collection").next());
        let error = answer.filter(|a| a.opt_attr_str("type").as_deref() == Some("error")).map(|a| {
            a.child("error").and_then(|e| e.opt_attr_str("code")).map(|s| s.into_owned()).unwrap_or_default()
        });
        match error {
            None => break,
            Some(code) if code == "409" && !retried => {
                retried = true;
                sync_locked(shared, &[c], false).await?;
            }
            Some(code) => return Err(Error::AppStateRefused { collection: c.to_string(), code }),
        }
    }
    sync_locked(shared, &[c], false).await
}
