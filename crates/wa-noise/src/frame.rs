//! Framing: the connection intro and 3-byte length-prefixed frames.
//!
//! ```text
//! client's first bytes: [45 44 00 01 len24 routing_info] 57 41 06 <dict> frame frame ...
//! every later frame:    len24 payload                       (both directions)
//! ```
//!
//! [`FrameDecoder`] is a streaming decoder: feed it WebSocket messages (or any chunks) as
//! they arrive and take whole frames out. Frames come back as [`BytesMut`] views into the
//! decoder's buffer (no copy), mutable so the transport can decrypt them in place.

use bytes::{Buf, BufMut, BytesMut};

use crate::error::{Error, Result};

/// Largest payload a 24-bit length can announce: 16 MiB − 1.
pub const MAX_FRAME_LEN: usize = (1 << 24) - 1;
/// Bytes of the length prefix of every frame.
pub const FRAME_HEADER_LEN: usize = 3;
/// Dictionary version of the current binary-node token tables.
pub const DICT_VERSION_CURRENT: u8 = 3;
/// Dictionary version of the old token tables.
pub const DICT_VERSION_OLD: u8 = 2;

/// Most memory reserved ahead of the bytes that fill it.
const EAGER_RESERVE: usize = 1 << 20;

const WA_MAGIC: [u8; 3] = [b'W', b'A', 6];
const ED_MAGIC: [u8; 4] = [b'E', b'D', 0, 1];

/// The client's connection intro: the optional edge-routing pre-intro and the
/// `WA 06 <dict>` header, which is also the Noise prologue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionHeader {
    dict_version: u8,
    routing_info: Option<Vec<u8>>,
}

impl Default for ConnectionHeader {
    fn default() -> Self {
        Self::new()
    }
}

impl ConnectionHeader {
    /// `WA 06 03`, without routing info.
    pub const fn new() -> Self {
        Self { dict_version: DICT_VERSION_CURRENT, routing_info: None }
    }

    /// The same header with another dictionary byte (e.g. [`DICT_VERSION_OLD`]).
    pub fn with_dict_version(mut self, dict_version: u8) -> Self {
        self.dict_version = dict_version;
        self
    }

    /// The same header preceded by `ED 00 01 len24 routing_info` (the server sent
    /// routing info on an earlier connection). Fails if it is 16 MiB or longer.
    pub fn with_routing_info(mut self, routing_info: Vec<u8>) -> Result<Self> {
        if routing_info.len() > MAX_FRAME_LEN {
            return Err(Error::TooLong { what: "routing info", len: routing_info.len(), max: MAX_FRAME_LEN });
        }
        self.routing_info = Some(routing_info);
        Ok(self)
    }

    /// The dictionary byte.
    pub fn dict_version(&self) -> u8 {
        self.dict_version
    }

    /// The edge routing info, if the intro carries one.
    pub fn routing_info(&self) -> Option<&[u8]> {
        self.routing_info.as_deref()
    }

    /// The Noise prologue: the 4-byte `WA 06 <dict>` header only, never the `ED` part.
    pub fn prologue(&self) -> [u8; 4] {
        [WA_MAGIC[0], WA_MAGIC[1], WA_MAGIC[2], self.dict_version]
    }

    /// Bytes [`Self::encode_into`] writes.
    pub fn encoded_len(&self) -> usize {
        4 + self.routing_info.as_ref().map_or(0, |r| ED_MAGIC.len() + 3 + r.len())
    }

    /// Appends the intro as the client writes it, before its first frame.
    pub fn encode_into(&self, out: &mut impl BufMut) {
        if let Some(routing) = &self.routing_info {
            out.put_slice(&ED_MAGIC);
            put_u24(out, routing.len());
            out.put_slice(routing);
        }
        out.put_slice(&self.prologue());
    }

    /// Parses an intro from the start of `buf`: `Ok(None)` if more bytes are needed,
    /// otherwise the header and the bytes it took.
    fn parse(buf: &[u8], max_routing: usize) -> Result<Option<(Self, usize)>> {
        let mut at = 0;
        let mut routing_info = None;
        if buf.first() == Some(&b'E') {
            if !prefix_matches(buf, &ED_MAGIC) {
                return Err(Error::BadConnectionHeader("pre-intro is not `ED 00 01`"));
            }
            let Some(len_bytes) = buf.get(4..7) else {
                return Ok(None);
            };
            let len = read_u24(len_bytes);
            if len > max_routing {
                return Err(Error::FrameTooLarge { len, max: max_routing });
            }
            let Some(routing) = buf.get(7..7 + len) else {
                return Ok(None);
            };
            routing_info = Some(routing.to_vec());
            at = 7 + len;
        }
        let rest = &buf[at..];
        if !prefix_matches(rest, &WA_MAGIC) {
            return Err(Error::BadConnectionHeader("intro does not start with `WA 06`"));
        }
        let Some(&dict_version) = rest.get(3) else {
            return Ok(None);
        };
        Ok(Some((Self { dict_version, routing_info }, at + 4)))
    }
}

/// True if `buf` agrees with `magic` on their common length (so a short `buf` is not
/// rejected before it could match).
fn prefix_matches(buf: &[u8], magic: &[u8]) -> bool {
    let n = buf.len().min(magic.len());
    buf[..n] == magic[..n]
}

fn read_u24(b: &[u8]) -> usize {
    (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2])
}

fn put_u24(out: &mut impl BufMut, len: usize) {
    debug_assert!(len <= MAX_FRAME_LEN);
    out.put_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8]);
}

/// The 3-byte big-endian length prefix for a payload of `len` bytes.
pub fn frame_header(len: usize) -> Result<[u8; FRAME_HEADER_LEN]> {
    if len > MAX_FRAME_LEN {
        return Err(Error::TooLong { what: "frame payload", len, max: MAX_FRAME_LEN });
    }
    Ok([(len >> 16) as u8, (len >> 8) as u8, len as u8])
}

/// Appends `len24 || payload` to `out`.
pub fn encode_frame_into(payload: &[u8], out: &mut impl BufMut) -> Result<()> {
    out.put_slice(&frame_header(payload.len())?);
    out.put_slice(payload);
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Server side, before the client's intro.
    Intro,
    /// Length-prefixed frames.
    Frames,
}

/// Streaming decoder of incoming frames (and, on the server side, of the client's intro).
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    expect: Expect,
    header: Option<ConnectionHeader>,
    max_frame_len: usize,
}

impl FrameDecoder {
    /// Decoder for the client side: the server sends frames only.
    pub fn client() -> Self {
        Self { buf: BytesMut::new(), expect: Expect::Frames, header: None, max_frame_len: MAX_FRAME_LEN }
    }

    /// Decoder for the server side: the client's intro comes first, then frames.
    pub fn server() -> Self {
        Self { expect: Expect::Intro, ..Self::client() }
    }

    /// Refuse frames (and routing info) longer than `max` bytes as soon as their length
    /// is read, before buffering them. Values above [`MAX_FRAME_LEN`] are capped to it.
    pub fn with_max_frame_len(mut self, max: usize) -> Self {
        self.max_frame_len = max.min(MAX_FRAME_LEN);
        self
    }

    /// Appends received bytes (one WebSocket message, or any part of the stream).
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The client's intro, once it has been decoded (server side only).
    pub fn connection_header(&self) -> Option<&ConnectionHeader> {
        self.header.as_ref()
    }

    /// Bytes received but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Call when the peer closed the stream: an error if a frame (or the intro) was cut off.
    pub fn finish(&self) -> Result<()> {
        match self.buf.len() {
            0 => Ok(()),
            buffered => Err(Error::Truncated { buffered }),
        }
    }

    /// The next whole frame's payload, `Ok(None)` if more bytes are needed.
    ///
    /// After an error the stream is unusable (the frame boundary is lost); drop the
    /// connection.
    pub fn next_frame(&mut self) -> Result<Option<BytesMut>> {
        if self.expect == Expect::Intro {
            match ConnectionHeader::parse(&self.buf, self.max_frame_len)? {
                None => return Ok(None),
                Some((header, used)) => {
                    self.buf.advance(used);
                    self.header = Some(header);
                    self.expect = Expect::Frames;
                }
            }
        }
        let Some(len_bytes) = self.buf.get(..FRAME_HEADER_LEN) else {
            return Ok(None);
        };
        let len = read_u24(len_bytes);
        if len > self.max_frame_len {
            return Err(Error::FrameTooLarge { len, max: self.max_frame_len });
        }
        let total = FRAME_HEADER_LEN + len;
        if self.buf.len() < total {
            // Grow towards the whole frame in one step rather than doubling chunk by chunk,
            // but never commit more than EAGER_RESERVE on the strength of 3 header bytes
            // (a peer could otherwise make every connection allocate 16 MiB up front).
            self.buf.reserve((total - self.buf.len()).min(EAGER_RESERVE));
            return Ok(None);
        }
        self.buf.advance(FRAME_HEADER_LEN);
        Ok(Some(self.buf.split_to(len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames_of(dec: &mut FrameDecoder) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(f) = dec.next_frame().expect("valid stream") {
            out.push(f.to_vec());
        }
        out
    }

    #[test]
    fn header_bytes() {
        let mut out = Vec::new();
        ConnectionHeader::new().encode_into(&mut out);
        assert_eq!(out, [0x57, 0x41, 0x06, 0x03]);
        let old = ConnectionHeader::new().with_dict_version(DICT_VERSION_OLD);
        assert_eq!(old.prologue(), [0x57, 0x41, 0x06, 0x02]);
        let routed = ConnectionHeader::new().with_routing_info(vec![8, 8, 0xAA]).expect("short");
        let mut out = Vec::new();
        routed.encode_into(&mut out);
        assert_eq!(out, [0x45, 0x44, 0, 1, 0, 0, 3, 8, 8, 0xAA, 0x57, 0x41, 6, 3]);
        assert_eq!(out.len(), routed.encoded_len());
        assert_eq!(routed.prologue(), [0x57, 0x41, 6, 3]);
    }

    #[test]
    fn server_parses_intro_byte_by_byte() {
        for header in [
            ConnectionHeader::new(),
            ConnectionHeader::new().with_dict_version(2),
            ConnectionHeader::new().with_routing_info(vec![1, 2, 3, 4, 5]).expect("short"),
            ConnectionHeader::new().with_routing_info(Vec::new()).expect("short"),
        ] {
            let mut wire = Vec::new();
            header.encode_into(&mut wire);
            encode_frame_into(b"hello", &mut wire).expect("small");
            encode_frame_into(b"", &mut wire).expect("small");
            let mut dec = FrameDecoder::server();
            let mut got = Vec::new();
            for b in &wire {
                dec.push(std::slice::from_ref(b));
                got.extend(frames_of(&mut dec));
            }
            assert_eq!(got, vec![b"hello".to_vec(), Vec::new()]);
            assert_eq!(dec.connection_header(), Some(&header));
            assert_eq!(dec.buffered(), 0);
        }
    }

    #[test]
    fn merged_and_split_frames() {
        let payloads: Vec<Vec<u8>> = (0..20usize).map(|i| vec![i as u8; i * 37]).collect();
        let mut wire = Vec::new();
        for p in &payloads {
            encode_frame_into(p, &mut wire).expect("small");
        }
        for chunk in [1, 2, 3, 4, 7, 100, 1000, wire.len()] {
            let mut dec = FrameDecoder::client();
            let mut got = Vec::new();
            for c in wire.chunks(chunk) {
                dec.push(c);
                got.extend(frames_of(&mut dec));
            }
            assert_eq!(got, payloads, "chunk size {chunk}");
        }
    }

    #[test]
    fn largest_frame_and_limits() {
        let big = vec![0x5A; MAX_FRAME_LEN];
        let mut wire = Vec::new();
        encode_frame_into(&big, &mut wire).expect("16 MiB - 1 fits");
        assert_eq!(&wire[..3], &[0xFF, 0xFF, 0xFF]);
        let mut dec = FrameDecoder::client();
        dec.push(&wire);
        assert_eq!(dec.next_frame().expect("ok").map(|f| f.len()), Some(MAX_FRAME_LEN));

        let too_big = vec![0; MAX_FRAME_LEN + 1];
        assert!(matches!(
            encode_frame_into(&too_big, &mut Vec::new()),
            Err(Error::TooLong { len, .. }) if len == MAX_FRAME_LEN + 1
        ));

        let mut dec = FrameDecoder::client().with_max_frame_len(10);
        dec.push(&[0, 0, 11]);
        assert!(matches!(dec.next_frame(), Err(Error::FrameTooLarge { len: 11, max: 10 })));
    }

    #[test]
    fn a_length_header_alone_does_not_reserve_16_mib() {
        let mut dec = FrameDecoder::client();
        dec.push(&[0xFF, 0xFF, 0xFF]);
        assert!(dec.next_frame().expect("waiting").is_none());
        assert!(dec.buf.capacity() <= EAGER_RESERVE + 64, "capacity {}", dec.buf.capacity());
        assert!(matches!(dec.finish(), Err(Error::Truncated { buffered: 3 })));
    }

    #[test]
    fn bad_intros() {
        for bad in
            [&b"XA\x06\x03"[..], b"WB", b"WA\x05", b"EE", b"ED\x00\x02", b"ED\x00\x01\x00\x00\x00WA\x07"]
        {
            let mut dec = FrameDecoder::server();
            dec.push(bad);
            let err = dec.next_frame().expect_err("bad intro");
            assert_eq!(err.kind(), crate::ErrorKind::Malformed, "{bad:?}");
        }
        // A prefix of a valid intro just waits.
        for partial in [&b"W"[..], b"WA", b"WA\x06", b"ED\x00\x01\x00", b"ED\x00\x01\x00\x00\x02\x01"] {
            let mut dec = FrameDecoder::server();
            dec.push(partial);
            assert!(dec.next_frame().expect("no error yet").is_none());
        }
    }

    proptest::proptest! {
        /// Any payloads, cut into any chunks, come back whole and in order.
        #[test]
        fn any_chunking_round_trips(
            payloads in proptest::collection::vec(proptest::collection::vec(0u8..=255, 0..600), 0..12),
            cuts in proptest::collection::vec(1usize..300, 1..40),
            server in proptest::bool::ANY,
        ) {
            let mut wire = Vec::new();
            if server {
                ConnectionHeader::new().encode_into(&mut wire);
            }
            for p in &payloads {
                encode_frame_into(p, &mut wire).expect("small");
            }
            let mut dec = if server { FrameDecoder::server() } else { FrameDecoder::client() };
            let mut got = Vec::new();
            let mut rest = &wire[..];
            let mut i = 0;
            while !rest.is_empty() {
                let n = cuts[i % cuts.len()].min(rest.len());
                dec.push(&rest[..n]);
                rest = &rest[n..];
                i += 1;
                got.extend(frames_of(&mut dec));
            }
            dec.finish().expect("nothing left over");
            proptest::prop_assert_eq!(got, payloads);
        }
    }
}
