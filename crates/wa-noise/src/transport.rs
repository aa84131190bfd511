//! The transport phase: AES-256-GCM with one key and one 32-bit counter per direction,
//! empty AAD, one binary-node buffer per frame.

use bytes::{Buf, BufMut, BytesMut};
use wa_crypto::aead::Aes256Gcm;

use crate::error::{Error, Result};
use crate::frame::{FRAME_HEADER_LEN, MAX_FRAME_LEN, frame_header};
use crate::symmetric::{TAG_LEN, nonce};

/// Largest plaintext one frame can carry: the ciphertext (+16-byte tag) must fit in
/// 16 MiB − 1.
pub const MAX_PLAINTEXT_LEN: usize = MAX_FRAME_LEN - TAG_LEN;

/// A 32-bit counter that refuses to wrap (a repeated nonce would break GCM).
#[derive(Debug)]
struct Counter(u64);

impl Counter {
    fn current(&self) -> Result<u32> {
        u32::try_from(self.0).map_err(|_| Error::NonceExhausted)
    }
    fn advance(&mut self) {
        self.0 += 1;
    }
}

/// Encrypts outgoing frames.
pub struct FrameSender {
    cipher: Aes256Gcm,
    counter: Counter,
}

impl core::fmt::Debug for FrameSender {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FrameSender").field("counter", &self.counter.0).finish_non_exhaustive()
    }
}

impl FrameSender {
    /// A sender with counter 0 under `key`. Normally obtained from a handshake; this is for
    /// keys that come from elsewhere (replayed transcripts, benchmarks).
    pub fn from_key(key: &[u8; 32]) -> Self {
        Self { cipher: Aes256Gcm::new(key), counter: Counter(0) }
    }

    /// Frames sent so far.
    pub fn frames_sent(&self) -> u64 {
        self.counter.0
    }

    /// Appends `len24 ‖ AES-GCM(plaintext) ‖ tag` to `out`; the plaintext is copied once,
    /// then encrypted in place.
    pub fn encrypt_frame<B: BufMut + AsMut<[u8]>>(&mut self, plaintext: &[u8], out: &mut B) -> Result<()> {
        self.encrypt_frame_buf(plaintext, out)
    }

    /// [`Self::encrypt_frame`] for a plaintext in segments (any [`Buf`], such as a
    /// `wa_binary::EncodedFrame` that references its large byte contents): the segments
    /// are gathered into `out` (the one copy), then encrypted in place there.
    pub fn encrypt_frame_buf<P: Buf, B: BufMut + AsMut<[u8]>>(
        &mut self,
        mut plaintext: P,
        out: &mut B,
    ) -> Result<()> {
        let len = plaintext.remaining() + TAG_LEN;
        let header = frame_header(len)?;
        let iv = nonce(self.counter.current()?);
        let start = out.as_mut().len() + FRAME_HEADER_LEN;
        out.put_slice(&header);
        // One chunk for frames without referenced payloads; one per segment otherwise.
        while plaintext.has_remaining() {
            let chunk = plaintext.chunk();
            let n = chunk.len();
            if n == 0 {
                break; // a `Buf` that under-delivers: frame what it gave (below)
            }
            out.put_slice(chunk);
            plaintext.advance(n);
        }
        let written = out.as_mut().len() - start;
        if written + TAG_LEN != len {
            let header = frame_header(written + TAG_LEN)?;
            out.as_mut()[start - FRAME_HEADER_LEN..start].copy_from_slice(&header);
        }
        let tag = self.cipher.encrypt_detached(&iv, &[], &mut out.as_mut()[start..]);
        out.put_slice(&tag);
        self.counter.advance();
        Ok(())
    }

    /// [`Self::encrypt_frame`] into a new buffer.
    pub fn encrypt_frame_to_vec(&mut self, plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(FRAME_HEADER_LEN + plaintext.len() + TAG_LEN);
        self.encrypt_frame(plaintext, &mut out)?;
        Ok(out)
    }
}

/// Decrypts incoming frames.
pub struct FrameReceiver {
    cipher: Aes256Gcm,
    counter: Counter,
}

impl core::fmt::Debug for FrameReceiver {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FrameReceiver").field("counter", &self.counter.0).finish_non_exhaustive()
    }
}

impl FrameReceiver {
    /// A receiver with counter 0 under `key` (see [`FrameSender::from_key`]).
    pub fn from_key(key: &[u8; 32]) -> Self {
        Self { cipher: Aes256Gcm::new(key), counter: Counter(0) }
    }

    /// Frames received so far.
    pub fn frames_received(&self) -> u64 {
        self.counter.0
    }

    /// Decrypts a frame payload (as [`crate::FrameDecoder`] returns it) in place and
    /// returns the plaintext in the same buffer. A bad tag leaves the counter unchanged;
    /// the connection must then be dropped.
    pub fn decrypt_frame(&mut self, mut frame: BytesMut) -> Result<BytesMut> {
        let body_len = self.open_in_place(frame.as_mut())?;
        frame.truncate(body_len);
        Ok(frame)
    }

    /// [`Self::decrypt_frame`] for a borrowed payload (one copy).
    pub fn decrypt_frame_to_vec(&mut self, frame: &[u8]) -> Result<Vec<u8>> {
        let mut buf = frame.to_vec();
        let body_len = self.open_in_place(&mut buf)?;
        buf.truncate(body_len);
        Ok(buf)
    }

    fn open_in_place(&mut self, frame: &mut [u8]) -> Result<usize> {
        let Some(body_len) = frame.len().checked_sub(TAG_LEN) else {
            return Err(Error::FrameTooShort { len: frame.len() });
        };
        let counter = self.counter.current()?;
        let (body, tag) = frame.split_at_mut(body_len);
        let tag: &[u8; TAG_LEN] = (&*tag).try_into().map_err(|_| Error::FrameTooShort { len: body_len })?;
        self.cipher
            .decrypt_detached(&nonce(counter), &[], body, tag)
            .map_err(|_| Error::TransportBadTag { counter })?;
        self.counter.advance();
        Ok(body_len)
    }
}

/// Both directions of an established connection, from [`crate::Initiator`] or
/// [`crate::Responder`].
#[derive(Debug)]
pub struct Transport {
    sender: FrameSender,
    receiver: FrameReceiver,
    handshake_hash: [u8; 32],
    /// (write, read) keys, kept only in tests to compare with recorded transcripts.
    #[cfg(test)]
    pub(crate) keys: ([u8; 32], [u8; 32]),
}

impl Transport {
    pub(crate) fn new(write_key: &[u8; 32], read_key: &[u8; 32], handshake_hash: [u8; 32]) -> Self {
        Self {
            sender: FrameSender::from_key(write_key),
            receiver: FrameReceiver::from_key(read_key),
            handshake_hash,
            #[cfg(test)]
            keys: (*write_key, *read_key),
        }
    }

    /// The final handshake hash `h` (a channel binding; identical on both sides).
    pub fn handshake_hash(&self) -> &[u8; 32] {
        &self.handshake_hash
    }

    /// See [`FrameSender::encrypt_frame`].
    pub fn encrypt_frame<B: BufMut + AsMut<[u8]>>(&mut self, plaintext: &[u8], out: &mut B) -> Result<()> {
        self.sender.encrypt_frame(plaintext, out)
    }

    /// See [`FrameReceiver::decrypt_frame`].
    pub fn decrypt_frame(&mut self, frame: BytesMut) -> Result<BytesMut> {
        self.receiver.decrypt_frame(frame)
    }

    /// The sending and receiving halves, to drive from different tasks.
    pub fn split(self) -> (FrameSender, FrameReceiver) {
        (self.sender, self.receiver)
    }
}
