//! Domain traits: what the client layers need from storage, one trait per concern.
//!
//! [`DeviceStore`] implements all of them over any [`crate::Backend`]; an application can also
//! implement a subset itself (e.g. a cache in front of ours). Writes that must be atomic
//! together are also available on [`Transaction`].

use std::future::Future;

use crate::backend::{RowKey, Scan, Table};
use crate::error::{Error, Result};
use crate::store::{DeviceStore, Transaction};
use crate::types::{
    AppStateSyncKey, AppStateVersion, CachedAppVersion, Credentials, DeviceList, IdentityChange,
    InboundMessage, KeyPair, PreKey, PreKeyCounts, PrivacyToken, ProtocolAddress, SentMessage, SignedPreKey,
    decode_device_list, decode_inbound, encode_device_list, encode_inbound,
};

/// The account's own credentials.
pub trait CredentialStore {
    /// Loads the credentials, `None` before the first save.
    fn load_credentials(&self) -> impl Future<Output = Result<Option<Credentials>>> + Send;
    /// Saves (replaces) the credentials.
    fn save_credentials(&self, creds: &Credentials) -> impl Future<Output = Result<()>> + Send;
}

/// The WhatsApp Web version the client last fetched, kept across restarts.
pub trait AppVersionStore {
    /// The cached version, `None` before the first save.
    fn load_app_version(&self) -> impl Future<Output = Result<Option<CachedAppVersion>>> + Send;
    /// Saves (replaces) the cached version.
    fn save_app_version(&self, v: &CachedAppVersion) -> impl Future<Output = Result<()>> + Send;
}

/// Peers' identity keys.
pub trait IdentityStore {
    /// The identity key stored for an address.
    fn get_identity(&self, addr: &ProtocolAddress) -> impl Future<Output = Result<Option<[u8; 32]>>> + Send;
    /// Stores an identity key, saying whether it was new, the same, or replaced another.
    fn save_identity(
        &self,
        addr: &ProtocolAddress,
        key: [u8; 32],
    ) -> impl Future<Output = Result<IdentityChange>> + Send;
    /// Forgets an identity.
    fn delete_identity(&self, addr: &ProtocolAddress) -> impl Future<Output = Result<()>> + Send;
    /// Forgets the identities of every device of a user (its identity changed).
    fn delete_user_identities(&self, name: &str) -> impl Future<Output = Result<()>> + Send;
}

/// Signal sessions as opaque records.
pub trait SessionStore {
    /// Loads several sessions at once, in the order asked.
    fn get_sessions(
        &self,
        addrs: &[ProtocolAddress],
    ) -> impl Future<Output = Result<Vec<Option<Vec<u8>>>>> + Send;
    /// Stores several sessions atomically.
    fn put_sessions(
        &self,
        sessions: &[(ProtocolAddress, Vec<u8>)],
    ) -> impl Future<Output = Result<()>> + Send;
    /// Deletes one session.
    fn delete_session(&self, addr: &ProtocolAddress) -> impl Future<Output = Result<()>> + Send;
    /// Deletes the sessions of every device of a user.
    fn delete_user_sessions(&self, name: &str) -> impl Future<Output = Result<()>> + Send;
    /// Moves the sessions and identity keys of every device of user `from` to user `to`
    /// atomically (a contact's phone-number address to its LID address, once the mapping is
    /// known), replacing what `to` held for the same device; returns how many sessions moved.
    fn migrate_user(&self, from: &str, to: &str) -> impl Future<Output = Result<u32>> + Send;
}

/// One-time prekeys.
pub trait PreKeyStore {
    /// Allocates `count` fresh ids, asks `keygen` for a key pair for each, and stores them.
    fn generate_pre_keys(
        &self,
        count: u32,
        keygen: &mut (dyn FnMut() -> KeyPair + Send),
    ) -> impl Future<Output = Result<Vec<PreKey>>> + Send;
    /// A prekey that is fresh, uploaded, or consumed but within its grace period.
    fn get_pre_key(&self, id: u32) -> impl Future<Output = Result<Option<PreKey>>> + Send;
    /// Prekeys not yet uploaded, lowest id first.
    fn unuploaded_pre_keys(&self, limit: u32) -> impl Future<Output = Result<Vec<PreKey>>> + Send;
    /// Marks prekeys as uploaded.
    fn mark_pre_keys_uploaded(&self, ids: &[u32]) -> impl Future<Output = Result<()>> + Send;
    /// Marks a prekey consumed (kept for the grace period) and returns it.
    fn consume_pre_key(&self, id: u32) -> impl Future<Output = Result<Option<PreKey>>> + Send;
    /// Counts by state.
    fn pre_key_counts(&self) -> impl Future<Output = Result<PreKeyCounts>> + Send;
}

/// Signed prekeys.
pub trait SignedPreKeyStore {
    /// One signed prekey.
    fn get_signed_pre_key(&self, id: u32) -> impl Future<Output = Result<Option<SignedPreKey>>> + Send;
    /// Stores a signed prekey.
    fn put_signed_pre_key(&self, key: &SignedPreKey) -> impl Future<Output = Result<()>> + Send;
    /// All signed prekeys, by id.
    fn signed_pre_keys(&self) -> impl Future<Output = Result<Vec<SignedPreKey>>> + Send;
    /// Deletes a signed prekey.
    fn delete_signed_pre_key(&self, id: u32) -> impl Future<Output = Result<()>> + Send;
}

/// Group sender keys and who already holds ours.
pub trait SenderKeyStore {
    /// A sender-key record.
    fn get_sender_key(
        &self,
        group: &str,
        sender: &ProtocolAddress,
    ) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send;
    /// Stores a sender-key record.
    fn put_sender_key(
        &self,
        group: &str,
        sender: &ProtocolAddress,
        record: &[u8],
    ) -> impl Future<Output = Result<()>> + Send;
    /// Deletes a sender-key record.
    fn delete_sender_key(
        &self,
        group: &str,
        sender: &ProtocolAddress,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Devices (JIDs) that already received our sender key for `group`.
    fn sender_key_holders(&self, group: &str) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Records that these devices now hold our sender key.
    fn add_sender_key_holders(
        &self,
        group: &str,
        devices: &[String],
    ) -> impl Future<Output = Result<()>> + Send;
    /// Forgets some holders (they left, or re-installed).
    fn remove_sender_key_holders(
        &self,
        group: &str,
        devices: &[String],
    ) -> impl Future<Output = Result<()>> + Send;
    /// Forgets every holder (our sender key was rotated).
    fn clear_sender_key_holders(&self, group: &str) -> impl Future<Output = Result<()>> + Send;
}

/// App-state sync: keys, collection versions, mutation MACs.
pub trait AppStateStore {
    /// A sync key by id.
    fn get_app_state_sync_key(
        &self,
        key_id: &[u8],
    ) -> impl Future<Output = Result<Option<AppStateSyncKey>>> + Send;
    /// Stores a sync key.
    fn put_app_state_sync_key(
        &self,
        key_id: &[u8],
        key: &AppStateSyncKey,
    ) -> impl Future<Output = Result<()>> + Send;
    /// A collection's version and hash.
    fn get_app_state_version(
        &self,
        collection: &str,
    ) -> impl Future<Output = Result<Option<AppStateVersion>>> + Send;
    /// Stores a collection's version and hash.
    fn put_app_state_version(
        &self,
        collection: &str,
        v: &AppStateVersion,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Resets a collection: forgets its version and every mutation MAC.
    fn reset_app_state(&self, collection: &str) -> impl Future<Output = Result<()>> + Send;
    /// Stores `(index MAC, value MAC)` pairs.
    fn put_mutation_macs(
        &self,
        collection: &str,
        macs: &[(Vec<u8>, Vec<u8>)],
    ) -> impl Future<Output = Result<()>> + Send;
    /// The value MAC stored for an index MAC.
    fn get_mutation_mac(
        &self,
        collection: &str,
        index_mac: &[u8],
    ) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send;
    /// Deletes MACs by index MAC.
    fn delete_mutation_macs(
        &self,
        collection: &str,
        index_macs: &[Vec<u8>],
    ) -> impl Future<Output = Result<()>> + Send;
    /// Every app-state sync key with its id.
    fn app_state_sync_keys(&self) -> impl Future<Output = Result<Vec<(Vec<u8>, AppStateSyncKey)>>> + Send;
    /// Every `(index MAC, value MAC)` pair of a collection, ordered by index MAC.
    fn app_state_macs(
        &self,
        collection: &str,
    ) -> impl Future<Output = Result<Vec<(Vec<u8>, Vec<u8>)>>> + Send;
    /// The value last applied at an index of a collection (see
    /// [`Transaction::put_app_state_value`]).
    fn app_state_value(
        &self,
        collection: &str,
        index: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send;
}

/// LID <-> phone-number mappings (user parts, e.g. `123456` and `5511999999999`).
pub trait LidStore {
    /// Stores mappings; a LID or number re-mapped drops its stale reverse entry.
    fn put_lid_mappings(&self, pairs: &[(String, String)]) -> impl Future<Output = Result<()>> + Send;
    /// Phone number for a LID.
    fn get_pn_for_lid(&self, lid: &str) -> impl Future<Output = Result<Option<String>>> + Send;
    /// LID for a phone number.
    fn get_lid_for_pn(&self, pn: &str) -> impl Future<Output = Result<Option<String>>> + Send;
    /// LIDs for several phone numbers in one read, in the order asked.
    fn get_lids_for_pns(&self, pns: &[String]) -> impl Future<Output = Result<Vec<Option<String>>>> + Send;
    /// Phone numbers for several LIDs in one read, in the order asked.
    fn get_pns_for_lids(&self, lids: &[String]) -> impl Future<Output = Result<Vec<Option<String>>>> + Send;
}

/// Cached device lists.
pub trait DeviceListStore {
    /// The cached list, `None` if absent or expired.
    fn get_device_list(&self, user: &str) -> impl Future<Output = Result<Option<DeviceList>>> + Send;
    /// Caches a list for `ttl_secs`.
    fn put_device_list(
        &self,
        user: &str,
        devices: &[u32],
        hash: Option<&str>,
        ttl_secs: i64,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Drops a cached list (a device-change notification arrived).
    fn invalidate_device_list(&self, user: &str) -> impl Future<Output = Result<()>> + Send;
}

/// Sent messages kept to answer retry receipts.
pub trait SentMessageStore {
    /// Keeps a sent message for `ttl_secs`.
    fn put_sent_message(
        &self,
        chat: &str,
        id: &str,
        payload: &[u8],
        ttl_secs: i64,
    ) -> impl Future<Output = Result<()>> + Send;
    /// A kept message, `None` if absent or expired.
    fn get_sent_message(
        &self,
        chat: &str,
        id: &str,
    ) -> impl Future<Output = Result<Option<SentMessage>>> + Send;
    /// Forgets a message.
    fn delete_sent_message(&self, chat: &str, id: &str) -> impl Future<Output = Result<()>> + Send;
}

/// Decrypted messages the application has not handled yet.
pub trait InboundStore {
    /// Keeps a decrypted message; a duplicate (same chat, sender, id) is [`Error::Conflict`].
    fn put_inbound(&self, msg: &InboundMessage) -> impl Future<Output = Result<()>> + Send;
    /// Pending messages, oldest first.
    fn pending_inbound(&self, limit: u32) -> impl Future<Output = Result<Vec<InboundMessage>>> + Send;
    /// Drops a handled message.
    fn mark_inbound_handled(
        &self,
        chat: &str,
        sender: &str,
        id: &str,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// Privacy (trusted-contact) tokens.
pub trait PrivacyTokenStore {
    /// The token for a JID.
    fn get_privacy_token(&self, jid: &str) -> impl Future<Output = Result<Option<PrivacyToken>>> + Send;
    /// Stores a token.
    fn put_privacy_token(&self, jid: &str, token: &PrivacyToken) -> impl Future<Output = Result<()>> + Send;
}

/// The account's NCT salt, the key of cs-tokens (whatsmeow `store.NCTSaltStore`; it comes from
/// history sync's `nctSalt` and app state's `nct_salt_sync`).
pub trait NctSaltStore {
    /// The salt, `None` when none is known.
    fn load_nct_salt(&self) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send;
    /// Replaces the salt; an empty one forgets it (the phone cleared it).
    fn save_nct_salt(&self, salt: &[u8]) -> impl Future<Output = Result<()>> + Send;
}

// ---- row layout ---------------------------------------------------------------------------

const CREDENTIALS: &str = "credentials";
const APP_VERSION: &str = "app-version";
const NCT_SALT: &str = "nct-salt";
const NEXT_PRE_KEY_ID: &str = "next-pre-key-id";
/// Signal prekey ids are 24-bit and never 0.
const MAX_PRE_KEY_ID: u32 = 0xFF_FFFF;

const PK_FRESH: i64 = 0;
const PK_UPLOADED: i64 = 1;
const PK_CONSUMED: i64 = 2;

/// App-state values live beside the MACs, in a scope of their own per collection, so a
/// collection's reset drops both and a patch writes both in one transaction.
fn values_scope(collection: &str) -> String {
    format!("{collection}/values")
}
fn values_key(collection: &str, index: &str) -> RowKey {
    RowKey::new(values_scope(collection), index)
}
fn rk(key: impl Into<String>) -> RowKey {
    RowKey::new("", key)
}
fn session_id(a: &ProtocolAddress) -> RowKey {
    RowKey::new(a.name.clone(), a.device.to_string())
}
fn pre_key_id(id: u32) -> RowKey {
    rk(format!("{id:08}"))
}
fn inbound_id(chat: &str, sender: &str, id: &str) -> RowKey {
    RowKey::new(chat, format!("{sender}|{id}"))
}
const LID_TO_PN: &str = "lid";
const PN_TO_LID: &str = "pn";

fn corrupt(table: Table, reason: impl Into<String>) -> Error {
    Error::Corrupt { table: table.name(), reason: reason.into() }
}

fn arr32(table: Table, v: &[u8]) -> Result<[u8; 32]> {
    v.try_into().map_err(|_| corrupt(table, format!("expected 32 bytes, got {}", v.len())))
}

fn utf8(table: Table, v: Vec<u8>) -> Result<String> {
    String::from_utf8(v).map_err(|_| corrupt(table, "value is not UTF-8"))
}

fn decode_pre_key(id_key: &RowKey, value: &[u8]) -> Result<PreKey> {
    let id = id_key.key.parse::<u32>().map_err(|_| corrupt(Table::PreKeys, "bad prekey id"))?;
    Ok(PreKey { id, key_pair: KeyPair::decode(value, Table::PreKeys.name())? })
}

// ---- transaction writes (the same writes the traits make, buffered) -----------------------

impl Transaction {
    /// Buffers a credentials save.
    pub fn save_credentials(&mut self, creds: &Credentials) -> &mut Self {
        self.put(Table::Device, rk(CREDENTIALS), creds.encode(), 0, None);
        self
    }
    /// Buffers session writes.
    pub fn put_sessions(&mut self, sessions: &[(ProtocolAddress, Vec<u8>)]) -> &mut Self {
        for (a, rec) in sessions {
            self.put(Table::Sessions, session_id(a), rec.clone(), 0, None);
        }
        self
    }
    /// Buffers one session write.
    pub fn put_session(&mut self, addr: &ProtocolAddress, record: &[u8]) -> &mut Self {
        self.put(Table::Sessions, session_id(addr), record.to_vec(), 0, None);
        self
    }
    /// Buffers a session delete.
    pub fn delete_session(&mut self, addr: &ProtocolAddress) -> &mut Self {
        self.delete(Table::Sessions, session_id(addr));
        self
    }
    /// Buffers an identity write (no change detection; see [`IdentityStore::save_identity`]).
    pub fn put_identity(&mut self, addr: &ProtocolAddress, key: [u8; 32]) -> &mut Self {
        self.put(Table::Identities, session_id(addr), key.to_vec(), 0, None);
        self
    }
    /// Buffers marking a prekey consumed; its grace period starts at commit time's clock.
    pub fn consume_pre_key(&mut self, id: u32) -> &mut Self {
        let until = self.device.now().saturating_add(self.device.grace());
        self.set_aux(Table::PreKeys, pre_key_id(id), PK_CONSUMED, Some(until));
        self
    }
    /// Buffers a sender-key write.
    pub fn put_sender_key(&mut self, group: &str, sender: &ProtocolAddress, record: &[u8]) -> &mut Self {
        self.put(Table::SenderKeys, RowKey::new(group, sender.to_string()), record.to_vec(), 0, None);
        self
    }
    /// Buffers deleting a sender-key record (it moved to the sender's LID address).
    pub fn delete_sender_key(&mut self, group: &str, sender: &ProtocolAddress) -> &mut Self {
        self.delete(Table::SenderKeys, RowKey::new(group, sender.to_string()));
        self
    }
    /// Buffers adding sender-key holders.
    pub fn add_sender_key_holders(&mut self, group: &str, devices: &[String]) -> &mut Self {
        for d in devices {
            self.put(Table::SenderKeyHolders, RowKey::new(group, d.clone()), Vec::new(), 0, None);
        }
        self
    }
    /// Buffers an app-state version write.
    pub fn put_app_state_version(&mut self, collection: &str, v: &AppStateVersion) -> &mut Self {
        self.put(Table::AppStateVersions, rk(collection), v.encode(), 0, None);
        self
    }
    /// Buffers mutation-MAC writes.
    pub fn put_mutation_macs(&mut self, collection: &str, macs: &[(Vec<u8>, Vec<u8>)]) -> &mut Self {
        for (index, value) in macs {
            self.put(
                Table::AppStateMacs,
                RowKey::new(collection, hex::encode(index)),
                value.clone(),
                0,
                None,
            );
        }
        self
    }
    /// Buffers mutation-MAC deletes.
    pub fn delete_mutation_macs(&mut self, collection: &str, index_macs: &[Vec<u8>]) -> &mut Self {
        for index in index_macs {
            self.delete(Table::AppStateMacs, RowKey::new(collection, hex::encode(index)));
        }
        self
    }
    /// Buffers keeping the value now live at an app-state index (the index JSON), so the
    /// effect of a patch (a chat archived, a contact's name) commits with its MACs.
    pub fn put_app_state_value(&mut self, collection: &str, index: &str, value: &[u8]) -> &mut Self {
        self.put(Table::AppStateMacs, values_key(collection, index), value.to_vec(), 0, None);
        self
    }
    /// Buffers forgetting the value at an app-state index (a REMOVE).
    pub fn delete_app_state_value(&mut self, collection: &str, index: &str) -> &mut Self {
        self.delete(Table::AppStateMacs, values_key(collection, index));
        self
    }
    /// Buffers forgetting a collection entirely (version, MACs and values), as before a
    /// snapshot replaces it.
    pub fn reset_app_state(&mut self, collection: &str) -> &mut Self {
        self.delete(Table::AppStateVersions, rk(collection));
        self.delete_scope(Table::AppStateMacs, collection.to_owned());
        self.delete_scope(Table::AppStateMacs, values_scope(collection));
        self
    }
    /// Buffers keeping a sent message.
    pub fn put_sent_message(&mut self, chat: &str, id: &str, payload: &[u8], ttl_secs: i64) -> &mut Self {
        let exp = self.device.now().saturating_add(ttl_secs);
        self.put(Table::SentMessages, RowKey::new(chat, id), payload.to_vec(), 0, Some(exp));
        self
    }
    /// Buffers keeping a decrypted inbound message; the commit fails with
    /// [`Error::Conflict`] (and writes nothing) if it is already stored.
    pub fn put_inbound(&mut self, msg: &InboundMessage) -> &mut Self {
        let id = inbound_id(&msg.chat, &msg.sender, &msg.id);
        self.insert(Table::InboundMessages, id, encode_inbound(msg), msg.received_at, None);
        self
    }
    /// Buffers dropping a handled inbound message.
    pub fn mark_inbound_handled(&mut self, chat: &str, sender: &str, id: &str) -> &mut Self {
        self.delete(Table::InboundMessages, inbound_id(chat, sender, id));
        self
    }
}

// ---- trait implementations ----------------------------------------------------------------

impl CredentialStore for DeviceStore {
    async fn load_credentials(&self) -> Result<Option<Credentials>> {
        match self.get_row(Table::Device, rk(CREDENTIALS)).await? {
            None => Ok(None),
            Some(r) => Ok(Some(Credentials::decode(&r.value, Table::Device.name())?)),
        }
    }
    async fn save_credentials(&self, creds: &Credentials) -> Result<()> {
        self.write(|t| {
            t.save_credentials(creds);
        })
        .await
    }
}

impl AppVersionStore for DeviceStore {
    async fn load_app_version(&self) -> Result<Option<CachedAppVersion>> {
        match self.get_row(Table::Device, rk(APP_VERSION)).await? {
            None => Ok(None),
            Some(r) => Ok(Some(CachedAppVersion::decode(&r.value, Table::Device.name())?)),
        }
    }
    async fn save_app_version(&self, v: &CachedAppVersion) -> Result<()> {
        self.write(|t| t.put(Table::Device, rk(APP_VERSION), v.encode(), 0, None)).await
    }
}

impl IdentityStore for DeviceStore {
    async fn get_identity(&self, addr: &ProtocolAddress) -> Result<Option<[u8; 32]>> {
        match self.get_row(Table::Identities, session_id(addr)).await? {
            None => Ok(None),
            Some(r) => Ok(Some(arr32(Table::Identities, &r.value)?)),
        }
    }
    async fn save_identity(&self, addr: &ProtocolAddress, key: [u8; 32]) -> Result<IdentityChange> {
        let change = match self.get_identity(addr).await? {
            None => IdentityChange::New,
            Some(k) if k == key => return Ok(IdentityChange::Unchanged),
            Some(_) => IdentityChange::Replaced,
        };
        self.write(|t| {
            t.put_identity(addr, key);
        })
        .await?;
        Ok(change)
    }
    async fn delete_identity(&self, addr: &ProtocolAddress) -> Result<()> {
        self.write(|t| t.delete(Table::Identities, session_id(addr))).await
    }
    async fn delete_user_identities(&self, name: &str) -> Result<()> {
        self.write(|t| t.delete_scope(Table::Identities, name.to_owned())).await
    }
}

impl SessionStore for DeviceStore {
    async fn get_sessions(&self, addrs: &[ProtocolAddress]) -> Result<Vec<Option<Vec<u8>>>> {
        let ids: Vec<RowKey> = addrs.iter().map(session_id).collect();
        Ok(self.get_rows(Table::Sessions, &ids).await?.into_iter().map(|r| r.map(|r| r.value)).collect())
    }
    async fn put_sessions(&self, sessions: &[(ProtocolAddress, Vec<u8>)]) -> Result<()> {
        self.write(|t| {
            t.put_sessions(sessions);
        })
        .await
    }
    async fn delete_session(&self, addr: &ProtocolAddress) -> Result<()> {
        self.write(|t| {
            t.delete_session(addr);
        })
        .await
    }
    async fn delete_user_sessions(&self, name: &str) -> Result<()> {
        self.write(|t| t.delete_scope(Table::Sessions, name.to_owned())).await
    }
    async fn migrate_user(&self, from: &str, to: &str) -> Result<u32> {
        if from == to {
            return Ok(0);
        }
        let scope = || Scan { scope: Some(from.to_owned()), ..Scan::default() };
        let sessions = self.scan_rows(Table::Sessions, scope()).await?;
        let identities = self.scan_rows(Table::Identities, scope()).await?;
        if sessions.is_empty() && identities.is_empty() {
            return Ok(0);
        }
        let moved = u32::try_from(sessions.len()).unwrap_or(u32::MAX);
        let mut tx = self.transaction();
        for (table, rows) in [(Table::Sessions, sessions), (Table::Identities, identities)] {
            for r in rows {
                tx.put(table, RowKey::new(to, r.id.key), r.value, r.aux, r.expires_at);
            }
            tx.delete_scope(table, from.to_owned());
        }
        tx.commit().await?;
        Ok(moved)
    }
}

impl PreKeyStore for DeviceStore {
    async fn generate_pre_keys(
        &self,
        count: u32,
        keygen: &mut (dyn FnMut() -> KeyPair + Send),
    ) -> Result<Vec<PreKey>> {
        if count == 0 {
            return Ok(Vec::new());
        }
        if count > 10_000 {
            return Err(Error::InvalidInput(format!("at most 10000 prekeys per call, asked {count}")));
        }
        let next = match self.get_row(Table::Device, rk(NEXT_PRE_KEY_ID)).await? {
            None => 1,
            Some(r) => u32::from_be_bytes(
                r.value.as_slice().try_into().map_err(|_| corrupt(Table::Device, "bad prekey counter"))?,
            ),
        };
        let mut keys = Vec::with_capacity(count as usize);
        let mut id = next;
        let mut tx = self.transaction();
        for _ in 0..count {
            if id == 0 || id > MAX_PRE_KEY_ID {
                id = 1;
            }
            let key = PreKey { id, key_pair: keygen() };
            // Insert, not put: two racing generators fail loudly instead of overwriting keys
            // one of them may already have uploaded.
            tx.insert(Table::PreKeys, pre_key_id(id), key.key_pair.encode(), PK_FRESH, None);
            keys.push(key);
            id += 1;
        }
        tx.put(Table::Device, rk(NEXT_PRE_KEY_ID), id.to_be_bytes().to_vec(), 0, None);
        tx.commit().await?;
        Ok(keys)
    }

    async fn get_pre_key(&self, id: u32) -> Result<Option<PreKey>> {
        match self.get_row(Table::PreKeys, pre_key_id(id)).await? {
            None => Ok(None),
            Some(r) => Ok(Some(decode_pre_key(&r.id, &r.value)?)),
        }
    }

    async fn unuploaded_pre_keys(&self, limit: u32) -> Result<Vec<PreKey>> {
        let rows = self
            .scan_rows(Table::PreKeys, Scan { aux_eq: Some(PK_FRESH), limit: Some(limit), ..Scan::default() })
            .await?;
        rows.iter().map(|r| decode_pre_key(&r.id, &r.value)).collect()
    }

    async fn mark_pre_keys_uploaded(&self, ids: &[u32]) -> Result<()> {
        // Only fresh keys move to uploaded; never resurrect a consumed one.
        let keys: Vec<RowKey> = ids.iter().map(|i| pre_key_id(*i)).collect();
        let rows = self.get_rows(Table::PreKeys, &keys).await?;
        let mut tx = self.transaction();
        for r in rows.into_iter().flatten() {
            if r.aux == PK_FRESH {
                tx.set_aux(Table::PreKeys, r.id, PK_UPLOADED, None);
            }
        }
        tx.commit().await
    }

    async fn consume_pre_key(&self, id: u32) -> Result<Option<PreKey>> {
        let Some(r) = self.get_row(Table::PreKeys, pre_key_id(id)).await? else {
            return Ok(None);
        };
        let key = decode_pre_key(&r.id, &r.value)?;
        if r.aux != PK_CONSUMED {
            // A second consume within the grace period must not extend it.
            self.write(|t| {
                t.consume_pre_key(id);
            })
            .await?;
        }
        Ok(Some(key))
    }

    async fn pre_key_counts(&self) -> Result<PreKeyCounts> {
        let rows = self.scan_rows(Table::PreKeys, Scan::default()).await?;
        let mut c = PreKeyCounts::default();
        for r in rows {
            match r.aux {
                PK_FRESH => c.fresh += 1,
                PK_UPLOADED => c.uploaded += 1,
                _ => c.consumed += 1,
            }
        }
        Ok(c)
    }
}

impl SignedPreKeyStore for DeviceStore {
    async fn get_signed_pre_key(&self, id: u32) -> Result<Option<SignedPreKey>> {
        match self.get_row(Table::SignedPreKeys, pre_key_id(id)).await? {
            None => Ok(None),
            Some(r) => Ok(Some(SignedPreKey::decode(&r.value, Table::SignedPreKeys.name())?)),
        }
    }
    async fn put_signed_pre_key(&self, key: &SignedPreKey) -> Result<()> {
        self.write(|t| t.put(Table::SignedPreKeys, pre_key_id(key.id), key.encode(), 0, None)).await
    }
    async fn signed_pre_keys(&self) -> Result<Vec<SignedPreKey>> {
        let rows = self.scan_rows(Table::SignedPreKeys, Scan::default()).await?;
        rows.iter().map(|r| SignedPreKey::decode(&r.value, Table::SignedPreKeys.name())).collect()
    }
    async fn delete_signed_pre_key(&self, id: u32) -> Result<()> {
        self.write(|t| t.delete(Table::SignedPreKeys, pre_key_id(id))).await
    }
}

impl SenderKeyStore for DeviceStore {
    async fn get_sender_key(&self, group: &str, sender: &ProtocolAddress) -> Result<Option<Vec<u8>>> {
        Ok(self.get_row(Table::SenderKeys, RowKey::new(group, sender.to_string())).await?.map(|r| r.value))
    }
    async fn put_sender_key(&self, group: &str, sender: &ProtocolAddress, record: &[u8]) -> Result<()> {
        self.write(|t| {
            t.put_sender_key(group, sender, record);
        })
        .await
    }
    async fn delete_sender_key(&self, group: &str, sender: &ProtocolAddress) -> Result<()> {
        self.write(|t| t.delete(Table::SenderKeys, RowKey::new(group, sender.to_string()))).await
    }
    async fn sender_key_holders(&self, group: &str) -> Result<Vec<String>> {
        let rows = self
            .scan_rows(Table::SenderKeyHolders, Scan { scope: Some(group.to_owned()), ..Scan::default() })
            .await?;
        Ok(rows.into_iter().map(|r| r.id.key).collect())
    }
    async fn add_sender_key_holders(&self, group: &str, devices: &[String]) -> Result<()> {
        self.write(|t| {
            t.add_sender_key_holders(group, devices);
        })
        .await
    }
    async fn remove_sender_key_holders(&self, group: &str, devices: &[String]) -> Result<()> {
        self.write(|t| {
            for d in devices {
                t.delete(Table::SenderKeyHolders, RowKey::new(group, d.clone()));
            }
        })
        .await
    }
    async fn clear_sender_key_holders(&self, group: &str) -> Result<()> {
        self.write(|t| t.delete_scope(Table::SenderKeyHolders, group.to_owned())).await
    }
}

impl AppStateStore for DeviceStore {
    async fn get_app_state_sync_key(&self, key_id: &[u8]) -> Result<Option<AppStateSyncKey>> {
        match self.get_row(Table::AppStateKeys, rk(hex::encode(key_id))).await? {
            None => Ok(None),
            Some(r) => Ok(Some(AppStateSyncKey::decode(&r.value, Table::AppStateKeys.name())?)),
        }
    }
    async fn put_app_state_sync_key(&self, key_id: &[u8], key: &AppStateSyncKey) -> Result<()> {
        self.write(|t| t.put(Table::AppStateKeys, rk(hex::encode(key_id)), key.encode(), 0, None)).await
    }
    async fn get_app_state_version(&self, collection: &str) -> Result<Option<AppStateVersion>> {
        match self.get_row(Table::AppStateVersions, rk(collection)).await? {
            None => Ok(None),
            Some(r) => Ok(Some(AppStateVersion::decode(&r.value, Table::AppStateVersions.name())?)),
        }
    }
    async fn put_app_state_version(&self, collection: &str, v: &AppStateVersion) -> Result<()> {
        self.write(|t| {
            t.put_app_state_version(collection, v);
        })
        .await
    }
    async fn reset_app_state(&self, collection: &str) -> Result<()> {
        self.write(|t| {
            t.reset_app_state(collection);
        })
        .await
    }
    async fn app_state_sync_keys(&self) -> Result<Vec<(Vec<u8>, AppStateSyncKey)>> {
        let rows = self.scan_rows(Table::AppStateKeys, Scan::default()).await?;
        rows.into_iter()
            .map(|r| {
                let id =
                    hex::decode(&r.id.key).map_err(|_| corrupt(Table::AppStateKeys, "key id is not hex"))?;
                Ok((id, AppStateSyncKey::decode(&r.value, Table::AppStateKeys.name())?))
            })
            .collect()
    }
    async fn app_state_macs(&self, collection: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let scan = Scan { scope: Some(collection.to_owned()), ..Default::default() };
        let rows = self.scan_rows(Table::AppStateMacs, scan).await?;
        rows.into_iter()
            .map(|r| {
                let index = hex::decode(&r.id.key)
                    .map_err(|_| corrupt(Table::AppStateMacs, "index MAC is not hex"))?;
                Ok((index, r.value))
            })
            .collect()
    }
    async fn app_state_value(&self, collection: &str, index: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.get_row(Table::AppStateMacs, values_key(collection, index)).await?.map(|r| r.value))
    }
    async fn put_mutation_macs(&self, collection: &str, macs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        self.write(|t| {
            t.put_mutation_macs(collection, macs);
        })
        .await
    }
    async fn get_mutation_mac(&self, collection: &str, index_mac: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .get_row(Table::AppStateMacs, RowKey::new(collection, hex::encode(index_mac)))
            .await?
            .map(|r| r.value))
    }
    async fn delete_mutation_macs(&self, collection: &str, index_macs: &[Vec<u8>]) -> Result<()> {
        self.write(|t| {
            t.delete_mutation_macs(collection, index_macs);
        })
        .await
    }
}

impl LidStore for DeviceStore {
    async fn put_lid_mappings(&self, pairs: &[(String, String)]) -> Result<()> {
        let mut ids = Vec::with_capacity(pairs.len() * 2);
        for (lid, pn) in pairs {
            ids.push(RowKey::new(LID_TO_PN, lid.clone()));
            ids.push(RowKey::new(PN_TO_LID, pn.clone()));
        }
        let existing = self.get_rows(Table::LidMappings, &ids).await?;
        let mut tx = self.transaction();
        for ((lid, pn), old) in pairs.iter().zip(existing.chunks(2)) {
            if let Some(Some(old_pn)) = old.first() {
                let old_pn = utf8(Table::LidMappings, old_pn.value.clone())?;
                if &old_pn != pn {
                    tx.delete(Table::LidMappings, RowKey::new(PN_TO_LID, old_pn));
                }
            }
            if let Some(Some(old_lid)) = old.get(1) {
                let old_lid = utf8(Table::LidMappings, old_lid.value.clone())?;
                if &old_lid != lid {
                    tx.delete(Table::LidMappings, RowKey::new(LID_TO_PN, old_lid));
                }
            }
            tx.put(Table::LidMappings, RowKey::new(LID_TO_PN, lid.clone()), pn.as_bytes().to_vec(), 0, None);
            tx.put(Table::LidMappings, RowKey::new(PN_TO_LID, pn.clone()), lid.as_bytes().to_vec(), 0, None);
        }
        tx.commit().await
    }
    async fn get_pn_for_lid(&self, lid: &str) -> Result<Option<String>> {
        match self.get_row(Table::LidMappings, RowKey::new(LID_TO_PN, lid)).await? {
            None => Ok(None),
            Some(r) => Ok(Some(utf8(Table::LidMappings, r.value)?)),
        }
    }
    async fn get_lid_for_pn(&self, pn: &str) -> Result<Option<String>> {
        match self.get_row(Table::LidMappings, RowKey::new(PN_TO_LID, pn)).await? {
            None => Ok(None),
            Some(r) => Ok(Some(utf8(Table::LidMappings, r.value)?)),
        }
    }
    async fn get_lids_for_pns(&self, pns: &[String]) -> Result<Vec<Option<String>>> {
        self.lid_mappings(PN_TO_LID, pns).await
    }
    async fn get_pns_for_lids(&self, lids: &[String]) -> Result<Vec<Option<String>>> {
        self.lid_mappings(LID_TO_PN, lids).await
    }
}

impl DeviceStore {
    /// One direction of the LID map for many keys in one backend read.
    async fn lid_mappings(&self, direction: &str, keys: &[String]) -> Result<Vec<Option<String>>> {
        let ids: Vec<RowKey> = keys.iter().map(|k| RowKey::new(direction, k.clone())).collect();
        self.get_rows(Table::LidMappings, &ids)
            .await?
            .into_iter()
            .map(|r| r.map(|r| utf8(Table::LidMappings, r.value)).transpose())
            .collect()
    }
}

impl DeviceListStore for DeviceStore {
    async fn get_device_list(&self, user: &str) -> Result<Option<DeviceList>> {
        match self.get_row(Table::DeviceLists, rk(user)).await? {
            None => Ok(None),
            Some(r) => {
                let (devices, hash) = decode_device_list(&r.value, Table::DeviceLists.name())?;
                Ok(Some(DeviceList { devices, hash, expires_at: r.expires_at.unwrap_or(i64::MAX) }))
            }
        }
    }
    async fn put_device_list(
        &self,
        user: &str,
        devices: &[u32],
        hash: Option<&str>,
        ttl_secs: i64,
    ) -> Result<()> {
        let exp = self.now().saturating_add(ttl_secs);
        self.write(|t| t.put(Table::DeviceLists, rk(user), encode_device_list(devices, hash), 0, Some(exp)))
            .await
    }
    async fn invalidate_device_list(&self, user: &str) -> Result<()> {
        self.write(|t| t.delete(Table::DeviceLists, rk(user))).await
    }
}

impl SentMessageStore for DeviceStore {
    async fn put_sent_message(&self, chat: &str, id: &str, payload: &[u8], ttl_secs: i64) -> Result<()> {
        self.write(|t| {
            t.put_sent_message(chat, id, payload, ttl_secs);
        })
        .await
    }
    async fn get_sent_message(&self, chat: &str, id: &str) -> Result<Option<SentMessage>> {
        Ok(self.get_row(Table::SentMessages, RowKey::new(chat, id)).await?.map(|r| SentMessage {
            chat: chat.to_owned(),
            id: id.to_owned(),
            payload: r.value,
            expires_at: r.expires_at.unwrap_or(i64::MAX),
        }))
    }
    async fn delete_sent_message(&self, chat: &str, id: &str) -> Result<()> {
        self.write(|t| t.delete(Table::SentMessages, RowKey::new(chat, id))).await
    }
}

impl InboundStore for DeviceStore {
    async fn put_inbound(&self, msg: &InboundMessage) -> Result<()> {
        self.write(|t| {
            t.put_inbound(msg);
        })
        .await
    }
    async fn pending_inbound(&self, limit: u32) -> Result<Vec<InboundMessage>> {
        let rows = self.scan_rows(Table::InboundMessages, Scan::default()).await?;
        let mut msgs = rows
            .into_iter()
            .map(|r| decode_inbound(&r.id.scope, &r.value, Table::InboundMessages.name()))
            .collect::<Result<Vec<_>>>()?;
        msgs.sort_by(|a, b| a.received_at.cmp(&b.received_at).then_with(|| a.id.cmp(&b.id)));
        msgs.truncate(limit as usize);
        Ok(msgs)
    }
    async fn mark_inbound_handled(&self, chat: &str, sender: &str, id: &str) -> Result<()> {
        self.write(|t| {
            t.mark_inbound_handled(chat, sender, id);
        })
        .await
    }
}

impl NctSaltStore for DeviceStore {
    async fn load_nct_salt(&self) -> Result<Option<Vec<u8>>> {
        Ok(self.get_row(Table::Device, rk(NCT_SALT)).await?.map(|r| r.value).filter(|v| !v.is_empty()))
    }
    async fn save_nct_salt(&self, salt: &[u8]) -> Result<()> {
        if salt.is_empty() {
            self.write(|t| t.delete(Table::Device, rk(NCT_SALT))).await
        } else {
            self.write(|t| t.put(Table::Device, rk(NCT_SALT), salt.to_vec(), 0, None)).await
        }
    }
}

impl PrivacyTokenStore for DeviceStore {
    async fn get_privacy_token(&self, jid: &str) -> Result<Option<PrivacyToken>> {
        match self.get_row(Table::PrivacyTokens, rk(jid)).await? {
            None => Ok(None),
            Some(r) => Ok(Some(PrivacyToken::decode(&r.value, Table::PrivacyTokens.name())?)),
        }
    }
    async fn put_privacy_token(&self, jid: &str, token: &PrivacyToken) -> Result<()> {
        self.write(|t| t.put(Table::PrivacyTokens, rk(jid), token.encode(), 0, None)).await
    }
}
