//! History-sync blobs: the phone sends a `HistorySyncNotification` pointing to a media file
//! ("WhatsApp History Keys") whose plaintext is a zlib stream of a `HistorySync`; the first
//! chunk may instead come inline (`initialHistBootstrapInlinePayload`, the zlib stream
//! itself). This module decrypts, inflates (bounded) and decodes, and extracts the side data
//! a client keeps: phone-number ↔ LID mappings, contact names and push names, following
//! Baileys' `processHistoryMessage`.

use std::io::Read as _;

use wa_proto::HistorySync;
use wa_proto::history_sync::HistorySyncType;
use wa_proto::message::HistorySyncNotification;
use wa_proto::prost_message::Message as _;

use crate::error::{AppStateError, malformed, protobuf};

/// The largest inflated history blob accepted (a zlib bomb stops here).
pub const MAX_HISTORY_BYTES: u64 = 512 * 1024 * 1024;

/// The zlib stream a notification carries inline, if any (then nothing is downloaded).
pub fn inline_payload(n: &HistorySyncNotification) -> Option<&[u8]> {
    n.initial_hist_bootstrap_inline_payload.as_deref().filter(|p| !p.is_empty())
}

/// Verifies and decrypts the downloaded blob of a notification: encrypted-file hash, MAC,
/// plaintext hash. The result is the zlib stream.
pub fn decrypt_history_blob(n: &HistorySyncNotification, blob: &[u8]) -> Result<Vec<u8>, AppStateError> {
    let key: [u8; 32] = n
        .media_key
        .as_deref()
        .and_then(|k| k.try_into().ok())
        .ok_or(malformed("history notification media key (32 bytes)"))?;
    Ok(wa_crypto::media::decrypt(
        &key,
        wa_crypto::media::HISTORY_INFO,
        blob,
        n.file_enc_sha256.as_deref(),
        n.file_sha256.as_deref(),
    )?)
}

/// Inflates a zlib stream, refusing more than `limit` bytes of output.
pub fn inflate(compressed: &[u8], limit: u64) -> Result<Vec<u8>, AppStateError> {
    let mut plain = Vec::new();
    flate2::read::ZlibDecoder::new(compressed)
        .take(limit.saturating_add(1))
        .read_to_end(&mut plain)
        .map_err(|e| AppStateError::Inflate(e.to_string()))?;
    if plain.len() as u64 > limit {
        return Err(AppStateError::Inflate(format!("inflates beyond {limit} bytes")));
    }
    Ok(plain)
}

/// Compresses a blob as the phone does before sending it (zlib, the inverse of [`inflate`]).
pub fn deflate(plain: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = z.write_all(plain);
    z.finish().unwrap_or_default()
}

/// Decodes inflated `HistorySync` bytes.
pub fn decode_history(inflated: &[u8]) -> Result<HistorySync, AppStateError> {
    HistorySync::decode(inflated).map_err(protobuf("HistorySync"))
}

/// A phone-number ↔ LID pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LidPnMapping {
    /// The LID JID.
    pub lid: String,
    /// The phone-number JID.
    pub pn: String,
}

/// A contact a history chunk names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryContact {
    /// The chat or user JID.
    pub id: String,
    /// Display name, name or username of the conversation.
    pub name: Option<String>,
    /// The LID, when the conversation names one.
    pub lid: Option<String>,
    /// The phone-number JID, when the conversation names one.
    pub pn: Option<String>,
    /// The push name (PUSH_NAME chunks).
    pub push_name: Option<String>,
}

/// What a client keeps from a history chunk besides the messages themselves.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HistorySideData {
    /// PN ↔ LID mappings in Baileys' order: the chunk's mapping list, then per
    /// conversation (duplicates are kept, as Baileys keeps them).
    pub lid_pn_mappings: Vec<LidPnMapping>,
    /// One contact per conversation (message chunks) or per push name (PUSH_NAME chunks).
    pub contacts: Vec<HistoryContact>,
}

fn is_pn(jid: &str) -> bool {
    jid.ends_with("@s.whatsapp.net") || jid.ends_with("@hosted")
}

fn is_lid(jid: &str) -> bool {
    jid.ends_with("@lid") || jid.ends_with("@hosted.lid")
}

fn nonempty(s: &Option<String>) -> Option<String> {
    s.as_ref().filter(|s| !s.is_empty()).cloned()
}

/// Extracts the side data of a chunk.
pub fn side_data(h: &HistorySync) -> HistorySideData {
    let mut out = HistorySideData::default();
    for m in &h.phone_number_to_lid_mappings {
        if let (Some(lid), Some(pn)) = (nonempty(&m.lid_jid), nonempty(&m.pn_jid)) {
            out.lid_pn_mappings.push(LidPnMapping { lid, pn });
        }
    }
    let kind = h.sync_type.and_then(|t| HistorySyncType::try_from(t).ok());
    match kind {
        Some(
            HistorySyncType::InitialBootstrap
            | HistorySyncType::Recent
            | HistorySyncType::Full
            | HistorySyncType::OnDemand,
        ) => {
            for c in &h.conversations {
                let id = c.id.clone().unwrap_or_default();
                out.contacts.push(HistoryContact {
                    id: id.clone(),
                    name: nonempty(&c.display_name)
                        .or_else(|| nonempty(&c.name))
                        .or_else(|| nonempty(&c.username)),
                    lid: nonempty(&c.lid_jid).or_else(|| nonempty(&c.account_lid)),
                    pn: nonempty(&c.pn_jid),
                    push_name: None,
                });
                let pn = nonempty(&c.pn_jid);
                let lid = nonempty(&c.lid_jid);
                if is_lid(&id) {
                    // a LID chat without pnJid: the recipient of our own message is the PN
                    let pn = pn.or_else(|| {
                        c.messages.iter().filter_map(|m| m.message.as_ref()).find_map(|m| {
                            let from_me = m.key.as_ref().and_then(|k| k.from_me).unwrap_or(false);
                            let first = m.user_receipt.first()?.user_jid.as_ref()?;
                            (from_me && is_pn(first)).then(|| first.clone())
                        })
                    });
                    if let Some(pn) = pn {
                        out.lid_pn_mappings.push(LidPnMapping { lid: id.clone(), pn });
                    }
                } else if is_pn(&id)
                    && let Some(lid) = lid
                {
                    out.lid_pn_mappings.push(LidPnMapping { lid, pn: id.clone() });
                }
            }
        }
        Some(HistorySyncType::PushName) => {
            for p in &h.pushnames {
                out.contacts.push(HistoryContact {
                    id: p.id.clone().unwrap_or_default(),
                    name: None,
                    lid: None,
                    pn: None,
                    push_name: p.pushname.clone(),
                });
            }
        }
        _ => {}
    }
    out
}
