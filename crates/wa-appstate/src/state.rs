//! The local state of one collection: a plain value the caller persists.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::error::AppStateError;
use crate::lthash::LtHash;

/// WhatsApp's five app-state collections. The name is part of every snapshot and patch MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Collection {
    /// Labels, quick replies, link-preview and other account settings.
    Regular,
    /// Archive, pin, mark read, star (in Baileys' table), lock, unarchive setting.
    RegularLow,
    /// Mute, delete and clear chat, delete message for me.
    RegularHigh,
    /// Push name, locale.
    CriticalBlock,
    /// Contacts.
    CriticalUnblockLow,
}

impl Collection {
    /// All five, in the order clients usually sync them.
    pub const ALL: [Collection; 5] = [
        Collection::CriticalBlock,
        Collection::CriticalUnblockLow,
        Collection::RegularHigh,
        Collection::Regular,
        Collection::RegularLow,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Collection::Regular => "regular",
            Collection::RegularLow => "regular_low",
            Collection::RegularHigh => "regular_high",
            Collection::CriticalBlock => "critical_block",
            Collection::CriticalUnblockLow => "critical_unblock_low",
        }
    }
}

impl fmt::Display for Collection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Collection {
    type Err = AppStateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Collection::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| AppStateError::UnknownCollection(s.to_owned()))
    }
}

/// Index MAC → value MAC of every live record.
pub type IndexValueMap = BTreeMap<[u8; 32], [u8; 32]>;

/// Everything a client keeps about one collection between syncs: its version, LTHash, and
/// the value MAC of each live index (needed to subtract a value when it is replaced or
/// removed). Applying a patch or snapshot never mutates one; it returns the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionState {
    /// Which collection.
    pub collection: Collection,
    /// The version of the last applied patch or snapshot (0: never synced).
    pub version: u64,
    /// The LTHash of the live value MACs.
    pub hash: LtHash,
    /// Index MAC → value MAC of every live record.
    pub index_value_macs: IndexValueMap,
}

impl CollectionState {
    /// A collection never synced: version 0, zero hash, no records.
    pub fn new(collection: Collection) -> Self {
        CollectionState { collection, version: 0, hash: LtHash::ZERO, index_value_macs: BTreeMap::new() }
    }

    /// Mixes one mutation's MACs into the hash and map, the step [`crate::apply_patch`]
    /// takes on its own copy after every check passed. For callers that build a state
    /// from MACs they already trust (and for tests); the version is not touched.
    pub fn mix(&mut self, operation: crate::Operation, index_mac: [u8; 32], value_mac: [u8; 32]) {
        mix(
            &mut self.hash,
            &mut self.index_value_macs,
            operation == crate::Operation::Remove,
            index_mac,
            value_mac,
        );
    }
}

/// The record-level changes of one patch, for a store that keeps the index → value MAC map
/// in its own table: upsert `set`, delete `removed` (deleting an absent row is a no-op), in
/// the same transaction as the new version and hash.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MacChanges {
    /// (index MAC, value MAC) to insert or replace.
    pub set: Vec<([u8; 32], [u8; 32])>,
    /// Index MACs to delete.
    pub removed: Vec<[u8; 32]>,
}

/// Mixes one mutation into a hash and map the way every client does: a SET subtracts the
/// value it replaces and adds its own; a REMOVE subtracts the stored value and drops the
/// index; a REMOVE of an unknown index changes nothing (WhatsApp Web and Baileys skip it
/// without an error; the snapshot MAC check after the patch still catches a real divergence).
pub(crate) fn mix(
    hash: &mut LtHash,
    map: &mut IndexValueMap,
    remove: bool,
    index_mac: [u8; 32],
    value_mac: [u8; 32],
) {
    if remove {
        if let Some(old) = map.remove(&index_mac) {
            hash.subtract(&old);
        }
    } else {
        if let Some(old) = map.insert(index_mac, value_mac) {
            hash.subtract(&old);
        }
        hash.add(&value_mac);
    }
}

/// The changes of the indexes a patch touched, read from the map after the patch.
pub(crate) fn changes_of(map: &IndexValueMap, touched: std::collections::BTreeSet<[u8; 32]>) -> MacChanges {
    let mut c = MacChanges::default();
    for i in touched {
        match map.get(&i) {
            Some(v) => c.set.push((i, *v)),
            None => c.removed.push(i),
        }
    }
    c
}
