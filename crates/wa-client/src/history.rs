//! History sync: the primary phone announces a blob of past conversations with a
//! `HistorySyncNotification` (inside a device-sent protocol message). The blob is either
//! inline or a media file (`md-msg-hist` keys); either way it is zlib-compressed
//! `HistorySync` protobuf. Only notifications from our own account are honoured.

use std::sync::Arc;

use tracing::{debug, warn};
use wa_binary::Node;
use wa_proto::message::HistorySyncNotification;
use wa_proto::{HistorySync, Message};

use crate::client::{Client, Shared};
use crate::error::{Error, Result};
use crate::event::{Event, MessageInfo};
use crate::media::{MediaRef, MediaType};

/// The largest inflated history blob we accept (a zlib bomb stops here).
pub use wa_appstate::history::MAX_HISTORY_BYTES;

/// The notification a message carries, if it is a history-sync protocol message.
pub(crate) fn notification_of(m: &Message) -> Option<&HistorySyncNotification> {
    m.protocol_message.as_ref()?.history_sync_notification.as_ref()
}

/// Inflates (bounded) and decodes a history blob (wa-appstate's history layer).
pub fn decode_history(compressed: &[u8]) -> Result<HistorySync> {
    decode_plain(&inflate(compressed)?)
}

fn inflate(compressed: &[u8]) -> Result<Vec<u8>> {
    wa_appstate::history::inflate(compressed, MAX_HISTORY_BYTES).map_err(|e| match e {
        wa_appstate::AppStateError::Inflate(why) => {
            Error::Media(format!("history blob does not inflate: {why}"))
        }
        other => Error::Media(other.to_string()),
    })
}

fn decode_plain(plain: &[u8]) -> Result<HistorySync> {
    wa_appstate::history::decode_history(plain).map_err(|e| match e {
        wa_appstate::AppStateError::Protobuf { what, source } => Error::Protobuf { what, source },
        other => Error::Media(other.to_string()),
    })
}

impl Client {
    /// Fetches (or takes inline), inflates and decodes the history a notification announces.
    pub async fn fetch_history_sync(&self, n: &HistorySyncNotification) -> Result<HistorySync> {
        decode_plain(&self.fetch_history_plain(n).await?)
    }

    /// The inflated blob a notification announces (inline or downloaded).
    async fn fetch_history_plain(&self, n: &HistorySyncNotification) -> Result<Vec<u8>> {
        if let Some(inline) = n.initial_hist_bootstrap_inline_payload.as_deref().filter(|p| !p.is_empty()) {
            return inflate(inline);
        }
        let media_key: [u8; 32] = n
            .media_key
            .as_deref()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| Error::Media("history notification has no 32-byte media key".into()))?;
        let direct_path = n
            .direct_path
            .clone()
            .ok_or_else(|| Error::Media("history notification has no directPath".into()))?;
        let r = MediaRef {
            kind: MediaType::History,
            url: None,
            direct_path: Some(direct_path),
            media_key,
            file_enc_sha256: n.file_enc_sha256.clone(),
            file_sha256: n.file_sha256.clone(),
            file_length: n.file_length,
        };
        let compressed = self.download_ref(&r).await?;
        inflate(&compressed)
    }
}

/// Called for every stored message: a history notification from our own account gets its
/// `hist_sync` receipt at once, to our own user (whatsmeow `message.go`
/// `handleProtocolMessage` → `SendProtocolMessageReceipt`, Baileys `messages-recv.ts`), so the
/// phone counts it delivered whether or not the download works; then it is processed in the
/// background (download, inflate, decode, [`Event::HistorySync`]). One from anyone else is
/// ignored.
pub(crate) fn on_message(shared: &Arc<Shared>, info: &MessageInfo, message: &Message) {
    let Some(n) = notification_of(message) else { return };
    let Ok((own, own_lid)) = shared.own_ids() else { return };
    let ours =
        info.sender.user() == own.user() || own_lid.as_ref().is_some_and(|l| info.sender.user() == l.user());
    if !ours {
        warn!(sender = %info.sender, id = %info.id, "ignoring a history-sync notification from another account");
        return;
    }
    let receipt = Node::new("receipt")
        .attr("id", info.id.as_str())
        .attr("type", "hist_sync")
        .attr("to", own.to_non_ad());
    if let Err(e) = shared.connection().and_then(|c| c.send(&receipt)) {
        warn!(id = %info.id, %e, "hist_sync receipt not sent");
    }
    let client = Client { shared: shared.clone() };
    let n = n.clone();
    let id = info.id.clone();
    tokio::spawn(async move {
        let decoded = client.fetch_history_plain(&n).await.and_then(|plain| {
            use prost::Message as _;
            let tokens = crate::privacy_token::HistoryTokens::decode(plain.as_slice())
                .map_err(crate::error::protobuf("HistorySync tokens"))?;
            Ok((decode_plain(&plain)?, tokens))
        });
        match decoded {
            Ok((h, tokens)) => {
                debug!(%id, conversations = h.conversations.len(), "history sync");
                if let Err(e) = learn_mappings(&client.shared, &h).await {
                    warn!(%id, %e, "history sync: LID mappings not stored");
                }
                // After the mappings: tokens are kept under the contacts' LIDs.
                if let Err(e) = crate::privacy_token::learn_from_history(&client.shared, &tokens).await {
                    warn!(%id, %e, "history sync: privacy tokens not stored");
                }
                client.shared.emit(Event::HistorySync(Arc::new(h)));
            }
            // Cut short by the connection ending (its media host query, or the download):
            // not a fault of the data; the notification stays available all the same.
            Err(e) if !client.is_connected() => {
                debug!(%id, %e, "history sync stopped with the connection; the notification stays available as a message")
            }
            Err(e) => warn!(%id, %e, "history sync failed; the notification stays available as a message"),
        }
    });
}

/// Stores the phone-number ↔ LID pairs a history blob carries (`phoneNumberToLidMappings`,
/// as whatsmeow message.go `storeHistoricalPNLIDMappings` does); malformed entries are skipped.
pub(crate) async fn learn_mappings(shared: &Shared, h: &HistorySync) -> Result<()> {
    let pairs: Vec<(wa_binary::Jid, wa_binary::Jid)> = h
        .phone_number_to_lid_mappings
        .iter()
        .filter_map(|m| Some((m.lid_jid.as_deref()?.parse().ok()?, m.pn_jid.as_deref()?.parse().ok()?)))
        .collect();
    let fresh = crate::lid::unknown_jids(shared, pairs.iter().map(|(a, b)| (a, b)));
    crate::lid::store(shared, fresh).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::io::Write as _;

    use prost::Message as _;

    use super::*;

    #[test]
    fn decodes_and_refuses_garbage() {
        let h = HistorySync { chunk_order: Some(3), ..Default::default() };
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&h.encode_to_vec()).unwrap();
        assert_eq!(decode_history(&z.finish().unwrap()).unwrap(), h);
        assert!(matches!(decode_history(b"not zlib"), Err(Error::Media(_))));
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&[0xff; 10]).unwrap();
        assert!(matches!(decode_history(&z.finish().unwrap()), Err(Error::Protobuf { .. })));
    }
}
