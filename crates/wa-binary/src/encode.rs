//! Encoder: owned [`Node`] to wire bytes.
//!
//! Two passes over the node: the first computes the exact encoded length, so the
//! output is allocated once (or a caller's buffer is grown once); the second writes.
//! Strings are written the way Baileys writes them (token, nibble-packed,
//! hex-packed, JID when they contain `@`, else raw), so encodings are byte-identical.

use crate::decode::MAX_JID_NESTING;
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

/// The first pass's string classifications, replayed by the second pass so
/// that every string is looked up once. Each entry records the string's length
/// as a check: on any mismatch the writer classifies afresh.
#[derive(Clone, Copy)]
struct Planned {
    kind: u8,
    a: u8,
    b: u8,
    len: u32,
    user_end: u32,
    at: u32,
}

const K_RAW: u8 = 0;
const K_TOKEN1: u8 = 1;
const K_TOKEN2: u8 = 2;
const K_NIBBLE: u8 = 3;
const K_HEX: u8 = 4;
const K_AD: u8 = 5;
const K_PAIR: u8 = 6;

#[derive(Default)]
struct Plan {
    items: smallvec::SmallVec<[Planned; 32]>,
    next: usize,
}

const K_NONE: u8 = u8::MAX;

impl Planned {
    #[inline]
    fn of(s: &str, k: &StrKind<'_>) -> Planned {
        let len = s.len() as u32;
        let (kind, a, b, user_end, at) = match *k {
            StrKind::Raw => (K_RAW, 0, 0, 0, 0),
            StrKind::Token(Token::Single(x)) => (K_TOKEN1, x, 0, 0, 0),
            StrKind::Token(Token::Double(d, i)) => (K_TOKEN2, d, i, 0, 0),
            StrKind::Nibble => (K_NIBBLE, 0, 0, 0, 0),
            StrKind::Hex => (K_HEX, 0, 0, 0, 0),
            StrKind::Jid(StrJid::Ad {
                domain,
                device,
                user,
            }) => (K_AD, domain, device, user.len() as u32, 0),
            StrKind::Jid(StrJid::Pair { user, server }) => (
                K_PAIR,
                0,
                0,
                user.len() as u32,
                (s.len() - server.len() - 1) as u32,
            ),
        };
        Planned {
            kind,
            a,
            b,
            len,
            user_end,
            at,
        }
    }
}

impl Plan {
    #[inline]
    fn record(&mut self, s: &str, k: &StrKind<'_>) {
        self.items.push(Planned::of(s, k));
    }

    /// The next recorded classification if it is `s`'s; `kind == K_NONE` otherwise.
    #[inline]
    fn take(&mut self, s: &str) -> Planned {
        match self.items.get(self.next) {
            Some(p) if p.len as usize == s.len() => {
                self.next += 1;
                *p
            }
            _ => Planned {
                kind: K_NONE,
                a: 0,
                b: 0,
                len: 0,
                user_end: 0,
                at: 0,
            },
        }
    }
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

#[inline]
fn binary_header_len(n: usize) -> Result<usize, EncodeError> {
    if n < 256 {
        Ok(2)
    } else if n < 1 << 20 {
        Ok(4)
    } else if (n as u64) < 1 << 32 {
        Ok(5)
    } else {
        Err(EncodeError::TooLong { len: n })
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
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder { dict: &V3 }
    }
}

impl Encoder {
    /// An encoder using `dict`.
    pub fn new(dict: &'static Dictionary) -> Encoder {
        Encoder { dict }
    }

    /// Exact length of [`Encoder::encode`]'s output (flags byte included).
    pub fn encoded_len(&self, node: &Node) -> Result<usize, EncodeError> {
        Ok(1 + self.node_len(node, 0, &mut Plan::default())?)
    }

    /// Encodes a node as a frame payload: the `0x00` flags byte, then the node.
    pub fn encode(&self, node: &Node) -> Result<Vec<u8>, EncodeError> {
        let mut plan = Plan::default();
        let len = 1 + self.node_len(node, 0, &mut plan)?;
        let mut out = Vec::with_capacity(len);
        out.push(0);
        self.write_node(node, &mut out, &mut plan);
        debug_assert_eq!(out.len(), len);
        debug_assert_eq!(plan.next, plan.items.len(), "every planned string replayed");
        Ok(out)
    }

    /// Appends the flags byte and the node to `out`, growing it at most once.
    pub fn encode_into(&self, node: &Node, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let mut plan = Plan::default();
        let len = 1 + self.node_len(node, 0, &mut plan)?;
        out.reserve(len);
        out.push(0);
        self.write_node(node, out, &mut plan);
        Ok(())
    }

    /// Appends only the node (no flags byte) to `out`.
    pub fn encode_body_into(&self, node: &Node, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let mut plan = Plan::default();
        let len = self.node_len(node, 0, &mut plan)?;
        out.reserve(len);
        self.write_node(node, out, &mut plan);
        Ok(())
    }

    /// How `s` goes on the wire; `level` counts the JIDs it is nested in.
    #[inline]
    fn classify<'s>(&self, s: &'s str, level: usize) -> StrKind<'s> {
        let b = s.as_bytes();
        if b.is_empty() {
            return StrKind::Raw;
        }
        if let Some(t) = self.dict.lookup(s) {
            return StrKind::Token(t);
        }
        if b.len() <= tag::PACKED_MAX {
            let mut all = 3u8;
            let mut any = 0u8;
            for &c in b {
                let k = CLASS[c as usize];
                all &= k;
                any |= k;
            }
            if all & 1 != 0 {
                return StrKind::Nibble;
            }
            if all & 2 != 0 {
                return StrKind::Hex;
            }
            if any & 4 == 0 {
                return StrKind::Raw;
            }
        } else if !b.contains(&b'@') {
            return StrKind::Raw;
        }
        match strjid::split(s) {
            // Where Baileys would write bytes that no decoder (its own included)
            // accepts, we write the text raw instead: a JID pair with an empty
            // server (`"x@"`), or JIDs nested beyond what decoders read.
            Some(StrJid::Pair { server: "", .. }) => StrKind::Raw,
            Some(_) if level >= MAX_JID_NESTING => StrKind::Raw,
            Some(j) => StrKind::Jid(j),
            None => StrKind::Raw,
        }
    }

    fn str_len(&self, mut s: &str, plan: &mut Plan) -> Result<usize, EncodeError> {
        let mut total = 0;
        let mut level = 0;
        // A JID_PAIR's server is itself a string (possibly another JID): loop, not recurse.
        // A JID's user part never contains '@', so the calls on it never nest further.
        loop {
            let kind = self.classify(s, level);
            plan.record(s, &kind);
            let len = match kind {
                StrKind::Raw => binary_header_len(s.len())? + s.len(),
                StrKind::Token(t) => t.wire_len(),
                StrKind::Nibble | StrKind::Hex => 2 + s.len().div_ceil(2),
                StrKind::Jid(StrJid::Ad { user, .. }) => 3 + self.str_len(user, plan)?,
                StrKind::Jid(StrJid::Pair { user, server }) => {
                    total += 1 + if user.is_empty() {
                        1
                    } else {
                        self.str_len(user, plan)?
                    };
                    s = server;
                    level += 1;
                    continue;
                }
            };
            return Ok(total + len);
        }
    }

    fn write_str(&self, mut s: &str, out: &mut Vec<u8>, plan: &mut Plan) {
        let mut level = 0;
        loop {
            let mut p = plan.take(s);
            if p.kind == K_NONE {
                p = Planned::of(s, &self.classify(s, level));
            }
            match p.kind {
                K_RAW => write_raw(s.as_bytes(), out),
                K_TOKEN1 => out.push(p.a),
                K_TOKEN2 => out.extend_from_slice(&[tag::DICTIONARY_0 + p.a, p.b]),
                K_NIBBLE => write_packed(tag::NIBBLE_8, s.as_bytes(), out),
                K_HEX => write_packed(tag::HEX_8, s.as_bytes(), out),
                K_AD => {
                    out.extend_from_slice(&[tag::AD_JID, p.a, p.b]);
                    self.write_str(s.get(..p.user_end as usize).unwrap_or(""), out, plan);
                }
                _ => {
                    out.push(tag::JID_PAIR);
                    let user = s.get(..p.user_end as usize).unwrap_or("");
                    if user.is_empty() {
                        out.push(tag::LIST_EMPTY);
                    } else {
                        self.write_str(user, out, plan);
                    }
                    s = s.get(p.at as usize + 1..).unwrap_or("");
                    level += 1;
                    continue;
                }
            }
            return;
        }
    }

    fn jid_len(&self, j: &Jid, plan: &mut Plan) -> Result<usize, EncodeError> {
        let user = j.user();
        Ok(match j.server() {
            Server::Messenger => {
                1 + self.str_len(user, plan)?
                    + 2
                    + self.str_len(Server::Messenger.as_str(), plan)?
            }
            Server::Interop => {
                1 + self.str_len(user, plan)? + 4 + self.str_len(Server::Interop.as_str(), plan)?
            }
            s if j.is_ad() && s.domain_type().is_some() => 3 + self.str_len(user, plan)?,
            s => {
                1 + if user.is_empty() {
                    1
                } else {
                    self.str_len(user, plan)?
                } + self.str_len(s.as_str(), plan)?
            }
        })
    }

    fn write_jid(&self, j: &Jid, out: &mut Vec<u8>, plan: &mut Plan) {
        let user = j.user();
        match j.server() {
            Server::Messenger => {
                out.push(tag::FB_JID);
                self.write_str(user, out, plan);
                out.extend_from_slice(&j.device().to_be_bytes());
                self.write_str(Server::Messenger.as_str(), out, plan);
            }
            Server::Interop => {
                out.push(tag::INTEROP_JID);
                self.write_str(user, out, plan);
                out.extend_from_slice(&j.device().to_be_bytes());
                out.extend_from_slice(&j.integrator().to_be_bytes());
                self.write_str(Server::Interop.as_str(), out, plan);
            }
            s => match s.domain_type() {
                Some(domain) if j.is_ad() => {
                    let domain = if j.agent() != 0 { j.agent() } else { domain };
                    // Jid guarantees devices on these servers fit in a byte.
                    out.extend_from_slice(&[tag::AD_JID, domain, j.device() as u8]);
                    self.write_str(user, out, plan);
                }
                _ => {
                    out.push(tag::JID_PAIR);
                    if user.is_empty() {
                        out.push(tag::LIST_EMPTY);
                    } else {
                        self.write_str(user, out, plan);
                    }
                    self.write_str(s.as_str(), out, plan);
                }
            },
        }
    }

    #[inline]
    fn value_len(&self, v: &Value, plan: &mut Plan) -> Result<usize, EncodeError> {
        match v {
            Value::Str(s) => self.str_len(s, plan),
            Value::Jid(j) => self.jid_len(j, plan),
        }
    }

    fn node_len(&self, node: &Node, depth: usize, plan: &mut Plan) -> Result<usize, EncodeError> {
        if depth > MAX_ENCODE_DEPTH {
            return Err(EncodeError::TooDeep);
        }
        if node.tag.is_empty() {
            return Err(EncodeError::EmptyTag);
        }
        let n_attrs = node.attrs.len();
        let list = 1 + 2 * n_attrs + usize::from(!matches!(node.content, Content::None));
        if list > u16::MAX as usize {
            return Err(EncodeError::TooManyAttrs {
                tag: node.tag.to_string(),
                count: n_attrs,
            });
        }
        let mut len = list_header_len(list) + self.str_len(&node.tag, plan)?;
        for a in &node.attrs {
            len += self.str_len(&a.key, plan)? + self.value_len(&a.value, plan)?;
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
                let mut l = list_header_len(children.len());
                for c in children {
                    l += self.node_len(c, depth + 1, plan)?;
                }
                l
            }
            Content::Bytes(b) => binary_header_len(b.len())? + b.len(),
            Content::Str(s) => self.str_len(s, plan)?,
            Content::Jid(j) => self.jid_len(j, plan)?,
        };
        Ok(len)
    }

    fn write_node(&self, node: &Node, out: &mut Vec<u8>, plan: &mut Plan) {
        let list = 1 + 2 * node.attrs.len() + usize::from(!matches!(node.content, Content::None));
        write_list_header(list, out);
        self.write_str(&node.tag, out, plan);
        for a in &node.attrs {
            self.write_str(&a.key, out, plan);
            match &a.value {
                Value::Str(s) => self.write_str(s, out, plan),
                Value::Jid(j) => self.write_jid(j, out, plan),
            }
        }
        match &node.content {
            Content::None => {}
            Content::Children(children) => {
                write_list_header(children.len(), out);
                for c in children {
                    self.write_node(c, out, plan);
                }
            }
            Content::Bytes(b) => write_raw(b, out),
            Content::Str(s) => self.write_str(s, out, plan),
            Content::Jid(j) => self.write_jid(j, out, plan),
        }
    }
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
    let n = b.len();
    if n < 256 {
        out.extend_from_slice(&[tag::BINARY_8, n as u8]);
    } else if n < 1 << 20 {
        out.extend_from_slice(&[
            tag::BINARY_20,
            (n >> 16) as u8 & 0x0f,
            (n >> 8) as u8,
            n as u8,
        ]);
    } else {
        out.push(tag::BINARY_32);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(b);
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
/// dictionary version 3, in one allocation of exactly the right size.
pub fn encode(node: &Node) -> Result<Vec<u8>, EncodeError> {
    Encoder::default().encode(node)
}

/// Appends the flags byte and the node to `out` (dictionary version 3).
pub fn encode_into(node: &Node, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    Encoder::default().encode_into(node, out)
}
