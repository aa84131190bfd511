//! App-state sync ("syncd"): each account's five collections, kept by the server as the
//! patches devices uploaded, and by the phone as a `wa-appstate` state under its sync keys.
//!
//! - **Keys**: the phone makes one app-state sync key when first needed and shares it with
//!   every companion right after pairing, as a peer `protocolMessage` of type
//!   `APP_STATE_SYNC_KEY_SHARE` (whatsmeow `appstate.go` `handleAppStateSyncKeyShare`, Baileys
//!   `process-message.ts` `APP_STATE_SYNC_KEY_SHARE`); a companion's
//!   `APP_STATE_SYNC_KEY_REQUEST` is answered with a share of the keys it names that the phone
//!   holds (whatsmeow `appstate.go` `requestMissingAppStateKeys`, which the phone answers).
//! - **Fetch** (`<iq xmlns="w:sync:app:state" type="set"><sync><collection name version
//!   return_snapshot/>…`): one `<collection>` per requested one, in order. With
//!   `return_snapshot="true"` and a collection that has data, a `<snapshot>` holding an
//!   `ExternalBlobReference` to the encrypted `SyncdSnapshot` on the media host
//!   ("WhatsApp App State Keys", `md-app-state`; whatsmeow `appstate/decode.go`
//!   `parseSnapshotInternal`, Baileys `chat-utils.ts` `downloadExternalBlob`); otherwise the
//!   patches after the client's version, at most [`PATCHES_PER_RESPONSE`], with
//!   `has_more_patches="true"` when more wait (Baileys `chats.ts` `resyncAppState` loops on it).
//! - **Upload** (`<collection name version><patch>SyncdPatch</patch></collection>`): the patch
//!   must build on the server's current version (the client encodes it at `version + 1`);
//!   otherwise `<collection name type="error"><error code="409" text="conflict"/>` and nothing
//!   is stored (whatsmeow `appstate.go` `sendAppState` treats `type="error"` as
//!   `ErrAppStateUpdate`, refetches and retries once; chatwire `internal/appstate` classifies
//!   409 as a conflict). An accepted patch gets the next version, the phone applies it, and
//!   every other companion gets `<notification type="server_sync">` naming the new version
//!   (whatsmeow `notification.go` `handleAppStateNotification`).
//! - **Phone changes** (`phone_app_state_mutation` and its helpers): the phone encodes a patch
//!   under its newest key, the server stores it, companions get `server_sync`.
//!
//! The real server cannot read patches; here the phone (which holds the keys) makes the
//! snapshots, which is the only place a snapshot MAC can come from.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use prost::Message as _;
use rand_core::Rng;
use wa_appstate::{
    Collection, CollectionState, KeyId, KeyRing, MutationInput, SyncKey, apply_patch, encode_patch,
};
use wa_binary::{Node, Server};
use wa_proto::message::protocol_message::Type as ProtocolType;
use wa_proto::{SyncActionValue, SyncdPatch, SyncdRecord, SyncdSnapshot, SyncdVersion};

use crate::phone::pad;
use crate::world::{AccountId, ControlError, DeviceAddr, World, WorldEvent, attr, server_jid};

/// Patches in one fetch answer before `has_more_patches` (WhatsApp Web pages long histories;
/// the exact page size is not public, the paging is what clients must handle).
pub const PATCHES_PER_RESPONSE: usize = 50;

/// One collection as the server and the phone keep it.
#[derive(Debug, Clone)]
pub(crate) struct StoredCollection {
    /// The phone's state: version, LTHash, index → value MACs.
    pub state: CollectionState,
    /// Every patch the server accepted, version `i + 1` at `i`.
    pub patches: Vec<SyncdPatch>,
    /// The live records, index MAC → record: what a snapshot lists.
    pub records: BTreeMap<[u8; 32], SyncdRecord>,
    /// The phone's decoded view: index → value.
    pub values: BTreeMap<Vec<String>, SyncActionValue>,
}

impl StoredCollection {
    fn new(c: Collection) -> Self {
        StoredCollection {
            state: CollectionState::new(c),
            patches: Vec::new(),
            records: BTreeMap::new(),
            values: BTreeMap::new(),
        }
    }
}

/// An account's app state: the phone's keys and the five collections.
#[derive(Debug, Clone, Default)]
pub(crate) struct AccountAppState {
    /// The phone's sync keys, oldest first; the last one encodes its patches.
    pub keys: Vec<SyncKey>,
    pub ring: KeyRing,
    pub collections: HashMap<Collection, StoredCollection>,
    /// Companions the keys were shared with.
    pub shared_with: BTreeSet<u16>,
    /// Test-only misbehaviour: the next patch served of these collections is corrupted.
    pub tamper_next: BTreeSet<Collection>,
    /// Test-only race: the phone's changes made just before a companion's next upload to
    /// their collection lands (see [`World::phone_change_before_next_upload`]).
    pub race_next_upload: Vec<Vec<MutationInput>>,
}

impl AccountAppState {
    fn collection(&mut self, c: Collection) -> &mut StoredCollection {
        self.collections.entry(c).or_insert_with(|| StoredCollection::new(c))
    }
}

fn parse_collection(name: &str) -> Result<Collection, ControlError> {
    name.parse::<Collection>().map_err(|_| ControlError::UnknownCollection(name.to_owned()))
}

impl World {
    /// The account's app state, its phone's first key made if it has none.
    fn app_state_mut(&mut self, account: AccountId) -> &mut AccountAppState {
        let needs_key = self.traffic.app_state.get(&account).is_none_or(|s| s.keys.is_empty());
        if needs_key {
            let mut data = [0u8; 32];
            self.rng.fill_bytes(&mut data);
            let mut id = [0u8; 6];
            self.rng.fill_bytes(&mut id[4..]);
            let key = SyncKey { id: KeyId(id.to_vec()), data, timestamp: Some(self.now() as i64 * 1000) };
            let s = self.traffic.app_state.entry(account).or_default();
            s.ring.insert(&key.id, &key.data);
            s.keys.push(key);
        }
        self.traffic.app_state.entry(account).or_default()
    }

    /// The phone shares its app-state keys with a companion that just paired (or asked for
    /// them): a peer `APP_STATE_SYNC_KEY_SHARE` (whatsmeow `appstate.go`
    /// `handleAppStateSyncKeyShare` is the receiving side). `only` limits the share to the
    /// key ids named (a key request); keys the phone does not hold are left out.
    pub(crate) fn phone_share_app_state_keys(
        &mut self,
        account: AccountId,
        device: u16,
        only: Option<&[Vec<u8>]>,
    ) -> Result<usize, ControlError> {
        let now_ms = self.now() as i64 * 1000;
        let key_indexes: Vec<u32> = self.accounts[account].devices.values().map(|d| d.key_index).collect();
        let s = self.app_state_mut(account);
        let keys: Vec<wa_proto::message::AppStateSyncKey> = s
            .keys
            .iter()
            .filter(|k| only.is_none_or(|ids| ids.iter().any(|i| i == k.id.as_bytes())))
            .map(|k| wa_proto::message::AppStateSyncKey {
                key_id: Some(wa_proto::message::AppStateSyncKeyId { key_id: Some(k.id.0.clone()) }),
                key_data: Some(wa_proto::message::AppStateSyncKeyData {
                    key_data: Some(k.data.to_vec()),
                    fingerprint: Some(wa_proto::message::AppStateSyncKeyFingerprint {
                        raw_id: Some(u32::from_be_bytes([0, 0, k.id.0[4], k.id.0[5]])),
                        current_index: Some(0),
                        device_indexes: key_indexes.clone(),
                    }),
                    timestamp: Some(k.timestamp.unwrap_or(now_ms)),
                }),
            })
            .collect();
        s.shared_with.insert(device);
        let count = keys.len();
        let message = wa_proto::Message {
            protocol_message: Some(Box::new(wa_proto::message::ProtocolMessage {
                r#type: Some(ProtocolType::AppStateSyncKeyShare as i32),
                app_state_sync_key_share: Some(wa_proto::message::AppStateSyncKeyShare { keys }),
                ..Default::default()
            })),
            ..Default::default()
        };
        self.phone_send_peer(account, device, &message)?;
        let pn = self.accounts[account].pn.clone();
        self.emit(WorldEvent::AppStateKeysShared { pn, device, keys: count });
        Ok(count)
    }

    /// A peer message from the phone to one of its companions (`category="peer"`, as the
    /// phone's placeholder-resend answers in `resend`).
    pub(crate) fn phone_send_peer(
        &mut self,
        account: AccountId,
        device: u16,
        message: &wa_proto::Message,
    ) -> Result<String, ControlError> {
        let to = DeviceAddr { account, device };
        let plain = pad(message.encode_to_vec(), &mut self.rng);
        let enc = self.phone_encrypt(account, to, &plain)?;
        let id = self.new_message_id();
        let phone = DeviceAddr { account, device: 0 };
        self.sent_by.insert(id.clone(), phone);
        let node = Node::new("message")
            .attr("from", self.device_jid(phone, Server::Pn))
            .attr("id", id.as_str())
            .attr("t", self.now())
            .attr("type", "protocol")
            .attr("category", "peer")
            .children([enc]);
        self.deliver(to, node);
        Ok(id)
    }

    /// The phone makes a change to its app state (archive a chat, name a contact, …): it
    /// encodes a patch under its newest key, the server stores it at the next version, and
    /// every companion hears `server_sync`. Returns the collection's new version.
    pub fn phone_app_state_mutation(
        &mut self,
        account: AccountId,
        mutations: &[MutationInput],
    ) -> Result<u64, ControlError> {
        let Some(first) = mutations.first() else {
            return Err(ControlError::BadAppState("a patch needs at least one mutation".into()));
        };
        let collection = first.collection;
        let mut inputs = Vec::with_capacity(mutations.len());
        for m in mutations {
            let mut iv = [0u8; 16];
            self.rng.fill_bytes(&mut iv);
            inputs.push((m.clone(), iv));
        }
        let s = self.app_state_mut(account);
        let key_id = s.keys.last().map(|k| k.id.clone()).unwrap_or_default();
        let c = s.collections.entry(collection).or_insert_with(|| StoredCollection::new(collection));
        let encoded = encode_patch(&c.state, &inputs, &key_id, &s.ring)
            .map_err(|e| ControlError::BadAppState(e.to_string()))?;
        let mut patch = encoded.patch;
        let version = encoded.applied.state.version;
        patch.version = Some(SyncdVersion { version: Some(version) });
        store_patch(c, patch);
        for m in &encoded.applied.mutations {
            record_value(c, m);
        }
        c.state = encoded.applied.state;
        self.notify_server_sync(account, &[(collection, version)], None);
        Ok(version)
    }

    /// A change the emulator does not model in content: each named collection gets a patch
    /// with no mutations (valid, MACs and all), and companions hear `server_sync`
    /// (whatsmeow `notification.go` `handleAppStateNotification`, Baileys `messages-recv.ts`
    /// `server_sync`). Returns each collection's new version.
    pub fn phone_change_app_state(
        &mut self,
        account: AccountId,
        collections: &[&str],
    ) -> Result<Vec<(String, u64)>, ControlError> {
        let parsed = collections.iter().map(|c| parse_collection(c)).collect::<Result<Vec<_>, _>>()?;
        let mut changed = Vec::new();
        for collection in parsed {
            let s = self.app_state_mut(account);
            let key_id = s.keys.last().map(|k| k.id.clone()).unwrap_or_default();
            let c = s.collections.entry(collection).or_insert_with(|| StoredCollection::new(collection));
            let encoded = encode_patch(&c.state, &[], &key_id, &s.ring)
                .map_err(|e| ControlError::BadAppState(e.to_string()))?;
            let mut patch = encoded.patch;
            let version = encoded.applied.state.version;
            patch.version = Some(SyncdVersion { version: Some(version) });
            store_patch(c, patch);
            c.state = encoded.applied.state;
            changed.push((collection, version));
        }
        self.notify_server_sync(account, &changed, None);
        Ok(changed.into_iter().map(|(c, v)| (c.as_str().to_owned(), v)).collect())
    }

    /// `<notification type="server_sync"><collection name version/>…</notification>` to the
    /// account's companions, but `except` (the device that made the change).
    fn notify_server_sync(&mut self, account: AccountId, changed: &[(Collection, u64)], except: Option<u16>) {
        let children =
            changed.iter().map(|(c, v)| Node::new("collection").attr("name", c.as_str()).attr("version", *v));
        let note = self.notification("server_sync", server_jid(), children.collect());
        for c in self.companions_of(account) {
            if Some(c.device) != except {
                self.deliver(c, note.clone());
            }
        }
    }

    /// The value the phone holds at an app-state index (e.g. `["archive", chat]`), if live.
    pub fn app_state_value(&self, account: AccountId, index: &[&str]) -> Option<SyncActionValue> {
        let s = self.traffic.app_state.get(&account)?;
        let index: Vec<String> = index.iter().map(|s| (*s).to_owned()).collect();
        s.collections.values().find_map(|c| c.values.get(&index).cloned())
    }

    /// A collection's version on the server (0: never written).
    pub fn app_state_version(&self, account: AccountId, collection: &str) -> u64 {
        let Ok(c) = collection.parse::<Collection>() else { return 0 };
        self.traffic
            .app_state
            .get(&account)
            .and_then(|s| s.collections.get(&c))
            .map_or(0, |c| c.state.version)
    }

    /// The phone's LTHash of a collection at its current version: what a companion's stored
    /// state must hash to once it reached that version (`None`: never written).
    pub fn app_state_hash(&self, account: AccountId, collection: &str) -> Option<[u8; 128]> {
        let c = collection.parse::<Collection>().ok()?;
        self.traffic.app_state.get(&account)?.collections.get(&c).map(|c| c.state.hash.0)
    }

    /// Test-only misbehaviour (not a leniency): the next patch the server serves of
    /// `collection` has one byte of its first record's value flipped, so its MACs fail on
    /// every client. Clients must recover by fetching a snapshot.
    pub fn tamper_next_app_state_patch(
        &mut self,
        account: AccountId,
        collection: &str,
    ) -> Result<(), ControlError> {
        let c = parse_collection(collection)?;
        self.app_state_mut(account).tamper_next.insert(c);
        Ok(())
    }

    /// Test-only race (not a leniency): the phone makes `mutations` (one patch) just before
    /// the next patch a companion uploads to their collection reaches the server, so that
    /// upload builds on a version that is no longer the newest and is refused with 409, as
    /// when two devices change the same collection at once. Clients must fetch and send again.
    pub fn phone_change_before_next_upload(
        &mut self,
        account: AccountId,
        mutations: Vec<MutationInput>,
    ) -> Result<(), ControlError> {
        if mutations.is_empty() {
            return Err(ControlError::BadAppState("a patch needs at least one mutation".into()));
        }
        self.app_state_mut(account).race_next_upload.push(mutations);
        Ok(())
    }

    /// The phone makes a new sync key that it does not share (the way a companion ends up
    /// missing a key: whatsmeow `appstate.go` `requestMissingAppStateKeys`); later patches use
    /// it, and a companion must ask for it with `APP_STATE_SYNC_KEY_REQUEST`.
    pub fn phone_rotate_app_state_key_unshared(&mut self, account: AccountId) -> KeyId {
        let mut data = [0u8; 32];
        self.rng.fill_bytes(&mut data);
        let mut id = [0u8; 6];
        self.rng.fill_bytes(&mut id[4..]);
        let key = SyncKey { id: KeyId(id.to_vec()), data, timestamp: Some(self.now() as i64 * 1000) };
        let s = self.app_state_mut(account);
        s.ring.insert(&key.id, &key.data);
        s.keys.push(key.clone());
        key.id
    }

    /// Test-only misbehaviour: the phone loses a sync key (its patches stay on the server), so
    /// a companion that asks for it gets a share without it. Returns whether it held the key.
    pub fn phone_forget_app_state_key(&mut self, account: AccountId, key: &KeyId) -> bool {
        let s = self.app_state_mut(account);
        let before = s.keys.len();
        s.keys.retain(|k| k.id != *key);
        let mut ring = KeyRing::new();
        for k in &s.keys {
            ring.insert(&k.id, &k.data);
        }
        s.ring = ring;
        s.keys.len() != before
    }

    /// A companion's key request reached the phone: it answers with the keys it holds.
    pub(crate) fn phone_answer_key_request(&mut self, account: AccountId, device: u16, ids: &[Vec<u8>]) {
        if let Err(e) = self.phone_share_app_state_keys(account, device, Some(ids)) {
            tracing::warn!(error = %e, "phone cannot answer an app-state key request");
        }
    }

    /// `<iq xmlns="w:sync:app:state" type="set"><sync>…` from a logged-in device.
    pub(crate) fn on_app_state_sync(&mut self, from: DeviceAddr, iq: &Node) -> Node {
        let Some(sync) = iq.child("sync") else {
            return self.iq_error(iq, 400, "bad-request");
        };
        let mut requests = Vec::new();
        for c in sync.children_by_tag("collection") {
            let Ok(collection) = attr(c, "name").parse::<Collection>() else {
                return self.iq_error(iq, 400, "bad-request");
            };
            let snapshot = attr(c, "return_snapshot") == "true";
            let version = match attr(c, "version").as_str() {
                "" if snapshot => 0,
                v => match v.parse::<u64>() {
                    Ok(v) => v,
                    Err(_) => return self.iq_error(iq, 400, "bad-request"),
                },
            };
            let mut patches = Vec::new();
            for p in c.children_by_tag("patch") {
                match p.content_bytes().map(SyncdPatch::decode) {
                    Some(Ok(p)) => patches.push(p),
                    _ => return self.iq_error(iq, 400, "bad-request"),
                }
            }
            requests.push((collection, version, snapshot, patches));
        }
        let mut answers = Vec::new();
        for (collection, version, snapshot, patches) in requests {
            let answer = if patches.is_empty() {
                self.serve_collection(from.account, collection, version, snapshot)
            } else {
                self.accept_patches(from, collection, version, patches)
            };
            answers.push(answer);
        }
        self.iq_result(iq).children([Node::new("sync").children(answers)])
    }

    fn serve_collection(
        &mut self,
        account: AccountId,
        collection: Collection,
        from: u64,
        snapshot: bool,
    ) -> Node {
        let node = Node::new("collection").attr("name", collection.as_str());
        let s = self.app_state_mut(account);
        let key_id = s.keys.last().map(|k| k.id.clone()).unwrap_or_default();
        let snapshot_key = s.ring.get(key_id.as_bytes()).map(|k| k.snapshot_mac);
        let c = s.collection(collection);
        let current = c.state.version;
        if snapshot && current > 0 {
            let Some(snapshot_key) = snapshot_key else {
                return node.attr("type", "error").children([error_node(500, "internal-server-error")]);
            };
            let mac = wa_appstate::patch::snapshot_mac(&c.state.hash, current, collection, &snapshot_key);
            let snap = SyncdSnapshot {
                version: Some(SyncdVersion { version: Some(current) }),
                records: c.records.values().cloned().collect(),
                mac: Some(mac.to_vec()),
                key_id: Some(wa_proto::KeyId { id: Some(key_id.0.clone()) }),
            };
            let reference = self.store_app_state_blob(&snap.encode_to_vec());
            return node
                .attr("version", current)
                .children([Node::new("snapshot").bytes(reference.encode_to_vec())]);
        }
        if from > current {
            // A version the server never gave out (whatsmeow `appstate.go` then fetches a
            // snapshot; a 404 is what WhatsApp Web treats as "start over" for a collection).
            return node.attr("type", "error").children([error_node(404, "item-not-found")]);
        }
        let start = usize::try_from(from).unwrap_or(usize::MAX);
        let end = c.patches.len().min(start.saturating_add(PATCHES_PER_RESPONSE));
        let mut served: Vec<SyncdPatch> = c.patches.get(start..end).unwrap_or_default().to_vec();
        let has_more = end < c.patches.len();
        let version = served.last().and_then(|p| p.version.as_ref()).and_then(|v| v.version).unwrap_or(from);
        if !served.is_empty() && self.app_state_mut(account).tamper_next.remove(&collection) {
            tamper(&mut served[0]);
        }
        let patch_nodes = served.iter().map(|p| Node::new("patch").bytes(p.encode_to_vec()));
        let mut node = node.attr("version", version);
        if has_more {
            node = node.attr("has_more_patches", "true");
        }
        node.children([Node::new("patches").children(patch_nodes.collect::<Vec<_>>())])
    }

    /// Patches a companion uploads: each must build on the current version.
    fn accept_patches(
        &mut self,
        from: DeviceAddr,
        collection: Collection,
        version: u64,
        patches: Vec<SyncdPatch>,
    ) -> Node {
        let node = Node::new("collection").attr("name", collection.as_str());
        let pn = self.accounts[from.account].pn.clone();
        let s = self.app_state_mut(from.account);
        let raced =
            s.race_next_upload.iter().position(|m| m.first().is_some_and(|m| m.collection == collection));
        if let Some(i) = raced {
            let mutations = s.race_next_upload.remove(i);
            if let Err(e) = self.phone_app_state_mutation(from.account, &mutations) {
                tracing::warn!(error = %e, "the phone's racing change failed");
            }
        }
        let s = self.app_state_mut(from.account);
        let current = s.collection(collection).state.version;
        if version != current {
            self.emit(WorldEvent::AppStatePatchRefused {
                pn,
                device: from.device,
                collection: collection.as_str().to_owned(),
                code: 409,
            });
            return node.attr("type", "error").children([error_node(409, "conflict")]);
        }
        let mut v = current;
        for mut patch in patches {
            v += 1;
            patch.version = Some(SyncdVersion { version: Some(v) });
            let s = self.app_state_mut(from.account);
            let ring = s.ring.clone();
            let c = s.collection(collection);
            // The phone applies the companion's patch like any other device would.
            match apply_patch(&c.state, &patch, &ring) {
                Ok(applied) => {
                    for m in &applied.mutations {
                        record_value(c, m);
                    }
                    c.state = applied.state;
                }
                Err(e) => {
                    tracing::warn!(error = %e, %collection, "the phone cannot apply a companion's patch");
                    c.state.version = v;
                }
            }
            store_patch(c, patch);
            self.emit(WorldEvent::AppStatePatchAccepted {
                pn: pn.clone(),
                device: from.device,
                collection: collection.as_str().to_owned(),
                version: v,
            });
        }
        self.notify_server_sync(from.account, &[(collection, v)], Some(from.device));
        node.attr("version", v)
    }

    /// Encrypts an app-state blob (a snapshot) and puts it on the media host under
    /// `md-app-state`; returns the reference a client downloads it by.
    fn store_app_state_blob(&mut self, plain: &[u8]) -> wa_proto::ExternalBlobReference {
        let mut media_key = [0u8; 32];
        self.rng.fill_bytes(&mut media_key);
        let enc = wa_crypto::media::encrypt(&media_key, wa_crypto::media::APP_STATE_INFO, plain);
        let token = URL_SAFE_NO_PAD.encode(enc.file_enc_sha256);
        let (direct_path, _url) = self.store_media("md-app-state", &token, enc.blob);
        wa_proto::ExternalBlobReference {
            media_key: Some(media_key.to_vec()),
            direct_path: Some(direct_path),
            handle: None,
            file_size_bytes: Some(enc.file_length),
            file_sha256: Some(enc.file_sha256.to_vec()),
            file_enc_sha256: Some(enc.file_enc_sha256.to_vec()),
        }
    }
}

fn error_node(code: u16, text: &str) -> Node {
    Node::new("error").attr("code", code).attr("text", text)
}

/// Stores an accepted patch and its records (a SET replaces the record at its index MAC, a
/// REMOVE drops it), the server's whole job.
fn store_patch(c: &mut StoredCollection, patch: SyncdPatch) {
    for m in &patch.mutations {
        let Some(record) = &m.record else { continue };
        let Some(index) =
            record.index.as_ref().and_then(|i| i.blob.as_deref()).and_then(|b| <[u8; 32]>::try_from(b).ok())
        else {
            continue;
        };
        if m.operation == Some(wa_appstate::Operation::Remove.to_proto()) {
            c.records.remove(&index);
        } else {
            c.records.insert(index, record.clone());
        }
    }
    c.patches.push(patch);
}

fn record_value(c: &mut StoredCollection, m: &wa_appstate::DecodedMutation) {
    match (m.operation, &m.value) {
        (wa_appstate::Operation::Set, Some(v)) => {
            c.values.insert(m.index.clone(), v.clone());
        }
        _ => {
            c.values.remove(&m.index);
        }
    }
}

/// Flips a byte inside the first record's value (its MAC then fails), or of the patch MAC
/// when the patch has no records.
fn tamper(p: &mut SyncdPatch) {
    if let Some(blob) = p
        .mutations
        .first_mut()
        .and_then(|m| m.record.as_mut())
        .and_then(|r| r.value.as_mut())
        .and_then(|v| v.blob.as_mut())
        .filter(|b| b.len() > 20)
    {
        blob[20] ^= 1;
    } else if let Some(mac) = p.patch_mac.as_mut().filter(|m| !m.is_empty()) {
        mac[0] ^= 1;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn request(collections: Vec<Node>) -> Node {
        Node::new("iq")
            .attr("id", "q1")
            .attr("xmlns", "w:sync:app:state")
            .attr("type", "set")
            .children([Node::new("sync").children(collections)])
    }

    fn dev() -> DeviceAddr {
        DeviceAddr { account: 0, device: 1 }
    }

    fn collections(r: &Node) -> Vec<Node> {
        r.child("sync").expect("<sync>").children_by_tag("collection").cloned().collect()
    }

    #[test]
    fn every_requested_collection_is_answered_in_order() {
        let (mut w, _) = crate::testutil::world(1);
        let req = request(vec![
            Node::new("collection").attr("name", "critical_block").attr("return_snapshot", "true"),
            Node::new("collection")
                .attr("name", "regular_high")
                .attr("version", "0")
                .attr("return_snapshot", "false"),
        ]);
        let r = w.on_app_state_sync(dev(), &req);
        assert_eq!((attr(&r, "type"), attr(&r, "id")), ("result".to_owned(), "q1".to_owned()));
        let got: Vec<(String, String)> =
            collections(&r).iter().map(|c| (attr(c, "name"), attr(c, "version"))).collect();
        assert_eq!(got, vec![("critical_block".into(), "0".into()), ("regular_high".into(), "0".into())]);
    }

    #[test]
    fn malformed_requests_are_refused() {
        let (mut w, _) = crate::testutil::world(1);
        for bad in [
            Node::new("iq").attr("id", "q"),
            request(vec![Node::new("collection").attr("version", "1")]),
            request(vec![Node::new("collection").attr("name", "regular").attr("version", "x")]),
            request(vec![Node::new("collection").attr("name", "contacts").attr("version", "1")]),
        ] {
            let r = w.on_app_state_sync(dev(), &bad);
            assert_eq!(attr(&r, "type"), "error", "{bad:?}");
            assert_eq!(r.child("error").map(|e| attr(e, "code")).as_deref(), Some("400"));
        }
    }

    #[test]
    fn phone_changes_are_served_as_patches_then_as_a_snapshot() {
        let (mut w, _) = crate::testutil::world(1);
        let chat = "15550001111@s.whatsapp.net";
        let v =
            w.phone_app_state_mutation(0, &[wa_appstate::action::archive(chat, true, &[], 1000)]).unwrap();
        assert_eq!(v, 1);
        w.phone_app_state_mutation(0, &[wa_appstate::action::pin(chat, true, 2000)]).unwrap();
        let archived = w.app_state_value(0, &["archive", chat]).unwrap();
        assert_eq!(archived.archive_chat_action.unwrap().archived, Some(true));

        // Patches after version 1: the second one only.
        let r = w.on_app_state_sync(
            dev(),
            &request(vec![Node::new("collection").attr("name", "regular_low").attr("version", "1")]),
        );
        let c = &collections(&r)[0];
        assert_eq!(attr(c, "version"), "2");
        let patches: Vec<SyncdPatch> = c
            .child("patches")
            .unwrap()
            .children_by_tag("patch")
            .map(|p| SyncdPatch::decode(p.content_bytes().unwrap()).unwrap())
            .collect();
        assert_eq!(patches.len(), 1);
        assert_eq!(patches[0].version.as_ref().unwrap().version, Some(2));

        // A snapshot: an encrypted blob on the media host that verifies under the phone's key.
        let r = w.on_app_state_sync(
            dev(),
            &request(vec![
                Node::new("collection").attr("name", "regular_low").attr("return_snapshot", "true"),
            ]),
        );
        let c = &collections(&r)[0];
        let reference =
            wa_proto::ExternalBlobReference::decode(c.child("snapshot").unwrap().content_bytes().unwrap())
                .unwrap();
        let blob = w.media_blob(reference.direct_path.as_deref().unwrap()).unwrap().to_vec();
        let plain = wa_appstate::decrypt_external_blob(&reference, &blob).unwrap();
        let snapshot = wa_appstate::decode_snapshot(&plain).unwrap();
        let ring = w.traffic.app_state[&0].ring.clone();
        let applied = wa_appstate::apply_snapshot(Collection::RegularLow, &snapshot, &ring).unwrap();
        assert_eq!(applied.state.version, 2);
        assert_eq!(applied.mutations.len(), 2);
    }

    #[test]
    fn a_patch_on_a_stale_version_is_a_conflict_and_stores_nothing() {
        let (mut w, _) = crate::testutil::world(1);
        w.phone_app_state_mutation(0, &[wa_appstate::action::pin("1@s.whatsapp.net", true, 1)]).unwrap();
        let s = w.traffic.app_state[&0].clone();
        let key = s.keys.last().unwrap().id.clone();
        // A companion that never synced encodes on version 0.
        let stale = CollectionState::new(Collection::RegularLow);
        let input = wa_appstate::action::mark_read("1@s.whatsapp.net", true, &[], 5);
        let p = encode_patch(&stale, &[(input.clone(), [7; 16])], &key, &s.ring).unwrap();
        let upload = |version: u64, bytes: Vec<u8>| {
            request(vec![
                Node::new("collection")
                    .attr("name", "regular_low")
                    .attr("version", version)
                    .attr("return_snapshot", "false")
                    .children([Node::new("patch").bytes(bytes)]),
            ])
        };
        let r = w.on_app_state_sync(dev(), &upload(0, p.bytes));
        let c = &collections(&r)[0];
        assert_eq!(attr(c, "type"), "error");
        assert_eq!(c.child("error").map(|e| attr(e, "code")).as_deref(), Some("409"));
        assert_eq!(w.app_state_version(0, "regular_low"), 1);

        // Encoded on the current state: accepted as version 2, and the phone sees it.
        let current = s.collections[&Collection::RegularLow].state.clone();
        let p = encode_patch(&current, &[(input, [7; 16])], &key, &s.ring).unwrap();
        let r = w.on_app_state_sync(dev(), &upload(1, p.bytes));
        assert_eq!(attr(&collections(&r)[0], "version"), "2");
        let read = w.app_state_value(0, &["markChatAsRead", "1@s.whatsapp.net"]).unwrap();
        assert_eq!(read.mark_chat_as_read_action.unwrap().read, Some(true));
        assert_eq!(w.traffic.app_state[&0].collections[&Collection::RegularLow].state.version, 2);
    }
}
