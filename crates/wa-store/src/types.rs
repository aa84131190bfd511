//! Value types stored by the domain traits.
//!
//! The store does not interpret Signal records (sessions, sender keys): the signal layer owns
//! their versioned format and hands us opaque bytes. Keys are raw 32-byte arrays and JIDs are
//! strings, so this crate depends on no protocol crate.

use std::fmt;

use crate::codec::{Dec, Enc};
use crate::error::{Error, Result};

/// Identifies one account (a linked device) inside a database; chosen by the application.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(String);

impl DeviceId {
    /// Longest accepted id, in bytes.
    pub const MAX_LEN: usize = 128;

    /// Validates an id: 1..=128 bytes, no control characters.
    pub fn new(id: impl Into<String>) -> Result<Self> {
        let id = id.into();
        if id.is_empty() || id.len() > Self::MAX_LEN || id.chars().any(char::is_control) {
            return Err(Error::InvalidInput(format!(
                "device id must be 1..={} bytes without control characters, got {id:?}",
                Self::MAX_LEN
            )));
        }
        Ok(DeviceId(id))
    }
    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({:?})", self.0)
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Signal protocol address: a user (JID user part with server, e.g. `123@s.whatsapp.net`
/// or `456@lid`) and a device number.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProtocolAddress {
    /// The user part, as the signal layer names it.
    pub name: String,
    /// Device number (0 for the primary phone).
    pub device: u32,
}

impl ProtocolAddress {
    /// Builds an address.
    pub fn new(name: impl Into<String>, device: u32) -> Self {
        ProtocolAddress { name: name.into(), device }
    }
}

impl fmt::Display for ProtocolAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.name, self.device)
    }
}

/// An X25519 key pair as raw bytes. `Debug` never prints the private half.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPair {
    /// Public key (32 bytes, no DJB type prefix).
    pub public: [u8; 32],
    /// Private key.
    pub private: [u8; 32],
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPair {{ public: {}, private: <redacted> }}", hex::encode(self.public))
    }
}

/// A signed prekey.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedPreKey {
    /// Key id.
    pub id: u32,
    /// The key pair.
    pub key_pair: KeyPair,
    /// XEdDSA signature by the identity key over the public key.
    pub signature: [u8; 64],
    /// Creation time, unix seconds.
    pub created_at: i64,
}

/// A one-time prekey.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreKey {
    /// Key id (Signal uses 24-bit ids).
    pub id: u32,
    /// The key pair.
    pub key_pair: KeyPair,
}

/// Lifecycle of a one-time prekey.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreKeyState {
    /// Generated, not yet sent to the server.
    Fresh,
    /// Sent to the server; a peer may use it.
    Uploaded,
    /// Used by a peer; kept until `until` (unix seconds) so a re-sent message still decrypts.
    Consumed {
        /// End of the grace period.
        until: i64,
    },
}

/// Counts of one-time prekeys by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PreKeyCounts {
    /// Generated but not uploaded.
    pub fresh: u32,
    /// Uploaded and not consumed.
    pub uploaded: u32,
    /// Consumed, still within the grace period.
    pub consumed: u32,
}

/// The account's own credentials, created at pairing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// Static Noise key pair.
    pub noise_key: KeyPair,
    /// Signal identity key pair.
    pub identity_key: KeyPair,
    /// Current signed prekey.
    pub signed_pre_key: SignedPreKey,
    /// Signal registration id.
    pub registration_id: u32,
    /// ADV secret key (HMAC key for the device identity).
    pub adv_secret_key: [u8; 32],
    /// ADVSignedDeviceIdentity protobuf bytes, once paired.
    pub signed_device_identity: Option<Vec<u8>>,
    /// Our phone-number JID (`user:device@s.whatsapp.net`), once paired.
    pub jid: Option<String>,
    /// Our LID (`user:device@lid`), once known.
    pub lid: Option<String>,
    /// Push name.
    pub push_name: Option<String>,
    /// Platform reported by the phone.
    pub platform: Option<String>,
    /// Whether the account's 1:1 chats are LID-addressed (`ClientPairingProps.isChatDbLidMigrated`
    /// in pair-success); `None` when the phone did not say (paired before it was recorded).
    pub lid_migrated: Option<bool>,
}

/// What saving an identity key found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityChange {
    /// No key was known for the address.
    New,
    /// The same key was already stored.
    Unchanged,
    /// A different key was stored and has been replaced (the contact re-installed).
    Replaced,
}

/// An app-state sync key (from an AppStateSyncKeyShare).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppStateSyncKey {
    /// Key material.
    pub key_data: Vec<u8>,
    /// Serialized fingerprint protobuf.
    pub fingerprint: Vec<u8>,
    /// Timestamp from the share, milliseconds.
    pub timestamp: i64,
}

/// Version and LT-hash of one app-state collection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppStateVersion {
    /// Collection version.
    pub version: u64,
    /// 128-byte LT-hash state.
    pub hash: [u8; 128],
}

/// A cached device list of one user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceList {
    /// Device numbers.
    pub devices: Vec<u32>,
    /// The server's device-list hash, when it sent one.
    pub hash: Option<String>,
    /// When the cache entry stops being valid, unix seconds.
    pub expires_at: i64,
}

/// A message we sent, kept so a retry receipt can be answered by re-encrypting it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentMessage {
    /// Chat JID.
    pub chat: String,
    /// Message id.
    pub id: String,
    /// Serialized message (the client's format).
    pub payload: Vec<u8>,
    /// When it is forgotten, unix seconds.
    pub expires_at: i64,
}

/// A message that was decrypted (so its ratchet has advanced) but not yet handled by the app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboundMessage {
    /// Chat JID.
    pub chat: String,
    /// Sender JID.
    pub sender: String,
    /// Message id.
    pub id: String,
    /// When it was received, unix seconds.
    pub received_at: i64,
    /// Decrypted payload (the client's format).
    pub payload: Vec<u8>,
}

/// A contact's privacy (trusted-contact) token, and when we last issued ours to it (whatsmeow
/// `store.PrivacyToken`: `Token`, `Timestamp`, `SenderTimestamp`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrivacyToken {
    /// The contact's token bytes; empty while we hold none (only our issuance is recorded).
    pub token: Vec<u8>,
    /// The contact's token timestamp, unix seconds (0: none).
    pub timestamp: i64,
    /// When we last issued our own token to the contact, unix seconds (0: never).
    pub sender_timestamp: i64,
}

/// The WhatsApp Web version last fetched (from `sw.js`) for this device, and when, so a restart
/// within the cache's lifetime does not fetch again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CachedAppVersion {
    /// `primary.secondary.tertiary`.
    pub version: [u32; 3],
    /// When it was fetched, unix seconds.
    pub fetched_at: i64,
}

// ---- value encodings (format version 1 each) ------------------------------------------------

const V1: u8 = 1;
/// Credentials format 2 appends `lid_migrated`; format 1 (stored by older binaries) still reads.
const CREDENTIALS_V2: u8 = 2;
/// Privacy-token format 2 appends `sender_timestamp`; format 1 still reads (as never issued).
const PRIVACY_TOKEN_V2: u8 = 2;

fn put_key_pair(e: &mut Enc, k: &KeyPair) {
    e.raw(&k.public).raw(&k.private);
}

fn get_key_pair(d: &mut Dec<'_>) -> Result<KeyPair> {
    Ok(KeyPair { public: d.array()?, private: d.array()? })
}

fn put_signed(e: &mut Enc, s: &SignedPreKey) {
    e.u32(s.id);
    put_key_pair(e, &s.key_pair);
    e.raw(&s.signature).i64(s.created_at);
}

fn get_signed(d: &mut Dec<'_>) -> Result<SignedPreKey> {
    Ok(SignedPreKey { id: d.u32()?, key_pair: get_key_pair(d)?, signature: d.array()?, created_at: d.i64()? })
}

impl Credentials {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new(CREDENTIALS_V2);
        put_key_pair(&mut e, &self.noise_key);
        put_key_pair(&mut e, &self.identity_key);
        put_signed(&mut e, &self.signed_pre_key);
        e.u32(self.registration_id)
            .raw(&self.adv_secret_key)
            .opt_bytes(self.signed_device_identity.as_deref())
            .opt_str(self.jid.as_deref())
            .opt_str(self.lid.as_deref())
            .opt_str(self.push_name.as_deref())
            .opt_str(self.platform.as_deref())
            .opt_bool(self.lid_migrated);
        e.finish()
    }
    pub(crate) fn decode(b: &[u8], table: &'static str) -> Result<Self> {
        let (mut d, version) = Dec::new_upto(b, table, CREDENTIALS_V2)?;
        let mut c = Credentials {
            noise_key: get_key_pair(&mut d)?,
            identity_key: get_key_pair(&mut d)?,
            signed_pre_key: get_signed(&mut d)?,
            registration_id: d.u32()?,
            adv_secret_key: d.array()?,
            signed_device_identity: d.opt_bytes()?,
            jid: d.opt_str()?,
            lid: d.opt_str()?,
            push_name: d.opt_str()?,
            platform: d.opt_str()?,
            lid_migrated: None,
        };
        if version >= CREDENTIALS_V2 {
            c.lid_migrated = d.opt_bool()?;
        }
        d.finish()?;
        Ok(c)
    }
}

impl SignedPreKey {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new(V1);
        put_signed(&mut e, self);
        e.finish()
    }
    pub(crate) fn decode(b: &[u8], table: &'static str) -> Result<Self> {
        let mut d = Dec::new(b, table, V1)?;
        let s = get_signed(&mut d)?;
        d.finish()?;
        Ok(s)
    }
}

impl KeyPair {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new(V1);
        put_key_pair(&mut e, self);
        e.finish()
    }
    pub(crate) fn decode(b: &[u8], table: &'static str) -> Result<Self> {
        let mut d = Dec::new(b, table, V1)?;
        let k = get_key_pair(&mut d)?;
        d.finish()?;
        Ok(k)
    }
}

impl AppStateSyncKey {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new(V1);
        e.bytes(&self.key_data).bytes(&self.fingerprint).i64(self.timestamp);
        e.finish()
    }
    pub(crate) fn decode(b: &[u8], table: &'static str) -> Result<Self> {
        let mut d = Dec::new(b, table, V1)?;
        let k = AppStateSyncKey { key_data: d.bytes()?, fingerprint: d.bytes()?, timestamp: d.i64()? };
        d.finish()?;
        Ok(k)
    }
}

impl AppStateVersion {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new(V1);
        e.u64(self.version).raw(&self.hash);
        e.finish()
    }
    pub(crate) fn decode(b: &[u8], table: &'static str) -> Result<Self> {
        let mut d = Dec::new(b, table, V1)?;
        let v = AppStateVersion { version: d.u64()?, hash: d.array()? };
        d.finish()?;
        Ok(v)
    }
}

pub(crate) fn encode_device_list(devices: &[u32], hash: Option<&str>) -> Vec<u8> {
    let mut e = Enc::new(V1);
    e.u32(u32::try_from(devices.len()).unwrap_or(u32::MAX));
    for d in devices {
        e.u32(*d);
    }
    e.opt_str(hash);
    e.finish()
}

pub(crate) fn decode_device_list(b: &[u8], table: &'static str) -> Result<(Vec<u32>, Option<String>)> {
    let mut d = Dec::new(b, table, V1)?;
    let n = d.u32()? as usize;
    // Each entry is 4 bytes: refuse counts the buffer cannot hold before allocating.
    if n > b.len() / 4 {
        return Err(Error::Corrupt { table, reason: format!("device count {n} exceeds value size") });
    }
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(d.u32()?);
    }
    let h = d.opt_str()?;
    d.finish()?;
    Ok((v, h))
}

pub(crate) fn encode_inbound(m: &InboundMessage) -> Vec<u8> {
    let mut e = Enc::new(V1);
    e.str(&m.sender).str(&m.id).i64(m.received_at).bytes(&m.payload);
    e.finish()
}

pub(crate) fn decode_inbound(chat: &str, b: &[u8], table: &'static str) -> Result<InboundMessage> {
    let mut d = Dec::new(b, table, V1)?;
    let m = InboundMessage {
        chat: chat.to_owned(),
        sender: d.str()?,
        id: d.str()?,
        received_at: d.i64()?,
        payload: d.bytes()?,
    };
    d.finish()?;
    Ok(m)
}

impl CachedAppVersion {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new(V1);
        let [a, b, c] = self.version;
        e.u32(a).u32(b).u32(c).i64(self.fetched_at);
        e.finish()
    }
    pub(crate) fn decode(b: &[u8], table: &'static str) -> Result<Self> {
        let mut d = Dec::new(b, table, V1)?;
        let v = CachedAppVersion { version: [d.u32()?, d.u32()?, d.u32()?], fetched_at: d.i64()? };
        d.finish()?;
        Ok(v)
    }
}

impl PrivacyToken {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new(PRIVACY_TOKEN_V2);
        e.bytes(&self.token).i64(self.timestamp).i64(self.sender_timestamp);
        e.finish()
    }
    pub(crate) fn decode(b: &[u8], table: &'static str) -> Result<Self> {
        let (mut d, version) = Dec::new_upto(b, table, PRIVACY_TOKEN_V2)?;
        let mut t = PrivacyToken { token: d.bytes()?, timestamp: d.i64()?, sender_timestamp: 0 };
        if version >= PRIVACY_TOKEN_V2 {
            t.sender_timestamp = d.i64()?;
        }
        d.finish()?;
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Credentials {
        let kp = |b: u8| KeyPair { public: [b; 32], private: [b ^ 0xff; 32] };
        Credentials {
            noise_key: kp(1),
            identity_key: kp(2),
            signed_pre_key: SignedPreKey { id: 9, key_pair: kp(3), signature: [4; 64], created_at: 5 },
            registration_id: 6,
            adv_secret_key: [7; 32],
            signed_device_identity: Some(vec![8]),
            jid: Some("1:2@s.whatsapp.net".into()),
            lid: Some("3:2@lid".into()),
            push_name: None,
            platform: Some("android".into()),
            lid_migrated: Some(true),
        }
    }

    #[test]
    fn credentials_stored_by_an_older_binary_still_load() {
        // Format 1 is format 2 without the trailing migration state.
        let c = sample();
        let mut v1 = c.encode();
        assert_eq!((v1[0], v1.last().copied()), (CREDENTIALS_V2, Some(2)));
        v1[0] = V1;
        v1.pop();
        let old = Credentials::decode(&v1, "t").expect("format 1 decodes");
        assert_eq!(old, Credentials { lid_migrated: None, ..c.clone() });
        assert_eq!(Credentials::decode(&c.encode(), "t").expect("round trip"), c);
        // A format 1 value with a migration byte appended is malformed, not silently read.
        let mut bad = v1.clone();
        bad.push(2);
        assert!(matches!(Credentials::decode(&bad, "t"), Err(Error::Corrupt { .. })));
        let mut future = c.encode();
        future[0] = 3;
        assert!(matches!(Credentials::decode(&future, "t"), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn privacy_tokens_stored_by_an_older_binary_still_load() {
        // Format 1 is the token and its timestamp, without our issuance time.
        let mut e = Enc::new(V1);
        e.bytes(&[7; 5]).i64(1_700_000_000);
        let old = PrivacyToken::decode(&e.finish(), "t").expect("format 1 decodes");
        assert_eq!(old, PrivacyToken { token: vec![7; 5], timestamp: 1_700_000_000, sender_timestamp: 0 });
        let t = PrivacyToken { token: vec![], timestamp: 0, sender_timestamp: 1_700_000_500 };
        assert_eq!(PrivacyToken::decode(&t.encode(), "t").expect("round trip"), t);
        let mut future = t.encode();
        future[0] = 3;
        assert!(matches!(PrivacyToken::decode(&future, "t"), Err(Error::Corrupt { .. })));
    }
}
