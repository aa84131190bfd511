//! The server's answer to an app-state sync request:
//!
//! ```text
//! <iq type="result"><sync>
//!   <collection name="regular_low" version="48"><snapshot>ExternalBlobReference</snapshot></collection>
//!   <collection name="regular_high" version="260" has_more_patches="false">
//!     <patches><patch>SyncdPatch</patch>…</patches>
//!   </collection>
//! </sync></iq>
//! ```
//!
//! A snapshot is always an external blob (media-encrypted with "WhatsApp App State Keys");
//! a patch may point to external mutations too. This layer returns the references; the
//! caller downloads, then [`decrypt_external_blob`] and [`crate::attach_external_mutations`]
//! or [`crate::decode_snapshot`].

use wa_binary::Node;
use wa_proto::prost_message::Message as _;
use wa_proto::{ExternalBlobReference, SyncdPatch, SyncdVersion};

use crate::error::{AppStateError, protobuf};
use crate::state::Collection;

/// One `<collection>` of a sync response.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionSync {
    /// The collection.
    pub collection: Collection,
    /// The `version` attribute: the server's version after the patches given.
    pub version: Option<u64>,
    /// More patches are waiting: ask again from the version reached.
    pub has_more_patches: bool,
    /// The snapshot to download, if the server sent one.
    pub snapshot: Option<ExternalBlobReference>,
    /// The patches, in order. One without a version gets `version + 1` (Baileys does the
    /// same; servers send versions).
    pub patches: Vec<SyncdPatch>,
    /// The error `<collection type="error">` carried, as its `<error>` code, if any.
    pub error: Option<String>,
}

/// Parses a sync response (`<iq>` or its `<sync>` child).
pub fn parse_sync_response(node: &Node) -> Result<Vec<CollectionSync>, AppStateError> {
    let sync = if node.tag == "sync" {
        node
    } else {
        node.child("sync").ok_or(AppStateError::BadSyncResponse("no <sync>"))?
    };
    sync.children_by_tag("collection").map(parse_collection).collect()
}

fn parse_collection(c: &Node) -> Result<CollectionSync, AppStateError> {
    let name = c.opt_attr_str("name").ok_or(AppStateError::BadSyncResponse("<collection> without a name"))?;
    let collection: Collection = name.parse()?;
    let version = match c.opt_attr_str("version") {
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| AppStateError::BadSyncResponse("collection version is not a number"))?,
        ),
        None => None,
    };
    let has_more_patches = c.opt_attr_str("has_more_patches").is_some_and(|v| v == "true");
    let error = (c.opt_attr_str("type").as_deref() == Some("error")).then(|| {
        c.child("error").and_then(|e| e.opt_attr_str("code")).map(|s| s.into_owned()).unwrap_or_default()
    });
    let snapshot = match c.child("snapshot").and_then(|s| s.content_bytes()) {
        Some(b) => Some(ExternalBlobReference::decode(b).map_err(protobuf("ExternalBlobReference"))?),
        None => None,
    };
    let holder = c.child("patches").unwrap_or(c);
    let mut patches = Vec::new();
    for p in holder.children_by_tag("patch") {
        let Some(bytes) = p.content_bytes() else { continue };
        let mut patch = SyncdPatch::decode(bytes).map_err(protobuf("SyncdPatch"))?;
        if patch.version.is_none()
            && let Some(v) = version
        {
            patch.version = Some(SyncdVersion { version: Some(v.saturating_add(1)) });
        }
        patches.push(patch);
    }
    Ok(CollectionSync { collection, version, has_more_patches, snapshot, patches, error })
}

/// Verifies and decrypts a downloaded app-state blob (snapshot or external mutations)
/// against its reference: encrypted-file hash, MAC, plaintext hash.
pub fn decrypt_external_blob(
    reference: &ExternalBlobReference,
    blob: &[u8],
) -> Result<Vec<u8>, AppStateError> {
    let key: [u8; 32] = reference
        .media_key
        .as_deref()
        .and_then(|k| k.try_into().ok())
        .ok_or(AppStateError::Malformed { what: "external blob media key (32 bytes)" })?;
    Ok(wa_crypto::media::decrypt(
        &key,
        wa_crypto::media::APP_STATE_INFO,
        blob,
        reference.file_enc_sha256.as_deref(),
        reference.file_sha256.as_deref(),
    )?)
}
