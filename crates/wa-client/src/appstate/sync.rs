//! Fetching and applying collections, with the recovery ladder.
//!
//! Request (whatsmeow `appstate.go` `fetchAppStatePatches`, Baileys `chats.ts`
//! `resyncAppState`): `<iq xmlns="w:sync:app:state" type="set"><sync><collection name
//! version return_snapshot/>…</sync></iq>`, `return_snapshot="true"` for a collection never
//! synced (or being recovered). Each answer is applied (snapshot first, then every patch
//! after the local version) and asked again while `has_more_patches` is set.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tracing::{debug, info, warn};
use wa_appstate::{
    Applied, Collection, CollectionState, CollectionSync, ErrorKind, KeyId, apply_patch, apply_snapshot,
    attach_external_mutations, decode_snapshot, required_key_ids, required_snapshot_key_ids,
};
use wa_binary::Node;
use wa_proto::ExternalBlobReference;
use wa_store::AppStateStore;

use super::AppStateEvent;
use super::store::{key_ring, load_state, persist};
use crate::client::{Client, Shared};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::media::{MediaRef, MediaType};

/// Rounds of one sync before it gives up on the collections still pending (each round is one
/// request; `has_more_patches` pages and the ladder's rungs each take one).
const MAX_ROUNDS: usize = 64;

/// Serializes syncs and sends (one collection state in flight), and wakes those waiting for
/// requested keys.
#[derive(Default)]
pub(crate) struct SyncState {
    pub lock: tokio::sync::Mutex<()>,
    pub keys_arrived: tokio::sync::Notify,
}

/// Where one collection stands in one sync: which rungs of the ladder it used.
#[derive(Default, Debug)]
struct Progress {
    /// Ask for a snapshot (never synced, or recovering).
    snapshot: bool,
    /// A full resync was tried.
    resynced: bool,
    /// Keys were requested from the phone.
    keys_requested: bool,
    /// Conflicts (409) answered by asking again.
    conflicts: u8,
}

/// Syncs collections in the background; failures are logged and, per collection, reported as
/// [`Event::AppStateSyncFailed`]. Nothing happens before the phone shared its keys.
pub(crate) fn spawn_sync(shared: Arc<Shared>, collections: Vec<Collection>, full: bool) {
    tokio::spawn(async move {
        match shared.store.app_state_sync_keys().await {
            Ok(keys) if keys.is_empty() => {
                debug!("no app-state keys yet; the sync waits for the phone's key share");
                return;
            }
            Err(e) => {
                warn!(%e, "app-state keys unreadable");
                return;
            }
            Ok(_) => {}
        }
        match sync(&shared, &collections, full).await {
            Ok(()) => {}
            // The connection ended mid-sync (a disconnect, a shutdown): nothing is wrong with
            // the state, and the next login fetches every collection again.
            Err(e @ (Error::NotConnected | Error::Closed)) => debug!(%e, "app-state sync stopped"),
            Err(e) => warn!(%e, "app-state sync failed"),
        }
    });
}

/// Brings `collections` up to date (from a snapshot if `full`).
pub(crate) async fn sync(shared: &Arc<Shared>, collections: &[Collection], full: bool) -> Result<()> {
    let _guard = shared.app_state.lock.lock().await;
    sync_locked(shared, collections, full).await
}

/// [`sync`] with the lock held.
pub(crate) async fn sync_locked(shared: &Arc<Shared>, collections: &[Collection], full: bool) -> Result<()> {
    let mut pending: BTreeMap<Collection, Progress> =
        collections.iter().map(|c| (*c, Progress { snapshot: full, ..Default::default() })).collect();
    for _ in 0..MAX_ROUNDS {
        if pending.is_empty() {
            return Ok(());
        }
        let mut states = BTreeMap::new();
        let mut nodes = Vec::new();
        for (c, p) in &pending {
            let state = if p.snapshot { CollectionState::new(*c) } else { load_state(shared, *c).await? };
            let snapshot = p.snapshot || state.version == 0;
            nodes.push(
                Node::new("collection")
                    .attr("name", c.as_str())
                    .attr("version", state.version)
                    .attr("return_snapshot", if snapshot { "true" } else { "false" }),
            );
            states.insert(*c, state);
        }
        let iq = Node::new("iq")
            .attr("xmlns", "w:sync:app:state")
            .attr("type", "set")
            .attr("to", crate::conn::server_jid())
            .children([Node::new("sync").children(nodes)]);
        let response = shared.iq(iq).await?;
        let answers = wa_appstate::parse_sync_response(&response)?;
        let mut answered = BTreeSet::new();
        for cs in answers {
            let c = cs.collection;
            let Some(p) = pending.get_mut(&c) else { continue };
            answered.insert(c);
            let state = states.remove(&c).unwrap_or_else(|| CollectionState::new(c));
            if let Some(code) = &cs.error {
                match code.as_str() {
                    // A conflict: ask again (bounded).
                    "409" if p.conflicts < 3 => p.conflicts += 1,
                    // The server does not know our version: start over from a snapshot.
                    "404" if !p.resynced => {
                        p.resynced = true;
                        p.snapshot = true;
                    }
                    _ => {
                        fail(
                            shared,
                            c,
                            &Error::AppStateRefused { collection: c.to_string(), code: code.clone() },
                        );
                        pending.remove(&c);
                    }
                }
                continue;
            }
            let mut keys_used = BTreeSet::new();
            match apply_collection(shared, state, &cs, &mut keys_used).await {
                Ok(version) => {
                    p.snapshot = false;
                    if !cs.has_more_patches {
                        debug!(collection = %c, version, "app state synced");
                        shared.emit(Event::AppStateSynced { collection: c, version });
                        pending.remove(&c);
                    }
                }
                Err(e) => {
                    if !climb(shared, c, p, &e, &keys_used).await {
                        fail(shared, c, &e);
                        pending.remove(&c);
                    }
                }
            }
        }
        // A collection the server left out of its answer cannot progress.
        let unanswered: Vec<Collection> = pending.keys().filter(|c| !answered.contains(c)).copied().collect();
        for c in unanswered {
            fail(shared, c, &Error::Malformed(format!("the sync answer has no collection {c}")));
            pending.remove(&c);
        }
    }
    for c in pending.into_keys() {
        fail(shared, c, &Error::Malformed(format!("{c} still has patches after {MAX_ROUNDS} rounds")));
    }
    Ok(())
}

/// Takes the next rung of the recovery ladder for a failed apply; false when none is left.
async fn climb(
    shared: &Arc<Shared>,
    c: Collection,
    p: &mut Progress,
    e: &Error,
    keys: &BTreeSet<KeyId>,
) -> bool {
    let kind = match e {
        Error::AppState(a) => a.kind(),
        _ => return false,
    };
    match kind {
        ErrorKind::MissingKey if !p.keys_requested => {
            p.keys_requested = true;
            let missing = missing_keys(shared, keys).await;
            info!(collection = %c, keys = ?missing, "app state needs keys we lack; asking the phone");
            await_keys(shared, &missing).await
        }
        ErrorKind::Integrity | ErrorKind::Version if !p.resynced => {
            warn!(collection = %c, %e, "app state does not verify; fetching a snapshot");
            p.resynced = true;
            p.snapshot = true;
            true
        }
        ErrorKind::Integrity if !p.keys_requested => {
            // A snapshot fails too: perhaps a key we hold is not the phone's; ask for it again.
            p.keys_requested = true;
            p.snapshot = true;
            let keys: Vec<KeyId> = keys.iter().cloned().collect();
            warn!(collection = %c, %e, "app-state snapshot does not verify; asking the phone for its keys");
            await_keys(shared, &keys).await
        }
        _ => false,
    }
}

/// Sends a key request and waits (bounded) for a key share to be stored.
async fn await_keys(shared: &Arc<Shared>, ids: &[KeyId]) -> bool {
    let arrived = shared.app_state.keys_arrived.notified();
    tokio::pin!(arrived);
    arrived.as_mut().enable();
    if let Err(e) = super::keys::request_keys(shared, ids).await {
        warn!(%e, "app-state key request not sent");
        return false;
    }
    tokio::time::timeout(shared.config.iq_timeout, arrived).await.is_ok()
}

async fn missing_keys(shared: &Shared, ids: &BTreeSet<KeyId>) -> Vec<KeyId> {
    let mut out = Vec::new();
    for id in ids {
        if !matches!(shared.store.get_app_state_sync_key(id.as_bytes()).await, Ok(Some(_))) {
            out.push(id.clone());
        }
    }
    out
}

fn fail(shared: &Shared, c: Collection, e: &Error) {
    warn!(collection = %c, %e, "app-state sync failed");
    shared.emit(Event::AppStateSyncFailed { collection: c, error: e.to_string() });
}

/// Applies one collection's answer on `state`: its snapshot, then each newer patch, each
/// persisted in its own transaction before the next. Returns the version reached. The key
/// ids needed are collected into `keys_used` (for a key request on failure).
async fn apply_collection(
    shared: &Arc<Shared>,
    mut state: CollectionState,
    cs: &CollectionSync,
    keys_used: &mut BTreeSet<KeyId>,
) -> Result<u64> {
    let c = cs.collection;
    if let Some(reference) = &cs.snapshot {
        let plain = download(shared, reference).await?;
        let snapshot = decode_snapshot(&plain)?;
        let ids = required_snapshot_key_ids(&snapshot);
        keys_used.extend(ids.iter().cloned());
        let ring = key_ring(shared, &ids).await?;
        let applied = apply_snapshot(c, &snapshot, &ring)?;
        persist(shared, &applied, true).await?;
        effects(shared, &applied, true).await;
        state = applied.state;
    }
    for patch in &cs.patches {
        let version = patch.version.as_ref().and_then(|v| v.version).unwrap_or(0);
        if version <= state.version {
            continue;
        }
        let mut patch = patch.clone();
        if let Some(reference) = patch.external_mutations.clone() {
            let plain = download(shared, &reference).await?;
            attach_external_mutations(&mut patch, &plain)?;
        }
        let ids = required_key_ids(&patch);
        keys_used.extend(ids.iter().cloned());
        let ring = key_ring(shared, &ids).await?;
        let applied = apply_patch(&state, &patch, &ring)?;
        persist(shared, &applied, false).await?;
        effects(shared, &applied, false).await;
        state = applied.state;
    }
    Ok(state.version)
}

/// Downloads and decrypts an app-state blob from the media hosts ("WhatsApp App State Keys").
async fn download(shared: &Arc<Shared>, r: &ExternalBlobReference) -> Result<Vec<u8>> {
    let media_key: [u8; 32] = r
        .media_key
        .as_deref()
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| Error::Media("app-state blob reference without a 32-byte media key".into()))?;
    let reference = MediaRef {
        kind: MediaType::AppState,
        url: None,
        direct_path: r.direct_path.clone(),
        media_key,
        file_enc_sha256: r.file_enc_sha256.clone(),
        file_sha256: r.file_sha256.clone(),
        file_length: r.file_size_bytes,
    };
    Client { shared: shared.clone() }.download_ref(&reference).await
}

/// What an applied patch means beyond its own rows: events, and the side data other parts
/// of the client keep (the NCT salt for cs-tokens, phone-number ↔ LID pairs).
async fn effects(shared: &Shared, applied: &Applied, from_snapshot: bool) {
    let collection = applied.state.collection;
    for m in &applied.mutations {
        match &m.action {
            wa_appstate::Action::NctSalt { salt: Some(salt) }
                if m.operation == wa_appstate::Operation::Set =>
            {
                if let Err(e) = wa_store::NctSaltStore::save_nct_salt(&shared.store, salt).await {
                    warn!(%e, "NCT salt from app state not stored");
                }
            }
            wa_appstate::Action::Contact { jid, lid_jid: Some(lid), .. } => {
                if let (Ok(pn), Ok(lid)) = (jid.parse::<wa_binary::Jid>(), lid.parse::<wa_binary::Jid>())
                    && !pn.is_lid()
                    && lid.is_lid()
                    && let Err(e) = crate::lid::learn_jids(shared, &[(&lid, &pn)]).await
                {
                    warn!(%e, "LID of an app-state contact not stored");
                }
            }
            _ => {}
        }
        shared.emit(Event::AppState(Arc::new(AppStateEvent {
            collection,
            action: m.action.clone(),
            operation: m.operation,
            index: m.index.clone(),
            timestamp_ms: m.value.as_ref().and_then(|v| v.timestamp),
            from_snapshot,
        })));
    }
}
