//! Zero-copy decoder: wire bytes to a [`Document`] of borrowed [`NodeRef`]s.
//!
//! A document is one array of nodes (each node's children are contiguous in it),
//! one of attributes, one of JIDs, and one text buffer for the strings that are
//! not tokens (packed digits and hex, and raw strings, validated once as UTF-8).
//! The three arrays start inline in the document, so a small stanza decodes with
//! at most one allocation (the text buffer); larger trees grow geometrically.
//! Byte contents and tokens borrow the input or the static token tables.

use std::borrow::Cow;
use std::io::Read;

use compact_str::CompactString;
use smallvec::SmallVec;

use crate::jid::{Jid, JidError, Server};
use crate::node::{self, Attr, AttrError, AttrErrorKind, Attrs, Content, Node, Value};
use crate::tag;
use crate::token::{Dictionary, V3};

/// Bounds that keep hostile input from exhausting memory or the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Deepest node (and nested-JID) nesting accepted. Default 64.
    pub max_depth: usize,
    /// Largest node body accepted, before or after inflating. Default 32 MiB
    /// (twice the largest frame the transport carries).
    pub max_size: usize,
    /// Longest child list or attribute list accepted. Default 65535 (no limit
    /// beyond the wire's). Lists are also never longer than the remaining input
    /// could hold, so a lying header cannot make the decoder reserve memory.
    pub max_list_len: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits { max_depth: 64, max_size: 32 << 20, max_list_len: u16::MAX as usize }
    }
}

/// Why bytes are not a valid node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ends inside a value.
    #[error("unexpected end of input at offset {offset} (need {needed} more bytes)")]
    UnexpectedEof {
        /// Where the value started or the read was attempted.
        offset: usize,
        /// How many bytes were missing.
        needed: usize,
    },
    /// A byte that cannot start what is expected at this position.
    #[error("invalid tag byte 0x{byte:02x} at offset {offset} (expected {expected})")]
    InvalidTag {
        /// Offset of the byte.
        offset: usize,
        /// The byte.
        byte: u8,
        /// What was expected there.
        expected: &'static str,
    },
    /// A nibble-packed string holds a nibble outside `0-9 - .`.
    #[error("invalid nibble {value} at offset {offset}")]
    InvalidNibble {
        /// Offset of the byte.
        offset: usize,
        /// The nibble value (12, 13 or 14).
        value: u8,
    },
    /// A node with a zero-length list header or an empty tag.
    #[error("invalid node at offset {offset}: empty list header or empty tag")]
    InvalidNode {
        /// Offset of the node.
        offset: usize,
    },
    /// A JID pair whose server is empty.
    #[error("invalid JID pair at offset {offset}: empty server")]
    InvalidJidPair {
        /// Offset of the JID.
        offset: usize,
    },
    /// Nesting beyond [`DecodeLimits::max_depth`].
    #[error("nesting deeper than {limit} at offset {offset}")]
    TooDeep {
        /// The limit.
        limit: usize,
        /// Where it was exceeded.
        offset: usize,
    },
    /// A body beyond [`DecodeLimits::max_size`].
    #[error("{size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// The size seen (for inflated bodies: at least this).
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A list longer than [`DecodeLimits::max_list_len`] or than the remaining input.
    #[error("list of {len} items at offset {offset} is longer than allowed ({limit})")]
    ListTooLong {
        /// Declared length.
        len: usize,
        /// Where the list header is.
        offset: usize,
        /// The bound that applied.
        limit: usize,
    },
    /// Bytes left over after the root node.
    #[error("{count} trailing bytes after the node")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// A frame payload without even the flags byte.
    #[error("empty frame")]
    EmptyFrame,
    /// The zlib-compressed body does not inflate.
    #[error("compressed frame does not inflate: {0}")]
    Inflate(String),
}

/// Where a decoded string lives: a token of the dictionary (code 0 is the
/// empty string), a range of the document's text buffer, or (for attribute
/// values) a JID of the document's JID array. One machine word, so that nodes
/// and attributes stay small and move cheaply.
#[derive(Debug, Clone, Copy, Default)]
struct Slot(u64);

const TOKEN_FLAG: u64 = 1 << 63;
// Text offsets stay below 2^30 (checked at the end of a decode), so bit 62 is free.
const JID_FLAG: u64 = 1 << 62;
const MAX_TEXT_LEN: usize = 1 << 30;
const EMPTY_SLOT: Slot = Slot(TOKEN_FLAG);

enum SlotKind {
    Token(u16),
    Text(u32, u32),
    Jid(u32),
}

impl Slot {
    #[inline]
    fn token(code: u16) -> Slot {
        Slot(TOKEN_FLAG | u64::from(code))
    }
    #[inline]
    fn text(start: u32, end: u32) -> Slot {
        Slot((u64::from(start) << 32) | u64::from(end))
    }
    #[inline]
    fn jid(index: u32) -> Slot {
        Slot(JID_FLAG | u64::from(index))
    }
    #[inline]
    fn kind(self) -> SlotKind {
        if self.0 & TOKEN_FLAG != 0 {
            SlotKind::Token(self.0 as u16)
        } else if self.0 & JID_FLAG != 0 {
            SlotKind::Jid(self.0 as u32)
        } else {
            SlotKind::Text((self.0 >> 32) as u32, self.0 as u32)
        }
    }
}

/// How a JID was written on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JidKind {
    /// `JID_PAIR`: user, server.
    Pair,
    /// `AD_JID`: domain type, device, user.
    Ad,
    /// `FB_JID` (Messenger): user, device, server.
    Fb,
    /// `INTEROP_JID`: user, device, integrator, server.
    Interop,
}

#[derive(Debug, Clone, Copy)]
struct JidSlot {
    user: Slot,
    server: Slot,
    device: u16,
    integrator: u16,
    kind: JidKind,
    domain: u8,
}

#[derive(Debug, Clone, Copy)]
struct RawAttr {
    key: Slot,
    /// Text, a token, or a JID.
    value: Slot,
}

#[derive(Debug, Clone, Copy, Default)]
enum RawContent {
    #[default]
    None,
    Children(u32, u32),
    /// Start and length in the input.
    Bytes(u32, u32),
    Str(Slot),
    Jid(u32),
}

#[derive(Debug, Clone, Copy, Default)]
struct RawNode {
    tag: Slot,
    attrs_start: u32,
    attrs_len: u32,
    content: RawContent,
}

// How many nodes, attributes and JIDs a document holds without allocating. A
// typical stanza (an ack, a receipt, a notification, an iq with a child or two)
// fits, so decoding it allocates nothing unless it has packed or raw text; larger
// trees move to the heap once and then grow geometrically.
const INLINE_NODES: usize = 8;
const INLINE_ATTRS: usize = 12;
const INLINE_JIDS: usize = 4;

type NodeVec = SmallVec<[RawNode; INLINE_NODES]>;
type AttrVec = SmallVec<[RawAttr; INLINE_ATTRS]>;
type JidVec = SmallVec<[JidSlot; INLINE_JIDS]>;

/// A decoded node tree. Borrows the input; [`Document::root`] gives the root node.
#[derive(Debug, Clone)]
pub struct Document<'a> {
    input: &'a [u8],
    nodes: NodeVec,
    attrs: AttrVec,
    jids: JidVec,
    text: String,
    dict: &'static Dictionary,
}

impl<'a> Document<'a> {
    /// The root node.
    pub fn root(&self) -> NodeRef<'_> {
        NodeRef { doc: self, raw: &self.nodes[0] }
    }

    /// An owned copy of the whole tree.
    pub fn to_node(&self) -> Node {
        self.root().to_owned()
    }

    #[inline]
    fn s(&self, slot: &Slot) -> &str {
        resolve(self.dict, &self.text, slot)
    }

    fn owned_str(&self, slot: &Slot) -> CompactString {
        match slot.kind() {
            SlotKind::Token(code) => CompactString::const_new(self.dict.code_str(code)),
            SlotKind::Text(a, b) => CompactString::new(self.text.get(a as usize..b as usize).unwrap_or("")),
            SlotKind::Jid(_) => CompactString::const_new(""),
        }
    }

    fn jid(&self, index: u32) -> JidRef<'_> {
        match self.jids.get(index as usize) {
            Some(j) => jid_ref(self.dict, &self.text, j),
            None => JidRef { kind: JidKind::Pair, domain: 0, device: 0, integrator: 0, user: "", server: "" },
        }
    }
}

impl std::fmt::Display for Document<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.root(), f)
    }
}

#[inline]
fn resolve<'s>(dict: &'static Dictionary, text: &'s str, slot: &Slot) -> &'s str {
    match slot.kind() {
        SlotKind::Token(code) => dict.code_str(code),
        SlotKind::Text(a, b) => text.get(a as usize..b as usize).unwrap_or(""),
        // Never asked for: JID values are resolved by `value_ref`.
        SlotKind::Jid(_) => "",
    }
}

#[inline]
fn jid_ref<'s>(dict: &'static Dictionary, text: &'s str, j: &JidSlot) -> JidRef<'s> {
    JidRef {
        kind: j.kind,
        domain: j.domain,
        device: j.device,
        integrator: j.integrator,
        user: resolve(dict, text, &j.user),
        server: match j.kind {
            JidKind::Ad => Server::from_domain_type(j.domain).as_str(),
            _ => resolve(dict, text, &j.server),
        },
    }
}

/// A decoded JID, borrowed from its [`Document`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JidRef<'d> {
    kind: JidKind,
    domain: u8,
    device: u16,
    integrator: u16,
    user: &'d str,
    server: &'d str,
}

impl<'d> JidRef<'d> {
    /// How it was written on the wire.
    pub fn kind(&self) -> JidKind {
        self.kind
    }
    /// The user part.
    pub fn user(&self) -> &'d str {
        self.user
    }
    /// The server name (for AD JIDs, the one the domain type stands for).
    pub fn server(&self) -> &'d str {
        self.server
    }
    /// The device (0 if none).
    pub fn device(&self) -> u16 {
        self.device
    }
    /// The AD_JID domain type byte (0 for other kinds).
    pub fn domain_type(&self) -> u8 {
        self.domain
    }
    /// The legacy agent: an AD_JID domain type that names no server (else 0).
    pub fn agent(&self) -> u8 {
        match (self.kind, self.domain) {
            (JidKind::Ad, 0 | 1 | 128 | 129) => 0,
            (JidKind::Ad, d) => d,
            _ => 0,
        }
    }
    /// The interop integrator (0 for other kinds).
    pub fn integrator(&self) -> u16 {
        self.integrator
    }

    /// The typed [`Jid`]; fails for servers we don't know or parts out of range.
    pub fn to_jid(&self) -> Result<Jid, JidError> {
        let server = match self.kind {
            JidKind::Ad => Server::from_domain_type(self.domain),
            _ => Server::from_name(self.server).ok_or_else(|| JidError::UnknownServer(self.server.into()))?,
        };
        Jid::from_wire(self.user, server, self.agent(), self.device, self.integrator)
    }

    // The string form Baileys gives this JID (agents dropped): used where a JID
    // must become plain text (a JID used as a tag or key, or nested in another).
    fn write_plain(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = match self.kind {
            JidKind::Pair => write!(out, "{}@{}", self.user, self.server),
            JidKind::Ad if self.device != 0 => {
                write!(out, "{}:{}@{}", self.user, self.device, self.server)
            }
            JidKind::Ad => write!(out, "{}@{}", self.user, self.server),
            JidKind::Fb => write!(out, "{}:{}@{}", self.user, self.device, self.server),
            JidKind::Interop => {
                write!(out, "{}-{}:{}@{}", self.integrator, self.user, self.device, self.server)
            }
        };
    }
}

impl std::fmt::Display for JidRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            JidKind::Pair => write!(f, "{}@{}", self.user, self.server),
            JidKind::Ad => {
                f.write_str(self.user)?;
                match self.agent() {
                    0 if self.device == 0 => {}
                    0 => write!(f, ":{}", self.device)?,
                    a => write!(f, "_{}:{}", a, self.device)?,
                }
                write!(f, "@{}", self.server)
            }
            JidKind::Fb => write!(f, "{}:{}@{}", self.user, self.device, self.server),
            JidKind::Interop => {
                write!(f, "{}-{}:{}@{}", self.integrator, self.user, self.device, self.server)
            }
        }
    }
}

/// A decoded attribute value or string content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueRef<'d> {
    /// Text.
    Str(&'d str),
    /// A JID.
    Jid(JidRef<'d>),
}

impl<'d> ValueRef<'d> {
    /// The text, or `None` for a JID.
    pub fn as_str(&self) -> Option<&'d str> {
        match self {
            ValueRef::Str(s) => Some(s),
            ValueRef::Jid(_) => None,
        }
    }
    /// The text, with a JID formatted.
    pub fn to_str(self) -> Cow<'d, str> {
        match self {
            ValueRef::Str(s) => Cow::Borrowed(s),
            ValueRef::Jid(j) => Cow::Owned(j.to_string()),
        }
    }
    /// The JID: a JID value, or text that parses as one.
    pub fn to_jid(self) -> Result<Jid, JidError> {
        match self {
            ValueRef::Str(s) => s.parse(),
            ValueRef::Jid(j) => j.to_jid(),
        }
    }
    /// An owned [`Value`]. A JID that [`Jid`] cannot represent becomes text.
    pub fn to_value(self) -> Value {
        match self {
            ValueRef::Str(s) => Value::Str(s.into()),
            ValueRef::Jid(j) => match j.to_jid() {
                Ok(j) => Value::Jid(j),
                Err(_) => Value::Str(compact_str::format_compact!("{j}")),
            },
        }
    }
}

impl std::fmt::Display for ValueRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ValueRef::Str(s) => f.write_str(s),
            ValueRef::Jid(j) => j.fmt(f),
        }
    }
}

impl PartialEq<&str> for ValueRef<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == Some(*other)
    }
}

/// A decoded node's content.
#[derive(Debug, Clone, Copy)]
pub enum ContentRef<'d> {
    /// No content.
    None,
    /// Child nodes (possibly none).
    Children(Children<'d>),
    /// Bytes (any `BINARY_*` content, including text written raw).
    Bytes(&'d [u8]),
    /// Text (a token or packed string).
    Str(&'d str),
    /// A JID.
    Jid(JidRef<'d>),
}

/// A node in a [`Document`]. Cheap to copy.
#[derive(Clone, Copy)]
pub struct NodeRef<'d> {
    doc: &'d Document<'d>,
    raw: &'d RawNode,
}

impl std::fmt::Debug for NodeRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeRef({self})")
    }
}

/// The children of a [`NodeRef`].
#[derive(Clone, Copy)]
pub struct Children<'d> {
    doc: &'d Document<'d>,
    nodes: &'d [RawNode],
}

impl std::fmt::Debug for Children<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(*self).finish()
    }
}

impl<'d> Children<'d> {
    /// Number of children.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
    /// The `i`th child.
    pub fn get(&self, i: usize) -> Option<NodeRef<'d>> {
        self.nodes.get(i).map(|raw| NodeRef { doc: self.doc, raw })
    }
}

impl<'d> Iterator for Children<'d> {
    type Item = NodeRef<'d>;
    #[inline]
    fn next(&mut self) -> Option<NodeRef<'d>> {
        let (first, rest) = self.nodes.split_first()?;
        self.nodes = rest;
        Some(NodeRef { doc: self.doc, raw: first })
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.nodes.len(), Some(self.nodes.len()))
    }
}

impl DoubleEndedIterator for Children<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        let (last, rest) = self.nodes.split_last()?;
        self.nodes = rest;
        Some(NodeRef { doc: self.doc, raw: last })
    }
}

impl ExactSizeIterator for Children<'_> {}

/// The attributes of a [`NodeRef`], in wire order.
#[derive(Clone, Copy)]
pub struct AttrsRef<'d> {
    doc: &'d Document<'d>,
    attrs: &'d [RawAttr],
}

impl<'d> Iterator for AttrsRef<'d> {
    type Item = (&'d str, ValueRef<'d>);
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let (first, rest) = self.attrs.split_first()?;
        self.attrs = rest;
        Some((self.doc.s(&first.key), value_ref(self.doc, &first.value)))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.attrs.len(), Some(self.attrs.len()))
    }
}

impl ExactSizeIterator for AttrsRef<'_> {}

#[inline]
fn value_ref<'d>(doc: &'d Document<'d>, v: &'d Slot) -> ValueRef<'d> {
    match v.kind() {
        SlotKind::Jid(j) => ValueRef::Jid(doc.jid(j)),
        _ => ValueRef::Str(doc.s(v)),
    }
}

impl<'d> NodeRef<'d> {
    /// The tag.
    #[inline]
    pub fn tag(&self) -> &'d str {
        self.doc.s(&self.raw.tag)
    }

    fn raw_attrs(&self) -> &'d [RawAttr] {
        let start = self.raw.attrs_start as usize;
        self.doc.attrs.get(start..start + self.raw.attrs_len as usize).unwrap_or(&[])
    }

    /// Attributes in wire order (a repeated key appears as often as it was sent).
    pub fn attrs(&self) -> AttrsRef<'d> {
        AttrsRef { doc: self.doc, attrs: self.raw_attrs() }
    }

    /// Number of attributes on the wire.
    pub fn attrs_len(&self) -> usize {
        self.raw.attrs_len as usize
    }

    /// The value of an attribute; the last one if the key repeats (as Baileys reads it).
    #[inline]
    pub fn get_attr(&self, key: &str) -> Option<ValueRef<'d>> {
        self.raw_attrs()
            .iter()
            .rev()
            .find(|a| self.doc.s(&a.key) == key)
            .map(|a| value_ref(self.doc, &a.value))
    }

    /// Whether the attribute is present.
    pub fn has_attr(&self, key: &str) -> bool {
        self.get_attr(key).is_some()
    }

    fn require(&self, key: &str) -> Result<ValueRef<'d>, AttrError> {
        self.get_attr(key).ok_or_else(|| AttrError::new(self.tag(), key, AttrErrorKind::Missing))
    }

    /// An attribute as text (a JID is formatted, which allocates).
    pub fn attr_str(&self, key: &str) -> Result<Cow<'d, str>, AttrError> {
        Ok(self.require(key)?.to_str())
    }

    /// An optional text attribute.
    pub fn opt_attr_str(&self, key: &str) -> Option<Cow<'d, str>> {
        self.get_attr(key).map(ValueRef::to_str)
    }

    /// An attribute as an unsigned integer.
    pub fn attr_u64(&self, key: &str) -> Result<u64, AttrError> {
        node::parse_u64(self.tag(), key, &self.attr_str(key)?)
    }

    /// An attribute as a signed integer.
    pub fn attr_i64(&self, key: &str) -> Result<i64, AttrError> {
        node::parse_i64(self.tag(), key, &self.attr_str(key)?)
    }

    /// An attribute as a boolean (`true`/`false`/`1`/`0`).
    pub fn attr_bool(&self, key: &str) -> Result<bool, AttrError> {
        node::parse_bool(self.tag(), key, &self.attr_str(key)?)
    }

    /// An attribute as a JID.
    pub fn attr_jid(&self, key: &str) -> Result<Jid, AttrError> {
        match self.require(key)? {
            ValueRef::Str(s) => node::parse_jid(self.tag(), key, s),
            ValueRef::Jid(j) => j.to_jid().map_err(|error| {
                AttrError::new(
                    self.tag(),
                    key,
                    AttrErrorKind::NotJid { value: compact_str::format_compact!("{j}"), error },
                )
            }),
        }
    }

    /// The content.
    pub fn content(&self) -> ContentRef<'d> {
        match &self.raw.content {
            RawContent::None => ContentRef::None,
            RawContent::Children(..) => ContentRef::Children(self.child_nodes()),
            RawContent::Bytes(..) => ContentRef::Bytes(self.content_bytes().unwrap_or(&[])),
            RawContent::Str(s) => ContentRef::Str(self.doc.s(s)),
            RawContent::Jid(j) => ContentRef::Jid(self.doc.jid(*j)),
        }
    }

    /// The children (empty unless the content is a child list).
    pub fn child_nodes(&self) -> Children<'d> {
        let nodes = match self.raw.content {
            RawContent::Children(start, len) => {
                let (start, len) = (start as usize, len as usize);
                self.doc.nodes.get(start..start + len).unwrap_or(&[])
            }
            _ => &[],
        };
        Children { doc: self.doc, nodes }
    }

    /// Whether the content is a child list (possibly empty).
    pub fn has_child_list(&self) -> bool {
        matches!(self.raw.content, RawContent::Children(..))
    }

    /// The first child with this tag.
    pub fn child(&self, tag: &str) -> Option<NodeRef<'d>> {
        self.child_nodes().find(|c| c.tag() == tag)
    }

    /// Follows a path of tags, first match at each level.
    pub fn child_path(&self, path: &[&str]) -> Option<NodeRef<'d>> {
        path.iter().try_fold(*self, |n, tag| n.child(tag))
    }

    /// All children with this tag.
    pub fn children_by_tag<'t>(&self, tag: &'t str) -> impl Iterator<Item = NodeRef<'d>> + 't
    where
        'd: 't,
    {
        self.child_nodes().filter(move |c| c.tag() == tag)
    }

    /// The content as bytes, if it is bytes.
    pub fn content_bytes(&self) -> Option<&'d [u8]> {
        match self.raw.content {
            RawContent::Bytes(start, len) => {
                let start = start as usize;
                self.doc.input.get(start..start + len as usize)
            }
            _ => None,
        }
    }

    /// The content as text, if it is a text (token or packed) value.
    pub fn content_str(&self) -> Option<&'d str> {
        match &self.raw.content {
            RawContent::Str(s) => Some(self.doc.s(s)),
            _ => None,
        }
    }

    /// An owned copy of this node and everything under it.
    pub fn to_owned(self) -> Node {
        let doc = self.doc;
        let attrs: Attrs = self
            .raw_attrs()
            .iter()
            .map(|a| Attr {
                key: doc.owned_str(&a.key),
                value: match a.value.kind() {
                    SlotKind::Jid(j) => ValueRef::Jid(doc.jid(j)).to_value(),
                    _ => Value::Str(doc.owned_str(&a.value)),
                },
            })
            .collect();
        let content = match &self.raw.content {
            RawContent::None => Content::None,
            RawContent::Children(..) => {
                Content::Children(self.child_nodes().map(NodeRef::to_owned).collect())
            }
            RawContent::Bytes(..) => {
                Content::Bytes(bytes::Bytes::copy_from_slice(self.content_bytes().unwrap_or(&[])))
            }
            RawContent::Str(s) => Content::Str(doc.owned_str(s)),
            RawContent::Jid(j) => match ValueRef::Jid(doc.jid(*j)).to_value() {
                Value::Jid(j) => Content::Jid(j),
                Value::Str(s) => Content::Str(s),
            },
        };
        Node { tag: doc.owned_str(&self.raw.tag), attrs, content }
    }
}

/// A string as read, before deciding where it goes. JIDs live in a side array
/// so that this (returned by every string read) stays two words.
#[derive(Clone, Copy)]
enum Parsed {
    Str(Slot),
    Jid(u32),
}

/// The hot path reports failure with this marker and leaves the error itself
/// in the reader, so results stay small enough to travel in registers.
struct Fail;

type R<T> = Result<T, Fail>;

/// Scratch space for an unpacked string, aligned for `str::from_utf8`.
#[repr(align(16))]
struct AlignedChars([u8; 256]);

/// Scratch space for a short raw string, aligned for `str::from_utf8`.
#[repr(align(16))]
struct AlignedShort([u8; 64]);

/// The first `n` bytes of `buf` as text, if they are UTF-8; the bytes after
/// them must be zeros. The standard check runs whole 16-byte blocks on aligned
/// ASCII but falls back to a byte-at-a-time loop for a block's worth of tail, so
/// it is run over the zero padding up to the next block (zeros are ASCII and
/// cannot complete a multi-byte character) and the result cut back to `n`:
/// 2-3× fewer instructions on the 10-60 byte strings stanzas are made of.
#[inline]
fn padded_utf8(buf: &[u8], n: usize) -> Option<&str> {
    let padded = buf.get(..n.next_multiple_of(16))?;
    std::str::from_utf8(padded).ok()?.get(..n)
}

// Nibble-packed pairs: high and low character per byte; 0xFF marks an invalid nibble.
const NIBBLE_CHARS: [u8; 16] = *b"0123456789-.\xff\xff\xff\0";
const HEX_CHARS: [u8; 16] = *b"0123456789ABCDEF";

struct Reader<'a, 'l> {
    buf: &'a [u8],
    pos: usize,
    dict: &'static Dictionary,
    limits: &'l DecodeLimits,
    /// The document being built.
    doc: Document<'a>,
    error: Option<DecodeError>,
    jid_nesting: usize,
}

/// How deep JIDs may nest inside JIDs (see `Reader::read_jid`).
pub(crate) const MAX_JID_NESTING: usize = 4;

impl<'a> Reader<'a, '_> {
    #[cold]
    #[inline(never)]
    fn fail<T>(&mut self, e: DecodeError) -> R<T> {
        self.error = Some(e);
        Err(Fail)
    }

    #[cold]
    #[inline(never)]
    fn eof<T>(&mut self, needed: usize) -> R<T> {
        let offset = self.pos;
        self.fail(DecodeError::UnexpectedEof { offset, needed })
    }

    #[inline]
    fn byte(&mut self) -> R<u8> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => self.eof(1),
        }
    }

    #[inline]
    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let buf: &'a [u8] = self.buf;
        match buf.get(self.pos..self.pos.saturating_add(n)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => self.eof(n - (buf.len() - self.pos.min(buf.len()))),
        }
    }

    #[inline]
    fn u16(&mut self) -> R<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    #[inline]
    fn binary_len(&mut self, t: u8) -> R<usize> {
        Ok(match t {
            tag::BINARY_8 => self.byte()? as usize,
            tag::BINARY_20 => {
                let b = self.take(3)?;
                ((b[0] as usize & 0x0f) << 16) | ((b[1] as usize) << 8) | b[2] as usize
            }
            _ => {
                let b = self.take(4)?;
                u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
            }
        })
    }

    /// Makes room for `n` more bytes of text. The first reservation is sized from
    /// the body (so a stanza's strings usually need one allocation, not a series of
    /// doublings); later ones double.
    #[inline]
    fn reserve_text(&mut self, n: usize) {
        if self.doc.text.capacity() - self.doc.text.len() < n {
            self.grow_text(n);
        }
    }

    #[cold]
    #[inline(never)]
    fn grow_text(&mut self, n: usize) {
        let first = if self.doc.text.capacity() == 0 { (self.buf.len() / 2).clamp(64, 256) } else { 0 };
        self.doc.text.reserve(n.max(first));
    }

    #[inline]
    fn text_slot(&self, start: usize) -> Slot {
        Slot::text(start as u32, self.doc.text.len() as u32)
    }

    fn read_packed(&mut self, kind: u8) -> R<Slot> {
        let head = self.byte()?;
        let offset = self.pos;
        let bytes = self.take((head & 0x7f) as usize)?;
        let start = self.doc.text.len();
        let table = if kind == tag::NIBBLE_8 { &NIBBLE_CHARS } else { &HEX_CHARS };
        // At most 127 bytes, so at most 254 characters: unpack on the stack, then
        // append once (the characters are ASCII, so the UTF-8 check is a formality,
        // and aligned, so it runs on its word-at-a-time path).
        let mut chars = AlignedChars([0u8; 256]);
        let chars = &mut chars.0;
        let mut bad = 0u8;
        for (pair, &b) in chars.chunks_exact_mut(2).zip(bytes) {
            let (hi, lo) = (table[(b >> 4) as usize], table[(b & 0x0f) as usize]);
            bad |= (hi | lo) & 0x80;
            pair[0] = hi;
            pair[1] = lo;
        }
        if bad != 0 {
            return self.invalid_nibble(bytes, offset, table);
        }
        let mut n = bytes.len() * 2;
        if head & 0x80 != 0 && n > 0 {
            n -= 1;
        }
        self.reserve_text(n);
        match padded_utf8(chars, n) {
            Some(s) => self.doc.text.push_str(s),
            None => return self.invalid_nibble(bytes, offset, table),
        }
        Ok(self.text_slot(start))
    }

    #[cold]
    #[inline(never)]
    fn invalid_nibble<T>(&mut self, bytes: &[u8], offset: usize, table: &[u8; 16]) -> R<T> {
        for (i, &b) in bytes.iter().enumerate() {
            for value in [b >> 4, b & 0x0f] {
                if table[value as usize] == 0xff {
                    return self.fail(DecodeError::InvalidNibble { offset: offset + i, value });
                }
            }
        }
        // Unreachable: only called when a nibble was invalid.
        self.fail(DecodeError::InvalidNibble { offset, value: 0 })
    }

    fn raw_str(&mut self, bytes: &[u8]) -> Slot {
        let start = self.doc.text.len();
        let mut scratch = AlignedShort([0u8; 64]);
        let valid = match scratch.0.get_mut(..bytes.len()) {
            // Short (ids, hashes, names): check an aligned, zero-padded copy.
            Some(dst) => {
                dst.copy_from_slice(bytes);
                padded_utf8(&scratch.0, bytes.len())
            }
            None => std::str::from_utf8(bytes).ok(),
        };
        match valid {
            Some(s) => {
                self.reserve_text(s.len());
                self.doc.text.push_str(s);
            }
            // Not UTF-8: keep it readable the way Baileys does (U+FFFD replacement).
            None => self.doc.text.push_str(&String::from_utf8_lossy(bytes)),
        }
        self.text_slot(start)
    }

    // A JID that must become text (used as a tag or key, or nested in another JID).
    #[cold]
    fn jid_to_text(&mut self, index: u32) -> Slot {
        let mut s = String::new();
        if let Some(j) = self.doc.jids.get(index as usize) {
            jid_ref(self.dict, &self.doc.text, j).write_plain(&mut s);
        }
        // The JID was only needed as text: drop it from the side array if it is last.
        if index as usize + 1 == self.doc.jids.len() {
            self.doc.jids.pop();
        }
        let start = self.doc.text.len();
        self.doc.text.push_str(&s);
        self.text_slot(start)
    }

    #[inline]
    fn read_plain(&mut self, depth: usize) -> R<Slot> {
        let t = self.byte()?;
        Ok(match self.read_string(t, depth)? {
            Parsed::Str(s) => s,
            Parsed::Jid(j) => self.jid_to_text(j),
        })
    }

    #[inline]
    fn is_empty(&self, slot: &Slot) -> bool {
        match slot.kind() {
            SlotKind::Token(code) => self.dict.code_str(code).is_empty(),
            SlotKind::Text(a, b) => a == b,
            SlotKind::Jid(_) => false,
        }
    }

    /// Reads the string that starts with byte `t`. Single-byte tokens (most tags,
    /// keys and common values) are resolved here, inline at every call site;
    /// everything else goes out of line.
    #[inline(always)]
    fn read_string(&mut self, t: u8, depth: usize) -> R<Parsed> {
        // `LIST_EMPTY` (0) is the empty string, which is token code 0.
        if t <= 235 {
            return Ok(Parsed::Str(Slot::token(u16::from(t))));
        }
        self.read_string_slow(t, depth)
    }

    #[inline(never)]
    fn read_string_slow(&mut self, t: u8, depth: usize) -> R<Parsed> {
        Ok(match t {
            tag::LIST_EMPTY => Parsed::Str(EMPTY_SLOT),
            1..=235 => Parsed::Str(Slot::token(u16::from(t))),
            tag::DICTIONARY_0..=tag::DICTIONARY_3 => {
                let i = self.byte()?;
                let d = u16::from(t - tag::DICTIONARY_0);
                Parsed::Str(Slot::token(256 + d * 256 + u16::from(i)))
            }
            tag::BINARY_8 | tag::BINARY_20 | tag::BINARY_32 => {
                let n = self.binary_len(t)?;
                let bytes = self.take(n)?;
                Parsed::Str(self.raw_str(bytes))
            }
            tag::NIBBLE_8 | tag::HEX_8 => Parsed::Str(self.read_packed(t)?),
            tag::JID_PAIR | tag::AD_JID | tag::FB_JID | tag::INTEROP_JID => self.read_jid(t, depth)?,
            _ => {
                let offset = self.pos - 1;
                return self.fail(DecodeError::InvalidTag { offset, byte: t, expected: "a string" });
            }
        })
    }

    fn read_jid(&mut self, t: u8, depth: usize) -> R<Parsed> {
        // A JID inside a JID is never sent by a real peer, but Baileys reads it,
        // so we do too, to a small bound: the optional interop server backtracks,
        // and unbounded nesting would make that exponential.
        let offset = self.pos - 1;
        if self.jid_nesting >= MAX_JID_NESTING || depth >= self.limits.max_depth {
            let limit = MAX_JID_NESTING.min(self.limits.max_depth);
            return self.fail(DecodeError::TooDeep { limit, offset });
        }
        self.jid_nesting += 1;
        let r = self.read_jid_parts(t, depth + 1, offset);
        self.jid_nesting -= 1;
        let j = r?;
        self.doc.jids.push(j);
        Ok(Parsed::Jid((self.doc.jids.len() - 1) as u32))
    }

    fn read_jid_parts(&mut self, t: u8, depth: usize, offset: usize) -> R<JidSlot> {
        let j = match t {
            tag::JID_PAIR => {
                let user = self.read_plain(depth)?;
                let server = self.read_plain(depth)?;
                if self.is_empty(&server) {
                    return self.fail(DecodeError::InvalidJidPair { offset });
                }
                JidSlot { kind: JidKind::Pair, domain: 0, device: 0, integrator: 0, user, server }
            }
            tag::AD_JID => {
                let domain = self.byte()?;
                let device = u16::from(self.byte()?);
                let user = self.read_plain(depth)?;
                // The server is implied by the domain type.
                JidSlot { kind: JidKind::Ad, domain, device, integrator: 0, user, server: EMPTY_SLOT }
            }
            tag::FB_JID => {
                let user = self.read_plain(depth)?;
                let device = self.u16()?;
                let server = self.read_plain(depth)?;
                JidSlot { kind: JidKind::Fb, domain: 0, device, integrator: 0, user, server }
            }
            _ => {
                let user = self.read_plain(depth)?;
                let device = self.u16()?;
                let integrator = self.u16()?;
                // Baileys treats the server as optional here (defaulting to
                // "interop"); accept what it accepts.
                let (pos, text_len) = (self.pos, self.doc.text.len());
                let server = match self.read_plain(depth) {
                    Ok(s) => s,
                    Err(Fail) => {
                        self.error = None;
                        self.pos = pos;
                        self.doc.text.truncate(text_len);
                        self.doc.text.push_str(Server::Interop.as_str());
                        self.text_slot(text_len)
                    }
                };
                JidSlot { kind: JidKind::Interop, domain: 0, device, integrator, user, server }
            }
        };
        Ok(j)
    }

    #[inline]
    fn list_len(&mut self, t: u8) -> R<Option<usize>> {
        Ok(Some(match t {
            tag::LIST_EMPTY => 0,
            tag::LIST_8 => self.byte()? as usize,
            tag::LIST_16 => self.u16()? as usize,
            _ => return Ok(None),
        }))
    }

    fn check_list(&mut self, len: usize, offset: usize) -> R<()> {
        // Every node needs at least two bytes, so a longer list cannot be honest.
        let remaining = (self.buf.len() - self.pos) / 2;
        let limit = self.limits.max_list_len.min(remaining);
        if len > limit {
            return self.fail(DecodeError::ListTooLong { len, offset, limit });
        }
        Ok(())
    }

    fn read_node(&mut self, index: usize, depth: usize) -> R<()> {
        let offset = self.pos;
        if depth >= self.limits.max_depth {
            let limit = self.limits.max_depth;
            return self.fail(DecodeError::TooDeep { limit, offset });
        }
        let t = self.byte()?;
        let size = match self.list_len(t)? {
            Some(0) => return self.fail(DecodeError::InvalidNode { offset }),
            Some(n) => n,
            None => {
                return self.fail(DecodeError::InvalidTag { offset, byte: t, expected: "a list header" });
            }
        };
        let tag = self.read_plain(depth)?;
        if self.is_empty(&tag) {
            return self.fail(DecodeError::InvalidNode { offset });
        }
        let n_attrs = (size - 1) / 2;
        let attrs_start = self.doc.attrs.len();
        if n_attrs > 0 {
            // Each attribute takes at least two bytes.
            let limit = (self.buf.len() - self.pos) / 2;
            if n_attrs > limit {
                return self.fail(DecodeError::ListTooLong { len: n_attrs, offset, limit });
            }
            self.doc.attrs.reserve(n_attrs);
            for _ in 0..n_attrs {
                let key = self.read_plain(depth)?;
                let vt = self.byte()?;
                let value = match self.read_string(vt, depth)? {
                    Parsed::Str(s) => s,
                    Parsed::Jid(j) => Slot::jid(j),
                };
                self.doc.attrs.push(RawAttr { key, value });
            }
        }
        let content = if size % 2 == 0 {
            let ct_offset = self.pos;
            let ct = self.byte()?;
            match self.list_len(ct)? {
                Some(n) => {
                    self.check_list(n, ct_offset)?;
                    let start = self.doc.nodes.len();
                    self.doc.nodes.extend(std::iter::repeat_n(RawNode::default(), n));
                    for i in 0..n {
                        self.read_node(start + i, depth + 1)?;
                    }
                    RawContent::Children(start as u32, n as u32)
                }
                None => match ct {
                    tag::BINARY_8 | tag::BINARY_20 | tag::BINARY_32 => {
                        let n = self.binary_len(ct)?;
                        let start = self.pos;
                        self.take(n)?;
                        RawContent::Bytes(start as u32, n as u32)
                    }
                    _ => match self.read_string(ct, depth)? {
                        Parsed::Str(s) => RawContent::Str(s),
                        Parsed::Jid(j) => RawContent::Jid(j),
                    },
                },
            }
        } else {
            RawContent::None
        };
        if let Some(slot) = self.doc.nodes.get_mut(index) {
            *slot = RawNode { tag, attrs_start: attrs_start as u32, attrs_len: n_attrs as u32, content };
        }
        Ok(())
    }
}

/// Decoder parameterised by token dictionary and limits.
#[derive(Debug, Clone, Copy)]
pub struct Decoder {
    dict: &'static Dictionary,
    limits: DecodeLimits,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder { dict: &V3, limits: DecodeLimits::default() }
    }
}

impl Decoder {
    /// A decoder using `dict` and default limits.
    pub fn new(dict: &'static Dictionary) -> Decoder {
        Decoder { dict, limits: DecodeLimits::default() }
    }

    /// The same decoder with other limits.
    /// `max_size` is capped at 1 GiB (text offsets are 32-bit).
    pub fn with_limits(self, limits: DecodeLimits) -> Decoder {
        let max_size = limits.max_size.min(1 << 30);
        Decoder { limits: DecodeLimits { max_size, ..limits }, ..self }
    }

    /// Decodes a node body (no flags byte). Trailing bytes are an error.
    pub fn decode<'a>(&self, body: &'a [u8]) -> Result<Document<'a>, DecodeError> {
        if body.len() > self.limits.max_size {
            return Err(DecodeError::TooLarge { size: body.len(), limit: self.limits.max_size });
        }
        // Nothing is reserved up front: small trees fit the inline arrays, larger
        // ones grow geometrically (a large bytes payload must not make us reserve
        // node space it will never use), and the text buffer is allocated only
        // when a packed or raw string needs it.
        let mut r = Reader {
            buf: body,
            pos: 0,
            dict: self.dict,
            limits: &self.limits,
            doc: Document {
                input: body,
                nodes: NodeVec::new(),
                attrs: AttrVec::new(),
                jids: JidVec::new(),
                text: String::new(),
                dict: self.dict,
            },
            error: None,
            jid_nesting: 0,
        };
        r.doc.nodes.push(RawNode::default());
        if r.read_node(0, 0).is_err() {
            return Err(r.error.unwrap_or(DecodeError::InvalidNode { offset: r.pos }));
        }
        if r.pos != body.len() {
            return Err(DecodeError::TrailingBytes { count: body.len() - r.pos });
        }
        if r.doc.text.len() >= MAX_TEXT_LEN {
            // Text offsets must stay below 2^30 (see `JID_FLAG`); only a hostile
            // body near the 1 GiB size cap could expand this far.
            return Err(DecodeError::TooLarge { size: r.doc.text.len(), limit: MAX_TEXT_LEN });
        }
        Ok(r.doc)
    }

    /// Strips a frame payload's flags byte, inflating the body if bit `0x02` is set.
    pub fn unpack_frame<'a>(&self, frame: &'a [u8]) -> Result<Cow<'a, [u8]>, DecodeError> {
        let (&flags, body) = frame.split_first().ok_or(DecodeError::EmptyFrame)?;
        if flags & 0x02 == 0 {
            return Ok(Cow::Borrowed(body));
        }
        let limit = self.limits.max_size;
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(body)
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| DecodeError::Inflate(e.to_string()))?;
        if out.len() > limit {
            return Err(DecodeError::TooLarge { size: out.len(), limit });
        }
        Ok(Cow::Owned(out))
    }

    /// Decodes a whole frame payload (flags byte, possibly compressed) to an owned node.
    pub fn decode_frame(&self, frame: &[u8]) -> Result<Node, DecodeError> {
        let body = self.unpack_frame(frame)?;
        Ok(self.decode(&body)?.to_node())
    }
}

/// Decodes a node body (no flags byte) with dictionary version 3 and default limits.
pub fn decode(body: &[u8]) -> Result<Document<'_>, DecodeError> {
    Decoder::default().decode(body)
}

/// Strips a frame payload's flags byte, inflating if needed (default limits).
/// Pass the result to [`decode`].
pub fn unpack_frame(frame: &[u8]) -> Result<Cow<'_, [u8]>, DecodeError> {
    Decoder::default().unpack_frame(frame)
}

/// Decodes a whole frame payload (flags byte, possibly compressed) to an owned node.
pub fn decode_frame(frame: &[u8]) -> Result<Node, DecodeError> {
    Decoder::default().decode_frame(frame)
}
