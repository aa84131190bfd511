//! The emulated service's durable state, so an emulator can stop and start again without
//! logging every companion out: WhatsApp's servers keep registered devices, their published
//! keys, undelivered stanzas, groups and media across their own restarts, and a phone keeps its
//! Signal sessions. [`WorldState`] is that state as JSON (binary fields base64); an emulator
//! started with [`crate::Emulator::restore`] resumes it.
//!
//! Kept: the server keys (the Noise static key must not move: clients resume with IK against
//! the cached one, see `keys`), accounts with their phones, devices, offline and unacknowledged
//! stanzas (unacknowledged ones go back to the offline queue, as when a connection ends), key
//! index lists, groups, media, the server-initiated traffic state (dirty bits, tokens, app
//! state) and the reach-out state. Not kept: connections and registrations in progress (their
//! sockets are gone; a companion that was showing a QR asks for new refs), ringing calls, the
//! event log (an observation aid) and the random generator (reseeded).
//!
//! Restoring checks every cross-reference (account indexes, key lengths, record encodings) and
//! refuses a state that does not hold together with a [`StateError`]; it never accepts anything
//! the emulator would not have produced itself, so the rules it enforces are unchanged.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use prost::Message as _;
use serde::{Deserialize, Serialize};
use wa_appstate::{Collection, CollectionState, KeyId, KeyRing, LtHash, SyncKey};
use wa_crypto::{KeyPair, PrivateKey, PublicKey};
use wa_signal::{LocalIdentity, PreKeyRecord, PreKeySet, SenderKeyRecord, SessionRecord, SignedPreKeyRecord};

use crate::appstate::{AccountAppState, StoredCollection};
use crate::keyindex::KeyIndexList;
use crate::keys::ServerKeys;
use crate::phone::{InboxMessage, Phone, PhoneReceipt};
use crate::reachout::{Reachout, ReachoutLimits, Timelock};
use crate::traffic::Traffic;
use crate::world::{
    Account, AccountId, Device, DeviceAddr, DeviceKeys, Group, GroupDescription, PresenceRecord,
    SignedPreKeyPub, World,
};

/// The format written by this build; a state of another version is refused, not guessed at.
pub const STATE_FORMAT: u32 = 1;

/// Why a saved state cannot be read, written or restored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The file could not be read or written.
    #[error("emulator state file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not JSON of the expected shape.
    #[error("emulator state is not valid: {0}")]
    Json(#[from] serde_json::Error),
    /// Written by a build with another format.
    #[error("emulator state has format {found}; this build reads format {STATE_FORMAT}")]
    Format {
        /// The file's format.
        found: u32,
    },
    /// Parsed, but does not hold together (a bad key, record or reference).
    #[error("emulator state is inconsistent: {0}")]
    Inconsistent(String),
    /// A queued stanza could not be encoded (a bug: the server made it).
    #[error("emulator state cannot encode a queued stanza: {0}")]
    Encode(String),
}

fn bad(what: impl std::fmt::Display) -> StateError {
    StateError::Inconsistent(what.to_string())
}

/// Bytes as base64 in JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
struct B64(Vec<u8>);

impl Serialize for B64 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for B64 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map(B64).map_err(serde::de::Error::custom)
    }
}

impl B64 {
    fn of(b: &[u8]) -> Self {
        B64(b.to_vec())
    }

    fn array<const N: usize>(&self, what: &str) -> Result<[u8; N], StateError> {
        self.0
            .as_slice()
            .try_into()
            .map_err(|_| bad(format_args!("{what}: {} bytes, expected {N}", self.0.len())))
    }

    fn public(&self, what: &str) -> Result<PublicKey, StateError> {
        PublicKey::from_bytes(&self.0).map_err(|e| bad(format_args!("{what}: {e}")))
    }

    fn key_pair(&self, what: &str) -> Result<KeyPair, StateError> {
        Ok(KeyPair::from_private(PrivateKey::from_bytes(self.array(what)?)))
    }
}

/// The emulated service's durable state (see the module docs).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorldState {
    format: u32,
    keys: KeysState,
    accounts: Vec<AccountState>,
    groups: Vec<GroupState>,
    sent_by: Vec<(String, DeviceAddr)>,
    media: Vec<(String, B64)>,
    traffic: TrafficState,
    reachout: ReachoutState,
    next_iq: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct KeysState {
    root_private: B64,
    static_private: B64,
    cert_chain: B64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct PhoneState {
    identity_private: B64,
    registration_id: u32,
    signed_pre_keys: Vec<B64>,
    pre_keys: Vec<B64>,
    sessions: Vec<(DeviceAddr, B64)>,
    sender_keys: Vec<(String, DeviceAddr, B64)>,
    own_sender_keys: Vec<(String, B64)>,
    skdm_sent: Vec<(String, Vec<DeviceAddr>)>,
    inbox: Vec<InboxState>,
    receipts: Vec<PhoneReceipt>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct InboxState {
    id: String,
    chat: String,
    sender: String,
    device: u16,
    text: Option<String>,
    kind: String,
    t: u64,
    message: B64,
    error: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct DeviceState {
    id: u16,
    noise_key: Option<B64>,
    identity: B64,
    registration_id: u32,
    signed_pre_key_id: u32,
    signed_pre_key: B64,
    signed_pre_key_signature: B64,
    pre_keys: Vec<(u32, B64)>,
    key_index: u32,
    /// Stanzas waiting for the device, oldest first (the unacknowledged ones first), each a
    /// frame payload as `wa_binary::encode` makes it.
    offline: Vec<B64>,
    acked: VecDeque<String>,
    platform: String,
    signed_identity: Option<B64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct AccountState {
    pn: String,
    lid: String,
    push_name: String,
    phone: PhoneState,
    devices: Vec<DeviceState>,
    next_device_id: u16,
    raw_id: u32,
    lid_migrated: bool,
    hosted: Option<PhoneState>,
    key_index_list: Option<(u64, B64)>,
    presences: VecDeque<PresenceRecord>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct GroupState {
    id: String,
    subject: String,
    creator: AccountId,
    creation: u64,
    participants: Vec<(AccountId, bool)>,
    lid_addressed: bool,
    description: Option<(String, String, AccountId, u64)>,
    invite_code: String,
    revoked_invite_codes: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct TrafficState {
    dirty: Vec<(AccountId, BTreeMap<String, u64>)>,
    media_stored_at: Vec<(String, u64)>,
    phone_media: Vec<(AccountId, String, B64)>,
    reuploads: u64,
    app_state: Vec<(AccountId, AppState)>,
    tokens_issued: Vec<(AccountId, AccountId, u64)>,
    chats: Vec<(AccountId, AccountId)>,
    routing_info: Vec<(DeviceAddr, B64)>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct AppState {
    /// The phone's sync keys, oldest first: (id, data, timestamp ms).
    keys: Vec<(B64, B64, Option<i64>)>,
    collections: Vec<CollectionSaved>,
    shared_with: BTreeSet<u16>,
    tamper_next: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct CollectionSaved {
    name: String,
    version: u64,
    hash: B64,
    index_value_macs: Vec<(B64, B64)>,
    patches: Vec<B64>,
    records: Vec<(B64, B64)>,
    values: Vec<(Vec<String>, B64)>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ReachoutState {
    limits: Vec<(AccountId, ReachoutLimits)>,
    reached: Vec<(AccountId, VecDeque<(u64, AccountId)>)>,
    timelocks: Vec<(AccountId, Timelock)>,
    restricted: Vec<AccountId>,
    tokens: Vec<(AccountId, AccountId, B64, u64)>,
}

// ------------------------------------------------------------------ saving

fn phone_state(p: &Phone) -> PhoneState {
    let mut sessions: Vec<_> = p.sessions.iter().map(|(a, r)| (*a, B64(r.to_bytes()))).collect();
    sessions.sort_by_key(|(a, _)| *a);
    PhoneState {
        identity_private: B64::of(p.identity.key_pair.private.as_bytes()),
        registration_id: p.identity.registration_id,
        signed_pre_keys: p.pre_keys.signed.iter().map(|k| B64(k.to_bytes())).collect(),
        pre_keys: p.pre_keys.one_time.iter().map(|k| B64(k.to_bytes())).collect(),
        sessions,
        sender_keys: {
            let mut v: Vec<_> =
                p.sender_keys.iter().map(|((g, a), r)| (g.clone(), *a, B64(r.to_bytes()))).collect();
            v.sort_by(|x, y| (&x.0, x.1).cmp(&(&y.0, y.1)));
            v
        },
        own_sender_keys: sorted(
            p.own_sender_keys.iter().map(|(g, r)| (g.clone(), B64(r.to_bytes()))).collect(),
        ),
        skdm_sent: sorted(
            p.skdm_sent
                .iter()
                .map(|(g, s)| {
                    let mut v: Vec<_> = s.iter().copied().collect();
                    v.sort();
                    (g.clone(), v)
                })
                .collect(),
        ),
        inbox: p
            .inbox
            .iter()
            .map(|m| InboxState {
                id: m.id.clone(),
                chat: m.chat.clone(),
                sender: m.sender.clone(),
                device: m.device,
                text: m.text.clone(),
                kind: m.kind.clone(),
                t: m.t,
                message: B64::of(&m.message),
                error: m.error.clone(),
            })
            .collect(),
        receipts: p.receipts.clone(),
    }
}

fn encode_node(n: &wa_binary::Node) -> Result<B64, StateError> {
    wa_binary::encode(n).map(B64).map_err(|e| StateError::Encode(e.to_string()))
}

fn device_state(d: &Device) -> Result<DeviceState, StateError> {
    let offline = d.in_flight.iter().chain(d.offline.iter()).map(encode_node).collect::<Result<_, _>>()?;
    Ok(DeviceState {
        id: d.id,
        noise_key: d.noise_key.map(|k| B64::of(k.as_bytes())),
        identity: B64::of(d.keys.identity.as_bytes()),
        registration_id: d.keys.registration_id,
        signed_pre_key_id: d.keys.signed_pre_key.id,
        signed_pre_key: B64::of(d.keys.signed_pre_key.public.as_bytes()),
        signed_pre_key_signature: B64::of(&d.keys.signed_pre_key.signature),
        pre_keys: d.keys.pre_keys.iter().map(|(id, k)| (*id, B64::of(k.as_bytes()))).collect(),
        key_index: d.key_index,
        offline,
        acked: d.acked.clone(),
        platform: d.platform.clone(),
        signed_identity: d.signed_identity.as_deref().map(B64::of),
    })
}

fn app_state(s: &AccountAppState) -> AppState {
    let mut collections: Vec<_> = s
        .collections
        .iter()
        .map(|(c, sc)| CollectionSaved {
            name: c.as_str().to_owned(),
            version: sc.state.version,
            hash: B64::of(&sc.state.hash.0),
            index_value_macs: sc
                .state
                .index_value_macs
                .iter()
                .map(|(i, v)| (B64::of(i), B64::of(v)))
                .collect(),
            patches: sc.patches.iter().map(|p| B64(p.encode_to_vec())).collect(),
            records: sc.records.iter().map(|(i, r)| (B64::of(i), B64(r.encode_to_vec()))).collect(),
            values: sc.values.iter().map(|(i, v)| (i.clone(), B64(v.encode_to_vec()))).collect(),
        })
        .collect();
    collections.sort_by(|a, b| a.name.cmp(&b.name));
    AppState {
        keys: s.keys.iter().map(|k| (B64(k.id.0.clone()), B64::of(&k.data), k.timestamp)).collect(),
        collections,
        shared_with: s.shared_with.clone(),
        tamper_next: s.tamper_next.iter().map(|c| c.as_str().to_owned()).collect(),
    }
}

fn sorted<K: Ord, V>(mut v: Vec<(K, V)>) -> Vec<(K, V)> {
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

impl WorldState {
    /// Captures the durable part of `world` (see the module docs).
    pub(crate) fn capture(world: &World) -> Result<Self, StateError> {
        let accounts = world
            .accounts
            .iter()
            .map(|a| {
                Ok(AccountState {
                    pn: a.pn.clone(),
                    lid: a.lid.clone(),
                    push_name: a.push_name.clone(),
                    phone: phone_state(&a.phone),
                    devices: a.devices.values().map(device_state).collect::<Result<_, StateError>>()?,
                    next_device_id: a.next_device_id,
                    raw_id: a.raw_id,
                    lid_migrated: a.lid_migrated,
                    hosted: a.hosted.as_ref().map(phone_state),
                    key_index_list: a.key_index_list.as_ref().map(|k| (k.timestamp, B64::of(&k.signed))),
                    presences: a.presences.clone(),
                })
            })
            .collect::<Result<_, StateError>>()?;
        let groups = world
            .groups
            .values()
            .map(|g| GroupState {
                id: g.id.clone(),
                subject: g.subject.clone(),
                creator: g.creator,
                creation: g.creation,
                participants: g.participants.iter().map(|(a, admin)| (*a, *admin)).collect(),
                lid_addressed: g.lid_addressed,
                description: g
                    .description
                    .as_ref()
                    .map(|d| (d.id.clone(), d.body.clone(), d.set_by, d.set_at)),
                invite_code: g.invite_code.clone(),
                revoked_invite_codes: g.revoked_invite_codes.clone(),
            })
            .collect();
        let t = &world.traffic;
        let traffic = TrafficState {
            dirty: sorted(t.dirty.iter().map(|(a, d)| (*a, d.clone())).collect()),
            media_stored_at: sorted(t.media_stored_at.iter().map(|(p, at)| (p.clone(), *at)).collect()),
            phone_media: {
                let mut v: Vec<_> = t
                    .phone_media
                    .iter()
                    .map(|((a, id), m)| (*a, id.clone(), B64(m.encode_to_vec())))
                    .collect();
                v.sort_by(|x, y| (x.0, &x.1).cmp(&(y.0, &y.1)));
                v
            },
            reuploads: t.reuploads,
            app_state: sorted(t.app_state.iter().map(|(a, s)| (*a, app_state(s))).collect()),
            tokens_issued: {
                let mut v: Vec<_> = t.tokens_issued.iter().map(|((a, b), at)| (*a, *b, *at)).collect();
                v.sort();
                v
            },
            chats: t.chats.iter().copied().collect(),
            routing_info: sorted(t.routing_info.iter().map(|(d, r)| (*d, B64::of(r))).collect()),
        };
        let r = &world.reachout;
        let reachout = ReachoutState {
            limits: sorted(r.limits.iter().map(|(a, l)| (*a, *l)).collect()),
            reached: sorted(r.reached.iter().map(|(a, q)| (*a, q.clone())).collect()),
            timelocks: sorted(r.timelocks.iter().map(|(a, l)| (*a, l.clone())).collect()),
            restricted: {
                let mut v: Vec<_> = r.restricted.iter().copied().collect();
                v.sort();
                v
            },
            tokens: {
                let mut v: Vec<_> =
                    r.tokens.iter().map(|((a, b), (tok, at))| (*a, *b, B64::of(tok), *at)).collect();
                v.sort_by_key(|x| (x.0, x.1));
                v
            },
        };
        let (root, responder) = world.keys.parts();
        Ok(WorldState {
            format: STATE_FORMAT,
            keys: KeysState {
                root_private: B64::of(root.private.as_bytes()),
                static_private: B64::of(responder.static_key.private.as_bytes()),
                cert_chain: B64::of(&responder.cert_chain),
            },
            accounts,
            groups,
            sent_by: sorted(world.sent_by.iter().map(|(id, d)| (id.clone(), *d)).collect()),
            media: sorted(world.media.iter().map(|(p, b)| (p.clone(), B64::of(b))).collect()),
            traffic,
            reachout,
            next_iq: world.next_iq,
        })
    }

    /// Serializes the state.
    pub fn to_json(&self) -> Result<Vec<u8>, StateError> {
        Ok(serde_json::to_vec(self)?)
    }

    /// Parses a state [`Self::to_json`] wrote; another format version is refused.
    pub fn from_json(bytes: &[u8]) -> Result<Self, StateError> {
        #[derive(Deserialize)]
        struct Head {
            format: u32,
        }
        let head: Head = serde_json::from_slice(bytes)?;
        if head.format != STATE_FORMAT {
            return Err(StateError::Format { found: head.format });
        }
        Ok(serde_json::from_slice(bytes)?)
    }

    /// Reads a state file; `Ok(None)` when there is none yet.
    pub fn load(path: &Path) -> Result<Option<Self>, StateError> {
        match std::fs::read(path) {
            Ok(b) => Self::from_json(&b).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StateError::Io { path: path.display().to_string(), source: e }),
        }
    }

    /// Writes the state to `path` crash-safely: to a temporary file beside it, flushed to disk,
    /// then renamed over `path` (a crash leaves the old file or the new one, never a mix).
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        use std::io::Write as _;
        let io = |source| StateError::Io { path: path.display().to_string(), source };
        let tmp = path.with_extension("json.tmp");
        {
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&self.to_json()?).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)?;
        // The rename itself is durable once the directory is synced (best effort where a
        // directory cannot be opened, as on Windows).
        if let Some(dir) = path.parent()
            && let Ok(d) = std::fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// The server keys of the state.
    pub(crate) fn server_keys(&self, now: u64) -> Result<ServerKeys, StateError> {
        let root = self.keys.root_private.key_pair("root key")?;
        let static_key = self.keys.static_private.key_pair("static key")?;
        ServerKeys::from_parts(root, static_key, self.keys.cert_chain.0.clone(), now)
            .map_err(|e| bad(format_args!("server certificate: {e}")))
    }

    /// Puts the state into a fresh `world` (no accounts yet), checking every reference.
    pub(crate) fn restore_into(self, world: &mut World) -> Result<(), StateError> {
        let n = self.accounts.len();
        let account = |a: AccountId| if a < n { Ok(a) } else { Err(bad(format_args!("account {a} of {n}"))) };
        let mut accounts = Vec::with_capacity(n);
        for a in self.accounts {
            if world.by_pn.insert(a.pn.clone(), accounts.len()).is_some() {
                return Err(bad(format_args!("phone number {} twice", a.pn)));
            }
            if world.by_lid.insert(a.lid.clone(), accounts.len()).is_some() {
                return Err(bad(format_args!("LID {} twice", a.lid)));
            }
            accounts.push(restore_account(a, n)?);
        }
        world.accounts = accounts;
        // A device address must name an existing device of an existing account.
        let device = |w: &World, d: DeviceAddr| {
            if d.account < n && w.accounts[d.account].devices.contains_key(&d.device) {
                Ok(d)
            } else {
                Err(bad(format_args!("no device {}:{}", d.account, d.device)))
            }
        };
        for g in self.groups {
            let participants = g
                .participants
                .into_iter()
                .map(|(a, admin)| Ok((account(a)?, admin)))
                .collect::<Result<_, StateError>>()?;
            let description = match g.description {
                Some((id, body, set_by, set_at)) => {
                    Some(GroupDescription { id, body, set_by: account(set_by)?, set_at })
                }
                None => None,
            };
            world.groups.insert(
                g.id.clone(),
                Group {
                    id: g.id,
                    subject: g.subject,
                    creator: account(g.creator)?,
                    creation: g.creation,
                    participants,
                    lid_addressed: g.lid_addressed,
                    description,
                    invite_code: g.invite_code,
                    revoked_invite_codes: g.revoked_invite_codes,
                },
            );
        }
        for (id, d) in self.sent_by {
            let d = device(world, d)?;
            world.sent_by.insert(id, d);
        }
        world.media = self.media.into_iter().map(|(p, b)| (p, b.0)).collect();
        world.traffic = restore_traffic(self.traffic, world, &account, &device)?;
        world.reachout = restore_reachout(self.reachout, &account)?;
        world.next_iq = self.next_iq;
        Ok(())
    }
}

fn restore_phone(p: PhoneState, n: usize) -> Result<Phone, StateError> {
    let addr = |a: DeviceAddr| {
        if a.account < n { Ok(a) } else { Err(bad(format_args!("account {} of {n}", a.account))) }
    };
    let signal = |what: &str, e: wa_signal::SignalError| bad(format_args!("phone {what}: {e}"));
    let signed = p
        .signed_pre_keys
        .iter()
        .map(|b| SignedPreKeyRecord::from_bytes(&b.0).map_err(|e| signal("signed prekey", e)))
        .collect::<Result<Vec<_>, _>>()?;
    if signed.is_empty() {
        return Err(bad("phone without a signed prekey"));
    }
    Ok(Phone {
        identity: LocalIdentity::new(p.identity_private.key_pair("phone identity")?, p.registration_id),
        pre_keys: PreKeySet {
            signed,
            one_time: p
                .pre_keys
                .iter()
                .map(|b| PreKeyRecord::from_bytes(&b.0).map_err(|e| signal("prekey", e)))
                .collect::<Result<_, _>>()?,
        },
        sessions: p
            .sessions
            .into_iter()
            .map(|(a, r)| Ok((addr(a)?, SessionRecord::from_bytes(&r.0).map_err(|e| signal("session", e))?)))
            .collect::<Result<HashMap<_, _>, StateError>>()?,
        sender_keys: p
            .sender_keys
            .into_iter()
            .map(|(g, a, r)| {
                Ok(((g, addr(a)?), SenderKeyRecord::from_bytes(&r.0).map_err(|e| signal("sender key", e))?))
            })
            .collect::<Result<HashMap<_, _>, StateError>>()?,
        own_sender_keys: p
            .own_sender_keys
            .into_iter()
            .map(|(g, r)| Ok((g, SenderKeyRecord::from_bytes(&r.0).map_err(|e| signal("sender key", e))?)))
            .collect::<Result<HashMap<_, _>, StateError>>()?,
        skdm_sent: p
            .skdm_sent
            .into_iter()
            .map(|(g, s)| Ok((g, s.into_iter().map(addr).collect::<Result<HashSet<_>, _>>()?)))
            .collect::<Result<HashMap<_, _>, StateError>>()?,
        inbox: p
            .inbox
            .into_iter()
            .map(|m| InboxMessage {
                id: m.id,
                chat: m.chat,
                sender: m.sender,
                device: m.device,
                text: m.text,
                kind: m.kind,
                t: m.t,
                message: m.message.0,
                error: m.error,
            })
            .collect(),
        receipts: p.receipts,
    })
}

fn restore_device(d: DeviceState) -> Result<Device, StateError> {
    let what = format!("device {}", d.id);
    let offline = d
        .offline
        .iter()
        .map(|b| wa_binary::decode_frame(&b.0).map_err(|e| bad(format_args!("{what}: queued stanza: {e}"))))
        .collect::<Result<_, _>>()?;
    Ok(Device {
        id: d.id,
        noise_key: d.noise_key.map(|k| k.public(&what)).transpose()?,
        keys: DeviceKeys {
            identity: d.identity.public(&what)?,
            registration_id: d.registration_id,
            signed_pre_key: SignedPreKeyPub {
                id: d.signed_pre_key_id,
                public: d.signed_pre_key.public(&what)?,
                signature: d.signed_pre_key_signature.array(&what)?,
            },
            pre_keys: d
                .pre_keys
                .into_iter()
                .map(|(id, k)| Ok((id, k.public(&what)?)))
                .collect::<Result<_, StateError>>()?,
        },
        key_index: d.key_index,
        conn: None,
        offline,
        in_flight: VecDeque::new(),
        acked: d.acked,
        platform: d.platform,
        signed_identity: d.signed_identity.map(|b| b.0),
    })
}

fn restore_account(a: AccountState, n: usize) -> Result<Account, StateError> {
    let mut devices = BTreeMap::new();
    for d in a.devices {
        let d = restore_device(d)?;
        if d.id >= a.next_device_id && d.id != crate::HOSTED_DEVICE_ID {
            return Err(bad(format_args!(
                "{}: device {} at or above the next id {}",
                a.pn, d.id, a.next_device_id
            )));
        }
        if devices.insert(d.id, d).is_some() {
            return Err(bad(format_args!("{}: a device twice", a.pn)));
        }
    }
    if !devices.contains_key(&0) {
        return Err(bad(format_args!("{}: no phone (device 0)", a.pn)));
    }
    Ok(Account {
        pn: a.pn,
        lid: a.lid,
        push_name: a.push_name,
        phone: restore_phone(a.phone, n)?,
        devices,
        next_device_id: a.next_device_id,
        raw_id: a.raw_id,
        lid_migrated: a.lid_migrated,
        hosted: a.hosted.map(|p| restore_phone(p, n)).transpose()?,
        key_index_list: a.key_index_list.map(|(timestamp, s)| KeyIndexList { timestamp, signed: s.0 }),
        presences: a.presences,
    })
}

fn collection(name: &str) -> Result<Collection, StateError> {
    name.parse().map_err(|_| bad(format_args!("no app-state collection {name:?}")))
}

fn restore_app_state(s: AppState) -> Result<AccountAppState, StateError> {
    let proto = |what: &str, e: prost::DecodeError| bad(format_args!("app state {what}: {e}"));
    let keys: Vec<SyncKey> = s
        .keys
        .into_iter()
        .map(|(id, data, timestamp)| {
            Ok(SyncKey { id: KeyId(id.0), data: data.array("app-state key")?, timestamp })
        })
        .collect::<Result<_, StateError>>()?;
    let mut ring = KeyRing::new();
    for k in &keys {
        ring.insert(&k.id, &k.data);
    }
    let mut collections = HashMap::new();
    for c in s.collections {
        let name = collection(&c.name)?;
        let state = CollectionState {
            collection: name,
            version: c.version,
            hash: LtHash(c.hash.array("LTHash")?),
            index_value_macs: c
                .index_value_macs
                .iter()
                .map(|(i, v)| Ok((i.array("index MAC")?, v.array("value MAC")?)))
                .collect::<Result<_, StateError>>()?,
        };
        let stored = StoredCollection {
            state,
            patches: c
                .patches
                .iter()
                .map(|p| wa_proto::SyncdPatch::decode(p.0.as_slice()).map_err(|e| proto("patch", e)))
                .collect::<Result<_, _>>()?,
            records: c
                .records
                .iter()
                .map(|(i, r)| {
                    Ok((
                        i.array("index MAC")?,
                        wa_proto::SyncdRecord::decode(r.0.as_slice()).map_err(|e| proto("record", e))?,
                    ))
                })
                .collect::<Result<_, StateError>>()?,
            values: c
                .values
                .into_iter()
                .map(|(i, v)| {
                    Ok((i, wa_proto::SyncActionValue::decode(v.0.as_slice()).map_err(|e| proto("value", e))?))
                })
                .collect::<Result<_, StateError>>()?,
        };
        collections.insert(name, stored);
    }
    Ok(AccountAppState {
        keys,
        ring,
        collections,
        shared_with: s.shared_with,
        tamper_next: s.tamper_next.iter().map(|c| collection(c)).collect::<Result<_, _>>()?,
        // A queued race is a test's arrangement for the running server, not saved state.
        race_next_upload: Vec::new(),
    })
}

fn restore_traffic(
    t: TrafficState,
    world: &World,
    account: &impl Fn(AccountId) -> Result<AccountId, StateError>,
    device: &impl Fn(&World, DeviceAddr) -> Result<DeviceAddr, StateError>,
) -> Result<Traffic, StateError> {
    Ok(Traffic {
        dirty: t.dirty.into_iter().map(|(a, d)| Ok((account(a)?, d))).collect::<Result<_, StateError>>()?,
        media_stored_at: t.media_stored_at.into_iter().collect(),
        phone_media: t
            .phone_media
            .into_iter()
            .map(|(a, id, m)| {
                let m = wa_proto::Message::decode(m.0.as_slice())
                    .map_err(|e| bad(format_args!("phone media message: {e}")))?;
                Ok(((account(a)?, id), m))
            })
            .collect::<Result<_, StateError>>()?,
        reuploads: t.reuploads,
        app_state: t
            .app_state
            .into_iter()
            .map(|(a, s)| Ok((account(a)?, restore_app_state(s)?)))
            .collect::<Result<_, StateError>>()?,
        tokens_issued: t
            .tokens_issued
            .into_iter()
            .map(|(a, b, at)| Ok(((account(a)?, account(b)?), at)))
            .collect::<Result<_, StateError>>()?,
        chats: t
            .chats
            .into_iter()
            .map(|(a, b)| Ok((account(a)?, account(b)?)))
            .collect::<Result<_, StateError>>()?,
        calls: HashMap::new(),
        // Not kept, like ringing calls: a history chunk still waiting for its `hist_sync`
        // receipt is not sent again after a restart (the companion has it, or asks the phone).
        history: HashMap::new(),
        routing_info: t
            .routing_info
            .into_iter()
            .map(|(d, r)| Ok((device(world, d)?, r.0)))
            .collect::<Result<_, StateError>>()?,
    })
}

fn restore_reachout(
    r: ReachoutState,
    account: &impl Fn(AccountId) -> Result<AccountId, StateError>,
) -> Result<Reachout, StateError> {
    Ok(Reachout {
        limits: r.limits.into_iter().map(|(a, l)| Ok((account(a)?, l))).collect::<Result<_, StateError>>()?,
        reached: r
            .reached
            .into_iter()
            .map(|(a, q)| {
                for (_, b) in &q {
                    account(*b)?;
                }
                Ok((account(a)?, q))
            })
            .collect::<Result<_, StateError>>()?,
        timelocks: r
            .timelocks
            .into_iter()
            .map(|(a, l)| Ok((account(a)?, l)))
            .collect::<Result<_, StateError>>()?,
        restricted: r.restricted.into_iter().map(account).collect::<Result<_, _>>()?,
        tokens: r
            .tokens
            .into_iter()
            .map(|(a, b, tok, at)| Ok(((account(a)?, account(b)?), (tok.0, at))))
            .collect::<Result<_, StateError>>()?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::testutil::{T0, add_companion, login, sent, world};

    /// A world with two accounts, a companion with stanzas queued (one offline, one in
    /// flight), a group, a dirty bit, app state, a reach-out limit and a token.
    fn busy_world() -> World {
        let (mut w, _clock) = world(2);
        let me = add_companion(&mut w, 0, 1);
        w.accounts[0].next_device_id = 2;
        let (conn, mut rx) = login(&mut w, me);
        let group = w.create_group(0, "Team", &[1]);
        let me_jid = w.user_jid(0, wa_binary::Server::Pn);
        w.phone_send(
            1,
            &me_jid,
            &wa_proto::Message { conversation: Some("one".into()), ..Default::default() },
        )
        .unwrap();
        let _ = sent(&mut rx);
        w.disconnect(conn);
        w.phone_send(
            1,
            &group,
            &wa_proto::Message { conversation: Some("two".into()), ..Default::default() },
        )
        .unwrap();
        w.mark_dirty(0, "account_sync");
        w.phone_change_app_state(0, &["regular"]).unwrap();
        w.set_reachout_limits(1, crate::reachout::ReachoutLimits { new_contacts: 5, window_secs: 60 });
        w.reachout.tokens.insert((1, 0), (vec![7; 8], T0));
        w
    }

    fn restored(state: WorldState) -> Result<World, StateError> {
        let keys = state.server_keys(T0)?;
        let mut w =
            World::new(StdRng::seed_from_u64(9), Arc::new(crate::clock::ManualClock::new(T0)), keys, 6);
        state.restore_into(&mut w)?;
        Ok(w)
    }

    #[test]
    fn a_saved_world_restores_to_the_same_state() {
        let w = busy_world();
        assert!(!w.accounts[0].devices[&1].offline.is_empty(), "the fixture queues stanzas");
        let json = WorldState::capture(&w).unwrap().to_json().unwrap();
        let back = restored(WorldState::from_json(&json).unwrap()).unwrap();
        assert_eq!(
            WorldState::capture(&back).unwrap().to_json().unwrap(),
            json,
            "saving the restored world changes nothing"
        );
        assert_eq!(back.keys.static_public_key(), w.keys.static_public_key(), "the Noise static key stays");
        assert_eq!(back.account_by_pn("15550001000"), Ok(0));
        assert_eq!(back.accounts[0].phone.identity_public(), w.accounts[0].phone.identity_public());
        assert_eq!(back.accounts[0].devices[&1].offline.len(), w.accounts[0].devices[&1].offline.len());
        assert!(back.accounts[0].devices[&1].conn.is_none());
        assert_eq!(back.groups.len(), 1);
    }

    #[test]
    fn stanzas_in_flight_are_saved_as_undelivered() {
        let (mut w, _clock) = world(2);
        let me = add_companion(&mut w, 0, 1);
        w.accounts[0].next_device_id = 2;
        let (_conn, _rx) = login(&mut w, me);
        let me_jid = w.user_jid(0, wa_binary::Server::Pn);
        let id = w
            .phone_send(
                1,
                &me_jid,
                &wa_proto::Message { conversation: Some("x".into()), ..Default::default() },
            )
            .unwrap();
        assert!(!w.accounts[0].devices[&1].in_flight.is_empty());
        let back = restored(WorldState::capture(&w).unwrap()).unwrap();
        let d = &back.accounts[0].devices[&1];
        assert!(d.in_flight.is_empty());
        assert!(
            d.offline.iter().any(|n| n.tag == "message" && crate::world::attr(n, "id") == id),
            "{:?}",
            d.offline
        );
    }

    #[test]
    fn a_state_that_does_not_hold_together_is_refused() {
        let json = WorldState::capture(&busy_world()).unwrap().to_json().unwrap();
        let mut v: serde_json::Value = serde_json::from_slice(&json).unwrap();

        let mut other_format = v.clone();
        other_format["format"] = (STATE_FORMAT + 1).into();
        let e = WorldState::from_json(&serde_json::to_vec(&other_format).unwrap()).unwrap_err();
        assert!(matches!(e, StateError::Format { found } if found == STATE_FORMAT + 1), "{e}");

        assert!(matches!(WorldState::from_json(&json[..json.len() / 2]), Err(StateError::Json(_))));
        assert!(matches!(WorldState::from_json(b"not json"), Err(StateError::Json(_))));

        v["groups"][0]["creator"] = 7.into();
        let e = restored(WorldState::from_json(&serde_json::to_vec(&v).unwrap()).unwrap()).unwrap_err();
        assert!(matches!(&e, StateError::Inconsistent(m) if m.contains("account 7")), "{e}");

        let mut v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        v["keys"]["static_private"] = serde_json::Value::String(STANDARD.encode([1u8; 32]));
        let e = restored(WorldState::from_json(&serde_json::to_vec(&v).unwrap()).unwrap()).unwrap_err();
        assert!(matches!(&e, StateError::Inconsistent(m) if m.contains("certificate")), "{e}");

        let mut v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        v["accounts"][0]["phone"]["sessions"] = serde_json::json!([[{"account": 0, "device": 1}, "AAAA"]]);
        let e = restored(WorldState::from_json(&serde_json::to_vec(&v).unwrap()).unwrap()).unwrap_err();
        assert!(matches!(&e, StateError::Inconsistent(m) if m.contains("session")), "{e}");
    }

    #[test]
    fn saving_replaces_the_file_whole() {
        let dir = std::env::temp_dir().join(format!("wa-emulator-persist-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("world.json");
        assert!(WorldState::load(&path).unwrap().is_none(), "no file yet: nothing to restore");
        let state = WorldState::capture(&busy_world()).unwrap();
        state.save(&path).unwrap();
        state.save(&path).unwrap();
        assert!(!path.with_extension("json.tmp").exists());
        let back = WorldState::load(&path).unwrap().unwrap();
        assert_eq!(back.to_json().unwrap(), state.to_json().unwrap());
        std::fs::write(&path, b"{\"format\":1").unwrap();
        assert!(matches!(WorldState::load(&path), Err(StateError::Json(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
