//! Reading a collection's state and keys from the store, and writing one applied patch or
//! snapshot as one transaction.

use std::collections::BTreeSet;

use prost::Message as _;
use wa_appstate::{Applied, Collection, CollectionState, KeyId, KeyRing, LtHash, Operation};
use wa_store::{AppStateStore, AppStateVersion};

use crate::client::Shared;
use crate::error::{Error, Result};

/// The stored state of a collection (version 0 and no records if never synced).
pub(crate) async fn load_state(shared: &Shared, c: Collection) -> Result<CollectionState> {
    let mut state = CollectionState::new(c);
    if let Some(v) = shared.store.get_app_state_version(c.as_str()).await? {
        state.version = v.version;
        state.hash = LtHash(v.hash);
    }
    for (index, value) in shared.store.app_state_macs(c.as_str()).await? {
        let (Ok(index), Ok(value)) = (<[u8; 32]>::try_from(index), <[u8; 32]>::try_from(value)) else {
            return Err(Error::CorruptStore(format!("{c}: a mutation MAC is not 32 bytes")));
        };
        state.index_value_macs.insert(index, value);
    }
    Ok(state)
}

/// A key ring with every stored key of `ids` (absent ones are left out: applying then fails
/// with `MissingKey`, naming the key to request).
pub(crate) async fn key_ring(shared: &Shared, ids: &BTreeSet<KeyId>) -> Result<KeyRing> {
    let mut ring = KeyRing::new();
    for id in ids {
        if let Some(k) = shared.store.get_app_state_sync_key(id.as_bytes()).await? {
            ring.insert(id, &k.key_data);
        }
    }
    Ok(ring)
}

/// The key our own patches are encoded with: the newest the phone shared (Baileys keeps the
/// last key of the latest share, whatsmeow `GetLatestAppStateSyncKeyID` the newest by time).
pub(crate) async fn newest_key(shared: &Shared) -> Result<Option<(KeyId, KeyRing)>> {
    let keys = shared.store.app_state_sync_keys().await?;
    let Some((id, key)) = keys.into_iter().max_by_key(|(_, k)| k.timestamp) else { return Ok(None) };
    let id = KeyId(id);
    let mut ring = KeyRing::new();
    ring.insert(&id, &key.key_data);
    Ok(Some((id, ring)))
}

/// The key of a value row: the index as the JSON WhatsApp MACs it.
pub(crate) fn index_key<S: AsRef<str>>(index: &[S]) -> String {
    String::from_utf8_lossy(&wa_appstate::index::encode_index(index)).into_owned()
}

/// Writes an applied patch (or, `snapshot`, a whole collection replacing the stored one):
/// version and LTHash, the changed MAC rows and the values, in one transaction.
pub(crate) async fn persist(shared: &Shared, applied: &Applied, snapshot: bool) -> Result<()> {
    let c = applied.state.collection.as_str();
    let mut tx = shared.store.transaction();
    if snapshot {
        tx.reset_app_state(c);
    }
    tx.put_app_state_version(
        c,
        &AppStateVersion { version: applied.state.version, hash: applied.state.hash.0 },
    );
    let set: Vec<(Vec<u8>, Vec<u8>)> =
        applied.changes.set.iter().map(|(i, v)| (i.to_vec(), v.to_vec())).collect();
    tx.put_mutation_macs(c, &set);
    let removed: Vec<Vec<u8>> = applied.changes.removed.iter().map(|i| i.to_vec()).collect();
    tx.delete_mutation_macs(c, &removed);
    for m in &applied.mutations {
        let key = index_key(&m.index);
        match (m.operation, &m.value) {
            (Operation::Set, Some(v)) => tx.put_app_state_value(c, &key, &v.encode_to_vec()),
            _ => tx.delete_app_state_value(c, &key),
        };
    }
    tx.commit().await?;
    Ok(())
}
