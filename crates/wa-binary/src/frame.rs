//! A frame payload in segments: encoded headers plus referenced byte contents.
//!
//! [`crate::encode_frame`] writes everything but large byte contents into one
//! buffer and keeps those contents as reference-counted [`Bytes`], so a 1 MiB
//! media payload is not copied by the codec. The transport reads the frame as a
//! [`Buf`] and gathers it straight into the encrypted frame it sends.

use bytes::{Buf, Bytes};

/// An encoded frame payload (flags byte included), as segments. Reads as a
/// [`Buf`] yielding exactly the bytes [`crate::encode`] returns for the same node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFrame {
    /// The encoding with the referenced contents left out.
    head: Vec<u8>,
    /// Referenced contents, each with the offset in `head` where it belongs,
    /// in order (offsets never decrease).
    splices: Vec<(usize, Bytes)>,
    /// Read cursor: bytes of `head` consumed.
    head_pos: usize,
    /// Read cursor: the next splice, and the bytes of it consumed.
    splice: usize,
    splice_pos: usize,
    /// Bytes left to read.
    remaining: usize,
}

impl EncodedFrame {
    pub(crate) fn new(head: Vec<u8>, splices: Vec<(usize, Bytes)>) -> EncodedFrame {
        let remaining = head.len() + splices.iter().map(|(_, b)| b.len()).sum::<usize>();
        EncodedFrame { head, splices, head_pos: 0, splice: 0, splice_pos: 0, remaining }
    }

    /// Bytes left to read (the whole payload until the frame is read as a [`Buf`]).
    pub fn len(&self) -> usize {
        self.remaining
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }

    /// How many byte contents are referenced rather than copied.
    pub fn referenced(&self) -> usize {
        self.splices.len()
    }

    /// The bytes left to read, contiguous (copies; without references this is
    /// the buffer itself).
    pub fn into_vec(mut self) -> Vec<u8> {
        if self.splices.is_empty() {
            self.head.drain(..self.head_pos);
            return self.head;
        }
        let mut out = Vec::with_capacity(self.remaining);
        while self.has_remaining() {
            let chunk = self.chunk();
            out.extend_from_slice(chunk);
            let n = chunk.len();
            self.advance(n);
        }
        out
    }

    /// Where the head stops before the next referenced content (or its end).
    #[inline]
    fn head_stop(&self) -> usize {
        self.splices.get(self.splice).map_or(self.head.len(), |(at, _)| *at)
    }
}

impl Buf for EncodedFrame {
    #[inline]
    fn remaining(&self) -> usize {
        self.remaining
    }

    #[inline]
    fn chunk(&self) -> &[u8] {
        if self.splices.is_empty() {
            return self.head.get(self.head_pos..).unwrap_or(&[]);
        }
        let stop = self.head_stop();
        if self.head_pos < stop {
            return self.head.get(self.head_pos..stop).unwrap_or(&[]);
        }
        match self.splices.get(self.splice) {
            Some((_, b)) => b.get(self.splice_pos..).unwrap_or(&[]),
            None => &[],
        }
    }

    /// Advances by `cnt` bytes (at most what remains).
    #[inline]
    fn advance(&mut self, mut cnt: usize) {
        cnt = cnt.min(self.remaining);
        self.remaining -= cnt;
        if self.splices.is_empty() {
            self.head_pos += cnt;
            return;
        }
        while cnt > 0 {
            let stop = self.head_stop();
            if self.head_pos < stop {
                let n = cnt.min(stop - self.head_pos);
                self.head_pos += n;
                cnt -= n;
                continue;
            }
            let Some((_, b)) = self.splices.get(self.splice) else { break };
            let n = cnt.min(b.len() - self.splice_pos);
            self.splice_pos += n;
            cnt -= n;
            if self.splice_pos == b.len() {
                self.splice += 1;
                self.splice_pos = 0;
            }
        }
    }
}
