//! The phone's app-state sync keys: stored from its `APP_STATE_SYNC_KEY_SHARE`, asked for
//! with `APP_STATE_SYNC_KEY_REQUEST` when a patch names one we lack.

use std::sync::Arc;

use prost::Message as _;
use tracing::{debug, info, warn};
use wa_appstate::{Collection, KeyId};
use wa_proto::Message;
use wa_proto::message::protocol_message::Type as ProtocolType;
use wa_proto::message::{AppStateSyncKeyId, AppStateSyncKeyRequest, AppStateSyncKeyShare, ProtocolMessage};
use wa_store::{AppStateStore, AppStateSyncKey};

use crate::client::Shared;
use crate::error::Result;
use crate::event::MessageInfo;

/// Called for every stored message: a key share from our own account is stored, whoever is
/// waiting for keys is woken, and every collection is synced (whatsmeow `appstate.go`
/// `handleAppStateSyncKeyShare` fetches the collections not yet synced). A share from anyone
/// else is ignored.
pub(crate) fn on_message(shared: &Arc<Shared>, info: &MessageInfo, message: &Message) {
    let Some(share) = message.protocol_message.as_ref().and_then(|p| p.app_state_sync_key_share.as_ref())
    else {
        return;
    };
    let Ok((own, own_lid)) = shared.own_ids() else { return };
    let ours =
        info.sender.user() == own.user() || own_lid.as_ref().is_some_and(|l| info.sender.user() == l.user());
    if !ours {
        warn!(sender = %info.sender, id = %info.id, "ignoring app-state keys from another account");
        return;
    }
    let shared = shared.clone();
    let share = share.clone();
    tokio::spawn(async move {
        match store_share(&shared, &share).await {
            Ok(n) => {
                info!(keys = n, "app-state keys received");
                shared.app_state.keys_arrived.notify_waiters();
                // A share without keys (the phone lacks those asked for) changes nothing.
                if n > 0 {
                    super::spawn_sync(shared, Collection::ALL.to_vec(), false);
                }
            }
            Err(e) => warn!(%e, "app-state key share not stored"),
        }
    });
}

/// Stores every key of a share (a malformed share stores nothing).
pub(crate) async fn store_share(shared: &Shared, share: &AppStateSyncKeyShare) -> Result<usize> {
    let keys = wa_appstate::parse_key_share(share)?;
    for (k, raw) in keys.iter().zip(&share.keys) {
        let fingerprint = raw
            .key_data
            .as_ref()
            .and_then(|d| d.fingerprint.as_ref())
            .map(|f| f.encode_to_vec())
            .unwrap_or_default();
        let stored =
            AppStateSyncKey { key_data: k.data.to_vec(), fingerprint, timestamp: k.timestamp.unwrap_or(0) };
        shared.store.put_app_state_sync_key(k.id.as_bytes(), &stored).await?;
    }
    Ok(keys.len())
}

/// Asks our phone for keys (a peer `APP_STATE_SYNC_KEY_REQUEST`, whatsmeow `appstate.go`
/// `requestMissingAppStateKeys`); the answer arrives as a key share.
pub(crate) async fn request_keys(shared: &Shared, ids: &[KeyId]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let request = Message {
        protocol_message: Some(Box::new(ProtocolMessage {
            r#type: Some(ProtocolType::AppStateSyncKeyRequest as i32),
            app_state_sync_key_request: Some(AppStateSyncKeyRequest {
                key_ids: ids.iter().map(|k| AppStateSyncKeyId { key_id: Some(k.0.clone()) }).collect(),
            }),
            ..Default::default()
        })),
        ..Default::default()
    };
    let (own, _) = shared.own_ids()?;
    let conn = shared.connection()?;
    let id = crate::send::new_message_id(shared, own.user());
    let stanza = crate::send::peer_stanza(shared, &id, &request).await?;
    crate::send::send_and_await_ack(shared, &conn, id, &stanza).await?;
    debug!(keys = ?ids, "asked the phone for app-state keys");
    Ok(())
}
