//! Sender keys (group messages, `skmsg`): one signed hash chain per (group, sender).
//!
//! Decrypts are computed first and committed only after the signature and body check out, so a
//! failing decrypt leaves the [`SenderKeyRecord`] unchanged.

use rand_core::CryptoRng;
use std::sync::OnceLock;

use wa_crypto::{KeyPair, PrivateKey, PublicKey, SigningKey, VerifyingKey, cbc};

use crate::error::SignalError;
use crate::kdf;
use crate::session::SkippedKey;
use crate::wire::{self, SenderKeyDistributionMessage, SenderKeyMessage};

/// Limits of sender-key records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SenderKeyConfig {
    /// How many iterations a message may skip ahead (libsignal, Baileys: 2,000).
    pub max_future_messages: u32,
    /// Skipped message keys kept per record (all states together); the oldest go first.
    /// 1,500 keys keep a record under 64 KB.
    pub max_skipped_keys: usize,
    /// States (key ids) kept per record (libsignal: 5).
    pub max_states: usize,
}

impl Default for SenderKeyConfig {
    fn default() -> Self {
        SenderKeyConfig { max_future_messages: 2000, max_skipped_keys: 1500, max_states: 5 }
    }
}

pub(crate) struct SenderKeyState {
    pub key_id: u32,
    pub iteration: u32,
    pub chain_key: [u8; 32],
    pub signing_public: PublicKey,
    pub signing_private: Option<PrivateKey>,
    /// Ascending by index (= iteration).
    pub skipped: Vec<SkippedKey>,
    /// Prepared forms of the signing keys, derived on first use (not persisted).
    pub signer: OnceLock<SigningKey>,
    pub verifier: OnceLock<Option<VerifyingKey>>,
}

impl SenderKeyState {
    pub(crate) fn new(
        key_id: u32,
        iteration: u32,
        chain_key: [u8; 32],
        signing_public: PublicKey,
        signing_private: Option<PrivateKey>,
        skipped: Vec<SkippedKey>,
    ) -> Self {
        SenderKeyState {
            key_id,
            iteration,
            chain_key,
            signing_public,
            signing_private,
            skipped,
            signer: OnceLock::new(),
            verifier: OnceLock::new(),
        }
    }

    fn verifier(&self) -> Option<&VerifyingKey> {
        self.verifier.get_or_init(|| VerifyingKey::new(&self.signing_public)).as_ref()
    }
}

impl Clone for SenderKeyState {
    fn clone(&self) -> Self {
        SenderKeyState {
            key_id: self.key_id,
            iteration: self.iteration,
            chain_key: self.chain_key,
            signing_public: self.signing_public,
            signing_private: self.signing_private.clone(),
            skipped: self.skipped.clone(),
            signer: self.signer.clone(),
            verifier: self.verifier.clone(),
        }
    }
}

impl core::fmt::Debug for SenderKeyState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SenderKeyState")
            .field("key_id", &self.key_id)
            .field("iteration", &self.iteration)
            .field("signing_public", &self.signing_public)
            .field("own", &self.signing_private.is_some())
            .field("skipped", &self.skipped.len())
            .finish_non_exhaustive()
    }
}

enum Step {
    Skipped { state: usize, pos: usize },
    Advance { state: usize, chain_key: [u8; 32], iteration: u32, skipped: Vec<SkippedKey> },
}

/// The sender-key states of one (group, sender) pair, newest first.
#[derive(Clone, Debug, Default)]
pub struct SenderKeyRecord {
    pub(crate) states: Vec<SenderKeyState>,
}

impl SenderKeyRecord {
    /// An empty record.
    pub fn new() -> Self {
        SenderKeyRecord::default()
    }

    /// Whether the record holds no state.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// Key id of the newest state.
    pub fn current_key_id(&self) -> Option<u32> {
        self.states.first().map(|s| s.key_id)
    }

    /// Iteration of the newest state's chain.
    pub fn current_iteration(&self) -> Option<u32> {
        self.states.first().map(|s| s.iteration)
    }

    /// Number of skipped message keys held (all states).
    pub fn skipped_keys(&self) -> usize {
        self.states.iter().map(|s| s.skipped.len()).sum()
    }

    /// Installs our own sending state with explicit material (for replaying vectors).
    pub fn create_own_state(
        &mut self,
        key_id: u32,
        chain_key: [u8; 32],
        signing: KeyPair,
        config: &SenderKeyConfig,
    ) {
        self.push_state(
            SenderKeyState::new(key_id, 0, chain_key, signing.public, Some(signing.private), Vec::new()),
            config,
        );
    }

    /// Draws a new sending state: 31-bit key id, random chain key, signing key pair.
    pub fn generate_own_state<R: CryptoRng + ?Sized>(
        &mut self,
        config: &SenderKeyConfig,
        rng: &mut R,
    ) -> u32 {
        let key_id = rng.next_u32() & 0x7FFF_FFFF;
        let mut chain_key = [0u8; 32];
        rng.fill_bytes(&mut chain_key);
        let signing = KeyPair::generate(rng);
        self.create_own_state(key_id, chain_key, signing, config);
        key_id
    }

    fn push_state(&mut self, state: SenderKeyState, config: &SenderKeyConfig) {
        self.states.retain(|s| s.key_id != state.key_id);
        self.states.insert(0, state);
        self.states.truncate(config.max_states.max(1));
    }

    /// The distribution message for our newest state at its current iteration.
    pub fn distribution_message(&self) -> Result<SenderKeyDistributionMessage, SignalError> {
        let s = self.states.first().ok_or(SignalError::NoSenderKeyState)?;
        Ok(SenderKeyDistributionMessage {
            key_id: s.key_id,
            iteration: s.iteration,
            chain_key: s.chain_key,
            signing_key: s.signing_public,
        })
    }

    /// Installs a peer's sender key. A repeat of a key we already hold (same id and signing key)
    /// does not rewind our chain, so it cannot reopen consumed message keys.
    pub fn process_distribution_message(
        &mut self,
        skdm: &SenderKeyDistributionMessage,
        config: &SenderKeyConfig,
    ) {
        if let Some(s) = self.states.iter().find(|s| s.key_id == skdm.key_id)
            && s.signing_public == skdm.signing_key
            && s.iteration >= skdm.iteration
        {
            return;
        }
        if let Some(s) = self.states.iter_mut().find(|s| s.key_id == skdm.key_id)
            && s.signing_public == skdm.signing_key
        {
            // A later position of the same chain: move forward, keeping the keys in between.
            if let Ok(w) =
                kdf::walk_chain(&s.chain_key, s.iteration, skdm.iteration, config.max_future_messages)
            {
                s.skipped.extend(w.skipped);
                s.chain_key = skdm.chain_key;
                s.iteration = skdm.iteration;
                prune_skipped(&mut self.states, config.max_skipped_keys);
                return;
            }
        }
        self.push_state(
            SenderKeyState::new(
                skdm.key_id,
                skdm.iteration,
                skdm.chain_key,
                skdm.signing_key,
                None,
                Vec::new(),
            ),
            config,
        );
    }

    /// Parses and installs a distribution message.
    pub fn process_distribution_bytes(
        &mut self,
        bytes: &[u8],
        config: &SenderKeyConfig,
    ) -> Result<(), SignalError> {
        let skdm = SenderKeyDistributionMessage::parse(bytes)?;
        self.process_distribution_message(&skdm, config);
        Ok(())
    }

    /// Advances our sending chain by `n` iterations without sending (reproduces senders such as
    /// Baileys that leave gaps).
    pub fn skip_sending_iterations(&mut self, n: u32) -> Result<(), SignalError> {
        let s = self.states.first_mut().ok_or(SignalError::NoSenderKeyState)?;
        let target = s.iteration.checked_add(n).ok_or(SignalError::CounterOverflow)?;
        while s.iteration < target {
            s.chain_key = kdf::next_chain_key(&s.chain_key);
            s.iteration += 1;
        }
        Ok(())
    }

    /// Encrypts with our newest state: the message uses the chain's current iteration.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, SignalError> {
        let s = self.states.first_mut().ok_or(SignalError::NoSenderKeyState)?;
        let private = s.signing_private.as_ref().ok_or(SignalError::NotASenderKeyOwner)?;
        let signing = s.signer.get_or_init(|| private.signing_key());
        let next = s.iteration.checked_add(1).ok_or(SignalError::CounterOverflow)?;
        let (seed, next_chain_key) = kdf::chain_step(&s.chain_key);
        let (iv, key) = kdf::group_message_keys(&seed);
        let out = wire::seal_sender_key_message(s.key_id, s.iteration, &key, &iv, plaintext, signing);
        s.chain_key = next_chain_key;
        s.iteration = next;
        Ok(out)
    }

    /// Pure decrypt: the plaintext and the new record; `self` is never modified.
    pub fn decrypt(
        &self,
        bytes: &[u8],
        config: &SenderKeyConfig,
    ) -> Result<(Vec<u8>, SenderKeyRecord), SignalError> {
        let mut next = self.clone();
        let pt = next.decrypt_in_place(bytes, config)?;
        Ok((pt, next))
    }

    /// Decrypts a SenderKeyMessage; on error `self` is unchanged.
    pub fn decrypt_in_place(
        &mut self,
        bytes: &[u8],
        config: &SenderKeyConfig,
    ) -> Result<Vec<u8>, SignalError> {
        let msg = SenderKeyMessage::parse(bytes)?;
        let si = self
            .states
            .iter()
            .position(|s| s.key_id == msg.key_id)
            .ok_or(SignalError::UnknownSenderKeyId(msg.key_id))?;
        let s = &self.states[si];
        if !s.verifier().is_some_and(|v| msg.verify_signature(v)) {
            return Err(SignalError::BadSignature);
        }
        let (step, seed) = if msg.iteration < s.iteration {
            let pos = s
                .skipped
                .binary_search_by_key(&msg.iteration, |k| k.index)
                .map_err(|_| SignalError::DuplicateMessage { counter: msg.iteration })?;
            (Step::Skipped { state: si, pos }, s.skipped[pos].seed)
        } else {
            let w = kdf::walk_chain(&s.chain_key, s.iteration, msg.iteration, config.max_future_messages)?;
            (
                Step::Advance { state: si, chain_key: w.chain_key, iteration: w.next, skipped: w.skipped },
                w.seed,
            )
        };
        let (iv, key) = kdf::group_message_keys(&seed);
        let plaintext = cbc::decrypt(&key, &iv, &msg.ciphertext).map_err(SignalError::BadCiphertext)?;
        match step {
            Step::Skipped { state, pos } => {
                self.states[state].skipped.remove(pos);
            }
            Step::Advance { state, chain_key, iteration, skipped } => {
                let s = &mut self.states[state];
                s.chain_key = chain_key;
                s.iteration = iteration;
                s.skipped.extend(skipped);
                prune_skipped(&mut self.states, config.max_skipped_keys);
            }
        }
        Ok(plaintext)
    }
}

/// Keeps at most `max` skipped keys over all states, dropping from the oldest state first.
fn prune_skipped(states: &mut [SenderKeyState], max: usize) {
    let total: usize = states.iter().map(|s| s.skipped.len()).sum();
    let mut excess = total.saturating_sub(max);
    for s in states.iter_mut().rev() {
        if excess == 0 {
            break;
        }
        let n = excess.min(s.skipped.len());
        s.skipped.drain(..n);
        excess -= n;
    }
}
