//! App-state sync ("syncd") on top of `wa-appstate`: the phone's sync keys, fetching and
//! applying the five collections, typed events, our own changes, and the queries an
//! application makes of the result (a chat's archive/pin/mute/read marks, a contact's name).
//!
//! - [`keys`]: the phone's `APP_STATE_SYNC_KEY_SHARE` is stored; missing keys are asked for
//!   with `APP_STATE_SYNC_KEY_REQUEST` (whatsmeow `appstate.go`
//!   `handleAppStateSyncKeyShare`, `requestMissingAppStateKeys`).
//! - [`sync`]: fetch (snapshot, then patches until `has_more_patches` is false), verify and
//!   apply; every patch is one store transaction (version, LTHash, MACs and the values it
//!   sets), so a crash mid-patch leaves the previous state. Fetched on login, on the
//!   `syncd_app_state` dirty bit and on `server_sync` (whatsmeow `appstate.go`
//!   `FetchAppState`, Baileys `chats.ts` `resyncAppState`).
//! - [`mutate`]: mark read, archive, pin, mute: one patch on the stored version, sent, then
//!   fetched back (whatsmeow `appstate.go` `sendAppState`).
//!
//! Recovery (issue 15; whatsmeow #858, #651, #802 are the failures it avoids): on a MAC or
//! LTHash mismatch the collection is fetched again as a snapshot; if that fails too, the keys
//! it needs are requested from the phone and the snapshot fetched once more; then
//! [`crate::Event::AppStateSyncFailed`]. Each rung is used once per sync, so it never loops.

mod keys;
mod mutate;
mod query;
mod store;
mod sync;

pub(crate) use keys::on_message;
pub use query::ChatSettings;
pub(crate) use sync::{SyncState, spawn_sync};
pub use wa_appstate::{Action as SyncAction, Collection, MessageRef, Operation};

/// One change to the account's app state, decoded: from a snapshot (`from_snapshot`: the
/// collection's whole state, on first sync or after a recovery) or from a patch.
#[derive(Clone, Debug, PartialEq)]
pub struct AppStateEvent {
    /// The collection it belongs to.
    pub collection: Collection,
    /// What it means (contact name, archive, pin, mute, mark read, star, labels, settings…).
    pub action: SyncAction,
    /// SET or REMOVE (a REMOVE takes the setting back).
    pub operation: Operation,
    /// The index it is stored under, e.g. `["archive", "1555…@s.whatsapp.net"]`.
    pub index: Vec<String>,
    /// When the change was made (ms since the epoch), as the device that made it said.
    pub timestamp_ms: Option<i64>,
    /// Part of a snapshot rather than a patch.
    pub from_snapshot: bool,
}
