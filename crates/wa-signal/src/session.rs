//! Pairwise sessions: X3DH session building and the double ratchet.
//!
//! Every decrypt is computed first and committed only when the MAC and the body check out, so
//! a failing decrypt leaves the [`SessionRecord`] exactly as it was. [`SessionRecord::decrypt`]
//! is the pure form: `(record, message) → (plaintext, new record)`.

use rand_core::CryptoRng;
use wa_crypto::{KeyPair, PublicKey, cbc};

use crate::error::SignalError;
use crate::kdf::{self, MessageKeys};
use crate::keys::{LocalIdentity, PreKeyBundle, PreKeyStore, copy_key_pair};
use crate::wire::{self, PreKeySignalMessage, SignalMessage};

/// Limits and policies of pairwise sessions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// How many message keys a single message may skip in its chain (libsignal: 2,000).
    pub max_future_messages: u32,
    /// Skipped message keys kept per session state; the oldest go first.
    pub max_skipped_keys: usize,
    /// Receiving chains kept per state (libsignal: 5); older chains are dropped.
    pub max_receiving_chains: usize,
    /// Previous (archived) session states kept per record (libsignal: 40).
    pub max_archived_states: usize,
    /// Skipped message keys an archived state keeps.
    pub max_archived_skipped_keys: usize,
    /// Whether a new session with a changed remote identity is accepted (and reported as
    /// [`IdentityCheck::Changed`]) or refused with [`SignalError::IdentityChanged`].
    pub accept_identity_change: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_future_messages: 2000,
            max_skipped_keys: 2000,
            max_receiving_chains: 5,
            max_archived_states: 40,
            max_archived_skipped_keys: 100,
            accept_identity_change: true,
        }
    }
}

/// How the remote identity of a new session compares with the one on record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityCheck {
    /// No identity was on record for this peer.
    FirstContact,
    /// Same identity as on record.
    Unchanged,
    /// The peer's identity key changed (reinstall or a different device): tell the user.
    Changed {
        /// The identity that was on record.
        previous: PublicKey,
    },
}

/// A successful decrypt.
#[derive(Debug)]
pub struct Decrypted {
    /// The plaintext (still padded as the sender padded it).
    pub plaintext: Vec<u8>,
    /// The remote identity compared with the record's.
    pub identity: IdentityCheck,
    /// One-time prekey id consumed by this message: delete it once the new record is stored.
    pub used_pre_key: Option<u32>,
}

/// An encrypted pairwise message, as carried in `<enc type="pkmsg|msg">`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CiphertextMessage {
    /// PreKeySignalMessage: the session is not yet acknowledged by the peer.
    PreKey(Vec<u8>),
    /// SignalMessage.
    Whisper(Vec<u8>),
}

impl CiphertextMessage {
    /// The `type` attribute of the `<enc>` node.
    pub fn enc_type(&self) -> &'static str {
        match self {
            CiphertextMessage::PreKey(_) => "pkmsg",
            CiphertextMessage::Whisper(_) => "msg",
        }
    }
    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            CiphertextMessage::PreKey(b) | CiphertextMessage::Whisper(b) => b,
        }
    }
    /// The bytes, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            CiphertextMessage::PreKey(b) | CiphertextMessage::Whisper(b) => b,
        }
    }
}

/// Which kind of pairwise ciphertext to decrypt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    /// `pkmsg`.
    PreKey,
    /// `msg`.
    Whisper,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SkippedKey {
    pub index: u32,
    pub seed: [u8; 32],
}

#[derive(Clone, Debug)]
pub(crate) struct ReceivingChain {
    pub ratchet_key: PublicKey,
    /// `None` for a closed chain (imported from libsignal-node, which closes a chain when the
    /// ratchet turns): only its stored skipped keys remain usable.
    pub chain_key: Option<[u8; 32]>,
    pub next_index: u32,
    /// Ascending by index.
    pub skipped: Vec<SkippedKey>,
}

#[derive(Clone, Debug)]
pub(crate) struct SendingChain {
    pub chain_key: [u8; 32],
    pub next_index: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PendingPreKey {
    pub pre_key_id: Option<u32>,
    pub signed_pre_key_id: u32,
    pub base_key: PublicKey,
}

pub(crate) struct SessionState {
    pub remote_identity: PublicKey,
    pub remote_registration_id: u32,
    pub base_key: PublicKey,
    pub initiated_by_us: bool,
    pub root_key: [u8; 32],
    pub our_ratchet: KeyPair,
    pub sending: Option<SendingChain>,
    pub previous_counter: u32,
    /// Oldest first.
    pub receiving: Vec<ReceivingChain>,
    pub pending_pre_key: Option<PendingPreKey>,
}

impl Clone for SessionState {
    fn clone(&self) -> Self {
        SessionState {
            remote_identity: self.remote_identity,
            remote_registration_id: self.remote_registration_id,
            base_key: self.base_key,
            initiated_by_us: self.initiated_by_us,
            root_key: self.root_key,
            our_ratchet: copy_key_pair(&self.our_ratchet),
            sending: self.sending.clone(),
            previous_counter: self.previous_counter,
            receiving: self.receiving.clone(),
            pending_pre_key: self.pending_pre_key.clone(),
        }
    }
}

impl core::fmt::Debug for SessionState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SessionState")
            .field("remote_identity", &self.remote_identity)
            .field("base_key", &self.base_key)
            .field("initiated_by_us", &self.initiated_by_us)
            .field("receiving_chains", &self.receiving.len())
            .field("pending_pre_key", &self.pending_pre_key.is_some())
            .finish_non_exhaustive()
    }
}

/// How a verified message changes its state.
enum Step {
    /// A stored skipped key was used.
    Skipped { chain: usize, pos: usize },
    /// An existing receiving chain moves forward.
    Advance { chain: usize, chain_key: [u8; 32], next_index: u32, skipped: Vec<SkippedKey> },
    /// A new ratchet key: a new receiving chain, a new ratchet key pair and sending chain, and
    /// the root key after both steps.
    Ratchet { root_key: [u8; 32], chain: ReceivingChain, our_ratchet: KeyPair, sending_chain: [u8; 32] },
}

impl SessionState {
    /// Works out the message key and the state change for `msg` without touching `self`,
    /// then verifies the MAC and decrypts.
    fn prepare<R: CryptoRng + ?Sized>(
        &self,
        local: &LocalIdentity,
        msg: &SignalMessage<'_>,
        config: &SessionConfig,
        rng: &mut R,
    ) -> Result<(Step, Vec<u8>), SignalError> {
        /// What the message needs, before it is authenticated.
        enum Found {
            Known(Step),
            NewRatchet { root_key: [u8; 32], chain: ReceivingChain },
        }
        let (found, seed) = if let Some(ci) =
            self.receiving.iter().rposition(|c| c.ratchet_key == msg.ratchet_key)
        {
            let chain = &self.receiving[ci];
            if msg.counter < chain.next_index {
                let pos = chain
                    .skipped
                    .binary_search_by_key(&msg.counter, |k| k.index)
                    .map_err(|_| SignalError::DuplicateMessage { counter: msg.counter })?;
                (Found::Known(Step::Skipped { chain: ci, pos }), chain.skipped[pos].seed)
            } else {
                let chain_key =
                    chain.chain_key.as_ref().ok_or(SignalError::ChainClosed { counter: msg.counter })?;
                let w =
                    kdf::walk_chain(chain_key, chain.next_index, msg.counter, config.max_future_messages)?;
                let step = Step::Advance {
                    chain: ci,
                    chain_key: w.chain_key,
                    next_index: w.next,
                    skipped: w.skipped,
                };
                (Found::Known(step), w.seed)
            }
        } else {
            if msg.ratchet_key == self.our_ratchet.public {
                return Err(SignalError::NoMatchingState);
            }
            // Bound the work before any key agreement.
            if msg.counter > config.max_future_messages {
                return Err(SignalError::TooFarAhead {
                    ahead: msg.counter,
                    limit: config.max_future_messages,
                });
            }
            let (root_key, ck) = kdf::root_step(&self.root_key, &self.our_ratchet.private, &msg.ratchet_key)?;
            let w = kdf::walk_chain(&ck, 0, msg.counter, config.max_future_messages)?;
            let chain = ReceivingChain {
                ratchet_key: msg.ratchet_key,
                chain_key: Some(w.chain_key),
                next_index: w.next,
                skipped: w.skipped,
            };
            (Found::NewRatchet { root_key, chain }, w.seed)
        };
        let keys: MessageKeys = kdf::message_keys(&seed);
        if !msg.verify_mac(&keys.mac_key, &self.remote_identity, &local.key_pair.public) {
            return Err(SignalError::BadMac);
        }
        let plaintext =
            cbc::decrypt(&keys.cipher_key, &keys.iv, &msg.ciphertext).map_err(SignalError::BadCiphertext)?;
        let step = match found {
            Found::Known(step) => step,
            Found::NewRatchet { root_key, chain } => {
                // Only an authenticated message draws a new ratchet key.
                let our_ratchet = KeyPair::generate(rng);
                let (root_key, sending_chain) =
                    kdf::root_step(&root_key, &our_ratchet.private, &chain.ratchet_key)?;
                Step::Ratchet { root_key, chain, our_ratchet, sending_chain }
            }
        };
        Ok((step, plaintext))
    }

    /// Applies a prepared step. Infallible.
    fn commit(&mut self, step: Step, config: &SessionConfig) {
        match step {
            Step::Skipped { chain, pos } => {
                self.receiving[chain].skipped.remove(pos);
            }
            Step::Advance { chain, chain_key, next_index, skipped } => {
                let c = &mut self.receiving[chain];
                c.chain_key = Some(chain_key);
                c.next_index = next_index;
                c.skipped.extend(skipped);
            }
            Step::Ratchet { root_key, chain, our_ratchet, sending_chain } => {
                self.previous_counter = self.sending.as_ref().map_or(0, |s| s.next_index.saturating_sub(1));
                self.root_key = root_key;
                self.our_ratchet = our_ratchet;
                self.sending = Some(SendingChain { chain_key: sending_chain, next_index: 0 });
                self.receiving.push(chain);
                let excess = self.receiving.len().saturating_sub(config.max_receiving_chains.max(1));
                self.receiving.drain(..excess);
            }
        }
        self.pending_pre_key = None;
        self.prune_skipped(config.max_skipped_keys);
    }

    /// Drops the oldest skipped keys (oldest chain first) beyond `max`.
    pub(crate) fn prune_skipped(&mut self, max: usize) {
        let total: usize = self.receiving.iter().map(|c| c.skipped.len()).sum();
        let mut excess = total.saturating_sub(max);
        for c in &mut self.receiving {
            if excess == 0 {
                break;
            }
            let n = excess.min(c.skipped.len());
            c.skipped.drain(..n);
            excess -= n;
        }
    }

    fn encrypt(&mut self, local: &LocalIdentity, plaintext: &[u8]) -> Result<CiphertextMessage, SignalError> {
        let sending = self.sending.as_mut().ok_or(SignalError::NoSession)?;
        let counter = sending.next_index;
        let next = counter.checked_add(1).ok_or(SignalError::CounterOverflow)?;
        let (seed, next_chain_key) = kdf::chain_step(&sending.chain_key);
        let keys = kdf::message_keys(&seed);
        let ciphertext = cbc::encrypt(&keys.cipher_key, &keys.iv, plaintext);
        let mut out = Vec::with_capacity(ciphertext.len() + 64);
        wire::seal_signal_message(
            &mut out,
            &self.our_ratchet.public,
            counter,
            self.previous_counter,
            ciphertext,
            &keys.mac_key,
            (&local.key_pair.public, &self.remote_identity),
        );
        sending.chain_key = next_chain_key;
        sending.next_index = next;
        Ok(match &self.pending_pre_key {
            Some(p) => CiphertextMessage::PreKey(wire::seal_pre_key_message(
                local.registration_id,
                p.pre_key_id,
                p.signed_pre_key_id,
                &p.base_key,
                &local.key_pair.public,
                out,
            )),
            None => CiphertextMessage::Whisper(out),
        })
    }
}

/// Everything we hold about the pairwise session with one remote device: the current state and
/// up to [`SessionConfig::max_archived_states`] previous ones (newest first).
#[derive(Clone, Debug, Default)]
pub struct SessionRecord {
    pub(crate) current: Option<SessionState>,
    pub(crate) previous: Vec<SessionState>,
}

impl SessionRecord {
    /// An empty record (no session).
    pub fn new() -> Self {
        SessionRecord::default()
    }

    /// Whether there is a current session to encrypt with.
    pub fn has_current_session(&self) -> bool {
        self.current.as_ref().is_some_and(|s| s.sending.is_some())
    }

    /// The identity key of the peer of the current session (or, failing that, the newest archived).
    pub fn remote_identity(&self) -> Option<PublicKey> {
        self.current.iter().chain(self.previous.iter()).next().map(|s| s.remote_identity)
    }

    /// Registration id of the peer of the current session.
    pub fn remote_registration_id(&self) -> Option<u32> {
        self.current.as_ref().map(|s| s.remote_registration_id)
    }

    /// Number of archived states.
    pub fn archived_states(&self) -> usize {
        self.previous.len()
    }

    /// Whether our next message will be a PreKeySignalMessage (the peer has not answered yet).
    pub fn has_unacknowledged_pre_key(&self) -> bool {
        self.current.as_ref().is_some_and(|s| s.pending_pre_key.is_some())
    }

    /// Moves the current state to the archive (it still decrypts late messages).
    pub fn archive_current_state(&mut self, config: &SessionConfig) {
        if let Some(mut cur) = self.current.take() {
            cur.prune_skipped(config.max_archived_skipped_keys);
            self.previous.insert(0, cur);
            self.previous.truncate(config.max_archived_states);
        }
    }

    fn install(&mut self, state: SessionState, config: &SessionConfig) {
        self.archive_current_state(config);
        self.current = Some(state);
    }

    fn identity_check(&self, new: &PublicKey, config: &SessionConfig) -> Result<IdentityCheck, SignalError> {
        match self.remote_identity() {
            None => Ok(IdentityCheck::FirstContact),
            Some(k) if k == *new => Ok(IdentityCheck::Unchanged),
            Some(previous) if config.accept_identity_change => Ok(IdentityCheck::Changed { previous }),
            Some(previous) => Err(SignalError::IdentityChanged { previous, new: *new }),
        }
    }

    /// Starts a session from the peer's prekey bundle (we are the initiator), drawing the base
    /// key and first ratchet key from `rng` (in that order, as libsignal does).
    pub fn initiate<R: CryptoRng + ?Sized>(
        &mut self,
        local: &LocalIdentity,
        bundle: &PreKeyBundle,
        config: &SessionConfig,
        rng: &mut R,
    ) -> Result<IdentityCheck, SignalError> {
        bundle.verify()?;
        let base_key = KeyPair::generate(rng);
        let ratchet_key = KeyPair::generate(rng);
        self.build_initiator(local, bundle, config, base_key, ratchet_key)
    }

    /// [`Self::initiate`] with explicit base and ratchet keys (for replaying vectors).
    pub fn initiate_with_keys(
        &mut self,
        local: &LocalIdentity,
        bundle: &PreKeyBundle,
        config: &SessionConfig,
        base_key: KeyPair,
        ratchet_key: KeyPair,
    ) -> Result<IdentityCheck, SignalError> {
        bundle.verify()?;
        self.build_initiator(local, bundle, config, base_key, ratchet_key)
    }

    /// X3DH as the initiator, once the bundle's signature has been checked.
    fn build_initiator(
        &mut self,
        local: &LocalIdentity,
        bundle: &PreKeyBundle,
        config: &SessionConfig,
        base_key: KeyPair,
        ratchet_key: KeyPair,
    ) -> Result<IdentityCheck, SignalError> {
        let identity = self.identity_check(&bundle.identity_key, config)?;
        let agree = |ours: &wa_crypto::PrivateKey, theirs: &PublicKey| {
            ours.agree(theirs).map_err(SignalError::Agreement)
        };
        let mut master = [0xFFu8; 32 * 5];
        master[32..64].copy_from_slice(&agree(&local.key_pair.private, &bundle.signed_pre_key)?);
        master[64..96].copy_from_slice(&agree(&base_key.private, &bundle.identity_key)?);
        master[96..128].copy_from_slice(&agree(&base_key.private, &bundle.signed_pre_key)?);
        let len = match &bundle.pre_key {
            Some((_, opk)) => {
                master[128..160].copy_from_slice(&agree(&base_key.private, opk)?);
                160
            }
            None => 128,
        };
        let (root0, _) = kdf::initial_root(&master[..len]);
        let (root_key, chain_key) = kdf::root_step(&root0, &ratchet_key.private, &bundle.signed_pre_key)?;
        let state = SessionState {
            remote_identity: bundle.identity_key,
            remote_registration_id: bundle.registration_id,
            base_key: base_key.public,
            initiated_by_us: true,
            root_key,
            our_ratchet: ratchet_key,
            sending: Some(SendingChain { chain_key, next_index: 0 }),
            previous_counter: 0,
            receiving: Vec::new(),
            pending_pre_key: Some(PendingPreKey {
                pre_key_id: bundle.pre_key.map(|(id, _)| id),
                signed_pre_key_id: bundle.signed_pre_key_id,
                base_key: base_key.public,
            }),
        };
        self.install(state, config);
        Ok(identity)
    }

    /// Encrypts with the current session: a PreKeySignalMessage until the peer answers, then
    /// SignalMessages.
    pub fn encrypt(
        &mut self,
        local: &LocalIdentity,
        plaintext: &[u8],
    ) -> Result<CiphertextMessage, SignalError> {
        self.current.as_mut().ok_or(SignalError::NoSession)?.encrypt(local, plaintext)
    }

    /// Pure decrypt: returns the plaintext and the new record; `self` is never modified.
    pub fn decrypt<R: CryptoRng + ?Sized>(
        &self,
        local: &LocalIdentity,
        kind: MessageKind,
        bytes: &[u8],
        pre_keys: &dyn PreKeyStore,
        config: &SessionConfig,
        rng: &mut R,
    ) -> Result<(Decrypted, SessionRecord), SignalError> {
        let mut next = self.clone();
        let d = match kind {
            MessageKind::PreKey => next.decrypt_pre_key_message(local, bytes, pre_keys, config, rng)?,
            MessageKind::Whisper => next.decrypt_message(local, bytes, config, rng)?,
        };
        Ok((d, next))
    }

    fn state_at(&self, i: usize) -> Option<&SessionState> {
        if i == 0 { self.current.as_ref() } else { self.previous.get(i - 1) }
    }

    /// Commits `step` to state `i` (0 = current) and promotes an archived state that decrypted.
    fn commit_at(&mut self, i: usize, step: Step, config: &SessionConfig) {
        if i == 0 {
            if let Some(cur) = self.current.as_mut() {
                cur.commit(step, config);
            }
            return;
        }
        let mut state = self.previous.remove(i - 1);
        state.commit(step, config);
        self.install(state, config);
    }

    /// Decrypts a SignalMessage (`msg`) in place; on error `self` is unchanged.
    pub fn decrypt_message<R: CryptoRng + ?Sized>(
        &mut self,
        local: &LocalIdentity,
        bytes: &[u8],
        config: &SessionConfig,
        rng: &mut R,
    ) -> Result<Decrypted, SignalError> {
        let msg = SignalMessage::parse(bytes)?;
        let mut first_err: Option<SignalError> = None;
        let mut definitive: Option<SignalError> = None;
        let mut i = 0;
        while let Some(state) = self.state_at(i) {
            match state.prepare(local, &msg, config, rng) {
                Ok((step, plaintext)) => {
                    self.commit_at(i, step, config);
                    return Ok(Decrypted {
                        plaintext,
                        identity: IdentityCheck::Unchanged,
                        used_pre_key: None,
                    });
                }
                Err(
                    e @ (SignalError::DuplicateMessage { .. }
                    | SignalError::TooFarAhead { .. }
                    | SignalError::ChainClosed { .. }),
                ) => {
                    // The state knows this chain: no other state will.
                    if definitive.is_none() {
                        definitive = Some(e);
                    }
                }
                Err(e) => {
                    if first_err.is_none() {
                        first_err = Some(e);
                    }
                }
            }
            i += 1;
        }
        Err(definitive.or(first_err).unwrap_or(SignalError::NoSession))
    }

    /// Decrypts a PreKeySignalMessage (`pkmsg`) in place, building a new session when it starts
    /// one; on error `self` is unchanged.
    pub fn decrypt_pre_key_message<R: CryptoRng + ?Sized>(
        &mut self,
        local: &LocalIdentity,
        bytes: &[u8],
        pre_keys: &dyn PreKeyStore,
        config: &SessionConfig,
        rng: &mut R,
    ) -> Result<Decrypted, SignalError> {
        let pk = PreKeySignalMessage::parse(bytes)?;
        let msg = pk.message()?;
        let existing = (0..=self.previous.len()).find(|&i| {
            self.state_at(i)
                .is_some_and(|s| s.base_key == pk.base_key && s.remote_identity == pk.identity_key)
        });
        if let Some(i) = existing {
            let state = self.state_at(i).ok_or(SignalError::NoSession)?;
            let (step, plaintext) = state.prepare(local, &msg, config, rng)?;
            self.commit_at(i, step, config);
            return Ok(Decrypted { plaintext, identity: IdentityCheck::Unchanged, used_pre_key: None });
        }
        let identity = self.identity_check(&pk.identity_key, config)?;
        let signed = pre_keys
            .signed_pre_key(pk.signed_pre_key_id)
            .ok_or(SignalError::UnknownSignedPreKey(pk.signed_pre_key_id))?;
        let one_time = match pk.pre_key_id {
            Some(id) => Some(pre_keys.one_time_pre_key(id).ok_or(SignalError::UnknownPreKey(id))?),
            None => None,
        };
        let agree = |ours: &wa_crypto::PrivateKey, theirs: &PublicKey| {
            ours.agree(theirs).map_err(SignalError::Agreement)
        };
        let mut master = [0xFFu8; 32 * 5];
        master[32..64].copy_from_slice(&agree(&signed.private, &pk.identity_key)?);
        master[64..96].copy_from_slice(&agree(&local.key_pair.private, &pk.base_key)?);
        master[96..128].copy_from_slice(&agree(&signed.private, &pk.base_key)?);
        let len = match one_time {
            Some(opk) => {
                master[128..160].copy_from_slice(&agree(&opk.private, &pk.base_key)?);
                160
            }
            None => 128,
        };
        let (root_key, _) = kdf::initial_root(&master[..len]);
        let mut state = SessionState {
            remote_identity: pk.identity_key,
            remote_registration_id: pk.registration_id,
            base_key: pk.base_key,
            initiated_by_us: false,
            root_key,
            our_ratchet: copy_key_pair(signed),
            sending: None,
            previous_counter: 0,
            receiving: Vec::new(),
            pending_pre_key: None,
        };
        let (step, plaintext) = state.prepare(local, &msg, config, rng)?;
        state.commit(step, config);
        self.install(state, config);
        Ok(Decrypted { plaintext, identity, used_pre_key: pk.pre_key_id })
    }
}
