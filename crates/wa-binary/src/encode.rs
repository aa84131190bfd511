//! Encoder: owned [`Node`] to wire bytes.
//!
//! One cheap walk validates the node and bounds its encoded length (string and
//! byte lengths plus header room, no classification), so the output is allocated
//! once (or a caller's buffer grown once); a second walk classifies each string and
//! writes it. [`Encoder::encoded_len`] gives the exact length when a caller needs it.
//! Strings are written the way Baileys writes them (token, nibble-packed,
//! hex-packed, JID when they contain `@`, else raw), so encodings are byte-identical.

use bytes::Bytes;

use crate::decode::MAX_JID_NESTING;
use crate::frame::EncodedFrame;
use crate::jid::{Jid, Server};
use crate::node::{Content, Node, Value};
use crate::strjid::{self, StrJid};
use crate::tag;
use crate::token::{Dictionary, Token, V3};

/// Deepest node nesting the encoder accepts (guards the recursion).
pub const MAX_ENCODE_DEPTH: usize = 1024;

/// A node that cannot be represented on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A node with an empty tag.
    #[error("node tag is empty")]
    EmptyTag,
    /// More attributes than a list header can count (32767).
    #[error("<{tag}> has {count} attributes; at most 32767 fit")]
    TooManyAttrs {
        /// The node's tag.
        tag: String,
        /// How many attributes it has.
        count: usize,
    },
    /// More children than a list header can count (65535).
    #[error("<{tag}> has {count} children; at most 65535 fit")]
    TooManyChildren {
        /// The node's tag.
        tag: String,
        /// How many children it has.
        count: usize,
    },
    /// A string or byte content of 4 GiB or more.
    #[error("{len} bytes is too long for one binary field")]
    TooLong {
        /// The length.
        len: usize,
    },
    /// Nesting deeper than [`MAX_ENCODE_DEPTH`].
    #[error("nodes nested deeper than {MAX_ENCODE_DEPTH}")]
    TooDeep,
}

/// How a string goes on the wire.
#[derive(Clone, Copy)]
enum StrKind<'s> {
    Raw,
    Token(Token),
    Nibble,
    Hex,
    Jid(StrJid<'s>),
}

// Character classes for packing: bit 0 nibble alphabet, bit 1 hex alphabet, bit 2 '@'.
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = b'0';
    while c <= b'9' {
        t[c as usize] = 3;
        c += 1;
    }
    t[b'-' as usize] = 1;
    t[b'.' as usize] = 1;
    let mut c = b'A';
    while c <= b'F' {
        t[c as usize] = 2;
        c += 1;
    }
    t[b'@' as usize] = 4;
    t
};

// Nibble value of a packable character.
const PACK: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = b'0';
    while c <= b'9' {
        t[c as usize] = c - b'0';
        c += 1;
    }
    t[b'-' as usize] = 10;
    t[b'.' as usize] = 11;
    let mut c = b'A';
    while c <= b'F' {
        t[c as usize] = c - b'A' + 10;
        c += 1;
    }
    t
};

/// Header length of a raw string or byte field (the length was checked to fit).
#[inline]
fn raw_header_len(n: usize) -> usize {
    if n < 256 {
        2
    } else if n < 1 << 20 {
        4
    } else {
        5
    }
}

#[inline]
fn list_header_len(n: usize) -> usize {
    match n {
        0 => 1,
        1..=255 => 2,
        _ => 3,
    }
}

/// Encoder parameterised by token dictionary. The free functions use version 3.
#[derive(Debug, Clone, Copy)]
pub struct Encoder {
    dict: &'static Dictionary,
    splice_min: usize,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder { dict: &V3, splice_min: DEFAULT_SPLICE_MIN }
    }
}

/// Byte contents at least this long are referenced, not copied, by
/// [`Encoder::encode_frame`]. Below it a copy costs about what the reference
/// does (a reference count, a segment, and the gather into the encrypted frame).
pub const DEFAULT_SPLICE_MIN: usize = 4096;

/// Where byte contents go: copied into the output, or referenced as a segment.
trait Payloads {
    /// How many bytes of a `len`-byte content are written into the output buffer.
    fn copied(&self, len: usize) -> usize;
    /// Writes a byte content (its header always goes into `out`).
    fn write(&mut self, b: &Bytes, out: &mut Vec<u8>);
}

/// Every byte content copied (the contiguous encoders).
struct CopyAll;

impl Payloads for CopyAll {
    #[inline(always)]
    fn copied(&self, len: usize) -> usize {
        len
    }
    #[inline(always)]
    fn write(&mut self, b: &Bytes, out: &mut Vec<u8>) {
        write_raw(b, out);
    }
}

/// Byte contents of `min` bytes or more referenced (the segmented encoder).
struct Splice {
    min: usize,
    splices: Vec<(usize, Bytes)>,
}

impl Payloads for Splice {
    #[inline]
    fn copied(&self, len: usize) -> usize {
        if len >= self.min { 0 } else { len }
    }
    #[inline]
    fn write(&mut self, b: &Bytes, out: &mut Vec<u8>) {
        if b.len() >= self.min {
            write_raw_header(b.len(), out);
            self.splices.push((out.len(), b.clone()));
        } else {
            write_raw(b, out);
        }
    }
}

/// Room a string may need beyond its own bytes: the largest header (`BINARY_32`).
/// Every form but a JID whose server is itself a JID fits in `len + STR_SLACK`.
const STR_SLACK: usize = 5;

impl Encoder {
    /// An encoder using `dict`.
    pub fn new(dict: &'static Dictionary) -> Encoder {
        Encoder { dict, splice_min: DEFAULT_SPLICE_MIN }
    }

    /// The same encoder with another threshold for [`Encoder::encode_frame`]: byte
    /// contents of at least `min` bytes (at least 1) are referenced instead of copied.
    pub fn with_splice_min(self, min: usize) -> Encoder {
        Encoder { splice_min: min.max(1), ..self }
    }

    /// Exact length of [`Encoder::encode`]'s output (flags byte included).
    pub fn encoded_len(&self, node: &Node) -> Result<usize, EncodeError> {
        self.check(node, 0, &CopyAll)?;
        Ok(1 + self.node_len(node))
    }

    /// Encodes a node as a frame payload: the `0x00` flags byte, then the node, in
    /// one allocation.
    pub fn encode(&self, node: &Node) -> Result<Vec<u8>, EncodeError> {
        let bound = 1 + self.check(node, 0, &CopyAll)?;
        let mut out = Vec::with_capacity(bound);
        out.push(0);
        self.write_node(node, &mut out, &mut CopyAll);
        Ok(out)
    }

    /// Encodes a node as a frame payload (same bytes as [`Encoder::encode`]) without
    /// copying large byte contents: the result holds the encoded headers and small
    /// values in one buffer, and references each byte content of at least
    /// [`DEFAULT_SPLICE_MIN`] bytes (see [`Encoder::with_splice_min`]). The transport
    /// reads it as a [`bytes::Buf`] straight into the encrypted frame.
    pub fn encode_frame(&self, node: &Node) -> Result<EncodedFrame, EncodeError> {
        let mut splice = Splice { min: self.splice_min, splices: Vec::new() };
        let bound = 1 + self.check(node, 0, &splice)?;
        let mut head = Vec::with_capacity(bound);
        head.push(0);
        self.write_node(node, &mut head, &mut splice);
        Ok(EncodedFrame::new(head, splice.splices))
    }

    /// Appends the flags byte and the node to `out`, growing it at most once.
    /// On error `out` is left as it was.
    pub fn encode_into(&self, node: &Node, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let bound = 1 + self.check(node, 0, &CopyAll)?;
        out.reserve(bound);
        out.push(0);
        self.write_node(node, out, &mut CopyAll);
        Ok(())
    }

    /// Appends only the node (no flags byte) to `out`. On error `out` is left as it was.
    pub fn encode_body_into(&self, node: &Node, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let bound = self.check(node, 0, &CopyAll)?;
        out.reserve(bound);
        self.write_node(node, out, &mut CopyAll);
        Ok(())
    }

    /// How `s` goes on the wire; `level` counts the JIDs it is nested in.
    ///
    /// Same result as trying, in Baileys' order, token, nibble, hex, JID, raw; but
    /// the dictionary is consulted only when `s` could be a token: strings with `@`
    /// (no token has one) and packable strings longer than every packable token
    /// skip it (both facts are checked by build.rs).
    #[inline(always)]
    fn classify<'s>(&self, s: &'s str, level: usize) -> StrKind<'s> {
        let b = s.as_bytes();
        let n = b.len();
        if n == 0 {
            return StrKind::Raw;
        }
        if n <= 8
            && let Some(t) = self.dict.lookup(s)
        {
            return StrKind::Token(t);
        }
        if n <= tag::PACKED_MAX {
            let mut all = 3u8;
            let mut any = 0u8;
            for &c in b {
                let k = CLASS[c as usize];
                all &= k;
                any |= k;
            }
            if any & 4 != 0 {
                return self.classify_jid(s, level);
            }
            if all != 0 {
                // Packable; a token only if no longer than the longest packable token
                // (none is longer than 8 today, so this lookup never runs).
                if n > 8
                    && n <= self.dict.max_packable_len()
                    && let Some(t) = self.dict.lookup(s)
                {
                    return StrKind::Token(t);
                }
                return if all & 1 != 0 { StrKind::Nibble } else { StrKind::Hex };
            }
        } else if b.contains(&b'@') {
            return self.classify_jid(s, level);
        }
        if n > 8
            && let Some(t) = self.dict.lookup(s)
        {
            return StrKind::Token(t);
        }
        StrKind::Raw
    }

    /// A string containing `@`: its JID form, or raw where Baileys would write bytes
    /// that no decoder (its own included) accepts: a JID pair with an empty server
    /// (`"x@"`), or JIDs nested beyond what decoders read.
    #[inline]
    fn classify_jid<'s>(&self, s: &'s str, level: usize) -> StrKind<'s> {
        match strjid::split(s) {
            Some(StrJid::Pair { server: "", .. }) => StrKind::Raw,
            Some(_) if level >= MAX_JID_NESTING => StrKind::Raw,
            Some(j) => StrKind::Jid(j),
            None => StrKind::Raw,
        }
    }

    /// Exact encoded length of a string (the node was checked: lengths fit).
    fn str_len(&self, mut s: &str) -> usize {
        let mut total = 0;
        let mut level = 0;
        // A JID_PAIR's server is itself a string (possibly another JID): loop, not recurse.
        // A JID's user part never contains '@', so the calls on it never nest further.
        loop {
            let len = match self.classify(s, level) {
                StrKind::Raw => raw_header_len(s.len()) + s.len(),
                StrKind::Token(t) => t.wire_len(),
                StrKind::Nibble | StrKind::Hex => 2 + s.len().div_ceil(2),
                StrKind::Jid(StrJid::Ad { user, .. }) => 3 + self.str_len(user),
                StrKind::Jid(StrJid::Pair { user, server }) => {
                    total += 1 + if user.is_empty() { 1 } else { self.str_len(user) };
                    s = server;
                    level += 1;
                    continue;
                }
            };
            return total + len;
        }
    }

    /// Writes a string (inlined at each call site; JIDs go out of line).
    #[inline(always)]
    fn write_str(&self, s: &str, out: &mut Vec<u8>) {
        self.write_str_at(s, 0, out);
    }

    /// Writes a string nested in `level` JIDs.
    #[inline(always)]
    fn write_str_at(&self, s: &str, level: usize, out: &mut Vec<u8>) {
        match self.classify(s, level) {
            StrKind::Raw => write_raw(s.as_bytes(), out),
            StrKind::Token(Token::Single(x)) => out.push(x),
            StrKind::Token(Token::Double(d, i)) => out.extend_from_slice(&[tag::DICTIONARY_0 + d, i]),
            StrKind::Nibble => write_packed(tag::NIBBLE_8, s.as_bytes(), out),
            StrKind::Hex => write_packed(tag::HEX_8, s.as_bytes(), out),
            StrKind::Jid(j) => self.write_str_jid(j, level, out),
        }
    }

    /// Writes the JID form of a string. A JID's user never contains '@', so it is
    /// written as a plain string; a pair's server is itself a string one level deeper.
    #[inline(never)]
    fn write_str_jid(&self, j: StrJid<'_>, level: usize, out: &mut Vec<u8>) {
        match j {
            StrJid::Ad { domain, device, user } => {
                out.extend_from_slice(&[tag::AD_JID, domain, device]);
                self.write_str(user, out);
            }
            StrJid::Pair { user, server } => {
                out.push(tag::JID_PAIR);
                if user.is_empty() {
                    out.push(tag::LIST_EMPTY);
                } else {
                    self.write_str(user, out);
                }
                self.write_str_at(server, level + 1, out);
            }
        }
    }

    fn jid_len(&self, j: &Jid) -> usize {
        let user = j.user();
        match j.server() {
            Server::Messenger => 1 + self.str_len(user) + 2 + self.str_len(Server::Messenger.as_str()),
            Server::Interop => 1 + self.str_len(user) + 4 + self.str_len(Server::Interop.as_str()),
            s if j.is_ad() && s.domain_type().is_some() => 3 + self.str_len(user),
            s => 1 + if user.is_empty() { 1 } else { self.str_len(user) } + self.str_len(s.as_str()),
        }
    }

    fn write_jid(&self, j: &Jid, out: &mut Vec<u8>) {
        let user = j.user();
        match j.server() {
            Server::Messenger => {
                out.push(tag::FB_JID);
                self.write_str(user, out);
                out.extend_from_slice(&j.device().to_be_bytes());
                self.write_str(Server::Messenger.as_str(), out);
            }
            Server::Interop => {
                out.push(tag::INTEROP_JID);
                self.write_str(user, out);
                out.extend_from_slice(&j.device().to_be_bytes());
                out.extend_from_slice(&j.integrator().to_be_bytes());
                self.write_str(Server::Interop.as_str(), out);
            }
            s => match s.domain_type() {
                Some(domain) if j.is_ad() => {
                    let domain = if j.agent() != 0 { j.agent() } else { domain };
                    // Jid guarantees devices on these servers fit in a byte.
                    out.extend_from_slice(&[tag::AD_JID, domain, j.device() as u8]);
                    self.write_str(user, out);
                }
                _ => {
                    out.push(tag::JID_PAIR);
                    if user.is_empty() {
                        out.push(tag::LIST_EMPTY);
                    } else {
                        self.write_str(user, out);
                    }
                    self.write_str(s.as_str(), out);
                }
            },
        }
    }

    /// Validates `node` (depth, tag, counts, lengths) and returns an upper bound of
    /// its encoded length: every string counted as its bytes plus the largest header.
    /// Only strings with `@` that nest JIDs (`a@b@c`) or are 256 bytes or longer can
    /// exceed it; the writer then grows the buffer like any `Vec`.
    fn check(&self, node: &Node, depth: usize, payloads: &impl Payloads) -> Result<usize, EncodeError> {
        if depth > MAX_ENCODE_DEPTH {
            return Err(EncodeError::TooDeep);
        }
        if node.tag.is_empty() {
            return Err(EncodeError::EmptyTag);
        }
        let n_attrs = node.attrs.len();
        let list = 1 + 2 * n_attrs + usize::from(!matches!(node.content, Content::None));
        if list > u16::MAX as usize {
            return Err(EncodeError::TooManyAttrs { tag: node.tag.to_string(), count: n_attrs });
        }
        // List header (3), tag, then per attribute: key and value.
        let mut len = 3 + node.tag.len() + STR_SLACK + n_attrs * (2 * STR_SLACK);
        for a in &node.attrs {
            len += check_str(&a.key)?
                + match &a.value {
                    Value::Str(s) => check_str(s)?,
                    Value::Jid(j) => JID_BOUND + j.user().len(),
                };
        }
        len += match &node.content {
            Content::None => 0,
            Content::Children(children) => {
                if children.len() > u16::MAX as usize {
                    return Err(EncodeError::TooManyChildren {
                        tag: node.tag.to_string(),
                        count: children.len(),
                    });
                }
                let mut l = 3;
                for c in children {
                    l += self.check(c, depth + 1, payloads)?;
                }
                l
            }
            Content::Bytes(b) => STR_SLACK + payloads.copied(check_str(b)?),
            Content::Str(s) => STR_SLACK + check_str(s)?,
            Content::Jid(j) => JID_BOUND + j.user().len(),
        };
        Ok(len)
    }

    /// Exact encoded length of a checked node.
    fn node_len(&self, node: &Node) -> usize {
        let list = 1 + 2 * node.attrs.len() + usize::from(!matches!(node.content, Content::None));
        let mut len = list_header_len(list) + self.str_len(&node.tag);
        for a in &node.attrs {
            len += self.str_len(&a.key)
                + match &a.value {
                    Value::Str(s) => self.str_len(s),
                    Value::Jid(j) => self.jid_len(j),
                };
        }
        len + match &node.content {
            Content::None => 0,
            Content::Children(children) => {
                list_header_len(children.len()) + children.iter().map(|c| self.node_len(c)).sum::<usize>()
            }
            Content::Bytes(b) => raw_header_len(b.len()) + b.len(),
            Content::Str(s) => self.str_len(s),
            Content::Jid(j) => self.jid_len(j),
        }
    }

    fn write_node(&self, node: &Node, out: &mut Vec<u8>, payloads: &mut impl Payloads) {
        let list = 1 + 2 * node.attrs.len() + usize::from(!matches!(node.content, Content::None));
        write_list_header(list, out);
        self.write_str(&node.tag, out);
        for a in &node.attrs {
            self.write_str(&a.key, out);
            match &a.value {
                Value::Str(s) => self.write_str(s, out),
                Value::Jid(j) => self.write_jid(j, out),
            }
        }
        match &node.content {
            Content::None => {}
            Content::Children(children) => {
                write_list_header(children.len(), out);
                for c in children {
                    self.write_node(c, out, payloads);
                }
            }
            Content::Bytes(b) => payloads.write(b, out),
            Content::Str(s) => self.write_str(s, out),
            Content::Jid(j) => self.write_jid(j, out),
        }
    }
}

/// Upper bound of a structured JID's encoding beyond its user's bytes: tag, user
/// header, device/integrator fields and the server (itself a token or raw string).
const JID_BOUND: usize = 8 + STR_SLACK + 16;

/// A string's or byte field's length, refused at 4 GiB or more.
#[inline]
fn check_str(s: impl AsRef<[u8]>) -> Result<usize, EncodeError> {
    let n = s.as_ref().len();
    if (n as u64) < 1 << 32 { Ok(n) } else { Err(EncodeError::TooLong { len: n }) }
}

#[inline]
fn write_list_header(n: usize, out: &mut Vec<u8>) {
    match n {
        0 => out.push(tag::LIST_EMPTY),
        1..=255 => out.extend_from_slice(&[tag::LIST_8, n as u8]),
        _ => {
            out.push(tag::LIST_16);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
}

#[inline]
fn write_raw(b: &[u8], out: &mut Vec<u8>) {
    write_raw_header(b.len(), out);
    out.extend_from_slice(b);
}

/// The `BINARY_*` header of an `n`-byte field (`n` was checked to fit).
#[inline]
fn write_raw_header(n: usize, out: &mut Vec<u8>) {
    if n < 256 {
        out.extend_from_slice(&[tag::BINARY_8, n as u8]);
    } else if n < 1 << 20 {
        out.extend_from_slice(&[tag::BINARY_20, (n >> 16) as u8 & 0x0f, (n >> 8) as u8, n as u8]);
    } else {
        out.push(tag::BINARY_32);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

#[inline]
fn write_packed(kind: u8, s: &[u8], out: &mut Vec<u8>) {
    let n = s.len();
    let half = n / 2;
    let head = (n.div_ceil(2) as u8) | if n % 2 == 1 { 0x80 } else { 0 };
    out.extend_from_slice(&[kind, head]);
    let pairs = s.chunks_exact(2);
    let rest = pairs.remainder();
    out.extend(pairs.map(|p| (PACK[p[0] as usize] << 4) | PACK[p[1] as usize]));
    if let [last] = rest {
        out.push((PACK[*last as usize] << 4) | 0x0f);
    }
    debug_assert_eq!(half + rest.len(), n.div_ceil(2));
}

/// Exact length of [`encode`]'s output.
pub fn encoded_len(node: &Node) -> Result<usize, EncodeError> {
    Encoder::default().encoded_len(node)
}

/// Encodes a node as a frame payload (flags byte `0x00`, then the node), with
/// dictionary version 3, in one allocation sized by a cheap upper bound
/// ([`encoded_len`] gives the exact length).
pub fn encode(node: &Node) -> Result<Vec<u8>, EncodeError> {
    Encoder::default().encode(node)
}

/// [`Encoder::encode_frame`] with dictionary version 3: the frame payload with byte
/// contents of [`DEFAULT_SPLICE_MIN`] bytes or more referenced, not copied.
pub fn encode_frame(node: &Node) -> Result<EncodedFrame, EncodeError> {
    Encoder::default().encode_frame(node)
}

/// Appends the flags byte and the node to `out` (dictionary version 3).
pub fn encode_into(node: &Node, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    Encoder::default().encode_into(node, out)
}
